//! The abuse and durability knobs, read from the environment in one place.
//!
//! Every limit here exists so a stranger cannot spend the shop's money or annoy its shoppers
//! (PIN prompts, SMS, connections), or so an acknowledged payment is not lost. Each one is
//! configurable, so a soak or a busy shop can raise it; the README's "Limits and abuse" and
//! "Durability" sections explain the defaults.

use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;

/// The knobs, with their defaults.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once (`DUKA_MAX_CONNECTIONS`); over it, new ones wait in the
    /// kernel's backlog until one closes.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, also the keep-alive idle limit
    /// (`DUKA_HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// The secret path segment of Africa's Talking's SMS delivery reports (`AT_CALLBACK_SECRET`):
    /// reports are then accepted only on `/sms/{secret}/delivery`.
    pub at_callback_secret: Option<SecretString>,
    /// Who may post SMS delivery reports (`AT_ALLOWED_IPS`); empty: anyone.
    pub at_allowed_ips: Vec<IpNet>,
    /// SMS claimed for sending per shop per EAT day (`DUKA_SMS_DAILY_LIMIT`).
    pub sms_daily_limit: u64,
    /// STK pushes per phone over the short window (`DUKA_PUSH_LIMIT_SHORT`, per
    /// `DUKA_PUSH_WINDOW_SHORT_S`).
    pub push_short: Window,
    /// STK pushes per phone over the long window (`DUKA_PUSH_LIMIT_DAY`, per 24 h).
    pub push_day: Window,
    /// STK pushes per order, the first one and every "pay again" (`DUKA_PUSH_LIMIT_ORDER`).
    pub push_per_order: u32,
    /// Start even if Redis does not persist (`DUKA_ALLOW_NO_PERSISTENCE=1`).
    pub allow_no_persistence: bool,
    /// Replicas a paid order must reach before Safaricom is answered (`DUKA_REDIS_WAIT_REPLICAS`);
    /// `None`: 1 if a single Redis has a connected replica at start-up, else 0 (set it on a
    /// cluster with replicas).
    pub wait_replicas: Option<u32>,
    /// How long to wait for them (`DUKA_REDIS_WAIT_MS`).
    pub wait_timeout: Duration,
}

/// At most `max` events in any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub max: u32,
    pub window_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            at_callback_secret: None,
            at_allowed_ips: Vec::new(),
            sms_daily_limit: 5000,
            push_short: Window {
                max: 3,
                window_ms: 10 * 60_000,
            },
            push_day: Window {
                max: 10,
                window_ms: 24 * 3_600_000,
            },
            push_per_order: 3,
            allow_no_persistence: false,
            wait_replicas: None,
            wait_timeout: Duration::from_millis(500),
        }
    }
}

impl Limits {
    /// Reads the knobs through `var`, adding a line to `problems` for each bad value.
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> Self {
        let d = Self::default();
        let mut number =
            |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match var(name) {
                None => default,
                Some(raw) => match raw.parse::<u64>() {
                    Ok(n) if range.contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{name}: a whole number from {} to {}, not {raw:?}",
                            range.start(),
                            range.end()
                        ));
                        default
                    }
                },
            };
        let max_connections = number(
            "DUKA_MAX_CONNECTIONS",
            d.max_connections as u64,
            1..=1_000_000,
        );
        let header_ms = number(
            "DUKA_HEADER_READ_TIMEOUT_MS",
            d.header_read_timeout.as_millis() as u64,
            100..=120_000,
        );
        let sms_daily_limit = number("DUKA_SMS_DAILY_LIMIT", d.sms_daily_limit, 0..=100_000_000);
        let short_max = number(
            "DUKA_PUSH_LIMIT_SHORT",
            u64::from(d.push_short.max),
            1..=1000,
        );
        let short_s = number(
            "DUKA_PUSH_WINDOW_SHORT_S",
            (d.push_short.window_ms / 1000) as u64,
            1..=86_400,
        );
        let day_max = number("DUKA_PUSH_LIMIT_DAY", u64::from(d.push_day.max), 1..=10_000);
        let per_order = number(
            "DUKA_PUSH_LIMIT_ORDER",
            u64::from(d.push_per_order),
            1..=100,
        );
        let wait_ms = number(
            "DUKA_REDIS_WAIT_MS",
            d.wait_timeout.as_millis() as u64,
            1..=60_000,
        );
        let wait_replicas = var("DUKA_REDIS_WAIT_REPLICAS").and_then(|raw| match raw.parse() {
            Ok(n) if n <= 16 => Some(n),
            _ => {
                problems.push(format!(
                    "DUKA_REDIS_WAIT_REPLICAS: a number of replicas from 0 to 16, not {raw:?}"
                ));
                None
            }
        });
        let at_callback_secret = var("AT_CALLBACK_SECRET").map(|secret| {
            if !crate::config::is_path_secret(&secret) {
                problems.push(
                    "AT_CALLBACK_SECRET: use at least 16 letters, digits, - or _ (it is a URL path segment)"
                        .to_owned(),
                );
            }
            SecretString::from(secret)
        });
        let allow_no_persistence = match var("DUKA_ALLOW_NO_PERSISTENCE").as_deref() {
            None | Some("0" | "false" | "no") => false,
            Some("1" | "true" | "yes") => true,
            Some(other) => {
                problems.push(format!("DUKA_ALLOW_NO_PERSISTENCE: 1 or 0, not {other:?}"));
                false
            }
        };
        Self {
            max_connections: max_connections as usize,
            header_read_timeout: Duration::from_millis(header_ms),
            at_callback_secret,
            at_allowed_ips: crate::config::ip_list(
                "AT_ALLOWED_IPS",
                var("AT_ALLOWED_IPS"),
                problems,
            ),
            sms_daily_limit,
            push_short: Window {
                max: short_max as u32,
                window_ms: short_s as i64 * 1000,
            },
            push_day: Window {
                max: day_max as u32,
                window_ms: d.push_day.window_ms,
            },
            push_per_order: per_order as u32,
            allow_no_persistence,
            wait_replicas,
            wait_timeout: Duration::from_millis(wait_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (Limits, Vec<String>) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let var = move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut problems = Vec::new();
        let limits = Limits::from_lookup(&var, &mut problems);
        (limits, problems)
    }

    #[test]
    fn defaults_without_variables() {
        let (limits, problems) = read(&[]);
        assert!(problems.is_empty());
        assert_eq!(limits.sms_daily_limit, 5000);
        assert_eq!(
            limits.push_short,
            Window {
                max: 3,
                window_ms: 600_000
            }
        );
        assert_eq!(limits.push_per_order, 3);
        assert_eq!(limits.wait_replicas, None);
    }

    #[test]
    fn bad_values_are_named() {
        let (limits, problems) = read(&[
            ("DUKA_SMS_DAILY_LIMIT", "lots"),
            ("DUKA_PUSH_LIMIT_SHORT", "5"),
            ("AT_CALLBACK_SECRET", "short"),
            ("DUKA_ALLOW_NO_PERSISTENCE", "maybe"),
        ]);
        assert_eq!(limits.push_short.max, 5);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("DUKA_SMS_DAILY_LIMIT"));
    }
}
