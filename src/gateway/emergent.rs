//! Emergent Technology / Interpay (Ghana): Hubtel's request, a smaller JSON reply.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, from ussd-builder's
//! `emergent` provider):
//! - `POST /ussd/emergent`, JSON with Hubtel's fields: `Mobile` (`233…`, no `+`), `SessionId`,
//!   `ServiceCode` (`711*2`), `Type` (`Initiation` with the whole dial string in `Message`, then
//!   `Response` with only the latest input), `Operator` (a name, so no network code) and
//!   `Sequence` (one more per hop: the same number again is a retransmission). The request is
//!   parsed by [`hubtel::parse_as`], so `Type` is read case-insensitively there too;
//! - the reply is `{"Message", "Type": "Response" | "Release", "MaskNextRoute": true}`: no
//!   `SessionId`, `Label` or `DataType` as Hubtel has.
//!
//! Emergent documents no end-of-session report. Should it send Hubtel's `Release` or `Timeout`,
//! the route takes it as the shopper leaving (the drop-off nudge) and answers `Release`; the
//! client side sends none. No error body is documented, so a malformed request gets
//! `400 {"error": …}`. No screen size is documented either: pages hold 160 septets.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::hubtel::{self, Parsed};
use super::{read_json_reply, ClientHop, Gateway, WireRequest};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Emergent / Interpay.
pub struct Emergent;

pub const NAME: &str = "emergent";
const PATH: &str = "/ussd/emergent";

impl Gateway for Emergent {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Emergent / Interpay"
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
        WireRequest {
            path_and_query: PATH.to_owned(),
            ..hubtel::request(hop, kind, &hop.latest())
        }
    }

    fn end_request(&self, _: &ClientHop<'_>, _: bool) -> Option<WireRequest> {
        None
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        read_json_reply(status, body, "/Message", hubtel::ends)
    }
}

/// `POST /ussd/emergent`.
async fn callback(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    match hubtel::parse_as(&body, NAME).map_err(AppError::json)? {
        Parsed::Hop(req) => {
            let reply = crate::ussd::answer(&app, &req).await;
            Ok(Json(render(&reply)).into_response())
        }
        Parsed::End(end) => {
            crate::ussd::session_ended(&app, NAME, &end).await;
            Ok(Json(render(&Reply::end(""))).into_response())
        }
    }
}

/// The reply Emergent reads.
pub fn render(reply: &Reply) -> serde_json::Value {
    json!({
        "Message": reply.text,
        "Type": if reply.end { "Release" } else { "Response" },
        "MaskNextRoute": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::HopInput;
    use crate::msisdn::Msisdn;
    use axum::http::Method;

    fn hop(body: &str) -> crate::gateway::UssdRequest {
        match hubtel::parse_as(body.as_bytes(), NAME).unwrap() {
            Parsed::Hop(req) => req,
            Parsed::End(end) => panic!("not a hop: {end:?}"),
        }
    }

    #[test]
    fn an_initiation_is_a_dial_named_emergent() {
        let req = hop(
            r#"{"Mobile":"233244123456","SessionId":"a1b2c3d4","ServiceCode":"713*7","Type":"Initiation","Message":"*713*7*1#","Operator":"MTN","Sequence":1}"#,
        );
        assert_eq!(req.gateway, NAME);
        assert_eq!(req.msisdn.digits(), "233244123456");
        assert_eq!(req.service_code, "*713*7#");
        assert_eq!(req.input, HopInput::Dial(vec!["1".into()]));
        assert_eq!(req.hop_id.as_deref(), Some("1"));
        assert_eq!(req.network_code, None);
        assert_eq!(req.screen_max, Emergent.screen_max());
    }

    #[test]
    fn a_response_is_the_latest_input_whole() {
        let req = hop(
            r#"{"Mobile":"233244123456","SessionId":"a1b2c3d4","ServiceCode":"713*7","Type":"Response","Message":"1*2","Operator":"MTN","Sequence":3}"#,
        );
        assert_eq!(req.input, HopInput::Typed("1*2".into()));
        assert_eq!(req.hop_id.as_deref(), Some("3"));
    }

    #[test]
    fn replies_carry_message_type_and_mask_next_route() {
        assert_eq!(
            render(&Reply::con("Welcome\n1. Shop")),
            json!({"Message":"Welcome\n1. Shop","Type":"Response","MaskNextRoute":true})
        );
        assert_eq!(
            render(&Reply::end("Bye")),
            json!({"Message":"Bye","Type":"Release","MaskNextRoute":true})
        );
        for reply in [Reply::con("Pick"), Reply::end("Bye")] {
            let body = render(&reply).to_string();
            assert_eq!(
                Emergent.read_reply(200, &HeaderMap::new(), body.as_bytes()),
                Ok(reply)
            );
        }
        assert!(Emergent
            .read_reply(500, &HeaderMap::new(), b"oops")
            .is_err());
    }

    #[test]
    fn the_client_side_posts_hubtel_fields_to_the_emergent_route() {
        let phone = Msisdn::parse("233244123456").unwrap();
        let typed = vec!["2".to_owned()];
        let hop = ClientHop {
            session_id: "a1b2c3d4",
            phone: &phone,
            service_code: "*713*7#",
            network_code: "62001",
            dial: &[],
            typed: &typed,
            seq: 2,
        };
        let request = Emergent.hop_request(&hop);
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path_and_query, "/ussd/emergent");
        assert_eq!(request.content_type, Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["Mobile"], "233244123456");
        assert_eq!(body["ServiceCode"], "713*7");
        assert_eq!(body["Type"], "Response");
        assert_eq!(body["Message"], "2");
        assert_eq!(body["Sequence"], 2);
        let first = Emergent.hop_request(&ClientHop { typed: &[], ..hop });
        let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!(
            (body["Type"].as_str(), body["Message"].as_str()),
            (Some("Initiation"), Some("*713*7#"))
        );
        assert!(Emergent.end_request(&hop, true).is_none());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let err = |body: &[u8]| hubtel::parse_as(body, NAME).unwrap_err().to_string();
        assert_eq!(
            err(br#"{"Type":"Response","Mobile":"233244123456"}"#),
            "missing field SessionId"
        );
        assert!(
            err(br#"{"Type":"Response","Mobile":"12","SessionId":"s1"}"#)
                .contains("Mobile is invalid")
        );
        assert!(err(b"[1,2]").contains("could not be parsed"));
    }
}
