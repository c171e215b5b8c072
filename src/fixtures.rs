//! Recorded session fixtures: a shopper's story as a file, replayed as a test.
//!
//! A fixture (one TOML file in `fixtures/`, format in `fixtures/README.md`) lists what a phone
//! sends, the exact screen Duka must answer, and what happens around it: the M-Pesa prompt
//! answered (or not), a paybill payment, the SMS the shopper must receive. It exists so that a
//! change to the menus, the engine or the payment flow shows up as a failing story with a diff,
//! and so that a session seen on a real server can become a test by recording it.
//!
//! - [`format`] reads and writes the files, strictly: a malformed fixture names file and line.
//! - [`pattern`] is the named captures (`{order}`) that stand for values drawn at random.
//! - [`replay`] plays fixtures against a fresh in-process Duka (or a running server's USSD
//!   endpoint) and reports each failure as a diff; `duka replay` and `cargo test` both use it.
//! - [`record`] is the other direction: `duka serve --record DIR` writes every finished session
//!   as a fixture.
//!
//! What this module does not do: judge timing or load (that is `duka bench`), or mock anything
//! Duka talks to. A replay runs the real server against the built-in sandboxes over real HTTP.

pub mod format;
pub mod pattern;
pub mod record;
pub mod replay;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `duka replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Fixture files or folders (default `fixtures/`).
    pub paths: Vec<PathBuf>,
    /// Replay the USSD steps against this running server (e.g. http://127.0.0.1:8080) instead
    /// of an in-process one. Payment and SMS steps need the in-process sandboxes, so they are
    /// then skipped, and the report names each one skipped.
    #[arg(long)]
    pub url: Option<String>,
    /// The menus folder of the in-process Duka.
    #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
    pub menus: PathBuf,
    /// The longest one wait may take (an M-Pesa prompt, a callback, an SMS), in seconds.
    #[arg(long, default_value_t = 10)]
    pub wait: u64,
}

/// Replays fixtures, prints the report and returns the process exit code: failure when any
/// fixture failed.
///
/// # Errors
/// The paths name no fixture at all.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init("compact");
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("fixtures")]
    } else {
        args.paths
    };
    let options = replay::ReplayOptions {
        url: args.url,
        menus_dir: args.menus,
        wait: Duration::from_secs(args.wait.max(1)),
        ..replay::ReplayOptions::default()
    };
    let report = replay::replay_paths(&paths, &options).await?;
    print!("{}", report.render());
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
