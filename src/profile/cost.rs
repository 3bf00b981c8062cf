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

/// What `portsim live --calibrate` measures on the reference machine (a 2-vCPU Firecracker
/// VM, Linux 6.18.44, HZ=250), with the ports held in TIME-WAIT, what reconnecting clients
/// leave: CPU time of the calling thread per connect(), median of 301 calls at each of 10
/// candidate counts from 1 to 14,081, least squares weighted by the relative error. Six
/// runs on 2026-12-07 gave 5.40–6.99 µs + 117.9–124.5 ns per candidate (R² 0.85–0.99);
/// this is their median, 5.46 µs + 122 ns (notes/reconnect-loop.md). A TIME-WAIT
/// candidate costs about 3× a live socket's ([`LINUX_CALIBRATED_LIVE`]): the kernel also
/// runs `tcp_twsk_unique` on it. Past about 10,000 candidates a candidate costs more than
/// the line says (141 ns each at 14,081 in one run): the line under-states the longest
/// searches, by 17–36 % in the reconnect loop's (notes/reconnect-loop.md).
///
/// Not the Linux profile's default, which stays zero: the cost differs between machines
/// (Cloudflare's 8.5× this one's, memtier issue 232's about 0.8×), and with a cost whole exchanges decline (each SYN
/// would leave a probe-dependent time after connect()), about 3.8× the instructions on the
/// default Linux open loops. A scenario turns it on with the lines `--calibrate` prints,
/// as scenarios/memtier-232.toml does. Other kernels: zero, not measured.
pub const LINUX_CALIBRATED: ConnectCost = ConnectCost {
    fixed: Duration(5_460),
    per_probe: Duration(122),
};

/// The same machine with the ports held by live sockets (SYN-SENT; an established socket
/// is looked up the same way, `__inet_check_established`, without `tcp_twsk_unique`): 10th
/// percentile of 301 calls at 7 counts from 1 to 8,193, fixed 5.577 µs + 38.4 ns per
/// candidate, R² 0.9995; eight runs quiet and under `stress-ng --cpu 2` gave 38.4–39.0 ns
/// (notes/connect-cost.md). The cost for clients that keep their connections open, as in
/// scenarios/cloudflare-connect-slow.toml.
pub const LINUX_CALIBRATED_LIVE: ConnectCost = ConnectCost {
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
