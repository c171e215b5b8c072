//! `duka soak`: a chaos soak that proves the money is right when everything around Duka fails.
//!
//! The soak hosts the outside world in this process (the M-Pesa and SMS sandboxes, so what moved
//! and what was sent survives Duka's deaths), runs its own `redis-server` (AOF, fsync every
//! second) and `duka serve` as children, and sends thousands of shoppers through the gateways
//! with seeded payment fates while it kills Duka and Redis with `-9` and fails Daraja and the
//! SMS API. When the system has settled it prints the books and exits non-zero if any
//! invariant fails.

pub mod books;
pub mod processes;
pub mod script;
pub mod walk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use crate::bench::check::Expected;
use crate::bench::plan::Plan;
use crate::menu::Catalog;
use crate::mpesa::{DarajaClient, Endpoint};
use crate::sandbox::mpesa::{Fault, MpesaSandbox, SandboxConfig};
use crate::sandbox::sms::{SmsSandbox, SmsSandboxConfig, Step};
use processes::{Duka, Redis};
use script::Fate;
use walk::{Walked, World};

/// The callback secret the soak's Duka uses (any long random-looking value).
const CALLBACK_SECRET: &str = "Soak7vT2kd9LwP4nRbH3s8Ze";
const RESEND_WINDOW_MS: u64 = 1000;

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Simulated shoppers, one phone each.
    #[arg(long, default_value_t = 10_000)]
    pub shoppers: u64,
    /// Shoppers in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seeds every shopper's fate and gateway (default: drawn and printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Times `duka serve` is killed with -9 and restarted.
    #[arg(long, default_value_t = 2)]
    pub duka_kills: u32,
    /// Times Redis is killed with -9 and restarted from its AOF.
    #[arg(long, default_value_t = 1)]
    pub redis_kills: u32,
    /// Where Redis's AOF and the logs go (default: a new folder under the temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The menus folder.
    #[arg(long, env = "DUKA_MENUS", default_value = "menus")]
    pub menus: PathBuf,
    /// How long to wait for the system to settle after the last shopper, in seconds.
    #[arg(long, default_value_t = 120)]
    pub settle_s: u64,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("duka-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let menus = std::fs::canonicalize(&args.menus)
        .with_context(|| format!("no menus at {}", args.menus.display()))?;
    let catalog = Catalog::load(&menus)?;
    let plan = Plan::from_catalog(&catalog)?;
    let expected = Expected::from_catalog(&catalog)?;
    println!(
        "soak: {} shoppers, {} at once, seed {seed}, {} Duka kills, {} Redis kills, in {}",
        args.shoppers,
        args.concurrency,
        args.duka_kills,
        args.redis_kills,
        dir.display()
    );

    // The books are drawn from what the sandboxes saw: keep every record of the run (a shopper
    // makes a handful of requests, pushes, callbacks and messages of each kind).
    crate::sandbox::keep_records(
        usize::try_from(args.shoppers)
            .unwrap_or(usize::MAX / 16)
            .saturating_mul(8)
            .max(crate::sandbox::MAX_RECORDS),
    );
    let mpesa = Arc::new(
        MpesaSandbox::start(SandboxConfig {
            callback_delay: Duration::from_millis(800),
            seed: Some(seed),
            ..SandboxConfig::default()
        })
        .await?,
    );
    let sms = Arc::new(
        SmsSandbox::start(SmsSandboxConfig {
            // Not `sandbox`: Duka keeps that username for AT's own sandbox host.
            username: "duka-soak".into(),
            seed,
            ..SmsSandboxConfig::default()
        })
        .await?,
    );
    let mut redis = Redis::start(&dir, crate::testing::free_port()?)?;
    let redis_url = redis.url();
    let port = crate::testing::free_port()?;
    let public_url = format!("http://127.0.0.1:{port}");
    let env: Vec<(String, String)> = [
        ("REDIS_URL", redis_url.clone()),
        ("MPESA_BASE_URL", mpesa.base_url().to_owned()),
        ("MPESA_CONSUMER_KEY", mpesa.consumer_key()),
        (
            "MPESA_CONSUMER_SECRET",
            mpesa.consumer_secret().expose_secret().to_owned(),
        ),
        ("MPESA_SHORTCODE", mpesa.shortcode()),
        ("MPESA_PASSKEY", mpesa.passkey().expose_secret().to_owned()),
        ("MPESA_CALLBACK_SECRET", CALLBACK_SECRET.to_owned()),
        // The API operator `duka mpesa find` queries with.
        ("MPESA_INITIATOR_NAME", mpesa.config().initiator_name),
        (
            "MPESA_SECURITY_CREDENTIAL",
            mpesa
                .config()
                .security_credential
                .expose_secret()
                .to_owned(),
        ),
        ("MPESA_QUERY_AFTER_S", "2".to_owned()),
        ("DUKA_PUBLIC_URL", public_url.clone()),
        ("AT_BASE_URL", sms.base_url()),
        ("AT_USERNAME", sms.username().to_owned()),
        ("AT_API_KEY", sms.api_key().expose_secret().to_owned()),
        ("DUKA_MENUS", menus.display().to_string()),
        ("DUKA_USSD_RESEND_WINDOW_MS", RESEND_WINDOW_MS.to_string()),
        // Every shopper gets a receipt or a notice or two: the shop's daily SMS ceiling is
        // raised above what the run can send, so it holds nothing back.
        (
            "DUKA_SMS_DAILY_LIMIT",
            (args.shoppers.saturating_mul(4) + 1_000).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut duka = Duka::start(&dir, port, env).await?;

    // The paybill's URLs, registered once, as `duka mpesa register-urls` would.
    let base = format!("{public_url}/payments/{CALLBACK_SECRET}/c2b");
    DarajaClient::new(mpesa.daraja_config())?
        .register_c2b_urls(&format!("{base}/confirm"), &format!("{base}/validate"))
        .await
        .context("registering the C2B URLs with the sandbox")?;

    let world = Arc::new(World {
        duka_url: duka.url(),
        plan,
        expected,
        seed,
        tag: (seed % 1_000_000) as u32,
        mpesa: mpesa.clone(),
        resend_window: Duration::from_millis(RESEND_WINDOW_MS),
        apology: crate::menu::apology(&catalog, crate::menu::Lang::En).text,
        redials: AtomicU64::new(0),
        hops: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });

    let started = Instant::now();
    let finished = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (world, mpesa, sms, finished) =
            (world.clone(), mpesa.clone(), sms.clone(), finished.clone());
        let (shoppers, duka_kills, redis_kills) =
            (args.shoppers, args.duka_kills, args.redis_kills);
        tokio::spawn(async move {
            let log = chaos(
                &world,
                &mpesa,
                &sms,
                &mut duka,
                &mut redis,
                &finished,
                shoppers,
                duka_kills,
                redis_kills,
            )
            .await;
            (duka, redis, log)
        })
    };

    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.shoppers {
        let permit = semaphore.clone().acquire_owned().await?;
        let world = world.clone();
        tasks.spawn(async move {
            let walked = walk::shopper(world, index).await;
            drop(permit);
            walked
        });
    }
    let mut walked: Vec<Walked> = Vec::with_capacity(args.shoppers as usize);
    while let Some(done) = tasks.join_next().await {
        walked.push(done?);
    }
    finished.store(true, Ordering::Relaxed);
    let (duka, _redis, log) = chaos.await?;
    let walking = started.elapsed();
    mpesa.clear_faults();
    sms.clear_faults();

    // Settle: no attempt pending, every receipt out, within the time limit.
    let settle_deadline = Instant::now() + Duration::from_secs(args.settle_s);
    let mut orders = books::read_orders(&redis_url)?;
    let mut states = books::receipt_states(&redis_url, &orders)?;
    while !(books::settled(&orders, &sms, &states) && books::open_lookups(&redis_url)? == 0)
        && Instant::now() < settle_deadline
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        orders = books::read_orders(&redis_url)?;
        states = books::receipt_states(&redis_url, &orders)?;
    }
    let paybills: Vec<walk::PaybillPaid> =
        walked.iter().filter_map(|w| w.paybill.clone()).collect();

    // The operator's round: every payment whose confirmation Duka missed, looked up by the
    // receipt its shopper quotes, for the order the shopper names (`duka mpesa find`).
    let missed = books::missed(&orders, &mpesa, &paybills);
    let mut found_log = Vec::new();
    for payment in &missed {
        let (ok, out) = duka
            .command(vec![
                "mpesa".into(),
                "find".into(),
                payment.receipt.clone(),
                "--order".into(),
                payment.order.clone(),
                "--wait".into(),
                "30".into(),
            ])
            .await?;
        found_log.push(format!(
            "  {} KES {} for order {}: {}{}",
            payment.receipt,
            payment.amount,
            payment.order,
            out.lines().next().unwrap_or("no answer"),
            if ok { "" } else { " (exit non-zero)" }
        ));
    }
    if !missed.is_empty() {
        let settle_deadline = Instant::now() + Duration::from_secs(args.settle_s);
        loop {
            orders = books::read_orders(&redis_url)?;
            states = books::receipt_states(&redis_url, &orders)?;
            let quiet =
                books::settled(&orders, &sms, &states) && books::open_lookups(&redis_url)? == 0;
            if quiet || Instant::now() > settle_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let settled = books::settled(&orders, &sms, &states);

    println!("{log}");
    let placed = walked.iter().filter(|w| w.order.is_some()).count();
    let abandoned: Vec<&Walked> = walked.iter().filter(|w| w.abandoned.is_some()).collect();
    println!(
        "shoppers: {} in {:.1} s, {} hops, {} redials while Duka or Redis was down, {placed} orders placed, {} walks abandoned",
        walked.len(),
        walking.as_secs_f64(),
        world.hops.load(Ordering::Relaxed),
        world.redials.load(Ordering::Relaxed),
        abandoned.len(),
    );
    for w in abandoned.iter().take(5) {
        println!(
            "  abandoned ({}): {}",
            w.gateway,
            w.abandoned.as_deref().unwrap_or_default()
        );
    }
    let mut fates = std::collections::BTreeMap::new();
    for w in &walked {
        *fates.entry(w.fate).or_insert(0u64) += 1;
    }
    println!(
        "fates: {}",
        Fate::ALL
            .iter()
            .map(|f| format!("{} {}", fates.get(f).copied().unwrap_or(0), f.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "settled: {}",
        if settled {
            "yes".to_owned()
        } else {
            format!("NO, still busy after {} s", args.settle_s)
        }
    );
    println!(
        "duka mpesa find, for each payment Duka missed: {}{}",
        missed.len(),
        found_log
            .iter()
            .map(|l| format!("\n{l}"))
            .collect::<String>()
    );
    books::write_trail(&dir, &mpesa, &sms, &paybills)?;
    let books = books::balance(&orders, &mpesa, &sms, &paybills, &states);
    print!("{}", books.text);
    Ok(if books.ok && settled {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Kills Duka and Redis at even points of the run, and fails Daraja's push and the SMS API
/// every twentieth of it. Returns what it did, one line each.
#[allow(clippy::too_many_arguments)]
async fn chaos(
    world: &World,
    mpesa: &MpesaSandbox,
    sms: &SmsSandbox,
    duka: &mut Duka,
    redis: &mut Redis,
    finished: &AtomicBool,
    shoppers: u64,
    duka_kills: u32,
    redis_kills: u32,
) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Act {
        KillDuka,
        KillRedis,
        Fault(u32),
    }
    let mut plan: Vec<(u64, Act)> = Vec::new();
    for i in 0..duka_kills {
        plan.push((
            shoppers * u64::from(2 * i + 1) / u64::from(2 * duka_kills + 1),
            Act::KillDuka,
        ));
    }
    for i in 0..redis_kills {
        plan.push((
            shoppers * u64::from(i + 1) / u64::from(redis_kills + 1),
            Act::KillRedis,
        ));
    }
    for i in 1..20u32 {
        plan.push((shoppers * u64::from(i) / 20, Act::Fault(i)));
    }
    plan.sort_by_key(|(at, _)| *at);
    let mut log = Vec::new();
    let started = Instant::now();
    for (at, act) in plan {
        while world.done.load(Ordering::Relaxed) < at {
            if finished.load(Ordering::Relaxed) {
                return log.join("\n");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let when = format!(
            "{:>6.1} s, shopper {at:>5}",
            started.elapsed().as_secs_f64()
        );
        match act {
            Act::KillDuka => match duka.kill_and_restart(Duration::from_secs(1)).await {
                Ok(()) => log.push(format!("{when}: duka serve killed -9, back after 1 s down")),
                Err(e) => log.push(format!(
                    "{when}: duka serve killed -9, RESTART FAILED: {e:#}"
                )),
            },
            Act::KillRedis => {
                let killed = Instant::now();
                match redis.kill_and_restart() {
                    Ok(()) => log.push(format!(
                        "{when}: redis-server killed -9, restarted from its AOF in {} ms",
                        killed.elapsed().as_millis()
                    )),
                    Err(e) => log.push(format!("{when}: redis-server RESTART FAILED: {e:#}")),
                }
            }
            Act::Fault(i) => {
                if i % 2 == 0 {
                    mpesa.fail_next(Endpoint::StkPush, 3, Fault::Unavailable);
                    mpesa.fail_next(Endpoint::StkPush, 1, Fault::ErrorAfterProcessing);
                } else {
                    sms.script(std::iter::repeat_n(Step::FailRequest(503), 5));
                }
            }
        }
    }
    log.push(
        "faults: Daraja STK push 503 x3 + 500-after-processing x1, nine times; SMS API 503 x5, ten times"
            .to_owned(),
    );
    log.join("\n")
}
