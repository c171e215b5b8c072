//! Applying a payment event to a stored order: read, [`apply`], commit, guarded.
//!
//! The commit writes, all or nothing: the order; the shopper's profile (its summary of the order,
//! which My orders shows); the receipt or the failure notice in the outbox, with its job; and the
//! raw callback in the order's audit trail. All of these live in the order's shard (see
//! [`crate::keys`]), which is what lets one Lua script on one Redis Cluster slot do it atomically.
//! A conflict (another event for the same order committed first) means: read again, apply again.

use serde::{Deserialize, Serialize};

use super::{apply, Event, Outcome};
use crate::jobs::{Job, JobQueue};
use crate::keys::{ORDER_RETENTION_MS, PROFILE_TTL_MS};
use crate::menu::Profile;
use crate::orders::Order;
use crate::shop::Shop;
use crate::sms::messages;
use crate::sms::outbox::{self, MessageKind, OutboxMessage};
use crate::store::{from_json, to_json, Batch, Commit, StoreError};

/// How many times an event is re-applied after losing a race. Callbacks for one order rarely
/// race, but a burst of duplicates does; each retry waits a little longer, with jitter.
const MAX_CONFLICTS: u32 = 16;
/// How many raw callbacks the audit trail of one order keeps.
const MAX_AUDIT_ENTRIES: usize = 50;

/// One raw callback or query answer, kept for audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// `stk_callback`, `stk_query`, `c2b_validation`, `c2b_confirmation`.
    pub kind: String,
    /// The body as received (JSON text).
    pub body: String,
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the store failed while settling a payment")]
    Store(#[from] StoreError),
    #[error("the order kept changing while settling a payment")]
    Contended,
}

/// The order after the event, and what the event did.
#[derive(Clone, Debug)]
pub struct Settled {
    pub order: Order,
    pub outcome: Outcome,
}

/// Reads an order (`None` when there is no such order).
///
/// # Errors
/// The store fails.
pub async fn load_order(shop: &Shop, number: &str) -> Result<Option<Order>, StoreError> {
    let raw = shop.store.get_one(&shop.keys.order(number)).await?;
    Ok(from_json(raw.as_deref()))
}

/// Applies `event` to the order `number` and commits the result. `Ok(None)`: no such order.
///
/// # Errors
/// [`SettleError`] when the store fails or the order is contended past reason.
pub async fn settle(
    shop: &Shop,
    number: &str,
    event: &Event,
    audit: Option<AuditEntry>,
) -> Result<Option<Settled>, SettleError> {
    let order_key = shop.keys.order(number);
    let audit_key = shop.keys.audit(number);
    for _ in 0..MAX_CONFLICTS {
        let values = shop
            .store
            .get(&[order_key.clone(), audit_key.clone()])
            .await?;
        let (order_raw, audit_raw) = (values[0].clone(), values.get(1).cloned().flatten());
        let Some(stored) = from_json::<Order>(order_raw.as_deref()) else {
            return Ok(None);
        };
        let profile_key = shop.keys.profile(&stored.msisdn);
        let profile_raw = shop.store.get_one(&profile_key).await?;

        let now_ms = shop.clock.now_ms();
        let mut order = stored.clone();
        let outcome = apply(&mut order, event, now_ms);
        if !outcome.changed && audit.is_none() {
            return Ok(Some(Settled { order, outcome }));
        }

        let mut batch = Batch::new();
        batch
            .guard(&order_key, order_raw.as_deref())
            .guard(&audit_key, audit_raw.as_deref())
            .guard(&profile_key, profile_raw.as_deref());
        let keep_ms = keep_ms(&order, now_ms);
        if let Some(entry) = &audit {
            let mut trail: Vec<AuditEntry> = from_json(audit_raw.as_deref()).unwrap_or_default();
            trail.push(entry.clone());
            if trail.len() > MAX_AUDIT_ENTRIES {
                trail.drain(..trail.len() - MAX_AUDIT_ENTRIES);
            }
            batch.set(&audit_key, to_json(&trail), Some(keep_ms));
        }

        let mut jobs = Vec::new();
        if outcome.became_paid {
            let message = OutboxMessage::new(
                outbox::receipt_id(number),
                MessageKind::Receipt,
                order.msisdn.clone(),
                Some(number.to_owned()),
                messages::receipt(&shop.catalog(), &order),
                now_ms,
            );
            order.messages.push(message.id.clone());
            jobs.push(outbox::enqueue(shop, &mut batch, &message));
        }
        // An attempt refused by the prompt-bombing limit sends no SMS: see `push_limit`.
        let limited = |attempt: u32| {
            order.attempt(attempt).and_then(|a| a.error.as_deref())
                == Some(super::push_limit::PUSH_LIMITED)
        };
        if let Some(attempt) = outcome.attempt_failed.filter(|a| !limited(*a)) {
            let result_code = order.attempt(attempt).and_then(|a| a.result_code);
            let message = OutboxMessage::new(
                outbox::failure_notice_id(number, attempt),
                MessageKind::PaymentFailed,
                order.msisdn.clone(),
                Some(number.to_owned()),
                messages::payment_failed(
                    &shop.catalog(),
                    &order,
                    result_code,
                    shop.settings.payee(),
                ),
                now_ms,
            );
            order.messages.push(message.id.clone());
            jobs.push(outbox::enqueue(shop, &mut batch, &message));
        }
        if let Some(receipt) = &outcome.refund_requested {
            let job = Job::Refund {
                order: number.to_owned(),
                receipt: receipt.clone(),
            };
            JobQueue::schedule(shop, &mut batch, &job, now_ms);
            jobs.push(job);
        }
        if let Some(refund) = outcome
            .refund_done
            .as_ref()
            .and_then(|receipt| order.refunds.iter().find(|r| &r.receipt == receipt))
        {
            let message = OutboxMessage::new(
                outbox::refund_notice_id(number, &refund.receipt),
                MessageKind::Refund,
                order.msisdn.clone(),
                Some(number.to_owned()),
                messages::refund(&shop.catalog(), &order, refund.amount, &refund.receipt),
                now_ms,
            );
            order.messages.push(message.id.clone());
            jobs.push(outbox::enqueue(shop, &mut batch, &message));
        }
        if let Some(receipt) = &outcome.folded {
            let job = Job::CheckFold {
                order: number.to_owned(),
                receipt: receipt.clone(),
            };
            JobQueue::schedule(shop, &mut batch, &job, now_ms);
            jobs.push(job);
        }
        if let Some(attempt) = outcome.new_attempt {
            let job = Job::Push {
                order: number.to_owned(),
                attempt,
            };
            JobQueue::schedule(shop, &mut batch, &job, now_ms);
            jobs.push(job);
        }
        if let Some(attempt) = outcome.push_accepted {
            let job = Job::Query {
                order: number.to_owned(),
                attempt,
            };
            JobQueue::schedule(
                shop,
                &mut batch,
                &job,
                now_ms + shop.settings.query_after_ms,
            );
        }
        batch.set(&order_key, to_json(&order), Some(keep_ms));
        if order.status != stored.status {
            let mut profile: Profile = from_json(profile_raw.as_deref()).unwrap_or_default();
            if let Some(summary) = profile.orders.iter_mut().find(|s| s.number == order.number) {
                summary.status = order.status;
                batch.set(&profile_key, to_json(&profile), Some(PROFILE_TTL_MS));
            }
        }

        match shop.store.commit(&batch).await? {
            Commit::Applied => {
                for job in jobs {
                    shop.jobs.wake(job.shard());
                }
                return Ok(Some(Settled { order, outcome }));
            }
            Commit::Conflict => continue,
        }
    }
    Err(SettleError::Contended)
}

/// How long an order (and its trail) is kept from now: until it stops being payable, plus the
/// retention period for support and audit.
pub fn keep_ms(order: &Order, now_ms: i64) -> u64 {
    let payable_for = (order.expires_at_ms - now_ms).max(0) as u64;
    payable_for + ORDER_RETENTION_MS
}
