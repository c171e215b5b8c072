//! Realistic Daraja identifiers from a seeded generator, so a test that fixes the seed sees the
//! same ids on every run.
//!
//! Shapes: `MerchantRequestID` `29461-71235519-1`; `CheckoutRequestID` `ws_CO_` + the EAT time
//! as `DDMMYYYYHHmmss` + 3 digits + 9 digits (Daraja's real ids end with the payer's number
//! without `254`; ours end with random digits so that the sandbox's logs carry no number);
//! receipts such as `QKH94M1Z11`, whose first letter follows the year as M-Pesa's do.

use chrono::{DateTime, Datelike as _, Utc};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};

use crate::mpesa::clock::EAT;

const UPPER_AND_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub(crate) struct Ids {
    rng: SmallRng,
}

impl Ids {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    pub(crate) fn merchant_request_id(&mut self) -> String {
        format!(
            "{}-{}-{}",
            self.rng.random_range(10_000..100_000),
            self.rng.random_range(10_000_000..100_000_000),
            self.rng.random_range(1..10)
        )
    }

    /// The `requestId` of an error envelope, shaped like Daraja's (`11370-2914452-1`).
    pub(crate) fn request_id(&mut self) -> String {
        format!(
            "{}-{}-{}",
            self.rng.random_range(10_000..100_000),
            self.rng.random_range(1_000_000..10_000_000),
            self.rng.random_range(1..10)
        )
    }

    pub(crate) fn originator_conversation_id(&mut self) -> String {
        format!(
            "{}-{}-{}",
            self.rng.random_range(1_000..10_000),
            self.rng.random_range(10_000_000..100_000_000),
            self.rng.random_range(1..10)
        )
    }

    pub(crate) fn checkout_request_id(&mut self, now: DateTime<Utc>) -> String {
        format!(
            "ws_CO_{}{:03}{:09}",
            now.with_timezone(&EAT).format("%d%m%Y%H%M%S"),
            self.rng.random_range(0..1_000),
            self.rng.random_range(700_000_000..800_000_000u32)
        )
    }

    /// An M-Pesa receipt (`TransID`, `MpesaReceiptNumber`): 10 capitals and digits, the first a
    /// letter that advances each year (`S` in 2024, `U` in 2026).
    pub(crate) fn receipt(&mut self, now: DateTime<Utc>) -> String {
        let year_letter = u8::try_from((now.year() - 2006).rem_euclid(26)).unwrap_or(0);
        let mut receipt = String::with_capacity(10);
        receipt.push(char::from(b'A' + year_letter));
        receipt.push(char::from(b'A' + self.rng.random_range(0..26u8)));
        for _ in 0..8 {
            receipt.push(self.pick(UPPER_AND_DIGITS));
        }
        receipt
    }

    /// An opaque bearer token, 28 characters like Daraja's.
    pub(crate) fn access_token(&mut self) -> String {
        (0..28).map(|_| self.pick(ALPHANUMERIC)).collect()
    }

    /// A coin toss from the seeded generator, e.g. whether a callback's `Amount` is `450` or `450.00`.
    pub(crate) fn coin(&mut self) -> bool {
        self.rng.random_bool(0.5)
    }

    fn pick(&mut self, alphabet: &[u8]) -> char {
        char::from(alphabet[self.rng.random_range(0..alphabet.len())])
    }
}

/// A stand-in for C2B v1's SHA-256 hex of the MSISDN: 64 hex digits, deterministic, derived from
/// the number. It is not SHA-256 (the crate has no hash dependency, and Duka must treat the value
/// as opaque anyway).
pub(crate) fn fake_msisdn_hash(digits: &str) -> String {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    (0u8..4)
        .map(|lane| {
            let mut hash = FNV_OFFSET;
            for byte in std::iter::once(lane).chain(digits.bytes()) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
            format!("{hash:016x}")
        })
        .collect()
}

/// C2B v2's masked MSISDN: `2547 ***** 678`.
pub(crate) fn masked_msisdn(digits: &str) -> String {
    let head: String = digits.chars().take(4).collect();
    let tail: String = digits
        .chars()
        .skip(digits.chars().count().saturating_sub(3))
        .collect();
    format!("{head} ***** {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-24T11:30:06Z".parse().unwrap()
    }

    fn all_digits(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_digit())
    }

    #[test]
    fn ids_have_daraja_s_shapes() {
        let mut ids = Ids::new(7);
        let merchant = ids.merchant_request_id();
        let parts: Vec<&str> = merchant.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [5, 8, 1]);
        assert!(parts.iter().all(|p| all_digits(p)));

        let checkout = ids.checkout_request_id(at());
        let digits = checkout.strip_prefix("ws_CO_24112026143006").unwrap();
        assert_eq!(digits.len(), 12);
        assert!(all_digits(digits));

        let receipt = ids.receipt(at());
        assert_eq!(receipt.len(), 10);
        assert!(receipt.starts_with('U'));
        assert!(receipt
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));

        assert_eq!(ids.access_token().len(), 28);
    }

    #[test]
    fn the_same_seed_gives_the_same_ids() {
        let run = |seed| {
            let mut ids = Ids::new(seed);
            (ids.checkout_request_id(at()), ids.receipt(at()))
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn the_hashed_msisdn_is_64_hex_digits_and_stable() {
        let hash = fake_msisdn_hash("254712345678");
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(hash, fake_msisdn_hash("254712345678"));
        assert_ne!(hash, fake_msisdn_hash("254712345679"));
    }

    #[test]
    fn the_masked_msisdn_has_the_v2_shape() {
        assert_eq!(masked_msisdn("254712345678"), "2547 ***** 678");
    }
}
