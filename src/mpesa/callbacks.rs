//! What Daraja POSTs to Duka, parsed; and the bodies Duka answers with.
//!
//! - [`StkCallback::parse`] reads `Body.stkCallback`. `ResultCode` is a number here (a string is
//!   accepted too). On success, `CallbackMetadata.Item[]` is a list of `{Name, Value}` looked up
//!   **by name**, never by position, with each `Value` read as raw JSON: `Amount` is `450` or
//!   `450.00`, `TransactionDate` and `PhoneNumber` are numbers, and `Balance` usually has no
//!   `Value` at all.
//! - [`C2bRequest::parse`] reads the paybill validation and confirmation requests, which share a
//!   shape. `TransAmount` is a string (`"450.00"`). `MSISDN` is not a phone number (v1 sends a
//!   SHA-256 hash, v2 a masked `2547 ***** 678`), so it stays an [`OpaqueMsisdn`].
//! - The replies: [`StkCallbackAck`], [`C2bValidationReply`], [`C2bConfirmationAck`]. Validation
//!   answers `"ResultCode":"0"` (a string), the others `0` (a number).
//! - [`result_code_meaning`] is the table of STK result codes.
//!
//! Deciding what a callback does to an order is the payment domain's job, not this module's.
//! `ResultDesc` is free text: kept for people, never matched on.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::clock::parse_eat_timestamp;
use super::wire::{json_i64, lenient_i64, lenient_string};
use crate::money::Kes;
use crate::msisdn::Msisdn;

/// Why a callback body could not be read. Duka still answers such a body with 200 and keeps it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The body is not JSON, or not the expected shape (serde's message says where).
    #[error("malformed callback body: {0}")]
    Malformed(String),
    /// A metadata item that matters for money is present but unreadable.
    #[error("the callback's {0} has an unreadable value")]
    InvalidItem(&'static str),
}

/// The STK push result Daraja posts to the `CallBackURL`.
#[derive(Debug, Clone, PartialEq)]
pub struct StkCallback {
    pub merchant_request_id: String,
    /// The join key with the attempt Duka stored when the push was accepted.
    pub checkout_request_id: String,
    pub result_code: i64,
    /// Free text for people; never match on it.
    pub result_desc: String,
    /// `CallbackMetadata`, which Daraja sends on success only.
    pub metadata: Option<StkPaymentMetadata>,
}

/// The items of a successful callback's `CallbackMetadata`, each optional since Daraja's lists
/// vary. `Amount` and `MpesaReceiptNumber` must be readable when present, since they are money
/// facts; the others are informational and read as `None` when malformed.
#[derive(Debug, Clone, PartialEq)]
pub struct StkPaymentMetadata {
    /// What the shopper paid, exactly as reported (`450` and `450.00` are equal).
    pub amount: Option<Kes>,
    /// The M-Pesa receipt, e.g. `QKH94M1Z11`: a payment's unique key across STK and C2B.
    pub mpesa_receipt_number: Option<String>,
    /// `TransactionDate`, Nairobi time.
    pub transaction_date: Option<DateTime<FixedOffset>>,
    /// The payer as M-Pesa reports it. The receipt SMS goes to the phone on the order instead.
    pub phone_number: Option<Msisdn>,
    /// `Balance`, which Daraja sends without a `Value`; kept in case one ever comes.
    pub balance: Option<Kes>,
}

#[derive(Deserialize)]
struct StkEnvelope {
    #[serde(rename = "Body")]
    body: StkBody,
}

#[derive(Deserialize)]
struct StkBody {
    #[serde(rename = "stkCallback")]
    stk_callback: RawStkCallback,
}

#[derive(Deserialize)]
struct RawStkCallback {
    #[serde(
        rename = "MerchantRequestID",
        default,
        deserialize_with = "lenient_string"
    )]
    merchant_request_id: String,
    #[serde(rename = "CheckoutRequestID", deserialize_with = "lenient_string")]
    checkout_request_id: String,
    #[serde(rename = "ResultCode", deserialize_with = "lenient_i64")]
    result_code: i64,
    #[serde(rename = "ResultDesc", default, deserialize_with = "lenient_string")]
    result_desc: String,
    #[serde(rename = "CallbackMetadata", default)]
    callback_metadata: Option<RawMetadata>,
}

#[derive(Deserialize)]
struct RawMetadata {
    /// An array of items; read as raw JSON so that a lone object is tolerated too.
    #[serde(rename = "Item", default)]
    item: serde_json::Value,
}

#[derive(Deserialize)]
struct RawItem {
    #[serde(rename = "Name", default, deserialize_with = "lenient_string")]
    name: String,
    #[serde(rename = "Value", default)]
    value: Option<serde_json::Value>,
}

impl StkCallback {
    /// Parses the body Daraja POSTs to the STK `CallBackURL`.
    ///
    /// # Errors
    /// [`CallbackError::Malformed`] when the body is not `Body.stkCallback` with a
    /// `CheckoutRequestID` and an integer `ResultCode`; [`CallbackError::InvalidItem`] when
    /// `Amount` or `MpesaReceiptNumber` is present but unreadable.
    pub fn parse(body: &[u8]) -> Result<Self, CallbackError> {
        let envelope: StkEnvelope =
            serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
        let raw = envelope.body.stk_callback;
        let metadata = raw
            .callback_metadata
            .map(|m| StkPaymentMetadata::from_items(&m.item))
            .transpose()?;
        Ok(StkCallback {
            merchant_request_id: raw.merchant_request_id,
            checkout_request_id: raw.checkout_request_id,
            result_code: raw.result_code,
            result_desc: raw.result_desc,
            metadata,
        })
    }

    /// What the result code means for the attempt.
    pub fn kind(&self) -> ResultKind {
        result_code_meaning(self.result_code)
    }

    /// True when the shopper paid.
    pub fn is_paid(&self) -> bool {
        self.result_code == 0
    }
}

impl StkPaymentMetadata {
    fn from_items(items: &serde_json::Value) -> Result<Self, CallbackError> {
        let items: Vec<RawItem> = match items {
            serde_json::Value::Array(list) => list
                .iter()
                .filter_map(|item| RawItem::deserialize(item).ok())
                .collect(),
            serde_json::Value::Object(_) => RawItem::deserialize(items).ok().into_iter().collect(),
            _ => Vec::new(),
        };
        let find = |name: &str| {
            items
                .iter()
                .find(|item| item.name.eq_ignore_ascii_case(name))
                .and_then(|item| item.value.as_ref())
                .filter(|value| !value.is_null())
        };

        let amount = find("Amount")
            .map(|v| Kes::from_json(v).ok_or(CallbackError::InvalidItem("Amount")))
            .transpose()?;
        let mpesa_receipt_number = find("MpesaReceiptNumber")
            .map(|v| match v {
                serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                _ => Err(CallbackError::InvalidItem("MpesaReceiptNumber")),
            })
            .transpose()?;
        let transaction_date = find("TransactionDate")
            .and_then(json_digits)
            .and_then(|digits| parse_eat_timestamp(&digits));
        let phone_number = find("PhoneNumber")
            .and_then(json_digits)
            .and_then(|digits| Msisdn::parse(&digits).ok());
        let balance = find("Balance").and_then(Kes::from_json);

        Ok(StkPaymentMetadata {
            amount,
            mpesa_receipt_number,
            transaction_date,
            phone_number,
            balance,
        })
    }
}

/// The digits of a number sent as a JSON number or string (`20261124143041`, `254712345678`).
fn json_digits(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::Number(n) => n.as_u64()?.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// What an STK result code means, per integrators' tables (Safaricom publishes none beyond 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// 0: paid.
    Paid,
    /// 1: insufficient funds (Fuliza included); tell the shopper to top up.
    InsufficientFunds,
    /// 17: internal failure or party B unavailable; a new push is fine after 30–45 s.
    Transient,
    /// 1001: the subscriber is locked in another USSD or STK session; wait 1–2 minutes.
    SubscriberLocked,
    /// 1019: the prompt expired before the shopper answered.
    Expired,
    /// 1025 and 9999: the prompt could not be sent; retry once, then give paybill instructions.
    NotSent,
    /// 1032: the shopper cancelled; no automatic retry.
    Cancelled,
    /// 1037: the phone was unreachable or silent (~60 s).
    Unreachable,
    /// 2001: wrong PIN ("initiator information is invalid").
    WrongPin,
    /// Any other code: log it and offer the paybill.
    Unknown,
}

/// The meaning of an STK `ResultCode`, from the callback or the query.
pub fn result_code_meaning(code: i64) -> ResultKind {
    match code {
        0 => ResultKind::Paid,
        1 => ResultKind::InsufficientFunds,
        17 => ResultKind::Transient,
        1001 => ResultKind::SubscriberLocked,
        1019 => ResultKind::Expired,
        1025 | 9999 => ResultKind::NotSent,
        1032 => ResultKind::Cancelled,
        1037 => ResultKind::Unreachable,
        2001 => ResultKind::WrongPin,
        _ => ResultKind::Unknown,
    }
}

/// C2B's `MSISDN`: a SHA-256 hex hash (v1) or a masked number (v2), never a usable phone
/// number. Stored as given and compared as text; its `Debug` shows only a prefix.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpaqueMsisdn(String);

impl OpaqueMsisdn {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OpaqueMsisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Should Daraja ever send a plain number here, only its first digits may reach a log.
        let shown: String = self.0.chars().take(6).collect();
        write!(f, "{shown:?}…")
    }
}

/// A paybill validation or confirmation request (they share a shape; the confirmation fills
/// `OrgAccountBalance`). Fields other than `TransID` and `TransAmount` default to empty.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct C2bRequest {
    #[serde(
        rename = "TransactionType",
        default,
        deserialize_with = "lenient_string"
    )]
    pub transaction_type: String,
    /// The M-Pesa receipt: deduplicate on it, together with STK's `MpesaReceiptNumber`.
    #[serde(rename = "TransID", deserialize_with = "lenient_string")]
    pub trans_id: String,
    /// `YYYYMMDDHHmmss`, Nairobi time.
    #[serde(rename = "TransTime", default, deserialize_with = "lenient_string")]
    pub trans_time: String,
    #[serde(rename = "TransAmount", deserialize_with = "kes_from_json")]
    pub trans_amount: Kes,
    #[serde(
        rename = "BusinessShortCode",
        default,
        deserialize_with = "lenient_string"
    )]
    pub business_short_code: String,
    /// The account number as the shopper typed it; see [`C2bRequest::account_number`].
    #[serde(rename = "BillRefNumber", default, deserialize_with = "lenient_string")]
    pub bill_ref_number: String,
    #[serde(rename = "InvoiceNumber", default, deserialize_with = "lenient_string")]
    pub invoice_number: String,
    #[serde(
        rename = "OrgAccountBalance",
        default,
        deserialize_with = "lenient_string"
    )]
    pub org_account_balance: String,
    #[serde(
        rename = "ThirdPartyTransID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub third_party_trans_id: String,
    #[serde(rename = "MSISDN", default)]
    pub msisdn: OpaqueMsisdn,
    #[serde(rename = "FirstName", default, deserialize_with = "lenient_string")]
    pub first_name: String,
    #[serde(rename = "MiddleName", default, deserialize_with = "lenient_string")]
    pub middle_name: String,
    #[serde(rename = "LastName", default, deserialize_with = "lenient_string")]
    pub last_name: String,
}

fn kes_from_json<'de, D: Deserializer<'de>>(de: D) -> Result<Kes, D::Error> {
    use serde::de::Error as _;
    let value = serde_json::Value::deserialize(de)?;
    Kes::from_json(&value).ok_or_else(|| D::Error::custom("TransAmount is not a decimal amount"))
}

impl C2bRequest {
    /// Parses a validation or confirmation body.
    ///
    /// # Errors
    /// [`CallbackError::Malformed`] when the body is not JSON, or lacks `TransID` or a decimal
    /// `TransAmount`.
    pub fn parse(body: &[u8]) -> Result<Self, CallbackError> {
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))
    }

    /// The account number normalised the way order numbers are: typed by hand, so trimmed,
    /// uppercased and without spaces or dashes (`" dk 10427"` → `"DK10427"`).
    pub fn account_number(&self) -> String {
        crate::orders::normalise_order_number(&self.bill_ref_number)
    }

    /// `TransTime` as an instant, when it is a valid `YYYYMMDDHHmmss`.
    pub fn trans_time(&self) -> Option<DateTime<FixedOffset>> {
        parse_eat_timestamp(self.trans_time.trim())
    }
}

/// Shows the fields an operator needs, and neither the names nor the full MSISDN.
impl fmt::Debug for C2bRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("C2bRequest")
            .field("transaction_type", &self.transaction_type)
            .field("trans_id", &self.trans_id)
            .field("trans_time", &self.trans_time)
            .field("trans_amount", &self.trans_amount)
            .field("business_short_code", &self.business_short_code)
            .field("bill_ref_number", &self.bill_ref_number)
            .field("msisdn", &self.msisdn)
            .finish_non_exhaustive()
    }
}

/// The reject codes of C2B validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C2bRejectCode {
    /// `C2B00011`: invalid MSISDN. Duka never sends it.
    InvalidMsisdn,
    /// `C2B00012`: invalid account number (order unknown, paid, cancelled or expired).
    InvalidAccountNumber,
    /// `C2B00013`: invalid amount (not the order total).
    InvalidAmount,
    /// `C2B00014`: invalid KYC details. Duka never sends it.
    InvalidKyc,
    /// `C2B00015`: invalid shortcode. Duka never sends it.
    InvalidShortcode,
    /// `C2B00016`: other error. Duka never sends it (store down: accept, as `Completed` would).
    OtherError,
}

impl C2bRejectCode {
    pub const ALL: [C2bRejectCode; 6] = [
        C2bRejectCode::InvalidMsisdn,
        C2bRejectCode::InvalidAccountNumber,
        C2bRejectCode::InvalidAmount,
        C2bRejectCode::InvalidKyc,
        C2bRejectCode::InvalidShortcode,
        C2bRejectCode::OtherError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            C2bRejectCode::InvalidMsisdn => "C2B00011",
            C2bRejectCode::InvalidAccountNumber => "C2B00012",
            C2bRejectCode::InvalidAmount => "C2B00013",
            C2bRejectCode::InvalidKyc => "C2B00014",
            C2bRejectCode::InvalidShortcode => "C2B00015",
            C2bRejectCode::OtherError => "C2B00016",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code.trim())
    }
}

/// The reply to a C2B validation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum C2bValidationReply {
    /// `{"ResultCode":"0","ResultDesc":"Accepted"}`, optionally echoing `ThirdPartyTransID`.
    Accept {
        third_party_trans_id: Option<String>,
    },
    /// `{"ResultCode":"C2B000xx","ResultDesc":"Rejected"}`.
    Reject(C2bRejectCode),
}

impl C2bValidationReply {
    pub fn accept() -> Self {
        C2bValidationReply::Accept {
            third_party_trans_id: None,
        }
    }

    pub fn reject(code: C2bRejectCode) -> Self {
        C2bValidationReply::Reject(code)
    }

    /// Reads a reply as Daraja would: `ResultCode` `"0"` or `0` accepts, a known reject code
    /// rejects; anything else is `None` (and `ResponseType` then applies).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let code = value.get("ResultCode")?;
        if json_i64(code) == Some(0) {
            let third_party_trans_id = value
                .get("ThirdPartyTransID")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            return Some(C2bValidationReply::Accept {
                third_party_trans_id,
            });
        }
        code.as_str()
            .and_then(C2bRejectCode::parse)
            .map(C2bValidationReply::Reject)
    }
}

impl Serialize for C2bValidationReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            C2bValidationReply::Accept {
                third_party_trans_id,
            } => {
                let fields = if third_party_trans_id.is_some() { 3 } else { 2 };
                let mut s = serializer.serialize_struct("C2bValidationReply", fields)?;
                s.serialize_field("ResultCode", "0")?;
                s.serialize_field("ResultDesc", "Accepted")?;
                if let Some(id) = third_party_trans_id {
                    s.serialize_field("ThirdPartyTransID", id)?;
                }
                s.end()
            }
            C2bValidationReply::Reject(code) => {
                let mut s = serializer.serialize_struct("C2bValidationReply", 2)?;
                s.serialize_field("ResultCode", code.as_str())?;
                s.serialize_field("ResultDesc", "Rejected")?;
                s.end()
            }
        }
    }
}

/// The reply to a C2B confirmation: `{"ResultCode":0,"ResultDesc":"Success"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct C2bConfirmationAck;

impl Serialize for C2bConfirmationAck {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("C2bConfirmationAck", 2)?;
        s.serialize_field("ResultCode", &0)?;
        s.serialize_field("ResultDesc", "Success")?;
        s.end()
    }
}

/// The reply to an STK callback: `{"ResultCode":0,"ResultDesc":"Accepted"}`. Daraja requires no
/// body, but this is the documented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StkCallbackAck;

impl Serialize for StkCallbackAck {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("StkCallbackAck", 2)?;
        s.serialize_field("ResultCode", &0)?;
        s.serialize_field("ResultDesc", "Accepted")?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUCCESS: &str = r#"{"Body": {"stkCallback": {"MerchantRequestID": "29461-71235519-1",
  "CheckoutRequestID": "ws_CO_24112026143006417712345678", "ResultCode": 0,
  "ResultDesc": "The service request is processed successfully.",
  "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 450.00},
    {"Name": "MpesaReceiptNumber", "Value": "QKH94M1Z11"}, {"Name": "Balance"},
    {"Name": "TransactionDate", "Value": 20261124143041}, {"Name": "PhoneNumber", "Value": 254712345678}]}}}}"#;

    const CANCELLED: &str = r#"{"Body": {"stkCallback": {"MerchantRequestID": "29461-71235519-1",
  "CheckoutRequestID": "ws_CO_24112026143006417712345678", "ResultCode": 1032,
  "ResultDesc": "Request cancelled by user"}}}"#;

    const VALIDATION: &str = r#"{"TransactionType": "Pay Bill", "TransID": "RKTQDM7W6S", "TransTime": "20261124151204",
 "TransAmount": "450.00", "BusinessShortCode": "600984", "BillRefNumber": "dk10427",
 "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
 "MSISDN": "7132104d6aae9c3fac82095a42c2817952bca48e09d98d5bf4ac08218982fb90",
 "FirstName": "JANE", "MiddleName": "", "LastName": ""}"#;

    const CONFIRMATION: &str = r#"{"TransactionType": "Pay Bill", "TransID": "RKTQDM7W6S", "TransTime": "20261124151206",
 "TransAmount": "450.00", "BusinessShortCode": "600984", "BillRefNumber": "dk10427",
 "InvoiceNumber": "", "OrgAccountBalance": "128450.00", "ThirdPartyTransID": "",
 "MSISDN": "2547 ***** 678", "FirstName": "JANE", "MiddleName": "", "LastName": ""}"#;

    fn kes(raw: &str) -> Kes {
        Kes::parse(raw).unwrap()
    }

    fn json<T: Serialize>(reply: &T) -> serde_json::Value {
        serde_json::to_value(reply).unwrap()
    }

    #[test]
    fn the_golden_success_callback_gives_every_item_by_name() {
        let callback = StkCallback::parse(SUCCESS.as_bytes()).unwrap();
        assert_eq!(callback.merchant_request_id, "29461-71235519-1");
        assert_eq!(
            callback.checkout_request_id,
            "ws_CO_24112026143006417712345678"
        );
        assert_eq!(callback.result_code, 0);
        assert!(callback.is_paid());
        assert_eq!(callback.kind(), ResultKind::Paid);
        let metadata = callback.metadata.unwrap();
        assert_eq!(metadata.amount, Some(kes("450")));
        assert_eq!(metadata.mpesa_receipt_number.as_deref(), Some("QKH94M1Z11"));
        assert_eq!(metadata.balance, None);
        assert_eq!(
            metadata.transaction_date.unwrap().to_rfc3339(),
            "2026-11-24T14:30:41+03:00"
        );
        assert_eq!(metadata.phone_number.unwrap().digits(), "254712345678");
    }

    #[test]
    fn the_golden_cancel_callback_has_no_metadata() {
        let callback = StkCallback::parse(CANCELLED.as_bytes()).unwrap();
        assert_eq!(callback.result_code, 1032);
        assert_eq!(callback.kind(), ResultKind::Cancelled);
        assert_eq!(callback.result_desc, "Request cancelled by user");
        assert_eq!(callback.metadata, None);
    }

    #[test]
    fn items_are_found_by_name_whatever_their_order_and_an_integer_amount_is_equal() {
        let body = json!({"Body": {"stkCallback": {
        "MerchantRequestID": "1", "CheckoutRequestID": "ws_CO_1", "ResultCode": "0",
        "ResultDesc": "ok",
        "CallbackMetadata": {"Item": [
            {"Name": "PhoneNumber", "Value": "254712345678"},
            {"Name": "TransactionDate", "Value": 20261124143041u64},
            {"Name": "MpesaReceiptNumber", "Value": "QKH94M1Z11"},
            {"Name": "Amount", "Value": 450}
        ]}}}});
        let callback = StkCallback::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(callback.result_code, 0, "a string ResultCode is read too");
        let metadata = callback.metadata.unwrap();
        assert_eq!(metadata.amount, Some(kes("450.00")));
        assert_eq!(metadata.mpesa_receipt_number.as_deref(), Some("QKH94M1Z11"));
        assert!(metadata.phone_number.is_some());
    }

    #[test]
    fn an_amount_with_cents_is_kept_exactly_for_the_caller_to_refuse() {
        let body = json!({"Body": {"stkCallback": {
            "CheckoutRequestID": "ws_CO_1", "ResultCode": 0,
            "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 450.5}]}}}});
        let metadata = StkCallback::parse(body.to_string().as_bytes())
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(metadata.amount, Some(kes("450.5")));
        assert!(!metadata.amount.unwrap().is_whole());
        assert_eq!(metadata.mpesa_receipt_number, None);
    }

    #[test]
    fn an_unreadable_amount_or_receipt_is_an_error_but_a_bad_phone_is_only_missing() {
        let with_items = |items: serde_json::Value| {
            json!({"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 0,
                "CallbackMetadata": {"Item": items}}}})
            .to_string()
        };
        let bad_amount = with_items(json!([{"Name": "Amount", "Value": "lots"}]));
        assert_eq!(
            StkCallback::parse(bad_amount.as_bytes()),
            Err(CallbackError::InvalidItem("Amount"))
        );
        let bad_receipt = with_items(json!([{"Name": "MpesaReceiptNumber", "Value": 12}]));
        assert_eq!(
            StkCallback::parse(bad_receipt.as_bytes()),
            Err(CallbackError::InvalidItem("MpesaReceiptNumber"))
        );
        let bad_phone = with_items(json!([{"Name": "PhoneNumber", "Value": "n/a"}]));
        let metadata = StkCallback::parse(bad_phone.as_bytes())
            .unwrap()
            .metadata
            .unwrap();
        assert_eq!(metadata.phone_number, None);
    }

    #[test]
    fn bodies_that_are_not_an_stk_callback_are_malformed() {
        for body in [
            "",
            "not json",
            "{}",
            r#"{"Body":{}}"#,
            r#"{"Body":{"stkCallback":{"ResultCode":0}}}"#,
            r#"{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":"zero"}}}"#,
            r#"{"Body":{"stkCallback":{"CheckoutRequestID":"x","ResultCode":0.5}}}"#,
        ] {
            assert!(
                matches!(
                    StkCallback::parse(body.as_bytes()),
                    Err(CallbackError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_golden_validation_request_is_read_with_its_amount_as_a_decimal() {
        let request = C2bRequest::parse(VALIDATION.as_bytes()).unwrap();
        assert_eq!(request.trans_id, "RKTQDM7W6S");
        assert_eq!(request.trans_amount, kes("450"));
        assert_eq!(request.business_short_code, "600984");
        assert_eq!(request.bill_ref_number, "dk10427");
        assert_eq!(request.account_number(), "DK10427");
        assert_eq!(request.org_account_balance, "");
        assert_eq!(request.first_name, "JANE");
        assert_eq!(request.msisdn.as_str().len(), 64);
        assert_eq!(
            request.trans_time().unwrap().to_rfc3339(),
            "2026-11-24T15:12:04+03:00"
        );
    }

    #[test]
    fn the_golden_confirmation_keeps_the_masked_msisdn_as_text() {
        let request = C2bRequest::parse(CONFIRMATION.as_bytes()).unwrap();
        assert_eq!(request.org_account_balance, "128450.00");
        assert_eq!(request.msisdn.as_str(), "2547 ***** 678");
    }

    #[test]
    fn a_c2b_request_tolerates_missing_optional_fields_and_numeric_values() {
        let request = C2bRequest::parse(
            br#"{"TransID":"RKTQDM7W6S","TransAmount":450,"BusinessShortCode":600984}"#,
        )
        .unwrap();
        assert_eq!(request.trans_amount, kes("450"));
        assert_eq!(request.business_short_code, "600984");
        assert_eq!(request.bill_ref_number, "");
        assert_eq!(request.msisdn, OpaqueMsisdn::default());
        assert!(C2bRequest::parse(br#"{"TransAmount":"450.00"}"#).is_err());
        assert!(C2bRequest::parse(br#"{"TransID":"X","TransAmount":"abc"}"#).is_err());
    }

    #[test]
    fn a_c2b_request_s_debug_shows_neither_names_nor_the_msisdn() {
        let request = C2bRequest::parse(VALIDATION.as_bytes()).unwrap();
        let shown = format!("{request:?}");
        assert!(shown.contains("RKTQDM7W6S"));
        assert!(!shown.contains("JANE"));
        assert!(!shown.contains("7132104d6aae9c3fac"));
    }

    #[test]
    fn reply_bodies_have_daraja_s_exact_types() {
        assert_eq!(
            json(&C2bValidationReply::accept()),
            json!({"ResultCode": "0", "ResultDesc": "Accepted"})
        );
        assert_eq!(
            json(&C2bValidationReply::Accept {
                third_party_trans_id: Some("T1".into())
            }),
            json!({"ResultCode": "0", "ResultDesc": "Accepted", "ThirdPartyTransID": "T1"})
        );
        assert_eq!(
            json(&C2bValidationReply::reject(
                C2bRejectCode::InvalidAccountNumber
            )),
            json!({"ResultCode": "C2B00012", "ResultDesc": "Rejected"})
        );
        assert_eq!(
            json(&C2bConfirmationAck),
            json!({"ResultCode": 0, "ResultDesc": "Success"})
        );
        assert_eq!(
            json(&StkCallbackAck),
            json!({"ResultCode": 0, "ResultDesc": "Accepted"})
        );
    }

    #[test]
    fn every_reject_code_round_trips_through_a_validation_reply() {
        let codes: Vec<&str> = C2bRejectCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            codes,
            ["C2B00011", "C2B00012", "C2B00013", "C2B00014", "C2B00015", "C2B00016"]
        );
        for code in C2bRejectCode::ALL {
            let reply = C2bValidationReply::reject(code);
            let read = C2bValidationReply::from_json(&serde_json::to_value(&reply).unwrap());
            assert_eq!(read, Some(reply));
        }
        assert_eq!(
            C2bValidationReply::from_json(&json!({"ResultCode": 0})),
            Some(C2bValidationReply::accept())
        );
        assert_eq!(
            C2bValidationReply::from_json(&json!({"ResultCode": "C2B99999"})),
            None
        );
        assert_eq!(C2bValidationReply::from_json(&json!("Accepted")), None);
    }

    #[test]
    fn result_codes_mean_what_the_reference_table_says() {
        let table = [
            (0, ResultKind::Paid),
            (1, ResultKind::InsufficientFunds),
            (17, ResultKind::Transient),
            (1001, ResultKind::SubscriberLocked),
            (1019, ResultKind::Expired),
            (1025, ResultKind::NotSent),
            (9999, ResultKind::NotSent),
            (1032, ResultKind::Cancelled),
            (1037, ResultKind::Unreachable),
            (2001, ResultKind::WrongPin),
            (4999, ResultKind::Unknown),
            (-1, ResultKind::Unknown),
        ];
        for (code, kind) in table {
            assert_eq!(result_code_meaning(code), kind, "{code}");
        }
    }
}
