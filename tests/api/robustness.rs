//! Bad input, a store that goes away, the health endpoints, and the hop's budget in Redis.

use duka::testing::RoundTrips;

use crate::helpers::{dedicated_redis, TestApp, TestOptions};

#[tokio::test]
async fn a_callback_without_a_session_id_or_phone_is_a_400_that_names_the_field() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post_ussd_form(&[("phoneNumber", "+254712345678"), ("text", "")])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("sessionId"), "{body}");
    let (status, body) = app
        .post_ussd_form(&[("sessionId", "s1"), ("text", "")])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("phoneNumber"), "{body}");
    let (status, body) = app
        .post_ussd_form(&[("sessionId", "s1"), ("phoneNumber", "12345")])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("phoneNumber"), "{body}");
}

#[tokio::test]
async fn invalid_utf8_is_refused_with_a_clear_message() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post_raw(
            "/ussd/africastalking",
            "application/x-www-form-urlencoded",
            b"sessionId=s1&phoneNumber=%2B254712345678&text=\xff\xfe".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("UTF-8"), "{body}");
}

#[tokio::test]
async fn a_huge_body_is_refused_before_it_is_read() {
    let app = TestApp::spawn().await;
    let mut body = b"sessionId=s1&phoneNumber=%2B254712345678&text=".to_vec();
    body.extend(std::iter::repeat_n(b'1', 200_000));
    let (status, _) = app
        .post_raw(
            "/ussd/africastalking",
            "application/x-www-form-urlencoded",
            body,
        )
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn redis_going_away_mid_session_ends_it_with_an_apology_and_readyz_says_so() {
    let redis = dedicated_redis();
    let app = TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        ..TestOptions::default()
    })
    .await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let mut phone = app.phone("0712000101");
    phone.dial().await;
    phone.press("1").await;
    let _ = redis.command::<()>(&["SHUTDOWN", "NOSAVE"]);
    let apology = phone.press("2").await;
    assert!(apology.starts_with("END "), "{apology}");
    assert!(apology.contains("Sorry"), "{apology}");
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "the process still lives");
}

#[tokio::test]
async fn metrics_count_hops_in_prometheus_format() {
    let app = TestApp::spawn().await;
    let mut phone = app.phone("0712000102");
    phone.dial().await;
    phone.press("1").await;
    phone.resend().await;
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("duka_ussd_hops_total{gateway=\"africastalking\",outcome=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("duka_ussd_hops_total{gateway=\"africastalking\",outcome=\"repeated\"} 1"),
        "{text}"
    );
    assert!(text.contains("duka_ussd_hop_seconds_count 3"), "{text}");
}

#[tokio::test]
async fn every_hop_of_the_flow_takes_at_most_two_redis_round_trips() {
    let redis = dedicated_redis();
    let app = TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let mut phone = app.phone("0712000103");
    let walk = ["", "1", "2", "3", "2", "1", "1"];
    for (i, input) in walk.iter().enumerate() {
        let watching = redis.monitor().unwrap();
        let screen = if i == 0 {
            phone.dial().await
        } else {
            phone.press(input).await
        };
        let sent = watching.client_commands().unwrap();
        let hop = RoundTrips::of(&sent).total();
        assert!(
            (1..=2).contains(&hop),
            "hop {i} ({input:?}) took {hop} round trips: {screen}"
        );
        // Nothing else reached Redis from the client side: every other command ran in a script.
        let other: Vec<_> = sent
            .keys()
            .filter(|name| !["mget", "evalsha", "eval"].contains(&name.as_str()))
            .collect();
        assert!(
            other.is_empty(),
            "unexpected commands on hop {i}: {other:?}"
        );
        if i == walk.len() - 1 {
            assert!(screen.starts_with("END Order"), "{screen}");
        }
    }
    let watching = redis.monitor().unwrap();
    phone.resend().await;
    assert_eq!(
        watching.round_trips().unwrap().total(),
        1,
        "a retransmission is answered from one read"
    );
}

#[tokio::test]
async fn a_live_session_with_its_cart_costs_under_one_kib_of_redis_memory() {
    let redis = dedicated_redis();
    let app = TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let used = |redis: &duka::testing::TestRedis| -> i64 {
        let info: String = redis.command(&["INFO", "memory"]).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // Warm up allocator and script caches before measuring.
    let mut warm = app.phone("0712999999");
    warm.dial().await;
    let before = used(redis);
    let sessions = 300;
    for i in 0..sessions {
        let mut phone = app.phone(&format!("07{:08}", 20_000_000 + i));
        phone.dial().await;
        for input in ["1", "2", "3", "2", "2", "1", "1", "4"] {
            phone.press(input).await; // two products in the cart, on the product list
        }
    }
    let after = used(redis);
    let per_session = (after - before) / sessions;
    println!("{per_session} bytes of Redis memory per live session with a two-line cart");
    assert!(
        per_session <= 1024,
        "{per_session} bytes of Redis memory per live session"
    );
    assert!(
        per_session > 100,
        "the measurement saw the sessions: {per_session} bytes"
    );
}
