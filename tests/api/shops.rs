//! Several shops on one Duka (`DUKA_SHOPS`): two shops on two routes with their own catalogs,
//! paybills, carts, orders, receipts and metrics, and one shopper in both.

use duka::msisdn::Msisdn;
use duka::orders::OrderStatus;
use duka::payments::settle::load_order;

use crate::helpers::{eventually, order_number_in, TestApp, TestOptions};

const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

async fn two_shops() -> TestApp {
    TestApp::spawn_with(TestOptions {
        env: crate::helpers::mboga_shop_env(),
        ..TestOptions::default()
    })
    .await
}

/// One Africa's Talking hop to the shop mounted at `mount` (`""` for the default shop's routes),
/// for the default shop's service code or, with a mount, the second shop's.
async fn hop(app: &TestApp, mount: &str, session: &str, phone: &str, text: &str) -> String {
    let code = if mount.is_empty() {
        "*384*12#"
    } else {
        "*384*13#"
    };
    hop_for(app, mount, code, session, phone, text).await
}

async fn hop_for(
    app: &TestApp,
    mount: &str,
    service_code: &str,
    session: &str,
    phone: &str,
    text: &str,
) -> String {
    app.client
        .post(format!("{}{mount}/ussd/africastalking", app.address))
        .form(&[
            ("sessionId", session),
            ("serviceCode", service_code),
            ("phoneNumber", &Msisdn::parse(phone).unwrap().e164()),
            ("networkCode", "63902"),
            ("text", text),
        ])
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .unwrap()
}

/// Walks `inputs` in one session; every screen.
async fn walk(
    app: &TestApp,
    mount: &str,
    session: &str,
    phone: &str,
    inputs: &[&str],
) -> Vec<String> {
    let mut screens = vec![hop(app, mount, session, phone, "").await];
    let mut text = String::new();
    for input in inputs {
        text = if text.is_empty() {
            (*input).to_owned()
        } else {
            format!("{text}*{input}")
        };
        screens.push(hop(app, mount, session, phone, &text).await);
    }
    screens
}

#[tokio::test]
async fn two_shops_on_two_routes_keep_their_own_catalogs_paybills_orders_and_receipts() {
    // Arrange
    let app = two_shops().await;
    let (mboga, mboga_sandboxes) = app.shops.get("mboga").expect("the second shop").clone();
    let phone = "0712150001";

    // Act: the same shopper buys greens at Mama Mboga, then toilet paper at Duka.
    let greens = walk(
        &app,
        "/shops/mboga",
        "ATUid_shops_1",
        phone,
        &["1", "1", "1", "2", "1", "1"],
    )
    .await;
    let duka_order = app.phone(phone).buy().await;
    let mboga_order = order_number_in(greens.last().unwrap());

    // Assert: each shop showed its own name and catalog.
    assert!(
        greens[0].starts_with("CON Welcome to Mama Mboga"),
        "{greens:#?}"
    );
    assert!(
        greens.iter().any(|s| s.contains("Sukuma Wiki bunch")),
        "{greens:#?}"
    );
    assert!(
        greens.iter().all(|s| !s.contains("Toilet Paper")),
        "{greens:#?}"
    );
    assert!(
        greens.last().unwrap().starts_with("END Order M"),
        "{greens:#?}"
    );
    assert!(
        !duka_order.starts_with('M'),
        "the default shop never uses another's prefix"
    );

    // Each order lives in its own shop's store, paid through its own paybill.
    let paid_here = eventually("the Mama Mboga order to be paid", WAIT, || async {
        load_order(&mboga.shop, &mboga_order)
            .await
            .unwrap()
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    assert_eq!(paid_here.total, duka::money::Kes::whole(60));
    assert!(
        app.order(&mboga_order).await.is_none(),
        "not in the default shop"
    );
    assert!(load_order(&mboga.shop, &duka_order)
        .await
        .unwrap()
        .is_none());
    eventually("the Duka order to be paid", WAIT, || async {
        app.order(&duka_order)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let mboga_mpesa = mboga_sandboxes
        .mpesa
        .as_ref()
        .expect("its own M-Pesa sandbox");
    let pushes = mboga_mpesa.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].account_reference, mboga_order);
    assert_eq!(pushes[0].amount, 60);
    assert_eq!(mboga_mpesa.shortcode(), "174380");
    assert_eq!(app.mpesa().shortcode(), "174379");
    assert!(app
        .mpesa()
        .pushes()
        .iter()
        .all(|p| p.account_reference == duka_order));

    // One receipt from each shop, in each shop's name, through each shop's SMS account.
    let mboga_sms = mboga_sandboxes.sms.as_ref().expect("its own SMS sandbox");
    let msisdn = Msisdn::parse(phone).unwrap();
    let texts = eventually("the Mama Mboga receipt", WAIT, || async {
        let texts: Vec<String> = mboga_sms
            .inbox(&msisdn)
            .into_iter()
            .map(|m| m.text)
            .collect();
        (!texts.is_empty()).then_some(texts)
    })
    .await;
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].starts_with(&format!("Mama Mboga: order {mboga_order} paid, KES 60")),
        "{texts:?}"
    );
    eventually("the Duka receipt", WAIT, || async {
        let texts: Vec<String> = app
            .sms()
            .inbox(&msisdn)
            .into_iter()
            .map(|m| m.text)
            .collect();
        (texts.len() == 1 && texts[0].starts_with(&format!("Duka: order {duka_order} paid")))
            .then_some(())
    })
    .await;

    // An aggregator with one callback URL for both codes: the service code picks the shop.
    let by_code = hop_for(&app, "", "*384*13#", "ATUid_shops_3", phone, "").await;
    assert!(
        by_code.starts_with("CON Welcome back to Mama Mboga")
            || by_code.starts_with("CON Welcome to Mama Mboga"),
        "{by_code}"
    );
    let by_code = hop_for(&app, "", "*384*12#", "ATUid_shops_4", phone, "").await;
    assert!(by_code.contains("Duka"), "{by_code}");

    // My orders in each shop lists that shop's order only.
    let mine = walk(&app, "/shops/mboga", "ATUid_shops_2", phone, &["3"]).await;
    assert!(
        mine[1].contains(&mboga_order) && !mine[1].contains(&duka_order),
        "{mine:#?}"
    );

    // Metrics are per shop: the second shop's hops are on its own /metrics.
    let metrics = |path: &'static str| {
        let url = format!("{}{path}", app.address);
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let (here, there) = (
        metrics("/metrics").await,
        metrics("/shops/mboga/metrics").await,
    );
    let hops = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("duka_ussd_hop_seconds_count "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(hops(&there), 10, "{there}");
    assert_eq!(hops(&here), 8, "{here}");

    // `duka order` reads a shop's orders with DUKA_SHOP, from the shared Redis.
    let order = |shop: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_duka"));
        command
            .args(["order", &mboga_order, "--json"])
            .env_clear()
            .env("REDIS_URL", app.redis.expect("a Redis").url())
            .env("DUKA_KEY_PREFIX", &app.prefix)
            .env("DUKA_SHOPS", "mboga")
            .env(
                "DUKA_SHOP_MBOGA_MENUS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shops/mboga"),
            )
            .env("DUKA_SHOP_MBOGA_ORDER_PREFIX", "M")
            .env("DUKA_MENUS", concat!(env!("CARGO_MANIFEST_DIR"), "/menus"));
        if let Some(shop) = shop {
            command.env("DUKA_SHOP", shop);
        }
        command.output().unwrap()
    };
    let found = order(Some("mboga"));
    let report: serde_json::Value = serde_json::from_slice(&found.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&found.stderr)));
    assert_eq!(report["number"], mboga_order.as_str());
    assert_eq!(report["state"], "paid");
    assert!(
        !order(None).status.success(),
        "not an order of the default shop"
    );
    let unknown = order(Some("nosuch"));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("DUKA_SHOP=nosuch is not one of DUKA_SHOPS (mboga)"));
}

#[test]
fn duka_check_checks_every_shop() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_duka"))
        .args([
            "check",
            "--menus",
            concat!(env!("CARGO_MANIFEST_DIR"), "/menus"),
        ])
        .env("DUKA_SHOPS", "mboga,broken")
        .env(
            "DUKA_SHOP_MBOGA_MENUS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shops/mboga"),
        )
        .env("DUKA_SHOP_BROKEN_MENUS", "/nonexistent/menus")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stdout.contains("tests/shops/mboga: menus and catalog are valid"),
        "{stdout}"
    );
    assert!(stderr.contains("/nonexistent/menus"), "{stderr}");
}
