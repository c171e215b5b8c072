//! What an operator sees and turns: the log of a paid order, `/readyz` while Redis is down, the
//! session TTL setting, and menus reloaded while the server runs.
//!
//! The log tests capture events with a layer of their own, installed for this test's thread
//! only (`#[tokio::test]` runs the server, the workers and the sandboxes on that thread).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duka::orders::OrderStatus;
use duka::sms::outbox::SendStatus;
use duka::testing::TestRedis;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::helpers::{eventually, TestApp, TestOptions};

const WAIT: Duration = Duration::from_secs(15);

/// One captured log event.
#[derive(Clone, Debug)]
struct Line {
    level: Level,
    target: String,
    message: String,
    fields: Vec<(String, String)>,
}

/// Keeps every event at INFO and above.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

impl Capture {
    fn lines(&self) -> Vec<Line> {
        self.0.lock().unwrap().clone()
    }

    /// Installs the capture for the current thread until the guard is dropped.
    ///
    /// Then every callsite's cached interest is worked out again, twice: a callsite that another
    /// test's thread was registering at that moment may have cached "never" (no other
    /// subscriber wants it) without counting this one, and its events would be lost here (seen
    /// in full runs: the "order placed" line missing). A registration that began before this
    /// subscriber existed can store its answer after the first rebuild; one that begins after
    /// counts this subscriber. So the second rebuild, once any registration under way has
    /// finished (they take microseconds), leaves no stale answer behind.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::LevelFilter::INFO)
                .with(self.clone()),
        );
        tracing::callsite::rebuild_interest_cache();
        std::thread::sleep(Duration::from_millis(100));
        tracing::callsite::rebuild_interest_cache();
        guard
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields
            .push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push(Line {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.fields,
        });
    }
}

#[tokio::test]
async fn a_paid_order_logs_one_info_line_per_business_event_with_masked_numbers() {
    let app = TestApp::spawn().await;
    let capture = Capture::default();
    let _guard = capture.install();

    let mut phone = app.phone("0712300001");
    let number = phone.buy().await;
    eventually("the order to be paid", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let receipt = format!("{number}.r");
    eventually("the receipt to be sent", WAIT, || async {
        app.message(&receipt)
            .await
            .filter(|m| m.status == SendStatus::Sent)
    })
    .await;
    // Time for any late duplicate (a delivery report, a second worker line) to be logged.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let lines = capture.lines();
    // The built-in sandboxes stand in for Safaricom and Africa's Talking and speak for themselves.
    let mut business: Vec<String> = lines
        .iter()
        .filter(|l| l.target.starts_with("duka") && !l.target.starts_with("duka::sandbox"))
        .map(|l| format!("{} {}", l.level, l.message.replace(&number, "ORDER")))
        .collect();
    business.sort();
    assert_eq!(
        business,
        [
            "INFO SMS accepted by Africa's Talking",
            "INFO STK push accepted for order ORDER",
            "INFO order ORDER paid by STK push",
            "INFO order placed",
        ],
        "{lines:#?}"
    );
    for line in &lines {
        let text = format!("{} {:?}", line.message, line.fields);
        assert!(
            !text.contains("Some("),
            "an Option printed as Debug: {line:?}"
        );
        assert!(!text.contains("0712300001"), "an unmasked number: {line:?}");
        assert!(
            !text.contains("254712300001"),
            "an unmasked number: {line:?}"
        );
        assert!(
            !text.contains("+254*"),
            "a second masking style (Msisdn::masked is 2547******01): {line:?}"
        );
    }
    let sms = lines
        .iter()
        .find(|l| l.message == "SMS accepted by Africa's Talking")
        .unwrap();
    assert!(
        sms.fields
            .iter()
            .any(|(name, value)| name == "sms.message_id" && value.starts_with("ATXid_")),
        "{sms:?}"
    );
    assert!(
        sms.fields
            .iter()
            .any(|(name, value)| name == "msisdn.masked" && value == "2547******01"),
        "{sms:?}"
    );
}

#[tokio::test]
async fn readyz_while_redis_is_down_answers_503_and_warns_once_without_an_error() {
    // A server of its own, shut down under the app (leaked: nothing else may use it).
    let redis: &'static TestRedis = Box::leak(Box::new(TestRedis::start().unwrap()));
    let app = TestApp::spawn_with(TestOptions {
        redis: Some(redis),
        run_worker: false,
        ..TestOptions::default()
    })
    .await;
    let readyz = || async {
        let response = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    let capture = Capture::default();
    let _guard = capture.install();
    assert_eq!(readyz().await, 200);
    let _: redis::RedisResult<()> = redis.command(&["SHUTDOWN", "NOSAVE"]);
    for _ in 0..3 {
        assert_eq!(readyz().await, 503);
    }

    let lines = capture.lines();
    let readiness: Vec<&Line> = lines
        .iter()
        .filter(|l| l.message.contains("ready"))
        .collect();
    assert_eq!(readiness.len(), 1, "{lines:#?}");
    assert_eq!(readiness[0].level, Level::WARN);
    assert!(
        readiness[0].message.starts_with("not ready: "),
        "{readiness:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.level != Level::ERROR || l.target.starts_with("redis")),
        "a 503 from /readyz is no error: {lines:#?}"
    );
}

#[tokio::test]
async fn the_session_ttl_comes_from_duka_session_ttl_s() {
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("DUKA_SESSION_TTL_S", "45".to_owned())],
        ..TestOptions::default()
    })
    .await;
    let mut phone = app.phone("0712300002");
    phone.dial().await;
    let msisdn = duka::msisdn::Msisdn::parse(&phone.e164).unwrap();
    let key = app.state.shop.keys.session(&msisdn, &phone.session_id);
    let ttl_ms: i64 = app.redis.unwrap().command(&["PTTL", &key]).unwrap();
    assert!((40_000..=45_000).contains(&ttl_ms), "{key}: {ttl_ms} ms");
}

/// A copy of the shipped menus, to edit.
fn menus_copy() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("duka-api-menus-{}", duka::testing::random_prefix()));
    duka::testing::copy_dir(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/menus")),
        &dir,
    )
    .unwrap();
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let raw = std::fs::read_to_string(path).unwrap();
    assert!(raw.contains(from), "{} has {from:?}", path.display());
    std::fs::write(path, raw.replacen(from, to, 1)).unwrap();
}

#[tokio::test]
async fn a_reload_changes_the_next_sessions_screen_and_a_broken_menu_is_refused() {
    let dir = menus_copy();
    let app = TestApp::spawn_with(TestOptions {
        env: vec![("DUKA_MENUS", dir.display().to_string())],
        ..TestOptions::default()
    })
    .await;
    let mut phone = app.phone("0712300003");
    assert!(phone.dial().await.starts_with("CON Welcome to Duka\n"));

    edit(
        &dir.join("shop.toml"),
        "name = \"Duka\"",
        "name = \"Duka Mpya\"",
    );
    assert!(duka::reload::reload_menus(&app.state.shop, &dir));
    phone.hang_up();
    assert!(phone.dial().await.starts_with("CON Welcome to Duka Mpya\n"));

    edit(
        &dir.join("shop.toml"),
        "name = \"Duka Mpya\"",
        "name = \"Duka Tena\"",
    );
    edit(
        &dir.join("screens.toml"),
        "target = \"help\"",
        "target = \"nowhere\"",
    );
    assert!(!duka::reload::reload_menus(&app.state.shop, &dir));
    phone.hang_up();
    let screen = phone.dial().await;
    assert!(screen.starts_with("CON Welcome to Duka Mpya\n"), "{screen}");
    // The old menus are whole: Help still leads to its screen.
    assert!(phone.press("5").await.contains("0700 384 012"));
    std::fs::remove_dir_all(&dir).unwrap();
}
