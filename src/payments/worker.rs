//! The payment jobs: send an STK push, query a silent one, start a "Pay again", expire an order.
//!
//! Each runs after the USSD reply has gone out (the shopper's phone cannot show the M-Pesa prompt
//! while a USSD dialogue is open), may run twice (a lease ran out), and so re-reads the order and
//! acts only if the order still calls for it.
//!
//! # Never push twice blindly
//! A push that surely never reached Daraja (connection refused) is retried. A push whose fate is
//! unknown (a timeout after sending, a 5xx) may have put a prompt on the phone: the attempt becomes
//! `unknown`, its order stays payable, and no second push is sent for it. One push is pending per
//! phone at a time: a short-lived lock key ([`crate::keys::Keys::stk_lock`]) is taken before
//! pushing and released when the attempt's result arrives.

use std::time::Duration;

use super::settle::{load_order, settle};
use super::Event;
use crate::jobs::JobOutcome;
use crate::keys::{ORDER_RETENTION_MS, STK_LOCK_TTL_MS};
use crate::metrics::Metrics;
use crate::mpesa::refunds::RefundRequest;
use crate::mpesa::{DarajaClient, PushRefusal, StkPush, StkQueryOutcome};
use crate::msisdn::Msisdn;
use crate::orders::{AttemptState, RefundMethod, RefundState};
use crate::shop::Shop;
use crate::store::{Batch, Commit};

/// Queries made for one attempt before reconciliation gives up on it (about ten minutes).
pub const MAX_QUERIES: u32 = 20;
/// Time between queries of one attempt: the query is rate-limited in practice.
const QUERY_EVERY_MS: i64 = 30_000;
/// How long an attempt keeps trying to get its push out (refused connections, a pending prompt
/// on the phone, throttling) before it is failed and the shopper told to use the paybill.
const PUSH_PATIENCE_MS: i64 = 5 * 60_000;

/// What the STK index says about a `CheckoutRequestID`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StkIndexEntry {
    pub order: String,
    pub attempt: u32,
}

/// The payment side of the job handler: the Daraja client and where results come back.
pub struct PaymentJobs {
    pub daraja: DarajaClient,
    pub callback_url: String,
    /// The prompt-bombing limits ([`super::push_limit`]).
    pub limits: std::sync::Arc<crate::limits::Limits>,
}

/// What the pending-push lock said.
enum Gate {
    /// Ours: push.
    Go,
    /// This attempt already held it: an earlier run of the job got as far as the push.
    AlreadyOurs,
    /// Another push is pending on the phone.
    Busy,
    /// The phone had too many pushes; room again at this time.
    Limited(i64),
}

impl PaymentJobs {
    /// Sends the push of `attempt` of `number`.
    pub async fn push(
        &self,
        shop: &Shop,
        metrics: &Metrics,
        number: &str,
        attempt: u32,
    ) -> JobOutcome {
        let now = shop.clock.now_ms();
        let (order, current) = match load_attempt(shop, number, attempt).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        if current.state != AttemptState::Requested {
            return JobOutcome::Done;
        }
        let payer = current.payer.clone();
        let waited = now - current.requested_at_ms;
        if !order.status.is_payable() {
            return self
                .push_failed(
                    shop,
                    number,
                    attempt,
                    "the order is no longer payable",
                    false,
                )
                .await;
        }
        let lock_owner = format!("{number}:{attempt}");
        let limited = |until_ms: Option<i64>| {
            metrics.inc("duka_stk_push_total", &[("outcome", "limited")]);
            tracing::warn!(
                order.number = number,
                msisdn.masked = %payer,
                retry_at_ms = until_ms,
                "STK push refused by the prompt-bombing limit; the order stays payable by paybill"
            );
            Event::PushFailed {
                attempt,
                error: super::push_limit::PUSH_LIMITED.into(),
                ambiguous: false,
            }
        };
        if super::push_limit::over_order_limit(attempt, &self.limits) {
            return self.record(shop, number, limited(None)).await;
        }
        match self.take_lock(shop, &payer, &lock_owner).await {
            Ok(Gate::Go) => {}
            Ok(Gate::Limited(until_ms)) => {
                return self.record(shop, number, limited(Some(until_ms))).await;
            }
            Ok(Gate::AlreadyOurs) => {
                // An earlier run of this job took the lock and never recorded what Daraja
                // answered (the process died mid-push, or its lease ran out): the push may have
                // reached the phone, so it is not sent again (`duka soak` found the double
                // charge this used to make after a `kill -9`).
                tracing::warn!(
                    order.number = number,
                    "an earlier try of this STK push was cut off; it may have reached the phone, not pushing again"
                );
                return self.push_failed(shop, number, attempt, "an earlier try of this push was cut off before Daraja's answer was recorded", true).await;
            }
            Ok(Gate::Busy) if waited < PUSH_PATIENCE_MS => {
                tracing::info!(
                    order.number = number,
                    "another payment prompt is pending on this phone; waiting"
                );
                return JobOutcome::RetryAt(now + 15_000);
            }
            Ok(Gate::Busy) => {
                return self
                    .push_failed(
                        shop,
                        number,
                        attempt,
                        "another payment prompt stayed pending on this phone",
                        false,
                    )
                    .await;
            }
            Err(e) => return store_trouble(shop, &e),
        }

        let description = format!("Order {number}");
        let push = StkPush {
            amount: super::amount_due(&order),
            payer: &payer,
            account_reference: number,
            description: &description,
            callback_url: &self.callback_url,
        };
        match self.daraja.stk_push(&push).await {
            Ok(accepted) => {
                metrics.inc("duka_stk_push_total", &[("outcome", "accepted")]);
                tracing::info!(
                    order.number = number,
                    mpesa.checkout_request_id = %accepted.checkout_request_id,
                    msisdn.masked = %payer,
                    "STK push accepted for order {number}"
                );
                // The index first: the callback can arrive before the attempt is updated.
                let entry = StkIndexEntry {
                    order: number.to_owned(),
                    attempt,
                };
                let mut index = Batch::new();
                index.set(
                    shop.keys.stk_index(&accepted.checkout_request_id),
                    crate::store::to_json(&entry),
                    Some(ORDER_RETENTION_MS),
                );
                if let Err(e) = shop.store.commit(&index).await {
                    // The push is out; the query (which needs the attempt, not the index) can
                    // still settle it, so record the attempt regardless.
                    tracing::error!(error.message = %e, "could not index an accepted STK push");
                }
                self.record(
                    shop,
                    number,
                    Event::PushAccepted {
                        attempt,
                        checkout_request_id: accepted.checkout_request_id,
                        merchant_request_id: accepted.merchant_request_id,
                    },
                )
                .await
            }
            Err(e) if e.never_arrived() && waited < PUSH_PATIENCE_MS => {
                metrics.inc("duka_stk_push_total", &[("outcome", "retry")]);
                tracing::warn!(order.number = number, error.message = %e, "STK push did not reach Daraja; retrying");
                self.release_lock(shop, &payer).await;
                JobOutcome::RetryAt(now + 5_000)
            }
            Err(e) if e.is_ambiguous() => {
                metrics.inc("duka_stk_push_total", &[("outcome", "ambiguous")]);
                tracing::warn!(order.number = number, error.message = %e, "STK push may have reached the phone; not pushing again");
                self.push_failed(shop, number, attempt, e.to_string(), true)
                    .await
            }
            Err(e) => {
                let in_progress = matches!(
                    &e,
                    crate::mpesa::MpesaError::Daraja { error, .. }
                        if error.push_refusal() == Some(PushRefusal::TransactionInProgress)
                );
                if (in_progress || e.is_throttled()) && waited < PUSH_PATIENCE_MS {
                    metrics.inc("duka_stk_push_total", &[("outcome", "retry")]);
                    tracing::warn!(order.number = number, error.message = %e, "Daraja asked us to wait; retrying the push later");
                    self.release_lock(shop, &payer).await;
                    return JobOutcome::RetryAt(now + 30_000);
                }
                metrics.inc("duka_stk_push_total", &[("outcome", "refused")]);
                if matches!(&e, crate::mpesa::MpesaError::Daraja { error, .. } if error.push_refusal() == Some(PushRefusal::WrongCredentials))
                {
                    tracing::error!(order.number = number, error.message = %e, "Daraja refused our credentials: check MPESA_SHORTCODE and MPESA_PASSKEY");
                } else {
                    tracing::warn!(order.number = number, error.message = %e, "STK push refused");
                }
                self.release_lock(shop, &payer).await;
                self.push_failed(shop, number, attempt, e.to_string(), false)
                    .await
            }
        }
    }

    /// Asks Daraja about an attempt that has no result yet.
    pub async fn query(
        &self,
        shop: &Shop,
        metrics: &Metrics,
        number: &str,
        attempt: u32,
    ) -> JobOutcome {
        let now = shop.clock.now_ms();
        let current = match load_attempt(shop, number, attempt).await {
            Ok((_, current)) => current,
            Err(outcome) => return outcome,
        };
        let (Some(checkout_request_id), true) = (
            current.checkout_request_id.clone(),
            matches!(current.state, AttemptState::Sent | AttemptState::Unknown),
        ) else {
            return JobOutcome::Done;
        };
        if current.queries >= MAX_QUERIES {
            return JobOutcome::Done;
        }
        let result = self.daraja.stk_query(&checkout_request_id).await;
        let event = match &result {
            Ok(StkQueryOutcome::Completed(result)) => {
                metrics.inc("duka_stk_query_total", &[("outcome", "final")]);
                Event::StkQuery {
                    attempt,
                    result_code: result.result_code,
                    result_desc: result.result_desc.clone(),
                }
            }
            Ok(StkQueryOutcome::Pending) => {
                metrics.inc("duka_stk_query_total", &[("outcome", "pending")]);
                Event::QueryPending {
                    attempt,
                    max_queries: MAX_QUERIES,
                }
            }
            Err(e) => {
                metrics.inc("duka_stk_query_total", &[("outcome", "error")]);
                tracing::warn!(order.number = number, error.message = %e, "STK query failed; will query again");
                Event::QueryPending {
                    attempt,
                    max_queries: MAX_QUERIES,
                }
            }
        };
        let is_final = matches!(event, Event::StkQuery { .. });
        let outcome = self.record(shop, number, event).await;
        if is_final {
            self.release_lock(shop, &current.payer).await;
            return outcome;
        }
        if outcome != JobOutcome::Done {
            return outcome;
        }
        if current.queries + 1 >= MAX_QUERIES {
            tracing::warn!(order.number = number, "no result for an STK push after {MAX_QUERIES} queries; the order stays payable by paybill");
            JobOutcome::Done
        } else {
            let throttled = matches!(&result, Err(e) if e.is_throttled());
            JobOutcome::RetryAt(
                now + if throttled {
                    2 * QUERY_EVERY_MS
                } else {
                    QUERY_EVERY_MS
                },
            )
        }
    }

    /// Sends the request of the refund of payment `receipt` of order `number`, if it is still
    /// only requested. The request carries the refund's stable `OriginatorConversationID`, so
    /// a job run twice (a lease ran out, a restart) is refused by Daraja as a duplicate, which
    /// means the first request is in; a request whose fate is unknown is re-sent only that way.
    pub async fn refund(
        &self,
        shop: &Shop,
        metrics: &Metrics,
        number: &str,
        receipt: &str,
    ) -> JobOutcome {
        let now = shop.clock.now_ms();
        let order = match load_order(shop, number).await {
            Ok(Some(order)) => order,
            Ok(None) => return JobOutcome::Done,
            Err(e) => return store_trouble(shop, &e),
        };
        let Some(refund) = order.refunds.iter().find(|r| r.receipt == receipt) else {
            return JobOutcome::Done;
        };
        if refund.state != RefundState::Requested {
            return JobOutcome::Done;
        }
        let api = match refund.method {
            RefundMethod::Reversal => "reversal",
            RefundMethod::B2c => "b2c",
        };
        let base = self.callback_url.trim_end_matches("/stk");
        let (result_url, timeout_url) = (
            format!("{base}/{api}/result"),
            format!("{base}/{api}/timeout"),
        );
        let remarks = format!("Refund for order {number}");
        let request = RefundRequest {
            originator_conversation_id: &refund.originator_conversation_id,
            receipt,
            amount: refund.amount,
            to: &refund.to,
            remarks: &remarks,
            result_url: &result_url,
            timeout_url: &timeout_url,
        };
        let sent = match refund.method {
            RefundMethod::Reversal => self.daraja.reversal(&request).await,
            RefundMethod::B2c => self.daraja.b2c(&request).await,
        };
        let ocid = refund.originator_conversation_id.clone();
        match sent {
            Ok(accepted) => {
                metrics.inc("duka_refund_requests_total", &[("outcome", "accepted")]);
                tracing::info!(
                    order.number = number,
                    mpesa.receipt = receipt,
                    "refund request ({api}) accepted by Daraja"
                );
                self.record(
                    shop,
                    number,
                    Event::RefundAccepted {
                        originator_conversation_id: ocid,
                        conversation_id: accepted.conversation_id,
                    },
                )
                .await
            }
            Err(e) if crate::mpesa::refunds::is_duplicate(&e) => {
                metrics.inc("duka_refund_requests_total", &[("outcome", "duplicate")]);
                tracing::info!(
                    order.number = number,
                    "Daraja already has this refund request; waiting for its result"
                );
                self.record(
                    shop,
                    number,
                    Event::RefundAccepted {
                        originator_conversation_id: ocid,
                        conversation_id: String::new(),
                    },
                )
                .await
            }
            Err(e) if e.never_arrived() || e.is_ambiguous() || e.is_throttled() => {
                // Re-sent under the same OriginatorConversationID: a second arrival is refused.
                metrics.inc("duka_refund_requests_total", &[("outcome", "retry")]);
                tracing::warn!(order.number = number, error.message = %e, "refund request did not get an answer; sending it again later under the same id");
                JobOutcome::RetryAt(now + 30_000)
            }
            Err(e) => {
                metrics.inc("duka_refund_requests_total", &[("outcome", "refused")]);
                tracing::warn!(order.number = number, error.message = %e, "refund request refused");
                self.record(
                    shop,
                    number,
                    Event::RefundRefused {
                        originator_conversation_id: ocid,
                        error: e.to_string(),
                    },
                )
                .await
            }
        }
    }

    /// Opens a new attempt for "Pay again" (its push follows as its own job).
    pub async fn pay_again(&self, shop: &Shop, number: &str, payer: &str) -> JobOutcome {
        let Ok(payer) = Msisdn::parse(payer) else {
            return JobOutcome::Done;
        };
        self.record(shop, number, Event::PayAgain { payer }).await
    }

    /// Expires the order if it is still unpaid and its time is up.
    pub async fn expire(&self, shop: &Shop, number: &str) -> JobOutcome {
        match settle(shop, number, &Event::Expire, None).await {
            Ok(Some(settled)) if settled.order.status.is_payable() => {
                JobOutcome::RetryAt(settled.order.expires_at_ms)
            }
            Ok(Some(settled)) => {
                if settled.outcome.changed {
                    tracing::info!(order.number = number, "unpaid order expired");
                }
                JobOutcome::Done
            }
            Ok(None) => JobOutcome::Done,
            Err(e) => {
                tracing::warn!(error.message = %e, order.number = number, "could not expire an order; retrying");
                JobOutcome::RetryAt(shop.clock.now_ms() + 10_000)
            }
        }
    }

    /// Records that `attempt`'s push failed (`ambiguous`: it may have reached the phone).
    async fn push_failed(
        &self,
        shop: &Shop,
        number: &str,
        attempt: u32,
        error: impl Into<String>,
        ambiguous: bool,
    ) -> JobOutcome {
        let event = Event::PushFailed {
            attempt,
            error: error.into(),
            ambiguous,
        };
        self.record(shop, number, event).await
    }

    async fn record(&self, shop: &Shop, number: &str, event: Event) -> JobOutcome {
        match settle(shop, number, &event, None).await {
            Ok(_) => JobOutcome::Done,
            Err(e) => {
                tracing::warn!(error.message = %e, order.number = number, "could not record a payment step; retrying");
                JobOutcome::RetryAt(shop.clock.now_ms() + 5_000)
            }
        }
    }

    /// Takes the phone's pending-push lock (or finds it already ours) and counts the push
    /// against the phone's limits, in one guarded commit (see [`super::push_limit`]).
    async fn take_lock(
        &self,
        shop: &Shop,
        payer: &Msisdn,
        owner: &str,
    ) -> Result<Gate, crate::store::StoreError> {
        let key = shop.keys.stk_lock(payer);
        let history_key = shop.keys.push_history(payer);
        for _ in 0..5 {
            let values = shop.store.get(&[key.clone(), history_key.clone()]).await?;
            let held = values.first().cloned().flatten();
            let history_raw = values.get(1).cloned().flatten();
            match held.as_deref() {
                Some(held) if held == owner.as_bytes() => return Ok(Gate::AlreadyOurs),
                Some(_) => return Ok(Gate::Busy),
                None => {}
            }
            let history: super::push_limit::PushHistory =
                crate::store::from_json(history_raw.as_deref()).unwrap_or_default();
            let now = shop.clock.now_ms();
            let counted = history.iter().any(|(_, o)| o == owner);
            if !counted {
                if let Err(until_ms) = super::push_limit::check(&history, now, &self.limits) {
                    return Ok(Gate::Limited(until_ms));
                }
            }
            let history = super::push_limit::record(history, now, owner, &self.limits);
            let mut batch = Batch::new();
            batch
                .guard(&key, None)
                .set(&key, owner.as_bytes().to_vec(), Some(STK_LOCK_TTL_MS))
                .guard(&history_key, history_raw.as_deref())
                .set(
                    &history_key,
                    crate::store::to_json(&history),
                    Some(self.limits.push_day.window_ms as u64),
                );
            if shop.store.commit(&batch).await? == Commit::Applied {
                return Ok(Gate::Go);
            }
        }
        Ok(Gate::Busy)
    }

    /// Frees the phone for the next push (best effort: the lock expires by itself).
    pub async fn release_lock(&self, shop: &Shop, payer: &Msisdn) {
        release_lock(shop, payer).await;
    }
}

/// Frees a phone's pending-push lock (best effort: it expires by itself).
pub async fn release_lock(shop: &Shop, payer: &Msisdn) {
    let mut batch = Batch::new();
    batch.delete(shop.keys.stk_lock(payer));
    if let Err(e) = shop.store.commit(&batch).await {
        tracing::debug!(error.message = %e, "could not release an STK lock; it will expire");
    }
}

/// The order and one of its attempts, or what the job should do when either is gone.
async fn load_attempt(
    shop: &Shop,
    number: &str,
    attempt: u32,
) -> Result<(crate::orders::Order, crate::orders::PaymentAttempt), JobOutcome> {
    match load_order(shop, number).await {
        Ok(Some(order)) => {
            let current = order.attempt(attempt).cloned().ok_or(JobOutcome::Done)?;
            Ok((order, current))
        }
        Ok(None) => Err(JobOutcome::Done),
        Err(e) => Err(store_trouble(shop, &e)),
    }
}

fn store_trouble(shop: &Shop, e: &crate::store::StoreError) -> JobOutcome {
    tracing::warn!(error.message = %e, "store failed in a payment job; retrying");
    JobOutcome::RetryAt(shop.clock.now_ms() + Duration::from_secs(5).as_millis() as i64)
}
