//! Hubtel programmable services (Ghana): JSON in, JSON out, one input per hop.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, checked against Hubtel's
//! .NET SDK, `Models/ProgrammableService{Request,Response}.cs`):
//! - `POST /ussd/hubtel`, JSON `Mobile` (`233…`, no `+`), `SessionId`, `ServiceCode` (`711*2`,
//!   without `*` and `#`), `Type`, `Message`, `Operator`, `Platform`, `Sequence`, `ClientState`;
//! - `Type` is `Initiation` (then `Message` is the whole dial string, `*711*2*3#`), `Response`
//!   (then `Message` is only the latest input), `Release` or `Timeout` (the shopper left or
//!   Hubtel stopped waiting; not input, and any reply is ignored). The official samples write it
//!   in lower case and the SDK parses it case-insensitively, so does this adapter (and it takes
//!   the camelCase spelling of each field, `type`, `sessionId`, which some samples use);
//! - `Sequence` grows by one per hop: the same number again is a retransmission;
//! - the reply is `{"SessionId", "Type": "Response" | "Release", "Message", "Label",
//!   "DataType": "input", "FieldType": "text", "ClientState"}`.
//!
//! Hubtel documents no error body, so a malformed request gets `400 {"error": …}`. The app
//! channels' `AddToCart`, `Query` and `Favorite` types are not USSD and are refused the same way.
//! Hubtel does not document a screen size; this adapter pages at the conservative 160 septets.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{
    deep_dial_inputs, input, json_body, network_code, phone, read_json_reply, service_code,
    session_id, BadCallback, ClientHop, Gateway, HopInput, Loose, SessionEnd, UssdRequest,
    WireRequest, SMALL_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Hubtel.
pub struct Hubtel;

pub const NAME: &str = "hubtel";
const PATH: &str = "/ussd/hubtel";

impl Gateway for Hubtel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Hubtel"
    }

    fn numbers_hops(&self) -> bool {
        true
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, post(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        let kind = if hop.is_first() {
            "Initiation"
        } else {
            "Response"
        };
        request(hop, kind, &hop.latest())
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        incomplete.then(|| request(hop, "Release", ""))
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/Message", ends)
    }
}

/// What a Hubtel-shaped client sends (Emergent uses the same fields).
pub fn request(hop: &ClientHop<'_>, kind: &str, message: &str) -> WireRequest {
    WireRequest::json(
        Method::POST,
        PATH,
        &json!({
            "Mobile": hop.phone.digits(),
            "SessionId": hop.session_id,
            "ServiceCode": hop.service_code.trim_start_matches('*').trim_end_matches('#'),
            "Type": kind,
            "Message": message,
            "Operator": "MTN",
            "Platform": "USSD",
            "Sequence": hop.seq,
            "ClientState": "",
        }),
    )
}

/// Whether a Hubtel-shaped reply closes the session (`Type: Release`), for the client side.
pub fn ends(reply: &serde_json::Value) -> Option<bool> {
    reply["Type"]
        .as_str()
        .map(|kind| kind.eq_ignore_ascii_case("Release"))
}

/// The request as Hubtel and Emergent post it, every field optional so a missing one gets a
/// clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HubtelRequest {
    #[serde(alias = "mobile")]
    pub mobile: Option<String>,
    #[serde(alias = "sessionId")]
    pub session_id: Option<String>,
    #[serde(alias = "serviceCode")]
    pub service_code: Option<String>,
    #[serde(rename = "Type", alias = "type")]
    pub kind: Option<String>,
    #[serde(alias = "message")]
    pub message: Option<String>,
    #[serde(alias = "operator")]
    pub operator: Option<String>,
    #[serde(alias = "sequence")]
    pub sequence: Option<Loose>,
}

/// What one Hubtel-shaped request is.
#[derive(Debug)]
pub enum Parsed {
    Hop(UssdRequest),
    /// `Release` or `Timeout`: the shopper left.
    End(SessionEnd),
}

/// Parses a Hubtel-shaped body; `gateway` names it in the neutral request.
///
/// # Errors
/// [`BadCallback`] for anything that is not such a request.
pub fn parse_as(body: &[u8], gateway: &'static str) -> Result<Parsed, BadCallback> {
    let raw: HubtelRequest = json_body(body)?;
    let session_id = session_id(raw.session_id, "SessionId")?;
    let msisdn = phone(raw.mobile, "Mobile")?;
    let service_code = service_code(raw.service_code.as_deref().unwrap_or_default());
    let kind = raw.kind.ok_or(BadCallback::MissingField("Type"))?;
    let message = input(raw.message, "Message")?;
    let input = match kind.to_ascii_lowercase().as_str() {
        "initiation" => HopInput::Dial(deep_dial_inputs(&service_code, &message)),
        "response" => HopInput::Typed(message),
        "release" | "timeout" => {
            return Ok(Parsed::End(SessionEnd {
                session_id,
                msisdn,
                service_code,
                incomplete: true,
            }))
        }
        _ => {
            return Err(BadCallback::InvalidField {
                field: "Type",
                why: format!("{kind:?} is not a USSD request type"),
            })
        }
    };
    Ok(Parsed::Hop(UssdRequest {
        gateway,
        session_id,
        msisdn,
        service_code,
        network_code: network_code(raw.operator),
        input,
        hop_id: raw.sequence.and_then(|s| s.text()),
        screen_max: SMALL_SCREEN_MAX,
    }))
}

/// `POST /ussd/hubtel`.
async fn callback(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    match parse_as(&body, NAME).map_err(AppError::json)? {
        Parsed::Hop(req) => {
            let reply = crate::ussd::answer(&app, &req).await;
            Ok(Json(render(&req.session_id, &reply)).into_response())
        }
        Parsed::End(end) => {
            crate::ussd::session_ended(&app, NAME, &end).await;
            Ok(Json(render(&end.session_id, &Reply::end(""))).into_response())
        }
    }
}

/// The reply Hubtel reads.
pub fn render(session_id: &str, reply: &Reply) -> serde_json::Value {
    json!({
        "SessionId": session_id,
        "Type": if reply.end { "Release" } else { "Response" },
        "Message": reply.text,
        "Label": reply.text.lines().next().unwrap_or_default(),
        "DataType": if reply.end { "display" } else { "input" },
        "FieldType": "text",
        "ClientState": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(body: &str) -> UssdRequest {
        match parse_as(body.as_bytes(), NAME).unwrap() {
            Parsed::Hop(req) => req,
            Parsed::End(end) => panic!("not a hop: {end:?}"),
        }
    }

    #[test]
    fn an_initiation_is_a_dial_with_the_deep_dial_inputs() {
        let req = hop(
            r#"{"Type":"Initiation","Mobile":"233200585542","SessionId":"3c796dac28174f739de4262d08409c51","ServiceCode":"711*2","Message":"*711*2*3#","Operator":"vodafone","Sequence":1,"ClientState":"","Platform":"USSD"}"#,
        );
        assert_eq!(req.session_id, "3c796dac28174f739de4262d08409c51");
        assert_eq!(req.msisdn.digits(), "233200585542");
        assert_eq!(req.service_code, "*711*2#");
        assert_eq!(req.input, HopInput::Dial(vec!["3".into()]));
        assert_eq!(req.hop_id.as_deref(), Some("1"));
        assert_eq!(req.network_code, None, "an operator name is not an MCC+MNC");
    }

    #[test]
    fn a_response_carries_only_the_latest_input_and_its_sequence() {
        let req = hop(
            r#"{"type":"response","Mobile":"233200585542","SessionId":"s1","ServiceCode":"711*2","Message":"0712*34","Sequence":"4"}"#,
        );
        assert_eq!(req.input, HopInput::Typed("0712*34".into()));
        assert_eq!(req.hop_id.as_deref(), Some("4"));
    }

    #[test]
    fn release_and_timeout_end_the_session() {
        for kind in ["Release", "timeout"] {
            let body = format!(
                r#"{{"Type":"{kind}","Mobile":"233200585542","SessionId":"s1","ServiceCode":"711*2","Message":"","Sequence":5}}"#
            );
            match parse_as(body.as_bytes(), NAME).unwrap() {
                Parsed::End(end) => assert!(end.incomplete && end.session_id == "s1"),
                Parsed::Hop(_) => panic!("{kind} is not a hop"),
            }
        }
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |body: &[u8]| parse_as(body, NAME).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"Type":"Response","SessionId":"s1"}"#),
            "missing field Mobile"
        );
        assert!(
            err(br#"{"Type":"AddToCart","Mobile":"233200585542","SessionId":"s1"}"#)
                .contains("not a USSD request type")
        );
        assert!(err(b"{\"Type\":").contains("could not be parsed"));
        assert_eq!(err(b"\xff"), "the body is not valid UTF-8");
    }

    #[test]
    fn replies_render_as_response_or_release() {
        assert_eq!(
            render("s1", &Reply::con("Welcome\n1. Shop")),
            json!({"SessionId":"s1","Type":"Response","Message":"Welcome\n1. Shop","Label":"Welcome","DataType":"input","FieldType":"text","ClientState":""})
        );
        assert_eq!(render("s1", &Reply::end("Bye"))["Type"], "Release");
        let back = Hubtel
            .read_reply(
                200,
                &HeaderMap::new(),
                render("s1", &Reply::end("Bye")).to_string().as_bytes(),
            )
            .unwrap();
        assert_eq!(back, Reply::end("Bye"));
    }
}
