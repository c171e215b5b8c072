//! The sandbox's one route, `POST /version1/messaging`, answered the way AT answers it.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rust_decimal::Decimal;
use secrecy::ExposeSecret;

use super::segments::count_sms_segments;
use super::{reports, RecipientResult, RecordedRequest, SentSms, Shared, Step};
use crate::sms::africastalking::{status_name, PhoneNumber, MESSAGING_PATH};

/// AT's plain-text answer to a wrong `apiKey` or `username`.
const UNAUTHORIZED_TEXT: &str = "The supplied authentication is invalid";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(MESSAGING_PATH, post(messaging))
        .with_state(shared)
}

async fn messaging(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    // The work runs in its own task: hyper drops a handler whose client hung up, and what the
    // sandbox records must not depend on when that happened.
    match tokio::spawn(handle(shared, headers, body)).await {
        Ok(response) => response,
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SMS sandbox handler failed",
        ),
    }
}

/// What the checks before the script decided.
struct Arrival {
    request: RecordedRequest,
    numbers: Vec<String>,
    text: String,
    from: Option<String>,
    wants_json: bool,
}

async fn handle(shared: Arc<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let arrival = match check(&shared, &headers, &body) {
        Ok(arrival) => arrival,
        Err((mut request, status, text)) => {
            request.status = status.as_u16();
            record_request(&shared, request);
            return plain(status, text);
        }
    };
    let (whole, per_recipient) = shared.state().resolve(&arrival.numbers);
    match whole {
        Some(Step::FailRequest(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut request = arrival.request;
            request.step = whole;
            request.status = status.as_u16();
            record_request(&shared, request);
            let text = status.canonical_reason().unwrap_or("Error");
            return plain(status, if code == 401 { UNAUTHORIZED_TEXT } else { text });
        }
        Some(Step::TimeoutBeforeRecording(delay)) => {
            let mut request = arrival.request;
            request.step = whole;
            request.status = StatusCode::SERVICE_UNAVAILABLE.as_u16();
            record_request(&shared, request);
            tokio::time::sleep(delay).await;
            return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        Some(Step::SlowReply(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    let wants_json = arrival.wants_json;
    let reply = send_to_recipients(&shared, arrival, whole, &per_recipient);
    if let Some(Step::TimeoutAfterRecording(delay)) = whole {
        tokio::time::sleep(delay).await;
    }
    let mut response = if wants_json {
        (
            [(header::CONTENT_TYPE, "application/json")],
            reply.to_json(),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/xml")], reply.to_xml()).into_response()
    };
    *response.status_mut() = StatusCode::CREATED;
    response
}

/// The checks AT makes before it looks at recipients: credentials, body, required fields.
#[expect(
    clippy::result_large_err,
    reason = "called once per request; boxing the refusal would buy nothing"
)]
fn check(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Arrival, (RecordedRequest, StatusCode, &'static str)> {
    let api_key_ok = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|key| key == shared.api_key.expose_secret());
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| {
            ct.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let form: Option<Vec<(String, String)>> = if is_form {
        serde_urlencoded::from_bytes(body).ok()
    } else {
        None
    };
    let wants_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"));
    let request = RecordedRequest {
        received_at: shared.now(),
        headers: recorded_headers(headers),
        api_key_ok,
        form: form.clone().unwrap_or_default(),
        step: None,
        status: 0,
        recipients: Vec::new(),
    };
    if !api_key_ok {
        return Err((request, StatusCode::UNAUTHORIZED, UNAUTHORIZED_TEXT));
    }
    let Some(form) = form else {
        return Err((
            request,
            StatusCode::BAD_REQUEST,
            "The request body must be application/x-www-form-urlencoded",
        ));
    };
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    if field("username").as_deref() != Some(shared.username.as_str()) {
        return Err((request, StatusCode::UNAUTHORIZED, UNAUTHORIZED_TEXT));
    }
    let numbers: Vec<String> = field("to")
        .unwrap_or_default()
        .split(',')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if numbers.is_empty() {
        return Err((
            request,
            StatusCode::BAD_REQUEST,
            "Request is missing required form field 'to'",
        ));
    }
    let Some(text) = field("message") else {
        return Err((
            request,
            StatusCode::BAD_REQUEST,
            "Request is missing required form field 'message'",
        ));
    };
    Ok(Arrival {
        request,
        numbers,
        text,
        from: field("from").filter(|f| !f.trim().is_empty()),
        wants_json,
    })
}

fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if name.as_str() == "apikey" {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Whether a `to` entry matches the Python SDK's `^\+\d{1,3}\d{3,}$`: a plus and at least four
/// ASCII digits.
fn is_valid_number(number: &str) -> bool {
    number
        .strip_prefix('+')
        .is_some_and(|digits| digits.len() >= 4 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The reply body's content, before it is written as JSON or XML.
struct Reply {
    summary: String,
    recipients: Vec<RecipientResult>,
}

/// Decides each recipient, records the accepted ones and schedules their reports.
fn send_to_recipients(
    shared: &Arc<Shared>,
    arrival: Arrival,
    whole: Option<Step>,
    per_recipient: &[Step],
) -> Reply {
    let (encoding, segments) = count_sms_segments(&arrival.text);
    let price = shared.cost_per_segment * Decimal::from(segments);
    let sender_ok = arrival
        .from
        .as_ref()
        .is_none_or(|from| shared.sender_ids.contains(from));
    let mut accepted = Vec::new();
    let mut total_cost = Decimal::ZERO;
    let mut state = shared.state();
    let request_index = state.requests.len();
    let mut recipients = Vec::with_capacity(arrival.numbers.len());
    for (number, step) in arrival.numbers.iter().zip(per_recipient) {
        let status_code = if !is_valid_number(number) {
            403
        } else if !sender_ok {
            402
        } else {
            match step {
                Step::RecipientCode(code) => *code,
                _ => 101,
            }
        };
        let status = status_name(status_code).unwrap_or("Unknown").to_owned();
        let number = PhoneNumber::new(number.as_str());
        if !(100..200).contains(&status_code) {
            recipients.push(RecipientResult {
                number,
                status_code,
                status,
                cost: "0".into(),
                message_id: None,
            });
            continue;
        }
        let message_id = state.fresh_id();
        let cost = format!("{} {:.4}", shared.currency, price);
        total_cost += price;
        let sms = SentSms {
            message_id: message_id.clone(),
            to: number.clone(),
            from: arrival.from.clone(),
            text: arrival.text.clone(),
            encoding,
            segments,
            status_code,
            cost: cost.clone(),
            received_at: arrival.request.received_at,
            request_index,
        };
        crate::sandbox::record(&mut state.messages, sms.clone());
        accepted.push(sms);
        recipients.push(RecipientResult {
            number,
            status_code,
            status,
            cost,
            message_id: Some(message_id),
        });
    }
    let mut request = arrival.request;
    request.step =
        Some(whole.unwrap_or_else(|| per_recipient.first().copied().unwrap_or(Step::Accept)));
    request.status = StatusCode::CREATED.as_u16();
    request.recipients = recipients.clone();
    crate::sandbox::record(&mut state.requests, request);
    let scheduled: Vec<_> = accepted
        .iter()
        .map(|sms| (sms.clone(), reports::plan_for(&state, sms)))
        .collect();
    drop(state);

    shared.bump(|p| {
        p.requests += 1;
        p.messages += accepted.len();
    });
    for sms in accepted {
        // The demo's stand-in for the shopper's handset: the text it shows (the sandbox only
        // ever carries the shop's own messages; the number stays masked).
        tracing::info!(
            sms.message_id = %sms.message_id,
            "SMS sandbox delivered to {} ({:?}, {} segment(s)): {:?}",
            sms.to.masked(),
            sms.encoding,
            sms.segments,
            sms.text,
        );
        // Nobody listening is normal (no terminal phone attached).
        let _ = shared.arrivals.send(sms);
    }
    for (sms, plan) in scheduled {
        if let Some((delivery, plan)) = plan {
            reports::schedule(shared, delivery, plan, sms);
        }
    }

    let sent = recipients.iter().filter(|r| r.message_id.is_some()).count();
    let summary = if sent == 0 {
        format!("Sent to 0/{} Total Cost: 0", recipients.len())
    } else {
        format!(
            "Sent to {sent}/{} Total Cost: {} {total_cost:.4}",
            recipients.len(),
            shared.currency
        )
    };
    Reply {
        summary,
        recipients,
    }
}

fn record_request(shared: &Shared, request: RecordedRequest) {
    crate::sandbox::record(&mut shared.state().requests, request);
    shared.bump(|p| p.requests += 1);
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

impl Reply {
    fn to_json(&self) -> String {
        let recipients: Vec<serde_json::Value> = self
            .recipients
            .iter()
            .map(|r| {
                serde_json::json!({
                    "statusCode": r.status_code,
                    "number": r.number.as_str(),
                    "status": r.status,
                    "cost": r.cost,
                    "messageId": r.message_id.as_deref().unwrap_or("None"),
                })
            })
            .collect();
        serde_json::json!({
            "SMSMessageData": {"Message": self.summary, "Recipients": recipients}
        })
        .to_string()
    }

    /// AT's XML shape, sent when the client forgot `Accept: application/json`.
    fn to_xml(&self) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AfricasTalkingResponse><SMSMessageData>",
        );
        let _ = write!(
            xml,
            "<Message>{}</Message><Recipients>",
            escape(&self.summary)
        );
        for r in &self.recipients {
            let _ = write!(
                xml,
                "<Recipient><number>{}</number><cost>{}</cost><status>{}</status>\
                 <statusCode>{}</statusCode><messageId>{}</messageId></Recipient>",
                escape(r.number.as_str()),
                escape(&r.cost),
                escape(&r.status),
                r.status_code,
                escape(r.message_id.as_deref().unwrap_or("None")),
            );
        }
        xml.push_str("</Recipients></SMSMessageData></AfricasTalkingResponse>");
        xml
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_like_the_python_sdk() {
        for good in ["+254712345678", "+1415", "+2547"] {
            assert!(is_valid_number(good), "{good}");
        }
        for bad in [
            "254712345678",
            "0712345678",
            "+254",
            "+",
            "+2547 12",
            "+25471234567a",
            "+٢٥٤٧١٢٣",
        ] {
            assert!(!is_valid_number(bad), "{bad}");
        }
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
