//! Clients as people run them (issue 27): the programs and libraries whose connection
//! handling makes the churn, described by their own settings.
//!
//! - [`pool`]: a library's connection pool (`[workload.pool]`) and the libraries' presets
//!   (`[workload.library]`); what it does on the wire is `src/sim/pool.rs`.
//! - [`tools`]: load generators' command lines (`oha -c 50 -z 10s http://…`) parsed into what
//!   the tool does on the wire ([`tools::ToolRun`]), and rendered as a scenario's TOML.
//!
//! The tools' defaults and behaviour are researched with sources in
//! `notes/client-libraries.md` §5; each parser cites the tool's source there.

pub mod pool;
pub mod tools;
