//! Nalo Solutions (Ghana): JSON in, JSON out, one input per hop, `MSGTYPE` for new / go on.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, from ussd-builder's `nalo`
//! provider and Nalo's Postman docs):
//! - `POST /ussd/nalo`, JSON `USERID` (the integration's id, echoed back), `MSISDN` (`233…`, no
//!   `+`), `USERDATA` (the whole dial string on a new session, then only the latest input, taken
//!   whole), `MSGTYPE` (`true` on a new session), `NETWORK` (an operator name, so no network
//!   code) and, in current payloads, `SESSIONID`;
//! - the reply is `{USERID, MSISDN, MSG, MSGTYPE}`, `MSGTYPE` `true` to go on, `false` to end.
//!
//! Where the reference and ussd-builder differ: ussd-builder keys the session by `MSISDN`
//! alone. This adapter keys it by `SESSIONID`, and only when that is absent by `MSISDN` and
//! `USERID` (`nalo-233…-USERID`); such a key is the same for every dial of that phone. A redial
//! after an `END` starts afresh (the session layer takes a dial on an ended session, past the
//! resend window, as a new one); a redial while the last dial's session is still open (the
//! shopper hung up mid-menu, within the session's five minutes) resumes its screen.
//!
//! Nalo sends no service code, so a deep dial is split only when the route's URL names the code
//! (`?service_code=920*12`, see [`codeless`]). It numbers no hops: a retransmission is the same
//! input again within the session layer's short window. It reports no end of session. Flags are
//! read whether they arrive as `true` or `"true"`. No error body is documented, so a malformed
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
    ClientHop, Gateway, HopInput, Loose, UssdRequest, WireRequest, SMALL_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Nalo Solutions.
pub struct Nalo;

pub const NAME: &str = "nalo";
const PATH: &str = "/ussd/nalo";
/// The `USERID` the client side sends.
const CLIENT_USER_ID: &str = "duka-test";

impl Gateway for Nalo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Nalo Solutions"
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, post(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        WireRequest::json(
            Method::POST,
            &codeless::path_with_code(PATH, hop.service_code),
            &json!({
                "USERID": CLIENT_USER_ID,
                "MSISDN": hop.phone.digits(),
                "USERDATA": hop.latest(),
                "MSGTYPE": hop.is_first(),
                "NETWORK": "MTN",
                "SESSIONID": hop.session_id,
            }),
        )
    }

    fn end_request(&self, _: &ClientHop<'_>, _: bool) -> Option<WireRequest> {
        None
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/MSG", |v| {
            v["MSGTYPE"].as_bool().map(|more| !more)
        })
    }
}

/// The request as Nalo posts it, every field optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct NaloRequest {
    userid: Option<Loose>,
    msisdn: Option<Loose>,
    userdata: Option<Loose>,
    msgtype: Option<Loose>,
    network: Option<Loose>,
    sessionid: Option<Loose>,
}

/// What the reply echoes back as Nalo sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    pub user_id: String,
    pub msisdn: String,
}

/// Parses a Nalo body; `code` is the service code configured on the route, if any.
///
/// # Errors
/// [`BadCallback`] for anything that is not such a request.
pub fn parse(body: &[u8], code: Option<&str>) -> Result<(UssdRequest, Echo), BadCallback> {
    let raw: NaloRequest = json_body(body)?;
    let text = |v: Option<Loose>| v.and_then(|v| v.text());
    let raw_msisdn = text(raw.msisdn);
    let echo_msisdn = raw_msisdn.clone().unwrap_or_default().trim().to_owned();
    let msisdn = phone(raw_msisdn, "MSISDN")?;
    let user_id = input(text(raw.userid), "USERID")?;
    let session_id = match text(raw.sessionid).filter(|id| !id.trim().is_empty()) {
        Some(id) => session_id(Some(id), "SESSIONID")?,
        None if user_id.is_empty() => return Err(BadCallback::MissingField("SESSIONID")),
        None => session_id(
            Some(format!("nalo-{}-{user_id}", msisdn.digits())),
            "USERID",
        )?,
    };
    let new_session = raw.msgtype.ok_or(BadCallback::MissingField("MSGTYPE"))?;
    let data = input(text(raw.userdata), "USERDATA")?;
    let (service_code, input) = if new_session.flag() {
        codeless::first_hop(code, &data)
    } else {
        (code.unwrap_or_default().to_owned(), HopInput::Typed(data))
    };
    Ok((
        UssdRequest {
            gateway: NAME,
            session_id,
            msisdn,
            service_code,
            network_code: network_code(text(raw.network)),
            input,
            hop_id: None,
            screen_max: SMALL_SCREEN_MAX,
        },
        Echo {
            user_id,
            msisdn: echo_msisdn,
        },
    ))
}

/// `POST /ussd/nalo`.
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

/// The reply Nalo reads.
pub fn render(echo: &Echo, reply: &Reply) -> serde_json::Value {
    json!({
        "USERID": echo.user_id,
        "MSISDN": echo.msisdn,
        "MSG": reply.text,
        "MSGTYPE": !reply.end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msisdn::Msisdn;

    const FIRST: &str = r#"{"USERID":"NALOTest","MSISDN":"233265518694","USERDATA":"*920*12*1#","MSGTYPE":true,"NETWORK":"MTN","SESSIONID":"16590115252429751"}"#;

    #[test]
    fn a_new_session_is_a_dial_keyed_by_sessionid() {
        let (req, echo) = parse(FIRST.as_bytes(), Some("*920*12#")).unwrap();
        assert_eq!(req.gateway, NAME);
        assert_eq!(req.session_id, "16590115252429751");
        assert_eq!(req.msisdn.digits(), "233265518694");
        assert_eq!(req.service_code, "*920*12#");
        assert_eq!(req.input, HopInput::Dial(vec!["1".into()]));
        assert_eq!((req.hop_id, req.network_code), (None, None));
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        assert_eq!(
            echo,
            Echo {
                user_id: "NALOTest".into(),
                msisdn: "233265518694".into()
            }
        );
        let (plain, _) = parse(FIRST.as_bytes(), None).unwrap();
        assert_eq!(plain.input, HopInput::Dial(Vec::new()));
    }

    #[test]
    fn without_sessionid_the_session_is_the_phone_and_the_integration() {
        let (req, _) = parse(
            br#"{"USERID":"NALOTest","MSISDN":"233265518694","USERDATA":"0712*34","MSGTYPE":false,"NETWORK":"MTN"}"#,
            None,
        )
        .unwrap();
        assert_eq!(req.session_id, "nalo-233265518694-NALOTest");
        assert_eq!(req.input, HopInput::Typed("0712*34".into()));
        let (string_flag, _) = parse(
            br#"{"USERID":"NALOTest","MSISDN":233265518694,"USERDATA":2,"MSGTYPE":"false","SESSIONID":"s1"}"#,
            None,
        )
        .unwrap();
        assert_eq!(string_flag.input, HopInput::Typed("2".into()));
        assert_eq!(string_flag.session_id, "s1");
    }

    #[test]
    fn replies_echo_the_integration_and_say_whether_it_continues() {
        let (_, echo) = parse(FIRST.as_bytes(), None).unwrap();
        assert_eq!(
            render(&echo, &Reply::con("Welcome\n1. Shop")),
            json!({"USERID":"NALOTest","MSISDN":"233265518694","MSG":"Welcome\n1. Shop","MSGTYPE":true})
        );
        assert_eq!(render(&echo, &Reply::end("Bye"))["MSGTYPE"], false);
        for reply in [Reply::con("Pick"), Reply::end("Bye")] {
            let body = render(&echo, &reply).to_string();
            assert_eq!(
                Nalo.read_reply(200, &HeaderMap::new(), body.as_bytes()),
                Ok(reply)
            );
        }
    }

    #[test]
    fn the_client_side_posts_what_nalo_sends() {
        let phone = Msisdn::parse("233265518694").unwrap();
        let hop = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*920*12#",
            network_code: "62001",
            dial: &[],
            typed: &[],
            seq: 1,
        };
        let request = Nalo.hop_request(&hop);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path_and_query, "/ussd/nalo?service_code=920*12");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&request.body).unwrap(),
            json!({"USERID":CLIENT_USER_ID,"MSISDN":"233265518694","USERDATA":"*920*12#","MSGTYPE":true,"NETWORK":"MTN","SESSIONID":"s1"})
        );
        let typed = vec!["1*2".to_owned()];
        let later = Nalo.hop_request(&ClientHop {
            typed: &typed,
            seq: 2,
            ..hop
        });
        let body: serde_json::Value = serde_json::from_slice(&later.body).unwrap();
        assert_eq!(
            (body["MSGTYPE"].as_bool(), body["USERDATA"].as_str()),
            (Some(false), Some("1*2"))
        );
        assert!(Nalo.end_request(&hop, true).is_none());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |body: &[u8]| parse(body, None).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"USERID":"NALOTest","MSGTYPE":true}"#),
            "missing field MSISDN"
        );
        assert_eq!(
            err(br#"{"MSISDN":"233265518694","MSGTYPE":true}"#),
            "missing field SESSIONID"
        );
        assert_eq!(
            err(br#"{"MSISDN":"233265518694","SESSIONID":"s1"}"#),
            "missing field MSGTYPE"
        );
        assert!(
            err(br#"{"MSISDN":"233265518694","USERID":"a b","MSGTYPE":true}"#)
                .contains("USERID is invalid")
        );
        assert!(err(b"").contains("could not be parsed"));
    }
}
