//! A load generator's command line, as the tool reads it, turned into what it does on the
//! wire: how many connections at once, for how long or how many requests, whether each
//! connection carries one request or many, and who closes it (the side that holds
//! TIME-WAIT).
//!
//! ```text
//! "oha -c 50 -z 10s http://127.0.0.1:8080/" ──split──▶ argv ──scan (the tool's flags)──▶
//!     ToolRun { tool, destination, concurrency, limit, keep_alive, closer, … } ──render──▶ TOML
//! ```
//!
//! - `split`: shell-like words (quotes and backslashes, no expansion).
//! - `scan`: flags by the tool's own spelling (getopt or Go's `flag` package), each either
//!   read, or accepted and ignored because it does not change connections.
//! - `http`: oha, wrk, ab, httperf; `go`: hey, k6; `kv`: memtier_benchmark, redis-benchmark.
//! - `render`: the scenario text, in the existing `[[workload]]` syntax.
//!
//! Defaults and behaviour: `notes/client-libraries.md` §5, cited per tool. Every value is
//! checked; any input gives a [`ToolRun`] or a [`ToolError`], never a panic.

mod go;
mod http;
mod kv;
mod render;
mod scan;

pub use render::{RenderError, RenderOptions, render};

use crate::time::Duration;
use crate::workload::{Closer, Rate};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The load generators portsim reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Oha,
    Wrk,
    Ab,
    Hey,
    K6,
    Memtier,
    RedisBenchmark,
    Httperf,
}

impl Tool {
    pub const ALL: [Tool; 8] = [
        Tool::Oha,
        Tool::Wrk,
        Tool::Ab,
        Tool::Hey,
        Tool::K6,
        Tool::Memtier,
        Tool::RedisBenchmark,
        Tool::Httperf,
    ];

    /// The program's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Oha => "oha",
            Tool::Wrk => "wrk",
            Tool::Ab => "ab",
            Tool::Hey => "hey",
            Tool::K6 => "k6",
            Tool::Memtier => "memtier_benchmark",
            Tool::RedisBenchmark => "redis-benchmark",
            Tool::Httperf => "httperf",
        }
    }

    /// The tool a program path names (`/usr/bin/oha` → oha).
    pub fn from_program(program: &str) -> Option<Tool> {
        let base = program.rsplit('/').next().unwrap_or(program);
        Tool::ALL.into_iter().find(|t| t.name() == base)
    }
}

/// Where the tool connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// An IPv4 address (`localhost` read as 127.0.0.1) and port.
    Addr(SocketAddrV4),
    /// A host name: the scenario needs its address ([`RenderOptions::address`]).
    Name { host: String, port: u16 },
    /// k6 reads its targets from its script, which portsim does not parse.
    Script { path: String },
}

/// When the run ends: the first of these that is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolLimit {
    /// Requests in all (over every connection and thread).
    pub requests: Option<u64>,
    /// Connections in all (httperf `--num-conns`).
    pub connections: Option<u64>,
    /// How long the tool sends requests.
    pub duration: Option<Duration>,
}

/// A rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolRate {
    /// Requests per second over the whole run (oha `-q`; hey `-q` × `-c`).
    Requests(Rate),
    /// New connections per second (httperf `--rate`).
    Connections(Rate),
}

/// What a connect() failure does to the tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConnectError {
    /// Counted; the tool goes on.
    Count,
    /// The tool exits.
    Stop,
}

/// What a load generator's command line does on the wire.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRun {
    pub tool: Tool,
    /// The command line it was read from.
    pub command: String,
    pub destination: Destination,
    /// Connections (or requests) in flight at once; `None` for an open loop (httperf
    /// `--rate`), which opens connections at a rate whatever is in flight.
    pub concurrency: Option<u32>,
    /// Threads the connections share (wrk `-t`, memtier `-t`), when the tool has them.
    pub threads: Option<u32>,
    pub limit: ToolLimit,
    pub rate: Option<ToolRate>,
    /// Whether a connection carries more than one request.
    pub keep_alive: bool,
    /// Requests a connection carries before the tool ends it; `None`: it is kept until the
    /// run ends or the server closes it.
    pub requests_per_connection: Option<u32>,
    /// Who sends the first FIN when a connection ends after `requests_per_connection` (and
    /// so holds TIME-WAIT); `None` when connections are kept.
    pub closer: Option<Closer>,
    /// Why `closer` is that side (or, for kept connections, what ends them), with its source,
    /// and UNVERIFIED where no source says it.
    pub closer_source: &'static str,
    /// memtier `--reconnect-interval`: requests after which the client reconnects.
    pub reconnect_interval: Option<u32>,
    /// httperf `--close-with-reset`: SO_LINGER 0, an RST and no TIME-WAIT.
    pub close_with_reset: bool,
    /// hey's per-host idle cap, `min(c, 500)` (Go `MaxIdleConnsPerHost`).
    pub max_idle_per_host: Option<u32>,
    pub on_connect_error: OnConnectError,
}

impl ToolRun {
    /// A run with no flags read yet: keep-alive (what happens to a kept connection, with its
    /// source, in `kept`), no limit, connect() failures counted.
    fn new(tool: Tool, destination: Destination, kept: &'static str) -> ToolRun {
        ToolRun {
            tool,
            command: String::new(),
            destination,
            concurrency: None,
            threads: None,
            limit: ToolLimit::default(),
            rate: None,
            keep_alive: true,
            requests_per_connection: None,
            closer: None,
            closer_source: kept,
            reconnect_interval: None,
            close_with_reset: false,
            max_idle_per_host: None,
            on_connect_error: OnConnectError::Count,
        }
    }

    /// One request per connection, ended by `closer` for the reason `source` gives.
    fn one_request_each(&mut self, closer: Closer, source: &'static str) {
        self.keep_alive = false;
        self.requests_per_connection = Some(1);
        self.closer = Some(closer);
        self.closer_source = source;
    }
}

/// Why a command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolError {
    /// An unterminated quote or a trailing backslash.
    Quoting { message: &'static str },
    /// The program is none of [`Tool::ALL`] (empty when the line is empty).
    UnknownTool { given: String },
    /// A flag the tool has not, or one that portsim does not model.
    UnknownFlag {
        tool: Tool,
        flag: String,
        known: String,
    },
    /// A flag's value (`None`: the value is missing) and what is allowed.
    BadValue {
        tool: Tool,
        flag: String,
        value: Option<String>,
        allowed: String,
    },
    /// No URL, host or script to connect to.
    MissingTarget { tool: Tool, expected: &'static str },
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Quoting { message } => write!(f, "the command line: {message}"),
            ToolError::UnknownTool { given } if given.is_empty() => write!(
                f,
                "no command; expected a load generator's command line such as \
                 'oha -c 50 -z 10s http://127.0.0.1:8080/' ({})",
                tool_names()
            ),
            ToolError::UnknownTool { given } => {
                write!(f, "{given:?}: unknown tool; portsim reads {}", tool_names())
            }
            ToolError::UnknownFlag { tool, flag, known } => write!(
                f,
                "{}: unknown flag {flag:?} (or one that changes connections in a way portsim \
                 does not model); {known}",
                tool.name()
            ),
            ToolError::BadValue {
                tool,
                flag,
                value: Some(v),
                allowed,
            } => write!(f, "{} {flag} {v:?}: expected {allowed}", tool.name()),
            ToolError::BadValue {
                tool,
                flag,
                value: None,
                allowed,
            } => write!(
                f,
                "{} {flag}: missing value; expected {allowed}",
                tool.name()
            ),
            ToolError::MissingTarget { tool, expected } => {
                write!(
                    f,
                    "{}: nothing to connect to; expected {expected}",
                    tool.name()
                )
            }
        }
    }
}

impl std::error::Error for ToolError {}

fn tool_names() -> String {
    let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
    names.join(", ")
}

/// Reads a command line as a shell would split it (`oha -c 50 'http://…'`).
pub fn parse(command: &str) -> Result<ToolRun, ToolError> {
    let argv = split(command)?;
    let mut run = parse_args(&argv)?;
    run.command = command.trim().to_string();
    Ok(run)
}

/// Reads an argument vector, the program first.
pub fn parse_args(argv: &[String]) -> Result<ToolRun, ToolError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ToolError::UnknownTool {
            given: String::new(),
        });
    };
    let tool = Tool::from_program(program).ok_or_else(|| ToolError::UnknownTool {
        given: program.clone(),
    })?;
    let mut run = match tool {
        Tool::Oha => http::oha(args),
        Tool::Wrk => http::wrk(args),
        Tool::Ab => http::ab(args),
        Tool::Hey => go::hey(args),
        Tool::K6 => go::k6(args),
        Tool::Httperf => http::httperf(args),
        Tool::Memtier => kv::memtier(args),
        Tool::RedisBenchmark => kv::redis_benchmark(args),
    }?;
    run.command = argv.join(" ");
    Ok(run)
}

/// Splits `line` into words as a POSIX shell does, without expansion: whitespace separates
/// words; `'…'` is literal; `"…"` keeps `\"`, `\\`, `\$` and `` \` `` escapes; a backslash
/// outside quotes escapes the next character.
pub fn split(line: &str) -> Result<Vec<String>, ToolError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(quoting("a single quote (') is not closed")),
                    }
                }
            }
            '"' => double_quoted(&mut chars, word.get_or_insert_with(String::new))?,
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(quoting("it ends in a backslash")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn double_quoted(chars: &mut std::str::Chars<'_>, w: &mut String) -> Result<(), ToolError> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                Some('\n') => {}
                Some(c) => {
                    w.push('\\');
                    w.push(c);
                }
                None => break,
            },
            Some(c) => w.push(c),
            None => break,
        }
    }
    Err(quoting("a double quote (\") is not closed"))
}

fn quoting(message: &'static str) -> ToolError {
    ToolError::Quoting { message }
}

/// The destination of an HTTP tool's URL: `http` or `https` (default ports 80 and 443),
/// optional `user@`, a host, an optional port, any path. `scheme_optional`: ab accepts a
/// bare `host[:port]/path` as http (its usage text: `[http[s]://]hostname[:port]/path`).
fn url(tool: Tool, text: &str, scheme_optional: bool) -> Result<Destination, ToolError> {
    let bad = || ToolError::BadValue {
        tool,
        flag: "URL".into(),
        value: Some(text.into()),
        allowed: "http://HOST[:PORT]/… or https://…, HOST an IPv4 address, localhost or a name"
            .into(),
    };
    let (default_port, rest) = match text.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => (80, rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => (443, rest),
        None if scheme_optional => (80, text),
        _ => return Err(bad()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?),
        None => (authority, default_port),
    };
    host_port(host, port).ok_or_else(bad)
}

/// A host (an IPv4 literal, `localhost`, or a name) and a port.
fn host_port(host: &str, port: u16) -> Option<Destination> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.eq_ignore_ascii_case("localhost") {
        return Some(Destination::Addr(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            port,
        )));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Destination::Addr(SocketAddrV4::new(ip, port)));
    }
    let numeric = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    if host.is_empty() || numeric || !host.chars().all(name_char) {
        return None;
    }
    Some(Destination::Name {
        host: host.to_string(),
        port,
    })
}
