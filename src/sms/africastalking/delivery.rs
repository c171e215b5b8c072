//! Delivery reports: what AT posts to `POST /sms/delivery` as a message moves towards the handset.
//!
//! This module parses a report (form or JSON, since no primary source says which AT uses) and
//! decides whether it may move a stored status. It does not store anything and never resends:
//! a report only ever updates a receipt's delivery status, because nothing in it is signed.
//!
//! Quirks:
//! - Reports repeat and arrive out of order, so a status only ever moves forward
//!   ([`should_apply`]); the first final status wins.
//! - `failureReason` comes only with `Rejected` or `Failed`, and not from every telco; empty
//!   optional fields are read as absent.
//! - A status this module doesn't know is kept as [`DeliveryStatus::Unknown`] with its raw text,
//!   so the caller can store it without it moving anything.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PhoneNumber;

/// Where a message is on its way to the handset, as AT reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Left AT's network (rank 1).
    Sent,
    /// Handed to the telco (rank 2).
    Submitted,
    /// Queued at the telco (rank 3).
    Buffered,
    /// On the handset. Final.
    Success,
    /// Refused by the telco. Final, a failure.
    Rejected,
    /// Could not be delivered. Final, a failure.
    Failed,
    /// Reported by integrators rather than documented. Final, a failure.
    AbsentSubscriber,
    /// Reported by integrators rather than documented. Final, a failure.
    Expired,
    /// Any other text, kept as sent. It has no rank and never moves a stored status.
    Unknown(String),
}

impl DeliveryStatus {
    /// Reads AT's status text. Matching ignores ASCII case, since nothing documents it.
    pub fn parse(raw: &str) -> Self {
        let known = [
            Self::Sent,
            Self::Submitted,
            Self::Buffered,
            Self::Success,
            Self::Rejected,
            Self::Failed,
            Self::AbsentSubscriber,
            Self::Expired,
        ];
        known
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(raw.trim()))
            .unwrap_or_else(|| Self::Unknown(raw.to_owned()))
    }

    /// The status as AT writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sent => "Sent",
            Self::Submitted => "Submitted",
            Self::Buffered => "Buffered",
            Self::Success => "Success",
            Self::Rejected => "Rejected",
            Self::Failed => "Failed",
            Self::AbsentSubscriber => "AbsentSubscriber",
            Self::Expired => "Expired",
            Self::Unknown(raw) => raw,
        }
    }

    /// The order in which statuses may follow each other: 1 to 3 on the way, 4 for every final
    /// status, `None` for an unknown one.
    pub fn rank(&self) -> Option<u8> {
        match self {
            Self::Sent => Some(1),
            Self::Submitted => Some(2),
            Self::Buffered => Some(3),
            Self::Success
            | Self::Rejected
            | Self::Failed
            | Self::AbsentSubscriber
            | Self::Expired => Some(4),
            Self::Unknown(_) => None,
        }
    }

    /// Whether nothing can follow this status.
    pub fn is_final(&self) -> bool {
        self.rank() == Some(4)
    }

    /// Whether this is a final status that means the SMS did not reach the handset.
    pub fn is_failure(&self) -> bool {
        self.is_final() && *self != Self::Success
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(Self::parse(&raw))
    }
}

/// Whether a report with status `incoming` may replace the `stored` one.
///
/// Only forward: the incoming rank must be higher than the stored one. A stored final status is
/// never replaced, not even by another final one (the first wins), and an unknown incoming status
/// moves nothing. An unknown stored status (which a caller should not store as current, but
/// might) counts as no status at all.
pub fn should_apply(stored: Option<&DeliveryStatus>, incoming: &DeliveryStatus) -> bool {
    let Some(incoming_rank) = incoming.rank() else {
        return false;
    };
    match stored.and_then(DeliveryStatus::rank) {
        None => true,
        Some(stored_rank) => stored_rank < 4 && incoming_rank > stored_rank,
    }
}

/// One delivery report. Serializes with AT's field names, as a form or as JSON, which is how the
/// sandbox posts it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// The `messageId` from the send reply; a report whose id Duka never saw is an orphan.
    pub id: String,
    pub status: DeliveryStatus,
    #[serde(rename = "phoneNumber", skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<PhoneNumber>,
    /// `63902` Safaricom, `63903` Airtel KE, `63907` Telkom KE, `99999` AT's sandbox.
    #[serde(rename = "networkCode", skip_serializing_if = "Option::is_none")]
    pub network_code: Option<String>,
    /// Only with `Rejected` or `Failed`, and not from every telco.
    #[serde(rename = "failureReason", skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Premium SMS only.
    #[serde(rename = "retryCount", skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
}

/// Why a body is not a delivery report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryReportError {
    #[error("the delivery report is not a readable form body")]
    BadForm,
    #[error("the delivery report is not a JSON object")]
    BadJson,
    #[error("the delivery report has no `{0}`")]
    Missing(&'static str),
}

impl DeliveryReport {
    /// Parses an `application/x-www-form-urlencoded` report. When a field repeats, the first
    /// value counts.
    ///
    /// # Errors
    /// [`DeliveryReportError`] when the body is not a form, or `id` or `status` is missing or
    /// empty. Every other field is optional.
    pub fn from_form(body: &[u8]) -> Result<Self, DeliveryReportError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|_| DeliveryReportError::BadForm)?;
        Self::from_fields(|name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    /// Parses a JSON report. Numbers are accepted where text is expected (`networkCode` as
    /// `63902`, say), and `null` reads as absent.
    ///
    /// # Errors
    /// [`DeliveryReportError`] when the body is not a JSON object, or `id` or `status` is missing
    /// or empty.
    pub fn from_json(body: &[u8]) -> Result<Self, DeliveryReportError> {
        let json: Value = serde_json::from_slice(body).map_err(|_| DeliveryReportError::BadJson)?;
        let object = json.as_object().ok_or(DeliveryReportError::BadJson)?;
        Self::from_fields(|name| match object.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }

    /// Parses by `Content-Type`: JSON when it says `application/json`, a form otherwise.
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json) and [`from_form`](Self::from_form).
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Self, DeliveryReportError> {
        let is_json = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if is_json {
            Self::from_json(body)
        } else {
            Self::from_form(body)
        }
    }

    fn from_fields(field: impl Fn(&str) -> Option<String>) -> Result<Self, DeliveryReportError> {
        let present = |name: &str| {
            field(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(Self {
            id: present("id").ok_or(DeliveryReportError::Missing("id"))?,
            status: DeliveryStatus::parse(
                &present("status").ok_or(DeliveryReportError::Missing("status"))?,
            ),
            phone_number: present("phoneNumber").map(PhoneNumber::new),
            network_code: present("networkCode"),
            failure_reason: present("failureReason"),
            retry_count: present("retryCount").and_then(|v| v.parse().ok()),
        })
    }

    /// The report as a form body, the encoding AT is believed to use.
    pub fn to_form(&self) -> String {
        // Strings and an integer always encode; serde_urlencoded fails only on nested types.
        serde_urlencoded::to_string(self).expect("a delivery report always form-encodes")
    }
}

impl fmt::Debug for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryReport")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("phone_number", &self.phone_number)
            .field("network_code", &self.network_code)
            .field("failure_reason", &self.failure_reason)
            .field("retry_count", &self.retry_count)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn a_form_report_is_parsed_with_every_field() {
        let body = b"id=ATXid_abc&status=Failed&phoneNumber=%2B254712345678&networkCode=63902\
                     &failureReason=UserInBlackList&retryCount=0";
        let report = DeliveryReport::from_form(body).unwrap();
        assert_eq!(report.id, "ATXid_abc");
        assert_eq!(report.status, Failed);
        assert_eq!(
            report.phone_number.as_ref().map(PhoneNumber::as_str),
            Some("+254712345678")
        );
        assert_eq!(report.network_code.as_deref(), Some("63902"));
        assert_eq!(report.failure_reason.as_deref(), Some("UserInBlackList"));
        assert_eq!(report.retry_count, Some(0));
    }

    #[test]
    fn a_form_report_without_optional_fields_is_accepted() {
        let report =
            DeliveryReport::from_form(b"id=ATXid_abc&status=Success&failureReason=").unwrap();
        assert_eq!(report.status, Success);
        assert_eq!(report.phone_number, None);
        assert_eq!(report.failure_reason, None);
        assert_eq!(report.retry_count, None);
    }

    #[test]
    fn a_json_report_is_parsed_with_numbers_where_text_is_expected() {
        let body = br#"{"id":"ATXid_abc","status":"Submitted","phoneNumber":"+254712345678",
                        "networkCode":99999,"failureReason":null,"retryCount":2}"#;
        let report = DeliveryReport::from_json(body).unwrap();
        assert_eq!(report.status, Submitted);
        assert_eq!(report.network_code.as_deref(), Some("99999"));
        assert_eq!(report.failure_reason, None);
        assert_eq!(report.retry_count, Some(2));
    }

    #[test]
    fn a_report_without_id_or_status_is_refused() {
        assert_eq!(
            DeliveryReport::from_form(b"status=Success"),
            Err(DeliveryReportError::Missing("id"))
        );
        assert_eq!(
            DeliveryReport::from_json(br#"{"id":"ATXid_1","status":""}"#),
            Err(DeliveryReportError::Missing("status"))
        );
        assert_eq!(
            DeliveryReport::from_json(b"[1]"),
            Err(DeliveryReportError::BadJson)
        );
        assert_eq!(
            DeliveryReport::from_json(b"\xff"),
            Err(DeliveryReportError::BadJson)
        );
    }

    #[test]
    fn the_content_type_picks_the_parser() {
        let json = br#"{"id":"ATXid_1","status":"Sent"}"#;
        let report = DeliveryReport::from_body(Some("application/json; charset=utf-8"), json);
        assert_eq!(report.unwrap().status, Sent);
        let form = DeliveryReport::from_body(None, b"id=ATXid_1&status=Buffered");
        assert_eq!(form.unwrap().status, Buffered);
    }

    #[test]
    fn a_report_round_trips_through_its_form_and_json_encodings() {
        let report = DeliveryReport {
            id: "ATXid_1".into(),
            status: Rejected,
            phone_number: Some(PhoneNumber::new("+254712345678")),
            network_code: Some("63902".into()),
            failure_reason: Some("DeliveryFailure".into()),
            retry_count: None,
        };
        assert_eq!(
            report.to_form(),
            "id=ATXid_1&status=Rejected&phoneNumber=%2B254712345678&networkCode=63902&failureReason=DeliveryFailure"
        );
        assert_eq!(
            DeliveryReport::from_form(report.to_form().as_bytes()),
            Ok(report.clone())
        );
        let json = serde_json::to_vec(&report).unwrap();
        assert_eq!(DeliveryReport::from_json(&json), Ok(report));
    }

    #[test]
    fn statuses_are_read_without_regard_to_case_and_unknown_text_is_kept() {
        assert_eq!(DeliveryStatus::parse("success"), Success);
        assert_eq!(DeliveryStatus::parse("AbsentSubscriber"), AbsentSubscriber);
        assert_eq!(
            DeliveryStatus::parse("Delivered"),
            Unknown("Delivered".into())
        );
        assert_eq!(Unknown("Delivered".into()).as_str(), "Delivered");
    }

    #[test]
    fn ranks_finals_and_failures_follow_the_reference_table() {
        assert_eq!(Sent.rank(), Some(1));
        assert_eq!(Submitted.rank(), Some(2));
        assert_eq!(Buffered.rank(), Some(3));
        for status in [Success, Rejected, Failed, AbsentSubscriber, Expired] {
            assert!(status.is_final(), "{status}");
            assert_eq!(status.is_failure(), status != Success, "{status}");
        }
        for status in [Sent, Submitted, Buffered, Unknown("x".into())] {
            assert!(!status.is_final(), "{status}");
            assert!(!status.is_failure(), "{status}");
        }
        assert_eq!(Unknown("x".into()).rank(), None);
    }

    #[test]
    fn a_status_only_moves_forward() {
        assert!(should_apply(None, &Sent));
        assert!(should_apply(None, &Success));
        assert!(should_apply(Some(&Sent), &Submitted));
        assert!(should_apply(Some(&Sent), &Buffered));
        assert!(should_apply(Some(&Buffered), &Failed));
        assert!(!should_apply(Some(&Submitted), &Sent), "backwards");
        assert!(!should_apply(Some(&Submitted), &Submitted), "a repeat");
    }

    #[test]
    fn the_first_final_status_wins() {
        assert!(!should_apply(Some(&Success), &Failed));
        assert!(!should_apply(Some(&Failed), &Success));
        assert!(!should_apply(Some(&Success), &Success));
        assert!(!should_apply(Some(&Rejected), &Sent));
    }

    #[test]
    fn an_unknown_status_moves_nothing() {
        assert!(!should_apply(None, &Unknown("Delivered".into())));
        assert!(!should_apply(Some(&Sent), &Unknown("Delivered".into())));
        assert!(should_apply(Some(&Unknown("Delivered".into())), &Sent));
    }

    #[test]
    fn the_phone_number_is_masked_in_debug_output() {
        let report =
            DeliveryReport::from_form(b"id=1&status=Sent&phoneNumber=%2B254712345678").unwrap();
        assert!(!format!("{report:?}").contains("712345678"));
    }
}
