//! `portsim run` (a scenario file, or a load generator's command line with `--tool`) and
//! `portsim check`.

use super::io::{
    check_plot, emit, load_with, parse_seeds, parse_sets, progress, refuse, with_changes,
};
use super::{BAD_INPUT, Outcome};
use crate::client::tools::{self, Destination, RenderError, RenderOptions};
use crate::plan::import;
use crate::plot;
use crate::report::Report;
use crate::scenario::{self, Scenario};
use crate::sim::Simulation;
use crate::time::Duration;
use clap::{Args, ValueEnum};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct RunArgs {
    /// The scenario file (TOML).
    #[arg(required_unless_present = "tool", conflicts_with = "tool")]
    scenario: Option<PathBuf>,
    /// A load generator's command line instead of a file, e.g. 'oha -c 50 -z 10s
    /// http://127.0.0.1:8080/' (oha, wrk, ab, hey, k6 run, memtier_benchmark,
    /// redis-benchmark, httperf), run on this host's kernel profile.
    #[arg(long, value_name = "COMMAND")]
    tool: Option<String>,
    /// With --tool: print the scenario it renders (to standard output or -o) instead of
    /// running it, to edit and run as a file.
    #[arg(long, requires = "tool")]
    print_scenario: bool,
    /// With --tool: the profile of the client and server hosts (default: this host's).
    #[arg(long, requires = "tool", value_name = "NAME")]
    profile: Option<String>,
    /// With --tool: the destination's IPv4 address and port, for a command that names a host
    /// or a k6 script.
    #[arg(long, requires = "tool", value_name = "IP:PORT")]
    address: Option<SocketAddrV4>,
    /// With --tool: the round-trip time (an assumption; default 200us).
    #[arg(long, requires = "tool", value_name = "DURATION")]
    rtt: Option<String>,
    /// With --tool: the server's time per request (an assumption; default 1ms).
    #[arg(long, requires = "tool", value_name = "DURATION")]
    service_time: Option<String>,
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

/// Exit status for a broken invariant: a bug in portsim (EX_SOFTWARE).
const BUG: u8 = 70;

/// `portsim run`: the report on standard output or `--output`, then the chart if asked.
pub(super) fn run(a: RunArgs) -> Outcome {
    let mut sc = match (&a.scenario, &a.tool) {
        (Some(path), _) => load_with(path, &a.set)?,
        (None, Some(line)) => match from_tool(line, &a)? {
            Some(sc) => sc,
            None => return Ok(ExitCode::SUCCESS),
        },
        (None, None) => {
            eprintln!("error: give a scenario file or --tool COMMAND");
            return Err(ExitCode::from(BAD_INPUT));
        }
    };
    if let Some(s) = a.seed {
        sc.seed = s;
    }
    if let Some(b) = &a.bin {
        sc.bin = parse_bin(b)?;
    }
    for w in &sc.warnings {
        eprintln!("warning: {w}");
    }
    check_plot(a.plot.as_deref())?;
    let wall = std::time::Instant::now();
    let (mut report, events) = simulate(&sc, &a)?;
    let wall = wall.elapsed().as_secs_f64();
    if a.stats {
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
    let text = match a.format {
        Format::Text => {
            let mut t = report.to_text();
            t.push_str(&format!("\n(simulated in {wall:.2} s of wall time)\n"));
            t
        }
        Format::Json => report.to_json(),
        Format::Csv => report.to_csv(),
    };
    emit(a.output.as_deref(), &text)?;
    // The report first: a chart that cannot be written does not cost the run.
    if let Some(p) = &a.plot
        && let Err(e) = plot::save(&plot::scenario_chart(&plot::ReportView::of(&report)), p)
    {
        eprintln!("error: {e}");
        return Err(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--bin` width: a duration above zero.
fn parse_bin(b: &str) -> Result<Duration, ExitCode> {
    match Duration::parse(b) {
        Ok(d) if d.0 > 0 => Ok(d),
        Ok(_) => {
            eprintln!("error: --bin {b:?}: must be greater than zero");
            Err(ExitCode::from(BAD_INPUT))
        }
        Err(e) => {
            eprintln!("error: --bin {b:?}: {e}");
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}

/// The report and the number of events: one run, or one per seed with `--seeds`.
fn simulate(sc: &Scenario, a: &RunArgs) -> Result<(Report, u64), ExitCode> {
    let (check, ports) = (a.check, a.ports);
    let make = move |sc: &Scenario| {
        Simulation::new(sc)
            .checking(check || cfg!(debug_assertions))
            .ports(ports)
    };
    let run = match parse_seeds(a.seeds.as_deref())? {
        None => make(sc).run_checked(),
        Some(seeds) => Ok((replicated(sc, seeds, a.threads, &make)?, 0)),
    };
    run.map_err(|v| {
        eprintln!(
            "error: {}: {v} (a bug in portsim: please report it with the scenario)",
            sc.file
        );
        ExitCode::from(BUG)
    })
}

/// `sc` run once per seed on `threads` threads (default: every CPU), with a progress bar.
fn replicated(
    sc: &Scenario,
    seeds: crate::replicate::Seeds,
    threads: Option<usize>,
    make: &(dyn Fn(&Scenario) -> Simulation + Sync),
) -> Result<Report, ExitCode> {
    if threads == Some(0) {
        eprintln!("error: --threads: at least 1");
        return Err(ExitCode::from(BAD_INPUT));
    }
    let bar = progress(seeds.len(), "seeds");
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
        ExitCode::from(BUG)
    })
}

/// The scenario a `--tool` command line renders to, on `--profile` or this host's profile,
/// with `--set` changes made; `None` when it was printed (`--print-scenario`) instead.
fn from_tool(line: &str, a: &RunArgs) -> Result<Option<Scenario>, ExitCode> {
    let bad = |e: &dyn std::fmt::Display| {
        eprintln!("error: --tool: {e}");
        ExitCode::from(BAD_INPUT)
    };
    let run = tools::parse(line).map_err(|e| bad(&e))?;
    if a.address.is_none() {
        needs_no_address(&run.destination).map_err(|e| bad(&e))?;
    }
    let (profile, note) = match &a.profile {
        Some(name) if crate::profile::Profile::named(name).is_some() => (name.clone(), None),
        Some(name) => {
            eprintln!("error: --profile {}", crate::profile::unknown_profile(name));
            return Err(ExitCode::from(BAD_INPUT));
        }
        None => {
            let (name, note) = local_profile();
            (name, Some(note))
        }
    };
    let mut opts = RenderOptions {
        profile,
        address: a.address,
        seed: a.seed.unwrap_or(1),
        ..RenderOptions::default()
    };
    if let Some(r) = &a.rtt {
        opts.rtt = assumption("--rtt", r)?;
    }
    if let Some(s) = &a.service_time {
        opts.service_time = assumption("--service-time", s)?;
    }
    let text = tools::render(&run, &opts).map_err(|e: RenderError| bad(&e))?;
    if let Some(note) = note {
        eprintln!(
            "note: {note}; this host's sysctls are not read (--set KNOB=VALUE, or --profile NAME)"
        );
    }
    let file = format!("--tool '{line}'");
    let text = with_sets(&file, text, &a.set)?;
    if a.print_scenario {
        emit(a.output.as_deref(), &text)?;
        return Ok(None);
    }
    scenario::parse(&file, &text)
        .map(Some)
        .map_err(|e| refuse(&e))
}

/// A destination the scenario cannot hold without `--address`: a host name or a k6 script,
/// and what to do.
fn needs_no_address(d: &Destination) -> Result<(), String> {
    match d {
        Destination::Addr(_) => Ok(()),
        Destination::Name { host, port } => Err(format!(
            "{host:?} is a host name and a scenario needs an address: resolve it (e.g. \
             `getent ahostsv4 {host}`) and run again with --address IP:{port}"
        )),
        Destination::Script { path } => Err(format!(
            "k6 reads its target from the script {path:?}, which portsim does not parse: run \
             again with --address IP:PORT (the address the script sends to; each iteration is \
             taken as one request)"
        )),
    }
}

/// `text` with the `--set` changes made.
fn with_sets(file: &str, text: String, set: &[String]) -> Result<String, ExitCode> {
    if set.is_empty() {
        return Ok(text);
    }
    with_changes(file, &text, &parse_sets(set)?)
}

/// A `--rtt` or `--service-time` duration.
fn assumption(flag: &str, s: &str) -> Result<Duration, ExitCode> {
    Duration::parse(s).map_err(|e| {
        eprintln!("error: {flag} {s:?}: {e}");
        ExitCode::from(BAD_INPUT)
    })
}

/// This host's profile and a sentence saying why: on Linux the newest shipped release at or
/// below the running kernel's (`kernel.osrelease`, as `portsim profile --from-host`); the
/// macOS, FreeBSD and Windows profiles on those systems; `linux` elsewhere.
fn local_profile() -> (String, String) {
    if cfg!(target_os = "linux") {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
        let (name, note) = import::linux_release(release.as_deref().map(str::trim));
        return (name.to_string(), note);
    }
    let os = std::env::consts::OS;
    match os {
        "macos" | "freebsd" | "windows" => (os.to_string(), format!("{os}: using profile {os:?}")),
        _ => (
            "linux".to_string(),
            format!("no profile for {os}: using \"linux\" (give --profile NAME)"),
        ),
    }
}

/// `portsim check`: the scenario's warnings, and a line counting its hosts and workloads.
pub(super) fn check(path: &Path) -> Outcome {
    let sc = scenario::load(path).map_err(|e| refuse(&e))?;
    for w in &sc.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: ok ({} hosts, {} workloads)",
        path.display(),
        sc.hosts.len(),
        sc.workloads.len()
    );
    Ok(ExitCode::SUCCESS)
}
