//! Refunds end to end against the sandbox: an overpayment reversed once despite a duplicate
//! result callback and a restart, a partial refund by B2C, and refunds Daraja refuses.

use std::time::Duration;

use duka::money::Kes;
use duka::mpesa::Endpoint;
use duka::msisdn::Msisdn;
use duka::operator::refund::{approve, ApproveError};
use duka::orders::{OrderFlag, OrderStatus, RefundMethod, RefundState};
use duka::payments::refunds::RefundRefusal;
use duka::sandbox::mpesa::refunds::RefundOutcome;
use duka::sandbox::mpesa::{CallbackKind, PayBillResult};
use serde_json::json;

use crate::helpers::{eventually, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(15);

/// An order paid by STK, then paid again at the paybill: flagged overpaid. Returns its number
/// and the receipt of the second payment.
async fn overpaid_order(app: &TestApp, phone: &str) -> (String, String) {
    // Validation would refuse a paid account; without it the second payment goes through.
    app.mpesa().configure(|c| c.c2b_validation = false);
    let mut phone = app.phone(phone);
    let number = phone.buy().await;
    eventually("the order to be paid", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let again = app.mpesa().pay_bill(&number, "900.00").await.unwrap();
    assert_eq!(again.result, PayBillResult::Confirmed);
    let order = eventually("the order to be flagged overpaid", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.flags.contains(&OrderFlag::Overpaid))
    })
    .await;
    assert_eq!(order.payments.len(), 2);
    (number, again.trans_id)
}

async fn refund_state(app: &TestApp, number: &str, state: RefundState) -> duka::orders::Order {
    eventually(&format!("the refund to be {state:?}"), WAIT, || async {
        app.order(number)
            .await
            .filter(|o| o.refunds.first().is_some_and(|r| r.state == state))
    })
    .await
}

fn refund_texts(app: &TestApp, phone: &str) -> Vec<String> {
    app.sms()
        .inbox(&Msisdn::parse(phone).unwrap())
        .into_iter()
        .map(|m| m.text)
        .filter(|t| t.contains("sent back"))
        .collect()
}

#[tokio::test]
async fn an_overpayment_is_reversed_once_despite_a_duplicate_result_and_a_restart() {
    let first = TestApp::spawn().await;
    first
        .mpesa()
        .configure(|c| c.refund_outcome = RefundOutcome::DoneTwice);
    let (number, receipt) = overpaid_order(&first, "0712130101").await;

    let approved = approve(&first.state.shop, &number.to_lowercase(), None)
        .await
        .unwrap();
    assert_eq!(approved.receipt, receipt);
    assert_eq!(approved.method, RefundMethod::Reversal);
    assert_eq!(approved.amount, Kes::whole(900));
    // Approving again refunds nothing more.
    assert!(matches!(
        approve(&first.state.shop, &number, None).await,
        Err(ApproveError::Refused(RefundRefusal::NothingRefundable(_)))
    ));

    let order = refund_state(&first, &number, RefundState::Done).await;
    let refund = &order.refunds[0];
    assert!(refund.transaction_id.is_some());
    // The sandbox posts the result twice; the second changes nothing.
    eventually("both result callbacks", WAIT, || async {
        let order = first.order(&number).await?;
        (order.refunds[0].results == 2).then_some(())
    })
    .await;
    let requests = first.mpesa().requests_to(Endpoint::Reversal);
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["CommandID"], json!("TransactionReversal"));
    assert_eq!(body["TransactionID"], json!(receipt));
    assert_eq!(body["Amount"], json!(900));
    assert_eq!(body["ReceiverParty"], json!(174379));
    assert_eq!(body["RecieverIdentifierType"], json!("11"));
    assert_eq!(body["Initiator"], json!("duka-sandbox-initiator"));
    let result_url = body["ResultURL"].as_str().unwrap();
    assert!(result_url.ends_with("/reversal/result") && !result_url.contains("mpesa"));
    let sent = eventually("the refund SMS", WAIT, || async {
        let texts = refund_texts(&first, "0712130101");
        (!texts.is_empty()).then_some(texts)
    })
    .await;
    assert_eq!(
        sent,
        vec![format!(
            "Duka: KES 900 of your M-Pesa payment {receipt} for order {number} has been sent back to you."
        )]
    );
    let result_body = first
        .mpesa()
        .callbacks()
        .into_iter()
        .find(|c| c.kind == CallbackKind::Reversal)
        .unwrap()
        .raw_body;
    let prefix = first.prefix.clone();
    first.stop().await;

    // A restart on the same Redis, and Daraja posts the result yet again.
    let second = TestApp::spawn_with(TestOptions {
        prefix: Some(prefix),
        ..TestOptions::default()
    })
    .await;
    let (status, reply) = second
        .post_payment_json(
            "/reversal/result",
            &serde_json::from_str(&result_body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(matches!(
        approve(&second.state.shop, &number, None).await,
        Err(ApproveError::Refused(RefundRefusal::NothingRefundable(_)))
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let order = second.order(&number).await.unwrap();
    assert_eq!(order.refunds.len(), 1);
    assert_eq!(order.refunds[0].state, RefundState::Done);
    assert_eq!(order.refunds[0].results, 3);
    assert_eq!(
        order.messages.iter().filter(|m| m.contains(".x")).count(),
        1,
        "one refund SMS"
    );
    assert!(second.mpesa().requests_to(Endpoint::Reversal).is_empty());
    assert!(refund_texts(&second, "0712130101").is_empty());

    // `duka order` shows the refund.
    let report = duka::operator::order_report(
        second.state.shop.store.as_ref(),
        &second.state.shop.keys,
        &number,
    )
    .await
    .unwrap()
    .unwrap();
    let text = duka::operator::render_text(&report);
    assert!(
        text.contains(&format!("{receipt}  KES 900  by reversal  done")),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["refunds"][0]["state"], json!("done"));
    assert_eq!(json["refunds"][0]["results"], json!(3));
}

#[tokio::test]
async fn a_partial_refund_goes_by_b2c_to_the_shopper() {
    let app = TestApp::spawn().await;
    let (number, receipt) = overpaid_order(&app, "0712130201").await;
    assert!(matches!(
        approve(&app.state.shop, &number, Some(Kes::whole(901))).await,
        Err(ApproveError::Refused(RefundRefusal::TooMuch { .. }))
    ));
    let approved = approve(&app.state.shop, &number, Some(Kes::whole(300)))
        .await
        .unwrap();
    assert_eq!(approved.method, RefundMethod::B2c);
    refund_state(&app, &number, RefundState::Done).await;
    let requests = app.mpesa().requests_to(Endpoint::B2c);
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["CommandID"], json!("BusinessPayment"));
    assert_eq!(body["Amount"], json!(300));
    assert_eq!(body["PartyA"], json!(174379));
    assert_eq!(body["PartyB"], json!(254712130201_u64));
    assert_eq!(body["Occasion"], json!(receipt));
    assert!(body["ResultURL"].as_str().unwrap().ends_with("/b2c/result"));
    let sent = eventually("the refund SMS", WAIT, || async {
        let texts = refund_texts(&app, "0712130201");
        (!texts.is_empty()).then_some(texts)
    })
    .await;
    assert!(sent[0].contains("KES 300"), "{sent:?}");
}

#[tokio::test]
async fn a_refused_refund_moves_no_money_and_may_be_asked_again() {
    let app = TestApp::spawn().await;
    let (number, _) = overpaid_order(&app, "0712130301").await;
    app.mpesa()
        .configure(|c| c.initiator_name = "someone-else".into());
    approve(&app.state.shop, &number, None).await.unwrap();
    let order = refund_state(&app, &number, RefundState::Failed).await;
    assert_eq!(order.refunds[0].result_code, Some(2001));
    assert!(refund_texts(&app, "0712130301").is_empty());

    app.mpesa().configure(|c| {
        c.initiator_name = "duka-sandbox-initiator".into();
        c.refund_outcome = RefundOutcome::TimeOut;
    });
    approve(&app.state.shop, &number, None).await.unwrap();
    let order = refund_state(&app, &number, RefundState::TimedOut).await;
    assert!(order.refunds[0].originator_conversation_id.ends_with("-1"));
    // A timed-out refund may have paid: it is not asked for again.
    assert!(matches!(
        approve(&app.state.shop, &number, None).await,
        Err(ApproveError::Refused(RefundRefusal::NothingRefundable(_)))
    ));
}
