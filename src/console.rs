//! The operator console under `/console`, and the web phone (`/console/phone`; `/phone` in the
//! demo): what a shop owner needs without a terminal.
//!
//! Everything is server-rendered HTML from [`maud`] templates (checked at compile time), with a
//! little inline JavaScript only where a page must change without a reload: the order page
//! polls its JSON while the payment is pending, and the web phone's keypad talks to its JSON
//! endpoint. Every console page and JSON endpoint sits behind [`auth`]: a signed-in session, a
//! CSRF token on every POST.
//!
//! | path | what |
//! |---|---|
//! | `GET /console/sign-in`, `POST /console/sign-in`, `POST /console/sign-out` | [`auth`] |
//! | `GET /console` (`?day=YYYY-MM-DD&state=…&q=…`), `GET /console/orders/{n}`, `GET /console/api/orders/{n}` | [`orders`] |
//! | `GET /console/attention` | [`orders`]: the day's orders that need a person |
//! | `GET /console/funnel` | [`funnel`]: per screen, reached and ended there, per EAT day |
//! | `GET /console/catalog` | [`catalog`]: products, menus, `duka check` |
//! | `GET /console/phone`, `POST /console/api/phone` | [`phone`] |
//! | `GET /phone`, `POST /phone/api` | [`phone`], the demo only, loopback only, no sign-in |

pub mod auth;
pub mod catalog;
pub mod funnel;
pub mod orders;
pub mod page;
pub mod phone;
pub mod refund;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::startup::AppState;

tokio::task_local! {
    /// Where the shop serving this request is mounted (`/shops/<id>`, [`crate::shops`]); unset
    /// for the default shop. Set by [`mounted_at`] around a mounted shop's requests.
    static MOUNT: String;
}

/// An absolute console path, under the mount of the shop serving this request: every link,
/// form, redirect and the cookie's path go through it.
pub fn at(path: &str) -> String {
    MOUNT
        .try_with(|mount| format!("{mount}{path}"))
        .unwrap_or_else(|_| path.to_owned())
}

/// The id of the mounted shop serving this request (`mboga` under `/shops/mboga`), for the
/// console's header and titles; `None` for the default shop.
pub fn shop_id() -> Option<String> {
    MOUNT
        .try_with(|mount| {
            mount
                .strip_prefix(crate::shops::MOUNT_PREFIX)
                .map(str::to_owned)
        })
        .ok()
        .flatten()
}

/// Runs a mounted shop's request with its mount known to [`at`].
pub async fn mounted_at(
    mount: String,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    MOUNT.scope(mount, next.run(request)).await
}

/// The console as `duka serve` runs it; `None` in [`AppState`] means no console route exists.
pub struct Console {
    pub auth: auth::Auth,
    /// The web phone's sessions.
    pub phones: phone::Phones,
    /// Serve the web phone at `/phone` without sign-in (the demo only).
    pub open_phone: bool,
    /// The menus folder, checked again on the catalog page.
    pub menus_dir: std::path::PathBuf,
}

impl Console {
    /// A console whose password is the argon2 PHC string `password_hash`.
    ///
    /// # Errors
    /// The string is not a PHC hash.
    pub fn new(
        password_hash: &str,
        secure_cookie: bool,
        ussd_base_url: String,
        open_phone: bool,
        menus_dir: std::path::PathBuf,
    ) -> Result<Self, auth::HashError> {
        Ok(Self {
            auth: auth::Auth::new(password_hash, secure_cookie)?,
            phones: phone::Phones::new(ussd_base_url),
            open_phone,
            menus_dir,
        })
    }
}

/// The East Africa Time day of `ms` as `YYYYMMDD`: the day of the console's order index.
pub fn eat_day(ms: i64) -> String {
    let eat = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&crate::mpesa::clock::EAT);
    eat.format("%Y%m%d").to_string()
}

/// The console's routes (none when the console is off).
pub fn router(state: &AppState) -> Router<AppState> {
    let Some(console) = state.console.clone() else {
        return Router::new();
    };
    let signed_in = Router::new()
        .route("/console", get(orders::list))
        .route("/console/attention", get(orders::attention))
        .route("/console/orders/{number}", get(orders::page))
        .route(
            "/console/orders/{number}/refund",
            axum::routing::post(refund::approve),
        )
        .route("/console/api/orders/{number}", get(orders::json))
        .route("/console/catalog", get(catalog::page))
        .route("/console/funnel", get(funnel::page))
        .route("/console/phone", get(phone::page_signed_in))
        .route("/console/api/phone", post(phone::api))
        .route("/console/sign-out", post(auth::sign_out))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    let mut routes = Router::new()
        .route(
            "/console/sign-in",
            get(auth::sign_in_page).post(auth::sign_in),
        )
        .merge(signed_in);
    if console.open_phone {
        routes = routes.merge(
            Router::new()
                .route("/phone", get(phone::page_open))
                .route("/phone/api", post(phone::api_open))
                .layer(axum::middleware::from_fn(crate::operator::loopback::only)),
        );
    }
    routes
}

/// Turns the console on in `state`.
pub fn enable(state: &mut AppState, console: Console) {
    state.console = Some(Arc::new(console));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_eat_day_turns_at_21_utc() {
        // 2026-12-02 20:59:59 UTC is 23:59:59 EAT; a second later it is the 3rd in Nairobi.
        assert_eq!(super::eat_day(1_796_245_199_000), "20261202");
        assert_eq!(super::eat_day(1_796_245_200_000), "20261203");
    }
}
