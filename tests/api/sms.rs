//! Receipts and notices by SMS: sent once, never lost, through an Africa's Talking stand-in.

use std::time::Duration;

use duka::msisdn::Msisdn;
use duka::orders::OrderStatus;
use duka::sandbox::mpesa::Outcome;
use duka::sandbox::sms::Step;
use duka::sms::outbox::SendStatus;

use crate::helpers::{eventually, order_number_in, Phone, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(20);

async fn buy_toilet_paper(phone: &mut Phone<'_>) -> String {
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    let end = phone.press("1").await;
    order_number_in(&end)
}

async fn receipt_status(
    app: &TestApp,
    number: &str,
    status: SendStatus,
) -> duka::sms::outbox::OutboxMessage {
    let id = format!("{number}.r");
    eventually(&format!("receipt {id} to be {status:?}"), WAIT, || async {
        app.message(&id).await.filter(|m| m.status == status)
    })
    .await
}

#[tokio::test]
async fn a_paid_order_gets_exactly_one_receipt_in_the_shoppers_language() {
    let app = TestApp::spawn().await;
    // English.
    let english = Msisdn::parse("0712200001").unwrap();
    let mut phone = app.phone("0712200001");
    let number = buy_toilet_paper(&mut phone).await;
    receipt_status(&app, &number, SendStatus::Sent).await;
    let receipt_code = app.mpesa().pushes()[0]
        .receipt
        .clone()
        .expect("the sandbox paid it");
    let inbox = app.sms().inbox(&english);
    assert_eq!(inbox.len(), 1);
    let text = &inbox[0].text;
    assert!(
        text.contains(&number) && text.contains("KES 900") && text.contains(&receipt_code),
        "{text}"
    );
    assert!(
        text.contains("Toilet Paper 10pk") && text.contains("Thank you"),
        "{text}"
    );
    assert_eq!(inbox[0].segments, 1);

    // Kiswahili.
    let swahili = Msisdn::parse("0712200002").unwrap();
    let mut phone = app.phone("0712200002");
    phone.dial().await;
    phone.press("4").await;
    phone.press("2").await;
    phone.hang_up();
    let number = buy_toilet_paper(&mut phone).await;
    receipt_status(&app, &number, SendStatus::Sent).await;
    let inbox = app.sms().inbox(&swahili);
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].text.contains("imelipwa") && inbox[0].text.contains(&number),
        "{}",
        inbox[0].text
    );
}

#[tokio::test]
async fn an_sms_api_failing_for_a_while_then_recovering_delivers_once() {
    let app = TestApp::spawn().await;
    app.sms()
        .script([Step::FailRequest(500), Step::FailRequest(503)]);
    let msisdn = Msisdn::parse("0712200101").unwrap();
    let mut phone = app.phone("0712200101");
    let number = buy_toilet_paper(&mut phone).await;
    let message = receipt_status(&app, &number, SendStatus::Sent).await;
    assert_eq!(message.attempts, 3);
    assert_eq!(app.sms().inbox(&msisdn).len(), 1);
}

#[tokio::test]
async fn an_invalid_number_is_recorded_as_failed_and_not_retried() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712200201").unwrap();
    app.sms()
        .set_fallback_for(&msisdn, Step::RecipientCode(403));
    let mut phone = app.phone("0712200201");
    let number = buy_toilet_paper(&mut phone).await;
    let message = receipt_status(&app, &number, SendStatus::Failed).await;
    assert!(message.failure_reason.unwrap().contains("403"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let attempts_to_phone = app
        .sms()
        .requests()
        .iter()
        .filter(|r| r.field("to") == Some("+254712200201"))
        .count();
    assert_eq!(attempts_to_phone, 1, "no retry storm");
}

#[tokio::test]
async fn a_receipt_pending_when_the_server_restarts_is_delivered_once_after() {
    let first = TestApp::spawn().await;
    first.sms().set_fallback(Step::FailRequest(503));
    let msisdn = Msisdn::parse("0712200301").unwrap();
    let mut phone = first.phone("0712200301");
    let number = buy_toilet_paper(&mut phone).await;
    let id = format!("{number}.r");
    eventually("a failed first attempt", WAIT, || async {
        first
            .message(&id)
            .await
            .filter(|m| m.status == SendStatus::Pending && m.attempts >= 1)
    })
    .await;
    let prefix = first.prefix.clone();
    first.stop().await;

    let second = TestApp::spawn_with(TestOptions {
        prefix: Some(prefix),
        ..TestOptions::default()
    })
    .await;
    let message = receipt_status(&second, &number, SendStatus::Sent).await;
    assert!(message.attempts >= 2);
    assert_eq!(second.sms().inbox(&msisdn).len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(second.sms().inbox(&msisdn).len(), 1);
}

#[tokio::test]
async fn delivery_reports_move_the_receipt_status_forward() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712200401");
    let number = buy_toilet_paper(&mut phone).await;
    let id = format!("{number}.r");
    let delivered = eventually("the delivery report", WAIT, || async {
        app.message(&id)
            .await
            .filter(|m| m.delivery.as_deref() == Some("Success"))
    })
    .await;
    assert_eq!(delivered.status, SendStatus::Sent);
    assert!(!delivered.reports.is_empty());
    // A stale report arriving late does not move it back.
    let stale = format!(
        "id={}&status=Submitted&phoneNumber=%2B254712200401&networkCode=99999",
        delivered.message_id.clone().unwrap()
    );
    let (status, _) = app
        .post_raw(
            "/sms/delivery",
            "application/x-www-form-urlencoded",
            stale.into_bytes(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.message(&id).await.unwrap().delivery.as_deref(),
        Some("Success")
    );
    // A report for an id nobody knows is kept and answered 200.
    let (status, _) = app
        .post_raw(
            "/sms/delivery",
            "application/json",
            br#"{"id":"ATXid_nobody","status":"Success","phoneNumber":"+254799999999","networkCode":"63902"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_ambiguous_send_is_never_repeated_and_a_delivery_report_settles_it() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712200501").unwrap();
    app.sms().set_fallback_for(
        &msisdn,
        Step::TimeoutAfterRecording(Duration::from_secs(12)),
    );
    let mut phone = app.phone("0712200501");
    let number = buy_toilet_paper(&mut phone).await;
    // The sandbox recorded the SMS, but the reply was lost: Duka cannot know it went out.
    let settled = eventually(
        "the uncertain receipt settled by its delivery report",
        Duration::from_secs(30),
        || async {
            app.message(&format!("{number}.r"))
                .await
                .filter(|m| m.status == SendStatus::Sent && m.message_id.is_some())
        },
    )
    .await;
    let inbox = app.sms().inbox(&msisdn);
    assert_eq!(inbox.len(), 1, "sent once, never resent");
    assert_eq!(
        settled.message_id.as_deref(),
        Some(inbox[0].message_id.as_str())
    );
    assert_eq!(settled.attempts, 1);
}

#[tokio::test]
async fn a_failed_payment_sends_one_notice_with_the_paybill_way() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712200601").unwrap();
    app.mpesa().set_outcome_for(&msisdn, Outcome::code(2001));
    let mut phone = app.phone("0712200601");
    let number = buy_toilet_paper(&mut phone).await;
    let notice = eventually("the payment notice", WAIT, || async {
        app.sms().inbox(&msisdn).into_iter().next()
    })
    .await;
    assert!(
        notice.text.contains(&number) && notice.text.contains("174379"),
        "{}",
        notice.text
    );
    assert_eq!(
        app.order(&number).await.unwrap().status,
        OrderStatus::Failed
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.sms().inbox(&msisdn).len(), 1);
}

#[tokio::test]
async fn dropping_off_with_a_full_cart_gets_at_most_one_nudge_a_day() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712200701").unwrap();
    let mut phone = app.phone("0712200701");
    phone.dial().await;
    for input in ["1", "2", "3", "2"] {
        phone.press(input).await;
    }
    assert_eq!(phone.session_ends("Incomplete").await, 200);
    let nudge = eventually("the nudge", WAIT, || async {
        app.sms().inbox(&msisdn).into_iter().next()
    })
    .await;
    assert!(
        nudge.text.contains("*384*12#") && nudge.text.contains("900"),
        "{}",
        nudge.text
    );
    phone.hang_up();
    phone.dial().await;
    assert_eq!(phone.session_ends("Incomplete").await, 200);
    // A finished session and an empty cart get none either.
    let mut other = app.phone("0712200702");
    other.dial().await;
    assert_eq!(other.session_ends("Incomplete").await, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.sms().inbox(&msisdn).len(), 1);
    assert!(app
        .sms()
        .inbox(&Msisdn::parse("0712200702").unwrap())
        .is_empty());
}
