//! The sandbox's routes: Daraja's paths, and two for a terminal phone in another process.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /oauth/v1/generate?grant_type=client_credentials` | token, Basic auth |
//! | `POST /mpesa/stkpush/v1/processrequest` | STK push |
//! | `POST /mpesa/stkpushquery/v1/query` | STK query |
//! | `POST /mpesa/c2b/v1/registerurl` | C2B URL registration |
//! | `POST /mpesa/c2b/v1/simulate` | a paybill payment, as Safaricom's sandbox offers |
//! | `POST /mpesa/reversal/v1/request` | reversal of a payment ([`super::refunds`]) |
//! | `POST /mpesa/b2c/v3/paymentrequest` | B2C payment ([`super::refunds`]) |
//! | `POST /mpesa/transactionstatus/v1/query` | what M-Pesa knows of a receipt ([`super::status`]) |
//! | `GET /sandbox/prompts[?phone=2547…]` | open interactive prompts (not Daraja) |
//! | `POST /sandbox/prompts/{CheckoutRequestID}` | `{"pin":"1234"}` or `{"cancel":true}` (not Daraja) |
//!
//! Every Daraja route records the request and its reply, and applies a queued fault first.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tracing::debug;

use super::checks::{self, Refusal, Rules};
use super::state::{Inner, OpenPrompt, State as SandboxState};
use super::{
    deliver, C2bRegistration, Fault, MsisdnStyle, PayBill, PhoneAnswer, Prompt, PromptAnswer,
    PromptEvent, RecordedPush, RecordedRequest,
};
use crate::mpesa::Endpoint;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(Endpoint::Token.path(), get(token))
        .route(Endpoint::StkPush.path(), post(stk_push))
        .route(Endpoint::StkQuery.path(), post(stk_query))
        .route(Endpoint::C2bRegister.path(), post(register_urls))
        .route(Endpoint::C2bSimulate.path(), post(simulate))
        .route(Endpoint::Reversal.path(), post(super::refunds::reversal))
        .route(Endpoint::B2c.path(), post(super::refunds::b2c))
        .route(
            Endpoint::TransactionStatus.path(),
            post(super::status::transaction_status),
        )
        .route("/sandbox/prompts", get(list_prompts))
        .route(
            "/sandbox/prompts/{checkout_request_id}",
            post(answer_prompt),
        )
        .fallback(not_found)
        .with_state(inner)
}

/// A reply, kept as text so that it can be recorded exactly as sent.
pub(crate) struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

impl Answer {
    pub(crate) fn json(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }

    fn html(status: StatusCode, page: &str) -> Self {
        Self {
            status,
            content_type: "text/html",
            body: page.to_owned(),
        }
    }

    /// Daraja's error envelope, with the HTTP status taken from the code.
    pub(crate) fn refusal(state: &mut SandboxState, refusal: &Refusal) -> Self {
        let status =
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::json(
            status,
            &json!({
                "requestId": state.ids.request_id(),
                "errorCode": refusal.code,
                "errorMessage": refusal.message,
            }),
        )
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

const UNAVAILABLE_PAGE: &str =
    "<html><head><title>503 Service Temporarily Unavailable</title></head><body><h1>503 Service Temporarily Unavailable</h1></body></html>";
const INTERNAL_ERROR_PAGE: &str =
    "<html><head><title>500 Internal Server Error</title></head><body><h1>500 Internal Server Error</h1></body></html>";

/// The answer of a fault that strikes before the request is processed.
fn fault_before_processing(inner: &Inner, fault: Option<Fault>) -> Option<Answer> {
    match fault? {
        Fault::Unavailable => Some(Answer::html(
            StatusCode::SERVICE_UNAVAILABLE,
            UNAVAILABLE_PAGE,
        )),
        Fault::Throttled => {
            // The body integrators report for Daraja's rate limit (Apigee's Spike Arrest).
            let mut state = inner.lock();
            Some(Answer::json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "requestId": state.ids.request_id(),
                    "errorCode": "500.003.02",
                    "errorMessage": "Error occurred: Spike Arrest Violation",
                }),
            ))
        }
        Fault::ErrorAfterProcessing | Fault::Hang(_) => None,
    }
}

/// Applies a fault that strikes after processing, records the exchange, and answers.
async fn finish(
    inner: &Inner,
    endpoint: Endpoint,
    body: &[u8],
    answer: Answer,
    fault: Option<Fault>,
) -> Response {
    let answer = match fault {
        Some(Fault::ErrorAfterProcessing) => {
            Answer::html(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR_PAGE)
        }
        _ => answer,
    };
    inner.record_request(RecordedRequest {
        at: inner.now(),
        endpoint,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(body).into_owned(),
        status: answer.status.as_u16(),
        reply: answer.body.clone(),
    });
    if let Some(Fault::Hang(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}

/// Runs a Daraja endpoint: fault, bearer check, JSON body, then `process`.
pub(crate) async fn daraja_call(
    inner: &Arc<Inner>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &Bytes,
    process: impl FnOnce(&Arc<Inner>, &mut SandboxState, &Value) -> Answer,
) -> Response {
    let fault = inner.take_fault(endpoint);
    let answer = match fault_before_processing(inner, fault) {
        Some(answer) => answer,
        None => {
            let mut state = inner.lock();
            match check_bearer(&state, headers) {
                Err(refusal) => Answer::refusal(&mut state, &refusal),
                Ok(()) => match serde_json::from_slice::<Value>(body) {
                    Ok(json) if json.is_object() => process(inner, &mut state, &json),
                    _ => Answer::refusal(&mut state, &Refusal::invalid("JSON")),
                },
            }
        }
    };
    finish(inner, endpoint, body, answer, fault).await
}

fn check_bearer(state: &SandboxState, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let now = state.config.clock.now();
    match token.and_then(|t| state.tokens.get(t)) {
        Some(expires_at) if now < *expires_at => Ok(()),
        _ => Err(Refusal {
            code: "404.001.03",
            message: "Invalid Access Token".into(),
        }),
    }
}

fn rules(state: &SandboxState) -> Rules {
    Rules {
        shortcode: state.config.shortcode.clone(),
        passkey: state.config.passkey.expose_secret().to_owned(),
        now: state.config.clock.now(),
        timestamp_skew: state.config.timestamp_skew,
        amount_cap: state.config.amount_cap,
        strict_urls: state.config.strict_urls,
        till: state.config.till.clone(),
    }
}

async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let endpoint = Endpoint::Token;
    let fault = inner.take_fault(endpoint);
    let answer = match fault_before_processing(&inner, fault) {
        Some(answer) => answer,
        None => issue_token(&inner, &headers, query.as_deref()),
    };
    finish(&inner, endpoint, &[], answer, fault).await
}

fn issue_token(inner: &Inner, headers: &HeaderMap, query: Option<&str>) -> Answer {
    let mut state = inner.lock();
    if query != Some("grant_type=client_credentials") {
        let refusal = Refusal {
            code: "400.008.02",
            message: "Invalid grant type passed".into(),
        };
        return Answer::refusal(&mut state, &refusal);
    }
    let expected = format!(
        "{}:{}",
        state.config.consumer_key,
        state.config.consumer_secret.expose_secret()
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        });
    if given.as_deref() != Some(expected.as_bytes()) {
        let refusal = Refusal {
            code: "400.008.01",
            message: "Invalid Authentication passed".into(),
        };
        return Answer::refusal(&mut state, &refusal);
    }
    let now = state.config.clock.now();
    let ttl = state.config.token_ttl;
    let expires_at = chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(now);
    state.tokens.retain(|_, until| *until > now);
    let token = state.ids.access_token();
    state.tokens.insert(token.clone(), expires_at);
    Answer::json(
        StatusCode::OK,
        &json!({"access_token": token, "expires_in": ttl.as_secs().to_string()}),
    )
}

async fn stk_push(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    daraja_call(&inner, Endpoint::StkPush, &headers, &body, accept_push).await
}

fn accept_push(inner: &Arc<Inner>, state: &mut SandboxState, body: &Value) -> Answer {
    let rules = rules(state);
    let push = match checks::check_push(body, &rules) {
        Ok(push) => push,
        Err(refusal) => return Answer::refusal(state, &refusal),
    };
    let phone = push.phone.digits().to_owned();
    if state.busy_phones.contains_key(&phone) {
        let refusal = Refusal::refused(
            "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        );
        return Answer::refusal(state, &refusal);
    }

    let now = rules.now;
    let outcome = state
        .outcomes
        .get(&phone)
        .cloned()
        .unwrap_or_else(|| state.config.default_outcome.clone());
    let merchant_request_id = state.ids.merchant_request_id();
    let checkout_request_id = state.ids.checkout_request_id(now);
    let prompt = (outcome.answer == PhoneAnswer::Interactive).then(|| Prompt {
        checkout_request_id: checkout_request_id.clone(),
        phone: push.phone.clone(),
        amount: push.amount,
        // A till's prompt names the till and no account.
        account_reference: match rules.till {
            Some(_) => String::new(),
            None => push.account_reference.clone(),
        },
        shortcode: rules
            .till
            .clone()
            .unwrap_or_else(|| rules.shortcode.clone()),
        opened_at: now,
    });
    state.record_push(RecordedPush {
        checkout_request_id: checkout_request_id.clone(),
        merchant_request_id: merchant_request_id.clone(),
        phone: push.phone.clone(),
        amount: push.amount,
        account_reference: push.account_reference,
        description: push.description,
        callback_url: push.callback_url,
        outcome,
        accepted_at: now,
        result_code: None,
        receipt: None,
    });
    state.busy_phones.insert(phone, checkout_request_id.clone());
    let answer_rx = prompt.map(|prompt| {
        let (answer, answer_rx) = oneshot::channel();
        state.open_prompts.insert(
            checkout_request_id.clone(),
            OpenPrompt {
                prompt: prompt.clone(),
                answer,
            },
        );
        // Nobody listening is fine: the terminal phone may not be running.
        let _ = inner.prompt_events.send(PromptEvent::Opened(prompt));
        answer_rx
    });
    debug!(
        mpesa.checkout_request_id = %checkout_request_id,
        msisdn.masked = %push.phone,
        "sandbox accepted an STK push for checkout {checkout_request_id}"
    );
    inner.spawn(deliver::run_push(
        Arc::clone(inner),
        checkout_request_id.clone(),
        answer_rx,
    ));
    inner.changed();
    Answer::json(
        StatusCode::OK,
        &json!({
            "MerchantRequestID": merchant_request_id,
            "CheckoutRequestID": checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        }),
    )
}

async fn stk_query(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    daraja_call(&inner, Endpoint::StkQuery, &headers, &body, answer_query).await
}

fn answer_query(_inner: &Arc<Inner>, state: &mut SandboxState, body: &Value) -> Answer {
    let rules = rules(state);
    let checkout_request_id = match checks::check_query(body, &rules) {
        Ok(id) => id,
        Err(refusal) => return Answer::refusal(state, &refusal),
    };
    let Some(result_queried) = state
        .transactions
        .get(&checkout_request_id)
        .map(|t| Arc::clone(&t.result_queried))
    else {
        return Answer::refusal(state, &Refusal::invalid("CheckoutRequestID"));
    };
    let Some(push) = state.push_mut(&checkout_request_id) else {
        return Answer::refusal(state, &Refusal::invalid("CheckoutRequestID"));
    };
    let Some(result_code) = push.result_code else {
        return Answer::refusal(
            state,
            &Refusal::refused("The transaction is being processed"),
        );
    };
    // Releases a callback held for `Delivery::AfterQuery`.
    result_queried.notify_one();
    Answer::json(
        StatusCode::OK,
        &json!({
            "ResponseCode": "0",
            // Daraja's own spelling.
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": push.merchant_request_id,
            "CheckoutRequestID": push.checkout_request_id,
            "ResultCode": result_code.to_string(),
            "ResultDesc": deliver::result_desc(result_code),
        }),
    )
}

async fn register_urls(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    daraja_call(&inner, Endpoint::C2bRegister, &headers, &body, register).await
}

fn register(_inner: &Arc<Inner>, state: &mut SandboxState, body: &Value) -> Answer {
    let registration =
        match checks::check_registration(body, &state.config.shortcode, state.config.strict_urls) {
            Ok(registration) => registration,
            Err(refusal) => return Answer::refusal(state, &refusal),
        };
    state.c2b = Some(C2bRegistration {
        response_type: registration.response_type,
        confirmation_url: registration.confirmation_url,
        validation_url: registration.validation_url,
    });
    Answer::json(
        StatusCode::OK,
        &json!({
            // Safaricom's spelling.
            "OriginatorCoversationID": state.ids.originator_conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        }),
    )
}

async fn simulate(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    daraja_call(
        &inner,
        Endpoint::C2bSimulate,
        &headers,
        &body,
        start_payment,
    )
    .await
}

fn start_payment(inner: &Arc<Inner>, state: &mut SandboxState, body: &Value) -> Answer {
    let simulation =
        match checks::check_simulation(body, &state.config.shortcode, state.config.amount_cap) {
            Ok(simulation) => simulation,
            Err(refusal) => return Answer::refusal(state, &refusal),
        };
    if state.c2b.is_none() {
        let refusal = Refusal {
            code: "400.002.02",
            message: "Bad Request - No URLs registered for the ShortCode".into(),
        };
        return Answer::refusal(state, &refusal);
    }
    let payment = PayBill {
        account: simulation.bill_ref_number,
        amount: simulation.amount.to_string(),
        phone: simulation.phone.digits().to_owned(),
        first_name: "JANE".into(),
        msisdn_style: MsisdnStyle::Hashed,
        confirmations: 1,
    };
    let task_inner = Arc::clone(inner);
    inner.spawn(async move {
        // The outcome is recorded with the callbacks; simulate's caller has had its reply.
        let _ = deliver::pay_bill(&task_inner, payment).await;
    });
    Answer::json(
        StatusCode::OK,
        &json!({
            "OriginatorCoversationID": state.ids.originator_conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }),
    )
}

async fn list_prompts(
    State(inner): State<Arc<Inner>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let phone = params
        .get("phone")
        .map(|p| p.trim().trim_start_matches('+'));
    let mut prompts: Vec<Value> = inner
        .lock()
        .open_prompts
        .values()
        .filter(|open| phone.is_none_or(|p| open.prompt.phone.digits() == p))
        .map(|open| {
            let prompt = &open.prompt;
            json!({
                "CheckoutRequestID": prompt.checkout_request_id,
                "PhoneNumber": prompt.phone.digits(),
                "Amount": prompt.amount,
                "AccountReference": prompt.account_reference,
                "BusinessShortCode": prompt.shortcode,
                "OpenedAt": prompt.opened_at.to_rfc3339(),
                "Text": prompt.text(),
            })
        })
        .collect();
    prompts.sort_by(|a, b| a["OpenedAt"].as_str().cmp(&b["OpenedAt"].as_str()));
    Answer::json(StatusCode::OK, &json!({ "prompts": prompts })).into_response()
}

async fn answer_prompt(
    State(inner): State<Arc<Inner>>,
    Path(checkout_request_id): Path<String>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = if request.get("cancel").and_then(Value::as_bool) == Some(true) {
        PromptAnswer::Cancel
    } else if let Some(pin) = request.get("pin").and_then(Value::as_str) {
        PromptAnswer::Pin(pin.to_owned())
    } else {
        let error = json!({"error": "send {\"pin\":\"…\"} or {\"cancel\":true}"});
        return Answer::json(StatusCode::BAD_REQUEST, &error).into_response();
    };
    match inner.answer_prompt(&checkout_request_id, answer) {
        Ok(result_code) => {
            Answer::json(StatusCode::OK, &json!({ "ResultCode": result_code })).into_response()
        }
        Err(e) => {
            Answer::json(StatusCode::NOT_FOUND, &json!({"error": e.to_string()})).into_response()
        }
    }
}

async fn not_found(State(inner): State<Arc<Inner>>) -> Response {
    let mut state = inner.lock();
    let refusal = Refusal {
        code: "404.001.01",
        message: "Resource not found".into(),
    };
    Answer::refusal(&mut state, &refusal).into_response()
}
