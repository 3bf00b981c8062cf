//! The command line: parsing and printing only.

use crate::live;
use crate::profile::{PROFILES, Profile, Scope};
use crate::scenario::{self, ScenarioError};
use crate::sim::Simulation;
use crate::time::Duration;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the report to this file instead of standard output (atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Override the bin width of the time series, e.g. "1s".
        #[arg(long)]
        bin: Option<String>,
    },
    /// Validate a scenario without running it.
    Check { scenario: PathBuf },
    /// Run a scenario on the real Linux stack in a private network namespace and compare it
    /// with the prediction. Exit status 0 when they agree, 1 when they differ.
    Live {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = LiveFormat::Text)]
        format: LiveFormat,
        /// Write the report to this file instead of standard output (atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Stop after starting this many connections (default: the scenario's
        /// [live] max_connections, else 2,000,000).
        #[arg(long)]
        max_connections: Option<u64>,
    },
    /// List the kernel profiles.
    Profiles,
    /// Show one profile.
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
}

#[derive(Subcommand)]
enum ProfileAction {
    /// Print a profile's defaults as a [[host]] block to paste into a scenario.
    Show { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum LiveFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

/// Exit status for a scenario or argument that was refused.
const BAD_INPUT: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            format,
            output,
            seed,
            bin,
        } => {
            let mut sc = match scenario::load(&scenario) {
                Ok(sc) => sc,
                Err(e) => return refuse(&e),
            };
            if let Some(s) = seed {
                sc.seed = s;
            }
            if let Some(b) = bin {
                match Duration::parse(&b) {
                    Ok(d) if d.0 > 0 => sc.bin = d,
                    Ok(_) => {
                        eprintln!("error: --bin {b:?}: must be greater than zero");
                        return ExitCode::from(BAD_INPUT);
                    }
                    Err(e) => {
                        eprintln!("error: --bin {b:?}: {e}");
                        return ExitCode::from(BAD_INPUT);
                    }
                }
            }
            for w in &sc.warnings {
                eprintln!("warning: {w}");
            }
            let wall = std::time::Instant::now();
            let report = Simulation::new(&sc).run();
            let wall = wall.elapsed().as_secs_f64();
            let text = match format {
                Format::Text => {
                    let mut t = report.to_text();
                    t.push_str(&format!("\n(simulated in {wall:.2} s of wall time)\n"));
                    t
                }
                Format::Json => report.to_json(),
                Format::Csv => report.to_csv(),
            };
            match output {
                None => {
                    let mut out = std::io::stdout().lock();
                    if out.write_all(text.as_bytes()).is_err() {
                        return ExitCode::FAILURE;
                    }
                }
                Some(path) => {
                    if let Err(e) = write_atomically(&path, text.as_bytes()) {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Check { scenario } => match scenario::load(&scenario) {
            Ok(sc) => {
                for w in &sc.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "{}: ok ({} hosts, {} workloads)",
                    scenario.display(),
                    sc.hosts.len(),
                    sc.workloads.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => refuse(&e),
        },
        Command::Live {
            scenario,
            format,
            output,
            max_connections,
        } => {
            let sc = match scenario::load(&scenario) {
                Ok(sc) => sc,
                Err(e) => return refuse(&e),
            };
            let opts = live::Options {
                max_connections: max_connections
                    .or(sc.live.max_connections)
                    .unwrap_or(live::MAX_CONNECTIONS),
            };
            let report = match live::run(&sc, opts) {
                Ok(r) => r,
                Err(e @ live::LiveError::Refused(_)) => {
                    eprintln!("error: {}: {e}", scenario.display());
                    return ExitCode::from(BAD_INPUT);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let text = match format {
                LiveFormat::Text => report.to_text(),
                LiveFormat::Json => report.to_json(),
            };
            let written = match output {
                None => std::io::stdout().lock().write_all(text.as_bytes()).is_ok(),
                Some(path) => match write_atomically(&path, text.as_bytes()) {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        false
                    }
                },
            };
            if !written {
                return ExitCode::FAILURE;
            }
            if report.verdict == "agree" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Profiles => {
            for (name, title) in PROFILES {
                let p = Profile::named(name).expect("shipped profile");
                let (lo, hi) = p.port_range;
                println!(
                    "{name:<8} {title}\n         ports {lo}–{hi} ({}), TIME-WAIT {}, {}, selection {}",
                    p.range_len(),
                    p.time_wait,
                    match p.scope {
                        Scope::FourTuple => "ports shared across destinations",
                        Scope::HostWide => "one connection per port host-wide",
                    },
                    p.selection.name()
                );
            }
            ExitCode::SUCCESS
        }
        Command::Profile {
            action: ProfileAction::Show { name },
        } => match Profile::named(&name) {
            Some(p) => {
                print!("{}", p.to_toml_block(&name));
                ExitCode::SUCCESS
            }
            None => {
                let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
                eprintln!(
                    "error: {name:?}: unknown profile; available: {}",
                    names.join(", ")
                );
                ExitCode::from(BAD_INPUT)
            }
        },
    }
}

fn refuse(e: &ScenarioError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(BAD_INPUT)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees a half-written report and an interrupted run leaves the old file intact.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.portsim-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
