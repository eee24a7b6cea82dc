//! SVG figures of a run (plotters' SVG backend only: no font or image system libraries): the
//! latency percentile curve and the throughput over time.

use crate::stats::Stats;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;
use thiserror::Error;

/// Size of every figure (pixels): wide enough for a legend beside long target addresses.
const SIZE: (u32, u32) = (1000, 600);
/// Throughput series whose medians differ by more than this factor get a log-scale y axis: on a
/// linear one, the gateway against PyKMIP (~100×) would draw PyKMIP's line on zero.
const LOG_THROUGHPUT_RATIO: f64 = 20.0;
/// Top of a linear throughput axis over the highest point: the upper 30 % stays free for the
/// legend (a handful of entries).
const LEGEND_HEADROOM: f64 = 1.4;
/// The x axis of a percentile curve reaches at least p99.9, so short runs compare visually.
const MIN_CURVE_X: f64 = 1_000.0;

/// Colours of A's series, then B's: blues and greens against reds and oranges, so the two
/// targets stay apart even with one line per operation.
const A_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
    RGBColor(148, 103, 189),
    RGBColor(0, 60, 120),
    RGBColor(120, 160, 40),
];
const B_COLOURS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(227, 119, 194),
    RGBColor(140, 86, 75),
    RGBColor(150, 0, 0),
    RGBColor(188, 189, 34),
];

#[derive(Debug, Error)]
#[error("plot {path}: {problem}")]
pub(crate) struct PlotError {
    path: String,
    problem: String,
}

/// Which target of a comparison a series belongs to (its colour family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

/// One line of a figure.
struct Series {
    label: String,
    side: Side,
    points: Vec<(f64, f64)>,
}

/// What the figures show of one measured target.
pub(crate) struct Run {
    pub side: Side,
    pub name: String,
    /// Percentile curves by label (iteration, then operations): see `Stats::curves`.
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
    /// Operations per second, one per second of measurement.
    pub timeline: Vec<f64>,
}

impl Run {
    pub(crate) fn from_stats(side: Side, name: String, stats: &Stats) -> Run {
        Run {
            side,
            name,
            curves: stats.curves(),
            timeline: stats.timeline.clone(),
        }
    }

    /// The same from the `result` object of a `--json` report; what is missing or malformed
    /// is left out (an older report has no curves).
    pub(crate) fn from_json(side: Side, name: String, result: &Value) -> Run {
        let pair = |p: &Value| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?));
        let curves = result["percentile_curves"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let label = c["label"].as_str()?.to_owned();
                let points = c["points"].as_array()?.iter().filter_map(pair).collect();
                Some((label, points))
            })
            .collect();
        let timeline = result["timeline_per_s"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        Run {
            side,
            name,
            curves,
            timeline,
        }
    }
}

/// Writes the figures asked for; `runs` are the measured targets, A first.
pub(crate) fn draw(
    latency_svg: Option<&Path>,
    throughput_svg: Option<&Path>,
    title: &str,
    runs: &[Run],
) -> Result<(), PlotError> {
    if let Some(path) = latency_svg {
        let series: Vec<Series> = runs
            .iter()
            .flat_map(|r| {
                r.curves.iter().map(|(label, points)| Series {
                    label: format!("{}: {label}", r.name),
                    side: r.side,
                    points: points.clone(),
                })
            })
            .collect();
        latency(path, &format!("Latency by percentile: {title}"), &series)?;
    }
    if let Some(path) = throughput_svg {
        let series: Vec<Series> = runs
            .iter()
            .map(|r| Series {
                label: r.name.clone(),
                side: r.side,
                points: timeline_points(&r.timeline),
            })
            .collect();
        throughput(path, &format!("Throughput over time: {title}"), &series)?;
    }
    Ok(())
}

/// The percentile curves (x = 1 / (1 − quantile), y = µs), both axes logarithmic.
fn latency(path: &Path, title: &str, series: &[Series]) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all().map(|p| p.0).fold(MIN_CURVE_X, f64::max);
    let y_max = all().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let y_min = (all().map(|p| p.1).fold(y_max, f64::min) / 1.5).max(1.0);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| fail(&e))?;
    for (s, colour) in coloured(series) {
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend_and_save(&mut chart, &root, SeriesLabelPosition::LowerRight).map_err(|e| fail(&e))
}

/// Operations per second over time, one point per second of measurement.
fn throughput(path: &Path, title: &str, series: &[Series]) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    let x_max = series
        .iter()
        .map(|s| s.points.len())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let values = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let y_max = values().fold(1.0, f64::max);
    let medians: Vec<f64> = series.iter().filter_map(|s| median(&s.points)).collect();
    let spread = medians.iter().copied().fold(0.0, f64::max)
        / medians.iter().copied().fold(f64::INFINITY, f64::min);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    if spread > LOG_THROUGHPUT_RATIO {
        let floor = values().filter(|v| *v > 0.0).fold(y_max, f64::min) / 2.0;
        let lifted: Vec<Series> = series
            .iter()
            .map(|s| Series {
                label: s.label.clone(),
                side: s.side,
                points: s.points.iter().map(|&(x, y)| (x, y.max(floor))).collect(),
            })
            .collect();
        let y_desc = "iterations per second (log scale; a second with none at the bottom)";
        throughput_chart(
            &root,
            title,
            (0.0..x_max, (floor..y_max * 1.15).log_scale()),
            y_desc,
            &lifted,
            // Between the two far-apart groups of lines.
            SeriesLabelPosition::MiddleRight,
        )
    } else {
        let y_desc = "iterations per second";
        // Headroom above the highest point keeps the legend off the lines.
        let y = 0.0..y_max * LEGEND_HEADROOM;
        let legend = SeriesLabelPosition::UpperRight;
        throughput_chart(&root, title, (0.0..x_max, y), y_desc, series, legend)
    }
    .map_err(|e| fail(&e))
}

fn throughput_chart<Y>(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    (x, y): (std::ops::Range<f64>, Y),
    y_desc: &str,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds of measurement (rounds one after another)")
        .y_desc(y_desc)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (s, colour) in coloured(series) {
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend_and_save(&mut chart, root, legend)
}

/// Median of a series' y values (None when it has none or only zeros).
fn median(points: &[(f64, f64)]) -> Option<f64> {
    let mut ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    ys.sort_by(f64::total_cmp);
    ys.get(ys.len() / 2).copied().filter(|m| *m > 0.0)
}

/// A timeline of rates as points at the middle of each second.
fn timeline_points(rates: &[f64]) -> Vec<(f64, f64)> {
    rates
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64 + 0.5, *r))
        .collect()
}

fn coloured(series: &[Series]) -> impl Iterator<Item = (&Series, RGBColor)> {
    let (mut a, mut b) = (0, 0);
    series.iter().map(move |s| {
        let colour = match s.side {
            Side::A => {
                a += 1;
                A_COLOURS[(a - 1) % A_COLOURS.len()]
            }
            Side::B => {
                b += 1;
                B_COLOURS[(b - 1) % B_COLOURS.len()]
            }
        };
        (s, colour)
    })
}

fn legend_and_save<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Tick label of the percentile axis: x = 1 / (1 − q) shown as q in percent (10 → 90%).
fn percentile_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let digits = (x.log10().floor() as usize).saturating_sub(2);
    format!("{pct:.digits$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(side: Side, name: &str, timeline: &[f64]) -> Run {
        Run {
            side,
            name: name.into(),
            curves: vec![("iteration".into(), vec![(1.0, 100.0), (10.0, 300.0)])],
            timeline: timeline.to_vec(),
        }
    }

    #[test]
    fn throughput_axis_is_logarithmic_only_for_far_apart_targets() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("t.svg");
        let fast = run(Side::A, "fast", &[20_000.0, 21_000.0, 22_000.0]);
        let close = run(Side::B, "close", &[15_000.0, 0.0, 16_000.0]);
        let slow = run(Side::B, "slow", &[250.0, 0.0, 260.0]);
        // A target without a single point does not stop the figure.
        draw(None, Some(&svg), "t", &[run(Side::A, "empty", &[]), slow]).unwrap();
        draw(None, Some(&svg), "t", &[fast, close]).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(!text.contains("log scale"));
        assert!(text.contains("fast") && text.contains("close"), "{text}");

        let fast = run(Side::A, "fast", &[20_000.0, 21_000.0, 22_000.0]);
        let slow = run(Side::B, "slow", &[250.0, 0.0, 260.0]);
        draw(None, Some(&svg), "t", &[fast, slow]).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("log scale"));
    }

    #[test]
    fn percentile_axis_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }
}
