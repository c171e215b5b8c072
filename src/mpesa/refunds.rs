//! Giving money back through Daraja: the Reversal API (a whole transaction back to its payer)
//! and a B2C `BusinessPayment` (part of one, to the shopper's phone).
//!
//! Both are asynchronous: the synchronous reply only says Daraja took the request; the result
//! comes to `ResultURL`, or a timeout to `QueueTimeOutURL`. The fields, their types and the
//! golden bodies are in `reference-refunds.md` next to this file (the repo's addendum to the
//! read-only shared reference), which the golden tests below read.

use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use super::client::DarajaClient;
use super::urls::check_callback_url;
use super::wire::{is_success_code, lenient_string, Endpoint};
use super::MpesaError;
use crate::money::Kes;
use crate::msisdn::Msisdn;

/// `CommandID` of a reversal.
pub const REVERSAL_COMMAND: &str = "TransactionReversal";
/// `CommandID` of a B2C refund.
pub const B2C_COMMAND: &str = "BusinessPayment";
/// `RecieverIdentifierType` (Daraja's spelling) of a reversal: "11", the organisation.
pub const REVERSAL_RECEIVER_TYPE: &str = "11";

/// One refund request.
#[derive(Clone, Debug)]
pub struct RefundRequest<'a> {
    /// Stable per refund: a re-send is then refused by Daraja as a duplicate.
    pub originator_conversation_id: &'a str,
    /// The receipt of the payment refunded (`TransactionID` of a reversal, `Occasion` of B2C).
    pub receipt: &'a str,
    pub amount: Kes,
    /// The B2C recipient (ignored by a reversal, which goes back to the payer).
    pub to: &'a Msisdn,
    pub remarks: &'a str,
    pub result_url: &'a str,
    pub timeout_url: &'a str,
}

/// The body of `POST /mpesa/reversal/v1/request`.
#[derive(Debug, Serialize)]
pub(crate) struct ReversalBody {
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    #[serde(rename = "Initiator")]
    pub initiator: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    #[serde(rename = "CommandID")]
    pub command_id: &'static str,
    #[serde(rename = "TransactionID")]
    pub transaction_id: String,
    #[serde(rename = "Amount")]
    pub amount: u32,
    #[serde(rename = "ReceiverParty")]
    pub receiver_party: u64,
    #[serde(rename = "RecieverIdentifierType")]
    pub reciever_identifier_type: &'static str,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(rename = "Occasion")]
    pub occasion: String,
}

/// The body of `POST /mpesa/b2c/v3/paymentrequest`.
#[derive(Debug, Serialize)]
pub(crate) struct B2cBody {
    #[serde(rename = "OriginatorConversationID")]
    pub originator_conversation_id: String,
    #[serde(rename = "InitiatorName")]
    pub initiator_name: String,
    #[serde(rename = "SecurityCredential")]
    pub security_credential: String,
    #[serde(rename = "CommandID")]
    pub command_id: &'static str,
    #[serde(rename = "Amount")]
    pub amount: u32,
    #[serde(rename = "PartyA")]
    pub party_a: u64,
    #[serde(rename = "PartyB")]
    pub party_b: u64,
    #[serde(rename = "Remarks")]
    pub remarks: String,
    #[serde(rename = "QueueTimeOutURL")]
    pub queue_timeout_url: String,
    #[serde(rename = "ResultURL")]
    pub result_url: String,
    #[serde(rename = "Occasion")]
    pub occasion: String,
}

/// The synchronous reply of both APIs.
#[derive(Debug, Deserialize)]
struct RefundReply {
    #[serde(
        rename = "ConversationID",
        default,
        deserialize_with = "lenient_string"
    )]
    conversation_id: String,
    #[serde(rename = "ResponseCode", deserialize_with = "lenient_string")]
    response_code: String,
    #[serde(
        rename = "ResponseDescription",
        default,
        deserialize_with = "lenient_string"
    )]
    response_description: String,
}

/// Daraja took the refund request; the result follows at the result URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundAccepted {
    pub conversation_id: String,
}

/// The `Result` of a reversal or B2C result (or timeout) callback.
#[derive(Clone, Debug, Deserialize)]
pub struct RefundResult {
    #[serde(rename = "ResultCode", default, deserialize_with = "lenient_i64")]
    pub result_code: i64,
    #[serde(rename = "ResultDesc", default, deserialize_with = "lenient_string")]
    pub result_desc: String,
    #[serde(
        rename = "OriginatorConversationID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub originator_conversation_id: String,
    #[serde(
        rename = "ConversationID",
        default,
        deserialize_with = "lenient_string"
    )]
    pub conversation_id: String,
    #[serde(rename = "TransactionID", default, deserialize_with = "lenient_string")]
    pub transaction_id: String,
}

impl RefundResult {
    /// Reads `{"Result": {...}}`.
    ///
    /// # Errors
    /// The body is not JSON of that shape.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(rename = "Result")]
            result: RefundResult,
        }
        serde_json::from_slice::<Envelope>(body).map(|e| e.result)
    }
}

pub(crate) fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(-1),
        serde_json::Value::String(s) => s.trim().parse().unwrap_or(-1),
        _ => -1,
    })
}

pub(crate) fn remarks(raw: &str) -> String {
    let trimmed: String = raw.trim().chars().take(100).collect();
    if trimmed.chars().count() < 2 {
        "Duka".to_owned()
    } else {
        trimmed
    }
}

pub(crate) fn credentials(client: &DarajaClient) -> Result<(String, String), MpesaError> {
    let (name, credential) = client.initiator().ok_or_else(|| {
        MpesaError::Config(
            "refunds need MPESA_INITIATOR_NAME and MPESA_SECURITY_CREDENTIAL".to_owned(),
        )
    })?;
    Ok((name.to_owned(), credential.expose_secret().to_owned()))
}

fn urls(request: &RefundRequest<'_>) -> Result<(String, String), MpesaError> {
    result_urls(request.result_url, request.timeout_url)
}

/// Checks an asynchronous API's `ResultURL` and `QueueTimeOutURL` against Daraja's rules.
pub(crate) fn result_urls(result: &str, timeout: &str) -> Result<(String, String), MpesaError> {
    for (field, url) in [("ResultURL", result), ("QueueTimeOutURL", timeout)] {
        check_callback_url(url, false)
            .map_err(|e| MpesaError::InvalidRequest(format!("{field}: {e}")))?;
    }
    Ok((result.trim().to_owned(), timeout.trim().to_owned()))
}

fn whole(amount: Kes) -> Result<u32, MpesaError> {
    amount.to_mpesa_whole_shillings().map_err(|e| {
        MpesaError::InvalidRequest(format!("the refund of {amount} is not payable: {e}"))
    })
}

pub(crate) fn reversal_body(
    client: &DarajaClient,
    request: &RefundRequest<'_>,
) -> Result<ReversalBody, MpesaError> {
    let (initiator, security_credential) = credentials(client)?;
    let (result_url, queue_timeout_url) = urls(request)?;
    Ok(ReversalBody {
        originator_conversation_id: request.originator_conversation_id.to_owned(),
        initiator,
        security_credential,
        command_id: REVERSAL_COMMAND,
        transaction_id: request.receipt.to_owned(),
        amount: whole(request.amount)?,
        receiver_party: client.receiver_party()?,
        reciever_identifier_type: REVERSAL_RECEIVER_TYPE,
        result_url,
        queue_timeout_url,
        remarks: remarks(request.remarks),
        occasion: request.receipt.to_owned(),
    })
}

pub(crate) fn b2c_body(
    client: &DarajaClient,
    request: &RefundRequest<'_>,
) -> Result<B2cBody, MpesaError> {
    let (initiator_name, security_credential) = credentials(client)?;
    let (result_url, queue_timeout_url) = urls(request)?;
    let party_b = request.to.digits().parse().map_err(|_| {
        MpesaError::InvalidRequest(format!("the recipient {} is not all digits", request.to))
    })?;
    Ok(B2cBody {
        originator_conversation_id: request.originator_conversation_id.to_owned(),
        initiator_name,
        security_credential,
        command_id: B2C_COMMAND,
        amount: whole(request.amount)?,
        party_a: client.receiver_party()?,
        party_b,
        remarks: remarks(request.remarks),
        queue_timeout_url,
        result_url,
        occasion: request.receipt.to_owned(),
    })
}

impl DarajaClient {
    /// The shortcode that paid (a reversal's `ReceiverParty`) and pays out (B2C `PartyA`): the
    /// till in till mode, else the paybill.
    pub(crate) fn receiver_party(&self) -> Result<u64, MpesaError> {
        let code = self.till().unwrap_or(self.shortcode());
        code.parse()
            .map_err(|_| MpesaError::Config(format!("shortcode {code:?} is not all digits")))
    }

    /// Reverses the whole payment `request.receipt`.
    ///
    /// # Errors
    /// As [`DarajaClient::stk_push`]; also [`MpesaError::Config`] without initiator credentials.
    #[tracing::instrument(name = "mpesa.reversal", skip_all, fields(mpesa.receipt = %request.receipt))]
    pub async fn reversal(
        &self,
        request: &RefundRequest<'_>,
    ) -> Result<RefundAccepted, MpesaError> {
        let body = reversal_body(self, request)?;
        self.asynchronous_call(Endpoint::Reversal, &body).await
    }

    /// Pays `request.amount` to `request.to` as a refund of `request.receipt`.
    ///
    /// # Errors
    /// As [`DarajaClient::reversal`].
    #[tracing::instrument(name = "mpesa.b2c", skip_all, fields(mpesa.receipt = %request.receipt))]
    pub async fn b2c(&self, request: &RefundRequest<'_>) -> Result<RefundAccepted, MpesaError> {
        let body = b2c_body(self, request)?;
        self.asynchronous_call(Endpoint::B2c, &body).await
    }

    pub(crate) async fn asynchronous_call<B: Serialize>(
        &self,
        endpoint: Endpoint,
        body: &B,
    ) -> Result<RefundAccepted, MpesaError> {
        let reply = self.call(endpoint, body).await?;
        let answer: RefundReply = reply.decode()?;
        if !is_success_code(&answer.response_code) {
            return Err(MpesaError::NotAccepted {
                endpoint,
                response_code: answer.response_code,
                description: answer.response_description,
            });
        }
        Ok(RefundAccepted {
            conversation_id: answer.conversation_id,
        })
    }
}

/// The error code the sandbox (and, as integrators report, Daraja) gives a second request with
/// an `OriginatorConversationID` already used: the first request is in, so this is no failure.
pub const DUPLICATE_ORIGINATOR_CODE: &str = "400.002.05";

/// True when `error` says the request was a duplicate of one Daraja already has.
pub fn is_duplicate(error: &MpesaError) -> bool {
    matches!(error, MpesaError::Daraja { error, .. } if error.code.as_str() == DUPLICATE_ORIGINATOR_CODE)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpesa::DarajaConfig;
    use secrecy::SecretString;

    const REFERENCE: &str = include_str!("reference-refunds.md");

    /// The text of the first JSON block after the line `heading` in `reference`.
    pub(crate) fn json_block(reference: &str, heading: &str) -> String {
        let at = reference.find(heading).expect(heading);
        let rest = &reference[at..];
        let start = rest.find("```json").expect("a json block") + "```json".len();
        let end = rest[start..].find("```").expect("its end") + start;
        rest[start..end].to_owned()
    }

    fn golden(heading: &str) -> serde_json::Value {
        serde_json::from_str(&json_block(REFERENCE, heading)).expect("golden JSON")
    }

    /// A client for the golden bodies: the reference's shortcode and initiator.
    pub(crate) fn client() -> DarajaClient {
        DarajaClient::new(
            DarajaConfig::new(
                "https://sandbox.safaricom.co.ke",
                "key",
                SecretString::from("secret".to_owned()),
                "600984",
                SecretString::from("passkey".to_owned()),
            )
            .with_initiator(Some((
                "testapi".to_owned(),
                SecretString::from(
                    "EsJocK7+NjqZPC3I3EO+TbvS+xVb9TymWwaKABoaZr/Z/n0UysSs==".to_owned(),
                ),
            ))),
        )
        .unwrap()
    }

    fn request<'a>(to: &'a Msisdn, amount: i64) -> RefundRequest<'a> {
        RefundRequest {
            originator_conversation_id: "DUKA-D7K2Q9-SGL7M2XK4P-0",
            receipt: "SGL7M2XK4P",
            amount: Kes::whole(amount),
            to,
            remarks: "Refund for order D7K2Q9",
            result_url: "https://shop.example.com/payments/s3cr3t/reversal/result",
            timeout_url: "https://shop.example.com/payments/s3cr3t/reversal/timeout",
        }
    }

    #[test]
    fn the_golden_reversal_body_matches_the_refunds_reference() {
        let to = Msisdn::parse("0712345678").unwrap();
        let body = reversal_body(&client(), &request(&to, 900)).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            golden("### Golden reversal request")
        );
    }

    #[test]
    fn the_golden_b2c_body_matches_the_refunds_reference() {
        let to = Msisdn::parse("0712345678").unwrap();
        let mut req = request(&to, 100);
        req.result_url = "https://shop.example.com/payments/s3cr3t/b2c/result";
        req.timeout_url = "https://shop.example.com/payments/s3cr3t/b2c/timeout";
        let body = b2c_body(&client(), &req).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            golden("### Golden B2C request")
        );
    }

    #[test]
    fn refunds_without_initiator_credentials_are_a_config_error() {
        let plain = DarajaClient::new(DarajaConfig::new(
            "https://sandbox.safaricom.co.ke",
            "key",
            SecretString::from("secret".to_owned()),
            "600984",
            SecretString::from("passkey".to_owned()),
        ))
        .unwrap();
        let to = Msisdn::parse("0712345678").unwrap();
        assert!(matches!(
            reversal_body(&plain, &request(&to, 900)),
            Err(MpesaError::Config(_))
        ));
    }

    #[test]
    fn a_result_callback_reads_with_either_code_type() {
        let result = RefundResult::parse(
            br#"{"Result":{"ResultType":0,"ResultCode":"0","ResultDesc":"ok","OriginatorConversationID":"DUKA-X-Y-0","ConversationID":"AG_1","TransactionID":"RFD1"}}"#,
        )
        .unwrap();
        assert_eq!(
            (result.result_code, result.transaction_id.as_str()),
            (0, "RFD1")
        );
    }
}
