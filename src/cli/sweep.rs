//! `portsim sweep` and `portsim merge`.

use super::io::{check_plot, emit, parse_seeds, parse_sets, progress, read_text};
use super::{BAD_INPUT, Outcome};
use crate::plan::sweep;
use crate::plot::manifest::Metric;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct SweepArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    /// KEY=V1,V2,… or KEY=LO..HI/STEPS; one per varied key, the last varying fastest.
    #[arg(long, value_name = "KEY=VALUES", required = true)]
    vary: Vec<String>,
    /// What-if: KEY=VALUE under every point.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output format (default: from the output file's extension, else CSV).
    #[arg(long, value_enum)]
    format: Option<SweepFormat>,
    /// Write the results to this file instead of standard output (atomically).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Draw a line chart (one varied number) or a heat map (two varied keys).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// What the chart shows.
    #[arg(long, value_enum, default_value_t = MetricArg::SustainedPerS)]
    metric: MetricArg,
    /// Threads (default: every CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Run only shard I of N (points k with k mod N = I − 1); join with `portsim merge`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Run each point once per seed A to B (both included): each row's numbers as
    /// mean, sd, min, p5, p50, p95 and max; charts show the mean with a p5–p95 band.
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
}

#[derive(Args)]
pub(super) struct MergeArgs {
    /// `portsim sweep --format json --shard I/N` outputs.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, value_enum)]
    format: Option<SweepFormat>,
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MetricArg::SustainedPerS)]
    metric: MetricArg,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum SweepFormat {
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
enum MetricArg {
    SustainedPerS,
    SuccessPercent,
    FirstFailureS,
    TimeWaitPeak,
}

impl MetricArg {
    fn metric(self) -> Metric {
        match self {
            MetricArg::SustainedPerS => Metric::SustainedPerS,
            MetricArg::SuccessPercent => Metric::SuccessPercent,
            MetricArg::FirstFailureS => Metric::FirstFailureS,
            MetricArg::TimeWaitPeak => Metric::TimeWaitPeak,
        }
    }
}

/// Prints a refused sweep; exit status [`BAD_INPUT`].
fn bad(e: sweep::SweepError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(BAD_INPUT)
}

/// `portsim sweep`: every point of the grid run, with a progress bar, then written.
pub(super) fn sweep(a: SweepArgs) -> Outcome {
    let seeds = parse_seeds(a.seeds.as_deref())?;
    let text = read_text(&a.scenario)?;
    let changes = parse_sets(&a.set)?;
    let vary = parse_vary(&a.vary)?;
    let shard = a
        .shard
        .as_deref()
        .map(sweep::parse_shard)
        .transpose()
        .map_err(bad)?;
    if a.threads == Some(0) {
        eprintln!("error: --threads: at least 1");
        return Err(ExitCode::from(BAD_INPUT));
    }
    let format = sweep_format(a.format, a.output.as_deref())?;
    check_plot(a.plot.as_deref())?;
    let file = a.scenario.display().to_string();
    let sw = sweep::Sweep::new(&file, &text, &changes, &vary, shard)
        .map_err(bad)?
        .with_seeds(seeds);
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let bar = progress(sw.len() as u64, "runs");
    let report = sw.run(threads, &|| bar.inc(1));
    bar.finish_and_clear();
    write_sweep(
        &report,
        format,
        a.output.as_deref(),
        a.plot.as_deref(),
        a.metric,
    )
}

/// The `--vary` arguments, each key once.
fn parse_vary(vary: &[String]) -> Result<Vec<sweep::Vary>, ExitCode> {
    let vary: Vec<sweep::Vary> = vary
        .iter()
        .map(|v| sweep::parse_vary(v))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    if let Some(v) = vary
        .iter()
        .enumerate()
        .find(|(i, v)| vary[..*i].iter().any(|u| u.key == v.key))
        .map(|(_, v)| v)
    {
        eprintln!("error: --vary {}: varied twice; give each key once", v.key);
        return Err(ExitCode::from(BAD_INPUT));
    }
    Ok(vary)
}

/// `portsim merge`: the shards joined, then written as a sweep is.
pub(super) fn merge(a: MergeArgs) -> Outcome {
    let format = sweep_format(a.format, a.output.as_deref())?;
    let mut parts = vec![];
    for i in &a.inputs {
        let text = read_text(i)?;
        match serde_json::from_str::<sweep::SweepReport>(&text) {
            Ok(r) => parts.push((i.display().to_string(), r)),
            Err(e) => {
                eprintln!(
                    "error: {}: not a `portsim sweep --format json` file: {e}",
                    i.display()
                );
                return Err(ExitCode::from(BAD_INPUT));
            }
        }
    }
    match sweep::merge(&parts) {
        Ok(r) => write_sweep(&r, format, a.output.as_deref(), a.plot.as_deref(), a.metric),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}

/// `--format`, else the output file's extension (.csv or .json), else CSV.
fn sweep_format(
    format: Option<SweepFormat>,
    output: Option<&Path>,
) -> Result<SweepFormat, ExitCode> {
    if let Some(f) = format {
        return Ok(f);
    }
    let ext = output
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        None | Some("csv") => Ok(SweepFormat::Csv),
        Some("json") => Ok(SweepFormat::Json),
        Some(other) => {
            eprintln!(
                "error: --output: .{other}: give --format csv or json, or name the file .csv or .json"
            );
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}

/// Writes the results, then draws the chart if asked.
fn write_sweep(
    r: &sweep::SweepReport,
    format: SweepFormat,
    output: Option<&Path>,
    chart: Option<&Path>,
    metric: MetricArg,
) -> Outcome {
    let text = match format {
        SweepFormat::Csv => r.to_csv(),
        SweepFormat::Json => r.to_json(),
    };
    emit(output, &text)?;
    // The results first: a chart that cannot be drawn does not cost the runs.
    if chart.is_some() && r.rows.is_empty() {
        eprintln!("warning: no points in this shard: no chart drawn");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(p) = chart {
        match r.chart(metric.metric()) {
            Ok(c) => {
                if let Err(e) = c.save(p) {
                    eprintln!("error: {e}");
                    return Err(ExitCode::FAILURE);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
