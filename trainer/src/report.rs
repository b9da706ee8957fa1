//! Run outputs: `metrics.csv` rows and the `learning-curve.png` plot.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::algo::UpdateMetrics;
use crate::checkpoint::write_atomic;

/// DejaVu Sans (Bitstream Vera license, `assets/DejaVuSans-LICENSE.txt`),
/// compiled in so plots render the same on every machine without system fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Renders a `size` PNG on a white canvas through `draw` and puts it at
/// `path` atomically (a temporary file, then a rename): every plot here.
fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let tmp = path.with_extension("tmp.png");
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()
            .with_context(|| format!("rendering {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Only fails if the bytes are not a font, which a test would catch.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Writes all rows as CSV (namespaced CleanRL-style keys) atomically.
pub fn write_metrics(path: &Path, rows: &[UpdateMetrics]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).context("serializing a metrics row")?;
    }
    let bytes = w.into_inner().context("flushing metrics")?;
    write_atomic(path, &bytes)
}

/// Reads rows back (for `--resume`).
pub fn read_metrics(path: &Path) -> Result<Vec<UpdateMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    r.deserialize()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// One curve on a plot.
pub struct Series<'a> {
    /// Legend label.
    pub label: String,
    /// `(x, y)` points.
    pub points: &'a [(f64, f64)],
}

/// A line plot of several series as PNG, written atomically.
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<()> {
    render_png(path, (900, 540), |root| {
        let pts = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let data = s.points.iter().copied().filter(|p| p.1.is_finite());
            chart
                .draw_series(LineSeries::new(data, color.stroke_width(2)))?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        if series.len() > 1 || !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// The learning curve of one run: mean return of the last 100 episodes
/// against environment steps.
pub fn learning_curve(path: &Path, algo: &str, env: &str, rows: &[UpdateMetrics]) -> Result<()> {
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.global_step as f64, r.recent_return))
        .collect();
    line_plot(
        path,
        &format!("tinyppo {algo} on {env}"),
        "environment steps",
        "episode return (mean of last 100)",
        &[Series {
            label: "training return".into(),
            points: &pts,
        }],
    )
}

/// Several runs of one configuration (e.g. one algorithm over seeds).
pub struct Group {
    /// Legend label.
    pub label: String,
    /// Each run's `(x, y)` points, x increasing.
    pub runs: Vec<Vec<(f64, f64)>>,
}

/// One panel of [`band_plot`].
pub struct Panel {
    /// Panel caption.
    pub title: String,
    /// Groups drawn as median line and min–max band.
    pub groups: Vec<Group>,
}

/// Median and spread of a group on a grid of `points` x values from 0 to
/// the shortest run's last x: `(x, min, median, max)`, each run read as a
/// step function (its last value at or before x); grid points before a
/// run's first finite value are skipped.
pub fn band(runs: &[Vec<(f64, f64)>], points: usize) -> Vec<(f64, f64, f64, f64)> {
    let end = runs
        .iter()
        .map(|r| r.last().map_or(0.0, |p| p.0))
        .fold(f64::INFINITY, f64::min);
    if runs.is_empty() || !end.is_finite() || end <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(points);
    for k in 1..=points {
        let x = end * k as f64 / points as f64;
        let mut ys: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                r.iter()
                    .take_while(|p| p.0 <= x)
                    .filter(|p| p.1.is_finite())
                    .last()
                    .map(|p| p.1)
            })
            .collect();
        if ys.len() < runs.len() {
            continue;
        }
        ys.sort_by(f64::total_cmp);
        let n = ys.len();
        let med = if n % 2 == 1 {
            ys[n / 2]
        } else {
            0.5 * (ys[n / 2 - 1] + ys[n / 2])
        };
        out.push((x, ys[0], med, ys[n - 1]));
    }
    out
}

/// Distinguishable colours (matplotlib's tab10 order), cycled; lines of
/// [`band_plot`] and bar groups of [`log_bar_chart`].
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// Panels side by side, each with one median line and shaded min–max band
/// per group, as PNG (written atomically).
pub fn band_plot(path: &Path, x_label: &str, y_label: &str, panels: &[Panel]) -> Result<()> {
    let width = 620 * panels.len().max(1) as u32;
    render_png(path, (width, 480), |root| {
        let areas = root.split_evenly((1, panels.len().max(1)));
        // One colour per label across panels.
        let mut labels: Vec<&str> = Vec::new();
        for g in panels.iter().flat_map(|p| &p.groups) {
            if !labels.contains(&g.label.as_str()) {
                labels.push(&g.label);
            }
        }
        for (panel, area) in panels.iter().zip(&areas) {
            let bands: Vec<_> = panel.groups.iter().map(|g| band(&g.runs, 100)).collect();
            let all = bands.iter().flatten();
            let (mut x1, mut y0, mut y1) = (1.0f64, f64::MAX, f64::MIN);
            for &(x, lo, _, hi) in all {
                x1 = x1.max(x);
                y0 = y0.min(lo);
                y1 = y1.max(hi);
            }
            if y0 > y1 {
                (y0, y1) = (0.0, 1.0);
            }
            let pad = ((y1 - y0) * 0.05).max(1e-6);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))?;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
                .draw()?;
            for (g, b) in panel.groups.iter().zip(&bands) {
                let i = labels.iter().position(|l| *l == g.label).unwrap_or(0);
                let color = COLORS[i % COLORS.len()].to_rgba();
                let poly: Vec<(f64, f64)> = b
                    .iter()
                    .map(|p| (p.0, p.3))
                    .chain(b.iter().rev().map(|p| (p.0, p.1)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.18).filled(),
                )))?;
                let label = format!("{} ({} runs)", g.label, g.runs.len());
                chart
                    .draw_series(LineSeries::new(
                        b.iter().map(|p| (p.0, p.2)),
                        color.stroke_width(2),
                    ))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// One bar of [`log_bar_chart`].
pub struct Bar {
    /// Label on the category axis.
    pub label: String,
    /// Length (drawn on a log scale; values ≤ 0 or non-finite are skipped).
    pub value: f64,
    /// Bars of one group share a colour.
    pub group: usize,
}

/// A horizontal bar chart with a logarithmic value axis, bars top to bottom
/// in the given order, each annotated with its value; PNG, written to a
/// temporary file and renamed (as [`line_plot`]).
pub fn log_bar_chart(path: &Path, title: &str, value_label: &str, bars: &[Bar]) -> Result<()> {
    register_font();
    let n = bars.len().max(1);
    let height = (110 + 42 * n as u32).max(300);
    // Room for the longest label (measured with the label font).
    let label_font = ("sans-serif", 15).into_font();
    let mut label_w = 0u32;
    for b in bars {
        let (w, _) = label_font
            .box_size(&b.label)
            .map_err(|e| anyhow::anyhow!("measuring label {:?}: {e:?}", b.label))?;
        label_w = label_w.max(w);
    }
    let label_w = label_w + 24;
    render_png(path, (760 + label_w, height), |root| {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for b in bars.iter().filter(|b| b.value.is_finite() && b.value > 0.0) {
            lo = lo.min(b.value);
            hi = hi.max(b.value);
        }
        if lo > hi {
            (lo, hi) = (1.0, 10.0);
        }
        // Whole decades, with room right of the longest bar for its label.
        let x0 = 10f64.powf(lo.log10().floor() - 0.5);
        let x1 = 10f64.powf(hi.log10().ceil() + 0.5);
        let label_of = |i: usize| -> String {
            // Category i counts from the bottom; bars are listed top down.
            n.checked_sub(1 + i)
                .and_then(|k| bars.get(k))
                .map_or(String::new(), |b| b.label.clone())
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(label_w)
            .build_cartesian_2d((x0..x1).log_scale(), (0..n - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(value_label)
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => label_of(*i),
                SegmentValue::Last => String::new(),
            })
            .label_style(label_font.clone())
            .draw()?;
        for (k, b) in bars.iter().enumerate() {
            if !(b.value.is_finite() && b.value > 0.0) {
                continue;
            }
            let i = n - 1 - k;
            let top = if i + 1 < n {
                SegmentValue::Exact(i + 1)
            } else {
                SegmentValue::Last
            };
            let color = COLORS[b.group % COLORS.len()];
            let mut bar = Rectangle::new(
                [(x0, SegmentValue::Exact(i)), (b.value, top)],
                color.filled(),
            );
            bar.set_margin(6, 6, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
            chart.draw_series(std::iter::once(Text::new(
                format!(" {:.3e}", b.value),
                (b.value, SegmentValue::CenterOf(i)),
                ("sans-serif", 14)
                    .into_font()
                    .into_text_style(root)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        Ok(())
    })
}

/// One line of an [`xy_panels`] panel: a middle value with a shaded band
/// `(x, low, middle, high)` per point.
pub struct XyLine {
    /// Legend label.
    pub label: String,
    /// `(x, low, middle, high)`, in x order.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// One panel of [`xy_panels`].
pub struct XyPanel {
    /// Caption.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Lines, each with its band.
    pub lines: Vec<XyLine>,
}

/// Panels side by side, each with lines over shaded bands (a robustness
/// sweep per swept quantity; a benchmark's median over seeds with its
/// min–max band), as PNG written atomically. One colour per label across
/// panels.
pub fn xy_panels(path: &Path, panels: &[XyPanel]) -> Result<()> {
    let width = 560 * panels.len().max(1) as u32;
    render_png(path, (width, 460), |root| {
        let areas = root.split_evenly((1, panels.len().max(1)));
        let mut labels: Vec<&str> = Vec::new();
        for l in panels.iter().flat_map(|p| &p.lines) {
            if !labels.contains(&l.label.as_str()) {
                labels.push(&l.label);
            }
        }
        for (panel, area) in panels.iter().zip(&areas) {
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, lo, mid, hi) in panel.lines.iter().flat_map(|l| &l.points) {
                for y in [lo, mid, hi].into_iter().filter(|y| y.is_finite()) {
                    y0 = y0.min(y);
                    y1 = y1.max(y);
                }
                x0 = x0.min(x);
                x1 = x1.max(x);
            }
            if x0 > x1 {
                (x0, x1) = (0.0, 1.0);
            }
            if y0 > y1 {
                (y0, y1) = (0.0, 1.0);
            }
            let xpad = ((x1 - x0) * 0.02).max(1e-9);
            let ypad = ((y1 - y0) * 0.05).max(1e-6);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d((x0 - xpad)..(x1 + xpad), (y0 - ypad)..(y1 + ypad))?;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .draw()?;
            for line in &panel.lines {
                let i = labels.iter().position(|l| *l == line.label).unwrap_or(0);
                let color = COLORS[i % COLORS.len()].to_rgba();
                let pts: Vec<_> = line
                    .points
                    .iter()
                    .copied()
                    .filter(|p| p.1.is_finite() && p.2.is_finite() && p.3.is_finite())
                    .collect();
                let poly: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p.0, p.3))
                    .chain(pts.iter().rev().map(|p| (p.0, p.1)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(0.15).filled(),
                )))?;
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.0, p.2)),
                        color.stroke_width(2),
                    ))?
                    .label(line.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart.draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.0, p.2), 3, color.filled())),
                )?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// A heat map of `values[i][j]` (row `i` of `y_ticks`, column `j` of
/// `x_ticks`), each cell coloured from red (lowest) to green (highest)
/// and labelled with its value; PNG written atomically.
pub fn heat_map(
    path: &Path,
    title: &str,
    (x_label, x_ticks): (&str, &[String]),
    (y_label, y_ticks): (&str, &[String]),
    values: &[Vec<f64>],
) -> Result<()> {
    use plotters::coord::ranged1d::SegmentValue;
    let (nx, ny) = (x_ticks.len().max(1), y_ticks.len().max(1));
    render_png(path, (160 + 90 * nx as u32, 140 + 60 * ny as u32), |root| {
        let finite = values.iter().flatten().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())?;
        let tick = |ticks: &[String], v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => ticks.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|v| tick(x_ticks, v))
            .y_label_formatter(&|v| tick(y_ticks, v))
            .draw()?;
        for (i, row) in values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 1.0 };
                let color = if v.is_finite() {
                    HSLColor(t.clamp(0.0, 1.0) / 3.0, 0.65, 0.55).to_rgba()
                } else {
                    RGBColor(200, 200, 200).to_rgba()
                };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [
                        (SegmentValue::Exact(j), SegmentValue::Exact(i)),
                        (SegmentValue::Exact(j + 1), SegmentValue::Exact(i + 1)),
                    ],
                    color.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{v:.1}"),
                    (SegmentValue::CenterOf(j), SegmentValue::CenterOf(i)),
                    ("sans-serif", 14)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))?;
            }
        }
        Ok(())
    })
}

/// One candidate of a [`calibration_plot`]: the off-policy estimates of a
/// policy's return from logs, beside its true return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationPoint {
    /// The true return (simulated).
    pub true_return: f64,
    /// The estimate.
    pub estimate: f64,
    /// Its lower confidence bound.
    pub lower: f64,
    /// The true gain over the behaviour policy.
    pub true_gain: f64,
    /// The estimated gain.
    pub gain: f64,
    /// Its (paired) lower confidence bound.
    pub gain_lower: f64,
    /// The gate accepted the candidate.
    pub accepted: bool,
}

/// A panel of [`calibration_plot`]: title, axis labels, and the point's
/// `(x, y, lower bound of y)`.
type Coords = (
    &'static str,
    &'static str,
    &'static str,
    Box<dyn Fn(&CalibrationPoint) -> (f64, f64, f64)>,
);

/// Two scatter panels, estimated against true: the return (estimate •,
/// lower bound ▲ below it on a segment) and the gain over the behaviour
/// (estimate, paired lower bound), with the diagonal `y = x` (a lower
/// bound under it covers the truth) and, for the gain, the axes at 0 (a
/// candidate right of the vertical is truly better; the gate accepts above
/// the horizontal). Green: accepted; red: rejected. PNG written atomically.
pub fn calibration_plot(path: &Path, points: &[CalibrationPoint]) -> Result<()> {
    render_png(path, (1200, 560), |root| {
        let areas = root.split_evenly((1, 2));
        let panels: [Coords; 2] = [
            (
                "return: WDR estimate and its lower bound",
                "true return (100 fresh episodes, stochastic)",
                "estimated from the logs",
                Box::new(|p| (p.true_return, p.estimate, p.lower)),
            ),
            (
                "gain over the behaviour: estimate and paired lower bound",
                "true gain (candidate − behaviour, same episodes)",
                "estimated gain",
                Box::new(|p| (p.true_gain, p.gain, p.gain_lower)),
            ),
        ];
        for ((title, xl, yl, f), area) in panels.iter().zip(&areas) {
            let pts: Vec<(f64, f64, f64, bool)> = points
                .iter()
                .map(|p| {
                    let (x, y, lo) = f(p);
                    (x, y, lo, p.accepted)
                })
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            for &(x, y, l, _) in &pts {
                for v in [x, y, l].into_iter().filter(|v| v.is_finite()) {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
            if lo > hi {
                (lo, hi) = (0.0, 1.0);
            }
            let pad = ((hi - lo) * 0.04).max(1e-6);
            let (lo, hi) = (lo - pad, hi + pad);
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .build_cartesian_2d(lo..hi, lo..hi)?;
            chart.configure_mesh().x_desc(*xl).y_desc(*yl).draw()?;
            chart
                .draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.stroke_width(1)))?
                .label("y = x")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
            if lo < 0.0 && hi > 0.0 {
                let grey = RGBColor(150, 150, 150);
                chart.draw_series(LineSeries::new([(lo, 0.0), (hi, 0.0)], grey))?;
                chart.draw_series(LineSeries::new([(0.0, lo), (0.0, hi)], grey))?;
            }
            let green = RGBColor(30, 150, 60);
            let red = RGBColor(200, 40, 40);
            for (accepted, label, color) in [(true, "accepted", green), (false, "rejected", red)] {
                let sel: Vec<_> = pts.iter().filter(|p| p.3 == accepted).collect();
                chart.draw_series(sel.iter().filter(|p| p.2.is_finite()).map(|p| {
                    PathElement::new([(p.0, p.2), (p.0, p.1)], color.mix(0.35).stroke_width(1))
                }))?;
                chart.draw_series(
                    sel.iter()
                        .filter(|p| p.2.is_finite())
                        .map(|p| TriangleMarker::new((p.0, p.2), 4, color.mix(0.7).filled())),
                )?;
                chart
                    .draw_series(
                        sel.iter()
                            .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
                    )?
                    .label(format!("{label} (• estimate, ▲ lower bound)"))
                    .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}
