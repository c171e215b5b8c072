//! Building and running the server: the store, the catalog, the sandboxes, the worker, the routes.
//!
//! [`Application::build`] does everything that can fail at start-up (bad menus, an unreachable
//! Redis, a sandbox that cannot bind) before the port is opened, so a misconfigured node never
//! takes traffic. [`router`] lists every HTTP path in one table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::background::Background;
use crate::bounds::Bounds;
use crate::config::{MpesaSettings, Settings, SmsSettings, StoreSettings};
use crate::fixtures::record::Recorder;
use crate::gateway::guard::UssdGuard;
use crate::jobs::{run_worker, JobHandler};
use crate::keys::Keys;
use crate::menu::Catalog;
use crate::metrics::Metrics;
use crate::mpesa::{DarajaClient, DarajaConfig};
use crate::payments::worker::PaymentJobs;
use crate::sandbox::mpesa::{MpesaSandbox, SandboxConfig as MpesaSandboxConfig};
use crate::sandbox::sms::{DeliveryReports, SmsSandbox, SmsSandboxConfig};
use crate::shop::{Clock, Shop, ShopSettings};
use crate::sms::africastalking::{AtSmsClient, AtSmsConfig};
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::SharedStore;

/// What every handler can reach.
///
/// axum clones the state for every request, so it is one `Arc`: a clone is one atomic
/// increment instead of one per field (`perf` had the clones and drops at 3.6% of a hop's
/// cycles). Setting a field, which only happens while the application is being built, copies
/// the fields first if the state is shared ([`Arc::make_mut`]), so it behaves as a plain value:
/// a clone never changes under its holder.
#[derive(Clone)]
pub struct AppState(Arc<AppStateFields>);

impl AppState {
    pub fn new(fields: AppStateFields) -> Self {
        Self(Arc::new(fields))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateFields;

    fn deref(&self) -> &AppStateFields {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppStateFields {
        Arc::make_mut(&mut self.0)
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppStateFields {
    pub shop: Arc<Shop>,
    pub metrics: Arc<Metrics>,
    pub callbacks: Arc<CallbackGuard>,
    /// Writes finished sessions as fixtures (`duka serve --record DIR`); `None` when not asked.
    pub recorder: Option<Arc<Recorder>>,
    /// Who may call the USSD routes.
    pub ussd: Arc<UssdGuard>,
    /// The built-in sandboxes, for the demo's `/sandbox/…` routes (none in production).
    pub sandboxes: Sandboxes,
    /// The operator endpoint's token (`/operator/…`); `None` turns the endpoint off.
    pub operator: Option<Arc<crate::operator::endpoint::OperatorAccess>>,
    /// What `/readyz` answered last, so only changes are logged.
    pub readiness: Arc<crate::telemetry::ReadinessLog>,
    /// The abuse and durability limits.
    pub limits: Arc<crate::limits::Limits>,
    /// The operator console (`/console`, [`crate::console`]); `None` turns it off.
    pub console: Option<Arc<crate::console::Console>>,
    /// The menu funnel's counts, flushed to the store in the background.
    pub funnel: Arc<crate::console::funnel::Funnel>,
    /// The shops of `DUKA_SHOPS` that name a service code, by normalised code: a hop for one
    /// of them on this shop's routes is theirs ([`crate::shops`]).
    pub service_codes: Arc<Vec<(String, AppState)>>,
}

impl AppState {
    /// The shop a hop for `service_code` belongs to: a shop of `DUKA_SHOPS` with that code, else
    /// this one.
    pub fn for_service_code(&self, service_code: &str) -> &AppState {
        if self.service_codes.is_empty() {
            return self;
        }
        let code = crate::shops::normalise_service_code(service_code);
        self.service_codes
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(self, |(_, shop)| shop)
    }
}

/// Who may post payment callbacks.
pub struct CallbackGuard {
    pub secret: secrecy::SecretString,
    pub allowed_ips: Vec<ipnet::IpNet>,
}

/// The built-in stand-ins this node started (none in production).
#[derive(Clone, Default)]
pub struct Sandboxes {
    pub mpesa: Option<Arc<MpesaSandbox>>,
    pub sms: Option<Arc<SmsSandbox>>,
}

/// Every route of `duka serve`.
///
/// | method and path | module |
/// |---|---|
/// | `/ussd/{gateway}…`, one file per gateway (behind `DUKA_USSD_SECRET` if set) | [`crate::gateway::GATEWAYS`] |
/// | `POST /payments/{secret}/stk`, `…/c2b/validate`, `…/c2b/confirm` | [`crate::payments::callbacks`] |
/// | `POST /sms/delivery` | [`crate::sms::delivery`] |
/// | `GET /healthz`, `GET /readyz`, `GET /metrics` | here |
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::gateway::guard::routes(&state.ussd))
        .merge(crate::payments::callbacks::router())
        .merge(crate::sms::delivery::router(&state.limits))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The demo's controls, loopback only: sandbox prompts, paybill and SMS inbox, and the
        // operator's order report (404 when not running as the demo).
        .merge(crate::sandbox::demo::router())
        .merge(crate::operator::endpoint::router())
        .merge(crate::console::router(&state))
        .layer(Bounds::logging())
        // Outside the error log, which logs every 5xx as an ERROR: a 503 here is a normal
        // answer, logged by the handler once per change.
        .route("/readyz", get(readyz).layer(Bounds::quiet()))
        .with_state(state)
}

/// `GET /healthz`: the process is alive.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the store answers, so hops can be served.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let unready = match tokio::time::timeout(Duration::from_secs(1), app.shop.store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("store unavailable: {e}")),
        Err(_) => Some("store did not answer within 1 s".to_owned()),
    };
    app.readiness.log(unready.as_deref().map_or(Ok(()), Err));
    match unready {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

/// Knobs that tests, replay and the benchmark turn; `serve` uses the defaults.
pub struct BuildOptions {
    /// Seed of the order-number generator (deterministic replays).
    pub seed: Option<u64>,
    /// The clock (fixed in replays).
    pub clock: Clock,
    /// Use this store instead of the one the settings name.
    pub store: Option<SharedStore>,
    /// Run the background worker (push, query, expiry, SMS).
    pub run_worker: bool,
    /// How often the worker sweeps every shard for due jobs.
    pub sweep_every: Duration,
    /// Build a shop of `DUKA_SHOPS` mounted in another's server ([`crate::shops`]): no listener.
    pub mount: Option<Mount>,
}

/// Where a shop of [`crate::shops`] is mounted, and what it takes from the default shop's start.
#[derive(Clone, Debug)]
pub struct Mount {
    /// Its public base URL: the default shop's, plus `/shops/<id>`.
    pub public_url: String,
    /// `/shops/<id>`.
    pub path: String,
    /// The port of the shared listener.
    pub port: u16,
    /// The replicas a paid order waits for, as the default shop's start-up check found.
    pub wait_replicas: Option<u32>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            seed: None,
            clock: Clock::system(),
            store: None,
            run_worker: true,
            sweep_every: Duration::from_secs(1),
            mount: None,
        }
    }
}

/// Connects the store the settings name.
///
/// # Errors
/// Redis is unreachable or the URL is invalid.
pub async fn connect_store(settings: &StoreSettings) -> anyhow::Result<SharedStore> {
    Ok(match settings {
        StoreSettings::Embedded => {
            tracing::warn!(
                "REDIS_URL is not set: using the EMBEDDED IN-PROCESS STORE. Sessions, carts and \
                 orders live in this process only and are lost when it stops. Set REDIS_URL for production."
            );
            Arc::new(MemoryStore::new())
        }
        StoreSettings::Redis { url } => {
            let store = RedisStore::connect(url)
                .await
                .with_context(|| format!("could not connect to Redis at {}", redact_url(url)))?;
            tracing::info!(redis.url = %redact_url(url), redis.cluster = false, "connected to Redis");
            Arc::new(store)
        }
        StoreSettings::Cluster { seeds } => {
            let seeds_shown = seeds
                .iter()
                .map(|seed| redact_url(seed))
                .collect::<Vec<_>>()
                .join(",");
            let store = RedisStore::connect_cluster(seeds).await.with_context(|| {
                format!("could not connect to the Redis Cluster via {seeds_shown}")
            })?;
            tracing::info!(redis.url = %seeds_shown, redis.cluster = true, "connected to Redis");
            Arc::new(store)
        }
    })
}

/// Where Africa's Talking posts delivery reports: the secret path when `AT_CALLBACK_SECRET` is set.
pub fn delivery_url(public_url: &str, limits: &crate::limits::Limits) -> String {
    use secrecy::ExposeSecret as _;
    match &limits.at_callback_secret {
        Some(secret) => format!("{public_url}/sms/{}/delivery", secret.expose_secret()),
        None => format!("{public_url}/sms/delivery"),
    }
}

/// With real SMS, forged delivery reports and end-of-session notifications cost the shop: say so
/// loudly when nothing guards them.
fn warn_if_reports_unguarded(settings: &Settings) {
    let limits = &settings.limits;
    if limits.at_callback_secret.is_none() && limits.at_allowed_ips.is_empty() {
        tracing::warn!(
            "neither AT_CALLBACK_SECRET nor AT_ALLOWED_IPS is set: ANYONE can post SMS delivery reports to /sms/delivery"
        );
    }
    if settings.ussd.secret.is_none() && settings.ussd.allowed_for("africastalking").is_empty() {
        tracing::warn!(
            "neither DUKA_USSD_SECRET nor DUKA_USSD_ALLOWED_IPS[_AFRICASTALKING] is set: ANYONE can forge USSD hops and end-of-session notifications (PIN prompts, nudge SMS)"
        );
    }
}

/// A Redis URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A built server, bound to its port, not yet serving.
pub struct Application {
    /// `None` for a shop mounted in another's server.
    listener: Option<TcpListener>,
    /// The shops of `DUKA_SHOPS`, served under `/shops/<id>` ([`crate::shops`]).
    mounted: Vec<(String, Application)>,
    state: AppState,
    handler: Option<Arc<dyn JobHandler>>,
    sweep_every: Duration,
    sandboxes: Sandboxes,
    public_url: String,
    /// Read again on `SIGHUP` (see [`crate::reload`]).
    menus_dir: std::path::PathBuf,
    /// The abuse and durability limits.
    limits: crate::limits::Limits,
    /// Where the web phone dials this node.
    console_ussd_base_url: String,
}

impl Application {
    /// Builds the server from settings.
    ///
    /// # Errors
    /// Anything that would make the node unable to serve: invalid menus, an unreachable store,
    /// a port in use, a half-configured upstream.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        Box::pin(Self::build_shop(settings, options)).await
    }

    async fn build_shop(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let catalog = Arc::new(Catalog::load(&settings.menus_dir).with_context(|| {
            format!("the menus in {} are invalid", settings.menus_dir.display())
        })?);
        let store = match options.store {
            Some(store) => store,
            None => connect_store(&settings.store).await?,
        };
        let mut limits = settings.limits.clone();
        let mounted = options.mount.clone();
        if let Some(mount) = &mounted {
            limits.wait_replicas = mount.wait_replicas;
        } else if let StoreSettings::Redis { url } = &settings.store {
            let found =
                crate::durability::check_persistence(url, settings.limits.allow_no_persistence)
                    .await
                    .context("Redis does not persist")?;
            limits.wait_replicas = Some(crate::durability::replicas_to_wait_for(
                limits.wait_replicas,
                &found,
            ));
        }
        if let (StoreSettings::Cluster { seeds }, None) = (&settings.store, &mounted) {
            let found = crate::durability::check_cluster_persistence(
                seeds,
                settings.limits.allow_no_persistence,
            )
            .await
            .context("the Redis Cluster does not persist")?;
            limits.wait_replicas = Some(crate::durability::replicas_to_wait_for(
                limits.wait_replicas,
                &found,
            ));
        }
        let (listener, port, public_url) = match &mounted {
            Some(mount) => (None, mount.port, mount.public_url.clone()),
            None => {
                let listener = TcpListener::bind(settings.listen)
                    .await
                    .with_context(|| format!("could not listen on {}", settings.listen))?;
                let bound = listener.local_addr()?;
                let public_url = settings.public_url_for(bound);
                (Some(listener), bound.port(), public_url)
            }
        };
        if settings.callback_secret_generated {
            tracing::warn!(
                "MPESA_CALLBACK_SECRET is not set: generated one for this run (demo only); payment callbacks go to {}",
                settings.stk_callback_url(&public_url)
            );
        }

        let mut sandboxes = Sandboxes::default();
        let daraja = match &settings.mpesa {
            MpesaSettings::Sandbox => {
                // The demo's paybill has External Validation, so a wrong amount is refused.
                let defaults = MpesaSandboxConfig::default();
                let sandbox = MpesaSandbox::start(MpesaSandboxConfig {
                    c2b_validation: true,
                    till: settings.mpesa_till.clone(),
                    shortcode: settings
                        .sandbox_shortcode
                        .clone()
                        .unwrap_or(defaults.shortcode.clone()),
                    ..defaults
                })
                .await
                .context("could not start the built-in M-Pesa sandbox")?;
                tracing::warn!(
                    "MPESA_* is not set: using the BUILT-IN M-PESA SANDBOX at {} (no real money moves)",
                    sandbox.base_url()
                );
                let daraja = DarajaClient::new(sandbox.daraja_config())?;
                let (confirm, validate) = settings.c2b_urls(&public_url);
                if let Err(e) = daraja.register_c2b_urls(&confirm, &validate).await {
                    tracing::warn!(error.message = %e, "could not register the C2B URLs with the sandbox");
                }
                sandboxes.mpesa = Some(Arc::new(sandbox));
                daraja
            }
            MpesaSettings::Daraja {
                base_url,
                consumer_key,
                consumer_secret,
                shortcode,
                passkey,
            } => {
                // Daraja refuses callback URLs it does not like only when it calls them, days
                // later; say so now.
                let strict = !crate::config::is_loopback_url(base_url);
                crate::mpesa::check_callback_url(&settings.stk_callback_url(&public_url), strict)
                    .context("DUKA_PUBLIC_URL cannot be Daraja's callback URL")?;
                DarajaClient::new(
                    DarajaConfig::new(
                        base_url.clone(),
                        consumer_key.clone(),
                        consumer_secret.clone(),
                        shortcode.clone(),
                        passkey.clone(),
                    )
                    .with_till(settings.mpesa_till.clone())
                    .with_initiator(settings.mpesa_initiator.clone()),
                )?
            }
        };
        if let Some(till) = daraja.till() {
            tracing::info!(
                "M-Pesa in till mode: STK pushes go to Buy Goods till {till}, signed by store number {}",
                daraja.shortcode()
            );
        }
        let sms = match &settings.sms {
            SmsSettings::Sandbox => {
                let sandbox = SmsSandbox::start(SmsSandboxConfig {
                    delivery_reports: Some(DeliveryReports::to(delivery_url(
                        &public_url,
                        &settings.limits,
                    ))),
                    ..SmsSandboxConfig::default()
                })
                .await
                .context("could not start the built-in SMS sandbox")?;
                tracing::warn!(
                    "AT_* is not set: using the BUILT-IN SMS SANDBOX at {} (no SMS leaves this machine)",
                    sandbox.base_url()
                );
                let client = AtSmsClient::new(sandbox.client_config())?;
                sandboxes.sms = Some(Arc::new(sandbox));
                client
            }
            SmsSettings::AfricasTalking {
                base_url,
                username,
                api_key,
                sender_id,
            } => {
                warn_if_reports_unguarded(&settings);
                let mut config =
                    AtSmsConfig::new(base_url.clone(), username.clone(), api_key.clone());
                config.sender_id.clone_from(sender_id);
                config.validate()?;
                AtSmsClient::new(config)?
            }
        };

        let shared_store = store.clone();
        let shop = Arc::new(Shop::new(
            store,
            Keys::new(settings.key_prefix.clone()),
            catalog,
            ShopSettings {
                paybill: daraja.shortcode().to_owned(),
                order_ttl_ms: settings.order_ttl.as_millis() as i64,
                query_after_ms: settings.mpesa_query_after.as_millis() as i64,
                session_ttl_ms: settings.session_ttl.as_millis() as u64,
                resend_window_ms: settings.ussd_resend_window.as_millis() as i64,
                session_cache: settings.session_cache,
                push_limits: settings.limits.clone(),
                till: daraja.till().map(str::to_owned),
                order_first: settings.order_first_chars.clone(),
            },
            options.clock,
            options.seed,
        ));
        let recorder = match &settings.record_dir {
            Some(dir) => {
                let filter = settings.record_filter.clone();
                let described = filter.describe();
                let recorder = Recorder::new(dir.clone(), shop.clone(), filter)
                    .context("could not start recording sessions")?;
                tracing::info!(
                    "recording finished sessions as fixtures in {} ({described})",
                    dir.display()
                );
                Some(Arc::new(recorder))
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        let handler: Option<Arc<dyn JobHandler>> = options.run_worker.then(|| {
            Arc::new(Background {
                payments: PaymentJobs {
                    daraja,
                    callback_url: settings.stk_callback_url(&public_url),
                    limits: Arc::new(settings.limits.clone()),
                },
                sms,
                metrics: metrics.clone(),
                limits: Arc::new(settings.limits.clone()),
            }) as Arc<dyn JobHandler>
        });
        let state = AppState::new(AppStateFields {
            shop,
            metrics,
            sandboxes: sandboxes.clone(),
            operator: None,
            callbacks: Arc::new(CallbackGuard {
                secret: settings.callback_secret.clone(),
                allowed_ips: settings.mpesa_allowed_ips.clone(),
            }),
            recorder,
            ussd: Arc::new(settings.ussd.clone()),
            readiness: Arc::default(),
            limits: Arc::new(limits),
            console: None,
            funnel: Arc::default(),
            service_codes: Arc::default(),
        });
        let mut state = state;
        let ussd_base_url = format!(
            "http://127.0.0.1:{}{}{}",
            port,
            mounted.as_ref().map_or("", |m| m.path.as_str()),
            settings
                .ussd
                .secret
                .as_ref()
                .map(|s| format!("/{}", secrecy::ExposeSecret::expose_secret(s)))
                .unwrap_or_default()
        );
        let secure = public_url.starts_with("https://");
        match &settings.console_password_hash {
            Some(hash) => {
                let console =
                    crate::console::Console::new(
                    hash,
                    secure,
                    ussd_base_url.clone(),
                    false,
                    settings.menus_dir.clone(),
                )?;
                crate::console::enable(&mut state, console);
                tracing::info!("operator console on at {public_url}/console");
            }
            None => tracing::info!(
                "DUKA_CONSOLE_PASSWORD_HASH is not set: the operator console is off (the demo turns it on)"
            ),
        }
        let mut shops = Vec::new();
        for extra in &settings.shops {
            let path = extra.path();
            let built = Box::pin(Self::build_shop(
                extra.settings.clone(),
                BuildOptions {
                    seed: options
                        .seed
                        .map(|seed| seed.wrapping_add(shops.len() as u64 + 1)),
                    clock: state.shop.clock.twin(),
                    store: Some(shared_store.clone()),
                    run_worker: options.run_worker,
                    sweep_every: options.sweep_every,
                    mount: Some(Mount {
                        public_url: format!("{public_url}{path}"),
                        path: path.clone(),
                        port,
                        wait_replicas: state.limits.wait_replicas,
                    }),
                },
            ))
            .await
            .with_context(|| format!("shop {} (DUKA_SHOPS)", extra.id))?;
            tracing::info!(
                "shop {} on {public_url}{path}/ussd/<gateway> (menus {}, orders {}…)",
                extra.id,
                extra.settings.menus_dir.display(),
                char::from(extra.order_prefix)
            );
            shops.push((path, built));
        }
        state.service_codes = Arc::new(
            settings
                .shops
                .iter()
                .zip(&shops)
                .filter_map(|(extra, (_, built))| {
                    let code = extra.settings.service_code.as_deref()?;
                    Some((crate::shops::normalise_service_code(code), built.state()))
                })
                .collect(),
        );
        Ok(Self {
            console_ussd_base_url: ussd_base_url,
            listener,
            mounted: shops,
            state,
            handler,
            sweep_every: options.sweep_every,
            sandboxes,
            public_url,
            menus_dir: settings.menus_dir.clone(),
            limits: settings.limits.clone(),
        })
    }

    /// Turns on the operator endpoint (`GET /operator/orders/{number}`, loopback only) with a
    /// fresh token written to `token_file`, where `duka order` finds it. The demo does this.
    ///
    /// # Errors
    /// The token file cannot be written.
    pub fn enable_operator_endpoint(
        &mut self,
        token_file: &std::path::Path,
    ) -> Result<(), crate::operator::endpoint::TokenFileError> {
        let access = crate::operator::endpoint::OperatorAccess::issue(token_file)?;
        tracing::info!(
            "operator endpoint on: `duka order NUMBER` reads its token from {}",
            token_file.display()
        );
        let access = Arc::new(access);
        for (_, shop) in &mut self.mounted {
            shop.state.operator = Some(access.clone());
        }
        self.state.operator = Some(access);
        Ok(())
    }

    /// Turns the operator console on for the demo (unless `DUKA_CONSOLE_PASSWORD_HASH` did):
    /// a fresh password written to `password_file` and printed in the log, and the web phone
    /// at `/phone` without sign-in (loopback only).
    ///
    /// # Errors
    /// The password file cannot be written.
    pub fn enable_demo_console(&mut self, password_file: &std::path::Path) -> std::io::Result<()> {
        if self.state.console.is_some() {
            return Ok(());
        }
        let password = crate::console::auth::generate_password();
        if let Some(dir) = password_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(password_file, format!("{password}\n"))?;
        let hash = crate::console::auth::hash_password(&password);
        let console = crate::console::Console::new(
            &hash,
            false,
            self.console_ussd_base_url.clone(),
            true,
            self.menus_dir.clone(),
        )
        .map_err(std::io::Error::other)?;
        crate::console::enable(&mut self.state, console);
        // Every shop of DUKA_SHOPS has its console under its mount, with the same password.
        for (path, shop) in &mut self.mounted {
            let console = crate::console::Console::new(
                &hash,
                false,
                shop.console_ussd_base_url.clone(),
                true,
                shop.menus_dir.clone(),
            )
            .map_err(std::io::Error::other)?;
            crate::console::enable(&mut shop.state, console);
            tracing::warn!("shop console (demo): {}{path}/console", self.public_url);
        }
        tracing::warn!(
            "OPERATOR CONSOLE ON (demo): {}/console, password {password} (also in {}); web phone at {}/phone",
            self.public_url,
            password_file.display(),
            self.public_url
        );
        Ok(())
    }

    /// The stand-ins this node started (for tests and the terminal phone).
    pub fn sandboxes(&self) -> Sandboxes {
        self.sandboxes.clone()
    }

    /// The base URL Safaricom and Africa's Talking reach this node at.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The address the server listens on.
    ///
    /// # Panics
    /// On a shop mounted in another's server, which has no listener of its own.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .as_ref()
            .expect("a shop's server has a listener (mounted shops share it)")
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shop of `DUKA_SHOPS` with this id: its state (store, keys, metrics), for tests and
    /// operator tools.
    pub fn shop_state(&self, id: &str) -> Option<AppState> {
        self.mounted
            .iter()
            .find(|(path, _)| path.strip_prefix("/shops/") == Some(id))
            .map(|(_, app)| app.state())
    }

    /// The built-in stand-ins of the shop of `DUKA_SHOPS` with this id.
    pub fn shop_sandboxes(&self, id: &str) -> Option<Sandboxes> {
        self.mounted
            .iter()
            .find(|(path, _)| path.strip_prefix("/shops/") == Some(id))
            .map(|(_, app)| app.sandboxes())
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests and jobs finish.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut background = self.start_background(&stop_rx);
        let mut app = router(self.state.clone());
        for (path, shop) in &self.mounted {
            background.extend(shop.start_background(&stop_rx));
            let mount = path.clone();
            let shop_router = router(shop.state.clone()).layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    crate::console::mounted_at(mount.clone(), request, next)
                },
            ));
            app = app.nest_service(path, shop_router);
        }
        crate::serve::check_open_files(self.limits.max_connections);
        let Some(listener) = self.listener else {
            return Err(std::io::Error::other(
                "a mounted shop is served by its default shop's server",
            ));
        };
        let served = crate::serve::serve(
            listener,
            app,
            crate::serve::ServeLimits {
                max_connections: self.limits.max_connections,
                header_read_timeout: self.limits.header_read_timeout,
            },
            shutdown,
        )
        .await;
        let _ = stop_tx.send(true);
        for task in background {
            let _ = task.await;
        }
        // Sessions still open, and finished ones waiting on a payment, are written as they are.
        let recorders = std::iter::once(&self.state)
            .chain(self.mounted.iter().map(|(_, shop)| &shop.state))
            .filter_map(|state| state.recorder.clone());
        for recorder in recorders {
            recorder.flush().await;
        }
        served
    }

    /// Starts this shop's job worker, funnel flusher and menu reload; they stop when `stop`
    /// turns true.
    fn start_background(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(handler) = self.handler.clone() {
            tasks.push(tokio::spawn(run_worker(
                self.state.shop.clone(),
                handler,
                self.sweep_every,
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(crate::console::funnel::run_flusher(
            self.state.funnel.clone(),
            self.state.shop.clone(),
            stop.clone(),
        )));
        #[cfg(unix)]
        if let Err(e) = crate::reload::reload_on_hangup(
            self.state.shop.clone(),
            self.menus_dir.clone(),
            stop.clone(),
        ) {
            tracing::warn!(error.message = %e, "cannot reload the menus on SIGHUP");
        }
        tasks
    }

    /// Serves until Ctrl-C or SIGTERM.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
