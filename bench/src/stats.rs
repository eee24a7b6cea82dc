//! Counters and latency histograms of a run, their text and JSON reports, and A/B ratios.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Highest latency the histograms track exactly (µs); slower samples are clamped to it. One
/// minute is far beyond the request timeout.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant figures of the histograms: 0.1 % resolution.
const SIG_FIGS: u8 = 3;

/// Longest stretch of a round the throughput timeline covers (one-second buckets, one `u64`
/// each per task): a day. Completions later than that are left out of the timeline only.
const MAX_TIMELINE_S: usize = 86_400;
/// A round's last, partial second is a timeline point only if it lasted at least this long:
/// a few milliseconds of stragglers would make a meaningless rate.
const MIN_PARTIAL_S: f64 = 0.5;
/// Points per halving of the remaining tail in the percentile curve (HdrHistogram's
/// "ticks per half distance"): enough for a smooth line, few enough for a small SVG.
const CURVE_TICKS: u32 = 5;

/// The percentiles every report shows, with their JSON names.
const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)];

fn histogram() -> Histogram<u64> {
    // The bounds are constants inside hdrhistogram's valid range.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIG_FIGS).unwrap_or_else(|_| unreachable!())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// What one task (or a whole run, after merging) measured.
pub(crate) struct Stats {
    /// Latency of whole scenario iterations.
    pub total: Histogram<u64>,
    /// Latency of each KMIP operation (or connect) inside the iterations.
    pub per_op: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: BTreeMap<String, u64>,
    /// Wall-clock time of the measured phase (summed over rounds).
    pub elapsed: Duration,
    /// Extra figures of a scenario (idle: RSS per connection).
    pub extra: Map<String, Value>,
    /// Completions of the running round by whole second since its start (see [`Stats::tick`]).
    per_second: Vec<u64>,
    /// Operations per second, one point per second of measurement, rounds one after another
    /// (filled by [`Stats::close_round`]).
    pub timeline: Vec<f64>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            total: histogram(),
            per_op: BTreeMap::new(),
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
            extra: Map::new(),
            per_second: Vec::new(),
            timeline: Vec::new(),
        }
    }
}

impl Stats {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.total.saturating_record(micros(latency));
    }

    pub(crate) fn record_op(&mut self, op: &'static str, latency: Duration) {
        self.per_op
            .entry(op)
            .or_insert_with(histogram)
            .saturating_record(micros(latency));
    }

    /// Counts one completion `at` this long after the round started, for the timeline.
    pub(crate) fn tick(&mut self, at: Duration) {
        let Ok(second) = usize::try_from(at.as_secs()) else {
            return;
        };
        if second >= MAX_TIMELINE_S {
            return;
        }
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }

    /// Ends a round of `self.elapsed`: its per-second counts become timeline points.
    pub(crate) fn close_round(&mut self) {
        let secs = self.elapsed.as_secs_f64();
        let mut points: Vec<f64> = std::mem::take(&mut self.per_second)
            .into_iter()
            .enumerate()
            .map_while(|(i, n)| {
                let width = (secs - i as f64).min(1.0);
                // A round shorter than a second is still one point.
                (width >= MIN_PARTIAL_S || (i == 0 && width > 0.0)).then(|| n as f64 / width)
            })
            .collect();
        // Seconds at the end in which nothing completed (a stalled server) are points too.
        let whole = (secs.floor() as usize).min(MAX_TIMELINE_S);
        if points.len() < whole {
            points.resize(whole, 0.0);
        }
        self.timeline.extend(points);
    }

    pub(crate) fn error(&mut self, label: String) {
        *self.errors.entry(label).or_insert(0) += 1;
    }

    pub(crate) fn merge(&mut self, other: &Stats) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.total.add(&other.total);
        for (op, h) in &other.per_op {
            let _ = self.per_op.entry(op).or_insert_with(histogram).add(h);
        }
        for (label, n) in &other.errors {
            *self.errors.entry(label.clone()).or_insert(0) += n;
        }
        for (k, v) in &other.extra {
            self.extra.insert(k.clone(), v.clone());
        }
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
        // Closed rounds follow one another.
        self.timeline.extend_from_slice(&other.timeline);
    }

    pub(crate) fn ok(&self) -> u64 {
        self.total.len()
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub(crate) fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok() as f64 / secs
        } else {
            0.0
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let per_op: Map<String, Value> = self
            .per_op
            .iter()
            .map(|(op, h)| {
                (
                    (*op).to_owned(),
                    json!({ "count": h.len(), "latency_us": latency_json(h) }),
                )
            })
            .collect();
        json!({
            "ok": self.ok(),
            "errors": self.error_count(),
            "errors_by_reason": self.errors,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "throughput_per_s": self.throughput(),
            "latency_us": latency_json(&self.total),
            "per_operation": per_op,
            "extra": self.extra,
            "timeline_per_s": self.timeline,
            "percentile_curves": self
                .curves()
                .into_iter()
                .map(|(label, points)| json!({ "label": label, "points": points }))
                .collect::<Vec<_>>(),
        })
    }

    /// The percentile curve of whole iterations, then one per operation when an iteration has
    /// several (see [`percentile_curve`]).
    pub(crate) fn curves(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut v = vec![("iteration".to_owned(), percentile_curve(&self.total))];
        if self.per_op.len() > 1 {
            v.extend(
                self.per_op
                    .iter()
                    .map(|(op, h)| ((*op).to_owned(), percentile_curve(h))),
            );
        }
        v
    }

    /// Prints the report; a closed stdout (`| head`) is not an error worth dying for.
    pub(crate) fn print(&self, title: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "== {title}");
        let _ = writeln!(
            out,
            "  ok {}  errors {}  elapsed {:.2} s  throughput {:.1}/s",
            self.ok(),
            self.error_count(),
            self.elapsed.as_secs_f64(),
            self.throughput()
        );
        let _ = writeln!(out, "  latency (µs)   {}", latency_line(&self.total));
        for (op, h) in &self.per_op {
            let _ = writeln!(out, "    {op:<12} n={:<8} {}", h.len(), latency_line(h));
        }
        for (label, n) in &self.errors {
            let _ = writeln!(out, "  error {n:>8} × {label}");
        }
        for (k, v) in &self.extra {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
}

/// HdrHistogram's percentile distribution of `h` as (1 / (1 − quantile), latency in µs): on a
/// log-scale x axis 10 is p90, 100 is p99 and so on. The maximum sits at x = samples.
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let last = h.len() as f64;
    h.iter_quantiles(CURVE_TICKS)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q < 1.0 { 1.0 / (1.0 - q) } else { last };
            (
                x.clamp(1.0, last.max(1.0)),
                h.highest_equivalent(v.value_iterated_to()) as f64,
            )
        })
        .collect()
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = Map::new();
    for (name, q) in PERCENTILES {
        m.insert(name.into(), h.value_at_percentile(q).into());
    }
    m.insert("max".into(), h.max().into());
    m.insert("mean".into(), json!(h.mean()));
    Value::Object(m)
}

fn latency_line(h: &Histogram<u64>) -> String {
    let mut s: Vec<String> = PERCENTILES
        .iter()
        .map(|(name, q)| format!("{name} {}", h.value_at_percentile(*q)))
        .collect();
    s.push(format!("max {}", h.max()));
    s.join("  ")
}

/// The headline figures of a report, for the A/B ratio table.
fn headline(s: &Stats) -> Vec<(String, f64)> {
    let mut v = vec![("throughput_per_s".to_owned(), s.throughput())];
    for (name, q) in PERCENTILES {
        v.push((
            format!("latency_{name}_us"),
            s.total.value_at_percentile(q) as f64,
        ));
    }
    v.push(("latency_max_us".into(), s.total.max() as f64));
    v
}

/// A/B ratio of every headline figure (A divided by B), printed and returned as JSON.
pub(crate) fn compare(a: &Stats, b: &Stats) -> Value {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "== ratio A/B");
    let mut m = Map::new();
    for ((name, va), (_, vb)) in headline(a).into_iter().zip(headline(b)) {
        let ratio = if vb > 0.0 { va / vb } else { f64::NAN };
        let _ = writeln!(
            out,
            "  {name:<20} A {va:>12.1}  B {vb:>12.1}  A/B {ratio:>8.3}"
        );
        m.insert(
            name,
            json!(if ratio.is_finite() { Some(ratio) } else { None }),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(stats: &mut Stats, at_ms: &[(u64, usize)]) {
        for &(ms, n) in at_ms {
            for _ in 0..n {
                stats.tick(Duration::from_millis(ms));
            }
        }
    }

    #[test]
    fn timeline_has_one_point_per_second_and_rounds_follow_each_other() {
        let mut round = Stats::default();
        ticks(&mut round, &[(100, 3), (1_500, 2), (2_400, 7)]);
        round.elapsed = Duration::from_millis(2_500);
        round.close_round();
        // The last half second counts as a rate over half a second.
        assert_eq!(round.timeline, [3.0, 2.0, 14.0]);

        // Nothing completed after the first second: the silent seconds are zeros, and the last
        // 0.2 s is too short to be a point.
        let mut stalled = Stats::default();
        ticks(&mut stalled, &[(10, 4)]);
        stalled.elapsed = Duration::from_millis(3_200);
        stalled.close_round();
        assert_eq!(stalled.timeline, [4.0, 0.0, 0.0]);

        // A round shorter than a second is one point.
        let mut short = Stats::default();
        ticks(&mut short, &[(50, 5)]);
        short.elapsed = Duration::from_millis(250);
        short.close_round();
        assert_eq!(short.timeline, [20.0]);

        let mut total = Stats::default();
        for r in [&round, &stalled, &short] {
            total.merge(r);
        }
        assert_eq!(total.timeline, [3.0, 2.0, 14.0, 4.0, 0.0, 0.0, 20.0]);
    }

    #[test]
    fn tasks_of_one_round_add_up_per_second() {
        let (mut a, mut b) = (Stats::default(), Stats::default());
        ticks(&mut a, &[(100, 1), (1_100, 2)]);
        ticks(&mut b, &[(200, 5)]);
        a.merge(&b);
        a.elapsed = Duration::from_secs(2);
        a.close_round();
        assert_eq!(a.timeline, [6.0, 2.0]);
    }

    #[test]
    fn timeline_ignores_completions_past_its_bound() {
        let mut s = Stats::default();
        s.tick(Duration::from_secs(MAX_TIMELINE_S as u64));
        s.tick(Duration::from_secs(u64::MAX));
        assert!(s.per_second.is_empty());
    }

    #[test]
    fn percentile_curve_spans_the_samples() {
        let mut s = Stats::default();
        for us in 1..=1_000 {
            s.record(Duration::from_micros(us));
        }
        let curve = s.curves();
        assert_eq!(curve.len(), 1);
        let (label, points) = &curve[0];
        assert_eq!(label, "iteration");
        assert_eq!(points.first().map(|p| p.0), Some(1.0));
        // The maximum sits at x = samples, p99 (x = 100) near 990 µs.
        assert_eq!(points.last().map(|p| p.0), Some(1_000.0));
        assert!(points
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let p99 = points.iter().find(|p| p.0 >= 100.0).map(|p| p.1);
        assert!(p99.is_some_and(|v| (985.0..=995.0).contains(&v)), "{p99:?}");
    }
}
