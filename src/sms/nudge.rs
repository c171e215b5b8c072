//! The drop-off nudge: one SMS when a shopper leaves a session with a full cart.
//!
//! Africa's Talking's end-of-session notification says `Incomplete` when the shopper dropped off
//! (walked away, lost signal, timed out typing). If their cart still holds items (placing an
//! order empties it, so a full cart means no order), they get one SMS saying the cart is kept and
//! how to finish, at most one per phone per day (East Africa Time). The day is recorded in the
//! profile in the same commit that queues the message, so two notifications racing each other,
//! on any nodes, send one nudge. Only a session Duka served, for the phone it served, can
//! nudge: the notification's session id and phone must name a session record.

use super::messages;
use super::outbox::{self, MessageKind, OutboxMessage};
use crate::gateway::SessionEnd;
use crate::keys::PROFILE_TTL_MS;
use crate::menu::{Cart, Profile};
use crate::shop::Shop;
use crate::store::{from_json, to_json, Batch, Commit, StoreError};

const DAY_MS: i64 = 86_400_000;
/// East Africa Time is UTC+3 all year.
const EAT_OFFSET_MS: i64 = 3 * 3_600_000;

/// The day number (days since the epoch) in East Africa Time.
pub fn eat_day(now_ms: i64) -> i64 {
    (now_ms + EAT_OFFSET_MS).div_euclid(DAY_MS)
}

/// Queues the nudge if the session ended incomplete with items in the cart and the phone has
/// not been nudged today. Returns whether a nudge was queued.
///
/// # Errors
/// The store fails.
pub async fn nudge_after_drop_off(shop: &Shop, end: &SessionEnd) -> Result<bool, StoreError> {
    if !end.incomplete {
        return Ok(false);
    }
    let cart_key = shop.keys.cart(&end.msisdn);
    let profile_key = shop.keys.profile(&end.msisdn);
    // The session as Duka served it, for this phone: a notification for a session id Duka never
    // answered, or for another phone than the one it served, nudges no one.
    let session_key = shop.keys.session(&end.msisdn, &end.session_id);
    for _ in 0..3 {
        let values = shop
            .store
            .get(&[cart_key.clone(), profile_key.clone(), session_key.clone()])
            .await?;
        if values.get(2).cloned().flatten().is_none() {
            tracing::info!(
                msisdn.masked = %end.msisdn.masked(),
                "end of a session Duka did not serve for this phone; no nudge"
            );
            return Ok(false);
        }
        let (cart_raw, profile_raw) = (values[0].clone(), values.get(1).cloned().flatten());
        let cart: Cart = from_json(cart_raw.as_deref()).unwrap_or_default();
        let mut profile: Profile = from_json(profile_raw.as_deref()).unwrap_or_default();
        let now_ms = shop.clock.now_ms();
        let today = eat_day(now_ms);
        if cart.is_empty() || profile.nudged_on_day == Some(today) {
            return Ok(false);
        }
        profile.nudged_on_day = Some(today);
        let message = OutboxMessage::new(
            outbox::nudge_id(&end.msisdn, today),
            MessageKind::Nudge,
            end.msisdn.clone(),
            None,
            messages::nudge(&shop.catalog(), profile.lang(), &cart, &end.service_code),
            now_ms,
        );
        let mut batch = Batch::new();
        batch
            .guard(&cart_key, cart_raw.as_deref())
            .guard(&profile_key, profile_raw.as_deref())
            .set(&profile_key, to_json(&profile), Some(PROFILE_TTL_MS));
        let job = outbox::enqueue(shop, &mut batch, &message);
        if shop.store.commit(&batch).await? == Commit::Applied {
            shop.jobs.wake(job.shard());
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nudge_day_turns_at_midnight_in_nairobi_not_utc() {
        // 2026-11-24 20:59:59 UTC is 23:59:59 EAT; a second later it is the next day in Nairobi.
        let before = 1_795_553_999_000;
        assert_eq!(eat_day(before) + 1, eat_day(before + 1_000));
    }
}
