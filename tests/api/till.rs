//! A Buy Goods till (`MPESA_TILL`): the push goes to the till, signed by the store number, the
//! shopper is told to pay the till (no account), and a till payment made by hand goes to review.

use std::time::Duration;

use duka::mpesa::Endpoint;
use duka::orders::{OrderStatus, PaymentSource};
use duka::sandbox::mpesa::PayBillResult;
use serde_json::json;

use crate::helpers::{eventually, order_number_in, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(15);
const TILL: &str = "5123456";

async fn till_shop() -> TestApp {
    TestApp::spawn_with(TestOptions {
        env: vec![("MPESA_TILL", TILL.to_owned())],
        ..TestOptions::default()
    })
    .await
}

#[tokio::test]
async fn a_till_purchase_pushes_buy_goods_to_the_till_and_pays_the_order() {
    let app = till_shop().await;
    let mut phone = app.phone("0712130001");
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    let end = phone.press("1").await;
    let number = order_number_in(&end);
    assert_eq!(
        end,
        format!(
            "END Order {number}. Enter your M-Pesa PIN on the prompt that follows. No prompt? \
             Pay KES 900 to Till {TILL} (Buy Goods) and keep the M-Pesa SMS."
        )
    );
    let order = eventually("the till order to be paid", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    assert_eq!(order.payments.len(), 1);
    assert_eq!(order.payments[0].source, PaymentSource::Stk);

    let pushes = app.mpesa().requests_to(Endpoint::StkPush);
    assert_eq!(pushes.len(), 1);
    let body = &pushes[0].body;
    assert_eq!(pushes[0].status, 200, "{}", pushes[0].reply);
    assert_eq!(body["TransactionType"], json!("CustomerBuyGoodsOnline"));
    assert_eq!(body["BusinessShortCode"], json!(174379));
    assert_eq!(body["PartyB"], json!(5123456));
    assert_eq!(body["AccountReference"], json!(number));

    // The help screen names the till, not a paybill account.
    phone.hang_up();
    phone.dial().await;
    let help = phone.press("5").await;
    assert!(help.contains(&format!("Till {TILL}")), "{help}");
    assert!(!help.contains("Paybill"), "{help}");
}

#[tokio::test]
async fn a_till_payment_by_hand_has_no_account_and_goes_to_review() {
    let app = till_shop().await;
    let paid = app.mpesa().pay_bill("ignored", "900.00").await.unwrap();
    // Validation lets an account-less till payment through; the confirmation keeps it for review.
    assert_eq!(paid.result, PayBillResult::Confirmed);
    let key = app.state.shop.keys.c2b_review(&paid.trans_id);
    let kept = eventually("the till payment to be kept for review", WAIT, || async {
        app.state.shop.store.get_one(&key).await.unwrap()
    })
    .await;
    let kept: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(kept["TransactionType"], json!("Buy Goods"));
    assert_eq!(kept["BusinessShortCode"], json!(TILL));
    assert_eq!(kept["BillRefNumber"], json!(""));
}
