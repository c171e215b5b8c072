//! [`MpesaError`]: every way a Daraja call fails, sorted by what the caller may do next.
//!
//! Daraja reports errors as a non-2xx reply with the envelope
//! `{"requestId":…,"errorCode":"400.002.02","errorMessage":"Bad Request - Invalid PhoneNumber"}`.
//! We key on `errorCode`, never on the HTTP status alone (`500.001.1001` comes with a 500 but is a
//! refusal, not an outage), and keep the status and the first bytes when a body is not JSON.
//!
//! After a failed push, the caller's question is whether the prompt can be on the phone.
//! [`MpesaError::disposition`] answers it with one of three [`Disposition`]s:
//! - **never arrived** (connection refused, connect timeout, no token, our own checks): nothing
//!   reached Daraja, so pushing again is safe;
//! - **ambiguous** (read timeout after sending, a 5xx that is not a known refusal, a 2xx we cannot
//!   read): the prompt may be on the phone, so query before pushing again;
//! - **rejected** (an error envelope, a 4xx, HTTP 429): Daraja saw the request and refused it;
//!   nothing is on the phone, and the same request will fail again until its cause changes.

use std::fmt;

use super::wire::Endpoint;

/// What a failed call means for the request that was sent: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Daraja never saw the request. Safe to send again now.
    NeverArrived,
    /// Daraja saw the request and refused it. Nothing was started.
    Rejected,
    /// The request may have been processed (for a push: the prompt may be on the phone). Query
    /// before pushing again.
    Ambiguous,
}

/// Daraja's `errorCode`, for the codes Duka acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// `400.002.02`: a field is invalid; the message names it ("Bad Request - Invalid Amount").
    InvalidField,
    /// `400.008.01`: the consumer key or secret is wrong (token endpoint).
    InvalidAuthentication,
    /// `400.008.02`: the token request's `grant_type` is malformed (a trailing space is enough).
    InvalidGrantType,
    /// `404.001.03`: the access token is expired, unknown, or from the other environment.
    InvalidAccessToken,
    /// `500.001.1001`: on a push, wrong credentials, an unknown merchant or a transaction already
    /// in progress for the phone (only the message tells which, see [`PushRefusal`]); on a query,
    /// "the transaction is being processed".
    RequestRefused,
    /// Any other code, kept verbatim.
    Other(String),
}

impl ErrorCode {
    pub fn parse(code: &str) -> Self {
        match code.trim() {
            "400.002.02" => ErrorCode::InvalidField,
            "400.008.01" => ErrorCode::InvalidAuthentication,
            "400.008.02" => ErrorCode::InvalidGrantType,
            "404.001.03" => ErrorCode::InvalidAccessToken,
            "500.001.1001" => ErrorCode::RequestRefused,
            other => ErrorCode::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidField => "400.002.02",
            ErrorCode::InvalidAuthentication => "400.008.01",
            ErrorCode::InvalidGrantType => "400.008.02",
            ErrorCode::InvalidAccessToken => "404.001.03",
            ErrorCode::RequestRefused => "500.001.1001",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Daraja's error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DarajaError {
    pub request_id: String,
    pub code: ErrorCode,
    pub message: String,
}

/// Which refusal a `500.001.1001` on a push is. Daraja gives one code for all of them and only
/// the free-text message tells them apart, so this is a best effort on known wordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushRefusal {
    /// "Wrong credentials": the shortcode and passkey do not match, or STK is not enabled on the
    /// shortcode. Someone must fix the configuration.
    WrongCredentials,
    /// "Merchant does not exist": the shortcode is unknown to Daraja.
    UnknownMerchant,
    /// "Unable to lock subscriber, a transaction is already in process…": wait 1–2 minutes.
    TransactionInProgress,
    /// A `500.001.1001` with a wording we do not know.
    Other,
}

impl DarajaError {
    /// For a `500.001.1001`, which refusal the message describes.
    pub fn push_refusal(&self) -> Option<PushRefusal> {
        if self.code != ErrorCode::RequestRefused {
            return None;
        }
        let message = self.message.to_ascii_lowercase();
        Some(if message.contains("credential") {
            PushRefusal::WrongCredentials
        } else if message.contains("merchant") {
            PushRefusal::UnknownMerchant
        } else if message.contains("lock subscriber")
            || message.contains("in process")
            || message.contains("in progress")
        {
            PushRefusal::TransactionInProgress
        } else {
            PushRefusal::Other
        })
    }

    /// True for the query's "The transaction is being processed": a `500.001.1001` that does not
    /// name a credentials problem.
    pub fn is_still_processing(&self) -> bool {
        matches!(
            self.push_refusal(),
            Some(PushRefusal::TransactionInProgress | PushRefusal::Other)
        )
    }
}

impl fmt::Display for DarajaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.code, self.message)?;
        if !self.request_id.is_empty() {
            write!(f, " (requestId {})", self.request_id)?;
        }
        Ok(())
    }
}

/// A failed Daraja call. See the module docs, and [`MpesaError::disposition`].
#[derive(thiserror::Error)]
pub enum MpesaError {
    /// The client's configuration is unusable (base URL, shortcode).
    #[error("invalid Daraja configuration: {0}")]
    Config(String),
    /// Our own checks refused the request before anything was sent.
    #[error("refused before sending: {0}")]
    InvalidRequest(String),
    /// The connection could not be made (refused, DNS, connect timeout).
    #[error("could not connect to Daraja for the {endpoint}")]
    Unreachable {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    /// The request went out but no complete reply came back (read timeout, reset).
    #[error("no complete reply from Daraja to the {endpoint} after sending it")]
    NoReply {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    /// Daraja answered with its error envelope.
    #[error("Daraja refused the {endpoint} with HTTP {status}: {error}")]
    Daraja {
        endpoint: Endpoint,
        status: u16,
        error: DarajaError,
    },
    /// Daraja (or a proxy before it) answered with a body that is neither the expected reply nor
    /// the error envelope. `body_start` holds its first bytes, except for the token endpoint,
    /// whose body may hold a token.
    #[error("unexpected reply from Daraja to the {endpoint}: HTTP {status}, body {body_start:?}")]
    UnexpectedReply {
        endpoint: Endpoint,
        status: u16,
        body_start: String,
    },
    /// A 2xx reply whose `ResponseCode` is not `"0"`.
    #[error(
        "Daraja did not accept the {endpoint}: ResponseCode {response_code:?}, {description:?}"
    )]
    NotAccepted {
        endpoint: Endpoint,
        response_code: String,
        description: String,
    },
    /// No access token could be had, so the call itself was never sent.
    #[error("could not get a Daraja access token")]
    Token(#[source] Box<MpesaError>),
}

impl MpesaError {
    /// Whether the request may have been processed: see the module docs.
    pub fn disposition(&self) -> Disposition {
        match self {
            MpesaError::Config(_)
            | MpesaError::InvalidRequest(_)
            | MpesaError::Unreachable { .. }
            | MpesaError::Token(_) => Disposition::NeverArrived,
            MpesaError::NoReply { .. } => Disposition::Ambiguous,
            MpesaError::NotAccepted { .. } => Disposition::Rejected,
            MpesaError::Daraja { status, error, .. } => match &error.code {
                ErrorCode::Other(_) if *status >= 500 && *status != 429 => Disposition::Ambiguous,
                ErrorCode::Other(_) if *status < 300 => Disposition::Ambiguous,
                _ => Disposition::Rejected,
            },
            MpesaError::UnexpectedReply { status, .. } => match status {
                429 => Disposition::Rejected,
                300..=499 => Disposition::Rejected,
                _ => Disposition::Ambiguous,
            },
        }
    }

    /// True when Daraja surely never saw the request: safe to send it again.
    pub fn never_arrived(&self) -> bool {
        self.disposition() == Disposition::NeverArrived
    }

    /// True when the request may have been processed: query before pushing again.
    pub fn is_ambiguous(&self) -> bool {
        self.disposition() == Disposition::Ambiguous
    }

    /// True when Daraja saw the request and refused it.
    pub fn is_rejected(&self) -> bool {
        self.disposition() == Disposition::Rejected
    }

    /// True for HTTP 429: back off before the next call on this shortcode.
    pub fn is_throttled(&self) -> bool {
        self.http_status() == Some(429)
    }

    /// True when Daraja refused the access token (HTTP 401 or `404.001.03`), even after the one
    /// refresh the client makes.
    pub fn is_invalid_token(&self) -> bool {
        self.http_status() == Some(401)
            || self
                .daraja_error()
                .is_some_and(|e| e.code == ErrorCode::InvalidAccessToken)
    }

    /// The HTTP status Daraja answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            MpesaError::Daraja { status, .. } | MpesaError::UnexpectedReply { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Daraja's error envelope, if the reply was one.
    pub fn daraja_error(&self) -> Option<&DarajaError> {
        match self {
            MpesaError::Daraja { error, .. } => Some(error),
            _ => None,
        }
    }

    /// For a push refused with `500.001.1001`, which refusal it was.
    pub fn push_refusal(&self) -> Option<PushRefusal> {
        self.daraja_error().and_then(DarajaError::push_refusal)
    }
}

impl fmt::Debug for MpesaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        error_chain_fmt(self, f)
    }
}

/// Writes an error and every `Caused by:` link below it, so one log line shows the whole chain.
fn error_chain_fmt(error: &dyn std::error::Error, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{error}")?;
    let mut current = error.source();
    while let Some(cause) = current {
        write!(f, "\nCaused by:\n\t{cause}")?;
        current = cause.source();
    }
    Ok(())
}

/// The first bytes of a body, as text, for an error message.
pub(crate) fn body_start(body: &[u8]) -> String {
    const KEEP: usize = 200;
    let cut = body.len().min(KEEP);
    let mut text = String::from_utf8_lossy(&body[..cut]).trim().to_owned();
    if body.len() > KEEP {
        text.push('…');
    }
    text
}

/// Sorts a transport error: a failure to connect means the request never left.
pub(crate) fn from_transport(endpoint: Endpoint, source: reqwest::Error) -> MpesaError {
    if source.is_connect() || source.is_builder() {
        MpesaError::Unreachable { endpoint, source }
    } else {
        MpesaError::NoReply { endpoint, source }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn chain_len(error: &MpesaError) -> usize {
        let mut n = 1;
        let mut current = error.source();
        while let Some(cause) = current {
            n += 1;
            current = cause.source();
        }
        n
    }

    fn daraja(status: u16, code: &str, message: &str) -> MpesaError {
        MpesaError::Daraja {
            endpoint: Endpoint::StkPush,
            status,
            error: DarajaError {
                request_id: "11370-2914452-1".into(),
                code: ErrorCode::parse(code),
                message: message.into(),
            },
        }
    }

    #[test]
    fn an_invalid_field_is_a_rejection_not_an_outage() {
        let error = daraja(400, "400.002.02", "Bad Request - Invalid PhoneNumber");
        assert_eq!(error.disposition(), Disposition::Rejected);
        assert!(!error.is_invalid_token());
        assert_eq!(error.push_refusal(), None);
    }

    #[test]
    fn a_500_001_1001_is_keyed_on_its_code_so_it_is_a_refusal_despite_the_500() {
        let error = daraja(500, "500.001.1001", "Wrong credentials");
        assert_eq!(error.disposition(), Disposition::Rejected);
        assert_eq!(error.push_refusal(), Some(PushRefusal::WrongCredentials));
    }

    #[test]
    fn the_message_of_a_500_001_1001_tells_which_refusal_it_is() {
        let refusal = |message: &str| daraja(500, "500.001.1001", message).push_refusal();
        assert_eq!(
            refusal("Merchant does not exist"),
            Some(PushRefusal::UnknownMerchant)
        );
        assert_eq!(
            refusal("Unable to lock subscriber, a transaction is already in process for the current subscriber"),
            Some(PushRefusal::TransactionInProgress)
        );
        assert_eq!(refusal("Something new"), Some(PushRefusal::Other));
    }

    #[test]
    fn an_unknown_5xx_code_may_have_been_processed() {
        assert!(daraja(503, "503.001.01", "Service Unavailable").is_ambiguous());
        let html = MpesaError::UnexpectedReply {
            endpoint: Endpoint::StkPush,
            status: 502,
            body_start: "<html>Bad Gateway</html>".into(),
        };
        assert!(html.is_ambiguous());
    }

    #[test]
    fn a_2xx_we_cannot_read_may_have_been_processed() {
        let garbled = MpesaError::UnexpectedReply {
            endpoint: Endpoint::StkPush,
            status: 200,
            body_start: "{\"Merch".into(),
        };
        assert!(garbled.is_ambiguous());
    }

    #[test]
    fn throttling_is_a_rejection_whatever_the_body_says() {
        let throttled = daraja(429, "500.003.02", "Spike Arrest Violation");
        assert!(throttled.is_throttled());
        assert!(throttled.is_rejected());
        let plain = MpesaError::UnexpectedReply {
            endpoint: Endpoint::StkPush,
            status: 429,
            body_start: "Too Many Requests".into(),
        };
        assert!(plain.is_throttled() && plain.is_rejected());
    }

    #[test]
    fn an_invalid_token_is_recognised_by_code_or_by_401() {
        assert!(daraja(404, "404.001.03", "Invalid Access Token").is_invalid_token());
        let unauthorized = MpesaError::UnexpectedReply {
            endpoint: Endpoint::StkQuery,
            status: 401,
            body_start: String::new(),
        };
        assert!(unauthorized.is_invalid_token());
    }

    #[test]
    fn a_missing_token_means_the_call_never_left() {
        let inner = daraja(400, "400.008.01", "Invalid Authentication passed");
        let error = MpesaError::Token(Box::new(inner));
        assert!(error.never_arrived());
        assert_eq!(chain_len(&error), 2);
        assert!(format!("{error:?}").contains("Caused by:"));
    }

    #[test]
    fn a_long_body_is_cut_for_the_error_message() {
        let long = "x".repeat(1000);
        let start = body_start(long.as_bytes());
        assert_eq!(start.chars().count(), 201);
        assert_eq!(body_start(b"  short \n"), "short");
        assert_eq!(body_start(&[0xff, b'a']), "\u{fffd}a");
    }
}
