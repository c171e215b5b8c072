//! Counters and the hop latency histogram, exposed at `GET /metrics` in Prometheus text format.
//!
//! A handful of counters does not justify a metrics framework: counters are a map behind a mutex
//! (an increment holds it for nanoseconds), the latency histogram is a fixed array of atomics.
//! They are per node, as Prometheus expects; it sums over nodes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the hop latency buckets, in seconds.
const HOP_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// How many distinct screens a per-screen metric tells apart before counting `other`.
pub const MAX_SCREEN_SERIES: usize = 256;

/// Renders `key="value"` pairs, with `"`, `\\` and newlines in values replaced by `_`.
fn render_labels(rendered: &mut String, labels: &[(&'static str, &str)]) {
    rendered.clear();
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            rendered.push(',');
        }
        rendered.push_str(key);
        rendered.push_str("=\"");
        // Values are screen ids and fixed names: almost never anything to replace.
        let mut rest = *value;
        while let Some(at) = rest.find(['"', '\\', '\n']) {
            rendered.push_str(&rest[..at]);
            rendered.push('_');
            rest = &rest[at + 1..];
        }
        rendered.push_str(rest);
        rendered.push('"');
    }
}

/// This node's metrics.
pub struct Metrics {
    /// By name, then by rendered labels (so an increment looks its counter up without
    /// allocating: see [`Metrics::inc`]).
    counters: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    hop_buckets: [AtomicU64; HOP_BUCKETS.len()],
    hop_count: AtomicU64,
    hop_sum_us: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            counters: Mutex::new(BTreeMap::new()),
            hop_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            hop_count: AtomicU64::new(0),
            hop_sum_us: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one to `name{labels}`. Labels are `key="value"` pairs, already formatted. Names and
    /// label values are `&'static str`, so no label can come from a path, a session id or
    /// input: the number of series stays bounded.
    ///
    /// Every hop calls this, so the labels are rendered into a reused per-thread buffer and the
    /// counter is looked up by it: no allocation once the counter exists.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &'static str)]) {
        self.bump(name, labels, usize::MAX);
    }

    /// Adds one to `name{screen="…"}` for a menu screen id. Screen ids come from `menus/`, not
    /// from input, but a catalog can be large and is reloaded: past [`MAX_SCREEN_SERIES`]
    /// distinct screens a metric counts the rest as `screen="other"`, so it stays bounded.
    pub fn inc_screen(&self, name: &'static str, screen: &str) {
        self.bump(name, &[("screen", screen)], MAX_SCREEN_SERIES);
    }

    fn bump(&self, name: &'static str, labels: &[(&'static str, &str)], max_series: usize) {
        thread_local! {
            static RENDERED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        RENDERED.with_borrow_mut(|rendered| {
            render_labels(rendered, labels);
            let mut counters = self
                .counters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let by_labels = counters.entry(name).or_default();
            if let Some(count) = by_labels.get_mut(rendered.as_str()) {
                *count += 1;
                return;
            }
            if by_labels.len() >= max_series {
                let other: Vec<(&'static str, &str)> =
                    labels.iter().map(|(key, _)| (*key, "other")).collect();
                render_labels(rendered, &other);
            }
            *by_labels.entry(rendered.clone()).or_default() += 1;
        });
    }

    /// Records how long a USSD hop took.
    pub fn observe_hop(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in HOP_BUCKETS.iter().zip(&self.hop_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.hop_count.fetch_add(1, Ordering::Relaxed);
        self.hop_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The value of a counter (for tests).
    pub fn counter(&self, name: &str, labels: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .and_then(|by_labels| by_labels.get(labels))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (name, by_labels) in &counters {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, value) in by_labels {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        let _ = writeln!(out, "# TYPE duka_ussd_hop_seconds histogram");
        for (bound, bucket) in HOP_BUCKETS.iter().zip(&self.hop_buckets) {
            let _ = writeln!(
                out,
                "duka_ussd_hop_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.hop_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "duka_ussd_hop_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "duka_ussd_hop_seconds_sum {}",
            self.hop_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "duka_ussd_hop_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_screen_counters_stop_telling_screens_apart_past_the_cap() {
        let metrics = Metrics::new();
        for i in 0..MAX_SCREEN_SERIES + 10 {
            metrics.inc_screen("duka_funnel_reached_total", &format!("s{i}"));
        }
        metrics.inc_screen("duka_funnel_reached_total", "s0");
        assert_eq!(
            metrics.counter("duka_funnel_reached_total", "screen=\"s0\""),
            2
        );
        assert_eq!(
            metrics.counter("duka_funnel_reached_total", "screen=\"other\""),
            10
        );
        let series = metrics
            .render()
            .matches("duka_funnel_reached_total{")
            .count();
        assert_eq!(series, MAX_SCREEN_SERIES + 1);
    }

    #[test]
    fn a_label_value_cannot_break_the_exposition() {
        let mut rendered = String::new();
        render_labels(&mut rendered, &[("screen", "a\"b\\c\nd"), ("lang", "sw")]);
        assert_eq!(rendered, "screen=\"a_b_c_d\",lang=\"sw\"");
        render_labels(&mut rendered, &[("screen", "main")]);
        assert_eq!(rendered, "screen=\"main\"");
    }

    #[test]
    fn counters_and_the_histogram_render_as_prometheus_text() {
        let metrics = Metrics::new();
        metrics.inc("duka_ussd_hops_total", &[("outcome", "ok")]);
        metrics.inc("duka_ussd_hops_total", &[("outcome", "ok")]);
        metrics.inc("duka_ussd_hops_total", &[("outcome", "apology")]);
        metrics.inc("duka_sms_nudges_total", &[]);
        metrics.inc("duka_x_total", &[("note", "a \"quoted\"\nline")]);
        metrics.observe_hop(Duration::from_micros(800));
        metrics.observe_hop(Duration::from_millis(30));
        let text = metrics.render();
        assert!(
            text.contains("duka_ussd_hops_total{outcome=\"ok\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("duka_ussd_hops_total{outcome=\"apology\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("duka_ussd_hop_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("duka_ussd_hop_seconds_bucket{le=\"0.05\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("duka_ussd_hop_seconds_count 2\n"), "{text}");
        assert!(text.contains("duka_sms_nudges_total 1\n"), "{text}");
        assert!(
            text.contains("duka_x_total{note=\"a _quoted__line\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE duka_ussd_hops_total counter").count(),
            1
        );
        assert_eq!(metrics.counter("duka_ussd_hops_total", "outcome=\"ok\""), 2);
    }
}
