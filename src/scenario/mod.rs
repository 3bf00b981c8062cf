//! Scenario files (TOML): parsing, validation, and clear errors.
//!
//! Every rejection names the file, line and column, the key, what was given and what is
//! allowed. See `scenarios/` for examples and README.md for the format. The tables are
//! checked in this order — `[scenario]`, the hosts, the workloads, the NATs, `[live]` — and each key
//! where the value it builds is made:
//!
//! - `raw`: the file's shape as serde reads it, with the span of every value.
//! - `value`: errors that point into the file, and the readers of single values
//!   (durations, addresses, rates, latency distributions, one-of choices).
//! - `hosts`: `[[host]]`: names, profiles with their `[host.knobs]` and `[host.model]`
//!   overrides, addresses, listeners.
//! - `workloads`: `[[workload]]` assembled: the exchange, `on_error`, `start`/`stop`,
//!   `limit`; with `endpoints` (clients, connection modes, sources, destinations) and
//!   `arrival` (rates, steps, bursts, closed loops).
//! - `nat`: `[[nat]]`: NATs between the hosts behind them and the rest, their profiles,
//!   addresses and `[nat.knobs]`.
//! - `live`: `[live]`, how `portsim live` judges the prediction.
//! - `set`: one value of a scenario's text replaced by key path ([`set()`]).
//! - `schema`: the JSON Schema of the format, for editors ([`json_schema`]).

mod arrival;
mod endpoints;
mod hosts;
mod live;
mod nat;
mod pool;
mod raw;
mod schema;
mod set;
mod value;
mod workloads;

use crate::profile::Profile;
use crate::time::Duration;
use crate::workload::Workload;
use raw::RawFile;
pub use schema::json_schema;
pub use set::{SetError, set};
use std::fmt;
pub(crate) use value::list;
use value::{Ctx, positive_duration};

/// A scenario that passed validation.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub file: String,
    pub description: String,
    pub seed: u64,
    pub duration: Duration,
    pub bin: Duration,
    pub hosts: Vec<HostSpec>,
    pub workloads: Vec<Workload>,
    /// NATs on the paths from the hosts behind them to the others.
    pub nats: Vec<NatSpec>,
    /// Legal but surprising settings.
    pub warnings: Vec<String>,
    /// How `portsim live` judges predicted against measured.
    pub live: LiveSpec,
}

/// The `[live]` table: tolerances for `portsim live`.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveSpec {
    /// Metrics that must agree exactly (`established`, `failed`, `failed EADDRNOTAVAIL`, …):
    /// counts the kernel makes deterministic.
    pub exact: Vec<String>,
    /// Largest relative difference allowed for the other metrics.
    pub tolerance: f64,
    /// Metrics shown but not judged (what the live run cannot reproduce, such as rates set by
    /// this machine's CPU rather than by ports).
    pub ignore: Vec<String>,
    /// Connection cap for the live run.
    pub max_connections: Option<u64>,
}

/// Metrics `[live]` may name.
pub const LIVE_METRICS: &[&str] = &[
    "attempted",
    "established",
    "failed",
    "requests_completed",
    "time_wait_peak",
    "time_wait_at_end",
    "leading_even_ports",
    "first_refill_s",
    // A run through a NAT (src/live/nat.rs): the router's table at the end and its counters.
    "nat_ports_in_use",
    "conntrack_entries",
    "conntrack_syn_sent",
    "conntrack_syn_recv",
    "conntrack_established",
    "conntrack_fin_wait",
    "conntrack_close_wait",
    "conntrack_last_ack",
    "conntrack_time_wait",
    "conntrack_close",
    "insert_failed",
    "conntrack_drop",
    "early_drop",
];

/// Gauges read by sampling, which can miss a peak between two samples: never judged exactly.
pub const SAMPLED_METRICS: &[&str] = &["time_wait_peak"];

/// A `[[nat]]`: the hosts behind it reach every other host through it.
#[derive(Clone, Debug)]
pub struct NatSpec {
    pub name: String,
    pub profile_name: String,
    pub ips: Vec<u32>,
    /// Indices into [`Scenario::hosts`].
    pub behind: Vec<usize>,
    pub config: crate::nat::NatConfig,
}

#[derive(Clone, Debug)]
pub struct HostSpec {
    pub name: String,
    pub profile_name: String,
    pub profile: Profile,
    pub ips: Vec<u32>,
    pub listen: Vec<(u32, u16)>,
    /// The fleet this host is an instance of (`count` > 1), if any.
    pub fleet: Option<Instance>,
}

impl HostSpec {
    /// The name its file gives: a fleet instance's is the fleet's.
    pub fn file_name(&self) -> &str {
        self.fleet.as_ref().map_or(&self.name, |f| &f.fleet)
    }
}

/// Instance `k` of a fleet: a `[[host]]` with `count = N` stands for N identical hosts,
/// named `NAME[1]` … `NAME[N]`, with the same profile, knobs and model; instance `k`'s
/// addresses are each of the fleet's `ips` plus `k − 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The fleet's name, as the file gives it.
    pub fleet: String,
    /// 1-based.
    pub k: u32,
    /// The fleet's `count`.
    pub count: u32,
}

/// Why a scenario was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The bin width when the scenario sets none: the smallest "nice" width giving ≤ 500 bins.
pub fn auto_bin(duration: Duration) -> Duration {
    const LADDER_MS: [u64; 22] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    ];
    LADDER_MS
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .find(|b| duration.0.div_ceil(b.0) <= 500)
        .unwrap_or(Duration::from_secs(3600))
}

// ---- parsing and validation ---------------------------------------------------------

/// Reads and validates the scenario at `path`.
pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&file, &text)
}

/// Parses and validates scenario `text`; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let ctx = Ctx { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    build(&ctx, raw)
}

/// The scenario `raw` describes, checked table by table: `[scenario]`, hosts, workloads,
/// `[live]`.
fn build(ctx: &Ctx, raw: RawFile) -> Result<Scenario, ScenarioError> {
    let sc = &raw.scenario;
    let total = positive_duration(ctx, &sc.duration, "scenario.duration")?;
    let bin = match &sc.bin {
        Some(b) => positive_duration(ctx, b, "scenario.bin")?,
        None => auto_bin(total),
    };
    let hosts = hosts::hosts(ctx, &raw.host)?;
    let workloads = workloads::workloads(ctx, &raw.workload, &hosts, total)?;
    let nats = nat::nats(ctx, &raw.nat, &hosts)?;
    let live = live::live(ctx, raw.live.as_ref())?;
    let mut warnings = host_warnings(&hosts.specs);
    warnings.extend(long_run(total, &workloads));
    Ok(Scenario {
        live,
        name: sc.name.clone(),
        file: ctx.file.to_string(),
        description: sc.description.trim().to_string(),
        seed: sc.seed,
        duration: total,
        bin,
        hosts: hosts.specs,
        workloads,
        nats,
        warnings,
    })
}

/// Each host's legal but surprising settings, as its kernel would warn, in host order.
fn host_warnings(hosts: &[HostSpec]) -> Vec<String> {
    hosts
        .iter()
        .flat_map(|h| {
            h.profile
                .warnings()
                .into_iter()
                .map(move |w| format!("host {}: {w}", h.name))
        })
        .collect()
}

/// Connection attempts the open-loop arrivals make, and the wall time they take at the
/// engine's measured pace on the slower of its speed benches (about 3 M attempts/s on
/// many-pools, README "Speed"): a warning when that is over a minute.
fn long_run(total: Duration, workloads: &[Workload]) -> Option<String> {
    let attempts: f64 = workloads
        .iter()
        .map(|w| w.arrival.arrivals_in(w.active_secs(total)).unwrap_or(0.0))
        .sum();
    let secs = attempts / 3e6;
    (secs > 60.0).then(|| {
        format!(
            "about {:.3e} connection attempts: expect roughly {} of wall time",
            attempts,
            if secs < 3600.0 {
                format!("{:.0} min", secs / 60.0)
            } else {
                format!("{:.1} h", secs / 3600.0)
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[scenario]
name = "t"
duration = "10s"

[[host]]
name = "c"
ips = ["10.0.0.1"]

[[host]]
name = "s"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "c"
destinations = ["10.0.0.2:80"]
rtt = "100us"
arrival = { kind = "constant", rate = 100 }
"#;

    #[test]
    fn a_minimal_scenario_parses() {
        let s = parse("t.toml", OK).unwrap();
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.bin, Duration::from_millis(20));
        assert_eq!(s.workloads[0].destinations[0].host, 1);
    }

    fn err(text: &str) -> ScenarioError {
        parse("bad.toml", text).unwrap_err()
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err(&OK.replace("rtt = \"100us\"", "rtt = \"100us\"\nrat = 5"));
        assert_eq!(e.line, 20);
        assert!(e.message.contains("unknown field `rat`"), "{e}");
        assert!(e.key.contains("rat"), "{e}");
        let e = err(&OK.replace(
            "rtt = \"100us\"",
            "rtt = \"100us\"\nrequests_per_conection = 5",
        ));
        assert!(
            e.message
                .ends_with("did you mean `requests_per_connection`?"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let e = err(&OK.replace("\"10s\"", "\"10 parsecs\""));
        assert_eq!((e.line, e.key.as_str()), (4, "scenario.duration"));
        assert!(e.message.contains("unit"), "{e}");
        let e = err(&OK.replace("listen = [\"10.0.0.2:80\"]", "listen = [\"10.0.0.2:81\"]"));
        assert!(e.message.contains("no listener"), "{e}");
        let e = err(&OK.replace("client = \"c\"", "client = \"cc\""));
        assert!(e.message.contains("did you mean \"c\""), "{e}");
        let e = err(&OK.replace("[[host]]\nname = \"c\"", "[[host]]\nname = \"c\"\nknobs = { \"net.ipv4.ip_local_port_range\" = \"60999 32768\" }"));
        assert!(e.message.contains("LOW HIGH"), "{e}");
        let e = err(&OK.replace("rate = 100", "rate = -3"));
        assert!(e.message.contains("> 0"), "{e}");
        let e = err(&OK.replace("\"constant\"", "\"constnat\""));
        assert!(e.message.contains("did you mean \"constant\""), "{e}");
    }

    #[test]
    fn the_live_table_names_known_metrics_and_a_sane_tolerance() {
        let e = err(&format!("{OK}\n[live]\nexact = [\"establised\"]\n"));
        assert_eq!(e.key, "live.exact");
        assert!(e.message.contains("\"established\""), "{}", e.message);
        let e = err(&format!("{OK}\n[live]\ntolerance = 1.5\n"));
        assert_eq!(e.key, "live.tolerance");
        let sc = parse(
            "t.toml",
            &format!(
                "{OK}\n[live]\nexact = [\"failed EADDRNOTAVAIL\"]\nignore = [\"attempted\"]\n"
            ),
        )
        .unwrap();
        assert_eq!(sc.live.exact, ["failed EADDRNOTAVAIL"]);
        assert_eq!(sc.live.ignore, ["attempted"]);
    }

    #[test]
    fn a_server_that_closes_after_zero_requests_is_refused() {
        let text = OK.replace(
            "[[workload]]",
            "[[workload]]\nrequests_per_connection = 0\ncloser = \"server\"",
        );
        let e = err(&text);
        assert!(e.message.contains("never close"), "{}", e.message);
    }

    #[test]
    fn several_source_ips_need_a_bind_mode() {
        let text = OK
            .replace("ips = [\"10.0.0.1\"]", "ips = [\"10.0.0.1\", \"10.0.0.3\"]")
            .replace(
                "client = \"c\"",
                "client = \"c\"\nsource_ips = [\"10.0.0.1\", \"10.0.0.3\"]",
            );
        assert!(err(&text).message.contains("bind_no_port"));
        let ok = text.replace(
            "client = \"c\"\n",
            "client = \"c\"\nconnection = \"bind\"\n",
        );
        assert_eq!(parse("t", &ok).unwrap().workloads[0].sources.len(), 2);
    }
}
