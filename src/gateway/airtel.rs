//! Airtel (Kenya) through Comviva Flares: query parameters in, a plain body and a `Freeflow`
//! header out.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, checked against vumi's
//! `transports/airtel/airtel.py` and its tests, "Flares HTTP Pull API 1.5.0"):
//! - every request is a `GET`; a hop has `SessionID`, `MSISDN` (`2547…`, no `+`), `MSC` (the
//!   switch, not the network) and `input`;
//! - on the first hop `input` is what was dialled without `*` and `#` (`384*12`, or `384*12*1`
//!   for a deep dial); later `input` is only that hop's input;
//! - a cleanup request (`SessionID`, `msisdn` in lower case, `clean`, `error`) says the session
//!   is over; it is answered `200` with an empty body;
//! - the reply is the screen as a plain body with `Freeflow: FC` (wait for input) or `FB` (close),
//!   `charge: N` and `amount: 0`.
//!
//! Flares numbers no hops and does not mark the first one; vumi tells it by its own session
//! store. An adapter cannot read the store, so it decides from the request:
//! - the dashboard URL may carry the shop's code, `GET /ussd/airtel?service_code=384*12`: an `input`
//!   equal to it, or starting with it and a `*`, is the first hop (the rest is a deep dial);
//! - without `code`, an `input` shaped like a dialled code (digit groups joined by `*`, the first
//!   of 3 to 6 digits not starting with 0) is the first hop and the whole of it is the service
//!   code (as vumi reads it: no deep dial). A menu choice or a quantity has at most 2 digits and a
//!   phone number starts with 0 or has more digits, so they stay inputs.
//!
//! An input misread as a first hop (typing `384` with `service_code=384`) is a duplicate start: the
//! session layer shows the current screen again and changes nothing. Retransmissions are
//! caught by the session layer's same-input window. Flares documents no screen size: 160.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{
    deep_dial_inputs, form_body, input, phone, service_code, session_id, BadCallback, ClientHop,
    Gateway, HopInput, SessionEnd, UssdRequest, WireRequest, SMALL_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Airtel via Comviva Flares.
pub struct Airtel;

pub const NAME: &str = "airtel";
const PATH: &str = "/ussd/airtel";

impl Gateway for Airtel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Airtel (Comviva Flares)"
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, get(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        let input = if hop.is_first() {
            bare(&hop.dial_string()).to_owned()
        } else {
            hop.latest()
        };
        WireRequest::get(
            PATH,
            &[
                ("service_code", bare(hop.service_code)),
                ("SessionID", hop.session_id),
                ("MSISDN", hop.phone.digits()),
                ("MSC", "254733000100"),
                ("input", &input),
            ],
        )
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        incomplete.then(|| {
            WireRequest::get(
                PATH,
                &[
                    ("service_code", bare(hop.service_code)),
                    ("msisdn", hop.phone.digits()),
                    ("clean", "clean-session"),
                    ("error", "522"),
                    ("SessionID", hop.session_id),
                    ("MSC", "254733000100"),
                ],
            )
        })
    }

    fn read_reply(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        let text = String::from_utf8_lossy(body);
        if status != 200 {
            return Err(format!("HTTP {status}: {text}"));
        }
        match headers.get("freeflow").and_then(|v| v.to_str().ok()) {
            Some("FC") => Ok(Reply::con(text)),
            Some("FB") => Ok(Reply::end(text)),
            other => Err(format!("Freeflow header is {other:?}, not FC or FB")),
        }
    }
}

/// A code as Flares writes it: `384*12`.
fn bare(code: &str) -> &str {
    code.trim().trim_start_matches('*').trim_end_matches('#')
}

/// The query, every parameter optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
struct Query {
    #[serde(rename = "SessionID")]
    session_id: Option<String>,
    #[serde(rename = "MSISDN")]
    msisdn_hop: Option<String>,
    #[serde(rename = "msisdn")]
    msisdn_cleanup: Option<String>,
    input: Option<String>,
    clean: Option<String>,
    /// The shop's code, when the dashboard URL carries it (`?service_code=384*12`, the same
    /// parameter as [`super::codeless`]'s).
    #[serde(alias = "code")]
    service_code: Option<String>,
}

/// What one Flares request is.
#[derive(Debug)]
pub enum Parsed {
    Hop(UssdRequest),
    /// A cleanup request: the session is over.
    End(SessionEnd),
}

/// Parses a Flares query string.
///
/// # Errors
/// [`BadCallback`] for invalid UTF-8, a missing `SessionID`, `MSISDN` (`msisdn` on a cleanup)
/// or `input`, or a number that is not a mobile number.
pub fn parse(query: &[u8]) -> Result<Parsed, BadCallback> {
    let raw: Query = form_body(query)?;
    let session_id = session_id(raw.session_id, "SessionID")?;
    let code = raw
        .service_code
        .as_deref()
        .map(bare)
        .filter(|c| !c.is_empty());
    if raw.clean.is_some() {
        let msisdn = raw.msisdn_cleanup.or(raw.msisdn_hop);
        return Ok(Parsed::End(SessionEnd {
            session_id,
            msisdn: phone(msisdn, "msisdn")?,
            service_code: code.map(service_code).unwrap_or_default(),
            incomplete: true,
        }));
    }
    let msisdn = phone(raw.msisdn_hop, "MSISDN")?;
    // Present but possibly empty: a shopper may press send without typing.
    let typed = input(
        Some(raw.input.ok_or(BadCallback::MissingField("input"))?),
        "input",
    )?;
    let (service_code, input) = match first_hop(code, &typed) {
        Some((code, inputs)) => (code, HopInput::Dial(inputs)),
        None => (
            code.map(service_code).unwrap_or_default(),
            HopInput::Typed(typed),
        ),
    };
    Ok(Parsed::Hop(UssdRequest {
        gateway: NAME,
        session_id,
        msisdn,
        service_code,
        network_code: None,
        input,
        hop_id: None,
        screen_max: SMALL_SCREEN_MAX,
    }))
}

/// When `input` is a first hop: the service code as dialled and the deep dial's inputs.
fn first_hop(code: Option<&str>, input: &str) -> Option<(String, Vec<String>)> {
    match code {
        Some(code) => (input == code || input.starts_with(&format!("{code}*")))
            .then(|| (service_code(code), deep_dial_inputs(code, input))),
        None => looks_dialled(input).then(|| (service_code(input), Vec::new())),
    }
}

/// Digit groups joined by `*`, the first of 3 to 6 digits and not starting with 0.
fn looks_dialled(input: &str) -> bool {
    let mut groups = input.split('*');
    let first = groups.next().unwrap_or_default();
    (3..=6).contains(&first.len())
        && !first.starts_with('0')
        && first.bytes().all(|b| b.is_ascii_digit())
        && groups.all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
}

/// `GET /ussd/airtel`.
async fn callback(State(app): State<AppState>, uri: Uri) -> Result<Response, AppError> {
    let query = uri.query().unwrap_or_default().as_bytes();
    match parse(query).map_err(AppError::text)? {
        Parsed::Hop(req) => {
            let reply = crate::ussd::answer(&app, &req).await;
            Ok(render(&reply))
        }
        Parsed::End(end) => {
            crate::ussd::session_ended(&app, NAME, &end).await;
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// The reply Flares reads: the screen as the body, the flow in the headers.
pub fn render(reply: &Reply) -> Response {
    let flow = if reply.end { "FB" } else { "FC" };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                HeaderName::from_static("freeflow"),
                HeaderValue::from_static(flow),
            ),
            (
                HeaderName::from_static("charge"),
                HeaderValue::from_static("N"),
            ),
            (
                HeaderName::from_static("amount"),
                HeaderValue::from_static("0"),
            ),
        ],
        reply.text.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(query: &str) -> UssdRequest {
        match parse(query.as_bytes()).unwrap() {
            Parsed::Hop(req) => req,
            Parsed::End(end) => panic!("not a hop: {end:?}"),
        }
    }

    #[test]
    fn a_first_hop_is_the_dialled_code() {
        // vumi's test_inbound_begin.
        let req = hop("SessionID=sess-1&MSISDN=27761234567&MSC=msc&input=121");
        assert_eq!(req.service_code, "*121#");
        assert_eq!(req.input, HopInput::Dial(vec![]));
        assert_eq!(req.msisdn.digits(), "27761234567");
        assert_eq!(req.hop_id, None);
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        let shared = hop("SessionID=s&MSISDN=254712345678&MSC=msc&input=167*7");
        assert_eq!(shared.service_code, "*167*7#");
        assert_eq!(shared.input, HopInput::Dial(vec![]));
    }

    #[test]
    fn with_the_shops_code_a_deep_dial_is_recognised() {
        let req =
            hop("service_code=384*12&SessionID=s&MSISDN=254712345678&MSC=msc&input=384*12*1*2");
        assert_eq!(req.service_code, "*384*12#");
        assert_eq!(req.input, HopInput::Dial(vec!["1".into(), "2".into()]));
        let later = hop("service_code=384*12&SessionID=s&MSISDN=254712345678&MSC=msc&input=384");
        assert_eq!(later.input, HopInput::Typed("384".into()));
        assert_eq!(later.service_code, "*384*12#");
    }

    #[test]
    fn later_hops_are_typed_inputs_whole() {
        for input in ["1", "98", "0712345678", "254712345678", "1*2", "7*a"] {
            let req = hop(&format!(
                "SessionID=s&MSISDN=254712345678&MSC=msc&input={input}"
            ));
            assert_eq!(req.input, HopInput::Typed(input.into()), "{input}");
        }
    }

    #[test]
    fn a_cleanup_request_ends_the_session() {
        // vumi's test_cleanup_as_seen_in_production, with a real-shaped number.
        let query = "msisdn=254712345678&clean=cleann&error=523&SessionID=13697502734175597&MSC=254733000100&=&=en&=9031510005344&=&=&=postpaid&=20130528171235405&=200220130528171113956582";
        match parse(query.as_bytes()).unwrap() {
            Parsed::End(end) => {
                assert_eq!(end.session_id, "13697502734175597");
                assert_eq!(end.msisdn.digits(), "254712345678");
                assert!(end.incomplete);
            }
            Parsed::Hop(req) => panic!("a cleanup is not a hop: {req:?}"),
        }
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |q: &[u8]| parse(q).unwrap_err().to_string();
        assert_eq!(err(b""), "missing field SessionID");
        assert_eq!(err(b"SessionID=s&input=1"), "missing field MSISDN");
        assert_eq!(
            err(b"SessionID=s&MSISDN=254712345678"),
            "missing field input"
        );
        assert_eq!(err(b"SessionID=s&clean=x"), "missing field msisdn");
        assert_eq!(err(b"SessionID=\xff"), "the body is not valid UTF-8");
    }

    #[test]
    fn replies_set_the_freeflow_header() {
        let con = render(&Reply::con("Welcome"));
        assert_eq!(con.headers()["freeflow"], "FC");
        assert_eq!(con.headers()["charge"], "N");
        assert_eq!(con.headers()["amount"], "0");
        let end = render(&Reply::end("Bye"));
        assert_eq!(end.headers()["freeflow"], "FB");
        let back = Airtel.read_reply(200, end.headers(), b"Bye").unwrap();
        assert_eq!(back, Reply::end("Bye"));
        assert!(Airtel.read_reply(200, &HeaderMap::new(), b"Bye").is_err());
    }

    #[test]
    fn the_client_side_sends_the_dial_then_each_input() {
        let phone = crate::msisdn::Msisdn::parse("+254712345678").unwrap();
        let dial = vec!["1".to_owned()];
        let typed = vec!["2".to_owned()];
        let first = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*384*12#",
            network_code: "63903",
            dial: &dial,
            typed: &[],
            seq: 1,
        };
        assert_eq!(
            Airtel.hop_request(&first).path_and_query,
            "/ussd/airtel?service_code=384*12&SessionID=s1&MSISDN=254712345678&MSC=254733000100&input=384*12*1"
        );
        let next = ClientHop {
            typed: &typed,
            seq: 2,
            ..first
        };
        assert!(Airtel
            .hop_request(&next)
            .path_and_query
            .ends_with("&input=2"));
        let end = Airtel.end_request(&next, true).unwrap();
        assert!(end.path_and_query.contains("clean=clean-session"));
        assert!(Airtel.end_request(&next, false).is_none());
    }
}
