//! The command line: parsing and printing only.
//!
//! One file per group of subcommands, each holding its arguments and what it does with them:
//! - `run` and `check` in `run.rs`;
//! - `plan` in `plan.rs`;
//! - `sweep` and `merge` in `sweep.rs`;
//! - `live` in `live.rs`;
//! - `plot` and `plots` in `plot.rs`;
//! - `profiles` and `profile` in `profile.rs`;
//! - what they share (reading files, loading scenarios with `--set`, writing output,
//!   reporting refused input) in `io.rs`.

mod io;
mod live;
mod plan;
mod plot;
mod profile;
mod run;
mod sweep;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

pub use crate::write_atomically;

#[derive(Parser)]
#[command(
    name = "portsim",
    version,
    about = "Deterministic simulator of the TCP port lifecycle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario and print its report.
    Run(run::RunArgs),
    /// Will this load run out of ports, when, and what fixes it: per pool limit, headroom,
    /// TIME-WAIT and time to exhaustion, by formula and by simulation, and remedies ranked by
    /// simulating each. From a scenario, or from the flags for the common case.
    Plan(plan::PlanArgs),
    /// Run a scenario over a grid of values, in parallel: CSV or JSON, and a chart.
    Sweep(sweep::SweepArgs),
    /// Join the JSON files of a sharded sweep into one.
    Merge(sweep::MergeArgs),
    /// Print the JSON Schema of scenario files (for editors and TOML language servers).
    Schema,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Draw a chart: one scenario (.toml, run first) or report (.json from run or live), or
    /// several of them compared on one time axis.
    Plot(plot::PlotArgs),
    /// Make every chart plots/plots.toml lists (the charts in plots/).
    Plots(plot::PlotsArgs),
    /// Validate a scenario without running it.
    Check { scenario: std::path::PathBuf },
    /// Run a scenario on the real Linux stack in a private network namespace and compare it
    /// with the prediction. Exit status 0 when they agree, 1 when they differ.
    Live(live::LiveArgs),
    /// List the kernel profiles.
    Profiles,
    /// Show a profile, or import one from a host: `profile show NAME`, `profile --from-host`,
    /// `profile --from-sysctl FILE`, `profile --from-netsh FILE`.
    #[command(args_conflicts_with_subcommands = true)]
    Profile(profile::ProfileArgs),
}

/// Text or JSON: the formats of `live` and `plan`.
#[derive(Clone, Copy, ValueEnum)]
enum LiveFormat {
    Text,
    Json,
}

/// Exit status for a scenario or argument that was refused.
const BAD_INPUT: u8 = 2;

/// What a subcommand ends with: the exit status, `Err` for a failure already reported on
/// standard error.
type Outcome = Result<ExitCode, ExitCode>;

pub fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Run(a) => run::run(a),
        Command::Check { scenario } => run::check(&scenario),
        Command::Plan(a) => plan::plan(a),
        Command::Sweep(a) => sweep::sweep(a),
        Command::Merge(a) => sweep::merge(a),
        Command::Live(a) => live::live(a),
        Command::Plot(a) => plot::plot(a),
        Command::Plots(a) => plot::plots(a),
        Command::Profiles => profile::profiles(),
        Command::Profile(a) => profile::profile(a),
        Command::Schema => schema(),
        Command::Completions { shell } => completions(shell),
    };
    outcome.unwrap_or_else(|code| code)
}

/// `portsim schema`: the JSON Schema of scenario files.
fn schema() -> Outcome {
    print!("{}", crate::scenario::json_schema());
    Ok(ExitCode::SUCCESS)
}

/// `portsim completions SHELL`.
fn completions(shell: clap_complete::Shell) -> Outcome {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "portsim", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
