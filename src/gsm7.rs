//! GSM-7 (GSM 03.38) counting: how much room a text takes on a USSD screen or in an SMS.
//!
//! A USSD screen holds about 182 characters and an SMS 160, but only when every character is
//! in the GSM-7 default alphabet. One character outside it (a curly quote, `…`, `á`, an emoji)
//! switches the whole message to UCS-2, which halves the room and shows as garbage on some
//! handsets. The characters of the extension table (`^ { } [ ] ~ \ | €` and form feed) are sent
//! as an escape plus a septet, so they take two. This module counts septets, not bytes and not
//! `char`s, and shortens texts to fit without cutting a word silently.
//!
//! It knows nothing about menus or SMS senders: [`crate::menu::catalog`] refuses texts that are
//! not GSM-7, and the SMS sender reports the segments a message costs.

/// The characters of the GSM 03.38 default alphabet, in table order (0x00 to 0x7F, without the
/// escape at 0x1B). Each takes one septet. This is the reference [`char_septets`] is tested
/// against, written as in the standard so that it can be checked by eye.
#[cfg(test)]
const BASIC: [char; 127] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    '\u{0394}', '_', '\u{03A6}', '\u{0393}', '\u{039B}', '\u{03A9}', '\u{03A0}', '\u{03A8}',
    '\u{03A3}', '\u{0398}', '\u{039E}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The characters of the extension table, each sent as escape + septet, so two septets.
#[cfg(test)]
const EXTENSION: [char; 10] = ['\u{000C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// What a concatenated SMS part holds after its header: GSM-7 septets and UCS-2 units.
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// The septets one character takes: 1 (default alphabet), 2 (extension table), or `None`.
///
/// A `match` rather than a search of the table: it runs for every character of every screen,
/// and a test checks it against the table as the standard writes it.
pub fn char_septets(c: char) -> Option<usize> {
    match c {
        // Printable ASCII except the backtick and the extension characters, plus LF and CR.
        'A'..='Z' | 'a'..='z' | '0'..='9' => Some(1),
        ' ' | '!' | '"' | '#' | '$' | '%' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | '-'
        | '.' | '/' | ':' | ';' | '<' | '=' | '>' | '?' | '@' | '_' | '\n' | '\r' => Some(1),
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Æ' | 'æ' | 'ß'
        | 'É' | '¤' | '¡' | 'Ä' | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => {
            Some(1)
        }
        '\u{0394}' | '\u{03A6}' | '\u{0393}' | '\u{039B}' | '\u{03A9}' | '\u{03A0}'
        | '\u{03A8}' | '\u{03A3}' | '\u{0398}' | '\u{039E}' => Some(1),
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

/// The septets `text` takes in GSM-7, or `None` if any character is outside GSM-7.
pub fn septets(text: &str) -> Option<usize> {
    text.chars().map(char_septets).sum()
}

/// The first character of `text` that is not GSM-7, for error messages.
pub fn first_non_gsm7(text: &str) -> Option<char> {
    text.chars().find(|c| char_septets(*c).is_none())
}

/// The plain GSM-7 text to write instead of a common typographic character that is not GSM-7
/// (curly quotes, dashes, the ellipsis, a non-breaking space), for error messages; `None` for
/// other characters.
pub fn plain_for(c: char) -> Option<&'static str> {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' | '`' | '\u{00B4}' => Some("'"),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' | '\u{00AB}' | '\u{00BB}' => Some("\""),
        '\u{2010}'..='\u{2015}' | '\u{2212}' => Some("-"),
        '\u{2026}' => Some("..."),
        '\u{00A0}' | '\u{2007}' | '\u{202F}' => Some("a plain space"),
        _ => None,
    }
}

/// The mark that ends a shortened text.
pub const SHORTENED_MARK: &str = "..";

/// Shortens `text` to at most `max_septets`, at a word boundary, ending with `..`.
///
/// A text that fits is returned unchanged. Otherwise the longest run of whole words that leaves
/// room for the mark is kept, without trailing spaces or separators (`Cooking Oil -..` would be
/// odd). Only when the first word alone is too long is it cut inside, and then the mark still
/// shows it. Characters outside GSM-7 become `?`, so the result is always GSM-7.
pub fn shorten(text: &str, max_septets: usize) -> String {
    let safe: String = text
        .chars()
        .map(|c| if char_septets(c).is_some() { c } else { '?' })
        .collect();
    if septets(&safe).unwrap_or(usize::MAX) <= max_septets {
        return safe;
    }
    if max_septets <= SHORTENED_MARK.len() {
        return SHORTENED_MARK[..max_septets].to_owned();
    }
    let room = max_septets - SHORTENED_MARK.len();

    // Walk the text once, remembering the longest prefix that fits and the longest one that
    // ends just before a space (a word boundary).
    let mut used = 0;
    let mut fits_up_to = 0;
    let mut word_end = None;
    let mut previous: Option<char> = None;
    for (index, c) in safe.char_indices() {
        if c == ' ' && previous.is_some_and(|p| p != ' ') {
            word_end = Some(index);
        }
        let cost = char_septets(c).unwrap_or(1);
        if used + cost > room {
            break;
        }
        used += cost;
        fits_up_to = index + c.len_utf8();
        previous = Some(c);
    }
    let kept = match word_end {
        Some(end) => trim_separators(&safe[..end]),
        None => "",
    };
    let kept = if kept.is_empty() {
        // The first word alone is too long: cut inside it, and the mark says so.
        &safe[..fits_up_to]
    } else {
        kept
    };
    format!("{kept}{SHORTENED_MARK}")
}

/// Drops trailing spaces and separators that would dangle before the `..` mark.
fn trim_separators(text: &str) -> &str {
    text.trim_end_matches([' ', '-', ',', ';', ':', '/', '&', '('])
}

/// How an SMS is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet: 160 septets in one SMS, 153 per part when split.
    Gsm7,
    /// UTF-16: 70 units in one SMS, 67 per part when split.
    Ucs2,
}

/// The encoding an SMS will use, its length in that encoding's units (septets or UTF-16 units),
/// and the number of SMS it is billed as.
///
/// One SMS holds 160 GSM-7 septets or 70 UCS-2 units. A longer message is split into parts of
/// 153 or 67, which is `ceil(units / 153)` (or `/ 67`) except in one detail that carriers also
/// follow: an extension character's escape pair, or a UTF-16 surrogate pair (an emoji), is never
/// split across two parts, so such a message can need one more part than the division says.
pub fn sms_encoding_and_segments(text: &str) -> (Encoding, usize, usize) {
    match septets(text) {
        Some(units) => {
            let costs = text.chars().map(|c| char_septets(c).unwrap_or(1));
            (
                Encoding::Gsm7,
                units,
                segments(units, costs, GSM7_SINGLE, GSM7_PART),
            )
        }
        None => {
            let units = text.encode_utf16().count();
            let costs = text.chars().map(char::len_utf16);
            (
                Encoding::Ucs2,
                units,
                segments(units, costs, UCS2_SINGLE, UCS2_PART),
            )
        }
    }
}

/// Packs characters of the given costs into parts of `part` units, never splitting one.
fn segments(units: usize, costs: impl Iterator<Item = usize>, single: usize, part: usize) -> usize {
    if units <= single {
        return 1;
    }
    let mut parts = 1;
    let mut used = 0;
    for cost in costs {
        if used + cost > part {
            parts += 1;
            used = 0;
        }
        used += cost;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_letters_digits_and_common_punctuation_take_one_septet_each() {
        assert_eq!(septets("Hello, World 123!"), Some(17));
        assert_eq!(septets(" !\"#%&'()*+,-./:;<=>?@_$"), Some(24));
        assert_eq!(septets("Line one\nLine two\r"), Some(18));
        assert_eq!(septets(""), Some(0));
    }

    #[test]
    fn every_character_of_the_basic_table_takes_one_septet() {
        let table: String = BASIC.iter().collect();
        assert_eq!(septets(&table), Some(127));
        for c in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà".chars()
        {
            assert_eq!(char_septets(c), Some(1), "{c:?}");
        }
    }

    #[test]
    fn the_fast_match_agrees_with_both_tables() {
        // Every table character is below U+2100 (the euro sign is U+20AC).
        for c in (0..0x2100).filter_map(char::from_u32) {
            let expected = if BASIC.contains(&c) {
                Some(1)
            } else if EXTENSION.contains(&c) {
                Some(2)
            } else {
                None
            };
            assert_eq!(char_septets(c), expected, "{c:?}");
        }
    }

    #[test]
    fn extension_table_characters_take_two_septets() {
        for c in "^{}[]~\\|€\u{000C}".chars() {
            assert_eq!(char_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(septets("KES 5 [promo] €"), Some(18));
    }

    #[test]
    fn characters_outside_gsm7_are_refused() {
        for text in [
            "`",
            "‘quoted’",
            "“x”",
            "wait…",
            "á",
            "ç",
            "–",
            "😀",
            "\u{00A0}",
            "\t",
        ] {
            assert_eq!(septets(text), None, "{text:?}");
        }
        assert_eq!(first_non_gsm7("Caf\u{00E1} ok"), Some('\u{00E1}'));
        assert_eq!(first_non_gsm7("Cafe ok"), None);
    }

    #[test]
    fn greek_capitals_count_but_latin_lookalikes_are_plain_letters() {
        // The table has the Greek capitals, while Latin A, B, E, ... are ordinary letters.
        assert_eq!(septets("\u{0394}\u{03A9}"), Some(2));
        assert_eq!(septets("\u{03B1}"), None);
    }

    #[test]
    fn a_text_that_fits_is_not_shortened() {
        assert_eq!(shorten("Toilet Paper 10pk", 17), "Toilet Paper 10pk");
        assert_eq!(shorten("Toilet Paper 10pk", 40), "Toilet Paper 10pk");
    }

    #[test]
    fn shortening_keeps_whole_words_and_adds_a_mark() {
        assert_eq!(shorten("Toilet Paper 10pk", 16), "Toilet Paper..");
        assert_eq!(shorten("Toilet Paper 10pk", 14), "Toilet Paper..");
        assert_eq!(shorten("Toilet Paper 10pk", 13), "Toilet..");
        assert_eq!(septets(&shorten("Toilet Paper 10pk", 13)), Some(8));
    }

    #[test]
    fn shortening_drops_separators_that_would_dangle_before_the_mark() {
        assert_eq!(shorten("Coffee - Instant 50g", 12), "Coffee..");
        assert_eq!(shorten("Snacks & Drinks", 12), "Snacks..");
    }

    #[test]
    fn a_first_word_too_long_is_cut_inside_but_still_marked() {
        assert_eq!(shorten("Supercalifragilistic soap", 8), "Superc..");
        assert_eq!(shorten("abc", 2), "..");
        assert_eq!(shorten("abc", 1), ".");
        assert_eq!(shorten("abc", 0), "");
    }

    #[test]
    fn shortening_counts_extension_characters_as_two() {
        // "Soap [x]" is 10 septets, so 9 leaves room for "Soap" and the mark only.
        assert_eq!(shorten("Soap [x] pack", 9), "Soap..");
    }

    #[test]
    fn shortening_replaces_characters_outside_gsm7_so_the_result_is_safe() {
        let shortened = shorten("Caf\u{00E1} “latte” special", 14);
        assert!(septets(&shortened).is_some_and(|n| n <= 14), "{shortened}");
        assert_eq!(shorten("Caf\u{00E1}", 10), "Caf?");
    }

    #[test]
    fn a_gsm7_sms_of_160_septets_is_one_segment() {
        let text = "a".repeat(160);
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Gsm7, 160, 1));
    }

    #[test]
    fn a_longer_gsm7_sms_is_split_in_parts_of_153() {
        assert_eq!(
            sms_encoding_and_segments(&"a".repeat(161)),
            (Encoding::Gsm7, 161, 2)
        );
        assert_eq!(
            sms_encoding_and_segments(&"a".repeat(306)),
            (Encoding::Gsm7, 306, 2)
        );
        assert_eq!(
            sms_encoding_and_segments(&"a".repeat(307)),
            (Encoding::Gsm7, 307, 3)
        );
    }

    #[test]
    fn extension_characters_count_twice_toward_the_sms_limit() {
        let text = format!("{}€", "a".repeat(158));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Gsm7, 160, 1));
        let text = format!("{}€", "a".repeat(159));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Gsm7, 161, 2));
    }

    #[test]
    fn an_escape_pair_is_never_split_across_parts() {
        // 152 + 2 would straddle the first part's end, so the euro moves to the second part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Gsm7, 306, 3));
    }

    #[test]
    fn one_character_outside_gsm7_makes_the_whole_sms_ucs2() {
        let text = format!("{}’", "a".repeat(69));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Ucs2, 70, 1));
        let text = format!("{}’", "a".repeat(70));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Ucs2, 71, 2));
        let text = format!("{}’", "a".repeat(133));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Ucs2, 134, 2));
        let text = format!("{}’", "a".repeat(134));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Ucs2, 135, 3));
    }

    #[test]
    fn an_emoji_counts_as_two_utf16_units_and_is_not_split() {
        assert_eq!(sms_encoding_and_segments("😀"), (Encoding::Ucs2, 2, 1));
        let text = format!("{}😀{}", "a".repeat(66), "a".repeat(10));
        assert_eq!(sms_encoding_and_segments(&text), (Encoding::Ucs2, 78, 2));
    }

    #[test]
    fn an_empty_sms_is_still_one_segment() {
        assert_eq!(sms_encoding_and_segments(""), (Encoding::Gsm7, 0, 1));
    }

    #[test]
    fn typographic_characters_have_a_plain_replacement_in_gsm7() {
        for (c, plain) in [
            ('\u{2019}', "'"),
            ('\u{201C}', "\""),
            ('\u{2013}', "-"),
            ('\u{2026}', "..."),
        ] {
            assert_eq!(char_septets(c), None);
            assert_eq!(plain_for(c), Some(plain), "{c}");
            assert!(septets(plain).is_some());
        }
        assert_eq!(plain_for('\u{00E1}'), None);
        assert_eq!(plain_for('a'), None);
    }
}
