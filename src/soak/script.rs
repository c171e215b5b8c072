//! What happens to each shopper's money, drawn from the seed: how the phone answers the STK
//! push, how Daraja delivers the result, and whether the shopper pays at the paybill instead
//! (or as well).

use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::sandbox::mpesa::{Delivery, Outcome};

/// One shopper's script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    Success,
    Cancel,
    WrongPin,
    Timeout,
    DuplicateCallback,
    LateCallback,
    LostCallback,
    /// The push is cancelled; the shopper pays the total at the paybill.
    Paybill,
    /// The push is cancelled; the shopper pays more than the total at the paybill.
    PaybillOverpay,
    /// The push succeeds and the shopper pays at the paybill too.
    DoublePayment,
}

impl Fate {
    pub const ALL: [Fate; 10] = [
        Fate::Success,
        Fate::Cancel,
        Fate::WrongPin,
        Fate::Timeout,
        Fate::DuplicateCallback,
        Fate::LateCallback,
        Fate::LostCallback,
        Fate::Paybill,
        Fate::PaybillOverpay,
        Fate::DoublePayment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fate::Success => "success",
            Fate::Cancel => "cancel (1032)",
            Fate::WrongPin => "wrong PIN (2001)",
            Fate::Timeout => "timeout (1037)",
            Fate::DuplicateCallback => "duplicate callback",
            Fate::LateCallback => "late callback",
            Fate::LostCallback => "lost callback",
            Fate::Paybill => "paybill instead",
            Fate::PaybillOverpay => "paybill, overpaid",
            Fate::DoublePayment => "push + paybill",
        }
    }

    /// Shopper `index`'s fate: a third succeed plainly, the rest spread over the others.
    pub fn draw(seed: u64, index: u64) -> Self {
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match rng.random_range(0..30u32) {
            0..=9 => Fate::Success,
            10..=11 => Fate::Cancel,
            12..=13 => Fate::WrongPin,
            14..=15 => Fate::Timeout,
            16..=18 => Fate::DuplicateCallback,
            19..=21 => Fate::LateCallback,
            22..=24 => Fate::LostCallback,
            25..=26 => Fate::Paybill,
            27 => Fate::PaybillOverpay,
            _ => Fate::DoublePayment,
        }
    }

    /// How the sandbox's phone answers this shopper's push.
    pub fn outcome(self) -> Outcome {
        match self {
            Fate::Success | Fate::DoublePayment => Outcome::paid(),
            Fate::Cancel | Fate::Paybill | Fate::PaybillOverpay => Outcome::code(1032),
            Fate::WrongPin => Outcome::code(2001),
            Fate::Timeout => Outcome::code(1037),
            Fate::DuplicateCallback => Outcome::paid().delivered(Delivery::Twice),
            Fate::LateCallback => Outcome::paid().delivered(Delivery::Late(Duration::from_secs(4))),
            Fate::LostCallback => Outcome::paid().delivered(Delivery::Drop),
        }
    }

    /// The paybill payment this shopper makes for an order of `total`, if any.
    pub fn paybill(self, total: u64) -> Option<u64> {
        match self {
            Fate::Paybill | Fate::DoublePayment => Some(total),
            Fate::PaybillOverpay => Some(total + 50),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_are_repeatable_and_all_drawn() {
        let drawn: std::collections::BTreeSet<Fate> =
            (0..2_000).map(|i| Fate::draw(7, i)).collect();
        assert_eq!(drawn.len(), Fate::ALL.len());
        assert!((0..100).all(|i| Fate::draw(7, i) == Fate::draw(7, i)));
        assert_ne!(
            (0..50).map(|i| Fate::draw(7, i)).collect::<Vec<_>>(),
            (0..50).map(|i| Fate::draw(8, i)).collect::<Vec<_>>()
        );
    }
}
