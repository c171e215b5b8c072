//! The books at the end of a soak: every order as Redis holds it, set against what the M-Pesa
//! sandbox says moved and what the SMS sandbox says was sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::walk::PaybillPaid;
use crate::orders::{AttemptState, Order, OrderFlag, OrderStatus};
use crate::sandbox::mpesa::{CallbackKind, MpesaSandbox};
use crate::sandbox::sms::SmsSandbox;
use crate::sms::outbox::{OutboxMessage, SendStatus};

/// Every order under `prefix`, read with SCAN.
pub fn read_orders(redis_url: &str) -> anyhow::Result<Vec<Order>> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection()?;
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg("*}:order:*")
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(&mut conn)?
        .collect::<Result<_, _>>()?;
    let mut orders = Vec::new();
    for key in keys {
        let Some((_, rest)) = key.split_once("}:order:") else {
            continue;
        };
        if rest.contains(':') {
            continue;
        }
        let raw: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap_or(None);
        if let Some(order) = raw.and_then(|r| serde_json::from_slice::<Order>(&r).ok()) {
            orders.push(order);
        }
    }
    orders.sort_by(|a, b| a.number.cmp(&b.number));
    Ok(orders)
}

/// The outbox state of each paid order's receipt (`<order>.r`), by order number.
pub fn receipt_states(
    redis_url: &str,
    orders: &[Order],
) -> anyhow::Result<HashMap<String, SendStatus>> {
    let keys = crate::keys::Keys::new("duka");
    let mut conn = redis::Client::open(redis_url)?.get_connection()?;
    let mut states = HashMap::new();
    for order in orders.iter().filter(|o| o.status == OrderStatus::Paid) {
        let raw: Option<Vec<u8>> = redis::cmd("GET")
            .arg(keys.message(&format!("{}.r", order.number)))
            .query(&mut conn)
            .unwrap_or(None);
        if let Some(message) = raw.and_then(|r| serde_json::from_slice::<OutboxMessage>(&r).ok()) {
            states.insert(order.number.clone(), message.status);
        }
    }
    Ok(states)
}

/// Whether a receipt will never go out by itself: a kill mid-send left it uncertain (Duka
/// never resends those), or it was given up on.
fn receipt_parked(states: &HashMap<String, SendStatus>, order: &str) -> bool {
    matches!(
        states.get(order),
        Some(SendStatus::Uncertain | SendStatus::Failed)
    )
}

/// How many payment lookups (`duka mpesa find`, and Duka's own checks of folded payments)
/// are still waiting for M-Pesa's answer.
pub fn open_lookups(redis_url: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection()?;
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg("*}:find:*")
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter::<String>(&mut conn)?
        .collect::<Result<_, _>>()?;
    let mut open = 0;
    for key in keys {
        let raw: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap_or(None);
        let lookup =
            raw.and_then(|r| serde_json::from_slice::<crate::payments::find::Lookup>(&r).ok());
        if lookup.is_some_and(|l| !l.state.is_final()) {
            open += 1;
        }
    }
    Ok(open)
}

/// How many receipt SMS each order got, by order number.
fn receipts_sent(sms: &SmsSandbox) -> HashMap<String, u32> {
    let mut sent = HashMap::new();
    for message in sms.messages() {
        if let Some(rest) = message.text.split(": order ").nth(1) {
            if let Some((order, _)) = rest.split_once(" paid") {
                *sent.entry(order.to_owned()).or_insert(0) += 1;
            }
        }
    }
    sent
}

/// Whether the system is quiet: no push unanswered, no attempt pending, every paid order's
/// receipt sent.
pub fn settled(orders: &[Order], sms: &SmsSandbox, states: &HashMap<String, SendStatus>) -> bool {
    let receipts = receipts_sent(sms);
    orders.iter().all(|order| {
        // An unknown push without a CheckoutRequestID cannot be queried: it waits for the
        // shopper to pay again, not for the system.
        let pending = order.attempts.iter().any(|a| match a.state {
            AttemptState::Requested | AttemptState::Sent => true,
            AttemptState::Unknown => a.checkout_request_id.is_some(),
            AttemptState::Succeeded | AttemptState::Failed => false,
        });
        let receipt_due = order.status == OrderStatus::Paid
            && !receipts.contains_key(&order.number)
            && !receipt_parked(states, &order.number);
        !pending && !receipt_due
    })
}

/// A payment M-Pesa moved whose confirmation no Duka heard: what `duka mpesa find` is for.
#[derive(Clone, Debug)]
pub struct Missed {
    pub receipt: String,
    pub order: String,
    pub amount: u64,
}

/// The `TransID`s of the paybill confirmations some Duka answered with a 2xx (Daraja does not
/// send a confirmation again, so any other is lost).
fn heard_confirmations(mpesa: &MpesaSandbox) -> HashSet<String> {
    mpesa
        .callbacks()
        .iter()
        .filter(|c| c.kind == CallbackKind::C2bConfirmation)
        .filter(|c| {
            c.reply
                .as_ref()
                .is_ok_and(|r| (200..300).contains(&r.status))
        })
        .filter_map(|c| c.body["TransID"].as_str().map(str::to_owned))
        .collect()
}

/// The `CheckoutRequestID`s of the STK callbacks some Duka answered with a 2xx.
fn heard_pushes(mpesa: &MpesaSandbox) -> HashSet<String> {
    mpesa
        .callbacks()
        .iter()
        .filter(|c| c.kind == CallbackKind::Stk)
        .filter(|c| {
            c.reply
                .as_ref()
                .is_ok_and(|r| (200..300).contains(&r.status))
        })
        .filter_map(|c| {
            c.body["Body"]["stkCallback"]["CheckoutRequestID"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Whether Duka never learnt of `push` at all: no attempt holds its id and no Duka
/// acknowledged its callback (so it has nothing to query).
fn never_known(
    push: &crate::sandbox::mpesa::RecordedPush,
    by_number: &HashMap<&str, &Order>,
    stk_heard: &HashSet<String>,
) -> bool {
    let known = by_number
        .get(push.account_reference.as_str())
        .is_some_and(|o| {
            o.attempts
                .iter()
                .any(|a| a.checkout_request_id.as_deref() == Some(&push.checkout_request_id))
        });
    !known && !stk_heard.contains(&push.checkout_request_id)
}

fn receipts_on(orders: &[Order]) -> HashSet<&str> {
    orders
        .iter()
        .flat_map(|o| o.payments.iter())
        .filter_map(|p| p.receipt.as_deref())
        .collect()
}

/// Every payment that moved money but that no order holds, because Duka never heard of it:
/// paybill confirmations lost while Duka was down, STK payments whose push answer and
/// callback both missed it.
pub fn missed(orders: &[Order], mpesa: &MpesaSandbox, paybills: &[PaybillPaid]) -> Vec<Missed> {
    let heard = heard_confirmations(mpesa);
    let held = receipts_on(orders);
    let by_number: HashMap<&str, &Order> = orders.iter().map(|o| (o.number.as_str(), o)).collect();
    let stk_heard = heard_pushes(mpesa);
    let paybill = paybills
        .iter()
        .filter(|p| {
            p.confirmed && !heard.contains(&p.trans_id) && !held.contains(p.trans_id.as_str())
        })
        .map(|p| Missed {
            receipt: p.trans_id.clone(),
            order: p.order.clone(),
            amount: p.amount,
        });
    let stk = mpesa
        .pushes()
        .into_iter()
        .filter(|p| p.result_code == Some(0) && never_known(p, &by_number, &stk_heard))
        .filter_map(|p| {
            let receipt = p.receipt.clone()?;
            (!held.contains(receipt.as_str())).then(|| Missed {
                receipt,
                order: p.account_reference.clone(),
                amount: u64::from(p.amount),
            })
        });
    paybill.chain(stk.collect::<Vec<_>>()).collect()
}

/// The books, and whether every invariant holds.
pub struct Books {
    pub text: String,
    pub ok: bool,
}

pub fn balance(
    orders: &[Order],
    mpesa: &MpesaSandbox,
    sms: &SmsSandbox,
    paybills: &[PaybillPaid],
    states: &HashMap<String, SendStatus>,
) -> Books {
    let mut text = String::new();
    let mut ok = true;

    let stk_moved: u64 = mpesa
        .pushes()
        .iter()
        .filter(|p| p.result_code == Some(0))
        .map(|p| u64::from(p.amount))
        .sum();
    let stk_paid = mpesa
        .pushes()
        .iter()
        .filter(|p| p.result_code == Some(0))
        .count();
    // A confirmation that no Duka answered with a 2xx was lost: Daraja does not send it again.
    let heard = heard_confirmations(mpesa);
    let confirmed: Vec<&PaybillPaid> = paybills.iter().filter(|p| p.confirmed).collect();
    let paybill_moved: u64 = confirmed.iter().map(|p| p.amount).sum();
    let on_orders = receipts_on(orders);
    // Lost: no Duka heard it and `duka mpesa find` did not put it on its order either.
    let unheard: Vec<&&PaybillPaid> = confirmed
        .iter()
        .filter(|p| !heard.contains(&p.trans_id))
        .collect();
    let (found, lost): (Vec<&&PaybillPaid>, Vec<&&PaybillPaid>) = unheard
        .into_iter()
        .partition(|p| on_orders.contains(p.trans_id.as_str()));
    let replies = |trans_id: &str| -> String {
        mpesa
            .callbacks()
            .iter()
            .filter(|c| c.kind == CallbackKind::C2bConfirmation && c.body["TransID"] == trans_id)
            .map(|c| match &c.reply {
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Duka's `same_money` rule takes a paybill confirmation of the same amount for M-Pesa's C2B
    // echo of a receipt-less (query-proven) STK payment. When the shopper really paid twice,
    // the second payment is folded into the first: listed here, for review, not hidden.
    let folded: Vec<&PaybillPaid> = confirmed
        .iter()
        .copied()
        .filter(|p| {
            orders.iter().any(|o| {
                o.number == p.order
                    && o.payments.iter().any(|pay| {
                        // Counted once with an STK attempt: either order of arrival.
                        pay.receipt.as_deref() == Some(p.trans_id.as_str())
                            && (pay.source == crate::orders::PaymentSource::StkQuery
                                || pay.attempt.is_some())
                    })
            })
        })
        .collect();
    let folded_sum: u64 = folded.iter().map(|p| p.amount).sum();
    let heard_not_held: Vec<String> = confirmed
        .iter()
        .filter(|p| heard.contains(&p.trans_id) && !on_orders.contains(p.trans_id.as_str()))
        .filter(|p| !folded.iter().any(|f| f.trans_id == p.trans_id))
        .map(|p| format!("\n  {} KES {} for order {}", p.trans_id, p.amount, p.order))
        .collect();
    let lost_sum: u64 = lost.iter().map(|p| p.amount).sum();
    let moved = stk_moved + paybill_moved;

    // Every successful push should show as a payment of its attempt on its order.
    let by_number: HashMap<&str, &Order> = orders.iter().map(|o| (o.number.as_str(), o)).collect();
    // A push whose answer Duka never read and whose callback no Duka acknowledged is lost to
    // Duka (it has no CheckoutRequestID to query): only a transaction lookup finds it.
    let stk_heard = heard_pushes(mpesa);
    let never_known =
        |push: &crate::sandbox::mpesa::RecordedPush| never_known(push, &by_number, &stk_heard);
    let (stk_found, stk_lost): (Vec<_>, Vec<_>) = mpesa
        .pushes()
        .into_iter()
        .filter(|p| p.result_code == Some(0) && never_known(p))
        .partition(|p| p.receipt.as_deref().is_some_and(|r| on_orders.contains(r)));
    let found_sum: u64 = found.iter().map(|p| p.amount).sum::<u64>()
        + stk_found.iter().map(|p| u64::from(p.amount)).sum::<u64>();
    let _ = writeln!(
        text,
        "payments Duka missed that `duka mpesa find` put on their orders: {} (KES {found_sum})",
        found.len() + stk_found.len()
    );
    let stk_lost_sum: u64 = stk_lost.iter().map(|p| u64::from(p.amount)).sum();
    let _ = writeln!(
        text,
        "STK payments whose push answer and callback both missed Duka, still on no order after `duka mpesa find`: {} (KES {stk_lost_sum}){}",
        stk_lost.len(),
        stk_lost
            .iter()
            .map(|p| format!(
                "\n  {} KES {} for order {}",
                p.receipt.as_deref().unwrap_or("no receipt"),
                p.amount,
                p.account_reference
            ))
            .collect::<String>()
    );
    let unattributed: Vec<String> = mpesa
        .pushes()
        .iter()
        .filter(|p| p.result_code == Some(0) && !never_known(p))
        .filter(|push| {
            let order = by_number.get(push.account_reference.as_str());
            // Known by its id, or settled through its payer's lock without one.
            let attempt = order.and_then(|o| {
                o.attempts
                    .iter()
                    .find(|a| a.checkout_request_id.as_deref() == Some(&push.checkout_request_id))
                    .or_else(|| {
                        o.attempts.iter().find(|a| {
                            a.checkout_request_id.is_none()
                                && o.payments
                                    .iter()
                                    .any(|p| p.attempt == Some(a.n) && p.receipt == push.receipt)
                        })
                    })
            });
            !attempt.is_some_and(|a| {
                order.is_some_and(|o| o.payments.iter().any(|p| p.attempt == Some(a.n)))
            })
        })
        .map(|push| {
            format!(
                "\n  {} KES {} for order {} (CheckoutRequestID {}; Duka's answers: {})",
                push.receipt.as_deref().unwrap_or("no receipt"),
                push.amount,
                push.account_reference,
                push.checkout_request_id,
                mpesa
                    .callbacks()
                    .iter()
                    .filter(|c| c.kind == CallbackKind::Stk
                        && c.body["Body"]["stkCallback"]["CheckoutRequestID"]
                            == push.checkout_request_id.as_str())
                    .map(|c| match &c.reply {
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(e) => e.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    let recorded: Decimal = orders
        .iter()
        .flat_map(|o| o.payments.iter())
        .map(|p| p.amount.decimal())
        .sum();
    let expected = Decimal::from(moved - lost_sum - stk_lost_sum - folded_sum);

    let paid = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Paid)
        .count();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for order in orders {
        *by_status.entry(order.status.words()).or_default() += 1;
    }
    let _ = writeln!(
        text,
        "orders in Redis: {} ({})",
        orders.len(),
        join(&by_status)
    );
    let _ = writeln!(
        text,
        "M-Pesa moved: KES {moved} = STK KES {stk_moved} ({stk_paid} pushes) + paybill KES {paybill_moved} ({} payments)",
        confirmed.len()
    );
    let _ = writeln!(
        text,
        "paybill confirmations lost while Duka was down, still on no order after `duka mpesa find`: {} (KES {lost_sum}){}",
        lost.len(),
        lost.iter()
            .map(|p| format!(
                "\n  {} KES {} for order {} (Duka's answers: {})",
                p.trans_id,
                p.amount,
                p.order,
                replies(&p.trans_id)
            ))
            .collect::<String>()
    );
    let _ = writeln!(
        text,
        "paybill payments Duka acknowledged that no order holds: {}{}",
        heard_not_held.len(),
        heard_not_held.concat()
    );
    let _ = writeln!(
        text,
        "paybill payments folded into a query-proven STK payment of the same amount (paid twice, no flag; review): {} (KES {folded_sum}){}",
        folded.len(),
        folded
            .iter()
            .map(|p| format!("\n  {} KES {} for order {}", p.trans_id, p.amount, p.order))
            .collect::<String>()
    );
    let _ = writeln!(
        text,
        "STK payments M-Pesa took that no order holds: {}{}",
        unattributed.len(),
        unattributed.concat()
    );
    let balanced = recorded == expected && unattributed.is_empty() && heard_not_held.is_empty();
    ok &= balanced;
    let _ = writeln!(
        text,
        "Σ payments on orders = KES {recorded}; M-Pesa moved less what missed Duka and what was folded = KES {expected}: {}",
        if balanced { "balanced" } else { "NOT BALANCED" }
    );

    let mut receipts_seen = HashSet::new();
    let duplicate_receipts = orders
        .iter()
        .flat_map(|o| o.payments.iter())
        .filter_map(|p| p.receipt.clone())
        .filter(|r| !receipts_seen.insert(r.clone()))
        .count();
    let paid_twice = orders
        .iter()
        .filter(|o| o.payments.len() > 1 && o.flags.is_empty())
        .count()
        + duplicate_receipts;
    ok &= paid_twice == 0;
    let _ = writeln!(text, "orders paid twice without a flag: {paid_twice}");

    let receipts = receipts_sent(sms);
    let twice = receipts.values().filter(|n| **n > 1).count();
    ok &= twice == 0;
    let _ = writeln!(text, "receipts sent twice: {twice}");
    let missing: Vec<&Order> = orders
        .iter()
        .filter(|o| o.status == OrderStatus::Paid && !receipts.contains_key(&o.number))
        .collect();
    let (parked, without): (Vec<&Order>, Vec<&Order>) = missing
        .into_iter()
        .partition(|o| receipt_parked(states, &o.number));
    ok &= without.is_empty();
    let _ = writeln!(
        text,
        "paid orders ({paid}) without a receipt: {}{}",
        without.len(),
        without
            .iter()
            .map(|o| format!("\n  {}", o.number))
            .collect::<String>()
    );
    let _ = writeln!(
        text,
        "receipts a kill left uncertain mid-send and Duka will not resend (see `duka order`): {}{}",
        parked.len(),
        parked
            .iter()
            .map(|o| format!("\n  {} ({:?})", o.number, states.get(&o.number)))
            .collect::<String>()
    );

    let flagged: Vec<&Order> = orders
        .iter()
        .filter(|o| {
            o.flags
                .iter()
                .any(|f| matches!(f, OrderFlag::Overpaid | OrderFlag::PaidAfterExpiry))
        })
        .collect();
    let _ = writeln!(text, "refund-flagged orders: {}", flagged.len());
    for order in flagged {
        let paid: Decimal = order.payments.iter().map(|p| p.amount.decimal()).sum();
        let _ = writeln!(
            text,
            "  {} {:?}: total KES {}, paid KES {paid} in {} payments ({}), refund KES {}",
            order.number,
            order.flags,
            order.total.decimal(),
            order.payments.len(),
            order
                .payments
                .iter()
                .map(|p| p.receipt.clone().unwrap_or_else(|| "no receipt yet".into()))
                .collect::<Vec<_>>()
                .join(", "),
            paid - order.total.decimal()
        );
    }
    let _ = writeln!(text, "books: {}", if ok { "OK" } else { "FAILED" });
    Books { text, ok }
}

fn join(counts: &BTreeMap<&str, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the sandboxes saw, one line each, into `dir` (`pushes.txt`, `callbacks.txt`,
/// `paybills.txt`, `sms.txt`), for whoever has to explain a failed balance.
pub fn write_trail(
    dir: &std::path::Path,
    mpesa: &MpesaSandbox,
    sms: &SmsSandbox,
    paybills: &[PaybillPaid],
) -> std::io::Result<()> {
    let lines = |items: Vec<String>| items.join("\n") + "\n";
    std::fs::write(
        dir.join("pushes.txt"),
        lines(
            mpesa
                .pushes()
                .iter()
                .map(|p| {
                    format!(
                        "{} {} {} {:?} {:?} {:?}",
                        p.account_reference,
                        p.checkout_request_id,
                        p.amount,
                        p.result_code,
                        p.receipt,
                        p.outcome
                    )
                })
                .collect(),
        ),
    )?;
    std::fs::write(
        dir.join("callbacks.txt"),
        lines(
            mpesa
                .callbacks()
                .iter()
                .map(|c| {
                    let reply = match &c.reply {
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(e) => e.clone(),
                    };
                    format!("{} {:?} {reply} {}", c.at, c.kind, c.body)
                })
                .collect(),
        ),
    )?;
    std::fs::write(
        dir.join("paybills.txt"),
        lines(paybills.iter().map(|p| format!("{p:?}")).collect()),
    )?;
    std::fs::write(
        dir.join("sms.txt"),
        lines(
            sms.messages()
                .iter()
                .map(|m| format!("{} {}", m.to, m.text))
                .collect(),
        ),
    )
}
