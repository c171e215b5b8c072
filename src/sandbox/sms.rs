//! The built-in SMS sandbox: a real HTTP server that answers `POST /version1/messaging` the way
//! Africa's Talking does, records every message it "sends", and posts delivery reports back.
//!
//! `duka serve` starts it when `AT_BASE_URL` is unset, so the demo texts without an account;
//! `duka dial` shows its inbox as the phone's SMS; the tests drive every failure the real API
//! has through it, over real sockets, against the real [`AtSmsClient`](crate::sms::africastalking::AtSmsClient).
//!
//! What it owns: the wire format (checked as strictly as AT checks it), the failure scripts, the
//! record of what arrived, and the delivery-report poster. What it does not do: persist anything
//! (everything is in memory and dies with the value), or reach the real AT.
//!
//! How a request is answered, in order:
//! 1. A missing or wrong `apiKey` header gets a plain-text 401; so does a wrong `username`.
//!    A body that is not a form, or lacks `to` or `message`, gets a plain-text 400.
//! 2. The next [`Step`] is taken: from the test-wide script, then the script of the number, then
//!    the number's fallback, then the sandbox's fallback ([`Step::Accept`] unless changed). A
//!    whole-request step (a failure status, a slow reply, a timeout) applies to the request.
//! 3. Each recipient is checked like AT does: a number not matching `^\+\d{1,3}\d{3,}$` gets 403,
//!    a `from` outside the configured sender ids gets 402, then the step's code applies. An
//!    accepted recipient is *recorded*: it joins [`SmsSandbox::messages`], its phone's inbox, and
//!    the broadcast to subscribers, and its delivery reports are scheduled.
//! 4. The reply is a 201 with AT's JSON, or AT's XML when `Accept: application/json` was missing.
//!
//! Determinism: ids come from a seeded generator and timestamps from an injectable clock. The work
//! for a request runs in its own task, so a client hanging up never changes what gets recorded.
//! Report delays use Tokio's timer, so a paused test clock drives them too.

mod reports;
mod segments;
mod server;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use secrecy::SecretString;
use tokio::sync::{broadcast, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::msisdn::Msisdn;
use crate::sms::africastalking::{AtSmsConfig, PhoneNumber};

pub use reports::{
    DeliveryReports, PostedReport, ReportEncoding, ReportId, ReportPlan, ReportStep,
};

/// The sandbox's source of "now", for the timestamps it records.
#[derive(Clone)]
pub struct SandboxClock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl SandboxClock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self(Arc::new(move || at))
    }

    /// Any function of no arguments, such as a test clock that advances by hand.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for SandboxClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SandboxClock")
    }
}

/// How the sandbox is set up. [`Default`] gives a sandbox that accepts the username `sandbox`,
/// a fixed key, the sender id `DUKA`, and sends no delivery reports.
#[derive(Debug, Clone)]
pub struct SmsSandboxConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The only `username` accepted.
    pub username: String,
    /// The only `apiKey` accepted.
    pub api_key: SecretString,
    /// The `from` values accepted; any other gets 402 InvalidSenderId. Leaving `from` out is
    /// always accepted (AT's default sender).
    pub sender_ids: Vec<String>,
    /// Seeds the `ATXid_…` ids, so a run can be repeated exactly. The default draws one, so
    /// every run (every `duka serve`) issues ids no earlier run issued.
    pub seed: u64,
    pub clock: SandboxClock,
    /// The currency written in `cost`, `KES` like AT Kenya.
    pub currency: String,
    /// The price of one segment; a message costs this times its segment count.
    pub cost_per_segment: Decimal,
    /// `networkCode` in delivery reports: `99999` (AT's sandbox) or a real one like `63902`.
    pub network_code: String,
    /// Delivery reports: `None` (the default) sends none.
    pub delivery_reports: Option<DeliveryReports>,
}

impl Default for SmsSandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            username: "sandbox".into(),
            api_key: SecretString::from("duka-sms-sandbox-key"),
            sender_ids: vec!["DUKA".into()],
            seed: rand::random(),
            clock: SandboxClock::system(),
            currency: "KES".into(),
            cost_per_segment: Decimal::new(8, 1),
            network_code: "99999".into(),
            delivery_reports: None,
        }
    }
}

/// What the sandbox does with the next request (or the next request to one number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send it: statusCode 101 "Success", recorded, reports scheduled.
    Accept,
    /// Answer this per-recipient `statusCode` inside a 201, such as 403, 405, 406 (permanent) or
    /// 500, 501 (retryable). A 1xx code accepts and records the message with that code.
    RecipientCode(u16),
    /// Fail the whole request with this HTTP status (500, 503, 401…) and a plain-text body.
    /// Nothing is recorded.
    FailRequest(u16),
    /// Wait this long, then answer as [`Step::Accept`]. Past the client's read timeout this too is
    /// the ambiguous case: the message is recorded after the client gave up.
    SlowReply(Duration),
    /// Wait this long, record nothing, then answer 503. Set past the client's read timeout, the
    /// client sees a lost reply while nothing was sent.
    TimeoutBeforeRecording(Duration),
    /// Record the message at once, then wait this long before the 201. Set past the client's
    /// read timeout, it is the ambiguous case: sent, reply lost.
    TimeoutAfterRecording(Duration),
}

impl Step {
    /// Whether this step decides the whole request rather than one recipient.
    fn is_whole_request(self) -> bool {
        !matches!(self, Self::Accept | Self::RecipientCode(_))
    }
}

/// The text encoding a message needs on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SmsEncoding {
    /// GSM 03.38, 7 bits a character: 160 per SMS, 153 per part.
    Gsm7,
    /// UTF-16: 70 per SMS, 67 per part. One character outside GSM-7 forces it.
    Ucs2,
}

/// A message the sandbox accepted, as the phone would receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    /// `ATXid_…`, unique within the sandbox.
    pub message_id: String,
    /// The recipient, exactly as it was in `to`.
    pub to: PhoneNumber,
    /// The `from` field, if one was sent.
    pub from: Option<String>,
    /// The decoded text.
    pub text: String,
    pub encoding: SmsEncoding,
    pub segments: u32,
    /// The statusCode it was accepted with (101 unless a script said otherwise).
    pub status_code: u16,
    /// As written in the reply: `KES 0.8000`.
    pub cost: String,
    pub received_at: DateTime<Utc>,
    /// Its request's index in [`SmsSandbox::requests`].
    pub request_index: usize,
}

/// One recipient's line in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub number: PhoneNumber,
    pub status_code: u16,
    pub status: String,
    pub cost: String,
    /// `None` where the reply says `"None"`.
    pub message_id: Option<String>,
}

/// One request as it arrived, and how it was answered.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub received_at: DateTime<Utc>,
    /// Every header, names in lower case; the `apikey` value is replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// Whether the `apiKey` header matched.
    pub api_key_ok: bool,
    /// The form fields in order, decoded (empty when the body was not a form).
    pub form: Vec<(String, String)>,
    /// The step that applied, when the request got as far as the script.
    pub step: Option<Step>,
    /// The HTTP status answered (or about to be answered, for a delayed reply).
    pub status: u16,
    /// Per-recipient results; empty when the request failed whole.
    pub recipients: Vec<RecipientResult>,
}

impl RecordedRequest {
    /// The first value of a header (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `to` holds full phone numbers: show them masked, like every other number in Duka.
        let form: Vec<(&str, String)> = self
            .form
            .iter()
            .map(|(key, value)| {
                let shown = if key == "to" {
                    value
                        .split(',')
                        .map(|n| PhoneNumber::new(n.trim()).masked())
                        .collect::<Vec<_>>()
                        .join(",")
                } else {
                    value.clone()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("received_at", &self.received_at)
            .field("headers", &self.headers)
            .field("api_key_ok", &self.api_key_ok)
            .field("form", &form)
            .field("step", &self.step)
            .field("status", &self.status)
            .field("recipients", &self.recipients)
            .finish()
    }
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the SMS sandbox could not listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not build the SMS sandbox's HTTP client for delivery reports")]
    HttpClient(#[source] reqwest::Error),
}

/// A wait that ran out before enough arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("waited {within:?} for {wanted} {what} in the SMS sandbox, saw {seen}")]
pub struct WaitTimeout {
    pub what: &'static str,
    pub wanted: usize,
    pub seen: usize,
    pub within: Duration,
}

/// How many of each record exist, watched by the `wait_for_*` methods.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    requests: usize,
    messages: usize,
    reports: usize,
}

/// What the server, the report tasks and the handle share.
struct Shared {
    username: String,
    api_key: SecretString,
    sender_ids: Vec<String>,
    clock: SandboxClock,
    currency: String,
    cost_per_segment: Decimal,
    network_code: String,
    http: reqwest::Client,
    state: Mutex<State>,
    arrivals: broadcast::Sender<SentSms>,
    progress: watch::Sender<Progress>,
}

/// Everything that changes. Held only briefly, never across an `.await`.
struct State {
    /// The run's 64 random bits, the first half of every id.
    run: u64,
    /// How many ids this run has issued, the second half.
    issued: u64,
    requests: Vec<RecordedRequest>,
    messages: Vec<SentSms>,
    reports: Vec<PostedReport>,
    script: VecDeque<Step>,
    fallback: Step,
    /// Keyed by the E.164 text of the number, as it appears in `to`.
    number_scripts: HashMap<String, VecDeque<Step>>,
    number_fallbacks: HashMap<String, Step>,
    delivery_reports: Option<DeliveryReports>,
    number_plans: HashMap<String, ReportPlan>,
    report_tasks: Vec<AbortHandle>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the records half-written in a way that
        // matters to a test double, so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn bump(&self, change: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(change);
    }
}

impl State {
    /// A fresh `ATXid_…`: the run's random bits and a counter, so ids never repeat within a
    /// run, and two runs share none unless they share a seed.
    fn fresh_id(&mut self) -> String {
        self.issued += 1;
        format!("ATXid_{:016x}{:016x}", self.run, self.issued)
    }

    /// The step for one number when no test-wide step is queued.
    fn step_for_number(&mut self, number: &str) -> Step {
        if let Some(step) = self
            .number_scripts
            .get_mut(number)
            .and_then(VecDeque::pop_front)
        {
            return step;
        }
        self.number_fallbacks
            .get(number)
            .copied()
            .unwrap_or(self.fallback)
    }

    /// Takes the steps for a request: one per recipient, and the whole-request step if any.
    /// A queued test-wide step applies to every recipient; otherwise each number's own steps
    /// apply, and the first whole-request one among them decides the request.
    fn resolve(&mut self, numbers: &[String]) -> (Option<Step>, Vec<Step>) {
        let per_recipient: Vec<Step> = match self.script.pop_front() {
            Some(step) => vec![step; numbers.len()],
            None => numbers.iter().map(|n| self.step_for_number(n)).collect(),
        };
        let whole = per_recipient.iter().copied().find(|s| s.is_whole_request());
        (whole, per_recipient)
    }
}

/// A running SMS sandbox. Dropping it stops the server and any pending delivery reports.
pub struct SmsSandbox {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl fmt::Debug for SmsSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsSandbox")
            .field("addr", &self.addr)
            .field("username", &self.shared.username)
            .finish_non_exhaustive()
    }
}

impl SmsSandbox {
    /// Binds the listener and starts serving in the background.
    ///
    /// # Errors
    /// [`SandboxError::Bind`] when the address is taken or not local; [`SandboxError::HttpClient`]
    /// if the report poster's client cannot be built.
    pub async fn start(config: SmsSandboxConfig) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: config.listen,
            source,
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(SandboxError::HttpClient)?;
        let shared = Arc::new(Shared {
            username: config.username,
            api_key: config.api_key,
            sender_ids: config.sender_ids,
            clock: config.clock,
            currency: config.currency,
            cost_per_segment: config.cost_per_segment,
            network_code: config.network_code,
            http,
            state: Mutex::new(State {
                run: StdRng::seed_from_u64(config.seed).random(),
                issued: 0,
                requests: Vec::new(),
                messages: Vec::new(),
                reports: Vec::new(),
                script: VecDeque::new(),
                fallback: Step::Accept,
                number_scripts: HashMap::new(),
                number_fallbacks: HashMap::new(),
                delivery_reports: config.delivery_reports,
                number_plans: HashMap::new(),
                report_tasks: Vec::new(),
            }),
            arrivals: broadcast::channel(256).0,
            progress: watch::channel(Progress::default()).0,
        });
        let router = server::router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error.message = %e, "the SMS sandbox stopped serving");
            }
        });
        tracing::info!("SMS sandbox listening on http://{addr}");
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, to use as `AT_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `username` the sandbox accepts.
    pub fn username(&self) -> &str {
        &self.shared.username
    }

    /// The `apiKey` the sandbox accepts.
    pub fn api_key(&self) -> &SecretString {
        &self.shared.api_key
    }

    /// The `from` values the sandbox accepts.
    pub fn sender_ids(&self) -> &[String] {
        &self.shared.sender_ids
    }

    /// A client configuration that reaches this sandbox with its credentials, no sender id, and
    /// the default timeouts.
    pub fn client_config(&self) -> AtSmsConfig {
        AtSmsConfig::new(
            self.base_url(),
            self.shared.username.clone(),
            self.shared.api_key.clone(),
        )
    }

    /// Queues steps for the next requests, whatever their number: each request takes one, and
    /// once they run out the fallbacks apply again. `[FailRequest(500), Accept]` is "one 500,
    /// then a 201".
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.shared.state().script.extend(steps);
    }

    /// Queues steps for the next requests to `to`, taken after any test-wide script.
    pub fn script_for(&self, to: &Msisdn, steps: impl IntoIterator<Item = Step>) {
        self.shared
            .state()
            .number_scripts
            .entry(to.e164())
            .or_default()
            .extend(steps);
    }

    /// What every request does when no script applies ([`Step::Accept`] at start).
    pub fn set_fallback(&self, step: Step) {
        self.shared.state().fallback = step;
    }

    /// What every request to `to` does when no script applies: "this number is blacklisted" is
    /// `set_fallback_for(&n, Step::RecipientCode(406))`.
    pub fn set_fallback_for(&self, to: &Msisdn, step: Step) {
        self.shared.state().number_fallbacks.insert(to.e164(), step);
    }

    /// Drops every script and fallback: the sandbox accepts everything again.
    pub fn clear_faults(&self) {
        let mut state = self.shared.state();
        state.script.clear();
        state.fallback = Step::Accept;
        state.number_scripts.clear();
        state.number_fallbacks.clear();
    }

    /// Turns delivery reports on (or off with `None`) for messages accepted from now on.
    pub fn set_delivery_reports(&self, delivery_reports: Option<DeliveryReports>) {
        self.shared.state().delivery_reports = delivery_reports;
    }

    /// Uses `plan` instead of the configured one for messages to `to` accepted from now on.
    pub fn set_report_plan_for(&self, to: &Msisdn, plan: ReportPlan) {
        self.shared.state().number_plans.insert(to.e164(), plan);
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SentSms> {
        self.shared.state().messages.clone()
    }

    /// The messages one phone received, oldest first.
    pub fn inbox(&self, phone: &Msisdn) -> Vec<SentSms> {
        let e164 = phone.e164();
        self.shared
            .state()
            .messages
            .iter()
            .filter(|m| m.to.as_str() == e164)
            .cloned()
            .collect()
    }

    /// Every request that reached the handler, oldest first, however it was answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// Every delivery report posted so far, with Duka's answer.
    pub fn reports(&self) -> Vec<PostedReport> {
        self.shared.state().reports.clone()
    }

    /// A stream of messages as they are accepted, for a terminal phone. A receiver that falls
    /// more than 256 messages behind loses the oldest (see [`broadcast`]).
    pub fn subscribe(&self) -> broadcast::Receiver<SentSms> {
        self.shared.arrivals.subscribe()
    }

    /// Waits until at least `count` messages have been accepted, and returns them all.
    ///
    /// # Errors
    /// [`WaitTimeout`] when fewer arrived `within`.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<Vec<SentSms>, WaitTimeout> {
        self.wait("messages", count, within, |p| p.messages).await?;
        Ok(self.messages())
    }

    /// Waits until at least `count` requests have reached the handler, and returns them all.
    ///
    /// # Errors
    /// [`WaitTimeout`] when fewer arrived `within`.
    pub async fn wait_for_requests(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<Vec<RecordedRequest>, WaitTimeout> {
        self.wait("requests", count, within, |p| p.requests).await?;
        Ok(self.requests())
    }

    /// Waits until at least `count` delivery reports have been posted, and returns them all.
    ///
    /// # Errors
    /// [`WaitTimeout`] when fewer were posted `within`.
    pub async fn wait_for_reports(
        &self,
        count: usize,
        within: Duration,
    ) -> Result<Vec<PostedReport>, WaitTimeout> {
        self.wait("delivery reports", count, within, |p| p.reports)
            .await?;
        Ok(self.reports())
    }

    async fn wait(
        &self,
        what: &'static str,
        wanted: usize,
        within: Duration,
        counter: fn(&Progress) -> usize,
    ) -> Result<(), WaitTimeout> {
        let mut progress = self.shared.progress.subscribe();
        let reached = tokio::time::timeout(within, progress.wait_for(|p| counter(p) >= wanted))
            .await
            .is_ok_and(|changed| changed.is_ok());
        if reached {
            Ok(())
        } else {
            Err(WaitTimeout {
                what,
                wanted,
                seen: counter(&self.shared.progress.borrow()),
                within,
            })
        }
    }

    /// Posts one report now, outside any plan: for a report the test writes itself (an orphan
    /// id, a status nobody knows). It is recorded in [`reports`](Self::reports) like the others.
    pub async fn post_report(
        &self,
        url: &str,
        encoding: ReportEncoding,
        report: crate::sms::africastalking::DeliveryReport,
    ) -> PostedReport {
        reports::post_and_record(&self.shared, url, encoding, report).await
    }

    /// Stops the server and every pending delivery report.
    pub fn shutdown(self) {
        // Drop does the work; this method only names it at the call site.
        drop(self);
    }
}

impl Drop for SmsSandbox {
    fn drop(&mut self) {
        self.server.abort();
        for task in self.shared.state().report_tasks.drain(..) {
            task.abort();
        }
    }
}
