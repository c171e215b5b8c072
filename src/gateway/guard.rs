//! Who may call the USSD routes: an optional secret path segment and optional allow-lists.
//!
//! No USSD gateway signs its callbacks, and a forged hop can place orders and push M-Pesa PIN
//! prompts to any number. So, as for Daraja's callbacks, a deployment can:
//! - put every USSD route behind a secret path segment (`DUKA_USSD_SECRET`): the routes are then
//!   served only as `/{secret}/ussd/…` (`/ussd/…` is a 404), and the gateway's dashboard gets
//!   the URL with the secret in it;
//! - accept USSD requests only from the gateways' published source addresses
//!   (`DUKA_USSD_ALLOWED_IPS` for all gateways, `DUKA_USSD_ALLOWED_IPS_<NAME>` for one, e.g.
//!   `DUKA_USSD_ALLOWED_IPS_HUBTEL`, which then replaces the common list for that gateway).
//!   Behind a proxy the caller is the last `X-Forwarded-For` entry, the one our proxy added.
//!   Anyone else gets a bare 403 and nothing changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use super::GATEWAYS;
use crate::startup::AppState;

/// The USSD routes' protections, from the configuration.
#[derive(Clone, Debug, Default)]
pub struct UssdGuard {
    /// The secret path segment in front of every USSD route.
    pub secret: Option<SecretString>,
    /// Source addresses allowed for every gateway without a list of its own; empty: anyone.
    pub allowed_ips: Vec<IpNet>,
    /// Per-gateway lists, by gateway name.
    pub per_gateway: Vec<(String, Vec<IpNet>)>,
}

impl UssdGuard {
    /// The addresses allowed to call this gateway's routes (empty: anyone).
    pub fn allowed_for(&self, gateway: &str) -> &[IpNet] {
        self.per_gateway
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(gateway))
            .map_or(self.allowed_ips.as_slice(), |(_, list)| list.as_slice())
    }
}

/// Every gateway's routes, each behind its allow-list, all behind the secret path if set.
pub fn routes(guard: &UssdGuard) -> Router<AppState> {
    let mut all = Router::new();
    for gateway in GATEWAYS {
        let mut routes = gateway.routes();
        let allowed = guard.allowed_for(gateway.name());
        if !allowed.is_empty() {
            let allowed: Arc<[IpNet]> = allowed.into();
            let name = gateway.name();
            routes = routes.layer(axum::middleware::from_fn(
                move |request: Request, next: Next| {
                    let allowed = allowed.clone();
                    async move { only_from(&allowed, name, request, next).await }
                },
            ));
        }
        all = all.merge(routes);
    }
    match &guard.secret {
        Some(secret) => Router::new().nest(&format!("/{}", secret.expose_secret()), all),
        None => all,
    }
}

async fn only_from(allowed: &[IpNet], gateway: &str, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let ip = caller(request.headers(), peer);
    if allowed.iter().any(|net| net.contains(&ip)) {
        next.run(request).await
    } else {
        tracing::warn!(gateway, net.peer = %ip, "USSD request from an address outside the gateway's allow-list; refused");
        StatusCode::FORBIDDEN.into_response()
    }
}

/// The address a request came from: the last `X-Forwarded-For` entry (the one our own proxy
/// added), else the peer. The payment callbacks' allow-list reads it the same way.
pub fn caller(headers: &axum::http::HeaderMap, peer: IpAddr) -> IpAddr {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_list_replaces_the_common_one() {
        let guard = UssdGuard {
            secret: None,
            allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
            per_gateway: vec![("hubtel".into(), vec!["192.0.2.1/32".parse().unwrap()])],
        };
        assert_eq!(guard.allowed_for("HUBTEL").len(), 1);
        assert_eq!(
            guard.allowed_for("hubtel")[0],
            "192.0.2.1/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            guard.allowed_for("africastalking")[0],
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn the_proxy_added_forwarded_entry_is_the_caller() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 10.0.0.7".parse().unwrap());
        assert_eq!(
            caller(&headers, IpAddr::from([127, 0, 0, 1])),
            IpAddr::from([10, 0, 0, 7])
        );
        assert_eq!(
            caller(&Default::default(), IpAddr::from([127, 0, 0, 1])),
            IpAddr::from([127, 0, 0, 1])
        );
    }
}
