//! The shop's daily SMS ceiling: at most `DUKA_SMS_DAILY_LIMIT` messages claimed for sending per
//! East Africa Time day, across every node.
//!
//! One counter per EAT day in one Redis slot (`{sms-day}`), raised by a guarded write just
//! before a message is claimed (`pending` → `sending`), so a stranger who finds a way to queue
//! texts cannot run up an unbounded bill. Receipts come first: drop-off nudges and payment
//! notices stop at 90% of the ceiling, receipts may use all of it. Over it, a message stays
//! `pending` and its job comes back every ten minutes (so raising the limit takes effect soon),
//! and `duka_sms_ceiling_reached_total` counts each hold-back, for an alert. A limit of 0 sends
//! nothing.

use super::nudge::eat_day;
use super::outbox::MessageKind;
use crate::shop::Shop;
use crate::store::{Batch, Commit, StoreError};

/// How often a held-back message looks again.
pub const HOLD_MS: i64 = 10 * 60_000;
/// The counter outlives its day by a day, for the operator.
const COUNTER_TTL_MS: u64 = 2 * 86_400_000;

/// The most messages of `kind` that may be claimed on one day under `limit`.
pub fn allowance(kind: MessageKind, limit: u64) -> u64 {
    match kind {
        // A refund notice tells a shopper their money is back: as important as a receipt.
        MessageKind::Receipt | MessageKind::Refund => limit,
        MessageKind::PaymentFailed | MessageKind::Nudge => limit - limit / 10,
    }
}

/// What [`take`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Counted: send it.
    Yes,
    /// Today's allowance for this kind is used up: hold it back ([`HOLD_MS`]).
    Full,
    /// Other messages kept winning the race for the counter: try again in a moment. (Counting
    /// this as `Full` once held a receipt back for ten minutes under a burst of payments.)
    Busy,
}

/// Counts one more message of `kind` against today's ceiling; nothing is counted unless the
/// answer is [`Taken::Yes`].
///
/// # Errors
/// The store fails.
pub async fn take(shop: &Shop, kind: MessageKind, limit: u64) -> Result<Taken, StoreError> {
    let key = shop.keys.sms_day_count(eat_day(shop.clock.now_ms()));
    let allowed = allowance(kind, limit);
    for _ in 0..10 {
        let raw = shop.store.get_one(&key).await?;
        let used: u64 = raw
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if used >= allowed {
            return Ok(Taken::Full);
        }
        let mut batch = Batch::new();
        batch.guard(&key, raw.as_deref()).set(
            &key,
            (used + 1).to_string().into_bytes(),
            Some(COUNTER_TTL_MS),
        );
        if shop.store.commit(&batch).await? == Commit::Applied {
            return Ok(Taken::Yes);
        }
    }
    // Heavy contention: never risk going over; the job comes back in a moment.
    Ok(Taken::Busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_keep_a_tenth_of_the_ceiling_for_themselves() {
        assert_eq!(allowance(MessageKind::Receipt, 5000), 5000);
        assert_eq!(allowance(MessageKind::Nudge, 5000), 4500);
        assert_eq!(allowance(MessageKind::PaymentFailed, 0), 0);
    }
}
