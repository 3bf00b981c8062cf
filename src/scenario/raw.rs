//! The file's shape as serde reads it: every table and key a scenario may hold, with the
//! span of each value so that a refusal can point at it. Unknown keys are refused here
//! (`deny_unknown_fields`); what the values mean is checked by the sibling modules.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) scenario: RawScenario,
    pub(super) live: Option<Spanned<RawLive>>,
    #[serde(default)]
    pub(super) host: Vec<RawHost>,
    #[serde(default)]
    pub(super) workload: Vec<RawWorkload>,
    #[serde(default)]
    pub(super) nat: Vec<RawNat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    pub(super) name: Spanned<String>,
    pub(super) profile: Option<Spanned<String>>,
    pub(super) ips: Spanned<Vec<Spanned<String>>>,
    pub(super) behind: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) knobs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    pub(super) duration: Spanned<String>,
    #[serde(default = "default_seed")]
    pub(super) seed: u64,
    pub(super) bin: Option<Spanned<String>>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLive {
    #[serde(default)]
    pub(super) exact: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) ignore: Vec<Spanned<String>>,
    pub(super) tolerance: Option<Spanned<f64>>,
    pub(super) max_connections: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: Spanned<String>,
    pub(super) profile: Option<Spanned<String>>,
    pub(super) ips: Spanned<Vec<Spanned<String>>>,
    /// A fleet: this many identical hosts (`NAME[1]` … `NAME[N]`).
    pub(super) count: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) listen: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) knobs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) model: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub(super) name: Spanned<String>,
    pub(super) client: Option<Spanned<String>>,
    pub(super) clients: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) source_ips: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) destinations: Spanned<Vec<Spanned<String>>>,
    pub(super) spread: Option<Spanned<String>>,
    pub(super) arrival: Spanned<RawArrival>,
    pub(super) requests_per_connection: Option<Spanned<i64>>,
    pub(super) rtt: Spanned<toml::Value>,
    pub(super) service_time: Option<Spanned<toml::Value>>,
    pub(super) request_bytes: Option<Spanned<i64>>,
    pub(super) closer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) linger_zero: bool,
    pub(super) connection: Option<Spanned<String>>,
    pub(super) explicit_ports: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) reuseaddr: bool,
    pub(super) local_port_range: Option<Spanned<String>>,
    pub(super) on_error: Option<Spanned<RawOnError>>,
    pub(super) start: Option<Spanned<String>>,
    pub(super) stop: Option<Spanned<String>>,
    pub(super) limit: Option<Spanned<RawLimit>>,
    pub(super) threads: Option<Spanned<i64>>,
    /// `[workload.pool]` ([`super::pool`]).
    pub(super) pool: Option<Spanned<RawTable>>,
    /// `[workload.library]` ([`super::pool`]).
    pub(super) library: Option<Spanned<RawTable>>,
}

/// A table of keys checked one by one, each with its position.
pub(super) type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    pub(super) connections: Option<Spanned<i64>>,
    pub(super) requests: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArrival {
    pub(super) kind: Spanned<String>,
    pub(super) rate: Option<Spanned<toml::Value>>,
    pub(super) steps: Option<Vec<Spanned<RawStep>>>,
    pub(super) process: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) at: Option<Spanned<String>>,
    pub(super) count: Option<Spanned<i64>>,
    pub(super) bursts: Option<Vec<Spanned<RawBurst>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBurst {
    pub(super) at: Spanned<String>,
    pub(super) count: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) at: Spanned<String>,
    pub(super) rate: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOnError {
    pub(super) action: Spanned<String>,
    pub(super) delay: Option<Spanned<String>>,
    pub(super) backoff: Option<Spanned<f64>>,
    pub(super) max_delay: Option<Spanned<String>>,
    pub(super) max_retries: Option<Spanned<i64>>,
}
