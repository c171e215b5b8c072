//! `duka mpesa find RECEIPT`: finding a payment whose confirmation never reached Duka.
//!
//! A C2B confirmation posted while every Duka was down is not sent again, and an STK payment
//! whose push reply and callback both went missing leaves Duka nothing to query. The shopper
//! still has the SMS M-Pesa sent them, with its receipt. The operator asks Daraja's Transaction
//! Status API about that receipt ([`crate::mpesa::status`]); a completed payment is then applied
//! to its order as the paybill confirmation it should have been ([`Event::Paybill`]), so the
//! order is paid, or flagged overpaid or late, and the receipt SMS is queued, exactly as if the
//! confirmation had come, and never twice: the payment state machine counts a receipt once.
//!
//! # The lookup record
//! One per receipt, in the receipt's shard ([`crate::keys::Keys::lookup`]):
//! requested → asked → applied / not found / unplaced / timed out / failed. Asking again while
//! a query is in flight changes nothing; asking again after it ended sends a new query (a query
//! moves no money, so a repeat is harmless, only billed). A result Duka did not ask for is
//! acknowledged and ignored: only a receipt an operator asked about can pay an order.
//!
//! # Which order
//! The result carries no account number. In order: the order the operator named (`--order`),
//! a `BillReferenceNumber` if the result has one, the order the payment's C2B validation named
//! ([`crate::keys::Keys::c2b_seen`]). Without any, the lookup ends `unplaced` and says so.

use serde::{Deserialize, Serialize};

use super::settle::{load_order, settle, AuditEntry, SettleError};
use super::Event;
use crate::jobs::{Job, JobOutcome, JobQueue};
use crate::metrics::Metrics;
use crate::money::Kes;
use crate::mpesa::status::{is_receipt, FoundTransaction, StatusQuery, StatusResult};
use crate::shop::Shop;
use crate::store::{from_json, to_json, Batch, Commit, StoreError};

/// How long a lookup record is kept.
const LOOKUP_TTL_MS: u64 = 30 * 24 * 3_600_000;
/// How long a query keeps being re-sent when Daraja cannot be reached, before it fails.
const ASK_PATIENCE_MS: i64 = 10 * 60_000;
/// A query in flight for longer than this may be asked again (its result may never come).
const IN_FLIGHT_MS: i64 = 5 * 60_000;

/// Where a lookup is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupState {
    /// Written; the query job has not reached Daraja yet.
    Requested,
    /// Daraja took the query; its result is awaited.
    Asked,
    /// M-Pesa has a completed payment and it is on its order (now, or already before).
    Applied,
    /// M-Pesa does not know the receipt, or the payment did not complete.
    NotFound,
    /// M-Pesa has the payment but Duka cannot tell which order it is for.
    Unplaced,
    /// Daraja's queue timed out: nothing is known; ask again.
    TimedOut,
    /// Daraja refused the query (credentials, a malformed receipt) or stayed unreachable.
    Failed,
}

impl LookupState {
    /// True once nothing more will happen without a new `duka mpesa find`.
    pub fn is_final(self) -> bool {
        !matches!(self, LookupState::Requested | LookupState::Asked)
    }

    pub fn words(self) -> &'static str {
        match self {
            LookupState::Requested => "requested",
            LookupState::Asked => "asked, waiting for M-Pesa's answer",
            LookupState::Applied => "applied",
            LookupState::NotFound => "not found",
            LookupState::Unplaced => "found, but for no order Duka can tell",
            LookupState::TimedOut => "timed out in Daraja's queue",
            LookupState::Failed => "failed",
        }
    }
}

/// What M-Pesa said it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundPayment {
    pub amount: Kes,
    pub status: String,
    pub reason_type: String,
    /// The payer as `2547******78` (never the whole number or the name).
    pub payer: String,
}

impl FoundPayment {
    fn of(found: &FoundTransaction) -> Self {
        Self {
            amount: found.amount,
            status: found.status.clone(),
            reason_type: found.reason_type.clone(),
            payer: masked_party(&found.debit_party),
        }
    }
}

/// An operator's lookup of one receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub receipt: String,
    /// The order it is for, when known.
    pub order: Option<String>,
    pub state: LookupState,
    /// Queries asked for this receipt so far.
    pub tries: u32,
    pub requested_at_ms: i64,
    pub updated_at_ms: i64,
    /// What Daraja or M-Pesa said, as they said it (a refusal, a `ResultDesc`).
    pub said: Option<String>,
    pub found: Option<FoundPayment>,
    /// What applying the payment did to its order, for a person.
    pub applied: Option<String>,
    /// Asked by Duka itself, to tell a paybill payment from an STK payment's echo
    /// ([`check_fold`]), rather than by an operator.
    #[serde(default)]
    pub fold_check: bool,
}

/// Why a lookup was not started.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("{0:?} is not an M-Pesa receipt number (10 letters and digits, like SGL7M2XK4P)")]
    NotAReceipt(String),
    #[error("no order {0}")]
    NoOrder(String),
    #[error("payment {receipt} is already on order {order}: it is not applied to a second order")]
    AppliedElsewhere { receipt: String, order: String },
    #[error("the lookup of {0} kept changing under us; try again")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The receipt as M-Pesa writes it, or why it is not one.
///
/// # Errors
/// [`FindError::NotAReceipt`].
pub fn normalise_receipt(raw: &str) -> Result<String, FindError> {
    let receipt = raw.trim().to_ascii_uppercase();
    if is_receipt(&receipt) {
        Ok(receipt)
    } else {
        Err(FindError::NotAReceipt(raw.to_owned()))
    }
}

/// Reads the lookup of `receipt` (`None` when nobody asked).
///
/// # Errors
/// The store fails.
pub async fn load(shop: &Shop, receipt: &str) -> Result<Option<Lookup>, StoreError> {
    let raw = shop.store.get_one(&shop.keys.lookup(receipt)).await?;
    Ok(from_json(raw.as_deref()))
}

/// Starts (or joins) the lookup of `receipt`, for `order` if the operator named one.
///
/// A receipt the named order already holds is answered at once, without asking Daraja.
///
/// # Errors
/// See [`FindError`].
pub async fn request(shop: &Shop, receipt: &str, order: Option<&str>) -> Result<Lookup, FindError> {
    let receipt = normalise_receipt(receipt)?;
    let order = order.map(crate::orders::normalise_order_number);
    let now = shop.clock.now_ms();
    if let Some(number) = &order {
        let held = load_order(shop, number)
            .await?
            .ok_or_else(|| FindError::NoOrder(number.clone()))?;
        if let Some(payment) = held
            .payments
            .iter()
            .find(|p| p.receipt.as_deref() == Some(receipt.as_str()))
        {
            return Ok(Lookup {
                receipt,
                order: Some(number.clone()),
                state: LookupState::Applied,
                tries: 0,
                requested_at_ms: now,
                updated_at_ms: now,
                said: None,
                found: None,
                applied: Some(format!(
                    "order {number} already holds this payment (KES {})",
                    payment.amount
                )),
                fold_check: false,
            });
        }
    }
    start(shop, receipt, order, false).await
}

/// Asks M-Pesa whether the paybill payment `receipt`, which order `number` counted as the C2B
/// echo of its receipt-less STK payment of the same amount, was that echo or a second payment
/// (see [`crate::payments::Outcome::folded`]); the answer comes as [`Event::FoldChecked`].
pub async fn check_fold(shop: &Shop, number: &str, receipt: &str) -> JobOutcome {
    match start(shop, receipt.to_owned(), Some(number.to_owned()), true).await {
        Ok(_) => JobOutcome::Done,
        Err(FindError::Store(e)) => retry_after_store_trouble(shop, &e),
        Err(e) => {
            tracing::warn!(error.message = %e, order.number = number, "could not check a folded paybill payment");
            JobOutcome::Done
        }
    }
}

/// Writes a new lookup of `receipt` (or joins the one in flight) with its query job.
async fn start(
    shop: &Shop,
    receipt: String,
    order: Option<String>,
    fold_check: bool,
) -> Result<Lookup, FindError> {
    let now = shop.clock.now_ms();
    let key = shop.keys.lookup(&receipt);
    for _ in 0..5 {
        let raw = shop.store.get_one(&key).await?;
        let earlier: Option<Lookup> = from_json(raw.as_deref());
        if let Some(earlier) = &earlier {
            if let (LookupState::Applied, false, Some(held), Some(asked)) =
                (earlier.state, earlier.fold_check, &earlier.order, &order)
            {
                if held != asked {
                    return Err(FindError::AppliedElsewhere {
                        receipt,
                        order: held.clone(),
                    });
                }
            }
            let in_flight = !earlier.state.is_final() && now - earlier.updated_at_ms < IN_FLIGHT_MS;
            let same_order = order.is_none() || order == earlier.order;
            let answered = earlier.state == LookupState::Applied && !fold_check;
            if (in_flight || answered) && same_order && earlier.fold_check == fold_check {
                return Ok(earlier.clone());
            }
        }
        let lookup = Lookup {
            receipt: receipt.clone(),
            // A retry after a timeout or a refusal keeps the order named before; an answer that
            // could not be placed (or placed elsewhere) does not carry a wrong guess forward.
            order: order.clone().or_else(|| {
                earlier
                    .as_ref()
                    .filter(|e| matches!(e.state, LookupState::TimedOut | LookupState::Failed))
                    .and_then(|e| e.order.clone())
            }),
            state: LookupState::Requested,
            tries: earlier.as_ref().map_or(0, |e| e.tries) + 1,
            requested_at_ms: now,
            updated_at_ms: now,
            said: None,
            found: None,
            applied: None,
            fold_check,
        };
        let job = Job::Find {
            receipt: receipt.clone(),
        };
        let mut batch = Batch::new();
        batch
            .guard(&key, raw.as_deref())
            .set(&key, to_json(&lookup), Some(LOOKUP_TTL_MS));
        JobQueue::schedule(shop, &mut batch, &job, now);
        if shop.store.commit(&batch).await? == Commit::Applied {
            shop.jobs.wake(job.shard());
            tracing::info!(mpesa.receipt = %receipt, "payment lookup requested");
            return Ok(lookup);
        }
    }
    Err(FindError::Contended(receipt))
}

/// Rewrites the lookup of `receipt` with `change`, guarded; `Ok(None)` when there is none or
/// `change` declines (returns false).
async fn update(
    shop: &Shop,
    receipt: &str,
    mut change: impl FnMut(&mut Lookup) -> bool,
) -> Result<Option<Lookup>, StoreError> {
    let key = shop.keys.lookup(receipt);
    for _ in 0..5 {
        let raw = shop.store.get_one(&key).await?;
        let Some(mut lookup) = from_json::<Lookup>(raw.as_deref()) else {
            return Ok(None);
        };
        if !change(&mut lookup) {
            return Ok(None);
        }
        lookup.updated_at_ms = shop.clock.now_ms();
        let mut batch = Batch::new();
        batch
            .guard(&key, raw.as_deref())
            .set(&key, to_json(&lookup), Some(LOOKUP_TTL_MS));
        if shop.store.commit(&batch).await? == Commit::Applied {
            return Ok(Some(lookup));
        }
    }
    Err(StoreError::Protocol(format!(
        "the lookup of {receipt} kept changing under five tries"
    )))
}

impl super::worker::PaymentJobs {
    /// Sends the transaction status query of a requested lookup.
    pub async fn find(&self, shop: &Shop, metrics: &Metrics, receipt: &str) -> JobOutcome {
        let now = shop.clock.now_ms();
        let lookup = match load(shop, receipt).await {
            Ok(Some(lookup)) if lookup.state == LookupState::Requested => lookup,
            Ok(_) => return JobOutcome::Done,
            Err(e) => return retry_after_store_trouble(shop, &e),
        };
        let base = self.callback_url.trim_end_matches("/stk");
        let (result_url, timeout_url) = (
            format!("{base}/status/result"),
            format!("{base}/status/timeout"),
        );
        let query = StatusQuery {
            receipt,
            remarks: "Finding a missed payment",
            result_url: &result_url,
            timeout_url: &timeout_url,
        };
        let (state, said) = match self.daraja.transaction_status(&query).await {
            Ok(_) => {
                metrics.inc("duka_mpesa_status_queries_total", &[("outcome", "asked")]);
                (LookupState::Asked, None)
            }
            Err(e)
                if (e.never_arrived() || e.is_ambiguous() || e.is_throttled())
                    && now - lookup.requested_at_ms < ASK_PATIENCE_MS =>
            {
                // A query moves no money: asking twice costs a query, never a payment.
                metrics.inc("duka_mpesa_status_queries_total", &[("outcome", "retry")]);
                tracing::warn!(mpesa.receipt = receipt, error.message = %e, "transaction status query got no answer; asking again later");
                return JobOutcome::RetryAt(now + 15_000);
            }
            Err(e) => {
                metrics.inc("duka_mpesa_status_queries_total", &[("outcome", "refused")]);
                tracing::warn!(mpesa.receipt = receipt, error.message = %e, "transaction status query refused");
                (LookupState::Failed, Some(e.to_string()))
            }
        };
        let written = update(shop, receipt, |l| {
            if l.state != LookupState::Requested {
                return false;
            }
            l.state = state;
            l.said.clone_from(&said);
            true
        })
        .await;
        match written {
            Ok(_) => JobOutcome::Done,
            Err(e) => retry_after_store_trouble(shop, &e),
        }
    }
}

fn retry_after_store_trouble(shop: &Shop, e: &StoreError) -> JobOutcome {
    tracing::warn!(error.message = %e, "store failed in a payment lookup; retrying");
    JobOutcome::RetryAt(shop.clock.now_ms() + 5_000)
}

/// What a status callback did, for the route's answer and its metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Recorded (and applied, when it paid): acknowledge.
    Recorded(&'static str),
    /// Nothing to do (unreadable, not ours, already final): acknowledge.
    Ignored(&'static str),
}

/// Applies a transaction status result (or, `timeout`, a queue timeout) to its lookup and, when
/// it proves a payment, to its order.
///
/// # Errors
/// The store failed: the route answers 503 so that Daraja may post it again.
pub async fn on_result(
    shop: &Shop,
    body: &[u8],
    timeout: bool,
    audit: AuditEntry,
) -> Result<(Handled, Option<String>), SettleError> {
    let result = match StatusResult::parse(body) {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error.message = %e, "unreadable transaction status callback acknowledged and ignored");
            return Ok((Handled::Ignored("malformed"), None));
        }
    };
    let Some(receipt) = result.receipt.clone() else {
        tracing::error!(
            "transaction status callback names no receipt; acknowledged, nothing changed"
        );
        return Ok((Handled::Ignored("unknown_lookup"), None));
    };
    let Some(lookup) = load(shop, &receipt).await? else {
        tracing::error!(mpesa.receipt = %receipt, "transaction status result for a receipt nobody asked about; acknowledged, nothing changed");
        return Ok((Handled::Ignored("unknown_lookup"), None));
    };
    if lookup.state.is_final() {
        return Ok((Handled::Ignored("duplicate"), None));
    }
    let said = Some(result.result_desc.clone()).filter(|s| !s.is_empty());
    let found = result.found.as_ref();
    let (state, order, applied, paid) = match found {
        _ if timeout => (LookupState::TimedOut, lookup.order.clone(), None, None),
        Some(found) if found.completed() => {
            // The order the payment's C2B validation named, if it had one: it wins over a
            // guess, and an operator naming another order is told rather than obeyed.
            let seen = shop
                .store
                .get_one(&shop.keys.c2b_seen(&receipt))
                .await?
                .and_then(|raw| String::from_utf8(raw).ok());
            let named = lookup.order.clone().or_else(|| {
                found
                    .bill_reference
                    .as_deref()
                    .map(crate::orders::normalise_order_number)
            });
            let conflict = match (&named, &seen) {
                (Some(named), Some(seen)) if named != seen => Some(format!(
                    "M-Pesa's validation of this payment named order {seen}, not {named}: nothing applied; check with the shopper"
                )),
                _ => None,
            };
            let order = if conflict.is_some() {
                None
            } else {
                named.or(seen)
            };
            match order {
                None => (LookupState::Unplaced, lookup.order.clone(), conflict, None),
                Some(number) => {
                    let event = if lookup.fold_check {
                        Event::FoldChecked {
                            trans_id: receipt.clone(),
                            amount: found.amount,
                            by_stk: found.by_stk(),
                        }
                    } else {
                        Event::Paybill {
                            trans_id: receipt.clone(),
                            amount: found.amount,
                        }
                    };
                    match settle(shop, &number, &event, Some(audit)).await? {
                        None => (
                            LookupState::Unplaced,
                            Some(number.clone()),
                            Some(format!("there is no order {number}")),
                            None,
                        ),
                        Some(settled) => {
                            let outcome = &settled.outcome;
                            let words = if outcome.became_paid {
                                format!("order {number} is now paid; its receipt SMS is queued")
                            } else if outcome.duplicate && lookup.fold_check {
                                format!("the STK payment of order {number} and its C2B echo: one payment")
                            } else if outcome.duplicate {
                                format!("order {number} already held this payment")
                            } else if !outcome.flagged.is_empty() {
                                format!(
                                    "recorded on order {number}, which needs an operator: {}",
                                    outcome
                                        .flagged
                                        .iter()
                                        .map(|f| format!("{f:?}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            } else {
                                format!("recorded on order {number}")
                            };
                            let paid = outcome.became_paid.then(|| number.clone());
                            (LookupState::Applied, Some(number), Some(words), paid)
                        }
                    }
                }
            }
        }
        Some(found) => (
            LookupState::NotFound,
            lookup.order.clone(),
            Some(format!(
                "M-Pesa says this payment is {:?}, so it moved no money",
                found.status
            )),
            None,
        ),
        None => (LookupState::NotFound, lookup.order.clone(), None, None),
    };
    let found_payment = found.map(FoundPayment::of);
    update(shop, &receipt, |l| {
        if l.state.is_final() {
            return false;
        }
        l.state = state;
        l.order.clone_from(&order);
        l.said.clone_from(&said);
        l.found.clone_from(&found_payment);
        l.applied.clone_from(&applied);
        true
    })
    .await?;
    tracing::info!(mpesa.receipt = %receipt, lookup.state = state.words(), "payment lookup answered");
    let label = match state {
        LookupState::Applied if paid.is_some() => "paid",
        LookupState::Applied => "applied",
        LookupState::NotFound => "not_found",
        LookupState::Unplaced => "unplaced",
        LookupState::TimedOut => "timed_out",
        _ => "recorded",
    };
    Ok((Handled::Recorded(label), paid))
}

/// `254712345678 - Jane Doe` → `2547******78`: the payer, masked, without the name.
fn masked_party(party: &str) -> String {
    let number = party.split(" - ").next().unwrap_or_default().trim();
    match crate::msisdn::Msisdn::parse(number) {
        Ok(msisdn) => msisdn.masked(),
        Err(_) if number.chars().count() > 7 => {
            let chars: Vec<char> = number.chars().collect();
            let head: String = chars[..4].iter().collect();
            let tail: String = chars[chars.len() - 2..].iter().collect();
            format!("{head}******{tail}")
        }
        Err(_) => "unknown".to_owned(),
    }
}

/// The lookup, as text for a person.
pub fn render(lookup: &Lookup) -> String {
    use std::fmt::Write as _;
    let mut out = format!("Payment {}: {}\n", lookup.receipt, lookup.state.words());
    if let Some(found) = &lookup.found {
        let _ = writeln!(
            out,
            "  M-Pesa: KES {} from {}, {} ({})",
            found.amount, found.payer, found.status, found.reason_type
        );
    }
    if let Some(said) = &lookup.said {
        let _ = writeln!(out, "  said: {said}");
    }
    if let Some(applied) = &lookup.applied {
        let _ = writeln!(out, "  {applied}");
    }
    match lookup.state {
        LookupState::Unplaced => {
            out.push_str("  Ask the shopper which order they paid for, then: duka mpesa find RECEIPT --order ORDER_NO\n");
        }
        LookupState::TimedOut | LookupState::Failed => {
            out.push_str("  Nothing changed; run duka mpesa find again.\n");
        }
        LookupState::Requested | LookupState::Asked => {
            out.push_str(
                "  The answer is applied when it comes; run duka mpesa find again to see it.\n",
            );
        }
        LookupState::Applied | LookupState::NotFound => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_normalised_and_checked() {
        assert_eq!(normalise_receipt(" sgl7m2xk4p ").unwrap(), "SGL7M2XK4P");
        assert!(normalise_receipt("SGL7M2XK4").is_err());
        assert!(normalise_receipt("SGL7M2XK4P*").is_err());
    }

    #[test]
    fn the_payer_is_masked_and_the_name_dropped() {
        assert_eq!(masked_party("254712345678 - Jane Doe"), "2547******78");
        assert_eq!(masked_party("0712345678 - Jane"), "2547******78");
        assert_eq!(masked_party("2547******678 - J"), "2547******78");
        assert_eq!(masked_party("600984 - Duka"), "unknown");
    }

    #[test]
    fn only_requested_and_asked_lookups_are_open() {
        assert!(!LookupState::Requested.is_final());
        assert!(!LookupState::Asked.is_final());
        for state in [
            LookupState::Applied,
            LookupState::NotFound,
            LookupState::Unplaced,
            LookupState::TimedOut,
            LookupState::Failed,
        ] {
            assert!(state.is_final());
        }
    }
}
