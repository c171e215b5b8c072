//! Prompt bombing: how many STK pushes (PIN prompts) one phone, and one order, may receive.
//!
//! Anyone who can reach a USSD route can claim any phone number and check out again and again,
//! and each checkout (or "Pay again") makes Daraja put a PIN prompt on the victim's phone. So the
//! push job, the only code that pushes, refuses a push when the payer already had
//! `DUKA_PUSH_LIMIT_SHORT` pushes in the last `DUKA_PUSH_WINDOW_SHORT_S` (default 3 in 10 min) or
//! `DUKA_PUSH_LIMIT_DAY` in the last 24 h (default 10), sliding windows, or when the order already
//! had `DUKA_PUSH_LIMIT_ORDER` attempts (default 3: the first push and two "Pay again").
//!
//! The payer's recent push times live in one key in the payer's shard (`pushes:<phone>`), read
//! with the pending-push lock and written in the same guarded commit that takes the lock, so two
//! nodes racing cannot both push past the limit. Each attempt counts once, however often its
//! push is retried. A refused push fails its attempt without a failure SMS (else the limit would
//! turn prompt bombing into SMS bombing); the order stays payable by paybill until it expires.

use crate::limits::{Limits, Window};

/// The error recorded on an attempt refused by the limit; the settle step sends no SMS for it.
pub const PUSH_LIMITED: &str = "too many payment prompts to this phone: pay by paybill";

/// The pushes a phone received: when, and for which `order:attempt`.
pub type PushHistory = Vec<(i64, String)>;

/// Whether one more push may go to a phone with this history; else when the earliest one may.
pub fn check(history: &PushHistory, now_ms: i64, limits: &Limits) -> Result<(), i64> {
    let mut retry_at = None::<i64>;
    for window in [limits.push_short, limits.push_day] {
        if let Some(at) = blocked_until(history, now_ms, window) {
            retry_at = Some(retry_at.map_or(at, |r| r.max(at)));
        }
    }
    retry_at.map_or(Ok(()), Err)
}

/// When the window next has room, if it is full now.
fn blocked_until(history: &PushHistory, now_ms: i64, window: Window) -> Option<i64> {
    let mut inside: Vec<i64> = history
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at > now_ms - window.window_ms)
        .collect();
    if inside.len() < window.max as usize {
        return None;
    }
    inside.sort_unstable();
    // Room comes back when the oldest push that keeps the window full leaves it.
    Some(inside[inside.len() - window.max as usize] + window.window_ms)
}

/// The history with this push added and anything older than a day dropped.
pub fn record(mut history: PushHistory, now_ms: i64, owner: &str, limits: &Limits) -> PushHistory {
    let keep_from = now_ms - limits.push_day.window_ms.max(limits.push_short.window_ms);
    history.retain(|(at, _)| *at > keep_from);
    if !history.iter().any(|(_, o)| o == owner) {
        history.push((now_ms, owner.to_owned()));
    }
    history
}

/// Whether this attempt of an order is over the per-order limit.
pub fn over_order_limit(attempt: u32, limits: &Limits) -> bool {
    attempt > limits.push_per_order
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn three_in_ten_minutes_then_wait_for_the_oldest_to_leave() {
        let limits = Limits::default();
        let mut history = PushHistory::new();
        for (i, at) in [0, 2 * MIN, 4 * MIN].into_iter().enumerate() {
            assert!(check(&history, at, &limits).is_ok());
            history = record(history, at, &format!("o:{i}"), &limits);
        }
        assert_eq!(check(&history, 5 * MIN, &limits), Err(10 * MIN));
        assert!(check(&history, 10 * MIN + 1, &limits).is_ok());
    }

    #[test]
    fn ten_a_day_across_short_windows() {
        let limits = Limits::default();
        let mut history = PushHistory::new();
        for i in 0..10 {
            let at = i * 20 * MIN;
            assert!(check(&history, at, &limits).is_ok(), "push {i}");
            history = record(history, at, &format!("o:{i}"), &limits);
        }
        assert_eq!(check(&history, 200 * MIN, &limits), Err(24 * 60 * MIN));
    }

    #[test]
    fn a_retried_push_counts_once_and_old_ones_are_dropped() {
        let limits = Limits::default();
        let history = record(PushHistory::new(), 0, "o:1", &limits);
        let history = record(history, MIN, "o:1", &limits);
        assert_eq!(history.len(), 1);
        let history = record(history, 25 * 60 * MIN, "o:2", &limits);
        assert_eq!(history, vec![(25 * 60 * MIN, "o:2".to_owned())]);
        assert!(over_order_limit(4, &limits) && !over_order_limit(3, &limits));
    }
}
