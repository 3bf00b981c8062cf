//! `portsim sweep`: one scenario run over a grid of what-if values, in parallel, with results
//! that do not depend on the thread count; `--shard I/N` and `portsim merge` split a grid
//! across machines.
//!
//! The grid is the product of the `--vary` lists, the last one varying fastest; point `k`
//! of shard `I/N` is run by that shard when `k mod N = I - 1`.

use super::whatif::{self, Change, WhatIfError};
use crate::plot::manifest::Metric;
use crate::plot::{self, HeatMap, ReportView};
use crate::replicate::{Seeds, Stat};
use crate::sim::Simulation;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const SCHEMA: &str = "portsim.sweep/1";

/// One varied key and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Vary {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// Why a sweep could not run or merge.
#[derive(Debug)]
pub enum SweepError {
    /// A `--vary`, `--shard` or `--threads` argument.
    Argument {
        arg: String,
        message: String,
    },
    /// A point of the grid gives a scenario that is refused.
    Point(WhatIfError),
    /// A sweep file given to `merge`.
    Merge {
        file: String,
        message: String,
    },
    Chart(plot::PlotError),
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepError::Argument { arg, message } => write!(f, "{arg}: {message}"),
            SweepError::Point(e) => write!(f, "{e}"),
            SweepError::Merge { file, message } => write!(f, "{file}: {message}"),
            SweepError::Chart(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SweepError {}

fn arg_err(arg: &str, message: impl Into<String>) -> SweepError {
    SweepError::Argument {
        arg: arg.to_string(),
        message: message.into(),
    }
}

/// Parses `KEY=V1,V2,…` or `KEY=LO..HI/STEPS` (`STEPS` values from `LO` to `HI`, evenly
/// spaced; integers when both ends are integers and the spacing is whole).
pub fn parse_vary(arg: &str) -> Result<Vary, SweepError> {
    const FORMS: &str =
        "write KEY=V1,V2,… or KEY=LO..HI/STEPS, e.g. workload.w.arrival.rate=200..1000/5";
    let (key, spec) = arg.split_once('=').ok_or_else(|| arg_err(arg, FORMS))?;
    let key = key.trim();
    if key.is_empty() || spec.trim().is_empty() {
        return Err(arg_err(arg, FORMS));
    }
    let values = match spec.split_once("..") {
        Some((lo, rest)) => {
            let (hi, steps) = rest
                .split_once('/')
                .ok_or_else(|| arg_err(arg, format!("a range needs /STEPS; {FORMS}")))?;
            let steps: usize = steps
                .trim()
                .parse()
                .ok()
                .filter(|s| *s >= 2)
                .ok_or_else(|| arg_err(arg, "STEPS is a whole number of values, at least 2"))?;
            range(arg, lo.trim(), hi.trim(), steps)?
        }
        None => spec.split(',').map(whatif::value).collect(),
    };
    Ok(Vary {
        key: key.to_string(),
        values,
    })
}

fn range(arg: &str, lo: &str, hi: &str, steps: usize) -> Result<Vec<toml::Value>, SweepError> {
    let num = |s: &str| match whatif::value(s) {
        toml::Value::Integer(i) => Ok((i as f64, true)),
        toml::Value::Float(f) if f.is_finite() => Ok((f, false)),
        _ => Err(arg_err(arg, format!("{s:?} is not a number"))),
    };
    let ((a, ai), (b, bi)) = (num(lo)?, num(hi)?);
    let step = (b - a) / (steps - 1) as f64;
    let whole = ai && bi && step.fract() == 0.0;
    Ok((0..steps)
        .map(|k| {
            let v = if k == steps - 1 {
                b
            } else {
                a + step * k as f64
            };
            if whole {
                toml::Value::Integer(v as i64)
            } else {
                toml::Value::Float((v * 1e9).round() / 1e9)
            }
        })
        .collect())
}

/// Parses `I/N`, `1 ≤ I ≤ N`.
pub fn parse_shard(arg: &str) -> Result<(usize, usize), SweepError> {
    let bad = || arg_err(arg, "write I/N with 1 ≤ I ≤ N, e.g. --shard 2/8");
    let (i, n) = arg.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// What each run of the grid gives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Row {
    pub point: usize,
    /// The varied values, in `--vary` order.
    pub values: Vec<serde_json::Value>,
    pub attempted: u64,
    pub established: u64,
    pub failed: u64,
    pub success_percent: Option<f64>,
    /// Established per second over the last whole TIME_WAIT periods of the second half.
    pub sustained_per_s: Option<f64>,
    /// `ports / TIME_WAIT` summed over the pools.
    pub formula_limit_per_s: Option<f64>,
    pub first_failure_s: Option<f64>,
    pub time_wait_peak: u32,
    pub requests_completed: u64,
    pub unprotected_reuse: u64,
    /// With `--seeds`, each number above over the seeds (the numbers above are the first
    /// seed's run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<BTreeMap<String, Stat>>,
}

/// A row's numbers that vary from run to run, by name.
const ROW_NUMBERS: [&str; 9] = [
    "attempted",
    "established",
    "failed",
    "success_percent",
    "sustained_per_s",
    "first_failure_s",
    "time_wait_peak",
    "requests_completed",
    "unprotected_reuse",
];

impl Row {
    pub fn metric(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::SustainedPerS => self.sustained_per_s,
            Metric::SuccessPercent => self.success_percent,
            Metric::FirstFailureS => self.first_failure_s,
            Metric::TimeWaitPeak => Some(f64::from(self.time_wait_peak)),
        }
    }

    /// What a chart shows of `m`: the mean over the seeds of a replicated sweep, else the
    /// run's own value.
    pub fn shown(&self, m: Metric) -> Option<f64> {
        match &self.replicates {
            Some(r) => r.get(m.key()).map(|s| s.mean),
            None => self.metric(m),
        }
    }

    /// The row's numbers, by name.
    fn numbers(&self) -> Vec<(String, Option<f64>)> {
        let values = [
            Some(self.attempted as f64),
            Some(self.established as f64),
            Some(self.failed as f64),
            self.success_percent,
            self.sustained_per_s,
            self.first_failure_s,
            Some(f64::from(self.time_wait_peak)),
            Some(self.requests_completed as f64),
            Some(self.unprotected_reuse as f64),
        ];
        ROW_NUMBERS
            .iter()
            .zip(values)
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    /// The first seed's row with the distributions of `runs` (one row per seed, in seed
    /// order).
    fn replicated(runs: Vec<Row>) -> Row {
        let numbers: Vec<_> = runs.iter().map(Row::numbers).collect();
        let stats = crate::replicate::distributions(&numbers);
        let first = runs.into_iter().next().expect("at least one seed");
        Row {
            replicates: Some(stats),
            ..first
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VaryInfo {
    pub key: String,
    pub values: Vec<serde_json::Value>,
}

/// A sweep's results (`--format json`, schema `portsim.sweep/1`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SweepReport {
    pub schema: String,
    pub portsim_version: String,
    pub scenario: String,
    pub file: String,
    /// `--set` changes under every point.
    pub set: Vec<String>,
    /// FNV-1a of the scenario text with `--set` applied: shards of one sweep share it.
    pub scenario_hash: String,
    pub vary: Vec<VaryInfo>,
    /// Points in the whole grid.
    pub points: usize,
    /// `I/N` when this holds one shard only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// `A..B` when each point ran once per seed A to B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<String>,
    pub rows: Vec<Row>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A varied value as a person reads it: strings without quotes.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_else(|_| serde_json::Value::String(whatif::show(v)))
}

/// A prepared sweep: every point's scenario text, checked before anything runs.
pub struct Sweep {
    report: SweepReport,
    points: Vec<Point>,
    /// Each point runs once per seed; `None`: once, with the scenario's seed.
    seeds: Option<Seeds>,
}

/// One point of the grid: its index, its varied values and the scenario they give.
struct Point {
    k: usize,
    values: Vec<serde_json::Value>,
    text: String,
}

impl Sweep {
    /// Builds the grid of `file`'s scenario `text` with `set` under every point.
    pub fn new(
        file: &str,
        text: &str,
        set: &[Change],
        vary: &[Vary],
        shard: Option<(usize, usize)>,
    ) -> Result<Sweep, SweepError> {
        let base = whatif::apply(file, text, set).map_err(SweepError::Point)?;
        let name = crate::scenario::parse(file, &base)
            .map_err(|e| {
                SweepError::Point(WhatIfError {
                    key: file.to_string(),
                    message: e.to_string(),
                })
            })?
            .name;
        let points = vary
            .iter()
            .try_fold(1usize, |n, v| n.checked_mul(v.values.len()))
            .filter(|n| *n <= 1_000_000)
            .ok_or_else(|| arg_err("--vary", "the grid has more than 1,000,000 points"))?;
        let mut grid: Vec<Point> = vec![];
        for k in 0..points {
            if let Some((i, n)) = shard
                && k % n != i - 1
            {
                continue;
            }
            let changes: Vec<Change> = point(vary, k)
                .into_iter()
                .map(|(key, value)| Change {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect();
            grid.push(Point {
                k,
                values: changes.iter().map(|c| json(&c.value)).collect(),
                text: whatif::apply(file, &base, &changes).map_err(SweepError::Point)?,
            });
        }
        Ok(Sweep {
            report: SweepReport {
                schema: SCHEMA.into(),
                portsim_version: env!("CARGO_PKG_VERSION").into(),
                scenario: name,
                file: file.to_string(),
                set: set
                    .iter()
                    .map(|c| format!("{}={}", c.key, whatif::show(&c.value)))
                    .collect(),
                scenario_hash: format!("{:016x}", crate::rng::fnv1a(base.as_bytes())),
                vary: vary
                    .iter()
                    .map(|v| VaryInfo {
                        key: v.key.clone(),
                        values: v.values.iter().map(json).collect(),
                    })
                    .collect(),
                points,
                shard: shard.map(|(i, n)| format!("{i}/{n}")),
                seeds: None,
                rows: vec![],
            },
            points: grid,
            seeds: None,
        })
    }

    /// Runs each point once per seed of `seeds` (`None`: once, with the scenario's seed).
    pub fn with_seeds(mut self, seeds: Option<Seeds>) -> Sweep {
        self.seeds = seeds;
        self.report.seeds = seeds.map(|s| s.to_string());
        self
    }

    /// Runs this sweep makes: its points, once per seed.
    pub fn len(&self) -> usize {
        self.points.len() * self.seeds.map_or(1, |s| s.len() as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Runs every point on `threads` threads, calling `done` after each run (from any
    /// thread). Rows come back in point order whatever the thread count.
    pub fn run(self, threads: usize, done: &(dyn Fn() + Sync)) -> SweepReport {
        let seeds: Vec<Option<u64>> = match self.seeds {
            Some(s) => s.iter().map(Some).collect(),
            None => vec![None],
        };
        // Longest first, each thread taking the next run when it is free (greedy list
        // scheduling): the grid ends with short runs, not with one thread on a long one.
        let mut order: Vec<(u64, &Point, Option<u64>)> = self
            .points
            .iter()
            .flat_map(|p| {
                let c = cost(&self.report.file, &p.text);
                seeds.iter().map(move |&seed| (c, p, seed))
            })
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then((a.1.k, a.2).cmp(&(b.1.k, b.2))));
        let go = || {
            let mut runs: Vec<(Option<u64>, Row)> = order
                .into_iter()
                .par_bridge()
                .map(|(_, p, seed)| {
                    let row = run_point(&self.report.file, p, seed);
                    done();
                    (seed, row)
                })
                .collect();
            runs.sort_by_key(|(seed, r)| (r.point, *seed));
            let mut rows: Vec<Row> = vec![];
            for group in runs.chunk_by(|a, b| a.1.point == b.1.point) {
                let group: Vec<Row> = group.iter().map(|(_, r)| r.clone()).collect();
                rows.push(match self.seeds {
                    Some(_) => Row::replicated(group),
                    None => group.into_iter().next().expect("one run per point"),
                });
            }
            rows
        };
        let rows = match rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
        {
            Ok(pool) => pool.install(go),
            Err(_) => go(),
        };
        SweepReport {
            rows,
            ..self.report
        }
    }
}

/// A point's expected cost: the connection attempts its open-loop arrivals make, or for a
/// closed loop its workers over the run, one per millisecond each.
fn cost(file: &str, text: &str) -> u64 {
    let Ok(sc) = crate::scenario::parse(file, text) else {
        return 0;
    };
    sc.workloads
        .iter()
        .map(|w| {
            let secs = w.active_secs(sc.duration);
            let n = match w.arrival {
                crate::workload::Arrival::Closed { concurrency } => {
                    1000.0 * f64::from(concurrency) * secs
                }
                ref a => a.arrivals_in(secs).unwrap_or(0.0),
            };
            n as u64
        })
        .sum()
}

/// The grid's point `k`: each varied key with its value.
fn point(vary: &[Vary], mut k: usize) -> Vec<(&str, &toml::Value)> {
    let mut out = vec![];
    for v in vary.iter().rev() {
        let n = v.values.len();
        out.push((v.key.as_str(), &v.values[k % n]));
        k /= n;
    }
    out.reverse();
    out
}

fn run_point(file: &str, p: &Point, seed: Option<u64>) -> Row {
    let mut sc = crate::scenario::parse(file, &p.text).expect("every point was checked");
    if let Some(seed) = seed {
        sc.seed = seed;
    }
    let report = Simulation::new(&sc).run();
    let view = ReportView::of(&report);
    let c = &report.summary.connections;
    Row {
        point: p.k,
        values: p.values.clone(),
        attempted: c.attempted,
        established: c.established,
        failed: c.failed,
        success_percent: Metric::SuccessPercent.of(&view).map(round3),
        sustained_per_s: Metric::SustainedPerS.of(&view).map(round3),
        formula_limit_per_s: plot::sustainable_limit(&view).map(round3),
        first_failure_s: report.summary.first_failure_s,
        time_wait_peak: report.summary.time_wait.peak,
        requests_completed: report.summary.requests.completed,
        unprotected_reuse: report.summary.unprotected_reuse,
        replicates: None,
    }
}

impl SweepReport {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a sweep serializes");
        s.push('\n');
        s
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(vec![]);
        let mut head = vec!["point".to_string()];
        head.extend(self.vary.iter().map(|v| v.key.clone()));
        head.extend(
            [
                "attempted",
                "established",
                "failed",
                "success_percent",
                "sustained_per_s",
                "formula_limit_per_s",
                "first_failure_s",
                "time_wait_peak",
                "requests_completed",
                "unprotected_reuse",
            ]
            .map(String::from),
        );
        const STATS: [&str; 7] = ["mean", "sd", "min", "p5", "p50", "p95", "max"];
        let replicated = self.rows.iter().any(|r| r.replicates.is_some());
        if replicated {
            for n in ROW_NUMBERS {
                head.extend(STATS.map(|s| format!("{n}_{s}")));
            }
        }
        w.write_record(&head).expect("in memory");
        let opt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        for r in &self.rows {
            let mut rec = vec![r.point.to_string()];
            rec.extend(r.values.iter().map(text));
            rec.extend([
                r.attempted.to_string(),
                r.established.to_string(),
                r.failed.to_string(),
                opt(r.success_percent),
                opt(r.sustained_per_s),
                opt(r.formula_limit_per_s),
                opt(r.first_failure_s),
                r.time_wait_peak.to_string(),
                r.requests_completed.to_string(),
                r.unprotected_reuse.to_string(),
            ]);
            if replicated {
                for n in ROW_NUMBERS {
                    let s = r.replicates.as_ref().and_then(|m| m.get(n));
                    rec.extend(
                        [
                            |s: &Stat| s.mean,
                            |s: &Stat| s.sd,
                            |s: &Stat| s.min,
                            |s: &Stat| s.p5,
                            |s: &Stat| s.p50,
                            |s: &Stat| s.p95,
                            |s: &Stat| s.max,
                        ]
                        .map(|f| opt(s.map(f))),
                    );
                }
            }
            w.write_record(&rec).expect("in memory");
        }
        String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8")
    }

    /// A line chart of `metric` over one varied number, or a heat map over two varied keys
    /// (first on the y axis, second on the x axis). Missing points are left out.
    pub fn chart(&self, metric: Metric) -> Result<SweepChart, SweepError> {
        let bad = |m: &str| SweepError::Argument {
            arg: "--plot".into(),
            message: m.into(),
        };
        let subtitle = format!(
            "{} · {} runs{}{}",
            self.file,
            self.rows.len(),
            match &self.seeds {
                Some(s) => format!(" × seeds {s}: the mean, shaded p5–p95"),
                None => String::new(),
            },
            if self.set.is_empty() {
                String::new()
            } else {
                format!(" · {}", self.set.join(" "))
            }
        );
        let title = format!("{}: {}", self.scenario, metric.label());
        match self.vary.as_slice() {
            [x] if x.values.iter().all(|v| v.is_number()) => {
                let pts = self
                    .rows
                    .iter()
                    .map(|r| Some((r.values[0].as_f64()?, r.shown(metric)?)))
                    .collect();
                let band = self
                    .rows
                    .iter()
                    .map(|r| {
                        let s = r.replicates.as_ref()?.get(metric.key())?;
                        Some((r.values[0].as_f64()?, s.p5, s.p95))
                    })
                    .collect();
                let limits: Vec<Option<f64>> =
                    self.rows.iter().map(|r| r.formula_limit_per_s).collect();
                let mut refs = vec![];
                if let (Metric::SustainedPerS, Some(Some(l))) = (metric, limits.first())
                    && limits.iter().all(|m| *m == Some(*l))
                {
                    refs.push(plot::Reference {
                        y: *l,
                        label: format!("ports / TIME_WAIT {}", plot::fmt_num(*l)),
                        colour: plot::GREY,
                    });
                }
                let mut fig = plot::line_chart(
                    &title,
                    &subtitle,
                    &x.key,
                    metric.label(),
                    vec![(metric.label().to_string(), pts)],
                    refs,
                );
                fig.panels[0].lines[0].band = band;
                Ok(SweepChart::Line(fig))
            }
            [x] => Ok(SweepChart::Heat(
                self.heat(&title, &subtitle, None, x, metric),
            )),
            [y, x] => Ok(SweepChart::Heat(self.heat(
                &title,
                &subtitle,
                Some(y),
                x,
                metric,
            ))),
            [] => Err(bad("nothing was varied")),
            _ => Err(bad(
                "a chart shows one or two varied keys; this sweep varies more",
            )),
        }
    }

    fn heat(
        &self,
        title: &str,
        subtitle: &str,
        y: Option<&VaryInfo>,
        x: &VaryInfo,
        metric: Metric,
    ) -> HeatMap {
        let nx = x.values.len();
        let ny = y.map_or(1, |y| y.values.len());
        let mut cells = vec![vec![None; nx]; ny];
        for r in &self.rows {
            cells[r.point / nx][r.point % nx] = r.shown(metric);
        }
        HeatMap {
            title: title.to_string(),
            subtitle: subtitle.to_string(),
            x_label: x.key.clone(),
            y_label: y.map(|y| y.key.clone()).unwrap_or_default(),
            value_label: metric.label().to_string(),
            xs: x.values.iter().map(text).collect(),
            ys: y
                .map(|y| y.values.iter().map(text).collect())
                .unwrap_or_else(|| vec![String::new()]),
            cells,
        }
    }
}

/// A sweep's chart.
pub enum SweepChart {
    Line(plot::Figure),
    Heat(HeatMap),
}

impl SweepChart {
    pub fn save(&self, path: &std::path::Path) -> Result<(), SweepError> {
        match self {
            SweepChart::Line(f) => plot::save(f, path),
            SweepChart::Heat(h) => plot::save(h, path),
        }
        .map_err(SweepError::Chart)
    }
}

/// Joins shards of one grid (`portsim merge`): they must come from the same sweep and
/// together hold every point once.
pub fn merge(parts: &[(String, SweepReport)]) -> Result<SweepReport, SweepError> {
    let Some((first_file, first)) = parts.first() else {
        return Err(arg_err("merge", "give the sweep files to join"));
    };
    let err = |file: &str, message: String| SweepError::Merge {
        file: file.to_string(),
        message,
    };
    let mut rows: Vec<Row> = vec![];
    for (file, p) in parts {
        if p.schema != SCHEMA {
            return Err(err(
                file,
                format!(
                    "schema {:?}, expected {SCHEMA:?} (a `portsim sweep --format json` file)",
                    p.schema
                ),
            ));
        }
        let same = p.scenario == first.scenario
            && p.file == first.file
            && p.set == first.set
            && p.scenario_hash == first.scenario_hash
            && p.vary == first.vary
            && p.points == first.points
            && p.seeds == first.seeds
            && p.portsim_version == first.portsim_version;
        if !same {
            return Err(err(
                file,
                format!(
                    "not a shard of the same sweep as {first_file} (scenario, --set, --vary, --seeds and version must match)"
                ),
            ));
        }
        rows.extend(p.rows.iter().cloned());
    }
    rows.sort_by_key(|r| r.point);
    if let Some(w) = rows.windows(2).find(|w| w[0].point == w[1].point) {
        return Err(arg_err(
            "merge",
            format!(
                "point {} is in more than one file (a shard given twice?)",
                w[0].point
            ),
        ));
    }
    if rows.len() != first.points {
        let missing = first.points - rows.len();
        let have: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.point).collect();
        let example = (0..first.points).find(|k| !have.contains(k)).unwrap_or(0);
        return Err(arg_err(
            "merge",
            format!(
                "{missing} of {} points are missing (point {example} first); merge every shard",
                first.points
            ),
        ));
    }
    Ok(SweepReport {
        shard: None,
        rows,
        ..first.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_lists_give_the_values_asked_for() {
        let v = parse_vary("workload.w.arrival.rate=200..1000/5").unwrap();
        assert_eq!(
            v.values,
            [200, 400, 600, 800, 1000]
                .map(toml::Value::Integer)
                .to_vec()
        );
        let v = parse_vary("x=0..1/3").unwrap();
        assert_eq!(v.values, [0.0, 0.5, 1.0].map(toml::Value::Float).to_vec());
        let v = parse_vary("x=1024 65535,32768 60999").unwrap();
        assert_eq!(v.values[1], toml::Value::String("32768 60999".into()));
        assert!(parse_vary("x=1..2").is_err());
        assert!(parse_vary("x=1..2/1").is_err());
        assert!(parse_vary("x=a..2/3").is_err());
        assert!(parse_vary("x").is_err());
    }

    #[test]
    fn shards_are_one_based_and_within_the_count() {
        assert_eq!(parse_shard("2/8").unwrap(), (2, 8));
        assert!(parse_shard("0/8").is_err());
        assert!(parse_shard("9/8").is_err());
        assert!(parse_shard("x").is_err());
    }

    #[test]
    fn points_count_with_the_last_key_fastest() {
        let vary = [
            Vary {
                key: "a".into(),
                values: vec![toml::Value::Integer(1), toml::Value::Integer(2)],
            },
            Vary {
                key: "b".into(),
                values: (0..3).map(toml::Value::Integer).collect(),
            },
        ];
        let p = point(&vary, 4);
        assert_eq!(p[0].1, &toml::Value::Integer(2));
        assert_eq!(p[1].1, &toml::Value::Integer(1));
    }
}
