//! How many SMS parts a text takes, and in which encoding, as the sandbox records and prices it.
//!
//! The counting itself is [`crate::gsm7::sms_encoding_and_segments`], the same rule the menus
//! are checked with: one character outside GSM-7 switches the whole message to UCS-2; extension
//! characters take two septets; a split message carries 153 septets (GSM-7) or 67 UTF-16 units
//! (UCS-2) per part, and a two-unit character is never cut across parts.

use super::SmsEncoding;
use crate::gsm7::{sms_encoding_and_segments, Encoding};

/// The encoding a text needs and the number of parts it is sent in (at least one: AT charges an
/// empty message as one).
pub(super) fn count_sms_segments(text: &str) -> (SmsEncoding, u32) {
    let (encoding, _, segments) = sms_encoding_and_segments(text);
    let encoding = match encoding {
        Encoding::Gsm7 => SmsEncoding::Gsm7,
        Encoding::Ucs2 => SmsEncoding::Ucs2,
    };
    (encoding, u32::try_from(segments).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_receipt_is_one_gsm7_segment() {
        let receipt = "Duka: order DK10427 paid, KES 450. M-Pesa ref QKH94M1Z11. Thank you!";
        assert_eq!(count_sms_segments(receipt), (SmsEncoding::Gsm7, 1));
    }

    #[test]
    fn gsm7_fits_160_septets_in_one_part_and_153_per_part_after() {
        assert_eq!(count_sms_segments(&"a".repeat(160)).1, 1);
        assert_eq!(count_sms_segments(&"a".repeat(161)).1, 2);
        assert_eq!(count_sms_segments(&"a".repeat(306)).1, 2);
        assert_eq!(count_sms_segments(&"a".repeat(307)).1, 3);
        assert_eq!(count_sms_segments("").1, 1);
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_not_split() {
        assert_eq!(count_sms_segments(&"€".repeat(80)), (SmsEncoding::Gsm7, 1));
        assert_eq!(count_sms_segments(&"€".repeat(81)).1, 2);
        // 152 septets then a two-septet character: it moves whole to the second part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count_sms_segments(&text).1, 3);
    }

    #[test]
    fn one_character_outside_gsm7_switches_the_whole_message_to_ucs2() {
        for text in [
            "Thank you’",
            "M-Pesa – paid",
            "wait…",
            "asante 🙏",
            "ção",
            "a\u{a0}b",
            "`",
        ] {
            assert_eq!(count_sms_segments(text).0, SmsEncoding::Ucs2, "{text}");
        }
        for text in [
            "é è ù ì ò à ä ö ü ñ Ä Ö Ü Ñ Å å Æ æ ß É Ç Ø ø",
            "{[~]}|^\\€",
        ] {
            assert_eq!(count_sms_segments(text).0, SmsEncoding::Gsm7, "{text}");
        }
    }

    #[test]
    fn ucs2_fits_70_units_in_one_part_and_67_per_part_after() {
        assert_eq!(count_sms_segments(&"’".repeat(70)).1, 1);
        assert_eq!(count_sms_segments(&"’".repeat(71)).1, 2);
        assert_eq!(count_sms_segments(&"’".repeat(134)).1, 2);
        assert_eq!(count_sms_segments(&"’".repeat(135)).1, 3);
        // An emoji is two UTF-16 units: 35 of them fill one part exactly.
        assert_eq!(count_sms_segments(&"🙏".repeat(35)).1, 1);
        assert_eq!(count_sms_segments(&"🙏".repeat(36)).1, 2);
    }
}
