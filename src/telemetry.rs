//! Logging setup: `tracing` to stderr, compact for people or JSON for log shippers.
//!
//! What the log promises:
//! - one INFO line per business event (an order placed, an STK push accepted, an order paid, an
//!   SMS accepted); the lower layers' view of the same event is DEBUG;
//! - phone numbers only masked, one style everywhere ([`crate::msisdn::Msisdn::masked`],
//!   `2547******78`); secrets are `SecretString`s that print as `[REDACTED]`; request bodies
//!   are never logged;
//! - colours only on a terminal ([`use_colours`]), so a log written to a file or a pipe has no
//!   escape codes;
//! - an unready store is a WARN when readiness changes, not an ERROR per probe
//!   ([`ReadinessLog`]).

use std::ffi::OsStr;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

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
        let colours = use_colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(colours)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    drop(result);
}

/// Whether compact log lines get ANSI colours: only when they go to a terminal, and not when
/// `NO_COLOR` is set to anything non-empty (<https://no-color.org>).
pub fn use_colours(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Remembers what `/readyz` answered last, so that only a change is logged: a load balancer
/// probes every few seconds, and a 503 is a normal answer while the store is down.
#[derive(Debug, Default)]
pub struct ReadinessLog {
    /// 0: nothing answered yet, 1: ready, 2: not ready.
    last: AtomicU8,
}

/// What to log about one readiness answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadinessChange {
    /// Same as the last answer: log nothing.
    Unchanged,
    /// The first answer, ready: nothing worth a line.
    FirstReady,
    /// Not ready, and it was ready or had not answered yet: WARN.
    BecameUnready,
    /// Ready again after an unready answer: INFO.
    Recovered,
}

impl ReadinessLog {
    /// Records an answer and says what to log about it.
    pub fn observe(&self, ready: bool) -> ReadinessChange {
        let now = if ready { 1 } else { 2 };
        match (self.last.swap(now, Ordering::Relaxed), ready) {
            (before, _) if before == now => ReadinessChange::Unchanged,
            (0, true) => ReadinessChange::FirstReady,
            (_, true) => ReadinessChange::Recovered,
            (_, false) => ReadinessChange::BecameUnready,
        }
    }

    /// Records an answer and logs it if it changed the state (`why`: the reason it is unready).
    pub fn log(&self, ready: Result<(), &str>) {
        match self.observe(ready.is_ok()) {
            ReadinessChange::BecameUnready => tracing::warn!(
                "not ready: {}; /readyz answers 503 until the store answers again",
                ready.err().unwrap_or_default()
            ),
            ReadinessChange::Recovered => tracing::info!("ready again: the store answers"),
            ReadinessChange::Unchanged | ReadinessChange::FirstReady => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(use_colours(true, None));
        assert!(use_colours(true, Some(OsStr::new(""))));
        assert!(!use_colours(false, None));
        assert!(!use_colours(true, Some(OsStr::new("1"))));
        assert!(!use_colours(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn readiness_is_logged_once_per_change() {
        let log = ReadinessLog::default();
        assert_eq!(log.observe(true), ReadinessChange::FirstReady);
        assert_eq!(log.observe(true), ReadinessChange::Unchanged);
        assert_eq!(log.observe(false), ReadinessChange::BecameUnready);
        assert_eq!(log.observe(false), ReadinessChange::Unchanged);
        assert_eq!(log.observe(false), ReadinessChange::Unchanged);
        assert_eq!(log.observe(true), ReadinessChange::Recovered);
        assert_eq!(log.observe(true), ReadinessChange::Unchanged);

        let unready_from_the_start = ReadinessLog::default();
        assert_eq!(
            unready_from_the_start.observe(false),
            ReadinessChange::BecameUnready
        );
    }
}

/// A request path fit for a log line: the secret segment of `/payments/{secret}/…` and
/// `/sms/{secret}/…` becomes `{secret}`, and input-bearing paths are cut to their route.
pub fn path_for_log(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    match first {
        "payments" | "sms" => {
            let rest: Vec<&str> = segments.skip(1).collect();
            if rest.is_empty() {
                format!("/{first}")
            } else {
                format!("/{first}/{{secret}}/{}", rest.join("/"))
            }
        }
        "ussd" => match segments.next() {
            Some(gateway) => format!("/ussd/{gateway}"),
            None => "/ussd".to_owned(),
        },
        _ => format!("/{first}"),
    }
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn secrets_never_reach_the_log() {
        assert_eq!(
            super::path_for_log("/payments/s3cr3tXYZ/c2b/confirm"),
            "/payments/{secret}/c2b/confirm"
        );
        assert_eq!(
            super::path_for_log("/sms/s3cr3t/delivery"),
            "/sms/{secret}/delivery"
        );
        assert_eq!(super::path_for_log("/ussd/hubtel/x?y"), "/ussd/hubtel");
        assert_eq!(super::path_for_log("/console/orders/D7K2Q9"), "/console");
    }
}
