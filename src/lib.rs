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
//! - [`live`]: the same scenario on the real Linux stack in a private network namespace.
//! - [`cli`]: the command line (parsing and printing only).
//!
//! Rules cite `shared/reference/stack-semantics.md` by section (§1.2 …); behaviour measured
//! on a real kernel is in `notes/linux-observations/`.

pub mod alloc;
pub mod cli;
pub mod engine;
pub mod host;
pub mod live;
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
