//! Refunds in the payment state machine: which payment may be refunded, by how much, and how
//! Daraja's answers move a refund along (requested → accepted → done / failed / timed out).
//!
//! One refund per payment, keyed by its receipt, and a refund that may have moved money
//! (requested, accepted, done, timed out) is never asked for again: so an operator's second
//! `duka refund`, a duplicate result callback or a job run twice after a restart pays out once.
//! A failed refund moved no money and may be asked for again, under a new
//! `OriginatorConversationID`.

use super::{amount_due, Outcome};
use crate::money::Kes;
use crate::orders::{Order, OrderStatus, Payment, Refund, RefundMethod, RefundState};

/// Why a refund was refused (shown to the operator as is).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefusal {
    #[error("order {0} has no payment to refund (no overpaid, late, double or underpaid payment with a receipt)")]
    NothingRefundable(String),
    #[error("refunds are whole shillings, not KES {0}")]
    NotWhole(Kes),
    #[error("KES {asked} is more than the KES {refundable} refundable for payment {receipt}")]
    TooMuch {
        asked: Kes,
        refundable: Kes,
        receipt: String,
    },
    #[error("a refund is at least KES 1")]
    NotPositive,
}

/// The payment a refund is for, and the most that may be given back for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refundable {
    pub receipt: String,
    pub amount: Kes,
    /// The whole payment may go back (a reversal); otherwise only part of it (B2C).
    pub whole: bool,
}

/// What may be refunded for each payment of `order` that has no refund in progress or done.
///
/// - an expired order: every payment, whole;
/// - a paid order: every payment but the one that paid it, whole, and the excess of that one;
/// - an unpaid order: every payment (only smaller, "underpaid" ones are kept), whole.
pub fn refundable(order: &Order) -> Vec<Refundable> {
    let due = amount_due(order);
    let paying = (order.status == OrderStatus::Paid)
        .then(|| order.payments.iter().position(|p| p.amount >= due))
        .flatten();
    order
        .payments
        .iter()
        .enumerate()
        .filter_map(|(i, p): (usize, &Payment)| {
            let receipt = p.receipt.clone()?;
            let blocked = order
                .refunds
                .iter()
                .any(|r| r.receipt == receipt && r.state != RefundState::Failed);
            if blocked {
                return None;
            }
            let (amount, whole) = if Some(i) == paying {
                (Kes::new(p.amount.decimal() - due.decimal()), false)
            } else {
                (p.amount, true)
            };
            (amount > Kes::ZERO).then_some(Refundable {
                receipt,
                amount,
                whole,
            })
        })
        .collect()
}

/// An operator approved a refund of `amount` (or everything refundable of the first payment
/// that has some). A whole payment goes back by reversal, a part of one by B2C.
pub(super) fn request(
    order: &mut Order,
    amount: Option<Kes>,
    now_ms: i64,
    outcome: &mut Outcome,
) -> Result<(), RefundRefusal> {
    let Some(target) = refundable(order).into_iter().next() else {
        return Err(RefundRefusal::NothingRefundable(order.number.clone()));
    };
    let amount = amount.unwrap_or(target.amount);
    if amount <= Kes::ZERO {
        return Err(RefundRefusal::NotPositive);
    }
    if !amount.is_whole() {
        return Err(RefundRefusal::NotWhole(amount));
    }
    if amount > target.amount {
        return Err(RefundRefusal::TooMuch {
            asked: amount,
            refundable: target.amount,
            receipt: target.receipt,
        });
    }
    let method = if target.whole && amount == target.amount {
        RefundMethod::Reversal
    } else {
        RefundMethod::B2c
    };
    let tries = order
        .refunds
        .iter()
        .filter(|r| r.receipt == target.receipt)
        .count();
    order.refunds.retain(|r| r.receipt != target.receipt);
    order.refunds.push(Refund {
        receipt: target.receipt.clone(),
        amount,
        method,
        state: RefundState::Requested,
        originator_conversation_id: originator_conversation_id(
            &order.number,
            &target.receipt,
            tries,
        ),
        to: order.msisdn.clone(),
        conversation_id: None,
        result_code: None,
        result_desc: None,
        transaction_id: None,
        results: 0,
        requested_at_ms: now_ms,
        updated_at_ms: now_ms,
    });
    outcome.changed = true;
    outcome.refund_requested = Some(target.receipt);
    Ok(())
}

/// `{order}-{receipt}-{try}`: stable for a refund, so a re-sent request is a duplicate at
/// Daraja, and readable back into the order and receipt when the result comes.
pub fn originator_conversation_id(order: &str, receipt: &str, tries: usize) -> String {
    format!("DUKA-{order}-{receipt}-{tries}")
}

/// The order number and receipt in an id made by [`originator_conversation_id`].
pub fn parse_originator_conversation_id(id: &str) -> Option<(String, String)> {
    let mut parts = id.strip_prefix("DUKA-")?.split('-');
    let order = parts.next()?.to_owned();
    let receipt = parts.next()?.to_owned();
    parts.next()?.parse::<usize>().ok()?;
    Some((order, receipt))
}

fn open_refund<'a>(order: &'a mut Order, ocid: &str) -> Option<&'a mut Refund> {
    order
        .refunds
        .iter_mut()
        .find(|r| r.originator_conversation_id == ocid)
}

/// Daraja accepted the request (or refused a re-send as a duplicate: the first one is in).
pub(super) fn accepted(
    order: &mut Order,
    ocid: &str,
    conversation_id: &str,
    now_ms: i64,
    outcome: &mut Outcome,
) {
    let Some(refund) = open_refund(order, ocid) else {
        return;
    };
    if refund.state == RefundState::Requested {
        refund.state = RefundState::Accepted;
        if !conversation_id.is_empty() {
            refund.conversation_id = Some(conversation_id.to_owned());
        }
        refund.updated_at_ms = now_ms;
        outcome.changed = true;
    } else {
        outcome.duplicate = true;
    }
}

/// The request was refused outright: no money moved.
pub(super) fn refused(
    order: &mut Order,
    ocid: &str,
    error: &str,
    now_ms: i64,
    outcome: &mut Outcome,
) {
    let Some(refund) = open_refund(order, ocid) else {
        return;
    };
    if refund.state == RefundState::Requested {
        refund.state = RefundState::Failed;
        refund.result_desc = Some(error.to_owned());
        refund.updated_at_ms = now_ms;
        outcome.changed = true;
    } else {
        outcome.duplicate = true;
    }
}

/// The result callback (`ResultCode` 0 is done), or the queue timeout (`None`).
pub(super) fn finished(
    order: &mut Order,
    ocid: &str,
    result: Option<(i64, &str, Option<&str>)>,
    now_ms: i64,
    outcome: &mut Outcome,
) {
    let Some(refund) = open_refund(order, ocid) else {
        return;
    };
    outcome.changed = true;
    if result.is_some() {
        refund.results += 1;
    }
    if !refund.state.is_open() {
        // A duplicate result, or a result after a timeout: a late success after a timeout is
        // still the truth, the rest changes nothing.
        let late_success =
            refund.state == RefundState::TimedOut && matches!(result, Some((0, _, _)));
        if !late_success {
            outcome.duplicate = true;
            return;
        }
    }
    refund.updated_at_ms = now_ms;
    match result {
        Some((code, desc, transaction_id)) => {
            refund.result_code = Some(code);
            refund.result_desc = Some(desc.to_owned());
            refund.transaction_id = transaction_id.map(str::to_owned);
            if code == 0 {
                refund.state = RefundState::Done;
                outcome.refund_done = Some(refund.receipt.clone());
            } else {
                refund.state = RefundState::Failed;
            }
        }
        None => refund.state = RefundState::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::Lang;
    use crate::msisdn::Msisdn;
    use crate::orders::{OrderLine, PaymentSource};

    const T0: i64 = 1_790_000_000_000;

    fn paid_twice() -> Order {
        let shopper = Msisdn::parse("0712345678").unwrap();
        let mut order = Order::place(
            "D7K2Q9".into(),
            shopper.clone(),
            Lang::En,
            vec![OrderLine {
                product: "sugar".into(),
                name: "Sugar".into(),
                unit_price: Kes::whole(450),
                qty: 2,
            }],
            shopper,
            T0,
            600_000,
        );
        order.status = OrderStatus::Paid;
        for receipt in ["RCP1", "RCP2"] {
            order.payments.push(Payment {
                receipt: Some(receipt.into()),
                amount: Kes::whole(900),
                source: PaymentSource::Paybill,
                at_ms: T0,
                attempt: None,
            });
        }
        order
    }

    #[test]
    fn the_second_payment_is_reversed_whole_once() {
        let mut order = paid_twice();
        let mut outcome = Outcome::default();
        request(&mut order, None, T0, &mut outcome).unwrap();
        assert_eq!(outcome.refund_requested.as_deref(), Some("RCP2"));
        let refund = &order.refunds[0];
        assert_eq!(
            (refund.method, refund.amount),
            (RefundMethod::Reversal, Kes::whole(900))
        );
        assert_eq!(refund.originator_conversation_id, "DUKA-D7K2Q9-RCP2-0");
        assert_eq!(
            request(&mut order, None, T0, &mut Outcome::default()),
            Err(RefundRefusal::NothingRefundable("D7K2Q9".into()))
        );
    }

    #[test]
    fn a_part_goes_by_b2c_and_more_than_the_payment_is_refused() {
        let mut order = paid_twice();
        assert!(matches!(
            request(
                &mut order,
                Some(Kes::whole(901)),
                T0,
                &mut Outcome::default()
            ),
            Err(RefundRefusal::TooMuch { .. })
        ));
        assert!(matches!(
            request(
                &mut order,
                Some(Kes::parse("10.50").unwrap()),
                T0,
                &mut Outcome::default()
            ),
            Err(RefundRefusal::NotWhole(_))
        ));
        request(
            &mut order,
            Some(Kes::whole(300)),
            T0,
            &mut Outcome::default(),
        )
        .unwrap();
        assert_eq!(order.refunds[0].method, RefundMethod::B2c);
    }

    #[test]
    fn a_duplicate_result_changes_nothing_and_a_failure_may_be_asked_again() {
        let mut order = paid_twice();
        request(&mut order, None, T0, &mut Outcome::default()).unwrap();
        let ocid = order.refunds[0].originator_conversation_id.clone();
        accepted(&mut order, &ocid, "AG_1", T0, &mut Outcome::default());
        let mut first = Outcome::default();
        finished(
            &mut order,
            &ocid,
            Some((0, "ok", Some("RFD1"))),
            T0,
            &mut first,
        );
        assert_eq!(first.refund_done.as_deref(), Some("RCP2"));
        let mut second = Outcome::default();
        finished(
            &mut order,
            &ocid,
            Some((0, "ok", Some("RFD1"))),
            T0,
            &mut second,
        );
        assert!(second.duplicate && second.refund_done.is_none());
        assert_eq!(order.refunds[0].results, 2);

        let mut order = paid_twice();
        request(&mut order, None, T0, &mut Outcome::default()).unwrap();
        let ocid = order.refunds[0].originator_conversation_id.clone();
        finished(
            &mut order,
            &ocid,
            Some((1, "The balance is insufficient", None)),
            T0,
            &mut Outcome::default(),
        );
        assert_eq!(order.refunds[0].state, RefundState::Failed);
        request(&mut order, None, T0, &mut Outcome::default()).unwrap();
        assert_eq!(order.refunds.len(), 1);
        assert_eq!(
            order.refunds[0].originator_conversation_id,
            "DUKA-D7K2Q9-RCP2-1"
        );
    }

    #[test]
    fn the_excess_of_the_paying_payment_is_refundable_by_b2c() {
        let mut order = paid_twice();
        order.payments.truncate(1);
        order.payments[0].amount = Kes::whole(1000);
        let found = refundable(&order);
        assert_eq!(
            found,
            vec![Refundable {
                receipt: "RCP1".into(),
                amount: Kes::whole(100),
                whole: false
            }]
        );
    }

    #[test]
    fn originator_ids_read_back() {
        assert_eq!(
            parse_originator_conversation_id("DUKA-D7K2Q9-RCP2-3"),
            Some(("D7K2Q9".into(), "RCP2".into()))
        );
        assert_eq!(parse_originator_conversation_id("AG_2019"), None);
    }
}
