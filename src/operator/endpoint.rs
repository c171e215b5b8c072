//! `GET /operator/orders/{number}`: the order report over HTTP, so `duka order` works against the
//! demo, whose store lives inside the `duka serve` process.
//!
//! Only the demo turns it on ([`OperatorAccess::issue`]): it draws a random bearer token and
//! writes it to a file only its user can read (`.duka/operator-token` by default), where
//! `duka order` finds it. The route answers loopback callers only, and only with that token;
//! without operator access (production) it is a 404 like any unknown path.

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::startup::AppState;

/// Where the demo writes its token and `duka order` reads it, relative to the working directory.
pub const DEFAULT_TOKEN_FILE: &str = ".duka/operator-token";

/// The bearer token the operator endpoint accepts.
pub struct OperatorAccess {
    token: SecretString,
}

/// The token file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not write the operator token to {path}")]
pub struct TokenFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl OperatorAccess {
    /// Accepts exactly this token.
    pub fn new(token: SecretString) -> Self {
        Self { token }
    }

    /// Draws a fresh token (256 random bits) and writes it to `file`, readable by its owner only
    /// (mode 0600, in a folder created 0700), replacing an earlier run's.
    ///
    /// # Errors
    /// The folder or the file cannot be written.
    pub fn issue(file: &Path) -> Result<Self, TokenFileError> {
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        write_private(file, &token).map_err(|source| TokenFileError {
            path: file.to_owned(),
            source,
        })?;
        Ok(Self::new(SecretString::from(token)))
    }

    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// True when `headers` carry `Authorization: Bearer <the token>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same(given.trim(), self.token.expose_secret()))
    }
}

/// Compares in time that depends on the length only, so the token cannot be guessed bytewise.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn write_private(file: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(file)?;
    // A file left by an older run may have looser permissions than `mode` gives new files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    out.write_all(format!("{token}\n").as_bytes())
}

/// Reads a token written by [`OperatorAccess::issue`].
///
/// # Errors
/// The file cannot be read.
pub fn read_token(file: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(file)?;
    Ok(SecretString::from(text.trim().to_owned()))
}

/// The operator routes, loopback only.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/operator/orders/{number}", get(order))
        .route("/operator/orders/{number}/refunds", post(refund))
        .route("/operator/payments/{receipt}", get(lookup))
        .route("/operator/payments/{receipt}/find", post(find))
        .layer(axum::middleware::from_fn(super::loopback::only))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `GET /operator/orders/{number}`: the report `duka order --json` prints.
async fn order(
    State(app): State<AppState>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        return refused;
    }
    match super::order_report(app.shop.store.as_ref(), &app.shop.keys, &number).await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no order {number}")),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store failed: {e}"),
        ),
    }
}

/// The body of `POST /operator/orders/{number}/refunds`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RefundBody {
    /// Whole shillings; absent: everything refundable of the first payment with some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<crate::money::Kes>,
}

/// `POST /operator/orders/{number}/refunds`: approves a refund (`duka refund` in the demo).
/// 201 with the refund, 404 for no such order, 422 with the reason for a refused one.
async fn refund(
    State(app): State<AppState>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
    body: Option<Json<RefundBody>>,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        return refused;
    }
    let amount = body.and_then(|Json(b)| b.amount);
    match super::refund::approve(&app.shop, &number, amount).await {
        Ok(refund) => (StatusCode::CREATED, Json(refund)).into_response(),
        Err(e @ super::refund::ApproveError::NoOrder(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ super::refund::ApproveError::Refused(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The body of `POST /operator/payments/{receipt}/find`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FindBody {
    /// The order the shopper says they paid for, when Duka cannot tell by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// `POST /operator/payments/{receipt}/find`: starts a lookup (`duka mpesa find` in the demo).
/// 201 with the lookup, 404 for a named order that does not exist, 422 for a malformed receipt.
async fn find(
    State(app): State<AppState>,
    UrlPath(receipt): UrlPath<String>,
    headers: HeaderMap,
    body: Option<Json<FindBody>>,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        return refused;
    }
    let order = body.and_then(|Json(b)| b.order);
    match crate::payments::find::request(&app.shop, &receipt, order.as_deref()).await {
        Ok(lookup) => (StatusCode::CREATED, Json(lookup)).into_response(),
        Err(e @ crate::payments::find::FindError::NoOrder(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(
            e @ (crate::payments::find::FindError::NotAReceipt(_)
            | crate::payments::find::FindError::AppliedElsewhere { .. }),
        ) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /operator/payments/{receipt}`: where the lookup of a receipt is.
async fn lookup(
    State(app): State<AppState>,
    UrlPath(receipt): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused(&app, &headers) {
        return refused;
    }
    let Ok(receipt) = crate::payments::find::normalise_receipt(&receipt) else {
        return error(StatusCode::NOT_FOUND, format!("no lookup of {receipt}"));
    };
    match crate::payments::find::load(&app.shop, &receipt).await {
        Ok(Some(lookup)) => Json(lookup).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no lookup of {receipt}")),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store failed: {e}"),
        ),
    }
}

/// The response for a request the operator endpoint refuses (it is off, or the request lacks
/// its token); `None` for one it admits.
fn refused(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(access) = app.operator.as_deref() else {
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    (!access.admits(headers)).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <the token in the demo's operator token file>".to_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_private_and_holds_the_token() {
        let dir = std::env::temp_dir().join(format!("duka-token-{}", rand::random::<u64>()));
        let file = dir.join("nested/operator-token");
        let access = OperatorAccess::issue(&file).unwrap();
        assert_eq!(
            read_token(&file).unwrap().expose_secret(),
            access.token().expose_secret()
        );
        assert!(access.token().expose_secret().len() >= 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = OperatorAccess::issue(&file).unwrap();
        assert_ne!(
            again.token().expose_secret(),
            access.token().expose_secret(),
            "each run draws its own token"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let access = OperatorAccess::new(SecretString::from("s3cret-token".to_owned()));
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(access.admits(&with("Bearer s3cret-token")));
        assert!(!access.admits(&with("Bearer s3cret-tokeN")));
        assert!(!access.admits(&with("Bearer s3cret")));
        assert!(!access.admits(&with("s3cret-token")));
        assert!(!access.admits(&HeaderMap::new()));
    }
}
