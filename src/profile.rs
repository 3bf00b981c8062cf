//! Kernel profiles as data: defaults, and overrides by the kernel's own knob names.
//!
//! A host names a profile (`linux`) and may override it in its scenario with sysctl names
//! (`"net.ipv4.tcp_tw_reuse" = 0`) under `[host.knobs]`, and with model parameters that no
//! sysctl exposes (the TIME-WAIT length of a kernel built differently) under `[host.model]`.
//! Each field cites the section of `shared/reference/stack-semantics.md` it comes from.

use crate::time::Duration;
use std::fmt;

/// The kernels portsim models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Linux,
}

/// One host's TCP port behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub kernel: Kernel,
    /// `net.ipv4.ip_local_port_range`, inclusive; default 32768–60999 (§1.1).
    pub port_range: (u16, u16),
    /// `net.ipv4.ip_local_reserved_ports`: skipped by connect() and bind(0), not by explicit
    /// binds (§1.3 step 1).
    pub reserved_ports: Vec<(u16, u16)>,
    /// `net.ipv4.ip_unprivileged_port_start`: the range may not start below it (§1.1).
    pub unprivileged_port_start: u16,
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (default) (§2.3).
    pub tw_reuse: u8,
    /// `net.ipv4.tcp_tw_reuse_delay` in ms, default 1000, range 1–60000 (§2.3).
    pub tw_reuse_delay_ms: u32,
    /// `net.ipv4.tcp_timestamps`: 0 off, 1 on with per-pair offset (default), 2 on without (§2.3).
    pub timestamps: u8,
    /// `net.ipv4.tcp_max_tw_buckets`: ehash buckets / 2, so it scales with RAM; 131072 as read
    /// on the 24 GiB machine portsim is developed on (§2.2).
    pub max_tw_buckets: u32,
    /// `net.ipv4.tcp_rfc1337`: 0 (default) lets an in-window RST kill TIME-WAIT (§2.4, §5.2).
    pub rfc1337: bool,
    /// `net.ipv4.tcp_syn_retries`, default 6 (§2.4: retransmitted SYN after the initial RTO).
    pub syn_retries: u8,
    /// `net.ipv4.ip_autobind_reuse`, default 0: a relaxed second bind(0) round (§1.6).
    pub autobind_reuse: bool,
    /// Model parameter `time_wait`: `TCP_TIMEWAIT_LEN`, a compile-time 60 s; no sysctl sets
    /// it (§2.1). Also the window of the unprotected-reuse count (Linux's stand-in for 2·MSL).
    pub time_wait: Duration,
    /// Model parameter `syn_rto`: `TCP_TIMEOUT_INIT` = 1 s, doubled per retransmission (§2.4).
    pub syn_rto: Duration,
    /// Model parameter `syn_rearm`: when an ACK that does not acknowledge the SYN arrives (a
    /// TIME-WAIT rejecting the SYN, §2.4), `tcp_rcv_synsent_state_process` re-arms the SYN timer
    /// to `TCP_TIMEOUT_MIN` (2 jiffies) if no retransmission happened yet. Measured 8.4–11.8 ms
    /// on a HZ=250 kernel (notes/linux-observations, experiment I), so 10 ms; 2 ms at HZ=1000.
    /// The reference's "about +1 s" is the initial RTO, which applies only to later SYNs.
    pub syn_rearm: Duration,
}

/// Names of the profiles portsim ships.
pub const PROFILES: &[&str] = &["linux"];

impl Profile {
    /// The profile called `name`, with its kernel's defaults.
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "linux" => Some(Profile::linux()),
            _ => None,
        }
    }

    /// Linux 6.14+ defaults (the reference reads 6.8–6.14 sources; live checks ran on 6.18).
    pub fn linux() -> Profile {
        Profile {
            kernel: Kernel::Linux,
            port_range: (32768, 60999),
            reserved_ports: Vec::new(),
            unprivileged_port_start: 1024,
            tw_reuse: 2,
            tw_reuse_delay_ms: 1000,
            timestamps: 1,
            max_tw_buckets: 131_072,
            rfc1337: false,
            syn_retries: 6,
            autobind_reuse: false,
            time_wait: Duration::from_secs(60),
            syn_rto: Duration::from_secs(1),
            syn_rearm: Duration::from_millis(10),
        }
    }

    /// Ports in the ephemeral range.
    pub fn range_len(&self) -> u32 {
        u32::from(self.port_range.1) - u32::from(self.port_range.0) + 1
    }

    pub fn is_reserved(&self, port: u16) -> bool {
        self.reserved_ports
            .iter()
            .any(|&(a, b)| (a..=b).contains(&port))
    }

    /// Applies `key = value` from `[host.knobs]`.
    pub fn set_knob(&mut self, key: &str, value: &toml::Value) -> Result<(), KnobError> {
        let spec = KNOBS
            .iter()
            .find(|k| k.name == key)
            .ok_or_else(|| KnobError::Unknown {
                suggestion: nearest(key, KNOBS.iter().map(|k| k.name)),
            })?;
        let bad = || KnobError::BadValue {
            allowed: spec.allowed,
        };
        let int = |lo: i64, hi: i64| -> Result<i64, KnobError> {
            let v = match value {
                toml::Value::Integer(i) => *i,
                toml::Value::String(s) => s.trim().parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        match key {
            "net.ipv4.ip_local_port_range" => {
                let text = value.as_str().ok_or_else(bad)?;
                let nums: Vec<u16> = text
                    .split_whitespace()
                    .map(|t| t.parse::<u16>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad())?;
                let [lo, hi] = nums[..] else {
                    return Err(bad());
                };
                if lo == 0 || lo > hi {
                    return Err(bad());
                }
                self.port_range = (lo, hi);
            }
            "net.ipv4.ip_local_reserved_ports" => {
                let text = value.as_str().ok_or_else(bad)?;
                self.reserved_ports = parse_port_list(text).ok_or_else(bad)?;
            }
            "net.ipv4.ip_unprivileged_port_start" => {
                self.unprivileged_port_start = int(0, 65535)? as u16
            }
            "net.ipv4.tcp_tw_reuse" => self.tw_reuse = int(0, 2)? as u8,
            "net.ipv4.tcp_tw_reuse_delay" => self.tw_reuse_delay_ms = int(1, 60_000)? as u32,
            "net.ipv4.tcp_timestamps" => self.timestamps = int(0, 2)? as u8,
            "net.ipv4.tcp_max_tw_buckets" => {
                self.max_tw_buckets = int(0, i64::from(i32::MAX))? as u32
            }
            "net.ipv4.tcp_rfc1337" => self.rfc1337 = int(0, 1)? == 1,
            "net.ipv4.tcp_syn_retries" => self.syn_retries = int(1, 127)? as u8,
            "net.ipv4.ip_autobind_reuse" => self.autobind_reuse = int(0, 1)? == 1,
            _ => unreachable!("every KNOBS entry is handled"),
        }
        Ok(())
    }

    /// Applies `key = value` from `[host.model]`.
    pub fn set_model(&mut self, key: &str, value: &toml::Value) -> Result<(), KnobError> {
        let spec =
            MODEL_PARAMS
                .iter()
                .find(|k| k.name == key)
                .ok_or_else(|| KnobError::Unknown {
                    suggestion: nearest(key, MODEL_PARAMS.iter().map(|k| k.name)),
                })?;
        let bad = || KnobError::BadValue {
            allowed: spec.allowed,
        };
        let d = value
            .as_str()
            .and_then(|s| Duration::parse(s).ok())
            .filter(|d| d.0 > 0)
            .ok_or_else(bad)?;
        match key {
            "time_wait" => self.time_wait = d,
            "syn_rto" => self.syn_rto = d,
            "syn_rearm" => self.syn_rearm = d,
            _ => unreachable!("every MODEL_PARAMS entry is handled"),
        }
        Ok(())
    }

    /// Checks the profile as the kernel's sysctl handlers would (§1.1: the range may not
    /// start below `ip_unprivileged_port_start`).
    pub fn validate(&self) -> Result<(), String> {
        if self.port_range.0 < self.unprivileged_port_start {
            return Err(format!(
                "net.ipv4.ip_local_port_range starts at {} below net.ipv4.ip_unprivileged_port_start = {}; \
                 the kernel refuses this with EINVAL",
                self.port_range.0, self.unprivileged_port_start
            ));
        }
        Ok(())
    }

    /// Legal but surprising settings, as the kernel would warn.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.port_range.0 % 2 == self.port_range.1 % 2 && self.port_range.0 != self.port_range.1
        {
            w.push(format!(
                "net.ipv4.ip_local_port_range {} {}: both ends have the same parity; Linux warns \
                 \"prefer different parity for start/end values\" and connect() never uses one port",
                self.port_range.0, self.port_range.1
            ));
        }
        w
    }

    /// The effective knob values, for reports.
    pub fn knob_values(&self) -> Vec<(&'static str, String)> {
        let reserved = self
            .reserved_ports
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        vec![
            (
                "net.ipv4.ip_local_port_range",
                format!("{} {}", self.port_range.0, self.port_range.1),
            ),
            ("net.ipv4.ip_local_reserved_ports", reserved),
            (
                "net.ipv4.ip_unprivileged_port_start",
                self.unprivileged_port_start.to_string(),
            ),
            ("net.ipv4.tcp_tw_reuse", self.tw_reuse.to_string()),
            (
                "net.ipv4.tcp_tw_reuse_delay",
                self.tw_reuse_delay_ms.to_string(),
            ),
            ("net.ipv4.tcp_timestamps", self.timestamps.to_string()),
            (
                "net.ipv4.tcp_max_tw_buckets",
                self.max_tw_buckets.to_string(),
            ),
            ("net.ipv4.tcp_rfc1337", u8::from(self.rfc1337).to_string()),
            ("net.ipv4.tcp_syn_retries", self.syn_retries.to_string()),
            (
                "net.ipv4.ip_autobind_reuse",
                u8::from(self.autobind_reuse).to_string(),
            ),
            ("time_wait", self.time_wait.to_string()),
            ("syn_rto", self.syn_rto.to_string()),
            ("syn_rearm", self.syn_rearm.to_string()),
        ]
    }
}

/// A settable parameter: its name, what values it takes, and the reference section.
pub struct KnobSpec {
    pub name: &'static str,
    pub allowed: &'static str,
    pub section: &'static str,
}

/// Linux sysctls portsim models.
pub const KNOBS: &[KnobSpec] = &[
    KnobSpec {
        name: "net.ipv4.ip_local_port_range",
        allowed: "\"LOW HIGH\", 1 ≤ LOW ≤ HIGH ≤ 65535, e.g. \"32768 60999\"",
        section: "§1.1",
    },
    KnobSpec {
        name: "net.ipv4.ip_local_reserved_ports",
        allowed: "a comma-separated list of ports and ranges, e.g. \"40000,40010-40020\"",
        section: "§1.3",
    },
    KnobSpec {
        name: "net.ipv4.ip_unprivileged_port_start",
        allowed: "an integer 0–65535",
        section: "§1.1",
    },
    KnobSpec {
        name: "net.ipv4.tcp_tw_reuse",
        allowed: "0, 1 or 2",
        section: "§2.3",
    },
    KnobSpec {
        name: "net.ipv4.tcp_tw_reuse_delay",
        allowed: "milliseconds, 1–60000",
        section: "§2.3",
    },
    KnobSpec {
        name: "net.ipv4.tcp_timestamps",
        allowed: "0, 1 or 2",
        section: "§2.3",
    },
    KnobSpec {
        name: "net.ipv4.tcp_max_tw_buckets",
        allowed: "an integer ≥ 0",
        section: "§2.2",
    },
    KnobSpec {
        name: "net.ipv4.tcp_rfc1337",
        allowed: "0 or 1",
        section: "§2.4",
    },
    KnobSpec {
        name: "net.ipv4.tcp_syn_retries",
        allowed: "an integer 1–127",
        section: "§2.4",
    },
    KnobSpec {
        name: "net.ipv4.ip_autobind_reuse",
        allowed: "0 or 1",
        section: "§1.6",
    },
];

/// Model parameters no sysctl exposes.
pub const MODEL_PARAMS: &[KnobSpec] = &[
    KnobSpec {
        name: "time_wait",
        allowed: "a positive duration, e.g. \"60s\" (Linux: TCP_TIMEWAIT_LEN, fixed at build time)",
        section: "§2.1",
    },
    KnobSpec {
        name: "syn_rto",
        allowed: "a positive duration, e.g. \"1s\" (TCP_TIMEOUT_INIT)",
        section: "§2.4",
    },
    KnobSpec {
        name: "syn_rearm",
        allowed: "a positive duration, e.g. \"10ms\" (TCP_TIMEOUT_MIN, 2 jiffies)",
        section: "§2.4; notes/linux-observations I",
    },
];

/// Why a knob or model parameter was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnobError {
    Unknown { suggestion: Option<&'static str> },
    BadValue { allowed: &'static str },
}

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobError::Unknown {
                suggestion: Some(s),
            } => {
                write!(f, "not a knob of this profile; did you mean \"{s}\"?")
            }
            KnobError::Unknown { suggestion: None } => write!(f, "not a knob of this profile"),
            KnobError::BadValue { allowed } => write!(f, "bad value; allowed: {allowed}"),
        }
    }
}

fn parse_port_list(text: &str) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a == 0 || a > b {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

/// The candidate closest to `word` by edit distance, if any is reasonably close.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_override_linux_defaults_by_sysctl_name() {
        let mut p = Profile::linux();
        assert_eq!(p.range_len(), 28232);
        p.set_knob(
            "net.ipv4.ip_local_port_range",
            &toml::Value::String("49152 65535".into()),
        )
        .unwrap();
        assert_eq!(p.range_len(), 16384);
        p.set_knob("net.ipv4.tcp_tw_reuse", &toml::Value::Integer(0))
            .unwrap();
        assert_eq!(p.tw_reuse, 0);
        p.set_knob(
            "net.ipv4.ip_local_reserved_ports",
            &toml::Value::String("50000,50010-50012".into()),
        )
        .unwrap();
        assert!(p.is_reserved(50011) && !p.is_reserved(50013));
    }

    #[test]
    fn bad_knobs_name_what_is_allowed() {
        let mut p = Profile::linux();
        let e = p
            .set_knob("net.ipv4.tcp_tw_reuse", &toml::Value::Integer(3))
            .unwrap_err();
        assert!(e.to_string().contains("0, 1 or 2"));
        let e = p
            .set_knob("net.ipv4.tcp_tw_resue", &toml::Value::Integer(1))
            .unwrap_err();
        assert_eq!(
            e,
            KnobError::Unknown {
                suggestion: Some("net.ipv4.tcp_tw_reuse")
            }
        );
        let e = p
            .set_knob(
                "net.ipv4.ip_local_port_range",
                &toml::Value::String("60999 32768".into()),
            )
            .unwrap_err();
        assert!(matches!(e, KnobError::BadValue { .. }));
    }

    #[test]
    fn a_range_below_the_unprivileged_start_is_refused_like_the_kernel() {
        let mut p = Profile::linux();
        p.set_knob(
            "net.ipv4.ip_local_port_range",
            &toml::Value::String("1000 60999".into()),
        )
        .unwrap();
        assert!(p.validate().is_err());
    }
}
