//! The `duka` binary: a thin command-line front over the library.

use std::path::PathBuf;
use std::process::ExitCode;

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
enum Command {
    /// Run the HTTP server: USSD callbacks, payment and SMS callbacks, background workers.
    Serve {
        /// Write every finished session as a fixture into this folder (or DUKA_RECORD_DIR).
        #[arg(long, env = "DUKA_RECORD_DIR")]
        record: Option<PathBuf>,
    },
    /// Replay recorded session fixtures; prints a diff per failure and `N passed, N failed`.
    Replay(duka::fixtures::ReplayArgs),
    /// A terminal phone: dial the shop and walk the menus.
    Dial(duka::dial::DialArgs),
    /// A load generator: simulated shoppers walk the whole flow against a server.
    Bench(duka::bench::BenchArgs),
    /// Show one order: lines, total, state, payment attempts and callbacks, payments, receipt SMS.
    Order {
        /// The order number (the paybill account number).
        number: String,
        /// Print one JSON object for scripts.
        #[arg(long)]
        json: bool,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        Command::Serve { record } => {
            let mut settings = Settings::from_env()?;
            settings.record_dir = record.or(settings.record_dir);
            duka::telemetry::init(&settings.log_format);
            let app = Application::build(settings, BuildOptions::default()).await?;
            tracing::info!("Duka listening on http://{}", app.local_addr());
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => duka::fixtures::run(args).await,
        Command::Dial(args) => duka::dial::run(args).await,
        Command::Bench(args) => duka::bench::run(args).await,
        Command::Order { number, json } => {
            let settings = Settings::from_env()?;
            if settings.store == duka::config::StoreSettings::Embedded {
                anyhow::bail!(
                    "duka order reads the shop's Redis: set REDIS_URL (the embedded store lives inside the `duka serve` process)"
                );
            }
            let store = duka::startup::connect_store(&settings.store).await?;
            let keys = duka::keys::Keys::new(settings.key_prefix.clone());
            match duka::operator::order_report(store.as_ref(), &keys, &number).await? {
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
        Command::Mpesa {
            command: MpesaCommand::RegisterUrls,
        } => {
            let settings = Settings::from_env()?;
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
            println!(
                "registered the C2B URLs of paybill {shortcode} (ResponseType Completed): {} ({})",
                registered.response_description, registered.originator_conversation_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { menus, graph } => match Catalog::load(&menus) {
            Ok(catalog) => {
                match graph {
                    Some(format) => {
                        print!("{}", duka::graph::Graph::of(&catalog).render(format));
                        eprintln!("{}: menus and catalog are valid", menus.display());
                    }
                    None => println!("{}: menus and catalog are valid", menus.display()),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
