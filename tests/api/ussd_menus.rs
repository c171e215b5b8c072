//! The shop's screens, driven the way Africa's Talking drives them: one form post per hop.

use std::time::Duration;

use duka::orders::OrderStatus;
use duka::sandbox::mpesa::PayBillResult;

use crate::helpers::{eventually, order_number_in, StoreKind, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn dialing_the_service_code_shows_the_main_menu() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000001");
    let screen = phone.dial().await;
    assert!(screen.starts_with("CON "), "{screen}");
    for option in [
        "1. Shop",
        "2. My cart",
        "3. My orders",
        "4. Language",
        "5. Help",
    ] {
        assert!(screen.contains(option), "{option} missing from {screen}");
    }
}

#[tokio::test]
async fn the_sample_walk_ends_on_a_total_of_900() {
    // Shop, Household, Toilet Paper 10pk (450), quantity 2, Checkout.
    for store in [StoreKind::Redis, StoreKind::Memory] {
        let app = TestApp::spawn_with(TestOptions {
            store,
            ..TestOptions::default()
        })
        .await;
        let mut phone = app.phone("0712000002");
        phone.dial().await;
        let mut screen = String::new();
        for input in ["1", "2", "3", "2", "1"] {
            screen = phone.press(input).await;
        }
        assert!(screen.contains("Total KES 900"), "{store:?}: {screen}");
        assert!(
            screen.contains("1. Pay with M-Pesa (07XX XXX 001)") || screen.contains("07XX XXX"),
            "{screen}"
        );
    }
}

#[tokio::test]
async fn a_long_product_list_is_paged_with_98_and_numbering_continues() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000003");
    phone.dial().await;
    phone.press("1").await;
    let first = phone.press("4").await;
    assert!(first.contains("98. More"), "{first}");
    let second = phone.press("98").await;
    assert!(second.starts_with("CON "), "{second}");
    assert_ne!(first, second);
    // Every screen fits the phone: 182 septets, prefix included (all shipped texts are ASCII).
    assert!(first.chars().count() <= 182 && second.chars().count() <= 182);
    let first_numbers: Vec<&str> = first
        .lines()
        .filter_map(|l| l.split_once(". ").map(|(n, _)| n))
        .collect();
    let second_numbers: Vec<&str> = second
        .lines()
        .filter_map(|l| l.split_once(". ").map(|(n, _)| n))
        .collect();
    let last_of_first: u32 = first_numbers
        .iter()
        .filter_map(|n| n.parse().ok())
        .filter(|n| *n < 90)
        .max()
        .unwrap();
    let first_of_second: u32 = second_numbers
        .iter()
        .filter_map(|n| n.parse().ok())
        .filter(|n| *n > 0 && *n < 90)
        .min()
        .unwrap();
    assert_eq!(first_of_second, last_of_first + 1, "{first}\n---\n{second}");
}

#[tokio::test]
async fn zero_goes_back_and_double_zero_goes_home_from_deep_in_the_menus() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000004");
    let main = phone.dial().await;
    let categories = phone.press("1").await;
    let household = phone.press("2").await;
    phone.press("3").await;
    assert_eq!(phone.press("0").await, household);
    assert_eq!(phone.press("0").await, categories);
    phone.press("2").await;
    phone.press("3").await;
    assert_eq!(phone.press("00").await, main);
}

#[tokio::test]
async fn a_bad_quantity_repeats_the_screen_with_a_hint_and_a_star_inside_an_input_survives() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000005");
    phone.dial().await;
    phone.press("1").await;
    phone.press("2").await;
    let product = phone.press("3").await;
    for bad in ["abc", "100", "2*3", "-1"] {
        let hinted = phone.press(bad).await;
        assert!(hinted.starts_with("CON "), "{hinted}");
        assert!(hinted.contains("Toilet Paper 10pk"), "{bad}: {hinted}");
        assert_ne!(hinted, product, "a hint is shown for {bad}");
    }
    let added = phone.press("3").await;
    assert!(added.contains("Added 3 x Toilet Paper 10pk"), "{added}");
}

#[tokio::test]
async fn a_retransmitted_hop_gets_the_same_screen_and_adds_to_the_cart_once() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000006");
    phone.dial().await;
    phone.press("1").await;
    phone.press("1").await;
    phone.press("2").await; // Sugar 1kg, 190
    let added = phone.press("2").await;
    let again = phone.resend().await;
    assert_eq!(added, again);
    let checkout = phone.press("1").await;
    assert!(checkout.contains("Total KES 380"), "{checkout}");
}

#[tokio::test]
async fn a_deep_dial_applies_its_inputs_on_the_first_hop() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000007");
    let household = phone.deep_dial("1*2").await;
    assert!(household.contains("Toilet Paper 10pk"), "{household}");
    let product = phone.press("3").await;
    assert!(product.contains("Enter quantity"), "{product}");
}

#[tokio::test]
async fn the_language_is_remembered_for_the_phone_across_sessions() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000008");
    phone.dial().await;
    phone.press("4").await;
    let swahili = phone.press("2").await;
    assert!(swahili.contains("Nunua"), "{swahili}");
    phone.hang_up();
    let next_day = phone.dial().await;
    assert!(next_day.contains("Nunua"), "{next_day}");
    assert!(!next_day.contains("1. Shop"), "{next_day}");
}

#[tokio::test]
async fn help_names_the_shops_phone_and_how_paying_works() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000009");
    phone.dial().await;
    let help = phone.press("5").await;
    assert!(help.contains("M-Pesa"), "{help}");
    assert!(help.chars().any(|c| c.is_ascii_digit()), "{help}");
}

#[tokio::test]
async fn redialing_with_a_full_cart_offers_to_continue_or_start_over() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000010");
    phone.dial().await;
    for input in ["1", "2", "3", "2"] {
        phone.press(input).await;
    }
    phone.hang_up();
    let welcome_back = phone.dial().await;
    // One line (2 x Toilet Paper): shoppers count lines, not units.
    assert!(welcome_back.contains("1 item, KES 900"), "{welcome_back}");
    let cart = phone.press("1").await;
    assert!(cart.contains("Toilet Paper 10pk"), "{cart}");
    phone.hang_up();
    phone.dial().await;
    let fresh = phone.press("2").await;
    assert!(fresh.contains("1. Shop"), "{fresh}");
    phone.hang_up();
    let main = phone.dial().await;
    assert!(main.contains("1. Shop"), "the cart was emptied: {main}");
}

#[tokio::test]
async fn my_cart_lists_lines_and_can_change_one_remove_one_or_empty_it() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000011");
    phone.dial().await;
    // Maize Flour x1, continue shopping in Groceries, Sugar x2.
    for input in ["1", "1", "1", "1", "2", "2", "2"] {
        phone.press(input).await;
    }
    phone.press("00").await;
    let cart = phone.press("2").await;
    assert!(
        cart.contains("1 x Maize Flour 2kg") && cart.contains("2 x Sugar 1kg"),
        "{cart}"
    );
    assert!(cart.contains("Total KES 610"), "230 + 2 x 190: {cart}");
    let pick = phone.press("2").await;
    assert!(pick.contains("Maize Flour 2kg"), "{pick}");
    phone.press("2").await;
    phone.press("1").await;
    let changed = phone.press("3").await;
    assert!(
        changed.contains("Now 3 x Sugar 1kg.") && changed.contains("Total KES 800"),
        "230 + 3 x 190: {changed}"
    );
    phone.press("2").await;
    phone.press("1").await;
    let after_removal = phone.press("2").await;
    assert!(
        after_removal.contains("Removed Maize Flour 2kg"),
        "{after_removal}"
    );
    assert!(!after_removal.contains("x Maize"), "{after_removal}");
    assert!(after_removal.contains("Total KES 570"), "{after_removal}");
    phone.press("3").await;
    let emptied = phone.press("1").await;
    assert!(!emptied.contains("Sugar"), "{emptied}");
    phone.hang_up();
    let main = phone.dial().await;
    assert!(
        main.contains("1. Shop"),
        "no resume offer for an empty cart: {main}"
    );
}

#[tokio::test]
async fn two_hops_of_one_session_arriving_together_apply_once() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000012");
    phone.dial().await;
    phone.press("1").await;
    phone.press("1").await;
    phone.press("2").await; // Sugar: enter quantity
    let form = [
        ("sessionId", phone.session_id.clone()),
        ("serviceCode", "*384*12#".to_owned()),
        ("phoneNumber", phone.e164.clone()),
        ("networkCode", "63902".to_owned()),
        ("text", "1*1*2*5".to_owned()),
    ];
    let replies = app.post_ussd_concurrently(&form, 8).await;
    for (status, body) in &replies {
        assert_eq!(*status, 200);
        assert!(body.contains("Added 5 x Sugar 1kg"), "{body}");
    }
    phone.assume_sent("1*1*2*5");
    let checkout = phone.press("1").await;
    assert!(
        checkout.contains("Total KES 950"),
        "added once, not eight times: {checkout}"
    );
}

#[tokio::test]
async fn every_screen_of_a_long_walk_fits_182_characters() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000013");
    let mut screens = vec![phone.dial().await];
    for input in [
        "1", "4", "98", "98", "0", "1", "99", "2", "2", "3", "1", "0", "00", "3", "4", "2", "1",
        "5",
    ] {
        screens.push(phone.press(input).await);
    }
    for screen in screens {
        assert!(
            screen.chars().count() <= 182,
            "{} chars: {screen}",
            screen.chars().count()
        );
    }
}

/// Walks Shop, Household, Toilet Paper 10pk x2, Checkout for a caller the way Africa's Talking
/// would send them, with the caller's own `networkCode`; returns every reply.
async fn walk_to_checkout(
    app: &crate::helpers::TestApp,
    phone_number: &str,
    network: &str,
    inputs: &[&str],
) -> Vec<String> {
    let session = crate::helpers::new_session_id();
    let mut replies = Vec::new();
    let mut text = String::new();
    for (i, input) in std::iter::once("")
        .chain(inputs.iter().copied())
        .enumerate()
    {
        if i > 1 {
            text.push('*');
        }
        text.push_str(input);
        let (status, body) = app
            .post_ussd_form(&[
                ("sessionId", &session),
                ("serviceCode", "*384*12#"),
                ("phoneNumber", phone_number),
                ("networkCode", network),
                ("text", &text),
            ])
            .await;
        assert_eq!(status, 200, "{phone_number}: {body}");
        replies.push(body);
    }
    replies
}

#[tokio::test]
async fn a_caller_from_another_country_shops_and_is_told_the_shop_takes_mpesa_only() {
    let app = TestApp::spawn().await;
    // Tanzania (Vodacom, 64004) and Ghana in bare digits.
    for (number, network) in [("+255712345678", "64004"), ("233241234567", "62001")] {
        let replies = walk_to_checkout(&app, number, network, &["1", "2", "3", "2", "1"]).await;
        assert!(replies[0].starts_with("CON ") && replies[0].contains("1. Shop"));
        let end = replies.last().unwrap();
        assert!(
            end.starts_with("END ") && end.contains("takes M-Pesa (Kenya) only"),
            "{end}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.mpesa().pushes().is_empty());
}

#[tokio::test]
async fn an_airtel_kenya_caller_orders_by_paybill_no_push_is_sent_and_the_paybill_pays_it() {
    let app = TestApp::spawn().await;
    let replies = walk_to_checkout(
        &app,
        "+254733123456",
        "63903",
        &["1", "2", "3", "2", "1", "1"],
    )
    .await;
    let checkout = &replies[replies.len() - 2];
    assert!(
        checkout.contains("1. Order now, pay to Paybill") && !checkout.contains("Pay with M-Pesa"),
        "{checkout}"
    );
    let end = replies.last().unwrap();
    assert!(
        end.starts_with("END Order ") && end.contains("Paybill"),
        "{end}"
    );
    let number = order_number_in(end);
    let order = app.order(&number).await.expect("the order is placed");
    assert!(order.attempts.is_empty(), "{:?}", order.attempts);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        app.mpesa().pushes().is_empty(),
        "no push to an Airtel number"
    );

    let paid = app.mpesa().pay_bill(&number, "900.00").await.unwrap();
    assert_eq!(paid.result, PayBillResult::Confirmed);
    eventually("the paybill payment to settle the order", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
}

#[tokio::test]
async fn paying_for_another_number_refuses_an_airtel_number() {
    let app = TestApp::spawn().await;
    let replies = walk_to_checkout(
        &app,
        "+254712000071",
        "63902",
        &["1", "2", "3", "2", "1", "2", "0733123456"],
    )
    .await;
    let refused = replies.last().unwrap();
    assert!(
        refused.starts_with("CON Only a Safaricom number can get the M-Pesa prompt."),
        "{refused}"
    );
}
