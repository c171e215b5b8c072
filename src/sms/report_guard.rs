//! Who may post SMS delivery reports: a secret path segment and/or an allow-list.
//!
//! Africa's Talking signs nothing, so, as for Daraja's callbacks and the USSD routes:
//! - `AT_ALLOWED_IPS` set: reports are accepted only from those addresses (the caller read as
//!   [`crate::gateway::guard::caller`] does, behind a proxy the last `X-Forwarded-For` entry),
//!   on either path;
//! - `AT_CALLBACK_SECRET` set: reports are also served on `/sms/{secret}/delivery` (the URL to
//!   give AT's dashboard); the plain `/sms/delivery` then answers 403 unless an allow-list admits
//!   the caller;
//! - neither: anyone may post (start-up says so loudly when real SMS is configured).
//!
//! AT's end-of-session notifications are USSD routes and sit behind `DUKA_USSD_SECRET` and
//! `DUKA_USSD_ALLOWED_IPS[_AFRICASTALKING]` ([`crate::gateway::guard`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::limits::Limits;

/// The delivery routes' protections.
#[derive(Clone, Debug)]
pub struct ReportGuard {
    pub secret_set: bool,
    pub allowed_ips: Vec<IpNet>,
}

impl ReportGuard {
    pub fn new(limits: &Limits) -> Self {
        Self {
            secret_set: limits.at_callback_secret.is_some(),
            allowed_ips: limits.at_allowed_ips.clone(),
        }
    }

    /// Whether a report from `ip`, on the secret path or not, is accepted.
    pub fn admits(&self, ip: IpAddr, on_secret_path: bool) -> bool {
        if !self.allowed_ips.is_empty() {
            return self.allowed_ips.iter().any(|net| net.contains(&ip));
        }
        !self.secret_set || on_secret_path
    }

    /// Whether anything protects the routes.
    pub fn is_open(&self) -> bool {
        !self.secret_set && self.allowed_ips.is_empty()
    }
}

/// The middleware: a bare 403 for a report the guard does not admit.
pub async fn check(
    State(guard): State<Arc<ReportGuard>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let ip = crate::gateway::guard::caller(request.headers(), peer);
    let on_secret_path = request.uri().path() != "/sms/delivery";
    if guard.admits(ip, on_secret_path) {
        next.run(request).await
    } else {
        tracing::warn!(net.peer = %ip, "SMS delivery report refused (AT_CALLBACK_SECRET / AT_ALLOWED_IPS)");
        StatusCode::FORBIDDEN.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_decides_when_set_else_the_secret_path() {
        let local = IpAddr::from([127, 0, 0, 1]);
        let open = ReportGuard {
            secret_set: false,
            allowed_ips: vec![],
        };
        assert!(open.is_open() && open.admits(local, false));
        let secret = ReportGuard {
            secret_set: true,
            allowed_ips: vec![],
        };
        assert!(!secret.admits(local, false));
        assert!(secret.admits(local, true));
        let listed = ReportGuard {
            secret_set: true,
            allowed_ips: vec!["10.0.0.0/8".parse().unwrap()],
        };
        assert!(listed.admits(IpAddr::from([10, 1, 2, 3]), false));
        assert!(!listed.admits(local, true));
    }
}
