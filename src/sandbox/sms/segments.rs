//! How many SMS parts a text takes, and in which encoding: the sandbox's own count, used to
//! record each message and to price it per segment.
//!
//! `crate::gsm7` (another module) does the same for the menus; this private copy lets the
//! sandbox stand alone until the two are merged. It follows the reference: one character outside
//! GSM-7 switches the whole message to UCS-2; extension characters take two septets; a split
//! message carries 153 septets (GSM-7) or 67 UTF-16 units (UCS-2) per part, and a two-unit
//! character is never cut across parts, as handsets would garble it.

use super::SmsEncoding;

/// GSM 03.38's basic character set, each one septet (the escape code itself is left out).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38's extension table, each two septets (escape + character).
const GSM7_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// The encoding a text needs and the number of parts it is sent in (at least one: AT charges an
/// empty message as one).
pub(super) fn count_sms_segments(text: &str) -> (SmsEncoding, u32) {
    match gsm7_septets_per_char(text) {
        Some(septets) => (SmsEncoding::Gsm7, parts(&septets, 160, 153)),
        None => {
            let units: Vec<usize> = text.chars().map(char::len_utf16).collect();
            (SmsEncoding::Ucs2, parts(&units, 70, 67))
        }
    }
}

/// The septets of each character, or `None` if one is outside GSM-7.
fn gsm7_septets_per_char(text: &str) -> Option<Vec<usize>> {
    text.chars()
        .map(|c| {
            if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            }
        })
        .collect()
}

/// Fills parts greedily without splitting a character's units.
fn parts(units_per_char: &[usize], single: usize, per_part: usize) -> u32 {
    let total: usize = units_per_char.iter().sum();
    if total <= single {
        return 1;
    }
    let mut count = 1;
    let mut used = 0;
    for &units in units_per_char {
        if used + units > per_part {
            count += 1;
            used = 0;
        }
        used += units;
    }
    count
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
