//! The `duka` binary: a thin command-line front over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use duka::config::Settings;
use duka::menu::Catalog;
use duka::startup::{Application, BuildOptions};

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
    /// Load and validate the menus and catalog; name every problem.
    Check {
        /// The menus folder (default: DUKA_MENUS or `menus`).
        #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
        menus: PathBuf,
    },
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
        Command::Check { menus } => match Catalog::load(&menus) {
            Ok(_) => {
                println!("{}: menus and catalog are valid", menus.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}
