//! The menu funnel: per screen and EAT day, how many sessions reached it and how many left it
//! for another screen; "ended there" is reached − left (a session that moves from A to B counts
//! `left[A]` and `reached[B]`, so no end-of-session notice is needed).
//!
//! Counting must not cost the hop a Redis round trip, so each node counts in memory and a
//! background task adds its counts to the day's hash `P{funnel:<YYYYMMDD>}` with `HINCRBY` every
//! [`FLUSH_EVERY`] and at shutdown (kept [`FUNNEL_TTL_MS`]). Screen ids come from the menus and
//! the engine, never from input, so the counters are bounded. `/metrics` has the same counts per
//! node since start: `duka_funnel_reached_total{screen}`, `duka_funnel_left_total{screen}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};

use super::auth::Operator;
use super::page::frame;
use crate::metrics::Metrics;
use crate::shop::Shop;
use crate::startup::AppState;
use crate::store::{Batch, Commit};

/// How often a node adds its counts to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How long a day's counters are kept.
pub const FUNNEL_TTL_MS: u64 = 40 * 24 * 3_600_000;

/// This node's counts not yet in the store: by EAT day number ([`crate::sms::nudge::eat_day`])
/// and screen, (reached, left). Keyed so that counting a hop allocates and formats nothing once
/// the screen has been seen that day.
#[derive(Default)]
pub struct Funnel {
    pending: Mutex<HashMap<i64, DayCounts>>,
}

/// One day's counts: screen to (reached, left).
type DayCounts = HashMap<String, (i64, i64)>;

/// Adds to `screen`'s counts: one lookup once the screen has been seen that day.
fn add(day: &mut DayCounts, screen: &str, reached: i64, left: i64) {
    if let Some(counts) = day.get_mut(screen) {
        counts.0 += reached;
        counts.1 += left;
    } else {
        day.insert(screen.to_owned(), (reached, left));
    }
}

impl Funnel {
    /// A hop moved a session from `from` (`None`: a new session) to `to`.
    pub fn hop(&self, metrics: &Metrics, now_ms: i64, from: Option<&str>, to: &str) {
        if from == Some(to) {
            return;
        }
        let day = crate::sms::nudge::eat_day(now_ms);
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let today = pending.entry(day).or_default();
            add(today, to, 1, 0);
            if let Some(from) = from {
                add(today, from, 0, 1);
            }
        }
        metrics.inc_screen("duka_funnel_reached_total", to);
        if let Some(from) = from {
            metrics.inc_screen("duka_funnel_left_total", from);
        }
    }

    /// Adds the pending counts to the store, one commit per day; kept for next time on failure.
    pub async fn flush(&self, shop: &Shop) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (day, screens) in taken {
            let counts: Vec<(String, i64, i64)> = screens
                .into_iter()
                .map(|(screen, (reached, left))| (screen, reached, left))
                .collect();
            // Day `d` holds 03:00 EAT of that day at `d` whole days after the epoch.
            let key = shop.keys.funnel(&super::eat_day(day * 86_400_000));
            let mut batch = Batch::new();
            for (screen, reached, left) in &counts {
                if *reached > 0 {
                    batch.hincrby(&key, format!("reached:{screen}"), *reached);
                }
                if *left > 0 {
                    batch.hincrby(&key, format!("left:{screen}"), *left);
                }
            }
            batch.expire(&key, FUNNEL_TTL_MS);
            if !matches!(shop.store.commit(&batch).await, Ok(Commit::Applied)) {
                tracing::warn!("funnel: could not write the counters; trying again later");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let today = pending.entry(day).or_default();
                for (screen, reached, left) in counts {
                    add(today, &screen, reached, left);
                }
            }
        }
    }
}

/// Flushes every [`FLUSH_EVERY`] until `stop`, then once more.
pub async fn run_flusher(
    funnel: std::sync::Arc<Funnel>,
    shop: std::sync::Arc<Shop>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // The first flush is one period away: an immediate one would find nothing to write, or,
    // when this task starts late, write in the middle of the first hops.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FLUSH_EVERY, FLUSH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => funnel.flush(&shop).await,
            _ = stop.changed() => break,
        }
    }
    funnel.flush(&shop).await;
}

/// One screen's numbers.
struct Row {
    screen: String,
    reached: i64,
    ended: i64,
}

fn chart(rows: &[Row]) -> Markup {
    let max = rows.iter().map(|r| r.reached).max().unwrap_or(1).max(1) as f64;
    let height = 26 * rows.len() + 10;
    html! {
        svg id="funnel-chart" xmlns="http://www.w3.org/2000/svg" width="760" height=(height) role="img" {
            @for (i, row) in rows.iter().enumerate() {
                @let y = 5 + 26 * i;
                @let reached_w = (row.reached as f64 / max * 480.0).max(1.0);
                @let ended_w = (row.ended.max(0) as f64 / max * 480.0).max(0.0);
                text x="0" y=(y + 15) font-size="12" { (row.screen) }
                rect x="150" y=(y) width=(format!("{reached_w:.1}")) height="20" fill="#16a34a" {}
                rect x="150" y=(y) width=(format!("{ended_w:.1}")) height="20" fill="#dc2626" {}
                text x=(format!("{:.1}", 156.0 + reached_w)) y=(y + 15) font-size="12" { (row.reached) " reached, " (row.ended) " ended" }
            }
        }
    }
}

/// `GET /console/funnel?day=YYYY-MM-DD`.
pub async fn page(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
    Query(filter): Query<super::orders::Filter>,
) -> Response {
    let day = super::orders::index_day(&app, filter.day.as_deref());
    let counters = app
        .shop
        .store
        .counters(&app.shop.keys.funnel(&day))
        .await
        .unwrap_or_default();
    let mut screens: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (field, n) in counters {
        if let Some(screen) = field.strip_prefix("reached:") {
            screens.entry(screen.to_owned()).or_default().0 += n;
        } else if let Some(screen) = field.strip_prefix("left:") {
            screens.entry(screen.to_owned()).or_default().1 += n;
        }
    }
    let mut rows: Vec<Row> = screens
        .into_iter()
        .map(|(screen, (reached, left))| Row {
            screen,
            reached,
            ended: reached - left,
        })
        .collect();
    rows.sort_by(|a, b| b.reached.cmp(&a.reached).then(a.screen.cmp(&b.screen)));
    frame(
        "Funnel",
        Some(&operator.csrf),
        html! {
            h1 { "Menu funnel, " (super::orders::dashed(&day)) " (EAT)" }
            form method="get" action=(super::at("/console/funnel")) {
                input type="date" name="day" value=(super::orders::dashed(&day)); " " button { "Show" }
            }
            p { "Green: sessions that reached the screen. Red: sessions that ended there (reached minus those that went on to another screen). Nodes add their counts every 5 s." }
            @if rows.is_empty() { p id="no-funnel" { "No sessions counted on this day." } }
            (chart(&rows))
            table id="funnel" {
                tr { th { "screen" } th { "reached" } th { "ended there" } }
                @for row in &rows { tr data-screen=(row.screen) { td { (row.screen) } td.reached { (row.reached) } td.ended { (row.ended) } } }
            }
        },
    )
    .into_response()
}
