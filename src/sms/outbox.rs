//! The durable outbox: every SMS Duka owes a shopper, until it is delivered or given up on.
//!
//! A message is written in the same atomic commit as the event that calls for it (the order
//! becoming paid writes its receipt), with a [`Job::Sms`] due at once, so a crash between "paid"
//! and "queued" cannot happen. Its id says what it is for and makes it unique:
//! `<order>.r` is the one receipt of an order, `<order>.f<n>` the notice for failed attempt `n`,
//! `<msisdn>.n<day>` the one drop-off nudge of a day.
//!
//! # At most once
//! The worker moves a message `pending → sending` in a guarded commit *before* calling the SMS
//! API, so only one worker on one node can send it. What happens next:
//! - accepted (a `messageId` comes back): `sent`; delivery reports then move it forward;
//! - refused for good (invalid number, blacklisted): `failed` with the reason, never retried;
//! - refused for now (5xx, a per-recipient 500/501, nothing sent): back to `pending`, due again
//!   after an exponential backoff with jitter, up to [`MAX_ATTEMPTS`];
//! - an account problem (insufficient balance, a bad sender id, bad credentials): back to
//!   `pending` and retried every [`PAUSE_MS`] (the outbox pauses until someone tops up), logged as
//!   an error;
//! - **ambiguous** (a read timeout after the request went out, or a worker that died while
//!   `sending`): `uncertain`. Africa's Talking takes no idempotency key, so a resend could
//!   deliver a second copy; Duka does not resend. A delivery report for that phone with an id we
//!   never saw, arriving soon after, settles it as `sent`. Uncertain messages are counted in the
//!   metrics and shown by `duka order`.

use serde::{Deserialize, Serialize};

use crate::jobs::{Job, JobQueue};
use crate::keys::ORDER_RETENTION_MS;
use crate::msisdn::Msisdn;
use crate::shop::Shop;
use crate::store::Batch;

/// Give up on a message after this many retryable failures (about a day of backoff).
pub const MAX_ATTEMPTS: u32 = 16;
/// How long the outbox waits before trying again after an account-level problem.
pub const PAUSE_MS: i64 = 5 * 60_000;
/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 2_000;
const MAX_BACKOFF_MS: i64 = 2 * 3_600_000;

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Receipt,
    PaymentFailed,
    Nudge,
    /// Money given back for a payment.
    Refund,
}

/// Where a message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    Pending,
    /// A worker is calling the API right now.
    Sending,
    /// Africa's Talking accepted it.
    Sent,
    /// Refused for good, or given up on.
    Failed,
    /// It may or may not have gone out; never resent automatically.
    Uncertain,
}

/// One outbox message, stored under [`crate::keys::Keys::message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: MessageKind,
    pub to: Msisdn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The text, rendered when the message was queued.
    pub text: String,
    pub status: SendStatus,
    #[serde(default)]
    pub attempts: u32,
    /// Africa's Talking's `messageId`, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why it failed (a status from the API, or a delivery report's `failureReason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The latest delivery status applied (`Sent`, `Submitted`, `Buffered`, `Success`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Delivery reports received, raw, newest last (at most [`OutboxMessage::MAX_REPORTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl OutboxMessage {
    pub const MAX_REPORTS: usize = 10;

    pub fn new(
        id: String,
        kind: MessageKind,
        to: Msisdn,
        order: Option<String>,
        text: String,
        now_ms: i64,
    ) -> Self {
        Self {
            id,
            kind,
            to,
            order,
            text,
            status: SendStatus::Pending,
            attempts: 0,
            message_id: None,
            failure_reason: None,
            delivery: None,
            reports: Vec::new(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }
}

/// The id of an order's receipt.
pub fn receipt_id(order: &str) -> String {
    format!("{order}.r")
}

/// The id of the notice that the payment `receipt` was refunded.
pub fn refund_notice_id(order: &str, receipt: &str) -> String {
    format!("{order}.x{receipt}")
}

/// The id of the notice for a failed payment attempt.
pub fn failure_notice_id(order: &str, attempt: u32) -> String {
    format!("{order}.f{attempt}")
}

/// The id of a phone's drop-off nudge on a day (days since the epoch).
pub fn nudge_id(msisdn: &Msisdn, day: i64) -> String {
    format!("{}.n{day}", msisdn.digits())
}

/// Adds the message and its delivery job to `batch`. Wake the shard after the commit.
pub fn enqueue(shop: &Shop, batch: &mut Batch, message: &OutboxMessage) -> Job {
    let key = shop.keys.message(&message.id);
    batch.set(
        key,
        crate::store::to_json(message),
        Some(ORDER_RETENTION_MS),
    );
    let job = Job::Sms {
        message: message.id.clone(),
    };
    JobQueue::schedule(shop, batch, &job, message.created_at_ms);
    job
}

/// When to try again after `attempts` retryable failures: exponential, with up to 25% jitter
/// so a recovering API is not hit by every node at the same instant.
pub fn backoff_ms(attempts: u32, jitter: u64) -> i64 {
    let exponent = attempts.saturating_sub(1).min(20);
    let base = (FIRST_BACKOFF_MS << exponent).min(MAX_BACKOFF_MS);
    base + (jitter % (base as u64 / 4 + 1)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_with_bounded_jitter() {
        assert_eq!(backoff_ms(1, 0), 2_000);
        assert_eq!(backoff_ms(2, 0), 4_000);
        assert_eq!(backoff_ms(3, 0), 8_000);
        assert_eq!(backoff_ms(30, 0), MAX_BACKOFF_MS);
        for jitter in [1, 77, 499, 500, u64::MAX] {
            let with_jitter = backoff_ms(1, jitter);
            assert!((2_000..=2_500).contains(&with_jitter), "{with_jitter}");
        }
    }

    #[test]
    fn message_ids_place_the_message_with_its_owner() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        assert_eq!(receipt_id("D7K2Q9"), "D7K2Q9.r");
        assert_eq!(failure_notice_id("D7K2Q9", 2), "D7K2Q9.f2");
        assert_eq!(nudge_id(&msisdn, 20_000), "254712345678.n20000");
        assert_eq!(
            crate::jobs::message_owner("254712345678.n20000"),
            "254712345678"
        );
    }
}
