//! The aggregator-neutral shape of a USSD hop, and the one table of gateways.
//!
//! Each aggregator has its own wire format (see `reference/ussd-gateways.md`). An adapter under
//! `gateway/` is one file implementing [`Gateway`]: its routes parse the wire request into a
//! [`UssdRequest`], hand it to [`crate::ussd::answer`], and render the neutral
//! [`Reply`](crate::menu::Reply) back in the wire format; the same file also speaks the client
//! side (what a phone behind that gateway would send), which is how `duka dial`, `duka bench`,
//! `duka replay` and the shared scenario tests drive every gateway through the same code.
//!
//! Adding a gateway is one new file and one line in [`GATEWAYS`].

pub mod africastalking;
pub mod airtel;
pub mod arkesel;
pub mod beem;
pub mod cellulant;
pub mod codeless;
pub mod emergent;
pub mod guard;
pub mod hubtel;
pub mod infobip;
pub mod nalo;
pub mod phone;
pub mod safaricom;

use axum::http::{HeaderMap, Method};
use axum::Router;

use crate::menu::Reply;
use crate::msisdn::Msisdn;
use crate::startup::AppState;

/// Every gateway Duka speaks, in the order the README lists them.
pub static GATEWAYS: &[&dyn Gateway] = &[
    &africastalking::AfricasTalking,
    &hubtel::Hubtel,
    &emergent::Emergent,
    &arkesel::Arkesel,
    &nalo::Nalo,
    &beem::Beem,
    &safaricom::Safaricom,
    &airtel::Airtel,
    &infobip::Infobip,
    &cellulant::Cellulant,
];

/// The gateway with this name (`africastalking`, `hubtel`, …).
pub fn by_name(name: &str) -> Option<&'static dyn Gateway> {
    GATEWAYS
        .iter()
        .copied()
        .find(|g| g.name().eq_ignore_ascii_case(name))
}

/// Every gateway's name, for error messages and `--help`.
pub fn names() -> String {
    GATEWAYS
        .iter()
        .map(|g| g.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Screen budgets: most gateways show 182 GSM-7 characters (178 leaves a margin); the
/// smallest any gateway documents is 160, and `duka check` checks every screen at that.
pub use crate::menu::{DEFAULT_SCREEN_MAX, SMALLEST_SCREEN_MAX as SMALL_SCREEN_MAX};

/// One USSD aggregator: its server routes and its client side.
pub trait Gateway: Sync {
    /// The name in routes, fixtures, metrics and `--gateway`: `hubtel`.
    fn name(&self) -> &'static str;
    /// The name a person knows it by: `Hubtel`.
    fn title(&self) -> &'static str;
    /// The longest screen, in GSM-7 septets, this gateway shows: the conservative 160 unless
    /// the gateway documents more.
    fn screen_max(&self) -> usize {
        SMALL_SCREEN_MAX
    }
    /// Whether it sends the whole input history on every hop (Africa's Talking, Safaricom).
    fn cumulative(&self) -> bool {
        false
    }
    /// Whether it numbers its hops, so a resend carries the number of the hop it repeats.
    fn numbers_hops(&self) -> bool {
        false
    }
    /// Whether the same input twice in a row reads, within the resend window, as one hop sent
    /// twice: per-hop gateways that number no hops. A client faster than a person (a test, a
    /// benchmark, a replay) waits out the window before typing the same input again.
    fn repeats_look_like_resends(&self) -> bool {
        !self.cumulative() && !self.numbers_hops()
    }
    /// The routes Duka serves for it, e.g. `POST /ussd/hubtel`.
    fn routes(&self) -> Router<AppState>;
    /// The request the gateway sends for one hop of a phone's session.
    fn hop_request(&self, hop: &ClientHop<'_>) -> WireRequest;
    /// The request the gateway sends when the phone's session ends (`incomplete`: the shopper
    /// left before an `END`), for gateways that report it.
    fn end_request(&self, hop: &ClientHop<'_>, incomplete: bool) -> Option<WireRequest>;
    /// Reads Duka's answer to a hop, as the gateway would.
    ///
    /// # Errors
    /// A description of what the gateway would not understand.
    fn read_reply(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Reply, String>;
}

/// One hop of a session as a phone behind a gateway makes it (the client side).
#[derive(Clone, Copy, Debug)]
pub struct ClientHop<'a> {
    /// The gateway's session id for this dial.
    pub session_id: &'a str,
    pub phone: &'a Msisdn,
    /// The dialled code, e.g. `*384*12#`.
    pub service_code: &'a str,
    /// MCC+MNC of the phone's network, e.g. `63902`.
    pub network_code: &'a str,
    /// The inputs dialled beyond the service code (a deep dial `*384*12*1*2#` has `1`, `2`).
    pub dial: &'a [String],
    /// What the shopper typed since the dial, this hop's input last; empty on the first hop.
    pub typed: &'a [String],
    /// 1 on the first hop, one more per new hop; a retransmission sends the same number.
    pub seq: u32,
}

impl ClientHop<'_> {
    /// Whether this is the first request of the session.
    pub fn is_first(&self) -> bool {
        self.typed.is_empty()
    }

    /// The whole input history joined by `*`, as cumulative gateways send it.
    pub fn cumulative_text(&self) -> String {
        self.dial
            .iter()
            .chain(self.typed)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("*")
    }

    /// The dial string as the phone dialled it: `*384*12*1*2#`.
    pub fn dial_string(&self) -> String {
        let base = self.service_code.trim_end_matches('#');
        let mut out = String::from(base);
        for input in self.dial {
            out.push('*');
            out.push_str(input);
        }
        out.push('#');
        out
    }

    /// The latest input, as per-hop gateways send it (the dial string on the first hop).
    pub fn latest(&self) -> String {
        match self.typed.last() {
            Some(input) => input.clone(),
            None => self.dial_string(),
        }
    }
}

/// An HTTP request a gateway would send, to be sent by any client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    pub method: Method,
    /// Path and query, e.g. `/ussd/airtel?SessionID=…`.
    pub path_and_query: String,
    /// `Content-Type` of the body, when there is one.
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl WireRequest {
    pub fn form(path: &str, fields: &[(&str, &str)]) -> Self {
        Self {
            method: Method::POST,
            path_and_query: path.to_owned(),
            content_type: Some("application/x-www-form-urlencoded"),
            body: serde_urlencoded::to_string(fields)
                .unwrap_or_default()
                .into_bytes(),
        }
    }

    pub fn get(path: &str, query: &[(&str, &str)]) -> Self {
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        Self {
            method: Method::GET,
            path_and_query: format!("{path}?{query}"),
            content_type: None,
            body: Vec::new(),
        }
    }

    pub fn json(method: Method, path: &str, body: &serde_json::Value) -> Self {
        Self {
            method,
            path_and_query: path.to_owned(),
            content_type: Some("application/json"),
            body: body.to_string().into_bytes(),
        }
    }
}

/// One hop of a USSD session, as every aggregator can describe it.
#[derive(Clone, Debug)]
pub struct UssdRequest {
    /// The gateway's name (a label for metrics and fixtures).
    pub gateway: &'static str,
    /// The aggregator's session id (unique per dial).
    pub session_id: String,
    pub msisdn: Msisdn,
    /// The dialled code, e.g. `*384*12#`.
    pub service_code: String,
    /// MCC+MNC of the shopper's network, when the aggregator says.
    pub network_code: Option<String>,
    pub input: HopInput,
    /// The gateway's own number for this hop (Hubtel's `Sequence`, Beem's `request_id`), when
    /// it sends one: the same number again is a retransmission.
    pub hop_id: Option<String>,
    /// The longest screen this gateway shows, in GSM-7 septets.
    pub screen_max: usize,
}

/// What the shopper typed, in the aggregator's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HopInput {
    /// The whole input history of the session joined by `*` (Africa's Talking, Safaricom).
    /// The new input is the part beyond the history already seen; the same text again is a
    /// retransmission of the previous hop.
    Cumulative(String),
    /// A per-hop gateway's first request: the inputs of a deep dial (none for a plain dial),
    /// already split with [`deep_dial_inputs`]. On a session that exists it is a duplicate
    /// start, answered with the current screen.
    Dial(Vec<String>),
    /// A per-hop gateway's later request: only the latest input, taken whole (a `*` in it is
    /// the shopper's).
    Typed(String),
}

/// The end of a session on the phone, as any gateway that reports it says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    pub session_id: String,
    pub msisdn: Msisdn,
    pub service_code: String,
    /// True when the shopper dropped off (walked away, timed out, lost signal) before the
    /// session ended with `END`.
    pub incomplete: bool,
}

/// The inputs of a deep dial: what `dial` holds beyond `service_code`.
///
/// Both may come with or without the leading `*` and trailing `#` (`*714*5*3#` with
/// `714*5`, or `384*12*1` with `*384*12#`). A dial string that does not start with the service
/// code is read as a plain dial: guessing which of its parts are inputs could buy the wrong
/// product.
pub fn deep_dial_inputs(service_code: &str, dial: &str) -> Vec<String> {
    let parts = |s: &str| -> Vec<String> {
        s.trim()
            .trim_start_matches('*')
            .trim_end_matches('#')
            .split('*')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let code = parts(service_code);
    let dialled = parts(dial);
    if code.is_empty() || !dialled.starts_with(&code) {
        return Vec::new();
    }
    dialled[code.len()..].to_vec()
}

/// A service code as shoppers dial it, `*384*12#`, from any gateway's shape of it (`384*12`).
pub fn service_code(raw: &str) -> String {
    let code = raw.trim().trim_start_matches('*').trim_end_matches('#');
    if code.is_empty() {
        String::new()
    } else {
        format!("*{code}#")
    }
}

/// Why a request is not a well-formed callback. Rendered as a 400 in the gateway's own shape.
#[derive(Debug, thiserror::Error)]
pub enum BadCallback {
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {field} is invalid: {why}")]
    InvalidField { field: &'static str, why: String },
    #[error("the body is not valid UTF-8")]
    NotUtf8,
    #[error("the body could not be parsed: {0}")]
    Malformed(String),
}

/// Longest accepted value of any field; a real input stays far below it.
pub const MAX_FIELD_LEN: usize = 2_000;

/// A required text field, trimmed, bounded.
///
/// # Errors
/// [`BadCallback::MissingField`] when absent or blank; [`BadCallback::InvalidField`] when longer
/// than [`MAX_FIELD_LEN`].
pub fn required(value: Option<String>, field: &'static str) -> Result<String, BadCallback> {
    match value {
        Some(v) if v.len() > MAX_FIELD_LEN => Err(BadCallback::InvalidField {
            field,
            why: format!("longer than {MAX_FIELD_LEN} bytes"),
        }),
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(BadCallback::MissingField(field)),
    }
}

/// A gateway's session id: letters, digits and `- _ . :` only, so it is safe in keys and logs.
///
/// # Errors
/// [`BadCallback`] naming `field` when it is missing or holds anything else.
pub fn session_id(value: Option<String>, field: &'static str) -> Result<String, BadCallback> {
    let id = required(value, field)?;
    if id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        Ok(id)
    } else {
        Err(BadCallback::InvalidField {
            field,
            why: "only letters, digits and - _ . : are expected".to_owned(),
        })
    }
}

/// The shopper's number in whatever shape the gateway sends it (`+2547…`, `2547…`, `07…`,
/// `233…`).
///
/// # Errors
/// [`BadCallback`] naming `field` when it is missing or not a mobile number.
pub fn phone(value: Option<String>, field: &'static str) -> Result<Msisdn, BadCallback> {
    let raw = required(value, field)?;
    Msisdn::parse(&raw).map_err(|e| BadCallback::InvalidField {
        field,
        why: e.to_string(),
    })
}

/// An optional input, bounded.
///
/// # Errors
/// [`BadCallback::InvalidField`] when longer than [`MAX_FIELD_LEN`].
pub fn input(value: Option<String>, field: &'static str) -> Result<String, BadCallback> {
    let value = value.unwrap_or_default();
    if value.len() > MAX_FIELD_LEN {
        return Err(BadCallback::InvalidField {
            field,
            why: format!("longer than {MAX_FIELD_LEN} bytes"),
        });
    }
    Ok(value.trim().to_owned())
}

/// A network code as Duka uses it: MCC+MNC digits (`63902`). Gateways that name the operator
/// instead (`vodafone`, `MTN`) give none, so the number's own prefix decides what it can pay
/// with.
pub fn network_code(raw: Option<String>) -> Option<String> {
    raw.map(|code| code.trim().to_owned())
        .filter(|code| (5..=6).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads a JSON reply back (the client side of the JSON gateways): the screen is at the JSON
/// pointer `screen` (`/message`, `/payload/request`), and `ends` reads from the whole object
/// whether it closes the session (`None`: the object does not say).
///
/// # Errors
/// A non-200 status, a body that is not JSON, or one without the screen or the flag.
pub fn read_json_reply(
    status: u16,
    body: &[u8],
    screen: &str,
    ends: impl Fn(&serde_json::Value) -> Option<bool>,
) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(body);
    if status != 200 {
        return Err(format!("HTTP {status}: {text}"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let shown = value
        .pointer(screen)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("no {screen} in {text}"))?;
    match ends(&value) {
        Some(true) => Ok(Reply::end(shown)),
        Some(false) => Ok(Reply::con(shown)),
        None => Err(format!("no continue or end flag in {text}")),
    }
}

/// Parses a JSON body into the gateway's raw request type.
///
/// # Errors
/// [`BadCallback::NotUtf8`] or [`BadCallback::Malformed`].
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadCallback> {
    std::str::from_utf8(body).map_err(|_| BadCallback::NotUtf8)?;
    serde_json::from_slice(body).map_err(|e| BadCallback::Malformed(e.to_string()))
}

/// Parses a form body (or a query string) into the gateway's raw request type.
///
/// # Errors
/// [`BadCallback::NotUtf8`] or [`BadCallback::Malformed`].
pub fn form_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BadCallback> {
    std::str::from_utf8(body).map_err(|_| BadCallback::NotUtf8)?;
    serde_urlencoded::from_bytes(body).map_err(|e| BadCallback::Malformed(e.to_string()))
}

/// A JSON field that some gateways send as a string and others as a number (`"2"` or `2`).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(untagged)]
pub enum Loose {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
    #[default]
    Null,
}

impl Loose {
    /// As text; `None` for null.
    pub fn text(&self) -> Option<String> {
        match self {
            Loose::Text(s) => Some(s.clone()),
            Loose::Number(n) => Some(n.to_string()),
            Loose::Bool(b) => Some(b.to_string()),
            Loose::Null => None,
        }
    }

    /// As a flag: `true`, `"true"`, `1`, `"1"` are true.
    pub fn flag(&self) -> bool {
        match self {
            Loose::Bool(b) => *b,
            Loose::Text(s) => s.eq_ignore_ascii_case("true") || s == "1",
            Loose::Number(n) => n.as_u64() == Some(1),
            Loose::Null => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deep_dial_yields_the_inputs_beyond_the_service_code() {
        assert_eq!(deep_dial_inputs("*714*5#", "*714*5*3#"), vec!["3"]);
        assert_eq!(deep_dial_inputs("714*5", "*714*5*3*2#"), vec!["3", "2"]);
        assert_eq!(deep_dial_inputs("*384*12#", "384*12*1"), vec!["1"]);
        assert!(deep_dial_inputs("*384*12#", "*384*12#").is_empty());
    }

    #[test]
    fn only_mcc_mnc_digits_are_network_codes() {
        assert_eq!(network_code(Some("63902".into())).as_deref(), Some("63902"));
        assert_eq!(network_code(Some("vodafone".into())), None);
        assert_eq!(network_code(Some(String::new())), None);
        assert_eq!(network_code(None), None);
    }

    #[test]
    fn service_codes_are_written_as_dialled() {
        assert_eq!(service_code("711*2"), "*711*2#");
        assert_eq!(service_code("*384*12#"), "*384*12#");
        assert_eq!(service_code(""), "");
    }

    #[test]
    fn a_dial_string_from_another_code_is_a_plain_dial() {
        assert!(deep_dial_inputs("*384*12#", "*999*1#").is_empty());
        assert!(deep_dial_inputs("", "*384*12*1#").is_empty());
        assert!(deep_dial_inputs("*384*12#", "*384*1#").is_empty());
    }

    #[test]
    fn the_client_side_builds_each_shape_of_input() {
        let phone = Msisdn::parse("254712345678").unwrap();
        let dial = vec!["1".to_owned()];
        let typed = vec!["2".to_owned(), "0712*34".to_owned()];
        let hop = ClientHop {
            session_id: "s1",
            phone: &phone,
            service_code: "*384*12#",
            network_code: "63902",
            dial: &dial,
            typed: &typed,
            seq: 3,
        };
        assert_eq!(hop.cumulative_text(), "1*2*0712*34");
        assert_eq!(hop.latest(), "0712*34");
        assert_eq!(hop.dial_string(), "*384*12*1#");
        let first = ClientHop { typed: &[], ..hop };
        assert!(first.is_first());
        assert_eq!(first.latest(), "*384*12*1#");
    }

    #[test]
    fn every_gateway_has_a_unique_name_and_is_found_by_it() {
        let mut names: Vec<_> = GATEWAYS.iter().map(|g| g.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), GATEWAYS.len());
        assert_eq!(by_name("Hubtel").map(|g| g.name()), Some("hubtel"));
        assert!(by_name("nope").is_none());
    }

    #[test]
    fn a_gateway_says_truly_whether_a_repeated_input_looks_like_a_resend() {
        let phone = Msisdn::parse("254712345678").unwrap();
        let once = vec!["1".to_owned()];
        let twice = vec!["1".to_owned(), "1".to_owned()];
        for gateway in GATEWAYS {
            let hop = |typed, seq| {
                gateway.hop_request(&ClientHop {
                    session_id: "s1",
                    phone: &phone,
                    service_code: "*384*12#",
                    network_code: "63902",
                    dial: &[],
                    typed,
                    seq,
                })
            };
            assert_eq!(
                gateway.repeats_look_like_resends(),
                hop(&once, 2) == hop(&twice, 3),
                "{}",
                gateway.name()
            );
        }
    }

    #[test]
    fn loose_fields_read_strings_numbers_and_flags() {
        let v: Loose = serde_json::from_str("2").unwrap();
        assert_eq!(v.text().as_deref(), Some("2"));
        let v: Loose = serde_json::from_str("\"2\"").unwrap();
        assert_eq!(v.text().as_deref(), Some("2"));
        let v: Loose = serde_json::from_str("\"true\"").unwrap();
        assert!(v.flag());
        let v: Loose = serde_json::from_str("false").unwrap();
        assert!(!v.flag());
    }
}
