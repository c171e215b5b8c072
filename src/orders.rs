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
use crate::money::Kes;

/// The characters of an order number: digits and capitals without `0 1 O I`.
pub const ORDER_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Six characters of 32 give about a billion numbers, 16 million per shard.
pub const ORDER_NUMBER_LEN: usize = 6;

/// Draws a random order number in the given shard (see [`crate::keys::shard_of`]).
///
/// Draws are independent, so about one in [`crate::keys::SHARDS`] lands in the shard: 64 draws
/// on average, microseconds in all. Uniqueness is checked when the order is written (the write
/// is guarded on the key being absent), not here.
pub fn draw_order_number(rng: &mut impl Rng, shard: u16) -> String {
    loop {
        let candidate: String = (0..ORDER_NUMBER_LEN)
            .map(|_| char::from(ORDER_ALPHABET[rng.random_range(0..ORDER_ALPHABET.len())]))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn order_numbers_are_short_unambiguous_and_in_the_requested_shard() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for shard in [0, 17, 63] {
            let number = draw_order_number(&mut rng, shard);
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
        let numbers: std::collections::HashSet<String> =
            (0..200).map(|_| draw_order_number(&mut rng, 5)).collect();
        assert_eq!(numbers.len(), 200);
    }

    #[test]
    fn typed_account_numbers_are_normalised() {
        assert_eq!(normalise_order_number(" dk 10427 "), "DK10427");
        assert_eq!(normalise_order_number("d7k-2q9"), "D7K2Q9");
    }
}
