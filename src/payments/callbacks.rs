//! What Safaricom posts to Duka: STK results and paybill (C2B) validation and confirmation.
//!
//! Daraja signs nothing, so every route sits behind a secret path segment
//! (`MPESA_CALLBACK_SECRET`, compared in constant time; a wrong one gets a bare 404 and changes
//! nothing) and, optionally, an allow-list of source addresses (`MPESA_ALLOWED_IPS`; behind a
//! proxy, the last `X-Forwarded-For` entry, the one our own proxy added, is the caller). Every
//! amount is checked against the order, and the `CheckoutRequestID` must be one Duka issued.
//!
//! Safaricom is a different client from the aggregator and gets its own answers: the
//! documented acknowledgement bodies, a 200 even for an unknown order or an unreadable body (so
//! it stops retrying; the body is logged as unreadable, never dumped), and a 503 only when our
//! store is down, since then the callback was not recorded and a retry is welcome
//! (reconciliation covers it if none comes).

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::ExposeSecret;

use super::settle::{load_order, settle, AuditEntry};
use super::worker::{release_lock, StkIndexEntry};
use super::{amount_due, Event, StkPaid};
use crate::gateway::guard::caller;
use crate::mpesa::{
    C2bConfirmationAck, C2bRejectCode, C2bRequest, C2bValidationReply, StkCallback, StkCallbackAck,
};
use crate::startup::AppState;
use crate::store::from_json;

/// The payment routes, all under `/payments/{secret}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments/{secret}/stk", post(stk_callback))
        .route("/payments/{secret}/c2b/validate", post(c2b_validate))
        .route("/payments/{secret}/c2b/confirm", post(c2b_confirm))
        .route("/payments/{secret}/reversal/result", post(refund_result))
        .route("/payments/{secret}/reversal/timeout", post(refund_timeout))
        .route("/payments/{secret}/b2c/result", post(refund_result))
        .route("/payments/{secret}/b2c/timeout", post(refund_timeout))
        .route("/payments/{secret}/status/result", post(status_result))
        .route("/payments/{secret}/status/timeout", post(status_timeout))
}

/// `POST /payments/{secret}/status/result`: what M-Pesa knows of a receipt `duka mpesa find`
/// asked about.
#[tracing::instrument(name = "mpesa_status_result", skip_all)]
async fn status_result(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    status_callback(&app, &body, false).await
}

/// `POST /payments/{secret}/status/timeout`: Daraja's queue gave up on a status query.
#[tracing::instrument(name = "mpesa_status_timeout", skip_all)]
async fn status_timeout(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    status_callback(&app, &body, true).await
}

async fn status_callback(app: &AppState, body: &Bytes, timeout: bool) -> Response {
    let kind = if timeout {
        "status_timeout"
    } else {
        "transaction_status"
    };
    match super::find::on_result(&app.shop, body, timeout, audit(app, kind, body)).await {
        Ok((handled, paid)) => {
            let label = match handled {
                super::find::Handled::Recorded(label) | super::find::Handled::Ignored(label) => {
                    label
                }
            };
            app.metrics
                .inc("duka_mpesa_status_results_total", &[("outcome", label)]);
            if let Some(number) = paid {
                tracing::info!("order {number} paid by a payment found by its receipt");
                crate::durability::after_paid(app, &number).await;
            }
            Json(StkCallbackAck).into_response()
        }
        Err(e) => {
            tracing::error!(error.message = %e, "could not record a transaction status result");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// `POST /payments/{secret}/{reversal,b2c}/result`: how a refund ended.
#[tracing::instrument(name = "mpesa_refund_result", skip_all, fields(order.number))]
async fn refund_result(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    refund_callback(&app, &body, false).await
}

/// `POST /payments/{secret}/{reversal,b2c}/timeout`: Daraja's queue gave up on a refund.
#[tracing::instrument(name = "mpesa_refund_timeout", skip_all, fields(order.number))]
async fn refund_timeout(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    refund_callback(&app, &body, true).await
}

/// Applies a refund result or timeout to its order, found by the refund's
/// `OriginatorConversationID`. Acknowledged whatever it says, except when the store is down.
async fn refund_callback(app: &AppState, body: &Bytes, timeout: bool) -> Response {
    let ack = || Json(StkCallbackAck).into_response();
    let kind = if timeout {
        "refund_timeout"
    } else {
        "refund_result"
    };
    let Ok(result) = crate::mpesa::refunds::RefundResult::parse(body) else {
        app.metrics
            .inc("duka_mpesa_callbacks_total", &[("outcome", "malformed")]);
        tracing::error!("unreadable refund {kind} acknowledged and ignored");
        return ack();
    };
    let Some((number, _receipt)) =
        super::refunds::parse_originator_conversation_id(&result.originator_conversation_id)
    else {
        app.metrics.inc(
            "duka_mpesa_callbacks_total",
            &[("outcome", "unknown_refund")],
        );
        tracing::error!(
            mpesa.conversation_id = %result.conversation_id,
            "refund {kind} for an OriginatorConversationID Duka never issued; acknowledged, nothing changed"
        );
        return ack();
    };
    tracing::Span::current().record("order.number", number.as_str());
    let ocid = result.originator_conversation_id.clone();
    let event = if timeout {
        Event::RefundTimedOut {
            originator_conversation_id: ocid,
        }
    } else {
        Event::RefundResult {
            originator_conversation_id: ocid,
            result_code: result.result_code,
            result_desc: result.result_desc.clone(),
            transaction_id: (!result.transaction_id.is_empty())
                .then(|| result.transaction_id.clone()),
        }
    };
    match settle(&app.shop, &number, &event, Some(audit(app, kind, body))).await {
        Ok(Some(settled)) => {
            let label = if settled.outcome.refund_done.is_some() {
                "refunded"
            } else if settled.outcome.duplicate {
                "duplicate"
            } else {
                "recorded"
            };
            app.metrics
                .inc("duka_mpesa_callbacks_total", &[("outcome", label)]);
            if settled.outcome.refund_done.is_some() {
                tracing::info!("refund for order {number} done");
            } else if !settled.outcome.duplicate {
                tracing::warn!(mpesa.result_code = result.result_code, "refund for order {number} did not go through ({kind}): see `duka order {number}`");
            }
            ack()
        }
        Ok(None) => {
            tracing::error!("refund {kind} for an order that no longer exists; acknowledged");
            ack()
        }
        Err(e) => {
            tracing::error!(error.message = %e, "could not record a refund {kind}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in a.iter().enumerate() {
        diff |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Proof that a request came through the secret path and, if configured, the allow-list.
/// Extracting it refuses everyone else: a wrong secret gets a bare 404, an address outside
/// `MPESA_ALLOWED_IPS` a 403, and nothing changes.
pub struct SafaricomCaller;

impl FromRequestParts<AppState> for SafaricomCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Path(secret) = Path::<String>::from_request_parts(parts, app)
            .await
            .map_err(|_| StatusCode::NOT_FOUND.into_response())?;
        if !constant_time_eq(
            secret.as_bytes(),
            app.callbacks.secret.expose_secret().as_bytes(),
        ) {
            app.metrics
                .inc("duka_mpesa_callbacks_total", &[("outcome", "wrong_secret")]);
            tracing::warn!("payment callback with a wrong secret path; ignored");
            return Err(StatusCode::NOT_FOUND.into_response());
        }
        let allowed = &app.callbacks.allowed_ips;
        if !allowed.is_empty() {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
            let ip = caller(&parts.headers, peer);
            if !allowed.iter().any(|net| net.contains(&ip)) {
                app.metrics
                    .inc("duka_mpesa_callbacks_total", &[("outcome", "forbidden_ip")]);
                tracing::warn!(net.peer = %ip, "payment callback from an address outside MPESA_ALLOWED_IPS; ignored");
                return Err(StatusCode::FORBIDDEN.into_response());
            }
        }
        Ok(SafaricomCaller)
    }
}

fn audit(app: &AppState, kind: &str, body: &Bytes) -> AuditEntry {
    AuditEntry {
        at_ms: app.shop.clock.now_ms(),
        kind: kind.to_owned(),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// `POST /payments/{secret}/stk`: the result of an STK push.
#[tracing::instrument(name = "mpesa_stk_callback", skip_all, fields(mpesa.checkout_request_id, mpesa.result_code, order.number))]
async fn stk_callback(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    let ack = || Json(StkCallbackAck).into_response();
    let callback = match StkCallback::parse(&body) {
        Ok(callback) => callback,
        Err(e) => {
            app.metrics
                .inc("duka_mpesa_callbacks_total", &[("outcome", "malformed")]);
            tracing::error!(error.message = %e, "unreadable STK callback acknowledged and ignored");
            return ack();
        }
    };
    let span = tracing::Span::current();
    span.record(
        "mpesa.checkout_request_id",
        callback.checkout_request_id.as_str(),
    );
    span.record("mpesa.result_code", callback.result_code);

    let found = match find_push(&app, &callback.checkout_request_id).await {
        Ok(None) => orphan_push(&app, &callback).await,
        found => found,
    };
    let entry = match found {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            app.metrics.inc(
                "duka_mpesa_callbacks_total",
                &[("outcome", "unknown_checkout")],
            );
            tracing::error!(
                "STK callback for a CheckoutRequestID Duka never issued; acknowledged, nothing changed"
            );
            return ack();
        }
        Err(e) => {
            tracing::error!(error.message = %e, "store down: STK callback not recorded; reconciliation will query");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    span.record("order.number", entry.order.as_str());

    let paid = callback.metadata.as_ref().and_then(|m| {
        Some(StkPaid {
            amount: m.amount?,
            receipt: m.mpesa_receipt_number.clone()?,
            phone: m.phone_number.as_ref().map(|p| p.digits().to_owned()),
        })
    });
    let event = Event::StkCallback {
        attempt: entry.attempt,
        result_code: callback.result_code,
        result_desc: callback.result_desc.clone(),
        paid,
    };
    match settle(
        &app.shop,
        &entry.order,
        &event,
        Some(audit(&app, "stk_callback", &body)),
    )
    .await
    {
        Ok(Some(settled)) => {
            let label = outcome_label(&settled.outcome);
            app.metrics
                .inc("duka_mpesa_callbacks_total", &[("outcome", label)]);
            if !settled.outcome.flagged.is_empty() {
                tracing::warn!(flags = ?settled.outcome.flagged, "order {} needs an operator: see `duka order {}`", entry.order, entry.order);
            }
            if settled.outcome.became_paid {
                tracing::info!("order {} paid by STK push", entry.order);
                crate::durability::after_paid(&app, &entry.order).await;
            }
            if let Some(attempt) = settled.order.attempt(entry.attempt) {
                if !attempt.is_open() {
                    release_lock(&app.shop, &attempt.payer).await;
                }
            }
            ack()
        }
        Ok(None) => {
            app.metrics.inc(
                "duka_mpesa_callbacks_total",
                &[("outcome", "unknown_order")],
            );
            tracing::error!("STK callback for an order that no longer exists; acknowledged");
            ack()
        }
        Err(e) => {
            tracing::error!(error.message = %e, "could not record an STK callback; reconciliation will query");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The attempt a successful callback with an unknown `CheckoutRequestID` can only belong to:
/// Daraja processed a push but Duka never read its answer (a 5xx after processing, or Duka
/// killed mid-push), so the attempt has no id (unknown, or failed when the retried job found the
/// order already paid). The payer's pending-push lock still names that attempt; it is taken only
/// if that attempt has no id and has not succeeded. Without this the
/// shopper's money moved and the order stayed unpaid (found by `duka soak`).
async fn orphan_push(
    app: &AppState,
    callback: &StkCallback,
) -> Result<Option<StkIndexEntry>, crate::store::StoreError> {
    let Some(payer) = callback
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number.as_ref())
    else {
        return Ok(None);
    };
    let owner = app
        .shop
        .store
        .get_one(&app.shop.keys.stk_lock(payer))
        .await?;
    let Some((order, attempt)) = owner
        .as_deref()
        .and_then(|o| std::str::from_utf8(o).ok())
        .and_then(|o| o.rsplit_once(':'))
        .and_then(|(order, n)| Some((order.to_owned(), n.parse::<u32>().ok()?)))
    else {
        return Ok(None);
    };
    let stored = load_order(&app.shop, &order).await?;
    let orphan = stored
        .as_ref()
        .and_then(|o| o.attempt(attempt))
        .is_some_and(|a| {
            a.state != crate::orders::AttemptState::Succeeded && a.checkout_request_id.is_none()
        });
    if orphan {
        tracing::warn!(order.number = %order, "STK callback for a push whose answer Duka never read; settling its attempt");
    }
    Ok(orphan.then_some(StkIndexEntry { order, attempt }))
}

/// How long a callback waits for its push to be indexed. The push job writes the index right
/// after Daraja accepts the push, so only a callback racing that reply waits at all.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The order and attempt a `CheckoutRequestID` belongs to. A callback can overtake the push
/// job's own bookkeeping (Daraja answers the push, then calls back at once), so an id not yet
/// indexed is looked up again for a few seconds before it is called unknown.
async fn find_push(
    app: &AppState,
    checkout_request_id: &str,
) -> Result<Option<StkIndexEntry>, crate::store::StoreError> {
    let key = app.shop.keys.stk_index(checkout_request_id);
    let deadline = tokio::time::Instant::now() + INDEX_WAIT;
    loop {
        let entry = from_json::<StkIndexEntry>(app.shop.store.get_one(&key).await?.as_deref());
        if entry.is_some() || tokio::time::Instant::now() >= deadline {
            return Ok(entry);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn outcome_label(outcome: &super::Outcome) -> &'static str {
    if outcome.became_paid {
        "paid"
    } else if !outcome.flagged.is_empty() {
        "flagged"
    } else if outcome.attempt_failed.is_some() {
        "failed"
    } else if outcome.duplicate {
        "duplicate"
    } else {
        "recorded"
    }
}

/// `POST /payments/{secret}/c2b/validate`: may this paybill payment go through?
///
/// One store read, and one write when it accepts (which order the receipt is for: what lets
/// `duka mpesa find` place the payment should its confirmation be lost). Accepts a payable order of exactly its amount; rejects an unknown, paid,
/// expired account with `C2B00012` and a wrong amount with `C2B00013`. When the store is down it
/// accepts, as Daraja's `ResponseType: Completed` would: a payment is never blocked by our outage,
/// and the confirmation sorts it out.
#[tracing::instrument(name = "mpesa_c2b_validate", skip_all, fields(order.number))]
async fn c2b_validate(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    let request = match C2bRequest::parse(&body) {
        Ok(request) => request,
        Err(e) => {
            tracing::warn!(error.message = %e, "unreadable C2B validation; rejecting it");
            return Json(C2bValidationReply::reject(
                C2bRejectCode::InvalidAccountNumber,
            ))
            .into_response();
        }
    };
    let number = request.account_number();
    tracing::Span::current().record("order.number", number.as_str());
    // A till takes no account number: a payment typed without one is let through and goes to
    // review at its confirmation (the shopper quotes the M-Pesa code to the operator).
    let till_without_account = app.shop.settings.till.is_some() && number.is_empty();
    let reply = match load_order(&app.shop, &number).await {
        _ if till_without_account => C2bValidationReply::accept(),
        Err(e) => {
            tracing::error!(error.message = %e, "store down during C2B validation; accepting as Completed would");
            C2bValidationReply::accept()
        }
        Ok(None) => C2bValidationReply::reject(C2bRejectCode::InvalidAccountNumber),
        Ok(Some(order)) if !order.status.is_payable() => {
            C2bValidationReply::reject(C2bRejectCode::InvalidAccountNumber)
        }
        Ok(Some(order)) if request.trans_amount != amount_due(&order) => {
            C2bValidationReply::reject(C2bRejectCode::InvalidAmount)
        }
        Ok(Some(_)) => {
            remember_account(&app, &request.trans_id, &number).await;
            C2bValidationReply::accept()
        }
    };
    let label = match &reply {
        C2bValidationReply::Accept { .. } => "accepted",
        C2bValidationReply::Reject(_) => "rejected",
    };
    app.metrics
        .inc("duka_mpesa_c2b_validations_total", &[("outcome", label)]);
    Json(reply).into_response()
}

/// Notes that the paybill payment `trans_id` named order `number` (best effort: a lost note
/// only means the operator names the order to `duka mpesa find`).
async fn remember_account(app: &AppState, trans_id: &str, number: &str) {
    if !crate::mpesa::status::is_receipt(trans_id) {
        return;
    }
    let mut batch = crate::store::Batch::new();
    batch.set(
        app.shop.keys.c2b_seen(trans_id),
        number.as_bytes().to_vec(),
        Some(crate::keys::ORDER_RETENTION_MS),
    );
    if let Err(e) = app.shop.store.commit(&batch).await {
        tracing::warn!(error.message = %e, "could not note the account of a validated paybill payment");
    }
}

/// `POST /payments/{secret}/c2b/confirm`: money arrived on the paybill.
#[tracing::instrument(name = "mpesa_c2b_confirm", skip_all, fields(order.number, mpesa.trans_id))]
async fn c2b_confirm(
    _caller: SafaricomCaller,
    State(app): State<AppState>,
    body: Bytes,
) -> Response {
    let ack = || Json(C2bConfirmationAck).into_response();
    let request = match C2bRequest::parse(&body) {
        Ok(request) => request,
        Err(e) => {
            app.metrics.inc(
                "duka_mpesa_c2b_confirmations_total",
                &[("outcome", "malformed")],
            );
            tracing::error!(error.message = %e, "unreadable C2B confirmation acknowledged; money may need a manual review");
            return ack();
        }
    };
    let number = request.account_number();
    let span = tracing::Span::current();
    span.record("order.number", number.as_str());
    span.record("mpesa.trans_id", request.trans_id.as_str());
    let event = Event::Paybill {
        trans_id: request.trans_id.clone(),
        amount: request.trans_amount,
    };
    match settle(
        &app.shop,
        &number,
        &event,
        Some(audit(&app, "c2b_confirmation", &body)),
    )
    .await
    {
        Ok(Some(settled)) => {
            app.metrics.inc(
                "duka_mpesa_c2b_confirmations_total",
                &[("outcome", outcome_label(&settled.outcome))],
            );
            if !settled.outcome.flagged.is_empty() {
                tracing::warn!(flags = ?settled.outcome.flagged, "order {number} needs an operator: see `duka order {number}`");
            }
            if settled.outcome.became_paid {
                tracing::info!("order {number} paid by paybill");
                crate::durability::after_paid(&app, &number).await;
            }
            ack()
        }
        Ok(None) => {
            app.metrics.inc(
                "duka_mpesa_c2b_confirmations_total",
                &[("outcome", "unknown_account")],
            );
            let key = app.shop.keys.c2b_review(&request.trans_id);
            let mut batch = crate::store::Batch::new();
            batch.set(key, body.to_vec(), Some(crate::keys::ORDER_RETENTION_MS));
            let _ = app.shop.store.commit(&batch).await;
            tracing::error!(
                "paybill payment {} for an unknown account; kept for review",
                request.trans_id
            );
            ack()
        }
        Err(e) => {
            tracing::error!(error.message = %e, "could not record a C2B confirmation");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn the_caller_is_the_last_forwarded_hop_or_the_peer() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(caller(&headers, peer).to_string(), "10.0.0.5");
        headers.insert(
            "x-forwarded-for",
            "1.2.3.4, 196.201.214.200".parse().unwrap(),
        );
        assert_eq!(caller(&headers, peer).to_string(), "196.201.214.200");
    }
}
