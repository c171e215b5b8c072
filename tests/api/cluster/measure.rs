//! Measurements for the README's "Scaling" section, not tests: each is `#[ignore]`d and prints
//! its figures. Run them in release, alone, and note the machine's load:
//!
//! ```text
//! uptime; cargo test --release --test api -- --ignored --nocapture --test-threads 1 measure_
//! ```
//!
//! Duka runs as real `duka serve` processes (the release binary, with its built-in sandboxes),
//! so that its CPU time can be read from `/proc/<pid>/stat` apart from the load generator's
//! (this process) and Redis's (`INFO cpu`). The simulated shoppers all buy (seven hops, then an
//! STK push, its callback, a receipt SMS and its delivery reports), which is heavier per hop than
//! browsing.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duka::keys::Keys;
use duka::msisdn::Msisdn;
use duka::testing::cluster::TestCluster;
use duka::testing::{free_port, random_prefix, TestRedis};
use hdrhistogram::Histogram;
use tokio::task::{spawn_blocking, JoinSet};
use tokio::time::Instant;

use super::{new_session_id, phone, APOLOGY, PURCHASE};

/// A `duka serve` process, stopped (with its watchdog) on drop.
struct Serve {
    watchdog: Child,
    pid: u32,
    address: String,
}

impl Serve {
    /// Starts `duka serve` on a free port with `redis_url` and `prefix`, and waits until ready.
    async fn start(redis_url: &str, prefix: &str) -> Self {
        let port = free_port().expect("a free port");
        // Like `TestRedis`: a shell watchdog stops the server when this process is gone.
        let script = format!(
            "\"$DUKA_BIN\" serve >/dev/null 2>&1 & r=$!; echo $r; \
             trap 'kill $r 2>/dev/null' EXIT TERM INT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.3; done",
            parent = std::process::id()
        );
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("DUKA_BIN", env!("CARGO_BIN_EXE_duka"))
            .env("DUKA_LISTEN", format!("127.0.0.1:{port}"))
            .env("DUKA_MENUS", concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))
            .env("DUKA_KEY_PREFIX", prefix)
            .env("MPESA_CALLBACK_SECRET", "testCallbackSecretXq7vT2kd9LwP4n")
            .env("REDIS_URL", redis_url)
            // The test cluster keeps nothing on disk.
            .env("DUKA_ALLOW_NO_PERSISTENCE", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("duka serve starts");
        let mut line = String::new();
        BufReader::new(watchdog.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the watchdog names the server's pid");
        let serve = Self {
            watchdog,
            pid: line.trim().parse().expect("a pid"),
            address: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("{}/readyz", serve.address))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return serve;
            }
            assert!(Instant::now() < deadline, "duka serve did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM lets the server finish in-flight work; its watchdog then sees it gone and
        // exits. A `SIGKILL` to the watchdog alone would skip its trap and orphan the server.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if matches!(self.watchdog.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 1/100 s).
fn process_cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).expect("the process's stat");
    // Fields after the command name (which may contain spaces) start at the state, field 3.
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// `used_cpu_user + used_cpu_sys` of a Redis server.
fn redis_cpu_seconds(redis: &TestRedis) -> f64 {
    let info: String = redis.command(&["INFO", "cpu"]).expect("INFO cpu");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split_once(':')?.1.trim().parse::<f64>().ok())
        .sum()
}

fn redis_used_memory(redis: &TestRedis) -> i64 {
    let info: String = redis.command(&["INFO", "memory"]).expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

/// Hops and their latencies, from many shoppers buying at once for a while.
struct Load {
    hops: u64,
    purchases: u64,
    apologies: u64,
    latency_us: Histogram<u64>,
    elapsed: Duration,
}

/// Runs `concurrency` shoppers, each buying again and again until `duration` is over, hop `i`
/// of each purchase on `addresses[i % len]`.
async fn run_load(addresses: &[String], concurrency: u32, duration: Duration) -> Load {
    static PHONES: AtomicU32 = AtomicU32::new(20_000_000);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let started = Instant::now();
    let deadline = started + duration;
    let mut shoppers = JoinSet::new();
    for shopper in 0..concurrency {
        let client = client.clone();
        let addresses = addresses.to_vec();
        let histogram = histogram.clone();
        let counts = counts.clone();
        shoppers.spawn(async move {
            let mut turn = shopper as usize;
            while Instant::now() < deadline {
                let msisdn = phone(PHONES.fetch_add(1, Ordering::Relaxed));
                let session_id = new_session_id();
                let mut text = String::new();
                for (i, input) in std::iter::once("").chain(PURCHASE).enumerate() {
                    if i > 0 {
                        text = if text.is_empty() {
                            input.to_owned()
                        } else {
                            format!("{text}*{input}")
                        };
                    }
                    let hop_started = Instant::now();
                    let body = hop(
                        &client,
                        &addresses[turn % addresses.len()],
                        &session_id,
                        &msisdn,
                        &text,
                    )
                    .await;
                    turn += 1;
                    let micros = hop_started.elapsed().as_micros() as u64;
                    histogram.lock().unwrap().record(micros.max(1)).unwrap();
                    let mut counts = counts.lock().unwrap();
                    counts.0 += 1;
                    if body == APOLOGY {
                        counts.2 += 1;
                        break;
                    }
                    if body.starts_with("END Order ") {
                        counts.1 += 1;
                    }
                }
            }
        });
    }
    while let Some(shopper) = shoppers.join_next().await {
        shopper.expect("a shopper finishes");
    }
    let (hops, purchases, apologies) = *counts.lock().unwrap();
    let latency_us = histogram.lock().unwrap().clone();
    Load {
        hops,
        purchases,
        apologies,
        latency_us,
        elapsed: started.elapsed(),
    }
}

async fn hop(
    client: &reqwest::Client,
    address: &str,
    session_id: &str,
    msisdn: &Msisdn,
    text: &str,
) -> String {
    client
        .post(format!("{address}/ussd/africastalking"))
        .form(&[
            ("sessionId", session_id),
            ("serviceCode", "*384*12#"),
            ("phoneNumber", msisdn.e164().as_str()),
            ("networkCode", "63902"),
            ("text", text),
        ])
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .unwrap_or_default()
}

const CONCURRENCY: u32 = 32;
const WARM_UP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(20);

/// Warms up, then measures hops/s and the CPU each part spent on them.
async fn measure(what: &str, serves: &[Serve], redis: &[&TestRedis]) {
    let addresses: Vec<String> = serves.iter().map(|s| s.address.clone()).collect();
    run_load(&addresses, CONCURRENCY, WARM_UP).await;
    let load_before = uptime();
    let duka_before: Vec<f64> = serves.iter().map(Serve::cpu_seconds).collect();
    let redis_before: Vec<f64> = redis.iter().map(|r| redis_cpu_seconds(r)).collect();
    let own_before = process_cpu_seconds("/proc/self/stat");
    let load = run_load(&addresses, CONCURRENCY, MEASURE).await;
    let duka_cpu: f64 = serves
        .iter()
        .zip(&duka_before)
        .map(|(s, before)| s.cpu_seconds() - before)
        .sum();
    let redis_cpu: Vec<f64> = redis
        .iter()
        .zip(&redis_before)
        .map(|(r, before)| redis_cpu_seconds(r) - before)
        .collect();
    let own_cpu = process_cpu_seconds("/proc/self/stat") - own_before;
    let seconds = load.elapsed.as_secs_f64();
    let redis_total: f64 = redis_cpu.iter().sum();
    println!(
        "MEASURE {what}: {} hops in {seconds:.1} s = {:.0} hops/s ({} purchases, {} apologies); \
         latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; CPU s: duka {duka_cpu:.1}, redis \
         {redis_total:.1} (per server {redis_cpu:.2?}), load generator {own_cpu:.1}; \
         hops per duka CPU-second {:.0}, per redis CPU-second {:.0}; loadavg before \"{}\" \
         after \"{}\"",
        load.hops,
        load.hops as f64 / seconds,
        load.purchases,
        load.apologies,
        load.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        load.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        load.latency_us.max() as f64 / 1000.0,
        load.hops as f64 / duka_cpu,
        load.hops as f64 / redis_total,
        load_before.trim(),
        uptime().trim(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for SCALING.md: run in release"]
async fn measure_hops_per_second_of_one_node_on_one_redis() {
    let redis = spawn_blocking(TestRedis::start).await.unwrap().unwrap();
    let serves = vec![Serve::start(&redis.url(), &random_prefix()).await];
    measure("one node, one Redis", &serves, &[&redis]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for SCALING.md: run in release"]
async fn measure_hops_per_second_of_two_nodes_on_a_three_master_cluster() {
    let cluster = spawn_blocking(TestCluster::start).await.unwrap().unwrap();
    let prefix = random_prefix();
    let serves = vec![
        Serve::start(&cluster.url(), &prefix).await,
        Serve::start(&cluster.url(), &prefix).await,
    ];
    let servers: Vec<&TestRedis> = cluster
        .ports()
        .into_iter()
        .map(|p| cluster.node(p))
        .collect();
    measure(
        "two nodes, three masters + three replicas",
        &serves,
        &servers,
    )
    .await;
}

/// Runs `count` shoppers, `concurrency` at a time, each through `inputs` (cumulative texts).
async fn walk(address: &str, first_phone: u32, count: u32, inputs: &[&str]) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut last_screens = Vec::new();
    let mut shoppers = JoinSet::new();
    for n in 0..count {
        let client = client.clone();
        let address = address.to_owned();
        let inputs: Vec<String> = inputs.iter().map(|s| (*s).to_owned()).collect();
        shoppers.spawn(async move {
            let msisdn = phone(first_phone + n);
            let session_id = new_session_id();
            let mut last = String::new();
            for text in &inputs {
                last = hop(&client, &address, &session_id, &msisdn, text).await;
            }
            last
        });
        if shoppers.len() >= CONCURRENCY as usize {
            last_screens.push(shoppers.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(last) = shoppers.join_next().await {
        last_screens.push(last.unwrap());
    }
    last_screens
}

/// The cumulative texts of a whole purchase: `""`, `"1"`, `"1*2"`, …
fn purchase_texts() -> Vec<String> {
    let mut texts = vec![String::new()];
    for input in PURCHASE {
        let last = texts.last().expect("the dial").clone();
        texts.push(if last.is_empty() {
            input.to_owned()
        } else {
            format!("{last}*{input}")
        });
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for SCALING.md"]
async fn measure_redis_memory_per_thousand_live_sessions_and_per_order() {
    const ORDERS: u32 = 1_000;
    const SESSIONS: u32 = 2_000;
    let redis = spawn_blocking(TestRedis::start).await.unwrap().unwrap();
    let prefix = random_prefix();
    let serve = Serve::start(&redis.url(), &prefix).await;
    walk(&serve.address, 30_000_000, 20, &["", "1"]).await;
    let dbsize = |redis: &TestRedis| -> i64 { redis.command(&["DBSIZE"]).unwrap() };
    let delete_sessions = |redis: &TestRedis| {
        let sessions: Vec<String> = redis
            .command(&["KEYS", &format!("{prefix}*:sess:*")])
            .unwrap();
        for key in &sessions {
            let _: i64 = redis.command(&["DEL", key]).unwrap();
        }
    };
    delete_sessions(&redis);

    // Orders, kept for 90 days: placed, paid, receipted; then every session is deleted, to
    // count what stays (order, audit trail, receipt, profile, indexes, queued jobs).
    let (memory_before, keys_before) = (redis_used_memory(&redis), dbsize(&redis));
    let texts = purchase_texts();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let screens = walk(&serve.address, 31_000_000, ORDERS, &texts).await;
    let orders: Vec<String> = screens
        .iter()
        .map(|s| crate::helpers::order_number_in(s))
        .collect();
    let keys = Keys::new(prefix.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut unsettled = 0;
        for number in &orders {
            let receipt: Option<String> = redis
                .command(&["GET", &keys.message(&format!("{number}.r"))])
                .unwrap();
            if !receipt.is_some_and(|r| r.contains("\"status\":\"sent\"")) {
                unsettled += 1;
            }
        }
        if unsettled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unsettled} orders not receipted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    delete_sessions(&redis);
    let (memory_orders, keys_orders) = (redis_used_memory(&redis), dbsize(&redis));
    let breakdown = order_key_sizes(&redis, &keys, &orders[..50]);

    // Live sessions, each with a cart of one line (dial, Shop, Household, Toilet Paper, 2).
    let screens = walk(
        &serve.address,
        32_000_000,
        SESSIONS,
        &["", "1", "1*2", "1*2*3", "1*2*3*2"],
    )
    .await;
    assert!(
        screens.iter().all(|s| s.starts_with("CON ")),
        "{:?}",
        &screens[..3]
    );
    let (memory_sessions, keys_sessions) = (redis_used_memory(&redis), dbsize(&redis));
    println!(
        "MEASURE memory: {ORDERS} settled orders: {} bytes, {} keys => {:.0} bytes and {:.1} \
         keys per order; {SESSIONS} live sessions with a cart: {} bytes, {} keys => {:.2} MB and \
         {:.0} keys per 1,000 sessions; bytes per order key (MEMORY USAGE, mean of 50): \
         {breakdown:?}",
        memory_orders - memory_before,
        keys_orders - keys_before,
        (memory_orders - memory_before) as f64 / f64::from(ORDERS),
        (keys_orders - keys_before) as f64 / f64::from(ORDERS),
        memory_sessions - memory_orders,
        keys_sessions - keys_orders,
        (memory_sessions - memory_orders) as f64 / f64::from(SESSIONS) * 1000.0 / 1e6,
        (keys_sessions - keys_orders) as f64 / f64::from(SESSIONS) * 1000.0,
    );
}

/// The mean `MEMORY USAGE` of each key a settled order leaves, by kind.
fn order_key_sizes(redis: &TestRedis, keys: &Keys, orders: &[String]) -> Vec<(&'static str, u64)> {
    let usage = |key: &str| -> u64 {
        redis
            .command::<Option<u64>>(&["MEMORY", "USAGE", key])
            .unwrap()
            .unwrap_or(0)
    };
    let mut totals = [
        ("order", 0),
        ("audit", 0),
        ("receipt", 0),
        ("profile", 0),
        ("stk index", 0),
        ("sms index", 0),
    ];
    for number in orders {
        let order: serde_json::Value = serde_json::from_str(
            &redis
                .command::<String>(&["GET", &keys.order(number)])
                .unwrap(),
        )
        .unwrap();
        let receipt: serde_json::Value = serde_json::from_str(
            &redis
                .command::<String>(&["GET", &keys.message(&format!("{number}.r"))])
                .unwrap(),
        )
        .unwrap();
        let msisdn = Msisdn::parse(order["msisdn"].as_str().unwrap()).unwrap();
        let checkout = order["attempts"][0]["checkout_request_id"]
            .as_str()
            .unwrap();
        let message_id = receipt["message_id"].as_str().unwrap();
        let sizes = [
            usage(&keys.order(number)),
            usage(&keys.audit(number)),
            usage(&keys.message(&format!("{number}.r"))),
            usage(&keys.profile(&msisdn)),
            usage(&keys.stk_index(checkout)),
            usage(&keys.sms_index(message_id)),
        ];
        for (total, size) in totals.iter_mut().zip(sizes) {
            total.1 += size;
        }
    }
    totals
        .into_iter()
        .map(|(kind, total)| (kind, total / orders.len() as u64))
        .collect()
}
