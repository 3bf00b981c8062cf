//! portsim: a deterministic simulator of the TCP port lifecycle.
//!
//! Will this load run out of ephemeral ports, when, and what will it look like? portsim runs
//! the kernel's own rules — ephemeral allocation, TIME-WAIT, four-tuple reuse — under a
//! workload, in integer nanoseconds, from a seed.
//!
//! Module map (start at [`scenario`] and [`sim`]):
//! - [`scenario`]: scenario files (TOML), validation and positioned errors.
//! - [`sim`]: the simulation: hosts, workloads and the connection lifecycle between them.
//! - [`engine`]: the event queue and the same-instant ordering rule.
//! - [`host`]: one host's TCP port state: bind buckets, the four-tuple table, TIME-WAIT.
//! - [`alloc`]: port allocation algorithms behind one trait (Linux, BSD/XNU, RFC 6056).
//! - [`profile`]: kernel profiles as data (Linux, FreeBSD, macOS, Windows), overridable by
//!   each kernel's own knob names.
//! - [`workload`]: arrival processes, latencies, connection modes, error policies.
//! - [`report`]: counters, binned series, JSON / CSV / terminal output.
//! - [`rng`]: per-component ChaCha streams and SipHash.
//! - [`time`]: integer-nanosecond time.
//! - [`plot`]: charts (SVG/PNG) of a run, a comparison, a live run, sweeps; `plots/`.
//! - [`live`]: the same scenario on the real Linux stack in a private network namespace.
//! - [`cli`]: the command line (parsing and printing only).
//!
//! Rules cite `shared/reference/stack-semantics.md` by section (§1.2 …); behaviour measured
//! on a real kernel is in `notes/linux-observations/`.

pub mod alloc;
pub mod cli;
pub mod ehash;
pub mod engine;
pub mod host;
pub mod live;
pub mod plan;
pub mod plot;
pub mod profile;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod time;
pub mod workload;

/// Runs the scenario file at `path` and returns its report.
pub fn run_file(path: &std::path::Path) -> Result<report::Report, scenario::ScenarioError> {
    let sc = scenario::load(path)?;
    Ok(sim::Simulation::new(&sc).run())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`, so a reader
/// never sees a half-written report and an interrupted run leaves the old file intact.
///
/// A symbolic link is followed: its target is replaced and the link stays. A path that is
/// not a regular file (`/dev/null`, `/dev/stdout`, a FIFO) is written in place: renaming over
/// it would replace the device with a file.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::path::Path;
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
        && !m.is_dir()
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        return f.write_all(bytes).and_then(|()| f.flush());
    }
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            // A dangling link: its target, one level down, is created.
            resolved = std::fs::canonicalize(path).or_else(|_| {
                let to = std::fs::read_link(path)?;
                Ok::<_, std::io::Error>(path.parent().unwrap_or(Path::new("")).join(to))
            })?;
            resolved.as_path()
        }
        _ => path,
    };
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
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
            ref a => a.peak_rate().unwrap_or(0.0) * secs,
        })
        .sum();
    if work > 20_000.0 || sc.duration.0 > 600_000_000_000 {
        return;
    }
    if let Err(v) = sim::Simulation::new(&sc).checking(true).run_checked() {
        panic!("{v}");
    }
}
