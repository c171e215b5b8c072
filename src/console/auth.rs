//! Who may use the console: one password (an argon2 hash from `DUKA_CONSOLE_PASSWORD_HASH`),
//! server-side sessions, a CSRF token on every POST, and a sign-in rate limit.
//!
//! - The session cookie `duka_console` holds a random 256-bit id; the session itself (its CSRF
//!   token) lives in the store under `P{console:<id>}` with a TTL, so every node behind a load
//!   balancer knows it and signing out ends it everywhere. The cookie is `HttpOnly;
//!   SameSite=Strict; Path=/console`, plus `Secure` when `DUKA_PUBLIC_URL` is https.
//! - Every POST behind the sign-in must carry the session's CSRF token (a hidden `csrf` form
//!   field, or the `x-csrf-token` header for the JSON endpoints) and an `Origin` (or `Referer`)
//!   of this host. The sign-in form itself is checked by origin.
//! - Sign-in attempts: at most [`PER_IP_PER_MINUTE`] per client address and
//!   [`GLOBAL_PER_MINUTE`] in all per node; more answer 429. The address is the TCP peer: behind
//!   a proxy every operator shares one, which only makes the limit stricter.
//! - Without a valid session a page answers 303 to the sign-in page and a JSON endpoint 401.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::page;
use crate::startup::AppState;
use crate::store::{from_json, to_json, Batch, Commit};

/// How long a console session lasts after sign-in.
pub const SESSION_TTL_MS: u64 = 12 * 3_600_000;
/// Sign-in attempts allowed per client address per minute.
pub const PER_IP_PER_MINUTE: usize = 5;
/// Sign-in attempts allowed per node per minute, all addresses together.
pub const GLOBAL_PER_MINUTE: usize = 30;
const COOKIE: &str = "duka_console";

/// `DUKA_CONSOLE_PASSWORD_HASH` is not an argon2 PHC string.
#[derive(Debug, thiserror::Error)]
#[error("DUKA_CONSOLE_PASSWORD_HASH is not an argon2 PHC string ($argon2id$v=19$...): {0}")]
pub struct HashError(String);

/// The password check, the cookie settings and the rate limiter.
pub struct Auth {
    password_hash: String,
    secure_cookie: bool,
    attempts: Mutex<Attempts>,
}

#[derive(Default)]
struct Attempts {
    per_ip: HashMap<IpAddr, VecDeque<Instant>>,
    all: VecDeque<Instant>,
}

/// A signed-in session, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub csrf: String,
}

/// The signed-in operator, put into the request by [`require`].
#[derive(Clone, Debug)]
pub struct Operator {
    pub session_id: String,
    pub csrf: String,
}

/// Hashes a password as an argon2id PHC string (for `duka console hash-password` and the demo).
///
/// # Panics
/// Never in practice: argon2 with default parameters and a fresh salt cannot fail.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashes any password with its default parameters")
        .to_string()
}

/// A random token of 256 bits, hex.
pub fn random_hex() -> String {
    token()
}

fn token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A password for the demo's console, easy to type.
pub fn generate_password() -> String {
    const LETTERS: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

impl Auth {
    /// # Errors
    /// [`HashError`] when `password_hash` is not a PHC string.
    pub fn new(password_hash: &str, secure_cookie: bool) -> Result<Self, HashError> {
        PasswordHash::new(password_hash.trim()).map_err(|e| HashError(e.to_string()))?;
        Ok(Self {
            password_hash: password_hash.trim().to_owned(),
            secure_cookie,
            attempts: Mutex::default(),
        })
    }

    /// Counts an attempt; false when over either limit.
    fn allow_attempt(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let Attempts { per_ip, all } = &mut *attempts;
        while all
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            all.pop_front();
        }
        per_ip.retain(|_, times| {
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= minute)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
        let mine = per_ip.entry(ip).or_default();
        if mine.len() >= PER_IP_PER_MINUTE || all.len() >= GLOBAL_PER_MINUTE {
            return false;
        }
        mine.push_back(now);
        all.push_back(now);
        true
    }

    async fn verify(&self, password: String) -> bool {
        let hash = self.password_hash.clone();
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false)
    }

    fn cookie(&self, value: &str, max_age_s: u64) -> String {
        format!(
            "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path={}; Max-Age={max_age_s}{}",
            super::at("/console"),
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && value.len() == 64)
        .map(|(_, value)| value.to_owned())
}

/// The request's `Origin` (or else `Referer`) names this host. Refuses when neither is sent.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|h| h.to_str().ok())
        .and_then(|u| reqwest::Url::parse(u).ok());
    from.is_some_and(|url| {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        authority.eq_ignore_ascii_case(host)
    })
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

/// Middleware: a valid session, and on a POST its CSRF token and a same-origin request.
pub async fn require(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/console/api/");
    let session = match session_cookie(request.headers()) {
        Some(id) => match app
            .shop
            .store
            .get_one(&app.shop.keys.console_session(&id))
            .await
        {
            Ok(raw) => from_json::<Session>(raw.as_deref()).map(|s| Operator {
                session_id: id,
                csrf: s.csrf,
            }),
            Err(e) => {
                tracing::warn!(error.message = %e, "console: cannot read the session");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
            }
        },
        None => None,
    };
    let Some(operator) = session else {
        return if is_api || request.method() != Method::GET {
            refuse(StatusCode::UNAUTHORIZED, "sign in first")
        } else {
            Redirect::to(&super::at("/console/sign-in")).into_response()
        };
    };
    let mut request = request;
    if request.method() == Method::POST {
        if !same_origin(request.headers()) {
            return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        let header_token = request
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let token = match header_token {
            Some(token) => Some(token),
            None => {
                let (parts, body) = request.into_parts();
                let Ok(bytes) = axum::body::to_bytes(body, crate::bounds::MAX_BODY_BYTES).await
                else {
                    return refuse(StatusCode::BAD_REQUEST, "unreadable body");
                };
                let token = serde_urlencoded::from_bytes::<HashMap<String, String>>(&bytes)
                    .ok()
                    .and_then(|mut form| form.remove("csrf"));
                request = Request::from_parts(parts, axum::body::Body::from(bytes));
                token
            }
        };
        if token.as_deref() != Some(operator.csrf.as_str()) {
            return refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
    }
    request.extensions_mut().insert(operator);
    next.run(request).await
}

#[derive(Deserialize)]
pub struct SignInForm {
    password: String,
}

/// `GET /console/sign-in`.
pub async fn sign_in_page() -> Response {
    page::sign_in(None).into_response()
}

/// `POST /console/sign-in`: checks the password, starts a session.
pub async fn sign_in(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let Some(console) = app.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    if !console.auth.allow_attempt(peer.ip()) {
        tracing::warn!("console: too many sign-in attempts, refused");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page::sign_in(Some("Too many attempts. Wait a minute and try again.")),
        )
            .into_response();
    }
    if !console.auth.verify(form.password).await {
        tracing::info!("console: a sign-in with a wrong password");
        return (
            StatusCode::UNAUTHORIZED,
            page::sign_in(Some("Wrong password.")),
        )
            .into_response();
    }
    let id = token();
    let mut batch = Batch::new();
    batch.set(
        app.shop.keys.console_session(&id),
        to_json(&Session { csrf: token() }),
        Some(SESSION_TTL_MS),
    );
    match app.shop.store.commit(&batch).await {
        Ok(Commit::Applied) => {}
        Ok(Commit::Conflict) | Err(_) => {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
        }
    }
    tracing::info!("console: an operator signed in");
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                console.auth.cookie(&id, SESSION_TTL_MS / 1000),
            ),
            (header::LOCATION, super::at("/console")),
        ],
    )
        .into_response()
}

/// `POST /console/sign-out`: ends the session on every node.
pub async fn sign_out(
    State(app): State<AppState>,
    axum::Extension(operator): axum::Extension<Operator>,
) -> Response {
    let mut batch = Batch::new();
    batch.delete(app.shop.keys.console_session(&operator.session_id));
    let _ = app.shop.store.commit(&batch).await;
    let cookie = app
        .console
        .as_deref()
        .map(|c| c.auth.cookie("", 0))
        .unwrap_or_default();
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, super::at("/console/sign-in")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("s3cret");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"other", &parsed)
            .is_err());
        assert!(Auth::new("not a hash", false).is_err());
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address_and_in_all() {
        let auth = Auth::new(&hash_password("x"), false).unwrap();
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..PER_IP_PER_MINUTE {
            assert!(auth.allow_attempt(one));
        }
        assert!(!auth.allow_attempt(one));
        let mut allowed = PER_IP_PER_MINUTE;
        for i in 2..40u8 {
            let ip: IpAddr = format!("10.0.0.{i}").parse().unwrap();
            if auth.allow_attempt(ip) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, GLOBAL_PER_MINUTE);
    }

    #[test]
    fn the_origin_must_be_this_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
