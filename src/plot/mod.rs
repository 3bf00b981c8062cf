//! Charts for docs and for people, drawn with plotters: SVG (a name without an extension
//! too), or PNG when the file name ends in `.png`.
//!
//! Text is measured and rasterised with DejaVu Sans, embedded from `assets/fonts` (Bitstream
//! Vera license, beside the file), so a machine without fonts renders the same bytes as any
//! other. Every chart is a pure function of its input: the same report gives the same file.
//!
//! Chart kinds: [`scenario_chart`] (three panels over time: sockets by state, connections
//! per second against `ports / TIME_WAIT`, connect latency; with a NAT on the path, two more
//! under the sockets: the NAT's ports in use against its range, its conntrack entries by
//! state), [`comparison_chart`] (several
//! scenarios on one time axis), [`live_chart`] (predicted against measured), [`line_chart`]
//! (a metric over one swept parameter) and [`HeatMap`] (over two).

pub mod input;
pub mod manifest;

pub use input::{Input, LiveView, ReportView};

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::{FontStyle, text_anchor};
use std::fmt;
use std::path::{Path, PathBuf};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// What drawing a chart can fail with.
#[derive(Debug)]
pub enum PlotError {
    /// The output name ends in neither `.svg` nor `.png`.
    Extension(PathBuf),
    /// The chart has no data (no bins, no points).
    Empty(String),
    /// plotters refused to draw.
    Draw(String),
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Extension(p) => write!(
                f,
                "{}: a chart is written as .svg (the default) or .png; name the file with one of them",
                p.display()
            ),
            PlotError::Empty(what) => write!(f, "nothing to plot: {what}"),
            PlotError::Draw(e) => write!(f, "drawing failed: {e}"),
            PlotError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for PlotError {}

// Okabe–Ito: told apart with every common colour-vision deficiency.
pub const BLUE_: RGBColor = RGBColor(0, 114, 178);
pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN_: RGBColor = RGBColor(0, 158, 115);
pub const SKY: RGBColor = RGBColor(86, 180, 233);
pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
pub const OCHRE: RGBColor = RGBColor(160, 140, 0);
pub const GREY: RGBColor = RGBColor(120, 120, 120);
pub const INK: RGBColor = RGBColor(30, 30, 30);
/// Colours for lines that are told apart by name only (scenarios, sweep series).
pub const PALETTE: [RGBColor; 8] = [INK, VERMILLION, BLUE_, GREEN_, ORANGE, PURPLE, SKY, OCHRE];

const WIDTH: u32 = 1200;
const LEGEND_W: u32 = 300;
const HEADER_H: u32 = 78;

/// A line's points; `None` breaks it.
pub type Points = Vec<Option<(f64, f64)>>;

/// One line of a panel; `None` points break it (a bin with no value).
#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    pub colour: RGBColor,
    pub dashed: bool,
    /// Circles at the points (sweeps, where each point is a run).
    pub dots: bool,
    /// Stroke width in pixels.
    pub width: u32,
    pub points: Vec<Option<(f64, f64)>>,
    /// A shaded band around the line, `(x, low, high)` per point: p5 to p95 over the seeds
    /// of a replicated run.
    pub band: Vec<Option<(f64, f64, f64)>>,
}

impl Line {
    pub fn new(name: impl Into<String>, colour: RGBColor, points: Vec<Option<(f64, f64)>>) -> Line {
        Line {
            name: name.into(),
            colour,
            dashed: false,
            dots: false,
            width: 2,
            points,
            band: vec![],
        }
    }

    /// The line with a shaded band (see [`Line::band`]).
    pub fn banded(mut self, band: Vec<Option<(f64, f64, f64)>>) -> Line {
        self.band = band;
        self
    }

    pub fn dashed(mut self) -> Line {
        self.dashed = true;
        self
    }

    fn has_data(&self) -> bool {
        self.points.iter().any(Option::is_some)
    }
}

/// A horizontal reference line, named in the legend with its value.
#[derive(Clone, Debug)]
pub struct Reference {
    pub y: f64,
    pub label: String,
    pub colour: RGBColor,
}

/// One panel: a y axis and its lines.
#[derive(Clone, Debug)]
pub struct Panel {
    /// The y axis title, with its unit.
    pub y_label: String,
    pub log_y: bool,
    pub lines: Vec<Line>,
    pub references: Vec<Reference>,
}

/// A vertical line through every panel, labelled at the top of the first.
#[derive(Clone, Debug)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    pub colour: RGBColor,
}

/// Panels stacked on one shared x axis, each with its legend to the right of the data.
#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub x_range: (f64, f64),
    pub panels: Vec<Panel>,
    pub markers: Vec<Marker>,
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded file is a valid TrueType font; a failure would show as missing text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A chart that can be drawn on any plotters backend.
pub trait Chart {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Draws `chart` to `path` (SVG or PNG by extension). The file appears whole or not at all:
/// it is drawn beside `path` and renamed over it.
pub fn save<C: Chart>(chart: &C, path: &Path) -> Result<(), PlotError> {
    match extension(path)? {
        Ext::Svg => {
            let svg = render_svg(chart)?;
            crate::write_atomically(path, svg.as_bytes()).map_err(|error| PlotError::Write {
                path: path.to_path_buf(),
                error,
            })
        }
        Ext::Png => {
            let png = render_png(chart)?;
            crate::write_atomically(path, &png).map_err(|error| PlotError::Write {
                path: path.to_path_buf(),
                error,
            })
        }
    }
}

/// The chart as PNG bytes (RGB, 8 bits per channel).
pub fn render_png<C: Chart>(chart: &C) -> Result<Vec<u8>, PlotError> {
    register_font();
    let (w, h) = chart.size();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        chart.draw(&root).map_err(PlotError::Draw)?;
        root.present()
            .map_err(|e| PlotError::Draw(format!("{e:?}")))?;
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| PlotError::Draw(e.to_string()))?;
    Ok(out)
}

/// The chart as SVG text.
pub fn render_svg<C: Chart>(chart: &C) -> Result<String, PlotError> {
    register_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, chart.size()).into_drawing_area();
        chart.draw(&root).map_err(PlotError::Draw)?;
        root.present()
            .map_err(|e| PlotError::Draw(format!("{e:?}")))?;
    }
    s.push('\n');
    Ok(s)
}

/// Refuses an output name that is neither .svg nor .png, before any work is done.
pub fn check_extension(path: &Path) -> Result<(), PlotError> {
    extension(path).map(|_| ())
}

enum Ext {
    Svg,
    Png,
}

fn extension(path: &Path) -> Result<Ext, PlotError> {
    match path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .as_deref()
    {
        Some("svg") | None => Ok(Ext::Svg),
        Some("png") => Ok(Ext::Png),
        _ => Err(PlotError::Extension(path.to_path_buf())),
    }
}

/// A number as an axis or legend shows it: grouped thousands, decimals only where small.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 999.5 {
        let s = crate::report::group(a.round() as u64);
        if v < 0.0 { format!("-{s}") } else { s }
    } else if a >= 10.0 || (a - a.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else if a >= 0.01 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// Seconds to the millisecond, trailing zeros dropped: 32.768, 60.001, 7.5.
pub fn fmt_time(t: f64) -> String {
    trim(format!("{t:.3}"))
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Width in pixels of `text` in the embedded font at `size`.
fn text_width(text: &str, size: f64) -> i32 {
    register_font();
    ("sans-serif", size)
        .into_font()
        .box_size(text)
        .map_or(7 * text.chars().count() as i32, |(w, _)| w as i32)
}

fn err<E: fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn font(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

/// The y range a panel needs: from zero (or, on a log axis, a decade below the smallest
/// value) to 18 % above the largest, so marker labels sit above the data.
fn y_range(p: &Panel) -> Result<(f64, f64), String> {
    let ys = p
        .lines
        .iter()
        .flat_map(|l| l.points.iter().flatten().map(|&(_, y)| y))
        .chain(
            p.lines
                .iter()
                .flat_map(|l| l.band.iter().flatten().flat_map(|&(_, lo, hi)| [lo, hi])),
        )
        .chain(p.references.iter().map(|r| r.y));
    let (lo, hi) = if p.log_y {
        let pos: Vec<f64> = ys.filter(|y| *y > 0.0).collect();
        if pos.is_empty() {
            return Ok((0.01, 10.0));
        }
        let lo = pos.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = pos.iter().copied().fold(0.0, f64::max);
        (
            10f64.powf(lo.log10().floor()),
            10f64.powf((hi * 3.0).log10().ceil()),
        )
    } else {
        let hi = ys.fold(0.0, f64::max);
        (0.0, if hi > 0.0 { hi * 1.18 } else { 1.0 })
    };
    // plotters never returns on an infinite or empty range: refuse it here.
    if lo.is_finite() && hi.is_finite() && hi > lo && hi < MAX_VALUE {
        Ok((lo, hi))
    } else {
        Err(format!("{}: values out of range ({lo} to {hi})", p.y_label))
    }
}

/// The largest value a chart draws; reports hold nothing near it.
pub const MAX_VALUE: f64 = 1e15;

/// Axis labels with as many decimals as the tick spacing needs (plotters puts about ten
/// ticks on an axis), so ticks 0.5 apart do not print the same integer twice.
fn axis_format(lo: f64, hi: f64, log: bool) -> impl Fn(&f64) -> String {
    let step = (hi - lo) / 10.0;
    let decimals = if log || step >= 1.0 || step <= 0.0 {
        None
    } else {
        Some((-step.log10().floor()).clamp(0.0, 6.0) as usize)
    };
    move |v: &f64| match decimals {
        None => fmt_num(*v),
        Some(d) => trim(format!("{v:.d$}")),
    }
}

/// A log axis only pays when the values span more than a factor of 20; otherwise the panel
/// is drawn linear from zero, where a handful of powers of ten would leave it unlabelled.
fn wide_or_linear(p: &Panel) -> Panel {
    let mut p = p.clone();
    if p.log_y {
        let pos = p
            .lines
            .iter()
            .flat_map(|l| l.points.iter().flatten().map(|&(_, y)| y))
            .filter(|y| *y > 0.0);
        let (lo, hi) = pos.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        if hi <= 20.0 * lo || lo.is_infinite() {
            p.log_y = false;
            p.y_label = p.y_label.replace(", log scale", "");
        }
    }
    p
}

/// The outlines of a band's contiguous runs: the high edge forward, the low edge back. On a
/// log axis a run breaks where its low edge is not positive.
fn band_segments(band: &[Option<(f64, f64, f64)>], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![];
    let mut cur: Vec<(f64, f64, f64)> = vec![];
    for p in band.iter().chain([&None]) {
        match p {
            Some(b) if !log_y || b.1 > 0.0 => cur.push(*b),
            _ if cur.len() > 1 => {
                let high = cur.iter().map(|&(x, _, h)| (x, h));
                let low = cur.iter().rev().map(|&(x, l, _)| (x, l));
                out.push(high.chain(low).collect());
                cur.clear();
            }
            _ => cur.clear(),
        }
    }
    out
}

/// Contiguous runs of present points.
fn segments(points: &[Option<(f64, f64)>], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![];
    let mut cur = vec![];
    for p in points {
        match p {
            Some((x, y)) if !log_y || *y > 0.0 => cur.push((*x, *y)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Chart for Figure {
    fn size(&self) -> (u32, u32) {
        (WIDTH, HEADER_H + 300 * self.panels.len().max(1) as u32 + 20)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        if self
            .panels
            .iter()
            .all(|p| p.lines.iter().all(|l| !l.has_data()))
        {
            return Err(format!("{}: no data in any panel", self.title));
        }
        root.fill(&WHITE).map_err(err)?;
        let (head, body) = root.split_vertically(HEADER_H);
        head.draw_text(&self.title, &font(24.0), (24, 14))
            .map_err(err)?;
        head.draw_text(&self.subtitle, &font(15.0).color(&GREY), (24, 48))
            .map_err(err)?;
        let body = body.margin(0, 20, 0, 0);
        let areas = body.split_evenly((self.panels.len(), 1));
        let x = self.x_axis()?;
        for (i, (area, panel)) in areas.iter().zip(&self.panels).enumerate() {
            self.draw_panel(area, panel, i, x)?;
        }
        Ok(())
    }
}

impl Figure {
    /// The x range drawn: `x_range`, one wide when it is empty; an error when not finite or
    /// too wide to draw.
    fn x_axis(&self) -> Result<(f64, f64), String> {
        let (x0, x1) = if self.x_range.1 > self.x_range.0 {
            self.x_range
        } else {
            (self.x_range.0, self.x_range.0 + 1.0)
        };
        if !(x0.is_finite() && x1.is_finite() && x1 - x0 < MAX_VALUE) {
            return Err(format!(
                "{}: x axis out of range ({x0} to {x1})",
                self.x_label
            ));
        }
        Ok((x0, x1))
    }

    /// Panel `i` in `area`: its data over `x`, its legend to the right. The x axis is
    /// titled under the last panel only, the markers labelled in the first only.
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        panel: &Panel,
        i: usize,
        (x0, x1): (f64, f64),
    ) -> Result<(), String> {
        let last = i + 1 == self.panels.len();
        let (plot, legend) = area.split_horizontally(WIDTH - LEGEND_W);
        let panel = &wide_or_linear(panel);
        let (lo, hi) = y_range(panel)?;
        let mut b = ChartBuilder::on(&plot);
        b.margin_top(10)
            .margin_left(12)
            .margin_right(16)
            .x_label_area_size(if last { 52 } else { 26 })
            .y_label_area_size(92);
        // Marker x positions, drawn through the panel; labels in the first panel.
        let shown: Vec<Marker> = self
            .markers
            .iter()
            .filter(|m| m.x >= x0 && m.x <= x1)
            .cloned()
            .collect();
        let data = PanelData {
            panel,
            x_label: if last { self.x_label.as_str() } else { "" },
            x: (x0, x1),
            y: (lo, hi),
            markers: &shown,
            label_markers: i == 0,
        };
        if panel.log_y {
            data.draw(
                &mut b
                    .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
                    .map_err(err)?,
            )?;
        } else {
            data.draw(&mut b.build_cartesian_2d(x0..x1, lo..hi).map_err(err)?)?;
        }
        draw_legend(&legend, panel, if i == 0 { &shown } else { &[] })
    }
}

/// One panel's data area: what [`PanelData::draw`] draws on a linear or a log y axis.
struct PanelData<'a> {
    panel: &'a Panel,
    /// The x axis title, empty above the last panel.
    x_label: &'a str,
    x: (f64, f64),
    y: (f64, f64),
    /// The markers within `x`.
    markers: &'a [Marker],
    /// Whether the markers are labelled here (the first panel).
    label_markers: bool,
}

/// A panel's chart, its y axis linear or logarithmic.
type PanelChart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

impl PanelData<'_> {
    /// The grid and axes, the reference and marker lines, the bands, the lines, and the
    /// marker labels.
    fn draw<DB, Y>(&self, chart: &mut PanelChart<'_, DB, Y>) -> Result<(), String>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let (x0, x1) = self.x;
        let (lo, hi) = self.y;
        let panel = self.panel;
        let x_fmt = axis_format(x0, x1, false);
        let y_fmt = axis_format(lo, hi, panel.log_y);
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(panel.y_label.as_str())
            .axis_desc_style(font(15.0))
            .label_style(font(13.0))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_labels(12)
            .y_labels(6)
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(err)?;
        for r in &panel.references {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, r.y), (x1, r.y)],
                    8,
                    5,
                    r.colour.stroke_width(2),
                ))
                .map_err(err)?;
        }
        for m in self.markers {
            chart
                .draw_series(DashedLineSeries::new(
                    [(m.x, lo), (m.x, hi)],
                    4,
                    4,
                    m.colour.stroke_width(1),
                ))
                .map_err(err)?;
        }
        self.draw_lines(chart)?;
        if self.label_markers {
            self.draw_marker_labels(chart)?;
        }
        Ok(())
    }

    /// Every line's band first, then the lines over them: dashed or solid, with dots where
    /// asked and at a point standing alone.
    fn draw_lines<DB, Y>(&self, chart: &mut PanelChart<'_, DB, Y>) -> Result<(), String>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let panel = self.panel;
        for l in &panel.lines {
            for seg in band_segments(&l.band, panel.log_y) {
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        seg,
                        l.colour.mix(0.18).filled(),
                    )))
                    .map_err(err)?;
            }
        }
        for l in &panel.lines {
            let style = l.colour.stroke_width(l.width);
            for seg in segments(&l.points, panel.log_y) {
                if l.dashed {
                    chart
                        .draw_series(DashedLineSeries::new(seg.clone(), 7, 4, style))
                        .map_err(err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(seg.clone(), style))
                        .map_err(err)?;
                }
                if l.dots || seg.len() == 1 {
                    chart
                        .draw_series(seg.iter().map(|&p| Circle::new(p, 4, l.colour.filled())))
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }

    /// Marker labels in the head-room above the data, a row lower where one would run into
    /// the previous.
    fn draw_marker_labels<DB, Y>(&self, chart: &PanelChart<'_, DB, Y>) -> Result<(), String>
    where
        DB: DrawingBackend,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let base = chart.plotting_area().get_base_pixel();
        let right = chart.plotting_area().get_pixel_range().0.end;
        let mut rows: Vec<i32> = vec![];
        for m in self.markers {
            let (px, py) = chart.backend_coord(&(m.x, self.y.1));
            let w = text_width(&m.label, 13.0);
            let x = if px + 6 + w < right {
                px + 6
            } else {
                px - 6 - w
            };
            let row = rows.iter().position(|end| x > *end + 8).unwrap_or_else(|| {
                rows.push(i32::MIN);
                rows.len() - 1
            });
            rows[row] = x + w;
            chart
                .plotting_area()
                .strip_coord_spec()
                .draw_text(
                    &m.label,
                    &font(13.0).color(&m.colour),
                    (x - base.0, py + 4 + 16 * row as i32 - base.1),
                )
                .map_err(err)?;
        }
        Ok(())
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    markers: &[Marker],
) -> Result<(), String> {
    let mut y = 14;
    let entry = |y: i32, colour: RGBColor, dashed: bool, text: &str| -> Result<(), String> {
        if dashed {
            for k in 0..3 {
                area.draw(&PathElement::new(
                    [(6 + k * 10, y + 8), (12 + k * 10, y + 8)],
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
            }
        } else {
            area.draw(&PathElement::new(
                [(6, y + 8), (32, y + 8)],
                colour.stroke_width(3),
            ))
            .map_err(err)?;
        }
        let max = 36;
        let text: String = if text.chars().count() > max {
            text.chars().take(max - 1).chain(['…']).collect()
        } else {
            text.to_string()
        };
        area.draw_text(&text, &font(13.0), (40, y)).map_err(err)
    };
    for l in panel.lines.iter().filter(|l| l.has_data()) {
        entry(y, l.colour, l.dashed, &l.name)?;
        y += 21;
    }
    for r in &panel.references {
        entry(y, r.colour, true, &r.label)?;
        y += 21;
    }
    for m in markers {
        area.draw(&PathElement::new(
            [(19, y + 1), (19, y + 15)],
            m.colour.stroke_width(2),
        ))
        .map_err(err)?;
        area.draw_text(&m.label, &font(13.0), (40, y))
            .map_err(err)?;
        y += 21;
    }
    Ok(())
}

/// A knob's value as the report holds it (TOML), without string quotes.
fn knob<'a>(h: &'a input::HostView, name: &str) -> Option<&'a str> {
    h.knobs.get(name).map(|v| v.trim_matches('"'))
}

/// "ports 49152–65535, TIME_WAIT 60 s, tcp_tw_reuse 2": the client host's knobs that decide
/// port exhaustion, under its own kernel's names.
fn knob_summary(r: &ReportView) -> String {
    let connect = r.pools.iter().filter(|p| p.kind.starts_with("connect"));
    let Some(pool) = connect
        .min_by_key(|p| p.ports)
        .or_else(|| r.pools.iter().min_by_key(|p| p.ports))
    else {
        return String::new();
    };
    let Some(h) = r.hosts.iter().find(|h| h.name == pool.host) else {
        return String::new();
    };
    let mut parts = vec![format!("{} ({})", h.name, h.profile)];
    let range = knob(h, "net.ipv4.ip_local_port_range")
        .map(|v| v.replace(' ', "–"))
        .or_else(|| {
            Some(format!(
                "{}–{}",
                knob(h, "net.inet.ip.portrange.first")?,
                knob(h, "net.inet.ip.portrange.last")?
            ))
        })
        .or_else(|| {
            let start: u32 = knob(h, "dynamicport.tcp.start")?.parse().ok()?;
            let num: u32 = knob(h, "dynamicport.tcp.num")?.parse().ok()?;
            Some(format!(
                "{start}–{}",
                start.checked_add(num)?.checked_sub(1)?
            ))
        });
    let n = crate::report::group(u64::from(pool.ports));
    match (pool.kind.as_str(), range) {
        // The application's own range, not the kernel's.
        ("explicit", _) => parts.push(format!("{n} ports bound explicitly per source IP")),
        ("bind", Some(r)) => parts.push(format!("ports {r} ({n} per source IP, bind)")),
        (_, Some(r)) if pool.destination.is_some() => {
            parts.push(format!("ports {r} ({n} per destination)"))
        }
        (_, Some(r)) => parts.push(format!("ports {r} ({n})")),
        (_, None) => parts.push(format!("{n} ports")),
    }
    parts.push(format!("TIME_WAIT {} s", fmt_num(pool.time_wait_s)));
    if let Some(v) = knob(h, "net.ipv4.tcp_tw_reuse") {
        parts.push(format!("tcp_tw_reuse {v}"));
    }
    parts.push(format!("seed {}", r.seed));
    parts.push(format!("bins {} s", fmt_num(r.bin_s)));
    parts.join(" · ")
}

/// `ports / TIME_WAIT` summed over the run's pools (a fleet's entry once per instance): the
/// connections per second they carry when the client closes first (the seed's formula).
pub fn sustainable_limit(r: &ReportView) -> Option<f64> {
    let s: f64 = r
        .pools
        .iter()
        .map(|p| p.formula_limit_per_s * f64::from(p.instances.unwrap_or(1)))
        .sum();
    (s > 0.0 && s.is_finite()).then_some(s)
}

fn markers(r: &ReportView) -> Vec<Marker> {
    let mut m = vec![];
    if let Some(t) = r.summary.first_failure_s {
        m.push(Marker {
            x: t,
            label: format!("first failure {} s", fmt_time(t)),
            colour: VERMILLION,
        });
    }
    if let Some(t) = r.summary.time_wait.first_expiry_s {
        m.push(Marker {
            x: t,
            label: format!("first TIME_WAIT expiry {} s", fmt_time(t)),
            colour: GREY,
        });
    }
    m
}

/// Where a bin's values go on the time axis: rates at the middle of the part of the bin the
/// run covered, gauges at its end; `width`, that part's length, divides a rate (a run that
/// ends mid-bin has a short last bin).
#[derive(Clone, Copy)]
struct Span {
    mid: f64,
    end: f64,
    width: f64,
}

fn span(t_s: f64, bin: f64, duration: f64) -> Span {
    let end = (t_s + bin).min(duration);
    let (end, width) = if end > t_s {
        (end, end - t_s)
    } else {
        (t_s + bin, bin)
    };
    Span {
        mid: t_s + width / 2.0,
        end,
        width,
    }
}

/// A count map's total, as a float (no overflow on any input).
fn total(m: &std::collections::BTreeMap<String, u64>) -> f64 {
    m.values().map(|v| *v as f64).sum()
}

fn add(a: u32, b: u32) -> f64 {
    f64::from(a) + f64::from(b)
}

fn saturating_sum(v: impl Iterator<Item = u64>) -> u64 {
    v.fold(0, u64::saturating_add)
}

/// A value read from a bin of a run.
type BinValue = fn(&input::BinView) -> f64;

/// A bin of a series, by its start.
trait Timed {
    fn t_s(&self) -> f64;
}

impl Timed for input::BinView {
    fn t_s(&self) -> f64 {
        self.t_s
    }
}

impl Timed for crate::live::MeasuredBin {
    fn t_s(&self) -> f64 {
        self.t_s
    }
}

/// What a value of a bin is: a gauge read at the bin's end, or a count over the bin, drawn
/// as a rate at its middle.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Rate,
    /// A value of the bin as a whole (a percentile), at its middle.
    Middle,
}

/// `f` of each bin of a run of `duration` seconds in bins of `bin`, placed as `kind` says.
fn along<B: Timed>(
    bins: &[B],
    (bin, duration): (f64, f64),
    kind: Kind,
    f: impl Fn(&B) -> f64,
) -> Points {
    bins.iter()
        .map(|b| {
            let w = span(b.t_s(), bin, duration);
            Some(match kind {
                Kind::Gauge => (w.end, f(b)),
                Kind::Rate => (w.mid, f(b) / w.width),
                Kind::Middle => (w.mid, f(b)),
            })
        })
        .collect()
}

/// The p5–p95 band of series `name` of a replicated run, placed as `kind` says; empty for a
/// run of one seed.
fn band(r: &ReportView, name: &str, kind: Kind) -> Vec<Option<(f64, f64, f64)>> {
    let Some(b) = r.replicates.as_ref().and_then(|x| x.series.get(name)) else {
        return vec![];
    };
    r.series
        .iter()
        .enumerate()
        .map(|(i, bin)| {
            let w = span(bin.t_s, r.bin_s, r.duration_s);
            let (lo, hi) = (b.p5.get(i).copied()??, b.p95.get(i).copied()??);
            Some(match kind {
                Kind::Gauge => (w.end, lo, hi),
                Kind::Rate => (w.mid, lo / w.width, hi / w.width),
                Kind::Middle => (w.mid, lo, hi),
            })
        })
        .collect()
}

/// The `ports / TIME_WAIT` reference line of a run, if it has pools.
fn limit_reference(r: &ReportView) -> Vec<Reference> {
    sustainable_limit(r)
        .map(|l| Reference {
            y: l,
            label: format!("ports / TIME_WAIT = {} / s", fmt_num(l)),
            colour: INK,
        })
        .into_iter()
        .collect()
}

impl Panel {
    /// A linear panel without reference lines.
    fn new(y_label: &str, lines: Vec<Line>) -> Panel {
        Panel {
            y_label: y_label.into(),
            log_y: false,
            lines,
            references: vec![],
        }
    }
}

/// The three panels of a run over time: sockets by state, connections per second with
/// `references`, connect latency.
fn run_panels(
    sockets: Vec<Line>,
    rates: Vec<Line>,
    references: Vec<Reference>,
    latency: Vec<Line>,
) -> Vec<Panel> {
    vec![
        Panel::new("sockets", sockets),
        Panel {
            references,
            ..Panel::new("connections / s", rates)
        },
        Panel {
            log_y: true,
            ..Panel::new("connect latency (ms, log scale)", latency)
        },
    ]
}

/// Failure colours by error name, stable across charts.
fn errno_colour(k: usize) -> RGBColor {
    [VERMILLION, PURPLE, OCHRE, SKY][k % 4]
}

/// The scenario chart: sockets by state, connections per second against the sustainable
/// limit, and connect latency, on one time axis, with the first failure and the first
/// TIME_WAIT expiry marked.
pub fn scenario_chart(r: &ReportView) -> Figure {
    let s = &r.series;
    let run = (r.bin_s, r.duration_s);
    let mut sockets = vec![];
    let gauges: [(&str, &str, RGBColor, BinValue); 3] = [
        ("ESTABLISHED", "established_sockets", BLUE_, |b| {
            add(b.established_sockets_client, b.established_sockets_server)
        }),
        ("TIME-WAIT, client", "time_wait_client", VERMILLION, |b| {
            f64::from(b.time_wait_client)
        }),
        ("TIME-WAIT, server", "time_wait_server", ORANGE, |b| {
            f64::from(b.time_wait_server)
        }),
    ];
    for (name, series, colour, f) in gauges {
        // A state no socket was ever in stays out of the chart.
        if s.iter().any(|b| f(b) > 0.0) {
            sockets.push(
                Line::new(name, colour, along(s, run, Kind::Gauge, f)).banded(band(
                    r,
                    series,
                    Kind::Gauge,
                )),
            );
        }
    }
    if s.iter().any(|b| b.free_ports_min.is_some()) {
        let tight = r
            .pools
            .iter()
            .filter(|p| p.kind.starts_with("connect"))
            .map(|p| p.ports)
            .min()
            .unwrap_or(0);
        // Bins without the count (no connect pool yet) break the line.
        let free = s
            .iter()
            .map(|b| {
                let end = span(b.t_s, r.bin_s, r.duration_s).end;
                b.free_ports_min.map(|f| (end, f64::from(f)))
            })
            .collect();
        sockets.push(
            Line::new(
                format!(
                    "free ports (pool of {})",
                    crate::report::group(u64::from(tight))
                ),
                GREEN_,
                free,
            )
            .dashed()
            .banded(band(r, "free_ports_min", Kind::Gauge)),
        );
    }
    let mut rates = vec![
        Line::new(
            "attempted / s",
            GREY,
            along(s, run, Kind::Rate, |b| b.attempts as f64),
        )
        .dashed(),
        Line::new(
            "established / s",
            BLUE_,
            along(s, run, Kind::Rate, |b| b.established as f64),
        )
        .banded(band(r, "established", Kind::Rate)),
    ];
    let errnos: std::collections::BTreeSet<&str> = s
        .iter()
        .flat_map(|b| {
            b.failed
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, _)| k.as_str())
        })
        .collect();
    for (k, e) in errnos.iter().enumerate() {
        rates.push(Line::new(
            format!("failed / s, {e}"),
            errno_colour(k),
            along(s, run, Kind::Rate, |b| {
                *b.failed.get(*e).unwrap_or(&0) as f64
            }),
        ));
    }
    let latency = |q: fn(&input::PercentilesView) -> f64| -> Points {
        s.iter()
            .map(|b| {
                let mid = span(b.t_s, r.bin_s, r.duration_s).mid;
                b.connect_latency_ms.as_ref().map(|l| (mid, q(l)))
            })
            .collect()
    };
    let latency = vec![
        Line::new("p50", BLUE_, latency(|l| l.p50)).banded(band(
            r,
            "connect_latency_p50_ms",
            Kind::Middle,
        )),
        Line::new("p99", VERMILLION, latency(|l| l.p99))
            .dashed()
            .banded(band(r, "connect_latency_p99_ms", Kind::Middle)),
    ];
    let mut subtitle = knob_summary(r);
    for n in &r.nat {
        subtitle.push_str(&format!(" · NAT {}: {}", n.name, nat_summary(n)));
    }
    if let Some(x) = &r.replicates {
        subtitle.push_str(&format!(
            " · lines: seed {}, shaded: p5–p95 over {} seeds ({})",
            r.seed, x.n, x.seeds
        ));
    }
    let mut references = limit_reference(r);
    references.extend(nat_rate_references(r));
    let mut panels = run_panels(sockets, rates, references, latency);
    // Under the sockets panel, whose free-ports line is the client's pool.
    panels.splice(1..1, nat_panels(r));
    Figure {
        title: r.scenario.name.clone(),
        subtitle,
        x_label: "time (s)".into(),
        x_range: (0.0, r.duration_s),
        panels,
        markers: markers(r),
    }
}

/// A NAT's rule in brief: its range, addresses, flags and kernel.
fn nat_summary(n: &input::NatView) -> String {
    let k = |name: &str| n.knobs.get(name).map_or("?", String::as_str);
    if !n.knobs.contains_key("kernel") {
        // A cloud gateway: its profile and its ports per VM or per destination.
        return match n.ports_per_vm {
            Some(v) => format!("{}, {v} ports per VM × {} VM(s)", n.profile, n.behind.len()),
            None => format!(
                "{}, {} per address per destination × {} address(es)",
                n.profile,
                n.ports,
                n.ips.len()
            ),
        };
    }
    let mut s = format!(
        "ports {} × {} address(es), kernel {}",
        k("port_range").replace(' ', "–"),
        n.ips.len(),
        k("kernel")
    );
    if !k("flags").is_empty() {
        s.push_str(&format!(", {}", k("flags")));
    }
    s
}

/// Per NAT, its `addresses × ports / conntrack TIME_WAIT` toward one destination: the new
/// flows per second it sustains before Linux 6.5 (later kernels may evict TIME_WAIT entries
/// and carry more).
fn nat_rate_references(r: &ReportView) -> Vec<Reference> {
    r.nat
        .iter()
        .filter_map(|n| {
            let key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
            let tw: f64 = n.knobs.get(key)?.parse().ok().filter(|t| *t > 0.0)?;
            let y = n.ips.len() as f64 * f64::from(n.ports) / tw;
            Some(Reference {
                y,
                label: format!("NAT {} / TIME_WAIT = {} / s", n.name, fmt_num(y)),
                colour: PURPLE,
            })
        })
        .collect()
}

/// Conntrack states as `conntrack -L` names them, each with its colour.
const CT_STATES: [(&str, RGBColor); 8] = [
    ("SYN_SENT", GREY),
    ("SYN_RECV", GREEN_),
    ("ESTABLISHED", BLUE_),
    ("FIN_WAIT", ORANGE),
    ("CLOSE_WAIT", SKY),
    ("LAST_ACK", OCHRE),
    ("TIME_WAIT", VERMILLION),
    ("CLOSE", PURPLE),
];

/// A run's NAT panels, none without a NAT: each NAT's (address, port) pairs in use against
/// what its range allows (addresses × ports), and its conntrack entries by state, with
/// `nf_conntrack_max` when the entries come within half of it.
fn nat_panels(r: &ReportView) -> Vec<Panel> {
    if r.nat.is_empty() {
        return vec![];
    }
    let run = (r.bin_s, r.duration_s);
    let prefix = |n: &input::NatView| {
        if r.nat.len() > 1 {
            format!("{}: ", n.name)
        } else {
            String::new()
        }
    };
    let mut ports = Panel::new("NAT ports in use", vec![]);
    let mut entries = Panel::new("conntrack entries", vec![]);
    for (i, n) in r.nat.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let used = along(&r.series, run, Kind::Gauge, |b| {
            b.nat_ports_in_use.get(i).map_or(0.0, |v| *v as f64)
        });
        ports
            .lines
            .push(Line::new(format!("{} in use", n.name), colour, used));
        // A cloud gateway that gives each VM its own ports holds at most those.
        let (range, label) = match n.ports_per_vm {
            Some(v) => (
                f64::from(v) * n.behind.len() as f64,
                format!("{}{} VM(s) × {v} ports", prefix(n), n.behind.len()),
            ),
            None => (
                n.ips.len() as f64 * f64::from(n.ports),
                format!("{}{} addr × {} ports", prefix(n), n.ips.len(), n.ports),
            ),
        };
        ports.references.push(Reference {
            y: range,
            label,
            colour,
        });
        entries.lines.extend(state_lines(r, i, &prefix(n)));
        entries.references.extend(table_limit(r, i, n, colour));
    }
    vec![ports, entries]
}

/// NAT `i`'s entries in each state some entry was in, one line per state.
fn state_lines(r: &ReportView, i: usize, prefix: &str) -> Vec<Line> {
    let run = (r.bin_s, r.duration_s);
    let count = |b: &input::BinView, state: &str| {
        let m = b.conntrack_states.get(i);
        m.and_then(|m| m.get(state)).map_or(0.0, |v| *v as f64)
    };
    CT_STATES
        .iter()
        .filter(|(state, _)| r.series.iter().any(|b| count(b, state) > 0.0))
        .map(|&(state, colour)| {
            let points = along(&r.series, run, Kind::Gauge, |b| count(b, state));
            Line::new(format!("{prefix}{state}"), colour, points)
        })
        .collect()
}

/// NAT `n`'s `nf_conntrack_max`, as a reference, when its entries reach half of it.
fn table_limit(
    r: &ReportView,
    i: usize,
    n: &input::NatView,
    colour: RGBColor,
) -> Option<Reference> {
    let max: f64 = n
        .knobs
        .get("net.netfilter.nf_conntrack_max")?
        .parse()
        .ok()?;
    let peak = r
        .series
        .iter()
        .map(|b| {
            b.conntrack_states
                .get(i)
                .map_or(0, |m| saturating_sum(m.values().copied()))
        })
        .max()?;
    (2.0 * peak as f64 >= max).then(|| Reference {
        y: max,
        label: format!("{} nf_conntrack_max {}", n.name, fmt_num(max)),
        colour,
    })
}

/// Several scenarios on one time axis: requests completed per second (what the workload was
/// for), failed connects per second, and TIME-WAIT sockets. `labels` name the lines.
pub fn comparison_chart(title: &str, runs: &[(String, ReportView)]) -> Figure {
    let mut done = vec![];
    let mut failed = vec![];
    let mut tw = vec![];
    let mut x1: f64 = 0.0;
    let n = runs.len();
    for (k, (label, r)) in runs.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        x1 = x1.max(r.duration_s);
        let run = (r.bin_s, r.duration_s);
        // Earlier lines wider, so scenarios that coincide show as nested bands; each legend
        // entry carries the run's total or peak.
        let width = 2 + (n - 1 - k).min(5) as u32;
        let line = |total: u64, points| Line {
            width,
            ..Line::new(
                format!("{label} · {}", crate::report::group(total)),
                colour,
                points,
            )
        };
        let requests = saturating_sum(r.series.iter().map(|b| b.requests_completed));
        let fails = saturating_sum(r.series.iter().flat_map(|b| b.failed.values().copied()));
        let tw_peak = u64::from(r.summary.time_wait.peak);
        let s = &r.series;
        done.push(line(
            requests,
            along(s, run, Kind::Rate, |b| b.requests_completed as f64),
        ));
        failed.push(line(fails, along(s, run, Kind::Rate, |b| total(&b.failed))));
        tw.push(line(
            tw_peak,
            along(s, run, Kind::Gauge, |b| {
                add(b.time_wait_client, b.time_wait_server)
            }),
        ));
    }
    let names: Vec<&str> = runs.iter().map(|(l, _)| l.as_str()).collect();
    Figure {
        title: title.into(),
        subtitle: format!(
            "{} scenarios; each legend gives the run's total (requests, failures) or its TIME-WAIT peak",
            names.len()
        ),
        x_label: "time (s)".into(),
        x_range: (0.0, x1),
        panels: vec![
            Panel::new("requests completed / s", done),
            Panel::new("failed connects / s", failed),
            Panel::new("TIME-WAIT sockets", tw),
        ],
        markers: vec![],
    }
}

/// A measured line: a wide band in a light tint of `colour`, so the prediction's dashes in
/// full colour stay visible on top of it where the two agree.
fn measured(name: &str, colour: RGBColor, points: Vec<Option<(f64, f64)>>) -> Line {
    let tint = |c: u8| ((u16::from(c) + 2 * 255) / 3) as u8;
    let mut l = Line::new(
        name,
        RGBColor(tint(colour.0), tint(colour.1), tint(colour.2)),
        points,
    );
    l.width = 6;
    l
}

/// Predicted (dashed) against measured (a light band) for a `portsim live` report.
pub fn live_chart(l: &LiveView) -> Figure {
    let p = &l.predicted;
    let bin = p.bin_s;
    let ps = &p.series;
    let ms = &l.measured.series;
    let d = p.duration_s;
    let sp = |t: f64| span(t, bin, d);
    let run = (bin, d);
    let pl = |f: &dyn Fn(&input::BinView) -> f64, kind| along(ps, run, kind, f);
    let ml = |f: &dyn Fn(&crate::live::MeasuredBin) -> f64, kind| along(ms, run, kind, f);
    let sockets = vec![
        measured(
            "TIME-WAIT, measured",
            VERMILLION,
            ml(
                &|b| add(b.time_wait_client, b.time_wait_server),
                Kind::Gauge,
            ),
        ),
        Line::new(
            "TIME-WAIT, predicted",
            VERMILLION,
            pl(
                &|b| add(b.time_wait_client, b.time_wait_server),
                Kind::Gauge,
            ),
        )
        .dashed(),
        measured(
            "ESTABLISHED, measured",
            BLUE_,
            ml(
                &|b| add(b.established_sockets_client, b.established_sockets_server),
                Kind::Gauge,
            ),
        ),
        Line::new(
            "ESTABLISHED, predicted",
            BLUE_,
            pl(
                &|b| add(b.established_sockets_client, b.established_sockets_server),
                Kind::Gauge,
            ),
        )
        .dashed(),
    ];
    let rates = vec![
        measured(
            "established / s, measured",
            BLUE_,
            ml(&|b| b.established as f64, Kind::Rate),
        ),
        Line::new(
            "established / s, predicted",
            BLUE_,
            pl(&|b| b.established as f64, Kind::Rate),
        )
        .dashed(),
        measured(
            "failed / s, measured",
            VERMILLION,
            ml(&|b| total(&b.failed), Kind::Rate),
        ),
        Line::new(
            "failed / s, predicted",
            VERMILLION,
            pl(&|b| total(&b.failed), Kind::Rate),
        )
        .dashed(),
    ];
    let latency = vec![
        measured(
            "p50, measured",
            BLUE_,
            ms.iter()
                .map(|b| b.connect_latency_p50_ms.map(|v| (sp(b.t_s).mid, v)))
                .collect(),
        ),
        Line::new(
            "p50, predicted",
            BLUE_,
            ps.iter()
                .map(|b| {
                    b.connect_latency_ms
                        .as_ref()
                        .map(|v| (sp(b.t_s).mid, v.p50))
                })
                .collect(),
        )
        .dashed(),
        measured(
            "max, measured",
            VERMILLION,
            ms.iter()
                .map(|b| b.connect_latency_max_ms.map(|v| (sp(b.t_s).mid, v)))
                .collect(),
        ),
    ];
    let x1 = d.max(ms.last().map_or(0.0, |b| sp(b.t_s).end));
    Figure {
        title: format!("{}: predicted vs measured ({})", l.scenario, l.verdict),
        subtitle: format!("{} · {}", l.kernel, knob_summary(p)),
        x_label: "time (s)".into(),
        x_range: (0.0, x1),
        panels: run_panels(sockets, rates, limit_reference(p), latency),
        markers: vec![],
    }
}

/// A metric over one swept parameter, one line per series (a kernel, a setting).
pub fn line_chart(
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    series: Vec<(String, Points)>,
    references: Vec<Reference>,
) -> Figure {
    let xs = series
        .iter()
        .flat_map(|(_, p)| p.iter().flatten().map(|&(x, _)| x));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let pad = if hi > lo { (hi - lo) * 0.03 } else { 1.0 };
    let lines = series
        .into_iter()
        .enumerate()
        .map(|(k, (name, pts))| Line {
            dots: true,
            ..Line::new(name, PALETTE[k % PALETTE.len()], pts)
        })
        .collect();
    Figure {
        title: title.into(),
        subtitle: subtitle.into(),
        x_label: x_label.into(),
        x_range: if lo.is_finite() {
            ((lo - pad).max(0.0), hi + pad)
        } else {
            (0.0, 1.0)
        },
        panels: vec![Panel {
            references,
            ..Panel::new(y_label, lines)
        }],
        markers: vec![],
    }
}

/// A metric over two swept parameters: one cell per pair, its value written in it.
#[derive(Clone, Debug)]
pub struct HeatMap {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    /// What the colour means, with its unit.
    pub value_label: String,
    pub xs: Vec<String>,
    /// Bottom to top.
    pub ys: Vec<String>,
    /// `cells[y][x]`; `None` is drawn grey and written "–".
    pub cells: Vec<Vec<Option<f64>>>,
}

/// Viridis at five stops, interpolated: perceptually even, legible in grey.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

impl Chart for HeatMap {
    fn size(&self) -> (u32, u32) {
        (WIDTH, 760)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (nx, ny) = (self.xs.len(), self.ys.len());
        if nx == 0 || ny == 0 || self.cells.len() != ny || self.cells.iter().any(|r| r.len() != nx)
        {
            return Err(format!("{}: the cells do not match the axes", self.title));
        }
        root.fill(&WHITE).map_err(err)?;
        root.draw_text(&self.title, &font(24.0), (24, 14))
            .map_err(err)?;
        root.draw_text(&self.subtitle, &font(15.0).color(&GREY), (24, 48))
            .map_err(err)?;
        let vals: Vec<f64> = self
            .cells
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        // Grid geometry in pixels.
        let (left, top, right, bottom) = (150i32, 96i32, WIDTH as i32 - 200, 760 - 90);
        let cw = (right - left) as f64 / nx as f64;
        let ch = (bottom - top) as f64 / ny as f64;
        for (yi, row) in self.cells.iter().enumerate() {
            for (xi, v) in row.iter().enumerate() {
                let x0 = left + (xi as f64 * cw).round() as i32;
                let x1 = left + ((xi + 1) as f64 * cw).round() as i32;
                let y1 = bottom - (yi as f64 * ch).round() as i32;
                let y0 = bottom - ((yi + 1) as f64 * ch).round() as i32;
                let (fill, text, ink) = match v.filter(|v| v.is_finite()) {
                    Some(v) => {
                        let t = (v - lo) / span;
                        (viridis(t), fmt_num(v), if t > 0.6 { INK } else { WHITE })
                    }
                    None => (RGBColor(200, 200, 200), "–".to_string(), INK),
                };
                root.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled()))
                    .map_err(err)?;
                root.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.stroke_width(1)))
                    .map_err(err)?;
                let style = font(14.0).color(&ink).pos(text_anchor::Pos::new(
                    text_anchor::HPos::Center,
                    text_anchor::VPos::Center,
                ));
                root.draw_text(&text, &style, ((x0 + x1) / 2, (y0 + y1) / 2))
                    .map_err(err)?;
            }
        }
        let centre = |h| text_anchor::Pos::new(h, text_anchor::VPos::Center);
        for (xi, label) in self.xs.iter().enumerate() {
            let x = left + ((xi as f64 + 0.5) * cw).round() as i32;
            root.draw_text(
                label,
                &font(13.0).pos(centre(text_anchor::HPos::Center)),
                (x, bottom + 16),
            )
            .map_err(err)?;
        }
        for (yi, label) in self.ys.iter().enumerate() {
            let y = bottom - ((yi as f64 + 0.5) * ch).round() as i32;
            root.draw_text(
                label,
                &font(13.0).pos(centre(text_anchor::HPos::Right)),
                (left - 10, y),
            )
            .map_err(err)?;
        }
        root.draw_text(
            &self.x_label,
            &font(15.0).pos(centre(text_anchor::HPos::Center)),
            ((left + right) / 2, bottom + 50),
        )
        .map_err(err)?;
        root.draw_text(
            &self.y_label,
            &font(15.0)
                .pos(centre(text_anchor::HPos::Center))
                .transform(FontTransform::Rotate270),
            (40, (top + bottom) / 2),
        )
        .map_err(err)?;
        // Colour bar.
        let (bx0, bx1) = (right + 40, right + 64);
        let steps = 64;
        for k in 0..steps {
            let y1 = bottom - ((bottom - top) * k / steps);
            let y0 = bottom - ((bottom - top) * (k + 1) / steps);
            root.draw(&Rectangle::new(
                [(bx0, y0), (bx1, y1)],
                viridis((f64::from(k) + 0.5) / f64::from(steps)).filled(),
            ))
            .map_err(err)?;
        }
        for (v, y) in [(hi, top), (lo, bottom)] {
            let t = if vals.is_empty() {
                "–".into()
            } else {
                fmt_num(v)
            };
            root.draw_text(
                &t,
                &font(13.0).pos(centre(text_anchor::HPos::Left)),
                (bx1 + 8, y),
            )
            .map_err(err)?;
        }
        root.draw_text(
            &self.value_label,
            &font(14.0)
                .pos(centre(text_anchor::HPos::Center))
                .transform(FontTransform::Rotate270),
            (bx1 + 70, (top + bottom) / 2),
        )
        .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(16384.0), "16,384");
        assert_eq!(fmt_num(273.0666), "273");
        assert_eq!(fmt_num(32.768), "33");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(0.0012), "0.001");
    }

    #[test]
    fn viridis_runs_dark_to_light() {
        let lum = |c: RGBColor| 0.3 * f64::from(c.0) + 0.6 * f64::from(c.1) + 0.1 * f64::from(c.2);
        let ls: Vec<f64> = (0..=10)
            .map(|k| lum(viridis(f64::from(k) / 10.0)))
            .collect();
        assert!(ls.windows(2).all(|w| w[1] > w[0]), "{ls:?}");
    }

    #[test]
    fn a_gap_breaks_a_line_and_a_log_axis_drops_zeros() {
        let p = [Some((0.0, 1.0)), Some((1.0, 0.0)), None, Some((3.0, 2.0))];
        assert_eq!(segments(&p, false).len(), 2);
        assert_eq!(segments(&p, true), vec![vec![(0.0, 1.0)], vec![(3.0, 2.0)]]);
    }
}
