//! `POST /sms/delivery`: Africa's Talking's delivery reports, recorded against the outbox message.
//!
//! Who may post them is [`super::report_guard`]'s business; a report naming another phone than
//! its message's is ignored.
//!
//! Reports repeat and arrive out of order, so a report is applied only when it moves the status
//! forward; the first final status wins ([`should_apply`]). Every report is kept raw on the
//! message. A report for an id Duka never saw is kept as an orphan, and if the phone has a
//! message whose send was ambiguous, it settles that message as sent (see [`super::outbox`]).
//! Nothing is signed, so a report only ever changes a receipt's delivery status: it never
//! triggers a resend and never touches a payment. The answer is always a quick, empty 200 for a
//! readable report.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::africastalking::{should_apply, DeliveryReport, DeliveryStatus};
use super::outbox::{OutboxMessage, SendStatus};
use crate::keys::ORDER_RETENTION_MS;
use crate::shop::Shop;
use crate::startup::AppState;
use crate::store::{from_json, to_json, Batch, Commit, StoreError};

const ORPHAN_TTL_MS: u64 = 7 * 24 * 3_600_000;
/// How long, and how many, unknown-id reports of a phone are kept to settle an uncertain send.
const PHONE_ORPHANS_TTL_MS: u64 = 3_600_000;
const MAX_PHONE_ORPHANS: usize = 10;

/// A report whose id Duka did not know when it arrived, kept by phone: a send whose reply was
/// lost can receive its delivery reports before the send itself is known to be uncertain.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct PhoneOrphan {
    id: String,
    status: String,
    failure_reason: Option<String>,
    raw: String,
    at_ms: i64,
}

/// The report routes: `POST /sms/delivery`, and `POST /sms/{secret}/delivery` when
/// `AT_CALLBACK_SECRET` is set (see [`crate::sms::report_guard`]).
pub fn router(limits: &crate::limits::Limits) -> Router<AppState> {
    let mut routes = Router::new().route("/sms/delivery", post(delivery_report));
    if let Some(secret) = &limits.at_callback_secret {
        use secrecy::ExposeSecret as _;
        routes = routes.route(
            &format!("/sms/{}/delivery", secret.expose_secret()),
            post(delivery_report),
        );
    }
    routes.layer(axum::middleware::from_fn_with_state(
        std::sync::Arc::new(super::report_guard::ReportGuard::new(limits)),
        super::report_guard::check,
    ))
}

/// What a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The message's delivery status moved forward.
    Moved,
    /// A repeat, or a status behind the one stored.
    Ignored,
    /// An uncertain message was settled as sent by this report.
    SettledUncertain,
    /// No message has this id.
    Orphan,
}

#[tracing::instrument(name = "sms_delivery", skip_all, fields(sms.message_id))]
async fn delivery_report(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let report = match DeliveryReport::from_body(content_type, &body) {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(error.message = %e, "rejected an unreadable delivery report");
            return (
                StatusCode::BAD_REQUEST,
                format!("bad delivery report: {e}\n"),
            )
                .into_response();
        }
    };
    tracing::Span::current().record("sms.message_id", report.id.as_str());
    let raw = String::from_utf8_lossy(&body).into_owned();
    match record(&app.shop, &report, &raw).await {
        Ok(applied) => {
            let label = match applied {
                Applied::Moved => "moved",
                Applied::Ignored => "ignored",
                Applied::SettledUncertain => "settled_uncertain",
                Applied::Orphan => "orphan",
            };
            app.metrics
                .inc("duka_sms_delivery_reports_total", &[("applied", label)]);
            if report.status.is_final() && report.status.is_failure() && applied == Applied::Moved {
                app.metrics.inc("duka_sms_delivery_failed_total", &[]);
                tracing::warn!(sms.status = report.status.as_str(), sms.failure_reason = ?report.failure_reason, "an SMS was not delivered");
            }
            StatusCode::OK.into_response()
        }
        Err(e) => {
            // Africa's Talking does not document its retries; a 503 at least invites one.
            tracing::error!(error.message = %e, "could not record a delivery report");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Records a delivery report. See the module docs.
///
/// # Errors
/// The store fails.
pub async fn record(
    shop: &Shop,
    report: &DeliveryReport,
    raw: &str,
) -> Result<Applied, StoreError> {
    let index = shop.store.get_one(&shop.keys.sms_index(&report.id)).await?;
    if let Some(message_id) = index.and_then(|v| String::from_utf8(v).ok()) {
        return apply(shop, &message_id, report, raw, false).await;
    }
    // An id we never saw: it may settle the phone's uncertain message.
    if let Some(msisdn) = report.phone_number.as_ref().and_then(|p| p.msisdn()) {
        let uncertain = shop
            .store
            .get_one(&shop.keys.sms_uncertain(&msisdn))
            .await?
            .and_then(|v| String::from_utf8(v).ok());
        if let Some(message_id) = uncertain {
            let applied = apply(shop, &message_id, report, raw, true).await?;
            if applied == Applied::SettledUncertain {
                let mut batch = Batch::new();
                batch.set(
                    shop.keys.sms_index(&report.id),
                    message_id.into_bytes(),
                    Some(ORDER_RETENTION_MS),
                );
                let _ = shop.store.commit(&batch).await?;
                return Ok(applied);
            }
        }
    }
    let mut batch = Batch::new();
    batch.set(
        shop.keys.sms_orphan(&report.id),
        raw.as_bytes().to_vec(),
        Some(ORPHAN_TTL_MS),
    );
    let _ = shop.store.commit(&batch).await?;
    if let Some(msisdn) = report.phone_number.as_ref().and_then(|p| p.msisdn()) {
        keep_phone_orphan(shop, &msisdn, report, raw).await?;
    }
    tracing::warn!(
        sms.status = report.status.as_str(),
        "kept a delivery report for an unknown message id"
    );
    Ok(Applied::Orphan)
}

async fn keep_phone_orphan(
    shop: &Shop,
    msisdn: &crate::msisdn::Msisdn,
    report: &DeliveryReport,
    raw: &str,
) -> Result<(), StoreError> {
    let key = shop.keys.sms_orphans_of(msisdn);
    for _ in 0..3 {
        let stored = shop.store.get_one(&key).await?;
        let mut orphans: Vec<PhoneOrphan> = from_json(stored.as_deref()).unwrap_or_default();
        orphans.push(PhoneOrphan {
            id: report.id.clone(),
            status: report.status.as_str().to_owned(),
            failure_reason: report.failure_reason.clone(),
            raw: raw.to_owned(),
            at_ms: shop.clock.now_ms(),
        });
        if orphans.len() > MAX_PHONE_ORPHANS {
            orphans.remove(0);
        }
        let mut batch = Batch::new();
        batch.guard(&key, stored.as_deref()).set(
            &key,
            to_json(&orphans),
            Some(PHONE_ORPHANS_TTL_MS),
        );
        if shop.store.commit(&batch).await? == Commit::Applied {
            break;
        }
    }
    Ok(())
}

/// Settles a message that just became uncertain with the unknown-id reports its phone received
/// since `since_ms` (when its send started): the first such id is taken to be this message's.
/// Returns whether it was settled.
///
/// # Errors
/// The store fails.
pub async fn settle_from_phone_orphans(
    shop: &Shop,
    message: &OutboxMessage,
    since_ms: i64,
) -> Result<bool, StoreError> {
    let key = shop.keys.sms_orphans_of(&message.to);
    let stored = shop.store.get_one(&key).await?;
    let orphans: Vec<PhoneOrphan> = from_json(stored.as_deref()).unwrap_or_default();
    let Some(first) = orphans.iter().find(|o| o.at_ms >= since_ms) else {
        return Ok(false);
    };
    let id = first.id.clone();
    let mut settled = false;
    for orphan in orphans.iter().filter(|o| o.id == id) {
        let report = DeliveryReport {
            id: orphan.id.clone(),
            status: DeliveryStatus::parse(&orphan.status),
            phone_number: None,
            network_code: None,
            failure_reason: orphan.failure_reason.clone(),
            retry_count: None,
        };
        let applied = apply(shop, &message.id, &report, &orphan.raw, !settled).await?;
        settled |= applied == Applied::SettledUncertain;
    }
    if settled {
        let mut batch = Batch::new();
        batch.set(
            shop.keys.sms_index(&id),
            message.id.clone().into_bytes(),
            Some(ORDER_RETENTION_MS),
        );
        let _ = shop.store.commit(&batch).await?;
    }
    Ok(settled)
}

async fn apply(
    shop: &Shop,
    message_id: &str,
    report: &DeliveryReport,
    raw: &str,
    settling_uncertain: bool,
) -> Result<Applied, StoreError> {
    let key = shop.keys.message(message_id);
    for _ in 0..5 {
        let stored = shop.store.get_one(&key).await?;
        let Some(mut message) = from_json::<OutboxMessage>(stored.as_deref()) else {
            return Ok(Applied::Orphan);
        };
        // A report names the phone it was delivered to: it may only move a message sent there.
        if let Some(phone) = &report.phone_number {
            if phone.msisdn().as_ref() != Some(&message.to) {
                tracing::warn!(
                    msisdn.masked = %phone.masked(),
                    "a delivery report for another phone than its message's; ignored"
                );
                return Ok(Applied::Ignored);
            }
        }
        let settles = settling_uncertain && message.status == SendStatus::Uncertain;
        if settling_uncertain && !settles {
            return Ok(Applied::Orphan);
        }
        let current = message.delivery.as_deref().map(DeliveryStatus::parse);
        let moves = should_apply(current.as_ref(), &report.status);
        if settles {
            message.status = SendStatus::Sent;
            message.message_id = Some(report.id.clone());
            message.failure_reason = None;
        }
        if moves {
            message.delivery = Some(report.status.as_str().to_owned());
            if report.status.is_failure() {
                message.failure_reason = report
                    .failure_reason
                    .clone()
                    .or_else(|| Some(report.status.as_str().to_owned()));
            }
        }
        message.reports.push(raw.to_owned());
        if message.reports.len() > OutboxMessage::MAX_REPORTS {
            message.reports.remove(0);
        }
        message.updated_at_ms = shop.clock.now_ms();
        let mut batch = Batch::new();
        batch
            .guard(&key, stored.as_deref())
            .set(&key, to_json(&message), Some(ORDER_RETENTION_MS));
        if shop.store.commit(&batch).await? == Commit::Applied {
            return Ok(if settles {
                Applied::SettledUncertain
            } else if moves {
                Applied::Moved
            } else {
                Applied::Ignored
            });
        }
    }
    Ok(Applied::Ignored)
}
