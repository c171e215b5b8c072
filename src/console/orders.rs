//! The orders pages: the day's list (filter by state, search by number or the phone's last
//! digits), one order live, and the orders that need a person.
//!
//! A day's orders come from the per-shard day index `P{sNN}:day:<YYYYMMDD>` the checkout writes
//! in its own commit (see [`crate::keys`]): one `ZRANGE` and one `MGET` per shard, the 64 shards
//! read concurrently. Never on the USSD hop.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::auth::Operator;
use super::page::frame;
use crate::keys::SHARDS;
use crate::operator::{order_report, OrderReport};
use crate::orders::{AttemptState, Order, OrderFlag, OrderStatus};
use crate::sms::outbox::{MessageKind, OutboxMessage, SendStatus};
use crate::startup::AppState;
use crate::store::{from_json, StoreError};

/// The list's filters, from the query string.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    /// `YYYY-MM-DD` (EAT); today when absent.
    pub day: Option<String>,
    /// `placed` (all), `awaiting_payment`, `paid`, `failed`, `expired`, `flagged`.
    pub state: Option<String>,
    /// An order number (or part of one), or the last digits of the phone.
    pub q: Option<String>,
}

/// The states the list can filter by, with their labels.
const STATES: [(&str, &str); 6] = [
    ("placed", "all placed"),
    ("awaiting_payment", "awaiting payment"),
    ("paid", "paid"),
    ("failed", "failed"),
    ("expired", "expired"),
    ("flagged", "flagged"),
];

fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&crate::mpesa::clock::EAT)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// `YYYY-MM-DD` to the index's `YYYYMMDD`; today (EAT) when absent or malformed.
pub(super) fn index_day(app: &AppState, day: Option<&str>) -> String {
    day.and_then(|d| chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_else(|| super::eat_day(app.shop.clock.now_ms()))
}

pub(super) fn dashed(day: &str) -> String {
    format!("{}-{}-{}", &day[0..4], &day[4..6], &day[6..8])
}

/// Every order placed on `day` (`YYYYMMDD`), newest first, with its outbox messages when asked.
///
/// # Errors
/// The store fails.
pub async fn read_day(
    app: &AppState,
    day: &str,
    with_messages: bool,
) -> Result<Vec<(Order, Vec<OutboxMessage>)>, StoreError> {
    let mut shards = tokio::task::JoinSet::new();
    for shard in 0..SHARDS {
        let shop = app.shop.clone();
        let index = shop.keys.day_orders(shard, day);
        shards.spawn(async move {
            let numbers = shop.store.members(&index).await?;
            if numbers.is_empty() {
                return Ok::<_, StoreError>(Vec::new());
            }
            let keys: Vec<String> = numbers.iter().map(|n| shop.keys.order(n)).collect();
            let orders: Vec<Order> = shop
                .store
                .get(&keys)
                .await?
                .iter()
                .filter_map(|raw| from_json::<Order>(raw.as_deref()))
                .collect();
            let mut messages: HashMap<String, OutboxMessage> = HashMap::new();
            if with_messages {
                let keys: Vec<String> = orders
                    .iter()
                    .flat_map(|o| o.messages.iter().map(|id| shop.keys.message(id)))
                    .collect();
                for raw in shop.store.get(&keys).await? {
                    if let Some(m) = from_json::<OutboxMessage>(raw.as_deref()) {
                        messages.insert(m.id.clone(), m);
                    }
                }
            }
            Ok(orders
                .into_iter()
                .map(|o| {
                    let mine = o
                        .messages
                        .iter()
                        .filter_map(|id| messages.get(id).cloned())
                        .collect();
                    (o, mine)
                })
                .collect())
        });
    }
    let mut all = Vec::new();
    while let Some(done) = shards.join_next().await {
        match done {
            Ok(Ok(orders)) => all.extend(orders),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(StoreError::Protocol(format!("a shard read panicked: {e}"))),
        }
    }
    all.sort_by_key(|(order, _)| std::cmp::Reverse(order.placed_at_ms));
    Ok(all)
}

fn matches(order: &Order, filter: &Filter) -> bool {
    let state_ok = match filter.state.as_deref().unwrap_or("placed") {
        "flagged" => !order.flags.is_empty(),
        "placed" | "" => true,
        state => name(&order.status) == state,
    };
    let query = filter.q.as_deref().map(str::trim).unwrap_or_default();
    let query_ok = query.is_empty()
        || order
            .number
            .to_ascii_uppercase()
            .contains(&query.to_ascii_uppercase())
        || (query.chars().all(|c| c.is_ascii_digit()) && order.msisdn.digits().ends_with(query));
    state_ok && query_ok
}

fn store_down(e: &StoreError) -> Response {
    tracing::warn!(error.message = %e, "console: cannot read orders");
    (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable").into_response()
}

fn state_badge(status: OrderStatus) -> Markup {
    let state = name(&status);
    html! { span class={"state " (state)} data-state=(state) { (state.replace('_', " ")) } }
}

/// `GET /console`: the day's orders.
pub async fn list(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
    Query(filter): Query<Filter>,
) -> Response {
    let day = index_day(&app, filter.day.as_deref());
    let orders = match read_day(&app, &day, false).await {
        Ok(orders) => orders,
        Err(e) => return store_down(&e),
    };
    let shown: Vec<&Order> = orders
        .iter()
        .map(|(o, _)| o)
        .filter(|o| matches(o, &filter))
        .collect();
    let chosen = filter.state.as_deref().unwrap_or("placed");
    frame(
        "Orders",
        Some(&operator.csrf),
        html! {
            h1 { "Orders of " (dashed(&day)) " (EAT)" }
            form method="get" action=(super::at("/console")) id="filter" {
                input type="date" name="day" value=(dashed(&day));
                " "
                select name="state" {
                    @for (value, label) in STATES {
                        option value=(value) selected[value == chosen] { (label) }
                    }
                }
                " "
                input type="search" name="q" id="q" placeholder="order number or last digits of the phone"
                    value=(filter.q.clone().unwrap_or_default()) size="34";
                " "
                button id="search" { "Show" }
            }
            p { (shown.len()) " of " (orders.len()) " orders" }
            table id="orders" {
                tr { th { "order" } th { "placed" } th { "phone" } th { "total" } th { "state" } th { "flags" } }
                @for order in &shown {
                    tr data-order=(order.number) {
                        td { a href={(super::at("/console/orders/")) (order.number)} { (order.number) } }
                        td { (ms_time(order.placed_at_ms)) }
                        td { (order.msisdn.masked()) }
                        td { "KES " (order.total) }
                        td { (state_badge(order.status)) }
                        td { @for flag in &order.flags { span.flag { (name(flag)) } } }
                    }
                }
            }
        },
    )
    .into_response()
}

/// What needs a person about an order, and what they can do; empty when nothing does.
pub fn attention_reasons(order: &Order, messages: &[OutboxMessage]) -> Vec<(String, &'static str)> {
    let mut reasons = Vec::new();
    for flag in &order.flags {
        let next = match flag {
            OrderFlag::Overpaid => {
                "Refund the excess (B2C to the shopper): the button, or duka refund ORDER --amount KES."
            }
            OrderFlag::PaidAfterExpiry => {
                "Refund the payment (Reversal), or honour the order by hand and tell the shopper."
            }
            OrderFlag::Underpaid => "Ask the shopper to pay the rest, or refund what came.",
            OrderFlag::Mismatch => {
                "Check the callback below against the M-Pesa statement before trusting it."
            }
        };
        reasons.push((name(flag).replace('_', " "), next));
    }
    if order.payments.len() > 1 && !order.flags.contains(&OrderFlag::Overpaid) {
        reasons.push(("paid twice".to_owned(), "Refund one of the payments."));
    }
    if order
        .attempts
        .iter()
        .any(|a| a.state == AttemptState::Unknown)
    {
        reasons.push((
            "push in an unknown state".to_owned(),
            "Duka queries it by itself; if it stays unknown, check the M-Pesa statement before asking the shopper to pay again.",
        ));
    }
    for message in messages {
        if message.kind == MessageKind::Receipt {
            match message.status {
                SendStatus::Uncertain => reasons.push((
                    "receipt uncertain".to_owned(),
                    "The send may or may not have gone out: Duka does not resend it. Check the delivery report or text the shopper.",
                )),
                SendStatus::Failed => reasons.push((
                    "receipt failed".to_owned(),
                    "Text the shopper the receipt by hand, or check the SMS account.",
                )),
                _ => {}
            }
        }
    }
    reasons
}

/// `GET /console/attention`: the day's orders that need a person.
pub async fn attention(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
    Query(filter): Query<Filter>,
) -> Response {
    let day = index_day(&app, filter.day.as_deref());
    let orders = match read_day(&app, &day, true).await {
        Ok(orders) => orders,
        Err(e) => return store_down(&e),
    };
    let needing: Vec<(&Order, Vec<(String, &'static str)>)> = orders
        .iter()
        .map(|(o, m)| (o, attention_reasons(o, m)))
        .filter(|(_, r)| !r.is_empty())
        .collect();
    frame(
        "Needs attention",
        Some(&operator.csrf),
        html! {
            h1 { "Needs attention, " (dashed(&day)) }
            form method="get" action=(super::at("/console/attention")) {
                input type="date" name="day" value=(dashed(&day)); " " button { "Show" }
            }
            @if needing.is_empty() { p id="nothing" { "Nothing needs attention on this day." } }
            table id="attention" {
                tr { th { "order" } th { "phone" } th { "state" } th { "what" } th { "what to do" } }
                @for (order, reasons) in &needing {
                    @for (i, (what, next)) in reasons.iter().enumerate() {
                        tr data-order=(order.number) {
                            td { a href={(super::at("/console/orders/")) (order.number)} { (order.number) } }
                            td { (order.msisdn.masked()) }
                            td { (state_badge(order.status)) }
                            td { (what) }
                            td {
                                (next)
                                @if i == 0 && super::refund::offers_refund(order) {
                                    (super::refund::button(&order.number, &operator.csrf))
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// The report's body: the part the page refreshes while the payment is pending.
fn report_body(report: &OrderReport) -> Markup {
    html! {
        p { "State " span id="state" { (state_badge(report.state)) } " · total KES " (report.total)
            " · phone " (report.msisdn) " · placed " (report.placed_at) " · expires " (report.expires_at) }
        @if !report.flags.is_empty() {
            p id="flags" { "Flags: " @for flag in &report.flags { span.flag { (name(flag)) } } }
        }
        h2 { "Lines" }
        table { tr { th { "product" } th { "qty" } th { "unit" } th { "total" } }
            @for line in &report.lines { tr { td { (line.name) } td { (line.qty) } td { (line.unit_price) } td { (line.total) } } } }
        h2 { "STK attempts" }
        table id="attempts" { tr { th { "#" } th { "payer" } th { "state" } th { "result" } th { "queries" } th { "callbacks" } }
            @for a in &report.attempts { tr { td { (a.n) } td { (a.payer) } td { (name(&a.state)) }
                td { (a.result_code.map(|c| c.to_string()).unwrap_or_default()) " " (a.result_desc.clone().or(a.error.clone()).unwrap_or_default()) }
                td { (a.queries) } td { (a.callbacks) } } } }
        h2 { "Payments" }
        table id="payments" { tr { th { "receipt" } th { "amount" } th { "source" } th { "at" } }
            @for p in &report.payments { tr { td { (p.receipt.clone().unwrap_or_else(|| "(from a query)".into())) } td { (p.amount) } td { (name(&p.source)) } td { (p.at) } } } }
        h2 { "SMS" }
        table id="sms" { tr { th { "id" } th { "kind" } th { "status" } th { "delivery" } th { "text" } }
            @for m in &report.sms { tr { td { (m.id) } td { (name(&m.kind)) } td.sms-status { (name(&m.status)) }
                td { (m.delivery.clone().unwrap_or_default()) " " (m.failure_reason.clone().unwrap_or_default()) } td { (m.text) } } } }
        h2 { "Callbacks (" (report.callbacks.len()) ")" }
        @for c in &report.callbacks { pre { (serde_json::to_string(c).unwrap_or_default()) } }
    }
}

/// `GET /console/orders/{number}`: one order, refreshed every 2 s while it waits for money.
pub async fn page(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(number): Path<String>,
) -> Response {
    let report = match order_report(app.shop.store.as_ref(), &app.shop.keys, &number).await {
        Ok(Some(report)) => report,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                frame(
                    "No such order",
                    Some(&operator.csrf),
                    html! { h1 { "No order " (number) } },
                ),
            )
                .into_response()
        }
        Err(e) => return store_down(&e),
    };
    frame(
        &report.number,
        Some(&operator.csrf),
        html! {
            h1 { "Order " (report.number) }
            div id="report" data-number=(report.number) data-api=(super::at("/console/api/orders/")) { (report_body(&report)) }
            p { small id="live" { "" } }
            script { (PreEscaped(LIVE_JS)) }
        },
    )
    .into_response()
}

/// Polls the order's JSON every 2 s while it is payable and swaps the report in place.
const LIVE_JS: &str = r"
(function(){
  const box=document.getElementById('report'), live=document.getElementById('live');
  const payable=()=>{const s=box.querySelector('[data-state]');return s&&['awaiting_payment','failed'].includes(s.dataset.state);};
  async function tick(){
    if(!payable()){live.textContent='';return;}
    live.textContent='waiting for payment: refreshing every 2 s';
    try{const r=await fetch(box.dataset.api+encodeURIComponent(box.dataset.number),{credentials:'same-origin'});
      if(r.ok){const j=await r.json(); box.innerHTML=j.html;}}catch(e){}
    setTimeout(tick,2000);
  }
  setTimeout(tick,2000);
})();
";

/// `GET /console/api/orders/{number}`: the report as `duka order --json` prints it, plus `html`,
/// the page's report body.
pub async fn json(State(app): State<AppState>, Path(number): Path<String>) -> Response {
    match order_report(app.shop.store.as_ref(), &app.shop.keys, &number).await {
        Ok(Some(report)) => {
            let mut value = serde_json::to_value(&report).unwrap_or_default();
            value["html"] = report_body(&report).into_string().into();
            Json(value).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no such order" })),
        )
            .into_response(),
        Err(e) => store_down(&e),
    }
}
