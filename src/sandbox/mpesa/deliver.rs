//! What the sandbox sends to Duka: STK callbacks after the phone answers, and the C2B
//! validation and confirmation of a paybill payment.
//!
//! The STK callback body is written by hand rather than through `serde_json::Value`, because
//! Daraja's `Amount` is sometimes `450.00`, which a JSON value would normalise to `450.0`.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};
use tracing::{debug, warn};

use super::ids::{fake_msisdn_hash, masked_msisdn};
use super::state::{Inner, Ledgered};
use super::{
    AmountFormat, CallbackKind, Delivery, HttpReply, MsisdnStyle, PayBill, PayBillOutcome,
    PayBillResult, PhoneAnswer, RecordedCallback, RecordedPush, SandboxError,
};
use crate::mpesa::callbacks::C2bValidationReply;
use crate::mpesa::clock::eat_timestamp;

/// The result code for a phone that never answers an interactive prompt.
const SILENT_PHONE: i64 = 1037;

/// The life of an accepted push: the phone answers, then the callback goes out as scripted.
pub(crate) async fn run_push(
    inner: Arc<Inner>,
    checkout_request_id: String,
    prompt: Option<oneshot::Receiver<i64>>,
) {
    let Some((answer, callback_delay, prompt_timeout)) = ({
        let mut state = inner.lock();
        let (callback_delay, prompt_timeout) =
            (state.config.callback_delay, state.config.prompt_timeout);
        state
            .push_mut(&checkout_request_id)
            .map(|push| (push.outcome.answer.clone(), callback_delay, prompt_timeout))
    }) else {
        return;
    };

    let result_code = match (answer, prompt) {
        (PhoneAnswer::Interactive, Some(prompt)) => {
            wait_for_person(&inner, &checkout_request_id, prompt, prompt_timeout).await
        }
        (PhoneAnswer::Code(code), _) => {
            tokio::time::sleep(callback_delay).await;
            code
        }
        (PhoneAnswer::Interactive, None) => SILENT_PHONE,
    };

    let Some(callback) = finish_push(&inner, &checkout_request_id, result_code) else {
        return;
    };
    match callback.delivery {
        Delivery::Normal => send_stk_callback(&inner, &callback).await,
        Delivery::Drop => {
            debug!(
                mpesa.checkout_request_id = %checkout_request_id,
                "sandbox drops the STK callback of {checkout_request_id}, as scripted"
            );
        }
        Delivery::Twice => {
            send_stk_callback(&inner, &callback).await;
            send_stk_callback(&inner, &callback).await;
        }
        Delivery::Late(delay) => {
            tokio::time::sleep(delay).await;
            send_stk_callback(&inner, &callback).await;
        }
        Delivery::AfterQuery => {
            callback.result_queried.notified().await;
            send_stk_callback(&inner, &callback).await;
        }
    }
}

async fn wait_for_person(
    inner: &Inner,
    checkout_request_id: &str,
    mut prompt: oneshot::Receiver<i64>,
    prompt_timeout: Duration,
) -> i64 {
    tokio::select! {
        answered = &mut prompt => answered.unwrap_or(SILENT_PHONE),
        () = tokio::time::sleep(prompt_timeout) => {
            let still_open = inner.lock().open_prompts.remove(checkout_request_id).is_some();
            if still_open {
                inner.close_prompt(checkout_request_id, SILENT_PHONE);
                SILENT_PHONE
            } else {
                // Answered just as the time ran out: the answer is on its way.
                prompt.await.unwrap_or(SILENT_PHONE)
            }
        }
    }
}

/// An STK callback ready to send, and how.
struct StkCallbackToSend {
    url: String,
    body: String,
    delivery: Delivery,
    result_queried: Arc<Notify>,
}

/// Records the phone's answer (which the query reports from now on), frees the phone for the
/// next push, and writes the callback body.
fn finish_push(
    inner: &Inner,
    checkout_request_id: &str,
    result_code: i64,
) -> Option<StkCallbackToSend> {
    let mut state = inner.lock();
    let result_queried = state
        .transactions
        .get(checkout_request_id)
        .map(|t| Arc::clone(&t.result_queried))?;
    let now = state.config.clock.now();
    let receipt = (result_code == 0).then(|| state.ids.receipt(now));
    let reason_type = if state.config.till.is_some() {
        "Buy Goods Online"
    } else {
        "Pay Bill Online"
    };
    let two_decimals = match state.config.amount_format {
        AmountFormat::Integer => false,
        AmountFormat::TwoDecimals => true,
        AmountFormat::Mixed => state.ids.coin(),
    };
    let push = state.push_mut(checkout_request_id)?;
    push.result_code = Some(result_code);
    push.receipt.clone_from(&receipt);
    let ledgered = receipt.clone().map(|receipt| {
        (
            receipt,
            Ledgered {
                amount: Decimal::from(push.amount),
                reason_type,
                phone: push.phone.digits().to_owned(),
                at: now,
            },
        )
    });
    let body = stk_callback_body(push, result_code, receipt.as_deref(), now, two_decimals);
    let url = push.callback_url.clone();
    let delivery = push.outcome.delivery.clone();
    let phone = push.phone.digits().to_owned();
    if state.busy_phones.get(&phone).map(String::as_str) == Some(checkout_request_id) {
        state.busy_phones.remove(&phone);
    }
    if let Some((receipt, ledgered)) = ledgered {
        state.ledger.insert(receipt, ledgered);
    }
    drop(state);
    inner.changed();
    Some(StkCallbackToSend {
        url,
        body,
        delivery,
        result_queried,
    })
}

async fn send_stk_callback(inner: &Inner, callback: &StkCallbackToSend) {
    let timeout = inner.lock().config.callback_timeout;
    // Daraja does not act on Duka's answer (no retry is known); it is only recorded.
    let _ = post_to_duka(
        inner,
        CallbackKind::Stk,
        &callback.url,
        &callback.body,
        timeout,
    )
    .await;
}

/// Daraja's `ResultDesc` for a code, as integrators have seen them.
pub(crate) fn result_desc(result_code: i64) -> &'static str {
    match result_code {
        0 => "The service request is processed successfully.",
        1 => "The balance is insufficient for the transaction.",
        17 => "System internal error.",
        1001 => "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        1019 => "Transaction has expired",
        1025 | 9999 => "An error occurred while sending a push request",
        1032 => "Request cancelled by user",
        1037 => "DS timeout user cannot be reached",
        2001 => "The initiator information is invalid.",
        _ => "The transaction could not be completed.",
    }
}

fn stk_callback_body(
    push: &RecordedPush,
    result_code: i64,
    receipt: Option<&str>,
    now: DateTime<Utc>,
    two_decimals: bool,
) -> String {
    let text = |s: &str| Value::from(s).to_string();
    let metadata = match receipt {
        Some(receipt) => {
            let amount = if two_decimals {
                format!("{}.00", push.amount)
            } else {
                push.amount.to_string()
            };
            format!(
                r#","CallbackMetadata":{{"Item":[{{"Name":"Amount","Value":{amount}}},{{"Name":"MpesaReceiptNumber","Value":{receipt}}},{{"Name":"Balance"}},{{"Name":"TransactionDate","Value":{date}}},{{"Name":"PhoneNumber","Value":{phone}}}]}}"#,
                receipt = text(receipt),
                date = eat_timestamp(now),
                phone = push.phone.digits(),
            )
        }
        None => String::new(),
    };
    format!(
        r#"{{"Body":{{"stkCallback":{{"MerchantRequestID":{merchant},"CheckoutRequestID":{checkout},"ResultCode":{result_code},"ResultDesc":{desc}{metadata}}}}}}}"#,
        merchant = text(&push.merchant_request_id),
        checkout = text(&push.checkout_request_id),
        desc = text(result_desc(result_code)),
    )
}

/// POSTs a body to Duka and records the call with Duka's reply.
pub(crate) async fn post_to_duka(
    inner: &Inner,
    kind: CallbackKind,
    url: &str,
    body: &str,
    timeout: Duration,
) -> Result<HttpReply, String> {
    const KEEP: usize = 4096;
    let sent = inner
        .http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .timeout(timeout)
        .body(body.to_owned())
        .send()
        .await;
    let reply = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(mut text) => {
                    if text.len() > KEEP {
                        let cut = (0..=KEEP)
                            .rev()
                            .find(|i| text.is_char_boundary(*i))
                            .unwrap_or(0);
                        text.truncate(cut);
                    }
                    Ok(HttpReply { status, body: text })
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match &reply {
        Ok(answer) => debug!(
            sandbox.callback = ?kind,
            http.status = answer.status,
            "sandbox sent a {kind:?} callback; Duka answered {}", answer.status
        ),
        Err(error) => warn!(
            sandbox.callback = ?kind,
            error.message = %error,
            "sandbox sent a {kind:?} callback and got no answer"
        ),
    }
    inner.record_callback(RecordedCallback {
        at: inner.now(),
        kind,
        url: url.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        raw_body: body.to_owned(),
        reply: reply.clone(),
    });
    reply
}

/// A paybill payment (or, in till mode, a Buy Goods payment with no account): validation if
/// enabled, `ResponseType` when it fails, then confirmation.
pub(crate) async fn pay_bill(
    inner: &Inner,
    payment: PayBill,
) -> Result<PayBillOutcome, SandboxError> {
    let amount = Decimal::from_str(payment.amount.trim())
        .ok()
        .filter(|a| *a > Decimal::ZERO)
        .ok_or_else(|| SandboxError::InvalidAmount(payment.amount.clone()))?;
    let (registration, shortcode, validation, validation_timeout, callback_timeout, trans_id, now) = {
        let mut state = inner.lock();
        let registration = state.c2b.clone().ok_or(SandboxError::NoC2bUrls)?;
        let now = state.config.clock.now();
        let trans_id = state.ids.receipt(now);
        (
            registration,
            // A till's payments name the till and carry no account (`BillRefNumber` "").
            state.config.till.clone().map_or_else(
                || ("Pay Bill", state.config.shortcode.clone()),
                |till| ("Buy Goods", till),
            ),
            state.config.c2b_validation,
            state.config.validation_timeout,
            state.config.callback_timeout,
            trans_id,
            now,
        )
    };
    let msisdn = match payment.msisdn_style {
        MsisdnStyle::Hashed => fake_msisdn_hash(&payment.phone),
        MsisdnStyle::Masked => masked_msisdn(&payment.phone),
    };
    let (transaction_type, shortcode) = shortcode;
    let account = if transaction_type == "Buy Goods" {
        String::new()
    } else {
        payment.account
    };
    let mut body = json!({
        "TransactionType": transaction_type,
        "TransID": trans_id,
        "TransTime": eat_timestamp(now),
        "TransAmount": format!("{amount:.2}"),
        "BusinessShortCode": shortcode,
        "BillRefNumber": account,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": msisdn,
        "FirstName": payment.first_name,
        "MiddleName": "",
        "LastName": "",
    });

    if validation {
        let reply = post_to_duka(
            inner,
            CallbackKind::C2bValidation,
            &registration.validation_url,
            &body.to_string(),
            validation_timeout,
        )
        .await;
        // M-Pesa only trusts a 2xx with a readable code; anything else counts as no answer.
        let verdict = reply
            .ok()
            .filter(|r| (200..300).contains(&r.status))
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|v| C2bValidationReply::from_json(&v));
        match verdict {
            Some(C2bValidationReply::Accept { .. }) => {}
            Some(C2bValidationReply::Reject(code)) => {
                return Ok(PayBillOutcome {
                    trans_id,
                    result: PayBillResult::Rejected(code),
                })
            }
            None if registration.response_type == "Cancelled" => {
                return Ok(PayBillOutcome {
                    trans_id,
                    result: PayBillResult::Cancelled,
                })
            }
            None => {}
        }
    }

    let balance = {
        let mut state = inner.lock();
        state.org_balance += amount;
        let ledgered = Ledgered {
            amount,
            reason_type: if transaction_type == "Buy Goods" {
                "Buy Goods"
            } else {
                "Pay Bill"
            },
            phone: payment.phone.clone(),
            at: now,
        };
        state.ledger.insert(trans_id.clone(), ledgered);
        state.org_balance
    };
    body["OrgAccountBalance"] = Value::from(format!("{balance:.2}"));
    body["TransTime"] = Value::from(eat_timestamp(inner.now()));
    let body = body.to_string();
    // No confirmation at all (`confirmations: 0`) is the one lost while Duka was down: the
    // money moved, Duka never heard (`duka mpesa find` is how it learns).
    for _ in 0..payment.confirmations {
        // No check on the confirmation's answer is known; it is only recorded.
        let _ = post_to_duka(
            inner,
            CallbackKind::C2bConfirmation,
            &registration.confirmation_url,
            &body,
            callback_timeout,
        )
        .await;
    }
    Ok(PayBillOutcome {
        trans_id,
        result: PayBillResult::Confirmed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpesa::StkCallback;
    use crate::msisdn::Msisdn;

    fn push() -> RecordedPush {
        RecordedPush {
            checkout_request_id: "ws_CO_24112026143006417712345678".into(),
            merchant_request_id: "29461-71235519-1".into(),
            phone: Msisdn::parse("254712345678").unwrap(),
            amount: 450,
            account_reference: "DK10427".into(),
            description: "Duka DK10427".into(),
            callback_url: "http://127.0.0.1:1/cb".into(),
            outcome: super::super::Outcome::paid(),
            accepted_at: at(),
            result_code: None,
            receipt: None,
        }
    }

    fn at() -> DateTime<Utc> {
        "2026-11-24T11:30:41Z".parse().unwrap()
    }

    #[test]
    fn a_success_callback_matches_the_reference_byte_for_byte_in_its_metadata() {
        let body = stk_callback_body(&push(), 0, Some("QKH94M1Z11"), at(), true);
        assert_eq!(
            body,
            concat!(
                r#"{"Body":{"stkCallback":{"MerchantRequestID":"29461-71235519-1","#,
                r#""CheckoutRequestID":"ws_CO_24112026143006417712345678","ResultCode":0,"#,
                r#""ResultDesc":"The service request is processed successfully.","#,
                r#""CallbackMetadata":{"Item":[{"Name":"Amount","Value":450.00},"#,
                r#"{"Name":"MpesaReceiptNumber","Value":"QKH94M1Z11"},{"Name":"Balance"},"#,
                r#"{"Name":"TransactionDate","Value":20261124143041},"#,
                r#"{"Name":"PhoneNumber","Value":254712345678}]}}}}"#
            )
        );
        let parsed = StkCallback::parse(body.as_bytes()).unwrap();
        assert_eq!(
            parsed.metadata.unwrap().mpesa_receipt_number.as_deref(),
            Some("QKH94M1Z11")
        );
    }

    #[test]
    fn a_failure_callback_has_no_metadata_and_a_numeric_code() {
        let body = stk_callback_body(&push(), 1032, None, at(), false);
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["Body"]["stkCallback"]["ResultCode"], json!(1032));
        assert_eq!(
            value["Body"]["stkCallback"]["ResultDesc"],
            json!("Request cancelled by user")
        );
        assert!(value["Body"]["stkCallback"]
            .get("CallbackMetadata")
            .is_none());
    }

    #[test]
    fn an_integer_amount_is_written_without_decimals() {
        let body = stk_callback_body(&push(), 0, Some("QKH94M1Z11"), at(), false);
        assert!(body.contains(r#"{"Name":"Amount","Value":450}"#));
    }
}
