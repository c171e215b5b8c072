//! `duka order ORDER_NO`: what an operator needs to know about one order.
//!
//! Lines, total, state, every STK attempt with its result, every payment received (one per
//! distinct M-Pesa receipt or `TransID`), flags that need a person (a refund for `overpaid`), the
//! raw callbacks kept for audit, and the state of every SMS about the order. `--json` prints the
//! same as one object for scripts.
//!
//! Production reads the report straight from Redis. The demo's store lives inside `duka serve`,
//! so there the command asks the running server instead: [`endpoint`] serves the report on
//! loopback behind a bearer token the demo writes to a file, and [`remote`] fetches it.

pub mod endpoint;
pub mod find;
pub mod loopback;
pub mod refund;
pub mod remote;

use serde::{Deserialize, Serialize};

use crate::keys::Keys;
use crate::orders::{AttemptState, Order, OrderFlag, PaymentSource};
use crate::payments::settle::AuditEntry;
use crate::sms::outbox::{MessageKind, OutboxMessage, SendStatus};
use crate::store::{Store, StoreError};

/// The shop of a production deployment (`REDIS_URL` set), for an operator command that writes
/// to its Redis directly; the running servers' job workers carry out what it queues.
///
/// # Errors
/// The store cannot be reached or the menus do not load.
pub async fn shop_in_store(
    settings: &crate::config::Settings,
) -> anyhow::Result<crate::shop::Shop> {
    let store = crate::startup::connect_store(&settings.store).await?;
    let catalog = crate::menu::Catalog::load(&settings.menus_dir)?;
    Ok(crate::shop::Shop::new(
        store,
        Keys::new(settings.key_prefix.clone()),
        std::sync::Arc::new(catalog),
        crate::shop::ShopSettings {
            paybill: String::new(),
            order_ttl_ms: settings.order_ttl.as_millis() as i64,
            query_after_ms: settings.mpesa_query_after.as_millis() as i64,
            session_ttl_ms: settings.session_ttl.as_millis() as u64,
            resend_window_ms: settings.ussd_resend_window.as_millis() as i64,
            session_cache: 0,
            push_limits: settings.limits.clone(),
            till: settings.mpesa_till.clone(),
            order_first: settings.order_first_chars.clone(),
        },
        crate::shop::Clock::system(),
        None,
    ))
}

/// The report, as printed with `--json`. Phone numbers in it are masked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderReport {
    pub number: String,
    pub state: crate::orders::OrderStatus,
    pub total: crate::money::Kes,
    pub msisdn: String,
    pub lang: crate::menu::Lang,
    pub placed_at: String,
    pub expires_at: String,
    pub lines: Vec<ReportLine>,
    pub attempts: Vec<ReportAttempt>,
    pub payments: Vec<ReportPayment>,
    pub flags: Vec<OrderFlag>,
    pub sms: Vec<ReportSms>,
    pub callbacks: Vec<AuditEntry>,
    /// Refunds approved by an operator, with how each ended.
    #[serde(default)]
    pub refunds: Vec<ReportRefund>,
}

/// One refund, as [`crate::orders::Refund`] with the phone masked and times in words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportRefund {
    /// The receipt of the payment refunded.
    pub receipt: String,
    pub amount: crate::money::Kes,
    pub method: crate::orders::RefundMethod,
    pub state: crate::orders::RefundState,
    /// The masked phone a B2C refund goes to.
    pub to: String,
    pub originator_conversation_id: String,
    pub conversation_id: Option<String>,
    /// M-Pesa's id of the refund transaction.
    pub transaction_id: Option<String>,
    pub result_code: Option<i64>,
    pub result_desc: Option<String>,
    /// Result callbacks received, duplicates included.
    pub results: u32,
    pub requested_at: String,
    pub updated_at: String,
}

impl ReportRefund {
    pub fn of(refund: &crate::orders::Refund) -> Self {
        Self {
            receipt: refund.receipt.clone(),
            amount: refund.amount,
            method: refund.method,
            state: refund.state,
            to: refund.to.masked(),
            originator_conversation_id: refund.originator_conversation_id.clone(),
            conversation_id: refund.conversation_id.clone(),
            transaction_id: refund.transaction_id.clone(),
            result_code: refund.result_code,
            result_desc: refund.result_desc.clone(),
            results: refund.results,
            requested_at: time(refund.requested_at_ms),
            updated_at: time(refund.updated_at_ms),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportLine {
    pub product: String,
    pub name: String,
    pub qty: u32,
    pub unit_price: crate::money::Kes,
    pub total: crate::money::Kes,
}

/// One STK attempt, as [`crate::orders::PaymentAttempt`] with the payer masked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportAttempt {
    pub n: u32,
    /// The masked phone the prompt went to.
    pub payer: String,
    pub state: AttemptState,
    pub checkout_request_id: Option<String>,
    pub result_code: Option<i64>,
    pub result_desc: Option<String>,
    pub error: Option<String>,
    pub queries: u32,
    pub callbacks: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportPayment {
    /// The M-Pesa receipt (or `TransID`); `null` when only an STK query proved the payment.
    pub receipt: Option<String>,
    pub amount: crate::money::Kes,
    pub source: PaymentSource,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportSms {
    pub id: String,
    pub kind: MessageKind,
    pub status: SendStatus,
    pub message_id: Option<String>,
    pub delivery: Option<String>,
    pub failure_reason: Option<String>,
    pub attempts: u32,
    pub text: String,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Reads everything about an order. `Ok(None)` when there is no such order.
///
/// # Errors
/// The store fails.
pub async fn order_report(
    store: &dyn Store,
    keys: &Keys,
    number: &str,
) -> Result<Option<OrderReport>, StoreError> {
    let number = crate::orders::normalise_order_number(number);
    let values = store
        .get(&[keys.order(&number), keys.audit(&number)])
        .await?;
    let Some(order) = values[0]
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Order>(b).ok())
    else {
        return Ok(None);
    };
    let callbacks: Vec<AuditEntry> = values
        .get(1)
        .and_then(|v| v.as_deref())
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let message_keys: Vec<String> = order.messages.iter().map(|id| keys.message(id)).collect();
    let messages = store.get(&message_keys).await?;
    let sms = messages
        .into_iter()
        .flatten()
        .filter_map(|b| serde_json::from_slice::<OutboxMessage>(&b).ok())
        .map(|m| ReportSms {
            id: m.id,
            kind: m.kind,
            status: m.status,
            message_id: m.message_id,
            delivery: m.delivery,
            failure_reason: m.failure_reason,
            attempts: m.attempts,
            text: m.text,
        })
        .collect();
    Ok(Some(OrderReport {
        number: order.number.clone(),
        state: order.status,
        total: order.total,
        msisdn: order.msisdn.masked(),
        lang: order.lang,
        placed_at: time(order.placed_at_ms),
        expires_at: time(order.expires_at_ms),
        lines: order
            .lines
            .iter()
            .map(|l| ReportLine {
                product: l.product.clone(),
                name: l.name.clone(),
                qty: l.qty,
                unit_price: l.unit_price,
                total: l.total(),
            })
            .collect(),
        attempts: order
            .attempts
            .iter()
            .map(|a| ReportAttempt {
                n: a.n,
                payer: a.payer.masked(),
                state: a.state,
                checkout_request_id: a.checkout_request_id.clone(),
                result_code: a.result_code,
                result_desc: a.result_desc.clone(),
                error: a.error.clone(),
                queries: a.queries,
                callbacks: a.callbacks,
            })
            .collect(),
        payments: order
            .payments
            .iter()
            .map(|p| ReportPayment {
                receipt: p.receipt.clone(),
                amount: p.amount,
                source: p.source,
                at: time(p.at_ms),
            })
            .collect(),
        flags: order.flags.clone(),
        sms,
        callbacks,
        refunds: order.refunds.iter().map(ReportRefund::of).collect(),
    }))
}

/// A state or kind in words: its JSON name with spaces (`awaiting_payment` → `awaiting payment`),
/// so the text and the JSON never disagree.
fn words(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name.replace('_', " "),
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// The report as text for a person.
pub fn render_text(report: &OrderReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Order {}  {}  KES {}",
        report.number,
        report.state.words(),
        report.total
    );
    let _ = writeln!(
        out,
        "  shopper {}  language {}  placed {}  payable until {}",
        report.msisdn,
        report.lang.code(),
        report.placed_at,
        report.expires_at
    );
    let _ = writeln!(out, "Lines:");
    for line in &report.lines {
        let _ = writeln!(
            out,
            "  {} x {} @ KES {} = KES {}",
            line.qty, line.name, line.unit_price, line.total
        );
    }
    let _ = writeln!(out, "STK attempts:");
    if report.attempts.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for a in &report.attempts {
        let _ = writeln!(
            out,
            "  #{} to {}  {}  result {}  checkout {}  queries {}  callbacks {}{}",
            a.n,
            a.payer,
            words(&a.state),
            a.result_code.map_or("-".to_owned(), |c| c.to_string()),
            a.checkout_request_id.as_deref().unwrap_or("-"),
            a.queries,
            a.callbacks,
            a.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "Payments received:");
    if report.payments.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for p in &report.payments {
        let _ = writeln!(
            out,
            "  {}  KES {}  via {}  at {}",
            p.receipt.as_deref().unwrap_or("(receipt not yet known)"),
            p.amount,
            words(&p.source),
            p.at
        );
    }
    if !report.flags.is_empty() {
        let flags: Vec<String> = report.flags.iter().map(words).collect();
        let _ = writeln!(out, "NEEDS AN OPERATOR: {}", flags.join(", "));
        if report.flags.contains(&OrderFlag::Overpaid) {
            let _ = writeln!(
                out,
                "  overpaid: refund every payment after the first (see the receipts above)"
            );
        }
        if report.flags.contains(&OrderFlag::Underpaid) {
            let _ = writeln!(
                out,
                "  underpaid: the order is not paid; refund or ask for the balance"
            );
        }
        if report.flags.contains(&OrderFlag::PaidAfterExpiry) {
            let _ = writeln!(
                out,
                "  paid after expiry: honour the order or refund the payment"
            );
        }
        if report.flags.contains(&OrderFlag::Mismatch) {
            let _ = writeln!(
                out,
                "  mismatch: a success callback had the wrong amount or phone; check the callbacks"
            );
        }
    }
    if !report.refunds.is_empty() {
        let _ = writeln!(out, "Refunds:");
    }
    for r in &report.refunds {
        let _ = writeln!(
            out,
            "  {}  KES {}  by {}  {}  to {}  result {}  refund ref {}  results {}  requested {}{}",
            r.receipt,
            r.amount,
            words(&r.method),
            words(&r.state),
            r.to,
            r.result_code.map_or("-".to_owned(), |c| c.to_string()),
            r.transaction_id.as_deref().unwrap_or("-"),
            r.results,
            r.requested_at,
            r.result_desc
                .as_deref()
                .map(|d| format!("  ({d})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "SMS:");
    if report.sms.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for m in &report.sms {
        let _ = writeln!(
            out,
            "  {} {}  {}  delivery {}  id {}  attempts {}{}",
            m.id,
            words(&m.kind),
            words(&m.status),
            m.delivery.as_deref().unwrap_or("-"),
            m.message_id.as_deref().unwrap_or("-"),
            m.attempts,
            m.failure_reason
                .as_deref()
                .map(|r| format!("  reason: {r}"))
                .unwrap_or_default()
        );
        let _ = writeln!(out, "    text: {}", m.text);
    }
    let _ = writeln!(out, "Callbacks kept: {}", report.callbacks.len());
    for c in &report.callbacks {
        let _ = writeln!(out, "  {} {}", time(c.at_ms), c.kind);
    }
    out
}
