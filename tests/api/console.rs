//! The operator console and the web phone, over plain HTTP and in headless Chromium.
//!
//! The browser tests drive Debian's `chromium` through `chromedriver` (package
//! `chromium-driver`), started here on a free port; nothing is downloaded. Without them the
//! tests fail and name the packages, unless `DUKA_SKIP_BROWSER_TESTS=1`. Screenshots go to
//! `target/console-screenshots/`.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use duka::msisdn::Msisdn;
use duka::orders::OrderStatus;
use duka::sandbox::mpesa::{Outcome, PromptAnswer};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::header;

use crate::helpers::{eventually, order_number_in, TestApp, TestOptions};

const PASSWORD: &str = "correct horse battery";
const WAIT: Duration = Duration::from_secs(20);

fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| duka::console::auth::hash_password(PASSWORD))
        .clone()
}

async fn console_app() -> TestApp {
    TestApp::spawn_with(TestOptions {
        env: vec![("DUKA_CONSOLE_PASSWORD_HASH", password_hash())],
        ..TestOptions::default()
    })
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in over HTTP; returns the cookie header value and the session's CSRF token.
async fn sign_in_http(app: &TestApp) -> (String, String) {
    let client = no_redirects();
    let response = client
        .post(format!("{}/console/sign-in", app.address))
        .header(header::ORIGIN, &app.address)
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(format!("{}/console", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries the CSRF token")
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn without_the_setting_there_is_no_console() {
    let app = TestApp::spawn().await;
    let status = no_redirects()
        .get(format!("{}/console", app.address))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn without_a_session_pages_redirect_and_json_is_401() {
    let app = console_app().await;
    let client = no_redirects();
    for page in [
        "/console",
        "/console/attention",
        "/console/catalog",
        "/console/orders/AB12CD",
        "/console/phone",
    ] {
        let response = client
            .get(format!("{}{page}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{page}");
        assert_eq!(response.headers()[header::LOCATION], "/console/sign-in");
    }
    let json = client
        .get(format!("{}/console/api/orders/AB12CD", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 401);
    let forged = client
        .get(format!("{}/console", app.address))
        .header(header::COOKIE, format!("duka_console={}", "a".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303, "an unknown session id is no session");
    let post = client
        .post(format!("{}/console/api/phone", app.address))
        .header(header::ORIGIN, &app.address)
        .json(&serde_json::json!({"id": "12345678", "action": "poll"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_this_origin() {
    let app = console_app().await;
    let (cookie, csrf) = sign_in_http(&app).await;
    let client = no_redirects();
    let poll = serde_json::json!({"id": "12345678", "action": "poll"});
    let url = format!("{}/console/api/phone", app.address);
    let send = |token: Option<&str>, origin: &str| {
        let mut request = client
            .post(&url)
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, origin)
            .json(&poll);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    assert_eq!(send(None, &app.address).await.unwrap().status(), 403);
    assert_eq!(
        send(Some("wrong"), &app.address).await.unwrap().status(),
        403
    );
    assert_eq!(
        send(Some(&csrf), "http://evil.example")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(send(Some(&csrf), &app.address).await.unwrap().status(), 200);
    // The sign-out form without its hidden token is refused and the session lives on.
    let sign_out = client
        .post(format!("{}/console/sign-out", app.address))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &app.address)
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), 403);
    let sign_out = client
        .post(format!("{}/console/sign-out", app.address))
        .header(header::COOKIE, &cookie)
        .header(header::ORIGIN, &app.address)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_out.status(), 303);
    let after = client
        .get(format!("{}/console", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "signed out on the server");
    app.stop().await;
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let app = console_app().await;
    let client = no_redirects();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = client
            .post(format!("{}/console/sign-in", app.address))
            .header(header::ORIGIN, &app.address)
            .form(&[("password", "guess")])
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right password waits out the minute now.
    let right = client
        .post(format!("{}/console/sign-in", app.address))
        .header(header::ORIGIN, &app.address)
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 429);
    app.stop().await;
}

// ---- in the browser ----

/// chromedriver on a free port, stopped when dropped together with the Chromium it started.
///
/// Killing chromedriver alone leaves its Chromium running (reparented to init): every test run
/// leaked one browser of a dozen processes that way, whenever a test ended without closing its
/// session (a panic, or no `close()`). So chromedriver runs in a process group of its own, and
/// the whole group goes, then the browser's profile directory.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)`); `-PGID` names the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn browser_tests_skipped() -> bool {
    if std::env::var("DUKA_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("DUKA_SKIP_BROWSER_TESTS=1: skipping a browser test");
        return true;
    }
    false
}

fn find_binary(names: &[&str], package: &str) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
            let path = PathBuf::from(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!(
        "{} not found: install Debian's `{package}` package (apt-get install chromium chromium-driver), or set DUKA_SKIP_BROWSER_TESTS=1 to skip the browser tests",
        names[0]
    );
}

async fn browser() -> (Driver, Client) {
    // reqwest and fantoccini both bring a rustls provider; pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chromium = find_binary(&["chromium", "chromium-browser"], "chromium");
    let chromedriver = find_binary(&["chromedriver"], "chromium-driver");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver starts");
    let profile = std::env::temp_dir().join(format!("duka-chromium-{}-{port}", std::process::id()));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile: profile.clone(),
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1200,900",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let client = loop {
        let attempt = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await;
        match attempt {
            Ok(client) => break client,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "chromedriver at {} did not start a session: {e}",
                driver.url
            ),
        }
    };
    (driver, client)
}

async fn screenshot(client: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, client.screenshot().await.unwrap()).unwrap();
    eprintln!("screenshot: {}", path.display());
}

async fn sign_in_browser(client: &Client, app: &TestApp) {
    sign_in_browser_at(client, &app.address, "").await;
}

/// Signs in to the console of the shop mounted at `mount` (`""`: the default shop).
async fn sign_in_browser_at(client: &Client, address: &str, mount: &str) {
    client
        .goto(&format!("{address}{mount}/console"))
        .await
        .unwrap();
    // No session: the console sends the browser to the sign-in page.
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("{mount}/console/sign-in"));
    screenshot(client, "sign-in").await;
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    client
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Id("orders"))
        .await
        .unwrap();
}

async fn wait_text(client: &Client, css: &str, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(wanted) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} never showed {wanted:?}; last {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn in_the_browser_an_operator_finds_a_paid_order_and_watches_a_pending_one_turn_paid() {
    if browser_tests_skipped() {
        return;
    }
    let app = console_app().await;
    // One order paid by itself (the sandbox approves), one waiting for its shopper's PIN.
    let mut paid_phone = app.phone("0712300011");
    let paid = paid_phone.buy().await;
    eventually("the first order paid", WAIT, || async {
        app.order(&paid)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let waiting = Msisdn::parse("0712300022").unwrap();
    app.mpesa()
        .set_outcome_for(&waiting, Outcome::interactive());
    let mut pending_phone = app.phone("0712300022");
    let pending = pending_phone.buy().await;

    let (_driver, client) = browser().await;
    sign_in_browser(&client, &app).await;
    // The default shop's header names no shop of DUKA_SHOPS.
    assert_eq!(wait_text(&client, "header strong", "Duka").await, "Duka");
    assert!(client.find(Locator::Css("header #shop")).await.is_err());

    // Search by the last digits of the phone: only the paid order, its phone masked.
    let q = client.find(Locator::Id("q")).await.unwrap();
    q.send_keys("300011").await.unwrap();
    client
        .find(Locator::Id("search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = wait_text(&client, &format!("tr[data-order='{paid}']"), "paid").await;
    assert!(row.contains("2547******11"), "{row}");
    assert!(!row.contains("254712300011"), "{row}");
    assert!(client
        .find(Locator::Css(&format!("tr[data-order='{pending}']")))
        .await
        .is_err());
    screenshot(&client, "orders-search").await;
    // The state filter: "awaiting payment" shows the pending order only.
    client
        .find(Locator::Css("select[name=state]"))
        .await
        .unwrap()
        .select_by_value("awaiting_payment")
        .await
        .unwrap();
    client
        .find(Locator::Id("q"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    client
        .find(Locator::Id("search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, &format!("tr[data-order='{pending}']"), "awaiting").await;
    assert!(client
        .find(Locator::Css(&format!("tr[data-order='{paid}']")))
        .await
        .is_err());

    // The pending order's page, then the shopper types the PIN: the page turns paid by itself.
    client
        .goto(&format!("{}/console/orders/{pending}", app.address))
        .await
        .unwrap();
    wait_text(&client, "#state", "awaiting payment").await;
    client
        .execute("window.__notReloaded = true;", vec![])
        .await
        .unwrap();
    screenshot(&client, "order-pending").await;
    let prompt = eventually("the PIN prompt", WAIT, || async {
        app.mpesa()
            .prompts()
            .into_iter()
            .find(|p| p.phone == waiting)
    })
    .await;
    eventually("Duka to note the push", WAIT, || async {
        app.order(&pending)
            .await
            .and_then(|o| o.attempts[0].checkout_request_id.clone())
    })
    .await;
    app.mpesa()
        .answer_prompt(
            &prompt.checkout_request_id,
            PromptAnswer::Pin(app.mpesa().pin()),
        )
        .unwrap();
    wait_text(&client, "#state", "paid").await;
    wait_text(&client, "#payments", "900").await;
    let same_page = client
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(
        same_page,
        serde_json::json!(true),
        "the page turned paid without a reload"
    );
    screenshot(&client, "order-paid-live").await;

    client.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn in_the_browser_a_tester_buys_on_the_web_phone_and_reads_the_receipt() {
    if browser_tests_skipped() {
        return;
    }
    let app = console_app().await;
    let (_driver, client) = browser().await;
    sign_in_browser(&client, &app).await;
    client
        .goto(&format!("{}/console/phone", app.address))
        .await
        .unwrap();
    client
        .find(Locator::Id("gateway"))
        .await
        .unwrap()
        .select_by_value("hubtel")
        .await
        .unwrap();
    let msisdn = client.find(Locator::Id("msisdn")).await.unwrap();
    msisdn.clear().await.unwrap();
    msisdn.send_keys("0712300033").await.unwrap();
    let call = client.find(Locator::Id("call")).await.unwrap();
    call.click().await.unwrap();
    wait_text(&client, "#screen", "1. Shop").await;
    // Shop, Household, Toilet Paper 10pk, quantity 2, Checkout, Pay with M-Pesa: on the keypad.
    for input in ["1", "2", "3", "2", "1", "1"] {
        let before = client
            .find(Locator::Id("screen"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        client
            .find(Locator::Css(&format!("[data-key='{input}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        call.click().await.unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while client
            .find(Locator::Id("screen"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            == before
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no new screen after {input}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let end = client
        .find(Locator::Id("screen"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(end.contains("Order "), "{end}");
    let number = order_number_in(&format!("END {end}"));
    wait_text(&client, "#prompts", "PIN").await;
    screenshot(&client, "web-phone-pin-prompt").await;
    client
        .find(Locator::Css("#prompts input.pin"))
        .await
        .unwrap()
        .send_keys(&app.mpesa().pin())
        .await
        .unwrap();
    client
        .find(Locator::Css("#prompts button.send-pin"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let receipt = wait_text(&client, "#inbox", &number).await;
    assert!(
        receipt.to_lowercase().contains("paid") || receipt.contains("900"),
        "{receipt}"
    );
    assert_eq!(app.order(&number).await.unwrap().status, OrderStatus::Paid);
    screenshot(&client, "web-phone-receipt").await;
    client.close().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_order_paid_twice_needs_attention_with_what_to_do() {
    let app = console_app().await;
    let mut phone = app.phone("0712300044");
    let number = phone.buy().await;
    eventually("the order paid", WAIT, || async {
        app.order(&number)
            .await
            .filter(|o| o.status == OrderStatus::Paid)
    })
    .await;
    let (cookie, csrf) = sign_in_http(&app).await;
    let attention = |app: &TestApp| {
        let url = format!("{}/console/attention", app.address);
        let cookie = cookie.clone();
        async move {
            no_redirects()
                .get(url)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let before = attention(&app).await;
    assert!(before.contains("Nothing needs attention"), "{before}");
    // The shopper pays the paybill too: the order is overpaid.
    let (status, _) = app
        .post_payment_json(
            "/c2b/confirm",
            &serde_json::json!({
                "TransactionType": "Pay Bill", "TransID": "RKTQDM7W7T", "TransTime": "20261124151206",
                "TransAmount": "900.00", "BusinessShortCode": "174379", "BillRefNumber": number,
                "InvoiceNumber": "", "OrgAccountBalance": "128450.00", "ThirdPartyTransID": "",
                "MSISDN": "2547 ***** 044", "FirstName": "JANE", "MiddleName": "", "LastName": ""
            }),
        )
        .await;
    assert_eq!(status, 200);
    let after = attention(&app).await;
    assert!(
        after.contains(&format!("data-order=\"{number}\"")),
        "{after}"
    );
    assert!(after.contains("overpaid"), "{after}");
    assert!(after.contains("Refund the excess"), "{after}");
    assert!(!after.contains("254712300044"), "phones are masked");
    // The order's JSON is what `duka order --json` prints.
    let json: serde_json::Value = no_redirects()
        .get(format!("{}/console/api/orders/{number}", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["flags"], serde_json::json!(["overpaid"]));
    assert_eq!(json["payments"].as_array().unwrap().len(), 2);
    // The refund button approves a refund once; a second click is refused.
    assert!(
        after.contains(&format!("action=\"/console/orders/{number}/refund\"")),
        "{after}"
    );
    let refund = |csrf: &str| {
        no_redirects()
            .post(format!("{}/console/orders/{number}/refund", app.address))
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, &app.address)
            .form(&[("csrf", csrf), ("amount", "")])
            .send()
    };
    let forged = refund("not-the-token").await.unwrap();
    assert_eq!(forged.status(), 403);
    let first = refund(&csrf).await.unwrap();
    assert_eq!(first.status(), 200);
    let text = first.text().await.unwrap();
    assert!(
        text.contains(&format!("Refund approved for order {number}"))
            && text.contains("RKTQDM7W7T"),
        "{text}"
    );
    let second = refund(&csrf).await.unwrap();
    assert_eq!(second.status(), 409);
    assert!(second.text().await.unwrap().contains("refund refused"));
    eventually("the refund request at M-Pesa", WAIT, || async {
        (app.mpesa().refunds().len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.mpesa().refunds().len(),
        1,
        "one refund request, never two"
    );
    assert_eq!(app.order(&number).await.unwrap().refunds.len(), 1);
    // The catalog page: products as loaded and `duka check`'s verdict on the menus folder.
    let catalog = no_redirects()
        .get(format!("{}/console/catalog", app.address))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(catalog.contains("menus and catalog are valid"), "{catalog}");
    assert!(catalog.contains("Toilet Paper 10pk"), "{catalog}");
    assert!(
        catalog.contains("flowchart") || catalog.contains("graph"),
        "{catalog}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_funnel_counts_who_reached_and_who_ended_on_each_screen() {
    let app = console_app().await;
    // Two shoppers see the main menu; one goes on to the shop, the other stops there.
    let mut stays = app.phone("0712300055");
    stays.dial().await;
    let mut goes = app.phone("0712300066");
    goes.dial().await;
    goes.press("1").await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("duka_funnel_reached_total{screen=\"main\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("duka_funnel_left_total{screen=\"main\"} 1"),
        "{metrics}"
    );
    let (cookie, _) = sign_in_http(&app).await;
    // The node adds its counts to the store every 5 s.
    let page = eventually("the funnel in the store", WAIT, || async {
        let page = no_redirects()
            .get(format!("{}/console/funnel", app.address))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.contains("data-screen=\"main\"").then_some(page)
    })
    .await;
    let main_row = page
        .split("data-screen=\"main\"")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap()
        .to_owned();
    assert!(
        main_row.contains("<td class=\"reached\">2</td>"),
        "{main_row}"
    );
    assert!(
        main_row.contains("<td class=\"ended\">1</td>"),
        "{main_row}"
    );
    assert!(page.contains("<svg id=\"funnel-chart\""), "{page}");
    app.stop().await;
}

#[tokio::test]
async fn in_the_browser_a_second_shops_console_lists_its_own_orders_under_its_mount() {
    if browser_tests_skipped() {
        return;
    }
    // Arrange: the default shop and Mama Mboga (`DUKA_SHOPS`), one order in each.
    let app = TestApp::spawn_with(TestOptions {
        env: [
            vec![("DUKA_CONSOLE_PASSWORD_HASH", password_hash())],
            crate::helpers::mboga_shop_env(),
        ]
        .concat(),
        ..TestOptions::default()
    })
    .await;
    let duka_order = app.phone("0712300041").buy().await;
    let mut greens = app.phone("0712300042");
    greens.service_code = "*384*13#".into();
    greens.dial().await;
    for input in ["1", "1", "1", "2", "1"] {
        greens.press(input).await;
    }
    let mboga_order = order_number_in(&greens.press("1").await);
    assert!(mboga_order.starts_with('M'), "{mboga_order}");

    // Act: sign in to the second shop's console.
    let (_driver, client) = browser().await;
    sign_in_browser_at(&client, &app.address, "/shops/mboga").await;

    // Assert: its own order only, and every link stays under its mount.
    wait_text(
        &client,
        &format!("tr[data-order='{mboga_order}']"),
        "KES 60",
    )
    .await;
    assert!(client
        .find(Locator::Css(&format!("tr[data-order='{duka_order}']")))
        .await
        .is_err());
    client
        .find(Locator::Css(&format!("tr[data-order='{mboga_order}'] a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let report = wait_text(&client, "#report", &mboga_order).await;
    assert!(report.contains("Sukuma Wiki bunch"), "{report}");
    assert_eq!(
        client.current_url().await.unwrap().path(),
        format!("/shops/mboga/console/orders/{mboga_order}")
    );
    // The header and the tab name the shop, so an operator of several knows which one this is.
    assert_eq!(wait_text(&client, "header #shop", "mboga").await, "mboga");
    let title = client.title().await.unwrap();
    assert!(title.contains("mboga"), "{title}");
    screenshot(&client, "second-shop-order").await;
    // The default shop's console is a separate sign-in: this session is the mount's only.
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/console/sign-in"
    );
    app.stop().await;
}
