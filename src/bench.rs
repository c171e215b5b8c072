//! `duka bench`: a load generator that walks simulated shoppers through the whole shop.
//!
//! Each shopper is a new session on a new phone (`+2547…`, unique in the run) that dials, opens
//! the shop, picks a category and a product (paging with `98` when the product is further down
//! the list), types a quantity, checks out and pays with M-Pesa, which ends with `END Order …`
//! (`--no-pay` stops at the checkout screen instead). Every hop is the form Africa's Talking posts,
//! sent after the previous reply arrived, and every reply is checked: HTTP 200, `CON`/`END` as
//! expected, the right screen, and at checkout `Total KES X` with X the price times the quantity.
//! Shoppers are spread over the catalog so every product of every category is bought.
//!
//! - [`plan`] works out who buys what, and the totals, from `menus/`;
//! - [`check`] holds the expected screens and the error kinds;
//! - [`shopper`] walks one session after the other on a worker's connection;
//! - [`client`] is that connection: HTTP/1.1 kept alive, one hop at a time;
//! - [`report`] merges the workers' tallies and prints the result, as text or `--json`;
//! - [`trivial`] is a comparison server that answers instantly, for `--self-test`;
//! - [`compare`] runs Duka and a one-round-trip baseline alternately, for `--compare`.
//!
//! The run stops at whichever comes first, `--sessions` or `--duration`; no hop is sent after
//! the deadline. A progress line goes to stderr every second. The exit code is non-zero when any
//! hop failed, or no session completed, so a CI smoke run catches errors; speed is reported,
//! never asserted.
//!
//! Only loopback targets are accepted: this tool exists to load our own server on this machine,
//! and a typo must not turn it on someone else's.

pub mod check;
pub mod client;
pub mod compare;
pub mod plan;
pub mod report;
pub mod shopper;
pub mod trivial;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use self::check::Expected;
use self::client::{Connection, Target};
use self::plan::{group_thousands, Plan};
use self::report::{Setup, Summary, Tally};
use self::shopper::Run;
use self::trivial::Trivial;
use crate::menu::Catalog;

/// Arguments of `duka bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The server to load: its base URL (`http://127.0.0.1:8080`, with the secret path segment
    /// if it has one) or a full callback URL. Loopback addresses only.
    #[arg(long, required_unless_present_any = ["self_test", "trivial_server", "compare"])]
    pub url: Option<String>,
    /// The gateway whose requests the shoppers send (africastalking, hubtel, emergent, arkesel,
    /// nalo, beem, safaricom, airtel, infobip, cellulant).
    #[arg(long, default_value = "africastalking")]
    pub gateway: String,
    /// On a gateway that numbers no hops (arkesel, nalo, airtel, infobip, cellulant), a shopper
    /// about to type the same input twice in a row waits this long first, as the server takes a
    /// quicker repeat for a resend. Match the server's DUKA_USSD_RESEND_WINDOW_MS; start both
    /// with 0 to measure such a gateway at full speed.
    #[arg(long, default_value_t = 3_000)]
    pub resend_window_ms: u64,
    /// How many shopper sessions to run at most.
    #[arg(long, default_value_t = 10_000)]
    pub sessions: u64,
    /// How many shoppers are in a session at any time (one connection each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// How many seconds to run at most; no hop is sent after that.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Stop each session at the checkout screen instead of paying (no order, no STK push).
    #[arg(long)]
    pub no_pay: bool,
    /// The folder of menus and catalog the server uses (to know products and prices).
    #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
    pub menus: PathBuf,
    /// How long one hop may take, in milliseconds, before it counts as a timeout.
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// The server's process id: its resident memory is reported at the end.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object (for scripts) instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Measure the bench itself: run against a built-in server that answers every hop from
    /// memory, without storage.
    #[arg(long, conflicts_with = "url")]
    pub self_test: bool,
    /// With --self-test: make one Redis round trip per hop on this Redis, to see what a round
    /// trip costs.
    #[arg(long, value_name = "REDIS_URL")]
    pub trivial_redis: Option<String>,
    /// Only run the trivial comparison server on this loopback address, until Ctrl-C.
    #[arg(long, hide = true, value_name = "ADDR", conflicts_with_all = ["url", "self_test"])]
    pub trivial_server: Option<SocketAddr>,
    /// Compare, in one run and alternating, `duka serve` on a fresh Redis with a bare handler
    /// making one Redis round trip per hop on another, `--rounds` times each (see
    /// `bench::compare`). Uses `--duration`, `--concurrency`, `--sessions`, `--no-pay`.
    #[arg(long, conflicts_with_all = ["url", "self_test", "trivial_server"])]
    pub compare: bool,
    /// With --compare: how many rounds (each runs both servers).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// With --compare: an environment variable for `duka serve` only, `NAME=VALUE`
    /// (repeatable): one shape of Duka against the same baseline, e.g.
    /// `DUKA_RUNTIME=current_thread` or `DUKA_SESSION_CACHE=0`.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env_pair, requires = "compare")]
    pub duka_env: Vec<(String, String)>,
}

/// `NAME=VALUE`, for `--duka-env`.
fn parse_env_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_owned(), value.to_owned()))
        }
        _ => Err(format!("{raw:?} is not NAME=VALUE")),
    }
}

/// Why a `--url` is refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("only http:// URLs are supported, not {0}://")]
    Scheme(String),
    #[error("{0} is not a loopback address: duka bench only loads a server on this machine")]
    NotLoopback(String),
}

/// Reads `--url` into where to connect and what to post to.
///
/// # Errors
/// [`TargetError`] for anything but an `http://` URL on a loopback address (`localhost`,
/// `127.0.0.0/8`, `[::1]`).
pub fn parse_target(url: &str) -> Result<Target, TargetError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(TargetError::Scheme(parsed.scheme().to_owned()));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| TargetError::Invalid(format!("{url} has no host")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if bare.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bare.parse::<IpAddr>()
            .map_err(|_| TargetError::NotLoopback(host.to_owned()))?
    };
    if !ip.is_loopback() {
        return Err(TargetError::NotLoopback(ip.to_string()));
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    // A URL may name the gateway's own path (`…/ussd/africastalking`): what comes before
    // `/ussd/` is the prefix (a secret path segment, or nothing).
    let path = parsed.path();
    let prefix = path
        .find("/ussd/")
        .map_or(path, |at| &path[..at])
        .trim_end_matches('/')
        .to_owned();
    let host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host,
        prefix,
    })
}

/// Runs the benchmark; returns the process exit code.
///
/// # Errors
/// The benchmark could not run: invalid arguments or menus, a refused URL, a trivial server
/// that cannot start. Failed hops are not errors here: they are reported and make the exit
/// code non-zero.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(args.sessions >= 1, "--sessions must be at least 1");
    anyhow::ensure!(
        args.duration.is_finite() && args.duration > 0.0 && args.duration <= 86_400.0,
        "--duration must be a number of seconds above 0 (and at most a day)"
    );
    anyhow::ensure!(args.timeout_ms >= 1, "--timeout-ms must be at least 1");
    let catalog = Catalog::load(&args.menus)
        .with_context(|| format!("the menus in {} are invalid", args.menus.display()))?;

    if args.compare {
        let args = Arc::new(args);
        return tokio::task::spawn_blocking(move || compare::run(&args)).await?;
    }
    if let Some(addr) = args.trivial_server {
        return serve_trivial(addr, catalog, args.trivial_redis.as_deref()).await;
    }

    let plan = Plan::from_catalog(&catalog)?;
    let expected = Expected::from_catalog(&catalog)?;
    let (target, trivial_task) = if args.self_test {
        let listener = trivial::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let addr = listener.local_addr()?;
        let server = Arc::new(Trivial::new(catalog, args.trivial_redis.as_deref()).await?);
        let task = tokio::spawn(trivial::serve(listener, server));
        (parse_target(&format!("http://{addr}"))?, Some(task))
    } else {
        let url = args
            .url
            .as_deref()
            .context("--url is required (or --self-test)")?;
        (parse_target(url)?, None)
    };
    let gateway = crate::gateway::by_name(&args.gateway).with_context(|| {
        format!(
            "--gateway {:?} is not one Duka speaks ({})",
            args.gateway,
            crate::gateway::names()
        )
    })?;
    anyhow::ensure!(
        !args.self_test || gateway.name() == crate::gateway::africastalking::NAME,
        "--self-test's trivial server speaks only africastalking"
    );
    let url = format!(
        "http://{}{} as {}",
        target.host,
        target.prefix,
        gateway.title()
    );

    let tag = rand::random::<u32>() % 100_000_000;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let run = Arc::new(Run::new(
        shopper::Through {
            gateway,
            resend_pause: Duration::from_millis(args.resend_window_ms),
        },
        plan,
        expected,
        tag,
        args.sessions,
        deadline,
        !args.no_pay,
    ));
    let timeout = Duration::from_millis(args.timeout_ms);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            tokio::spawn(shopper::work(
                run.clone(),
                Connection::new(target.clone(), timeout),
            ))
        })
        .collect();
    let progress = (!args.quiet).then(|| tokio::spawn(progress(run.clone(), started)));

    let mut tally = Tally::new();
    for worker in workers {
        tally.merge(worker.await.context("a bench worker failed")?);
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    if let Some(task) = trivial_task {
        task.abort();
    }

    let summary = Summary::new(
        Setup {
            url,
            concurrency: args.concurrency,
            session_limit: args.sessions,
            duration_limit_s: args.duration,
            pay: !args.no_pay,
        },
        &tally,
        elapsed,
        args.server_pid.and_then(resident_kib),
    );
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.render_text());
    }
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints a progress line to stderr every second until aborted.
async fn progress(run: Arc<Run>, started: Instant) {
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::from_std(started) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut last_hops = 0;
    let mut last_at = started;
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let hops = run.live.hops.load(Ordering::Relaxed);
        let rate = (hops - last_hops) as f64 / (now - last_at).as_secs_f64().max(1e-9);
        eprintln!(
            "[{:>5.1} s] hops {} ({}/s)  sessions {} completed  errors {}",
            (now - started).as_secs_f64(),
            group_thousands(hops),
            group_thousands(rate.round() as u64),
            group_thousands(run.live.completed.load(Ordering::Relaxed)),
            group_thousands(run.live.errors.load(Ordering::Relaxed)),
        );
        last_hops = hops;
        last_at = now;
    }
}

/// Runs only the trivial comparison server, until Ctrl-C.
async fn serve_trivial(
    addr: SocketAddr,
    catalog: Catalog,
    redis_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let listener = trivial::bind(addr).await?;
    let server = Arc::new(Trivial::new(catalog, redis_url).await?);
    eprintln!(
        "trivial comparison server on http://{}/ussd/africastalking ({}); Ctrl-C stops it",
        listener.local_addr()?,
        if redis_url.is_some() {
            "one Redis SET per hop"
        } else {
            "no storage"
        }
    );
    tokio::select! {
        served = trivial::serve(listener, server) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The resident set size of a process, in KiB, from `/proc` (Linux only).
fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_or_a_gateway_url_gives_the_server_and_its_prefix() {
        let target = parse_target("http://127.0.0.1:8080").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.prefix, "");
        let full = parse_target("http://localhost:9000/ussd/africastalking").unwrap();
        assert_eq!(full.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(full.host, "localhost:9000");
        assert_eq!(full.prefix, "");
        let secret = parse_target("http://127.0.0.1:8080/s3cr3t-path-0123456/ussd/hubtel").unwrap();
        assert_eq!(secret.prefix, "/s3cr3t-path-0123456");
        let v6 = parse_target("http://[::1]:8080/").unwrap();
        assert_eq!(v6.addr, "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn only_plain_http_on_loopback_is_accepted() {
        assert!(matches!(
            parse_target("http://10.0.0.5:8080"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            parse_target("http://shop.example.com"),
            Err(TargetError::NotLoopback(_))
        ));
        assert!(matches!(
            parse_target("https://127.0.0.1:8443"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            parse_target("127.0.0.1:8080"),
            Err(TargetError::Invalid(_) | TargetError::Scheme(_))
        ));
    }

    #[test]
    fn a_duka_env_is_a_name_and_a_value() {
        assert_eq!(
            parse_env_pair("DUKA_RUNTIME=current_thread").unwrap(),
            ("DUKA_RUNTIME".to_owned(), "current_thread".to_owned())
        );
        assert_eq!(
            parse_env_pair("DUKA_X=a=b").unwrap(),
            ("DUKA_X".to_owned(), "a=b".to_owned())
        );
        assert!(parse_env_pair("DUKA_RUNTIME").is_err());
        assert!(parse_env_pair("=1").is_err());
    }

    #[test]
    fn the_resident_size_of_this_process_is_readable() {
        if cfg!(target_os = "linux") {
            assert!(resident_kib(std::process::id()).is_some_and(|kib| kib > 0));
        }
    }
}
