//! Recorded sessions: placeholder (the fixtures helper replaces this file).

/// Arguments of `duka replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Fixture files or folders (default `fixtures/`).
    pub paths: Vec<std::path::PathBuf>,
}

/// Replays fixtures; returns the process exit code.
///
/// # Errors
/// The fixtures could not be read.
pub async fn run(_args: ReplayArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
