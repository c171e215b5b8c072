//! Counting a run and reporting it: per-worker tallies, merged into one [`Summary`] at the end.
//!
//! Each worker keeps its own [`Tally`] (an hdrhistogram of hop latencies in microseconds, and
//! counts), so the hot path takes no lock; the tallies are merged once the workers are done.
//! Only hops that got a complete HTTP reply have a latency; connection failures and timeouts are
//! counted as errors instead, so that a failing server cannot look fast.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::check::{ErrorKind, Failure};
use super::plan::group_thousands;

/// The longest latency the histogram tells apart; longer hops count as this long.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one worker saw.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latency of each answered hop, in microseconds.
    latency: Histogram<u64>,
    /// Hops that got a complete HTTP reply, whatever it said.
    pub hops: u64,
    /// Sessions walked to the end with every reply as expected.
    pub completed: u64,
    /// Sessions given up at their first failed hop.
    pub failed: u64,
    /// Sessions cut off because the run's time was up.
    pub cut_off: u64,
    errors: BTreeMap<ErrorKind, u64>,
    /// The first failure of each kind, for the report.
    first: BTreeMap<ErrorKind, String>,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            hops: 0,
            completed: 0,
            failed: 0,
            cut_off: 0,
            errors: BTreeMap::new(),
            first: BTreeMap::new(),
        }
    }

    /// Counts an answered hop and its latency.
    pub fn hop(&mut self, elapsed: Duration) {
        self.hops += 1;
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// Counts a failed hop (and so a failed session).
    pub fn fail(&mut self, failure: Failure) {
        self.failed += 1;
        *self.errors.entry(failure.kind).or_default() += 1;
        self.first.entry(failure.kind).or_insert(failure.detail);
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.hops += other.hops;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cut_off += other.cut_off;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        for (kind, detail) in other.first {
            self.first.entry(kind).or_insert(detail);
        }
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// How the run was set up.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// The callback URL the hops were posted to.
    pub url: String,
    pub concurrency: usize,
    pub session_limit: u64,
    pub duration_limit_s: f64,
    /// Whether shoppers paid (ending with `END Order …`) or stopped at the checkout screen.
    pub pay: bool,
}

/// Hop latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// Sessions by outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Sessions {
    pub completed: u64,
    pub failed: u64,
    pub cut_off: u64,
}

/// The whole result of a run, printed as text or as one JSON object.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub setup: Setup,
    pub elapsed_s: f64,
    pub sessions: Sessions,
    pub hops: u64,
    pub hops_per_s: f64,
    pub sessions_per_s: f64,
    pub latency_ms: Latency,
    /// Every kind, zeros included, so scripts can read any of them.
    pub errors: BTreeMap<&'static str, u64>,
    pub error_total: u64,
    /// The first failure of each kind that occurred.
    pub first_errors: BTreeMap<&'static str, String>,
    /// The server's resident set size at the end, when its pid was given.
    pub server_rss_kib: Option<u64>,
}

impl Summary {
    pub fn new(
        setup: Setup,
        tally: &Tally,
        elapsed: Duration,
        server_rss_kib: Option<u64>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1_000.0;
        let latency = if tally.latency.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: ms(tally.latency.value_at_quantile(0.50)),
                p90: ms(tally.latency.value_at_quantile(0.90)),
                p99: ms(tally.latency.value_at_quantile(0.99)),
                p99_9: ms(tally.latency.value_at_quantile(0.999)),
                max: ms(tally.latency.max()),
                mean: tally.latency.mean() / 1_000.0,
            }
        };
        Self {
            setup,
            elapsed_s: seconds,
            sessions: Sessions {
                completed: tally.completed,
                failed: tally.failed,
                cut_off: tally.cut_off,
            },
            hops: tally.hops,
            hops_per_s: tally.hops as f64 / seconds,
            sessions_per_s: tally.completed as f64 / seconds,
            latency_ms: latency,
            errors: ErrorKind::ALL
                .iter()
                .map(|kind| (kind.name(), tally.errors.get(kind).copied().unwrap_or(0)))
                .collect(),
            error_total: tally.error_total(),
            first_errors: tally
                .first
                .iter()
                .map(|(kind, detail)| (kind.name(), detail.clone()))
                .collect(),
            server_rss_kib,
        }
    }

    /// True when the run proves something: sessions completed and nothing failed.
    pub fn passed(&self) -> bool {
        self.error_total == 0 && self.sessions.completed > 0
    }

    /// The report for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let count = |n: u64| group_thousands(n);
        let rate = |r: f64| group_thousands(r.round() as u64);
        let _ = writeln!(
            out,
            "duka bench: {} ({} concurrent shoppers, {})",
            self.setup.url,
            self.setup.concurrency,
            if self.setup.pay {
                "paying with M-Pesa"
            } else {
                "stopping at checkout (--no-pay)"
            }
        );
        let _ = writeln!(
            out,
            "  sessions  {} completed, {} failed, {} cut off at the deadline ({:.2} s): {} sessions/s",
            count(self.sessions.completed),
            count(self.sessions.failed),
            count(self.sessions.cut_off),
            self.elapsed_s,
            rate(self.sessions_per_s),
        );
        let _ = writeln!(
            out,
            "  hops      {}: {} hops/s",
            count(self.hops),
            rate(self.hops_per_s)
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (mean {:.2} ms)",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        if self.error_total == 0 {
            let _ = writeln!(out, "  errors    none");
        } else {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(kind, n)| format!("{kind} {}", count(*n)))
                .collect();
            let _ = writeln!(out, "  errors    {}", kinds.join(", "));
            for (kind, detail) in &self.first_errors {
                let _ = writeln!(out, "    first {kind}: {detail}");
            }
        }
        if let Some(rss) = self.server_rss_kib {
            let _ = writeln!(out, "  server    RSS {:.1} MiB", rss as f64 / 1024.0);
        }
        if self.sessions.completed == 0 && self.error_total == 0 {
            let _ = writeln!(
                out,
                "  no session completed: give the run more time (--duration)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            url: "http://127.0.0.1:1/ussd/africastalking".into(),
            concurrency: 2,
            session_limit: 10,
            duration_limit_s: 1.0,
            pay: true,
        }
    }

    #[test]
    fn tallies_merge_counts_latencies_and_first_errors() {
        let mut a = Tally::new();
        a.hop(Duration::from_micros(1_000));
        a.completed += 1;
        a.fail(Failure::new(ErrorKind::WrongTotal, "first"));
        let mut b = Tally::new();
        b.hop(Duration::from_micros(3_000));
        b.fail(Failure::new(ErrorKind::WrongTotal, "second"));
        b.fail(Failure::new(ErrorKind::Timeout, "slow"));
        a.merge(b);
        assert_eq!(a.hops, 2);
        assert_eq!(a.failed, 3);
        assert_eq!(a.error_total(), 3);
        let summary = Summary::new(setup(), &a, Duration::from_secs(2), None);
        assert_eq!(summary.errors["wrong_total"], 2);
        assert_eq!(summary.errors["timeout"], 1);
        assert_eq!(summary.errors["connect"], 0);
        assert_eq!(summary.first_errors["wrong_total"], "first");
        assert!((summary.hops_per_s - 1.0).abs() < 1e-9);
        assert!((summary.latency_ms.max - 3.0).abs() < 0.01);
        assert!(!summary.passed());
    }

    #[test]
    fn a_run_passes_only_with_completed_sessions_and_no_errors() {
        let mut tally = Tally::new();
        assert!(!Summary::new(setup(), &tally, Duration::from_secs(1), None).passed());
        tally.hop(Duration::from_micros(500));
        tally.completed = 1;
        let summary = Summary::new(setup(), &tally, Duration::from_secs(1), Some(2048));
        assert!(summary.passed());
        let text = summary.render_text();
        assert!(text.contains("errors    none"), "{text}");
        assert!(text.contains("RSS 2.0 MiB"), "{text}");
    }

    #[test]
    fn the_json_names_every_error_kind() {
        let summary = Summary::new(setup(), &Tally::new(), Duration::from_secs(1), None);
        let json = serde_json::to_value(&summary).unwrap();
        for kind in ErrorKind::ALL {
            assert_eq!(json["errors"][kind.name()], 0, "{json}");
        }
        assert_eq!(json["url"], "http://127.0.0.1:1/ussd/africastalking");
        assert!(json["latency_ms"]["p99_9"].is_number());
    }
}
