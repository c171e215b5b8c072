//! The sandbox's validation of request bodies, as Daraja would do it. Pure: no I/O, no clock.
//!
//! A bad field gets `400.002.02 "Bad Request - Invalid <Field>"`; a request whose fields are
//! well formed but whose shortcode or password does not match gets `500.001.1001` ("Merchant
//! does not exist", "Wrong credentials"). Fields are checked in body order, so a request with
//! several faults is refused for the first.
//!
//! Types are checked as strictly as the reference allows: `Amount` must be a JSON integer (or a
//! string of digits, which Daraja accepts), never `450.0` or `"450.50"`; the shortcodes and
//! phones may be numbers or strings of digits, since Daraja documents numbers but SDKs send
//! strings. Daraja's Timestamp tolerance is unpublished, so the skew is a setting.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::mpesa::clock::parse_eat_timestamp;
use crate::mpesa::urls::check_callback_url;
use crate::mpesa::wire::{stk_password, PAYBILL_TRANSACTION_TYPE, TILL_TRANSACTION_TYPE};
use crate::msisdn::Msisdn;

/// A refusal: Daraja's error code and message. The HTTP status is the code's first 3 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub(crate) fn invalid(field: &str) -> Self {
        Self {
            code: "400.002.02",
            message: format!("Bad Request - Invalid {field}"),
        }
    }

    pub(crate) fn refused(message: &str) -> Self {
        Self {
            code: "500.001.1001",
            message: message.to_owned(),
        }
    }

    pub(crate) fn status(&self) -> u16 {
        self.code
            .get(..3)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(500)
    }
}

/// What a request is checked against.
pub(crate) struct Rules {
    pub shortcode: String,
    pub passkey: String,
    pub now: DateTime<Utc>,
    pub timestamp_skew: std::time::Duration,
    pub amount_cap: u32,
    pub strict_urls: bool,
    /// A Buy Goods till behind the store number `shortcode` (till mode), or `None` (a paybill).
    pub till: Option<String>,
}

/// A push that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct ValidPush {
    pub phone: Msisdn,
    pub amount: u32,
    pub account_reference: String,
    pub description: String,
    pub callback_url: String,
}

/// A C2B registration that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidRegistration {
    pub response_type: String,
    pub confirmation_url: String,
    pub validation_url: String,
}

/// A C2B simulate request that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct ValidSimulation {
    pub amount: u32,
    pub phone: Msisdn,
    pub bill_ref_number: String,
}

pub(crate) fn check_push(body: &Value, rules: &Rules) -> Result<ValidPush, Refusal> {
    let shortcode = shortcode_field(body, "BusinessShortCode")?;
    let password = text(body, "Password")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Refusal::invalid("Password"))?;
    let timestamp = timestamp_field(body, rules)?;
    let transaction_type = text(body, "TransactionType")
        .filter(|t| matches!(*t, PAYBILL_TRANSACTION_TYPE | TILL_TRANSACTION_TYPE))
        .ok_or_else(|| Refusal::invalid("TransactionType"))?;
    let amount = amount_field(body, "Amount", rules.amount_cap)?;
    // PartyA is checked for shape only; the prompt goes to PhoneNumber.
    phone_field(body, "PartyA")?;
    let party_b = shortcode_field(body, "PartyB")?;
    // A push shaped for the other kind of shortcode: "operator does not exist" (reported).
    let expected = match &rules.till {
        Some(till) => (TILL_TRANSACTION_TYPE, till),
        None => (PAYBILL_TRANSACTION_TYPE, &rules.shortcode),
    };
    if (transaction_type, &party_b) != expected {
        let mixed_up = transaction_type != expected.0
            || party_b == rules.shortcode
            || rules.till.as_ref() == Some(&party_b);
        return Err(if mixed_up {
            Refusal::refused("[SFC_IC0003] - Operator does not exist")
        } else {
            Refusal::invalid("PartyB")
        });
    }
    let phone = phone_field(body, "PhoneNumber")?;
    let callback_url = text(body, "CallBackURL")
        .filter(|url| check_callback_url(url, rules.strict_urls).is_ok())
        .ok_or_else(|| Refusal::invalid("CallBackURL"))?;
    let account_reference = text(body, "AccountReference")
        .filter(|r| (1..=12).contains(&r.chars().count()))
        .ok_or_else(|| Refusal::invalid("AccountReference"))?;
    let description = text(body, "TransactionDesc")
        .filter(|d| (1..=13).contains(&d.chars().count()))
        .ok_or_else(|| Refusal::invalid("TransactionDesc"))?;
    check_credentials(&shortcode, password, timestamp, rules)?;
    Ok(ValidPush {
        phone,
        amount,
        account_reference: account_reference.to_owned(),
        description: description.to_owned(),
        callback_url: callback_url.to_owned(),
    })
}

/// Checks a query and returns its `CheckoutRequestID`.
pub(crate) fn check_query(body: &Value, rules: &Rules) -> Result<String, Refusal> {
    let shortcode = shortcode_field(body, "BusinessShortCode")?;
    let password = text(body, "Password")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Refusal::invalid("Password"))?;
    let timestamp = timestamp_field(body, rules)?;
    let checkout_request_id = text(body, "CheckoutRequestID")
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| Refusal::invalid("CheckoutRequestID"))?;
    check_credentials(&shortcode, password, timestamp, rules)?;
    Ok(checkout_request_id.trim().to_owned())
}

pub(crate) fn check_registration(
    body: &Value,
    shortcode: &str,
    strict_urls: bool,
) -> Result<ValidRegistration, Refusal> {
    if digits(body, "ShortCode").as_deref() != Some(shortcode) {
        return Err(Refusal::invalid("ShortCode"));
    }
    // Exact case: "completed" is refused.
    let response_type = text(body, "ResponseType")
        .filter(|t| matches!(*t, "Completed" | "Cancelled"))
        .ok_or_else(|| Refusal::invalid("ResponseType"))?;
    let url = |field: &str| {
        text(body, field)
            .filter(|url| check_callback_url(url, strict_urls).is_ok())
            .map(str::to_owned)
            .ok_or_else(|| Refusal::invalid(field))
    };
    Ok(ValidRegistration {
        response_type: response_type.to_owned(),
        confirmation_url: url("ConfirmationURL")?,
        validation_url: url("ValidationURL")?,
    })
}

pub(crate) fn check_simulation(
    body: &Value,
    shortcode: &str,
    amount_cap: u32,
) -> Result<ValidSimulation, Refusal> {
    if digits(body, "ShortCode").as_deref() != Some(shortcode) {
        return Err(Refusal::invalid("ShortCode"));
    }
    if text(body, "CommandID") != Some("CustomerPayBillOnline") {
        return Err(Refusal::invalid("CommandID"));
    }
    let amount = amount_field(body, "Amount", amount_cap)?;
    let phone = phone_field(body, "Msisdn")?;
    let bill_ref_number = text(body, "BillRefNumber")
        .ok_or_else(|| Refusal::invalid("BillRefNumber"))?
        .to_owned();
    Ok(ValidSimulation {
        amount,
        phone,
        bill_ref_number,
    })
}

fn check_credentials(
    shortcode: &str,
    password: &str,
    timestamp: &str,
    rules: &Rules,
) -> Result<(), Refusal> {
    if shortcode != rules.shortcode {
        return Err(Refusal::refused("Merchant does not exist"));
    }
    if password != stk_password(&rules.shortcode, &rules.passkey, timestamp) {
        return Err(Refusal::refused("Wrong credentials"));
    }
    Ok(())
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field)?.as_str()
}

/// A field that may be a JSON integer or a string of digits, as its digits.
fn digits(body: &Value, field: &str) -> Option<String> {
    let text = match body.get(field)? {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

fn shortcode_field(body: &Value, field: &'static str) -> Result<String, Refusal> {
    digits(body, field)
        .filter(|code| (5..=7).contains(&code.len()))
        .ok_or_else(|| Refusal::invalid(field))
}

fn timestamp_field<'a>(body: &'a Value, rules: &Rules) -> Result<&'a str, Refusal> {
    let raw = text(body, "Timestamp").ok_or_else(|| Refusal::invalid("Timestamp"))?;
    let at = parse_eat_timestamp(raw).ok_or_else(|| Refusal::invalid("Timestamp"))?;
    let skew = (at.with_timezone(&Utc) - rules.now).abs();
    let allowed = chrono::Duration::from_std(rules.timestamp_skew).unwrap_or(chrono::Duration::MAX);
    if skew > allowed {
        return Err(Refusal::invalid("Timestamp"));
    }
    Ok(raw)
}

fn amount_field(body: &Value, field: &'static str, cap: u32) -> Result<u32, Refusal> {
    let amount = match body.get(field) {
        // `as_u64` is `None` for `450.0`: a float is refused even when it is whole.
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    };
    amount
        .and_then(|a| u32::try_from(a).ok())
        .filter(|a| (1..=cap).contains(a))
        .ok_or_else(|| Refusal::invalid(field))
}

/// `^254[17]\d{8}$`, as a number or a string.
fn phone_field(body: &Value, field: &'static str) -> Result<Msisdn, Refusal> {
    digits(body, field)
        .filter(|d| d.len() == 12 && (d.starts_with("2547") || d.starts_with("2541")))
        .and_then(|d| Msisdn::parse(&d).ok())
        .ok_or_else(|| Refusal::invalid(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-24T11:30:05Z".parse().unwrap()
    }

    fn rules() -> Rules {
        Rules {
            shortcode: "174379".into(),
            passkey: "test-passkey".into(),
            now: now(),
            timestamp_skew: std::time::Duration::from_secs(300),
            amount_cap: 250_000,
            strict_urls: false,
            till: None,
        }
    }

    fn till_rules() -> Rules {
        Rules {
            till: Some("5123456".into()),
            ..rules()
        }
    }

    #[test]
    fn a_till_takes_buy_goods_pushes_to_the_till_signed_by_the_store() {
        let mut body = golden();
        body["TransactionType"] = json!("CustomerBuyGoodsOnline");
        body["PartyB"] = json!(5123456);
        assert!(check_push(&body, &till_rules()).is_ok());
        // The same push to a paybill shop mixes the two up.
        let mixed = check_push(&body, &rules()).unwrap_err();
        assert_eq!(
            (mixed.code, mixed.message.as_str()),
            ("500.001.1001", "[SFC_IC0003] - Operator does not exist")
        );
        // The till as BusinessShortCode is an unknown merchant, whatever signs it.
        let mut as_store = body.clone();
        as_store["BusinessShortCode"] = json!(5123456);
        assert_eq!(
            check_push(&as_store, &till_rules()).unwrap_err().code,
            "500.001.1001"
        );
    }

    #[test]
    fn a_till_refuses_paybill_shaped_pushes_as_operator_does_not_exist() {
        let paybill_shaped = golden();
        let mut paybill_type = golden();
        paybill_type["PartyB"] = json!(5123456);
        let mut store_as_party_b = golden();
        store_as_party_b["TransactionType"] = json!("CustomerBuyGoodsOnline");
        for body in [paybill_shaped, paybill_type, store_as_party_b] {
            let refusal = check_push(&body, &till_rules()).unwrap_err();
            assert_eq!(refusal.code, "500.001.1001", "{body}");
            assert!(refusal.message.contains("SFC_IC0003"), "{body}");
        }
    }

    fn golden() -> Value {
        json!({"BusinessShortCode": 174379, "Password": "MTc0Mzc5dGVzdC1wYXNza2V5MjAyNjExMjQxNDMwMDU=",
         "Timestamp": "20261124143005", "TransactionType": "CustomerPayBillOnline", "Amount": 450,
         "PartyA": 254712345678u64, "PartyB": 174379, "PhoneNumber": 254712345678u64,
         "CallBackURL": "https://shop.example.co.ke/payments/Xq7vT2kd9LwP4nRbH3s8Ze/stk",
         "AccountReference": "DK10427", "TransactionDesc": "Duka DK10427"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = golden();
        body[field] = value;
        body
    }

    fn without(field: &str) -> Value {
        let mut body = golden();
        body.as_object_mut().unwrap().remove(field);
        body
    }

    fn refusal(body: &Value) -> String {
        check_push(body, &rules()).unwrap_err().message
    }

    #[test]
    fn the_golden_push_passes() {
        let push = check_push(&golden(), &rules()).unwrap();
        assert_eq!(push.phone.digits(), "254712345678");
        assert_eq!(push.amount, 450);
        assert_eq!(push.account_reference, "DK10427");
    }

    #[test]
    fn strings_of_digits_are_accepted_where_daraja_documents_numbers() {
        let mut body = golden();
        for field in ["BusinessShortCode", "PartyB"] {
            body[field] = json!("174379");
        }
        for field in ["PartyA", "PhoneNumber"] {
            body[field] = json!("254712345678");
        }
        body["Amount"] = json!("450");
        assert!(check_push(&body, &rules()).is_ok());
    }

    #[test]
    fn every_missing_field_is_named() {
        for field in [
            "BusinessShortCode",
            "Password",
            "Timestamp",
            "TransactionType",
            "Amount",
            "PartyA",
            "PartyB",
            "PhoneNumber",
            "CallBackURL",
            "AccountReference",
            "TransactionDesc",
        ] {
            assert_eq!(
                refusal(&without(field)),
                format!("Bad Request - Invalid {field}")
            );
        }
    }

    #[test]
    fn amounts_must_be_integers_above_zero_and_within_the_cap() {
        for bad in [
            json!(450.0),
            json!(450.5),
            json!("450.50"),
            json!(0),
            json!(-5),
            json!(250_001),
        ] {
            assert_eq!(
                refusal(&with("Amount", bad.clone())),
                "Bad Request - Invalid Amount",
                "{bad}"
            );
        }
        assert!(check_push(&with("Amount", json!(250_000)), &rules()).is_ok());
    }

    #[test]
    fn phones_must_be_254_then_7_or_1_then_8_digits() {
        for bad in [
            json!(712345678),
            json!("0712345678"),
            json!("+254712345678"),
            json!(254212345678u64),
            json!(2547123456789u64),
        ] {
            assert_eq!(
                refusal(&with("PhoneNumber", bad.clone())),
                "Bad Request - Invalid PhoneNumber",
                "{bad}"
            );
        }
        assert_eq!(
            refusal(&with("PartyA", json!("07123"))),
            "Bad Request - Invalid PartyA"
        );
        assert!(check_push(&with("PhoneNumber", json!(254112345678u64)), &rules()).is_ok());
    }

    #[test]
    fn a_utc_timestamp_is_three_hours_off_and_refused() {
        // The same instant written in UTC, the classic container bug.
        let body = with("Timestamp", json!("20261124113005"));
        assert_eq!(refusal(&body), "Bad Request - Invalid Timestamp");
        assert_eq!(
            refusal(&with("Timestamp", json!("2026-11-24"))),
            "Bad Request - Invalid Timestamp"
        );
    }

    #[test]
    fn the_other_fields_follow_daraja_s_rules() {
        let cases = [
            (
                "TransactionType",
                json!("CustomerPayBill"),
                "TransactionType",
            ),
            ("PartyB", json!(600984), "PartyB"),
            (
                "CallBackURL",
                json!("https://shop.example.co.ke/mpesa/cb"),
                "CallBackURL",
            ),
            ("CallBackURL", json!("not a url"), "CallBackURL"),
            (
                "AccountReference",
                json!("DK1042700000X"),
                "AccountReference",
            ),
            ("AccountReference", json!(""), "AccountReference"),
            (
                "TransactionDesc",
                json!("Duka order DK10427"),
                "TransactionDesc",
            ),
            ("BusinessShortCode", json!(17), "BusinessShortCode"),
        ];
        for (field, value, named) in cases {
            assert_eq!(
                refusal(&with(field, value)),
                format!("Bad Request - Invalid {named}"),
                "{field}"
            );
        }
    }

    #[test]
    fn strict_urls_refuse_plain_http_and_loopback() {
        let strict = Rules {
            strict_urls: true,
            ..rules()
        };
        let body = with("CallBackURL", json!("http://127.0.0.1:8080/payments/s/stk"));
        assert!(check_push(&body, &rules()).is_ok());
        assert_eq!(
            check_push(&body, &strict).unwrap_err(),
            Refusal::invalid("CallBackURL")
        );
    }

    #[test]
    fn a_wrong_passkey_or_shortcode_is_a_500_001_1001() {
        let wrong_passkey = Rules {
            passkey: "other".into(),
            ..rules()
        };
        let refused = check_push(&golden(), &wrong_passkey).unwrap_err();
        assert_eq!(refused, Refusal::refused("Wrong credentials"));
        assert_eq!(refused.status(), 500);

        let other_merchant = Rules {
            shortcode: "600984".into(),
            ..rules()
        };
        let mut body = golden();
        body["PartyB"] = json!(600984);
        assert_eq!(
            check_push(&body, &other_merchant).unwrap_err(),
            Refusal::refused("Merchant does not exist")
        );
        assert_eq!(Refusal::invalid("Amount").status(), 400);
    }

    #[test]
    fn a_query_needs_the_same_credentials_and_an_id() {
        let query = json!({"BusinessShortCode": "174379",
            "Password": "MTc0Mzc5dGVzdC1wYXNza2V5MjAyNjExMjQxNDMwMDU=",
            "Timestamp": "20261124143005", "CheckoutRequestID": "ws_CO_1"});
        assert_eq!(check_query(&query, &rules()).unwrap(), "ws_CO_1");
        let mut no_id = query.clone();
        no_id["CheckoutRequestID"] = json!(" ");
        assert_eq!(
            check_query(&no_id, &rules()).unwrap_err(),
            Refusal::invalid("CheckoutRequestID")
        );
    }

    #[test]
    fn a_registration_needs_the_exact_response_type_and_clean_urls() {
        let body = json!({"ShortCode": "174379", "ResponseType": "Completed",
            "ConfirmationURL": "https://shop.example.co.ke/payments/s/c2b/confirm",
            "ValidationURL": "https://shop.example.co.ke/payments/s/c2b/validate"});
        assert!(check_registration(&body, "174379", true).is_ok());
        let mut lower = body.clone();
        lower["ResponseType"] = json!("completed");
        assert_eq!(
            check_registration(&lower, "174379", false).unwrap_err(),
            Refusal::invalid("ResponseType")
        );
        let mut banned = body.clone();
        banned["ValidationURL"] = json!("https://shop.example.co.ke/safaricom/validate");
        assert_eq!(
            check_registration(&banned, "174379", false).unwrap_err(),
            Refusal::invalid("ValidationURL")
        );
        assert_eq!(
            check_registration(&body, "600984", false).unwrap_err(),
            Refusal::invalid("ShortCode")
        );
    }
}
