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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::{
    form_body, input, network_code, phone, required, session_id, BadCallback, ClientHop, Gateway,
    HopInput, SessionEnd, UssdRequest, WireRequest, DEFAULT_SCREEN_MAX,
};
use crate::error::AppError;
use crate::menu::Reply;
use crate::startup::AppState;

/// Africa's Talking.
pub struct AfricasTalking;

/// The name in routes, fixtures and metrics.
pub const NAME: &str = "africastalking";
const HOP_PATH: &str = "/ussd/africastalking";
const END_PATH: &str = "/ussd/africastalking/session-end";

impl Gateway for AfricasTalking {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "Africa's Talking"
    }

    fn screen_max(&self) -> usize {
        DEFAULT_SCREEN_MAX
    }

    fn cumulative(&self) -> bool {
        true
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route(HOP_PATH, post(ussd_callback))
            .route(END_PATH, post(session_end))
    }

    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest {
        WireRequest::form(
            HOP_PATH,
            &[
                ("sessionId", hop.session_id),
                ("serviceCode", hop.service_code),
                ("phoneNumber", &hop.phone.e164()),
                ("networkCode", hop.network_code),
                ("text", &hop.cumulative_text()),
            ],
        )
    }

    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest> {
        let hops = (hop.typed.len() + 1).to_string();
        Some(WireRequest::form(
            END_PATH,
            &[
                ("sessionId", hop.session_id),
                ("serviceCode", hop.service_code),
                ("phoneNumber", &hop.phone.e164()),
                ("networkCode", hop.network_code),
                ("status", if incomplete { "Incomplete" } else { "Success" }),
                ("input", &hop.cumulative_text()),
                ("hopsCount", &hops),
                ("durationInMillis", "30000"),
                ("cost", "KES 0.00"),
            ],
        ))
    }

    fn read_reply(&self, status: u16, _: &HeaderMap, body: &[u8]) -> Result<Reply, String> {
        let body = String::from_utf8_lossy(body);
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        read_body(&body).ok_or_else(|| format!("neither CON nor END: {body:?}"))
    }
}

/// `POST /ussd/africastalking`: one hop of a session.
async fn ussd_callback(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    let req = parse(&body)?;
    let reply = crate::ussd::answer(&app, &req).await;
    Ok(text_reply(render(&reply)))
}

/// `POST /ussd/africastalking/session-end`: the session is over on the phone.
async fn session_end(State(app): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    let end = parse_session_end(&body)?;
    crate::ussd::session_ended(&app, NAME, &end).await;
    Ok(StatusCode::OK.into_response())
}

/// A `200 text/plain` reply, as the text gateways expect.
pub fn text_reply(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

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
/// that is not a mobile number. A missing `text` is read as empty, since some gateways omit it
/// on the first hop.
pub fn parse(body: &[u8]) -> Result<UssdRequest, BadCallback> {
    let form: UssdForm = form_body(body)?;
    Ok(UssdRequest {
        gateway: NAME,
        session_id: session_id(form.session_id, "sessionId")?,
        msisdn: phone(form.phone_number, "phoneNumber")?,
        service_code: form.service_code.unwrap_or_default(),
        network_code: network_code(form.network_code),
        input: HopInput::Cumulative(input(form.text, "text")?),
        hop_id: None,
        screen_max: DEFAULT_SCREEN_MAX,
    })
}

/// Renders a reply as Africa's Talking expects it.
pub fn render(reply: &Reply) -> String {
    let prefix = if reply.end { "END " } else { "CON " };
    let mut body = String::with_capacity(prefix.len() + reply.text.len());
    body.push_str(prefix);
    body.push_str(&reply.text);
    body
}

/// Reads a `CON …`/`END …` body back; `None` when it is neither.
pub fn read_body(body: &str) -> Option<Reply> {
    if let Some(text) = body.strip_prefix("CON ") {
        Some(Reply::con(text))
    } else {
        body.strip_prefix("END ").map(Reply::end)
    }
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

/// Parses the end-of-session notification.
///
/// # Errors
/// [`BadCallback`] when the body is not UTF-8 form data or lacks a session id or phone.
pub fn parse_session_end(body: &[u8]) -> Result<SessionEnd, BadCallback> {
    let form: SessionEndForm = form_body(body)?;
    Ok(SessionEnd {
        session_id: required(form.session_id, "sessionId")?,
        msisdn: phone(form.phone_number, "phoneNumber")?,
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
        assert_eq!(read_body("CON Hi"), Some(Reply::con("Hi")));
        assert_eq!(read_body("Hi"), None);
    }

    #[test]
    fn the_client_side_sends_the_cumulative_text() {
        let phone = crate::msisdn::Msisdn::parse("0712345678").unwrap();
        let typed = vec!["1".to_owned(), "2".to_owned()];
        let hop = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*384*12#",
            network_code: "63902",
            dial: &[],
            typed: &typed,
            seq: 3,
        };
        let wire = AfricasTalking.hop_request(&hop);
        assert_eq!(wire.path_and_query, "/ussd/africastalking");
        assert_eq!(
            String::from_utf8(wire.body).unwrap(),
            "sessionId=s1&serviceCode=*384*12%23&phoneNumber=%2B254712345678&networkCode=63902&text=1*2"
        );
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
