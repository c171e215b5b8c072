//! Mobile numbers, parsed once at the edge.
//!
//! Each gateway sends a number in its own shape (`+2547…`, `2547…`, `07…`, `233…`), a shopper
//! types `07…` or `01…`, Daraja wants `2547…` with no `+`, and the SMS API wants `+2547…` again.
//! [`Msisdn`] holds the one normalised form (the digits of the E.164 number, without `+`) and
//! renders each of the others, so no module ever re-parses a number, and one shopper's cart and
//! orders stay under one key whatever gateway they dialled through.
//!
//! Kenyan numbers get the forms Kenyans write (`07…`, `01…`, nine digits) and are always stored
//! as the 12 digits `2547…`/`2541…`. Any other country's mobile number is accepted in E.164
//! form (`+233…` or `233…`, 10 to 15 digits), since a shopper roaming in from Ghana or Tanzania
//! must get a polite screen, not a network error. Only some numbers can pay by M-Pesa: see
//! [`Msisdn::mpesa_payable`].
//!
//! Its `Debug` and `Display` are masked (`2547******78`): a number can be logged with `?msisdn`
//! without leaking it. [`Msisdn::masked`] is the one masking rule of the app; call
//! [`Msisdn::digits`] or [`Msisdn::e164`] where the full number is needed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Kenya's country code.
const KENYA: &str = "254";
/// The shortest and longest E.164 number, country code included (ITU-T E.164 allows 15 digits;
/// no country's mobile numbers are shorter than 10 with the code).
const E164_MIN_DIGITS: usize = 10;
const E164_MAX_DIGITS: usize = 15;
/// Digits shown at each end of a masked number.
const MASK_KEEP_HEAD: usize = 4;
const MASK_KEEP_TAIL: usize = 2;

/// Safaricom's mobile prefixes, as the first four digits of the local form (`07xx`, `011x`),
/// inclusive ranges.
///
/// Source: the Communications Authority of Kenya's National Numbering Plan (mobile network
/// codes allocated to Safaricom PLC: 0700-0729, 0740-0743, 0745, 0746, 0748, 0757-0759, 0768,
/// 0769, 0790-0799 and 0110-0115). Numbers ported to another network keep their prefix, so
/// this is a best guess used only when the gateway does not say the caller's network.
pub const SAFARICOM_PREFIXES: &[(u16, u16)] = &[
    (700, 729),
    (740, 743),
    (745, 746),
    (748, 748),
    (757, 759),
    (768, 769),
    (790, 799),
    (110, 115),
];

/// The network codes (MCC+MNC) that gateways send for callers who can be sent an STK push:
/// Safaricom Kenya, and Africa's Talking's sandbox.
const MPESA_NETWORKS: &[&str] = &["63902", "99999"];

/// A mobile number, normalised to the digits of its E.164 form: for Kenya the 12 digits
/// `254` + 9 (`2547…` or `2541…`), for another country its 10 to 15 digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Msisdn(String);

/// Why a string is not a mobile number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsisdnError {
    #[error("a phone number must have digits only, with an optional leading +")]
    NotDigits,
    #[error(
        "a Kenyan mobile number has 9 digits after 254 (or 0); another country's has 10 to 15 \
         digits with its country code"
    )]
    WrongLength,
    #[error("not a Kenyan mobile number: after 254 (or 0) it must start with 7 or 1")]
    NotKenyanMobile,
    #[error("an international number starts with its country code, not 0")]
    NoCountryCode,
}

impl Msisdn {
    /// Parses the forms a shopper or a gateway uses, with spaces or dashes between digits:
    /// - Kenyan: `0712345678`, `712345678`, `254712345678`, `+254712345678`. Only mobile
    ///   ranges (`7…` and `1…`) are accepted, since only they can receive a prompt or an SMS.
    /// - Any other country: `+233241234567` or `233241234567`, 10 to 15 digits in all.
    ///
    /// # Errors
    /// [`MsisdnError`] says what is wrong, in words a shopper can act on.
    pub fn parse(raw: &str) -> Result<Self, MsisdnError> {
        let trimmed = raw.trim();
        let (plus, without_plus) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(E164_MAX_DIGITS);
        for c in without_plus.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(MsisdnError::NotDigits),
            }
        }
        if digits.is_empty() {
            return Err(MsisdnError::NotDigits);
        }
        let national = if let Some(rest) = digits.strip_prefix(KENYA) {
            rest
        } else if let Some(rest) = digits.strip_prefix('0').filter(|_| !plus) {
            rest
        } else if digits.len() == 9 && !plus {
            digits.as_str()
        } else {
            return Self::international(digits);
        };
        if national.len() != 9 {
            return Err(MsisdnError::WrongLength);
        }
        if !(national.starts_with('7') || national.starts_with('1')) {
            return Err(MsisdnError::NotKenyanMobile);
        }
        if digits.len() == KENYA.len() + national.len() {
            // Already `254…`: the digits are the number.
            return Ok(Self(digits));
        }
        let mut e164 = String::with_capacity(KENYA.len() + national.len());
        e164.push_str(KENYA);
        e164.push_str(national);
        Ok(Self(e164))
    }

    /// Another country's number: its country code and subscriber number, as E.164 allows.
    fn international(digits: String) -> Result<Self, MsisdnError> {
        if digits.starts_with('0') {
            return Err(MsisdnError::NoCountryCode);
        }
        if !(E164_MIN_DIGITS..=E164_MAX_DIGITS).contains(&digits.len()) {
            return Err(MsisdnError::WrongLength);
        }
        Ok(Self(digits))
    }

    /// The digits without `+` (`2547XXXXXXXX`), as Daraja wants them and as keys store them.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `+2547XXXXXXXX`, as Africa's Talking sends and wants it.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }

    /// True for a Kenyan number (`254…`).
    pub fn is_kenyan(&self) -> bool {
        self.0.starts_with(KENYA)
    }

    /// True for a Kenyan number in one of Safaricom's ranges ([`SAFARICOM_PREFIXES`]).
    pub fn is_safaricom(&self) -> bool {
        let Some(national) = self.0.strip_prefix(KENYA) else {
            return false;
        };
        // `7xx` or `11x`: the three digits after the local form's `0`.
        let Some(prefix) = national.get(..3).and_then(|p| p.parse::<u16>().ok()) else {
            return false;
        };
        SAFARICOM_PREFIXES
            .iter()
            .any(|&(first, last)| (first..=last).contains(&prefix))
    }

    /// Whether an M-Pesa STK push can be sent to this number: a Kenyan number on Safaricom.
    ///
    /// The caller's network, when the gateway says it (`networkCode`, MCC+MNC), decides:
    /// Safaricom (`63902`) and Africa's Talking's sandbox (`99999`) can be pushed, any other
    /// network (Airtel `63903`, Telkom `63907`, ...) cannot. Without it, the number's prefix
    /// decides ([`Msisdn::is_safaricom`]).
    pub fn mpesa_payable(&self, network_code: Option<&str>) -> bool {
        if !self.is_kenyan() {
            return false;
        }
        match network_code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) => MPESA_NETWORKS.contains(&code),
            None => self.is_safaricom(),
        }
    }

    /// The masked form used in every log line, JSON and screen: the first four and the last
    /// two digits, the rest hidden (`2547******78`). This is the app's one masking rule.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// The same rule in the local form a Kenyan shopper recognises, for screens:
    /// `07XX XXX X78` (the `254` + first digit shown as `07`, the last two digits shown).
    /// Another country's number has no local form and shows as `+` and [`Msisdn::masked`].
    pub fn local_masked(&self) -> String {
        match self.0.strip_prefix(KENYA) {
            Some(national) if national.len() == 9 => {
                let tail = &national[9 - MASK_KEEP_TAIL..];
                format!("0{}XX XXX X{tail}", &national[..1])
            }
            _ => format!("+{}", self.masked()),
        }
    }
}

/// Keeps [`MASK_KEEP_HEAD`] and [`MASK_KEEP_TAIL`] digits and hides the rest with `*`.
fn mask(digits: &str) -> String {
    let len = digits.len();
    if len <= MASK_KEEP_HEAD + MASK_KEEP_TAIL {
        return "*".repeat(len);
    }
    format!(
        "{}{}{}",
        &digits[..MASK_KEEP_HEAD],
        "*".repeat(len - MASK_KEEP_HEAD - MASK_KEEP_TAIL),
        &digits[len - MASK_KEEP_TAIL..]
    )
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
        assert_eq!(
            Msisdn::parse("+254201234567"),
            Err(MsisdnError::NotKenyanMobile)
        );
        assert_eq!(Msisdn::parse("07123"), Err(MsisdnError::WrongLength));
        assert_eq!(Msisdn::parse("07123456789"), Err(MsisdnError::WrongLength));
        assert_eq!(Msisdn::parse("2547123456"), Err(MsisdnError::WrongLength));
        assert_eq!(Msisdn::parse("07l2345678"), Err(MsisdnError::NotDigits));
        assert_eq!(Msisdn::parse(""), Err(MsisdnError::NotDigits));
        assert_eq!(Msisdn::parse("+"), Err(MsisdnError::NotDigits));
        assert_eq!(Msisdn::parse("+1 415"), Err(MsisdnError::WrongLength));
        assert_eq!(
            Msisdn::parse("+1234567890123456"),
            Err(MsisdnError::WrongLength)
        );
        assert_eq!(
            Msisdn::parse("+0712345678"),
            Err(MsisdnError::NoCountryCode)
        );
    }

    #[test]
    fn other_countries_are_kept_as_their_e164_digits() {
        for (raw, digits) in [
            ("233241234567", "233241234567"),
            ("+233 24 123 4567", "233241234567"),
            ("+255712345678", "255712345678"),
            ("256-772-123456", "256772123456"),
            ("+14155550100", "14155550100"),
        ] {
            let msisdn = Msisdn::parse(raw).unwrap();
            assert_eq!(msisdn.digits(), digits, "{raw}");
            assert!(!msisdn.is_kenyan(), "{raw}");
            assert_eq!(msisdn.e164(), format!("+{digits}"));
        }
    }

    #[test]
    fn safaricom_is_told_by_the_local_prefix() {
        for (local, safaricom) in [
            ("0700000001", true),
            ("0729999999", true),
            ("0730000001", false),
            ("0733123456", false),
            ("0740000001", true),
            ("0743000001", true),
            ("0744000001", false),
            ("0745000001", true),
            ("0746000001", true),
            ("0747000001", false),
            ("0748000001", true),
            ("0756000001", false),
            ("0757000001", true),
            ("0759000001", true),
            ("0768000001", true),
            ("0769000001", true),
            ("0770000001", false),
            ("0789000001", false),
            ("0790000001", true),
            ("0799000001", true),
            ("0110000001", true),
            ("0115000001", true),
            ("0116000001", false),
            ("0100000001", false),
        ] {
            let msisdn = Msisdn::parse(local).unwrap();
            assert!(msisdn.is_kenyan(), "{local}");
            assert_eq!(msisdn.is_safaricom(), safaricom, "{local}");
        }
        assert!(!Msisdn::parse("+255712345678").unwrap().is_safaricom());
    }

    #[test]
    fn mpesa_payable_follows_the_network_then_the_prefix() {
        let safaricom = "0712345678";
        let airtel = "0733123456";
        let tanzania = "+255712345678";
        for (number, network, payable) in [
            (safaricom, Some("63902"), true),
            (safaricom, Some("99999"), true),
            (safaricom, Some("63903"), false),
            (safaricom, Some("63907"), false),
            (safaricom, Some("64002"), false),
            (safaricom, None, true),
            (safaricom, Some(""), true),
            (airtel, Some("63903"), false),
            (airtel, Some("63902"), true),
            (airtel, None, false),
            (tanzania, Some("63902"), false),
            (tanzania, Some("99999"), false),
            (tanzania, None, false),
        ] {
            let msisdn = Msisdn::parse(number).unwrap();
            assert_eq!(
                msisdn.mpesa_payable(network),
                payable,
                "{number} on {network:?}"
            );
        }
    }

    #[test]
    fn renders_each_wire_form() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        assert_eq!(msisdn.e164(), "+254712345678");
        assert_eq!(msisdn.local_masked(), "07XX XXX X78");
        let ghana = Msisdn::parse("233241234567").unwrap();
        assert_eq!(ghana.local_masked(), "+2332******67");
    }

    #[test]
    fn one_masking_rule_keeps_four_digits_and_two() {
        for (raw, masked) in [
            ("0712345678", "2547******78"),
            ("0110345678", "2541******78"),
            ("233241234567", "2332******67"),
            ("+14155550100", "1415*****00"),
            ("+491701234567890", "4917*********90"),
        ] {
            assert_eq!(Msisdn::parse(raw).unwrap().masked(), masked, "{raw}");
        }
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
