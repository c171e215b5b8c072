//! `duka dial`: a terminal phone, to walk the menus the way a handset shows them.
//!
//! It dials on start, prints each screen, and reads one input per line from stdin, sending each
//! hop the way the chosen gateway does (`--gateway`; Africa's Talking's cumulative `text` by
//! default, through the same adapter code the server parses with). By default it talks to a Duka it starts in
//! the same process (embedded store, built-in sandboxes), whose M-Pesa sandbox lets a person
//! answer the PIN prompt: after an `END` the phone shows the prompt, the next line is the PIN
//! (the sandbox's `1234` pays, any other PIN is wrong, `c` cancels, an empty line lets it time
//! out), and the SMS that arrive are shown as they come.
//!
//! With `--url` it dials a running server instead. A demo server (`duka serve` with its built-in
//! sandboxes) lets the phone drive them over its `/sandbox/…` routes ([`remote`]): the phone asks
//! it to hold its pushes for a PIN, then shows and answers the prompts and reads its SMS inbox
//! there. A production server has no such routes; the phone then shows the screens only and
//! says so.
//!
//! Between sessions, `pay ORDER AMOUNT` pays an order at the paybill, as a shopper typing it
//! into the M-Pesa menu would: the sandbox sends Duka the validation and confirmation Safaricom
//! sends.
//!
//! At the end of its input the phone hangs up (sending the end-of-session notification a real
//! drop-off would cause) and exits with success, so a script can drive it: the tests do.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::config::Settings;
use crate::fixtures::replay::{poll_until_async, push_noted, wait_for_any_prompt};
use crate::msisdn::Msisdn;
use crate::sandbox::mpesa::{MpesaSandbox, Outcome, PayBill, PayBillResult, PromptAnswer};
use crate::sandbox::sms::SmsSandbox;
use crate::shop::Shop;
use crate::startup::{Application, BuildOptions};

mod remote;

use remote::{RemoteDemo, Sms};

/// Arguments of `duka dial`.
#[derive(Debug, clap::Args)]
pub struct DialArgs {
    /// The shortcode to dial (the USSD `serviceCode`).
    #[arg(default_value = "*384*12#")]
    pub shortcode: Option<String>,
    /// Dial a running server at this base URL (e.g. http://127.0.0.1:8080) instead of an
    /// in-process one.
    #[arg(long)]
    pub url: Option<String>,
    /// The phone number to dial from.
    #[arg(long, default_value = "0700000001")]
    pub phone: String,
    /// The gateway to dial through (africastalking, hubtel, emergent, arkesel, nalo, beem,
    /// safaricom, airtel, infobip, cellulant).
    #[arg(long, default_value = "africastalking")]
    pub gateway: String,
    /// The MCC+MNC the gateway reports for the phone's network (63902 Safaricom, 63903 Airtel
    /// Kenya).
    #[arg(long, default_value = "63902")]
    pub network_code: String,
    /// How long to wait for the M-Pesa prompt after a session ends, and for an SMS after it is
    /// answered, in seconds.
    #[arg(long, default_value_t = 10)]
    pub wait: u64,
    /// In process: how long the PIN prompt waits for an answer before timing out, in seconds.
    #[arg(long, default_value_t = 60)]
    pub prompt_timeout: u64,
    /// In process: the menus folder.
    #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
    pub menus: PathBuf,
}

/// Runs the terminal phone until its input ends; returns the process exit code.
///
/// # Errors
/// The in-process Duka could not start, or the phone number is not a Kenyan mobile number.
pub async fn run(args: DialArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init("compact");
    }
    let phone = Msisdn::parse(&args.phone).context("--phone is not a mobile number")?;
    let gateway = crate::gateway::by_name(&args.gateway).with_context(|| {
        format!(
            "--gateway {:?} is not one Duka speaks ({})",
            args.gateway,
            crate::gateway::names()
        )
    })?;
    let shortcode = args
        .shortcode
        .clone()
        .unwrap_or_else(|| "*384*12#".to_owned());
    let wait = Duration::from_secs(args.wait.max(1));

    let http = reqwest::Client::builder()
        .timeout(wait + Duration::from_secs(5))
        .build()?;
    let (base_url, backend, _server) = match &args.url {
        Some(url) => {
            let base = url.trim().trim_end_matches('/').to_owned();
            let demo = RemoteDemo::probe(&http, &base, &phone).await;
            (base, Backend::Remote(demo), None)
        }
        None => {
            let (duka, server) = start_in_process(&args).await?;
            (
                duka.base_url.clone(),
                Backend::InProcess(duka),
                Some(server),
            )
        }
    };

    let line = crate::gateway::phone::Phone::new(
        &base_url,
        gateway,
        phone.clone(),
        &shortcode,
        &args.network_code,
        wait + Duration::from_secs(5),
    );
    let mut phone = Phone {
        base_url,
        backend,
        msisdn: phone,
        shortcode,
        wait,
        line,
        in_session: false,
        sessions: 0,
        sms_shown: 0,
        echo: !std::io::stdin().is_terminal(),
        input: BufReader::new(tokio::io::stdin()).lines(),
    };
    phone.intro();
    phone.dial(String::new()).await?;
    loop {
        phone.show_new_sms().await;
        let in_session = phone.in_session;
        if !in_session {
            say("(session over: Enter dials again, inputs such as 1*2 make a deep dial, `pay ORDER AMOUNT` pays at the paybill; end of input quits)");
        }
        let Some(line) = phone.read().await? else {
            if in_session {
                phone.hang_up().await;
            }
            break;
        };
        if in_session {
            phone.press(line.trim()).await?;
        } else if let Some(command) = PayCommand::parse(&line) {
            match command {
                Ok(pay) => phone.pay_bill(&pay).await,
                Err(usage) => say(usage),
            }
        } else {
            phone.dial(line.trim().to_owned()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Duka the phone talks to.
enum Backend {
    InProcess(InProcess),
    /// A running server: its demo sandboxes, or why it has none.
    Remote(Result<RemoteDemo, String>),
}

/// `pay ORDER AMOUNT`: a paybill payment typed between sessions.
#[derive(Debug, PartialEq, Eq)]
struct PayCommand {
    account: String,
    amount: String,
}

impl PayCommand {
    const USAGE: &'static str = "(pay by paybill: `pay ORDER AMOUNT`, e.g. `pay D7K2Q9 450`)";

    /// `None` when the line is not a `pay` command; `Err` with the usage when it is malformed.
    fn parse(line: &str) -> Option<Result<Self, &'static str>> {
        let mut words = line.split_whitespace();
        if !words.next()?.eq_ignore_ascii_case("pay") {
            return None;
        }
        Some(match (words.next(), words.next(), words.next()) {
            (Some(account), Some(amount), None) => Ok(Self {
                account: account.to_owned(),
                amount: amount.to_owned(),
            }),
            _ => Err(Self::USAGE),
        })
    }
}

struct InProcess {
    base_url: String,
    shop: Arc<Shop>,
    mpesa: Arc<MpesaSandbox>,
    sms: Arc<SmsSandbox>,
}

async fn start_in_process(
    args: &DialArgs,
) -> anyhow::Result<(InProcess, tokio::task::JoinHandle<()>)> {
    let env: HashMap<&str, String> = HashMap::from([
        ("DUKA_LISTEN", "127.0.0.1:0".to_owned()),
        ("DUKA_MENUS", args.menus.display().to_string()),
    ]);
    let settings = Settings::from_lookup(|name| env.get(name).cloned())?;
    let app = Application::build(settings, BuildOptions::default()).await?;
    let sandboxes = app.sandboxes();
    let (Some(mpesa), Some(sms)) = (sandboxes.mpesa, sandboxes.sms) else {
        anyhow::bail!("the built-in sandboxes did not start");
    };
    mpesa.set_default_outcome(Outcome::interactive());
    let prompt_timeout = Duration::from_secs(args.prompt_timeout.max(1));
    mpesa.configure(|config| config.prompt_timeout = prompt_timeout);
    let duka = InProcess {
        base_url: format!("http://{}", app.local_addr()),
        shop: app.state().shop.clone(),
        mpesa,
        sms,
    };
    // The server runs until the process exits.
    let server = tokio::spawn(async move {
        let _ = app.run_until(std::future::pending()).await;
    });
    Ok((duka, server))
}

struct Phone {
    base_url: String,
    backend: Backend,
    msisdn: Msisdn,
    shortcode: String,
    wait: Duration,
    /// The phone's line through the chosen gateway.
    line: crate::gateway::phone::Phone,
    /// Whether a USSD session is open (none after an `END`).
    in_session: bool,
    sessions: u32,
    /// SMS of the inbox already shown.
    sms_shown: usize,
    /// Print each input read, so a transcript of piped input reads like a dialogue.
    echo: bool,
    input: tokio::io::Lines<BufReader<tokio::io::Stdin>>,
}

/// Prints one line. A closed stdout (the phone piped into `head`) is not worth a panic: the
/// phone goes on until its input ends.
fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

impl Phone {
    fn intro(&self) {
        let local = if self.msisdn.is_kenyan() {
            format!("0{}", &self.msisdn.digits()[3..])
        } else {
            self.msisdn.e164()
        };
        match &self.backend {
            Backend::InProcess(duka) => say(&format!(
                "Dialling {} from {local} (an in-process Duka with the built-in sandboxes; the M-Pesa PIN is {}).",
                self.shortcode,
                duka.mpesa.pin()
            )),
            Backend::Remote(Ok(demo)) => say(&format!(
                "Dialling {} from {local} at {} (a demo: its sandboxes show this phone's M-Pesa prompts and SMS here; the M-Pesa PIN is {}).",
                self.shortcode, self.base_url, demo.pin
            )),
            Backend::Remote(Err(why)) => {
                say(&format!("Dialling {} from {local} at {}.", self.shortcode, self.base_url));
                say(&format!("M-Pesa prompts and SMS can't be shown here: {why}. They go to the real phone."));
            }
        }
    }

    /// Reads one line; `None` at the end of the input.
    async fn read(&mut self) -> anyhow::Result<Option<String>> {
        if !self.echo {
            let mut stdout = std::io::stdout();
            let _ = write!(stdout, "> ");
            let _ = stdout.flush();
        }
        let line = self
            .input
            .next_line()
            .await
            .context("could not read the input")?;
        if let (true, Some(line)) = (self.echo, &line) {
            say(&format!("> {line}"));
        }
        Ok(line)
    }

    async fn dial(&mut self, inputs: String) -> anyhow::Result<()> {
        self.sessions += 1;
        let id = format!(
            "dial-{}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis(),
            self.sessions
        );
        let dial = inputs
            .split('*')
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        say(&format!(
            "--- dialling {} via {} ---",
            self.shortcode,
            self.line.gateway().title()
        ));
        self.in_session = true;
        let reply = self.line.dial(&id, dial).await;
        self.show(reply).await;
        Ok(())
    }

    async fn press(&mut self, input: &str) -> anyhow::Result<()> {
        let reply = self.line.press(input).await;
        self.show(reply).await;
        Ok(())
    }

    async fn show(&mut self, reply: Result<crate::menu::Reply, crate::gateway::phone::PhoneError>) {
        match reply {
            Ok(reply) => {
                say(&reply.text);
                if reply.end {
                    say("--- session ended ---");
                    self.in_session = false;
                    self.after_end().await;
                }
            }
            Err(e) => {
                say(&format!(
                    "({e}: the phone shows an error and the session ends)"
                ));
                self.in_session = false;
            }
        }
    }

    /// Hangs up mid-session, as a shopper walking away: gateways that report it tell Duka.
    async fn hang_up(&mut self) {
        if !std::mem::take(&mut self.in_session) {
            return;
        }
        say("(hung up)");
        let _ = self.line.hang_up(true).await;
    }

    /// After an `END`: checkout and "Pay again" send an M-Pesa prompt. Shows it and reads the
    /// PIN from the next line.
    async fn after_end(&mut self) {
        match &self.backend {
            Backend::InProcess(duka) => {
                let (shop, mpesa) = (duka.shop.clone(), duka.mpesa.clone());
                self.local_prompt(&shop, &mpesa).await;
            }
            Backend::Remote(Ok(_)) => self.remote_prompt().await,
            Backend::Remote(Err(_)) => {}
        }
    }

    /// Shows and answers the in-process sandbox's prompt.
    async fn local_prompt(&mut self, shop: &Shop, mpesa: &MpesaSandbox) {
        let deadline = Instant::now() + self.wait;
        let Some(prompt) = wait_for_any_prompt(mpesa, deadline).await else {
            return;
        };
        say(&format!("[M-PESA] {}", prompt.text()));
        let Some(answer) = self.read_pin().await else {
            say("(no answer: the prompt stays on the phone until it times out)");
            return;
        };
        let result = match answer {
            None => {
                say("(no answer: waiting for the prompt to time out)");
                let within = self.wait + mpesa.config().prompt_timeout;
                mpesa
                    .wait_for_result(&prompt.checkout_request_id, within)
                    .await
            }
            Some(answer) => {
                // Duka notes its push a moment after the prompt opens; a PIN typed faster
                // than that would reach it before it knows the push.
                let noted_by = Instant::now() + self.wait;
                let _ =
                    poll_until_async(noted_by, || push_noted(shop, &prompt.checkout_request_id))
                        .await;
                mpesa
                    .answer_prompt(&prompt.checkout_request_id, answer)
                    .ok()
            }
        };
        if let Some(code) = result {
            say(&format!("[M-PESA] {}", describe_result(code)));
        }
        self.wait_for_sms().await;
    }

    /// Reads the answer to a prompt: `Some(None)` for an empty line (let it time out), `None`
    /// at the end of the input.
    async fn read_pin(&mut self) -> Option<Option<PromptAnswer>> {
        let line = self.read().await.ok().flatten()?;
        let line = line.trim();
        Some(match line.to_ascii_lowercase().as_str() {
            "" => None,
            "c" | "cancel" => Some(PromptAnswer::Cancel),
            _ => Some(PromptAnswer::Pin(line.to_owned())),
        })
    }

    /// Shows a running demo's prompt for this phone through its sandbox routes, and answers it.
    async fn remote_prompt(&mut self) {
        let Backend::Remote(Ok(demo)) = &self.backend else {
            return;
        };
        let Some(prompt) = demo.wait_for_prompt(Instant::now() + self.wait).await else {
            return;
        };
        say(&format!("[M-PESA] {}", prompt.text));
        let Some(answer) = self.read_pin().await else {
            say("(no answer: the prompt stays on the phone until it times out)");
            return;
        };
        let Backend::Remote(Ok(demo)) = &self.backend else {
            return;
        };
        match answer {
            None => {
                say("(no answer: waiting for the prompt to time out)");
                let deadline = Instant::now() + self.wait + demo.prompt_timeout;
                if demo
                    .wait_until_closed(&prompt.checkout_request_id, deadline)
                    .await
                {
                    say(&format!("[M-PESA] {}", describe_result(1037)));
                }
            }
            Some(answer) => match demo.answer(&prompt.checkout_request_id, answer).await {
                Ok(code) => say(&format!("[M-PESA] {}", describe_result(code))),
                Err(why) => say(&format!("(the sandbox refused the answer: {why})")),
            },
        }
        self.wait_for_sms().await;
    }

    /// `pay ORDER AMOUNT`: a paybill payment from this phone, then the SMS it causes.
    async fn pay_bill(&mut self, pay: &PayCommand) {
        let result = match &self.backend {
            Backend::InProcess(duka) => {
                let payment = PayBill {
                    phone: self.msisdn.digits().to_owned(),
                    ..PayBill::new(pay.account.clone(), pay.amount.clone())
                };
                duka.mpesa
                    .pay_bill_with(payment)
                    .await
                    .map(|outcome| match outcome.result {
                        PayBillResult::Confirmed => format!("confirmed ({})", outcome.trans_id),
                        PayBillResult::Rejected(code) => format!("refused ({})", code.as_str()),
                        PayBillResult::Cancelled => "cancelled".to_owned(),
                    })
                    .map_err(|e| e.to_string())
            }
            Backend::Remote(Ok(demo)) => {
                demo.pay_bill(&pay.account, &pay.amount).await.map(|reply| {
                    match reply["result"].as_str() {
                        Some("confirmed") => format!(
                            "confirmed ({})",
                            reply["TransID"].as_str().unwrap_or_default()
                        ),
                        Some("rejected") => format!(
                            "refused ({})",
                            reply["ResultCode"].as_str().unwrap_or_default()
                        ),
                        Some(other) => other.to_owned(),
                        None => reply.to_string(),
                    }
                })
            }
            Backend::Remote(Err(why)) => {
                say(&format!(
                    "(a paybill payment can't be simulated here: {why})"
                ));
                return;
            }
        };
        match result {
            Ok(result) => {
                say(&format!(
                    "[M-PESA] paybill payment of KES {} to account {}: {result}",
                    pay.amount, pay.account
                ));
                self.wait_for_sms().await;
            }
            Err(why) => say(&format!("(the paybill payment failed: {why})")),
        }
    }

    /// The phone's inbox, oldest first; `None` when this backend cannot show SMS.
    async fn inbox(&self) -> Option<Vec<Sms>> {
        match &self.backend {
            Backend::InProcess(duka) => Some(
                duka.sms
                    .inbox(&self.msisdn)
                    .into_iter()
                    .map(|m| Sms {
                        from: m.from.unwrap_or_else(|| "DUKA".to_owned()),
                        text: m.text,
                    })
                    .collect(),
            ),
            Backend::Remote(Ok(demo)) => demo.inbox().await,
            Backend::Remote(Err(_)) => None,
        }
    }

    /// Waits for the next SMS to this phone (the receipt or a notice) and shows it.
    async fn wait_for_sms(&mut self) {
        let deadline = Instant::now() + self.wait;
        match &self.backend {
            Backend::InProcess(duka) => {
                let mut arrivals = duka.sms.subscribe();
                while duka.sms.inbox(&self.msisdn).len() <= self.sms_shown {
                    match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                        Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                        Ok(Err(RecvError::Closed)) | Err(_) => return,
                    }
                }
            }
            Backend::Remote(Ok(_)) => loop {
                let arrived = self.inbox().await.is_some_and(|i| i.len() > self.sms_shown);
                if arrived {
                    break;
                }
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
            Backend::Remote(Err(_)) => return,
        }
        self.show_new_sms().await;
    }

    /// Shows every SMS that arrived since the last look.
    async fn show_new_sms(&mut self) {
        let Some(inbox) = self.inbox().await else {
            return;
        };
        for message in inbox.iter().skip(self.sms_shown) {
            say(&format!("[SMS from {}] {}", message.from, message.text));
        }
        self.sms_shown = inbox.len();
    }
}

/// An STK result code as the shopper would understand it.
fn describe_result(code: i64) -> String {
    match code {
        0 => "paid".to_owned(),
        1032 => "cancelled (1032)".to_owned(),
        2001 => "wrong PIN (2001)".to_owned(),
        1037 => "timed out (1037)".to_owned(),
        1 => "not enough balance (1)".to_owned(),
        code => format!("not completed ({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pay_lines_are_told_from_ussd_inputs() {
        assert_eq!(
            PayCommand::parse("pay D7K2Q9 450"),
            Some(Ok(PayCommand {
                account: "D7K2Q9".into(),
                amount: "450".into()
            }))
        );
        assert_eq!(
            PayCommand::parse("  PAY d7k2q9  450.00 ").map(|c| c.is_ok()),
            Some(true)
        );
        assert_eq!(
            PayCommand::parse("pay D7K2Q9"),
            Some(Err(PayCommand::USAGE))
        );
        assert_eq!(PayCommand::parse("pay a b c"), Some(Err(PayCommand::USAGE)));
        assert_eq!(PayCommand::parse("1*2"), None);
        assert_eq!(PayCommand::parse(""), None);
    }
}
