//! The client against the sandbox over real HTTP, with a small Duka stand-in receiving the
//! callbacks. Client and sandbox share one [`ManualClock`], so timestamps and ids are fixed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::*;
use crate::money::Kes;
use crate::mpesa::{
    C2bConfirmationAck, C2bRejectCode, C2bRequest, C2bValidationReply, DarajaClient, ErrorCode,
    ManualClock, MpesaError, PushRefusal, ResultKind, StkCallback, StkCallbackAck, StkPush,
    StkPushAccepted, StkQueryOutcome,
};

const SHORT: Duration = Duration::from_millis(50);
const PATIENCE: Duration = Duration::from_secs(5);

fn start_instant() -> DateTime<Utc> {
    "2026-11-24T11:30:05Z".parse().unwrap()
}

fn phone(n: u32) -> Msisdn {
    Msisdn::parse(&format!("2547{n:08}")).unwrap()
}

/// What Duka answers to a C2B validation, and after how long.
#[derive(Clone)]
struct ValidationScript {
    reply: Value,
    delay: Duration,
}

/// A stand-in for Duka's payment routes: records every body and answers as Duka would.
#[derive(Clone)]
struct Duka {
    base_url: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    validation: Arc<Mutex<ValidationScript>>,
}

impl Duka {
    async fn start() -> Self {
        let duka = Duka {
            base_url: String::new(),
            received: Arc::default(),
            validation: Arc::new(Mutex::new(ValidationScript {
                reply: serde_json::to_value(C2bValidationReply::accept()).unwrap(),
                delay: Duration::ZERO,
            })),
        };
        let app = Router::new()
            .route("/payments/{secret}/{*kind}", post(Self::receive))
            .with_state(duka.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Duka { base_url, ..duka }
    }

    async fn receive(
        State(duka): State<Duka>,
        Path((_secret, kind)): Path<(String, String)>,
        body: Bytes,
    ) -> Json<Value> {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        duka.received.lock().unwrap().push((kind.clone(), value));
        match kind.as_str() {
            "c2b/validate" => {
                let script = duka.validation.lock().unwrap().clone();
                tokio::time::sleep(script.delay).await;
                Json(script.reply)
            }
            "c2b/confirm" => Json(serde_json::to_value(C2bConfirmationAck).unwrap()),
            _ => Json(serde_json::to_value(StkCallbackAck).unwrap()),
        }
    }

    fn url(&self, kind: &str) -> String {
        format!("{}/payments/s3cr3t/{kind}", self.base_url)
    }

    fn answer_validation(&self, reply: Value, delay: Duration) {
        *self.validation.lock().unwrap() = ValidationScript { reply, delay };
    }
}

struct Harness {
    sandbox: MpesaSandbox,
    client: DarajaClient,
    clock: Arc<ManualClock>,
    duka: Duka,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(change: impl FnOnce(&mut SandboxConfig)) -> Self {
        let clock = Arc::new(ManualClock::new(start_instant()));
        let mut config = SandboxConfig {
            seed: Some(7),
            clock: clock.clone(),
            callback_delay: SHORT,
            prompt_timeout: Duration::from_secs(2),
            callback_timeout: Duration::from_secs(2),
            validation_timeout: Duration::from_millis(500),
            ..SandboxConfig::default()
        };
        change(&mut config);
        let sandbox = MpesaSandbox::start(config).await.unwrap();
        let client = client_for(&sandbox, &clock, Duration::from_secs(3));
        let duka = Duka::start().await;
        Harness {
            sandbox,
            client,
            clock,
            duka,
        }
    }

    fn push_to<'a>(&self, payer: &'a Msisdn, callback_url: &'a str) -> StkPush<'a> {
        StkPush {
            amount: Kes::whole(450),
            payer,
            account_reference: "DK10427",
            description: "Duka DK10427",
            callback_url,
        }
    }

    async fn push(&self, payer: &Msisdn) -> Result<StkPushAccepted, MpesaError> {
        let url = self.duka.url("stk");
        self.client.stk_push(&self.push_to(payer, &url)).await
    }

    fn count(&self, endpoint: Endpoint) -> usize {
        self.sandbox.requests_to(endpoint).len()
    }

    fn statuses(&self, endpoint: Endpoint) -> Vec<u16> {
        self.sandbox
            .requests_to(endpoint)
            .iter()
            .map(|r| r.status)
            .collect()
    }

    /// A token fetched by hand, checking on the way that `expires_in` is a string.
    async fn raw_token(&self) -> String {
        let reply: Value = reqwest::Client::new()
            .get(format!(
                "{}/oauth/v1/generate?grant_type=client_credentials",
                self.sandbox.base_url()
            ))
            .basic_auth(
                self.sandbox.consumer_key(),
                Some(secrecy::ExposeSecret::expose_secret(
                    &self.sandbox.consumer_secret(),
                )),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(reply["expires_in"].is_string(), "{reply}");
        reply["access_token"].as_str().unwrap().to_owned()
    }

    async fn raw_post(&self, endpoint: Endpoint, body: &Value) -> (u16, Value) {
        let token = self.raw_token().await;
        let response = reqwest::Client::new()
            .post(format!("{}{}", self.sandbox.base_url(), endpoint.path()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn client_for(sandbox: &MpesaSandbox, clock: &Arc<ManualClock>, timeout: Duration) -> DarajaClient {
    let mut config = sandbox.daraja_config();
    config.request_timeout = timeout;
    DarajaClient::with_clock(config, clock.clone()).unwrap()
}

fn golden_body(h: &Harness, payer: &Msisdn) -> Value {
    let url = h.duka.url("stk");
    let push = h.push_to(payer, &url);
    let passkey = secrecy::ExposeSecret::expose_secret(&h.sandbox.passkey()).to_owned();
    let body = crate::mpesa::client::push_body(
        &h.sandbox.shortcode(),
        None,
        &passkey,
        &push,
        h.clock.now(),
    )
    .unwrap();
    serde_json::to_value(&body).unwrap()
}

// Tokens

#[tokio::test]
async fn many_calls_share_one_token() {
    let h = Harness::start().await;
    for n in 1..=3 {
        h.push(&phone(n)).await.unwrap();
    }
    h.client.stk_query("ws_CO_unknown").await.unwrap_err();
    assert_eq!(h.count(Endpoint::Token), 1);
    assert_eq!(h.count(Endpoint::StkPush), 3);
}

#[tokio::test]
async fn concurrent_first_calls_fetch_a_single_token() {
    let h = Arc::new(Harness::start().await);
    let mut calls = tokio::task::JoinSet::new();
    for n in 1..=8 {
        let h = Arc::clone(&h);
        calls.spawn(async move { h.push(&phone(n)).await.map(drop) });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(h.count(Endpoint::Token), 1);
    assert_eq!(h.statuses(Endpoint::StkPush), vec![200; 8]);
}

#[tokio::test]
async fn a_token_near_its_end_is_replaced_before_daraja_refuses_it() {
    let h = Harness::start_with(|c| c.token_ttl = Duration::from_secs(60)).await;
    h.push(&phone(1)).await.unwrap();
    // A 60 s token is used for its first half only.
    h.clock.advance(Duration::from_secs(31));
    h.push(&phone(2)).await.unwrap();
    assert_eq!(h.count(Endpoint::Token), 2);
    assert_eq!(
        h.statuses(Endpoint::StkPush),
        [200, 200],
        "no call was refused"
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_call_retried_once() {
    let h = Harness::start().await;
    h.push(&phone(1)).await.unwrap();
    h.sandbox.expire_tokens();
    h.push(&phone(2)).await.unwrap();
    assert_eq!(h.count(Endpoint::Token), 2);
    assert_eq!(h.statuses(Endpoint::StkPush), [200, 404, 200]);
    assert_eq!(h.sandbox.pushes().len(), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_an_error_not_a_loop() {
    // Tokens that die as they are issued: every call is refused.
    let h = Harness::start_with(|c| c.token_ttl = Duration::ZERO).await;
    let error = h.push(&phone(1)).await.unwrap_err();
    assert!(error.is_invalid_token(), "{error:?}");
    assert!(error.is_rejected());
    assert_eq!(h.count(Endpoint::Token), 2);
    assert_eq!(h.statuses(Endpoint::StkPush), [404, 404]);
}

#[tokio::test]
async fn wrong_app_credentials_fail_at_the_token_so_the_push_never_left() {
    let h = Harness::start().await;
    let mut config = h.sandbox.daraja_config();
    config.consumer_secret = secrecy::SecretString::from("wrong");
    let client = DarajaClient::with_clock(config, h.clock.clone()).unwrap();
    let error = client.check_credentials().await.unwrap_err();
    let MpesaError::Token(cause) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(
        cause.daraja_error().map(|e| e.code.clone()),
        Some(ErrorCode::InvalidAuthentication)
    );
    assert!(error.never_arrived());
    assert_eq!(h.count(Endpoint::StkPush), 0);
}

#[tokio::test]
async fn a_malformed_grant_type_is_refused_with_400_008_02() {
    let h = Harness::start().await;
    let response = reqwest::Client::new()
        .get(format!(
            "{}/oauth/v1/generate?grant_type=client_credentials%20",
            h.sandbox.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorCode"], "400.008.02");
}

// Push validation and refusals

#[tokio::test]
async fn the_client_s_push_body_passes_the_sandbox_s_checks() {
    let h = Harness::start().await;
    let accepted = h.push(&phone(1)).await.unwrap();
    let recorded = &h.sandbox.requests_to(Endpoint::StkPush)[0];
    assert_eq!(recorded.body, golden_body(&h, &phone(1)));
    assert!(recorded.body["Amount"].is_u64() && recorded.body["PartyA"].is_u64());
    assert!(accepted
        .checkout_request_id
        .starts_with("ws_CO_24112026143005"));
    let push = h.sandbox.push(&accepted.checkout_request_id).unwrap();
    assert_eq!(
        (push.amount, push.account_reference.as_str()),
        (450, "DK10427")
    );
}

#[tokio::test]
async fn bad_fields_get_400_002_02_naming_the_field() {
    let h = Harness::start().await;
    let golden = golden_body(&h, &phone(1));
    let cases = [
        ("Timestamp", json!("20261124113005"), "Timestamp"),
        ("Amount", json!(450.0), "Amount"),
        ("Amount", json!(250_001), "Amount"),
        ("PhoneNumber", json!("0712345678"), "PhoneNumber"),
        (
            "AccountReference",
            json!("DK1042700000X"),
            "AccountReference",
        ),
        (
            "CallBackURL",
            json!("https://shop.example.co.ke/mpesa/stk"),
            "CallBackURL",
        ),
    ];
    for (field, value, named) in cases {
        let mut body = golden.clone();
        body[field] = value;
        let (status, reply) = h.raw_post(Endpoint::StkPush, &body).await;
        assert_eq!(status, 400, "{field}");
        assert_eq!(reply["errorCode"], "400.002.02");
        assert_eq!(
            reply["errorMessage"],
            format!("Bad Request - Invalid {named}")
        );
        assert!(reply["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    }
    assert!(h.sandbox.pushes().is_empty());
}

#[tokio::test]
async fn strict_urls_refuse_the_local_callback_url() {
    let h = Harness::start_with(|c| c.strict_urls = true).await;
    let error = h.push(&phone(1)).await.unwrap_err();
    assert_eq!(
        error.daraja_error().map(|e| e.message.as_str()),
        Some("Bad Request - Invalid CallBackURL")
    );
    assert!(error.is_rejected());
}

#[tokio::test]
async fn a_wrong_passkey_is_a_credentials_refusal() {
    let h = Harness::start().await;
    let mut config = h.sandbox.daraja_config();
    config.passkey = secrecy::SecretString::from("not-the-passkey");
    let client = DarajaClient::with_clock(config, h.clock.clone()).unwrap();
    let url = h.duka.url("stk");
    let payer = phone(1);
    let error = client.stk_push(&h.push_to(&payer, &url)).await.unwrap_err();
    assert_eq!(error.http_status(), Some(500));
    assert_eq!(error.push_refusal(), Some(PushRefusal::WrongCredentials));
    assert!(
        error.is_rejected(),
        "a 500.001.1001 is a refusal, not an outage"
    );
}

#[tokio::test]
async fn a_second_push_to_a_phone_with_one_pending_is_refused_as_in_progress() {
    let h = Harness::start().await;
    h.sandbox.set_outcome_for(&phone(1), Outcome::interactive());
    h.push(&phone(1)).await.unwrap();
    let error = h.push(&phone(1)).await.unwrap_err();
    assert_eq!(
        error.push_refusal(),
        Some(PushRefusal::TransactionInProgress)
    );
    assert!(error.is_rejected());
    h.push(&phone(2)).await.unwrap();
}

// Faults

#[tokio::test]
async fn a_503_is_ambiguous_and_a_429_is_throttled() {
    let h = Harness::start().await;
    h.sandbox
        .fail_next(Endpoint::StkPush, 1, Fault::Unavailable);
    h.sandbox.fail_next(Endpoint::StkPush, 1, Fault::Throttled);
    let unavailable = h.push(&phone(1)).await.unwrap_err();
    assert!(unavailable.is_ambiguous(), "{unavailable:?}");
    assert_eq!(unavailable.http_status(), Some(503));
    let throttled = h.push(&phone(1)).await.unwrap_err();
    assert!(
        throttled.is_throttled() && throttled.is_rejected(),
        "{throttled:?}"
    );
    h.push(&phone(1)).await.unwrap();
    assert_eq!(
        h.sandbox.pushes().len(),
        1,
        "only the last push was processed"
    );
}

#[tokio::test]
async fn a_hung_push_times_out_ambiguously_and_the_query_settles_it() {
    let h = Harness::start().await;
    let impatient = client_for(&h.sandbox, &h.clock, Duration::from_millis(300));
    h.sandbox
        .fail_next(Endpoint::StkPush, 1, Fault::Hang(Duration::from_secs(2)));
    let url = h.duka.url("stk");
    let payer = phone(1);
    let error = impatient
        .stk_push(&h.push_to(&payer, &url))
        .await
        .unwrap_err();
    assert!(matches!(error, MpesaError::NoReply { .. }), "{error:?}");
    assert!(error.is_ambiguous());

    // The prompt did reach the phone: the push was processed before the reply hung.
    let pushes = h.sandbox.pushes();
    assert_eq!(pushes.len(), 1);
    let checkout = &pushes[0].checkout_request_id;
    h.sandbox.wait_for_result(checkout, PATIENCE).await;
    let outcome = impatient.stk_query(checkout).await.unwrap();
    assert!(matches!(outcome, StkQueryOutcome::Completed(r) if r.result_code == 0));
}

#[tokio::test]
async fn an_error_after_processing_is_ambiguous() {
    let h = Harness::start().await;
    h.sandbox
        .fail_next(Endpoint::StkPush, 1, Fault::ErrorAfterProcessing);
    let error = h.push(&phone(1)).await.unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    assert_eq!(h.sandbox.pushes().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_means_the_push_never_arrived() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = crate::mpesa::DarajaConfig::new(
        format!("http://127.0.0.1:{closed_port}"),
        "key",
        secrecy::SecretString::from("secret"),
        "174379",
        secrecy::SecretString::from("passkey"),
    );
    let client = DarajaClient::new(config).unwrap();
    let payer = phone(1);
    let error = client
        .stk_push(&StkPush {
            amount: Kes::whole(450),
            payer: &payer,
            account_reference: "DK10427",
            description: "Duka DK10427",
            callback_url: "http://127.0.0.1:1/payments/s/stk",
        })
        .await
        .unwrap_err();
    assert!(error.never_arrived(), "{error:?}");
    let MpesaError::Token(cause) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(**cause, MpesaError::Unreachable { .. }),
        "{cause:?}"
    );
}

// Query and callbacks

#[tokio::test]
async fn the_query_is_pending_until_the_phone_answers_then_final() {
    let h = Harness::start_with(|c| c.callback_delay = Duration::from_millis(300)).await;
    let accepted = h.push(&phone(1)).await.unwrap();
    let checkout = &accepted.checkout_request_id;
    assert_eq!(
        h.client.stk_query(checkout).await.unwrap(),
        StkQueryOutcome::Pending
    );
    assert_eq!(h.sandbox.wait_for_result(checkout, PATIENCE).await, Some(0));
    let StkQueryOutcome::Completed(result) = h.client.stk_query(checkout).await.unwrap() else {
        panic!("still pending")
    };
    assert_eq!(result.result_code, 0);
    assert_eq!(result.kind(), ResultKind::Paid);
    assert_eq!(&result.checkout_request_id, checkout);
    let recorded = h.sandbox.requests_to(Endpoint::StkQuery);
    assert_eq!(recorded[0].status, 500);
    let final_reply: Value = serde_json::from_str(&recorded[1].reply).unwrap();
    assert_eq!(
        final_reply["ResultCode"],
        json!("0"),
        "a string on the wire"
    );
}

#[tokio::test]
async fn an_unknown_checkout_request_id_is_refused() {
    let h = Harness::start().await;
    let error = h
        .client
        .stk_query("ws_CO_00000000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(
        error.daraja_error().map(|e| e.message.as_str()),
        Some("Bad Request - Invalid CheckoutRequestID")
    );
    assert!(error.is_rejected());
}

#[tokio::test]
async fn the_callback_reaches_duka_in_daraja_s_shape() {
    let h = Harness::start_with(|c| c.amount_format = AmountFormat::TwoDecimals).await;
    let accepted = h.push(&phone(1)).await.unwrap();
    let callbacks = h.sandbox.wait_for_callbacks(1, PATIENCE).await;
    assert_eq!(callbacks.len(), 1);
    let callback = &callbacks[0];
    assert_eq!(callback.kind, CallbackKind::Stk);
    assert_eq!(callback.url, h.duka.url("stk"));
    assert!(callback
        .raw_body
        .contains(r#"{"Name":"Amount","Value":450.00}"#));
    assert!(callback.raw_body.contains(r#"{"Name":"Balance"}"#));
    let stk = &callback.body["Body"]["stkCallback"];
    assert!(stk["ResultCode"].is_i64(), "a number in the callback");

    let parsed = StkCallback::parse(callback.raw_body.as_bytes()).unwrap();
    assert_eq!(parsed.checkout_request_id, accepted.checkout_request_id);
    assert_eq!(parsed.merchant_request_id, accepted.merchant_request_id);
    let metadata = parsed.metadata.unwrap();
    assert_eq!(metadata.amount, Some(Kes::whole(450)));
    assert_eq!(metadata.phone_number, Some(phone(1)));
    assert_eq!(
        metadata.mpesa_receipt_number,
        h.sandbox
            .push(&accepted.checkout_request_id)
            .unwrap()
            .receipt
    );

    let reply = callback.reply.as_ref().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&reply.body).unwrap(),
        json!({"ResultCode": 0, "ResultDesc": "Accepted"})
    );
    assert_eq!(h.duka.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_scripted_failure_is_the_same_in_the_callback_and_the_query() {
    let h = Harness::start().await;
    h.sandbox.set_outcome_for(&phone(1), Outcome::code(1032));
    let accepted = h.push(&phone(1)).await.unwrap();
    let callbacks = h.sandbox.wait_for_callbacks(1, PATIENCE).await;
    let parsed = StkCallback::parse(callbacks[0].raw_body.as_bytes()).unwrap();
    assert_eq!((parsed.result_code, parsed.metadata), (1032, None));
    let outcome = h
        .client
        .stk_query(&accepted.checkout_request_id)
        .await
        .unwrap();
    assert!(matches!(outcome, StkQueryOutcome::Completed(r) if r.result_code == 1032));

    // Other phones keep the default outcome.
    h.push(&phone(2)).await.unwrap();
    let callbacks = h.sandbox.wait_for_callbacks(2, PATIENCE).await;
    assert_eq!(
        StkCallback::parse(callbacks[1].raw_body.as_bytes())
            .unwrap()
            .result_code,
        0
    );
}

#[tokio::test]
async fn a_dropped_callback_never_comes_but_the_query_knows_the_result() {
    let h = Harness::start().await;
    h.sandbox
        .set_default_outcome(Outcome::code(1037).delivered(Delivery::Drop));
    let accepted = h.push(&phone(1)).await.unwrap();
    let checkout = &accepted.checkout_request_id;
    assert_eq!(
        h.sandbox.wait_for_result(checkout, PATIENCE).await,
        Some(1037)
    );
    assert!(h
        .sandbox
        .wait_for_callbacks(1, Duration::from_millis(300))
        .await
        .is_empty());
    let outcome = h.client.stk_query(checkout).await.unwrap();
    assert!(
        matches!(outcome, StkQueryOutcome::Completed(r) if r.kind() == ResultKind::Unreachable)
    );
}

#[tokio::test]
async fn a_callback_sent_twice_is_sent_identically() {
    let h = Harness::start().await;
    h.sandbox
        .set_default_outcome(Outcome::paid().delivered(Delivery::Twice));
    h.push(&phone(1)).await.unwrap();
    let callbacks = h.sandbox.wait_for_callbacks(2, PATIENCE).await;
    assert_eq!(callbacks.len(), 2);
    assert_eq!(callbacks[0].raw_body, callbacks[1].raw_body);
}

#[tokio::test]
async fn a_callback_held_for_the_query_comes_only_after_it() {
    let h = Harness::start().await;
    h.sandbox
        .set_default_outcome(Outcome::paid().delivered(Delivery::AfterQuery));
    let accepted = h.push(&phone(1)).await.unwrap();
    let checkout = &accepted.checkout_request_id;
    h.sandbox.wait_for_result(checkout, PATIENCE).await;
    assert!(h
        .sandbox
        .wait_for_callbacks(1, Duration::from_millis(300))
        .await
        .is_empty());
    let outcome = h.client.stk_query(checkout).await.unwrap();
    assert!(matches!(outcome, StkQueryOutcome::Completed(r) if r.result_code == 0));
    assert_eq!(h.sandbox.wait_for_callbacks(1, PATIENCE).await.len(), 1);
}

#[tokio::test]
async fn a_late_callback_comes_after_its_delay() {
    let h = Harness::start().await;
    h.sandbox
        .set_default_outcome(Outcome::paid().delivered(Delivery::Late(Duration::from_millis(600))));
    let accepted = h.push(&phone(1)).await.unwrap();
    h.sandbox
        .wait_for_result(&accepted.checkout_request_id, PATIENCE)
        .await;
    assert!(h
        .sandbox
        .wait_for_callbacks(1, Duration::from_millis(200))
        .await
        .is_empty());
    assert_eq!(h.sandbox.wait_for_callbacks(1, PATIENCE).await.len(), 1);
}

#[tokio::test]
async fn a_callback_duka_does_not_answer_is_recorded_as_such() {
    let h = Harness::start().await;
    let payer = phone(1);
    let closed = "http://127.0.0.1:1/payments/s3cr3t/stk";
    h.client.stk_push(&h.push_to(&payer, closed)).await.unwrap();
    let callbacks = h.sandbox.wait_for_callbacks(1, PATIENCE).await;
    assert!(callbacks[0].reply.is_err());
}

// The interactive phone

#[tokio::test]
async fn the_right_pin_pays_and_the_prompt_events_follow() {
    let h = Harness::start().await;
    h.sandbox.set_default_outcome(Outcome::interactive());
    let mut events = h.sandbox.subscribe_prompts();
    let accepted = h.push(&phone(1)).await.unwrap();
    let prompt = h
        .sandbox
        .wait_for_prompt(&phone(1), PATIENCE)
        .await
        .unwrap();
    assert_eq!(prompt.checkout_request_id, accepted.checkout_request_id);
    assert_eq!(
        (prompt.amount, prompt.account_reference.as_str()),
        (450, "DK10427")
    );
    assert!(prompt.text().contains("KES 450"));
    assert_eq!(
        events.recv().await.unwrap(),
        PromptEvent::Opened(prompt.clone())
    );

    let code = h
        .sandbox
        .answer_prompt(
            &prompt.checkout_request_id,
            PromptAnswer::Pin(h.sandbox.pin()),
        )
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        events.recv().await.unwrap(),
        PromptEvent::Closed {
            checkout_request_id: prompt.checkout_request_id.clone(),
            result_code: 0
        }
    );
    let callbacks = h.sandbox.wait_for_callbacks(1, PATIENCE).await;
    assert!(StkCallback::parse(callbacks[0].raw_body.as_bytes())
        .unwrap()
        .is_paid());
    assert!(h.sandbox.prompts().is_empty());
}

#[tokio::test]
async fn a_wrong_pin_gives_2001_and_cancel_gives_1032() {
    let h = Harness::start().await;
    h.sandbox.set_default_outcome(Outcome::interactive());
    let wrong = h.push(&phone(1)).await.unwrap();
    let cancelled = h.push(&phone(2)).await.unwrap();
    assert_eq!(h.sandbox.prompts().len(), 2);
    let answer = |id: &str, a| h.sandbox.answer_prompt(id, a).unwrap();
    assert_eq!(
        answer(&wrong.checkout_request_id, PromptAnswer::Pin("0000".into())),
        2001
    );
    assert_eq!(
        answer(&cancelled.checkout_request_id, PromptAnswer::Cancel),
        1032
    );
    for (accepted, code) in [(wrong, 2001), (cancelled, 1032)] {
        let result = h
            .sandbox
            .wait_for_result(&accepted.checkout_request_id, PATIENCE)
            .await;
        assert_eq!(result, Some(code));
    }
}

#[tokio::test]
async fn a_silent_phone_ends_in_1037() {
    let h = Harness::start_with(|c| c.prompt_timeout = Duration::from_millis(200)).await;
    h.sandbox.set_default_outcome(Outcome::interactive());
    let accepted = h.push(&phone(1)).await.unwrap();
    let checkout = &accepted.checkout_request_id;
    assert_eq!(
        h.sandbox.wait_for_result(checkout, PATIENCE).await,
        Some(1037)
    );
    assert!(h.sandbox.prompts().is_empty());
    assert!(matches!(
        h.sandbox.answer_prompt(checkout, PromptAnswer::Cancel),
        Err(SandboxError::UnknownPrompt(_))
    ));
    // The phone is free again.
    h.push(&phone(1)).await.unwrap();
}

#[tokio::test]
async fn another_process_can_list_and_answer_prompts_over_http() {
    let h = Harness::start().await;
    h.sandbox.set_default_outcome(Outcome::interactive());
    let accepted = h.push(&phone(1)).await.unwrap();
    h.push(&phone(2)).await.unwrap();
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!(
            "{}/sandbox/prompts?phone=254700000001",
            h.sandbox.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prompts = listed["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 1);
    assert_eq!(
        prompts[0]["CheckoutRequestID"],
        json!(accepted.checkout_request_id)
    );

    let answered: Value = http
        .post(format!(
            "{}/sandbox/prompts/{}",
            h.sandbox.base_url(),
            accepted.checkout_request_id
        ))
        .json(&json!({"pin": h.sandbox.pin()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answered, json!({"ResultCode": 0}));
}

// C2B

async fn registered(h: &Harness) {
    h.client
        .register_c2b_urls(&h.duka.url("c2b/confirm"), &h.duka.url("c2b/validate"))
        .await
        .unwrap();
}

#[tokio::test]
async fn registering_c2b_urls_reads_the_misspelled_originator_id() {
    let h = Harness::start().await;
    let registered = h
        .client
        .register_c2b_urls(&h.duka.url("c2b/confirm"), &h.duka.url("c2b/validate"))
        .await
        .unwrap();
    assert_eq!(registered.originator_conversation_id.split('-').count(), 3);
    assert_eq!(registered.response_description, "Success");
    let reply = &h.sandbox.requests_to(Endpoint::C2bRegister)[0];
    assert!(reply.reply.contains("OriginatorCoversationID"));
    assert_eq!(reply.body["ResponseType"], "Completed");
    let registration = h.sandbox.c2b_registration().unwrap();
    assert_eq!(registration.confirmation_url, h.duka.url("c2b/confirm"));
}

#[tokio::test]
async fn registration_checks_the_response_type_s_case_and_the_urls() {
    let h = Harness::start().await;
    let mut body = json!({"ShortCode": h.sandbox.shortcode(), "ResponseType": "completed",
        "ConfirmationURL": h.duka.url("c2b/confirm"), "ValidationURL": h.duka.url("c2b/validate")});
    let (status, reply) = h.raw_post(Endpoint::C2bRegister, &body).await;
    assert_eq!(
        (status, reply["errorMessage"].as_str()),
        (400, Some("Bad Request - Invalid ResponseType"))
    );

    body["ResponseType"] = json!("Completed");
    body["ConfirmationURL"] = json!(format!("{}/MPESA/confirm", h.duka.base_url));
    let (status, reply) = h.raw_post(Endpoint::C2bRegister, &body).await;
    assert_eq!(
        (status, reply["errorMessage"].as_str()),
        (400, Some("Bad Request - Invalid ConfirmationURL"))
    );

    // The client refuses such a URL itself, before sending anything.
    let error = h
        .client
        .register_c2b_urls(
            &format!("{}/mpesa/confirm", h.duka.base_url),
            &h.duka.url("c2b/validate"),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, MpesaError::InvalidRequest(_)) && error.never_arrived());
    assert!(h.sandbox.c2b_registration().is_none());
}

#[tokio::test]
async fn a_paybill_payment_is_validated_then_confirmed() {
    let h = Harness::start_with(|c| c.c2b_validation = true).await;
    registered(&h).await;
    let outcome = h.sandbox.pay_bill(" dk 10427", "450").await.unwrap();
    assert_eq!(outcome.result, PayBillResult::Confirmed);
    let callbacks = h.sandbox.callbacks();
    let kinds: Vec<CallbackKind> = callbacks.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [CallbackKind::C2bValidation, CallbackKind::C2bConfirmation]
    );

    let validation = C2bRequest::parse(callbacks[0].raw_body.as_bytes()).unwrap();
    assert_eq!(validation.org_account_balance, "");
    let confirmation = C2bRequest::parse(callbacks[1].raw_body.as_bytes()).unwrap();
    assert_eq!(confirmation.trans_id, outcome.trans_id);
    assert_eq!(
        callbacks[1].body["TransAmount"],
        json!("450.00"),
        "a string with cents"
    );
    assert_eq!(confirmation.trans_amount, Kes::whole(450));
    assert_eq!(confirmation.bill_ref_number, " dk 10427", "sent as typed");
    assert_eq!(confirmation.account_number(), "DK10427");
    assert_eq!(confirmation.msisdn.as_str().len(), 64);
    assert!(!confirmation.org_account_balance.is_empty());
    assert_eq!(
        serde_json::from_str::<Value>(&callbacks[1].reply.as_ref().unwrap().body).unwrap(),
        json!({"ResultCode": 0, "ResultDesc": "Success"})
    );
}

#[tokio::test]
async fn a_rejected_validation_is_never_confirmed() {
    let h = Harness::start_with(|c| c.c2b_validation = true).await;
    registered(&h).await;
    let reject = C2bValidationReply::reject(C2bRejectCode::InvalidAccountNumber);
    h.duka
        .answer_validation(serde_json::to_value(reject).unwrap(), Duration::ZERO);
    let outcome = h.sandbox.pay_bill("XX999", "450").await.unwrap();
    assert_eq!(
        outcome.result,
        PayBillResult::Rejected(C2bRejectCode::InvalidAccountNumber)
    );
    assert_eq!(h.sandbox.callbacks().len(), 1);
}

#[tokio::test]
async fn a_late_validation_lets_the_payment_through_when_the_response_type_is_completed() {
    let h = Harness::start_with(|c| c.c2b_validation = true).await;
    registered(&h).await;
    let accept = serde_json::to_value(C2bValidationReply::accept()).unwrap();
    h.duka.answer_validation(accept, Duration::from_secs(2));
    let outcome = h.sandbox.pay_bill("DK10427", "450").await.unwrap();
    assert_eq!(outcome.result, PayBillResult::Confirmed);
    let callbacks = h.sandbox.callbacks();
    assert!(callbacks[0].reply.is_err(), "validation timed out");
    assert_eq!(callbacks[1].kind, CallbackKind::C2bConfirmation);
}

#[tokio::test]
async fn a_failed_validation_cancels_the_payment_when_the_response_type_is_cancelled() {
    let h = Harness::start_with(|c| c.c2b_validation = true).await;
    let body = json!({"ShortCode": h.sandbox.shortcode(), "ResponseType": "Cancelled",
        "ConfirmationURL": h.duka.url("c2b/confirm"), "ValidationURL": h.duka.url("c2b/validate")});
    assert_eq!(h.raw_post(Endpoint::C2bRegister, &body).await.0, 200);
    h.duka
        .answer_validation(json!("not a reply"), Duration::ZERO);
    let outcome = h.sandbox.pay_bill("DK10427", "450").await.unwrap();
    assert_eq!(outcome.result, PayBillResult::Cancelled);
    assert_eq!(h.sandbox.callbacks().len(), 1);
}

#[tokio::test]
async fn without_validation_only_confirmations_are_sent_and_may_repeat() {
    let h = Harness::start().await;
    registered(&h).await;
    let payment = PayBill {
        confirmations: 2,
        msisdn_style: MsisdnStyle::Masked,
        ..PayBill::new("DK10427", "1800")
    };
    let outcome = h.sandbox.pay_bill_with(payment).await.unwrap();
    let callbacks = h.sandbox.callbacks();
    assert_eq!(callbacks.len(), 2);
    assert!(callbacks
        .iter()
        .all(|c| c.kind == CallbackKind::C2bConfirmation));
    assert_eq!(callbacks[0].raw_body, callbacks[1].raw_body);
    let confirmation = C2bRequest::parse(callbacks[0].raw_body.as_bytes()).unwrap();
    assert_eq!(confirmation.trans_id, outcome.trans_id);
    assert_eq!(confirmation.msisdn.as_str(), "2547 ***** 149");
    assert_eq!(callbacks[0].body["TransAmount"], json!("1800.00"));
}

#[tokio::test]
async fn paying_before_registration_or_a_bad_amount_is_an_error() {
    let h = Harness::start().await;
    assert!(matches!(
        h.sandbox.pay_bill("DK10427", "450").await,
        Err(SandboxError::NoC2bUrls)
    ));
    registered(&h).await;
    assert!(matches!(
        h.sandbox.pay_bill("DK10427", "-1").await,
        Err(SandboxError::InvalidAmount(_))
    ));
}

#[tokio::test]
async fn simulate_pays_through_daraja_s_http_route() {
    let h = Harness::start().await;
    registered(&h).await;
    let body = json!({"ShortCode": h.sandbox.shortcode(), "CommandID": "CustomerPayBillOnline",
        "Amount": 450, "Msisdn": 254708374149u64, "BillRefNumber": "dk10427"});
    let (status, reply) = h.raw_post(Endpoint::C2bSimulate, &body).await;
    assert_eq!(status, 200);
    assert!(reply["OriginatorCoversationID"].is_string());
    let callbacks = h.sandbox.wait_for_callbacks(1, PATIENCE).await;
    let confirmation = C2bRequest::parse(callbacks[0].raw_body.as_bytes()).unwrap();
    assert_eq!(confirmation.account_number(), "DK10427");
}

// Determinism

#[tokio::test]
async fn the_same_seed_and_clock_give_the_same_ids() {
    let first = Harness::start().await;
    let second = Harness::start().await;
    let a = first.push(&phone(1)).await.unwrap();
    let b = second.push(&phone(1)).await.unwrap();
    assert_eq!(a.checkout_request_id, b.checkout_request_id);
    assert_eq!(a.merchant_request_id, b.merchant_request_id);
}

#[tokio::test]
async fn every_request_is_recorded_with_its_reply() {
    let h = Harness::start().await;
    h.push(&phone(1)).await.unwrap();
    let endpoints: Vec<Endpoint> = h.sandbox.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(endpoints, [Endpoint::Token, Endpoint::StkPush]);
    let push = &h.sandbox.requests()[1];
    assert_eq!(push.at, start_instant());
    let reply: Value = serde_json::from_str(&push.reply).unwrap();
    assert_eq!(reply["ResponseCode"], json!("0"));
}
