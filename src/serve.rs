//! The accept loop: HTTP/1.1 connections with a header read timeout and a cap on how many are
//! served at once.
//!
//! `axum::serve` has neither, so a few thousand idle sockets used to exhaust the file
//! descriptors (`accept error: Too many open files` every second) and real gateways were refused.
//! Here:
//! - a connection must send a request's headers within `DUKA_HEADER_READ_TIMEOUT_MS`
//!   (also the keep-alive idle limit), or it is closed; a slow body is cut by the router's
//!   request timeout ([`crate::startup`]'s 10 s);
//! - at most `DUKA_MAX_CONNECTIONS` connections are served at once. Over the cap the loop stops
//!   accepting, so new connections wait in the kernel's backlog until one closes (at most one
//!   header timeout away, for an idle one);
//! - an accept error (EMFILE, ENFILE, ECONNABORTED …) is logged once and the loop backs off
//!   (10 ms doubling to 1 s) instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// How the loop treats connections.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// How long in-flight requests get after `shutdown` resolves.
const DRAIN: Duration = Duration::from_secs(15);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests (up to 15 s).
///
/// # Errors
/// None so far: accept errors are retried; the signature leaves room for a fatal one.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut backoff = Duration::from_millis(10);
    let mut saturated_logged = false;
    tokio::pin!(shutdown);
    loop {
        // A slot first: over the cap nothing is accepted and the backlog holds the rest.
        let permit = if let Ok(permit) = slots.clone().try_acquire_owned() {
            saturated_logged = false;
            permit
        } else {
            if !saturated_logged {
                tracing::warn!(
                    connections = limits.max_connections,
                    "at DUKA_MAX_CONNECTIONS: new connections wait until one closes"
                );
                saturated_logged = true;
            }
            tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = Duration::from_millis(10);
                    accepted
                }
                Err(e) => {
                    if backoff == Duration::from_millis(10) {
                        tracing::error!(error.message = %e, "accept error; backing off");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's: a reset, a header timeout, a malformed request.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// The process's open-file limit, where the platform says (Linux's `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Says at start-up when the connection cap cannot be reached before the file descriptors run out.
pub fn check_open_files(max_connections: usize) {
    if let Some(limit) = open_files_limit() {
        // Redis, the outside APIs, the log and the listener need a few more.
        if limit < max_connections as u64 + 64 {
            tracing::warn!(
                open_files = limit,
                max_connections,
                "the open-file limit (ulimit -n) is below DUKA_MAX_CONNECTIONS + 64: lower DUKA_MAX_CONNECTIONS or raise the limit"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_open_files_limit_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
