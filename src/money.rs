//! Kenya shillings, as `rust_decimal`, never as a float.
//!
//! [`Kes`] is every amount Duka handles: catalog prices, cart and order totals, what M-Pesa reports
//! as paid. The one place an amount becomes an integer is [`Kes::to_mpesa_whole_shillings`], the
//! rule for what Daraja is asked to charge:
//!
//! > **Daraja charges whole shillings. A total with a fraction is rounded up to the next whole
//! > shilling, so the shop never collects less than the order is worth; a total of zero or less is
//! > not payable.**
//!
//! Catalog prices are checked to be whole shillings when the menus load, so totals are whole and
//! the rounding is a guard, not a habit. An amount reported back by M-Pesa (`450` or `450.00`)
//! is compared with the order's whole-shilling total as a decimal.

use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An amount in Kenya shillings.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Kes(Decimal);

/// Why an amount is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a number: {0:?}")]
    NotANumber(String),
    #[error("the amount must be more than zero")]
    NotPositive,
    #[error("the amount is too large for M-Pesa")]
    TooLarge,
}

impl Kes {
    pub const ZERO: Kes = Kes(Decimal::ZERO);

    pub fn new(amount: Decimal) -> Self {
        Self(amount)
    }

    pub fn whole(shillings: i64) -> Self {
        Self(Decimal::from(shillings))
    }

    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// True when the amount has no cents (`450` and `450.00` both are).
    pub fn is_whole(self) -> bool {
        self.0.fract().is_zero()
    }

    /// The amount multiplied by a quantity (a cart line).
    pub fn times(self, quantity: u32) -> Self {
        Self(self.0 * Decimal::from(quantity))
    }

    /// What Daraja is asked to charge for this amount: see the module docs for the rule.
    ///
    /// # Errors
    /// [`AmountError::NotPositive`] for zero or less, [`AmountError::TooLarge`] past `u32`.
    pub fn to_mpesa_whole_shillings(self) -> Result<u32, AmountError> {
        let rounded = self
            .0
            .round_dp_with_strategy(0, RoundingStrategy::AwayFromZero);
        if rounded <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        rounded.to_u32().ok_or(AmountError::TooLarge)
    }

    /// Parses a decimal string such as M-Pesa's `TransAmount` (`"450.00"`).
    ///
    /// # Errors
    /// [`AmountError::NotANumber`] when the text is not a decimal number.
    pub fn parse(raw: &str) -> Result<Self, AmountError> {
        Decimal::from_str(raw.trim())
            .map(Self)
            .map_err(|_| AmountError::NotANumber(raw.to_owned()))
    }

    /// Reads an amount from JSON, where Daraja sends either `450` or `450.00` or a string.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Number(n) => Decimal::from_str(&n.to_string()).ok().map(Self),
            serde_json::Value::String(s) => Self::parse(s).ok(),
            _ => None,
        }
    }
}

impl std::iter::Sum for Kes {
    fn sum<I: Iterator<Item = Kes>>(iter: I) -> Self {
        Self(iter.map(|k| k.0).sum())
    }
}

impl std::ops::Add for Kes {
    type Output = Kes;
    fn add(self, rhs: Kes) -> Kes {
        Kes(self.0 + rhs.0)
    }
}

/// Renders `1800` as `1,800` and `12.5` as `12.50`: the digits a shopper reads on a screen or SMS.
impl fmt::Display for Kes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0.normalize();
        let negative = value.is_sign_negative();
        let whole = value.abs().trunc().to_string();
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if negative {
            f.write_str("-")?;
        }
        f.write_str(&grouped)?;
        let fraction = value.abs().fract();
        if !fraction.is_zero() {
            let cents = (fraction * Decimal::from(100))
                .round()
                .to_u32()
                .unwrap_or(0);
            write!(f, ".{cents:02}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kes(s: &str) -> Kes {
        Kes::parse(s).unwrap()
    }

    #[test]
    fn whole_amounts_go_to_mpesa_unchanged() {
        assert_eq!(kes("450").to_mpesa_whole_shillings(), Ok(450));
        assert_eq!(kes("450.00").to_mpesa_whole_shillings(), Ok(450));
    }

    #[test]
    fn any_fraction_is_rounded_up_so_the_shop_never_collects_less() {
        assert_eq!(kes("450.01").to_mpesa_whole_shillings(), Ok(451));
        assert_eq!(kes("450.50").to_mpesa_whole_shillings(), Ok(451));
        assert_eq!(kes("0.10").to_mpesa_whole_shillings(), Ok(1));
    }

    #[test]
    fn zero_and_negative_amounts_are_not_payable() {
        assert_eq!(
            kes("0").to_mpesa_whole_shillings(),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            kes("-5").to_mpesa_whole_shillings(),
            Err(AmountError::NotPositive)
        );
        assert_eq!(
            kes("99999999999").to_mpesa_whole_shillings(),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn json_amounts_are_read_as_decimals_whatever_their_shape() {
        let read = |s: &str| Kes::from_json(&serde_json::from_str(s).unwrap());
        assert_eq!(read("450"), Some(kes("450")));
        assert_eq!(read("450.00"), Some(kes("450")));
        assert_eq!(read("\"450.00\""), Some(kes("450")));
        assert_eq!(read("null"), None);
        assert_eq!(read("\"abc\""), None);
    }

    #[test]
    fn display_groups_thousands_and_keeps_cents() {
        assert_eq!(kes("900").to_string(), "900");
        assert_eq!(kes("1800").to_string(), "1,800");
        assert_eq!(kes("1234567").to_string(), "1,234,567");
        assert_eq!(kes("12.5").to_string(), "12.50");
        assert_eq!(kes("450.00").to_string(), "450");
    }

    #[test]
    fn a_line_total_is_price_times_quantity() {
        assert_eq!(kes("190").times(3), kes("570"));
        assert_eq!(
            [kes("230"), kes("190").times(2)].into_iter().sum::<Kes>(),
            kes("610")
        );
    }
}
