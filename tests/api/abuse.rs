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
            match tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                _ => {}
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
