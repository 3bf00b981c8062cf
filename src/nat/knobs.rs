//! A NAT's settings: its profile's defaults and the `[nat.knobs]` that change them, by the
//! kernel's own names where the kernel has one (notes/nat-reference.md §2–§5).

use super::cloud::{Allocation, Cloud, knob_names};
use super::conntrack::CtState;
use super::select::Rule;
use crate::scenario::list;
use crate::time::Duration;
use std::fmt;

/// The NAT profiles a scenario may name.
pub const NAT_PROFILES: &[(&str, &str)] = &[
    (
        "linux-masquerade",
        "Linux conntrack with an nftables/iptables masquerade or SNAT rule (Docker, Kubernetes nodes)",
    ),
    (
        "aws-nat-gateway",
        "AWS NAT Gateway: 55,000 connections per address per destination, 350 s idle",
    ),
    (
        "gcp-cloud-nat",
        "GCP Cloud NAT: min_ports_per_vm (static or dynamic), endpoint-independent mapping",
    ),
    (
        "azure-lb-outbound",
        "Azure Load Balancer outbound SNAT: ports per VM by backend pool size",
    ),
    (
        "azure-nat-gateway",
        "Azure NAT Gateway: 64,512 ports per address, 50,000 per destination",
    ),
    (
        "azure-app-service",
        "Azure App Service: 128 SNAT ports per instance",
    ),
];

/// Everything that decides what the NAT does.
#[derive(Clone, Debug, PartialEq)]
pub struct NatConfig {
    pub rule: Rule,
    /// Per [`CtState`], `net.netfilter.nf_conntrack_tcp_timeout_*`.
    pub timeouts: [Duration; CtState::ALL.len()],
    /// `net.netfilter.nf_conntrack_max`.
    pub max: u64,
    /// `net.netfilter.nf_conntrack_buckets`: the hash table `early_drop` scans.
    pub buckets: u64,
    /// The node's CPUs: SYNs of different flows are handled on different CPUs (RSS) with
    /// probability 1 − 1/cpus.
    pub cpus: u32,
    /// UNVERIFIED: how long after a flow's port is chosen its entry stays invisible to a
    /// SYN handled at the same time on another CPU (from `nf_nat_setup_info` to
    /// `__nf_conntrack_confirm`, the same softirq pass; the kernel documents no figure).
    pub race_window: Duration,
    /// A cloud gateway's allocation (`None`: the Linux NAT of `rule`).
    pub cloud: Option<Cloud>,
}

/// Why a knob was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnobError(pub String);

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The knobs `[nat.knobs]` accepts.
pub const NAT_KNOBS: &[&str] = &[
    "port_range",
    "flags",
    "kernel",
    "cpus",
    "race_window",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
    "net.netfilter.nf_conntrack_tcp_timeout_close",
];

/// Flags `flags` accepts (nftables' names).
pub const NAT_FLAGS: &[&str] = &["random", "fully-random", "persistent"];

impl NatConfig {
    /// Profile `name` translating to `ips`: the kernel's defaults, the largest default table
    /// (262,144 entries and buckets: 16 GiB of RAM or more, commit d532bcd0b269), one CPU,
    /// the current kernel.
    pub fn named(name: &str, ips: Vec<u32>) -> Option<NatConfig> {
        if let Some((cloud, timeouts)) = Cloud::named(name) {
            let mut cfg = NatConfig::named("linux-masquerade", ips)?;
            cfg.timeouts = timeouts;
            cfg.max = u64::MAX;
            cfg.race_window = Duration::ZERO;
            cfg.cloud = Some(cloud);
            return Some(cfg);
        }
        (name == "linux-masquerade").then(|| NatConfig {
            rule: Rule {
                ips,
                ports: None,
                random: false,
                fully_random: false,
                persistent: false,
                kernel: (6, 18),
            },
            timeouts: CtState::ALL.map(CtState::default_timeout),
            max: 262_144,
            buckets: 262_144,
            cpus: 1,
            race_window: Duration::from_micros(10),
            cloud: None,
        })
    }

    /// Sets knob `key` to `v`.
    pub fn set_knob(&mut self, key: &str, v: &toml::Value) -> Result<(), KnobError> {
        if let Some(cloud) = &mut self.cloud {
            if !knob_names(cloud.provider).contains(&key) {
                let known = knob_names(cloud.provider);
                return Err(KnobError(if known.is_empty() {
                    format!("{} takes no knobs", cloud.provider.profile())
                } else {
                    format!(
                        "unknown knob for {}; known: {}",
                        cloud.provider.profile(),
                        list(known)
                    )
                }));
            }
            return cloud.set_knob(key, v, &mut self.timeouts);
        }
        if let Some(state) = key
            .strip_prefix("net.netfilter.nf_conntrack_tcp_timeout_")
            .and_then(|s| CtState::ALL.into_iter().find(|c| c.sysctl_suffix() == s))
        {
            let secs = int(v, 1, 1 << 31)?;
            self.timeouts[state as usize] = Duration::from_secs(secs);
            return Ok(());
        }
        match key {
            "port_range" => self.rule.ports = Some(port_range(v)?),
            "flags" => self.set_flags(v)?,
            "kernel" => self.rule.kernel = version(v)?,
            "cpus" => self.cpus = int(v, 1, 4096)? as u32,
            "race_window" => {
                let text = v
                    .as_str()
                    .ok_or_else(|| KnobError("a duration such as \"10us\"".into()))?;
                self.race_window = Duration::parse(text).map_err(|e| KnobError(e.to_string()))?;
            }
            "net.netfilter.nf_conntrack_max" => self.max = int(v, 1, 1 << 31)?,
            "net.netfilter.nf_conntrack_buckets" => self.buckets = int(v, 1, 1 << 31)?,
            _ => {
                return Err(KnobError(format!(
                    "unknown NAT knob; known: {}",
                    list(NAT_KNOBS)
                )));
            }
        }
        Ok(())
    }

    fn set_flags(&mut self, v: &toml::Value) -> Result<(), KnobError> {
        let Some(flags) = v.as_array() else {
            return Err(KnobError(format!(
                "a list of flags, each one of {}",
                list(NAT_FLAGS)
            )));
        };
        for f in flags {
            match f.as_str() {
                Some("random") => self.rule.random = true,
                Some("fully-random") => self.rule.fully_random = true,
                Some("persistent") => self.rule.persistent = true,
                _ => {
                    return Err(KnobError(format!(
                        "{f}: unknown flag; allowed: {}",
                        list(NAT_FLAGS)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Ports per NAT address toward one destination: the range's size.
    pub fn ports_per_address(&self) -> u32 {
        if let Some(c) = &self.cloud {
            return match c.allocation {
                Allocation::Shared { per_destination } => per_destination.min(c.ports_per_address),
                _ => c.ports_per_address,
            };
        }
        match self.rule.ports {
            Some((lo, hi)) => u32::from(hi - lo) + 1,
            None => 64512,
        }
    }

    /// The knobs as the report lists them: every one, in [`NAT_KNOBS`] order.
    pub fn knobs(&self) -> Vec<(String, String)> {
        if let Some(c) = &self.cloud {
            return c.knobs(&self.timeouts);
        }
        let r = &self.rule;
        let flags = r.flag_names();
        let mut out = vec![
            (
                "port_range".to_string(),
                r.ports
                    .map_or("default (1024 65535)".to_string(), |(lo, hi)| {
                        format!("{lo} {hi}")
                    }),
            ),
            ("flags".to_string(), flags.join(" ")),
            (
                "kernel".to_string(),
                format!("{}.{}", r.kernel.0, r.kernel.1),
            ),
            ("cpus".to_string(), self.cpus.to_string()),
            (
                "race_window".to_string(),
                format!("{} (UNVERIFIED)", self.race_window),
            ),
            (
                "net.netfilter.nf_conntrack_max".to_string(),
                self.max.to_string(),
            ),
            (
                "net.netfilter.nf_conntrack_buckets".to_string(),
                self.buckets.to_string(),
            ),
        ];
        for s in CtState::ALL {
            out.push((
                format!(
                    "net.netfilter.nf_conntrack_tcp_timeout_{}",
                    s.sysctl_suffix()
                ),
                (self.timeouts[s as usize].0 / 1_000_000_000).to_string(),
            ));
        }
        out
    }
}

fn int(v: &toml::Value, lo: u64, hi: u64) -> Result<u64, KnobError> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .filter(|i| (lo..=hi).contains(i))
        .ok_or_else(|| KnobError(format!("an integer from {lo} to {hi}")))
}

/// "LO HI", as `ip_local_port_range` writes it, 1 ≤ LO ≤ HI ≤ 65535.
fn port_range(v: &toml::Value) -> Result<(u16, u16), KnobError> {
    let bad = || KnobError("\"LO HI\": two ports, 1 <= LO <= HI <= 65535".into());
    let text = v.as_str().ok_or_else(bad)?;
    let mut it = text.split_whitespace().map(|p| p.parse::<u16>());
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) if lo >= 1 && lo <= hi => Ok((lo, hi)),
        _ => Err(bad()),
    }
}

/// "MAJOR.MINOR".
fn version(v: &toml::Value) -> Result<(u32, u32), KnobError> {
    let bad = || {
        KnobError(
            "a kernel version as a quoted string \"MAJOR.MINOR\", such as \"4.19\" or \"6.18\" \
             (unquoted, 6.10 would read as 6.1)"
                .into(),
        )
    };
    let text = v.as_str().ok_or_else(bad)?;
    let (a, b) = text.split_once('.').ok_or_else(bad)?;
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) if (2..=9).contains(&a) => Ok((a, b)),
        _ => Err(bad()),
    }
}
