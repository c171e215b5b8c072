//! Logging setup: `tracing` to stderr, compact for people or JSON for log shippers.
//!
//! Phone numbers appear only masked ([`crate::msisdn::Msisdn`]'s `Debug`/`Display`), secrets are
//! `SecretString`s that print as `[REDACTED]`, and request bodies are never logged.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); `format` is `json` or
/// anything else for compact lines. Safe to call twice (the second call does nothing).
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    drop(result);
}
