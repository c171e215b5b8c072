//! The M-Pesa sandbox: a Daraja stand-in that speaks the real wire format over real HTTP.
//!
//! [`MpesaSandbox::start`] binds an axum server (on `127.0.0.1:0` by default) serving Daraja's
//! paths: the OAuth token, STK push and query, C2B URL registration and simulate. `duka serve`
//! points its [`crate::mpesa::DarajaClient`] at it when `MPESA_BASE_URL` is unset; the tests use
//! it to drive every failure the real Daraja has; `duka dial` answers its prompts.
//!
//! # What it does, as Daraja would
//! - **Token**: checks Basic auth and `grant_type`, answers `expires_in` as a string, with a
//!   lifetime settable down to seconds. An unknown or expired bearer gets `404.001.03`.
//! - **Push**: validates every field (see `checks`), answering `400.002.02 "Bad Request - Invalid
//!   <Field>"` with the HTTP status taken from the code. Wrong credentials, or a second push to a
//!   phone with one pending, get `500.001.1001`.
//! - **The phone**: after accepting a push, the phone "answers" with the [`Outcome`] set for its
//!   number (or the default) after `callback_delay`, or waits for a person to answer in
//!   interactive mode ([`PhoneAnswer::Interactive`], [`MpesaSandbox::answer_prompt`]); silence
//!   until `prompt_timeout` gives 1037. The callback then goes to the `CallBackURL` as Daraja
//!   sends it (`ResultCode` a number, `Balance` without `Value`, `Amount` `450` or `450.00`),
//!   normally, never, twice, late, or only after a query has reported the result ([`Delivery`]).
//! - **Query**: `500.001.1001` "The transaction is being processed" while the phone has not
//!   answered, then the result code as a string, the same as the callback's even when that was
//!   dropped. An unknown `CheckoutRequestID` gets `400.002.02`.
//! - **Faults**: [`MpesaSandbox::fail_next`] makes the next calls to an endpoint answer 503 or
//!   429, fail after processing, or hang past the client's timeout (after processing, so the
//!   prompt is on the phone: the ambiguous case).
//! - **C2B**: registration answers the misspelled `OriginatorCoversationID` and checks
//!   `ResponseType`'s case and the URL rules. [`MpesaSandbox::pay_bill`] (and `simulate`) calls
//!   validation when enabled, applies `ResponseType` when validation fails or is late, then
//!   confirms, with a hashed or masked `MSISDN` and a string `TransAmount`.
//! - **Records**: every request and reply, every callback sent and Duka's answer, for tests.
//!
//! # Deliberate departures
//! - One shortcode serves STK and C2B, where Safaricom's sandbox uses different ones, so the demo
//!   needs one setting.
//! - `CheckoutRequestID`s end with random digits, not the payer's number as Daraja's do.
//! - The hashed `MSISDN` is a deterministic 64-hex stand-in, not SHA-256 (Duka treats it as
//!   opaque).
//! - Two extra routes, `GET /sandbox/prompts` and `POST /sandbox/prompts/{id}`, let a terminal
//!   phone in another process see and answer prompts. They are not Daraja's.
//!
//! Ids come from a seeded generator and time from an injectable [`Clock`], so a test can pin
//! both. Delays (`callback_delay`, `prompt_timeout`) are real `tokio::time` sleeps.

mod api;
mod checks;
mod deliver;
mod ids;
pub mod refunds;
mod state;
pub mod status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use crate::mpesa::callbacks::C2bRejectCode;
use crate::mpesa::clock::{Clock, SystemClock};
use crate::mpesa::{DarajaConfig, Endpoint};
use crate::msisdn::Msisdn;
use state::Inner;

/// How the sandbox behaves. [`SandboxConfig::default`] suits the local demo; tests shorten the
/// delays, fix the seed and the clock.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    pub consumer_key: String,
    pub consumer_secret: SecretString,
    /// The paybill, for STK and C2B alike. Safaricom's STK sandbox uses `174379`.
    pub shortcode: String,
    pub passkey: SecretString,
    /// The PIN that pays in interactive mode; any other PIN is a wrong PIN (2001).
    pub pin: String,
    /// How long a token lives. Daraja's is an hour; `expires_in` says one second less.
    pub token_ttl: Duration,
    /// How far a push's `Timestamp` may be from now (Daraja's tolerance is unpublished).
    pub timestamp_skew: Duration,
    /// The largest `Amount` accepted (the real cap has moved over the years).
    pub amount_cap: u32,
    /// Strict callback URLs: HTTPS and no loopback. Off, so the demo works on `127.0.0.1`.
    pub strict_urls: bool,
    /// How long a scripted phone takes to answer.
    pub callback_delay: Duration,
    /// The outcome for phones without one of their own.
    pub default_outcome: Outcome,
    /// How long an interactive prompt waits before ending in 1037.
    pub prompt_timeout: Duration,
    /// How long the sandbox waits for Duka's reply to an STK callback or a confirmation.
    pub callback_timeout: Duration,
    /// Whether the paybill has External Validation (opt-in at Safaricom, off by default).
    pub c2b_validation: bool,
    /// How long validation may take before `ResponseType` applies (~8 s in one SDK).
    pub validation_timeout: Duration,
    pub amount_format: AmountFormat,
    /// The id generator's seed; `None` draws one, so restarts do not reuse ids.
    pub seed: Option<u64>,
    pub clock: Arc<dyn Clock>,
    /// Till mode: a Buy Goods till behind the store number `shortcode` (`MPESA_TILL` with the
    /// sandbox). Pushes must then be `CustomerBuyGoodsOnline` to this till; paybill-shaped ones
    /// get `SFC_IC0003`.
    pub till: Option<String>,
    /// The API operator refunds must come from, and its security credential.
    pub initiator_name: String,
    pub security_credential: SecretString,
    /// How refund requests that pass the checks end.
    pub refund_outcome: refunds::RefundOutcome,
    /// How transaction status queries that pass the checks end.
    pub status_outcome: status::StatusOutcome,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            consumer_key: "duka-sandbox-key".into(),
            consumer_secret: SecretString::from("duka-sandbox-secret"),
            shortcode: "174379".into(),
            passkey: SecretString::from("duka-sandbox-passkey"),
            pin: "1234".into(),
            token_ttl: Duration::from_secs(3599),
            timestamp_skew: Duration::from_secs(5 * 60),
            amount_cap: 250_000,
            strict_urls: false,
            callback_delay: Duration::from_secs(3),
            default_outcome: Outcome::paid(),
            prompt_timeout: Duration::from_secs(60),
            callback_timeout: Duration::from_secs(10),
            c2b_validation: false,
            validation_timeout: Duration::from_secs(8),
            amount_format: AmountFormat::Mixed,
            seed: None,
            clock: Arc::new(SystemClock),
            till: None,
            initiator_name: "duka-sandbox-initiator".into(),
            security_credential: SecretString::from("duka-sandbox-security-credential"),
            refund_outcome: refunds::RefundOutcome::Done,
            status_outcome: status::StatusOutcome::Answered,
        }
    }
}

/// How the phone answers a push and how the result reaches Duka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub answer: PhoneAnswer,
    pub delivery: Delivery,
}

impl Outcome {
    /// The shopper pays (0), and the callback comes once.
    pub fn paid() -> Self {
        Self::code(0)
    }

    /// The push ends with `result_code` (1, 17, 1001, 1019, 1025, 1032, 1037, 2001, …).
    pub fn code(result_code: i64) -> Self {
        Self {
            answer: PhoneAnswer::Code(result_code),
            delivery: Delivery::Normal,
        }
    }

    /// A person answers through [`MpesaSandbox::answer_prompt`].
    pub fn interactive() -> Self {
        Self {
            answer: PhoneAnswer::Interactive,
            delivery: Delivery::Normal,
        }
    }

    pub fn delivered(self, delivery: Delivery) -> Self {
        Self { delivery, ..self }
    }
}

/// How the phone answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneAnswer {
    /// After `callback_delay`, with this result code.
    Code(i64),
    /// The push waits as a [`Prompt`] for [`MpesaSandbox::answer_prompt`], or `prompt_timeout`.
    Interactive,
}

/// How the result reaches Duka's `CallBackURL`. The query always knows the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Normal,
    /// Never sent: Duka must find out by querying.
    Drop,
    /// Sent twice, identically.
    Twice,
    /// Sent this long after the phone answered.
    Late(Duration),
    /// Held until a query has reported the result, then sent.
    AfterQuery,
}

/// How a successful callback writes `Amount`, which Daraja sends both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountFormat {
    /// `450`
    Integer,
    /// `450.00`
    TwoDecimals,
    /// Either, drawn from the seeded generator.
    Mixed,
}

/// A fault for the next call to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 with a gateway's HTML page; the request is not processed.
    Unavailable,
    /// 429 (Spike Arrest); the request is not processed.
    Throttled,
    /// The request is processed (a push's prompt is on the phone), then 500 with an HTML page.
    ErrorAfterProcessing,
    /// The request is processed, then the reply is held this long: longer than the client's
    /// timeout makes the ambiguous read timeout.
    Hang(Duration),
}

/// A push waiting for a person on the interactive phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub checkout_request_id: String,
    pub phone: Msisdn,
    pub amount: u32,
    /// Empty for a till, which takes no account.
    pub account_reference: String,
    /// The paybill, or the till in till mode.
    pub shortcode: String,
    pub opened_at: DateTime<Utc>,
}

impl Prompt {
    /// The text the phone shows, close to the real prompt.
    pub fn text(&self) -> String {
        if self.account_reference.is_empty() {
            // A till: no account number.
            return format!(
                "Do you want to pay KES {} to till {}? Enter M-PESA PIN:",
                self.amount, self.shortcode
            );
        }
        format!(
            "Do you want to pay KES {} to {} account no. {}? Enter M-PESA PIN:",
            self.amount, self.shortcode, self.account_reference
        )
    }
}

/// What happens to prompts, for a terminal phone to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptEvent {
    Opened(Prompt),
    Closed {
        checkout_request_id: String,
        result_code: i64,
    },
}

/// A person's answer to a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptAnswer {
    /// The configured PIN pays (0); any other is a wrong PIN (2001).
    Pin(String),
    /// 1032.
    Cancel,
}

/// How C2B's `MSISDN` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsisdnStyle {
    /// v1: a 64-hex hash.
    Hashed,
    /// v2: `2547 ***** 678`.
    Masked,
}

/// A paybill payment made at the shopper's phone.
#[derive(Debug, Clone)]
pub struct PayBill {
    /// `BillRefNumber` exactly as typed: vary case and spacing to exercise normalisation.
    pub account: String,
    /// A decimal such as `"450"`; sent as `TransAmount` with two decimals (`"450.00"`).
    pub amount: String,
    /// The payer's 12 digits (`2547…`), from which `MSISDN` is hashed or masked.
    pub phone: String,
    pub first_name: String,
    pub msisdn_style: MsisdnStyle,
    /// How many times the confirmation is sent (at-least-once delivery); 0: it is lost (the
    /// money moves, Duka never hears).
    pub confirmations: u32,
}

impl PayBill {
    /// A payment from the sandbox's test phone, confirmed once, with a hashed MSISDN.
    pub fn new(account: impl Into<String>, amount: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            amount: amount.into(),
            phone: "254708374149".into(),
            first_name: "JANE".into(),
            msisdn_style: MsisdnStyle::Hashed,
            confirmations: 1,
        }
    }
}

/// How a paybill payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayBillOutcome {
    /// The M-Pesa receipt, `TransID` in both requests.
    pub trans_id: String,
    pub result: PayBillResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayBillResult {
    /// The money moved and the confirmation was sent.
    Confirmed,
    /// Validation rejected it with this code; no confirmation.
    Rejected(C2bRejectCode),
    /// Validation failed or was late and `ResponseType` is `Cancelled`; no confirmation.
    Cancelled,
}

/// The registered C2B URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bRegistration {
    pub response_type: String,
    pub confirmation_url: String,
    pub validation_url: String,
}

/// One request the sandbox received, and what it answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub at: DateTime<Utc>,
    pub endpoint: Endpoint,
    /// The body as JSON (`Null` when empty or not JSON); see `raw_body`.
    pub body: serde_json::Value,
    pub raw_body: String,
    pub status: u16,
    /// The reply body. For [`Fault::Hang`] it is recorded when the hang starts, so it may be a
    /// reply the client gave up waiting for.
    pub reply: String,
}

/// A push the sandbox accepted, and how it ended once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPush {
    pub checkout_request_id: String,
    pub merchant_request_id: String,
    pub phone: Msisdn,
    pub amount: u32,
    pub account_reference: String,
    pub description: String,
    pub callback_url: String,
    pub outcome: Outcome,
    pub accepted_at: DateTime<Utc>,
    /// `None` while the phone has not answered.
    pub result_code: Option<i64>,
    pub receipt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    Stk,
    C2bValidation,
    C2bConfirmation,
    /// A reversal result or timeout.
    Reversal,
    /// A B2C result or timeout.
    B2c,
    /// A transaction status result or timeout.
    Status,
}

/// One call the sandbox made to Duka.
#[derive(Debug, Clone)]
pub struct RecordedCallback {
    pub at: DateTime<Utc>,
    pub kind: CallbackKind,
    pub url: String,
    pub body: serde_json::Value,
    /// The exact bytes sent (they show `450.00` where JSON values would not).
    pub raw_body: String,
    /// Duka's reply, or why there was none (timeout, connection refused).
    pub reply: Result<HttpReply, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// Why the sandbox could not do what its caller asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("could not listen on {addr} for the M-Pesa sandbox")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the sandbox's HTTP client: {0}")]
    HttpClient(String),
    #[error("no open prompt {0:?}")]
    UnknownPrompt(String),
    #[error("no C2B URLs are registered for the paybill")]
    NoC2bUrls,
    #[error("not a payable amount: {0:?}")]
    InvalidAmount(String),
}

/// A running sandbox. Clones share it; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct MpesaSandbox {
    inner: Arc<Inner>,
    _server: Arc<ServerGuard>,
}

struct ServerGuard {
    shutdown: watch::Sender<bool>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        // Stops accepting, lets in-flight requests finish, and ends pending callback tasks.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for MpesaSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpesaSandbox")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl MpesaSandbox {
    /// Binds the server and starts serving.
    ///
    /// # Errors
    /// [`SandboxError::Bind`] when the address is taken; [`SandboxError::HttpClient`] when the
    /// client for callbacks cannot be built.
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.bind,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let inner = Arc::new(Inner::new(config, base_url.clone(), shutdown_rx.clone())?);
        let app = api::router(Arc::clone(&inner));
        let mut stop = shutdown_rx;
        tokio::spawn(async move {
            let stopped = async move {
                // An error means the guard is gone, which is a stop too.
                let _ = stop.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                warn!(error.message = %e, "the M-Pesa sandbox server stopped");
            }
        });
        info!(sandbox.url = %base_url, "M-Pesa sandbox listening on {base_url}");
        Ok(Self {
            inner,
            _server: Arc::new(ServerGuard { shutdown }),
        })
    }

    /// `http://127.0.0.1:<port>`: the `MPESA_BASE_URL` of this sandbox.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub fn consumer_key(&self) -> String {
        self.inner.lock().config.consumer_key.clone()
    }

    pub fn consumer_secret(&self) -> SecretString {
        self.inner.lock().config.consumer_secret.clone()
    }

    pub fn shortcode(&self) -> String {
        self.inner.lock().config.shortcode.clone()
    }

    pub fn passkey(&self) -> SecretString {
        self.inner.lock().config.passkey.clone()
    }

    /// The PIN that pays in interactive mode.
    pub fn pin(&self) -> String {
        self.inner.lock().config.pin.clone()
    }

    /// A client configuration that talks to this sandbox with its credentials.
    pub fn daraja_config(&self) -> DarajaConfig {
        let state = self.inner.lock();
        DarajaConfig::new(
            self.inner.base_url.clone(),
            state.config.consumer_key.clone(),
            state.config.consumer_secret.clone(),
            state.config.shortcode.clone(),
            state.config.passkey.clone(),
        )
        .with_till(state.config.till.clone())
        .with_initiator(Some((
            state.config.initiator_name.clone(),
            state.config.security_credential.clone(),
        )))
    }

    /// The refund requests (reversal and B2C) the sandbox took, oldest first.
    pub fn refunds(&self) -> Vec<refunds::RecordedRefund> {
        self.inner.lock().refunds.clone()
    }

    /// The current settings.
    pub fn config(&self) -> SandboxConfig {
        self.inner.lock().config.clone()
    }

    /// Changes settings while running (delays, TTL, cap, URL strictness, validation, …).
    /// Changing `bind` has no effect.
    pub fn configure(&self, change: impl FnOnce(&mut SandboxConfig)) {
        change(&mut self.inner.lock().config);
    }

    pub fn set_default_outcome(&self, outcome: Outcome) {
        self.configure(|config| config.default_outcome = outcome);
    }

    /// The outcome of every later push to `phone`.
    pub fn set_outcome_for(&self, phone: &Msisdn, outcome: Outcome) {
        self.inner
            .lock()
            .outcomes
            .insert(phone.digits().to_owned(), outcome);
    }

    pub fn clear_outcome_for(&self, phone: &Msisdn) {
        self.inner.lock().outcomes.remove(phone.digits());
    }

    /// Forgets every token issued, so the next call with one gets `404.001.03`.
    pub fn expire_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// Makes the next `times` calls to `endpoint` fail with `fault`, after any already queued.
    pub fn fail_next(&self, endpoint: Endpoint, times: usize, fault: Fault) {
        let mut state = self.inner.lock();
        let queue = state.faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    pub fn clear_faults(&self) {
        self.inner.lock().faults.clear();
    }

    /// The prompts waiting for an answer, oldest first.
    pub fn prompts(&self) -> Vec<Prompt> {
        let mut prompts: Vec<Prompt> = self
            .inner
            .lock()
            .open_prompts
            .values()
            .map(|open| open.prompt.clone())
            .collect();
        prompts.sort_by(|a, b| {
            (a.opened_at, &a.checkout_request_id).cmp(&(b.opened_at, &b.checkout_request_id))
        });
        prompts
    }

    /// Prompts opening and closing, from now on. A receiver that falls more than 64 events
    /// behind gets `Lagged` and should re-read [`MpesaSandbox::prompts`].
    pub fn subscribe_prompts(&self) -> broadcast::Receiver<PromptEvent> {
        self.inner.prompt_events.subscribe()
    }

    /// Waits until `phone` has an open prompt.
    pub async fn wait_for_prompt(&self, phone: &Msisdn, within: Duration) -> Option<Prompt> {
        let find = || self.prompts().into_iter().find(|p| &p.phone == phone);
        self.inner.wait_until(within, || find().is_some()).await;
        find()
    }

    /// Answers an open prompt, as the shopper on the phone; returns the result code.
    ///
    /// # Errors
    /// [`SandboxError::UnknownPrompt`] when no prompt with that id is open (answered, timed out,
    /// or never interactive).
    pub fn answer_prompt(
        &self,
        checkout_request_id: &str,
        answer: PromptAnswer,
    ) -> Result<i64, SandboxError> {
        self.inner.answer_prompt(checkout_request_id, answer)
    }

    /// A paybill payment to `account`: validation (if enabled), then confirmation.
    ///
    /// # Errors
    /// [`SandboxError::NoC2bUrls`] before registration; [`SandboxError::InvalidAmount`] for an
    /// amount that is not a positive decimal.
    pub async fn pay_bill(
        &self,
        account: &str,
        amount: &str,
    ) -> Result<PayBillOutcome, SandboxError> {
        self.pay_bill_with(PayBill::new(account, amount)).await
    }

    /// [`MpesaSandbox::pay_bill`] with every detail chosen.
    ///
    /// # Errors
    /// As [`MpesaSandbox::pay_bill`].
    pub async fn pay_bill_with(&self, payment: PayBill) -> Result<PayBillOutcome, SandboxError> {
        deliver::pay_bill(&self.inner, payment).await
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.inner
            .lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// Every push accepted, in order, with its result once the phone has answered.
    pub fn pushes(&self) -> Vec<RecordedPush> {
        self.inner.lock().pushes.clone()
    }

    pub fn push(&self, checkout_request_id: &str) -> Option<RecordedPush> {
        self.pushes()
            .into_iter()
            .find(|p| p.checkout_request_id == checkout_request_id)
    }

    /// Every callback sent to Duka (STK, C2B validation and confirmation), with Duka's reply.
    pub fn callbacks(&self) -> Vec<RecordedCallback> {
        self.inner.lock().callbacks.clone()
    }

    /// Waits until at least `count` callbacks have been sent and answered, or `within` passes;
    /// returns them all either way.
    pub async fn wait_for_callbacks(
        &self,
        count: usize,
        within: Duration,
    ) -> Vec<RecordedCallback> {
        self.inner
            .wait_until(within, || self.inner.lock().callbacks.len() >= count)
            .await;
        self.callbacks()
    }

    /// Waits until the push has a result (the phone answered), or `within` passes.
    pub async fn wait_for_result(
        &self,
        checkout_request_id: &str,
        within: Duration,
    ) -> Option<i64> {
        let result = || self.push(checkout_request_id).and_then(|p| p.result_code);
        self.inner.wait_until(within, || result().is_some()).await;
        result()
    }

    pub fn c2b_registration(&self) -> Option<C2bRegistration> {
        self.inner.lock().c2b.clone()
    }
}
