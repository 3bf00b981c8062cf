//! The command line: parsing and printing only.

use crate::live;
use crate::plan::{self, sweep, whatif};
use crate::plot;
use crate::plot::manifest::Metric;
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
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// Run once per seed A to B (both included) on every CPU and report each summary
        /// number's mean, sd, min, p5, p50, p95 and max (`replicates` in JSON); the rest of
        /// the report is seed A's run.
        #[arg(long, value_name = "A..B", conflicts_with = "stats")]
        seeds: Option<String>,
        /// Threads for --seeds (default: every CPU); the result does not depend on it.
        #[arg(long, requires = "seeds")]
        threads: Option<usize>,
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
        /// What-if: KEY=VALUE, a knob (net.ipv4.tcp_tw_reuse=1, set on every host whose kernel
        /// has it) or a path (workload.NAME.arrival.rate=800). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Check the engine's invariants after every event (always on in debug builds);
        /// exit status 70 if one breaks.
        #[arg(long)]
        check: bool,
        /// Add to each pool the ports it handed out: the first 1,000 in order, their parity
        /// and a histogram (`pools[].port_use` in JSON).
        #[arg(long)]
        ports: bool,
    },
    /// Will this load run out of ports, when, and what fixes it: per pool limit, headroom,
    /// TIME-WAIT and time to exhaustion, by formula and by simulation, and remedies ranked by
    /// simulating each. From a scenario, or from the flags for the common case.
    Plan {
        /// The scenario file (TOML); without it, the flags below describe the load.
        scenario: Option<PathBuf>,
        /// Client kernel profile.
        #[arg(long, default_value = "linux")]
        profile: String,
        /// Server kernel profile.
        #[arg(long, default_value = "linux")]
        server_profile: String,
        /// New connections per second, e.g. 800/s (required without a scenario).
        #[arg(long)]
        rate: Option<String>,
        /// Poisson arrivals instead of a constant rate.
        #[arg(long)]
        poisson: bool,
        #[arg(long, default_value_t = 1)]
        client_ips: u32,
        #[arg(long, default_value_t = 1)]
        destinations: u32,
        /// Who closes first (and holds TIME-WAIT).
        #[arg(long, value_enum, default_value_t = CloserArg::Client)]
        closer: CloserArg,
        #[arg(long, default_value_t = 1)]
        requests_per_connection: u32,
        /// Round-trip time.
        #[arg(long, default_value = "200us")]
        rtt: String,
        /// connect, bind_no_port or bind (default: connect with one client IP, else
        /// bind_no_port on Linux, bind elsewhere).
        #[arg(long)]
        connection: Option<String>,
        /// What-if: KEY=VALUE on top of the scenario; the plan shows before and after.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output format (default: json for an output file named .json, else text).
        #[arg(long, value_enum)]
        format: Option<LiveFormat>,
        /// Write the plan to this file instead of standard output (atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Run the scenario and every remedy once per seed A to B (both included): remedies
        /// ranked by their means, a fix one that fixes every seed, each outcome's numbers as
        /// mean, sd, min, p5, p50, p95 and max.
        #[arg(long, value_name = "A..B")]
        seeds: Option<String>,
    },
    /// Run a scenario over a grid of values, in parallel: CSV or JSON, and a chart.
    Sweep {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// KEY=V1,V2,… or KEY=LO..HI/STEPS; one per varied key, the last varying fastest.
        #[arg(long, value_name = "KEY=VALUES", required = true)]
        vary: Vec<String>,
        /// What-if: KEY=VALUE under every point.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output format (default: from the output file's extension, else CSV).
        #[arg(long, value_enum)]
        format: Option<SweepFormat>,
        /// Write the results to this file instead of standard output (atomically).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Draw a line chart (one varied number) or a heat map (two varied keys).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// What the chart shows.
        #[arg(long, value_enum, default_value_t = MetricArg::SustainedPerS)]
        metric: MetricArg,
        /// Threads (default: every CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Run only shard I of N (points k with k mod N = I − 1); join with `portsim merge`.
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Run each point once per seed A to B (both included): each row's numbers as
        /// mean, sd, min, p5, p50, p95 and max; charts show the mean with a p5–p95 band.
        #[arg(long, value_name = "A..B")]
        seeds: Option<String>,
    },
    /// Join the JSON files of a sharded sweep into one.
    Merge {
        /// `portsim sweep --format json --shard I/N` outputs.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<SweepFormat>,
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = MetricArg::SustainedPerS)]
        metric: MetricArg,
    },
    /// Print the JSON Schema of scenario files (for editors and TOML language servers).
    Schema,
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
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
        /// Fault injection: the server waits this long before each accept(), e.g. "20ms"
        /// (a listener slow to accept; the prediction does not model it).
        #[arg(long, value_name = "DURATION")]
        accept_delay: Option<String>,
        /// Fault injection: the server never calls accept() (the kernel still completes
        /// handshakes into the backlog; no request is answered).
        #[arg(long)]
        never_accept: bool,
        /// Fault injection: write this knob into the run's namespace after the prediction's
        /// knobs were read back, e.g. 'net.ipv4.ip_local_port_range=40000 40004'; the
        /// prediction does not know it. Repeatable.
        #[arg(long, value_name = "NAME=VALUE")]
        fault_sysctl: Vec<String>,
    },
    /// List the kernel profiles.
    Profiles,
    /// Show a profile, or import one from a host: `profile show NAME`, `profile --from-host`,
    /// `profile --from-sysctl FILE`, `profile --from-netsh FILE`.
    #[command(args_conflicts_with_subcommands = true)]
    Profile {
        #[command(subcommand)]
        action: Option<ProfileAction>,
        /// Read this Linux host's knobs from /proc/sys.
        #[arg(long, group = "from")]
        from_host: bool,
        /// Parse `sysctl -a` output (Linux, FreeBSD or macOS) saved to FILE ("-": stdin).
        #[arg(long, group = "from", value_name = "FILE")]
        from_sysctl: Option<PathBuf>,
        /// Parse `netsh int ipv4 show dynamicport tcp` output saved to FILE ("-": stdin).
        #[arg(long, group = "from", value_name = "FILE")]
        from_netsh: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProfileAction {
    /// Print a profile's defaults as a [[host]] block to paste into a scenario.
    Show { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum CloserArg {
    Client,
    Server,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum SweepFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
enum MetricArg {
    SustainedPerS,
    SuccessPercent,
    FirstFailureS,
    TimeWaitPeak,
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::SustainedPerS => Metric::SustainedPerS,
            MetricArg::SuccessPercent => Metric::SuccessPercent,
            MetricArg::FirstFailureS => Metric::FirstFailureS,
            MetricArg::TimeWaitPeak => Metric::TimeWaitPeak,
        }
    }
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
            seeds,
            threads,
            bin,
            plot,
            stats,
            set,
            check,
            ports,
        } => {
            let mut sc = match load_with(&scenario, &set) {
                Ok(sc) => sc,
                Err(code) => return code,
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
            let make = |sc: &scenario::Scenario| {
                Simulation::new(sc)
                    .checking(check || cfg!(debug_assertions))
                    .ports(ports)
            };
            let wall = std::time::Instant::now();
            let run = match parse_seeds(seeds.as_deref()) {
                Err(code) => return code,
                Ok(None) => make(&sc).run_checked(),
                Ok(Some(seeds)) => match replicated(&sc, seeds, threads, &make) {
                    Ok(r) => Ok((r, 0)),
                    Err(code) => return code,
                },
            };
            let (mut report, events) = match run {
                Ok(r) => r,
                Err(v) => {
                    eprintln!(
                        "error: {}: {v} (a bug in portsim: please report it with the scenario)",
                        scenario.display()
                    );
                    return ExitCode::from(70);
                }
            };
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
            let written = emit(output.as_deref(), &text);
            if written != ExitCode::SUCCESS {
                return written;
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
            accept_delay,
            never_accept,
            fault_sysctl,
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
            let accept_delay = match accept_delay.as_deref().map(Duration::parse).transpose() {
                Ok(d) => std::time::Duration::from_nanos(d.map_or(0, |d| d.0)),
                Err(e) => {
                    eprintln!("error: --accept-delay: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let mut fault_sysctls = Vec::new();
            for f in &fault_sysctl {
                let Some((name, value)) = f.split_once('=') else {
                    eprintln!(
                        "error: --fault-sysctl {f:?}: expected NAME=VALUE, e.g. \
                         'net.ipv4.ip_local_port_range=40000 40004'"
                    );
                    return ExitCode::from(BAD_INPUT);
                };
                fault_sysctls.push((name.trim().to_string(), value.trim().to_string()));
            }
            let opts = live::Options {
                max_connections: max_connections
                    .or(sc.live.max_connections)
                    .unwrap_or(live::MAX_CONNECTIONS),
                server_faults: live::load::ServerFaults {
                    accept_delay,
                    never_accept,
                },
                fault_sysctls,
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
            let written = emit(output.as_deref(), &text);
            if written != ExitCode::SUCCESS {
                return written;
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
        Command::Plan {
            scenario,
            profile,
            server_profile,
            rate,
            poisson,
            client_ips,
            destinations,
            closer,
            requests_per_connection,
            rtt,
            connection,
            set,
            format,
            output,
            seeds,
        } => {
            let seeds = match parse_seeds(seeds.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let (file, text) = match (&scenario, rate) {
                (Some(path), None) => match read_text(path) {
                    Ok(t) => (path.display().to_string(), t),
                    Err(code) => return code,
                },
                (Some(_), Some(_)) => {
                    eprintln!("error: give a scenario or --rate and the other flags, not both");
                    return ExitCode::from(BAD_INPUT);
                }
                (None, None) => {
                    eprintln!(
                        "error: give a scenario file, or describe the load with flags, e.g. portsim plan --profile linux --rate 800/s"
                    );
                    return ExitCode::from(BAD_INPUT);
                }
                (None, Some(rate)) => {
                    let q = plan::Quick {
                        profile,
                        server_profile,
                        rate,
                        poisson,
                        client_ips,
                        destinations,
                        closer: match closer {
                            CloserArg::Client => crate::workload::Closer::Client,
                            CloserArg::Server => crate::workload::Closer::Server,
                        },
                        requests_per_connection,
                        rtt,
                        connection,
                    };
                    match plan::quick_scenario(&q) {
                        Ok(t) => ("(flags)".to_string(), t),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(BAD_INPUT);
                        }
                    }
                }
            };
            let changes = match parse_sets(&set) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let spin = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            spin.set_message("simulating the scenario and each remedy");
            spin.enable_steady_tick(std::time::Duration::from_millis(200));
            let planned = plan::plan_seeds(&file, &text, &changes, seeds);
            spin.finish_and_clear();
            let p = match planned {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let json = match format {
                Some(f) => matches!(f, LiveFormat::Json),
                None => extension_is(output.as_deref(), "json"),
            };
            let text = if json { p.to_json() } else { p.to_text() };
            emit(output.as_deref(), &text)
        }
        Command::Sweep {
            scenario,
            vary,
            set,
            format,
            output,
            plot: chart,
            metric,
            threads,
            shard,
            seeds,
        } => {
            let seeds = match parse_seeds(seeds.as_deref()) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let text = match read_text(&scenario) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let changes = match parse_sets(&set) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let bad = |e: sweep::SweepError| {
                eprintln!("error: {e}");
                ExitCode::from(BAD_INPUT)
            };
            let vary: Vec<sweep::Vary> = match vary.iter().map(|v| sweep::parse_vary(v)).collect() {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            if let Some(v) = vary
                .iter()
                .enumerate()
                .find(|(i, v)| vary[..*i].iter().any(|u| u.key == v.key))
                .map(|(_, v)| v)
            {
                eprintln!("error: --vary {}: varied twice; give each key once", v.key);
                return ExitCode::from(BAD_INPUT);
            }
            let shard = match shard.as_deref().map(sweep::parse_shard).transpose() {
                Ok(s) => s,
                Err(e) => return bad(e),
            };
            if threads == Some(0) {
                eprintln!("error: --threads: at least 1");
                return ExitCode::from(BAD_INPUT);
            }
            let format = match sweep_format(format, output.as_deref()) {
                Ok(f) => f,
                Err(code) => return code,
            };
            if let Some(p) = &chart
                && let Err(e) = plot::check_extension(p)
            {
                eprintln!("error: --plot {e}");
                return ExitCode::from(BAD_INPUT);
            }
            let file = scenario.display().to_string();
            let sw = match sweep::Sweep::new(&file, &text, &changes, &vary, shard) {
                Ok(s) => s.with_seeds(seeds),
                Err(e) => return bad(e),
            };
            let threads = threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            });
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(sw.len() as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} runs · {elapsed_precise} · about {eta} left",
                )
                .expect("a valid template"),
            );
            let report = sw.run(threads, &|| bar.inc(1));
            bar.finish_and_clear();
            write_sweep(&report, format, output.as_deref(), chart.as_deref(), metric)
        }
        Command::Merge {
            inputs,
            format,
            output,
            plot: chart,
            metric,
        } => {
            let format = match sweep_format(format, output.as_deref()) {
                Ok(f) => f,
                Err(code) => return code,
            };
            let mut parts = vec![];
            for i in &inputs {
                let text = match read_text(i) {
                    Ok(t) => t,
                    Err(code) => return code,
                };
                match serde_json::from_str::<sweep::SweepReport>(&text) {
                    Ok(r) => parts.push((i.display().to_string(), r)),
                    Err(e) => {
                        eprintln!(
                            "error: {}: not a `portsim sweep --format json` file: {e}",
                            i.display()
                        );
                        return ExitCode::from(BAD_INPUT);
                    }
                }
            }
            match sweep::merge(&parts) {
                Ok(r) => write_sweep(&r, format, output.as_deref(), chart.as_deref(), metric),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(BAD_INPUT)
                }
            }
        }
        Command::Schema => {
            print!("{}", scenario::json_schema());
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "portsim", &mut std::io::stdout());
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
            action,
            from_host,
            from_sysctl,
            from_netsh,
        } => {
            use crate::plan::import;
            let read = |p: &std::path::Path| -> Result<(String, String), ExitCode> {
                if p == std::path::Path::new("-") {
                    let mut b = vec![];
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map_err(|e| {
                        eprintln!("error: standard input: {e}");
                        ExitCode::from(BAD_INPUT)
                    })?;
                    let t = decode(&b).map_err(|e| {
                        eprintln!("error: standard input: {e}");
                        ExitCode::from(BAD_INPUT)
                    })?;
                    Ok(("standard input".into(), t))
                } else {
                    Ok((p.display().to_string(), read_text(p)?))
                }
            };
            let imported = if from_host {
                Some(import::from_proc(std::path::Path::new("/proc/sys")))
            } else if let Some(p) = &from_sysctl {
                match read(p) {
                    Ok((src, t)) => Some(import::from_sysctl(&src, &t)),
                    Err(code) => return code,
                }
            } else if let Some(p) = &from_netsh {
                match read(p) {
                    Ok((src, t)) => Some(import::from_netsh(&src, &t)),
                    Err(code) => return code,
                }
            } else {
                None
            };
            match (imported, action) {
                (Some(Ok(i)), _) => {
                    print!("{}", i.to_toml());
                    ExitCode::SUCCESS
                }
                (Some(Err(e)), _) => {
                    eprintln!("error: {e}");
                    ExitCode::from(BAD_INPUT)
                }
                (None, Some(ProfileAction::Show { name })) => match Profile::named(&name) {
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
                (None, None) => {
                    eprintln!(
                        "error: give `show NAME`, --from-host, --from-sysctl FILE or --from-netsh FILE"
                    );
                    ExitCode::from(BAD_INPUT)
                }
            }
        }
    }
}

/// The `--seeds A..B` argument, if given.
fn parse_seeds(arg: Option<&str>) -> Result<Option<crate::replicate::Seeds>, ExitCode> {
    arg.map(crate::replicate::Seeds::parse)
        .transpose()
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(BAD_INPUT)
        })
}

/// `sc` run once per seed on `threads` threads (default: every CPU), with a progress bar.
fn replicated(
    sc: &scenario::Scenario,
    seeds: crate::replicate::Seeds,
    threads: Option<usize>,
    make: &(dyn Fn(&scenario::Scenario) -> Simulation + Sync),
) -> Result<crate::report::Report, ExitCode> {
    if threads == Some(0) {
        eprintln!("error: --threads: at least 1");
        return Err(ExitCode::from(BAD_INPUT));
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(seeds.len()),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds · {elapsed_precise} · about {eta} left",
        )
        .expect("a valid template"),
    );
    let go = || crate::replicate::run(sc, seeds, make, &|| bar.inc(1));
    let report = match threads {
        None => go(),
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(go),
            Err(e) => {
                eprintln!("error: --threads {n}: {e}");
                return Err(ExitCode::FAILURE);
            }
        },
    };
    bar.finish_and_clear();
    report.map_err(|(seed, v)| {
        eprintln!(
            "error: {} with seed {seed}: {v} (a bug in portsim: please report it with the scenario)",
            sc.file
        );
        ExitCode::from(70)
    })
}

fn refuse(e: &ScenarioError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(BAD_INPUT)
}

pub use crate::write_atomically;

fn extension_is(path: Option<&std::path::Path>, ext: &str) -> bool {
    path.and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// A text file: UTF-8, or UTF-16 with its byte-order mark (what PowerShell 5.1's `>` writes).
fn read_text(path: &std::path::Path) -> Result<String, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(BAD_INPUT)
    };
    let bytes = std::fs::read(path).map_err(|e| fail(&e))?;
    decode(&bytes).map_err(|e| fail(&e))
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |le: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "not valid UTF-16 text".to_string())
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|_| "not valid UTF-8 text".to_string())
        }
        _ => String::from_utf8(bytes.to_vec()).map_err(|_| "not valid UTF-8 text".to_string()),
    }
}

fn parse_sets(set: &[String]) -> Result<Vec<whatif::Change>, ExitCode> {
    set.iter()
        .map(|s| whatif::parse_set(s))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            eprintln!("error: --set {e}");
            ExitCode::from(BAD_INPUT)
        })
}

/// A scenario file with `--set` changes made.
fn load_with(path: &std::path::Path, set: &[String]) -> Result<scenario::Scenario, ExitCode> {
    if set.is_empty() {
        return scenario::load(path).map_err(|e| refuse(&e));
    }
    let changes = parse_sets(set)?;
    let text = read_text(path)?;
    let file = path.display().to_string();
    scenario::parse(&file, &text).map_err(|e| refuse(&e))?;
    let text = whatif::apply(&file, &text, &changes).map_err(|e| {
        eprintln!("error: --set {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    scenario::parse(&file, &text).map_err(|e| refuse(&e))
}

fn emit(output: Option<&std::path::Path>, text: &str) -> ExitCode {
    match output {
        None => {
            if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
        }
        Some(path) => {
            if let Err(e) = write_atomically(path, text.as_bytes()) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn sweep_format(
    format: Option<SweepFormat>,
    output: Option<&std::path::Path>,
) -> Result<SweepFormat, ExitCode> {
    if let Some(f) = format {
        return Ok(f);
    }
    let ext = output
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        None | Some("csv") => Ok(SweepFormat::Csv),
        Some("json") => Ok(SweepFormat::Json),
        Some(other) => {
            eprintln!(
                "error: --output: .{other}: give --format csv or json, or name the file .csv or .json"
            );
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}

fn write_sweep(
    r: &sweep::SweepReport,
    format: SweepFormat,
    output: Option<&std::path::Path>,
    chart: Option<&std::path::Path>,
    metric: MetricArg,
) -> ExitCode {
    let text = match format {
        SweepFormat::Csv => r.to_csv(),
        SweepFormat::Json => r.to_json(),
    };
    let code = emit(output, &text);
    if code != ExitCode::SUCCESS {
        return code;
    }
    // The results first: a chart that cannot be drawn does not cost the runs.
    if chart.is_some() && r.rows.is_empty() {
        eprintln!("warning: no points in this shard: no chart drawn");
        return ExitCode::SUCCESS;
    }
    if let Some(p) = chart {
        match r.chart(metric.metric()) {
            Ok(c) => {
                if let Err(e) = c.save(p) {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
