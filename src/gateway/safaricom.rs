//! Safaricom's own USSD gateway (Kenya): query or form parameters in, `CON`/`END` text out.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, checked against vumi's
//! `transports/safaricom/safaricom.py`):
//! - `GET` (query) or `POST` (form) with `ORIG` (the shopper, `2547…` without `+`), `DEST` (the
//!   short code's digits, `384`), `SESSION_ID` and `USSD_PARAMS`;
//! - `USSD_PARAMS` is cumulative like Africa's Talking's `text` (every input of the session
//!   joined by `*`), and may be empty or absent on the first hop;
//! - the session start can arrive twice: the same empty text again is a retransmission, which
//!   the session layer answers with the same screen;
//! - a deep dial looks the same as dialling the short code and then typing, so it needs no
//!   handling of its own;
//! - the reply is `200 text/plain` starting `CON ` or `END `, as for Africa's Talking.
//!
//! Safaricom reports no end of session. Its screens hold 182 characters.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::africastalking::{read_body, render, text_reply};
use super::{
    form_body, input, phone, required, service_code, session_id, BadCallback, ClientHop, Gateway,
    HopInput, UssdRequest, WireRequest, DEFAULT_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Safaricom direct.
pub struct Safaricom;

pub const NAME: &str = "safaricom";
const PATH: &str = "/ussd/safaricom";

impl Gateway for Safaricom {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Safaricom"
    }

    fn screen_max(&self) -> usize {
        DEFAULT_SCREEN_MAX
    }

    fn cumulative(&self) -> bool {
        true
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, get(callback).post(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        WireRequest::get(
            PATH,
            &[
                ("ORIG", hop.phone.digits()),
                ("DEST", hop.service_code.trim_matches(['*', '#'])),
                ("SESSION_ID", hop.session_id),
                ("USSD_PARAMS", &hop.cumulative_text()),
            ],
        )
    }

    fn end_request(&self, _: &ClientHop<'_>, _: bool) -> Option<WireRequest> {
        None
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        let body = String::from_utf8_lossy(body);
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        read_body(&body).ok_or_else(|| format!("neither CON nor END: {body:?}"))
    }
}

/// The parameters, every one optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
struct Params {
    orig: Option<String>,
    dest: Option<String>,
    session_id: Option<String>,
    ussd_params: Option<String>,
}

/// Parses Safaricom's parameters (a query string or a form body).
///
/// # Errors
/// [`BadCallback`] for invalid UTF-8, a missing `SESSION_ID`, `ORIG` or `DEST`, or an `ORIG`
/// that is not a mobile number.
pub fn parse(params: &[u8]) -> Result<UssdRequest, BadCallback> {
    let raw: Params = form_body(params)?;
    Ok(UssdRequest {
        gateway: NAME,
        session_id: session_id(raw.session_id, "SESSION_ID")?,
        msisdn: phone(raw.orig, "ORIG")?,
        service_code: service_code(&required(raw.dest, "DEST")?),
        // Safaricom's own gateway serves only Safaricom subscribers.
        network_code: Some("63902".to_owned()),
        input: HopInput::Cumulative(input(raw.ussd_params, "USSD_PARAMS")?),
        hop_id: None,
        screen_max: DEFAULT_SCREEN_MAX,
    })
}

/// The parameters of a request: the query of a `GET`, the form of a `POST` (or its query when
/// the body is empty).
pub fn params<'a>(method: &Method, uri: &'a Uri, body: &'a [u8]) -> &'a [u8] {
    if method == Method::POST && !body.is_empty() {
        body
    } else {
        uri.query().unwrap_or_default().as_bytes()
    }
}

/// `GET` or `POST /ussd/safaricom`.
async fn callback(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Result<Response, AppError> {
    let req = parse(params(&method, &uri, &body)).map_err(AppError::text)?;
    let reply = crate::ussd::answer(&app, &req).await;
    Ok(text_reply(render(&reply)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_hop_without_params_is_an_empty_cumulative_text() {
        let req = parse(b"ORIG=254712345678&DEST=384&SESSION_ID=12345678").unwrap();
        assert_eq!(req.session_id, "12345678");
        assert_eq!(req.msisdn.digits(), "254712345678");
        assert_eq!(req.service_code, "*384#");
        assert_eq!(req.input, HopInput::Cumulative(String::new()));
        assert_eq!(req.hop_id, None);
        assert_eq!(req.screen_max, DEFAULT_SCREEN_MAX);
        let empty = parse(b"ORIG=254712345678&DEST=384&SESSION_ID=1&USSD_PARAMS=").unwrap();
        assert_eq!(empty.input, HopInput::Cumulative(String::new()));
    }

    #[test]
    fn later_hops_carry_the_whole_history() {
        let req =
            parse(b"ORIG=0712345678&DEST=384&SESSION_ID=s1&USSD_PARAMS=1%2A2%2A0712*34").unwrap();
        assert_eq!(req.input, HopInput::Cumulative("1*2*0712*34".into()));
        assert_eq!(req.msisdn.digits(), "254712345678");
    }

    #[test]
    fn get_reads_the_query_and_post_the_form() {
        let uri: Uri = "/ussd/safaricom?ORIG=254712345678".parse().unwrap();
        assert_eq!(params(&Method::GET, &uri, b"x=1"), b"ORIG=254712345678");
        assert_eq!(params(&Method::POST, &uri, b"x=1"), b"x=1");
        assert_eq!(params(&Method::POST, &uri, b""), b"ORIG=254712345678");
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |p: &[u8]| parse(p).unwrap_err().to_string();
        assert_eq!(err(b""), "missing field SESSION_ID");
        assert_eq!(err(b"SESSION_ID=s1&DEST=384"), "missing field ORIG");
        assert_eq!(
            err(b"SESSION_ID=s1&ORIG=254712345678"),
            "missing field DEST"
        );
        assert!(err(b"SESSION_ID=s1&ORIG=123&DEST=384").contains("field ORIG is invalid"));
        assert_eq!(err(b"SESSION_ID=\xff"), "the body is not valid UTF-8");
    }

    #[test]
    fn replies_and_the_client_side_speak_safaricoms_shape() {
        assert_eq!(render(&Reply::con("Hi")), "CON Hi");
        let back = Safaricom
            .read_reply(200, &HeaderMap::new(), b"END Bye")
            .unwrap();
        assert_eq!(back, Reply::end("Bye"));
        let phone = crate::msisdn::Msisdn::parse("+254712345678").unwrap();
        let typed = vec!["1".to_owned(), "2".to_owned()];
        let hop = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*384#",
            network_code: "63902",
            dial: &[],
            typed: &typed,
            seq: 3,
        };
        let wire = Safaricom.hop_request(&hop);
        assert_eq!(wire.method, Method::GET);
        assert_eq!(
            wire.path_and_query,
            "/ussd/safaricom?ORIG=254712345678&DEST=384&SESSION_ID=s1&USSD_PARAMS=1*2"
        );
        assert!(Safaricom.end_request(&hop, true).is_none());
    }
}
