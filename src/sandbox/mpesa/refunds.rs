//! The sandbox's Reversal (`/mpesa/reversal/v1/request`) and B2C (`/mpesa/b2c/v3/paymentrequest`)
//! APIs, with the failures integrators meet.
//!
//! The synchronous reply only takes the request; the result follows after `callback_delay` at
//! the request's `ResultURL`, or at its `QueueTimeOutURL` when the scripted outcome is a timeout.
//! - a wrong `Initiator`/`InitiatorName` or `SecurityCredential`: result `2001`;
//! - more than the organisation's balance: result `1` (the balance only grows by payments);
//! - a reversal of a receipt this sandbox never issued: result `R000002`, as a number `11`;
//! - an `OriginatorConversationID` seen before: the envelope `400.002.05` "Duplicate
//!   OriginatorConversationID" and nothing else happens (so a re-sent request pays out once);
//! - [`RefundOutcome`] scripts the rest: done, done with the result posted twice, a code, a
//!   timeout.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rust_decimal::Decimal;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use super::api::{daraja_call, Answer};
use super::checks::Refusal;
use super::deliver::{post_to_duka, result_desc};
use super::state::{Inner, State as SandboxState};
use super::CallbackKind;
use crate::mpesa::refunds::DUPLICATE_ORIGINATOR_CODE;
use crate::mpesa::Endpoint;

/// How the sandbox ends a refund request that passes its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefundOutcome {
    /// Result 0, posted once.
    #[default]
    Done,
    /// Result 0, posted twice (a duplicate result callback).
    DoneTwice,
    /// This result code.
    Code(i64),
    /// Only the queue timeout is posted.
    TimeOut,
}

/// One refund request the sandbox took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRefund {
    pub endpoint: Endpoint,
    pub originator_conversation_id: String,
    pub conversation_id: String,
    pub amount: Decimal,
    /// The receipt reversed, or the `Occasion` of a B2C payment.
    pub receipt: String,
    pub result_code: Option<i64>,
    pub body: Value,
}

pub(crate) async fn reversal(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    daraja_call(
        &inner,
        Endpoint::Reversal,
        &headers,
        &body,
        |inner, state, json| take(inner, state, json, Endpoint::Reversal),
    )
    .await
}

pub(crate) async fn b2c(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    daraja_call(
        &inner,
        Endpoint::B2c,
        &headers,
        &body,
        |inner, state, json| take(inner, state, json, Endpoint::B2c),
    )
    .await
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body[field]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn take(inner: &Arc<Inner>, state: &mut SandboxState, body: &Value, endpoint: Endpoint) -> Answer {
    let reversal = endpoint == Endpoint::Reversal;
    let (initiator_field, command) = if reversal {
        ("Initiator", "TransactionReversal")
    } else {
        ("InitiatorName", "BusinessPayment")
    };
    if body["CommandID"].as_str() != Some(command) {
        return Answer::refusal(state, &Refusal::invalid("CommandID"));
    }
    let Some(amount) = body["Amount"].as_u64().filter(|a| *a > 0) else {
        return Answer::refusal(state, &Refusal::invalid("Amount"));
    };
    let (Some(result_url), Some(timeout_url)) =
        (text(body, "ResultURL"), text(body, "QueueTimeOutURL"))
    else {
        return Answer::refusal(state, &Refusal::invalid("ResultURL"));
    };
    let receipt = if reversal {
        match text(body, "TransactionID") {
            Some(receipt) => receipt.to_owned(),
            None => return Answer::refusal(state, &Refusal::invalid("TransactionID")),
        }
    } else {
        if body["PartyB"]
            .as_u64()
            .is_none_or(|p| !(254_000_000_000..255_000_000_000).contains(&p))
        {
            return Answer::refusal(state, &Refusal::invalid("PartyB"));
        }
        text(body, "Occasion").unwrap_or_default().to_owned()
    };
    if reversal && body["RecieverIdentifierType"].as_str() != Some("11") {
        return Answer::refusal(state, &Refusal::invalid("RecieverIdentifierType"));
    }
    let ocid = text(body, "OriginatorConversationID")
        .map(str::to_owned)
        .unwrap_or_else(|| state.ids.originator_conversation_id());
    if state
        .refunds
        .iter()
        .any(|r| r.originator_conversation_id == ocid)
    {
        return Answer::json(
            StatusCode::BAD_REQUEST,
            &json!({
                "requestId": state.ids.request_id(),
                "errorCode": DUPLICATE_ORIGINATOR_CODE,
                "errorMessage": "Duplicate OriginatorConversationID",
            }),
        );
    }
    let amount = Decimal::from(amount);
    let initiator_ok = text(body, initiator_field) == Some(state.config.initiator_name.as_str())
        && text(body, "SecurityCredential")
            == Some(state.config.security_credential.expose_secret());
    let known_receipt = !reversal || state.ledger.contains_key(&receipt);
    let result_code = if !initiator_ok {
        Some(2001)
    } else if !known_receipt {
        Some(11)
    } else if amount > state.org_balance {
        Some(1)
    } else {
        match state.config.refund_outcome {
            RefundOutcome::Done | RefundOutcome::DoneTwice => Some(0),
            RefundOutcome::Code(code) => Some(code),
            RefundOutcome::TimeOut => None,
        }
    };
    if result_code == Some(0) {
        state.org_balance -= amount;
    }
    let conversation_id = format!("AG_{}", state.ids.originator_conversation_id());
    let now = state.config.clock.now();
    let transaction_id = state.ids.receipt(now);
    state.refunds.push(RecordedRefund {
        endpoint,
        originator_conversation_id: ocid.clone(),
        conversation_id: conversation_id.clone(),
        amount,
        receipt,
        result_code,
        body: body.clone(),
    });
    let times = if state.config.refund_outcome == RefundOutcome::DoneTwice && result_code == Some(0)
    {
        2
    } else {
        1
    };
    let (url, result) = match result_code {
        Some(code) => (
            result_url.to_owned(),
            json!({"Result": {
                "ResultType": 0,
                "ResultCode": code,
                "ResultDesc": match code {
                    11 => "The OriginalTransactionID is invalid.",
                    _ => result_desc(code),
                },
                "OriginatorConversationID": ocid,
                "ConversationID": conversation_id,
                "TransactionID": if code == 0 { transaction_id } else { String::new() },
            }}),
        ),
        None => (
            timeout_url.to_owned(),
            json!({"Result": {
                "ResultType": 1,
                "ResultCode": 1037,
                "ResultDesc": "The request timed out in the queue.",
                "OriginatorConversationID": ocid,
                "ConversationID": conversation_id,
            }}),
        ),
    };
    let kind = if reversal {
        CallbackKind::Reversal
    } else {
        CallbackKind::B2c
    };
    post_result_later(inner, state, kind, url, &result, times);
    accepted(&ocid, &conversation_id)
}

/// Posts `result` to `url` `times` times after the callback delay, as Daraja's asynchronous APIs
/// do (refunds, transaction status).
pub(crate) fn post_result_later(
    inner: &Arc<Inner>,
    state: &SandboxState,
    kind: CallbackKind,
    url: String,
    result: &Value,
    times: usize,
) {
    let delay = state.config.callback_delay;
    let timeout = state.config.callback_timeout;
    let task_inner = Arc::clone(inner);
    let body = result.to_string();
    inner.spawn(async move {
        tokio::time::sleep(delay).await;
        for _ in 0..times {
            let _ = post_to_duka(&task_inner, kind, &url, &body, timeout).await;
        }
    });
}

/// The synchronous answer of an asynchronous API: the request is taken.
pub(crate) fn accepted(ocid: &str, conversation_id: &str) -> Answer {
    Answer::json(
        StatusCode::OK,
        &json!({
            "OriginatorConversationID": ocid,
            "ConversationID": conversation_id,
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }),
    )
}
