//! Beem Africa (Tanzania): JSON in, JSON out, one input per hop, `command` for the hop's kind.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, from laravel-beem-africa's
//! `UssdCallback`/`UssdResponse`/`UssdCommand` and ussd-builder):
//! - `POST /ussd/beem`, JSON `session_id`, `msisdn` (`255…`, no `+`), `operator` (a name such
//!   as `vodacom`, so no network code), `command` (`initiate` on the first hop, then
//!   `continue`; `terminate` when the network ends the session) and `payload: {request_id,
//!   response}`, the latest input in `response`, which may be a JSON number (`2`), and
//!   `request_id` the hop's number: the same number again is a retransmission;
//! - the reply is `{msisdn, operator, session_id, command: "continue" | "terminate", payload:
//!   {request_id, request: "<screen>"}}`, echoing the request's fields (ussd-builder forgets
//!   `session_id` on `continue`; Beem's docs have it, so does this adapter).
//!
//! `terminate` is the shopper leaving: it feeds the drop-off nudge and is answered `terminate`.
//! Beem's samples send `response: 0` on `initiate`, not the dial string, and no service code:
//! such a first hop is a plain dial. When `response` is a dial string (`*150*12*1#`, which is
//! what Duka's client side sends) and the route's URL names the code (`?service_code=150*12`,
//! see [`codeless`]), it is split into a deep dial. No error body is documented, so a malformed
//! request gets `400 {"error": …}`; no screen size either: pages hold 160 septets.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{
    codeless, input, json_body, network_code, phone, read_json_reply, session_id, BadCallback,
    ClientHop, Gateway, HopInput, Loose, SessionEnd, UssdRequest, WireRequest, SMALL_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Beem Africa.
pub struct Beem;

pub const NAME: &str = "beem";
const PATH: &str = "/ussd/beem";

impl Gateway for Beem {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Beem Africa"
    }

    fn numbers_hops(&self) -> bool {
        true
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, post(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        let command = if hop.is_first() {
            "initiate"
        } else {
            "continue"
        };
        request(hop, command, &hop.latest(), hop.seq)
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        incomplete.then(|| request(hop, "terminate", "", hop.seq + 1))
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/payload/request", |v| {
            match v["command"].as_str()? {
                "continue" => Some(false),
                "terminate" => Some(true),
                _ => None,
            }
        })
    }
}

/// What Beem posts for one hop of `hop`'s session.
fn request(hop: &ClientHop<'_>, command: &str, response: &str, request_id: u32) -> WireRequest {
    WireRequest::json(
        Method::POST,
        &codeless::path_with_code(PATH, hop.service_code),
        &json!({
            "session_id": hop.session_id,
            "msisdn": hop.phone.digits(),
            "operator": "vodacom",
            "command": command,
            "payload": {"request_id": request_id, "response": response},
        }),
    )
}

/// The request as Beem posts it, every field optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
struct BeemRequest {
    session_id: Option<Loose>,
    msisdn: Option<Loose>,
    operator: Option<Loose>,
    command: Option<String>,
    payload: Option<Payload>,
}

#[derive(Debug, Default, Deserialize)]
struct Payload {
    request_id: Option<Loose>,
    response: Option<Loose>,
}

/// What the reply echoes back as Beem sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    pub session_id: String,
    pub msisdn: String,
    pub operator: String,
    /// `request_id` as received (a number stays a number).
    pub request_id: serde_json::Value,
}

/// What one Beem request is.
#[derive(Debug)]
pub enum Parsed {
    Hop(UssdRequest),
    /// `terminate`: the shopper left.
    End(SessionEnd),
}

/// Parses a Beem body; `code` is the service code configured on the route, if any.
///
/// # Errors
/// [`BadCallback`] for anything that is not such a request.
pub fn parse(body: &[u8], code: Option<&str>) -> Result<(Parsed, Echo), BadCallback> {
    let raw: BeemRequest = json_body(body)?;
    let text = |v: Option<Loose>| v.and_then(|v| v.text());
    let session_id = session_id(text(raw.session_id), "session_id")?;
    let raw_msisdn = text(raw.msisdn);
    let echo_msisdn = raw_msisdn.clone().unwrap_or_default().trim().to_owned();
    let msisdn = phone(raw_msisdn, "msisdn")?;
    let operator = input(text(raw.operator), "operator")?;
    let command = raw.command.ok_or(BadCallback::MissingField("command"))?;
    let payload = raw.payload.unwrap_or_default();
    let request_id = input(text(payload.request_id), "payload.request_id")?;
    let response = input(text(payload.response), "payload.response")?;
    let echo = Echo {
        session_id: session_id.clone(),
        msisdn: echo_msisdn,
        operator: operator.clone(),
        request_id: request_id
            .parse::<u64>()
            .map(serde_json::Value::from)
            .unwrap_or_else(|_| serde_json::Value::from(request_id.clone())),
    };
    let (service_code, input) = match command.to_ascii_lowercase().as_str() {
        "initiate" => codeless::first_hop(code, &response),
        "continue" => (
            code.unwrap_or_default().to_owned(),
            HopInput::Typed(response),
        ),
        "terminate" => {
            let end = SessionEnd {
                session_id,
                msisdn,
                service_code: code.unwrap_or_default().to_owned(),
                incomplete: true,
            };
            return Ok((Parsed::End(end), echo));
        }
        _ => {
            return Err(BadCallback::InvalidField {
                field: "command",
                why: format!("{command:?} is not initiate, continue or terminate"),
            })
        }
    };
    let req = UssdRequest {
        gateway: NAME,
        session_id,
        msisdn,
        service_code,
        network_code: network_code(Some(operator)),
        input,
        hop_id: Some(request_id).filter(|id| !id.is_empty()),
        screen_max: SMALL_SCREEN_MAX,
    };
    Ok((Parsed::Hop(req), echo))
}

/// `POST /ussd/beem`.
async fn callback(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, AppError> {
    let code = codeless::configured(query.as_deref()).map_err(AppError::json)?;
    let (parsed, echo) = parse(&body, code.as_deref()).map_err(AppError::json)?;
    let reply = match parsed {
        Parsed::Hop(req) => crate::ussd::answer(&app, &req).await,
        Parsed::End(end) => {
            crate::ussd::session_ended(&app, NAME, &end).await;
            Reply::end("")
        }
    };
    Ok(Json(render(&echo, &reply)).into_response())
}

/// The reply Beem reads.
pub fn render(echo: &Echo, reply: &Reply) -> serde_json::Value {
    json!({
        "msisdn": echo.msisdn,
        "operator": echo.operator,
        "session_id": echo.session_id,
        "command": if reply.end { "terminate" } else { "continue" },
        "payload": {"request_id": echo.request_id, "request": reply.text},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msisdn::Msisdn;

    fn hop(body: &str, code: Option<&str>) -> (UssdRequest, Echo) {
        match parse(body.as_bytes(), code).unwrap() {
            (Parsed::Hop(req), echo) => (req, echo),
            (Parsed::End(end), _) => panic!("not a hop: {end:?}"),
        }
    }

    #[test]
    fn an_initiate_is_a_plain_dial_unless_it_carries_a_dial_string() {
        let (req, echo) = hop(
            r#"{"command":"initiate","msisdn":"255712345678","operator":"vodacom","session_id":"10021","payload":{"request_id":0,"response":0}}"#,
            Some("*150*12#"),
        );
        assert_eq!(req.gateway, NAME);
        assert_eq!(req.session_id, "10021");
        assert_eq!(req.msisdn.digits(), "255712345678");
        assert_eq!(req.service_code, "*150*12#");
        assert_eq!(req.input, HopInput::Dial(Vec::new()));
        assert_eq!(req.hop_id.as_deref(), Some("0"));
        assert_eq!(req.network_code, None);
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        assert_eq!(echo.request_id, json!(0));
        let (deep, _) = hop(
            r#"{"command":"initiate","msisdn":"255712345678","operator":"vodacom","session_id":"10021","payload":{"request_id":1,"response":"*150*12*1#"}}"#,
            Some("150*12"),
        );
        assert_eq!(deep.input, HopInput::Dial(vec!["1".into()]));
    }

    #[test]
    fn a_continue_is_the_input_whole_numbered_by_request_id() {
        let (req, _) = hop(
            r#"{"command":"continue","msisdn":"255712345678","operator":"tigo","session_id":"10021","payload":{"request_id":"3","response":"0712*34"}}"#,
            None,
        );
        assert_eq!(req.input, HopInput::Typed("0712*34".into()));
        assert_eq!(req.hop_id.as_deref(), Some("3"));
        let (number, _) = hop(
            r#"{"command":"continue","msisdn":"255712345678","operator":"tigo","session_id":"10021","payload":{"request_id":4,"response":2}}"#,
            None,
        );
        assert_eq!(number.input, HopInput::Typed("2".into()));
        assert_eq!(number.hop_id.as_deref(), Some("4"));
    }

    #[test]
    fn terminate_ends_the_session() {
        let parsed = parse(
            br#"{"command":"terminate","msisdn":"255712345678","operator":"vodacom","session_id":"10021","payload":{"request_id":5,"response":""}}"#,
            Some("*150*12#"),
        )
        .unwrap();
        match parsed {
            (Parsed::End(end), _) => {
                assert!(end.incomplete);
                assert_eq!(
                    (end.session_id.as_str(), end.service_code.as_str()),
                    ("10021", "*150*12#")
                );
            }
            (Parsed::Hop(req), _) => panic!("terminate is not a hop: {req:?}"),
        }
    }

    #[test]
    fn replies_echo_the_request_and_say_continue_or_terminate() {
        let (_, echo) = hop(
            r#"{"command":"continue","msisdn":"255712345678","operator":"vodacom","session_id":"10021","payload":{"request_id":3,"response":"1"}}"#,
            None,
        );
        assert_eq!(
            render(&echo, &Reply::con("Welcome\n1. Shop")),
            json!({"msisdn":"255712345678","operator":"vodacom","session_id":"10021","command":"continue","payload":{"request_id":3,"request":"Welcome\n1. Shop"}})
        );
        assert_eq!(render(&echo, &Reply::end("Bye"))["command"], "terminate");
        for reply in [Reply::con("Pick"), Reply::end("Bye")] {
            let body = render(&echo, &reply).to_string();
            assert_eq!(
                Beem.read_reply(200, &HeaderMap::new(), body.as_bytes()),
                Ok(reply)
            );
        }
    }

    #[test]
    fn the_client_side_posts_what_beem_sends() {
        let phone = Msisdn::parse("255712345678").unwrap();
        let typed = vec!["2".to_owned()];
        let hop = ClientHop {
            session_id: "10021",
            phone: &phone,
            service_code: "*150*12#",
            network_code: "64004",
            dial: &[],
            typed: &typed,
            seq: 2,
        };
        let request = Beem.hop_request(&hop);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path_and_query, "/ussd/beem?service_code=150*12");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
            json!({"session_id":"10021","msisdn":"255712345678","operator":"vodacom","command":"continue","payload":{"request_id":2,"response":"2"}})
        );
        let first = Beem.hop_request(&ClientHop {
            typed: &[],
            seq: 1,
            ..hop
        });
        let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(
            (
                body["command"].as_str(),
                body["payload"]["response"].as_str()
            ),
            (Some("initiate"), Some("*150*12#"))
        );
        let end = Beem.end_request(&hop, true).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&end.body).unwrap();
        assert_eq!(body["command"], "terminate");
        assert!(Beem.end_request(&hop, false).is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |body: &[u8]| parse(body, None).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"msisdn":"255712345678","command":"continue"}"#),
            "missing field session_id"
        );
        assert_eq!(
            err(br#"{"session_id":"s1","msisdn":"255712345678"}"#),
            "missing field command"
        );
        assert!(
            err(br#"{"session_id":"s1","msisdn":"255712345678","command":"restart"}"#)
                .contains("not initiate, continue or terminate")
        );
        assert!(err(br#"{"session_id":"s1","payload":[]}"#).contains("could not be parsed"));
        assert_eq!(err(b"\xfe"), "the body is not valid UTF-8");
    }
}
