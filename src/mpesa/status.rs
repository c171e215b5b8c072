//! Finding a payment by its receipt: Daraja's Transaction Status API.
//!
//! The answer to "the shopper paid, quotes receipt `SGL7M2XK4P`, and Duka never heard of it":
//! a confirmation lost while Duka was down, or an STK payment whose push reply and callback both
//! went missing. Asynchronous like the refunds: the synchronous reply only takes the request; the
//! result comes to `ResultURL` (or a timeout to `QueueTimeOutURL`). The fields, their types and
//! the golden body are in `reference-status.md` next to this file, which the tests below read.

use serde::{Deserialize, Serialize};

use super::client::DarajaClient;
use super::refunds::{credentials, lenient_i64, remarks, result_urls, RefundAccepted};
use super::wire::{lenient_string, Endpoint};
use super::MpesaError;
use crate::money::Kes;

/// `CommandID` of a transaction status query.
pub const STATUS_COMMAND: &str = "TransactionStatusQuery";
/// `IdentifierType` of the querying party: "4", an organisation shortcode.
pub const ORGANISATION_IDENTIFIER: &str = "4";
/// The `TransactionStatus` of a payment that moved money.
pub const COMPLETED: &str = "Completed";

/// One transaction status query.
#[derive(Clone, Debug)]
pub struct StatusQuery<'a> {
    /// The receipt asked about (also sent as `Occasion`, which the result echoes).
    pub receipt: &'a str,
    pub remarks: &'a str,
    pub result_url: &'a str,
    pub timeout_url: &'a str,
}

/// The body of `POST /mpesa/transactionstatus/v1/query`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBody {
    #[serde(rename = "Initiator")]
    pub initiator: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    #[serde(rename = "CommandID")]
    pub command_id: &'static str,
    #[serde(rename = "TransactionID")]
    pub transaction_id: String,
    #[serde(rename = "PartyA")]
    pub party_a: u64,
    #[serde(rename = "IdentifierType")]
    pub identifier_type: &'static str,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(rename = "Occasion")]
    pub occasion: String,
}

pub(crate) fn status_body(
    client: &DarajaClient,
    query: &StatusQuery<'_>,
) -> Result<StatusBody, MpesaError> {
    let (initiator, security_credential) = credentials(client)?;
    let (result_url, queue_timeout_url) = result_urls(query.result_url, query.timeout_url)?;
    let receipt = query.receipt.trim();
    if !is_receipt(receipt) {
        return Err(MpesaError::InvalidRequest(format!(
            "{receipt:?} is not an M-Pesa receipt number"
        )));
    }
    Ok(StatusBody {
        initiator,
        security_credential,
        command_id: STATUS_COMMAND,
        transaction_id: receipt.to_owned(),
        party_a: client.receiver_party()?,
        identifier_type: ORGANISATION_IDENTIFIER,
        result_url,
        queue_timeout_url,
        remarks: remarks(query.remarks),
        occasion: receipt.to_owned(),
    })
}

/// True for what an M-Pesa receipt looks like: 10 capital letters and digits (`SGL7M2XK4P`).
/// A looser check would let an operator's typo become a query Daraja bills for.
pub fn is_receipt(raw: &str) -> bool {
    raw.len() == 10
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl DarajaClient {
    /// Asks M-Pesa what became of the payment with receipt `query.receipt`.
    ///
    /// # Errors
    /// As [`DarajaClient::reversal`]; [`MpesaError::InvalidRequest`] for a malformed receipt.
    #[tracing::instrument(name = "mpesa.transaction_status", skip_all, fields(mpesa.receipt = %query.receipt))]
    pub async fn transaction_status(
        &self,
        query: &StatusQuery<'_>,
    ) -> Result<RefundAccepted, MpesaError> {
        let body = status_body(self, query)?;
        self.asynchronous_call(Endpoint::TransactionStatus, &body)
            .await
    }
}

/// One `{"Key", "Value"}` item; the value may be missing, a string or a number.
#[derive(Clone, Debug, Deserialize)]
struct Item {
    #[serde(rename = "Key", default, deserialize_with = "lenient_string")]
    key: String,
    #[serde(rename = "Value", default)]
    value: serde_json::Value,
}

/// A list that Daraja sometimes sends as a single object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Item>),
    One(Item),
}

impl OneOrMany {
    fn items(&self) -> &[Item] {
        match self {
            OneOrMany::Many(items) => items,
            OneOrMany::One(item) => std::slice::from_ref(item),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
struct Parameters {
    #[serde(rename = "ResultParameter")]
    items: Option<OneOrMany>,
}

#[derive(Clone, Debug, Deserialize)]
struct Reference {
    #[serde(rename = "ReferenceItem")]
    items: Option<OneOrMany>,
}

#[derive(Clone, Debug, Deserialize)]
struct RawResult {
    #[serde(rename = "ResultCode", default, deserialize_with = "lenient_i64")]
    result_code: i64,
    #[serde(rename = "ResultDesc", default, deserialize_with = "lenient_string")]
    result_desc: String,
    #[serde(rename = "ResultParameters")]
    parameters: Option<Parameters>,
    #[serde(rename = "ReferenceData")]
    reference: Option<Reference>,
}

/// What a transaction status result (or queue timeout) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusResult {
    pub result_code: i64,
    pub result_desc: String,
    /// The receipt the result is about: the echoed `Occasion`, else `ReceiptNo`.
    pub receipt: Option<String>,
    /// Present when M-Pesa knows the transaction.
    pub found: Option<FoundTransaction>,
}

/// A transaction M-Pesa knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundTransaction {
    pub amount: Kes,
    /// `Completed` moved money; anything else did not.
    pub status: String,
    /// `Pay Bill`, `Pay Bill Online`, `Buy Goods`, …
    pub reason_type: String,
    /// `<phone> - <name>` as M-Pesa gives it (personal data: never logged whole).
    pub debit_party: String,
    /// The account number, when the result carries one (not documented; some accounts do).
    pub bill_reference: Option<String>,
}

impl FoundTransaction {
    pub fn completed(&self) -> bool {
        self.status.trim().eq_ignore_ascii_case(COMPLETED)
    }

    /// True for a payment made through an STK prompt (`Pay Bill Online`, `Buy Goods Online`),
    /// false for one the shopper typed (`Pay Bill`, `Buy Goods`).
    pub fn by_stk(&self) -> bool {
        self.reason_type
            .trim()
            .to_ascii_lowercase()
            .ends_with("online")
    }
}

fn text(value: &serde_json::Value) -> Option<String> {
    let raw = match value {
        serde_json::Value::String(s) => s.trim().to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!raw.is_empty()).then_some(raw)
}

impl StatusResult {
    /// Reads `{"Result": {...}}`.
    ///
    /// # Errors
    /// The body is not JSON of that shape, or says it found a transaction without a readable
    /// amount.
    pub fn parse(body: &[u8]) -> Result<Self, StatusParseError> {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(rename = "Result")]
            result: RawResult,
        }
        let raw = serde_json::from_slice::<Envelope>(body)
            .map_err(|e| StatusParseError(e.to_string()))?
            .result;
        let find = |list: &Option<OneOrMany>, key: &str| {
            list.as_ref().and_then(|l| {
                l.items()
                    .iter()
                    .find(|i| i.key.trim().eq_ignore_ascii_case(key))
                    .and_then(|i| text(&i.value))
            })
        };
        let parameters = raw.parameters.and_then(|p| p.items);
        let occasion = find(&raw.reference.and_then(|r| r.items), "Occasion");
        let receipt_no = find(&parameters, "ReceiptNo");
        let found = match (raw.result_code, find(&parameters, "Amount")) {
            (0, Some(amount)) => {
                let amount = Kes::parse(&amount)
                    .map_err(|e| StatusParseError(format!("Amount {amount:?}: {e}")))?;
                Some(FoundTransaction {
                    amount,
                    status: find(&parameters, "TransactionStatus").unwrap_or_default(),
                    reason_type: find(&parameters, "ReasonType").unwrap_or_default(),
                    debit_party: find(&parameters, "DebitPartyName").unwrap_or_default(),
                    bill_reference: find(&parameters, "BillReferenceNumber"),
                })
            }
            _ => None,
        };
        Ok(StatusResult {
            result_code: raw.result_code,
            result_desc: raw.result_desc,
            receipt: occasion.or(receipt_no).filter(|r| is_receipt(r)),
            found,
        })
    }
}

/// A transaction status result Duka could not read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable transaction status result: {0}")]
pub struct StatusParseError(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpesa::refunds::tests::{client, json_block};

    const REFERENCE: &str = include_str!("reference-status.md");

    fn block(heading: &str) -> String {
        json_block(REFERENCE, heading)
    }

    fn query(receipt: &str) -> StatusQuery<'_> {
        StatusQuery {
            receipt,
            remarks: "Finding a missed payment",
            result_url: "https://shop.example.com/payments/s3cr3t/status/result",
            timeout_url: "https://shop.example.com/payments/s3cr3t/status/timeout",
        }
    }

    #[test]
    fn the_golden_status_body_matches_the_reference() {
        let body = status_body(&client(), &query("SGL7M2XK4P")).unwrap();
        let golden: serde_json::Value =
            serde_json::from_str(&block("### Golden transaction status request")).unwrap();
        assert_eq!(serde_json::to_value(&body).unwrap(), golden);
    }

    #[test]
    fn a_malformed_receipt_is_refused_before_anything_is_sent() {
        for bad in ["", "sgl7m2xk4p", "SGL7M2XK4", "SGL7M2XK4P1", "SGL7M2XK4*"] {
            assert!(
                matches!(
                    status_body(&client(), &query(bad)),
                    Err(MpesaError::InvalidRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_reference_result_reads_as_a_completed_payment() {
        let result = StatusResult::parse(block("The result, later").as_bytes()).unwrap();
        let found = result.found.as_ref().expect("found");
        assert_eq!(result.receipt.as_deref(), Some("SGL7M2XK4P"));
        assert_eq!(found.amount, Kes::whole(1500));
        assert!(found.completed());
        assert_eq!(found.reason_type, "Pay Bill Online");
        assert_eq!(found.bill_reference, None);
    }

    #[test]
    fn a_result_with_one_object_lists_string_amounts_and_no_occasion_still_reads() {
        let result = StatusResult::parse(
            br#"{"Result":{"ResultCode":"0","ResultDesc":"ok","ResultParameters":{"ResultParameter":[{"Key":"ReceiptNo","Value":"UHJA541HGH"},{"Key":"Amount","Value":"100.00"},{"Key":"TransactionStatus","Value":"Completed"},{"Key":"BillReferenceNumber","Value":"D7K2Q9"}]},"ReferenceData":{"ReferenceItem":{"Key":"Occasion"}}}}"#,
        )
        .unwrap();
        assert_eq!(result.receipt.as_deref(), Some("UHJA541HGH"));
        let found = result.found.unwrap();
        assert_eq!(found.amount, Kes::whole(100));
        assert_eq!(found.bill_reference.as_deref(), Some("D7K2Q9"));
    }

    #[test]
    fn an_unknown_receipt_is_not_found_and_keeps_its_occasion() {
        let result = StatusResult::parse(
            br#"{"Result":{"ResultType":0,"ResultCode":2032,"ResultDesc":"The transaction receipt number does not exist.","ReferenceData":{"ReferenceItem":[{"Key":"Occasion","Value":"SGL7M2XK4P"}]}}}"#,
        )
        .unwrap();
        assert_eq!(
            (result.result_code, result.receipt.as_deref(), result.found),
            (2032, Some("SGL7M2XK4P"), None)
        );
    }

    #[test]
    fn garbage_and_unreadable_amounts_are_errors() {
        assert!(StatusResult::parse(b"not json").is_err());
        assert!(StatusResult::parse(
            br#"{"Result":{"ResultCode":0,"ResultParameters":{"ResultParameter":[{"Key":"Amount","Value":"lots"}]}}}"#
        )
        .is_err());
    }
}
