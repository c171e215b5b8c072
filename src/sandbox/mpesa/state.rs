//! The sandbox's shared state: settings, tokens, pushes, prompts, faults and records.
//!
//! One `std::sync::Mutex` guards it all. It is never held across an `.await`, so handlers and
//! callback tasks take it for a few field updates at a time. Every change tests may wait for
//! bumps a `watch` counter, which is what [`Inner::wait_until`] sleeps on.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::{broadcast, oneshot, watch, Notify};

use super::ids::Ids;
use super::{
    C2bRegistration, Fault, Outcome, Prompt, PromptAnswer, PromptEvent, RecordedCallback,
    RecordedPush, RecordedRequest, SandboxConfig, SandboxError,
};
use crate::mpesa::Endpoint;

pub(crate) struct Inner {
    pub base_url: String,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    pub prompt_events: broadcast::Sender<PromptEvent>,
    /// For callbacks to Duka; each request sets its own timeout.
    pub http: reqwest::Client,
    shutdown: watch::Receiver<bool>,
}

pub(crate) struct State {
    pub config: SandboxConfig,
    /// Per-phone outcomes, by the phone's 12 digits.
    pub outcomes: HashMap<String, Outcome>,
    /// Issued tokens and when each stops working.
    pub tokens: HashMap<String, DateTime<Utc>>,
    pub faults: HashMap<Endpoint, VecDeque<Fault>>,
    pub pushes: Vec<RecordedPush>,
    /// By `CheckoutRequestID`: what the push's task waits on (the push itself is in `pushes`).
    pub transactions: HashMap<String, Transaction>,
    /// Phones with a push the phone has not answered yet, to the push's `CheckoutRequestID`.
    pub busy_phones: HashMap<String, String>,
    pub open_prompts: HashMap<String, OpenPrompt>,
    pub c2b: Option<C2bRegistration>,
    /// The paybill's balance, reported in confirmations' `OrgAccountBalance`.
    pub org_balance: Decimal,
    /// Every payment that moved money, by receipt: what may be reversed, and what the
    /// transaction status API knows.
    pub ledger: HashMap<String, Ledgered>,
    pub refunds: Vec<super::refunds::RecordedRefund>,
    pub ids: Ids,
    pub requests: Vec<RecordedRequest>,
    pub callbacks: Vec<RecordedCallback>,
}

/// A payment M-Pesa completed.
#[derive(Clone, Debug)]
pub(crate) struct Ledgered {
    pub amount: Decimal,
    /// `ReasonType`: `Pay Bill Online`, `Buy Goods Online` (STK), `Pay Bill`, `Buy Goods`.
    pub reason_type: &'static str,
    /// The payer's 12 digits.
    pub phone: String,
    pub at: DateTime<Utc>,
}

pub(crate) struct Transaction {
    /// Signalled when a query reports the result, for [`super::Delivery::AfterQuery`].
    pub result_queried: Arc<Notify>,
}

pub(crate) struct OpenPrompt {
    pub prompt: Prompt,
    pub answer: oneshot::Sender<i64>,
}

impl Inner {
    pub(crate) fn new(
        config: SandboxConfig,
        base_url: String,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SandboxError> {
        let seed = config.seed.unwrap_or_else(rand::random);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SandboxError::HttpClient(e.to_string()))?;
        let (prompt_events, _) = broadcast::channel(64);
        Ok(Self {
            base_url,
            state: Mutex::new(State {
                config,
                outcomes: HashMap::new(),
                tokens: HashMap::new(),
                faults: HashMap::new(),
                pushes: Vec::new(),
                transactions: HashMap::new(),
                busy_phones: HashMap::new(),
                open_prompts: HashMap::new(),
                c2b: None,
                org_balance: Decimal::new(12_800_000, 2),
                ledger: HashMap::new(),
                refunds: Vec::new(),
                ids: Ids::new(seed),
                requests: Vec::new(),
                callbacks: Vec::new(),
            }),
            changes: watch::channel(0).0,
            prompt_events,
            http,
            shutdown,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the sandbox down with it; the state stays usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        let clock = Arc::clone(&self.lock().config.clock);
        clock.now()
    }

    /// Tells waiters that something they may be waiting for has changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until `done` holds or `within` passes.
    pub(crate) async fn wait_until(&self, within: Duration, mut done: impl FnMut() -> bool) {
        let mut changes = self.changes.subscribe();
        let _ = tokio::time::timeout(within, async {
            while !done() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Runs `task` in the background until it ends or the sandbox stops.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = task => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }

    pub(crate) fn take_fault(&self, endpoint: Endpoint) -> Option<Fault> {
        self.lock().faults.get_mut(&endpoint)?.pop_front()
    }

    pub(crate) fn record_request(&self, request: RecordedRequest) {
        crate::sandbox::record(&mut self.lock().requests, request);
        self.changed();
    }

    pub(crate) fn record_callback(&self, callback: RecordedCallback) {
        crate::sandbox::record(&mut self.lock().callbacks, callback);
        self.changed();
    }

    pub(crate) fn answer_prompt(
        &self,
        checkout_request_id: &str,
        answer: PromptAnswer,
    ) -> Result<i64, SandboxError> {
        let mut state = self.lock();
        let result_code = match &answer {
            PromptAnswer::Pin(pin) if *pin == state.config.pin => 0,
            PromptAnswer::Pin(_) => 2001,
            PromptAnswer::Cancel => 1032,
        };
        let open = state
            .open_prompts
            .remove(checkout_request_id)
            .ok_or_else(|| SandboxError::UnknownPrompt(checkout_request_id.to_owned()))?;
        drop(state);
        // The push's task may have timed out at this very moment; its 1037 then stands.
        let _ = open.answer.send(result_code);
        self.close_prompt(checkout_request_id, result_code);
        Ok(result_code)
    }

    pub(crate) fn close_prompt(&self, checkout_request_id: &str, result_code: i64) {
        // Nobody listening is fine: the terminal phone may not be running.
        let _ = self.prompt_events.send(PromptEvent::Closed {
            checkout_request_id: checkout_request_id.to_owned(),
            result_code,
        });
        self.changed();
    }
}

impl State {
    /// The recorded push with this id (recent pushes only: see [`crate::sandbox::record_limit`]).
    pub fn push_mut(&mut self, checkout_request_id: &str) -> Option<&mut RecordedPush> {
        self.pushes
            .iter_mut()
            .rev()
            .find(|p| p.checkout_request_id == checkout_request_id)
    }

    /// Records an accepted push, forgetting the oldest ones (and their transactions) beyond the
    /// record limit.
    pub fn record_push(&mut self, push: RecordedPush) {
        crate::sandbox::record(&mut self.pushes, push);
        if self.transactions.len() > 2 * crate::sandbox::record_limit() {
            let kept: std::collections::HashSet<&str> = self
                .pushes
                .iter()
                .map(|p| p.checkout_request_id.as_str())
                .collect();
            self.transactions.retain(|id, _| kept.contains(id.as_str()));
        }
    }
}
