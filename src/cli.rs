//! The command line: parsing and printing only.

use crate::live;
use crate::plot;
use crate::profile::{PROFILES, Profile, Scope};
use crate::scenario::{self, ScenarioError};
use crate::sim::Simulation;
use crate::time::Duration;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
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
        /// Also draw the scenario chart to this file (.svg or .png).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print events, attempts, wall time and attempts per second (to standard error, and
        /// as `stats` in the JSON report).
        #[arg(long)]
        stats: bool,
    },
    /// Draw a chart: one scenario (.toml, run first) or report (.json from run or live), or
    /// several of them compared on one time axis.
    Plot {
        /// Scenario files or JSON reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The chart file: .svg or .png.
        #[arg(short, long)]
        output: PathBuf,
        /// Title of a comparison chart.
        #[arg(long)]
        title: Option<String>,
    },
    /// Make every chart plots/plots.toml lists (the charts in plots/).
    Plots {
        /// The manifest.
        #[arg(default_value = "plots/plots.toml")]
        manifest: PathBuf,
        /// Write nothing; fail if a committed chart is out of date, missing or unlisted.
        #[arg(long)]
        check: bool,
        /// Also write each chart as PNG into this directory, to look at them.
        #[arg(long)]
        png_dir: Option<PathBuf>,
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
        /// Also draw predicted against measured to this file (.svg or .png).
        #[arg(long)]
        plot: Option<PathBuf>,
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
            plot,
            stats,
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
            if let Some(p) = &plot
                && let Err(e) = plot::check_extension(p)
            {
                eprintln!("error: --plot {e}");
                return ExitCode::from(BAD_INPUT);
            }
            let wall = std::time::Instant::now();
            let (mut report, events) = Simulation::new(&sc).run_counted();
            let wall = wall.elapsed().as_secs_f64();
            if stats {
                let attempts = report.summary.connections.attempted;
                let s = crate::report::Stats {
                    events,
                    attempts,
                    wall_s: wall,
                    attempts_per_s: attempts as f64 / wall.max(1e-9),
                };
                eprintln!("{}", s.text());
                report.stats = Some(s);
            }
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
            // The report first: a chart that cannot be written does not cost the run.
            if let Some(p) = &plot
                && let Err(e) = plot::save(&plot::scenario_chart(&plot::ReportView::of(&report)), p)
            {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
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
            plot,
        } => {
            let sc = match scenario::load(&scenario) {
                Ok(sc) => sc,
                Err(e) => return refuse(&e),
            };
            if let Some(p) = &plot
                && let Err(e) = plot::check_extension(p)
            {
                eprintln!("error: --plot {e}");
                return ExitCode::from(BAD_INPUT);
            }
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
            if let Some(p) = &plot
                && let Err(e) = plot::save(&plot::live_chart(&plot::LiveView::of(&report)), p)
            {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            if report.verdict == "agree" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Plot {
            inputs,
            output,
            title,
        } => {
            if let Err(e) = plot::check_extension(&output) {
                eprintln!("error: {e}");
                return ExitCode::from(BAD_INPUT);
            }
            let mut loaded = vec![];
            for i in &inputs {
                match plot::input::load(i) {
                    Ok(x) => loaded.push(x),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(BAD_INPUT);
                    }
                }
            }
            let saved = match loaded.as_slice() {
                [plot::Input::Report(r)] => plot::save(&plot::scenario_chart(r), &output),
                [plot::Input::Live(l)] => plot::save(&plot::live_chart(l), &output),
                many => {
                    let mut runs = vec![];
                    for (x, path) in many.iter().zip(&inputs) {
                        match x {
                            plot::Input::Report(r) => {
                                runs.push((r.scenario.name.clone(), (**r).clone()))
                            }
                            plot::Input::Live(_) => {
                                eprintln!(
                                    "error: {}: a live report is charted on its own, not compared",
                                    path.display()
                                );
                                return ExitCode::from(BAD_INPUT);
                            }
                        }
                    }
                    let title = title.unwrap_or_else(|| "comparison".into());
                    plot::save(&plot::comparison_chart(&title, &runs), &output)
                }
            };
            match saved {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plots {
            manifest,
            check,
            png_dir,
        } => {
            let made = match plot::manifest::make(&manifest) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let dir = manifest.parent().unwrap_or(std::path::Path::new("."));
            if check {
                let stale = plot::manifest::stale(&made, dir);
                for s in &stale {
                    eprintln!("{s}");
                }
                if stale.is_empty() {
                    println!("{} charts in {} are current", made.len(), dir.display());
                    return ExitCode::SUCCESS;
                }
                eprintln!("regenerate with: portsim plots {}", manifest.display());
                return ExitCode::FAILURE;
            }
            for m in &made {
                if let Err(e) = write_atomically(&m.path, m.svg.as_bytes()) {
                    eprintln!("error: cannot write {}: {e}", m.path.display());
                    return ExitCode::FAILURE;
                }
            }
            if let Some(d) = &png_dir {
                for m in &made {
                    let png = d.join(m.path.with_extension("png").file_name().unwrap_or_default());
                    if let Err(e) = m.save_png(&png) {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            println!("{} charts written to {}", made.len(), dir.display());
            ExitCode::SUCCESS
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

pub use crate::write_atomically;
