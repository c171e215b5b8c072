//! The bodies of the calls Duka makes, field for field as Daraja spells them.
//!
//! Request bodies are written with the exact JSON types Daraja documents (`Amount`, `PartyA`,
//! `PhoneNumber` and the shortcodes as numbers), and reply bodies are read leniently, since
//! Daraja sends the same field as a string in one message and a number in the next.
//!
//! Nothing here derives `Debug` on a body that carries `Password`: it is base64 of the passkey
//! and can be decoded back to it.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The Daraja calls, with their paths. The sandbox serves the same paths and keys its fault
/// injection and its records on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Token,
    StkPush,
    StkQuery,
    C2bRegister,
    C2bSimulate,
    Reversal,
    B2c,
    TransactionStatus,
}

impl Endpoint {
    /// The path below the base URL (the token path without its query string).
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Token => "/oauth/v1/generate",
            Endpoint::StkPush => "/mpesa/stkpush/v1/processrequest",
            Endpoint::StkQuery => "/mpesa/stkpushquery/v1/query",
            Endpoint::C2bRegister => "/mpesa/c2b/v1/registerurl",
            Endpoint::C2bSimulate => "/mpesa/c2b/v1/simulate",
            Endpoint::Reversal => "/mpesa/reversal/v1/request",
            Endpoint::B2c => "/mpesa/b2c/v3/paymentrequest",
            Endpoint::TransactionStatus => "/mpesa/transactionstatus/v1/query",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Token => "OAuth token",
            Endpoint::StkPush => "STK push",
            Endpoint::StkQuery => "STK query",
            Endpoint::C2bRegister => "C2B URL registration",
            Endpoint::C2bSimulate => "C2B simulate",
            Endpoint::Reversal => "reversal",
            Endpoint::B2c => "B2C payment",
            Endpoint::TransactionStatus => "transaction status",
        })
    }
}

/// The transaction type of an STK push to a paybill (`CustomerBuyGoodsOnline` is for tills).
pub const PAYBILL_TRANSACTION_TYPE: &str = "CustomerPayBillOnline";

/// The transaction type of an STK push to a Buy Goods till: `BusinessShortCode` is then the
/// store (head office) number and `PartyB` the till.
pub const TILL_TRANSACTION_TYPE: &str = "CustomerBuyGoodsOnline";

/// `Password`: `base64(BusinessShortCode + Passkey + Timestamp)`, with no separator.
pub fn stk_password(shortcode: &str, passkey: &str, timestamp: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{shortcode}{passkey}{timestamp}"))
}

/// The body of `POST /mpesa/stkpush/v1/processrequest`.
#[derive(Serialize)]
pub(crate) struct StkPushBody {
    #[serde(rename = "BusinessShortCode")]
    pub business_short_code: u64,
    #[serde(rename = "Password")]
    pub password: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "TransactionType")]
    pub transaction_type: &'static str,
    #[serde(rename = "Amount")]
    pub amount: u32,
    #[serde(rename = "PartyA")]
    pub party_a: u64,
    #[serde(rename = "PartyB")]
    pub party_b: u64,
    #[serde(rename = "PhoneNumber")]
    pub phone_number: u64,
    #[serde(rename = "CallBackURL")]
    pub callback_url: String,
    #[serde(rename = "AccountReference")]
    pub account_reference: String,
    #[serde(rename = "TransactionDesc")]
    pub transaction_desc: String,
}

/// The body of `POST /mpesa/stkpushquery/v1/query`.
#[derive(Serialize)]
pub(crate) struct StkQueryBody<'a> {
    #[serde(rename = "BusinessShortCode")]
    pub business_short_code: u64,
    #[serde(rename = "Password")]
    pub password: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "CheckoutRequestID")]
    pub checkout_request_id: &'a str,
}

/// The body of `POST /mpesa/c2b/v1/registerurl`.
#[derive(Debug, Serialize)]
pub(crate) struct C2bRegisterBody<'a> {
    #[serde(rename = "ShortCode")]
    pub short_code: &'a str,
    #[serde(rename = "ResponseType")]
    pub response_type: &'static str,
    #[serde(rename = "ConfirmationURL")]
    pub confirmation_url: &'a str,
    #[serde(rename = "ValidationURL")]
    pub validation_url: &'a str,
}

/// `{"access_token":"…","expires_in":"3599"}`. Deliberately not `Debug`: it holds the token.
#[derive(Deserialize)]
pub(crate) struct TokenReply {
    pub access_token: String,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub expires_in: Option<u64>,
}

/// The synchronous reply to a push.
#[derive(Debug, Deserialize)]
pub(crate) struct StkPushReply {
    #[serde(
        rename = "MerchantRequestID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID", deserialize_with = "lenient_string")]
    pub checkout_request_id: String,
    #[serde(rename = "ResponseCode", deserialize_with = "lenient_string")]
    pub response_code: String,
    #[serde(
        rename = "ResponseDescription",
        default,
        deserialize_with = "lenient_string"
    )]
    pub response_description: String,
    #[serde(
        rename = "CustomerMessage",
        default,
        deserialize_with = "lenient_string"
    )]
    pub customer_message: String,
}

/// The reply to a query once the transaction has completed.
#[derive(Debug, Deserialize)]
pub(crate) struct StkQueryReply {
    #[serde(rename = "ResponseCode", deserialize_with = "lenient_string")]
    pub response_code: String,
    #[serde(
        rename = "ResponseDescription",
        default,
        deserialize_with = "lenient_string"
    )]
    pub response_description: String,
    #[serde(
        rename = "MerchantRequestID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub merchant_request_id: String,
    #[serde(
        rename = "CheckoutRequestID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub checkout_request_id: String,
    #[serde(rename = "ResultCode", default, deserialize_with = "lenient_opt_i64")]
    pub result_code: Option<i64>,
    #[serde(rename = "ResultDesc", default, deserialize_with = "lenient_string")]
    pub result_desc: String,
}

/// The reply to a C2B registration, with Safaricom's spelling of "Conversation".
#[derive(Debug, Deserialize)]
pub(crate) struct C2bRegisterReply {
    #[serde(
        rename = "OriginatorCoversationID",
        alias = "OriginatorConversationID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub originator_conversation_id: String,
    #[serde(rename = "ResponseCode", deserialize_with = "lenient_string")]
    pub response_code: String,
    #[serde(
        rename = "ResponseDescription",
        default,
        deserialize_with = "lenient_string"
    )]
    pub response_description: String,
}

/// `{"requestId":"…","errorCode":"400.002.02","errorMessage":"Bad Request - Invalid PhoneNumber"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    #[serde(rename = "requestId", default, deserialize_with = "lenient_string")]
    pub request_id: String,
    #[serde(rename = "errorCode", deserialize_with = "lenient_string")]
    pub error_code: String,
    #[serde(rename = "errorMessage", default, deserialize_with = "lenient_string")]
    pub error_message: String,
}

/// True for Daraja's success `ResponseCode`, which is `"0"` (some APIs pad it to `"00000000"`).
pub(crate) fn is_success_code(code: &str) -> bool {
    let code = code.trim();
    !code.is_empty() && code.bytes().all(|b| b == b'0')
}

/// A string that Daraja may also send as a number (or as `null`, read as empty).
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(de)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(D::Error::custom(format!(
            "expected a string or a number, found {}",
            json_kind(&other)
        ))),
    }
}

/// An integer that Daraja may send as a number or as a string (`ResultCode`).
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(de: D) -> Result<i64, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(de)?;
    json_i64(&value).ok_or_else(|| {
        D::Error::custom(format!("expected an integer, found {}", json_kind(&value)))
    })
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(de)?;
    if value.is_null() {
        return Ok(None);
    }
    json_i64(&value).map(Some).ok_or_else(|| {
        D::Error::custom(format!("expected an integer, found {}", json_kind(&value)))
    })
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(de)?;
    if value.is_null() {
        return Ok(None);
    }
    json_i64(&value)
        .and_then(|n| u64::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom("expected a non-negative integer"))
}

/// Reads `5`, `"5"`, `" 5 "` and `5.0` as 5; anything else (fractions included) as `None`.
pub(crate) fn json_i64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // A float is only accepted when it is exactly an integer in range.
            let in_range = f.fract() == 0.0 && f.abs() < 9.0e15;
            in_range.then_some(f as i64)
        }),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The JSON type of a value, for error messages that must not echo the value itself.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_password_is_base64_of_shortcode_passkey_and_timestamp() {
        assert_eq!(
            stk_password("174379", "test-passkey", "20261124143005"),
            "MTc0Mzc5dGVzdC1wYXNza2V5MjAyNjExMjQxNDMwMDU="
        );
    }

    #[test]
    fn expires_in_is_read_as_a_string_or_a_number() {
        let as_string: TokenReply =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"3599"}"#).unwrap();
        let as_number: TokenReply =
            serde_json::from_str(r#"{"access_token":"t","expires_in":3599}"#).unwrap();
        let missing: TokenReply = serde_json::from_str(r#"{"access_token":"t"}"#).unwrap();
        assert_eq!(as_string.expires_in, Some(3599));
        assert_eq!(as_number.expires_in, Some(3599));
        assert_eq!(missing.expires_in, None);
        assert!(
            serde_json::from_str::<TokenReply>(r#"{"access_token":"t","expires_in":"-1"}"#)
                .is_err()
        );
    }

    #[test]
    fn result_codes_are_read_whatever_their_json_type() {
        let read = |raw: &str| json_i64(&serde_json::from_str(raw).unwrap());
        assert_eq!(read("1032"), Some(1032));
        assert_eq!(read("\"1032\""), Some(1032));
        assert_eq!(read("0.0"), Some(0));
        assert_eq!(read("0.5"), None);
        assert_eq!(read("\"C2B00012\""), None);
        assert_eq!(read("null"), None);
    }

    #[test]
    fn the_misspelled_originator_id_is_read_and_so_is_the_correct_spelling() {
        let misspelled: C2bRegisterReply = serde_json::from_str(
            r#"{"OriginatorCoversationID":"7619-37765134-1","ResponseCode":"0","ResponseDescription":"Success"}"#,
        )
        .unwrap();
        let corrected: C2bRegisterReply = serde_json::from_str(
            r#"{"OriginatorConversationID":"7619-37765134-1","ResponseCode":"0"}"#,
        )
        .unwrap();
        assert_eq!(misspelled.originator_conversation_id, "7619-37765134-1");
        assert_eq!(corrected.originator_conversation_id, "7619-37765134-1");
    }

    #[test]
    fn success_codes_are_all_zeros() {
        assert!(is_success_code("0"));
        assert!(is_success_code("00000000"));
        assert!(!is_success_code(""));
        assert!(!is_success_code("1"));
    }
}
