//! Arkesel (Ghana): JSON in, JSON out, one input per hop, `newSession` / `continueSession`.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, field names from
//! ussd-builder's `arkesel` provider):
//! - `POST /ussd/arkesel`, JSON `sessionID`, `userID` (the integration's id, echoed back),
//!   `newSession` (`true` on the first hop, when `userData` is the whole dial string), `msisdn`
//!   (`233…`, no `+`), `userData` (later: only the latest input, taken whole) and `network`
//!   (an operator name such as `MTN`, so no network code);
//! - the reply is `{sessionID, userID, msisdn, message, continueSession}`, the first three
//!   echoed as received.
//!
//! Arkesel sends no service code, so a deep dial is split only when the route's URL names the
//! code (`?service_code=928*01`, see [`codeless`]). It numbers no hops: a retransmission is the
//! same input again within the session layer's short window. It reports no end of session.
//! `newSession` is read as a flag whether it arrives as `true` or `"true"`. No error body is
//! documented, so a malformed request gets `400 {"error": …}`; no screen size either: pages
//! hold 160 septets.

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
    ClientHop, Gateway, HopInput, Loose, UssdRequest, WireRequest, SMALL_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Arkesel.
pub struct Arkesel;

pub const NAME: &str = "arkesel";
const PATH: &str = "/ussd/arkesel";
/// The `userID` the client side sends.
const CLIENT_USER_ID: &str = "duka-test";

impl Gateway for Arkesel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Arkesel"
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, post(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        WireRequest::json(
            Method::POST,
            &codeless::path_with_code(PATH, hop.service_code),
            &json!({
                "sessionID": hop.session_id,
                "userID": CLIENT_USER_ID,
                "newSession": hop.is_first(),
                "msisdn": hop.phone.digits(),
                "userData": hop.latest(),
                "network": "MTN",
            }),
        )
    }

    fn end_request(&self, _: &ClientHop<'_>, _: bool) -> Option<WireRequest> {
        None
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/message", |v| {
            v["continueSession"].as_bool().map(|more| !more)
        })
    }
}

/// The request as Arkesel posts it, every field optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArkeselRequest {
    #[serde(rename = "sessionID")]
    session_id: Option<String>,
    #[serde(rename = "userID")]
    user_id: Option<Loose>,
    new_session: Option<Loose>,
    msisdn: Option<Loose>,
    user_data: Option<Loose>,
    network: Option<Loose>,
}

/// What the reply echoes back as Arkesel sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    pub session_id: String,
    pub user_id: String,
    pub msisdn: String,
}

/// Parses an Arkesel body; `code` is the service code configured on the route, if any.
///
/// # Errors
/// [`BadCallback`] for anything that is not such a request.
pub fn parse(body: &[u8], code: Option<&str>) -> Result<(UssdRequest, Echo), BadCallback> {
    let raw: ArkeselRequest = json_body(body)?;
    let session_id = session_id(raw.session_id, "sessionID")?;
    let raw_msisdn = raw.msisdn.and_then(|m| m.text());
    let echo_msisdn = raw_msisdn.clone().unwrap_or_default();
    let msisdn = phone(raw_msisdn, "msisdn")?;
    let new_session = raw
        .new_session
        .ok_or(BadCallback::MissingField("newSession"))?;
    let data = input(raw.user_data.and_then(|d| d.text()), "userData")?;
    let (service_code, input) = if new_session.flag() {
        codeless::first_hop(code, &data)
    } else {
        (code.unwrap_or_default().to_owned(), HopInput::Typed(data))
    };
    let user_id = input_text(raw.user_id, "userID")?;
    let echo = Echo {
        session_id: session_id.clone(),
        user_id,
        msisdn: echo_msisdn.trim().to_owned(),
    };
    Ok((
        UssdRequest {
            gateway: NAME,
            session_id,
            msisdn,
            service_code,
            network_code: network_code(raw.network.and_then(|n| n.text())),
            input,
            hop_id: None,
            screen_max: SMALL_SCREEN_MAX,
        },
        echo,
    ))
}

/// An optional string-or-number field, bounded.
fn input_text(value: Option<Loose>, field: &'static str) -> Result<String, BadCallback> {
    input(value.and_then(|v| v.text()), field)
}

/// `POST /ussd/arkesel`.
async fn callback(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, AppError> {
    let code = codeless::configured(query.as_deref()).map_err(AppError::json)?;
    let (req, echo) = parse(&body, code.as_deref()).map_err(AppError::json)?;
    let reply = crate::ussd::answer(&app, &req).await;
    Ok(Json(render(&echo, &reply)).into_response())
}

/// The reply Arkesel reads.
pub fn render(echo: &Echo, reply: &Reply) -> serde_json::Value {
    json!({
        "sessionID": echo.session_id,
        "userID": echo.user_id,
        "msisdn": echo.msisdn,
        "message": reply.text,
        "continueSession": !reply.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msisdn::Msisdn;

    const FIRST: &str = r#"{"sessionID":"16578232145467","userID":"ARKESEL_USER","newSession":true,"msisdn":"233541234567","userData":"*928*01*2#","network":"MTN"}"#;

    #[test]
    fn a_new_session_is_a_dial_split_by_the_configured_code() {
        let (req, echo) = parse(FIRST.as_bytes(), Some("*928*01#")).unwrap();
        assert_eq!(req.gateway, NAME);
        assert_eq!(req.session_id, "16578232145467");
        assert_eq!(req.msisdn.digits(), "233541234567");
        assert_eq!(req.service_code, "*928*01#");
        assert_eq!(req.input, HopInput::Dial(vec!["2".into()]));
        assert_eq!((req.hop_id, req.network_code), (None, None));
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        assert_eq!(
            echo,
            Echo {
                session_id: "16578232145467".into(),
                user_id: "ARKESEL_USER".into(),
                msisdn: "233541234567".into(),
            }
        );
        let (plain, _) = parse(FIRST.as_bytes(), None).unwrap();
        assert_eq!(plain.input, HopInput::Dial(Vec::new()));
        assert_eq!(plain.service_code, "*928*01*2#");
    }

    #[test]
    fn a_later_hop_is_the_input_whole() {
        let (req, _) = parse(
            br#"{"sessionID":"16578232145467","userID":"ARKESEL_USER","newSession":"false","msisdn":"233541234567","userData":"0712*34","network":"MTN"}"#,
            None,
        )
        .unwrap();
        assert_eq!(req.input, HopInput::Typed("0712*34".into()));
        let (number, _) = parse(
            br#"{"sessionID":"s1","userID":7,"newSession":false,"msisdn":"233541234567","userData":2}"#,
            None,
        )
        .unwrap();
        assert_eq!(number.input, HopInput::Typed("2".into()));
    }

    #[test]
    fn replies_echo_the_session_and_say_whether_it_continues() {
        let (_, echo) = parse(FIRST.as_bytes(), None).unwrap();
        assert_eq!(
            render(&echo, &Reply::con("Welcome\n1. Shop")),
            json!({"sessionID":"16578232145467","userID":"ARKESEL_USER","msisdn":"233541234567","message":"Welcome\n1. Shop","continueSession":true})
        );
        assert_eq!(render(&echo, &Reply::end("Bye"))["continueSession"], false);
        for reply in [Reply::con("Pick"), Reply::end("Bye")] {
            let body = render(&echo, &reply).to_string();
            assert_eq!(
                Arkesel.read_reply(200, &HeaderMap::new(), body.as_bytes()),
                Ok(reply)
            );
        }
    }

    #[test]
    fn the_client_side_posts_what_arkesel_sends() {
        let phone = Msisdn::parse("233541234567").unwrap();
        let dial = vec!["2".to_owned()];
        let hop = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*928*01#",
            network_code: "62001",
            dial: &dial,
            typed: &[],
            seq: 1,
        };
        let request = Arkesel.hop_request(&hop);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path_and_query, "/ussd/arkesel?service_code=928*01");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
            json!({"sessionID":"s1","userID":CLIENT_USER_ID,"newSession":true,"msisdn":"233541234567","userData":"*928*01*2#","network":"MTN"})
        );
        let typed = vec!["3".to_owned()];
        let later = Arkesel.hop_request(&ClientHop {
            typed: &typed,
            seq: 2,
            ..hop
        });
        let body: serde_json::Value = serde_json::from_slice(&later.body).unwrap();
        assert_eq!(
            (body["newSession"].as_bool(), body["userData"].as_str()),
            (Some(false), Some("3"))
        );
        assert!(Arkesel.end_request(&hop, true).is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |body: &[u8]| parse(body, None).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"sessionID":"s1","newSession":true}"#),
            "missing field msisdn"
        );
        assert_eq!(
            err(br#"{"sessionID":"s1","msisdn":"233541234567"}"#),
            "missing field newSession"
        );
        assert!(
            err(br#"{"sessionID":"s 1","msisdn":"233541234567"}"#).contains("sessionID is invalid")
        );
        assert!(err(b"{\"sessionID\":").contains("could not be parsed"));
        assert_eq!(err(b"\xff"), "the body is not valid UTF-8");
    }
}
