//! Errors of the HTTP handlers, and how each is shown to its caller, in one place.
//!
//! The aggregator is the client of the USSD route and decides what the shopper sees: an HTTP
//! error or a body without `CON`/`END` ends the session with a cryptic network message. So an
//! internal failure is answered `200 END` with a short apology in the shopper's language, and
//! only a request that is not a well-formed callback at all gets a plain 400.
//!
//! Rendering has no side effects: the error rides along in the response's extensions and
//! [`log_app_errors`] logs it once, with its whole cause chain.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::gateway::BadCallback;
use crate::session::HopError;

/// A handler failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not a well-formed callback: 400 with the reason, nothing changed.
    #[error("bad callback: {0}")]
    BadCallback(#[from] BadCallback),
    /// The hop failed inside Duka: `200 END <apology>`.
    #[error("the USSD hop failed")]
    Hop {
        #[source]
        source: HopError,
        /// The apology in the shopper's language, rendered by the caller from the menus.
        apology: String,
    },
}

/// The error as logged by [`log_app_errors`].
#[derive(Clone)]
pub struct LoggedError(pub Arc<AppError>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = match &self {
            AppError::BadCallback(e) => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("bad callback: {e}\n"),
            )
                .into_response(),
            AppError::Hop { apology, .. } => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("END {apology}"),
            )
                .into_response(),
        };
        response
            .extensions_mut()
            .insert(LoggedError(Arc::new(self)));
        response
    }
}

/// Logs every [`AppError`] once, where it is handled: malformed callbacks as warnings (someone
/// else's bug), internal failures as errors (ours to act on).
pub async fn log_app_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(LoggedError(error)) = response.extensions().get::<LoggedError>() {
        let chain = error_chain(error.as_ref());
        match error.as_ref() {
            AppError::BadCallback(_) => {
                tracing::warn!(error.message = %error, "rejected a malformed callback")
            }
            AppError::Hop { .. } => {
                tracing::error!(error.message = %error, error.cause_chain = %chain, "USSD hop failed; answered with an apology")
            }
        }
    }
    response
}

/// `error: cause: cause`, every link of the chain on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}
