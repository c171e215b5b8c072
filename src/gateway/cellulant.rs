//! Cellulant's USSD gateway (before Tingg): query parameters in, a pipe-delimited line out.
//!
//! Wire facts this adapter relies on (`reference/ussd-gateways.md`, checked against vumi's
//! `transports/cellulant/cellulant.py` and its tests):
//! - every request is a `GET` with `MSISDN` (`2547…`), `sessionID`, `INPUT`, `opCode` and
//!   `ABORT`;
//! - `opCode=BEG` starts a session and `INPUT` is then the whole dial string (`*120*1#`); any
//!   other `opCode` (vumi's tests send an empty one) carries only that hop's input;
//! - `opCode=ABO`, or an `ABORT` other than `0`/`null`/empty, means the phone aborted: the
//!   session is over and the answer is an empty `200`;
//! - the reply is `nextLevel|message|valueOfSelection|serviceID|status|extra`: Duka, like vumi,
//!   sends `1|<screen>|null|null|null|null` to continue and `status` `end` to close.
//!
//! Cellulant does not send the service code apart from the dial string, so, as for Airtel,
//! the dashboard URL may carry the shop's code (`GET /ussd/cellulant?service_code=384*12`): a `BEG`
//! dial string beyond it is a deep dial. Without it the dial string is the service code and a
//! deep dial shows the first screen.
//!
//! A `|` inside a screen would shift the fields. The catalog's texts never hold one today, but
//! a shop's product name could, so [`render`] writes it as `/`. Cellulant numbers no hops;
//! retransmissions are caught by the session layer's same-input window. No screen size is
//! documented: 160.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
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

/// Cellulant.
pub struct Cellulant;

pub const NAME: &str = "cellulant";
const PATH: &str = "/ussd/cellulant";

impl Gateway for Cellulant {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Cellulant"
    }

    fn routes(&self) -> Router<AppState> {
        Router::new().route(PATH, get(callback))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        let (op, input) = if hop.is_first() {
            ("BEG", hop.dial_string())
        } else {
            ("", hop.latest())
        };
        request(hop, op, &input, "0")
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        incomplete.then(|| request(hop, "ABO", "", "1"))
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        let text = String::from_utf8_lossy(body);
        if status != 200 {
            return Err(format!("HTTP {status}: {text}"));
        }
        let fields: Vec<&str> = text.split('|').collect();
        match fields.as_slice() {
            [_, screen, _, _, "end", _] => Ok(Reply::end(*screen)),
            [_, screen, _, _, "null", _] => Ok(Reply::con(*screen)),
            _ => Err(format!("not six pipe-delimited fields: {text:?}")),
        }
    }
}

fn request(hop: &ClientHop<'_>, op: &str, input: &str, abort: &str) -> WireRequest {
    WireRequest::get(
        PATH,
        &[
            ("service_code", hop.service_code.trim_matches(['*', '#'])),
            ("MSISDN", hop.phone.digits()),
            ("sessionID", hop.session_id),
            ("INPUT", input),
            ("opCode", op),
            ("ABORT", abort),
        ],
    )
}

/// The query, every parameter optional so a missing one gets a clear message.
#[derive(Debug, Default, Deserialize)]
struct Query {
    #[serde(rename = "MSISDN")]
    msisdn: Option<String>,
    #[serde(rename = "sessionID")]
    session_id: Option<String>,
    #[serde(rename = "INPUT")]
    input: Option<String>,
    #[serde(rename = "opCode")]
    op_code: Option<String>,
    #[serde(rename = "ABORT")]
    abort: Option<String>,
    /// The shop's code, when the dashboard URL carries it (`?service_code=384*12`, the same
    /// parameter as [`super::codeless`]'s).
    #[serde(alias = "code")]
    service_code: Option<String>,
}

/// What one Cellulant request is.
#[derive(Debug)]
pub enum Parsed {
    Hop(UssdRequest),
    /// An abort: the session is over.
    End(SessionEnd),
}

/// Parses a Cellulant query string.
///
/// # Errors
/// [`BadCallback`] for invalid UTF-8, a missing `sessionID` or `MSISDN`, or a number that is
/// not a mobile number.
pub fn parse(query: &[u8]) -> Result<Parsed, BadCallback> {
    let raw: Query = form_body(query)?;
    let session_id = session_id(raw.session_id, "sessionID")?;
    let msisdn = phone(raw.msisdn, "MSISDN")?;
    let code = raw
        .service_code
        .as_deref()
        .map(service_code)
        .filter(|c| !c.is_empty());
    let op = raw.op_code.unwrap_or_default();
    let aborted = raw
        .abort
        .as_deref()
        .is_some_and(|a| !matches!(a.trim(), "" | "0" | "null"));
    if op.eq_ignore_ascii_case("ABO") || aborted {
        return Ok(Parsed::End(SessionEnd {
            session_id,
            msisdn,
            service_code: code.unwrap_or_default(),
            incomplete: true,
        }));
    }
    let typed = input(raw.input, "INPUT")?;
    let (service_code, input) = if op.eq_ignore_ascii_case("BEG") {
        match code {
            Some(code) => {
                let inputs = deep_dial_inputs(&code, &typed);
                (code, HopInput::Dial(inputs))
            }
            None => (service_code(&typed), HopInput::Dial(Vec::new())),
        }
    } else {
        (code.unwrap_or_default(), HopInput::Typed(typed))
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

/// `GET /ussd/cellulant`.
async fn callback(State(app): State<AppState>, uri: Uri) -> Result<Response, AppError> {
    let query = uri.query().unwrap_or_default().as_bytes();
    match parse(query).map_err(AppError::text)? {
        Parsed::Hop(req) => {
            let reply = crate::ussd::answer(&app, &req).await;
            Ok(text(render(&reply)))
        }
        Parsed::End(end) => {
            crate::ussd::session_ended(&app, NAME, &end).await;
            Ok(text(String::new()))
        }
    }
}

fn text(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The line Cellulant reads; a `|` in the screen is written `/` so it cannot shift the fields.
pub fn render(reply: &Reply) -> String {
    let status = if reply.end { "end" } else { "null" };
    format!("1|{}|null|null|{status}|null", reply.text.replace('|', "/"))
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
    fn beg_starts_a_session_with_the_dial_string() {
        // vumi's test_inbound_begin.
        let req = hop("MSISDN=27761234567&sessionID=1&INPUT=%2A120%2A1%23&opCode=BEG&ABORT=0");
        assert_eq!(req.service_code, "*120*1#");
        assert_eq!(req.input, HopInput::Dial(vec![]));
        assert_eq!(req.msisdn.digits(), "27761234567");
        assert_eq!(req.screen_max, SMALL_SCREEN_MAX);
        let deep = hop(
            "service_code=384*12&MSISDN=254712345678&sessionID=1&INPUT=%2A384%2A12%2A1%23&opCode=BEG&ABORT=0",
        );
        assert_eq!(deep.service_code, "*384*12#");
        assert_eq!(deep.input, HopInput::Dial(vec!["1".into()]));
    }

    #[test]
    fn later_hops_carry_only_their_input() {
        // vumi's test_inbound_resume_and_reply_with_end.
        let req = hop("MSISDN=27761234567&sessionID=1&INPUT=hi&opCode=&ABORT=0");
        assert_eq!(req.input, HopInput::Typed("hi".into()));
        let star = hop("MSISDN=254712345678&sessionID=1&INPUT=0712*34&opCode=&ABORT=null");
        assert_eq!(star.input, HopInput::Typed("0712*34".into()));
    }

    #[test]
    fn an_abort_ends_the_session() {
        for query in [
            "MSISDN=254712345678&sessionID=1&INPUT=&opCode=ABO&ABORT=0",
            "MSISDN=254712345678&sessionID=1&INPUT=1&opCode=&ABORT=1",
        ] {
            match parse(query.as_bytes()).unwrap() {
                Parsed::End(end) => assert!(end.incomplete && end.session_id == "1"),
                Parsed::Hop(req) => panic!("{query} is not a hop: {req:?}"),
            }
        }
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let err = |q: &[u8]| parse(q).unwrap_err().to_string();
        assert_eq!(err(b""), "missing field sessionID");
        assert_eq!(err(b"sessionID=1&INPUT=1"), "missing field MSISDN");
        assert!(err(b"sessionID=1&MSISDN=42").contains("field MSISDN is invalid"));
        assert_eq!(err(b"sessionID=\xff"), "the body is not valid UTF-8");
    }

    #[test]
    fn replies_are_six_pipe_delimited_fields() {
        assert_eq!(
            render(&Reply::con("ussd message")),
            "1|ussd message|null|null|null|null"
        );
        assert_eq!(
            render(&Reply::end("hello world")),
            "1|hello world|null|null|end|null"
        );
        let piped = render(&Reply::con("Soap | Bar"));
        assert_eq!(piped, "1|Soap / Bar|null|null|null|null");
        let back = Cellulant
            .read_reply(200, &HeaderMap::new(), piped.as_bytes())
            .unwrap();
        assert_eq!(back, Reply::con("Soap / Bar"));
        assert!(Cellulant
            .read_reply(200, &HeaderMap::new(), b"CON hi")
            .is_err());
    }

    #[test]
    fn the_client_side_begins_then_sends_each_input() {
        let phone = crate::msisdn::Msisdn::parse("+254712345678").unwrap();
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
        assert_eq!(
            Cellulant.hop_request(&first).path_and_query,
            "/ussd/cellulant?service_code=384*12&MSISDN=254712345678&sessionID=s1&INPUT=*384*12%23&opCode=BEG&ABORT=0"
        );
        let next = ClientHop {
            typed: &typed,
            seq: 2,
            ..first
        };
        assert!(Cellulant
            .hop_request(&next)
            .path_and_query
            .contains("&INPUT=2&opCode=&"));
        let end = Cellulant.end_request(&next, true).unwrap();
        assert!(end.path_and_query.contains("opCode=ABO"));
    }
}
