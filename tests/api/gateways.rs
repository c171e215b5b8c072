//! The shared scenario suite: one test body, run for every gateway over HTTP.
//!
//! Each gateway's client side ([`duka::gateway::Gateway::hop_request`]) sends what that
//! aggregator would, and its replies are read back the way it would read them, so each run
//! proves the adapter's routes, parsing and rendering end to end: the whole shop (first hop,
//! menus, quantity, checkout, `END`), a retransmitted hop that changes nothing, a `*` inside
//! an input, a deep dial, a malformed request, and the end of a session feeding the drop-off
//! nudge for gateways that report it.

use std::time::Duration;

use duka::gateway::phone::Phone;
use duka::gateway::{self, Gateway};
use duka::menu::{Cart, Reply};
use duka::msisdn::Msisdn;

use crate::helpers::{
    dedicated_redis, eventually, new_session_id, order_number_in, TestApp, TestOptions,
};

/// A Safaricom number no other test uses.
fn safaricom_number() -> Msisdn {
    let n = rand::random::<u32>() % 10_000_000;
    Msisdn::parse(&format!("25471{n:07}")).expect("a Kenyan number")
}

fn phone_on(app: &TestApp, gateway: &'static dyn Gateway, msisdn: Msisdn) -> Phone {
    Phone::new(
        &app.address,
        gateway,
        msisdn,
        "*384*12#",
        "63902",
        Duration::from_secs(10),
    )
}

async fn cart_of(app: &TestApp, msisdn: &Msisdn) -> Cart {
    let shop = &app.state.shop;
    let raw = shop.store.get(&[shop.keys.cart(msisdn)]).await.unwrap();
    raw.into_iter()
        .next()
        .flatten()
        .map(|raw| serde_json::from_slice(&raw).unwrap())
        .unwrap_or_default()
}

#[track_caller]
fn shows(reply: &Reply, end: bool, text: &str) {
    assert_eq!(reply.end, end, "end flag of {reply:?}");
    assert!(
        reply.text.contains(text),
        "{text:?} not in {:?}",
        reply.text
    );
}

async fn walk_the_shop(name: &str) {
    let gateway = gateway::by_name(name).expect("a known gateway");
    let app = TestApp::spawn().await;
    let msisdn = safaricom_number();
    let mut phone = phone_on(&app, gateway, msisdn.clone());

    let id = new_session_id();
    shows(
        &phone.dial(&id, vec![]).await.unwrap(),
        false,
        "Welcome to Duka",
    );
    shows(&phone.press("1").await.unwrap(), false, "Choose a category");
    shows(&phone.press("2").await.unwrap(), false, "Household");
    shows(&phone.press("3").await.unwrap(), false, "Enter quantity");
    shows(
        &phone.press("1*2").await.unwrap(),
        false,
        "Enter a number from 1 to 99.",
    );
    let added = phone.press("2").await.unwrap();
    shows(&added, false, "Added 2 x Toilet Paper 10pk.");

    // The gateway resends the hop: the same screen, and the cart still holds 2, not 4.
    assert_eq!(phone.resend().await.unwrap(), added);
    let cart = cart_of(&app, &msisdn).await;
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(cart.lines[0].qty, 2, "a resent hop adds nothing");

    shows(&phone.press("1").await.unwrap(), false, "Total KES 900.");
    assert_eq!(
        phone.would_look_like_a_resend("1"),
        gateway.repeats_look_like_resends()
    );
    // The same input twice in a row: on a gateway that numbers no hops, only time tells a
    // second press from a resend, and no person answers within the resend window.
    before_the_same_input_again(gateway).await;
    let placed = phone.press("1").await.unwrap();
    shows(&placed, true, "Enter your M-Pesa PIN");
    let number = order_number_in(&placed.text);
    let order = app.order(&number).await.expect("the order is stored");
    assert_eq!(order.total.to_string(), "900");
    assert_eq!(
        order.msisdn, msisdn,
        "one number whatever the gateway's shape"
    );
    assert!(cart_of(&app, &msisdn).await.lines.is_empty());

    // A deep dial goes straight to the categories.
    let deep = new_session_id();
    shows(
        &phone.dial(&deep, vec!["1".into()]).await.unwrap(),
        false,
        "Choose a category",
    );
    // A duplicate start of the same session shows the current screen again.
    assert!(!phone.resend().await.unwrap().text.contains("Welcome"));

    // A shopper who drops off with a full cart is nudged, for gateways that say so.
    shows(&phone.press("2").await.unwrap(), false, "Household");
    shows(&phone.press("4").await.unwrap(), false, "Enter quantity");
    shows(&phone.press("1").await.unwrap(), false, "Added 1 x Matches");
    let reported = phone.hang_up(true).await.unwrap();
    if reported {
        let metrics = app.state.metrics.clone();
        eventually("the drop-off nudge", Duration::from_secs(5), || {
            let metrics = metrics.clone();
            async move { (metrics.counter("duka_sms_nudges_total", "") == 1).then_some(()) }
        })
        .await;
    }
    app.stop().await;
}

/// Whether the gateway's requests say which hop they are (Hubtel's `Sequence`, Beem's
/// `request_id`): the same input on two hops then makes two different requests.
/// Before typing the same input twice in a row: on a gateway whose two requests would then be
/// identical, waits out the resend window, as a person would.
async fn before_the_same_input_again(gateway: &dyn Gateway) {
    if gateway.repeats_look_like_resends() {
        // A person's pace; `Phone::would_look_like_a_resend` says when it matters.
        tokio::time::sleep(Duration::from_millis(
            duka::session::RESEND_WINDOW_MS as u64 + 100,
        ))
        .await;
    }
}

/// Not a request at all: a 4xx, never a 5xx or a panic, and no screen.
async fn refuses_garbage(name: &str) {
    let gateway = gateway::by_name(name).expect("a known gateway");
    let app = TestApp::spawn().await;
    let msisdn = safaricom_number();
    let phone = phone_on(&app, gateway, msisdn.clone());
    let hop = duka::gateway::ClientHop {
        session_id: "s1",
        phone: &phone.msisdn,
        service_code: "*384*12#",
        network_code: "63902",
        dial: &[],
        typed: &[],
        seq: 1,
    };
    let request = gateway.hop_request(&hop);
    let url = format!("{}{}", app.address, request.path_and_query);
    let path = url.split('?').next().unwrap_or(&url).to_owned();
    for body in [&b"\xff\xfe"[..], b"{\"x\":", b""] {
        let mut builder = app.client.request(request.method.clone(), &path);
        if let Some(content_type) = request.content_type {
            builder = builder.header("content-type", content_type);
        }
        let response = builder.body(body.to_vec()).send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{name}: {body:?} got {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    assert!(cart_of(&app, &msisdn).await.lines.is_empty());
    app.stop().await;
}

/// Redis round trips (`MGET`/`EVALSHA`/`EVAL` sent by Duka) of each hop of a purchase on this
/// gateway, then of a resent hop, on a Redis of its own.
async fn round_trips_per_hop(name: &str) -> Vec<u64> {
    let redis = dedicated_redis();
    let app = TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    // Store commands clients sent; not the commands a script runs inside Redis.
    let trips = |watching: duka::testing::Monitor| watching.round_trips().unwrap().total();
    let gateway = gateway::by_name(name).unwrap();
    let mut phone = phone_on(&app, gateway, safaricom_number());
    let mut per_hop = Vec::new();
    let watching = redis.monitor().unwrap();
    phone.dial(&new_session_id(), vec![]).await.unwrap();
    per_hop.push(trips(watching));
    for input in ["1", "2", "3", "2"] {
        let watching = redis.monitor().unwrap();
        phone.press(input).await.unwrap();
        per_hop.push(trips(watching));
    }
    let watching = redis.monitor().unwrap();
    phone.resend().await.unwrap();
    per_hop.push(trips(watching));
    for (i, input) in ["1", "1"].into_iter().enumerate() {
        if i == 1 {
            before_the_same_input_again(gateway).await;
        }
        let watching = redis.monitor().unwrap();
        phone.press(input).await.unwrap();
        per_hop.push(trips(watching));
    }
    app.stop().await;
    per_hop
}

async fn costs_what_africastalking_costs(name: &str) {
    let theirs = round_trips_per_hop(name).await;
    let at = round_trips_per_hop("africastalking").await;
    assert_eq!(
        at,
        vec![2, 1, 1, 1, 1, 1, 1, 1],
        "Africa's Talking's hops: a cold first hop reads and commits, the rest only commit, a resend only reads"
    );
    assert_eq!(theirs, at, "{name}'s hops cost what Africa's Talking's do");
}

macro_rules! every_gateway {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn walks_the_shop() {
                    super::walk_the_shop(stringify!($name)).await;
                }

                #[tokio::test]
                async fn refuses_what_is_not_a_request() {
                    super::refuses_garbage(stringify!($name)).await;
                }

                #[tokio::test]
                async fn costs_the_redis_round_trips_africastalking_costs() {
                    super::costs_what_africastalking_costs(stringify!($name)).await;
                }
            }
        )*

        #[test]
        fn the_suite_covers_every_gateway() {
            let covered = [$(stringify!($name)),*];
            for gateway in duka::gateway::GATEWAYS {
                assert!(covered.contains(&gateway.name()), "{} has no scenario run", gateway.name());
            }
        }
    };
}

every_gateway!(
    africastalking,
    hubtel,
    emergent,
    arkesel,
    nalo,
    beem,
    safaricom,
    airtel,
    infobip,
    cellulant
);

#[tokio::test]
async fn one_shopper_keeps_one_cart_across_gateways() {
    let app = TestApp::spawn().await;
    let msisdn = safaricom_number();
    let mut on_at = phone_on(
        &app,
        gateway::by_name("africastalking").unwrap(),
        msisdn.clone(),
    );
    on_at.dial(&new_session_id(), vec![]).await.unwrap();
    for input in ["1", "2", "3"] {
        on_at.press(input).await.unwrap();
    }
    shows(
        &on_at.press("3").await.unwrap(),
        false,
        "Added 3 x Toilet Paper",
    );
    let mut on_hubtel = phone_on(&app, gateway::by_name("hubtel").unwrap(), msisdn.clone());
    shows(
        &on_hubtel.dial(&new_session_id(), vec![]).await.unwrap(),
        false,
        "Your cart: 1 item, KES 1,350.",
    );
    app.stop().await;
}

#[tokio::test]
async fn a_secret_path_and_an_allow_list_guard_the_ussd_routes() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("DUKA_USSD_SECRET", "ussd-secret-0123456789".into()),
            ("DUKA_USSD_ALLOWED_IPS_HUBTEL", "192.0.2.0/24".into()),
        ],
        ..Default::default()
    })
    .await;
    let msisdn = safaricom_number();
    let at = gateway::by_name("africastalking").unwrap();
    let mut plain = phone_on(&app, at, msisdn.clone());
    let refused = plain.dial(&new_session_id(), vec![]).await.unwrap_err();
    assert!(refused.to_string().contains("404"), "{refused}");

    let secret_url = format!("{}/ussd-secret-0123456789", app.address);
    let mut behind = Phone::new(
        &secret_url,
        at,
        msisdn.clone(),
        "*384*12#",
        "63902",
        Duration::from_secs(5),
    );
    shows(
        &behind.dial(&new_session_id(), vec![]).await.unwrap(),
        false,
        "Welcome",
    );

    let hubtel = gateway::by_name("hubtel").unwrap();
    let mut outside = Phone::new(
        &secret_url,
        hubtel,
        msisdn,
        "*384*12#",
        "63902",
        Duration::from_secs(5),
    );
    let forbidden = outside.dial(&new_session_id(), vec![]).await.unwrap_err();
    assert!(forbidden.to_string().contains("403"), "{forbidden}");
    app.stop().await;
}

/// Arkesel, Nalo and Beem name no service code: the one on the route's URL splits a deep dial;
/// without it a deep dial is a plain dial, and a mistyped one is refused in the JSON shape.
#[tokio::test]
async fn a_codeless_gateway_splits_a_deep_dial_only_with_its_configured_code() {
    let app = TestApp::spawn().await;
    let msisdn = safaricom_number();
    let first = |session: &str| {
        serde_json::json!({
            "sessionID": session, "userID": "ARKESEL", "newSession": true,
            "msisdn": msisdn.digits(), "userData": "*384*12*1#", "network": "MTN",
        })
    };
    let post = |query: &'static str, body: serde_json::Value| {
        let url = format!("{}/ussd/arkesel{query}", app.address);
        let client = app.client.clone();
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    let screen =
        |value: serde_json::Value| value["message"].as_str().unwrap_or_default().to_owned();

    let plain = post("", first(&new_session_id())).await;
    assert_eq!(plain.status().as_u16(), 200);
    assert!(screen(plain.json().await.unwrap()).contains("Welcome to Duka"));

    let deep = post("?service_code=384*12", first(&new_session_id())).await;
    assert!(screen(deep.json().await.unwrap()).contains("Choose a category"));

    let mistyped = post("?service_code=384x12", first(&new_session_id())).await;
    assert_eq!(mistyped.status().as_u16(), 400);
    let error: serde_json::Value = mistyped.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("service_code"),
        "{error}"
    );
    app.stop().await;
}
