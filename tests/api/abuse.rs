//! Abuse from outside: slow and idle sockets, forged reports, prompt bombing, SMS cost.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, TestOptions};

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn idle_and_slow_header_sockets_do_not_starve_a_real_hop() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("DUKA_HEADER_READ_TIMEOUT_MS", "1500".into()),
            ("DUKA_MAX_CONNECTIONS", "800".into()),
        ],
        ..TestOptions::default()
    })
    .await;
    let address = host(&app);
    // 500 sockets that never say anything, and 100 that dribble a header a byte at a time.
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut socket = TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"POST /ussd/africastalking HTTP/1.1\r\nHo")
            .await
            .unwrap();
        slow.push(socket);
    }
    let started = Instant::now();
    let mut phone = app.phone("0712345678");
    let screen = phone.dial().await;
    let took = started.elapsed();
    assert!(screen.starts_with("CON "), "{screen}");
    assert!(
        took < Duration::from_millis(500),
        "a real hop took {took:?}"
    );

    // The slowloris sockets are closed once the header timeout passes.
    let mut socket = slow.pop().unwrap();
    let closed_at = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        loop {
            if socket.write_all(b"s").await.is_err() {
                break;
            }
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await
            {
                break;
            }
        }
        started.elapsed()
    })
    .await
    .expect("a slowloris socket is closed within 5 s");
    assert!(
        closed_at >= Duration::from_millis(1000),
        "closed after {closed_at:?}"
    );
    // So is an idle one.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), idle[0].read(&mut buf))
        .await
        .expect("an idle socket is closed after the header timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    app.stop().await;
}

#[tokio::test]
async fn over_the_connection_cap_new_connections_wait_and_are_then_served() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("DUKA_HEADER_READ_TIMEOUT_MS", "1000".into()),
            ("DUKA_MAX_CONNECTIONS", "20".into()),
        ],
        ..TestOptions::default()
    })
    .await;
    let address = host(&app);
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("served once an idle socket times out");
    assert_eq!(response.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "the cap should have held it back, answered after {waited:?}"
    );
    drop(idle);
    app.stop().await;
}

async fn post_session_end(app: &TestApp, session_id: &str, e164: &str) -> u16 {
    app.client
        .post(format!("{}/ussd/africastalking/session-end", app.address))
        .form(&[
            ("sessionId", session_id),
            ("serviceCode", "*384*12#"),
            ("phoneNumber", e164),
            ("networkCode", "63902"),
            ("status", "Incomplete"),
            ("input", "1*2*3*2"),
            ("hopsCount", "5"),
            ("durationInMillis", "30000"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_forged_end_of_session_nudges_no_one() {
    let app = TestApp::spawn().await;
    let victim = duka::msisdn::Msisdn::parse("0712201401").unwrap();
    let mut shopper = app.phone("0712201401");
    shopper.dial().await;
    for input in ["1", "2", "3", "2"] {
        shopper.press(input).await;
    }
    // The victim's cart is full, but these sessions are not the ones Duka served for them.
    assert_eq!(
        post_session_end(&app, "ATUid_forged_1", &shopper.e164).await,
        200
    );
    let other = app.phone("0712201402");
    assert_eq!(
        post_session_end(&app, &shopper.session_id, &other.e164).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(app.sms().inbox(&victim).is_empty());
    assert!(app
        .sms()
        .inbox(&duka::msisdn::Msisdn::parse("0712201402").unwrap())
        .is_empty());
    // The real notification still nudges, once.
    assert_eq!(shopper.session_ends("Incomplete").await, 200);
    crate::helpers::eventually("the nudge", Duration::from_secs(10), || async {
        app.sms().inbox(&victim).into_iter().next()
    })
    .await;
    app.stop().await;
}

const AT_SECRET: &str = "atReportsSecret0123456789";

#[tokio::test]
async fn delivery_reports_need_the_secret_path_and_the_message_s_phone() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("AT_CALLBACK_SECRET", AT_SECRET.into())],
        ..TestOptions::default()
    })
    .await;
    // The sandbox posts its reports to the secret path, so a receipt is reported delivered.
    let mut phone = app.phone("0712201411");
    let number = phone.buy().await;
    let id = format!("{number}.r");
    let delivered =
        crate::helpers::eventually("the delivery report", Duration::from_secs(20), || async {
            app.message(&id)
                .await
                .filter(|m| m.delivery.as_deref() == Some("Success"))
        })
        .await;
    let report = |phone: &str, status: &str| {
        format!(
            "id={}&status={status}&phoneNumber=%2B{phone}&networkCode=63902",
            delivered.message_id.clone().unwrap()
        )
        .into_bytes()
    };
    // The plain path is refused now, and nothing changes.
    let form = "application/x-www-form-urlencoded";
    let (status, _) = app
        .post_raw("/sms/delivery", form, report("254712201411", "Success"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post_raw(
            "/sms/wrongSecret0123456789/delivery",
            form,
            report("254712201411", "Success"),
        )
        .await;
    assert_eq!(status, 404);
    // On the secret path, a report naming another phone is ignored.
    let secret_path = format!("/sms/{AT_SECRET}/delivery");
    let before = app.message(&id).await.unwrap().reports.len();
    let (status, _) = app
        .post_raw(&secret_path, form, report("254799999999", "Success"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.message(&id).await.unwrap().reports.len(), before);
    let (status, _) = app
        .post_raw(&secret_path, form, report("254712201411", "Success"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.message(&id).await.unwrap().reports.len(), before + 1);
    app.stop().await;
}

#[tokio::test]
async fn delivery_reports_from_outside_the_allow_list_are_refused() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("AT_ALLOWED_IPS", "192.0.2.0/24".into())],
        ..TestOptions::default()
    })
    .await;
    let body = br#"{"id":"ATXid_x","status":"Success","phoneNumber":"+254712201421","networkCode":"63902"}"#;
    let (status, _) = app
        .post_raw("/sms/delivery", "application/json", body.to_vec())
        .await;
    assert_eq!(status, 403);
    let response = app
        .client
        .post(format!("{}/sms/delivery", app.address))
        .header("content-type", "application/json")
        .header("x-forwarded-for", "192.0.2.7")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn over_the_daily_sms_ceiling_messages_wait_and_an_alert_counts() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("DUKA_SMS_DAILY_LIMIT", "1".into())],
        ..TestOptions::default()
    })
    .await;
    let mut first = app.phone("0712201431");
    let one = first.buy().await;
    crate::helpers::eventually("the first receipt", Duration::from_secs(20), || async {
        app.message(&format!("{one}.r"))
            .await
            .filter(|m| m.status == duka::sms::outbox::SendStatus::Sent)
    })
    .await;
    let mut second = app.phone("0712201432");
    let two = second.buy().await;
    crate::helpers::eventually("the ceiling alert", Duration::from_secs(20), || async {
        (app.state
            .metrics
            .counter("duka_sms_ceiling_reached_total", "")
            > 0)
        .then_some(())
    })
    .await;
    let held = app.message(&format!("{two}.r")).await.expect("queued");
    assert_eq!(held.status, duka::sms::outbox::SendStatus::Pending);
    assert!(app
        .sms()
        .inbox(&duka::msisdn::Msisdn::parse("0712201432").unwrap())
        .is_empty());
    assert!(app
        .state
        .metrics
        .render()
        .contains("duka_sms_ceiling_reached_total"));
    app.stop().await;
}

#[tokio::test]
async fn a_phone_over_its_push_limit_gets_no_prompt_and_no_sms_and_can_still_pay_by_paybill() {
    use duka::mpesa::Endpoint;
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("DUKA_PUSH_LIMIT_SHORT", "2".into())],
        ..TestOptions::default()
    })
    .await;
    // Nobody answers the prompts: each order stays unpaid, as a victim's would.
    let victim = duka::msisdn::Msisdn::parse("0712201441").unwrap();
    app.mpesa()
        .set_outcome_for(&victim, duka::sandbox::mpesa::Outcome::code(1032));
    let settled = |number: String| {
        let app = &app;
        async move {
            crate::helpers::eventually("the attempt to settle", Duration::from_secs(20), || async {
                app.order(&number)
                    .await
                    .filter(|o| o.attempts.iter().all(|a| !a.is_open()))
            })
            .await
        }
    };
    for _ in 0..2 {
        let mut phone = app.phone("0712201441");
        let number = phone.buy().await;
        // One at a time: the next push waits for this one's result anyway.
        settled(number).await;
    }

    // The victim's own third checkout is told on the screen, and no push is even queued.
    let mut phone = app.phone("0712201441");
    phone.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        phone.press(input).await;
    }
    let end = phone.press("1").await;
    assert!(
        end.contains("Too many payment prompts") && end.contains(" after "),
        "{end}"
    );
    let third = crate::helpers::order_number_in(&end);
    let placed = app.order(&third).await.expect("the order is placed");
    assert!(placed.status.is_payable(), "{:?}", placed.status);
    assert!(placed.attempts.is_empty(), "{:?}", placed.attempts);

    // Someone else naming the victim as the payer: the screen cannot know the victim's
    // history, so the push job, which enforces the limit, refuses the push.
    let mut other = app.phone("0712201442");
    other.dial().await;
    for input in ["1", "2", "3", "2", "1", "2"] {
        other.press(input).await;
    }
    let fourth = crate::helpers::order_number_in(&other.press("0712201441").await);
    let limited = crate::helpers::eventually(
        "the fourth push to be refused",
        Duration::from_secs(20),
        || async {
            app.order(&fourth).await.filter(|o| {
                o.attempts.first().and_then(|a| a.error.as_deref())
                    == Some(duka::payments::push_limit::PUSH_LIMITED)
            })
        },
    )
    .await;
    assert!(limited.status.is_payable(), "{:?}", limited.status);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pushes = app.mpesa().requests_to(Endpoint::StkPush).len();
    assert_eq!(pushes, 2, "two prompts reached Daraja");
    assert_eq!(
        app.state
            .metrics
            .counter("duka_stk_push_total", "outcome=\"limited\""),
        1
    );
    // Failure notices for the two cancelled pushes, none for the refused ones.
    let texts: Vec<String> = app
        .sms()
        .inbox(&victim)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(&third) || t.contains(&fourth)),
        "{texts:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_receipts_racing_for_the_sms_counter_is_never_taken_for_a_full_ceiling() {
    use duka::sms::ceiling::{take, Taken};
    use duka::sms::outbox::MessageKind;

    // Arrange: sixty receipts claimed at the same moment, far below the ceiling.
    let app = TestApp::spawn().await;
    let shop = std::sync::Arc::new(app.state.shop.clone());
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let shop = shop.clone();
        racers.spawn(async move { take(&shop, MessageKind::Receipt, 5000).await.unwrap() });
    }

    // Act
    let mut taken = Vec::new();
    while let Some(answer) = racers.join_next().await {
        taken.push(answer.unwrap());
    }

    // Assert: each one is counted or told to try again, none told the ceiling is reached, and
    // the counter holds exactly the ones counted.
    assert!(!taken.contains(&Taken::Full), "{taken:?}");
    let yes = taken.iter().filter(|t| **t == Taken::Yes).count();
    let day = duka::sms::nudge::eat_day(shop.clock.now_ms());
    let counted = app
        .state
        .shop
        .store
        .get_one(&shop.keys.sms_day_count(day))
        .await
        .unwrap()
        .map(|raw| String::from_utf8(raw).unwrap().parse::<usize>().unwrap());
    assert_eq!(counted, Some(yes));
}
