//! Live mode: the scenario's workload on the real Linux stack, inside a private network
//! namespace, against the simulator's prediction for the same effective settings.
//!
//! - [`netns`]: the namespace, its addresses, its sysctls (never the host's), and the knobs
//!   a fault writes behind the prediction's back.
//! - [`load`]: the workload with real non-blocking sockets; its ends (`start`, `stop`,
//!   `limit`) shared by the client threads; the server's faults.
//! - [`diag`]: TIME-WAIT and ESTABLISHED counts by netlink sock_diag, and the table once the
//!   run is quiet.
//! - [`mod@verdict`]: predicted against measured, row by row, and the verdict.
//! - [`calibrate`], [`reconnect`]: what connect() costs on this kernel, and memtier's
//!   reconnect loop measured against the prediction with that cost.
//! - [`topology`], [`mod@nat`], [`conntrack`]: a scenario with a `[[nat]]` runs its clients
//!   in a namespace behind a router namespace with the NAT's nftables rule, and the
//!   router's conntrack table is read through ctnetlink at every bin's end.
//!
//! [`run`] must be called while the process has a single thread: it moves that thread into
//! the new namespace before starting the client, server and sampling threads. [`verdict()`]
//! says whether the run agreed on the rows it judges.

pub mod calibrate;
pub mod conntrack;
pub mod diag;
pub mod load;
pub mod nat;
pub mod netns;
pub mod reconnect;
pub mod topology;
pub mod verdict;

pub use verdict::verdict;

use crate::profile::{Kernel, Profile};
use crate::report::{Hist, Report};
use crate::scenario::Scenario;
use crate::sim::Simulation;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
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
    /// Per NAT: its conntrack table at the bin's end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<nat::NatBin>,
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
    /// Per NAT: its conntrack table at the end and its counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<nat::MeasuredNat>,
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

impl Check {
    /// The text report's last column: "ok", "DIFFERS", or nothing for a row not judged.
    pub fn mark(&self) -> &'static str {
        match (self.judged, self.pass) {
            (false, _) => "",
            (true, true) => "ok",
            (true, false) => "DIFFERS",
        }
    }
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
    nat::check(sc)?;
    for w in &sc.workloads {
        if w.pool.is_some() {
            return Err(LiveError::Refused(format!(
                "workload {:?} has a client pool ([workload.pool] or [workload.library]), which \
                 the live load generator does not run yet",
                w.name
            )));
        }
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
    let (effective, mut notes) = set_up(sc, &profile)?;
    let mut nat_run = nat::set_up(sc, &mut notes)?;
    if let Some(n) = &nat_run {
        let (_, inside_notes) = topology::within(&n.net.inside, || netns::apply(&profile))??;
        notes.extend(inside_notes);
    }
    inject_faults(&opts, nat_run.as_ref(), &mut notes)?;
    catch_sigint()?;
    let (listeners, server_ports) = listeners(sc)?;
    let mut diag = open_diag(nat_run.as_ref())?;
    let inside = nat_run.as_ref().map(|n| n.net.inside.clone());
    let running = Running::start(sc, &opts, listeners, inside)?;
    let mut watch = nat_run.as_mut().map(|n| &mut n.watch);
    let samples = running.sample(
        sc,
        &mut diag,
        &server_ports,
        opts.max_connections,
        &mut watch,
    )?;
    if let Some(w) = watch {
        w.finish()?;
    }
    let finished = running.finish(&mut diag, &server_ports, opts.max_connections)?;
    let rtt = (finished.r.connect_latency.count() > 0)
        .then(|| crate::time::Duration(finished.r.connect_latency.percentile(0.5)));
    let mut measured = measure(sc, finished, &samples);
    if let Some(n) = &nat_run {
        measured_nat(&mut measured, n, samples.len());
    }
    let predicted = predict(
        sc,
        (&effective, nat_run.as_ref()),
        rtt,
        samples.len(),
        &measured,
        &mut notes,
    );
    let checks = verdict::compare(sc, &predicted, &measured);
    let excuse = verdict::could_not_keep_up(sc, &predicted, &measured);
    let (verdict, why) = verdict(&checks, measured.interrupted, measured.capped, excuse);
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

/// sock_diag in the run's namespace, and in the clients' behind a NAT.
fn open_diag(nat_run: Option<&nat::NatRun>) -> Result<diag::Diag, LiveError> {
    let err = |e: std::io::Error| LiveError::Io(format!("sock_diag: {e}"));
    let mut diag = diag::Diag::open().map_err(err)?;
    if let Some(n) = nat_run {
        diag.join(topology::within(&n.net.inside, diag::Diag::open)?.map_err(err)?);
    }
    Ok(diag)
}

/// The NAT's table at the end and its counters, and its gauges in every bin measured.
fn measured_nat(m: &mut Measured, n: &nat::NatRun, sampled: usize) {
    let bins = m.series.len().min(sampled);
    for (b, s) in m.series.iter_mut().zip(&n.watch.samples) {
        b.nat = vec![nat::NatBin::of(s)];
    }
    m.nat = vec![nat::MeasuredNat::of(&n.net.name, &n.watch, bins.max(1))];
}

/// The namespace made ready: the addresses of the hosts not behind a NAT (those behind one
/// get theirs in their own namespace, [`topology::build`]), then `profile`'s knobs. Returns
/// the knobs as the namespace's kernel read them back (what the prediction uses) and notes
/// on them.
fn set_up(sc: &Scenario, profile: &Profile) -> Result<(Profile, Vec<String>), LiveError> {
    let behind: BTreeSet<usize> = sc.nats.iter().flat_map(|n| n.behind.clone()).collect();
    let ips: BTreeSet<u32> = (0..sc.hosts.len())
        .filter(|h| !behind.contains(h))
        .flat_map(|h| sc.hosts[h].ips.clone())
        .collect();
    netns::add_addresses(&ips.into_iter().collect::<Vec<_>>())?;
    let (effective, notes) = netns::apply(profile)?;
    if sc.workloads.iter().any(|w| w.local_port_range.is_some()) && !load::has_local_port_range() {
        return Err(LiveError::Refused(
            "local_port_range needs IP_LOCAL_PORT_RANGE, which this kernel lacks (Linux 6.3+)"
                .into(),
        ));
    }
    Ok((effective, notes))
}

/// Writes the fault knobs into the namespace, after the knobs the prediction uses were read
/// back, and notes every fault, the server's too: the prediction knows none of them.
fn inject_faults(
    opts: &Options,
    nat_run: Option<&nat::NatRun>,
    notes: &mut Vec<String>,
) -> Result<(), LiveError> {
    for (name, value) in &opts.fault_sysctls {
        let got = match nat::inject(nat_run, name, value)? {
            Some(got) => got,
            None => netns::inject(name, value)?,
        };
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
    Ok(())
}

/// Installs the SIGINT handler that sets [`INTERRUPTED`].
fn catch_sigint() -> Result<(), LiveError> {
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigint),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &handler) }
        .map(|_| ())
        .map_err(|e| LiveError::Io(format!("cannot install the SIGINT handler: {e}")))
}

/// Listening sockets with the behaviour each serves.
type Listeners = Vec<(std::net::TcpListener, load::ServerSpec)>;

/// A listener on every address a host listens on, one behaviour each, and the ports they
/// listen on (how sock_diag tells the server's sockets from the clients').
fn listeners(sc: &Scenario) -> Result<(Listeners, BTreeSet<u16>), LiveError> {
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
    Ok((listeners, server_ports))
}

/// A run in progress: the server and client threads, the flags that end them, and what
/// they share.
struct Running {
    /// Clients stop at the end (or Ctrl-C, or the cap) ...
    stop: Arc<AtomicBool>,
    /// ... keep their sockets until the last sample ...
    release: Arc<AtomicBool>,
    /// ... and the server outlives them all.
    server_stop: Arc<AtomicBool>,
    /// Connections started, against the cap.
    started: Arc<AtomicU64>,
    server: JoinHandle<std::io::Result<u64>>,
    clients: Vec<JoinHandle<std::io::Result<load::ClientResult>>>,
    /// When the clients' schedule starts.
    t0: StdInstant,
    /// The process's CPU seconds and the machine's jiffies at the start.
    cpu_before: f64,
    machine_before: Option<(u64, u64)>,
    ends: Arc<load::Ends>,
    first_ports: Arc<load::FirstPorts>,
}

/// What a finished run leaves to measure.
struct Finished {
    r: load::ClientResult,
    interrupted: bool,
    capped: bool,
    wall_s: f64,
    /// CPU seconds the process used during the run.
    cpu_s: f64,
    machine_busy: f64,
    /// The count once the namespace was quiet (or the bound passed); `None` after Ctrl-C.
    settled: Option<diag::Settled>,
    accept_errors: u64,
    ends: Arc<load::Ends>,
    first_ports: Arc<load::FirstPorts>,
}

impl Running {
    /// Starts the server thread on `listeners`, then the client threads, 20 ms ahead of
    /// their schedule.
    /// Behind a NAT, the client threads run in the clients' namespace, `inside`.
    fn start(
        sc: &Scenario,
        opts: &Options,
        listeners: Listeners,
        inside: Option<topology::Netns>,
    ) -> Result<Running, LiveError> {
        let server_stop = Arc::new(AtomicBool::new(false));
        let (seed, faults) = (sc.seed, opts.server_faults);
        let server = {
            let stop = server_stop.clone();
            std::thread::Builder::new()
                .name("portsim-server".into())
                .spawn(move || load::serve(listeners, seed, stop, faults))
                .map_err(|e| LiveError::Io(e.to_string()))?
        };
        let t0 = StdInstant::now() + StdDuration::from_millis(20);
        let mut running = Running {
            stop: Arc::new(AtomicBool::new(false)),
            release: Arc::new(AtomicBool::new(false)),
            server_stop,
            started: Arc::new(AtomicU64::new(0)),
            server,
            clients: Vec::new(),
            t0,
            cpu_before: process_cpu_s(),
            machine_before: machine_jiffies(),
            ends: Arc::new(load::Ends::new(&sc.workloads, seed, t0)),
            first_ports: Arc::new(load::FirstPorts::default()),
        };
        let threads = load::client_threads(&sc.workloads);
        for k in 0..threads {
            let client =
                running.spawn_client(sc, (k, threads), opts.max_connections, inside.clone())?;
            running.clients.push(client);
        }
        Ok(running)
    }

    /// Client thread `part.0` of `part.1`.
    fn spawn_client(
        &self,
        sc: &Scenario,
        part: (u64, u64),
        cap: u64,
        inside: Option<topology::Netns>,
    ) -> Result<JoinHandle<std::io::Result<load::ClientResult>>, LiveError> {
        let stop = self.stop.clone();
        let release = self.release.clone();
        let started = self.started.clone();
        let ends = self.ends.clone();
        let first = self.first_ports.clone();
        let workloads = sc.workloads.clone();
        let (seed, t0) = (sc.seed, self.t0);
        let duration = StdDuration::from_nanos(sc.duration.0);
        let bin = StdDuration::from_nanos(sc.bin.0);
        std::thread::Builder::new()
            .name(format!("portsim-client{}", part.0))
            .spawn(move || {
                if let Some(ns) = inside {
                    ns.enter()?;
                }
                load::Clients::new(
                    &workloads, seed, t0, duration, bin, cap, part, started, ends, first,
                )?
                .run(&stop, &release)
            })
            .map_err(|e| LiveError::Io(e.to_string()))
    }

    /// The kernel's socket table sampled at each bin's end, until the scenario's end, Ctrl-C
    /// or the cap.
    fn sample(
        &self,
        sc: &Scenario,
        diag: &mut diag::Diag,
        server_ports: &BTreeSet<u16>,
        cap: u64,
        watch: &mut Option<&mut nat::Watch>,
    ) -> Result<Vec<diag::Counts>, LiveError> {
        let bin = StdDuration::from_nanos(sc.bin.0);
        let mut samples = Vec::new();
        let nbins = sc.duration.0.div_ceil(sc.bin.0.max(1));
        for k in 1..=nbins {
            let at = self.t0 + bin * k as u32;
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
                diag.counts(server_ports)
                    .map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?,
            );
            if let Some(w) = watch {
                w.sample()?;
            }
            if self.started.load(Ordering::Relaxed) >= cap {
                // The cap ended the workload: stop at this bin.
                break;
            }
        }
        Ok(samples)
    }

    /// Stops the clients and gathers their results, lets the server answer what is left
    /// and counts once quiet, then stops the server.
    fn finish(
        self,
        diag: &mut diag::Diag,
        server_ports: &BTreeSet<u16>,
        cap: u64,
    ) -> Result<Finished, LiveError> {
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        let capped = self.started.load(Ordering::Relaxed) >= cap;
        self.stop.store(true, Ordering::SeqCst);
        self.release.store(true, Ordering::SeqCst);
        let mut r: Option<load::ClientResult> = None;
        for c in self.clients {
            let part = c
                .join()
                .map_err(|_| LiveError::Io("a client thread panicked".into()))?
                .map_err(|e| LiveError::Io(format!("client: {e}")))?;
            match &mut r {
                None => r = Some(part),
                Some(all) => all.merge(part),
            }
        }
        let r = r.expect("at least one client thread");
        let wall_s = self.t0.elapsed().as_secs_f64();
        let cpu_s = process_cpu_s() - self.cpu_before;
        let machine_busy = match (self.machine_before, machine_jiffies()) {
            (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
                (busy1 - busy0) as f64 / (all1 - all0) as f64
            }
            _ => 0.0,
        };
        let settled = if interrupted {
            None
        } else {
            Some(
                diag.settle(server_ports, SETTLE_BOUND, &|| {
                    INTERRUPTED.load(Ordering::SeqCst)
                })
                .map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?,
            )
        };
        self.server_stop.store(true, Ordering::SeqCst);
        let accept_errors = self
            .server
            .join()
            .map_err(|_| LiveError::Io("the server thread panicked".into()))?
            .map_err(|e| LiveError::Io(format!("server: {e}")))?;
        Ok(Finished {
            r,
            interrupted,
            capped,
            wall_s,
            cpu_s,
            machine_busy,
            settled,
            accept_errors,
            ends: self.ends,
            first_ports: self.first_ports,
        })
    }
}

/// What the real kernel did, from the clients' results and the samples; a run stopped early
/// counts only the whole bins it sampled.
fn measure(sc: &Scenario, f: Finished, samples: &[diag::Counts]) -> Measured {
    let mut r = f.r;
    if f.interrupted || f.capped {
        keep_bins(&mut r, samples.len().max(1));
    }
    let by_pool: BTreeMap<String, Vec<u16>> = f
        .first_ports
        .by_pool()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let last_tw = samples.last().map_or(0, |c| c.time_wait());
    let settled = f.settled;
    Measured {
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
        first_ports: f.first_ports.all(),
        leading_even_ports: by_pool.values().map(|v| leading_even(v)).sum(),
        first_ports_by_pool: by_pool,
        workloads: measured_workloads(sc, &f.ends),
        capped: f.capped,
        broken: r.broken,
        accept_errors: f.accept_errors,
        generator_busy: f.cpu_s
            / (f.wall_s.max(1e-9)
                * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
        machine_busy: f.machine_busy,
        interrupted: f.interrupted,
        late_arrivals: r.late_arrivals,
        arrival_lag_ms: Lat::of(&r.arrival_lag),
        wall_s: f.wall_s,
        series: series(sc, &r.bins, samples),
        nat: Vec::new(),
    }
}

/// Drops what came after the first `n` bins, and recounts the totals from those kept.
fn keep_bins(r: &mut load::ClientResult, n: usize) {
    r.bins.truncate(n);
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

/// The clients' bins beside the socket table sampled at each one's end.
fn series(sc: &Scenario, bins: &[load::ClientBin], samples: &[diag::Counts]) -> Vec<MeasuredBin> {
    bins.iter()
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
                nat: Vec::new(),
            }
        })
        .collect()
}

/// How each workload ended, in the scenario's order.
fn measured_workloads(sc: &Scenario, ends: &load::Ends) -> Vec<MeasuredWorkload> {
    sc.workloads
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
        .collect()
}

/// The prediction, with the settings the namespace's kernel reported (`effective`) and the
/// measured round trip `rtt`; for a run stopped early, of the `sampled` bins that ran.
/// Notes what it changed, and how `time_wait_at_end` was counted when not once quiet.
fn predict(
    sc: &Scenario,
    (effective, nat_run): (&Profile, Option<&nat::NatRun>),
    rtt: Option<crate::time::Duration>,
    sampled: usize,
    m: &Measured,
    notes: &mut Vec<String>,
) -> Report {
    let mut predicted_sc = sc.clone();
    for h in &mut predicted_sc.hosts {
        h.profile = effective.clone();
    }
    if let Some(n) = nat_run {
        nat::predict_with(&mut predicted_sc, n);
    }
    // Loopback cannot be given the scenario's RTT; the prediction takes the one measured
    // (the median connect latency: one round trip plus the kernel's and the loop's work).
    if let Some(rtt) = rtt {
        for w in &mut predicted_sc.workloads {
            w.rtt = crate::workload::Dist::Fixed(rtt);
        }
        notes.push(format!(
            "the prediction uses the measured loopback round trip, {rtt} (median connect \
             latency), in place of the scenario's rtt"
        ));
    }
    if (m.interrupted || m.capped) && sampled > 0 {
        // Predict the part that ran: the whole bins sampled before Ctrl-C.
        predicted_sc.duration = crate::time::Duration(sc.bin.0 * sampled as u64);
    }
    if m.interrupted {
        notes.push("time_wait_at_end is the last sample's count: Ctrl-C ended the run".into());
    } else if !m.quiet {
        notes.push(format!(
            "the namespace was not quiet {:.0} ms after the clients stopped (sockets still \
             connecting, connected or closing); time_wait_at_end was counted then",
            m.settle_ms
        ));
    }
    Simulation::new(&predicted_sc).ports(true).run()
}

/// The length of the leading run of even ports in `ports`. Linux's connect() scans the ports
/// of `low`'s parity first, even ones for the default 32768 (§1.2 step 6), and takes one
/// of the other parity only once none is free; bind(0) starts on the other parity (odd).
pub fn leading_even(ports: &[u16]) -> u64 {
    ports.iter().take_while(|p| *p % 2 == 0).count() as u64
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
                c.mark()
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

    #[test]
    fn leading_even_counts_the_first_pass_only() {
        assert_eq!(leading_even(&[40000, 40008, 40004, 40001, 40002]), 3);
        assert_eq!(leading_even(&[40001, 40000]), 0);
        assert_eq!(leading_even(&[]), 0);
    }
}
