//! The payment state machine: what each M-Pesa event does to an order.
//!
//! Money arrives by three roads, in any order, any number of times: the STK callback, an STK
//! query made by reconciliation, and the paybill (C2B) confirmation. [`apply`] is the one place
//! that decides what an event means for an order; it is pure, so every race is a unit test.
//! [`settle`](self::settle::settle) reads the order, applies the event and commits the result
//! guarded on what it read, so when a callback, a query and a confirmation race, each is applied
//! to the state the previous one left: exactly one of them makes the order paid.
//!
//! Rules (from `reference/mpesa-daraja.md`):
//! - A paid order never goes back. Money for an order already paid is recorded and flagged
//!   [`OrderFlag::Overpaid`] for a refund, never dropped and never counted twice.
//! - Payments are keyed by M-Pesa receipt (`MpesaReceiptNumber` = `TransID`), so the same payment
//!   seen by the callback and by the paybill confirmation counts once. An STK query proves a
//!   payment without a receipt; a later callback for that attempt, or a paybill confirmation of
//!   the same amount (M-Pesa confirms STK payments to a paybill through C2B too), fills it in.
//! - A success callback whose amount is not the order's whole-shilling total, or whose phone is
//!   not the payer's, is recorded as a mismatch and does not pay the order.
//! - A failed attempt never closes the order: it stays payable by a new push or the paybill.

pub mod callbacks;
pub mod find;
pub mod push_limit;
pub mod refunds;
pub mod settle;
pub mod worker;

use crate::money::Kes;
use crate::orders::{AttemptState, Order, OrderFlag, OrderStatus, Payment, PaymentSource};

/// How long after a push a new one to the same order may be sent ("Pay again").
pub const PROMPT_LIFETIME_MS: i64 = 120_000;

/// Something M-Pesa told us about an order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The STK callback of an attempt.
    StkCallback {
        attempt: u32,
        result_code: i64,
        result_desc: String,
        /// Present on success: what the callback metadata says was paid.
        paid: Option<StkPaid>,
    },
    /// An STK query answered with a final result (`0` proves payment, with no receipt).
    StkQuery {
        attempt: u32,
        result_code: i64,
        result_desc: String,
    },
    /// A paybill confirmation for this order.
    Paybill { trans_id: String, amount: Kes },
    /// What M-Pesa's transaction status says of a paybill payment `trans_id` that was counted
    /// as the C2B echo of a receipt-less STK payment ([`Outcome::folded`]): `by_stk`, it was
    /// (one payment); otherwise the shopper typed a second payment, which is counted apart.
    FoldChecked {
        trans_id: String,
        amount: Kes,
        by_stk: bool,
    },
    /// The order's payable time is over.
    Expire,
    /// Daraja accepted the push of an attempt: its result will come by callback or query.
    PushAccepted {
        attempt: u32,
        checkout_request_id: String,
        merchant_request_id: String,
    },
    /// The push of an attempt failed. `ambiguous`: it may have reached the phone (a timeout or a
    /// 5xx), so the attempt is unknown rather than failed, and is never pushed again blindly.
    PushFailed {
        attempt: u32,
        error: String,
        ambiguous: bool,
    },
    /// An STK query said "still being processed" (or could not be made).
    QueryPending { attempt: u32, max_queries: u32 },
    /// The shopper asked to pay again, from `payer`.
    PayAgain { payer: crate::msisdn::Msisdn },
    /// An operator approved a refund (see [`refunds`]); `None`: all that is refundable.
    RefundRequested { amount: Option<Kes> },
    /// Daraja accepted the refund request with this `OriginatorConversationID`.
    RefundAccepted {
        originator_conversation_id: String,
        conversation_id: String,
    },
    /// Daraja refused the refund request outright.
    RefundRefused {
        originator_conversation_id: String,
        error: String,
    },
    /// The refund's result callback.
    RefundResult {
        originator_conversation_id: String,
        result_code: i64,
        result_desc: String,
        transaction_id: Option<String>,
    },
    /// The refund's queue timeout callback.
    RefundTimedOut { originator_conversation_id: String },
}

/// The metadata of a successful STK callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StkPaid {
    pub amount: Kes,
    pub receipt: String,
    /// The payer's phone as M-Pesa reports it (`2547…`), when present.
    pub phone: Option<String>,
}

/// What applying an event did, for the caller to act on (messages, logs, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The order changed and must be written.
    pub changed: bool,
    /// The order became paid with this event: the receipt SMS is due.
    pub became_paid: bool,
    /// This attempt failed with this event: the "payment not completed" SMS is due.
    pub attempt_failed: Option<u32>,
    /// The event repeated one already applied (a duplicate callback or confirmation).
    pub duplicate: bool,
    /// Flags this event added.
    pub flagged: Vec<OrderFlag>,
    /// A new STK attempt was opened: its push is due.
    pub new_attempt: Option<u32>,
    /// Daraja accepted a push: reconciliation should query it if no callback comes.
    pub push_accepted: Option<u32>,
    /// A refund of the payment with this receipt was approved: its request is due.
    pub refund_requested: Option<String>,
    /// The refund of the payment with this receipt is done: the refund SMS is due.
    pub refund_done: Option<String>,
    /// The refund asked for was refused (nothing changed).
    pub refund_refused: Option<refunds::RefundRefusal>,
    /// A paybill payment with this receipt was taken for the C2B echo of a receipt-less
    /// (query-proven) STK payment of the same amount: M-Pesa is asked which it was.
    pub folded: Option<String>,
}

/// The amount M-Pesa is asked for, and must report, for an order.
pub fn amount_due(order: &Order) -> Kes {
    order
        .total
        .to_mpesa_whole_shillings()
        .map_or(order.total, |whole| Kes::whole(i64::from(whole)))
}

/// Applies one event to an order. Pure: see the module docs for the rules.
pub fn apply(order: &mut Order, event: &Event, now_ms: i64) -> Outcome {
    let mut outcome = Outcome::default();
    match event {
        Event::RefundRequested { amount } => {
            if let Err(refusal) = refunds::request(order, *amount, now_ms, &mut outcome) {
                outcome.refund_refused = Some(refusal);
            }
        }
        Event::RefundAccepted {
            originator_conversation_id,
            conversation_id,
        } => refunds::accepted(
            order,
            originator_conversation_id,
            conversation_id,
            now_ms,
            &mut outcome,
        ),
        Event::RefundRefused {
            originator_conversation_id,
            error,
        } => refunds::refused(
            order,
            originator_conversation_id,
            error,
            now_ms,
            &mut outcome,
        ),
        Event::RefundResult {
            originator_conversation_id,
            result_code,
            result_desc,
            transaction_id,
        } => refunds::finished(
            order,
            originator_conversation_id,
            Some((*result_code, result_desc, transaction_id.as_deref())),
            now_ms,
            &mut outcome,
        ),
        Event::RefundTimedOut {
            originator_conversation_id,
        } => refunds::finished(
            order,
            originator_conversation_id,
            None,
            now_ms,
            &mut outcome,
        ),
        Event::StkCallback {
            attempt,
            result_code,
            result_desc,
            paid,
        } => {
            let due = amount_due(order);
            let Some(current) = order.attempt_mut(*attempt) else {
                return outcome;
            };
            current.callbacks += 1;
            outcome.changed = true;
            match (result_code, paid) {
                (0, Some(paid)) => {
                    let amount_ok = paid.amount.is_whole() && paid.amount == due;
                    let phone_ok = paid
                        .phone
                        .as_deref()
                        .is_none_or(|p| p == current.payer.digits());
                    if !(amount_ok && phone_ok) {
                        if current.is_open() {
                            current.state = AttemptState::Failed;
                            current.result_code = Some(0);
                            current.error = Some(if amount_ok {
                                "success callback from another phone".to_owned()
                            } else {
                                format!("success callback for KES {} instead of {due}", paid.amount)
                            });
                            current.updated_at_ms = now_ms;
                        }
                        add_flag(order, OrderFlag::Mismatch, &mut outcome);
                        return outcome;
                    }
                    close_attempt(
                        order,
                        *attempt,
                        AttemptState::Succeeded,
                        0,
                        result_desc,
                        now_ms,
                    );
                    receive(
                        order,
                        Payment {
                            receipt: Some(paid.receipt.clone()),
                            amount: paid.amount,
                            source: PaymentSource::Stk,
                            at_ms: now_ms,
                            attempt: Some(*attempt),
                        },
                        &mut outcome,
                    );
                }
                (0, None) => {
                    // Success without metadata: not proof of an amount. Leave it to the query.
                    current.result_desc = Some(result_desc.clone());
                    current.updated_at_ms = now_ms;
                }
                (code, _) => {
                    fail_attempt(order, *attempt, *code, result_desc, now_ms, &mut outcome)
                }
            }
        }
        Event::StkQuery {
            attempt,
            result_code,
            result_desc,
        } => {
            let Some(current) = order.attempt(*attempt) else {
                return outcome;
            };
            if !current.is_open() {
                // The callback got here first; the query adds nothing.
                outcome.duplicate = true;
                return outcome;
            }
            outcome.changed = true;
            if *result_code == 0 {
                close_attempt(
                    order,
                    *attempt,
                    AttemptState::Succeeded,
                    0,
                    result_desc,
                    now_ms,
                );
                let amount = amount_due(order);
                receive(
                    order,
                    Payment {
                        receipt: None,
                        amount,
                        source: PaymentSource::StkQuery,
                        at_ms: now_ms,
                        attempt: Some(*attempt),
                    },
                    &mut outcome,
                );
            } else {
                fail_attempt(
                    order,
                    *attempt,
                    *result_code,
                    result_desc,
                    now_ms,
                    &mut outcome,
                );
            }
        }
        Event::Paybill { trans_id, amount } => {
            if order
                .payments
                .iter()
                .any(|p| p.receipt.as_deref() == Some(trans_id.as_str()))
            {
                outcome.duplicate = true;
                return outcome;
            }
            outcome.changed = true;
            let payment = Payment {
                receipt: Some(trans_id.clone()),
                amount: *amount,
                source: PaymentSource::Paybill,
                at_ms: now_ms,
                attempt: None,
            };
            if order.status.is_payable() && *amount < amount_due(order) {
                order.payments.push(payment);
                add_flag(order, OrderFlag::Underpaid, &mut outcome);
            } else {
                let overpays = order.status.is_payable() && *amount > amount_due(order);
                receive(order, payment, &mut outcome);
                if overpays {
                    add_flag(order, OrderFlag::Overpaid, &mut outcome);
                }
            }
        }
        Event::FoldChecked {
            trans_id,
            amount,
            by_stk,
        } => unfold(order, trans_id, *amount, *by_stk, &mut outcome),
        Event::PushAccepted {
            attempt,
            checkout_request_id,
            merchant_request_id,
        } => {
            if let Some(current) = order.attempt_mut(*attempt) {
                if current.state == AttemptState::Requested {
                    current.state = AttemptState::Sent;
                    current.checkout_request_id = Some(checkout_request_id.clone());
                    current.merchant_request_id = Some(merchant_request_id.clone());
                    current.updated_at_ms = now_ms;
                    outcome.changed = true;
                    outcome.push_accepted = Some(*attempt);
                }
            }
        }
        Event::PushFailed {
            attempt,
            error,
            ambiguous,
        } => {
            let Some(current) = order.attempt_mut(*attempt) else {
                return outcome;
            };
            if current.state != AttemptState::Requested {
                return outcome;
            }
            current.error = Some(error.clone());
            current.updated_at_ms = now_ms;
            outcome.changed = true;
            if *ambiguous {
                current.state = AttemptState::Unknown;
            } else {
                fail_attempt(
                    order,
                    *attempt,
                    -1,
                    "the payment prompt could not be sent",
                    now_ms,
                    &mut outcome,
                );
                if let Some(current) = order.attempt_mut(*attempt) {
                    current.result_code = None;
                }
            }
        }
        Event::QueryPending {
            attempt,
            max_queries,
        } => {
            if let Some(current) = order.attempt_mut(*attempt) {
                if matches!(current.state, AttemptState::Sent | AttemptState::Unknown) {
                    current.queries += 1;
                    if current.queries >= *max_queries {
                        // Reconciliation gives up: the order stays payable by paybill until it
                        // expires, and a late callback can still settle the attempt.
                        current.state = AttemptState::Unknown;
                    }
                    current.updated_at_ms = now_ms;
                    outcome.changed = true;
                }
            }
        }
        Event::PayAgain { payer } => {
            // A prompt lives about a minute on the phone; one younger than two minutes may still
            // be answered, and a second push to the same phone would only be refused.
            let recent_open = order.attempts.iter().any(|a| {
                matches!(a.state, AttemptState::Requested | AttemptState::Sent)
                    && now_ms - a.requested_at_ms < PROMPT_LIFETIME_MS
            });
            if order.status.is_payable() && !recent_open {
                let n = order.attempts.iter().map(|a| a.n).max().unwrap_or(0) + 1;
                order
                    .attempts
                    .push(crate::orders::PaymentAttempt::requested(
                        n,
                        payer.clone(),
                        now_ms,
                    ));
                order.status = OrderStatus::AwaitingPayment;
                outcome.changed = true;
                outcome.new_attempt = Some(n);
            }
        }
        Event::Expire => {
            if order.status.is_payable() && now_ms >= order.expires_at_ms {
                order.status = OrderStatus::Expired;
                for attempt in &mut order.attempts {
                    if attempt.is_open() {
                        attempt.state = AttemptState::Unknown;
                        attempt.updated_at_ms = now_ms;
                    }
                }
                outcome.changed = true;
            }
        }
    }
    outcome
}

/// Money arrived: pays a payable order, fills in a receipt an STK query could not give, or flags
/// the order for a refund or a review.
fn receive(order: &mut Order, payment: Payment, outcome: &mut Outcome) {
    if let Some(counted) = order.payments.iter_mut().find(|p| same_money(p, &payment)) {
        let by_receipt_or_attempt = (counted.receipt.is_some()
            && counted.receipt == payment.receipt)
            || (counted.attempt.is_some() && counted.attempt == payment.attempt);
        // Link what the second sighting knows and the first did not.
        if counted.receipt.is_none() {
            counted.receipt.clone_from(&payment.receipt);
        }
        if counted.attempt.is_none() {
            counted.attempt = payment.attempt;
        }
        if !by_receipt_or_attempt {
            outcome.folded.clone_from(&counted.receipt);
        }
        outcome.duplicate = true;
        return;
    }
    match order.status {
        OrderStatus::AwaitingPayment | OrderStatus::Failed => {
            order.status = OrderStatus::Paid;
            order.paid_at_ms = Some(payment.at_ms);
            order.payments.push(payment);
            outcome.became_paid = true;
        }
        OrderStatus::Paid => {
            order.payments.push(payment);
            add_flag(order, OrderFlag::Overpaid, outcome);
        }
        OrderStatus::Expired => {
            order.payments.push(payment);
            add_flag(order, OrderFlag::PaidAfterExpiry, outcome);
        }
    }
}

/// M-Pesa said whether the folded paybill payment `trans_id` was the STK payment's echo. If it
/// was not, the shopper paid twice: the two are counted apart and the order flagged.
fn unfold(order: &mut Order, trans_id: &str, amount: Kes, by_stk: bool, outcome: &mut Outcome) {
    if by_stk {
        outcome.duplicate = true;
        return;
    }
    let Some(at) = order.payments.iter().position(|p| {
        p.receipt.as_deref() == Some(trans_id)
            && (p.source == PaymentSource::StkQuery || p.attempt.is_some())
            && p.amount == amount
    }) else {
        outcome.duplicate = true;
        return;
    };
    let folded = &mut order.payments[at];
    if folded.source == PaymentSource::StkQuery {
        // The query's payment keeps its attempt; the paybill payment is its own, after it.
        folded.receipt = None;
        let second = Payment {
            receipt: Some(trans_id.to_owned()),
            amount,
            source: PaymentSource::Paybill,
            at_ms: folded.at_ms,
            attempt: None,
        };
        order.payments.push(second);
    } else {
        // The paybill payment came first; the query's payment is its own. It goes before
        // the paybill one, which is the extra, refundable payment (it has a receipt).
        let first = Payment {
            receipt: None,
            amount,
            source: PaymentSource::StkQuery,
            at_ms: folded.at_ms,
            attempt: folded.attempt.take(),
        };
        order.payments.insert(at, first);
    }
    outcome.changed = true;
    let flag = if order.status == OrderStatus::Expired {
        OrderFlag::PaidAfterExpiry
    } else {
        OrderFlag::Overpaid
    };
    add_flag(order, flag, outcome);
}

/// Whether `new` is a second sighting of the already counted payment `counted`.
///
/// The same receipt is the same money. The same STK attempt is the same money (its callback and
/// its query). And M-Pesa also confirms an STK payment to a paybill through C2B, with the STK
/// receipt as `TransID`: so a paybill confirmation and a receipt-less STK query result of the same
/// amount are one payment seen twice, whichever arrives first.
fn same_money(counted: &Payment, new: &Payment) -> bool {
    let same_receipt = counted.receipt.is_some() && counted.receipt == new.receipt;
    let same_attempt = counted.attempt.is_some() && counted.attempt == new.attempt;
    let query_and_paybill = counted.amount == new.amount
        && matches!(
            (counted.source, new.source, &counted.receipt, &new.receipt),
            (PaymentSource::StkQuery, PaymentSource::Paybill, None, _)
                | (PaymentSource::Paybill, PaymentSource::StkQuery, _, None)
        )
        && (counted.attempt.is_none() || new.attempt.is_none());
    same_receipt || same_attempt || query_and_paybill
}

fn close_attempt(
    order: &mut Order,
    n: u32,
    state: AttemptState,
    code: i64,
    desc: &str,
    now_ms: i64,
) {
    if let Some(attempt) = order.attempt_mut(n) {
        attempt.state = state;
        attempt.result_code = Some(code);
        attempt.result_desc = Some(desc.to_owned());
        attempt.updated_at_ms = now_ms;
    }
}

fn fail_attempt(
    order: &mut Order,
    n: u32,
    code: i64,
    desc: &str,
    now_ms: i64,
    outcome: &mut Outcome,
) {
    let Some(attempt) = order.attempt_mut(n) else {
        return;
    };
    if !attempt.is_open() {
        // A late failure for an attempt already settled (a duplicate, or a query that lost
        // the race to the callback) changes nothing.
        outcome.duplicate = true;
        return;
    }
    close_attempt(order, n, AttemptState::Failed, code, desc, now_ms);
    if order.status == OrderStatus::AwaitingPayment && !order.attempts.iter().any(|a| a.is_open()) {
        order.status = OrderStatus::Failed;
    }
    if order.status != OrderStatus::Paid {
        outcome.attempt_failed = Some(n);
    }
}

fn add_flag(order: &mut Order, flag: OrderFlag, outcome: &mut Outcome) {
    order.flag(flag);
    outcome.flagged.push(flag);
    outcome.changed = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::Lang;
    use crate::msisdn::Msisdn;
    use crate::orders::OrderLine;

    const T0: i64 = 1_790_000_000_000;

    fn order() -> Order {
        let shopper = Msisdn::parse("0712345678").unwrap();
        Order::place(
            "D7K2Q9".into(),
            shopper.clone(),
            Lang::En,
            vec![OrderLine {
                product: "toilet-paper".into(),
                name: "Toilet Paper 10pk".into(),
                unit_price: Kes::whole(450),
                qty: 2,
            }],
            shopper,
            T0,
            86_400_000,
        )
    }

    fn stk_paid(receipt: &str, amount: i64) -> Event {
        Event::StkCallback {
            attempt: 1,
            result_code: 0,
            result_desc: "The service request is processed successfully.".into(),
            paid: Some(StkPaid {
                amount: Kes::whole(amount),
                receipt: receipt.into(),
                phone: Some("254712345678".into()),
            }),
        }
    }

    fn stk_failed(code: i64) -> Event {
        Event::StkCallback {
            attempt: 1,
            result_code: code,
            result_desc: "Request cancelled by user".into(),
            paid: None,
        }
    }

    fn paybill(trans_id: &str, amount: i64) -> Event {
        Event::Paybill {
            trans_id: trans_id.into(),
            amount: Kes::whole(amount),
        }
    }

    #[test]
    fn a_success_callback_for_the_total_pays_the_order() {
        let mut order = order();
        let outcome = apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        assert!(outcome.became_paid);
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.attempts[0].state, AttemptState::Succeeded);
        assert_eq!(order.payments.len(), 1);
        assert_eq!(order.payments[0].receipt.as_deref(), Some("QKH94M1Z11"));
    }

    #[test]
    fn a_duplicate_callback_changes_nothing_but_its_count() {
        let mut order = order();
        apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        let again = apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 2);
        assert!(!again.became_paid);
        assert!(again.duplicate);
        assert_eq!(order.payments.len(), 1);
        assert!(order.flags.is_empty());
        assert_eq!(order.attempts[0].callbacks, 2);
    }

    #[test]
    fn a_wrong_amount_is_a_mismatch_and_does_not_pay() {
        let mut order = order();
        let outcome = apply(&mut order, &stk_paid("QKH94M1Z11", 1), T0 + 1);
        assert!(!outcome.became_paid);
        assert_eq!(order.status, OrderStatus::AwaitingPayment);
        assert_eq!(order.flags, vec![OrderFlag::Mismatch]);
        assert!(order.payments.is_empty());
    }

    #[test]
    fn a_success_from_another_phone_is_a_mismatch() {
        let mut order = order();
        let mut event = stk_paid("QKH94M1Z11", 900);
        if let Event::StkCallback {
            paid: Some(paid), ..
        } = &mut event
        {
            paid.phone = Some("254799999999".into());
        }
        assert!(!apply(&mut order, &event, T0 + 1).became_paid);
        assert_eq!(order.flags, vec![OrderFlag::Mismatch]);
    }

    #[test]
    fn a_failed_attempt_leaves_the_order_payable() {
        let mut order = order();
        let outcome = apply(&mut order, &stk_failed(1032), T0 + 1);
        assert_eq!(outcome.attempt_failed, Some(1));
        assert_eq!(order.status, OrderStatus::Failed);
        assert!(order.status.is_payable());
        // And the paybill still pays it.
        assert!(apply(&mut order, &paybill("RKTQDM7W6S", 900), T0 + 2).became_paid);
        assert_eq!(order.status, OrderStatus::Paid);
    }

    #[test]
    fn a_late_failure_after_success_changes_nothing() {
        let mut order = order();
        apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        let late = apply(&mut order, &stk_failed(1037), T0 + 2);
        assert_eq!(late.attempt_failed, None);
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(order.attempts[0].state, AttemptState::Succeeded);
    }

    #[test]
    fn a_paybill_payment_after_an_stk_payment_is_flagged_overpaid() {
        let mut order = order();
        apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        let second = apply(&mut order, &paybill("RKTQDM7W6S", 900), T0 + 2);
        assert!(!second.became_paid);
        assert_eq!(second.flagged, vec![OrderFlag::Overpaid]);
        assert_eq!(order.payments.len(), 2);
        assert_eq!(order.status, OrderStatus::Paid);
    }

    #[test]
    fn a_late_stk_success_after_a_paybill_payment_is_flagged_overpaid() {
        let mut order = order();
        apply(&mut order, &paybill("RKTQDM7W6S", 900), T0 + 1);
        let late = apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 2);
        assert!(!late.became_paid);
        assert_eq!(order.flags, vec![OrderFlag::Overpaid]);
        assert_eq!(order.payments.len(), 2);
    }

    #[test]
    fn the_same_receipt_by_callback_and_by_paybill_counts_once() {
        let mut order = order();
        apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        let same = apply(&mut order, &paybill("QKH94M1Z11", 900), T0 + 2);
        assert!(same.duplicate);
        assert_eq!(order.payments.len(), 1);
        assert!(order.flags.is_empty());
    }

    #[test]
    fn a_query_proves_payment_and_the_late_callback_fills_in_the_receipt() {
        let mut order = order();
        let query = Event::StkQuery {
            attempt: 1,
            result_code: 0,
            result_desc: "The service request is processed successfully.".into(),
        };
        assert!(apply(&mut order, &query, T0 + 1).became_paid);
        assert_eq!(order.payments[0].receipt, None);
        assert_eq!(order.payments[0].amount, Kes::whole(900));
        let late = apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 2);
        assert!(!late.became_paid);
        assert_eq!(order.payments.len(), 1);
        assert_eq!(order.payments[0].receipt.as_deref(), Some("QKH94M1Z11"));
        assert!(order.flags.is_empty());
    }

    fn query_paid() -> Event {
        Event::StkQuery {
            attempt: 1,
            result_code: 0,
            result_desc: "ok".into(),
        }
    }

    fn checked(trans_id: &str, by_stk: bool) -> Event {
        Event::FoldChecked {
            trans_id: trans_id.into(),
            amount: Kes::whole(900),
            by_stk,
        }
    }

    #[test]
    fn a_paybill_payment_taken_for_the_stk_echo_is_checked_and_counted_apart_if_typed() {
        // Either order of arrival: the query first, or the paybill confirmation first.
        for query_first in [true, false] {
            let mut order = order();
            let (first, second) = if query_first {
                (query_paid(), paybill("QKH94M1Z22", 900))
            } else {
                (paybill("QKH94M1Z22", 900), query_paid())
            };
            apply(&mut order, &first, T0 + 1);
            let folded = apply(&mut order, &second, T0 + 2);
            assert_eq!(folded.folded.as_deref(), Some("QKH94M1Z22"));
            assert_eq!(order.payments.len(), 1);

            // M-Pesa says the shopper typed it: two payments, flagged for a refund.
            let mut typed = order.clone();
            let outcome = apply(&mut typed, &checked("QKH94M1Z22", false), T0 + 3);
            assert!(outcome.changed && !outcome.became_paid);
            assert_eq!(typed.payments.len(), 2);
            assert_eq!(typed.flags, vec![OrderFlag::Overpaid]);
            let sources: Vec<_> = typed.payments.iter().map(|p| p.source).collect();
            assert!(sources.contains(&PaymentSource::StkQuery));
            assert!(sources.contains(&PaymentSource::Paybill));
            assert_eq!(
                typed
                    .payments
                    .iter()
                    .filter(|p| p.receipt.is_some())
                    .count(),
                1
            );
            assert_eq!(
                refunds::refundable(&typed)
                    .iter()
                    .map(|r| (r.receipt.as_str(), r.amount))
                    .collect::<Vec<_>>(),
                vec![("QKH94M1Z22", Kes::whole(900))]
            );
            // The same answer again changes nothing more.
            let again = apply(&mut typed, &checked("QKH94M1Z22", false), T0 + 4);
            assert!(!again.changed);
            assert_eq!(typed.payments.len(), 2);

            // M-Pesa says it was the STK payment: one payment, as counted.
            let mut echo = order.clone();
            let outcome = apply(&mut echo, &checked("QKH94M1Z22", true), T0 + 3);
            assert!(!outcome.changed);
            assert_eq!(echo, order);
        }
    }

    #[test]
    fn a_query_after_the_callback_adds_nothing() {
        let mut order = order();
        apply(&mut order, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        let query = Event::StkQuery {
            attempt: 1,
            result_code: 0,
            result_desc: "ok".into(),
        };
        let outcome = apply(&mut order, &query, T0 + 2);
        assert!(!outcome.changed);
        assert_eq!(order.payments.len(), 1);
    }

    #[test]
    fn a_smaller_paybill_payment_is_recorded_as_underpaid_and_does_not_pay() {
        let mut order = order();
        let outcome = apply(&mut order, &paybill("RKTQDM7W6S", 500), T0 + 1);
        assert!(!outcome.became_paid);
        assert_eq!(order.status, OrderStatus::AwaitingPayment);
        assert_eq!(order.flags, vec![OrderFlag::Underpaid]);
        assert_eq!(order.payments.len(), 1);
    }

    #[test]
    fn a_duplicate_paybill_confirmation_counts_once() {
        let mut order = order();
        apply(&mut order, &paybill("RKTQDM7W6S", 900), T0 + 1);
        let again = apply(&mut order, &paybill("RKTQDM7W6S", 900), T0 + 2);
        assert!(again.duplicate);
        assert!(!again.changed);
        assert_eq!(order.payments.len(), 1);
    }

    #[test]
    fn an_unpaid_order_expires_after_its_time_and_a_paid_one_never_does() {
        let mut unpaid = order();
        assert!(!apply(&mut unpaid, &Event::Expire, T0 + 1).changed);
        assert!(apply(&mut unpaid, &Event::Expire, T0 + 86_400_000).changed);
        assert_eq!(unpaid.status, OrderStatus::Expired);
        let late = apply(&mut unpaid, &paybill("RKTQDM7W6S", 900), T0 + 86_400_001);
        assert_eq!(late.flagged, vec![OrderFlag::PaidAfterExpiry]);
        assert_eq!(unpaid.status, OrderStatus::Expired);

        let mut paid = order();
        apply(&mut paid, &stk_paid("QKH94M1Z11", 900), T0 + 1);
        assert!(!apply(&mut paid, &Event::Expire, T0 + 90_000_000).changed);
        assert_eq!(paid.status, OrderStatus::Paid);
    }

    #[test]
    fn callbacks_for_an_unknown_attempt_change_nothing() {
        let mut order = order();
        let stray = Event::StkCallback {
            attempt: 9,
            result_code: 0,
            result_desc: "x".into(),
            paid: None,
        };
        assert_eq!(apply(&mut order, &stray, T0), Outcome::default());
    }

    #[test]
    fn whatever_order_the_events_arrive_in_the_order_is_paid_once() {
        // Every permutation of: callback success, duplicate callback, query success, paybill.
        let events = [
            stk_paid("QKH94M1Z11", 900),
            stk_paid("QKH94M1Z11", 900),
            Event::StkQuery {
                attempt: 1,
                result_code: 0,
                result_desc: "ok".into(),
            },
            paybill("QKH94M1Z11", 900),
        ];
        let mut permutations = vec![vec![0usize, 1, 2, 3]];
        // Heap's algorithm, iteratively, for the 24 orders.
        let mut items = vec![0usize, 1, 2, 3];
        let mut c = [0usize; 4];
        let mut i = 0;
        while i < 4 {
            if c[i] < i {
                if i % 2 == 0 {
                    items.swap(0, i);
                } else {
                    items.swap(c[i], i);
                }
                permutations.push(items.clone());
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        assert_eq!(permutations.len(), 24);
        for permutation in permutations {
            let mut order = order();
            let paid_events = permutation
                .iter()
                .filter(|&&e| apply(&mut order, &events[e], T0 + 1).became_paid)
                .count();
            assert_eq!(paid_events, 1, "{permutation:?}");
            assert_eq!(order.status, OrderStatus::Paid);
            assert_eq!(order.payments.len(), 1, "{permutation:?}");
            assert!(order.flags.is_empty(), "{permutation:?}: {:?}", order.flags);
        }
    }
}
