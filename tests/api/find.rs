//! `duka mpesa find`: a payment whose confirmation never reached Duka, found by its receipt
//! through the sandbox's Transaction Status API and applied to its order once.

use std::time::Duration;

use duka::mpesa::Endpoint;
use duka::msisdn::Msisdn;
use duka::orders::{OrderStatus, PaymentSource};
use duka::payments::find::{self, FindError, Lookup, LookupState};
use duka::sandbox::mpesa::status::StatusOutcome;
use duka::sandbox::mpesa::{Outcome, PayBill, PayBillResult};
use serde_json::json;

use crate::helpers::{eventually, TestApp};

const WAIT: Duration = Duration::from_secs(15);

/// An order whose STK prompt the shopper cancelled, then paid at the paybill with the
/// confirmation lost (the money moved; Duka never heard). Returns the order and the receipt.
async fn paid_but_unheard(app: &TestApp, phone: &str, validation: bool) -> (String, String) {
    app.mpesa().configure(|c| c.c2b_validation = validation);
    let msisdn = Msisdn::parse(phone).unwrap();
    app.mpesa().set_outcome_for(&msisdn, Outcome::code(1032));
    let number = app.phone(phone).buy().await;
    eventually("the cancelled push to fail the order", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Failed)
    })
    .await;
    let paid = app
        .mpesa()
        .pay_bill_with(PayBill {
            phone: msisdn.digits().to_owned(),
            confirmations: 0,
            ..PayBill::new(&number, "900")
        })
        .await
        .unwrap();
    assert_eq!(paid.result, PayBillResult::Confirmed);
    assert_eq!(
        app.order(&number).await.unwrap().status,
        OrderStatus::Failed,
        "Duka never heard of the payment"
    );
    (number, paid.trans_id)
}

async fn settled_lookup(app: &TestApp, receipt: &str) -> Lookup {
    eventually("the lookup to end", WAIT, || async {
        find::load(&app.state.shop, receipt)
            .await
            .unwrap()
            .filter(|l| l.state.is_final())
    })
    .await
}

fn receipts_sent(app: &TestApp, phone: &str, number: &str) -> usize {
    app.sms()
        .inbox(&Msisdn::parse(phone).unwrap())
        .iter()
        .filter(|m| m.text.contains(&format!("order {number} paid")))
        .count()
}

#[tokio::test]
async fn a_lost_paybill_confirmation_is_found_by_its_receipt_and_pays_the_order_once() {
    // Arrange: validation saw the payment, so Duka knows which order the receipt is for.
    let app = TestApp::spawn().await;
    app.mpesa()
        .configure(|c| c.status_outcome = StatusOutcome::AnsweredTwice);
    let (number, receipt) = paid_but_unheard(&app, "0712140001", true).await;

    let other = app.phone("0712140005").buy().await;

    // Act: the operator first names the wrong order; then types the receipt the shopper
    // quotes, in lower case, without one.
    find::request(&app.state.shop, &receipt, Some(&other))
        .await
        .unwrap();
    let wrong = settled_lookup(&app, &receipt).await;
    let asked = find::request(&app.state.shop, &receipt.to_lowercase(), None)
        .await
        .unwrap();
    let lookup = eventually("the second lookup to end", WAIT, || async {
        find::load(&app.state.shop, &receipt)
            .await
            .unwrap()
            .filter(|l| l.state.is_final() && l.tries == 2)
    })
    .await;

    // Assert: validation named the order, so the wrong one was not paid.
    assert_eq!(wrong.state, LookupState::Unplaced, "{wrong:?}");
    assert!(
        wrong
            .applied
            .as_deref()
            .is_some_and(|a| a.contains(&format!("named order {number}, not {other}"))),
        "{wrong:?}"
    );
    assert!(app
        .order(&other)
        .await
        .unwrap()
        .payments
        .iter()
        .all(|p| p.receipt.as_deref() != Some(receipt.as_str())));
    assert_eq!(asked.state, LookupState::Requested);
    assert_eq!(lookup.state, LookupState::Applied, "{lookup:?}");
    assert_eq!(lookup.order.as_deref(), Some(number.as_str()));
    let found = lookup.found.as_ref().unwrap();
    assert_eq!(found.amount, duka::money::Kes::whole(900));
    assert_eq!(
        (found.status.as_str(), found.payer.as_str()),
        (
            "Completed",
            Msisdn::parse("0712140001").unwrap().masked().as_str()
        )
    );
    let order = app.order(&number).await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].receipt.as_deref(), Some(receipt.as_str()));
    assert_eq!(order.payments[0].source, PaymentSource::Paybill);
    eventually("the receipt SMS", WAIT, || async {
        (receipts_sent(&app, "0712140001", &number) == 1).then_some(())
    })
    .await;
    let queries = app.mpesa().requests_to(Endpoint::TransactionStatus);
    assert_eq!(queries.len(), 2);
    let body = &queries[0].body;
    assert_eq!(body["CommandID"], json!("TransactionStatusQuery"));
    assert_eq!(body["TransactionID"], json!(receipt));
    assert_eq!(body["PartyA"], json!(174379));
    assert_eq!(body["IdentifierType"], json!("4"));
    assert_eq!(body["Occasion"], json!(receipt));
    assert!(body["ResultURL"]
        .as_str()
        .unwrap()
        .ends_with("/status/result"));

    // Each result came twice and asking again sends nothing: one payment, one receipt.
    eventually("both result callbacks", WAIT, || async {
        let results = app
            .mpesa()
            .callbacks()
            .into_iter()
            .filter(|c| c.kind == duka::sandbox::mpesa::CallbackKind::Status)
            .count();
        (results == 4).then_some(())
    })
    .await;
    let again = find::request(&app.state.shop, &receipt, None)
        .await
        .unwrap();
    assert_eq!(again.state, LookupState::Applied);
    assert!(matches!(
        find::request(&app.state.shop, &receipt, Some(&other)).await,
        Err(FindError::AppliedElsewhere { order, .. }) if order == number
    ));
    assert_eq!(
        app.mpesa().requests_to(Endpoint::TransactionStatus).len(),
        2
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.order(&number).await.unwrap().payments.len(), 1);
    assert_eq!(receipts_sent(&app, "0712140001", &number), 1);
}

#[tokio::test]
async fn a_payment_duka_cannot_place_waits_for_the_operator_to_name_its_order() {
    // Arrange: no validation, so nothing tells Duka which order the receipt is for.
    let app = TestApp::spawn().await;
    let (number, receipt) = paid_but_unheard(&app, "0712140002", false).await;

    // Act
    find::request(&app.state.shop, &receipt, None)
        .await
        .unwrap();
    let unplaced = settled_lookup(&app, &receipt).await;
    let held_before = app.order(&number).await.unwrap().payments.len();
    let named = find::request(&app.state.shop, &receipt, Some(&number.to_lowercase()))
        .await
        .unwrap();
    let applied = eventually("the named lookup to end", WAIT, || async {
        find::load(&app.state.shop, &receipt)
            .await
            .unwrap()
            .filter(|l| l.state.is_final() && l.tries == 2)
    })
    .await;

    // Assert
    assert_eq!(unplaced.state, LookupState::Unplaced, "{unplaced:?}");
    assert!(find::render(&unplaced).contains("--order"));
    assert_eq!(held_before, 0);
    assert_eq!((named.state, named.tries), (LookupState::Requested, 2));
    assert_eq!(applied.state, LookupState::Applied, "{applied:?}");
    assert_eq!(app.order(&number).await.unwrap().status, OrderStatus::Paid);
    // Now the order holds it, asking about it again answers at once, without Daraja.
    let known = find::request(&app.state.shop, &receipt, Some(&number))
        .await
        .unwrap();
    assert_eq!(known.state, LookupState::Applied);
    assert!(known.applied.unwrap().contains("already holds"));
    assert_eq!(
        app.mpesa().requests_to(Endpoint::TransactionStatus).len(),
        2
    );
}

#[tokio::test]
async fn unknown_receipts_timeouts_and_bad_input_change_nothing() {
    let app = TestApp::spawn().await;
    let shop = &app.state.shop;

    // A receipt M-Pesa never issued.
    find::request(shop, "QQQ0000000", None).await.unwrap();
    let missing = settled_lookup(&app, "QQQ0000000").await;
    assert_eq!(missing.state, LookupState::NotFound);
    assert_eq!(
        missing.said.as_deref(),
        Some("The transaction receipt number does not exist.")
    );

    // Daraja's queue times out: nothing is known, and asking again sends a new query.
    app.mpesa()
        .configure(|c| c.status_outcome = StatusOutcome::TimeOut);
    find::request(shop, "QQQ0000001", None).await.unwrap();
    assert_eq!(
        settled_lookup(&app, "QQQ0000001").await.state,
        LookupState::TimedOut
    );
    app.mpesa()
        .configure(|c| c.status_outcome = StatusOutcome::Answered);
    let again = find::request(shop, "QQQ0000001", None).await.unwrap();
    assert_eq!((again.state, again.tries), (LookupState::Requested, 2));

    // Typos and orders that do not exist never reach Daraja.
    let before = app.mpesa().requests_to(Endpoint::TransactionStatus).len();
    assert!(matches!(
        find::request(shop, "SGL7M2XK4", None).await,
        Err(FindError::NotAReceipt(_))
    ));
    assert!(matches!(
        find::request(shop, "SGL7M2XK4P*1", None).await,
        Err(FindError::NotAReceipt(_))
    ));
    assert!(matches!(
        find::request(shop, "SGL7M2XK4P", Some("NOSUCH")).await,
        Err(FindError::NoOrder(_))
    ));
    settled_lookup(&app, "QQQ0000001").await;
    assert_eq!(
        app.mpesa().requests_to(Endpoint::TransactionStatus).len(),
        before + 1
    );

    // A result for a receipt nobody asked about is acknowledged and pays nothing.
    let (status, _) = app
        .post_payment_json(
            "/status/result",
            &json!({"Result": {"ResultCode": 0, "ResultDesc": "ok",
                "ResultParameters": {"ResultParameter": [
                    {"Key": "ReceiptNo", "Value": "ZZZ9999999"},
                    {"Key": "Amount", "Value": 900},
                    {"Key": "TransactionStatus", "Value": "Completed"},
                    {"Key": "BillReferenceNumber", "Value": "D7K2Q9"}]}}}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(find::load(shop, "ZZZ9999999").await.unwrap().is_none());
    // Garbage is acknowledged too (Daraja would only post it again).
    let (status, _) = app
        .post_payment_json("/status/result", &json!({"nonsense": true}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_paybill_payment_taken_for_an_stk_echo_is_checked_and_a_typed_one_flagged_for_refund() {
    // Arrange: the STK callback is lost, so only the query proves the payment (no receipt);
    // then the shopper also pays at the paybill, the same amount.
    let app = TestApp::spawn_with(crate::helpers::TestOptions {
        env: vec![("MPESA_QUERY_AFTER_S", "1".to_owned())],
        ..crate::helpers::TestOptions::default()
    })
    .await;
    app.mpesa().configure(|c| c.c2b_validation = false);
    let msisdn = Msisdn::parse("0712140004").unwrap();
    app.mpesa().set_outcome_for(
        &msisdn,
        Outcome::paid().delivered(duka::sandbox::mpesa::Delivery::Drop),
    );
    let number = app.phone("0712140004").buy().await;
    eventually("the query to prove the payment", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let typed = app
        .mpesa()
        .pay_bill_with(PayBill {
            phone: msisdn.digits().to_owned(),
            ..PayBill::new(&number, "900")
        })
        .await
        .unwrap();

    // Act: Duka asks M-Pesa about the paybill payment by itself.
    let lookup = settled_lookup(&app, &typed.trans_id).await;

    // Assert: a typed payment, counted apart and refundable; one receipt SMS.
    assert!(lookup.fold_check);
    assert_eq!(lookup.state, LookupState::Applied, "{lookup:?}");
    let order = app.order(&number).await.unwrap();
    assert_eq!(order.payments.len(), 2, "{order:?}");
    assert_eq!(order.flags, vec![duka::orders::OrderFlag::Overpaid]);
    let refundable = duka::payments::refunds::refundable(&order);
    assert_eq!(refundable.len(), 1);
    assert_eq!(refundable[0].receipt, typed.trans_id);
    eventually("the one receipt SMS", WAIT, || async {
        (receipts_sent(&app, "0712140004", &number) == 1).then_some(())
    })
    .await;
}
