//! Replicated runs (`--seeds A..B`): one scenario run once per seed, and each number the run
//! reports given as a distribution over the seeds.
//!
//! A number that depends on the seed (which ISN coin a wrapped SYN draws on macOS, which
//! four-tuples SO_LINGER 0 reuses) is one draw of a distribution; a single run shows one
//! draw and hides the spread. Seeds run in parallel; results are gathered in seed order and
//! reduced in that order, so the output does not depend on the thread count.

use crate::report::{Bin, Report};
use crate::scenario::Scenario;
use crate::sim::{Simulation, Violation};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Most seeds one replicated run takes.
pub const MAX_SEEDS: u64 = 100_000;

/// An inclusive range of seeds, `A..B` (also written `A..=B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    pub first: u64,
    pub last: u64,
}

/// A `--seeds` argument that is not a range of seeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedsError(pub String);

impl fmt::Display for SeedsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--seeds {}", self.0)
    }
}

impl std::error::Error for SeedsError {}

impl Seeds {
    /// Parses `A..B` or `A..=B`: seeds A to B, both included.
    pub fn parse(arg: &str) -> Result<Seeds, SeedsError> {
        let bad = |why: &str| SeedsError(format!("{arg:?}: {why}"));
        let (a, b) = arg
            .split_once("..")
            .ok_or_else(|| bad("write A..B, the first and last seed, e.g. 1..200"))?;
        let b = b.strip_prefix('=').unwrap_or(b);
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| bad("seeds are whole numbers ≥ 0"))
        };
        let (first, last) = (num(a)?, num(b)?);
        if last < first {
            return Err(bad("the last seed comes before the first"));
        }
        if last - first >= MAX_SEEDS {
            return Err(bad(&format!("at most {MAX_SEEDS} seeds")));
        }
        Ok(Seeds { first, last })
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + use<> {
        self.first..=self.last
    }
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}

/// A number's distribution over the seeds: mean, sample standard deviation, and
/// nearest-rank percentiles. `n` is given only when some seeds lacked the number (a first
/// failure that did not happen in every run).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub p5: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<usize>,
}

impl Stat {
    /// The distribution of `values`, in the order given (the sum's order is fixed, so the
    /// mean is the same bits on every machine); `None` for no value.
    pub fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Equal values have that mean and no spread, exactly (a sum of 0.2s is not 0.2 × n).
        let constant = sorted[0] == sorted[sorted.len() - 1];
        let mean = if constant {
            sorted[0]
        } else {
            values.iter().sum::<f64>() / n
        };
        let var = if values.len() > 1 && !constant {
            values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        let at = |q: f64| sorted[((q * n).ceil() as usize).clamp(1, sorted.len()) - 1];
        Some(Stat {
            mean,
            sd: var.sqrt(),
            min: sorted[0],
            p5: at(0.05),
            p50: at(0.5),
            p95: at(0.95),
            max: sorted[sorted.len() - 1],
            n: None,
        })
    }

    /// The share of the values below `x`, counting ties as half: where an observed value
    /// falls in the distribution, in percent.
    pub fn percentile_of(values: &[f64], x: f64) -> f64 {
        let below = values.iter().filter(|v| **v < x).count() as f64;
        let tied = values.iter().filter(|v| **v == x).count() as f64;
        100.0 * (below + tied / 2.0) / values.len().max(1) as f64
    }
}

/// Per bin, the p5, p50 and p95 of a series value over the seeds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Band {
    pub p5: Vec<Option<f64>>,
    pub p50: Vec<Option<f64>>,
    pub p95: Vec<Option<f64>>,
}

/// The distributions of a replicated run (the report's `replicates`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Replicates {
    /// Runs, one per seed.
    pub n: u64,
    pub seeds: String,
    /// Each number of the report's `summary`, by its path (`requests.completed`,
    /// `errors.EADDRNOTAVAIL`, `connect_latency_ms.p99`), and each client pool's counts
    /// (`workloads.NAME.pool.opened`).
    pub metrics: BTreeMap<String, Stat>,
    /// Series values per bin ([`SERIES`]): what `portsim plot` draws as a band.
    pub series: BTreeMap<String, Band>,
}

/// A value read from a bin; `None` where the bin has none.
type BinValue = fn(&Bin) -> Option<f64>;

/// The series values a replicated run gives bands for, by the name of the bin's field.
pub const SERIES: &[(&str, BinValue)] = &[
    ("attempts", |b| Some(b.attempts as f64)),
    ("established", |b| Some(b.established as f64)),
    ("requests_completed", |b| Some(b.requests_completed as f64)),
    ("time_wait_client", |b| Some(f64::from(b.time_wait_client))),
    ("time_wait_server", |b| Some(f64::from(b.time_wait_server))),
    ("established_sockets", |b| {
        Some(f64::from(b.established_sockets_client) + f64::from(b.established_sockets_server))
    }),
    ("free_ports_min", |b| b.free_ports_min.map(f64::from)),
    ("connect_latency_p50_ms", |b| {
        b.connect_latency_ms.as_ref().map(|l| l.p50)
    }),
    ("connect_latency_p99_ms", |b| {
        b.connect_latency_ms.as_ref().map(|l| l.p99)
    }),
];

/// What one seed's run leaves for the distributions.
#[derive(Clone, Debug)]
pub struct Draw {
    /// Summary numbers by path; `None` where the run has none (no failure, say).
    pub metrics: Vec<(String, Option<f64>)>,
    /// Per [`SERIES`] entry, the value of each bin.
    pub series: Vec<Vec<Option<f64>>>,
}

impl Draw {
    pub fn of(r: &Report) -> Draw {
        let series = SERIES
            .iter()
            .map(|(_, f)| r.series.iter().map(f).collect())
            .collect();
        let mut metrics = numbers(&r.summary);
        for w in &r.workloads {
            if let Some(pool) = &w.pool {
                let v = serde_json::to_value(pool).expect("serializes");
                flatten(&format!("workloads.{}.pool", w.name), &v, &mut metrics);
            }
        }
        Draw { metrics, series }
    }
}

/// The numbers of `v` (a summary, a plan's outcome) by dotted path; `None` for a null.
pub fn numbers(v: &impl Serialize) -> Vec<(String, Option<f64>)> {
    let mut out = vec![];
    flatten("", &serde_json::to_value(v).expect("serializes"), &mut out);
    out
}

/// Each number's distribution over `runs` (each run's [`numbers`], in seed order). An error
/// count a run did not have is 0 there (a report lists only the errors that occurred); any
/// other missing number leaves that run out of its distribution, `n` saying how many had it.
pub fn distributions<R: AsRef<[(String, Option<f64>)]>>(runs: &[R]) -> BTreeMap<String, Stat> {
    let mut values: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        for (path, v) in run.as_ref() {
            let column = values.entry(path).or_insert_with(|| {
                let absent = path.starts_with("errors.").then_some(0.0);
                vec![absent; runs.len()]
            });
            column[i] = *v;
        }
    }
    values
        .into_iter()
        .filter_map(|(path, column)| {
            let present: Vec<f64> = column.into_iter().flatten().collect();
            let mut s = Stat::of(&present)?;
            s.n = (present.len() < runs.len()).then_some(present.len());
            Some((path.to_string(), s))
        })
        .collect()
}

/// The numbers of `v` by dotted path. `error_numbers` are names' numbers, not measurements,
/// and are left out.
fn flatten(path: &str, v: &serde_json::Value, out: &mut Vec<(String, Option<f64>)>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if path.is_empty() && k == "error_numbers" {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                flatten(&p, x, out);
            }
        }
        Value::Number(n) => out.push((path.to_string(), n.as_f64())),
        Value::Null => out.push((path.to_string(), None)),
        _ => {}
    }
}

impl Replicates {
    /// The distributions of `draws`, in seed order ([`distributions`]).
    pub fn of(seeds: Seeds, draws: &[Draw]) -> Replicates {
        let runs: Vec<&[(String, Option<f64>)]> =
            draws.iter().map(|d| d.metrics.as_slice()).collect();
        let metrics = distributions(&runs);
        let bins = draws
            .first()
            .map_or(0, |d| d.series.first().map_or(0, Vec::len));
        let series = SERIES
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let mut band = Band::default();
                for b in 0..bins {
                    let at: Vec<f64> = draws.iter().filter_map(|d| d.series[k][b]).collect();
                    let s = Stat::of(&at);
                    band.p5.push(s.as_ref().map(|s| s.p5));
                    band.p50.push(s.as_ref().map(|s| s.p50));
                    band.p95.push(s.as_ref().map(|s| s.p95));
                }
                (name.to_string(), band)
            })
            .collect();
        Replicates {
            n: draws.len() as u64,
            seeds: seeds.to_string(),
            metrics,
            series,
        }
    }

    /// The distributions as a table for the terminal: one row per number.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "\nover {} seeds ({}): each summary number's distribution (sd: sample; percentiles: nearest rank)",
            self.n, self.seeds
        );
        let width = self
            .metrics
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let _ = writeln!(
            o,
            "{:<width$} {:>12} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "metric", "mean", "sd", "min", "p5", "p50", "p95", "max"
        );
        for (k, s) in &self.metrics {
            let _ = write!(
                o,
                "{k:<width$} {:>12} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
                num(s.mean),
                num(s.sd),
                num(s.min),
                num(s.p5),
                num(s.p50),
                num(s.p95),
                num(s.max)
            );
            if let Some(n) = s.n {
                let _ = write!(o, "  (in {n} of {} runs)", self.n);
            }
            let _ = writeln!(o);
        }
        o
    }
}

/// A number for the table: whole numbers grouped, others to four significant places.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let s = crate::report::group(x.abs() as u64);
        if x < 0.0 { format!("-{s}") } else { s }
    } else if x.abs() >= 1000.0 {
        crate::report::decimal(x, 1)
    } else {
        format!("{x:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// `f` of `sc` with its seed set to each of `seeds`, in parallel on the current rayon pool;
/// the results in seed order, whatever the thread count.
pub fn per_seed<T: Send>(sc: &Scenario, seeds: Seeds, f: impl Fn(&Scenario) -> T + Sync) -> Vec<T> {
    seeds
        .iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|seed| {
            let mut one = sc.clone();
            one.seed = seed;
            f(&one)
        })
        .collect()
}

/// Runs `sc` once per seed of `seeds` on the current rayon pool, calling `done` after each
/// run: the report of the first seed, with the distributions over all of them. `make`
/// builds each run's simulation (to set options such as [`Simulation::ports`]). A broken
/// invariant (checking mode) ends it with the seed that broke it.
pub fn run(
    sc: &Scenario,
    seeds: Seeds,
    make: &(dyn Fn(&Scenario) -> Simulation + Sync),
    done: &(dyn Fn() + Sync),
) -> Result<Report, (u64, Violation)> {
    let runs: Vec<(Draw, Option<Report>)> = per_seed(sc, seeds, |one| {
        let (r, _) = make(one).run_checked().map_err(|v| (one.seed, v))?;
        done();
        let draw = Draw::of(&r);
        Ok((draw, (one.seed == seeds.first).then_some(r)))
    })
    .into_iter()
    .collect::<Result<_, _>>()?;
    let mut first = None;
    let mut draws = Vec::with_capacity(runs.len());
    for (d, r) in runs {
        draws.push(d);
        first = first.or(r);
    }
    let mut report = first.expect("the first seed ran");
    report.replicates = Some(Replicates::of(seeds, &draws));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_an_inclusive_range() {
        assert_eq!(Seeds::parse("1..200").unwrap().len(), 200);
        assert_eq!(Seeds::parse("3..=3").unwrap().len(), 1);
        assert!(Seeds::parse("5..4").is_err());
        assert!(Seeds::parse("1-200").is_err());
        assert!(Seeds::parse("a..b").is_err());
        assert!(Seeds::parse("0..100000").is_err());
    }

    #[test]
    fn a_distribution_gives_nearest_rank_percentiles_and_the_sample_sd() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Stat::of(&v).unwrap();
        assert_eq!((s.min, s.max, s.mean), (1.0, 20.0, 10.5));
        // Nearest rank: p5 is the 1st of 20, p50 the 10th, p95 the 19th.
        assert_eq!((s.p5, s.p50, s.p95), (1.0, 10.0, 19.0));
        // Sample variance of 1..=20: n(n+1)/12 = 35.
        assert!((s.sd - 35f64.sqrt()).abs() < 1e-12);
        assert_eq!(Stat::percentile_of(&v, 10.0), 47.5);
        assert!(Stat::of(&[]).is_none());
        // 200 runs of the same 0.2 ms: that mean, no spread.
        let same = Stat::of(&[0.2; 200]).unwrap();
        assert_eq!((same.mean, same.sd), (0.2, 0.0));
    }

    #[test]
    fn an_error_a_run_did_not_have_counts_as_zero_and_a_missing_time_is_left_out() {
        let draw = |errors: Option<f64>, first: Option<f64>| Draw {
            metrics: [
                errors.map(|e| ("errors.EADDRNOTAVAIL".to_string(), Some(e))),
                Some(("first_failure_s".to_string(), first)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            series: vec![vec![]; SERIES.len()],
        };
        let seeds = Seeds { first: 1, last: 2 };
        let r = Replicates::of(seeds, &[draw(Some(4.0), Some(2.0)), draw(None, None)]);
        assert_eq!(r.metrics["errors.EADDRNOTAVAIL"].mean, 2.0);
        assert_eq!(r.metrics["errors.EADDRNOTAVAIL"].n, None);
        assert_eq!(r.metrics["first_failure_s"].mean, 2.0);
        assert_eq!(r.metrics["first_failure_s"].n, Some(1));
    }
}
