//! Typed settings, loaded from the environment variables named in `CONTRACT.md`.
//!
//! With nothing set, the settings run the demo: the embedded store, the built-in M-Pesa and SMS
//! sandboxes, a random callback secret. Each outside system is either fully configured or left
//! to its sandbox: a production setting that is half given (a consumer key without its secret,
//! say) is a start-up error naming every missing variable, never a silent fall back to a sandbox
//! that would take real shoppers' orders and never charge them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::gateway::guard::UssdGuard;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

/// Where sessions, carts, orders and the outbox live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSettings {
    /// The embedded in-process store (demo, replay).
    Embedded,
    /// One Redis server.
    Redis { url: String },
    /// A Redis Cluster, reached through any of these seeds (`redis://host:port`).
    Cluster { seeds: Vec<String> },
}

/// The Daraja side: the built-in sandbox or a real (or stand-in) Daraja.
#[derive(Clone, Debug)]
pub enum MpesaSettings {
    Sandbox,
    Daraja {
        base_url: String,
        consumer_key: String,
        consumer_secret: SecretString,
        shortcode: String,
        passkey: SecretString,
    },
}

/// The Africa's Talking SMS side: the built-in sandbox or a real account.
#[derive(Clone, Debug)]
pub enum SmsSettings {
    Sandbox,
    AfricasTalking {
        base_url: String,
        username: String,
        api_key: SecretString,
        sender_id: Option<String>,
    },
}

/// Everything `duka serve` needs to know.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The base URL at which Safaricom and Africa's Talking reach this server (`DUKA_PUBLIC_URL`).
    /// `None`: derived from the address the server is bound to (demo only).
    pub public_url: Option<String>,
    pub menus_dir: PathBuf,
    pub store: StoreSettings,
    /// Prefix of every Redis key (`DUKA_KEY_PREFIX`, default `duka`).
    pub key_prefix: String,
    pub mpesa: MpesaSettings,
    /// The secret path segment of the payment callbacks.
    pub callback_secret: SecretString,
    /// True when the callback secret was generated at start-up (demo only).
    pub callback_secret_generated: bool,
    pub mpesa_query_after: Duration,
    pub order_ttl: Duration,
    /// How long an idle USSD session is kept (`DUKA_SESSION_TTL_S`, [`SESSION_TTL_RANGE_S`]).
    pub session_ttl: Duration,
    /// `DUKA_USSD_RESEND_WINDOW_MS`: how soon the same input again is a resend on a per-hop
    /// gateway that numbers no hops (0 turns it off).
    pub ussd_resend_window: Duration,
    pub mpesa_allowed_ips: Vec<IpNet>,
    /// Who may call the USSD routes (`DUKA_USSD_SECRET`, `DUKA_USSD_ALLOWED_IPS[_<GATEWAY>]`).
    pub ussd: UssdGuard,
    pub sms: SmsSettings,
    pub record_dir: Option<PathBuf>,
    /// Which sessions `--record` writes (set from `serve`'s flags and their variables).
    pub record_filter: crate::fixtures::record::RecordFilter,
    /// `json` for production log shippers, anything else for compact human logs.
    pub log_format: String,
    /// `DUKA_SESSION_CACHE`: how many sessions this node remembers to skip the hop's read
    /// (0 turns the cache off; see [`crate::session::cache`]).
    pub session_cache: usize,
    /// The abuse and durability limits.
    pub limits: crate::limits::Limits,
    /// `DUKA_CONSOLE_PASSWORD_HASH`: the operator console's argon2 PHC hash; `None` turns the
    /// console off (the demo turns it on with a generated password).
    pub console_password_hash: Option<String>,
    /// `MPESA_TILL`: a Buy Goods till. Pushes go to it (`CustomerBuyGoodsOnline`, `PartyB`) and
    /// `MPESA_SHORTCODE` is the store (head office) number; with the sandbox, the sandbox's
    /// store number and this till.
    pub mpesa_till: Option<String>,
    /// `MPESA_INITIATOR_NAME` and `MPESA_SECURITY_CREDENTIAL`: the API operator refunds are made
    /// as. Both or neither; with the sandbox, the sandbox's own.
    pub mpesa_initiator: Option<(String, SecretString)>,
    /// `DUKA_SHOPS`: the shops served beside this one ([`crate::shops`]).
    pub shops: Vec<crate::shops::ExtraShop>,
    /// The characters this shop's order numbers may start with (all of
    /// [`crate::orders::ORDER_ALPHABET`] but the other shops' prefixes).
    pub order_first_chars: Vec<u8>,
    /// The built-in M-Pesa sandbox's paybill, when not the default (each demo shop has its own).
    pub sandbox_shortcode: Option<String>,
    /// `DUKA_SHOP_<ID>_SERVICE_CODE` of a shop of [`crate::shops`]: hops for this code that reach
    /// the default shop's routes are served by this shop.
    pub service_code: Option<String>,
}

/// Why the configuration cannot be used. Every problem is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Settings {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming every variable that is missing or wrong.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Applies `duka serve --record DIR` and its filters, which outrank the environment's: the
    /// default shop records into `dir`, every shop of `DUKA_SHOPS` into `dir/<id>` (as
    /// `DUKA_RECORD_DIR` does), all with the same filters.
    pub fn record_into(
        &mut self,
        dir: Option<PathBuf>,
        flags: &crate::fixtures::record::RecordFilter,
    ) {
        for shop in &mut self.shops {
            if let Some(dir) = &dir {
                shop.settings.record_dir = Some(crate::shops::fixture_dir(dir, &shop.id));
            }
            shop.settings.record_filter.overridden_by(flags);
        }
        if dir.is_some() {
            self.record_dir = dir;
        }
        self.record_filter.overridden_by(flags);
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming every variable that is missing or wrong.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned());

        let listen = var("DUKA_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
            .parse::<SocketAddr>()
            .unwrap_or_else(|e| {
                problems.push(format!("DUKA_LISTEN: not an address:port ({e})"));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            });
        let public_url = var("DUKA_PUBLIC_URL").map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url {
            if reqwest::Url::parse(url).is_err() {
                problems.push(format!("DUKA_PUBLIC_URL: not a URL: {url:?}"));
            }
        }

        let store = match (var("REDIS_URL"), var("REDIS_CLUSTER_NODES")) {
            (_, Some(nodes)) => StoreSettings::Cluster {
                seeds: nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.contains("://") {
                            s.to_owned()
                        } else {
                            format!("redis://{s}")
                        }
                    })
                    .collect(),
            },
            (Some(url), None) => match url.strip_prefix("redis+cluster://") {
                Some(rest) => StoreSettings::Cluster {
                    seeds: cluster_seeds(rest),
                },
                None => StoreSettings::Redis { url },
            },
            (None, None) => StoreSettings::Embedded,
        };

        let mpesa = match (
            var("MPESA_BASE_URL"),
            var("MPESA_CONSUMER_KEY"),
            var("MPESA_CONSUMER_SECRET"),
            var("MPESA_SHORTCODE"),
            var("MPESA_PASSKEY"),
        ) {
            (None, None, None, None, None) => MpesaSettings::Sandbox,
            (Some(base_url), Some(key), Some(secret), Some(shortcode), Some(passkey)) => {
                if !(5..=7).contains(&shortcode.len())
                    || !shortcode.bytes().all(|b| b.is_ascii_digit())
                {
                    problems.push("MPESA_SHORTCODE: a paybill is 5 to 7 digits".to_owned());
                }
                MpesaSettings::Daraja {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    consumer_key: key,
                    consumer_secret: SecretString::from(secret),
                    shortcode,
                    passkey: SecretString::from(passkey),
                }
            }
            (base, key, secret, shortcode, passkey) => {
                let missing: Vec<&str> = [
                    ("MPESA_BASE_URL", base.is_none()),
                    ("MPESA_CONSUMER_KEY", key.is_none()),
                    ("MPESA_CONSUMER_SECRET", secret.is_none()),
                    ("MPESA_SHORTCODE", shortcode.is_none()),
                    ("MPESA_PASSKEY", passkey.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
                problems.push(format!(
                    "M-Pesa is half configured: set {} too, or unset every MPESA_* variable for the sandbox",
                    missing.join(", ")
                ));
                MpesaSettings::Sandbox
            }
        };

        if matches!(&mpesa, MpesaSettings::Daraja { base_url, .. } if !is_loopback_url(base_url))
            && public_url.is_none()
        {
            problems.push(
                "DUKA_PUBLIC_URL: required with a real Daraja: the public HTTPS base URL Safaricom calls back on".to_owned(),
            );
        }
        let (callback_secret, callback_secret_generated) = match var("MPESA_CALLBACK_SECRET") {
            Some(secret) => {
                if let Err(why) = check_callback_secret(&secret) {
                    problems.push(format!("MPESA_CALLBACK_SECRET: {why}"));
                }
                (SecretString::from(secret), false)
            }
            None => {
                if matches!(mpesa, MpesaSettings::Daraja { .. }) {
                    problems.push(
                        "MPESA_CALLBACK_SECRET: required with a real Daraja, since the registered callback URLs must not change between starts".to_owned(),
                    );
                }
                (SecretString::from(random_secret()), true)
            }
        };

        let seconds = |name: &str, default: u64, problems: &mut Vec<String>| match var(name) {
            None => Duration::from_secs(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    problems.push(format!(
                        "{name}: a whole number of seconds above zero, not {raw:?}"
                    ));
                    Duration::from_secs(default)
                }
            },
        };
        let daraja_given = [
            "MPESA_BASE_URL",
            "MPESA_CONSUMER_KEY",
            "MPESA_CONSUMER_SECRET",
            "MPESA_PASSKEY",
        ]
        .iter()
        .any(|name| var(name).is_some());
        let mpesa_till = till(
            var("MPESA_TILL"),
            &mpesa,
            daraja_given && var("MPESA_SHORTCODE").is_none(),
            &mut problems,
        );
        let mpesa_query_after = seconds("MPESA_QUERY_AFTER_S", 60, &mut problems);
        let order_ttl = seconds("DUKA_ORDER_TTL_S", 86_400, &mut problems);
        let session_ttl = session_ttl(var("DUKA_SESSION_TTL_S"), &mut problems);
        let ussd_resend_window = resend_window(var("DUKA_USSD_RESEND_WINDOW_MS"), &mut problems);

        let mpesa_allowed_ips =
            ip_list("MPESA_ALLOWED_IPS", var("MPESA_ALLOWED_IPS"), &mut problems);
        let ussd = ussd_guard(&var, &mut problems);
        let record_filter = record_filter(&var, &mut problems);
        let limits = crate::limits::Limits::from_lookup(&var, &mut problems);

        let sms = match (var("AT_BASE_URL"), var("AT_USERNAME"), var("AT_API_KEY")) {
            (None, None, None) => SmsSettings::Sandbox,
            (Some(base_url), Some(username), Some(api_key)) => {
                let base_url = base_url.trim_end_matches('/').to_owned();
                let sandbox_host = base_url.contains("sandbox.africastalking.com");
                if sandbox_host != username.eq_ignore_ascii_case("sandbox") {
                    problems.push(format!(
                        "AT_USERNAME {username:?} does not match AT_BASE_URL {base_url}: the username is `sandbox` exactly when the host is AT's sandbox"
                    ));
                }
                SmsSettings::AfricasTalking {
                    base_url,
                    username,
                    api_key: SecretString::from(api_key),
                    sender_id: var("AT_SENDER_ID"),
                }
            }
            (base, username, key) => {
                let missing: Vec<&str> = [
                    ("AT_BASE_URL", base.is_none()),
                    ("AT_USERNAME", username.is_none()),
                    ("AT_API_KEY", key.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
                problems.push(format!(
                    "Africa's Talking SMS is half configured: set {} too, or unset every AT_* variable for the sandbox",
                    missing.join(", ")
                ));
                SmsSettings::Sandbox
            }
        };

        let mut settings = Settings {
            listen,
            public_url,
            menus_dir: PathBuf::from(var("DUKA_MENUS").unwrap_or_else(|| "menus".to_owned())),
            store,
            key_prefix: var("DUKA_KEY_PREFIX").unwrap_or_else(|| "duka".to_owned()),
            mpesa,
            callback_secret,
            callback_secret_generated,
            mpesa_query_after,
            order_ttl,
            session_ttl,
            ussd_resend_window,
            mpesa_allowed_ips,
            ussd,
            sms,
            record_dir: var("DUKA_RECORD_DIR").map(PathBuf::from),
            record_filter,
            log_format: var("DUKA_LOG_FORMAT").unwrap_or_else(|| "compact".to_owned()),
            session_cache: session_cache(var("DUKA_SESSION_CACHE"), &mut problems),
            limits,
            console_password_hash: var("DUKA_CONSOLE_PASSWORD_HASH"),
            mpesa_till,
            mpesa_initiator: initiator(
                var("MPESA_INITIATOR_NAME"),
                var("MPESA_SECURITY_CREDENTIAL"),
                &mut problems,
            ),
            shops: Vec::new(),
            order_first_chars: crate::orders::ORDER_ALPHABET.to_vec(),
            sandbox_shortcode: None,
            service_code: var("DUKA_SERVICE_CODE"),
        };
        settings.shops = crate::shops::from_lookup(&|name| lookup(name), &settings, &mut problems);
        settings.order_first_chars = crate::shops::default_first_chars(&settings.shops);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The URLs Daraja posts refund results and timeouts to: `(result, timeout)` for `api`
    /// `reversal` or `b2c`.
    pub fn refund_urls(&self, public_url: &str, api: &str) -> (String, String) {
        let base = format!(
            "{public_url}/payments/{}/{api}",
            self.callback_secret.expose_secret()
        );
        (format!("{base}/result"), format!("{base}/timeout"))
    }

    /// The public base URL, given `bound`, the address the server actually listens on.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// The URL Daraja posts STK results to.
    pub fn stk_callback_url(&self, public_url: &str) -> String {
        format!(
            "{public_url}/payments/{}/stk",
            self.callback_secret.expose_secret()
        )
    }

    /// The paybill's C2B confirmation and validation URLs.
    pub fn c2b_urls(&self, public_url: &str) -> (String, String) {
        let base = format!(
            "{public_url}/payments/{}/c2b",
            self.callback_secret.expose_secret()
        );
        (format!("{base}/confirm"), format!("{base}/validate"))
    }
}

/// The seeds of `redis+cluster://[user:pw@]h1:p1,h2:p2[/]`: the credentials, given once before
/// the first host, belong to every seed (the cluster client refuses seeds that differ).
/// The seconds `DUKA_SESSION_TTL_S` may say: longer than the telcos' 180 s session limit needs at
/// the low end, and at most an hour, past which a stored session only costs memory.
pub const SESSION_TTL_RANGE_S: std::ops::RangeInclusive<u64> = 30..=3600;

/// `DUKA_SESSION_TTL_S`, default [`crate::keys::SESSION_TTL_MS`]; out of range is a problem.
/// `DUKA_SESSION_CACHE`: 0 to 1,000,000 sessions.
fn session_cache(raw: Option<String>, problems: &mut Vec<String>) -> usize {
    let default = crate::session::cache::DEFAULT_CAPACITY;
    let Some(raw) = raw else {
        return default;
    };
    match raw.parse::<usize>() {
        Ok(n) if n <= 1_000_000 => n,
        _ => {
            problems.push(format!(
                "DUKA_SESSION_CACHE: {raw:?} is not a number of sessions from 0 to 1000000"
            ));
            default
        }
    }
}

/// `DUKA_USSD_RESEND_WINDOW_MS`: 0 to 30000 ms.
fn resend_window(raw: Option<String>, problems: &mut Vec<String>) -> Duration {
    let default = Duration::from_millis(crate::session::RESEND_WINDOW_MS.unsigned_abs());
    let Some(raw) = raw else {
        return default;
    };
    match raw.parse::<u64>() {
        Ok(ms) if ms <= 30_000 => Duration::from_millis(ms),
        _ => {
            problems.push(format!(
                "DUKA_USSD_RESEND_WINDOW_MS: {raw:?} is not a number of milliseconds from 0 to 30000"
            ));
            default
        }
    }
}

fn session_ttl(raw: Option<String>, problems: &mut Vec<String>) -> Duration {
    let default = Duration::from_millis(crate::keys::SESSION_TTL_MS);
    let Some(raw) = raw else {
        return default;
    };
    match raw.parse::<u64>() {
        Ok(s) if SESSION_TTL_RANGE_S.contains(&s) => Duration::from_secs(s),
        _ => {
            problems.push(format!(
                "DUKA_SESSION_TTL_S: a whole number of seconds from {} to {}, not {raw:?}",
                SESSION_TTL_RANGE_S.start(),
                SESSION_TTL_RANGE_S.end()
            ));
            default
        }
    }
}

fn cluster_seeds(rest: &str) -> Vec<String> {
    let rest = rest.trim_end_matches('/');
    let (userinfo, hosts) = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), rest),
    };
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| format!("redis://{userinfo}{host}"))
        .collect()
}

/// True for a URL on this machine (a local stand-in of an outside API, as in tests).
pub fn is_loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|parsed| match parsed.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    })
}

/// `MPESA_TILL`: 5 to 7 digits. With a real Daraja it needs `MPESA_SHORTCODE` as the store
/// number (the half-given M-Pesa check names it when missing, and so does this); with the
/// sandbox alone it puts the sandbox in till mode.
fn till(
    raw: Option<String>,
    mpesa: &MpesaSettings,
    store_number_missing: bool,
    problems: &mut Vec<String>,
) -> Option<String> {
    let till = raw?;
    if !(5..=7).contains(&till.len()) || !till.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "MPESA_TILL: a till number is 5 to 7 digits, not {till:?}"
        ));
        return None;
    }
    if store_number_missing {
        problems.push(
            "MPESA_TILL: a till on Daraja also needs MPESA_SHORTCODE, the store (head office) number"
                .to_owned(),
        );
        return None;
    }
    match mpesa {
        MpesaSettings::Daraja { shortcode, .. } if *shortcode == till => {
            problems.push(format!(
                "MPESA_TILL: {till} is also MPESA_SHORTCODE; the store number and the till differ (Daraja answers SFC_IC0003)"
            ));
            None
        }
        _ => Some(till),
    }
}

/// A callback secret is a path segment Daraja will accept and nobody can guess.
fn check_callback_secret(secret: &str) -> Result<(), String> {
    if secret.len() < 22 {
        return Err("at least 22 URL-safe characters (128 bits)".to_owned());
    }
    if !secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("only letters, digits, - and _".to_owned());
    }
    let lower = secret.to_ascii_lowercase();
    if lower.contains("mpesa") || lower.contains("safaricom") {
        return Err(
            "Daraja refuses callback URLs containing \"mpesa\" or \"safaricom\"".to_owned(),
        );
    }
    Ok(())
}

/// 24 random URL-safe characters (143 bits), with no letters that could spell a banned word.
fn random_secret() -> String {
    const ALPHABET: &[u8] = b"23456789bcdfghjklnqrtvwxyzBCDFGHJKLNQRTVWXYZ";
    let mut rng = rand::rng();
    (0..26)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn parse_ip_or_net(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Which sessions `--record` writes: `DUKA_RECORD_SAMPLE`, `DUKA_RECORD_PHONE`,
/// `DUKA_RECORD_SERVICE_CODE`.
fn record_filter(
    var: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> crate::fixtures::record::RecordFilter {
    let sample = var("DUKA_RECORD_SAMPLE").and_then(|raw| {
        crate::fixtures::record::parse_share(&raw)
            .map_err(|e| problems.push(format!("DUKA_RECORD_SAMPLE: {e}")))
            .ok()
    });
    let phone = var("DUKA_RECORD_PHONE").and_then(|raw| {
        crate::msisdn::Msisdn::parse(&raw)
            .map_err(|e| problems.push(format!("DUKA_RECORD_PHONE: {e}")))
            .ok()
    });
    crate::fixtures::record::RecordFilter {
        sample,
        phone,
        service_code: var("DUKA_RECORD_SERVICE_CODE"),
    }
}

/// A comma-separated list of addresses and CIDRs; every bad entry is a problem.
pub(crate) fn ip_list(name: &str, raw: Option<String>, problems: &mut Vec<String>) -> Vec<IpNet> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|entry| match parse_ip_or_net(entry) {
            Some(net) => Some(net),
            None => {
                problems.push(format!("{name}: not an address or CIDR: {entry:?}"));
                None
            }
        })
        .collect()
}

/// Whether `secret` can be a secret URL path segment: at least 16 letters, digits, - or _.
pub(crate) fn is_path_secret(secret: &str) -> bool {
    secret.len() >= 16
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The USSD routes' secret path segment and allow-lists.
fn ussd_guard(var: &dyn Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> UssdGuard {
    let secret = var("DUKA_USSD_SECRET");
    if let Some(secret) = &secret {
        if !is_path_secret(secret) {
            problems.push(
                "DUKA_USSD_SECRET: use at least 16 letters, digits, - or _ (it is a URL path segment)"
                    .to_owned(),
            );
        }
    }
    let per_gateway = crate::gateway::GATEWAYS
        .iter()
        .filter_map(|gateway| {
            let name = format!(
                "DUKA_USSD_ALLOWED_IPS_{}",
                gateway.name().to_ascii_uppercase()
            );
            let raw = var(&name)?;
            Some((
                gateway.name().to_owned(),
                ip_list(&name, Some(raw), problems),
            ))
        })
        .collect();
    UssdGuard {
        secret: secret.map(SecretString::from),
        allowed_ips: ip_list(
            "DUKA_USSD_ALLOWED_IPS",
            var("DUKA_USSD_ALLOWED_IPS"),
            problems,
        ),
        per_gateway,
    }
}

/// `MPESA_INITIATOR_NAME` with `MPESA_SECURITY_CREDENTIAL`: both or neither.
fn initiator(
    name: Option<String>,
    credential: Option<String>,
    problems: &mut Vec<String>,
) -> Option<(String, SecretString)> {
    match (name, credential) {
        (None, None) => None,
        (Some(name), Some(credential))
            if !name.trim().is_empty() && !credential.trim().is_empty() =>
        {
            Some((
                name.trim().to_owned(),
                SecretString::from(credential.trim().to_owned()),
            ))
        }
        _ => {
            problems.push(
                "refunds need both MPESA_INITIATOR_NAME and MPESA_SECURITY_CREDENTIAL (the initiator's password encrypted with Safaricom's certificate), or neither".to_owned(),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn the_session_cache_defaults_and_can_be_turned_off() {
        let mut problems = vec![];
        assert_eq!(
            session_cache(None, &mut problems),
            crate::session::cache::DEFAULT_CAPACITY
        );
        assert_eq!(session_cache(Some("0".into()), &mut problems), 0);
        assert!(problems.is_empty());
        session_cache(Some("lots".into()), &mut problems);
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn the_resend_window_defaults_to_three_seconds_and_can_be_turned_off() {
        assert_eq!(resend_window(None, &mut vec![]), Duration::from_secs(3));
        assert_eq!(resend_window(Some("0".into()), &mut vec![]), Duration::ZERO);
        let mut problems = vec![];
        resend_window(Some("a while".into()), &mut problems);
        resend_window(Some("60000".into()), &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn the_session_ttl_defaults_to_five_minutes_and_takes_30_s_to_an_hour() {
        assert_eq!(load(&[]).unwrap().session_ttl, Duration::from_secs(300));
        for (raw, secs) in [("30", 30), ("600", 600), ("3600", 3600)] {
            let settings = load(&[("DUKA_SESSION_TTL_S", raw)]).unwrap();
            assert_eq!(settings.session_ttl, Duration::from_secs(secs));
        }
        for bad in ["29", "3601", "0", "-5", "5m", "1.5"] {
            let error = load(&[("DUKA_SESSION_TTL_S", bad)]).unwrap_err();
            assert_eq!(
                error.problems,
                [format!(
                    "DUKA_SESSION_TTL_S: a whole number of seconds from 30 to 3600, not {bad:?}"
                )]
            );
        }
    }

    #[test]
    fn no_configuration_runs_the_demo() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            settings.public_url_for(settings.listen),
            "http://127.0.0.1:8080"
        );
        assert_eq!(settings.store, StoreSettings::Embedded);
        assert!(matches!(settings.mpesa, MpesaSettings::Sandbox));
        assert!(matches!(settings.sms, SmsSettings::Sandbox));
        assert!(settings.callback_secret_generated);
        check_callback_secret(settings.callback_secret.expose_secret()).unwrap();
    }

    #[test]
    fn a_till_with_the_sandbox_puts_the_sandbox_in_till_mode() {
        let settings = load(&[("MPESA_TILL", "5123456")]).unwrap();
        assert!(matches!(settings.mpesa, MpesaSettings::Sandbox));
        assert_eq!(settings.mpesa_till.as_deref(), Some("5123456"));
        assert_eq!(load(&[]).unwrap().mpesa_till, None);
    }

    #[test]
    fn a_half_given_or_malformed_till_configuration_is_refused() {
        let daraja = [
            ("MPESA_BASE_URL", "http://127.0.0.1:4010"),
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_PASSKEY", "p"),
            ("MPESA_CALLBACK_SECRET", "Xq7vT2kd9LwP4nRbH3s8Ze"),
        ];
        let without_store = [&daraja[..], &[("MPESA_TILL", "5123456")]].concat();
        let err = load(&without_store).unwrap_err().to_string();
        assert!(err.contains("MPESA_SHORTCODE"), "{err}");
        assert!(err.contains("MPESA_TILL"), "{err}");

        let mut full = [&daraja[..], &[("MPESA_SHORTCODE", "174379")]].concat();
        assert_eq!(load(&full).unwrap().mpesa_till, None);
        full.push(("MPESA_TILL", "51234x6"));
        let err = load(&full).unwrap_err().to_string();
        assert!(
            err.contains("MPESA_TILL: a till number is 5 to 7 digits"),
            "{err}"
        );
        full.pop();
        full.push(("MPESA_TILL", "174379"));
        assert!(load(&full).unwrap_err().to_string().contains("SFC_IC0003"));
        full.pop();
        full.push(("MPESA_TILL", "5123456"));
        assert_eq!(load(&full).unwrap().mpesa_till.as_deref(), Some("5123456"));

        // A store number without the rest of Daraja is a half-given Daraja, till or not.
        let err = load(&[("MPESA_TILL", "5123456"), ("MPESA_SHORTCODE", "174379")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("half configured"), "{err}");
    }

    #[test]
    fn a_half_given_mpesa_configuration_names_what_is_missing() {
        let err = load(&[("MPESA_CONSUMER_KEY", "k")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MPESA_CONSUMER_SECRET"), "{err}");
        assert!(err.contains("MPESA_PASSKEY"), "{err}");
        assert!(err.contains("MPESA_BASE_URL"), "{err}");
        assert!(!err.contains("MPESA_CONSUMER_KEY,"), "{err}");
    }

    #[test]
    fn a_real_daraja_needs_a_fixed_callback_secret() {
        let daraja = [
            ("MPESA_BASE_URL", "https://api.safaricom.co.ke"),
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_SHORTCODE", "174379"),
            ("MPESA_PASSKEY", "p"),
        ];
        let err = load(&daraja).unwrap_err().to_string();
        assert!(err.contains("MPESA_CALLBACK_SECRET"), "{err}");
        let mut with_secret = daraja.to_vec();
        with_secret.push(("MPESA_CALLBACK_SECRET", "Xq7vT2kd9LwP4nRbH3s8Ze"));
        let err = load(&with_secret).unwrap_err().to_string();
        assert!(err.contains("DUKA_PUBLIC_URL"), "{err}");
        with_secret.push(("DUKA_PUBLIC_URL", "https://shop.example.co.ke"));
        assert!(load(&with_secret).is_ok());
    }

    #[test]
    fn a_local_daraja_stand_in_needs_no_public_url() {
        assert!(is_loopback_url("http://127.0.0.1:4010"));
        assert!(is_loopback_url("http://[::1]:4010"));
        assert!(is_loopback_url("http://localhost:4010"));
        assert!(!is_loopback_url("https://api.safaricom.co.ke"));
        let stand_in = load(&[
            ("MPESA_BASE_URL", "http://127.0.0.1:4010"),
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_SHORTCODE", "174379"),
            ("MPESA_PASSKEY", "p"),
            ("MPESA_CALLBACK_SECRET", "Xq7vT2kd9LwP4nRbH3s8Ze"),
        ]);
        assert!(stand_in.is_ok());
    }

    #[test]
    fn callback_secrets_daraja_would_refuse_are_refused() {
        let err = load(&[("MPESA_CALLBACK_SECRET", "my-mpesa-callbacks-are-here")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mpesa"), "{err}");
        assert!(load(&[("MPESA_CALLBACK_SECRET", "short")]).is_err());
    }

    #[test]
    fn a_sandbox_username_on_the_live_host_is_refused() {
        let err = load(&[
            ("AT_BASE_URL", "https://api.africastalking.com"),
            ("AT_USERNAME", "sandbox"),
            ("AT_API_KEY", "k"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("AT_USERNAME"), "{err}");
        let err = load(&[("AT_API_KEY", "k")]).unwrap_err().to_string();
        assert!(
            err.contains("AT_BASE_URL") && err.contains("AT_USERNAME"),
            "{err}"
        );
    }

    #[test]
    fn cluster_mode_comes_from_either_variable() {
        let from_url =
            load(&[("REDIS_URL", "redis+cluster://10.0.0.1:7000,10.0.0.2:7000")]).unwrap();
        assert_eq!(
            from_url.store,
            StoreSettings::Cluster {
                seeds: vec![
                    "redis://10.0.0.1:7000".into(),
                    "redis://10.0.0.2:7000".into()
                ]
            }
        );
        let with_password = load(&[(
            "REDIS_URL",
            "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7000/",
        )])
        .unwrap();
        assert_eq!(
            with_password.store,
            StoreSettings::Cluster {
                seeds: vec![
                    "redis://:s3cret@10.0.0.1:7000".into(),
                    "redis://:s3cret@10.0.0.2:7000".into()
                ]
            }
        );
        let from_nodes = load(&[(
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, redis://10.0.0.2:7000",
        )])
        .unwrap();
        assert_eq!(from_nodes.store, from_url.store);
        assert_eq!(
            load(&[("REDIS_URL", "redis://127.0.0.1:6379")])
                .unwrap()
                .store,
            StoreSettings::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
    }

    #[test]
    fn allowed_ips_take_addresses_and_cidrs() {
        let settings = load(&[("MPESA_ALLOWED_IPS", "196.201.214.200, 196.201.212.0/24")]).unwrap();
        assert_eq!(settings.mpesa_allowed_ips.len(), 2);
        assert!(load(&[("MPESA_ALLOWED_IPS", "not-an-ip")]).is_err());
    }

    #[test]
    fn refunds_need_both_initiator_settings_or_neither() {
        let mut problems = Vec::new();
        assert!(initiator(None, None, &mut problems).is_none());
        assert!(initiator(Some("api".into()), Some("c".into()), &mut problems).is_some());
        assert!(problems.is_empty());
        assert!(initiator(Some("api".into()), None, &mut problems).is_none());
        assert!(problems[0].contains("MPESA_SECURITY_CREDENTIAL"));
    }
}
