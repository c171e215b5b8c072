//! The running shop: what every request handler, background worker and replay shares.
//!
//! [`Shop`] holds the store, the key builder, the catalog, the clock and the random source. The
//! clock and randomness are here, not read ad hoc, so `duka replay` can fix both and get the same
//! order numbers and times on every run.
//!
//! The catalog can be replaced while the shop runs (`SIGHUP`, see [`crate::reload`]): readers
//! take the current one with [`Shop::catalog`], once per hop, and keep it for the whole hop, so
//! a reload never mixes two menus in one screen.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::jobs::JobQueue;
use crate::keys::{shard_of, Keys};
use crate::menu::catalog::CatalogError;
use crate::menu::Catalog;
use crate::msisdn::Msisdn;
use crate::session::cache::SessionCache;
use crate::store::SharedStore;

/// Milliseconds since the Unix epoch: the system clock, or a fixed one that only moves when told.
#[derive(Debug, Default)]
pub struct Clock {
    fixed: Option<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock of the same kind at the same time: the system clock, or a fixed one starting
    /// where this one is now (each moves on its own from then).
    pub fn twin(&self) -> Self {
        match &self.fixed {
            None => Self::system(),
            Some(_) => Self::fixed(self.now_ms()),
        }
    }

    pub fn fixed(start_ms: i64) -> Self {
        Self {
            fixed: Some(AtomicI64::new(start_ms)),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.fixed {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Moves a fixed clock forward (no effect on the system clock).
    pub fn advance_ms(&self, ms: i64) {
        if let Some(fixed) = &self.fixed {
            fixed.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// Tunables of the shop that come from configuration.
#[derive(Clone, Debug)]
pub struct ShopSettings {
    /// The paybill number shown to shoppers and used for STK pushes.
    pub paybill: String,
    /// How long an unpaid order stays payable.
    pub order_ttl_ms: i64,
    /// How long an STK push waits for its callback before reconciliation queries.
    pub query_after_ms: i64,
    /// How long an idle USSD session is kept (`DUKA_SESSION_TTL_S`).
    pub session_ttl_ms: u64,
    /// How soon the same input again counts as a resend on a gateway that numbers no hops
    /// (`DUKA_USSD_RESEND_WINDOW_MS`; see [`crate::session::RESEND_WINDOW_MS`]).
    pub resend_window_ms: i64,
    /// How many sessions the node's [`SessionCache`] holds (`DUKA_SESSION_CACHE`; 0: off).
    pub session_cache: usize,
    /// The prompt-bombing limits, which checkout shows (the push job enforces them).
    pub push_limits: crate::limits::Limits,
    /// A Buy Goods till (`MPESA_TILL`): pushes go to it and shoppers are told to pay to it;
    /// `paybill` is then the store (head office) number.
    pub till: Option<String>,
    /// The characters this shop's order numbers start with (see [`crate::shops`]; empty: any).
    pub order_first: Vec<u8>,
}

impl ShopSettings {
    /// Where shoppers are told to pay by hand: the till when there is one, else the paybill.
    pub fn payee(&self) -> crate::menu::Payee<'_> {
        match &self.till {
            Some(till) => crate::menu::Payee::Till(till),
            None => crate::menu::Payee::Paybill(&self.paybill),
        }
    }
}

/// The shared core of a running Duka.
pub struct Shop {
    pub store: SharedStore,
    pub keys: Keys,
    catalog: RwLock<Arc<Catalog>>,
    pub settings: ShopSettings,
    pub clock: Clock,
    pub jobs: JobQueue,
    rng: Mutex<SmallRng>,
    /// What this node last wrote for each session (see [`crate::session::cache`]).
    pub session_cache: SessionCache,
}

impl Shop {
    pub fn new(
        store: SharedStore,
        keys: Keys,
        catalog: Arc<Catalog>,
        settings: ShopSettings,
        clock: Clock,
        seed: Option<u64>,
    ) -> Self {
        let rng = match seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        let session_cache = SessionCache::new(
            settings.session_cache,
            std::time::Duration::from_millis(settings.session_ttl_ms),
        );
        Self {
            session_cache,
            store,
            keys,
            catalog: RwLock::new(catalog),
            settings,
            clock,
            jobs: JobQueue::new(),
            rng: Mutex::new(rng),
        }
    }

    /// The catalog in force now. Take it once per hop: a reload may replace it at any time.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `catalog` in force for every hop that starts from now on.
    pub fn replace_catalog(&self, catalog: Arc<Catalog>) {
        *self
            .catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = catalog;
    }

    /// Loads the menus in `dir` and puts them in force; menus that do not pass the check are
    /// refused and the ones in force are kept.
    ///
    /// # Errors
    /// The menus are invalid: the check's findings, as `duka check` prints them.
    pub fn reload_catalog(&self, dir: &Path) -> Result<(), CatalogError> {
        let catalog = Catalog::load(dir)?;
        self.replace_catalog(Arc::new(catalog));
        Ok(())
    }

    /// A fresh order number in the shopper's shard (see [`crate::orders::draw_order_number`]).
    pub fn draw_order_number(&self, msisdn: &Msisdn) -> String {
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::orders::draw_order_number(
            &mut *rng,
            shard_of(msisdn.digits()),
            &self.settings.order_first,
        )
    }

    /// A random number from the shop's random source (jitter, ids).
    pub fn random_u64(&self) -> u64 {
        use rand::Rng;
        self.rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .random()
    }
}
