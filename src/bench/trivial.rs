//! Trivial comparison servers: how fast could a hop be on this machine?
//!
//! The server answers the Africa's Talking form with the right screen for the cumulative text,
//! so the bench's checks all pass against it, but it keeps no session and places no order. Each
//! distinct text is worked out once, by replaying the pure engine from the first screen with a
//! fixed phone, and then served from memory; only the masked phone on the checkout screen is
//! put in per request. Against it, `duka bench` measures its own ceiling: the load it can drive
//! when the server costs next to nothing.
//!
//! With a Redis URL, each hop also makes one Redis round trip: a `GET` of the session's key and a
//! `SET` of the text with a TTL, pipelined, as issue 11's "bare axum handler doing one Redis
//! GET+SET round trip per hop, no menu logic" does. It bounds what Duka's hop (one guarded
//! commit in steady state) can reach here.
//!
//! This is a measuring instrument, not a shop: it is reachable only through `duka bench`'s
//! hidden flags, and binds to loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;

use crate::gateway::africastalking;
use crate::gateway::HopInput;
use crate::menu::{self, Cart, Catalog, Hop, MenuState, Profile, Reply};
use crate::msisdn::Msisdn;

/// The phone every canned reply is computed for.
const CANNED_PHONE: &str = "+254700000000";
/// How long the Redis variant keeps each hop's key.
const REDIS_TTL_MS: u64 = 60_000;

/// The trivial server's state.
pub struct Trivial {
    catalog: Catalog,
    /// Rendered replies (`CON …`/`END …`) by cumulative text.
    replies: RwLock<HashMap<String, Arc<str>>>,
    /// The masked form of [`CANNED_PHONE`] as the checkout screen shows it.
    canned_masked: String,
    redis: Option<ConnectionManager>,
}

impl Trivial {
    /// A trivial server over `catalog`, making one Redis round trip (`GET` + `SET`) per hop
    /// when `redis_url` is given.
    ///
    /// # Errors
    /// Redis does not answer.
    pub async fn new(catalog: Catalog, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let redis = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url).context("invalid Redis URL")?;
                Some(
                    ConnectionManager::new(client)
                        .await
                        .with_context(|| format!("could not connect to Redis at {url}"))?,
                )
            }
            None => None,
        };
        Ok(Self {
            catalog,
            replies: RwLock::new(HashMap::new()),
            canned_masked: canned_msisdn().local_masked(),
            redis,
        })
    }

    /// The rendered reply for a cumulative text, from memory after the first time.
    fn reply(&self, text: &str) -> Arc<str> {
        if let Some(reply) = self
            .replies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(text)
        {
            return reply.clone();
        }
        let rendered: Arc<str> = africastalking::render(&replay(&self.catalog, text)).into();
        self.replies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(text.to_owned(), rendered.clone());
        rendered
    }
}

fn canned_msisdn() -> Msisdn {
    Msisdn::parse(CANNED_PHONE).expect("the canned phone is a valid number")
}

/// The screen a new shopper sees after typing `text` (inputs joined by `*`), by running the
/// pure engine from the first screen. The cart and profile are carried between the steps in
/// memory, as the store would carry them.
pub fn replay(catalog: &Catalog, text: &str) -> Reply {
    let msisdn = canned_msisdn();
    let mut cart = Cart::default();
    let mut profile = Profile::default();
    let mut state = MenuState::default();
    let mut reply: Option<Reply> = None;
    let inputs = (!text.is_empty())
        .then(|| text.split('*'))
        .into_iter()
        .flatten();
    for input in std::iter::once(None).chain(inputs.map(Some)) {
        if reply.as_ref().is_some_and(|r| r.end) {
            break;
        }
        let hop = Hop {
            catalog,
            msisdn: &msisdn,
            mpesa: true,
            screen_max: menu::DEFAULT_SCREEN_MAX,
            cart: &cart,
            profile: &profile,
            payee: menu::Payee::Paybill("174379"),
            new_order_number: "BENCH1",
            push_blocked_until_ms: None,
            now_ms: 1_700_000_000_000,
        };
        let step = match input {
            None => menu::start(&hop),
            Some(input) => menu::step(&hop, &state, input),
        };
        state = step.state;
        cart = step.cart;
        profile = step.profile;
        reply = Some(step.reply);
    }
    reply.unwrap_or_else(|| Reply::end(""))
}

/// Serves the trivial server on `listener` until the process stops.
///
/// # Errors
/// The listener fails.
pub async fn serve(listener: TcpListener, trivial: Arc<Trivial>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/ussd/africastalking", post(hop))
        .with_state(trivial);
    axum::serve(listener, app).await
}

/// Binds a loopback address for the trivial server.
///
/// # Errors
/// The address is not loopback, or it cannot be bound.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the trivial server only listens on loopback, not {addr}"
    );
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))
}

async fn hop(State(trivial): State<Arc<Trivial>>, body: Bytes) -> Response {
    let req = match africastalking::parse(&body) {
        Ok(req) => req,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let text = match &req.input {
        HopInput::Cumulative(text) | HopInput::Typed(text) => text.clone(),
        HopInput::Dial(inputs) => inputs.join("*"),
    };
    let canned = trivial.reply(&text);
    let reply = if canned.contains(trivial.canned_masked.as_str()) {
        canned.replace(trivial.canned_masked.as_str(), &req.msisdn.local_masked())
    } else {
        canned.to_string()
    };
    if let Some(redis) = &trivial.redis {
        let key = format!("duka-trivial:{}", req.session_id);
        let stored: redis::RedisResult<(Option<Vec<u8>>, ())> = redis::pipe()
            .get(&key)
            .cmd("SET")
            .arg(&key)
            .arg(&text)
            .arg("PX")
            .arg(REDIS_TTL_MS)
            .query_async(&mut redis.clone())
            .await;
        if let Err(e) = stored {
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        reply,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")).unwrap()
    }

    #[test]
    fn the_empty_text_is_the_main_menu() {
        let reply = replay(&catalog(), "");
        assert!(!reply.end);
        assert!(
            reply.text.starts_with("Welcome to Duka\n1. Shop"),
            "{reply:?}"
        );
    }

    #[test]
    fn a_replayed_walk_reaches_checkout_with_the_total() {
        // Shop, Groceries, Sugar, 3, Checkout.
        let reply = replay(&catalog(), "1*1*2*3*1");
        assert!(
            reply
                .text
                .starts_with("Total KES 570.\n1. Pay with M-Pesa (07XX XXX X00)"),
            "{reply:?}"
        );
        let placed = replay(&catalog(), "1*1*2*3*1*1");
        assert!(placed.end);
        assert!(placed.text.starts_with("Order BENCH1."), "{placed:?}");
    }
}
