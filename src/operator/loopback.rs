//! Routes for a person at this machine only: the demo's sandbox controls and the operator's
//! order endpoint refuse any caller that is not on loopback.
//!
//! The check reads the peer address axum records when the server is started with connect info
//! (as `duka serve` is). A request without it is refused too, so a router served some other way
//! fails closed.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Middleware: 403 unless the peer is a loopback address.
pub async fn only(request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match peer {
        Some(ip) if is_loopback(ip) => next.run(request).await,
        _ => (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "this route answers callers on this machine (loopback) only"
            })),
        )
            .into_response(),
    }
}

/// `127.0.0.0/8`, `::1`, and `::ffff:127.x.y.z` (IPv4 loopback on a dual-stack socket).
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    async fn status_from(peer: Option<&str>) -> StatusCode {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(only));
        let mut request = axum::http::Request::builder().uri("/");
        if let Some(peer) = peer {
            request = request.extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        app.oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn loopback_callers_pass_and_others_are_refused() {
        assert_eq!(status_from(Some("127.0.0.1:5000")).await, StatusCode::OK);
        assert_eq!(status_from(Some("[::1]:5000")).await, StatusCode::OK);
        assert_eq!(
            status_from(Some("[::ffff:127.0.0.1]:5000")).await,
            StatusCode::OK
        );
        assert_eq!(
            status_from(Some("192.168.1.20:5000")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_from(Some("[::ffff:10.0.0.1]:5000")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(status_from(None).await, StatusCode::FORBIDDEN);
    }
}
