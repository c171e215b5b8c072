//! `duka order` against a running demo: asks its operator endpoint ([`super::endpoint`]) for the
//! report, since the demo's store lives inside the server process.

use secrecy::{ExposeSecret as _, SecretString};

use super::OrderReport;

/// Why the running server could not give the report.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0} is not a valid server URL")]
    BadUrl(String),
    #[error("could not reach the Duka at {url} (is `duka serve` running there? set DUKA_LISTEN or --url)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the server at {url} has no operator endpoint: it is not a demo (set REDIS_URL to read a production shop's Redis)")]
    NoEndpoint { url: String },
    #[error("the server refused the operator token (HTTP {status}): is the token file from this server's run?")]
    Refused { status: u16 },
    #[error("the server answered HTTP {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("the server's report was unreadable")]
    Unreadable(#[source] reqwest::Error),
}

/// Asks the server at `base_url` to approve a refund for order `number`.
///
/// # Errors
/// See [`RemoteError`]; a refused refund is [`RemoteError::Failed`] with the reason, and a
/// missing order [`RemoteError::Failed`] with status 404.
pub async fn request_refund(
    base_url: &str,
    token: &SecretString,
    number: &str,
    amount: Option<crate::money::Kes>,
) -> Result<super::ReportRefund, RemoteError> {
    let body = super::endpoint::RefundBody { amount };
    create(base_url, token, &["orders", number, "refunds"], &body).await
}

/// Fetches one order's report from the server at `base_url`. `Ok(None)` when there is no such
/// order.
///
/// # Errors
/// See [`RemoteError`].
pub async fn fetch_report(
    base_url: &str,
    token: &SecretString,
    number: &str,
) -> Result<Option<OrderReport>, RemoteError> {
    fetch(base_url, token, &["orders", number]).await
}

/// Asks the server at `base_url` to look the payment `receipt` up (`duka mpesa find`).
///
/// # Errors
/// See [`RemoteError`]; a refused lookup is [`RemoteError::Failed`] with the reason.
pub async fn request_find(
    base_url: &str,
    token: &SecretString,
    receipt: &str,
    order: Option<&str>,
) -> Result<crate::payments::find::Lookup, RemoteError> {
    let body = super::endpoint::FindBody {
        order: order.map(str::to_owned),
    };
    create(base_url, token, &["payments", receipt, "find"], &body).await
}

/// The lookup of `receipt` on the server at `base_url`; `Ok(None)` when there is none.
///
/// # Errors
/// See [`RemoteError`].
pub async fn fetch_lookup(
    base_url: &str,
    token: &SecretString,
    receipt: &str,
) -> Result<Option<crate::payments::find::Lookup>, RemoteError> {
    fetch(base_url, token, &["payments", receipt]).await
}

/// POSTs `body`; the created thing from a 201, else the refusal.
async fn create<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    base_url: &str,
    token: &SecretString,
    segments: &[&str],
    body: &B,
) -> Result<T, RemoteError> {
    let (base, response) = send(base_url, token, segments, Some(body)).await?;
    if response.status().as_u16() == 201 {
        return response.json().await.map_err(RemoteError::Unreadable);
    }
    Err(refusal(&base, response).await)
}

/// GETs one thing; `Ok(None)` for the endpoint's own 404 (which names what is missing; a bare
/// one is [`RemoteError::NoEndpoint`]).
async fn fetch<T: serde::de::DeserializeOwned>(
    base_url: &str,
    token: &SecretString,
    segments: &[&str],
) -> Result<Option<T>, RemoteError> {
    let (base, response) = send::<()>(base_url, token, segments, None).await?;
    if response.status().as_u16() == 200 {
        return response
            .json()
            .await
            .map(Some)
            .map_err(RemoteError::Unreadable);
    }
    match refusal(&base, response).await {
        RemoteError::Failed { status: 404, .. } => Ok(None),
        other => Err(other),
    }
}

/// Sends one request to `base_url/operator/<segments…>` with the operator token: a POST
/// of `body` as JSON, or a GET without one. Returns the base URL (for errors) and the response.
async fn send<B: serde::Serialize>(
    base_url: &str,
    token: &SecretString,
    segments: &[&str],
    body: Option<&B>,
) -> Result<(String, reqwest::Response), RemoteError> {
    let base = base_url.trim().trim_end_matches('/').to_owned();
    let mut url =
        reqwest::Url::parse(&format!("{base}/")).map_err(|_| RemoteError::BadUrl(base.clone()))?;
    url.path_segments_mut()
        .map_err(|()| RemoteError::BadUrl(base.clone()))?
        .pop_if_empty()
        .push("operator")
        .extend(segments);
    let unreachable = |source| RemoteError::Unreachable {
        url: base.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(unreachable)?;
    let request = match body {
        Some(body) => client.post(url).json(body),
        None => client.get(url),
    };
    let response = request
        .bearer_auth(token.expose_secret())
        .send()
        .await
        .map_err(unreachable)?;
    Ok((base, response))
}

/// What a response other than success means: no endpoint (a bare 404), a refused token, or the
/// endpoint's own error message.
async fn refusal(base: &str, response: reqwest::Response) -> RemoteError {
    let status = response.status().as_u16();
    let body: Option<serde_json::Value> = response.json().await.ok();
    let message = body
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .map(str::to_owned);
    match (status, message) {
        (404, None) => RemoteError::NoEndpoint { url: base.into() },
        (401, _) => RemoteError::Refused { status },
        (status, message) => RemoteError::Failed {
            status,
            message: message.unwrap_or_default(),
        },
    }
}
