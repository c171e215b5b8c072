//! Africa's Talking USSD: the form it posts, and the `CON`/`END` text it expects back.
//!
//! Wire facts this adapter relies on (see `reference/ussd-gateways.md`):
//! - the request is a form with `sessionId`, `serviceCode`, `phoneNumber` (`+2547…`),
//!   `networkCode` and `text`;
//! - `text` holds the *whole* input history joined with `*`; the first request has an empty
//!   `text`, except after a deep dial (`*384*12*1*2#` arrives as `text = "1*2"`);
//! - the reply is `200 text/plain` starting with `CON ` or `END `: anything else, or an HTTP
//!   error, ends the shopper's session without explanation, which is why internal failures are
//!   answered `200 END` with an apology and only malformed callbacks get a 400.
//!
//! [`router`] serves `POST /ussd/africastalking` and the end-of-session notification at
//! `POST /ussd/africastalking/session-end`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{BadCallback, HopInput, UssdRequest};
use crate::error::AppError;
use crate::menu::Reply;
use crate::msisdn::Msisdn;
use crate::startup::AppState;

/// The Africa's Talking routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ussd/africastalking", post(ussd_callback))
        .route("/ussd/africastalking/session-end", post(session_end))
}

/// `POST /ussd/africastalking`: one hop of a session.
#[tracing::instrument(name = "ussd", skip_all, fields(ussd.session_id, msisdn.masked))]
async fn ussd_callback(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    let started = Instant::now();
    let req = parse(&body)?;
    let span = tracing::Span::current();
    span.record("ussd.session_id", req.session_id.as_str());
    span.record("msisdn.masked", req.msisdn.masked().as_str());
    if let Some(recorder) = &app.recorder {
        recorder.before_hop(&req).await;
    }
    let outcome = crate::session::handle_hop(&app.shop, &req).await;
    if let Some(recorder) = &app.recorder {
        recorder.after_hop(&req, outcome.as_ref().ok());
    }
    app.metrics.observe_hop(started.elapsed());
    match outcome {
        Ok(result) => {
            app.metrics.inc(
                "duka_ussd_hops_total",
                &[("outcome", if result.repeated { "repeated" } else { "ok" })],
            );
            if let Some(order) = &result.placed_order {
                tracing::info!(order.number = %order, "order placed; STK push scheduled");
            }
            Ok(text_reply(render(&result.reply)))
        }
        Err(source) => {
            app.metrics
                .inc("duka_ussd_hops_total", &[("outcome", "apology")]);
            let apology = crate::menu::engine::apology(&app.shop.catalog(), source.lang());
            Err(AppError::Hop {
                source,
                apology: apology.text,
            })
        }
    }
}

/// `POST /ussd/africastalking/session-end`: the session is over on the phone.
#[tracing::instrument(name = "ussd_session_end", skip_all, fields(ussd.session_id))]
async fn session_end(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    let end = parse_session_end(&body)?;
    tracing::Span::current().record("ussd.session_id", end.session_id.as_str());
    app.session_ended(&end).await;
    if let Some(recorder) = &app.recorder {
        recorder.session_ended(&end);
    }
    Ok(StatusCode::OK.into_response())
}

fn text_reply(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Longest accepted value of any field; a real `text` stays far below it.
const MAX_FIELD_LEN: usize = 2_000;

/// The raw form, every field optional so a missing one gets a clear message.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UssdForm {
    pub session_id: Option<String>,
    pub service_code: Option<String>,
    pub phone_number: Option<String>,
    pub network_code: Option<String>,
    pub text: Option<String>,
}

/// Parses the posted body into a gateway-neutral request.
///
/// # Errors
/// [`BadCallback`] for invalid UTF-8, a missing `sessionId` or `phoneNumber`, or a phone number
/// that is not a Kenyan mobile number. A missing `text` is read as empty, since some gateways
/// omit it on the first hop.
pub fn parse(body: &[u8]) -> Result<UssdRequest, BadCallback> {
    std::str::from_utf8(body).map_err(|_| BadCallback::NotUtf8)?;
    let form: UssdForm =
        serde_urlencoded::from_bytes(body).map_err(|e| BadCallback::Malformed(e.to_string()))?;
    let session_id = required(form.session_id, "sessionId")?;
    if !session_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(BadCallback::InvalidField {
            field: "sessionId",
            why: "only letters, digits and - _ . : are expected".to_owned(),
        });
    }
    let phone = required(form.phone_number, "phoneNumber")?;
    let msisdn = Msisdn::parse(&phone).map_err(|e| BadCallback::InvalidField {
        field: "phoneNumber",
        why: e.to_string(),
    })?;
    let text = form.text.unwrap_or_default();
    if text.len() > MAX_FIELD_LEN {
        return Err(BadCallback::InvalidField {
            field: "text",
            why: format!("longer than {MAX_FIELD_LEN} bytes"),
        });
    }
    Ok(UssdRequest {
        session_id,
        msisdn,
        service_code: form.service_code.unwrap_or_default(),
        network_code: form.network_code.filter(|c| !c.is_empty()),
        input: HopInput::Cumulative(text),
    })
}

fn required(value: Option<String>, field: &'static str) -> Result<String, BadCallback> {
    match value {
        Some(v) if !v.trim().is_empty() && v.len() <= MAX_FIELD_LEN => Ok(v.trim().to_owned()),
        Some(v) if v.len() > MAX_FIELD_LEN => Err(BadCallback::InvalidField {
            field,
            why: format!("longer than {MAX_FIELD_LEN} bytes"),
        }),
        _ => Err(BadCallback::MissingField(field)),
    }
}

/// Renders a reply as Africa's Talking expects it.
pub fn render(reply: &Reply) -> String {
    let prefix = if reply.end { "END " } else { "CON " };
    let mut body = String::with_capacity(prefix.len() + reply.text.len());
    body.push_str(prefix);
    body.push_str(&reply.text);
    body
}

/// The end-of-session notification Africa's Talking posts to a separate URL.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEndForm {
    pub session_id: Option<String>,
    pub phone_number: Option<String>,
    pub service_code: Option<String>,
    pub network_code: Option<String>,
    /// `Incomplete`, `Success` or `Failed`.
    pub status: Option<String>,
    pub input: Option<String>,
    pub hops_count: Option<String>,
    pub duration_in_millis: Option<String>,
    pub error_message: Option<String>,
}

/// A parsed end-of-session notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    pub session_id: String,
    pub msisdn: Msisdn,
    pub service_code: String,
    /// True for `Incomplete`: the shopper dropped off before the session ended with `END`.
    pub incomplete: bool,
}

/// Parses the end-of-session notification.
///
/// # Errors
/// [`BadCallback`] when the body is not UTF-8 form data or lacks a session id or phone.
pub fn parse_session_end(body: &[u8]) -> Result<SessionEnd, BadCallback> {
    std::str::from_utf8(body).map_err(|_| BadCallback::NotUtf8)?;
    let form: SessionEndForm =
        serde_urlencoded::from_bytes(body).map_err(|e| BadCallback::Malformed(e.to_string()))?;
    let session_id = required(form.session_id, "sessionId")?;
    let phone = required(form.phone_number, "phoneNumber")?;
    let msisdn = Msisdn::parse(&phone).map_err(|e| BadCallback::InvalidField {
        field: "phoneNumber",
        why: e.to_string(),
    })?;
    Ok(SessionEnd {
        session_id,
        msisdn,
        service_code: form.service_code.unwrap_or_default(),
        incomplete: form
            .status
            .is_some_and(|s| s.eq_ignore_ascii_case("incomplete")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_hop_parses_into_an_empty_cumulative_text() {
        let req = parse(
            b"sessionId=ATUid_1&serviceCode=%2A384%2A12%23&phoneNumber=%2B254712345678&networkCode=63902&text=",
        )
        .unwrap();
        assert_eq!(req.session_id, "ATUid_1");
        assert_eq!(req.service_code, "*384*12#");
        assert_eq!(req.msisdn.digits(), "254712345678");
        assert_eq!(req.network_code.as_deref(), Some("63902"));
        assert_eq!(req.input, HopInput::Cumulative(String::new()));
    }

    #[test]
    fn a_missing_text_reads_as_empty() {
        let req = parse(b"sessionId=s1&phoneNumber=%2B254712345678").unwrap();
        assert_eq!(req.input, HopInput::Cumulative(String::new()));
    }

    #[test]
    fn stars_inside_the_text_are_kept_for_the_session_to_split() {
        let req = parse(b"sessionId=s1&phoneNumber=%2B254712345678&text=1%2A2%2A3").unwrap();
        assert_eq!(req.input, HopInput::Cumulative("1*2*3".into()));
    }

    #[test]
    fn malformed_callbacks_say_what_is_wrong() {
        let missing = parse(b"phoneNumber=%2B254712345678&text=").unwrap_err();
        assert_eq!(missing.to_string(), "missing field sessionId");
        let no_phone = parse(b"sessionId=s1&text=").unwrap_err();
        assert_eq!(no_phone.to_string(), "missing field phoneNumber");
        let bad_phone = parse(b"sessionId=s1&phoneNumber=12345").unwrap_err();
        assert!(bad_phone
            .to_string()
            .starts_with("field phoneNumber is invalid"));
        assert!(matches!(
            parse(b"sessionId=s1&phoneNumber=\xff\xfe"),
            Err(BadCallback::NotUtf8)
        ));
        let weird_id =
            parse(b"sessionId=a%20b%3Cscript%3E&phoneNumber=%2B254712345678").unwrap_err();
        assert!(weird_id.to_string().contains("sessionId"));
    }

    #[test]
    fn replies_render_with_the_con_or_end_prefix() {
        assert_eq!(render(&Reply::con("Hi")), "CON Hi");
        assert_eq!(render(&Reply::end("Bye")), "END Bye");
    }

    #[test]
    fn an_incomplete_session_end_is_recognised() {
        let end = parse_session_end(
            b"date=2026-11-24&sessionId=s1&serviceCode=%2A384%2A12%23&networkCode=63902&phoneNumber=%2B254712345678&status=Incomplete&cost=KES+0.00&durationInMillis=30000&hopsCount=3&input=1%2A2&lastAppResponse=CON+x&errorMessage=",
        )
        .unwrap();
        assert!(end.incomplete);
        assert_eq!(end.session_id, "s1");
        let done =
            parse_session_end(b"sessionId=s1&phoneNumber=%2B254712345678&status=Success").unwrap();
        assert!(!done.incomplete);
    }
}
