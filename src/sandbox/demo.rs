//! The demo's sandbox controls on `duka serve`'s own port, so a terminal phone (`duka dial
//! --url`) or a web phone in another process can play the shopper's handset.
//!
//! They exist only while the built-in sandboxes run in the server's process, and answer
//! loopback callers only ([`crate::operator::loopback`]); on a production server every one of
//! them is a 404.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /sandbox` | which sandboxes run: `{"mpesa":{"pin":…},"sms":{}}`, fields absent when not |
//! | `POST /sandbox/mpesa/interactive` `{"phone":…}` | pushes to that phone now wait for a person (other phones keep answering by themselves) |
//! | `GET /sandbox/mpesa/prompts?phone=…` | the phone's open PIN prompts, oldest first |
//! | `POST /sandbox/mpesa/prompts/{CheckoutRequestID}` `{"pin":…}` or `{"cancel":true}` | answers one: the right PIN pays (0), another is 2001, cancel is 1032 |
//! | `POST /sandbox/mpesa/c2b` `{"phone","account","amount"}` | a paybill payment: validation, then confirmation, sent to Duka as Safaricom sends them |
//! | `GET /sandbox/sms/inbox?phone=…` | the SMS the SMS sandbox delivered to that phone, oldest first |
//!
//! An unanswered prompt ends by itself after the sandbox's `prompt_timeout` (1037), like the
//! real one.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::mpesa::{MpesaSandbox, Outcome, PayBill, PayBillResult, Prompt, PromptAnswer};
use super::sms::SmsSandbox;
use crate::msisdn::Msisdn;
use crate::startup::AppState;

/// How long an answer waits for Duka to note the push it answers: a PIN typed within a moment
/// of the prompt would otherwise reach Duka before it knows the push.
const NOTED_WITHIN: Duration = Duration::from_secs(5);

/// The demo's sandbox routes, loopback only.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox", get(about))
        .route("/sandbox/mpesa/interactive", post(interactive))
        .route("/sandbox/mpesa/prompts", get(prompts))
        .route("/sandbox/mpesa/prompts/{checkout_request_id}", post(answer))
        .route("/sandbox/mpesa/c2b", post(pay_bill))
        .route("/sandbox/sms/inbox", get(inbox))
        .layer(axum::middleware::from_fn(crate::operator::loopback::only))
}

/// Why a request was refused: a status and, except for a bare 404, a message in JSON.
struct Refusal {
    status: StatusCode,
    message: Option<String>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self.message {
            Some(message) => (self.status, Json(json!({ "error": message }))).into_response(),
            None => self.status.into_response(),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: Some(message.into()),
    }
}

/// No such sandbox here: the same bare 404 as an unknown path.
fn absent() -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        message: None,
    }
}

type Answer = Result<Json<Value>, Refusal>;

fn mpesa(app: &AppState) -> Result<&MpesaSandbox, Refusal> {
    app.sandboxes.mpesa.as_deref().ok_or_else(absent)
}

fn sms(app: &AppState) -> Result<&SmsSandbox, Refusal> {
    app.sandboxes.sms.as_deref().ok_or_else(absent)
}

fn phone(raw: Option<&str>) -> Result<Msisdn, Refusal> {
    let raw = raw.ok_or_else(|| error(StatusCode::BAD_REQUEST, "give ?phone=07…"))?;
    Msisdn::parse(raw).map_err(|e| error(StatusCode::BAD_REQUEST, format!("phone {raw:?}: {e}")))
}

#[derive(Deserialize)]
struct PhoneQuery {
    phone: Option<String>,
}

/// `GET /sandbox`: what a phone can drive here.
async fn about(State(app): State<AppState>) -> Answer {
    if app.sandboxes.mpesa.is_none() && app.sandboxes.sms.is_none() {
        return Err(absent());
    }
    let mut about = json!({});
    if let Some(mpesa) = &app.sandboxes.mpesa {
        about["mpesa"] = json!({
            "pin": mpesa.pin(),
            "paybill": mpesa.shortcode(),
            "prompt_timeout_s": mpesa.config().prompt_timeout.as_secs(),
        });
    }
    if app.sandboxes.sms.is_some() {
        about["sms"] = json!({});
    }
    Ok(Json(about))
}

/// `POST /sandbox/mpesa/interactive`: this phone's pushes wait for a person.
async fn interactive(State(app): State<AppState>, Json(body): Json<PhoneQuery>) -> Answer {
    let mpesa = mpesa(&app)?;
    let phone = phone(body.phone.as_deref())?;
    mpesa.set_outcome_for(&phone, Outcome::interactive());
    Ok(Json(json!({
        "phone": phone.digits(),
        "pin": mpesa.pin(),
        "prompt_timeout_s": mpesa.config().prompt_timeout.as_secs(),
    })))
}

fn prompt_json(prompt: &Prompt) -> Value {
    json!({
        "CheckoutRequestID": prompt.checkout_request_id,
        "PhoneNumber": prompt.phone.digits(),
        "Amount": prompt.amount,
        "AccountReference": prompt.account_reference,
        "BusinessShortCode": prompt.shortcode,
        "OpenedAt": prompt.opened_at.to_rfc3339(),
        "Text": prompt.text(),
    })
}

/// `GET /sandbox/mpesa/prompts?phone=…`
async fn prompts(State(app): State<AppState>, Query(query): Query<PhoneQuery>) -> Answer {
    let mpesa = mpesa(&app)?;
    let phone = phone(query.phone.as_deref())?;
    let prompts: Vec<Value> = mpesa
        .prompts()
        .iter()
        .filter(|p| p.phone == phone)
        .map(prompt_json)
        .collect();
    Ok(Json(json!({ "prompts": prompts })))
}

#[derive(Deserialize)]
struct AnswerBody {
    pin: Option<String>,
    #[serde(default)]
    cancel: bool,
}

/// `POST /sandbox/mpesa/prompts/{id}`: the shopper types a PIN or cancels.
async fn answer(
    State(app): State<AppState>,
    Path(checkout_request_id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let mpesa = mpesa(&app)?;
    let answer = match serde_json::from_slice::<AnswerBody>(&body) {
        Ok(AnswerBody { cancel: true, .. }) => PromptAnswer::Cancel,
        Ok(AnswerBody { pin: Some(pin), .. }) => PromptAnswer::Pin(pin),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                r#"send {"pin":"…"} or {"cancel":true}"#,
            ))
        }
    };
    if !mpesa
        .prompts()
        .iter()
        .any(|p| p.checkout_request_id == checkout_request_id)
    {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no open prompt {checkout_request_id:?} (answered or timed out)"),
        ));
    }
    let deadline = tokio::time::Instant::now() + NOTED_WITHIN;
    let _ = crate::fixtures::replay::poll_until_async(deadline, || {
        crate::fixtures::replay::push_noted(&app.shop, &checkout_request_id)
    })
    .await;
    let code = mpesa
        .answer_prompt(&checkout_request_id, answer)
        .map_err(|e| error(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(Json(
        json!({ "ResultCode": code, "ResultDesc": result_desc(code) }),
    ))
}

/// The `ResultDesc` Daraja sends with these codes (see the Daraja reference).
fn result_desc(code: i64) -> &'static str {
    match code {
        0 => "The service request is processed successfully.",
        1032 => "Request cancelled by user",
        2001 => "The initiator information is invalid.",
        1037 => "DS timeout user cannot be reached",
        _ => "Not completed",
    }
}

#[derive(Deserialize)]
struct PayBillBody {
    phone: String,
    account: String,
    /// A decimal, as text or a number: `"450"`, `450`, `"450.00"`.
    amount: Value,
}

/// `POST /sandbox/mpesa/c2b`: the shopper pays the order at the paybill.
async fn pay_bill(State(app): State<AppState>, Json(body): Json<PayBillBody>) -> Answer {
    let mpesa = mpesa(&app)?;
    let phone = phone(Some(&body.phone))?;
    let amount = match &body.amount {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("amount must be a decimal, not {other}"),
            ))
        }
    };
    let payment = PayBill {
        phone: phone.digits().to_owned(),
        ..PayBill::new(body.account.trim(), amount)
    };
    let outcome = mpesa
        .pay_bill_with(payment)
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut reply = match outcome.result {
        PayBillResult::Confirmed => json!({ "result": "confirmed" }),
        PayBillResult::Rejected(code) => {
            json!({ "result": "rejected", "ResultCode": code.as_str() })
        }
        PayBillResult::Cancelled => json!({ "result": "cancelled" }),
    };
    reply["TransID"] = json!(outcome.trans_id);
    Ok(Json(reply))
}

/// `GET /sandbox/sms/inbox?phone=…`
async fn inbox(State(app): State<AppState>, Query(query): Query<PhoneQuery>) -> Answer {
    let sms = sms(&app)?;
    let phone = phone(query.phone.as_deref())?;
    let messages: Vec<Value> = sms
        .inbox(&phone)
        .iter()
        .map(|m| {
            json!({
                "id": m.message_id,
                "from": m.from,
                "text": m.text,
                "at": m.received_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(json!({ "messages": messages })))
}
