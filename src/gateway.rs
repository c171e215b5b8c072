//! The aggregator-neutral shape of a USSD hop.
//!
//! Each aggregator has its own wire format (see `reference/ussd-gateways.md`): Africa's Talking
//! and Safaricom send the whole input history joined by `*`; Hubtel, Arkesel and Nalo send only
//! the latest input. An adapter under `gateway/` turns its wire format into a [`UssdRequest`] and
//! renders the [`Reply`](crate::menu::Reply) back; [`crate::session`] does the rest. A new
//! aggregator needs only a new adapter.

pub mod africastalking;

use crate::msisdn::Msisdn;

/// One hop of a USSD session, as every aggregator can describe it.
#[derive(Clone, Debug)]
pub struct UssdRequest {
    /// The aggregator's session id (unique per dial).
    pub session_id: String,
    pub msisdn: Msisdn,
    /// The dialled code, e.g. `*384*12#`.
    pub service_code: String,
    /// MCC+MNC of the shopper's network, when the aggregator says.
    pub network_code: Option<String>,
    pub input: HopInput,
}

/// What the shopper typed, in the aggregator's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HopInput {
    /// The whole input history of the session joined by `*` (Africa's Talking, Safaricom).
    /// The new input is the part beyond the history already seen; the same text again is a
    /// retransmission of the previous hop.
    Cumulative(String),
    /// Only the latest input (Hubtel, Arkesel, Nalo); on the first hop, the inputs of a deep
    /// dial, already split.
    Latest(Vec<String>),
}

/// Why a request is not a well-formed callback. Rendered as a plain 400 in one place.
#[derive(Debug, thiserror::Error)]
pub enum BadCallback {
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("field {field} is invalid: {why}")]
    InvalidField { field: &'static str, why: String },
    #[error("the body is not valid UTF-8 form data")]
    NotUtf8,
    #[error("the body could not be parsed: {0}")]
    Malformed(String),
}
