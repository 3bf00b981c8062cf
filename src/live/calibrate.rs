//! `portsim live --calibrate`: what one connect() costs on this kernel, as
//! `fixed + per_probe × candidates examined` ([`crate::profile::ConnectCost`]).
//!
//! Linux `__inet_hash_connect` (net/ipv4/inet_hashtables.c) walks `ip_local_port_range`
//! from a hashed offset in steps of two, ports of the range's low parity first, then the other
//! parity; a port whose bind bucket came from connect() is examined by `check_established`
//! against the four-tuples already hashed (§1.2). So with the range `[low, low + 2h − 1]`
//! (`low` even) and a connection held from every even port to the one destination, every
//! connect() there examines the `h` even ports, then the first odd one, free: `h + 1`
//! candidates, wherever the offset starts.
//!
//! The run, in a network namespace of its own (the host's sysctls untouched): `lo` up,
//! 192.0.2.1 and 192.0.2.2 on it, `tcp_tw_reuse = 0`, a listener on 192.0.2.2:7777. The
//! held ports are in TIME-WAIT, what a reconnecting client leaves behind: each is a
//! connection to the listener that the client closes first (`tcp_time_wait`,
//! net/ipv4/tcp_minisocks.c), and each examination of one also runs `tcp_twsk_unique`
//! (net/ipv4/tcp_ipv4.c), which refuses it. A port held in SYN-SENT instead (the method
//! before) costs about a third as much per candidate: 38–40 ns against 117–134 ns here,
//! and the memtier-like loop of `--reconnect-loop` paid what TIME-WAIT costs
//! (notes/reconnect-loop.md). For each `h`, ascending (the TIME-WAIT sockets of a point stay
//! for the next: they last 60 s): the range set, connections made until `h` ports are in
//! TIME-WAIT (each took an even port; checked), then, with an nftables rule dropping the
//! SYNs to 192.0.2.2:7777 at input, [`REPEATS`] timed connect() calls, each right after an
//! untimed one (so the port tables are in the caches) and on a fresh non-blocking socket
//! closed at once after (SYN-SENT closes without TIME-WAIT, so every call sees the same
//! table), timed with `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` around the system call (the
//! thread's CPU time: preemption by other work on busy cores is not in it; the wall-clock
//! median is printed beside it). Their median is the point `(h + 1, median)`: the 10th
//! percentile (the statistic before) estimates the search alone, but the calls a real
//! loop makes scatter above it (p10 / median / mean of the loop's 14,117-candidate calls:
//! 1,841 / 2,090 / 2,197 µs), and the thread's rate follows the typical call. A
//! least-squares line through the points, weighted by the relative error, gives `fixed`
//! and `per_probe`, and R². The points reach 14,081 candidates, what an exhausted default
//! range costs (the per-candidate cost rises there: notes/reconnect-loop.md).

use super::LiveError;
use super::netns;
use serde::Serialize;
use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as StdInstant;

/// Ports held in TIME-WAIT per point (ascending): the candidates examined are one more.
pub const HELD: &[u32] = &[0, 1024, 2048, 3072, 4096, 6144, 8192, 10240, 12288, 14080];

/// Timed connect() calls per point.
pub const REPEATS: usize = 301;

/// The first port of every range the calibration sets (even, so the first pass is even).
const LOW: u32 = 32_768;

/// Where the held and timed connects go: a listener in the namespace; its SYNs are dropped
/// while the calls are timed ([`DROP_SYN`]).
const DEST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 7777);

/// One measured point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Candidates each timed connect() examined.
    pub probes: u32,
    /// 10th percentile of the CPU time of one connect() call on the calling thread, ns.
    pub p10_ns: f64,
    /// Median (the statistic the fit uses; see the module's doc) and 90th percentile, ns.
    pub median_ns: f64,
    pub p90_ns: f64,
    /// Median wall-clock time (`CLOCK_MONOTONIC`), ns: above the CPU time when the thread
    /// was preempted.
    pub wall_median_ns: f64,
}

/// A least-squares fit `time = fixed + per_probe × probes`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fit {
    pub points: Vec<Point>,
    pub fixed_ns: f64,
    pub per_probe_ns: f64,
    pub r2: f64,
}

impl Fit {
    /// The least-squares line through the points' medians (at least two distinct
    /// `probes`), each point weighted by `1 / median²`: the relative error is minimised, so the one-probe
    /// point fixes `fixed` as firmly as the long searches fix `per_probe`. R² is the plain
    /// one, `1 − Σ residual² / Σ (median − mean)²`.
    pub fn of(points: Vec<Point>) -> Fit {
        let w = |p: &Point| 1.0 / p.median_ns.max(1.0).powi(2);
        let x = |p: &Point| f64::from(p.probes);
        let sw: f64 = points.iter().map(w).sum();
        let mx = points.iter().map(|p| w(p) * x(p)).sum::<f64>() / sw;
        let my = points.iter().map(|p| w(p) * p.median_ns).sum::<f64>() / sw;
        let sxx: f64 = points.iter().map(|p| w(p) * (x(p) - mx).powi(2)).sum();
        let sxy: f64 = points
            .iter()
            .map(|p| w(p) * (x(p) - mx) * (p.median_ns - my))
            .sum();
        let per_probe_ns = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let fixed_ns = my - per_probe_ns * mx;
        let mean = points.iter().map(|p| p.median_ns).sum::<f64>() / points.len() as f64;
        let ss_tot: f64 = points.iter().map(|p| (p.median_ns - mean).powi(2)).sum();
        let ss_res: f64 = points
            .iter()
            .map(|p| (p.median_ns - fixed_ns - per_probe_ns * x(p)).powi(2))
            .sum();
        let r2 = if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            0.0
        };
        Fit {
            points,
            fixed_ns,
            per_probe_ns,
            r2,
        }
    }

    /// The fitted time of a connect() that examines `probes` candidates, ns.
    pub fn predict_ns(&self, probes: u32) -> f64 {
        self.fixed_ns + self.per_probe_ns * f64::from(probes)
    }

    /// The `[host.model]` lines to paste (whole nanoseconds, fixed at least 0).
    pub fn model_lines(&self) -> String {
        format!(
            "connect_cost_fixed = \"{}ns\"\nconnect_cost_per_probe = \"{}ns\"\n",
            self.fixed_ns.max(0.0).round() as u64,
            self.per_probe_ns.max(0.0).round() as u64
        )
    }

    /// The fit as JSON (`portsim.calibration/1`).
    pub fn to_json(&self, kernel: &str) -> String {
        let v = serde_json::json!({
            "format": "portsim.calibration/1",
            "kernel": kernel,
            "repeats": REPEATS,
            "fit": self,
            "model": self.model_lines(),
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    /// The fit as text: one line per point, the fit, the lines to paste.
    pub fn to_text(&self, kernel: &str) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "connect() cost on Linux {kernel} (CPU time of the calling thread, {REPEATS} calls per point):\n\
             {:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            "probes", "median µs", "fit µs", "p10 µs", "p90 µs", "wall µs"
        );
        for p in &self.points {
            let _ = writeln!(
                s,
                "{:>8}  {:>10.3}  {:>10.3}  {:>10.3}  {:>10.3}  {:>10.3}",
                p.probes,
                p.median_ns / 1e3,
                self.predict_ns(p.probes) / 1e3,
                p.p10_ns / 1e3,
                p.p90_ns / 1e3,
                p.wall_median_ns / 1e3
            );
        }
        let _ = write!(
            s,
            "fit: fixed {:.3} µs + {:.1} ns per probe, R² {:.4}, {} points\n\n\
             [host.model]\n{}",
            self.fixed_ns / 1e3,
            self.per_probe_ns,
            self.r2,
            self.points.len(),
            self.model_lines()
        );
        s
    }
}

/// The calibration run: in a namespace of its own (this must be the process's only thread),
/// the points for `held` (ascending: the ports held in TIME-WAIT accumulate) and their fit.
pub fn run(held: &[u32]) -> Result<Fit, LiveError> {
    netns::enter()?;
    netns::ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"])?;
    netns::ip(&["addr", "add", "192.0.2.2/32", "dev", "lo"])?;
    netns::write("net.ipv4.tcp_tw_reuse", "0")?;
    let listener = listener()?;
    let (mut points, mut in_time_wait) = (Vec::with_capacity(held.len()), 0);
    for &h in held {
        set_range(h)?;
        while in_time_wait < h {
            time_wait(&listener)?;
            in_time_wait += 1;
        }
        netns::nft(DROP_SYN)?;
        points.push(point(h)?);
        netns::nft("flush ruleset\n")?;
    }
    Ok(Fit::of(points))
}

/// Drops the SYNs to [`DEST`] once they have crossed `lo`: the timed connect()s stay in
/// SYN-SENT, answered by nobody, so closing them leaves nothing behind.
const DROP_SYN: &str = "table ip calibrate {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    ip daddr 192.0.2.2 tcp dport 7777 drop\n  }\n}\n";

/// `ip_local_port_range = [LOW, LOW + 2h − 1]`: `h` ports of each parity.
fn set_range(h: u32) -> Result<(), LiveError> {
    let span = 2 * h.max(1);
    netns::write(
        "net.ipv4.ip_local_port_range",
        &format!("{LOW} {}", LOW + span - 1),
    )?;
    Ok(())
}

/// The listener at [`DEST`] whose connections leave the client in TIME-WAIT.
fn listener() -> Result<Socket, LiveError> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(io("socket()"))?;
    s.set_reuse_address(true).map_err(io("SO_REUSEADDR"))?;
    s.bind(&SockAddr::from(DEST)).map_err(io("bind()"))?;
    s.listen(1024).map_err(io("listen()"))?;
    Ok(s)
}

/// One more port held in TIME-WAIT: a connection to [`DEST`] (the kernel picks the port,
/// checked even), the client closes first, then the server (`tcp_time_wait` on the client,
/// net/ipv4/tcp_minisocks.c; §2.1).
fn time_wait(listener: &Socket) -> Result<(), LiveError> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(io("socket()"))?;
    s.connect(&SockAddr::from(DEST))
        .map_err(|e| LiveError::Io(format!("connect() to {DEST}: {e}")))?;
    let port = port_of(&s)?;
    if port % 2 != LOW % 2 {
        return Err(LiveError::Io(format!(
            "connect() took port {port} while an even port was left: this kernel does not \
             search the low parity first, so the candidate count is unknown"
        )));
    }
    let (child, _) = listener.accept().map_err(io("accept()"))?;
    drop(s);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // Wait for the client's FIN (EOF) so the server's close is the second one.
    child.recv(&mut buf).map_err(io("recv()"))?;
    drop(child);
    Ok(())
}

fn io(what: &str) -> impl Fn(std::io::Error) -> LiveError + '_ {
    move |e| LiveError::Io(format!("{what}: {e}"))
}

/// A socket connected toward [`DEST`] without waiting: SYN-SENT, its port chosen.
fn syn_sent() -> Result<Socket, LiveError> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(io("socket()"))?;
    s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
    connect(&s)?;
    Ok(s)
}

fn connect(s: &Socket) -> Result<(), LiveError> {
    match s.connect(&SockAddr::from(DEST)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(LiveError::Io(format!("connect() to {DEST}: {e}"))),
    }
}

fn port_of(s: &Socket) -> Result<u32, LiveError> {
    let a = s.local_addr().map_err(io("getsockname()"))?;
    Ok(u32::from(a.as_socket_ipv4().map_or(0, |a| a.port())))
}

/// With `h` even ports in TIME-WAIT, [`REPEATS`] timed connect() calls examining `h + 1`
/// candidates.
fn point(h: u32) -> Result<Point, LiveError> {
    let mut times = Vec::with_capacity(REPEATS);
    let mut walls = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        // An untimed search first: the tables it walks are then in the caches, whatever ran
        // on this core since the last call.
        drop(syn_sent()?);
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(io("socket()"))?;
        s.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
        let (t, cpu) = (StdInstant::now(), thread_cpu_ns());
        connect(&s)?;
        let (ns, cpu) = (
            t.elapsed().as_nanos() as f64,
            (thread_cpu_ns() - cpu) as f64,
        );
        let port = port_of(&s)?;
        if h > 0 && port % 2 == LOW % 2 {
            return Err(LiveError::Io(format!(
                "timed connect() took even port {port} although all {h} were held"
            )));
        }
        times.push(cpu);
        walls.push(ns);
    }
    let at = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    Ok(Point {
        probes: h + 1,
        p10_ns: at(&mut times, 0.1),
        median_ns: at(&mut times, 0.5),
        p90_ns: at(&mut times, 0.9),
        wall_median_ns: at(&mut walls, 0.5),
    })
}

/// The calling thread's CPU time, ns (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`): time the
/// thread was preempted is not in it, so busy cores do not inflate the measurement.
pub(super) fn thread_cpu_ns() -> u64 {
    let mut ts = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain system call writing to a local struct.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(probes: u32, median_ns: f64) -> Point {
        Point {
            probes,
            p10_ns: median_ns,
            median_ns,
            p90_ns: median_ns,
            wall_median_ns: median_ns,
        }
    }

    #[test]
    fn a_line_is_fitted_exactly() {
        let f = Fit::of(vec![pt(1, 2040.0), pt(101, 6040.0), pt(1001, 42040.0)]);
        assert!((f.per_probe_ns - 40.0).abs() < 1e-9);
        assert!((f.fixed_ns - 2000.0).abs() < 1e-6);
        assert!((f.r2 - 1.0).abs() < 1e-12);
        assert_eq!(
            f.model_lines(),
            "connect_cost_fixed = \"2000ns\"\nconnect_cost_per_probe = \"40ns\"\n"
        );
    }

    #[test]
    fn scatter_lowers_r2() {
        let f = Fit::of(vec![pt(1, 100.0), pt(2, 900.0), pt(3, 100.0), pt(4, 900.0)]);
        assert!(f.r2 < 0.5, "{}", f.r2);
    }
}
