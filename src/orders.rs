//! Orders: what a shopper bought at checkout, and the number they pay it by.
//!
//! An order keeps its lines, prices and total as they were at checkout, so a later price change
//! in `menus/` never changes what is owed. Its number is the M-Pesa `AccountReference` and the
//! paybill account number, so it is short, unambiguous on a keypad and read aloud (no `0`/`O`,
//! no `1`/`I`), random rather than sequential, and drawn so that it lives in the shopper's shard
//! (see [`crate::keys`]): the checkout hop writes the order, empties the cart and schedules the
//! STK push in one atomic step.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::keys::shard_of;
use crate::menu::Lang;
use crate::money::Kes;
use crate::msisdn::Msisdn;

/// The characters of an order number: digits and capitals without `0 1 O I`.
pub const ORDER_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Six characters of 32 give about a billion numbers, 16 million per shard.
pub const ORDER_NUMBER_LEN: usize = 6;

/// Draws a random order number in the given shard (see [`crate::keys::shard_of`]).
///
/// Draws are independent, so about one in [`crate::keys::SHARDS`] lands in the shard: 64 draws
/// on average, microseconds in all. Uniqueness is checked when the order is written (the write
/// is guarded on the key being absent), not here.
///
/// `first` holds the characters the number may start with (a shop of [`crate::shops`] has one,
/// the default shop all the others); empty means any.
pub fn draw_order_number(rng: &mut impl Rng, shard: u16, first: &[u8]) -> String {
    let first = if first.is_empty() {
        ORDER_ALPHABET
    } else {
        first
    };
    loop {
        let candidate: String = std::iter::once(first[rng.random_range(0..first.len())])
            .chain(
                (1..ORDER_NUMBER_LEN)
                    .map(|_| ORDER_ALPHABET[rng.random_range(0..ORDER_ALPHABET.len())]),
            )
            .map(char::from)
            .collect();
        if shard_of(&candidate) == shard {
            return candidate;
        }
    }
}

/// Normalises an account number typed by hand (`" dk 10427"` → `"DK10427"`).
pub fn normalise_order_number(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// One line of an order, frozen at checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The catalog id of the product.
    pub product: String,
    pub name: String,
    pub unit_price: Kes,
    pub qty: u32,
}

impl OrderLine {
    pub fn total(&self) -> Kes {
        self.unit_price.times(self.qty)
    }
}

/// Where an order stands. A paid order never leaves `Paid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created; payable by STK push or paybill.
    AwaitingPayment,
    /// The last payment attempt failed; still payable.
    Failed,
    Paid,
    /// Not paid within `DUKA_ORDER_TTL_S`; no longer payable.
    Expired,
}

impl OrderStatus {
    /// True while money for the order is still expected.
    pub fn is_payable(self) -> bool {
        matches!(self, Self::AwaitingPayment | Self::Failed)
    }

    /// The state in words for a person (`duka order`'s text): the JSON name with spaces, so
    /// the text, the JSON and the USSD screens ("Awaiting payment") say the same thing.
    pub fn words(self) -> &'static str {
        match self {
            Self::AwaitingPayment => "awaiting payment",
            Self::Failed => "failed",
            Self::Paid => "paid",
            Self::Expired => "expired",
        }
    }
}

/// What My orders shows of an order, kept in the shopper's profile so that the USSD hop needs no
/// extra read (the order and the profile share a shard, so both change in one atomic step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub number: String,
    pub total: Kes,
    pub status: OrderStatus,
    pub placed_at_ms: i64,
}

/// An order as stored, with everything that happened to it. One JSON value under
/// [`crate::keys::Keys::order`]; every change to it is a guarded commit, so two callbacks racing
/// each other cannot both win.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub number: String,
    /// The shopper who placed it: receipts always go here, whoever paid.
    pub msisdn: Msisdn,
    pub lang: Lang,
    pub lines: Vec<OrderLine>,
    pub total: Kes,
    pub status: OrderStatus,
    pub placed_at_ms: i64,
    /// After this the order is no longer payable (`DUKA_ORDER_TTL_S`).
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at_ms: Option<i64>,
    /// STK push attempts, in order; numbered from 1.
    #[serde(default)]
    pub attempts: Vec<PaymentAttempt>,
    /// Money received, one entry per distinct M-Pesa receipt (or `TransID`).
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// Things an operator must look at.
    #[serde(default)]
    pub flags: Vec<OrderFlag>,
    /// Ids of the outbox messages about this order (receipt, payment notices), oldest first.
    #[serde(default)]
    pub messages: Vec<String>,
    /// Money given back, at most one refund per payment (keyed by its receipt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<Refund>,
}

impl Order {
    /// A new order awaiting payment, with its first STK attempt requested for `payer`.
    pub fn place(
        number: String,
        msisdn: Msisdn,
        lang: Lang,
        lines: Vec<OrderLine>,
        payer: Msisdn,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Self {
        let total = lines.iter().map(OrderLine::total).sum();
        Self {
            number,
            msisdn,
            lang,
            lines,
            total,
            status: OrderStatus::AwaitingPayment,
            placed_at_ms: now_ms,
            expires_at_ms: now_ms + ttl_ms,
            paid_at_ms: None,
            attempts: vec![PaymentAttempt::requested(1, payer, now_ms)],
            payments: Vec::new(),
            flags: Vec::new(),
            messages: Vec::new(),
            refunds: Vec::new(),
        }
    }

    pub fn summary(&self) -> OrderSummary {
        OrderSummary {
            number: self.number.clone(),
            total: self.total,
            status: self.status,
            placed_at_ms: self.placed_at_ms,
        }
    }

    pub fn attempt(&self, n: u32) -> Option<&PaymentAttempt> {
        self.attempts.iter().find(|a| a.n == n)
    }

    pub fn attempt_mut(&mut self, n: u32) -> Option<&mut PaymentAttempt> {
        self.attempts.iter_mut().find(|a| a.n == n)
    }

    /// Items in the order (sum of quantities).
    pub fn item_count(&self) -> u32 {
        self.lines.iter().map(|l| l.qty).sum()
    }

    pub fn flag(&mut self, flag: OrderFlag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }
}

/// One STK push, from the request to its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttempt {
    pub n: u32,
    /// The phone the prompt goes to (the shopper's, or another number they gave).
    pub payer: Msisdn,
    pub state: AttemptState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_desc: Option<String>,
    /// Why the push itself failed, when Daraja refused it or could not be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub requested_at_ms: i64,
    pub updated_at_ms: i64,
    /// STK queries made for this attempt by reconciliation.
    #[serde(default)]
    pub queries: u32,
    /// Callbacks received for this attempt (duplicates included).
    #[serde(default)]
    pub callbacks: u32,
}

impl PaymentAttempt {
    pub fn requested(n: u32, payer: Msisdn, now_ms: i64) -> Self {
        Self {
            n,
            payer,
            state: AttemptState::Requested,
            checkout_request_id: None,
            merchant_request_id: None,
            result_code: None,
            result_desc: None,
            error: None,
            requested_at_ms: now_ms,
            updated_at_ms: now_ms,
            queries: 0,
            callbacks: 0,
        }
    }

    /// True while the attempt may still end in a payment.
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            AttemptState::Requested | AttemptState::Sent | AttemptState::Unknown
        )
    }
}

/// Where an STK push attempt stands (the reference's suggested state machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Scheduled; the push has not been sent yet.
    Requested,
    /// Daraja accepted the push; waiting for the shopper and the callback.
    Sent,
    Succeeded,
    Failed,
    /// The push or its result is unknown (a timeout, a 5xx, no callback): reconciliation queries.
    Unknown,
}

/// Money received for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The M-Pesa receipt (`MpesaReceiptNumber` or `TransID`); `None` when only an STK query
    /// proved the payment (it carries no receipt), until a callback or confirmation supplies it.
    pub receipt: Option<String>,
    pub amount: Kes,
    pub source: PaymentSource,
    pub at_ms: i64,
    /// The STK attempt it settled, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// How a payment reached Duka.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    /// The STK callback.
    Stk,
    /// An STK query answered "paid".
    StkQuery,
    /// A paybill (C2B) confirmation.
    Paybill,
}

/// Something about an order that needs an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderFlag {
    /// Paid more than once (or more than the total): refund the excess.
    Overpaid,
    /// A payment smaller than the total arrived; the order is not paid.
    Underpaid,
    /// A payment for an order that was no longer payable (expired): refund or honour it.
    PaidAfterExpiry,
    /// A success callback whose amount or phone did not match; not counted as paid.
    Mismatch,
}

/// Money given back for one payment: the whole transaction by the Reversal API, or part of it by
/// a B2C payment to the shopper. Changed only by [`crate::payments::apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The receipt of the payment refunded (the refund's key in the order).
    pub receipt: String,
    pub amount: Kes,
    pub method: RefundMethod,
    pub state: RefundState,
    /// Sent with every request for this refund, so Daraja refuses a second one as a duplicate.
    pub originator_conversation_id: String,
    /// Where a B2C refund goes (the shopper's phone); the payer gets a reversal back anyway.
    pub to: Msisdn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_desc: Option<String>,
    /// M-Pesa's id of the refund transaction itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Result callbacks received (duplicates included).
    #[serde(default)]
    pub results: u32,
    pub requested_at_ms: i64,
    pub updated_at_ms: i64,
}

/// How a refund is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundMethod {
    /// The Reversal API: the whole transaction goes back to the payer.
    Reversal,
    /// A B2C `BusinessPayment` of part of the payment to the shopper's phone.
    B2c,
}

/// Where a refund stands: requested → accepted → done / failed / timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Approved by an operator; the request to Daraja is due.
    Requested,
    /// Daraja accepted the request; its result comes to the result URL.
    Accepted,
    Done,
    /// Daraja said no (no money moved); the operator may ask again.
    Failed,
    /// Daraja's queue timed out: the fate is unknown, so it is never re-sent blindly.
    TimedOut,
}

impl RefundState {
    /// True while a result may still come.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn state_words_are_the_json_names_with_spaces() {
        for status in [
            OrderStatus::AwaitingPayment,
            OrderStatus::Failed,
            OrderStatus::Paid,
            OrderStatus::Expired,
        ] {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(
                status.words(),
                json.as_str().unwrap().replace('_', " "),
                "{status:?}"
            );
        }
    }

    #[test]
    fn order_numbers_are_short_unambiguous_and_in_the_requested_shard() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for shard in [0, 17, 63] {
            let number = draw_order_number(&mut rng, shard, &[]);
            assert_eq!(number.len(), ORDER_NUMBER_LEN);
            assert!(
                number.bytes().all(|b| ORDER_ALPHABET.contains(&b)),
                "{number}"
            );
            assert!(!number.contains(['0', '1', 'O', 'I']));
            assert_eq!(shard_of(&number), shard);
        }
    }

    #[test]
    fn consecutive_order_numbers_do_not_follow_a_sequence() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let numbers: std::collections::HashSet<String> = (0..200)
            .map(|_| draw_order_number(&mut rng, 5, &[]))
            .collect();
        assert_eq!(numbers.len(), 200);
    }

    #[test]
    fn typed_account_numbers_are_normalised() {
        assert_eq!(normalise_order_number(" dk 10427 "), "DK10427");
        assert_eq!(normalise_order_number("d7k-2q9"), "D7K2Q9");
    }
}
