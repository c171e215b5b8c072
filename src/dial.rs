//! `duka dial`: a terminal phone, to walk the menus the way a handset shows them.
//!
//! It dials on start, prints each screen, and reads one input per line from stdin, keeping the
//! cumulative `text` the way Africa's Talking does. By default it talks to a Duka it starts in
//! the same process (embedded store, built-in sandboxes), whose M-Pesa sandbox lets a person
//! answer the PIN prompt: after an `END` the phone shows the prompt, the next line is the PIN
//! (the sandbox's `1234` pays, any other PIN is wrong, `c` cancels, an empty line lets it time
//! out), and the SMS that arrive are shown as they come.
//!
//! With `--url` it dials a running server instead. Prompts are then shown only if that server's
//! M-Pesa sandbox URL is given (`--mpesa-url`), through the sandbox's `/sandbox/prompts` routes;
//! SMS cannot be shown, since a running server's SMS sandbox has no inbox route. The phone says
//! so rather than staying silent.
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
use crate::sandbox::mpesa::{MpesaSandbox, Outcome, PromptAnswer};
use crate::sandbox::sms::SmsSandbox;
use crate::shop::Shop;
use crate::startup::{Application, BuildOptions};

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
    /// With --url: the running server's M-Pesa sandbox URL (logged at its start), to show and
    /// answer its PIN prompts.
    #[arg(long)]
    pub mpesa_url: Option<String>,
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
    let phone = Msisdn::parse(&args.phone).context("--phone is not a Kenyan mobile number")?;
    let shortcode = args
        .shortcode
        .clone()
        .unwrap_or_else(|| "*384*12#".to_owned());
    let wait = Duration::from_secs(args.wait.max(1));

    let (base_url, backend, _server) = match &args.url {
        Some(url) => {
            let base = url.trim().trim_end_matches('/').to_owned();
            let mpesa = args
                .mpesa_url
                .as_ref()
                .map(|u| u.trim().trim_end_matches('/').to_owned());
            (base, Backend::Remote { mpesa }, None)
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

    let mut phone = Phone {
        http: reqwest::Client::builder()
            .timeout(wait + Duration::from_secs(5))
            .build()?,
        base_url,
        backend,
        msisdn: phone,
        shortcode,
        wait,
        session: None,
        sessions: 0,
        sms_shown: 0,
        echo: !std::io::stdin().is_terminal(),
        input: BufReader::new(tokio::io::stdin()).lines(),
    };
    phone.intro();
    phone.dial(String::new()).await?;
    loop {
        phone.show_new_sms();
        let in_session = phone.session.is_some();
        if !in_session {
            say("(session over: Enter dials again, inputs such as 1*2 make a deep dial; end of input quits)");
        }
        let Some(line) = phone.read().await? else {
            if in_session {
                phone.hang_up().await;
            }
            break;
        };
        if in_session {
            phone.press(line.trim()).await?;
        } else {
            phone.dial(line.trim().to_owned()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The Duka the phone talks to.
enum Backend {
    InProcess(InProcess),
    Remote { mpesa: Option<String> },
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

struct Session {
    id: String,
    text: String,
}

struct Phone {
    http: reqwest::Client,
    base_url: String,
    backend: Backend,
    msisdn: Msisdn,
    shortcode: String,
    wait: Duration,
    /// The open USSD session; `None` after an `END`.
    session: Option<Session>,
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
        let local = format!("0{}", &self.msisdn.digits()[3..]);
        match &self.backend {
            Backend::InProcess(duka) => say(&format!(
                "Dialling {} from {local} (an in-process Duka with the built-in sandboxes; the M-Pesa PIN is {}).",
                self.shortcode,
                duka.mpesa.pin()
            )),
            Backend::Remote { mpesa } => {
                say(&format!("Dialling {} from {local} at {}.", self.shortcode, self.base_url));
                match mpesa {
                    Some(url) => say(&format!("M-Pesa prompts come from the sandbox at {url}.")),
                    None => say("M-Pesa prompts can't be shown: pass --mpesa-url with the server's M-Pesa sandbox URL."),
                }
                say("SMS can't be shown: a running server's SMS sandbox has no inbox to read (they are in its log).");
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
        self.session = Some(Session {
            id: format!(
                "dial-{}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_millis(),
                self.sessions
            ),
            text: String::new(),
        });
        say(&format!("--- dialling {} ---", self.shortcode));
        self.send(inputs).await
    }

    async fn press(&mut self, input: &str) -> anyhow::Result<()> {
        let previous = self
            .session
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default();
        let text = if previous.is_empty() {
            input.to_owned()
        } else {
            format!("{previous}*{input}")
        };
        self.send(text).await
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        session.text.clone_from(&text);
        let id = session.id.clone();
        let response = self
            .http
            .post(format!("{}/ussd/africastalking", self.base_url))
            .form(&[
                ("sessionId", id.as_str()),
                ("serviceCode", self.shortcode.as_str()),
                ("phoneNumber", self.msisdn.e164().as_str()),
                ("networkCode", "63902"),
                ("text", text.as_str()),
            ])
            .send()
            .await;
        let body = match response {
            Ok(response) if response.status().is_success() => {
                response.text().await.unwrap_or_default()
            }
            Ok(response) => {
                say(&format!(
                    "(the server answered HTTP {}: the phone shows an error and the session ends)",
                    response.status()
                ));
                self.session = None;
                return Ok(());
            }
            Err(e) => {
                say(&format!("(no answer from {}: {e})", self.base_url));
                self.session = None;
                return Ok(());
            }
        };
        if let Some(screen) = body.strip_prefix("CON ") {
            say(screen);
        } else if let Some(screen) = body.strip_prefix("END ") {
            say(screen);
            say("--- session ended ---");
            self.session = None;
            self.after_end().await;
        } else {
            say(&body);
            say("(not a CON or END reply: the phone ends the session)");
            self.session = None;
        }
        Ok(())
    }

    /// Hangs up mid-session, as a shopper walking away: Africa's Talking then tells Duka.
    async fn hang_up(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        say("(hung up)");
        let _ = self
            .http
            .post(format!("{}/ussd/africastalking/session-end", self.base_url))
            .form(&[
                ("sessionId", session.id.as_str()),
                ("serviceCode", self.shortcode.as_str()),
                ("phoneNumber", self.msisdn.e164().as_str()),
                ("networkCode", "63902"),
                ("status", "Incomplete"),
                ("input", session.text.as_str()),
            ])
            .send()
            .await;
    }

    /// After an `END`: checkout and "Pay again" send an M-Pesa prompt. Shows it and reads the
    /// PIN from the next line.
    async fn after_end(&mut self) {
        let in_process = match &self.backend {
            Backend::InProcess(duka) => Some((duka.shop.clone(), duka.mpesa.clone())),
            Backend::Remote { .. } => None,
        };
        let remote = match &self.backend {
            Backend::Remote { mpesa } => mpesa.clone(),
            Backend::InProcess(_) => None,
        };
        match (in_process, remote) {
            (Some((shop, mpesa)), _) => {
                let deadline = Instant::now() + self.wait;
                let Some(prompt) = wait_for_any_prompt(&mpesa, deadline).await else {
                    return;
                };
                say(&format!("[M-PESA] {}", prompt.text()));
                let answer = self.read_pin().await;
                let Some(answer) = answer else {
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
                        let _ = poll_until_async(noted_by, || {
                            push_noted(&shop, &prompt.checkout_request_id)
                        })
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
            (None, Some(url)) => self.remote_prompt(&url).await,
            (None, None) => {}
        }
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

    /// Shows a running server's prompt through its M-Pesa sandbox's routes, and answers it.
    async fn remote_prompt(&mut self, sandbox_url: &str) {
        let deadline = Instant::now() + self.wait;
        let list = format!(
            "{sandbox_url}/sandbox/prompts?phone={}",
            self.msisdn.digits()
        );
        let found = poll_until_async(deadline, || async {
            let reply: serde_json::Value =
                self.http.get(&list).send().await.ok()?.json().await.ok()?;
            reply["prompts"].as_array()?.first().cloned()
        })
        .await;
        let Some(prompt) = found else {
            say("(no M-Pesa prompt appeared: the server's sandbox may answer pushes by itself, as `duka serve`'s does)");
            return;
        };
        say(&format!(
            "[M-PESA] {}",
            prompt["Text"].as_str().unwrap_or_default()
        ));
        let Some(answer) = self.read_pin().await else {
            say("(no answer: the prompt stays on the phone until it times out)");
            return;
        };
        let body = match answer {
            None => {
                say("(no answer: the prompt will time out on the server)");
                return;
            }
            Some(PromptAnswer::Cancel) => serde_json::json!({ "cancel": true }),
            Some(PromptAnswer::Pin(pin)) => serde_json::json!({ "pin": pin }),
        };
        let id = prompt["CheckoutRequestID"].as_str().unwrap_or_default();
        let reply = self
            .http
            .post(format!("{sandbox_url}/sandbox/prompts/{id}"))
            .json(&body)
            .send()
            .await;
        match reply {
            Ok(reply) => match reply.json::<serde_json::Value>().await {
                Ok(value) if value["ResultCode"].is_i64() => {
                    say(&format!(
                        "[M-PESA] {}",
                        describe_result(value["ResultCode"].as_i64().unwrap_or(-1))
                    ));
                }
                Ok(value) => say(&format!("(the sandbox refused the answer: {value})")),
                Err(e) => say(&format!("(the sandbox's answer was unreadable: {e})")),
            },
            Err(e) => say(&format!("(could not reach the M-Pesa sandbox: {e})")),
        }
    }

    /// Waits for the next SMS to this phone (the receipt or a notice) and shows it.
    async fn wait_for_sms(&mut self) {
        let Backend::InProcess(duka) = &self.backend else {
            return;
        };
        let deadline = Instant::now() + self.wait;
        let mut arrivals = duka.sms.subscribe();
        while duka.sms.inbox(&self.msisdn).len() <= self.sms_shown {
            match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => return,
            }
        }
        self.show_new_sms();
    }

    /// Shows every SMS that arrived since the last look.
    fn show_new_sms(&mut self) {
        let Backend::InProcess(duka) = &self.backend else {
            return;
        };
        let inbox = duka.sms.inbox(&self.msisdn);
        for message in inbox.iter().skip(self.sms_shown) {
            let from = message.from.as_deref().unwrap_or("DUKA");
            say(&format!("[SMS from {from}] {}", message.text));
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
