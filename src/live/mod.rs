//! Live mode: the scenario's workload on the real Linux stack, inside a private network
//! namespace, against the simulator's prediction for the same effective settings.
//!
//! - [`netns`]: the namespace, its addresses, its sysctls (never the host's).
//! - [`load`]: the workload with real non-blocking sockets.
//! - [`diag`]: TIME-WAIT and ESTABLISHED counts by netlink sock_diag.
//!
//! [`run`] must be called while the process has a single thread: it moves that thread into
//! the new namespace before starting the client, server and sampling threads.

pub mod diag;
pub mod load;
pub mod netns;

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

/// Limits of a live run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Hard cap on connections started (the run also ends at the scenario's duration).
    pub max_connections: u64,
}

/// Default connection cap.
pub const MAX_CONNECTIONS: u64 = 2_000_000;

/// One bin as measured.
#[derive(Serialize, Debug, Clone)]
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
    pub connect_latency_ms: Lat,
    pub request_latency_ms: Lat,
    /// Local ports of the first connections, in order.
    pub first_ports: Vec<u16>,
    pub capped: bool,
    pub interrupted: bool,
    /// Open-loop arrivals started more than 5 ms late: the generator's ceiling was reached.
    pub late_arrivals: u64,
    pub wall_s: f64,
    pub series: Vec<MeasuredBin>,
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
    /// "exact" or "relative ≤ x".
    pub rule: String,
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
    pub measured: Measured,
    pub predicted: Report,
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
    let mut specs: BTreeMap<(u32, u16), load::ServerSpec> = BTreeMap::new();
    for w in &sc.workloads {
        for d in &w.destinations {
            let spec = load::ServerSpec::of(w);
            if let Some(other) = specs.insert((d.ip, d.port), spec.clone())
                && other != spec
            {
                return Err(LiveError::Refused(format!(
                    "{}:{} serves workloads with different request sizes, service times or \
                     closers; the live server needs one behaviour per listener",
                    Ipv4Addr::from(d.ip),
                    d.port
                )));
            }
        }
    }
    Ok(first.profile.clone())
}

/// Runs `sc` live and predicts it. Call with the process single-threaded.
pub fn run(sc: &Scenario, opts: Options) -> Result<LiveReport, LiveError> {
    let profile = check(sc)?;
    let privilege = netns::enter()?;
    let ips: BTreeSet<u32> = sc.hosts.iter().flat_map(|h| h.ips.clone()).collect();
    netns::add_addresses(&ips.into_iter().collect::<Vec<_>>())?;
    let (effective, notes) = netns::apply(&profile)?;
    let handler = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_sigint),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGINT, &handler) }
        .map_err(|e| LiveError::Io(format!("cannot install the SIGINT handler: {e}")))?;

    // Listeners, one behaviour each.
    let mut listeners = Vec::new();
    let mut server_ports = BTreeSet::new();
    for h in &sc.hosts {
        for &(ip, port) in &h.listen {
            let spec = sc
                .workloads
                .iter()
                .find(|w| {
                    w.destinations
                        .iter()
                        .any(|d| d.port == port && (ip == 0 || d.ip == ip))
                })
                .map(load::ServerSpec::of);
            let Some(spec) = spec else { continue };
            let l = load::listen(SocketAddrV4::new(Ipv4Addr::from(ip), port)).map_err(|e| {
                LiveError::Io(format!("listen on {}:{port}: {e}", Ipv4Addr::from(ip)))
            })?;
            listeners.push((l, spec));
            server_ports.insert(port);
        }
    }
    let mut diag = diag::Diag::open().map_err(|e| LiveError::Io(format!("sock_diag: {e}")))?;
    let stop = Arc::new(AtomicBool::new(false));
    let seed = sc.seed;
    let server = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("portsim-server".into())
            .spawn(move || load::serve(listeners, seed, stop))
            .map_err(|e| LiveError::Io(e.to_string()))?
    };
    let duration = StdDuration::from_nanos(sc.duration.0);
    let bin = StdDuration::from_nanos(sc.bin.0);
    let t0 = StdInstant::now() + StdDuration::from_millis(20);
    let threads = load::client_threads(&sc.workloads);
    let mut clients = Vec::new();
    for k in 0..threads {
        let stop = stop.clone();
        let workloads = sc.workloads.clone();
        // The cap is shared out; each thread stops at its part.
        let cap = opts.max_connections.div_ceil(threads);
        let handle = std::thread::Builder::new()
            .name(format!("portsim-client{k}"))
            .spawn(move || {
                load::Clients::new(&workloads, seed, t0, duration, bin, cap, (k, threads))?
                    .run(&stop)
            })
            .map_err(|e| LiveError::Io(e.to_string()))?;
        clients.push(handle);
    }
    // Sample the kernel's socket table at each bin's end.
    let mut samples = Vec::new();
    let nbins = sc.duration.0.div_ceil(sc.bin.0.max(1));
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
    }
    let interrupted = INTERRUPTED.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
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
    let r = r.expect("at least one client thread");
    server
        .join()
        .map_err(|_| LiveError::Io("the server thread panicked".into()))?
        .map_err(|e| LiveError::Io(format!("server: {e}")))?;
    let wall_s = t0.elapsed().as_secs_f64();

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
    let measured = Measured {
        attempted: r.attempted,
        established: r.established,
        failed: r.failed,
        requests_completed: r.requests,
        in_flight: r.in_flight,
        time_wait_peak_sampled: samples
            .iter()
            .map(|c| c.time_wait_client + c.time_wait_server)
            .max()
            .unwrap_or(0),
        connect_latency_ms: Lat::of(&r.connect_latency),
        request_latency_ms: Lat::of(&r.request_latency),
        first_ports: r.first_ports.iter().map(|&(_, p)| p).collect(),
        capped: r.capped,
        interrupted,
        late_arrivals: r.late_arrivals,
        wall_s,
        series,
    };

    // The prediction, with the settings the namespace's kernel reported.
    let mut predicted_sc = sc.clone();
    for h in &mut predicted_sc.hosts {
        h.profile = effective.clone();
    }
    if interrupted && !samples.is_empty() {
        // Predict the part that ran: the whole bins sampled before Ctrl-C.
        predicted_sc.duration = crate::time::Duration(sc.bin.0 * samples.len() as u64);
    }
    let predicted = Simulation::new(&predicted_sc).run();
    let checks = compare(sc, &predicted, &measured);
    let verdict = if measured.interrupted {
        "interrupted"
    } else if checks.iter().all(|c| c.pass) {
        "agree"
    } else {
        "disagree"
    };
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
        measured,
        predicted,
    })
}

/// Predicted against measured, by the scenario's `[live]` tolerances.
fn compare(sc: &Scenario, p: &Report, m: &Measured) -> Vec<Check> {
    let tol = sc.live.tolerance;
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
    rows.into_iter()
        .map(|(metric, predicted, measured)| {
            let named = |list: &[String]| {
                list.iter()
                    .any(|e| metric == *e || metric.starts_with(&format!("{e} ")))
            };
            let exact = named(&sc.live.exact);
            let ignored = named(&sc.live.ignore);
            let pass = if ignored {
                true
            } else if exact {
                predicted == measured
            } else {
                (predicted - measured).abs() <= tol * predicted.abs().max(measured.abs())
            };
            Check {
                rule: if ignored {
                    "not judged".into()
                } else if exact {
                    "exact".into()
                } else {
                    format!("relative ≤ {}", tol)
                },
                metric,
                predicted,
                measured,
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
                if c.pass { "ok" } else { "DIFFERS" }
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
                "{:>7}s  {:>10} / {:<8}  {:>10} / {:<8}  {:>10} / {:<8}",
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
            "\nconnect latency measured p50 {:.3} ms · p99 {:.3} ms · max {:.3} ms; requests p50 {:.3} ms · max {:.3} ms",
            m.connect_latency_ms.p50,
            m.connect_latency_ms.p99,
            m.connect_latency_ms.max,
            m.request_latency_ms.p50,
            m.request_latency_ms.max
        );
        if m.late_arrivals > 0 {
            let _ = writeln!(
                o,
                "generator fell behind: {} arrivals started more than 5 ms late",
                m.late_arrivals
            );
        }
        if m.capped {
            let _ = writeln!(o, "stopped at the connection cap");
        }
        let _ = writeln!(o, "verdict: {}", self.verdict);
        o
    }
}
