//! What `connect()` and `bind()` cost in CPU time: a fixed part plus a cost per candidate
//! port the search examines (issue 26). Calibrated by `portsim live --calibrate`
//! (`src/live/calibrate.rs`, notes/connect-cost.md).
//!
//! Linux `__inet_hash_connect` (net/ipv4/inet_hashtables.c) walks the range two ports at a
//! time, taking the bind bucket's lock and, for a port connect() already uses, looking the
//! four-tuple up in the established hash (`__inet_check_established`) before moving on
//! (§1.2): its time grows with the candidates examined, which the allocator counts
//! (`probes`). The calling thread is held for all of it (the search runs in the system call,
//! under `local_bh_disable`), so a thread that serves several connections serves none of
//! the others meanwhile (`workload.threads`).

use crate::time::Duration;

/// The time a port search holds the calling thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectCost {
    /// Paid once per call.
    pub fixed: Duration,
    /// Paid per candidate port examined.
    pub per_probe: Duration,
}

/// What `portsim live --calibrate` measured on the reference machine: a 2-vCPU Firecracker
/// VM, Linux 6.18.44 (HZ=250), 2026-12-07, CPU time of the calling thread per connect(),
/// 10th percentile of 301 calls at each of 7 candidate counts from 1 to 8,193, least
/// squares weighted by the relative error: fixed 5.577 µs + 38.4 ns per candidate, R²
/// 0.9995 (notes/connect-cost.md has the points and the other runs). Not the Linux
/// profile's default, which stays zero: with a cost, whole exchanges decline (each SYN would
/// leave a probe-dependent time after connect()), which costs the default Linux open loops
/// about 3.7× the instructions, and every shipped Linux scenario's latencies move by the
/// cost (notes/readme-cost.md). A scenario turns it on with the lines `--calibrate` prints,
/// as scenarios/memtier-232.toml does. Other kernels: zero, not measured. These figures
/// held the ports in SYN-SENT; a port in TIME-WAIT, what reconnecting clients leave, costs
/// about 3× as much per candidate (117–134 ns; `--calibrate` now measures that,
/// notes/reconnect-loop.md), so this constant under-states such loads.
pub const LINUX_CALIBRATED: ConnectCost = ConnectCost {
    fixed: Duration(5_577),
    per_probe: Duration(38),
};

impl ConnectCost {
    /// No cost: connect() takes no time, as before issue 26.
    pub const ZERO: ConnectCost = ConnectCost {
        fixed: Duration::ZERO,
        per_probe: Duration::ZERO,
    };

    pub fn is_zero(&self) -> bool {
        *self == ConnectCost::ZERO
    }

    /// The time one call that examines `probes` candidates holds its thread.
    #[inline]
    pub fn of(&self, probes: u32) -> Duration {
        Duration(self.fixed.0 + self.per_probe.0 * u64::from(probes))
    }

    /// `calls` system calls that examine `probes` candidates in all (explicit bind() over
    /// an application-chosen range: one call per port tried).
    #[inline]
    pub fn of_calls(&self, calls: u32, probes: u32) -> Duration {
        Duration(self.fixed.0 * u64::from(calls) + self.per_probe.0 * u64::from(probes))
    }

    /// Applies `[host.model]` `key = value` for the two parameters ([`PARAMS`]); `None`
    /// for a bad value.
    pub fn set(&mut self, key: &str, value: &toml::Value) -> Option<()> {
        let text = value.as_str()?.trim();
        let d = if text == "0" {
            Duration::ZERO
        } else {
            Duration::parse(text).ok()?
        };
        if d > MAX {
            return None;
        }
        match key {
            "connect_cost_fixed" => self.fixed = d,
            "connect_cost_per_probe" => self.per_probe = d,
            _ => return None,
        }
        Some(())
    }

    /// A parameter's value as TOML.
    pub fn value(&self, key: &str) -> String {
        let d = match key {
            "connect_cost_fixed" => self.fixed,
            _ => self.per_probe,
        };
        if d.0 == 0 {
            "\"0\"".into()
        } else {
            format!("\"{d}\"")
        }
    }
}

/// The `[host.model]` names of the two parameters.
pub const PARAMS: [&str; 2] = ["connect_cost_fixed", "connect_cost_per_probe"];

/// The most either parameter accepts: a search of the largest range (65,535 candidates)
/// then holds its thread at most about 18 hours, far from overflowing the engine's clock.
const MAX: Duration = Duration::from_secs(1);

/// What the two parameters accept.
pub const ALLOWED: &str = "a duration from 0 to 1s, e.g. \"2us\", \"40ns\" or \"0\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_costs_fixed_plus_per_probe() {
        let c = ConnectCost {
            fixed: Duration(2_000),
            per_probe: Duration(40),
        };
        assert_eq!(c.of(1), Duration(2_040));
        assert_eq!(c.of(14_116), Duration(2_000 + 40 * 14_116));
        assert_eq!(c.of_calls(3, 3), Duration(6_120));
    }

    #[test]
    fn values_round_trip() {
        let mut c = ConnectCost::ZERO;
        c.set("connect_cost_fixed", &toml::Value::String("2us".into()))
            .unwrap();
        c.set(
            "connect_cost_per_probe",
            &toml::Value::String("40ns".into()),
        )
        .unwrap();
        assert_eq!(c.value("connect_cost_fixed"), "\"2us\"");
        assert_eq!(c.value("connect_cost_per_probe"), "\"40ns\"");
        c.set("connect_cost_fixed", &toml::Value::String("0".into()))
            .unwrap();
        assert!(
            c.set("connect_cost_per_probe", &toml::Value::String("2s".into()))
                .is_none()
        );
        assert_eq!(c.value("connect_cost_fixed"), "\"0\"");
        assert!(
            c.set("connect_cost_fixed", &toml::Value::String("2".into()))
                .is_none()
        );
        assert!(
            c.set("connect_cost_fixed", &toml::Value::Integer(2))
                .is_none()
        );
    }
}
