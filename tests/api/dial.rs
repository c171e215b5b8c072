//! `duka dial` driven the way a script drives it: the built binary, inputs on stdin, the phone's
//! screens, prompt and SMS on stdout.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::helpers::{StoreKind, TestApp, TestOptions};

/// Runs `duka dial` in process with these lines as input; returns stdout.
async fn dial(lines: &[&str]) -> String {
    dial_with(&[], lines).await
}

/// Runs `duka dial` with extra arguments and these lines as input; returns stdout.
async fn dial_with(args: &[&str], lines: &[&str]) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_duka"))
        .arg("dial")
        .args(["--phone", "0700000001", "--wait", "20"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("DUKA_MENUS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the duka binary runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("duka dial ends at the end of its input")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "duka dial failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The order number on the checkout END screen.
fn order_number(stdout: &str) -> String {
    let start = stdout
        .find("\nOrder ")
        .expect("the END screen names the order")
        + 7;
    stdout[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[tokio::test]
async fn a_scripted_phone_buys_approves_the_prompt_and_shows_the_receipt() {
    let stdout = dial(&["1", "2", "3", "2", "1", "1", "1234"]).await;

    assert!(
        stdout.contains("Welcome to Duka\n1. Shop\n2. My cart"),
        "{stdout}"
    );
    assert!(
        stdout.contains("> 3\nToilet Paper 10pk - KES 450 each"),
        "{stdout}"
    );
    let order = order_number(&stdout);
    assert!(
        stdout.contains(&format!(
            "Order {order}. Enter your M-Pesa PIN on the prompt that follows."
        )),
        "{stdout}"
    );
    assert!(stdout.contains("--- session ended ---"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "[M-PESA] Do you want to pay KES 900 to 174379 account no. {order}? Enter M-PESA PIN:\n> 1234\n[M-PESA] paid"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "[SMS from DUKA] Duka: order {order} paid, KES 900."
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_wrong_pin_fails_and_the_notice_arrives() {
    let stdout = dial(&["1", "1", "2", "1", "1", "1", "0000"]).await;

    let order = order_number(&stdout);
    assert!(stdout.contains("[M-PESA] wrong PIN (2001)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "[SMS from DUKA] Duka: payment for order {order} (KES 190) failed: wrong PIN."
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_end_of_input_hangs_up_mid_session() {
    let stdout = dial(&["1"]).await;

    assert!(stdout.contains("Choose a category"), "{stdout}");
    assert!(stdout.trim_end().ends_with("(hung up)"), "{stdout}");
}

#[tokio::test]
async fn against_a_running_server_the_phone_answers_its_sandboxs_prompt() {
    // Arrange: a server with the built-in sandboxes, which answer pushes by themselves until
    // the phone asks them to wait for its PIN.
    let app = TestApp::spawn_with(TestOptions {
        store: StoreKind::Memory,
        ..TestOptions::default()
    })
    .await;

    // Act
    let stdout = dial_with(
        &["--url", &app.address],
        &["1", "4", "1", "1", "1", "1", "c"],
    )
    .await;

    // Assert
    assert!(stdout.contains("the M-Pesa PIN is 1234"), "{stdout}");
    let order = order_number(&stdout);
    assert!(
        stdout.contains(&format!(
            "[M-PESA] Do you want to pay KES 70 to 174379 account no. {order}? Enter M-PESA PIN:\n> c\n[M-PESA] cancelled (1032)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "[SMS from DUKA] Duka: payment for order {order} (KES 70) failed"
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn against_a_server_without_sandboxes_the_phone_says_it_shows_screens_only() {
    // Arrange: a stand-in for a production server: USSD only, no `/sandbox/…` routes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/ussd/africastalking",
        axum::routing::post(|| async { "END Thank you for shopping." }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Act
    let stdout = dial_with(&["--url", &url], &[]).await;

    // Assert
    assert!(
        stdout.contains("M-Pesa prompts and SMS can't be shown here: it has no built-in sandboxes (a production server?). They go to the real phone."),
        "{stdout}"
    );
    assert!(stdout.contains("Thank you for shopping."), "{stdout}");
}

#[tokio::test]
async fn the_phone_dials_through_another_gateway() {
    let stdout = dial_with(
        &["--gateway", "hubtel"],
        &["1", "2", "3", "2", "1", "1", "1234"],
    )
    .await;
    assert!(
        stdout.contains("--- dialling *384*12# via Hubtel ---"),
        "{stdout}"
    );
    let order = order_number(&stdout);
    assert!(
        stdout.contains(&format!(
            "[SMS from DUKA] Duka: order {order} paid, KES 900."
        )),
        "{stdout}"
    );
}
