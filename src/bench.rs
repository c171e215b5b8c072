//! `duka bench`: placeholder (the benchmark helper replaces this file).

/// Arguments of `duka bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The server to load, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
}

/// Runs the benchmark; returns the process exit code.
///
/// # Errors
/// The benchmark could not run.
pub async fn run(_args: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
