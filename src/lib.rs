//! portsim: a deterministic simulator of the TCP port lifecycle.
//!
//! Will this load run out of ephemeral ports, when, and what will it look like? portsim runs
//! the kernel's own rules — ephemeral allocation, TIME-WAIT, four-tuple reuse — under a
//! workload, in integer nanoseconds, from a seed.
//!
//! Module map (start at [`scenario`] and [`sim`]):
//! - [`scenario`]: scenario files (TOML), validation and positioned errors.
//! - [`sim`]: the simulation: hosts, workloads and the connection lifecycle between them;
//!   its fast paths in `sim/fast/`, the path between hosts in [`sim::path`].
//! - [`engine`]: the event queue and the same-instant ordering rule.
//! - [`nat`]: a Linux NAT on the path: conntrack states and timeouts, masquerade port
//!   selection, `[[nat]]` knobs (notes/nat-reference.md).
//! - [`host`]: one host's TCP port state: bind buckets, the four-tuple table, TIME-WAIT.
//! - [`alloc`]: port allocation algorithms behind one trait (Linux, BSD/XNU, RFC 6056).
//! - [`profile`]: kernel profiles as data (Linux, FreeBSD, macOS, Windows), overridable by
//!   each kernel's own knob names.
//! - [`workload`]: arrival processes, latencies, connection modes, error policies.
//! - [`report`]: counters, binned series, JSON / CSV / terminal output.
//! - [`replicate`]: a scenario run once per seed (`--seeds A..B`), its numbers as
//!   distributions.
//! - [`rng`]: per-component ChaCha streams and SipHash.
//! - [`time`]: integer-nanosecond time.
//! - [`tw_timer`]: when a TIME-WAIT's timer fires: the kernel's timer wheel (or death row).
//! - [`plot`]: charts (SVG/PNG) of a run, a comparison, a live run, sweeps; `plots/`.
//! - [`live`]: the same scenario on the real Linux stack in a private network namespace.
//! - [`cli`]: the command line (parsing and printing only).
//! - [`client`]: clients as people run them: a library's connection pool and its presets
//!   (`client::pool`), load generators' command lines read into what they do on the wire
//!   (`client::tools`).
//!
//! Rules cite `shared/reference/stack-semantics.md` by section (§1.2 …); behaviour measured
//! on a real kernel is in `notes/linux-observations/`. `notes/architecture.md` follows a
//! scenario file to its report and says where to add a kernel, a middlebox, a workload kind
//! or a report field.

pub mod alloc;
pub mod cli;
pub mod client;
pub mod ehash;
pub mod engine;
pub mod host;
pub mod live;
pub mod nat;
pub mod plan;
pub mod plot;
pub mod profile;
pub mod replicate;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod time;
pub mod tw_timer;
pub mod workload;

/// Runs the scenario file at `path` and returns its report.
pub fn run_file(path: &std::path::Path) -> Result<report::Report, scenario::ScenarioError> {
    let sc = scenario::load(path)?;
    Ok(sim::Simulation::new(&sc).run())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees a half-written report and an interrupted run leaves the old file intact.
///
/// - Standard output or error named as a file (`/dev/stdout`, or the file either is
///   redirected to) is written through the inherited descriptor, keeping its offset and
///   append mode.
/// - A path under `/dev` or `/proc`, or one that is not a regular file (a FIFO, a device), is
///   written in place: renaming over it would replace the device with a file.
/// - A chain of symbolic links is followed to its end, which is replaced (or created); the
///   links stay.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        let is = |fd: std::os::fd::BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .ok()
                .and_then(|fd| std::fs::File::from(fd).metadata().ok())
                .is_some_and(|f| (f.dev(), f.ino()) == (m.dev(), m.ino()))
        };
        if is(std::io::stdout().as_fd()) {
            let mut out = std::io::stdout().lock();
            return out.write_all(bytes).and_then(|()| out.flush());
        }
        if is(std::io::stderr().as_fd()) {
            return std::io::stderr().lock().write_all(bytes);
        }
        if (!m.is_file() && !m.is_dir()) || path.starts_with("/dev") || path.starts_with("/proc") {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            return f.write_all(bytes).and_then(|()| f.flush());
        }
    }
    let path = link_end(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.portsim-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The path a chain of symbolic links starting at `path` ends at (`path` itself when it is
/// not a link); an error for a loop, as the kernel gives one past 40 links.
fn link_end(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// What the fuzz target (`fuzz/fuzz_targets/scenario.rs`) and its corpus regression test do
/// with one input: parse it as a scenario and, if it is one, simulate it in checking mode. A
/// refused scenario must come with a message; the run must keep every invariant. Runs whose
/// arrivals would exceed 20,000 connections, or that last over 10 minutes, are only parsed, to keep each input fast.
#[doc(hidden)]
pub fn fuzz_scenario(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sc = match scenario::parse("fuzz.toml", text) {
        Ok(sc) => sc,
        Err(e) => {
            assert!(!e.message.is_empty(), "a refusal without a reason");
            let _ = e.to_string();
            return;
        }
    };
    let secs = sc.duration.as_secs_f64();
    let work: f64 = sc
        .workloads
        .iter()
        .map(|w| match w.arrival {
            workload::Arrival::Closed { concurrency } => f64::from(concurrency) * secs * 1e4,
            ref a => a.arrivals_in(secs).unwrap_or(0.0),
        })
        .sum();
    if work > 20_000.0 || sc.duration.0 > 600_000_000_000 {
        return;
    }
    if let Err(v) = sim::Simulation::new(&sc).checking(true).run_checked() {
        panic!("{v}");
    }
}
