//! Kenyan mobile numbers, parsed once at the edge.
//!
//! Africa's Talking sends `+2547…`, a shopper types `07…` or `01…`, Daraja wants `2547…` with no
//! `+`, and the SMS API wants `+2547…` again. [`Msisdn`] holds the one normalised form (the 12
//! digits `254XXXXXXXXX`) and renders each of the others, so no module ever re-parses a number.
//!
//! Its `Debug` and `Display` are masked (`2547******78`): a number can be logged with `?msisdn`
//! without leaking it. Call [`Msisdn::digits`] or [`Msisdn::e164`] where the full number is needed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Kenyan mobile number, normalised to its 12 digits `254` + 9 (`2547…` or `2541…`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(String);

/// Why a string is not a Kenyan mobile number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    #[error("a phone number must have digits only, with an optional leading +")]
    NotDigits,
    #[error("a Kenyan mobile number has 9 digits after 254 (or 0)")]
    WrongLength,
    #[error("not a Kenyan mobile number: it must start with 07, 01, 2547, 2541 or +254")]
    NotKenyanMobile,
}

impl Msisdn {
    /// Parses the forms a shopper or a gateway uses: `0712345678`, `712345678`, `254712345678`,
    /// `+254712345678`, with spaces or dashes between digits. Only mobile ranges (`7…` and `1…`)
    /// are accepted, since only they can receive an M-Pesa prompt or an SMS.
    ///
    /// # Errors
    /// [`MsisdnError`] says what is wrong, in words a shopper can act on.
    pub fn parse(raw: &str) -> Result<Self, MsisdnError> {
        let trimmed = raw.trim();
        let without_plus = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut digits = String::with_capacity(12);
        for c in without_plus.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(MsisdnError::NotDigits),
            }
        }
        let national = if let Some(rest) = digits.strip_prefix("254") {
            rest
        } else if let Some(rest) = digits.strip_prefix('0') {
            rest
        } else if digits.len() == 9 {
            digits.as_str()
        } else {
            return Err(if digits.is_empty() {
                MsisdnError::NotDigits
            } else {
                MsisdnError::NotKenyanMobile
            });
        };
        if national.len() != 9 {
            return Err(MsisdnError::WrongLength);
        }
        if !(national.starts_with('7') || national.starts_with('1')) {
            return Err(MsisdnError::NotKenyanMobile);
        }
        Ok(Self(format!("254{national}")))
    }

    /// The 12 digits `2547XXXXXXXX`, as Daraja wants them.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `+2547XXXXXXXX`, as Africa's Talking sends and wants it.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }

    /// The local form a shopper recognises, partly hidden: `07XX XXX 678`.
    pub fn local_masked(&self) -> String {
        let national = &self.0[3..];
        format!("0{}XX XXX {}", &national[..1], &national[6..])
    }

    /// The masked form used in every log line: `2547******78`.
    pub fn masked(&self) -> String {
        format!("{}******{}", &self.0[..4], &self.0[10..])
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl TryFrom<String> for Msisdn {
    type Error = MsisdnError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Msisdn> for String {
    fn from(value: Msisdn) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_with_a_leading_zero_is_normalised_to_254() {
        assert_eq!(
            Msisdn::parse("0712345678").unwrap().digits(),
            "254712345678"
        );
    }

    #[test]
    fn every_accepted_form_gives_the_same_number() {
        for raw in [
            "+254712345678",
            "254712345678",
            "0712345678",
            "712345678",
            " 0712 345 678 ",
            "0712-345-678",
        ] {
            assert_eq!(
                Msisdn::parse(raw).unwrap().digits(),
                "254712345678",
                "{raw}"
            );
        }
    }

    #[test]
    fn the_01_range_is_a_mobile_range() {
        assert_eq!(
            Msisdn::parse("0110345678").unwrap().digits(),
            "254110345678"
        );
    }

    #[test]
    fn landlines_short_numbers_and_letters_are_refused() {
        assert_eq!(
            Msisdn::parse("0201234567"),
            Err(MsisdnError::NotKenyanMobile)
        );
        assert_eq!(Msisdn::parse("07123"), Err(MsisdnError::WrongLength));
        assert_eq!(Msisdn::parse("07123456789"), Err(MsisdnError::WrongLength));
        assert_eq!(Msisdn::parse("07l2345678"), Err(MsisdnError::NotDigits));
        assert_eq!(Msisdn::parse(""), Err(MsisdnError::NotDigits));
        assert_eq!(
            Msisdn::parse("+1 415 555 0100"),
            Err(MsisdnError::NotKenyanMobile)
        );
    }

    #[test]
    fn renders_each_wire_form() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        assert_eq!(msisdn.e164(), "+254712345678");
        assert_eq!(msisdn.local_masked(), "07XX XXX 678");
    }

    #[test]
    fn logs_never_show_the_whole_number() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        assert_eq!(format!("{msisdn:?}"), "2547******78");
        assert_eq!(format!("{msisdn}"), "2547******78");
    }

    #[test]
    fn serde_round_trips_through_the_digits() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        let json = serde_json::to_string(&msisdn).unwrap();
        assert_eq!(json, "\"254712345678\"");
        assert_eq!(serde_json::from_str::<Msisdn>(&json).unwrap(), msisdn);
        assert!(serde_json::from_str::<Msisdn>("\"12\"").is_err());
    }
}
