//! The `duka` binary: a thin command-line front over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use duka::config::Settings;
use duka::menu::Catalog;
use duka::startup::{Application, BuildOptions};

/// jemalloc instead of glibc's malloc: under load, glibc's allocator took about 15% of the
/// server's CPU and fragmented across threads; jemalloc measured 30–60% more hops per second.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "duka", version, about = "A USSD and SMS shop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ConsoleAction {
    /// Read a password (first line of stdin) and print its argon2id PHC hash.
    HashPassword,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server: USSD callbacks, payment and SMS callbacks, background workers.
    Serve {
        /// Write every finished session as a fixture into this folder (or DUKA_RECORD_DIR).
        #[arg(long, env = "DUKA_RECORD_DIR")]
        record: Option<PathBuf>,
        /// Record only this share of sessions, 0 to 1 or a percentage (`0.05`, `5%`), chosen by
        /// session id so every node agrees (or DUKA_RECORD_SAMPLE).
        #[arg(long, value_parser = duka::fixtures::record::parse_share)]
        record_sample: Option<f64>,
        /// Record only this shopper's sessions, in any number format: `0712…`, `+254712…` (or
        /// DUKA_RECORD_PHONE).
        #[arg(long, value_parser = parse_phone)]
        record_phone: Option<duka::msisdn::Msisdn>,
        /// Record only sessions on this service code, `*384*12#` (or DUKA_RECORD_SERVICE_CODE).
        #[arg(long)]
        record_service_code: Option<String>,
        /// The demo (no REDIS_URL) writes the token of its operator endpoint, which `duka order`
        /// uses, to this file.
        #[arg(long, env = "DUKA_OPERATOR_TOKEN_FILE", default_value = duka::operator::endpoint::DEFAULT_TOKEN_FILE)]
        operator_token_file: PathBuf,
    },
    /// The operator console: `duka console hash-password` reads a password on stdin and prints
    /// its argon2 hash for DUKA_CONSOLE_PASSWORD_HASH.
    Console {
        #[command(subcommand)]
        action: ConsoleAction,
    },
    /// Replay recorded session fixtures; prints a diff per failure and `N passed, N failed`.
    Replay(duka::fixtures::ReplayArgs),
    /// A terminal phone: dial the shop and walk the menus.
    Dial(duka::dial::DialArgs),
    /// A load generator: simulated shoppers walk the whole flow against a server.
    Bench(duka::bench::BenchArgs),
    /// A chaos soak: shoppers through the gateways while Duka and Redis are killed; prints the books.
    Soak(duka::soak::SoakArgs),
    /// Show one order: lines, total, state, payment attempts and callbacks, payments, receipt SMS.
    Order {
        /// The order number (the paybill account number).
        number: String,
        /// Print one JSON object for scripts.
        #[arg(long)]
        json: bool,
        /// Without REDIS_URL: the running demo to ask (default: http:// and DUKA_LISTEN).
        #[arg(long)]
        url: Option<String>,
        /// Without REDIS_URL: the file the demo wrote its operator token to.
        #[arg(long, env = "DUKA_OPERATOR_TOKEN_FILE", default_value = duka::operator::endpoint::DEFAULT_TOKEN_FILE)]
        operator_token_file: PathBuf,
    },
    /// Approve a refund for an order: the whole late or double payment (a reversal) or part of it
    /// (`--amount`, a B2C payment to the shopper). Exits non-zero when refused.
    Refund {
        /// The order number.
        number: String,
        /// Whole shillings, at most what is refundable (default: all of it).
        #[arg(long, value_parser = parse_kes)]
        amount: Option<duka::money::Kes>,
        /// Without REDIS_URL: the running demo to ask (default: http:// and DUKA_LISTEN).
        #[arg(long)]
        url: Option<String>,
        /// Without REDIS_URL: the file the demo wrote its operator token to.
        #[arg(long, env = "DUKA_OPERATOR_TOKEN_FILE", default_value = duka::operator::endpoint::DEFAULT_TOKEN_FILE)]
        operator_token_file: PathBuf,
    },
    /// M-Pesa operations.
    Mpesa {
        #[command(subcommand)]
        command: MpesaCommand,
    },
    /// Load and validate the menus and catalog; name every problem.
    Check {
        /// The menus folder (default: DUKA_MENUS or `menus`).
        #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
        menus: PathBuf,
        /// Print valid menus as a graph of screens and options on stdout: `mermaid` (the
        /// default when the format is left out) or `dot` (Graphviz).
        #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "mermaid")]
        graph: Option<duka::graph::GraphFormat>,
    },
}

#[derive(Subcommand)]
enum MpesaCommand {
    /// Register the paybill's C2B validation and confirmation URLs with Daraja.
    RegisterUrls,
    /// Look a payment up by its M-Pesa receipt (Transaction Status API) and apply it to its
    /// order if Duka missed its confirmation. Exits non-zero unless it ends on an order.
    Find {
        /// The receipt the shopper quotes from M-Pesa's SMS, like SGL7M2XK4P.
        receipt: String,
        /// The order the shopper paid for, when Duka cannot tell by itself (M-Pesa's answer
        /// carries no account number).
        #[arg(long)]
        order: Option<String>,
        /// How long to wait for M-Pesa's answer, in seconds.
        #[arg(long, default_value_t = 60)]
        wait: u64,
        /// Without REDIS_URL: the running demo to ask (default: http:// and DUKA_LISTEN).
        #[arg(long)]
        url: Option<String>,
        /// Without REDIS_URL: the file the demo wrote its operator token to.
        #[arg(long, env = "DUKA_OPERATOR_TOKEN_FILE", default_value = duka::operator::endpoint::DEFAULT_TOKEN_FILE)]
        operator_token_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The runtime's shape: a thread per core by default (`TOKIO_WORKER_THREADS` sets the
    // count), or `DUKA_RUNTIME=current_thread` for one thread (see README, Performance).
    let mut builder = match std::env::var("DUKA_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            record,
            record_sample,
            record_phone,
            record_service_code,
            operator_token_file,
        } => {
            let mut settings = Settings::from_env()?;
            let flags = duka::fixtures::record::RecordFilter {
                sample: record_sample,
                phone: record_phone,
                service_code: record_service_code,
            };
            settings.record_into(record, &flags);
            duka::telemetry::init(&settings.log_format);
            // Only the demo's store lives in this process, out of `duka order`'s reach.
            let demo = settings.store == duka::config::StoreSettings::Embedded;
            let mut app = Application::build(settings, BuildOptions::default()).await?;
            if demo {
                app.enable_operator_endpoint(&operator_token_file)?;
                // The console's password sits next to the operator token (`.duka/`).
                let password_file = operator_token_file.with_file_name("console-password");
                app.enable_demo_console(&password_file)?;
            }
            tracing::info!("Duka listening on http://{}", app.local_addr());
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Console {
            action: ConsoleAction::HashPassword,
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.len() >= 12,
                "use a password of at least 12 characters"
            );
            println!("{}", duka::console::auth::hash_password(password));
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => duka::fixtures::run(args).await,
        Command::Dial(args) => duka::dial::run(args).await,
        Command::Bench(args) => duka::bench::run(args).await,
        Command::Soak(args) => duka::soak::run(args).await,
        Command::Order {
            number,
            json,
            url,
            operator_token_file,
        } => {
            let (settings, mount) = operator_settings()?;
            let report = if settings.store == duka::config::StoreSettings::Embedded {
                // The demo: its store lives inside `duka serve`, so ask the running server.
                let (url, token) =
                    demo_endpoint(&settings, &mount, url, &operator_token_file, "order")?;
                duka::operator::remote::fetch_report(&url, &token, &number).await?
            } else {
                let store = duka::startup::connect_store(&settings.store).await?;
                let keys = duka::keys::Keys::new(settings.key_prefix.clone());
                duka::operator::order_report(store.as_ref(), &keys, &number).await?
            };
            match report {
                Some(report) if json => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    Ok(ExitCode::SUCCESS)
                }
                Some(report) => {
                    print!("{}", duka::operator::render_text(&report));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no order {number}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Refund {
            number,
            amount,
            url,
            operator_token_file,
        } => {
            let (settings, mount) = operator_settings()?;
            let number = duka::orders::normalise_order_number(&number);
            let approved = if settings.store == duka::config::StoreSettings::Embedded {
                let (url, token) =
                    demo_endpoint(&settings, &mount, url, &operator_token_file, "refund")?;
                duka::operator::remote::request_refund(&url, &token, &number, amount)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            } else {
                duka::operator::refund::approve_in_store(&settings, &number, amount)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            };
            match approved {
                Ok(refund) => {
                    print!("{}", duka::operator::refund::render(&number, &refund));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Mpesa {
            command:
                MpesaCommand::Find {
                    receipt,
                    order,
                    wait,
                    url,
                    operator_token_file,
                },
        } => {
            let (settings, mount) = operator_settings()?;
            let target = if settings.store == duka::config::StoreSettings::Embedded {
                let (url, token) =
                    demo_endpoint(&settings, &mount, url, &operator_token_file, "mpesa find")?;
                duka::operator::find::Target::Demo { url, token }
            } else {
                duka::operator::find::Target::Store(Box::new(
                    duka::operator::shop_in_store(&settings).await?,
                ))
            };
            let found = duka::operator::find::find_and_wait(
                &target,
                &receipt,
                order.as_deref(),
                std::time::Duration::from_secs(wait),
            )
            .await;
            match found {
                Ok(lookup) => {
                    print!("{}", duka::payments::find::render(&lookup));
                    Ok(
                        if lookup.state == duka::payments::find::LookupState::Applied {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        },
                    )
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Mpesa {
            command: MpesaCommand::RegisterUrls,
        } => {
            let (settings, _) = operator_settings()?;
            duka::telemetry::init(&settings.log_format);
            let duka::config::MpesaSettings::Daraja {
                base_url,
                consumer_key,
                consumer_secret,
                shortcode,
                passkey,
            } = &settings.mpesa
            else {
                anyhow::bail!(
                    "set MPESA_BASE_URL, MPESA_CONSUMER_KEY, MPESA_CONSUMER_SECRET, MPESA_SHORTCODE and MPESA_PASSKEY: the built-in sandbox registers its URLs by itself"
                );
            };
            let Some(public_url) = settings.public_url.clone() else {
                anyhow::bail!("set DUKA_PUBLIC_URL: the public HTTPS base URL Safaricom calls");
            };
            let client = duka::mpesa::DarajaClient::new(duka::mpesa::DarajaConfig::new(
                base_url.clone(),
                consumer_key.clone(),
                consumer_secret.clone(),
                shortcode.clone(),
                passkey.clone(),
            ))?;
            let (confirm, validate) = settings.c2b_urls(&public_url);
            let registered = client.register_c2b_urls(&confirm, &validate).await?;
            let which = match &settings.mpesa_till {
                Some(till) => format!("store number {shortcode} (Buy Goods till {till})"),
                None => format!("paybill {shortcode}"),
            };
            println!(
                "registered the C2B URLs of {which} (ResponseType Completed): {} ({})",
                registered.response_description, registered.originator_conversation_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { menus, graph } => {
            // Every shop of DUKA_SHOPS too, each from its own menus folder.
            let mut folders = vec![menus];
            for id in std::env::var("DUKA_SHOPS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
            {
                match std::env::var(duka::shops::variable(id, "DUKA_MENUS")) {
                    Ok(dir) => folders.push(PathBuf::from(dir)),
                    Err(_) => {
                        eprintln!(
                            "shop {id}: {} is not set",
                            duka::shops::variable(id, "DUKA_MENUS")
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            let mut ok = true;
            for menus in &folders {
                match Catalog::load(menus) {
                    Ok(catalog) => match graph {
                        Some(format) => {
                            print!("{}", duka::graph::Graph::of(&catalog).render(format));
                            eprintln!("{}: menus and catalog are valid", menus.display());
                        }
                        None => println!("{}: menus and catalog are valid", menus.display()),
                    },
                    Err(e) => {
                        eprintln!("{e}");
                        ok = false;
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The running demo's operator endpoint, for an operator command without `REDIS_URL`: its URL
/// (`--url`, else `DUKA_LISTEN` and the shop's mount) and the token the demo wrote to `token_file`.
fn demo_endpoint(
    settings: &Settings,
    mount: &str,
    url: Option<String>,
    token_file: &std::path::Path,
    command: &str,
) -> anyhow::Result<(String, secrecy::SecretString)> {
    let url = url.unwrap_or_else(|| format!("http://{}{mount}", settings.listen));
    let token = duka::operator::endpoint::read_token(token_file).with_context(|| {
        format!(
            "without REDIS_URL, duka {command} asks the running demo at {url} with the token it wrote to {} (start `duka serve` in this folder, or set REDIS_URL for a production shop)",
            token_file.display()
        )
    })?;
    Ok((url, token))
}

/// The settings an operator command acts on: the default shop's, or with `DUKA_SHOP=<id>` those
/// of that shop of `DUKA_SHOPS`; and where that shop is mounted (`""` or `/shops/<id>`).
fn operator_settings() -> anyhow::Result<(Settings, String)> {
    let settings = Settings::from_env()?;
    match std::env::var("DUKA_SHOP")
        .ok()
        .filter(|id| !id.trim().is_empty())
    {
        None => Ok((settings, String::new())),
        Some(id) => {
            let id = id.trim().to_owned();
            let known: Vec<String> = settings.shops.iter().map(|s| s.id.clone()).collect();
            let shop = settings
                .shops
                .into_iter()
                .find(|s| s.id == id)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "DUKA_SHOP={id} is not one of DUKA_SHOPS ({})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    )
                })?;
            let path = shop.path();
            Ok((shop.settings, path))
        }
    }
}

fn parse_kes(raw: &str) -> Result<duka::money::Kes, String> {
    duka::money::Kes::parse(raw).map_err(|e| e.to_string())
}

fn parse_phone(raw: &str) -> Result<duka::msisdn::Msisdn, String> {
    duka::msisdn::Msisdn::parse(raw).map_err(|e| e.to_string())
}
