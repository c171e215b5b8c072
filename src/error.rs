//! Errors of the HTTP handlers, and how each is shown to its caller, in one place.
//!
//! The aggregator is the client of the USSD routes and decides what the shopper sees. A hop
//! that fails inside Duka is not an error here: [`crate::ussd::answer`] turns it into an
//! apology screen, because an HTTP error ends the session with a cryptic network message. Only
//! a request that is not a well-formed callback at all gets a 400, in the gateway's own error
//! shape: plain text for the text gateways, `{"error": …}` for the JSON ones, Infobip's
//! `responseExitCode` object for Infobip.
//!
//! Rendering has no side effects: the error rides along in the response's extensions and
//! [`crate::bounds`] logs it once.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::gateway::BadCallback;

/// A handler failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Not a well-formed callback: 400 with the reason, nothing changed.
    #[error("bad callback: {error}")]
    BadCallback {
        #[source]
        error: BadCallback,
        shape: ErrorShape,
    },
}

/// How a gateway expects to read an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorShape {
    /// `text/plain`: Africa's Talking, Safaricom, Airtel, Cellulant.
    Text,
    /// `{"error": "…"}`: the JSON gateways without an error shape of their own.
    Json,
    /// Infobip's reply object with `responseExitCode: 400`.
    Infobip,
}

impl AppError {
    /// A malformed callback answered in plain text.
    pub fn text(error: BadCallback) -> Self {
        AppError::BadCallback {
            error,
            shape: ErrorShape::Text,
        }
    }

    /// A malformed callback answered as `{"error": …}`.
    pub fn json(error: BadCallback) -> Self {
        AppError::BadCallback {
            error,
            shape: ErrorShape::Json,
        }
    }
}

impl From<BadCallback> for AppError {
    fn from(error: BadCallback) -> Self {
        AppError::text(error)
    }
}

/// The error as logged by [`crate::bounds`].
#[derive(Clone)]
pub struct LoggedError(pub Arc<AppError>);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let AppError::BadCallback { error, shape } = &self;
        let message = format!("bad callback: {error}");
        let mut response = match shape {
            ErrorShape::Text => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("{message}\n"),
            )
                .into_response(),
            ErrorShape::Json => (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response(),
            ErrorShape::Infobip => (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({
                    "shouldClose": true,
                    "ussdMenu": "",
                    "responseExitCode": 400,
                    "responseMessage": message,
                })),
            )
                .into_response(),
        };
        response
            .extensions_mut()
            .insert(LoggedError(Arc::new(self)));
        response
    }
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
