//! The fixtures in `fixtures/` are executable specs: every one replays green, and a session
//! recorded through HTTP replays green too, until a menu text changes under it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use duka::fixtures::replay::{replay_paths, ReplayOptions};

use crate::helpers::{eventually, StoreKind, TestApp, TestOptions};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn options(menus: &Path) -> ReplayOptions {
    ReplayOptions {
        menus_dir: menus.to_path_buf(),
        wait: Duration::from_secs(20),
        ..ReplayOptions::default()
    }
}

/// A fresh folder under the system's temporary folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "duka-{name}-{}-{}",
        std::process::id(),
        duka::testing::random_prefix()
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

#[tokio::test]
async fn every_shipped_fixture_replays_green() {
    let fixtures = manifest_dir().join("fixtures");
    let shipped = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert!(shipped >= 20, "only {shipped} fixtures in fixtures/");

    let report = replay_paths(&[fixtures], &options(&manifest_dir().join("menus")))
        .await
        .expect("the fixtures folder can be read");

    assert_eq!(
        report.failed(),
        0,
        "failing fixtures:\n{}",
        report.render_failures()
    );
    assert_eq!(report.passed(), shipped, "{}", report.render());
}

#[tokio::test]
async fn a_recorded_session_replays_green_and_a_menu_change_fails_it_with_a_diff() {
    // Arrange: a server recording into a fresh folder.
    let record_dir = temp_dir("recorded");
    let app = TestApp::spawn_with(TestOptions {
        store: StoreKind::Memory,
        env: vec![("DUKA_RECORD_DIR", record_dir.display().to_string())],
        ..TestOptions::default()
    })
    .await;

    // Act: one shopper buys and pays (the sandbox's phone approves by itself); one drops off
    // with a full cart (Africa's Talking says so); another is still in the shop when the
    // server stops.
    let mut buyer = app.phone("0712345678");
    buyer.dial().await;
    for input in ["1", "2", "3", "2", "1"] {
        buyer.press(input).await;
    }
    let placed = buyer.press("1").await;
    assert!(placed.starts_with("END Order "), "{placed}");
    let sms = app.sms();
    eventually("the receipt SMS", Duration::from_secs(20), || async {
        sms.messages()
            .iter()
            .any(|m| m.text.contains(" paid, KES 900"))
            .then_some(())
    })
    .await;
    let mut leaver = app.phone("0733000222");
    leaver.dial().await;
    for input in ["1", "1", "2", "3"] {
        leaver.press(input).await;
    }
    assert_eq!(leaver.session_ends("Incomplete").await, 200);
    let mut browser = app.phone("0722000111");
    browser.dial().await;
    browser.press("1").await;
    app.stop().await;

    // Assert: three fixtures, scrubbed, that replay green.
    let files: Vec<PathBuf> = std::fs::read_dir(&record_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let paid = texts
        .iter()
        .find(|t| t.contains("mpesa = \"approve\""))
        .expect("the buyer's session with its payment");
    assert!(paid.contains("Account {order}."), "{paid}");
    assert!(paid.contains("M-Pesa ref {receipt}"), "{paid}");
    let dropped = texts
        .iter()
        .find(|t| t.contains("end = \"incomplete\""))
        .expect("the session that ended by notification");
    assert!(
        dropped.contains("sms = \"Duka: you still have 3 x Sugar 1kg in your cart"),
        "{dropped}"
    );
    for text in &texts {
        assert!(
            !text.contains("712345678")
                && !text.contains("722000111")
                && !text.contains("733000222"),
            "{text}"
        );
        assert!(
            !text.contains("XXX 678"),
            "the masked number is replaced too: {text}"
        );
    }
    let report = replay_paths(
        std::slice::from_ref(&record_dir),
        &options(&manifest_dir().join("menus")),
    )
    .await
    .unwrap();
    assert_eq!(report.passed(), 3, "{}", report.render());

    // A menu text changes: the same recordings now fail, with the change as a diff.
    let menus = temp_dir("menus");
    duka::testing::copy_dir(&manifest_dir().join("menus"), &menus).unwrap();
    let en = menus.join("text/en.toml");
    let text = std::fs::read_to_string(&en).unwrap();
    std::fs::write(&en, text.replacen("shop = \"Shop\"", "shop = \"Buy\"", 1)).unwrap();

    let report = replay_paths(std::slice::from_ref(&record_dir), &options(&menus))
        .await
        .unwrap();

    assert_eq!(report.failed(), 3, "{}", report.render());
    let rendered = report.render();
    assert!(rendered.contains(": step 1 (line "), "{rendered}");
    assert!(rendered.contains("sent: dial"), "{rendered}");
    assert!(rendered.contains("-1. Shop"), "{rendered}");
    assert!(rendered.contains("+1. Buy"), "{rendered}");
    assert!(rendered.ends_with("0 passed, 3 failed\n"), "{rendered}");
    let _ = std::fs::remove_dir_all(&record_dir);
    let _ = std::fs::remove_dir_all(&menus);
}

#[tokio::test]
async fn a_malformed_fixture_fails_naming_its_file_and_line() {
    let dir = temp_dir("malformed");
    let file = dir.join("typo.toml");
    std::fs::write(
        &file,
        "phone = \"254700000001\"\n\n[[steps]]\ndial = \"\"\nexpext = \"CON Welcome to Duka\"\n",
    )
    .unwrap();

    let report = replay_paths(
        std::slice::from_ref(&dir),
        &options(&manifest_dir().join("menus")),
    )
    .await
    .unwrap();

    let rendered = report.render();
    assert_eq!(report.failed(), 1, "{rendered}");
    assert!(
        rendered.contains("typo.toml:5: unknown field `expext`"),
        "{rendered}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_per_hop_gateway_session_is_recorded_as_its_gateway_and_filters_apply() {
    use duka::gateway::phone::Phone;
    use duka::msisdn::Msisdn;

    let record_dir = temp_dir("recorded-hubtel");
    let app = TestApp::spawn_with(TestOptions {
        store: StoreKind::Memory,
        env: vec![
            ("DUKA_RECORD_DIR", record_dir.display().to_string()),
            // Only this shopper is recorded (`--record-phone`).
            ("DUKA_RECORD_PHONE", "+254712345678".into()),
        ],
        ..TestOptions::default()
    })
    .await;
    let wanted = Msisdn::parse("0712345678").unwrap();
    let hubtel = duka::gateway::by_name("hubtel").unwrap();
    let phone = |msisdn: Msisdn| {
        Phone::new(
            &app.address,
            hubtel,
            msisdn,
            "*384*12#",
            "63902",
            Duration::from_secs(10),
        )
    };
    let mut shopper = phone(wanted);
    shopper
        .dial("hubtel-rec-1", vec!["1".into()])
        .await
        .unwrap();
    for input in ["2", "3", "2"] {
        shopper.press(input).await.unwrap();
    }
    shopper.resend().await.unwrap();
    assert!(shopper.hang_up(true).await.unwrap());
    let mut other = phone(Msisdn::parse("0722000111").unwrap());
    other.dial("hubtel-rec-2", vec![]).await.unwrap();
    other.press("1").await.unwrap();
    app.stop().await;

    let files: Vec<PathBuf> = std::fs::read_dir(&record_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "only the filtered phone: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("gateway = \"hubtel\""), "{text}");
    assert!(text.contains("dial = \"1\""), "the deep dial: {text}");
    assert!(text.contains("resend = true"), "the retransmission: {text}");
    let report = replay_paths(
        std::slice::from_ref(&record_dir),
        &options(&manifest_dir().join("menus")),
    )
    .await
    .unwrap();
    assert_eq!(report.passed(), 1, "{}", report.render_failures());
    let _ = std::fs::remove_dir_all(&record_dir);
}
