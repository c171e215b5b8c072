//! The test harness: a Duka server on a free port, its sandboxes, and a phone to dial it with.
//!
//! Every test gets its own server and its own random Redis key prefix on the shared throwaway
//! `redis-server` of this test binary, so tests run in parallel without seeing each other.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duka::config::Settings;
use duka::orders::Order;
use duka::sandbox::mpesa::MpesaSandbox;
use duka::sandbox::sms::SmsSandbox;
use duka::startup::{AppState, Application, BuildOptions};
use duka::store::memory::MemoryStore;
use duka::testing::{random_prefix, TestRedis};

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Redis,
    Memory,
}

/// How to build the server under test.
pub struct TestOptions {
    pub store: StoreKind,
    /// Extra environment variables (e.g. `MPESA_QUERY_AFTER_S`).
    pub env: Vec<(&'static str, String)>,
    pub run_worker: bool,
    /// Use this Redis instead of the binary's shared one (for tests that read server stats).
    pub redis: Option<&'static TestRedis>,
    /// Use this key prefix (to restart a node on the same data).
    pub prefix: Option<String>,
    /// Delay of the M-Pesa sandbox's callbacks.
    pub callback_delay: Duration,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            store: StoreKind::Redis,
            env: Vec::new(),
            run_worker: true,
            redis: None,
            prefix: None,
            callback_delay: Duration::from_millis(50),
        }
    }
}

/// A running Duka under test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub mpesa: Option<Arc<MpesaSandbox>>,
    pub sms: Option<Arc<SmsSandbox>>,
    pub callback_secret: String,
    pub redis: Option<&'static TestRedis>,
    pub prefix: String,
    /// The shops of `DUKA_SHOPS`, by id: their state and built-in sandboxes.
    pub shops: HashMap<String, (AppState, duka::startup::Sandboxes)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

static SESSIONS: AtomicU64 = AtomicU64::new(1);

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        init_test_log();
        let secret = "testCallbackSecretXq7vT2kd9LwP4n".to_owned();
        let mut env: HashMap<String, String> = HashMap::from([
            ("DUKA_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "DUKA_MENUS".into(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/menus").into(),
            ),
            (
                "DUKA_KEY_PREFIX".into(),
                options.prefix.clone().unwrap_or_else(random_prefix),
            ),
            ("MPESA_CALLBACK_SECRET".into(), secret.clone()),
            // The throwaway Redis keeps nothing on disk (tests/api/durability.rs turns it on).
            ("DUKA_ALLOW_NO_PERSISTENCE".into(), "1".into()),
        ]);
        let redis = match options.store {
            StoreKind::Redis => {
                let redis = options.redis.unwrap_or_else(TestRedis::shared);
                env.insert("REDIS_URL".into(), redis.url());
                Some(redis)
            }
            StoreKind::Memory => None,
        };
        for (key, value) in options.env {
            env.insert(key.to_owned(), value);
        }
        let prefix = env["DUKA_KEY_PREFIX"].clone();
        let settings = Settings::from_lookup(|name| env.get(name).cloned()).expect("test settings");
        let shop_ids: Vec<String> = settings.shops.iter().map(|s| s.id.clone()).collect();
        let build = BuildOptions {
            store: (options.store == StoreKind::Memory)
                .then(|| Arc::new(MemoryStore::new()) as duka::store::SharedStore),
            run_worker: options.run_worker,
            sweep_every: Duration::from_millis(100),
            ..BuildOptions::default()
        };
        let app = Application::build(settings, build)
            .await
            .expect("the app builds");
        let address = format!("http://{}", app.local_addr());
        let state = app.state();
        let sandboxes = app.sandboxes();
        let shops: HashMap<String, (AppState, duka::startup::Sandboxes)> = shop_ids
            .iter()
            .map(|id| {
                let state = app.shop_state(id).expect("a mounted shop");
                let sandboxes = app.shop_sandboxes(id).expect("a mounted shop");
                (id.clone(), (state, sandboxes))
            })
            .collect();
        let all_sandboxes = std::iter::once(&sandboxes).chain(shops.values().map(|(_, s)| s));
        for mpesa in all_sandboxes.filter_map(|s| s.mpesa.as_ref()) {
            let delay = options.callback_delay;
            mpesa.configure(|c| {
                c.callback_delay = delay;
                c.c2b_validation = true;
            });
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = app
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            address,
            client: reqwest::Client::new(),
            state,
            mpesa: sandboxes.mpesa,
            sms: sandboxes.sms,
            callback_secret: secret,
            redis,
            prefix,
            shops,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server and waits for it (requests and jobs in flight finish).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    pub fn mpesa(&self) -> &MpesaSandbox {
        self.mpesa.as_deref().expect("the M-Pesa sandbox runs")
    }

    pub fn sms(&self) -> &SmsSandbox {
        self.sms.as_deref().expect("the SMS sandbox runs")
    }

    /// Posts a raw Africa's Talking USSD form; returns status and body.
    pub async fn post_ussd_form(&self, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}/ussd/africastalking", self.address))
            .form(form)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Posts the same USSD form `times` times at once (a gateway retrying eagerly).
    pub async fn post_ussd_concurrently(
        &self,
        form: &[(&str, String)],
        times: usize,
    ) -> Vec<(u16, String)> {
        let mut posts = tokio::task::JoinSet::new();
        let form: Vec<(String, String)> = form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        for _ in 0..times {
            let client = self.client.clone();
            let url = format!("{}/ussd/africastalking", self.address);
            let form = form.clone();
            posts.spawn(async move {
                let response = client
                    .post(url)
                    .form(&form)
                    .send()
                    .await
                    .expect("the server answers");
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            });
        }
        posts.join_all().await
    }

    /// Posts a raw body to a path with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Posts JSON to a payment callback path under the secret.
    pub async fn post_payment_json(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        self.post_raw(
            &format!("/payments/{}{path}", self.callback_secret),
            "application/json",
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    /// A phone that dials this server.
    pub fn phone(&self, number: &str) -> Phone<'_> {
        Phone {
            app: self,
            e164: duka::msisdn::Msisdn::parse(number)
                .expect("a test number")
                .e164(),
            session_id: new_session_id(),
            text: None,
            service_code: "*384*12#".into(),
        }
    }

    /// Reads an order straight from the store.
    pub async fn order(&self, number: &str) -> Option<Order> {
        duka::payments::settle::load_order(&self.state.shop, number)
            .await
            .expect("the store answers")
    }

    /// The outbox message with this id.
    pub async fn message(&self, id: &str) -> Option<duka::sms::outbox::OutboxMessage> {
        let key = self.state.shop.keys.message(id);
        let raw = self.state.shop.store.get(&[key]).await.expect("store");
        raw.into_iter()
            .next()
            .flatten()
            .map(|bytes| serde_json::from_slice(&bytes).expect("a message"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn new_session_id() -> String {
    format!("ATUid_test_{}", SESSIONS.fetch_add(1, Ordering::Relaxed))
}

/// A handset dialling the shop: keeps the cumulative `text` like Africa's Talking does.
pub struct Phone<'a> {
    app: &'a TestApp,
    pub e164: String,
    pub session_id: String,
    /// `None` before dialling; then the cumulative text sent last.
    text: Option<String>,
    pub service_code: String,
}

impl Phone<'_> {
    async fn send(&mut self, text: String) -> String {
        let (status, body) = self
            .app
            .post_ussd_form(&[
                ("sessionId", &self.session_id),
                ("serviceCode", &self.service_code),
                ("phoneNumber", &self.e164),
                ("networkCode", "63902"),
                ("text", &text),
            ])
            .await;
        assert_eq!(status, 200, "a USSD hop answers 200: {body}");
        assert!(
            body.starts_with("CON ") || body.starts_with("END "),
            "a USSD reply starts with CON or END: {body:?}"
        );
        self.text = Some(text);
        body
    }

    /// Dials the shortcode (the first hop of a new session).
    pub async fn dial(&mut self) -> String {
        self.send(String::new()).await
    }

    /// Dials with inputs already in the dial string (`*384*12*1*2#`).
    pub async fn deep_dial(&mut self, inputs: &str) -> String {
        self.send(inputs.to_owned()).await
    }

    /// Types an input and presses send.
    pub async fn press(&mut self, input: &str) -> String {
        let text = match self.text.as_deref() {
            None | Some("") => input.to_owned(),
            Some(previous) => format!("{previous}*{input}"),
        };
        self.send(text).await
    }

    /// Dials and buys two packs of toilet paper (KES 900), paying with M-Pesa from this phone:
    /// the walk most tests need. Returns the order number from the END screen.
    pub async fn buy(&mut self) -> String {
        self.dial().await;
        for input in ["1", "2", "3", "2", "1"] {
            self.press(input).await;
        }
        order_number_in(&self.press("1").await)
    }

    /// Sends the last request again (a retransmission).
    pub async fn resend(&mut self) -> String {
        let text = self.text.clone().unwrap_or_default();
        self.send(text).await
    }

    /// Records that `text` was sent by other means (concurrent posts in a test).
    pub fn assume_sent(&mut self, text: &str) {
        self.text = Some(text.to_owned());
    }

    /// Hangs up; the next dial is a new session.
    pub fn hang_up(&mut self) {
        self.session_id = new_session_id();
        self.text = None;
    }

    /// Africa's Talking's end-of-session notification for this session.
    pub async fn session_ends(&self, status: &str) -> u16 {
        let response = self
            .app
            .client
            .post(format!(
                "{}/ussd/africastalking/session-end",
                self.app.address
            ))
            .form(&[
                ("sessionId", self.session_id.as_str()),
                ("serviceCode", self.service_code.as_str()),
                ("phoneNumber", self.e164.as_str()),
                ("networkCode", "63902"),
                ("status", status),
                ("input", self.text.as_deref().unwrap_or("")),
                ("hopsCount", "3"),
                ("durationInMillis", "30000"),
            ])
            .send()
            .await
            .expect("the server answers");
        response.status().as_u16()
    }
}

/// Polls `check` until it returns `Some`, or panics after `within` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A dedicated Redis for one test (its stats are its own); stopped when the test binary exits.
pub fn dedicated_redis() -> &'static TestRedis {
    Box::leak(Box::new(
        TestRedis::start().expect("a throwaway redis-server"),
    ))
}

/// The order number in a checkout END screen ("Order D7K2Q9. …", "Oda D7K2Q9. …").
pub fn order_number_in(screen: &str) -> String {
    let start = ["Order ", "Oda "]
        .iter()
        .find_map(|word| screen.find(word).map(|at| at + word.len()))
        .expect("the screen names the order");
    screen[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn init_test_log() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The settings of a node on the Redis at `redis_url` (a single server or `redis+cluster://`),
/// with `DUKA_ALLOW_NO_PERSISTENCE` set to `allow`: for the start-up persistence checks.
pub fn settings_on(redis_url: &str, allow: &str) -> duka::config::Settings {
    let env = HashMap::from([
        ("DUKA_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "DUKA_MENUS".to_owned(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/menus").to_owned(),
        ),
        ("REDIS_URL".to_owned(), redis_url.to_owned()),
        ("DUKA_ALLOW_NO_PERSISTENCE".to_owned(), allow.to_owned()),
    ]);
    duka::config::Settings::from_lookup(|name| env.get(name).cloned()).unwrap()
}

/// Start-up on the Redis at `redis_url` is refused, with every one of `why` in the reason,
/// unless `DUKA_ALLOW_NO_PERSISTENCE=1`.
pub async fn assert_start_up_refused_unless_allowed(redis_url: &str, why: &[&str]) {
    let options = || BuildOptions {
        run_worker: false,
        ..BuildOptions::default()
    };
    let refused = Application::build(settings_on(redis_url, "0"), options())
        .await
        .err()
        .expect("refused");
    let reason = format!("{refused:#}");
    for part in why {
        assert!(reason.contains(part), "{part:?} not in {reason}");
    }
    assert!(Application::build(settings_on(redis_url, "1"), options())
        .await
        .is_ok());
}

/// The environment of a second shop, Mama Mboga (`tests/shops/mboga`), beside the default one:
/// orders starting with `M`, service code `*384*13#`.
pub fn mboga_shop_env() -> Vec<(&'static str, String)> {
    vec![
        ("DUKA_SHOPS", "mboga".to_owned()),
        (
            "DUKA_SHOP_MBOGA_MENUS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shops/mboga").to_owned(),
        ),
        ("DUKA_SHOP_MBOGA_ORDER_PREFIX", "M".to_owned()),
        ("DUKA_SHOP_MBOGA_SERVICE_CODE", "*384*13#".to_owned()),
    ]
}
