//! Nothing acknowledged is lost: start-up refuses a Redis that does not persist, and a paid order
//! and its receipt survive `kill -9` of Redis and a restart from its AOF.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use duka::msisdn::Msisdn;
use duka::orders::OrderStatus;
use duka::sms::outbox::SendStatus;

use crate::helpers::{eventually, TestApp, TestOptions};

/// A `redis-server` this test starts, kills with SIGKILL and restarts on the same port and dir.
struct KillableRedis {
    port: u16,
    dir: std::path::PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl KillableRedis {
    fn start(extra: &[&str]) -> Self {
        let port = duka::testing::free_port().unwrap();
        let dir =
            std::env::temp_dir().join(format!("duka-durability-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            &dir.display().to_string(),
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut redis = Self {
            port,
            dir,
            args,
            child: None,
        };
        redis.spawn();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// `kill -9`: no chance to write anything more.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL on unix
            let _ = child.wait();
        }
    }
}

impl Drop for KillableRedis {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn start_up_refuses_a_redis_without_appendonly_unless_allowed() {
    let redis = KillableRedis::start(&["--appendonly", "no"]);
    crate::helpers::assert_start_up_refused_unless_allowed(
        &redis.url(),
        &["appendonly no", "DUKA_ALLOW_NO_PERSISTENCE"],
    )
    .await;
}

#[tokio::test]
async fn a_paid_order_and_its_receipt_survive_kill_9_of_redis() {
    let mut redis = KillableRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("REDIS_URL", redis.url()),
            ("DUKA_ALLOW_NO_PERSISTENCE", "0".into()),
        ],
        ..TestOptions::default()
    })
    .await;
    let msisdn = Msisdn::parse("0712201501").unwrap();
    let mut phone = app.phone("0712201501");
    let number = phone.buy().await;
    let receipt = format!("{number}.r");
    eventually(
        "the receipt to be sent",
        Duration::from_secs(20),
        || async {
            app.message(&receipt)
                .await
                .filter(|m| m.status == SendStatus::Sent)
        },
    )
    .await;

    redis.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.spawn();

    // Duka reconnects by itself and reads the order and receipt back from the AOF.
    let order = eventually(
        "the order after the restart",
        Duration::from_secs(20),
        || async { app.order(&number).await },
    )
    .await;
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        app.message(&receipt)
            .await
            .expect("the receipt survives")
            .status,
        SendStatus::Sent
    );
    // The worker runs on after the restart and sends nothing again.
    let mut again = app.phone("0712201502");
    again.dial().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let receipts: Vec<_> = app
        .sms()
        .inbox(&msisdn)
        .into_iter()
        .filter(|m| m.text.contains(&number))
        .collect();
    assert_eq!(receipts.len(), 1, "the receipt went out once");
    app.stop().await;
}

#[tokio::test]
async fn a_paid_order_waits_for_the_replica_and_counts_when_it_cannot() {
    let master = KillableRedis::start(&["--appendonly", "yes"]);
    let replica_of = format!("127.0.0.1 {}", master.port);
    let mut replica = KillableRedis::start(&["--appendonly", "no", "--replicaof", &replica_of]);
    let client = redis::Client::open(master.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    eventually("the replica to connect", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .ok()?;
            info.contains("state=online").then_some(())
        }
    })
    .await;
    let app = TestApp::spawn_with(TestOptions {
        env: vec![
            ("REDIS_URL", master.url()),
            ("DUKA_ALLOW_NO_PERSISTENCE", "0".into()),
            ("DUKA_REDIS_WAIT_MS", "1500".into()),
        ],
        ..TestOptions::default()
    })
    .await;
    assert_eq!(
        app.state.limits.wait_replicas,
        Some(1),
        "one replica found at start-up"
    );
    let buy = |number: &'static str| {
        let app = &app;
        async move {
            let mut phone = app.phone(number);
            let order = phone.buy().await;
            eventually("paid", Duration::from_secs(20), || async {
                app.order(&order)
                    .await
                    .filter(|o| o.status == OrderStatus::Paid)
            })
            .await;
            order
        }
    };
    buy("0712201511").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let short = || app.state.metrics.counter("duka_redis_wait_short_total", "");
    assert_eq!(short(), 0);
    // The replica gone, the next paid order cannot reach it: counted, still acknowledged.
    replica.kill9();
    redis::cmd("SET")
        .arg("nudge")
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    buy("0712201512").await;
    eventually(
        "the short WAIT to be counted",
        Duration::from_secs(5),
        || async { (short() == 1).then_some(()) },
    )
    .await;
    app.stop().await;
}
