//! The real [`AtSmsClient`] against the sandbox, over real sockets: every outcome the outbox must
//! handle, and the delivery reports posted to a small receiver standing in for Duka.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::post;
use axum::Router;
use chrono::TimeZone;

use super::*;
use crate::sms::africastalking::{
    should_apply, AtSmsClient, DeliveryReport, DeliveryStatus, FailureClass, SendOutcome, SmsError,
};

const RECEIPT: &str = "Duka: order DK10427 paid, KES 450. M-Pesa ref QKH94M1Z11. Thank you!";
const WAIT: Duration = Duration::from_secs(5);

fn shopper() -> Msisdn {
    Msisdn::parse("0712345678").unwrap()
}

fn other_shopper() -> Msisdn {
    Msisdn::parse("0722000111").unwrap()
}

async fn start(config: SmsSandboxConfig) -> SmsSandbox {
    SmsSandbox::start(config).await.unwrap()
}

async fn default_sandbox() -> SmsSandbox {
    start(SmsSandboxConfig::default()).await
}

/// A client with timeouts generous enough for a loaded CI machine.
fn client(sandbox: &SmsSandbox) -> AtSmsClient {
    let mut config = sandbox.client_config();
    config.connect_timeout = Duration::from_secs(1);
    config.read_timeout = Duration::from_secs(5);
    AtSmsClient::new(config).unwrap()
}

/// A client that gives up after 300 ms, for the timeout tests; the sandbox's stalls last 2 s.
fn impatient_client(sandbox: &SmsSandbox) -> AtSmsClient {
    let mut config = sandbox.client_config();
    config.connect_timeout = Duration::from_millis(100);
    config.read_timeout = Duration::from_millis(300);
    AtSmsClient::new(config).unwrap()
}

const STALL: Duration = Duration::from_secs(2);

fn rejected(code: u16, class: FailureClass) -> SendOutcome {
    SendOutcome::Rejected {
        status_code: code,
        status: status_name(code).unwrap().to_owned(),
        class,
    }
}

fn status_name(code: u16) -> Option<&'static str> {
    crate::sms::africastalking::status_name(code)
}

/// Raw access to the sandbox, for what the client never sends (no `Accept`, a bad number).
async fn post_raw(
    sandbox: &SmsSandbox,
    accept_json: bool,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/version1/messaging", sandbox.base_url()))
        .header("apiKey", "duka-sms-sandbox-key")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap());
    if accept_json {
        request = request.header(header::ACCEPT, "application/json");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// A stand-in for Duka's `POST /sms/delivery`: keeps each report's content type and body.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Receiver {
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let router = Router::new()
            .route("/sms/delivery", post(Self::deliver))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms/delivery", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (receiver, url)
    }

    async fn deliver(State(receiver): State<Self>, headers: HeaderMap, body: Bytes) {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        receiver.received.lock().unwrap().push((content_type, body));
    }

    fn reports(&self) -> Vec<DeliveryReport> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(content_type, body)| {
                DeliveryReport::from_body(Some(content_type), body).unwrap()
            })
            .collect()
    }

    fn content_types(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(ct, _)| ct.clone())
            .collect()
    }
}

#[tokio::test]
async fn a_good_send_is_accepted_and_recorded_under_the_same_id() {
    // Arrange
    let sandbox = default_sandbox().await;
    let mut config = client(&sandbox).config().clone();
    config.sender_id = Some("DUKA".into());
    let client = AtSmsClient::new(config).unwrap();

    // Act
    let outcome = client.send(&shopper(), RECEIPT).await.unwrap();

    // Assert
    let SendOutcome::Accepted {
        message_id: Some(id),
        status_code: 101,
        cost,
    } = outcome
    else {
        panic!("expected an accepted send, got {outcome:?}");
    };
    assert!(id.starts_with("ATXid_"), "{id}");
    assert_eq!(cost, "KES 0.8000");
    let inbox = sandbox.inbox(&shopper());
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_id, id);
    assert_eq!(inbox[0].text, RECEIPT);
    assert_eq!(inbox[0].from.as_deref(), Some("DUKA"));
    assert_eq!(inbox[0].encoding, SmsEncoding::Gsm7);
    assert_eq!(inbox[0].segments, 1);
    assert!(sandbox.inbox(&other_shopper()).is_empty());

    let request = &sandbox.requests()[inbox[0].request_index];
    assert!(request.api_key_ok);
    assert_eq!(request.header("apikey"), Some("<redacted>"));
    assert_eq!(request.header("Accept"), Some("application/json"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(&str, &str)> = request
        .form
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        form,
        [
            ("username", "sandbox"),
            ("to", "+254712345678"),
            ("message", RECEIPT),
            ("from", "DUKA"),
            ("bulkSMSMode", "1"),
            ("enqueue", "1"),
        ]
    );
    assert!(
        !format!("{request:?}").contains("712345678"),
        "numbers are masked in Debug"
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_a_plain_401_that_pauses_the_outbox() {
    let sandbox = default_sandbox().await;
    let mut config = client(&sandbox).config().clone();
    config.api_key = SecretString::from("stale-key");
    let client = AtSmsClient::new(config).unwrap();

    let error = client.send(&shopper(), RECEIPT).await.unwrap_err();

    assert!(matches!(
        &error,
        SmsError::Http { status: 401, body_head, class: FailureClass::Alert }
            if body_head == "The supplied authentication is invalid"
    ));
    assert!(!error.is_retryable());
    assert!(error.pauses_outbox());
    assert!(sandbox.messages().is_empty());
    assert!(!sandbox.requests()[0].api_key_ok);
}

#[tokio::test]
async fn a_wrong_username_is_refused_like_a_wrong_key() {
    let sandbox = default_sandbox().await;
    let mut config = client(&sandbox).config().clone();
    config.username = "duka".into();
    let error = AtSmsClient::new(config)
        .unwrap()
        .send(&shopper(), RECEIPT)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        SmsError::Http {
            status: 401,
            class: FailureClass::Alert,
            ..
        }
    ));
}

#[tokio::test]
async fn a_scripted_500_then_201_is_retryable_then_accepted() {
    let sandbox = default_sandbox().await;
    sandbox.script([Step::FailRequest(500), Step::Accept]);
    let client = client(&sandbox);

    let first = client.send(&shopper(), RECEIPT).await.unwrap_err();
    let second = client.send(&shopper(), RECEIPT).await.unwrap();

    assert!(matches!(
        first,
        SmsError::Http {
            status: 500,
            class: FailureClass::Retryable,
            ..
        }
    ));
    assert!(first.is_retryable());
    assert!(matches!(second, SendOutcome::Accepted { .. }));
    assert_eq!(
        sandbox.messages().len(),
        1,
        "only the second request sent anything"
    );
    let statuses: Vec<u16> = sandbox.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 201]);
}

#[tokio::test]
async fn whole_request_503_and_401_are_classified_with_nothing_sent() {
    let sandbox = default_sandbox().await;
    sandbox.script([Step::FailRequest(503), Step::FailRequest(401)]);
    let client = client(&sandbox);

    let unavailable = client.send(&shopper(), RECEIPT).await.unwrap_err();
    let unauthorized = client.send(&shopper(), RECEIPT).await.unwrap_err();

    assert!(unavailable.is_retryable() && !unavailable.is_ambiguous());
    assert!(matches!(unavailable, SmsError::Http { status: 503, .. }));
    assert!(unauthorized.pauses_outbox() && !unauthorized.is_retryable());
    assert!(sandbox.messages().is_empty());
}

#[tokio::test]
async fn per_recipient_codes_come_back_inside_a_201_and_are_classified() {
    let sandbox = default_sandbox().await;
    let cases = [
        (403, FailureClass::Permanent),
        (405, FailureClass::Alert),
        (406, FailureClass::Permanent),
        (500, FailureClass::Retryable),
        (501, FailureClass::Retryable),
    ];
    sandbox.script(cases.map(|(code, _)| Step::RecipientCode(code)));
    let client = client(&sandbox);

    for (code, class) in cases {
        let outcome = client.send(&shopper(), RECEIPT).await.unwrap();
        assert_eq!(outcome, rejected(code, class), "{code}");
    }
    assert!(sandbox.messages().is_empty());
    assert!(sandbox.requests().iter().all(|r| r.status == 201));
}

#[tokio::test]
async fn a_number_can_fail_on_its_own_while_others_go_through() {
    let sandbox = default_sandbox().await;
    sandbox.set_fallback_for(&other_shopper(), Step::RecipientCode(406));
    sandbox.script_for(&shopper(), [Step::RecipientCode(500)]);
    let client = client(&sandbox);

    let blocked = client.send(&other_shopper(), RECEIPT).await.unwrap();
    let first_try = client.send(&shopper(), RECEIPT).await.unwrap();
    let retry = client.send(&shopper(), RECEIPT).await.unwrap();

    assert_eq!(blocked, rejected(406, FailureClass::Permanent));
    assert_eq!(first_try, rejected(500, FailureClass::Retryable));
    assert!(matches!(retry, SendOutcome::Accepted { .. }));
    assert!(sandbox.inbox(&other_shopper()).is_empty());
    assert_eq!(sandbox.inbox(&shopper()).len(), 1);

    sandbox.clear_faults();
    let unblocked = client.send(&other_shopper(), RECEIPT).await.unwrap();
    assert!(matches!(unblocked, SendOutcome::Accepted { .. }));
}

#[tokio::test]
async fn an_unregistered_sender_id_gets_402_which_pauses_the_outbox() {
    let sandbox = default_sandbox().await;
    let mut config = client(&sandbox).config().clone();
    config.sender_id = Some("NOTOURS".into());
    let outcome = AtSmsClient::new(config)
        .unwrap()
        .send(&shopper(), RECEIPT)
        .await
        .unwrap();
    assert_eq!(outcome, rejected(402, FailureClass::Alert));
    assert!(outcome.pauses_outbox());
    assert!(sandbox.messages().is_empty());
}

#[tokio::test]
async fn a_reply_lost_after_recording_is_ambiguous_and_the_sms_was_sent() {
    // Arrange: the sandbox records, then answers long after the client's read timeout.
    let sandbox = default_sandbox().await;
    sandbox.script([Step::TimeoutAfterRecording(STALL)]);

    // Act
    let error = impatient_client(&sandbox)
        .send(&shopper(), RECEIPT)
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(error, SmsError::Ambiguous(_)), "{error:?}");
    assert!(error.is_ambiguous());
    assert!(!error.is_retryable());
    assert_eq!(
        sandbox.inbox(&shopper()).len(),
        1,
        "the SMS went out although the reply was lost"
    );
}

#[tokio::test]
async fn a_timeout_before_recording_is_still_ambiguous_to_the_client_though_nothing_was_sent() {
    // The client cannot tell "AT never processed it" from "AT sent it and the reply was lost":
    // both are a read timeout after the request went out, so both must be ambiguous.
    let sandbox = default_sandbox().await;
    sandbox.script([Step::TimeoutBeforeRecording(STALL)]);

    let error = impatient_client(&sandbox)
        .send(&shopper(), RECEIPT)
        .await
        .unwrap_err();

    assert!(matches!(error, SmsError::Ambiguous(_)), "{error:?}");
    assert!(sandbox.messages().is_empty());
    let requests = sandbox.requests();
    assert_eq!(requests.len(), 1, "the request did arrive");
    assert_eq!(requests[0].step, Some(Step::TimeoutBeforeRecording(STALL)));
}

#[tokio::test]
async fn a_slow_reply_within_the_timeout_is_accepted() {
    let sandbox = default_sandbox().await;
    sandbox.script([Step::SlowReply(Duration::from_millis(200))]);
    let started = Instant::now();

    let outcome = client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();

    assert!(matches!(outcome, SendOutcome::Accepted { .. }));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_refused_connection_means_nothing_was_sent() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = AtSmsConfig {
        base_url,
        ..default_sandbox().await.client_config()
    };

    let error = AtSmsClient::new(config)
        .unwrap()
        .send(&shopper(), RECEIPT)
        .await
        .unwrap_err();

    assert!(matches!(error, SmsError::NothingSent(_)), "{error:?}");
    assert!(error.is_retryable());
    assert!(!error.is_ambiguous());
}

#[tokio::test]
async fn without_accept_json_the_reply_is_xml_not_json() {
    let sandbox = default_sandbox().await;
    let form = [
        ("username", "sandbox"),
        ("to", "+254712345678"),
        ("message", "hi"),
    ];

    let (status, content_type, body) = post_raw(&sandbox, false, &form).await;

    assert_eq!(status, 201);
    assert_eq!(content_type, "application/xml");
    assert!(body.starts_with("<?xml"), "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
    assert!(body.contains("<statusCode>101</statusCode>"), "{body}");
}

#[tokio::test]
async fn a_malformed_number_gets_403_inside_the_201_and_the_summary_counts_it() {
    let sandbox = default_sandbox().await;
    let form = [
        ("username", "sandbox"),
        ("to", "+254712345678, 0722000111"),
        ("message", "hi"),
        ("bulkSMSMode", "1"),
    ];

    let (status, content_type, body) = post_raw(&sandbox, true, &form).await;

    assert_eq!((status, content_type.as_str()), (201, "application/json"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = &json["SMSMessageData"];
    assert_eq!(data["Message"], "Sent to 1/2 Total Cost: KES 0.8000");
    assert_eq!(data["Recipients"][0]["statusCode"], 101);
    assert_eq!(data["Recipients"][1]["statusCode"], 403);
    assert_eq!(data["Recipients"][1]["status"], "InvalidPhoneNumber");
    assert_eq!(data["Recipients"][1]["messageId"], "None");
    assert_eq!(data["Recipients"][1]["cost"], "0");
    assert_eq!(sandbox.messages().len(), 1);
}

#[tokio::test]
async fn missing_fields_get_a_plain_400() {
    let sandbox = default_sandbox().await;
    let (status, content_type, body) = post_raw(
        &sandbox,
        true,
        &[("username", "sandbox"), ("message", "hi")],
    )
    .await;
    assert_eq!(status, 400);
    assert!(content_type.starts_with("text/plain"));
    assert!(body.contains("'to'"), "{body}");
}

#[tokio::test]
async fn the_encoding_and_segments_are_recorded_and_priced_per_segment() {
    let sandbox = default_sandbox().await;
    let client = client(&sandbox);

    let emoji = client.send(&shopper(), "Asante sana 🙏").await.unwrap();
    let long = client.send(&shopper(), &"a".repeat(200)).await.unwrap();

    assert!(matches!(emoji, SendOutcome::Accepted { ref cost, .. } if cost == "KES 0.8000"));
    assert!(matches!(long, SendOutcome::Accepted { ref cost, .. } if cost == "KES 1.6000"));
    let inbox = sandbox.inbox(&shopper());
    assert_eq!(
        (inbox[0].encoding, inbox[0].segments),
        (SmsEncoding::Ucs2, 1)
    );
    assert_eq!(
        (inbox[1].encoding, inbox[1].segments),
        (SmsEncoding::Gsm7, 2)
    );
    assert_eq!(inbox[0].text, "Asante sana 🙏");
}

#[tokio::test]
async fn ids_follow_the_seed_and_timestamps_follow_the_clock() {
    let at = Utc.with_ymd_and_hms(2025, 3, 1, 9, 30, 0).unwrap();
    let seeded = |seed| SmsSandboxConfig {
        seed,
        clock: SandboxClock::fixed(at),
        ..SmsSandboxConfig::default()
    };
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let sandbox = start(seeded(seed)).await;
        let client = client(&sandbox);
        for _ in 0..5 {
            client.send(&shopper(), RECEIPT).await.unwrap();
        }
        let messages = sandbox.messages();
        assert!(messages.iter().all(|m| m.received_at == at));
        runs.push(
            messages
                .into_iter()
                .map(|m| m.message_id)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(runs[0], runs[1], "the same seed gives the same ids");
    assert_ne!(runs[0], runs[2], "another seed gives other ids");
    let unique: HashSet<&String> = runs[0].iter().collect();
    assert_eq!(unique.len(), 5);
    assert!(runs[0].iter().all(|id| id.len() == "ATXid_".len() + 32));
}

#[tokio::test]
async fn two_runs_with_the_default_config_share_no_id() {
    // Every `duka serve` starts its SMS sandbox from the default config: a fixed default seed
    // made each run repeat the last one's ids, and a persistent Redis then mixed them up.
    let mut ids = HashSet::new();
    for _ in 0..2 {
        let sandbox = default_sandbox().await;
        let client = client(&sandbox);
        for _ in 0..3 {
            client.send(&shopper(), RECEIPT).await.unwrap();
        }
        ids.extend(sandbox.messages().into_iter().map(|m| m.message_id));
    }
    assert_eq!(ids.len(), 6, "{ids:?}");
}

#[tokio::test]
async fn subscribers_see_each_message_as_it_arrives() {
    let sandbox = default_sandbox().await;
    let mut arrivals = sandbox.subscribe();

    client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();

    let sms = tokio::time::timeout(WAIT, arrivals.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sms.to.msisdn(), Some(shopper()));
    assert_eq!(sms.text, RECEIPT);
    let waited = sandbox.wait_for_messages(1, WAIT).await.unwrap();
    assert_eq!(waited, vec![sms]);
}

#[tokio::test]
async fn a_wait_that_runs_out_says_how_many_arrived() {
    let sandbox = default_sandbox().await;
    let error = sandbox
        .wait_for_messages(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!((error.wanted, error.seen), (1, 0));
}

#[tokio::test]
async fn delivery_reports_are_off_by_default() {
    let (receiver, _url) = Receiver::start().await;
    let sandbox = default_sandbox().await;
    client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();
    assert!(sandbox
        .wait_for_reports(1, Duration::from_millis(200))
        .await
        .is_err());
    assert!(receiver.reports().is_empty());
}

#[tokio::test]
async fn delivery_reports_are_posted_as_a_form_along_the_default_path() {
    // Arrange
    let (receiver, url) = Receiver::start().await;
    let sandbox = start(SmsSandboxConfig {
        delivery_reports: Some(DeliveryReports::to(url.as_str())),
        ..SmsSandboxConfig::default()
    })
    .await;

    // Act
    let outcome = client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();
    let posted = sandbox.wait_for_reports(3, WAIT).await.unwrap();

    // Assert
    let SendOutcome::Accepted {
        message_id: Some(id),
        ..
    } = outcome
    else {
        panic!("expected an accepted send, got {outcome:?}");
    };
    assert!(posted
        .iter()
        .all(|p| p.response_status == Some(200) && p.url == url));
    assert!(receiver
        .content_types()
        .iter()
        .all(|ct| ct == "application/x-www-form-urlencoded"));
    let reports = receiver.reports();
    let statuses: Vec<&DeliveryStatus> = reports.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        [
            &DeliveryStatus::Sent,
            &DeliveryStatus::Submitted,
            &DeliveryStatus::Success
        ]
    );
    for report in &reports {
        assert_eq!(report.id, id);
        assert_eq!(
            report.phone_number.as_ref().and_then(PhoneNumber::msisdn),
            Some(shopper())
        );
        assert_eq!(report.network_code.as_deref(), Some("99999"));
        assert_eq!(report.failure_reason, None);
    }
}

#[tokio::test]
async fn delivery_reports_can_be_json_and_end_in_failure_with_a_reason() {
    let (receiver, url) = Receiver::start().await;
    let sandbox = start(SmsSandboxConfig {
        network_code: "63902".into(),
        delivery_reports: Some(
            DeliveryReports::to(url)
                .json()
                .with_plan(ReportPlan::failed("DeliveryFailure")),
        ),
        ..SmsSandboxConfig::default()
    })
    .await;
    sandbox.set_report_plan_for(&other_shopper(), ReportPlan::rejected("UserInBlackList"));
    let client = client(&sandbox);

    client.send(&shopper(), RECEIPT).await.unwrap();
    sandbox.wait_for_reports(3, WAIT).await.unwrap();
    client.send(&other_shopper(), RECEIPT).await.unwrap();
    sandbox.wait_for_reports(5, WAIT).await.unwrap();

    assert!(receiver
        .content_types()
        .iter()
        .all(|ct| ct == "application/json"));
    let reports = receiver.reports();
    assert!(reports
        .iter()
        .all(|r| r.network_code.as_deref() == Some("63902")));
    assert_eq!(reports[2].status, DeliveryStatus::Failed);
    assert_eq!(
        reports[2].failure_reason.as_deref(),
        Some("DeliveryFailure")
    );
    assert_eq!(reports[4].status, DeliveryStatus::Rejected);
    assert_eq!(
        reports[4].failure_reason.as_deref(),
        Some("UserInBlackList")
    );
}

#[tokio::test]
async fn reversed_and_repeated_reports_leave_only_the_final_status_applied() {
    let (receiver, url) = Receiver::start().await;
    let plan = ReportPlan::delivered().reversed().repeated();
    let sandbox = start(SmsSandboxConfig {
        delivery_reports: Some(DeliveryReports::to(url).with_plan(plan)),
        ..SmsSandboxConfig::default()
    })
    .await;

    client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();
    sandbox.wait_for_reports(6, WAIT).await.unwrap();

    // Replay the reports through the ranking rule, as the delivery handler will.
    let mut stored: Option<DeliveryStatus> = None;
    let mut applied = Vec::new();
    for report in receiver.reports() {
        if should_apply(stored.as_ref(), &report.status) {
            applied.push(report.status.clone());
            stored = Some(report.status);
        }
    }
    assert_eq!(applied, [DeliveryStatus::Success]);
}

#[tokio::test]
async fn orphan_reports_carry_ids_duka_never_saw() {
    let (receiver, url) = Receiver::start().await;
    let sandbox = start(SmsSandboxConfig {
        delivery_reports: Some(
            DeliveryReports::to(url).with_plan(ReportPlan::delivered().with_unknown_id()),
        ),
        ..SmsSandboxConfig::default()
    })
    .await;

    client(&sandbox).send(&shopper(), RECEIPT).await.unwrap();
    sandbox.wait_for_reports(3, WAIT).await.unwrap();

    let sent_id = &sandbox.messages()[0].message_id;
    let ids: HashSet<String> = receiver.reports().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(sent_id));
}

#[tokio::test]
async fn a_report_can_be_posted_by_hand_with_any_status() {
    let (receiver, url) = Receiver::start().await;
    let sandbox = default_sandbox().await;
    let report = DeliveryReport {
        id: "ATXid_never_seen".into(),
        status: DeliveryStatus::parse("Delivered"),
        phone_number: Some(PhoneNumber::from(&shopper())),
        network_code: Some("99999".into()),
        failure_reason: None,
        retry_count: None,
    };

    let posted = sandbox
        .post_report(&url, ReportEncoding::Form, report.clone())
        .await;

    assert_eq!(posted.response_status, Some(200));
    assert_eq!(receiver.reports(), vec![report]);
    assert_eq!(sandbox.reports().len(), 1);
}
