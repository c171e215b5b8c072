//! The sandbox's Transaction Status API (`/mpesa/transactionstatus/v1/query`): what M-Pesa knows
//! of a receipt, posted later to the query's `ResultURL`.
//!
//! It knows every payment that moved money here (STK and paybill, lost confirmations included:
//! that is what the API is for) and answers with the parameters of `reference-status.md`:
//! - a wrong `Initiator` or `SecurityCredential`: result `2001`;
//! - a receipt it never issued: result `2032` "The transaction receipt number does not exist.";
//! - [`StatusOutcome`] scripts the rest: answered, answered twice, a queue timeout.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};

use super::api::{daraja_call, Answer};
use super::checks::Refusal;
use super::state::{Inner, State as SandboxState};
use super::CallbackKind;
use crate::mpesa::clock::eat_timestamp;
use crate::mpesa::Endpoint;

/// How the sandbox ends a status query that passes its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusOutcome {
    /// The result, posted once.
    #[default]
    Answered,
    /// The result, posted twice (a duplicate result callback).
    AnsweredTwice,
    /// Only the queue timeout is posted.
    TimeOut,
}

pub(crate) async fn transaction_status(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    daraja_call(&inner, Endpoint::TransactionStatus, &headers, &body, take).await
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body[field]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn take(inner: &Arc<Inner>, state: &mut SandboxState, body: &Value) -> Answer {
    if body["CommandID"].as_str() != Some("TransactionStatusQuery") {
        return Answer::refusal(state, &Refusal::invalid("CommandID"));
    }
    let Some(receipt) = text(body, "TransactionID").map(str::to_owned) else {
        return Answer::refusal(state, &Refusal::invalid("TransactionID"));
    };
    if body["IdentifierType"].as_str() != Some("4") {
        return Answer::refusal(state, &Refusal::invalid("IdentifierType"));
    }
    let party = state
        .config
        .till
        .clone()
        .unwrap_or(state.config.shortcode.clone());
    if body["PartyA"].as_u64().map(|p| p.to_string()) != Some(party.clone()) {
        return Answer::refusal(state, &Refusal::invalid("PartyA"));
    }
    let (Some(result_url), Some(timeout_url)) =
        (text(body, "ResultURL"), text(body, "QueueTimeOutURL"))
    else {
        return Answer::refusal(state, &Refusal::invalid("ResultURL"));
    };
    let occasion = text(body, "Occasion").unwrap_or_default().to_owned();
    let ocid = state.ids.originator_conversation_id();
    let conversation_id = format!("AG_{}", state.ids.originator_conversation_id());
    let initiator_ok = text(body, "Initiator") == Some(state.config.initiator_name.as_str())
        && text(body, "SecurityCredential")
            == Some(state.config.security_credential.expose_secret());
    let reference = json!({"ReferenceItem": {"Key": "Occasion", "Value": occasion}});
    let envelope = |code: i64, desc: &str| {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": ocid,
            "ConversationID": conversation_id,
            "TransactionID": receipt,
            "ReferenceData": reference,
        }})
    };
    let outcome = state.config.status_outcome;
    let (url, result) = if outcome == StatusOutcome::TimeOut {
        let mut timeout = envelope(1037, "The request timed out in the queue.");
        timeout["Result"]["ResultType"] = Value::from(1);
        (timeout_url.to_owned(), timeout)
    } else if !initiator_ok {
        (
            result_url.to_owned(),
            envelope(2001, "The initiator information is invalid."),
        )
    } else if let Some(paid) = state.ledger.get(&receipt) {
        let mut found = envelope(0, "The service request is processed successfully.");
        let at = eat_timestamp(paid.at);
        found["Result"]["ResultParameters"] = json!({"ResultParameter": [
            {"Key": "DebitPartyName", "Value": format!("{} - JANE DOE", paid.phone)},
            {"Key": "CreditPartyName", "Value": format!("{party} - DUKA SANDBOX")},
            {"Key": "OriginatorConversationID", "Value": state.ids.originator_conversation_id()},
            {"Key": "InitiatedTime", "Value": at.parse::<u64>().unwrap_or_default()},
            {"Key": "DebitAccountType", "Value": "MMF Account For Customer"},
            {"Key": "TransactionReason"},
            {"Key": "ReasonType", "Value": paid.reason_type},
            {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "FinalisedTime", "Value": at.parse::<u64>().unwrap_or_default()},
            {"Key": "Amount", "Value": paid.amount.to_string().parse::<f64>().unwrap_or_default()},
            {"Key": "ConversationID", "Value": conversation_id},
            {"Key": "ReceiptNo", "Value": receipt},
        ]});
        (result_url.to_owned(), found)
    } else {
        (
            result_url.to_owned(),
            envelope(2032, "The transaction receipt number does not exist."),
        )
    };
    let times = if outcome == StatusOutcome::AnsweredTwice {
        2
    } else {
        1
    };
    super::refunds::post_result_later(inner, state, CallbackKind::Status, url, &result, times);
    super::refunds::accepted(&ocid, &conversation_id)
}
