//! Infobip's (legacy) third-party USSD API: JSON to one URL per session and step.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, checked against vumi's
//! `transports/infobip/infobip.py`, which quotes Infobip's parameter list):
//! - `POST …/{sessionId}/start` and `POST …/{sessionId}/response` with JSON `msisdn`, `text`,
//!   `shortCode` (optional: "not as mandatory as the Infobip documentation claims", says vumi),
//!   `imsi`, `language`, `ussdGwId`; `start`'s `text` is what was dialled, `response`'s only
//!   that hop's input;
//! - `PUT …/{sessionId}/end` with `{reason, exitCode}` (and, in Infobip's parameter list,
//!   `msisdn`), answered `{"responseExitCode": 200, "responseMessage": ""}`;
//! - every other reply is `{ussdMenu, shouldClose, responseExitCode: 200, responseMessage}`,
//!   and a malformed request gets `responseExitCode: 400` (see `crate::error`).
//!
//! The reference says the reply to `start` must not close. Duka's first screen is always a menu,
//! except the apology when Duka fails: that is sent with `shouldClose: true` anyway, since
//! keeping the session open on an apology would leave the shopper typing into nothing.
//!
//! Infobip numbers no hops; retransmissions are caught by the session layer's same-input window.
//! An `end` without `msisdn` (vumi's payload) cannot name the shopper, so it is acknowledged
//! and nudges no one. No screen size is documented: 160.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{
    deep_dial_inputs, input, json_body, phone, read_json_reply, service_code, session_id,
    BadCallback, ClientHop, Gateway, HopInput, SessionEnd, UssdRequest, WireRequest,
    SMALL_SCREEN_MAX,
};
use crate::error::{AppError, ErrorShape};
use crate::menu::Reply;
use crate::startup::AppState;

/// Infobip.
pub struct Infobip;

pub const NAME: &str = "infobip";

impl Gateway for Infobip {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Infobip"
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/ussd/infobip/{session_id}/start", post(start))
            .route("/ussd/infobip/{session_id}/response", post(response))
            .route("/ussd/infobip/{session_id}/end", put(end))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        let step = if hop.is_first() { "start" } else { "response" };
        WireRequest::json(
            Method::POST,
            &format!("/ussd/infobip/{}/{step}", hop.session_id),
            &json!({
                "msisdn": hop.phone.digits(),
                "text": hop.latest(),
                "shortCode": hop.service_code,
                "imsi": "639020000000001",
                "ussdGwId": "live2",
                "language": null,
            }),
        )
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        incomplete.then(|| {
            WireRequest::json(
                Method::PUT,
                &format!("/ussd/infobip/{}/end", hop.session_id),
                &json!({
                    "reason": "user abort",
                    "exitCode": 0,
                    "msisdn": hop.phone.digits(),
                }),
            )
        })
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/ussdMenu", |v| v["shouldClose"].as_bool())
    }
}

/// A `start` or `response` body, every field optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HopBody {
    msisdn: Option<String>,
    text: Option<String>,
    short_code: Option<String>,
}

/// An `end` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndBody {
    reason: Option<String>,
    exit_code: Option<serde_json::Value>,
    msisdn: Option<String>,
}

/// Which step of a session a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Start,
    Response,
}

/// Parses a `start` or `response` request.
///
/// # Errors
/// [`BadCallback`] for a body that is not JSON, a missing `msisdn` or `text`, or an unsafe
/// session id.
pub fn parse_hop(session: String, step: Step, body: &[u8]) -> Result<UssdRequest, BadCallback> {
    let raw: HopBody = json_body(body)?;
    let session_id = session_id(Some(session), "sessionId")?;
    let msisdn = phone(raw.msisdn, "msisdn")?;
    let text = input(
        Some(raw.text.ok_or(BadCallback::MissingField("text"))?),
        "text",
    )?;
    let code = service_code(raw.short_code.as_deref().unwrap_or_default());
    let (service_code, input) = match step {
        Step::Start if code.is_empty() => (service_code(&text), HopInput::Dial(Vec::new())),
        Step::Start => {
            let inputs = deep_dial_inputs(&code, &text);
            (code, HopInput::Dial(inputs))
        }
        Step::Response => (code, HopInput::Typed(text)),
    };
    Ok(UssdRequest {
        gateway: NAME,
        session_id,
        msisdn,
        service_code,
        network_code: None,
        input,
        hop_id: None,
        screen_max: SMALL_SCREEN_MAX,
    })
}

/// Parses an `end` request: the session end, when the body names the shopper.
///
/// # Errors
/// [`BadCallback`] for a body that is not JSON, a missing `reason` or `exitCode`, or an unsafe
/// session id.
pub fn parse_end(session: String, body: &[u8]) -> Result<Option<SessionEnd>, BadCallback> {
    let raw: EndBody = json_body(body)?;
    let session_id = session_id(Some(session), "sessionId")?;
    raw.reason.ok_or(BadCallback::MissingField("reason"))?;
    raw.exit_code.ok_or(BadCallback::MissingField("exitCode"))?;
    let Some(msisdn) = raw.msisdn else {
        return Ok(None);
    };
    Ok(Some(SessionEnd {
        session_id,
        msisdn: phone(Some(msisdn), "msisdn")?,
        service_code: String::new(),
        incomplete: true,
    }))
}

fn bad(error: BadCallback) -> AppError {
    AppError::BadCallback {
        error,
        shape: ErrorShape::Infobip,
    }
}

async fn hop(
    app: &AppState,
    session: String,
    step: Step,
    body: &[u8],
) -> Result<Json<serde_json::Value>, AppError> {
    let req = parse_hop(session, step, body).map_err(bad)?;
    let reply = crate::ussd::answer(app, &req).await;
    Ok(Json(render(&reply)))
}

/// `POST /ussd/infobip/{sessionId}/start`.
async fn start(
    State(app): State<AppState>,
    Path(session): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    hop(&app, session, Step::Start, &body).await
}

/// `POST /ussd/infobip/{sessionId}/response`.
async fn response(
    State(app): State<AppState>,
    Path(session): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    hop(&app, session, Step::Response, &body).await
}

/// `PUT /ussd/infobip/{sessionId}/end`.
async fn end(
    State(app): State<AppState>,
    Path(session): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    match parse_end(session, &body).map_err(bad)? {
        Some(end) => crate::ussd::session_ended(&app, NAME, &end).await,
        None => tracing::info!("Infobip ended a session without naming the shopper"),
    }
    Ok(Json(
        json!({"responseExitCode": 200, "responseMessage": ""}),
    ))
}

/// The reply Infobip reads.
pub fn render(reply: &Reply) -> serde_json::Value {
    json!({
        "ussdMenu": reply.text,
        "shouldClose": reply.end,
        "responseExitCode": 200,
        "responseMessage": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_a_dial_with_the_deep_dial_inputs() {
        let req = parse_hop(
            "b5c8e4a6".into(),
            Step::Start,
            br#"{"msisdn":"254712345678","text":"*384*12*1#","shortCode":"*384*12#","imsi":"639020000000001","ussdGwId":"live2","language":null}"#,
        )
        .unwrap();
        assert_eq!(req.session_id, "b5c8e4a6");
        assert_eq!(req.msisdn.digits(), "254712345678");
        assert_eq!(req.service_code, "*384*12#");
        assert_eq!(req.input, HopInput::Dial(vec!["1".into()]));
        assert_eq!(req.hop_id, None);
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        let no_code = parse_hop(
            "s".into(),
            Step::Start,
            br#"{"msisdn":"254712345678","text":"*120#"}"#,
        )
        .unwrap();
        assert_eq!(no_code.service_code, "*120#");
        assert_eq!(no_code.input, HopInput::Dial(vec![]));
    }

    #[test]
    fn a_response_is_the_latest_input_whole() {
        let req = parse_hop(
            "s".into(),
            Step::Response,
            br#"{"msisdn":"+254712345678","text":"0712*34","imsi":"639020000000001"}"#,
        )
        .unwrap();
        assert_eq!(req.input, HopInput::Typed("0712*34".into()));
    }

    #[test]
    fn an_end_names_the_shopper_when_it_can() {
        let end = parse_end(
            "s".into(),
            br#"{"reason":"user abort","exitCode":0,"msisdn":"254712345678"}"#,
        )
        .unwrap()
        .unwrap();
        assert!(end.incomplete && end.session_id == "s");
        let anonymous = parse_end("s".into(), br#"{"reason":"timeout","exitCode":500}"#).unwrap();
        assert!(anonymous.is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |step, body: &[u8]| parse_hop("s".into(), step, body).unwrap_err().to_string();
        assert_eq!(
            err(Step::Start, br#"{"text":"*1#"}"#),
            "missing field msisdn"
        );
        assert_eq!(
            err(Step::Response, br#"{"msisdn":"254712345678"}"#),
            "missing field text"
        );
        assert!(err(Step::Start, b"").contains("could not be parsed"));
        assert!(parse_hop(
            "a b".into(),
            Step::Start,
            br#"{"msisdn":"254712345678","text":""}"#
        )
        .unwrap_err()
        .to_string()
        .contains("sessionId"));
        assert_eq!(
            parse_end("s".into(), br#"{"exitCode":0}"#)
                .unwrap_err()
                .to_string(),
            "missing field reason"
        );
    }

    #[test]
    fn replies_render_as_infobip_menus() {
        assert_eq!(
            render(&Reply::con("Welcome")),
            json!({"ussdMenu":"Welcome","shouldClose":false,"responseExitCode":200,"responseMessage":""})
        );
        assert_eq!(render(&Reply::end("Bye"))["shouldClose"], true);
        let back = Infobip
            .read_reply(
                200,
                &HeaderMap::new(),
                render(&Reply::end("Bye")).to_string().as_bytes(),
            )
            .unwrap();
        assert_eq!(back, Reply::end("Bye"));
    }

    #[test]
    fn the_client_side_starts_then_responds() {
        let phone = crate::msisdn::Msisdn::parse("0712345678").unwrap();
        let typed = vec!["2".to_owned()];
        let first = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*384*12#",
            network_code: "63902",
            dial: &[],
            typed: &[],
            seq: 1,
        };
        let wire = Infobip.hop_request(&first);
        assert_eq!(wire.path_and_query, "/ussd/infobip/s1/start");
        let body: serde_json::Value = serde_json::from_slice(&wire.body).unwrap();
        assert_eq!(body["text"], "*384*12#");
        assert_eq!(body["msisdn"], "254712345678");
        let next = ClientHop {
            typed: &typed,
            seq: 2,
            ..first
        };
        assert_eq!(
            Infobip.hop_request(&next).path_and_query,
            "/ussd/infobip/s1/response"
        );
        let end = Infobip.end_request(&next, true).unwrap();
        assert_eq!(end.method, Method::PUT);
        assert_eq!(end.path_and_query, "/ussd/infobip/s1/end");
    }
}
