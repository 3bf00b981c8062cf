//! `plots/`: every chart the docs show, listed in `plots/plots.toml` and made by
//! `portsim plots`. Paths in the manifest are relative to it; charts are written beside it.
//! `portsim plots --check` renders everything in memory and fails when a committed chart
//! differs, is missing, or is no longer made.

use super::input::ReportView;
use super::{Figure, HeatMap, Reference, fmt_num, render_svg};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// A directory: one chart per scenario file in it, named after the file.
    scenarios: String,
    #[serde(default)]
    comparison: Vec<Comparison>,
    #[serde(default)]
    sweep: Vec<Sweep>,
    #[serde(default)]
    heatmap: Vec<Heat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Comparison {
    file: String,
    title: String,
    scenarios: Vec<String>,
}

/// A swept scenario value: `set` is a [`crate::scenario::set`] path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Axis {
    set: String,
    values: Vec<toml::Value>,
    /// The axis title, with its unit (not needed for `lines`).
    #[serde(default)]
    label: String,
    /// How each value is shown; default: the value itself.
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sweep {
    file: String,
    title: String,
    scenario: String,
    /// Numbers: the chart's x axis.
    x: Axis,
    /// One line per value; without it, one line.
    lines: Option<Axis>,
    metric: Metric,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Heat {
    file: String,
    title: String,
    scenario: String,
    x: Axis,
    y: Axis,
    metric: Metric,
}

/// What a sweep reads from each run.
#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Connections established per second over the last whole TIME_WAIT periods that fit in
    /// the second half of the run: the sustained rate, free of the first burst and of the
    /// phase of the bursts in which ports come back.
    SustainedPerS,
    /// Established as a percentage of attempted.
    SuccessPercent,
    /// Seconds to the first failed connect; none when nothing failed.
    FirstFailureS,
    TimeWaitPeak,
}

impl Metric {
    /// The metric's name in a sweep row (`--metric` spells it the same).
    pub fn key(self) -> &'static str {
        match self {
            Metric::SustainedPerS => "sustained_per_s",
            Metric::SuccessPercent => "success_percent",
            Metric::FirstFailureS => "first_failure_s",
            Metric::TimeWaitPeak => "time_wait_peak",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::SustainedPerS => "sustained established / s",
            Metric::SuccessPercent => "connects that succeeded (%)",
            Metric::FirstFailureS => "first failure (s)",
            Metric::TimeWaitPeak => "TIME-WAIT peak (sockets)",
        }
    }

    pub fn of(self, r: &ReportView) -> Option<f64> {
        match self {
            Metric::SustainedPerS => {
                let (from, to) = sustained_window(r)?;
                let n: u64 = r
                    .series
                    .iter()
                    .filter(|b| b.t_s >= from - 1e-9 && b.t_s < to)
                    .map(|b| b.established)
                    .sum();
                Some(n as f64 / (to - from))
            }
            Metric::SuccessPercent => {
                let c = &r.summary.connections;
                (c.attempted > 0).then(|| 100.0 * c.established as f64 / c.attempted as f64)
            }
            Metric::FirstFailureS => r.summary.first_failure_s,
            Metric::TimeWaitPeak => Some(f64::from(r.summary.time_wait.peak)),
        }
    }
}

/// The window [`Metric::SustainedPerS`] counts over: the most whole TIME_WAIT periods (the
/// longest of the run's pools) that fit in the second half, ending with the run, on bin
/// edges. A run without pools, or shorter than one period, uses its second half.
pub fn sustained_window(r: &ReportView) -> Option<(f64, f64)> {
    let end = r.duration_s;
    let tw = r.pools.iter().map(|p| p.time_wait_s).fold(0.0, f64::max);
    let len = if tw > 0.0 && tw <= end / 2.0 {
        ((end / 2.0) / tw).floor() * tw
    } else {
        end / 2.0
    };
    let from = r
        .series
        .iter()
        .map(|b| b.t_s)
        .find(|t| *t >= end - len - 1e-9)?;
    (from < end).then_some((from, end))
}

/// Why the manifest could not be turned into charts.
#[derive(Debug)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not at one place in the file.
    pub line: usize,
    pub column: usize,
    /// The entry, e.g. `[[sweep]] file = "x.svg"`.
    pub entry: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.entry.is_empty() {
            write!(f, ": {}", self.entry)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// A chart the manifest makes: its file, the chart and its SVG.
pub struct Made {
    pub path: PathBuf,
    pub chart: Drawn,
    pub svg: String,
}

/// Either kind of chart a manifest makes.
pub enum Drawn {
    Figure(Figure),
    Heat(HeatMap),
}

impl Made {
    /// Also draws the chart as PNG, to look at it as a reader's SVG viewer would show it.
    pub fn save_png(&self, path: &Path) -> Result<(), super::PlotError> {
        match &self.chart {
            Drawn::Figure(f) => super::save(f, path),
            Drawn::Heat(h) => super::save(h, path),
        }
    }
}

/// Renders every chart `manifest` lists, in memory.
pub fn make(manifest: &Path) -> Result<Vec<Made>, ManifestError> {
    let err = |entry: &str, message: String| ManifestError {
        file: manifest.to_path_buf(),
        line: 0,
        column: 0,
        entry: entry.to_string(),
        message,
    };
    let text = std::fs::read_to_string(manifest).map_err(|e| err("", e.to_string()))?;
    let m: Manifest = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let line = text[..at.min(text.len())].matches('\n').count() + 1;
        let column = at - text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1) + 1;
        ManifestError {
            file: manifest.to_path_buf(),
            line,
            column,
            entry: String::new(),
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut out = vec![];
    let mut written: std::collections::BTreeMap<String, String> = Default::default();
    let mut push = |entry: &str, file: &str, chart: Drawn| {
        if !file.ends_with(".svg") || file.contains('/') {
            return Err(err(
                entry,
                format!("{file:?}: name a .svg file in {}", dir.display()),
            ));
        }
        if let Some(first) = written.insert(file.to_string(), entry.to_string()) {
            return Err(err(entry, format!("{file:?} is already made by {first}")));
        }
        let svg = match &chart {
            Drawn::Figure(f) => render_svg(f),
            Drawn::Heat(h) => render_svg(h),
        }
        .map_err(|e| err(entry, e.to_string()))?;
        out.push(Made {
            path: dir.join(file),
            chart,
            svg,
        });
        Ok(())
    };
    // A scenario in several charts runs once.
    let mut cache: std::collections::BTreeMap<PathBuf, ReportView> = Default::default();
    let mut run = |entry: &str, path: &Path| -> Result<ReportView, ManifestError> {
        if let Some(r) = cache.get(path) {
            return Ok(r.clone());
        }
        let r = crate::run_file(path)
            .map(|r| ReportView::of(&r))
            .map_err(|e| err(entry, e.to_string()))?;
        cache.insert(path.to_path_buf(), r.clone());
        Ok(r)
    };
    let sdir = dir.join(&m.scenarios);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sdir)
        .map_err(|e| err("scenarios", format!("{}: {e}", sdir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for f in &files {
        let entry = format!("scenario {}", f.display());
        let r = run(&entry, f)?;
        let stem = f.file_stem().unwrap_or_default().to_string_lossy();
        push(
            &entry,
            &format!("{stem}.svg"),
            Drawn::Figure(super::scenario_chart(&r)),
        )?;
    }
    for c in &m.comparison {
        let entry = format!("[[comparison]] file = {:?}", c.file);
        let mut runs = vec![];
        for s in &c.scenarios {
            let r = run(&entry, &dir.join(s))?;
            runs.push((r.scenario.name.clone(), r));
        }
        push(
            &entry,
            &c.file,
            Drawn::Figure(super::comparison_chart(&c.title, &runs)),
        )?;
    }
    for s in &m.sweep {
        let entry = format!("[[sweep]] file = {:?}", s.file);
        let fig = sweep(dir, s).map_err(|e| err(&entry, e))?;
        push(&entry, &s.file, Drawn::Figure(fig))?;
    }
    for h in &m.heatmap {
        let entry = format!("[[heatmap]] file = {:?}", h.file);
        let map = heat(dir, h).map_err(|e| err(&entry, e))?;
        push(&entry, &h.file, Drawn::Heat(map))?;
    }
    Ok(out)
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
}

fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => fmt_num(*i as f64),
        toml::Value::Float(f) => fmt_num(*f),
        other => other.to_string(),
    }
}

fn labels(a: &Axis) -> Result<Vec<String>, String> {
    if a.values.is_empty() {
        return Err(format!("{}: no values", a.set));
    }
    if a.labels.is_empty() {
        Ok(a.values.iter().map(show).collect())
    } else if a.labels.len() == a.values.len() {
        Ok(a.labels.clone())
    } else {
        Err(format!(
            "{}: {} labels for {} values",
            a.set,
            a.labels.len(),
            a.values.len()
        ))
    }
}

/// Runs `scenario` with each `(path, value)` set.
fn run_with(
    dir: &Path,
    scenario: &str,
    sets: &[(&str, &toml::Value)],
) -> Result<ReportView, String> {
    let path = dir.join(scenario);
    let mut text =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (k, v) in sets {
        text = crate::scenario::set(&text, k, (*v).clone()).map_err(|e| e.to_string())?;
    }
    let what: Vec<String> = sets.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let file = format!("{} with {}", path.display(), what.join(", "));
    // Positions would point into the re-written text, not the user's file: name the file and
    // what was set, and the message.
    let sc = crate::scenario::parse(&file, &text).map_err(|mut e| {
        e.line = 0;
        e.column = 0;
        e.key.clear();
        e.to_string()
    })?;
    Ok(ReportView::of(&crate::sim::Simulation::new(&sc).run()))
}

fn sweep(dir: &Path, s: &Sweep) -> Result<Figure, String> {
    let xs: Vec<f64> =
        s.x.values
            .iter()
            .map(|v| match v {
                toml::Value::Integer(i) => Ok(*i as f64),
                toml::Value::Float(f) => Ok(*f),
                other => Err(format!("{}: {other} is not a number", s.x.set)),
            })
            .collect::<Result<_, _>>()?;
    if !s.x.labels.is_empty() {
        return Err(format!(
            "{}: a sweep's x axis is numeric and labels itself; `labels` is for heat maps and `lines`",
            s.x.set
        ));
    }
    let (line_names, line_values): (Vec<String>, Vec<Option<&toml::Value>>) = match &s.lines {
        Some(a) => (labels(a)?, a.values.iter().map(Some).collect()),
        None => (vec![s.metric.label().to_string()], vec![None]),
    };
    let mut series = vec![];
    let mut references = vec![];
    for (k, (name, lv)) in line_names.iter().zip(&line_values).enumerate() {
        let mut pts = vec![];
        let mut limits = vec![];
        for (x, xv) in xs.iter().zip(&s.x.values) {
            let mut sets = vec![(s.x.set.as_str(), xv)];
            if let (Some(a), Some(v)) = (&s.lines, lv) {
                sets.push((a.set.as_str(), v));
            }
            let r = run_with(dir, &s.scenario, &sets)?;
            limits.push(super::sustainable_limit(&r));
            // A run without a value (no failure, nothing attempted) breaks the line.
            pts.push(s.metric.of(&r).map(|y| (*x, y)));
        }
        // The limit line only where every run of the line shares it.
        if let (Metric::SustainedPerS, Some(Some(l))) = (s.metric, limits.first())
            && limits.iter().all(|m| *m == Some(*l))
        {
            references.push(Reference {
                y: *l,
                label: format!("{name}: ports / TIME_WAIT {}", fmt_num(*l)),
                colour: super::PALETTE[k % super::PALETTE.len()],
            });
        }
        series.push((name.clone(), pts));
    }
    let subtitle = format!(
        "{} · {} runs · x: {}{}",
        file_name(&s.scenario),
        xs.len() * line_names.len(),
        s.x.set,
        s.lines
            .as_ref()
            .map(|a| format!(" · lines: {}", a.set))
            .unwrap_or_default()
    );
    Ok(super::line_chart(
        &s.title,
        &subtitle,
        &s.x.label,
        s.metric.label(),
        series,
        references,
    ))
}

fn heat(dir: &Path, h: &Heat) -> Result<HeatMap, String> {
    let xs = labels(&h.x)?;
    let ys = labels(&h.y)?;
    let mut cells = vec![];
    for yv in &h.y.values {
        let mut row = vec![];
        for xv in &h.x.values {
            let r = run_with(
                dir,
                &h.scenario,
                &[(h.x.set.as_str(), xv), (h.y.set.as_str(), yv)],
            )?;
            row.push(h.metric.of(&r));
        }
        cells.push(row);
    }
    Ok(HeatMap {
        title: h.title.clone(),
        subtitle: format!(
            "{} · {} runs · x: {} · y: {}",
            file_name(&h.scenario),
            xs.len() * ys.len(),
            h.x.set,
            h.y.set
        ),
        x_label: h.x.label.clone(),
        y_label: h.y.label.clone(),
        value_label: h.metric.label().to_string(),
        xs,
        ys,
        cells,
    })
}

/// Charts under `dir` that differ from what was made, are missing, or are not made any more.
pub fn stale(made: &[Made], dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for m in made {
        match std::fs::read_to_string(&m.path) {
            Ok(s) if s == m.svg => {}
            Ok(_) => out.push(format!("{} is out of date", m.path.display())),
            Err(_) => out.push(format!("{} is missing", m.path.display())),
        }
    }
    let mut extra: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "svg"))
                .filter(|p| !made.iter().any(|m| &m.path == p))
                .collect()
        })
        .unwrap_or_default();
    extra.sort();
    out.extend(
        extra
            .iter()
            .map(|p| format!("{} is not in the manifest", p.display())),
    );
    out
}
