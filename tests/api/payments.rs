//! Checkout to money: the STK push, its callbacks, the paybill, reconciliation, Daraja failing.
//!
//! The M-Pesa side is the built-in sandbox: a real HTTP server speaking Daraja's wire format,
//! which validates every push field and calls back as Safaricom would.

use std::time::Duration;

use duka::mpesa::Endpoint;
use duka::msisdn::Msisdn;
use duka::orders::{AttemptState, OrderFlag, OrderStatus, PaymentSource};
use duka::sandbox::mpesa::{Delivery, Fault, Outcome, PayBillResult};
use serde_json::json;

use crate::helpers::{eventually, order_number_in, Phone, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(15);

/// Shop, Household, Toilet Paper 10pk x2, Checkout, Pay with M-Pesa: KES 900.
async fn buy_toilet_paper(phone: &mut Phone<'_>) -> String {
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    let end = phone.press("1").await;
    assert!(end.starts_with("END Order "), "{end}");
    order_number_in(&end)
}

async fn wait_for_status(app: &TestApp, number: &str, status: OrderStatus) -> duka::orders::Order {
    eventually(
        &format!("order {number} to be {status:?}"),
        WAIT,
        || async { app.order(number).await.filter(|o| o.status == status) },
    )
    .await
}

#[tokio::test]
async fn checkout_ends_the_session_then_pushes_with_every_field_right_and_an_approval_pays() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712100001");
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    let end = phone.press("1").await;
    let number = order_number_in(&end);
    assert_eq!(
        end,
        format!("END Order {number}. Enter your M-Pesa PIN on the prompt that follows. No prompt? Pay KES 900 to Paybill 174379, Account {number}.")
    );
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    let pushes = app.mpesa().pushes();
    assert_eq!(pushes.len(), 1);
    let push = &pushes[0];
    assert_eq!(push.amount, 900);
    assert_eq!(push.account_reference, number);
    assert_eq!(push.phone.digits(), "254712100001");
    assert!(push.description.len() <= 13, "{}", push.description);
    assert!(push
        .callback_url
        .ends_with(&format!("/payments/{}/stk", app.callback_secret)));
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].source, PaymentSource::Stk);
    assert_eq!(order.attempts[0].state, AttemptState::Succeeded);
    assert!(order.flags.is_empty());
    // The cart was emptied when the order was created.
    phone.hang_up();
    assert!(phone.dial().await.contains("1. Shop"));
}

#[tokio::test]
async fn each_failure_code_leaves_the_order_failed_and_payable_again() {
    let app = TestApp::spawn().await;
    for (i, code) in [1_i64, 1019, 1032, 1037, 2001].into_iter().enumerate() {
        let number_str = format!("07121002{i:02}");
        let msisdn = Msisdn::parse(&number_str).unwrap();
        app.mpesa().set_outcome_for(&msisdn, Outcome::code(code));
        let mut phone = app.phone(&number_str);
        let number = buy_toilet_paper(&mut phone).await;
        let order = wait_for_status(&app, &number, OrderStatus::Failed).await;
        assert_eq!(order.attempts[0].result_code, Some(code));
        assert!(order.status.is_payable());
        // The paybill still pays it.
        let paid = app.mpesa().pay_bill(&number, "900.00").await.unwrap();
        assert_eq!(paid.result, PayBillResult::Confirmed);
        wait_for_status(&app, &number, OrderStatus::Paid).await;
    }
}

#[tokio::test]
async fn my_orders_shows_the_order_and_pay_again_sends_a_new_push() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712100301").unwrap();
    app.mpesa().set_outcome_for(&msisdn, Outcome::code(1032));
    let mut phone = app.phone("0712100301");
    let number = buy_toilet_paper(&mut phone).await;
    wait_for_status(&app, &number, OrderStatus::Failed).await;
    app.mpesa().set_outcome_for(&msisdn, Outcome::paid());
    phone.hang_up();
    phone.dial().await;
    let orders = phone.press("3").await;
    assert!(
        orders.contains(&number) && orders.contains("Failed"),
        "{orders}"
    );
    let detail = phone.press("1").await;
    assert!(
        detail.contains("1. Pay again") && detail.contains("174379"),
        "{detail}"
    );
    let again = phone.press("1").await;
    assert!(again.starts_with("END "), "{again}");
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.attempts.len(), 2);
    assert_eq!(app.mpesa().pushes().len(), 2);
    phone.hang_up();
    phone.dial().await;
    let orders = phone.press("3").await;
    assert!(orders.contains("Paid"), "{orders}");
}

#[tokio::test]
async fn paying_with_another_number_pushes_to_that_number_after_rejecting_a_bad_one() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712100401");
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    phone.press("2").await;
    let again = phone.press("0201234567").await;
    assert!(again.starts_with("CON "), "a landline is re-asked: {again}");
    let end = phone.press("0722000402").await;
    let number = order_number_in(&end);
    wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(app.mpesa().pushes()[0].phone.digits(), "254722000402");
    // The receipt still goes to the shopper's own phone.
    let receipt = eventually("the receipt", WAIT, || async {
        app.sms()
            .inbox(&Msisdn::parse("0712100401").unwrap())
            .into_iter()
            .next()
    })
    .await;
    assert!(receipt.text.contains(&number), "{}", receipt.text);
}

#[tokio::test]
async fn a_duplicate_callback_pays_once_and_sends_one_receipt() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712100501").unwrap();
    app.mpesa()
        .set_outcome_for(&msisdn, Outcome::paid().delivered(Delivery::Twice));
    let mut phone = app.phone("0712100501");
    let number = buy_toilet_paper(&mut phone).await;
    wait_for_status(&app, &number, OrderStatus::Paid).await;
    eventually("both callbacks", WAIT, || async {
        (app.mpesa().callbacks().len() >= 2).then_some(())
    })
    .await;
    let order = eventually("both callbacks counted", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.attempts[0].callbacks == 2)
    })
    .await;
    assert_eq!(order.payments.len(), 1);
    assert!(order.flags.is_empty());
    eventually("the receipt", WAIT, || async {
        (!app.sms().inbox(&msisdn).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.sms().inbox(&msisdn).len(), 1);
}

/// Waits for the push of an order and returns its CheckoutRequestID.
async fn checkout_id(app: &TestApp, number: &str) -> String {
    eventually("the STK push", WAIT, || async {
        app.order(number)
            .await
            .and_then(|o| o.attempts[0].checkout_request_id.clone())
    })
    .await
}

fn success_callback(
    checkout_request_id: &str,
    amount: serde_json::Value,
    phone: u64,
    receipt: &str,
) -> serde_json::Value {
    json!({"Body": {"stkCallback": {
    "MerchantRequestID": "29461-71235519-1",
    "CheckoutRequestID": checkout_request_id,
    "ResultCode": 0,
    "ResultDesc": "The service request is processed successfully.",
    "CallbackMetadata": {"Item": [
        {"Name": "Amount", "Value": amount},
        {"Name": "MpesaReceiptNumber", "Value": receipt},
        {"Name": "Balance"},
        {"Name": "TransactionDate", "Value": 20261124143041_u64},
        {"Name": "PhoneNumber", "Value": phone}
    ]}}}})
}

#[tokio::test]
async fn forged_wrong_amount_unknown_and_malformed_callbacks_change_nothing() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712100601").unwrap();
    app.mpesa()
        .set_outcome_for(&msisdn, Outcome::paid().delivered(Delivery::Drop));
    let mut phone = app.phone("0712100601");
    let number = buy_toilet_paper(&mut phone).await;
    let id = checkout_id(&app, &number).await;

    // A wrong secret: 404, nothing changes.
    let forged = success_callback(&id, json!(900), 254712100601, "FORGED0001");
    let (status, _) = app
        .post_raw(
            "/payments/not-the-secret/stk",
            "application/json",
            serde_json::to_vec(&forged).unwrap(),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        app.order(&number).await.unwrap().status,
        OrderStatus::AwaitingPayment
    );

    // The right secret but the wrong amount: a mismatch, not paid.
    let (status, body) = app
        .post_payment_json(
            "/stk",
            &success_callback(&id, json!(1), 254712100601, "WRONGAMT01"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"ResultCode\":0"), "{body}");
    let order = app.order(&number).await.unwrap();
    assert_ne!(order.status, OrderStatus::Paid);
    assert!(order.flags.contains(&OrderFlag::Mismatch));

    // An id Duka never issued, and a body that is not a callback: acknowledged, ignored.
    let (status, _) = app
        .post_payment_json(
            "/stk",
            &success_callback("ws_CO_000", json!(900), 254712100601, "UNKNOWN001"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .post_raw(
            &format!("/payments/{}/stk", app.callback_secret),
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(app.order(&number).await.unwrap().payments.is_empty());
}

#[tokio::test]
async fn two_success_callbacks_at_once_pay_the_order_once() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712100701").unwrap();
    app.mpesa()
        .set_outcome_for(&msisdn, Outcome::paid().delivered(Delivery::Drop));
    let mut phone = app.phone("0712100701");
    let number = buy_toilet_paper(&mut phone).await;
    let id = checkout_id(&app, &number).await;
    let callback = success_callback(&id, json!(900.00), 254712100701, "QKH94M1Z11");
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = format!("{}/payments/{}/stk", app.address, app.callback_secret);
        let callback = callback.clone();
        posts.spawn(async move {
            client
                .post(url)
                .json(&callback)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    assert!(posts.join_all().await.iter().all(|s| *s == 200));
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.attempts[0].callbacks, 10);
    assert!(order.flags.is_empty());
    eventually("one receipt", WAIT, || async {
        (app.sms().inbox(&msisdn).len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.sms().inbox(&msisdn).len(), 1);
}

#[tokio::test]
async fn the_paybill_validates_and_confirms_by_order_number() {
    let app = TestApp::spawn().await;
    let msisdn = Msisdn::parse("0712100801").unwrap();
    app.mpesa().set_outcome_for(&msisdn, Outcome::code(1032));
    let mut phone = app.phone("0712100801");
    let number = buy_toilet_paper(&mut phone).await;
    wait_for_status(&app, &number, OrderStatus::Failed).await;

    let wrong_amount = app.mpesa().pay_bill(&number, "500.00").await.unwrap();
    assert!(
        matches!(wrong_amount.result, PayBillResult::Rejected(code) if code.as_str() == "C2B00013")
    );
    let unknown = app.mpesa().pay_bill("ZZZZZZ", "900.00").await.unwrap();
    assert!(matches!(unknown.result, PayBillResult::Rejected(code) if code.as_str() == "C2B00012"));
    let typed_by_hand = format!(" {} ", number.to_lowercase());
    let paid = app
        .mpesa()
        .pay_bill(&typed_by_hand, "900.00")
        .await
        .unwrap();
    assert_eq!(paid.result, PayBillResult::Confirmed);
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].source, PaymentSource::Paybill);
    assert_eq!(
        order.payments[0].receipt.as_deref(),
        Some(paid.trans_id.as_str())
    );
    // Paying again: validation now says the account is closed.
    let again = app.mpesa().pay_bill(&number, "900.00").await.unwrap();
    assert!(matches!(again.result, PayBillResult::Rejected(code) if code.as_str() == "C2B00012"));
}

#[tokio::test]
async fn a_repeated_confirmation_counts_once_and_a_second_payment_is_flagged_for_refund() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712100901");
    let number = buy_toilet_paper(&mut phone).await;
    wait_for_status(&app, &number, OrderStatus::Paid).await;
    let confirmation = json!({
        "TransactionType": "Pay Bill", "TransID": "RKTQDM7W6S", "TransTime": "20261124151206",
        "TransAmount": "900.00", "BusinessShortCode": "174379", "BillRefNumber": number.to_lowercase(),
        "InvoiceNumber": "", "OrgAccountBalance": "128450.00", "ThirdPartyTransID": "",
        "MSISDN": "2547 ***** 901", "FirstName": "JANE", "MiddleName": "", "LastName": ""
    });
    for _ in 0..2 {
        let (status, body) = app.post_payment_json("/c2b/confirm", &confirmation).await;
        assert_eq!(status, 200);
        assert!(body.contains("\"ResultCode\":0"), "{body}");
    }
    let order = app.order(&number).await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.payments.len(),
        2,
        "the STK payment and the paybill payment, once each"
    );
    assert_eq!(order.flags, vec![OrderFlag::Overpaid]);
}

#[tokio::test]
async fn a_lost_callback_is_reconciled_by_query() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("MPESA_QUERY_AFTER_S", "1".into())],
        ..TestOptions::default()
    })
    .await;
    let msisdn = Msisdn::parse("0712101001").unwrap();
    app.mpesa()
        .set_outcome_for(&msisdn, Outcome::paid().delivered(Delivery::Drop));
    let mut phone = app.phone("0712101001");
    let number = buy_toilet_paper(&mut phone).await;
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.payments[0].source, PaymentSource::StkQuery);
    assert!(order.attempts[0].queries == 0 || order.attempts[0].state == AttemptState::Succeeded);
    assert!(app.mpesa().callbacks().is_empty(), "no callback ever came");
    eventually("the receipt", WAIT, || async {
        (!app.sms().inbox(&msisdn).is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_late_callback_after_the_query_fills_in_the_receipt_without_paying_twice() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("MPESA_QUERY_AFTER_S", "1".into())],
        ..TestOptions::default()
    })
    .await;
    let msisdn = Msisdn::parse("0712101101").unwrap();
    app.mpesa()
        .set_outcome_for(&msisdn, Outcome::paid().delivered(Delivery::AfterQuery));
    let mut phone = app.phone("0712101101");
    let number = buy_toilet_paper(&mut phone).await;
    let order = eventually("the late callback's receipt", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.payments.first().is_some_and(|p| p.receipt.is_some()))
    })
    .await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.payments.len(), 1);
    assert!(order.flags.is_empty());
}

#[tokio::test]
async fn a_daraja_5xx_on_the_push_never_pushes_again_and_its_callback_still_pays() {
    let app = TestApp::spawn().await;
    app.mpesa()
        .fail_next(Endpoint::StkPush, 1, Fault::ErrorAfterProcessing);
    let mut phone = app.phone("0712101201");
    let number = buy_toilet_paper(&mut phone).await;
    // The prompt reached the phone and was paid, but our push call saw a 5xx: the attempt is
    // unknown and no second push is sent. The success callback carries a CheckoutRequestID we
    // never learnt; the payer's pending-push lock names the attempt, so the money is recorded.
    let order = eventually("the attempt to be unknown or settled", WAIT, || async {
        app.order(&number).await.filter(|o| {
            matches!(
                o.attempts[0].state,
                AttemptState::Unknown | AttemptState::Succeeded
            )
        })
    })
    .await;
    assert_eq!(order.attempts.len(), 1);
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].source, PaymentSource::Stk);
    assert!(order.flags.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.mpesa().pushes().len(),
        1,
        "exactly one push reached the sandbox"
    );
}

#[tokio::test]
async fn daraja_unavailable_then_back_retries_the_push_that_never_arrived() {
    let app = TestApp::spawn().await;
    app.mpesa()
        .fail_next(Endpoint::Token, 1, Fault::Unavailable);
    let mut phone = app.phone("0712101301");
    let number = buy_toilet_paper(&mut phone).await;
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(order.attempts.len(), 1);
    assert_eq!(app.mpesa().pushes().len(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_and_the_push_goes_through() {
    let app = TestApp::spawn().await;
    let mut first = app.phone("0712101401");
    let number = buy_toilet_paper(&mut first).await;
    wait_for_status(&app, &number, OrderStatus::Paid).await;
    app.mpesa().expire_tokens();
    let mut second = app.phone("0712101402");
    let number = buy_toilet_paper(&mut second).await;
    wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(app.mpesa().pushes().len(), 2);
}

#[tokio::test]
async fn an_allow_list_refuses_callbacks_from_other_addresses_behind_one_proxy_hop() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![(
            "MPESA_ALLOWED_IPS",
            "196.201.214.200, 196.201.212.0/24".into(),
        )],
        ..TestOptions::default()
    })
    .await;
    let body = success_callback("ws_CO_unknown", json!(900), 254712345678, "QKH94M1Z11");
    let url = format!("{}/payments/{}/stk", app.address, app.callback_secret);
    let direct = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(direct.status().as_u16(), 403, "loopback is not on the list");
    let via_proxy = app
        .client
        .post(&url)
        .header("x-forwarded-for", "10.1.1.1, 196.201.212.129")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        via_proxy.status().as_u16(),
        200,
        "the proxy's last hop is on the list"
    );
    let wrong_secret = app
        .client
        .post(format!("{}/payments/nope/stk", app.address))
        .header("x-forwarded-for", "196.201.214.200")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status().as_u16(), 404);
}

#[tokio::test]
async fn a_callback_that_overtakes_the_push_reply_still_pays_the_order() {
    let app = TestApp::spawn_with(TestOptions {
        callback_delay: Duration::ZERO,
        ..TestOptions::default()
    })
    .await;
    let mut phone = app.phone("0712101501");
    let number = buy_toilet_paper(&mut phone).await;
    let order = wait_for_status(&app, &number, OrderStatus::Paid).await;
    assert_eq!(
        order.payments[0].source,
        PaymentSource::Stk,
        "paid by the callback itself"
    );
    assert_eq!(
        app.state
            .metrics
            .counter("duka_mpesa_callbacks_total", "outcome=\"unknown_checkout\""),
        0
    );
}
