//! The demo as a newcomer runs it: `duka serve` with no configuration in one terminal, then
//! `duka dial --url` and `duka order` in others. Every process here is the built binary.
//!
//! The server's built-in sandboxes are driven over its own port (`/sandbox/…`, loopback only):
//! the phone sees and answers its M-Pesa prompt, pays at the paybill and reads its SMS inbox;
//! `duka order` reads the order from the server's operator endpoint with the token the demo
//! wrote to its token file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

/// A `duka serve` demo process on a free port, with its own token file.
struct Demo {
    url: String,
    dir: PathBuf,
    _server: Child,
}

impl Demo {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("duka-demo-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = duka::testing::free_port().unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let server = Command::new(env!("CARGO_BIN_EXE_duka"))
            .arg("serve")
            .env_clear()
            .env("DUKA_LISTEN", format!("127.0.0.1:{port}"))
            .env("DUKA_MENUS", concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("duka serve starts");
        let demo = Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            _server: server,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while client
            .get(format!("{}/readyz", demo.url))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "duka serve did not become ready: {}",
                demo.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        demo
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join(".duka/operator-token"))
            .expect("the demo wrote its operator token where `duka order` looks")
            .trim()
            .to_owned()
    }

    /// Runs `duka order` in the demo's folder, as a newcomer would: no REDIS_URL, no token given.
    async fn order(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_duka"))
            .arg("order")
            .args(args)
            .args(["--url", &self.url])
            .env_clear()
            .current_dir(&self.dir)
            .output()
            .await
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn order_json(&self, number: &str) -> Value {
        let (ok, stdout, stderr) = self.order(&[number, "--json"]).await;
        assert!(ok, "duka order --json failed: {stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// Waits until `duka order --json` shows the order in `state`.
    async fn wait_for_state(&self, number: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let report = self.order_json(number).await;
            if report["state"] == state {
                return report;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {number} never became {state}: {report:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `duka dial --url` driven line by line, reading its screens as they come.
struct Dial {
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    seen: String,
    _child: Child,
}

impl Dial {
    fn start(url: &str, phone: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_duka"))
            .args(["dial", "--url", url, "--phone", phone, "--wait", "20"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("duka dial starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin,
            lines,
            seen: String::new(),
            _child: child,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Reads until a line contains `text`; returns that line.
    async fn expect(&mut self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(text) {
                        return line;
                    }
                }
                _ => panic!("the phone never showed {text:?}; it showed:\n{}", self.seen),
            }
        }
    }

    /// Shop, Household, Toilet Paper 10pk x2, Checkout, Pay with M-Pesa: KES 900. The order
    /// number from the END screen.
    async fn buy_toilet_paper(&mut self) -> String {
        self.expect("Welcome to Duka").await;
        for input in ["1", "2", "3", "2", "1", "1"] {
            self.send(input).await;
        }
        let end = self.expect("Enter your M-Pesa PIN on the prompt").await;
        let start = end.find("Order ").expect("the END screen names the order") + 6;
        end[start..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect()
    }
}

#[tokio::test]
async fn dial_url_answers_the_demos_prompt_and_shows_the_receipt_that_duka_order_shows_too() {
    // Arrange
    let demo = Demo::start().await;
    let mut phone = Dial::start(&demo.url, "0712345678");
    let intro = phone.expect("Dialling").await;
    assert!(intro.contains("the M-Pesa PIN is 1234"), "{intro}");

    // Act
    let order = phone.buy_toilet_paper().await;
    let prompt = phone.expect("[M-PESA]").await;
    phone.send("1234").await;

    // Assert
    assert_eq!(
        prompt,
        format!(
            "[M-PESA] Do you want to pay KES 900 to 174379 account no. {order}? Enter M-PESA PIN:"
        )
    );
    phone.expect("[M-PESA] paid").await;
    let receipt = phone.expect("[SMS from DUKA]").await;
    assert!(
        receipt.starts_with(&format!(
            "[SMS from DUKA] Duka: order {order} paid, KES 900."
        )),
        "{receipt}"
    );

    let report = demo.wait_for_state(&order, "paid").await;
    assert_eq!(report["payments"][0]["source"], "stk");
    let payer = report["attempts"][0]["payer"].as_str().unwrap();
    assert_eq!(payer, "2547******78", "the payer is masked like msisdn");
    assert_eq!(report["msisdn"], payer);
    let (ok, text, stderr) = demo.order(&[&order]).await;
    assert!(ok, "{stderr}");
    assert!(
        text.starts_with(&format!("Order {order}  paid  KES 900\n")),
        "{text}"
    );
    assert!(
        text.contains("  #1 to 2547******78  succeeded  result 0"),
        "{text}"
    );
    assert!(text.contains("via stk"), "{text}");
    assert!(
        text.contains("receipt  sent")
            && text.contains(&format!("    text: Duka: order {order} paid, KES 900.")),
        "the text names the receipt and shows what it says: {text}"
    );
    assert!(!text.contains("254712345678"), "{text}");
}

#[tokio::test]
async fn a_cancelled_push_leaves_the_order_awaiting_payment_and_the_paybill_pays_it() {
    // Arrange: a cancelled prompt, then the shopper pays at the paybill instead.
    let demo = Demo::start().await;
    let mut phone = Dial::start(&demo.url, "0712345678");
    let order = phone.buy_toilet_paper().await;
    phone.expect("Enter M-PESA PIN:").await;
    phone.send("c").await;
    phone.expect("[M-PESA] cancelled (1032)").await;
    let notice = phone.expect("[SMS from DUKA]").await;
    assert!(notice.contains(&order), "{notice}");
    let text = demo.order(&[&order]).await.1;
    assert!(
        text.starts_with(&format!("Order {order}  failed  KES 900\n")),
        "{text}"
    );
    assert!(text.contains("payment failed  sent"), "{text}");

    // Act: a wrong amount first (refused by validation), then the right one.
    phone.send(&format!("pay {order} 100")).await;
    let refused = phone.expect("[M-PESA] paybill payment").await;
    phone
        .send(&format!("pay {} 900", order.to_lowercase()))
        .await;
    let paid = phone.expect("[M-PESA] paybill payment of KES 900").await;

    // Assert
    assert!(refused.ends_with("refused (C2B00013)"), "{refused}");
    assert!(paid.contains(": confirmed ("), "{paid}");
    let receipt = phone.expect(&format!("Duka: order {order} paid")).await;
    assert!(receipt.starts_with("[SMS from DUKA]"), "{receipt}");
    let report = demo.wait_for_state(&order, "paid").await;
    assert_eq!(report["payments"].as_array().unwrap().len(), 1);
    assert_eq!(report["payments"][0]["source"], "paybill");
    assert_eq!(report["payments"][0]["amount"], "900.00");

    // `duka refund` asks the demo too: one payment of the right amount has nothing to refund.
    let refund = Command::new(env!("CARGO_BIN_EXE_duka"))
        .args(["refund", &order, "--amount", "100", "--url", &demo.url])
        .env_clear()
        .current_dir(&demo.dir)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refund.stderr);
    assert!(!refund.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refund refused: order {order} has no payment to refund"
        )),
        "{stderr}"
    );
    assert!(demo.order_json(&order).await["refunds"]
        .as_array()
        .unwrap()
        .is_empty());

    // `duka mpesa find` asks the demo's M-Pesa about the receipt: the order already has it.
    let receipt = report["payments"][0]["receipt"]
        .as_str()
        .unwrap()
        .to_owned();
    let find = |receipt: String| {
        let dir = demo.dir.clone();
        let url = demo.url.clone();
        async move {
            Command::new(env!("CARGO_BIN_EXE_duka"))
                .args(["mpesa", "find", &receipt, "--url", &url])
                .env_clear()
                .current_dir(dir)
                .output()
                .await
                .unwrap()
        }
    };
    let found = find(receipt.clone()).await;
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert!(
        found.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert!(
        stdout.starts_with(&format!("Payment {receipt}: applied\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("KES 900 from 2547******78, Completed (Pay Bill)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("order {order} already held this payment")),
        "{stdout}"
    );
    let missing = find("QQQ0000000".to_owned()).await;
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert!(!missing.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("Payment QQQ0000000: not found\n"),
        "{stdout}"
    );
    assert_eq!(
        demo.order_json(&order).await["payments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_operator_endpoint_wants_the_demos_token() {
    let demo = Demo::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/operator/orders/ZZZZZZ", demo.url);

    let without = client.get(&url).send().await.unwrap().status();
    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap()
        .status();
    let right = client
        .get(&url)
        .bearer_auth(demo.token())
        .send()
        .await
        .unwrap();

    assert_eq!(without, 401);
    assert_eq!(wrong, 401);
    assert_eq!(right.status(), 404);
    assert_eq!(
        right.json::<Value>().await.unwrap(),
        json!({ "error": "no order ZZZZZZ" })
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(demo.dir.join(".duka/operator-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, _, stderr) = demo.order(&["ZZZZZZ"]).await;
    assert!(!ok);
    assert!(stderr.contains("no order ZZZZZZ"), "{stderr}");
}

#[tokio::test]
async fn duka_order_without_a_running_demo_says_what_to_do() {
    let dir = std::env::temp_dir().join(format!("duka-no-demo-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_duka"))
        .args(["order", "D7K2Q9"])
        .env_clear()
        .current_dir(&dir)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("start `duka serve` in this folder"),
        "{stderr}"
    );
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
}
