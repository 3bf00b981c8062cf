//! `portsim plot` and `portsim plots`.

use super::{BAD_INPUT, Outcome};
use crate::plot::{self, manifest};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct PlotArgs {
    /// Scenario files or JSON reports.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The chart file: .svg or .png.
    #[arg(short, long)]
    output: PathBuf,
    /// Title of a comparison chart.
    #[arg(long)]
    title: Option<String>,
}

#[derive(Args)]
pub(super) struct PlotsArgs {
    /// The manifest.
    #[arg(default_value = "plots/plots.toml")]
    manifest: PathBuf,
    /// Write nothing; fail if a committed chart is out of date, missing or unlisted.
    #[arg(long)]
    check: bool,
    /// Also write each chart as PNG into this directory, to look at them.
    #[arg(long)]
    png_dir: Option<PathBuf>,
}

/// `portsim plot`: one input's own chart, or several compared on one time axis.
pub(super) fn plot(a: PlotArgs) -> Outcome {
    if let Err(e) = plot::check_extension(&a.output) {
        eprintln!("error: {e}");
        return Err(ExitCode::from(BAD_INPUT));
    }
    let mut loaded = vec![];
    for i in &a.inputs {
        match plot::input::load(i) {
            Ok(x) => loaded.push(x),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(ExitCode::from(BAD_INPUT));
            }
        }
    }
    let saved = match loaded.as_slice() {
        [plot::Input::Report(r)] => plot::save(&plot::scenario_chart(r), &a.output),
        [plot::Input::Live(l)] => plot::save(&plot::live_chart(l), &a.output),
        many => {
            let runs = compared(many, &a.inputs)?;
            let title = a.title.unwrap_or_else(|| "comparison".into());
            plot::save(&plot::comparison_chart(&title, &runs), &a.output)
        }
    };
    match saved {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The reports to compare, each named for its scenario; a live report is refused.
fn compared(
    many: &[plot::Input],
    inputs: &[PathBuf],
) -> Result<Vec<(String, plot::ReportView)>, ExitCode> {
    let mut runs = vec![];
    for (x, path) in many.iter().zip(inputs) {
        match x {
            plot::Input::Report(r) => runs.push((r.scenario.name.clone(), (**r).clone())),
            plot::Input::Live(_) => {
                eprintln!(
                    "error: {}: a live report is charted on its own, not compared",
                    path.display()
                );
                return Err(ExitCode::from(BAD_INPUT));
            }
        }
    }
    Ok(runs)
}

/// `portsim plots`: every chart the manifest lists written beside it (and as PNG into
/// `--png-dir`), or with `--check` only compared with the committed ones.
pub(super) fn plots(a: PlotsArgs) -> Outcome {
    let made = manifest::make(&a.manifest).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    let dir = a.manifest.parent().unwrap_or(Path::new("."));
    if a.check {
        return check_plots(&made, dir, &a.manifest);
    }
    for m in &made {
        if let Err(e) = crate::write_atomically(&m.path, m.svg.as_bytes()) {
            eprintln!("error: cannot write {}: {e}", m.path.display());
            return Err(ExitCode::FAILURE);
        }
    }
    if let Some(d) = &a.png_dir {
        for m in &made {
            let png = d.join(m.path.with_extension("png").file_name().unwrap_or_default());
            if let Err(e) = m.save_png(&png) {
                eprintln!("error: {e}");
                return Err(ExitCode::FAILURE);
            }
        }
    }
    println!("{} charts written to {}", made.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `plots --check`: each stale chart named; success only when none is.
fn check_plots(made: &[manifest::Made], dir: &Path, manifest: &Path) -> Outcome {
    let stale = manifest::stale(made, dir);
    for s in &stale {
        eprintln!("{s}");
    }
    if stale.is_empty() {
        println!("{} charts in {} are current", made.len(), dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("regenerate with: portsim plots {}", manifest.display());
    Err(ExitCode::FAILURE)
}
