//! `duka dial`: placeholder (the fixtures helper replaces this file).

/// Arguments of `duka dial`.
#[derive(Debug, clap::Args)]
pub struct DialArgs {
    /// The shortcode to dial.
    pub shortcode: Option<String>,
}

/// Runs the terminal phone; returns the process exit code.
///
/// # Errors
/// The phone could not start.
pub async fn run(_args: DialArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
