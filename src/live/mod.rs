//! Live mode: the scenario's workload on the real Linux stack, inside a private network
//! namespace, against the simulator's prediction for the same effective settings.
//!
//! - [`netns`]: the namespace, its addresses, its sysctls (never the host's), and the knobs
//!   a fault writes behind the prediction's back.
//! - [`load`]: the workload with real non-blocking sockets; its ends (`start`, `stop`,
//!   `limit`) shared by the client threads; the server's faults.
//! - [`diag`]: TIME-WAIT and ESTABLISHED counts by netlink sock_diag, and the table once the
//!   run is quiet.
//!
//! [`run`] must be called while the process has a single thread: it moves that thread into
//! the new namespace before starting the client, server and sampling threads. [`verdict`]
//! says whether the run agreed on the rows it judges.

pub mod diag;
pub mod load;
pub mod netns;

use crate::profile::{Kernel, Profile};
use crate::report::{Hist, Report};
use crate::scenario::Scenario;
use crate::sim::Simulation;
use crate::workload::Arrival;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

/// Why a live run could not happen or stopped.
#[derive(Debug)]
pub enum LiveError {
    /// The scenario asks for something the real kernel cannot do here (fatal, bad input).
    Refused(String),
    /// The namespace could not be set up (fatal: privileges or tools missing).
    Namespace(String),
    /// A socket or thread failed during the run (fatal).
    Io(String),
}

impl fmt::Display for LiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveError::Refused(m) => write!(f, "cannot run this scenario live: {m}"),
            LiveError::Namespace(m) => write!(f, "namespace: {m}"),
            LiveError::Io(m) => write!(f, "live run failed: {m}"),
        }
    }
}

impl std::error::Error for LiveError {}

/// Set by SIGINT: the run stops, reports what it measured, and the namespace goes with the
/// process.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Limits of a live run, and the faults it injects.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Hard cap on connections started (the run also ends at the scenario's duration).
    pub max_connections: u64,
    /// Fault injection, to check that a run can refute the prediction: the server's side.
    pub server_faults: load::ServerFaults,
    /// Fault injection: knobs written into the namespace after the prediction's were read
    /// back ([`netns::inject`]), as `(name, value)`.
    pub fault_sysctls: Vec<(String, String)>,
}

/// How long [`run`] waits, at most, for the namespace to go quiet before counting the
/// TIME-WAITs the run left (`time_wait_at_end`).
const SETTLE_BOUND: StdDuration = StdDuration::from_secs(2);

/// Default connection cap.
pub const MAX_CONNECTIONS: u64 = 2_000_000;

/// One bin as measured (read back by `portsim plot` from a saved live report).
#[derive(Serialize, serde::Deserialize, Debug, Clone)]
pub struct MeasuredBin {
    pub t_s: f64,
    pub attempts: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    pub requests_completed: u64,
    pub time_wait_client: u32,
    pub time_wait_server: u32,
    pub established_sockets_client: u32,
    pub established_sockets_server: u32,
    pub connect_latency_p50_ms: Option<f64>,
    pub connect_latency_max_ms: Option<f64>,
}

/// What the real kernel did.
#[derive(Serialize, Debug)]
pub struct Measured {
    pub attempted: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    pub requests_completed: u64,
    pub in_flight: u64,
    /// Largest TIME-WAIT count seen at a bin's end (sock_diag).
    pub time_wait_peak_sampled: u32,
    /// TIME-WAIT sockets the run left, counted once it was quiet (see [`run`]).
    pub time_wait_at_end: u32,
    /// How long that count waited for the namespace to go quiet after the clients stopped.
    pub settle_ms: f64,
    /// Whether it went quiet (no socket connecting, connected or closing) within 2 s.
    pub quiet: bool,
    pub connect_latency_ms: Lat,
    pub request_latency_ms: Lat,
    /// Local ports connect() (or bind()) handed out first, in order, every pool together (at
    /// most 1,000).
    pub first_ports: Vec<u16>,
    /// The same per pool, as the prediction's `pools[].port_use.first`: at most 1,000 each.
    pub first_ports_by_pool: BTreeMap<String, Vec<u16>>,
    /// Per pool, the leading run of even ports among its first ports, summed (see
    /// [`leading_even`]).
    pub leading_even_ports: u64,
    /// How each workload ended, in the scenario's order (next to the prediction's
    /// `workloads[]`).
    pub workloads: Vec<MeasuredWorkload>,
    pub capped: bool,
    /// Connections that failed after the handshake (reset, closed early), by errno.
    pub broken: BTreeMap<String, u64>,
    /// accept() calls the server could not complete for lack of descriptors or memory.
    pub accept_errors: u64,
    /// Share of the machine's CPUs this process (load generator, servers, and the kernel work
    /// done on their behalf) used during the run. Above 0.8 the rates measure this machine,
    /// not the kernel's port rules: a disagreement is reported as inconclusive.
    pub generator_busy: f64,
    /// Share of the machine's CPUs busy during the run, every process counted (/proc/stat).
    pub machine_busy: f64,
    pub interrupted: bool,
    /// Open-loop arrivals started more than 5 ms late: the generator's ceiling was reached.
    pub late_arrivals: u64,
    /// How late open-loop arrivals started (all zero for closed loops).
    pub arrival_lag_ms: Lat,
    pub wall_s: f64,
    pub series: Vec<MeasuredBin>,
}

/// How a workload ended in the live run.
#[derive(Serialize, Debug)]
pub struct MeasuredWorkload {
    pub name: String,
    /// When its limit was spent (or it stopped on an error), seconds from the start; the
    /// prediction's is `predicted.workloads[].stopped_s`.
    pub stopped_s: Option<f64>,
    /// Connections its limit let start, for a workload with a limit.
    pub limited_connections: Option<u64>,
    /// Those connections per second of the workload's activity until the limit was spent:
    /// the rate this machine reached (the prediction knows no CPU).
    pub connections_per_s: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct Lat {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Lat {
    fn of(h: &Hist) -> Lat {
        Lat {
            p50: h.percentile(0.5) as f64 / 1e6,
            p99: h.percentile(0.99) as f64 / 1e6,
            max: h.max() as f64 / 1e6,
        }
    }
}

/// One predicted-versus-measured comparison.
#[derive(Serialize, Debug)]
pub struct Check {
    pub metric: String,
    pub predicted: f64,
    pub measured: f64,
    /// "exact", "relative ≤ x" or "not judged …".
    pub rule: String,
    /// Whether the verdict rests on it.
    pub judged: bool,
    pub pass: bool,
}

/// The whole live report (`--format json`, schema `portsim.live/1`).
#[derive(Serialize, Debug)]
pub struct LiveReport {
    pub schema: &'static str,
    pub scenario: String,
    pub kernel: String,
    pub namespace: &'static str,
    /// The knobs as the namespace's kernel read them back; the prediction used these.
    pub effective_knobs: BTreeMap<String, String>,
    pub notes: Vec<String>,
    pub checks: Vec<Check>,
    pub verdict: &'static str,
    /// The run stopped early (Ctrl-C or the connection cap): only the whole bins it sampled
    /// are compared.
    pub partial: bool,
    pub measured: Measured,
    pub predicted: Report,
}

/// Busy and total jiffies of every CPU so far (/proc/stat's `cpu` line): busy is all but
/// idle and iowait.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// CPU time (user + system) of the whole process so far, in seconds.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills a zeroed local struct.
    let mut u: nix::libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { nix::libc::getrusage(nix::libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: nix::libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Refuses what the real stack in one namespace cannot reproduce.
pub fn check(sc: &Scenario) -> Result<Profile, LiveError> {
    let first = &sc.hosts[0];
    for h in &sc.hosts {
        if h.profile.kernel != Kernel::Linux {
            return Err(LiveError::Refused(format!(
                "host {:?} runs the {:?} profile; live mode runs on this machine's Linux kernel only",
                h.name, h.profile_name
            )));
        }
        let mut p = h.profile.clone();
        let linux = Profile::linux();
        for (field, differs) in [
            ("time_wait", p.time_wait != linux.time_wait),
            ("syn_rto", p.syn_rto != linux.syn_rto),
            ("port_selection", p.selection != linux.selection),
            ("port_scope", p.scope != linux.scope),
            ("isn", p.isn != linux.isn),
        ] {
            if differs {
                return Err(LiveError::Refused(format!(
                    "host {:?} sets model parameter `{field}`, which Linux fixes at build time; \
                     the real kernel cannot follow it",
                    h.name
                )));
            }
        }
        // Every host shares the namespace's one kernel: their knobs must agree.
        p.reserved_ports.sort();
        let mut q = first.profile.clone();
        q.reserved_ports.sort();
        if p != q {
            return Err(LiveError::Refused(format!(
                "hosts {:?} and {:?} have different knobs, but a live run puts every host in one \
                 namespace with one set of sysctls",
                first.name, h.name
            )));
        }
    }
    listener_specs(sc)?;
    for w in &sc.workloads {
        if let Some(n) = w.limit.requests
            && w.closer == crate::workload::Closer::Server
            && w.requests_per_connection > 0
            && n % u64::from(w.requests_per_connection) != 0
        {
            return Err(LiveError::Refused(format!(
                "workload {:?}: limit requests = {n} leaves a last connection with fewer than \
                 requests_per_connection = {} requests, and the live server, which closes \
                 first, cannot tell it from the others; make the limit a multiple",
                w.name, w.requests_per_connection
            )));
        }
    }
    Ok(first.profile.clone())
}

/// The behaviour each listener needs: the workloads whose destinations reach it (an exact
/// address listener, else the host's 0.0.0.0 one) must agree on request size, service time,
/// requests per connection, closer and linger.
fn listener_specs(sc: &Scenario) -> Result<BTreeMap<(u32, u16), load::ServerSpec>, LiveError> {
    let mut specs: BTreeMap<(u32, u16), load::ServerSpec> = BTreeMap::new();
    for w in &sc.workloads {
        for d in &w.destinations {
            let h = &sc.hosts[d.host as usize];
            let at = if h.listen.contains(&(d.ip, d.port)) {
                (d.ip, d.port)
            } else {
                (0, d.port)
            };
            let spec = load::ServerSpec::of(w);
            if let Some(other) = specs.insert(at, spec.clone())
                && other != spec
            {
                return Err(LiveError::Refused(format!(
                    "the listener {}:{} serves workloads with different request sizes, service \
                     times or closers; the live server needs one behaviour per listener",
                    Ipv4Addr::from(at.0),
                    at.1
                )));
            }
        }
    }
    Ok(specs)
}

/// Runs `sc` live and predicts it. Call with the process single-threaded.
///
/// The clients stop at the scenario's end (or on Ctrl-C, or at the cap) and reset what is
/// still open; the server keeps answering until the namespace is quiet, and the TIME-WAITs
/// are counted then ([`diag::Diag::settle`]): `time_wait_at_end`, the TIME-WAITs the run left
/// (none expires within a run, 60 s, §2.1), counted once and exactly, where a sample at a
/// bin's end can catch a TIME-WAIT between its recycling by a SYN (§2.4) and its successor's
/// close. The prediction's
/// is `summary.time_wait.at_end`: the TIME-WAITs at the end of the simulated run, which
/// holds none for connections open then, as the live run's reset leaves none (§2.5). The two
/// are alike when the workloads end (`stop`, `limit`) before the run does; with connections
/// crossing the end they can differ by the few closing at that instant.
pub fn run(sc: &Scenario, opts: Options) -> Result<LiveReport, LiveError> {
    let profile = check(sc)?;
    let privilege = netns::enter()?;
    let ips: BTreeSet<u32> = sc.hosts.iter().flat_map(|h| h.ips.clone()).collect();
    netns::add_addresses(&ips.into_iter().collect::<Vec<_>>())?;
    let (effective, mut notes) = netns::apply(&profile)?;
    if sc.workloads.iter().any(|w| w.local_port_range.is_some()) && !load::has_local_port_range() {
        return Err(LiveError::Refused(
            "local_port_range needs IP_LOCAL_PORT_RANGE, which this kernel lacks (Linux 6.3+)"
                .into(),
        ));
    }
    // Faults go in after the knobs the prediction uses were read back.
    for (name, value) in &opts.fault_sysctls {
        let got = netns::inject(name, value)?;
        notes.push(format!(
            "fault injected: {name} = {got} written into the namespace after the prediction's \
             knobs were read back; the prediction does not know it"
        ));
    }
    let faults = opts.server_faults;
    if !faults.accept_delay.is_zero() {
        notes.push(format!(
            "fault injected: the server waits {} before each accept(); the prediction does \
             not model accept()",
            crate::time::Duration(faults.accept_delay.as_nanos() as u64)
        ));
    }
    if faults.never_accept {
        notes.push(
            "fault injected: the server never calls accept(); the kernel completes handshakes \
             into the backlog and no request is answered"
                .into(),
        );
    }
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigint),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &handler) }
        .map_err(|e| LiveError::Io(format!("cannot install the SIGINT handler: {e}")))?;

    // Listeners, one behaviour each.
    let specs = listener_specs(sc)?;
    let mut listeners = Vec::new();
    let mut server_ports = BTreeSet::new();
    for h in &sc.hosts {
        for &(ip, port) in &h.listen {
            // A listener no workload reaches still holds its port, as in the prediction.
            let spec = specs.get(&(ip, port)).cloned().unwrap_or(load::ServerSpec {
                request_bytes: 1,
                requests_per_connection: 1,
                closer: crate::workload::Closer::Client,
                linger_zero: false,
                service: crate::workload::Dist::Fixed(crate::time::Duration(0)),
            });
            let l = load::listen(SocketAddrV4::new(Ipv4Addr::from(ip), port)).map_err(|e| {
                LiveError::Io(format!("listen on {}:{port}: {e}", Ipv4Addr::from(ip)))
            })?;
            listeners.push((l, spec));
            server_ports.insert(port);
        }
    }
    let mut diag = diag::Diag::open().map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?;
    // Clients stop at the end (or Ctrl-C, or the cap), keep their sockets until the last
    // sample (`release`), and the server outlives them all (`server_stop`).
    let stop = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let server_stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seed = sc.seed;
    let server = {
        let stop = server_stop.clone();
        std::thread::Builder::new()
            .name("portsim-server".into())
            .spawn(move || load::serve(listeners, seed, stop, faults))
            .map_err(|e| LiveError::Io(e.to_string()))?
    };
    let duration = StdDuration::from_nanos(sc.duration.0);
    let bin = StdDuration::from_nanos(sc.bin.0);
    let t0 = StdInstant::now() + StdDuration::from_millis(20);
    let cpu_before = process_cpu_s();
    let machine_before = machine_jiffies();
    let ends = Arc::new(load::Ends::new(&sc.workloads, seed, t0));
    let first_ports = Arc::new(load::FirstPorts::default());
    let threads = load::client_threads(&sc.workloads);
    let mut clients = Vec::new();
    for k in 0..threads {
        let stop = stop.clone();
        let release = release.clone();
        let started = started.clone();
        let ends = ends.clone();
        let first = first_ports.clone();
        let workloads = sc.workloads.clone();
        let cap = opts.max_connections;
        let handle = std::thread::Builder::new()
            .name(format!("portsim-client{k}"))
            .spawn(move || {
                load::Clients::new(
                    &workloads,
                    seed,
                    t0,
                    duration,
                    bin,
                    cap,
                    (k, threads),
                    started,
                    ends,
                    first,
                )?
                .run(&stop, &release)
            })
            .map_err(|e| LiveError::Io(e.to_string()))?;
        clients.push(handle);
    }
    // Sample the kernel's socket table at each bin's end.
    let mut samples = Vec::new();
    let nbins = sc.duration.0.div_ceil(sc.bin.0.max(1));
    let capped = || started.load(Ordering::Relaxed) >= opts.max_connections;
    for k in 1..=nbins {
        let at = t0 + bin * k as u32;
        while StdInstant::now() < at && !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(
                at.saturating_duration_since(StdInstant::now())
                    .min(StdDuration::from_millis(5)),
            );
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
        samples.push(
            diag.counts(&server_ports)
                .map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?,
        );
        if capped() {
            // The cap ended the workload: stop at this bin.
            break;
        }
    }
    let interrupted = INTERRUPTED.load(Ordering::SeqCst);
    let was_capped = capped();
    stop.store(true, Ordering::SeqCst);
    release.store(true, Ordering::SeqCst);
    let mut r: Option<load::ClientResult> = None;
    for c in clients {
        let part = c
            .join()
            .map_err(|_| LiveError::Io("a client thread panicked".into()))?
            .map_err(|e| LiveError::Io(format!("client: {e}")))?;
        match &mut r {
            None => r = Some(part),
            Some(all) => all.merge(part),
        }
    }
    let mut r = r.expect("at least one client thread");
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s() - cpu_before;
    let machine_busy = match (machine_before, machine_jiffies()) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            (busy1 - busy0) as f64 / (all1 - all0) as f64
        }
        _ => 0.0,
    };
    // The clients are gone: let the server answer what is left, then count once quiet.
    let settled = if interrupted {
        None
    } else {
        Some(
            diag.settle(&server_ports, SETTLE_BOUND, &|| {
                INTERRUPTED.load(Ordering::SeqCst)
            })
            .map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?,
        )
    };
    server_stop.store(true, Ordering::SeqCst);
    let accept_errors = server
        .join()
        .map_err(|_| LiveError::Io("the server thread panicked".into()))?
        .map_err(|e| LiveError::Io(format!("server: {e}")))?;
    let partial = interrupted || was_capped;
    if partial {
        // Compare only the whole bins sampled: drop what came after the last sample.
        r.bins.truncate(samples.len().max(1));
        r.attempted = r.bins.iter().map(|b| b.attempts).sum();
        r.established = r.bins.iter().map(|b| b.established).sum();
        r.requests = r.bins.iter().map(|b| b.requests).sum();
        let mut failed = BTreeMap::new();
        for b in &r.bins {
            for (k, v) in &b.failed {
                *failed.entry(k.clone()).or_insert(0) += v;
            }
        }
        r.failed = failed;
    }

    let series: Vec<MeasuredBin> = r
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let c = samples.get(i).copied().unwrap_or_default();
            MeasuredBin {
                t_s: i as f64 * sc.bin.as_secs_f64(),
                attempts: b.attempts,
                established: b.established,
                failed: b.failed.clone(),
                requests_completed: b.requests,
                time_wait_client: c.time_wait_client,
                time_wait_server: c.time_wait_server,
                established_sockets_client: c.established_client,
                established_sockets_server: c.established_server,
                connect_latency_p50_ms: (b.connect_latency.count() > 0)
                    .then(|| b.connect_latency.percentile(0.5) as f64 / 1e6),
                connect_latency_max_ms: (b.connect_latency.count() > 0)
                    .then(|| b.connect_latency.max() as f64 / 1e6),
            }
        })
        .collect();
    let by_pool: BTreeMap<String, Vec<u16>> = first_ports
        .by_pool()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let workloads = sc
        .workloads
        .iter()
        .zip(ends.ended())
        .map(|(w, e)| {
            let limited = w.limit.is_set();
            let stopped_s = e.stopped.map(|d| d.as_secs_f64());
            MeasuredWorkload {
                name: w.name.clone(),
                stopped_s,
                limited_connections: limited.then_some(e.connections),
                connections_per_s: stopped_s
                    .map(|s| s - w.start.as_secs_f64())
                    .filter(|&s| limited && s > 0.0)
                    .map(|s| e.connections as f64 / s),
            }
        })
        .collect();
    let last_tw = samples.last().map_or(0, |c| c.time_wait());
    let measured = Measured {
        attempted: r.attempted,
        established: r.established,
        failed: r.failed,
        requests_completed: r.requests,
        in_flight: r.in_flight,
        time_wait_peak_sampled: samples.iter().map(|c| c.time_wait()).max().unwrap_or(0),
        time_wait_at_end: settled.map_or(last_tw, |s| s.counts.time_wait()),
        settle_ms: settled.map_or(0.0, |s| s.waited.as_secs_f64() * 1e3),
        quiet: settled.is_some_and(|s| s.quiet),
        connect_latency_ms: Lat::of(&r.connect_latency),
        request_latency_ms: Lat::of(&r.request_latency),
        first_ports: first_ports.all(),
        leading_even_ports: by_pool.values().map(|v| leading_even(v)).sum(),
        first_ports_by_pool: by_pool,
        workloads,
        capped: was_capped,
        broken: r.broken,
        accept_errors,
        generator_busy: cpu_s
            / (wall_s.max(1e-9)
                * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
        machine_busy,
        interrupted,
        late_arrivals: r.late_arrivals,
        arrival_lag_ms: Lat::of(&r.arrival_lag),
        wall_s,
        series,
    };

    // The prediction, with the settings the namespace's kernel reported.
    let mut predicted_sc = sc.clone();
    for h in &mut predicted_sc.hosts {
        h.profile = effective.clone();
    }
    // Loopback cannot be given the scenario's RTT; the prediction takes the one measured
    // (the median connect latency: one round trip plus the kernel's and the loop's work).
    if r.connect_latency.count() > 0 {
        let rtt = crate::time::Duration(r.connect_latency.percentile(0.5));
        for w in &mut predicted_sc.workloads {
            w.rtt = crate::workload::Dist::Fixed(rtt);
        }
        notes.push(format!(
            "the prediction uses the measured loopback round trip, {rtt} (median connect \
             latency), in place of the scenario's rtt"
        ));
    }
    if partial && !samples.is_empty() {
        // Predict the part that ran: the whole bins sampled before Ctrl-C.
        predicted_sc.duration = crate::time::Duration(sc.bin.0 * samples.len() as u64);
    }
    if interrupted {
        notes.push("time_wait_at_end is the last sample's count: Ctrl-C ended the run".into());
    } else if !measured.quiet {
        notes.push(format!(
            "the namespace was not quiet {:.0} ms after the clients stopped (sockets still \
             connecting, connected or closing); time_wait_at_end was counted then",
            measured.settle_ms
        ));
    }
    let predicted = Simulation::new(&predicted_sc).ports(true).run();
    let checks = compare(sc, &predicted, &measured);
    let excuse = could_not_keep_up(sc, &predicted, &measured);
    let (verdict, why) = verdict(&checks, measured.interrupted, was_capped, excuse);
    notes.extend(why);
    Ok(LiveReport {
        schema: "portsim.live/1",
        scenario: sc.name.clone(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        namespace: match privilege {
            netns::Privilege::Root => "network namespace (root)",
            netns::Privilege::UserNamespace => "user + network namespace (unprivileged)",
        },
        effective_knobs: effective
            .knob_values()
            .into_iter()
            .filter(|(k, _)| k.starts_with("net."))
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        notes,
        checks,
        verdict,
        partial: measured.interrupted || measured.capped,
        measured,
        predicted,
    })
}

/// The length of the leading run of even ports in `ports`. Linux's connect() scans the ports
/// of `low`'s parity first, even ones for the default 32768 (§1.2 step 6), and takes one
/// of the other parity only once none is free; bind(0) starts on the other parity (odd).
pub fn leading_even(ports: &[u16]) -> u64 {
    ports.iter().take_while(|p| *p % 2 == 0).count() as u64
}

/// Why a difference would say nothing about the port model: the machine could not run the
/// workload as scheduled. `None` when it could.
fn could_not_keep_up(sc: &Scenario, p: &Report, m: &Measured) -> Option<String> {
    if m.accept_errors > 0 {
        return Some(format!(
            "the server failed {} accept() calls for lack of descriptors or memory",
            m.accept_errors
        ));
    }
    if m.late_arrivals * 100 > m.attempted.max(1) {
        return Some(format!(
            "the generator fell behind its arrivals: {} of {} started more than 5 ms late",
            m.late_arrivals, m.attempted
        ));
    }
    if m.generator_busy <= 0.8 && m.machine_busy <= 0.9 {
        return None;
    }
    let cpu = format!(
        "the machine was CPU-bound (this run used {:.0} % of its CPUs, every process {:.0} %)",
        100.0 * m.generator_busy,
        100.0 * m.machine_busy
    );
    if sc
        .workloads
        .iter()
        .any(|w| matches!(w.arrival, Arrival::Closed { .. }) && !w.limit.is_set())
    {
        return Some(format!(
            "{cpu}, and a closed loop's rate is what the CPU allows"
        ));
    }
    // A limit the prediction reached and the run did not, while the run was still
    // establishing connections at its end: the machine was too slow, not the ports.
    let working = m.series.last().is_some_and(|b| b.established > 0);
    let unfinished = sc
        .workloads
        .iter()
        .zip(&p.workloads)
        .zip(&m.workloads)
        .any(|((w, pw), mw)| w.limit.is_set() && pw.stopped_s.is_some() && mw.stopped_s.is_none());
    (working && unfinished).then(|| {
        format!("{cpu}, and it was still working through a limit the prediction reached when the run ended")
    })
}

/// The verdict on a run's checks, and the note that says why when it is not plain. `agree`
/// needs every judged check to pass and at least one judged metric the run produced (non-zero
/// on a side): judged metrics that are all zero on both sides could not have shown a
/// difference, so such a run is `inconclusive`. A failing check is `disagree`, or
/// `inconclusive` with `excuse` (the machine could not keep up).
pub fn verdict(
    checks: &[Check],
    interrupted: bool,
    capped: bool,
    excuse: Option<String>,
) -> (&'static str, Option<String>) {
    if interrupted {
        return ("interrupted", None);
    }
    if capped {
        return ("capped", None);
    }
    let judged: Vec<&Check> = checks.iter().filter(|c| c.judged).collect();
    if judged.is_empty() {
        return (
            "inconclusive",
            Some("inconclusive: no metric is judged".into()),
        );
    }
    if judged.iter().all(|c| c.pass) {
        if judged
            .iter()
            .any(|c| c.predicted != 0.0 || c.measured != 0.0)
        {
            return ("agree", None);
        }
        return (
            "inconclusive",
            Some(
                "inconclusive: every judged metric is zero, predicted and measured, so this \
                 run could not have shown a difference"
                    .into(),
            ),
        );
    }
    match excuse {
        Some(why) => (
            "inconclusive",
            Some(format!(
                "inconclusive: {why}; the difference says nothing about the port model"
            )),
        ),
        None => ("disagree", None),
    }
}

/// Predicted against measured, by the scenario's `[live]` tolerances. `leading_even_ports`
/// is not judged unless named where the application or IP_LOCAL_PORT_RANGE picks the ports
/// (explicit ports; no parity rule with a per-socket range, §1.2 step 6).
fn compare(sc: &Scenario, p: &Report, m: &Measured) -> Vec<Check> {
    let tol = sc.live.tolerance;
    let predicted_even: u64 = p
        .pools
        .iter()
        .filter_map(|pool| pool.port_use.as_ref())
        .map(|u| leading_even(&u.first))
        .sum();
    let mut rows: Vec<(String, f64, f64)> = vec![
        (
            "attempted".into(),
            p.summary.connections.attempted as f64,
            m.attempted as f64,
        ),
        (
            "established".into(),
            p.summary.connections.established as f64,
            m.established as f64,
        ),
        (
            "failed".into(),
            p.summary.connections.failed as f64,
            m.failed.values().sum::<u64>() as f64,
        ),
        (
            "requests_completed".into(),
            p.summary.requests.completed as f64,
            m.requests_completed as f64,
        ),
        (
            "time_wait_peak".into(),
            p.series
                .iter()
                .map(|b| b.time_wait_client + b.time_wait_server)
                .max()
                .unwrap_or(0) as f64,
            f64::from(m.time_wait_peak_sampled),
        ),
        (
            "time_wait_at_end".into(),
            f64::from(p.summary.time_wait.at_end),
            f64::from(m.time_wait_at_end),
        ),
        (
            "leading_even_ports".into(),
            predicted_even as f64,
            m.leading_even_ports as f64,
        ),
    ];
    let names: BTreeSet<String> = p
        .summary
        .errors
        .keys()
        .map(|k| k.to_string())
        .chain(m.failed.keys().cloned())
        .collect();
    for n in names {
        rows.push((
            format!("failed {n}"),
            p.summary.errors.get(n.as_str()).copied().unwrap_or(0) as f64,
            m.failed.get(&n).copied().unwrap_or(0) as f64,
        ));
    }
    let app_ports = sc.workloads.iter().any(|w| {
        matches!(w.mode, crate::workload::Mode::Explicit { .. }) || w.local_port_range.is_some()
    });
    rows.into_iter()
        .map(|(metric, predicted, measured)| {
            let named = |list: &[String]| {
                list.iter()
                    .any(|e| metric == *e || metric.starts_with(&format!("{e} ")))
            };
            let exact = named(&sc.live.exact);
            let ignored = named(&sc.live.ignore);
            let unruled = metric == "leading_even_ports" && app_ports && !exact;
            let (rule, judged, pass) = if ignored {
                ("not judged".to_string(), false, true)
            } else if unruled {
                (
                    "not judged: the application picks the ports".to_string(),
                    false,
                    true,
                )
            } else if exact {
                ("exact".to_string(), true, predicted == measured)
            } else {
                (
                    format!("relative ≤ {tol}"),
                    true,
                    (predicted - measured).abs() <= tol * predicted.abs().max(measured.abs()),
                )
            };
            Check {
                metric,
                predicted,
                measured,
                rule,
                judged,
                pass,
            }
        })
        .collect()
}

impl LiveReport {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("serializable");
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let m = &self.measured;
        let _ = writeln!(
            o,
            "portsim live · {} · Linux {} · {} · {:.1} s wall",
            self.scenario, self.kernel, self.namespace, m.wall_s
        );
        let knobs: Vec<String> = self
            .effective_knobs
            .iter()
            .map(|(k, v)| format!("{} = {v}", k.trim_start_matches("net.ipv4.")))
            .collect();
        let _ = writeln!(o, "kernel knobs  {}", knobs.join(" · "));
        for n in &self.notes {
            let _ = writeln!(o, "note          {n}");
        }
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<28} {:>12} {:>12} {:>9}  rule",
            "", "predicted", "measured", "diff"
        );
        for c in &self.checks {
            let diff = if c.predicted == 0.0 && c.measured == 0.0 {
                "0".to_string()
            } else {
                format!(
                    "{:+.1}%",
                    100.0 * (c.measured - c.predicted) / c.predicted.abs().max(c.measured.abs())
                )
            };
            let _ = writeln!(
                o,
                "{:<28} {:>12} {:>12} {:>9}  {} {}",
                c.metric,
                c.predicted,
                c.measured,
                diff,
                c.rule,
                match (c.judged, c.pass) {
                    (false, _) => "",
                    (true, true) => "ok",
                    (true, false) => "DIFFERS",
                }
            );
        }
        // The two series side by side, at most about 20 rows.
        let ps = &self.predicted.series;
        let step = m.series.len().div_ceil(20).max(1);
        let _ = writeln!(
            o,
            "\n{:>8}  {:>21}  {:>21}  {:>21}",
            "t", "established p / m", "failed p / m", "TIME-WAIT p / m"
        );
        for (i, b) in m.series.iter().enumerate().step_by(step) {
            let Some(p) = ps.get(i) else { break };
            let pf: u64 = p.failed.values().sum();
            let mf: u64 = b.failed.values().sum();
            let _ = writeln!(
                o,
                "{:>7.3}s  {:>10} / {:<8}  {:>10} / {:<8}  {:>10} / {:<8}",
                b.t_s,
                p.established,
                b.established,
                pf,
                mf,
                p.time_wait_client + p.time_wait_server,
                b.time_wait_client + b.time_wait_server
            );
        }
        let _ = writeln!(
            o,
            "\nTIME-WAIT at end counted {:.0} ms after the clients stopped{}",
            m.settle_ms,
            if m.quiet {
                ", the namespace quiet"
            } else {
                ", the namespace not yet quiet"
            }
        );
        for (i, w) in m.workloads.iter().enumerate() {
            let predicted = self.predicted.workloads.get(i).and_then(|p| p.stopped_s);
            if w.stopped_s.is_none() && predicted.is_none() {
                continue;
            }
            let at = |s: Option<f64>| s.map_or("not reached".to_string(), |s| format!("{s:.3} s"));
            let _ = write!(
                o,
                "workload {}: stopped at {} (predicted {})",
                w.name,
                at(w.stopped_s),
                at(predicted)
            );
            match (w.limited_connections, w.connections_per_s) {
                (Some(n), Some(rate)) => {
                    let _ = writeln!(o, ": {n} connections at {rate:.0}/s on this machine");
                }
                _ => {
                    let _ = writeln!(o);
                }
            }
        }
        let _ = writeln!(
            o,
            "connect latency measured p50 {:.3} ms · p99 {:.3} ms · max {:.3} ms; requests p50 {:.3} ms · max {:.3} ms",
            m.connect_latency_ms.p50,
            m.connect_latency_ms.p99,
            m.connect_latency_ms.max,
            m.request_latency_ms.p50,
            m.request_latency_ms.max
        );
        if m.generator_busy > 0.8 || m.machine_busy > 0.9 {
            let _ = writeln!(
                o,
                "the machine was CPU-bound (this run {:.0} %, every process {:.0} % of its CPUs): rates measure this machine",
                100.0 * m.generator_busy,
                100.0 * m.machine_busy
            );
        }
        if m.late_arrivals > 0 {
            let _ = writeln!(
                o,
                "generator fell behind: {} arrivals started more than 5 ms late (lag p50 {:.3} ms · p99 {:.3} ms · max {:.3} ms)",
                m.late_arrivals, m.arrival_lag_ms.p50, m.arrival_lag_ms.p99, m.arrival_lag_ms.max
            );
        }
        if m.capped {
            let _ = writeln!(
                o,
                "stopped at the connection cap; the part that ran is compared"
            );
        }
        if !m.broken.is_empty() {
            let _ = writeln!(o, "connections broken after the handshake: {:?}", m.broken);
        }
        if m.accept_errors > 0 {
            let _ = writeln!(
                o,
                "the server failed {} accept() calls (descriptors or memory)",
                m.accept_errors
            );
        }
        let _ = writeln!(o, "verdict: {}", self.verdict);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(metric: &str, predicted: f64, measured: f64, judged: bool) -> Check {
        Check {
            metric: metric.into(),
            predicted,
            measured,
            rule: String::new(),
            judged,
            pass: !judged || predicted == measured,
        }
    }

    #[test]
    fn a_verdict_on_zeros_alone_is_inconclusive_however_much_else_ran() {
        let checks = [
            row("failed", 0.0, 0.0, true),
            row("time_wait_at_end", 0.0, 0.0, true),
            // The run: established far apart, but ignored.
            row("established", 110_336.0, 128.0, false),
        ];
        let (v, why) = verdict(&checks, false, false, None);
        assert_eq!(v, "inconclusive");
        assert!(why.unwrap().contains("zero"));
    }

    #[test]
    fn agree_needs_one_judged_metric_the_run_produced() {
        let checks = [
            row("failed", 0.0, 0.0, true),
            row("established", 25.0, 25.0, true),
        ];
        assert_eq!(verdict(&checks, false, false, None), ("agree", None));
        // A difference on one side only is a difference, not a zero.
        let checks = [row("failed", 0.0, 3.0, true)];
        assert_eq!(verdict(&checks, false, false, None).0, "disagree");
        assert_eq!(verdict(&[], false, false, None).0, "inconclusive");
    }

    #[test]
    fn a_difference_is_inconclusive_only_with_an_excuse_and_a_stop_outranks_both() {
        let checks = [row("established", 100.0, 60.0, true)];
        assert_eq!(verdict(&checks, false, false, None).0, "disagree");
        let (v, why) = verdict(&checks, false, false, Some("the machine was busy".into()));
        assert_eq!(v, "inconclusive");
        assert!(why.unwrap().contains("the machine was busy"));
        assert_eq!(verdict(&checks, true, true, None).0, "interrupted");
        assert_eq!(verdict(&checks, false, true, None).0, "capped");
    }

    #[test]
    fn leading_even_counts_the_first_pass_only() {
        assert_eq!(leading_even(&[40000, 40008, 40004, 40001, 40002]), 3);
        assert_eq!(leading_even(&[40001, 40000]), 0);
        assert_eq!(leading_even(&[]), 0);
    }
}
