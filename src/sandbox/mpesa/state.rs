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
    /// Accepted pushes, oldest first (recent ones only: see [`State::record_push`]).
    pub pushes: Vec<RecordedPush>,
    /// How many pushes were forgotten from the front of `pushes`: push number `n` (counted
    /// from the sandbox's start) is `pushes[n - forgotten_pushes]`.
    pub forgotten_pushes: u64,
    /// By `CheckoutRequestID`: what the push's task waits on, and where the push is.
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
    /// The push's number, counted from the sandbox's start (see [`State::forgotten_pushes`]).
    pub push_number: u64,
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
                forgotten_pushes: 0,
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
    /// The recorded push with this id (recent pushes only: see [`State::record_push`]), found
    /// through its transaction without a scan: a busy demo holds thousands.
    pub fn push_mut(&mut self, checkout_request_id: &str) -> Option<&mut RecordedPush> {
        let number = self.transactions.get(checkout_request_id)?.push_number;
        let at = usize::try_from(number.checked_sub(self.forgotten_pushes)?).ok()?;
        self.pushes
            .get_mut(at)
            .filter(|p| p.checkout_request_id == checkout_request_id)
    }

    /// Records an accepted push and its transaction, forgetting the oldest answered pushes
    /// (and their transactions) beyond [`crate::sandbox::record_limit`], in batches.
    ///
    /// A push whose phone has not answered is never forgotten, nor any after it: its task
    /// looks it up to send the callback, and a demo under load accepts more pushes within one
    /// callback delay than the limit (forgetting them lost their payments). Every push is
    /// answered within the prompt timeout, so what is kept stays bounded.
    pub fn record_push(&mut self, push: RecordedPush) {
        let number = self.forgotten_pushes + self.pushes.len() as u64;
        self.transactions.insert(
            push.checkout_request_id.clone(),
            Transaction {
                result_queried: Arc::new(Notify::new()),
                push_number: number,
            },
        );
        self.pushes.push(push);
        let limit = crate::sandbox::record_limit();
        if self.pushes.len() <= limit + limit / 4 {
            return;
        }
        let answered = self.pushes[..self.pushes.len() - limit]
            .iter()
            .take_while(|p| p.result_code.is_some())
            .count();
        if answered == 0 {
            return;
        }
        self.pushes.drain(..answered);
        self.forgotten_pushes += answered as u64;
        if self.transactions.len() > self.pushes.len() + limit / 4 {
            let first = self.forgotten_pushes;
            self.transactions.retain(|_, t| t.push_number >= first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msisdn::Msisdn;
    use crate::sandbox::mpesa::{Outcome, RecordedPush, SandboxConfig};

    fn state() -> Inner {
        let (_stop, shutdown) = watch::channel(false);
        Inner::new(
            SandboxConfig::default(),
            "http://127.0.0.1:1".into(),
            shutdown,
        )
        .unwrap()
    }

    fn push(n: usize) -> RecordedPush {
        RecordedPush {
            checkout_request_id: format!("ws_CO_{n:08}"),
            merchant_request_id: format!("m-{n}"),
            phone: Msisdn::parse("254712345678").unwrap(),
            amount: 100,
            account_reference: "DK10427".into(),
            description: "Duka DK10427".into(),
            callback_url: "http://127.0.0.1:1/cb".into(),
            outcome: Outcome::paid(),
            accepted_at: "2026-11-24T11:30:41Z".parse().unwrap(),
            result_code: None,
            receipt: None,
        }
    }

    #[test]
    fn a_push_still_waiting_for_its_phone_is_never_forgotten_and_answered_ones_are() {
        let inner = state();
        let mut state = inner.lock();
        let limit = crate::sandbox::record_limit();
        let accepted = limit * 3 / 2 + 1;
        // More pushes than the limit are waiting for their phones at once (a busy demo).
        for n in 0..accepted {
            state.record_push(push(n));
        }
        assert_eq!(
            state.pushes.len(),
            accepted,
            "none is forgotten while waiting"
        );
        assert!(state.push_mut(&push(0).checkout_request_id).is_some());

        // The oldest half answer; the next push makes room among the answered only.
        for n in 0..limit {
            state
                .push_mut(&push(n).checkout_request_id)
                .unwrap()
                .result_code = Some(0);
        }
        state.record_push(push(accepted));

        let forgotten = accepted + 1 - limit;
        assert_eq!(state.forgotten_pushes, forgotten as u64);
        assert_eq!(state.pushes.len(), limit);
        assert!(state
            .push_mut(&push(forgotten - 1).checkout_request_id)
            .is_none());
        for n in [forgotten, limit, accepted - 1, accepted] {
            let id = push(n).checkout_request_id;
            assert_eq!(state.push_mut(&id).unwrap().checkout_request_id, id);
        }
        assert_eq!(
            state.transactions.len(),
            limit,
            "their transactions go with them"
        );
    }
}
