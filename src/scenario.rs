//! Scenario files (TOML): parsing, validation, and clear errors.
//!
//! Every rejection names the file, line and column, the key, what was given and what is
//! allowed. See `scenarios/` for examples and README.md for the format.

use crate::profile::{Profile, nearest};
use crate::time::{Duration, Instant};
use crate::workload::{
    Arrival, Closer, Destination, Dist, Limit, Mode, OnError, Rate, Source, Spread, Workload,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use toml::Spanned;

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
];

/// Gauges read by sampling, which can miss a peak between two samples: never judged exactly.
pub const SAMPLED_METRICS: &[&str] = &["time_wait_peak"];

#[derive(Clone, Debug)]
pub struct HostSpec {
    pub name: String,
    pub profile_name: String,
    pub profile: Profile,
    pub ips: Vec<u32>,
    pub listen: Vec<(u32, u16)>,
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

// ---- the file's shape -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawScenario,
    live: Option<Spanned<RawLive>>,
    #[serde(default)]
    host: Vec<RawHost>,
    #[serde(default)]
    workload: Vec<RawWorkload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    duration: Spanned<String>,
    #[serde(default = "default_seed")]
    seed: u64,
    bin: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLive {
    #[serde(default)]
    exact: Vec<Spanned<String>>,
    #[serde(default)]
    ignore: Vec<Spanned<String>>,
    tolerance: Option<Spanned<f64>>,
    max_connections: Option<Spanned<u64>>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    profile: Option<Spanned<String>>,
    ips: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    knobs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    model: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: Spanned<String>,
    client: Option<Spanned<String>>,
    clients: Option<Spanned<Vec<Spanned<String>>>>,
    source_ips: Option<Spanned<Vec<Spanned<String>>>>,
    destinations: Spanned<Vec<Spanned<String>>>,
    spread: Option<Spanned<String>>,
    arrival: Spanned<RawArrival>,
    requests_per_connection: Option<Spanned<i64>>,
    rtt: Spanned<toml::Value>,
    service_time: Option<Spanned<toml::Value>>,
    request_bytes: Option<Spanned<i64>>,
    closer: Option<Spanned<String>>,
    #[serde(default)]
    linger_zero: bool,
    connection: Option<Spanned<String>>,
    explicit_ports: Option<Spanned<String>>,
    #[serde(default)]
    reuseaddr: bool,
    local_port_range: Option<Spanned<String>>,
    on_error: Option<Spanned<RawOnError>>,
    start: Option<Spanned<String>>,
    stop: Option<Spanned<String>>,
    limit: Option<Spanned<RawLimit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    connections: Option<Spanned<i64>>,
    requests: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrival {
    kind: Spanned<String>,
    rate: Option<Spanned<toml::Value>>,
    steps: Option<Vec<Spanned<RawStep>>>,
    process: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    at: Option<Spanned<String>>,
    count: Option<Spanned<i64>>,
    bursts: Option<Vec<Spanned<RawBurst>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    at: Spanned<String>,
    count: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<String>,
    rate: Spanned<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOnError {
    action: Spanned<String>,
    delay: Option<Spanned<String>>,
    backoff: Option<Spanned<f64>>,
    max_delay: Option<Spanned<String>>,
    max_retries: Option<Spanned<i64>>,
}

// ---- errors with positions ----------------------------------------------------------

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = self.position(span.start);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key path at `offset`, read from the text: the enclosing table header and the key.
    fn key_at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let mut header = String::new();
        for line in before.lines() {
            let t = line.trim();
            if t.starts_with('[') && !t.contains('=') {
                header = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            }
        }
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line = &self.text[line_start..line_end];
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string());
        match (header.is_empty(), key) {
            (_, Some(k)) if line.trim_start().starts_with('[') => k,
            (true, Some(k)) => k,
            (false, Some(k)) => format!("{header}.{k}"),
            (_, None) => header,
        }
    }
}

fn duration(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<Duration, ScenarioError> {
    Duration::parse(v.get_ref())
        .map_err(|e| ctx.err(v.span(), key, format!("{:?}: {e}", v.get_ref())))
}

fn positive_duration(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<Duration, ScenarioError> {
    let d = duration(ctx, v, key)?;
    if d.0 == 0 {
        return Err(ctx.err(
            v.span(),
            key,
            format!("{:?}: must be greater than zero", v.get_ref()),
        ));
    }
    Ok(d)
}

fn ip(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<u32, ScenarioError> {
    v.get_ref().parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
        ctx.err(
            v.span(),
            key,
            format!(
                "{:?} is not an IPv4 address (e.g. \"10.0.0.1\")",
                v.get_ref()
            ),
        )
    })
}

fn endpoint(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<(u32, u16), ScenarioError> {
    let bad = || {
        ctx.err(
            v.span(),
            key,
            format!(
                "{:?} is not IPv4:PORT with a port 1–65535 (e.g. \"10.0.0.2:80\")",
                v.get_ref()
            ),
        )
    };
    let a: SocketAddrV4 = v.get_ref().parse().map_err(|_| bad())?;
    if a.port() == 0 {
        return Err(bad());
    }
    Ok((u32::from(*a.ip()), a.port()))
}

fn port_pair(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<(u16, u16), ScenarioError> {
    let nums: Vec<Option<u16>> = v
        .get_ref()
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect();
    match nums[..] {
        [Some(a), Some(b)] if a >= 1 && a <= b => Ok((a, b)),
        _ => Err(ctx.err(
            v.span(),
            key,
            format!(
                "{:?}: expected \"LOW HIGH\" with 1 ≤ LOW ≤ HIGH ≤ 65535",
                v.get_ref()
            ),
        )),
    }
}

fn rate(
    ctx: &Ctx,
    v: &Spanned<toml::Value>,
    key: &str,
    allow_zero: bool,
) -> Result<Rate, ScenarioError> {
    let text = match v.get_ref() {
        toml::Value::Integer(i) if *i >= 0 => i.to_string(),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => format!("{f}"),
        _ => String::new(),
    };
    let r = Rate::parse_decimal(&text).filter(|r| allow_zero || r.num > 0);
    r.ok_or_else(|| {
        let what = if allow_zero {
            "a number ≥ 0"
        } else {
            "a number > 0"
        };
        ctx.err(
            v.span(),
            key,
            format!(
                "{}: expected {what} of connections per second (at most 9 decimals)",
                v.get_ref()
            ),
        )
    })
}

fn dist(ctx: &Ctx, v: &Spanned<toml::Value>, key: &str) -> Result<Dist, ScenarioError> {
    const ALLOWED: &str = "a duration (\"100us\"), { dist = \"uniform\", min = \"…\", max = \"…\" } or { dist = \"exponential\", mean = \"…\" }";
    let bad = |m: String| ctx.err(v.span(), key, m);
    let d = |s: Option<&toml::Value>, k: &str| -> Result<Duration, ScenarioError> {
        let s = s
            .and_then(toml::Value::as_str)
            .ok_or_else(|| bad(format!("missing `{k}`; expected {ALLOWED}")))?;
        Duration::parse(s).map_err(|e| bad(format!("`{k}` {s:?}: {e}")))
    };
    match v.get_ref() {
        toml::Value::String(s) => Duration::parse(s)
            .map(Dist::Fixed)
            .map_err(|e| bad(format!("{s:?}: {e}"))),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["dist", "min", "max", "mean"].contains(&k.as_str()) {
                    return Err(bad(format!("unknown key `{k}`; expected {ALLOWED}")));
                }
            }
            match t.get("dist").and_then(toml::Value::as_str) {
                Some("fixed") => Ok(Dist::Fixed(d(t.get("mean"), "mean")?)),
                Some("uniform") => {
                    let (a, b) = (d(t.get("min"), "min")?, d(t.get("max"), "max")?);
                    if a > b {
                        return Err(bad(format!("min {a} is above max {b}")));
                    }
                    Ok(Dist::Uniform(a, b))
                }
                Some("exponential") => Ok(Dist::Exponential(d(t.get("mean"), "mean")?)),
                other => Err(bad(format!(
                    "dist {other:?}: expected \"fixed\", \"uniform\" or \"exponential\""
                ))),
            }
        }
        other => Err(bad(format!("{other}: expected {ALLOWED}"))),
    }
}

fn one_of<'a>(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
    allowed: &[&'a str],
) -> Result<&'a str, ScenarioError> {
    allowed
        .iter()
        .find(|a| **a == v.get_ref())
        .copied()
        .ok_or_else(|| {
            let hint = nearest(v.get_ref(), allowed.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            ctx.err(
                v.span(),
                key,
                format!("{:?} is not one of {}{hint}", v.get_ref(), list(allowed)),
            )
        })
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

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
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let key = ctx.key_at(span.start);
        let (line, column) = ctx.position(span.start);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            key,
            message: with_suggestion(&e.message().trim().replace('\n', " ")),
        }
    })?;
    build(&ctx, raw)
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

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest valid key named.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((given, rest)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match nearest(given, expected.iter().copied()) {
        Some(n) => format!("{message}; did you mean `{n}`?"),
        None => message.to_string(),
    }
}

/// `kind = "burst"`: `at` and `count` for one burst, or `bursts = [{ at, count }, …]`.
fn bursts(
    ctx: &Ctx,
    a: &RawArrival,
    span: std::ops::Range<usize>,
    key: &str,
) -> Result<Arrival, ScenarioError> {
    let one = match (&a.at, &a.count) {
        (Some(at), Some(count)) => Some((at, count)),
        (None, None) => None,
        _ => {
            return Err(ctx.err(
                span,
                format!("{key}.count"),
                "a burst needs both `at` and `count`",
            ));
        }
    };
    let list: Vec<(&Spanned<String>, &Spanned<i64>)> = match (one, &a.bursts) {
        (Some(b), None) => vec![b],
        (None, Some(list)) if !list.is_empty() => list
            .iter()
            .map(|b| (&b.get_ref().at, &b.get_ref().count))
            .collect(),
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                span,
                format!("{key}.bursts"),
                "give `at` and `count` for one burst, or `bursts = [...]`, not both",
            ));
        }
        _ => {
            return Err(ctx.err(
                span,
                format!("{key}.bursts"),
                "kind = \"burst\" needs at = \"0s\" and count = N, or bursts = [{ at = \"0s\", count = N }, …]",
            ));
        }
    };
    let mut out: Vec<(Duration, u64)> = Vec::new();
    for (at, count) in list {
        let t = duration(ctx, at, &format!("{key}.at"))?;
        if out.last().is_some_and(|(prev, _)| t <= *prev) {
            return Err(ctx.err(
                at.span(),
                format!("{key}.at"),
                "bursts must be in increasing `at` order",
            ));
        }
        if !(1..=10_000_000).contains(count.get_ref()) {
            return Err(ctx.err(
                count.span(),
                format!("{key}.count"),
                format!("{}: expected an integer 1–10,000,000", count.get_ref()),
            ));
        }
        out.push((t, *count.get_ref() as u64));
    }
    Ok(Arrival::Bursts(out))
}

/// `limit = { connections = N }` and/or `{ requests = N }`.
fn limit(
    ctx: &Ctx,
    l: &Spanned<RawLimit>,
    requests_per_connection: u32,
    key: &str,
) -> Result<Limit, ScenarioError> {
    let count = |v: &Option<Spanned<i64>>, name: &str| match v {
        None => Ok(None),
        Some(n) if *n.get_ref() >= 1 => Ok(Some(*n.get_ref() as u64)),
        Some(n) => Err(ctx.err(
            n.span(),
            format!("{key}.{name}"),
            format!("{}: expected an integer ≥ 1", n.get_ref()),
        )),
    };
    let raw = l.get_ref();
    let limit = Limit {
        connections: count(&raw.connections, "connections")?,
        requests: count(&raw.requests, "requests")?,
    };
    if !limit.is_set() {
        return Err(ctx.err(
            l.span(),
            key,
            "give connections = N (connect() calls) or requests = N",
        ));
    }
    if let (Some(r), 0) = (&raw.requests, requests_per_connection) {
        return Err(ctx.err(
            r.span(),
            format!("{key}.requests"),
            "with requests_per_connection = 0 no request is ever made; limit connections instead",
        ));
    }
    Ok(limit)
}

fn build(ctx: &Ctx, raw: RawFile) -> Result<Scenario, ScenarioError> {
    let sc = &raw.scenario;
    let total = positive_duration(ctx, &sc.duration, "scenario.duration")?;
    let bin = match &sc.bin {
        Some(b) => positive_duration(ctx, b, "scenario.bin")?,
        None => auto_bin(total),
    };
    let mut warnings = Vec::new();
    if raw.host.is_empty() {
        return Err(ctx.err(
            0..0,
            "host",
            "no [[host]]: a scenario needs at least one host",
        ));
    }
    let mut hosts: Vec<HostSpec> = Vec::new();
    let mut owner_of_ip: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, h) in raw.host.iter().enumerate() {
        let key = |k: &str| format!("host[{i}].{k}");
        let name = h.name.get_ref().clone();
        if name.is_empty() || hosts.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                h.name.span(),
                key("name"),
                format!("{name:?}: host names must be unique and non-empty"),
            ));
        }
        let profile_name = h
            .profile
            .as_ref()
            .map_or("linux".to_string(), |p| p.get_ref().clone());
        let mut profile = Profile::named(&profile_name).ok_or_else(|| {
            let span = h.profile.as_ref().map_or(h.name.span(), |p| p.span());
            ctx.err(
                span,
                key("profile"),
                format!(
                    "{profile_name:?}: unknown profile; available: {}",
                    list(
                        &crate::profile::PROFILES
                            .iter()
                            .map(|p| p.0)
                            .collect::<Vec<_>>()
                    )
                ),
            )
        })?;
        // In the kernel's table order, so that a knob read relative to another (Windows
        // `num` after `start`) sees it set, whatever the file's key order.
        let table = profile.knobs();
        let rank = |k: &str| table.iter().position(|s| s.name == k).unwrap_or(usize::MAX);
        let mut knobs: Vec<_> = h.knobs.iter().collect();
        knobs.sort_by_key(|(k, _)| rank(k.get_ref()));
        for (k, v) in knobs {
            profile.set_knob(k.get_ref(), v.get_ref()).map_err(|e| {
                ctx.err(
                    v.span(),
                    format!("host[{i}].knobs.\"{}\"", k.get_ref()),
                    format!("{}: {e}", v.get_ref()),
                )
            })?;
        }
        for (k, v) in &h.model {
            profile.set_model(k.get_ref(), v.get_ref()).map_err(|e| {
                ctx.err(
                    v.span(),
                    format!("host[{i}].model.{}", k.get_ref()),
                    format!("{}: {e}", v.get_ref()),
                )
            })?;
        }
        profile.validate().map_err(|m| {
            // At the range knob the message names, if the file sets it.
            let at = h.knobs.iter().find(|(k, _)| {
                let k = k.get_ref();
                k.contains("port_range") || k.contains("portrange") || k.starts_with("dynamicport")
            });
            match at {
                Some((k, v)) => {
                    ctx.err(v.span(), format!("host[{i}].knobs.\"{}\"", k.get_ref()), m)
                }
                None => ctx.err(h.name.span(), key("knobs"), m),
            }
        })?;
        for w in profile.warnings() {
            warnings.push(format!("host {name}: {w}"));
        }
        if h.ips.get_ref().is_empty() {
            return Err(ctx.err(
                h.ips.span(),
                key("ips"),
                "a host needs at least one IPv4 address",
            ));
        }
        let mut ips = Vec::new();
        for v in h.ips.get_ref() {
            let a = ip(ctx, v, &key("ips"))?;
            if !crate::host::is_loopback(a) {
                if let Some(&other) = owner_of_ip.get(&a) {
                    return Err(ctx.err(
                        v.span(),
                        key("ips"),
                        format!(
                            "{} already belongs to host {:?}",
                            v.get_ref(),
                            hosts[other].name
                        ),
                    ));
                }
                owner_of_ip.insert(a, i);
            }
            ips.push(a);
        }
        let mut listen = Vec::new();
        for v in &h.listen {
            let (a, port) = endpoint(ctx, v, &key("listen"))?;
            if a != 0 && !ips.contains(&a) && !crate::host::is_loopback(a) {
                return Err(ctx.err(
                    v.span(),
                    key("listen"),
                    format!("{}: the address is not one of this host's ips", v.get_ref()),
                ));
            }
            listen.push((a, port));
        }
        hosts.push(HostSpec {
            name,
            profile_name,
            profile,
            ips,
            listen,
        });
    }

    let mut workloads: Vec<Workload> = Vec::new();
    for (i, w) in raw.workload.iter().enumerate() {
        let key = |k: &str| format!("workload[{i}].{k}");
        let name = w.name.get_ref().clone();
        if name.is_empty() || workloads.iter().any(|x| x.name == name) {
            return Err(ctx.err(
                w.name.span(),
                key("name"),
                format!("{name:?}: workload names must be unique and non-empty"),
            ));
        }
        let find_host = |v: &Spanned<String>, k: &str| -> Result<u16, ScenarioError> {
            hosts
                .iter()
                .position(|h| &h.name == v.get_ref())
                .map(|p| p as u16)
                .ok_or_else(|| {
                    let hint = nearest(v.get_ref(), hosts.iter().map(|h| h.name.as_str()))
                        .map(|s| format!("; did you mean {s:?}?"))
                        .unwrap_or_default();
                    ctx.err(
                        v.span(),
                        k,
                        format!("{:?}: no host has this name{hint}", v.get_ref()),
                    )
                })
        };
        let client_hosts: Vec<u16> = match (&w.client, &w.clients) {
            (Some(c), None) => vec![find_host(c, &key("client"))?],
            (None, Some(cs)) if !cs.get_ref().is_empty() => cs
                .get_ref()
                .iter()
                .map(|c| find_host(c, &key("clients")))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(ctx.err(
                    w.name.span(),
                    key("client"),
                    "set exactly one of `client = \"host\"` or `clients = [\"host\", …]`",
                ));
            }
        };
        let mode = match &w.connection {
            None => Mode::Connect,
            Some(c) => match one_of(
                ctx,
                c,
                &key("connection"),
                &["connect", "bind", "bind_no_port", "explicit"],
            )? {
                "connect" => Mode::Connect,
                "bind" => Mode::Bind,
                "bind_no_port" => Mode::BindNoPort,
                _ => {
                    let p = w.explicit_ports.as_ref().ok_or_else(|| {
                        ctx.err(
                            c.span(),
                            key("explicit_ports"),
                            "connection = \"explicit\" needs explicit_ports = \"LOW HIGH\"",
                        )
                    })?;
                    let (low, high) = port_pair(ctx, p, &key("explicit_ports"))?;
                    Mode::Explicit { low, high }
                }
            },
        };
        if mode != Mode::Connect
            && let Some(&h) = client_hosts
                .iter()
                .find(|&&h| hosts[h as usize].profile.kernel != crate::profile::Kernel::Linux)
            && let Some(c) = &w.connection
        {
            return Err(ctx.err(
                c.span(),
                key("connection"),
                format!(
                    "host {:?} runs the {:?} profile: portsim models bind(), IP_BIND_ADDRESS_NO_PORT \
                     and explicit ports with Linux's bind-bucket rules only; use connection = \"connect\"",
                    hosts[h as usize].name, hosts[h as usize].profile_name
                ),
            ));
        }
        if let (Some(p), false) = (&w.explicit_ports, matches!(mode, Mode::Explicit { .. })) {
            return Err(ctx.err(
                p.span(),
                key("explicit_ports"),
                "only used with connection = \"explicit\"",
            ));
        }
        let mut sources = Vec::new();
        for &ch in &client_hosts {
            let host = &hosts[ch as usize];
            match &w.source_ips {
                None => sources.push(Source {
                    host: ch,
                    ip: host.ips[0],
                }),
                Some(list) => {
                    for v in list.get_ref() {
                        let a = ip(ctx, v, &key("source_ips"))?;
                        if !host.ips.contains(&a) {
                            if client_hosts.len() == 1 {
                                return Err(ctx.err(
                                    v.span(),
                                    key("source_ips"),
                                    format!(
                                        "{}: not an address of host {:?}",
                                        v.get_ref(),
                                        host.name
                                    ),
                                ));
                            }
                            continue;
                        }
                        sources.push(Source { host: ch, ip: a });
                    }
                }
            }
        }
        if let Some(list) = &w.source_ips {
            if sources.is_empty() {
                return Err(ctx.err(
                    list.span(),
                    key("source_ips"),
                    "none of these addresses belongs to a client host",
                ));
            }
            if mode == Mode::Connect && sources.len() > client_hosts.len() {
                return Err(ctx.err(list.span(), key("source_ips"), "connect() without bind() cannot choose among several source IPs (the route picks one); use connection = \"bind_no_port\" (IP_BIND_ADDRESS_NO_PORT), \"bind\" or \"explicit\""));
            }
        }
        if w.destinations.get_ref().is_empty() {
            return Err(ctx.err(
                w.destinations.span(),
                key("destinations"),
                "at least one \"IP:PORT\" is needed",
            ));
        }
        let mut destinations = Vec::new();
        for v in w.destinations.get_ref() {
            let (a, port) = endpoint(ctx, v, &key("destinations"))?;
            let server = if crate::host::is_loopback(a) {
                if client_hosts.len() > 1 {
                    return Err(ctx.err(v.span(), key("destinations"), "a loopback destination with several client hosts is ambiguous: each host reaches only itself"));
                }
                client_hosts[0] as usize
            } else {
                *owner_of_ip.get(&a).ok_or_else(|| {
                    ctx.err(
                        v.span(),
                        key("destinations"),
                        format!("{}: no host has this address", v.get_ref()),
                    )
                })?
            };
            let h = &hosts[server];
            if !h
                .listen
                .iter()
                .any(|&(la, lp)| lp == port && (la == 0 || la == a))
            {
                return Err(ctx.err(
                    v.span(),
                    key("destinations"),
                    format!(
                        "{}: host {:?} has no listener there (add it to the host's `listen`)",
                        v.get_ref(),
                        h.name
                    ),
                ));
            }
            destinations.push(Destination {
                host: server as u16,
                ip: a,
                port,
            });
        }
        let spread = match &w.spread {
            None => Spread::RoundRobin,
            Some(s) => match one_of(ctx, s, &key("spread"), &["round_robin", "random"])? {
                "random" => Spread::Random,
                _ => Spread::RoundRobin,
            },
        };
        let a = w.arrival.get_ref();
        let kind = one_of(
            ctx,
            &a.kind,
            &key("arrival.kind"),
            &["constant", "poisson", "steps", "closed", "burst"],
        )?;
        if kind != "burst"
            && let Some(span) =
                a.at.as_ref()
                    .map(Spanned::span)
                    .or(a.count.as_ref().map(Spanned::span))
                    .or(a.bursts.as_ref().map(|_| w.arrival.span()))
        {
            return Err(ctx.err(
                span,
                key("arrival"),
                "`at`, `count` and `bursts` belong to kind = \"burst\"",
            ));
        }
        let arrival = match kind {
            "burst" => bursts(ctx, a, w.arrival.span(), &key("arrival"))?,
            k @ ("constant" | "poisson") => {
                let r = a.rate.as_ref().ok_or_else(|| {
                    ctx.err(
                        w.arrival.span(),
                        key("arrival.rate"),
                        format!("kind = {k:?} needs rate = connections per second"),
                    )
                })?;
                let r = rate(ctx, r, &key("arrival.rate"), false)?;
                if k == "constant" {
                    Arrival::Constant(r)
                } else {
                    Arrival::Poisson(r)
                }
            }
            "steps" => {
                let steps = a.steps.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| {
                    ctx.err(
                        w.arrival.span(),
                        key("arrival.steps"),
                        "kind = \"steps\" needs steps = [{ at = \"0s\", rate = 100 }, …]",
                    )
                })?;
                let mut out: Vec<(Duration, Rate)> = Vec::new();
                for s in steps {
                    let at = duration(ctx, &s.get_ref().at, &key("arrival.steps.at"))?;
                    if out.last().is_some_and(|(prev, _)| at <= *prev) {
                        return Err(ctx.err(
                            s.span(),
                            key("arrival.steps.at"),
                            "steps must be in increasing `at` order",
                        ));
                    }
                    out.push((
                        at,
                        rate(ctx, &s.get_ref().rate, &key("arrival.steps.rate"), true)?,
                    ));
                }
                let poisson = match &a.process {
                    None => false,
                    Some(p) => {
                        one_of(ctx, p, &key("arrival.process"), &["constant", "poisson"])?
                            == "poisson"
                    }
                };
                Arrival::Steps {
                    steps: out,
                    poisson,
                }
            }
            _ => {
                let c = a.concurrency.as_ref().ok_or_else(|| {
                    ctx.err(
                        w.arrival.span(),
                        key("arrival.concurrency"),
                        "kind = \"closed\" needs concurrency = N (N ≥ 1)",
                    )
                })?;
                if !(1..=10_000_000).contains(c.get_ref()) {
                    return Err(ctx.err(
                        c.span(),
                        key("arrival.concurrency"),
                        format!("{}: expected an integer 1–10,000,000", c.get_ref()),
                    ));
                }
                Arrival::Closed {
                    concurrency: *c.get_ref() as u32,
                }
            }
        };
        let closed = matches!(arrival, Arrival::Closed { .. });
        if closed && a.rate.is_some() {
            return Err(ctx.err(
                w.arrival.span(),
                key("arrival.rate"),
                "a closed loop has no rate; it runs `concurrency` connections at once",
            ));
        }
        if matches!(arrival, Arrival::Bursts(_)) && a.rate.is_some() {
            return Err(ctx.err(
                w.arrival.span(),
                key("arrival.rate"),
                "a burst has no rate: its `count` connections open at once, at `at`",
            ));
        }
        let requests = match &w.requests_per_connection {
            None => 1,
            Some(r) if (0..=1_000_000_000).contains(r.get_ref()) => *r.get_ref() as u32,
            Some(r) => {
                return Err(ctx.err(
                    r.span(),
                    key("requests_per_connection"),
                    format!("{}: expected an integer 0–1,000,000,000", r.get_ref()),
                ));
            }
        };
        let rtt = dist(ctx, &w.rtt, &key("rtt"))?;
        let service_time = match &w.service_time {
            None => Dist::Fixed(Duration::ZERO),
            Some(s) => dist(ctx, s, &key("service_time"))?,
        };
        let request_bytes = match &w.request_bytes {
            None => 100,
            Some(b) if (0..=i64::from(u32::MAX)).contains(b.get_ref()) => *b.get_ref() as u32,
            Some(b) => {
                return Err(ctx.err(
                    b.span(),
                    key("request_bytes"),
                    "expected an integer 0–4294967295",
                ));
            }
        };
        let closer = match &w.closer {
            None => Closer::Client,
            Some(c) => match one_of(ctx, c, &key("closer"), &["client", "server"])? {
                "server" => Closer::Server,
                _ => Closer::Client,
            },
        };
        if requests == 0
            && closer == Closer::Server
            && let Some(c) = &w.closer
        {
            return Err(ctx.err(
                c.span(),
                key("closer"),
                "with requests_per_connection = 0 the server has nothing to answer and would \
                 never close; use closer = \"client\" (connect, then close)",
            ));
        }
        let local_port_range = match &w.local_port_range {
            None => None,
            Some(r) => {
                if !matches!(mode, Mode::Connect | Mode::BindNoPort) {
                    return Err(ctx.err(r.span(), key("local_port_range"), "IP_LOCAL_PORT_RANGE is modelled for connect() autoselection: use it with connection = \"connect\" or \"bind_no_port\""));
                }
                Some(port_pair(ctx, r, &key("local_port_range"))?)
            }
        };
        let on_error = match &w.on_error {
            None => OnError::Count {
                delay: Duration::from_millis(1),
            },
            Some(o) => {
                let o = o.get_ref();
                let delay = match &o.delay {
                    Some(d) => duration(ctx, d, &key("on_error.delay"))?,
                    None => Duration::from_millis(1),
                };
                if closed && delay.0 == 0 && o.action.get_ref() != "stop" {
                    let span = o.delay.as_ref().map_or(o.action.span(), |d| d.span());
                    return Err(ctx.err(span, key("on_error.delay"), "must be > 0 in a closed loop: a failed connect() would be retried at the same instant forever"));
                }
                match one_of(
                    ctx,
                    &o.action,
                    &key("on_error.action"),
                    &["count", "retry", "stop"],
                )? {
                    "count" => OnError::Count { delay },
                    "stop" => OnError::Stop,
                    _ => {
                        let backoff = o.backoff.as_ref().map_or(Ok(1.0), |b| {
                            if b.get_ref().is_finite()
                                && *b.get_ref() >= 1.0
                                && *b.get_ref() <= 1000.0
                            {
                                Ok(*b.get_ref())
                            } else {
                                Err(ctx.err(
                                    b.span(),
                                    key("on_error.backoff"),
                                    "expected a number 1–1000",
                                ))
                            }
                        })?;
                        let max_delay = match &o.max_delay {
                            Some(d) => duration(ctx, d, &key("on_error.max_delay"))?,
                            None => Duration::from_secs(3600),
                        };
                        let max_retries = match &o.max_retries {
                            None => u32::MAX,
                            Some(m) if (0..=i64::from(u32::MAX)).contains(m.get_ref()) => {
                                *m.get_ref() as u32
                            }
                            Some(m) => {
                                return Err(ctx.err(
                                    m.span(),
                                    key("on_error.max_retries"),
                                    "expected an integer ≥ 0",
                                ));
                            }
                        };
                        if delay.0 == 0 {
                            return Err(ctx.err(
                                o.action.span(),
                                key("on_error.delay"),
                                "retry needs a delay > 0",
                            ));
                        }
                        OnError::Retry {
                            delay,
                            backoff,
                            max_delay,
                            max_retries,
                        }
                    }
                }
            }
        };
        let start = match &w.start {
            Some(s) => Instant::ZERO + duration(ctx, s, &key("start"))?,
            None => Instant::ZERO,
        };
        let stop = match &w.stop {
            Some(s) => Instant::ZERO + duration(ctx, s, &key("stop"))?,
            None => Instant::ZERO + total,
        };
        if stop > Instant::ZERO + total {
            let span = w.stop.as_ref().map_or(w.name.span(), |s| s.span());
            return Err(ctx.err(
                span,
                key("stop"),
                format!("after the end of the scenario ({total})"),
            ));
        }
        if start >= stop {
            let span = w
                .start
                .as_ref()
                .or(w.stop.as_ref())
                .map_or(w.name.span(), |s| s.span());
            return Err(ctx.err(span, key("start"), "start must be before stop"));
        }
        if let Arrival::Bursts(list) = &arrival
            && let Some((at, _)) = list.iter().find(|(at, _)| start + *at >= stop)
        {
            return Err(ctx.err(
                w.arrival.span(),
                key("arrival.at"),
                format!(
                    "a burst at {at} after the workload's start comes at or after its stop ({}): it would never open",
                    stop - Instant::ZERO
                ),
            ));
        }
        let limit = match &w.limit {
            None => Limit::default(),
            Some(l) => limit(ctx, l, requests, &key("limit"))?,
        };
        workloads.push(Workload {
            name,
            sources,
            destinations,
            spread,
            arrival,
            requests_per_connection: requests,
            rtt,
            service_time,
            request_bytes,
            closer,
            linger_zero: w.linger_zero,
            mode,
            reuseaddr: w.reuseaddr,
            local_port_range,
            on_error,
            start,
            stop,
            limit,
        });
    }
    if workloads.is_empty() {
        return Err(ctx.err(0..0, "workload", "no [[workload]]: nothing would connect"));
    }
    let mut live = LiveSpec {
        exact: Vec::new(),
        ignore: Vec::new(),
        tolerance: 0.05,
        max_connections: None,
    };
    if let Some(l) = &raw.live {
        let l = l.get_ref();
        for (field, e) in l
            .exact
            .iter()
            .map(|e| ("live.exact", e))
            .chain(l.ignore.iter().map(|e| ("live.ignore", e)))
        {
            let name = e.get_ref();
            let base = name.split(' ').next().unwrap_or("");
            if !LIVE_METRICS.contains(&base) || (base != "failed" && name.contains(' ')) {
                return Err(ctx.err(
                    e.span(),
                    field,
                    format!(
                        "{name:?}: not a metric; allowed: {}, or \"failed ERRNO\"",
                        list(LIVE_METRICS)
                    ),
                ));
            }
            if field == "live.exact" && SAMPLED_METRICS.contains(&name.as_str()) {
                return Err(ctx.err(
                    e.span(),
                    field,
                    format!(
                        "{name:?} is sampled at bin ends through sock_diag and a sample can miss the peak, so it cannot be judged exactly; judge \"time_wait_at_end\" exactly (counted once the run is quiet) and leave {name:?} to the tolerance"
                    ),
                ));
            }
            if field == "live.exact" {
                live.exact.push(name.clone());
            } else {
                live.ignore.push(name.clone());
            }
        }
        if let Some(t) = &l.tolerance {
            let v = *t.get_ref();
            if !(0.0..=1.0).contains(&v) {
                return Err(ctx.err(
                    t.span(),
                    "live.tolerance",
                    format!("{v}: a relative difference between 0 and 1, e.g. 0.05"),
                ));
            }
            live.tolerance = v;
        }
        if let Some(m) = &l.max_connections {
            if *m.get_ref() == 0 {
                return Err(ctx.err(m.span(), "live.max_connections", "must be at least 1"));
            }
            live.max_connections = Some(*m.get_ref());
        }
    }
    if let Some(w) = long_run(total, &workloads) {
        warnings.push(w);
    }
    Ok(Scenario {
        live,
        name: sc.name.clone(),
        file: ctx.file.to_string(),
        description: sc.description.trim().to_string(),
        seed: sc.seed,
        duration: total,
        bin,
        hosts,
        workloads,
        warnings,
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

/// Why [`set`] could not change a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SetError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Splits `host.client.knobs."net.ipv4.tcp_tw_reuse"` into its keys.
fn split_path(path: &str) -> Option<Vec<String>> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in path.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                if cur.is_empty() && !was_quoted {
                    return None;
                }
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted || (cur.is_empty() && !was_quoted) {
        return None;
    }
    out.push(cur);
    Some(out)
}

/// Scenario `text` with one value replaced: `path` is `scenario.KEY…`, `host.NAME.KEY…` or
/// `workload.NAME.KEY…` (NAME is the entry's `name`; quote keys that hold dots, as in
/// `host.client.knobs."net.ipv4.ip_local_port_range"`). Missing tables on the way are made.
/// The result still has to pass [`parse`].
pub fn set(text: &str, path: &str, value: toml::Value) -> Result<String, SetError> {
    let fail = |message: String| SetError {
        path: path.to_string(),
        message,
    };
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| fail(e.message().to_string()))?;
    let keys = split_path(path).ok_or_else(|| {
        fail("not a key path; write e.g. workload.NAME.arrival.rate or host.NAME.knobs.\"net.ipv4.tcp_tw_reuse\"".into())
    })?;
    let (mut table, rest): (&mut toml::Table, &[String]) = match keys[0].as_str() {
        "scenario" => (
            doc.entry("scenario")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| fail("[scenario] is not a table".into()))?,
            &keys[1..],
        ),
        section @ ("host" | "workload") => {
            let name = keys
                .get(1)
                .ok_or_else(|| fail(format!("name the {section}: {section}.NAME.KEY")))?;
            let entries = doc
                .get_mut(section)
                .and_then(toml::Value::as_array_mut)
                .ok_or_else(|| fail(format!("the scenario has no [[{section}]]")))?;
            let names: Vec<String> = entries
                .iter()
                .filter_map(|e| e.get("name").and_then(|n| n.as_str()).map(String::from))
                .collect();
            let entry = entries
                .iter_mut()
                .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| {
                    fail(format!(
                        "no {section} named {name:?}; the scenario has {}",
                        names.join(", ")
                    ))
                })?;
            (entry, &keys[2..])
        }
        other => {
            return Err(fail(format!(
                "{other:?}: a path starts with scenario, host or workload"
            )));
        }
    };
    let (last, walk) = rest
        .split_last()
        .ok_or_else(|| fail("the path names a table, not a key in it".into()))?;
    for k in walk {
        table = table
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| fail(format!("{k:?} is a value, not a table")))?;
    }
    table.insert(last.clone(), value);
    toml::to_string(&doc).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod set_tests {
    use super::*;

    const TEXT: &str = r#"
[scenario]
name = "s"
duration = "10s"

[[host]]
name = "client"
profile = "linux"
ips = ["10.0.0.1"]

[[host]]
name = "server"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = { kind = "constant", rate = 100 }
rtt = "1ms"
"#;

    #[test]
    fn a_set_value_is_what_the_parsed_scenario_holds() {
        let t = set(TEXT, "workload.w.arrival.rate", toml::Value::Integer(700)).unwrap();
        let t = set(
            &t,
            "host.client.knobs.\"net.ipv4.ip_local_port_range\"",
            toml::Value::String("60000 60999".into()),
        )
        .unwrap();
        let sc = parse("t", &t).unwrap();
        assert_eq!(sc.hosts[0].profile.port_range, (60000, 60999));
        assert!(matches!(
            sc.workloads[0].arrival,
            crate::workload::Arrival::Constant(r) if r.per_sec() == 700.0
        ));
    }

    #[test]
    fn a_wrong_path_says_what_exists() {
        let e = set(
            TEXT,
            "host.nobody.profile",
            toml::Value::String("macos".into()),
        )
        .unwrap_err();
        assert!(e.message.contains("client, server"), "{e}");
        assert!(set(TEXT, "hosts.client.x", toml::Value::Integer(1)).is_err());
        assert!(set(TEXT, "host..x", toml::Value::Integer(1)).is_err());
        assert!(set(TEXT, "host.client.\"open", toml::Value::Integer(1)).is_err());
    }
}

/// The JSON Schema (draft-07) of scenario files, for editors: `portsim schema`. Knobs are
/// listed with each kernel's names, what they take and the reference section.
pub fn json_schema() -> String {
    use crate::profile::{
        FREEBSD_KNOBS, LINUX_KNOBS, MACOS_KNOBS, MODEL_PARAMS, PROFILES, WINDOWS_KNOBS,
    };
    use serde_json::{Map, Value, json};
    let describe = |k: &crate::profile::KnobSpec| json!({ "description": format!("{} ({}). Allowed: {}.", k.doc, k.section, k.allowed) });
    let mut knobs = Map::new();
    for (kernel, list) in [
        ("Linux", LINUX_KNOBS),
        ("FreeBSD", FREEBSD_KNOBS),
        ("macOS", MACOS_KNOBS),
        ("Windows", WINDOWS_KNOBS),
    ] {
        for k in list {
            let mut d = describe(k);
            if let Some(Value::String(s)) = d.get_mut("description") {
                if let Some(Value::Object(prev)) = knobs.get(k.name)
                    && let Some(Value::String(p)) = prev.get("description")
                {
                    *s = format!("{p} | {kernel}: {s}");
                } else {
                    *s = format!("{kernel}: {s}");
                }
            }
            knobs.insert(k.name.to_string(), d);
        }
    }
    let model: Map<String, Value> = MODEL_PARAMS
        .iter()
        .map(|k| (k.name.to_string(), describe(k)))
        .collect();
    let duration = json!({
        "type": "string",
        "pattern": "^[0-9_]*\\.?[0-9]+ *(ns|us|µs|ms|s|m|min|h)$",
        "description": "a duration with its unit, e.g. \"200us\", \"60s\", \"1.5h\""
    });
    let dist = json!({
        "description": "a duration, or a distribution of them",
        "anyOf": [
            duration,
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["dist"],
                "properties": {
                    "dist": { "enum": ["fixed", "uniform", "exponential"] },
                    "min": duration, "max": duration, "mean": duration
                }
            }
        ]
    });
    let rate = json!({ "type": "number", "exclusiveMinimum": 0, "description": "connections per second (at most 9 decimals)" });
    let ip = json!({ "type": "string", "format": "ipv4" });
    let endpoint =
        json!({ "type": "string", "pattern": "^[0-9.]+:[0-9]+$", "description": "\"IP:PORT\"" });
    let ports = json!({ "type": "string", "pattern": "^ *[0-9]+[ -]+[0-9]+ *$", "description": "\"LOW HIGH\"" });
    let profiles: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
    let arrival = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["kind"],
        "properties": {
            "kind": { "enum": ["constant", "poisson", "steps", "closed", "burst"] },
            "rate": rate,
            "at": duration,
            "count": { "type": "integer", "minimum": 1, "description": "connections of one burst" },
            "bursts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["at", "count"],
                    "properties": { "at": duration, "count": { "type": "integer", "minimum": 1 } }
                }
            },
            "process": { "enum": ["constant", "poisson"] },
            "concurrency": { "type": "integer", "minimum": 1 },
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["at", "rate"],
                    "properties": { "at": duration, "rate": { "type": "number", "minimum": 0 } }
                }
            }
        }
    });
    let limit = json!({
        "type": "object",
        "additionalProperties": false,
        "description": "end the workload after N connect() calls or N requests (ab -n)",
        "properties": {
            "connections": { "type": "integer", "minimum": 1 },
            "requests": { "type": "integer", "minimum": 1 }
        }
    });
    let on_error = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["action"],
        "properties": {
            "action": { "enum": ["count", "retry", "stop"] },
            "delay": duration,
            "backoff": { "type": "number", "minimum": 1 },
            "max_delay": duration,
            "max_retries": { "type": "integer", "minimum": 0 }
        }
    });
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "portsim scenario",
        "description": "A portsim scenario file (TOML). See README.md and scenarios/.",
        "type": "object",
        "additionalProperties": false,
        "required": ["scenario", "host", "workload"],
        "properties": {
            "scenario": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name", "duration"],
                "properties": {
                    "name": { "type": "string" },
                    "description": { "type": "string" },
                    "duration": duration,
                    "seed": { "type": "integer", "minimum": 0, "default": 1 },
                    "bin": duration
                }
            },
            "live": {
                "type": "object",
                "additionalProperties": false,
                "description": "how `portsim live` judges predicted against measured",
                "properties": {
                    "exact": { "type": "array", "items": { "type": "string" } },
                    "ignore": { "type": "array", "items": { "type": "string" } },
                    "tolerance": { "type": "number", "minimum": 0 },
                    "max_connections": { "type": "integer", "minimum": 1 }
                }
            },
            "host": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "ips"],
                    "properties": {
                        "name": { "type": "string" },
                        "profile": { "enum": profiles, "default": "linux" },
                        "ips": { "type": "array", "minItems": 1, "items": ip },
                        "listen": { "type": "array", "items": endpoint },
                        "knobs": {
                            "type": "object",
                            "description": "the kernel's own settings, under its own names",
                            "additionalProperties": false,
                            "properties": Value::Object(knobs)
                        },
                        "model": {
                            "type": "object",
                            "description": "behaviour no knob exposes, and every item the reference marks UNVERIFIED",
                            "additionalProperties": false,
                            "properties": Value::Object(model)
                        }
                    }
                }
            },
            "workload": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "destinations", "arrival", "rtt"],
                    "properties": {
                        "name": { "type": "string" },
                        "client": { "type": "string", "description": "the client host (or `clients`)" },
                        "clients": { "type": "array", "items": { "type": "string" } },
                        "source_ips": { "type": "array", "items": ip },
                        "destinations": { "type": "array", "minItems": 1, "items": endpoint },
                        "spread": { "enum": ["round_robin", "random"] },
                        "arrival": arrival,
                        "requests_per_connection": { "type": "integer", "minimum": 1 },
                        "rtt": dist,
                        "service_time": dist,
                        "request_bytes": { "type": "integer", "minimum": 1 },
                        "closer": { "enum": ["client", "server"] },
                        "linger_zero": { "type": "boolean" },
                        "connection": { "enum": ["connect", "bind", "bind_no_port", "explicit"] },
                        "explicit_ports": ports,
                        "reuseaddr": { "type": "boolean" },
                        "local_port_range": ports,
                        "on_error": on_error,
                        "start": duration,
                        "stop": duration,
                        "limit": limit
                    }
                }
            }
        }
    });
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}
