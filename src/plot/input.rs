//! What a chart is drawn from: a run's report (`portsim.report/1`), a live report
//! (`portsim.live/1`), read from JSON or made by running a scenario file. Only the fields the
//! charts use are read, so a report from a newer version with more fields still plots.

use crate::report::Report;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Clone, Debug)]
pub struct ReportView {
    pub schema: String,
    pub scenario: ScenarioView,
    pub seed: u64,
    pub duration_s: f64,
    pub bin_s: f64,
    pub hosts: Vec<HostView>,
    pub pools: Vec<PoolView>,
    /// The NATs on the paths; none in a report without them.
    #[serde(default)]
    pub nat: Vec<NatView>,
    pub summary: SummaryView,
    pub series: Vec<BinView>,
    /// A replicated run's distributions (`run --seeds`): drawn as bands.
    #[serde(default)]
    pub replicates: Option<crate::replicate::Replicates>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct ScenarioView {
    pub name: String,
}

#[derive(Deserialize, Clone, Debug)]
pub struct HostView {
    pub name: String,
    pub profile: String,
    #[serde(default)]
    pub knobs: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct PoolView {
    /// `connect`, `connect (host-wide)`, `bind` or `explicit`.
    pub kind: String,
    pub host: String,
    pub destination: Option<String>,
    pub ports: u32,
    pub time_wait_s: f64,
    /// One instance's, on a fleet's entry.
    pub formula_limit_per_s: f64,
    /// A fleet's entry: its instances.
    #[serde(default)]
    pub instances: Option<u32>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct NatView {
    pub name: String,
    pub ips: Vec<String>,
    /// Ports per address toward one destination.
    pub ports: u32,
    #[serde(default)]
    pub knobs: BTreeMap<String, String>,
    #[serde(default)]
    pub profile: String,
    /// The hosts behind it.
    #[serde(default)]
    pub behind: Vec<String>,
    /// A cloud gateway that gives each VM its own ports: how many.
    #[serde(default)]
    pub ports_per_vm: Option<u32>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct SummaryView {
    pub connections: ConnectionsView,
    pub first_failure_s: Option<f64>,
    pub time_wait: TimeWaitView,
}

#[derive(Deserialize, Clone, Debug)]
pub struct ConnectionsView {
    pub attempted: u64,
    pub established: u64,
}

#[derive(Deserialize, Clone, Debug)]
pub struct TimeWaitView {
    pub peak: u32,
    /// Absent from reports written before it existed.
    #[serde(default)]
    pub first_expiry_s: Option<f64>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct BinView {
    pub t_s: f64,
    pub attempts: u64,
    pub established: u64,
    pub failed: BTreeMap<String, u64>,
    pub requests_completed: u64,
    pub time_wait_client: u32,
    pub time_wait_server: u32,
    pub established_sockets_client: u32,
    pub established_sockets_server: u32,
    pub free_ports_min: Option<u32>,
    pub connect_latency_ms: Option<PercentilesView>,
    /// Per NAT, in the order of `nat`.
    #[serde(default)]
    pub nat_ports_in_use: Vec<u64>,
    /// Per NAT: its conntrack entries by state.
    #[serde(default)]
    pub conntrack_states: Vec<BTreeMap<String, u64>>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct PercentilesView {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Deserialize, Clone, Debug)]
pub struct LiveView {
    pub schema: String,
    pub scenario: String,
    pub kernel: String,
    pub verdict: String,
    pub measured: MeasuredView,
    pub predicted: ReportView,
}

#[derive(Deserialize, Clone, Debug)]
pub struct MeasuredView {
    pub series: Vec<crate::live::MeasuredBin>,
}

impl ReportView {
    /// The view of a report made in this process.
    pub fn of(r: &Report) -> ReportView {
        let v = serde_json::to_value(r).expect("a report serializes");
        serde_json::from_value(v).expect("a report has every field a chart reads")
    }
}

impl LiveView {
    pub fn of(r: &crate::live::LiveReport) -> LiveView {
        let v = serde_json::to_value(r).expect("a live report serializes");
        serde_json::from_value(v).expect("a live report has every field a chart reads")
    }
}

/// A chart's input.
#[derive(Clone, Debug)]
pub enum Input {
    Report(Box<ReportView>),
    Live(Box<LiveView>),
}

/// Why an input could not be read.
#[derive(Debug)]
pub enum InputError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// JSON, but not a report this version plots.
    Schema {
        path: PathBuf,
        found: String,
    },
    Scenario(crate::scenario::ScenarioError),
    Extension(PathBuf),
    /// Parsed, but a value no run produces (a bin of zero seconds, an infinite latency).
    Value {
        path: PathBuf,
        field: String,
        message: String,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            InputError::Json {
                path,
                line,
                column,
                message,
            } => write!(f, "{}:{line}:{column}: {message}", path.display()),
            InputError::Schema { path, found } => write!(
                f,
                "{}: schema {found:?}; plot reads \"portsim.report/1\" (portsim run --format json) \
                 and \"portsim.live/1\" (portsim live --format json)",
                path.display()
            ),
            InputError::Scenario(e) => write!(f, "{e}"),
            InputError::Value {
                path,
                field,
                message,
            } => write!(f, "{}: `{field}`: {message}", path.display()),
            InputError::Extension(p) => write!(
                f,
                "{}: plot reads a scenario (.toml) or a report (.json)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Reads a report (`.json`) or runs a scenario (`.toml`).
pub fn load(path: &Path) -> Result<Input, InputError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let r = crate::run_file(path).map_err(InputError::Scenario)?;
            Ok(Input::Report(Box::new(ReportView::of(&r))))
        }
        Some("json") => {
            let text = std::fs::read_to_string(path).map_err(|error| InputError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            parse_json(path, &text)
        }
        _ => Err(InputError::Extension(path.to_path_buf())),
    }
}

/// A value a chart can place: finite, non-negative and below [`super::MAX_VALUE`].
fn finite(field: &str, v: f64) -> Result<(), (String, String)> {
    if v.is_finite() && (0.0..super::MAX_VALUE).contains(&v) {
        Ok(())
    } else {
        Err((
            field.to_string(),
            format!("{v} is not a time, rate or latency a run reports"),
        ))
    }
}

/// The values of a report a chart divides by or places on an axis.
fn check_report(r: &ReportView, prefix: &str) -> Result<(), (String, String)> {
    let f = |k: &str| format!("{prefix}{k}");
    finite(&f("duration_s"), r.duration_s)?;
    finite(&f("bin_s"), r.bin_s)?;
    if r.bin_s <= 0.0 {
        return Err((f("bin_s"), "must be greater than zero".into()));
    }
    for (i, p) in r.pools.iter().enumerate() {
        finite(&f(&format!("pools[{i}].time_wait_s")), p.time_wait_s)?;
        finite(
            &f(&format!("pools[{i}].formula_limit_per_s")),
            p.formula_limit_per_s,
        )?;
    }
    for (k, v) in [
        ("summary.first_failure_s", r.summary.first_failure_s),
        (
            "summary.time_wait.first_expiry_s",
            r.summary.time_wait.first_expiry_s,
        ),
    ] {
        if let Some(v) = v {
            finite(&f(k), v)?;
        }
    }
    for (i, b) in r.series.iter().enumerate() {
        finite(&f(&format!("series[{i}].t_s")), b.t_s)?;
        if let Some(l) = &b.connect_latency_ms {
            finite(&f(&format!("series[{i}].connect_latency_ms.p50")), l.p50)?;
            finite(&f(&format!("series[{i}].connect_latency_ms.p99")), l.p99)?;
        }
    }
    Ok(())
}

/// Parses report JSON, naming the line and column of what is wrong.
pub fn parse_json(path: &Path, text: &str) -> Result<Input, InputError> {
    let json_err = |e: serde_json::Error| InputError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    #[derive(Deserialize)]
    struct Head {
        schema: Option<String>,
    }
    let head: Head = serde_json::from_str(text).map_err(json_err)?;
    let bad = |field: String, message: String| InputError::Value {
        path: path.to_path_buf(),
        field,
        message,
    };
    match head.schema.as_deref() {
        Some("portsim.report/1") => {
            let r: ReportView = serde_json::from_str(text).map_err(json_err)?;
            check_report(&r, "").map_err(|(f, m)| bad(f, m))?;
            Ok(Input::Report(Box::new(r)))
        }
        Some("portsim.live/1") => {
            let l: LiveView = serde_json::from_str(text).map_err(json_err)?;
            check_report(&l.predicted, "predicted.").map_err(|(f, m)| bad(f, m))?;
            for (i, b) in l.measured.series.iter().enumerate() {
                let at = |k: &str| format!("measured.series[{i}].{k}");
                finite(&at("t_s"), b.t_s).map_err(|(f, m)| bad(f, m))?;
                for (k, v) in [
                    ("connect_latency_p50_ms", b.connect_latency_p50_ms),
                    ("connect_latency_max_ms", b.connect_latency_max_ms),
                ] {
                    if let Some(v) = v {
                        finite(&at(k), v).map_err(|(f, m)| bad(f, m))?;
                    }
                }
            }
            Ok(Input::Live(Box::new(l)))
        }
        other => Err(InputError::Schema {
            path: path.to_path_buf(),
            found: other.unwrap_or("(none)").to_string(),
        }),
    }
}
