//! Redis round trips per hop, counted on a dedicated `redis-server` (the commands clients sent,
//! watched by `MONITOR`): one in steady state, two on a cold hop, and the session cache never
//! changing a screen or a cart when another node has written in between.

use duka::menu::Cart;
use duka::msisdn::Msisdn;
use duka::testing::{random_prefix, Monitor, RoundTrips as Trips, TestRedis};

use crate::helpers::{dedicated_redis, new_session_id, TestApp, TestOptions};

/// The walk of a purchase: dial, then each input, ending on the order's `END` screen.
const WALK: [&str; 7] = ["", "1", "2", "3", "2", "1", "1"];

fn watch(redis: &TestRedis) -> Monitor {
    redis.monitor().unwrap()
}

/// The round trips since `watch` (not the commands a script runs inside Redis, such as the
/// commit's `MGET` of its guarded keys: see [`Monitor`]).
fn trips(monitor: Monitor) -> Trips {
    monitor.round_trips().unwrap()
}

async fn node(redis: &'static TestRedis, prefix: &str) -> TestApp {
    TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        run_worker: false,
        prefix: Some(prefix.to_owned()),
        ..TestOptions::default()
    })
    .await
}

/// One Africa's Talking hop: the cumulative text of the walk up to `step`.
async fn hop(app: &TestApp, session_id: &str, msisdn: &Msisdn, step: usize) -> String {
    let text = WALK[1..=step].join("*");
    let (status, body) = app
        .post_ussd_form(&[
            ("sessionId", session_id),
            ("serviceCode", "*384*12#"),
            ("phoneNumber", &msisdn.e164()),
            ("networkCode", "63902"),
            ("text", &text),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    body
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

fn number(tail: u32) -> Msisdn {
    let n = rand::random::<u32>() % 10_000 * 1_000 + tail;
    Msisdn::parse(&format!("25471{n:07}")).unwrap()
}

/// The screens and carts of the walk on one node, with the order number blanked (numbers all
/// end in 678, so the masked phone on screen is the same).
async fn reference(app: &TestApp) -> Vec<(String, Cart)> {
    let msisdn = number(678);
    let session = new_session_id();
    let mut seen = Vec::new();
    for step in 0..WALK.len() {
        let screen = hop(app, &session, &msisdn, step).await;
        seen.push((blank_order(&screen), cart_of(app, &msisdn).await));
    }
    seen
}

fn blank_order(screen: &str) -> String {
    match screen.find("Order ") {
        Some(at) => format!("{}Order ?", &screen[..at]),
        None => screen.to_owned(),
    }
}

#[tokio::test]
async fn a_steady_state_hop_is_one_round_trip_and_a_cold_one_two() {
    let redis = dedicated_redis();
    let app = node(redis, &random_prefix()).await;
    let msisdn = number(678);
    let session = new_session_id();
    for step in 0..WALK.len() {
        let watching = watch(redis);
        let screen = hop(&app, &session, &msisdn, step).await;
        let trips = trips(watching);
        if step == 0 {
            assert_eq!(
                trips,
                Trips {
                    reads: 1,
                    commits: 1
                },
                "the cold first hop: {screen}"
            );
        } else {
            assert_eq!(
                trips,
                Trips {
                    reads: 0,
                    commits: 1
                },
                "hop {step}: {screen}"
            );
        }
        if step == WALK.len() - 1 {
            assert!(screen.starts_with("END Order"), "{screen}");
        }
    }
    // A retransmission writes nothing, so it reads once rather than trust the cache.
    let watching = watch(redis);
    hop(&app, &session, &msisdn, WALK.len() - 1).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 1,
            commits: 0
        }
    );
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_node_reads_once_then_runs_from_its_cache() {
    let redis = dedicated_redis();
    let prefix = random_prefix();
    let msisdn = number(678);
    let session = new_session_id();
    let first = node(redis, &prefix).await;
    for step in 0..3 {
        hop(&first, &session, &msisdn, step).await;
    }
    first.stop().await;
    let restarted = node(redis, &prefix).await;
    let watching = watch(redis);
    hop(&restarted, &session, &msisdn, 3).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 1,
            commits: 1
        },
        "cold"
    );
    let watching = watch(redis);
    hop(&restarted, &session, &msisdn, 4).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 0,
            commits: 1
        },
        "warm"
    );
    restarted.stop().await;
}

#[tokio::test]
async fn hops_alternating_between_two_nodes_see_the_one_node_screens_and_carts() {
    let redis = dedicated_redis();
    let prefix = random_prefix();
    let nodes = [node(redis, &prefix).await, node(redis, &prefix).await];
    let alone = reference(&nodes[0]).await;

    let msisdn = number(678);
    let session = new_session_id();
    for (step, expected) in alone.iter().enumerate() {
        let app = &nodes[step % 2];
        let watching = watch(redis);
        let screen = hop(app, &session, &msisdn, step).await;
        let trips = trips(watching);
        assert_eq!(
            &(blank_order(&screen), cart_of(app, &msisdn).await),
            expected,
            "hop {step}"
        );
        // Node 0 guesses from what it wrote two hops ago, loses, and commits from what the
        // conflict returned; node 1 has never seen the session, or saw it two hops ago too.
        assert!(trips.total() <= 2, "hop {step} took {trips:?}");
    }
    for app in nodes {
        app.stop().await;
    }
}

#[tokio::test]
async fn another_nodes_write_turns_the_cache_stale_and_the_hop_replans_from_the_conflict() {
    let redis = dedicated_redis();
    let prefix = random_prefix();
    let (a, b) = (node(redis, &prefix).await, node(redis, &prefix).await);
    let alone = reference(&a).await;

    let msisdn = number(678);
    let session = new_session_id();
    for step in 0..3 {
        hop(&a, &session, &msisdn, step).await;
    }
    // Another node serves a hop: node a's cache now holds the state before it.
    let screen = hop(&b, &session, &msisdn, 3).await;
    assert_eq!(blank_order(&screen), alone[3].0);

    let watching = watch(redis);
    let screen = hop(&a, &session, &msisdn, 4).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 0,
            commits: 2
        },
        "a stale guess, then the commit planned from the values the conflict returned"
    );
    assert_eq!(
        (blank_order(&screen), cart_of(&a, &msisdn).await),
        alone[4],
        "the screen and cart of hop 4, with hop 3's line counted once"
    );
    // The conflict refreshed the cache: back to one round trip.
    let watching = watch(redis);
    let screen = hop(&a, &session, &msisdn, 5).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 0,
            commits: 1
        }
    );
    assert_eq!((blank_order(&screen), cart_of(&a, &msisdn).await), alone[5]);

    // Hop 5 again, on node b, which last wrote hop 3: its guess takes it for new input, the
    // guarded commit refuses it and returns the current session, which makes it a
    // retransmission: one round trip, nothing written, the screen node a sent.
    let watching = watch(redis);
    let again = hop(&b, &session, &msisdn, 5).await;
    assert_eq!(
        trips(watching),
        Trips {
            reads: 0,
            commits: 1
        }
    );
    assert_eq!(again, screen);
    a.stop().await;
    b.stop().await;
}
