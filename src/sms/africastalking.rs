//! Africa's Talking bulk SMS: the client that sends one receipt, and the reading of its reply.
//!
//! This module owns the wire format of `POST {AT_BASE_URL}/version1/messaging` (form body,
//! `apiKey` header, `Accept: application/json`) and the classification of every answer into
//! what the outbox should do next. Delivery reports, which AT posts back later, live in
//! [`delivery`]. It deliberately does not retry, queue or persist anything: the outbox owns
//! the row, and this client answers one question per call, "what happened to this send?".
//!
//! Quirks of the API that shaped the types here:
//! - **A 201 does not mean sent.** Each recipient has its own `statusCode`, so a successful
//!   HTTP exchange can still be a [`SendOutcome::Rejected`].
//! - **The reply is JSON only when it says so.** Whole-request failures come back as plain text,
//!   and a request without `Accept: application/json` gets XML. The body is parsed only when its
//!   `Content-Type` is `application/json`; otherwise only its first bytes are kept.
//! - **A lost reply is ambiguous.** The SMS API takes no idempotency key, so once the request
//!   has gone out, a read timeout leaves Duka unable to tell whether AT sent the SMS. That case
//!   is its own error, [`SmsError::Ambiguous`], and must not be retried blindly.
//! - **The username picks the environment.** AT's own SDKs switch host on the username
//!   `sandbox`; Duka takes the host from configuration instead, so [`AtSmsConfig::validate`]
//!   refuses a mismatch at start-up rather than letting it surface later as auth errors.

pub mod delivery;

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::msisdn::Msisdn;

pub use delivery::{should_apply, DeliveryReport, DeliveryReportError, DeliveryStatus};

/// AT's live API host.
pub const LIVE_BASE_URL: &str = "https://api.africastalking.com";
/// AT's sandbox API host, which only accepts the username `sandbox`.
pub const SANDBOX_BASE_URL: &str = "https://api.sandbox.africastalking.com";
/// The username AT reserves for its sandbox.
pub const SANDBOX_USERNAME: &str = "sandbox";

/// The path of the bulk SMS endpoint, below the base URL.
pub const MESSAGING_PATH: &str = "/version1/messaging";

/// How much of a reply body is kept for an error: enough to read AT's plain-text reason, never a
/// whole page.
const BODY_HEAD_LEN: usize = 256;
/// The largest success reply read. Duka sends to one number, so a real reply is a few hundred
/// bytes; the cap keeps a misbehaving server from filling memory.
const MAX_REPLY_LEN: usize = 64 * 1024;

/// Where and how to reach Africa's Talking.
#[derive(Debug, Clone)]
pub struct AtSmsConfig {
    /// `AT_BASE_URL`: the live host, the sandbox host, or a local stand-in. No trailing path
    /// beyond an optional prefix; [`MESSAGING_PATH`] is appended.
    pub base_url: String,
    /// `AT_USERNAME`: the app's username, or `sandbox` with the sandbox host.
    pub username: String,
    /// `AT_API_KEY`. Only ever exposed into the `apiKey` header.
    pub api_key: SecretString,
    /// `AT_SENDER_ID`: sent as `from` only when set; otherwise AT uses its default sender.
    pub sender_id: Option<String>,
    /// Time allowed to open the connection. Failing here means nothing was sent.
    pub connect_timeout: Duration,
    /// Time allowed for the reply once the request is on its way (reqwest starts this clock when
    /// the request starts, and restarts it on each read of the body). Failing here is ambiguous.
    pub read_timeout: Duration,
}

/// Why an [`AtSmsConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AtConfigError {
    #[error("AT_BASE_URL `{url}` is not a usable http(s) URL: {reason}")]
    InvalidBaseUrl { url: String, reason: String },
    #[error("AT_USERNAME is `sandbox` but AT_BASE_URL is the live host {LIVE_BASE_URL}: use {SANDBOX_BASE_URL} or the app's live username")]
    SandboxUsernameOnLiveHost,
    #[error("AT_USERNAME is `{username}` but AT_BASE_URL is the sandbox host {SANDBOX_BASE_URL}, which only accepts the username `sandbox`")]
    LiveUsernameOnSandboxHost { username: String },
    #[error("AT_USERNAME is empty")]
    EmptyUsername,
    #[error("AT_API_KEY is empty")]
    EmptyApiKey,
    #[error("AT_SENDER_ID is set but empty: unset it to use AT's default sender")]
    EmptySenderId,
    #[error("the SMS connect and read timeouts must be above zero, and the connect timeout shorter than the read timeout (got {connect:?} and {read:?})")]
    Timeouts { connect: Duration, read: Duration },
    #[error("could not build the HTTP client for Africa's Talking")]
    HttpClient(#[source] reqwest::Error),
}

impl AtSmsConfig {
    /// A configuration with the default timeouts (3 s to connect, 9 s to read: the range of
    /// AT's Python SDK) and no sender id.
    pub fn new(
        base_url: impl Into<String>,
        username: impl Into<String>,
        api_key: SecretString,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            username: username.into(),
            api_key,
            sender_id: None,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(9),
        }
    }

    /// Checks the configuration the way a start-up check should: the URL parses, the username
    /// fits the host (`sandbox` only with the sandbox host, and only there), nothing required is
    /// empty, and the timeouts make sense. A local stand-in accepts any username.
    ///
    /// # Errors
    /// [`AtConfigError`] names the variable that is wrong and what would fix it.
    pub fn validate(&self) -> Result<(), AtConfigError> {
        let url = self.endpoint()?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let is_sandbox_username = self.username.eq_ignore_ascii_case(SANDBOX_USERNAME);
        if self.username.trim().is_empty() {
            return Err(AtConfigError::EmptyUsername);
        }
        if host == host_of(LIVE_BASE_URL) && is_sandbox_username {
            return Err(AtConfigError::SandboxUsernameOnLiveHost);
        }
        if host == host_of(SANDBOX_BASE_URL) && !is_sandbox_username {
            return Err(AtConfigError::LiveUsernameOnSandboxHost {
                username: self.username.clone(),
            });
        }
        if self.api_key.expose_secret().trim().is_empty() {
            return Err(AtConfigError::EmptyApiKey);
        }
        if self
            .sender_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(AtConfigError::EmptySenderId);
        }
        if self.connect_timeout.is_zero()
            || self.read_timeout.is_zero()
            || self.connect_timeout >= self.read_timeout
        {
            return Err(AtConfigError::Timeouts {
                connect: self.connect_timeout,
                read: self.read_timeout,
            });
        }
        Ok(())
    }

    /// `{base_url}/version1/messaging`, keeping any path prefix of the base URL.
    fn endpoint(&self) -> Result<reqwest::Url, AtConfigError> {
        let invalid = |reason: String| AtConfigError::InvalidBaseUrl {
            url: self.base_url.clone(),
            reason,
        };
        let joined = format!("{}{MESSAGING_PATH}", self.base_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&joined).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must not carry a query or a fragment".into()));
        }
        Ok(url)
    }
}

fn host_of(base_url: &str) -> &str {
    base_url.trim_start_matches("https://")
}

/// What the outbox should do after a rejection or a failed request.
///
/// | class | codes | the row | the outbox |
/// |---|---|---|---|
/// | `Retryable` | 500, 501; HTTP 5xx, 408, 429 | retry with backoff | runs on |
/// | `Permanent` | 403, 404, 406, 407, 409, 502, any unknown code ≥ 400 | fail it, never resend | runs on (an unknown code also raises an alert) |
/// | `Alert` | 401 RiskHold, 402 InvalidSenderId, 405 InsufficientBalance; HTTP 4xx (a refused `apiKey` or `username`) and 3xx | 402, 405 and HTTP errors: keep it for after the fix; 401 RiskHold: fail it | alert someone and pause until fixed |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// AT or a telco gateway failed for now: try again later, with backoff.
    Retryable,
    /// This message cannot go out as it is: fail the row and do not resend.
    Permanent,
    /// The account or the configuration is at fault, not this message: every other send would
    /// fail the same way, so alert and pause the outbox.
    Alert,
}

/// How AT's per-recipient `statusCode` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientClass {
    /// AT took the message (100 Processed, 101 Sent, 102 Queued, or an unknown 1xx).
    Accepted,
    /// AT refused it, for the reason the class says.
    Rejected(FailureClass),
}

/// Classifies a per-recipient `statusCode` by the reference table. An unknown 1xx is accepted;
/// any other unknown code is permanent (and [`SendOutcome::raises_alert`] flags it), because
/// failing one row is cheaper than a resend that might duplicate a receipt.
pub fn classify_status_code(status_code: u16) -> RecipientClass {
    match status_code {
        100..=199 => RecipientClass::Accepted,
        500 | 501 => RecipientClass::Rejected(FailureClass::Retryable),
        401 | 402 | 405 => RecipientClass::Rejected(FailureClass::Alert),
        _ => RecipientClass::Rejected(FailureClass::Permanent),
    }
}

/// AT's name for a per-recipient `statusCode`, or `None` for a code the reference doesn't list.
pub fn status_name(status_code: u16) -> Option<&'static str> {
    Some(match status_code {
        100 => "Processed",
        101 => "Success",
        102 => "Queued",
        401 => "RiskHold",
        402 => "InvalidSenderId",
        403 => "InvalidPhoneNumber",
        404 => "UnsupportedNumberType",
        405 => "InsufficientBalance",
        406 => "UserInBlacklist",
        407 => "CouldNotRoute",
        409 => "DoNotDisturbRejection",
        500 => "InternalServerError",
        501 => "GatewayError",
        502 => "RejectedByGateway",
        _ => return None,
    })
}

/// How a whole-request failure (a non-2xx HTTP status) should be handled. Nothing was sent in
/// any of these cases: AT refused the request before processing it.
pub fn classify_http_status(status: u16) -> FailureClass {
    match status {
        408 | 429 | 500..=599 => FailureClass::Retryable,
        _ => FailureClass::Alert,
    }
}

/// The answer for the one recipient of a send, when AT answered 2xx with a readable body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// AT took the message. Mark the row sent and store `message_id`: delivery reports join on it.
    Accepted {
        /// `ATXid_…`; `None` only if AT left it out or wrote `"None"`, which it does not do for an
        /// accepted recipient.
        message_id: Option<String>,
        status_code: u16,
        /// As AT wrote it, with its currency: `"KES 0.8000"`.
        cost: String,
    },
    /// AT refused the message for this recipient; nothing was sent.
    Rejected {
        status_code: u16,
        /// AT's `status` string, such as `"UserInBlacklist"`.
        status: String,
        class: FailureClass,
    },
}

impl SendOutcome {
    /// Whether a person should hear about this: an account-level rejection, or a code the
    /// reference doesn't know.
    pub fn raises_alert(&self) -> bool {
        match self {
            Self::Accepted { .. } => false,
            Self::Rejected {
                status_code, class, ..
            } => *class == FailureClass::Alert || status_name(*status_code).is_none(),
        }
    }

    /// Whether the outbox should stop sending until someone fixes the account.
    pub fn pauses_outbox(&self) -> bool {
        matches!(
            self,
            Self::Rejected {
                class: FailureClass::Alert,
                ..
            }
        )
    }
}

/// Why a send has no [`SendOutcome`].
///
/// The variants split by the one question the outbox must answer before retrying: could the SMS
/// have gone out? [`SmsError::is_ambiguous`] says yes for a lost or unreadable reply.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The request never reached AT (refused connection, connect timeout, DNS or TLS failure).
    /// Safe to retry.
    #[error("nothing was sent: could not connect to Africa's Talking")]
    NothingSent(#[source] reqwest::Error),
    /// The request went out but no reply came back in time (or the connection broke before the
    /// reply was read). AT may have sent the SMS: do not resend automatically.
    ///
    /// This includes a read timeout where AT in fact never processed the request: from the
    /// client's side the two cannot be told apart.
    #[error(
        "the SMS request went out but its reply was lost: the SMS may or may not have been sent"
    )]
    Ambiguous(#[source] reqwest::Error),
    /// AT answered with a non-2xx status: the request was refused whole and nothing was sent.
    #[error("Africa's Talking refused the SMS request with HTTP {status}")]
    Http {
        status: u16,
        /// The first bytes of the body (lossy UTF-8), never parsed.
        body_head: String,
        class: FailureClass,
    },
    /// AT answered 2xx, so it took the request, but the body could not be read. Ambiguous, like
    /// a lost reply.
    #[error("Africa's Talking answered HTTP {status} with a reply Duka could not read: {reason}")]
    Decode {
        status: u16,
        body_head: String,
        reason: String,
    },
}

impl SmsError {
    /// Whether resending is safe and may help: nothing was sent, and the cause is passing.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NothingSent(_) => true,
            Self::Http { class, .. } => *class == FailureClass::Retryable,
            Self::Ambiguous(_) | Self::Decode { .. } => false,
        }
    }

    /// Whether AT may have sent the SMS even though Duka has no outcome. The reference's answer
    /// is to mark the row `uncertain` and let a delivery report settle it.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Self::Ambiguous(_) | Self::Decode { .. })
    }

    /// Whether the outbox should stop sending until someone fixes the account or configuration.
    pub fn pauses_outbox(&self) -> bool {
        matches!(
            self,
            Self::Http {
                class: FailureClass::Alert,
                ..
            }
        )
    }
}

/// The client for `POST /version1/messaging`. Cheap to clone: the connection pool is shared.
#[derive(Debug, Clone)]
pub struct AtSmsClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    config: AtSmsConfig,
}

impl AtSmsClient {
    /// Validates `config` and builds the HTTP client with its timeouts.
    ///
    /// # Errors
    /// [`AtConfigError`] when [`AtSmsConfig::validate`] refuses the configuration, or the HTTP
    /// client cannot be built.
    pub fn new(config: AtSmsConfig) -> Result<Self, AtConfigError> {
        config.validate()?;
        let endpoint = config.endpoint()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // A redirect would turn the POST into something AT never documented; treat it as
            // the configuration error it is.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("duka/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AtConfigError::HttpClient)?;
        Ok(Self {
            http,
            endpoint,
            config,
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &AtSmsConfig {
        &self.config
    }

    /// Sends `message` to one number and reads AT's verdict for it.
    ///
    /// # Errors
    /// - [`SmsError::NothingSent`]: AT was not reached; retry.
    /// - [`SmsError::Http`]: AT refused the whole request; its `class` says retry or alert.
    /// - [`SmsError::Ambiguous`] and [`SmsError::Decode`]: the request went out and the reply is
    ///   lost or unreadable; the SMS may have been sent, so don't resend automatically.
    #[tracing::instrument(name = "sms.send", skip_all, fields(msisdn.masked = %to.masked()))]
    pub async fn send(&self, to: &Msisdn, message: &str) -> Result<SendOutcome, SmsError> {
        let request = self
            .build_request(to, message)
            .map_err(SmsError::NothingSent)?;
        let mut response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                let error = classify_transport_error(e);
                tracing::warn!(
                    error.message = %error,
                    error.cause_chain = ?error,
                    "SMS to {} failed in transport",
                    to.masked()
                );
                return Err(error);
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_success = response.status().is_success();
        let limit = if is_success {
            MAX_REPLY_LEN
        } else {
            BODY_HEAD_LEN
        };
        let body = match read_capped(&mut response, limit).await {
            Ok(body) => body,
            // A broken body after a 2xx status means AT took the request: the reply is lost.
            Err(e) if is_success => return Err(SmsError::Ambiguous(e)),
            // After a refusal the body is only a hint; the status already says what happened.
            Err(_) => Capped::default(),
        };
        let result = interpret_reply(status, content_type.as_deref(), &body, &to.e164());
        log_result(to, &result);
        result
    }

    /// The request exactly as it goes on the wire, for [`send`](Self::send) and for tests.
    fn build_request(&self, to: &Msisdn, message: &str) -> reqwest::Result<reqwest::Request> {
        let body = encode_send_form(
            &self.config.username,
            &to.e164(),
            message,
            self.config.sender_id.as_deref(),
        );
        self.http
            .post(self.endpoint.clone())
            .header("apiKey", self.config.api_key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .build()
    }
}

fn log_result(to: &Msisdn, result: &Result<SendOutcome, SmsError>) {
    match result {
        Ok(SendOutcome::Accepted {
            message_id,
            status_code,
            ..
        }) => {
            // The business event ("SMS accepted by Africa's Talking") is logged once, by the
            // outbox worker, which knows which message this was.
            tracing::debug!(
                sms.message_id = message_id.as_deref(),
                sms.status_code = status_code,
                "Africa's Talking accepted an SMS for {}",
                to.masked()
            );
        }
        Ok(
            outcome @ SendOutcome::Rejected {
                status_code,
                status,
                class,
            },
        ) => {
            let alert = outcome.raises_alert();
            tracing::warn!(
                sms.status_code = status_code,
                sms.status = %status,
                sms.class = ?class,
                sms.alert = alert,
                "SMS to {} rejected with {status_code} {status}",
                to.masked()
            );
        }
        Err(error) => tracing::warn!(
            error.message = %error,
            error.cause_chain = ?error,
            "SMS to {} failed",
            to.masked()
        ),
    }
}

/// The form body: fields in the order of the reference example, `from` only with a sender id.
fn encode_send_form(username: &str, to_e164: &str, message: &str, from: Option<&str>) -> String {
    let mut fields: Vec<(&str, &str)> = vec![
        ("username", username),
        ("to", to_e164),
        ("message", message),
    ];
    if let Some(from) = from {
        fields.push(("from", from));
    }
    fields.push(("bulkSMSMode", "1"));
    fields.push(("enqueue", "1"));
    // Pairs of strings always encode; serde_urlencoded fails only on nested or non-string types.
    serde_urlencoded::to_string(fields).expect("string pairs always form-encode")
}

/// Reads a transport error by the one fact that matters: whether the request could have reached
/// AT. reqwest reports a failure to connect (refused, DNS, TLS, connect timeout) as a connect
/// error; everything after that point, including its read timeout, may have reached AT.
fn classify_transport_error(error: reqwest::Error) -> SmsError {
    if error.is_connect() || error.is_builder() {
        SmsError::NothingSent(error)
    } else {
        SmsError::Ambiguous(error)
    }
}

/// A body read up to a limit.
#[derive(Debug, Default)]
struct Capped {
    bytes: Vec<u8>,
    truncated: bool,
}

async fn read_capped(response: &mut reqwest::Response, limit: usize) -> reqwest::Result<Capped> {
    let mut capped = Capped::default();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - capped.bytes.len();
        if chunk.len() > room {
            capped.bytes.extend_from_slice(&chunk[..room]);
            capped.truncated = true;
            break;
        }
        capped.bytes.extend_from_slice(&chunk);
    }
    Ok(capped)
}

/// The first bytes of a body as text, cut on a character boundary.
fn body_head(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(BODY_HEAD_LEN)];
    let text = String::from_utf8_lossy(head);
    text.trim_end_matches('\u{FFFD}').to_owned()
}

/// Whether a `Content-Type` is JSON. The Python SDK compares it exactly with
/// `application/json`; a `charset` parameter is allowed here, as servers add it freely.
fn is_json_content_type(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Turns a complete HTTP reply into the outcome for `to_e164`. Pure, so every case is unit-tested.
fn interpret_reply(
    status: u16,
    content_type: Option<&str>,
    body: &Capped,
    to_e164: &str,
) -> Result<SendOutcome, SmsError> {
    if !(200..300).contains(&status) {
        return Err(SmsError::Http {
            status,
            body_head: body_head(&body.bytes),
            class: classify_http_status(status),
        });
    }
    let decode_error = |reason: &str| SmsError::Decode {
        status,
        body_head: body_head(&body.bytes),
        reason: reason.to_owned(),
    };
    if !is_json_content_type(content_type) {
        return Err(decode_error(
            "the reply is not application/json (was Accept: application/json sent?)",
        ));
    }
    if body.truncated {
        return Err(decode_error("the reply is larger than any AT reply"));
    }
    let json: Value = serde_json::from_slice(&body.bytes)
        .map_err(|_| decode_error("the reply is not valid JSON"))?;
    let data = json
        .get("SMSMessageData")
        .ok_or_else(|| decode_error("the reply has no SMSMessageData"))?;
    let recipients = data
        .get("Recipients")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(recipient) = recipients
        .iter()
        .find(|r| r.get("number").and_then(Value::as_str) == Some(to_e164))
        .or_else(|| recipients.first())
    else {
        return outcome_without_recipients(data.get("Message").and_then(Value::as_str))
            .ok_or_else(|| decode_error("the reply lists no recipients"));
    };
    let status_code = recipient
        .get("statusCode")
        .and_then(value_as_u16)
        .ok_or_else(|| decode_error("the recipient has no numeric statusCode"))?;
    let status_text = recipient
        .get("status")
        .and_then(value_as_string)
        .unwrap_or_default();
    Ok(match classify_status_code(status_code) {
        RecipientClass::Accepted => SendOutcome::Accepted {
            message_id: recipient
                .get("messageId")
                .and_then(value_as_string)
                .filter(|id| !id.is_empty() && id != "None"),
            status_code,
            cost: recipient
                .get("cost")
                .and_then(value_as_string)
                .unwrap_or_default(),
        },
        RecipientClass::Rejected(class) => SendOutcome::Rejected {
            status_code,
            status: status_text,
            class,
        },
    })
}

/// AT answers some account-level refusals with an empty `Recipients` list and the reason as the
/// `Message` (reported for `InvalidSenderId`). Read those as the matching per-recipient code.
fn outcome_without_recipients(message: Option<&str>) -> Option<SendOutcome> {
    let message = message?.trim();
    let status_code = [401, 402, 403, 404, 405, 406, 407, 409, 502]
        .into_iter()
        .find(|code| status_name(*code).is_some_and(|name| name.eq_ignore_ascii_case(message)))?;
    let RecipientClass::Rejected(class) = classify_status_code(status_code) else {
        return None;
    };
    Some(SendOutcome::Rejected {
        status_code,
        status: message.to_owned(),
        class,
    })
}

fn value_as_u16(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn value_as_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A phone number as AT wrote or received it (E.164, possibly not Kenyan, possibly malformed).
/// Its `Debug` and `Display` are masked like [`Msisdn`]'s, so it is safe in a log line.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The number as it was written, for matching and for the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as a Kenyan [`Msisdn`], if it is one.
    pub fn msisdn(&self) -> Option<Msisdn> {
        Msisdn::parse(&self.0).ok()
    }

    /// Masked like every phone number in Duka's logs: a Kenyan number exactly as
    /// [`Msisdn::masked`] (`2547******78`); any other number the same way, its first four and
    /// last two digits kept (`+255712345678` gives `2557******78`).
    pub fn masked(&self) -> String {
        if let Some(msisdn) = self.msisdn() {
            return msisdn.masked();
        }
        let chars: Vec<char> = self.0.trim_start_matches('+').chars().collect();
        if chars.len() <= 6 {
            return "*".repeat(chars.len());
        }
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 2..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
    }
}

impl From<&Msisdn> for PhoneNumber {
    fn from(msisdn: &Msisdn) -> Self {
        Self(msisdn.e164())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE_RECEIPT: &str =
        "Duka: order DK10427 paid, KES 450. M-Pesa ref QKH94M1Z11. Thank you!";

    fn config() -> AtSmsConfig {
        AtSmsConfig::new(LIVE_BASE_URL, "duka", SecretString::from("live-key"))
    }

    fn msisdn() -> Msisdn {
        Msisdn::parse("0712345678").unwrap()
    }

    fn json_reply(body: &str) -> Capped {
        Capped {
            bytes: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    fn recipient_reply(status_code: u16, status: &str) -> Capped {
        json_reply(&format!(
            r#"{{"SMSMessageData":{{"Message":"Sent to 0/1 Total Cost: 0","Recipients":[
                {{"statusCode":{status_code},"number":"+254712345678","status":"{status}",
                  "cost":"0","messageId":"None"}}]}}}}"#
        ))
    }

    #[test]
    fn the_form_body_is_exactly_the_reference_example() {
        let body = encode_send_form("duka", "+254712345678", REFERENCE_RECEIPT, Some("DUKA"));
        assert_eq!(
            body,
            "username=duka&to=%2B254712345678&message=Duka%3A+order+DK10427+paid%2C+KES+450.+M-Pesa+ref+QKH94M1Z11.+Thank+you%21&from=DUKA&bulkSMSMode=1&enqueue=1"
        );
    }

    #[test]
    fn without_a_sender_id_the_form_has_no_from_field() {
        let body = encode_send_form("duka", "+254712345678", "hi", None);
        assert_eq!(
            body,
            "username=duka&to=%2B254712345678&message=hi&bulkSMSMode=1&enqueue=1"
        );
    }

    #[test]
    fn the_request_carries_the_api_key_and_asks_for_json() {
        let mut config = config();
        config.sender_id = Some("DUKA".into());
        let client = AtSmsClient::new(config).unwrap();
        let request = client.build_request(&msisdn(), REFERENCE_RECEIPT).unwrap();

        assert_eq!(request.method(), reqwest::Method::POST);
        assert_eq!(
            request.url().as_str(),
            "https://api.africastalking.com/version1/messaging"
        );
        let headers = request.headers();
        assert_eq!(headers["apikey"], "live-key");
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
        let body = request.body().and_then(|b| b.as_bytes()).unwrap();
        assert_eq!(
            body,
            encode_send_form("duka", "+254712345678", REFERENCE_RECEIPT, Some("DUKA")).as_bytes()
        );
    }

    #[test]
    fn a_base_url_prefix_and_trailing_slash_are_kept_and_joined() {
        let mut config = config();
        config.base_url = "http://127.0.0.1:9999/at/".into();
        assert_eq!(
            config.endpoint().unwrap().as_str(),
            "http://127.0.0.1:9999/at/version1/messaging"
        );
    }

    #[test]
    fn the_sandbox_username_is_refused_on_the_live_host() {
        let mut config = config();
        config.username = "Sandbox".into();
        assert!(matches!(
            config.validate(),
            Err(AtConfigError::SandboxUsernameOnLiveHost)
        ));
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("AT_USERNAME"));
    }

    #[test]
    fn a_live_username_is_refused_on_the_sandbox_host() {
        let mut config = config();
        config.base_url = format!("{SANDBOX_BASE_URL}/");
        let error = config.validate().unwrap_err();
        assert!(matches!(
            &error,
            AtConfigError::LiveUsernameOnSandboxHost { username } if username == "duka"
        ));
        assert!(error.to_string().contains("`duka`"));
        config.username = "sandbox".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn a_local_stand_in_accepts_any_username() {
        let mut config = config();
        config.base_url = "http://127.0.0.1:4010".into();
        config.username = "sandbox".into();
        assert!(config.validate().is_ok());
        config.username = "duka".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_urls_empty_values_and_odd_timeouts_are_refused() {
        type Breakage = fn(&mut AtSmsConfig);
        let cases: Vec<(Breakage, &str)> = vec![
            (
                |c| c.base_url = "api.africastalking.com".into(),
                "InvalidBaseUrl",
            ),
            (
                |c| c.base_url = "ftp://example.com".into(),
                "InvalidBaseUrl",
            ),
            (
                |c| c.base_url = "https://example.com/?x=1".into(),
                "InvalidBaseUrl",
            ),
            (|c| c.username = " ".into(), "EmptyUsername"),
            (|c| c.api_key = SecretString::from(""), "EmptyApiKey"),
            (|c| c.sender_id = Some(String::new()), "EmptySenderId"),
            (|c| c.read_timeout = Duration::ZERO, "Timeouts"),
            (|c| c.connect_timeout = Duration::from_secs(10), "Timeouts"),
        ];
        for (break_it, expected) in cases {
            let mut config = config();
            break_it(&mut config);
            let error = config.validate().unwrap_err();
            assert!(format!("{error:?}").starts_with(expected), "{error:?}");
        }
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let client = AtSmsClient::new(config()).unwrap();
        assert!(!format!("{client:?}").contains("live-key"));
    }

    #[test]
    fn every_listed_code_is_classified_as_the_reference_says() {
        use FailureClass::*;
        use RecipientClass::*;
        let table = [
            (100, Accepted),
            (101, Accepted),
            (102, Accepted),
            (401, Rejected(Alert)),
            (402, Rejected(Alert)),
            (403, Rejected(Permanent)),
            (404, Rejected(Permanent)),
            (405, Rejected(Alert)),
            (406, Rejected(Permanent)),
            (407, Rejected(Permanent)),
            (409, Rejected(Permanent)),
            (500, Rejected(Retryable)),
            (501, Rejected(Retryable)),
            (502, Rejected(Permanent)),
        ];
        for (code, class) in table {
            assert_eq!(classify_status_code(code), class, "{code}");
            assert!(status_name(code).is_some(), "{code}");
        }
    }

    #[test]
    fn unknown_codes_are_accepted_if_1xx_and_otherwise_permanent_with_an_alert() {
        assert_eq!(classify_status_code(103), RecipientClass::Accepted);
        assert_eq!(
            classify_status_code(408),
            RecipientClass::Rejected(FailureClass::Permanent)
        );
        let outcome = interpret_reply(
            201,
            Some("application/json"),
            &recipient_reply(499, "Whatever"),
            "+254712345678",
        )
        .unwrap();
        assert_eq!(
            outcome,
            SendOutcome::Rejected {
                status_code: 499,
                status: "Whatever".into(),
                class: FailureClass::Permanent
            }
        );
        assert!(outcome.raises_alert());
        assert!(!outcome.pauses_outbox());
    }

    #[test]
    fn account_level_rejections_pause_the_outbox_and_others_do_not() {
        for (code, pauses) in [
            (401, true),
            (402, true),
            (405, true),
            (406, false),
            (500, false),
        ] {
            let outcome = interpret_reply(
                201,
                Some("application/json"),
                &recipient_reply(code, "x"),
                "+254712345678",
            )
            .unwrap();
            assert_eq!(outcome.pauses_outbox(), pauses, "{code}");
            assert_eq!(outcome.raises_alert(), pauses, "{code}");
        }
    }

    #[test]
    fn the_reference_reply_is_read_for_the_number_that_was_sent_to() {
        let body = json_reply(
            r#"{
              "SMSMessageData": {
                "Message": "Sent to 1/2 Total Cost: KES 0.8000",
                "Recipients": [
                  {"statusCode": 101, "number": "+254712345678", "status": "Success",
                   "cost": "KES 0.8000", "messageId": "ATXid_5f1c0e2b9a7d4c3e8b6a1d2f4e9c7b01"},
                  {"statusCode": 406, "number": "+254722000111", "status": "UserInBlacklist",
                   "cost": "0", "messageId": "None"}
                ]
              }
            }"#,
        );
        let first = interpret_reply(201, Some("application/json"), &body, "+254712345678");
        assert_eq!(
            first.unwrap(),
            SendOutcome::Accepted {
                message_id: Some("ATXid_5f1c0e2b9a7d4c3e8b6a1d2f4e9c7b01".into()),
                status_code: 101,
                cost: "KES 0.8000".into(),
            }
        );
        let second = interpret_reply(
            201,
            Some("application/json; charset=utf-8"),
            &body,
            "+254722000111",
        );
        assert_eq!(
            second.unwrap(),
            SendOutcome::Rejected {
                status_code: 406,
                status: "UserInBlacklist".into(),
                class: FailureClass::Permanent,
            }
        );
    }

    #[test]
    fn any_2xx_is_read_and_a_string_status_code_is_tolerated() {
        let body = json_reply(
            r#"{"SMSMessageData":{"Message":"ok","Recipients":[{"statusCode":"102",
                "number":"+254712345678","status":"Queued","cost":"KES 0.8000","messageId":"ATXid_1"}]}}"#,
        );
        let outcome = interpret_reply(200, Some("application/json"), &body, "+254712345678");
        assert!(matches!(
            outcome,
            Ok(SendOutcome::Accepted { status_code: 102, message_id: Some(id), .. }) if id == "ATXid_1"
        ));
    }

    #[test]
    fn an_empty_recipient_list_with_a_known_reason_is_read_as_that_rejection() {
        let body =
            json_reply(r#"{"SMSMessageData":{"Message":"InvalidSenderId","Recipients":[]}}"#);
        let outcome = interpret_reply(201, Some("application/json"), &body, "+254712345678");
        assert!(matches!(
            outcome,
            Ok(SendOutcome::Rejected {
                status_code: 402,
                class: FailureClass::Alert,
                ..
            })
        ));
        let unknown = json_reply(r#"{"SMSMessageData":{"Message":"Hmm","Recipients":[]}}"#);
        let error = interpret_reply(201, Some("application/json"), &unknown, "+254712345678");
        assert!(matches!(&error, Err(e @ SmsError::Decode { .. }) if e.is_ambiguous()));
    }

    #[test]
    fn a_non_2xx_reply_keeps_its_status_and_first_bytes_and_is_never_parsed() {
        let body = json_reply("The supplied authentication is invalid");
        let error =
            interpret_reply(401, Some("application/json"), &body, "+254712345678").unwrap_err();
        assert!(matches!(
            &error,
            SmsError::Http { status: 401, body_head, class: FailureClass::Alert }
                if body_head == "The supplied authentication is invalid"
        ));
        assert!(!error.is_retryable());
        assert!(error.pauses_outbox());

        let long = json_reply(&"x".repeat(10_000));
        let error = interpret_reply(503, Some("text/plain"), &long, "+254712345678").unwrap_err();
        assert!(matches!(
            &error,
            SmsError::Http { status: 503, body_head, class: FailureClass::Retryable }
                if body_head.len() == BODY_HEAD_LEN
        ));
        assert!(error.is_retryable());
        assert!(!error.is_ambiguous());
    }

    #[test]
    fn whole_request_statuses_are_classified() {
        assert_eq!(classify_http_status(500), FailureClass::Retryable);
        assert_eq!(classify_http_status(503), FailureClass::Retryable);
        assert_eq!(classify_http_status(429), FailureClass::Retryable);
        assert_eq!(classify_http_status(401), FailureClass::Alert);
        assert_eq!(classify_http_status(400), FailureClass::Alert);
        assert_eq!(classify_http_status(302), FailureClass::Alert);
    }

    #[test]
    fn a_2xx_reply_that_is_not_json_is_ambiguous() {
        let xml = json_reply("<?xml version=\"1.0\"?><AfricasTalkingResponse/>");
        for content_type in [Some("application/xml"), None] {
            let error = interpret_reply(201, content_type, &xml, "+254712345678").unwrap_err();
            assert!(matches!(error, SmsError::Decode { status: 201, .. }));
            assert!(error.is_ambiguous());
            assert!(!error.is_retryable());
        }
        let broken = json_reply("{\"SMSMessageData\":");
        let error = interpret_reply(201, Some("application/json"), &broken, "+254712345678");
        assert!(matches!(error, Err(SmsError::Decode { .. })));
    }

    #[test]
    fn a_truncated_or_shapeless_json_reply_is_a_decode_error() {
        let mut body = json_reply(r#"{"SMSMessageData":{}}"#);
        body.truncated = true;
        let error = interpret_reply(201, Some("application/json"), &body, "+254712345678");
        assert!(matches!(error, Err(SmsError::Decode { .. })));
        for shapeless in [
            r#"[]"#,
            r#"{"SMSMessageData":{"Recipients":[{"number":"+254712345678"}]}}"#,
            r#"{"SMSMessageData":{"Recipients":[{"statusCode":-1}]}}"#,
        ] {
            let error = interpret_reply(
                201,
                Some("application/json"),
                &json_reply(shapeless),
                "+2547",
            );
            assert!(matches!(error, Err(SmsError::Decode { .. })), "{shapeless}");
        }
    }

    #[test]
    fn body_heads_are_cut_on_a_character_boundary() {
        let text = "é".repeat(BODY_HEAD_LEN);
        let head = body_head(text.as_bytes());
        assert_eq!(head, "é".repeat(BODY_HEAD_LEN / 2));
    }

    #[test]
    fn phone_numbers_are_masked_in_debug_output() {
        let number = PhoneNumber::from(&msisdn());
        assert_eq!(format!("{number:?}"), "2547******78");
        assert_eq!(format!("{number}"), msisdn().masked());
        assert_eq!(number.as_str(), "+254712345678");
        assert_eq!(PhoneNumber::new("+255712345678").masked(), "2557******78");
        assert_eq!(PhoneNumber::new("123").masked(), "***");
        assert_eq!(number.msisdn(), Some(msisdn()));
    }
}
