//! [`DarajaClient`]: the four Daraja calls Duka makes, and the access token they share.
//!
//! # The token
//! Kept in memory, not in Redis: a cold start costs one extra token call, and a token never
//! leaves the process. It is reused until `fetched_at + expires_in - margin`, where the margin is
//! five minutes, or half the lifetime when the lifetime is short (a sandbox set to a few
//! seconds), so a token is never used right at its end. The cache belongs to one client, hence
//! to one base URL and consumer key. Only one refresh runs at a time: callers who find the token
//! stale queue on a mutex and check again once they hold it, so a burst of first calls costs a
//! single token request.
//!
//! When Daraja refuses a token (HTTP 401 or `404.001.03`), the client drops it if it is still
//! the cached one, fetches a new one, and retries the call **once**. A second refusal is
//! returned; it never loops.
//!
//! # Time
//! `Timestamp` comes from the injected [`Clock`], in Nairobi time. The token's expiry is judged
//! on the same clock, so a test can share a [`crate::mpesa::ManualClock`] with the sandbox; a wall
//! clock that jumps can at worst cost one refused token, which the retry absorbs.
//!
//! # Retries
//! The client never retries a call on its own, apart from the token refresh above. Whether a
//! failed push may be sent again is the caller's decision, made on [`MpesaError::disposition`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{debug, info, warn};

use super::callbacks::{result_code_meaning, ResultKind};
use super::clock::{eat_timestamp, Clock, SystemClock};
use super::error::{body_start, from_transport, DarajaError, ErrorCode, MpesaError};
use super::urls::check_callback_url;
use super::wire::{
    is_success_code, stk_password, C2bRegisterBody, C2bRegisterReply, Endpoint, ErrorEnvelope,
    StkPushBody, StkPushReply, StkQueryBody, StkQueryReply, TokenReply, PAYBILL_TRANSACTION_TYPE,
    TILL_TRANSACTION_TYPE,
};
use crate::money::Kes;
use crate::msisdn::Msisdn;

/// Where Daraja is and who Duka is to it.
#[derive(Debug, Clone)]
pub struct DarajaConfig {
    /// `https://sandbox.safaricom.co.ke`, `https://api.safaricom.co.ke`, or a stand-in.
    pub base_url: String,
    pub consumer_key: String,
    pub consumer_secret: SecretString,
    /// The paybill, 5–7 digits: `BusinessShortCode` and `PartyB` of every push.
    pub shortcode: String,
    /// The Lipa Na M-Pesa passkey of the shortcode.
    pub passkey: SecretString,
    /// How long to wait for a connection. Failing here means the request never left.
    pub connect_timeout: Duration,
    /// How long a whole call may take. Failing after the connection means it may have arrived.
    pub request_timeout: Duration,
    /// A Buy Goods till (`MPESA_TILL`): pushes are `CustomerBuyGoodsOnline` with `PartyB` = the
    /// till, and `shortcode` is the store (head office) number. `None`: a paybill.
    pub till: Option<String>,
    /// The API operator refunds are made as (`MPESA_INITIATOR_NAME`) and its password encrypted
    /// with Safaricom's certificate (`MPESA_SECURITY_CREDENTIAL`). `None`: no refunds.
    pub initiator: Option<(String, SecretString)>,
}

impl DarajaConfig {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// A configuration with the default timeouts (3 s to connect, 10 s in all).
    pub fn new(
        base_url: impl Into<String>,
        consumer_key: impl Into<String>,
        consumer_secret: SecretString,
        shortcode: impl Into<String>,
        passkey: SecretString,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            consumer_key: consumer_key.into(),
            consumer_secret,
            shortcode: shortcode.into(),
            passkey,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            till: None,
            initiator: None,
        }
    }

    /// The same configuration able to refund as this initiator.
    #[must_use]
    pub fn with_initiator(mut self, initiator: Option<(String, SecretString)>) -> Self {
        self.initiator = initiator;
        self
    }

    /// The same configuration pushing to the Buy Goods till `till` (`None`: the paybill).
    #[must_use]
    pub fn with_till(mut self, till: Option<String>) -> Self {
        self.till = till;
        self
    }
}

/// One STK push: who pays what for which order. Its `Debug` shows the callback URL's origin
/// only, since the path carries the callback secret.
#[derive(Clone)]
pub struct StkPush<'a> {
    /// Converted with [`Kes::to_mpesa_whole_shillings`]; zero or less is refused before sending.
    pub amount: Kes,
    /// Gets the prompt (`PartyA` and `PhoneNumber`).
    pub payer: &'a Msisdn,
    /// The order number: 1–12 letters or digits. It shows on the prompt and becomes the paybill
    /// account number, so it is refused rather than cut when too long.
    pub account_reference: &'a str,
    /// `TransactionDesc`: trimmed and cut to 13 characters; refused when empty.
    pub description: &'a str,
    /// Where Daraja posts the result.
    pub callback_url: &'a str,
}

impl std::fmt::Debug for StkPush<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = reqwest::Url::parse(self.callback_url)
            .map(|url| url.origin().ascii_serialization())
            .unwrap_or_else(|_| "<not a URL>".into());
        f.debug_struct("StkPush")
            .field("amount", &self.amount)
            .field("payer", self.payer)
            .field("account_reference", &self.account_reference)
            .field("description", &self.description)
            .field("callback_origin", &origin)
            .finish()
    }
}

/// Daraja accepted the push for sending. It says nothing yet about payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkPushAccepted {
    pub merchant_request_id: String,
    /// Store this on the attempt before anything else: the callback and the query join on it.
    pub checkout_request_id: String,
    pub customer_message: String,
}

/// The state of a push, as the query reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StkQueryOutcome {
    /// The shopper has not answered yet ("The transaction is being processed").
    Pending,
    /// The push is over, one way or the other.
    Completed(StkQueryResult),
}

/// A completed push, per the query. A `0` proves payment but carries no receipt, amount or date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkQueryResult {
    pub merchant_request_id: String,
    pub checkout_request_id: String,
    /// A string on the wire, an integer here, comparable with the callback's.
    pub result_code: i64,
    pub result_desc: String,
}

impl StkQueryResult {
    pub fn kind(&self) -> ResultKind {
        result_code_meaning(self.result_code)
    }
}

/// Daraja registered the C2B URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2bUrlsRegistered {
    /// `OriginatorCoversationID` on the wire.
    pub originator_conversation_id: String,
    pub response_description: String,
}

/// A Daraja client. Cloning is cheap and clones share the HTTP connection pool and the token.
#[derive(Clone)]
pub struct DarajaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash, so that `base_url + endpoint.path()` keeps any path prefix.
    base_url: String,
    consumer_key: String,
    consumer_secret: SecretString,
    shortcode: String,
    shortcode_number: u64,
    passkey: SecretString,
    clock: Arc<dyn Clock>,
    tokens: TokenCache,
    till: Option<String>,
    initiator: Option<(String, SecretString)>,
}

impl std::fmt::Debug for DarajaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DarajaClient")
            .field("base_url", &self.inner.base_url)
            .field("shortcode", &self.inner.shortcode)
            .finish_non_exhaustive()
    }
}

impl DarajaClient {
    /// A client on the system clock.
    ///
    /// # Errors
    /// [`MpesaError::Config`] for a base URL that is not http(s), a shortcode that is not 5–7
    /// digits, or an HTTP client that cannot be built.
    pub fn new(config: DarajaConfig) -> Result<Self, MpesaError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A client whose timestamps and token expiry follow `clock`.
    ///
    /// # Errors
    /// As [`DarajaClient::new`].
    pub fn with_clock(config: DarajaConfig, clock: Arc<dyn Clock>) -> Result<Self, MpesaError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| MpesaError::Config(format!("base URL {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(MpesaError::Config(format!(
                "base URL {base_url:?} is not http(s)"
            )));
        }
        let shortcode = config.shortcode.trim().to_owned();
        let shortcode_number = parse_shortcode(&shortcode)?;
        let till = config.till.map(|till| till.trim().to_owned());
        if let Some(till) = &till {
            parse_shortcode(till)?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirected POST would be replayed as a GET; Daraja does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MpesaError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                consumer_key: config.consumer_key,
                consumer_secret: config.consumer_secret,
                shortcode,
                shortcode_number,
                passkey: config.passkey,
                clock,
                tokens: TokenCache::default(),
                till,
                initiator: config.initiator,
            }),
        })
    }

    /// The initiator name and security credential refunds are made with, when configured.
    pub fn initiator(&self) -> Option<(&str, &SecretString)> {
        self.inner
            .initiator
            .as_ref()
            .map(|(name, credential)| (name.as_str(), credential))
    }

    pub fn shortcode(&self) -> &str {
        &self.inner.shortcode
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The Buy Goods till pushes go to, if the shop takes M-Pesa on a till.
    pub fn till(&self) -> Option<&str> {
        self.inner.till.as_deref()
    }

    /// Fetches an access token if none is cached: a start-up check that the credentials work.
    ///
    /// # Errors
    /// [`MpesaError::Token`] wrapping why the token call failed (`400.008.01` for wrong
    /// credentials).
    pub async fn check_credentials(&self) -> Result<(), MpesaError> {
        self.token().await.map(drop)
    }

    /// Sends an STK push (`CustomerPayBillOnline`, or `CustomerBuyGoodsOnline` to a till): the
    /// shopper's phone shows a PIN prompt.
    ///
    /// # Errors
    /// - Never arrived ([`MpesaError::never_arrived`]): our checks refused the request (amount
    ///   not payable, account reference not 1–12 letters or digits, empty description, a banned
    ///   word in the callback URL), the connection failed, or no token could be had. Safe to push
    ///   again.
    /// - Ambiguous ([`MpesaError::is_ambiguous`]): a read timeout, a 5xx, a garbled 2xx. The
    ///   prompt may be on the phone: do not push again, query first.
    /// - Rejected ([`MpesaError::is_rejected`]): `400.002.02` (a bad field, named in the
    ///   message), HTTP 429, `500.001.1001` (see [`MpesaError::push_refusal`]: wrong
    ///   credentials, unknown merchant, or a transaction already in progress for the phone), or
    ///   a token refused twice.
    #[tracing::instrument(
        name = "mpesa.stk_push",
        skip_all,
        fields(mpesa.account_reference = %push.account_reference, msisdn.masked = %push.payer.masked())
    )]
    pub async fn stk_push(&self, push: &StkPush<'_>) -> Result<StkPushAccepted, MpesaError> {
        let body = push_body(
            &self.inner.shortcode,
            self.inner.till.as_deref(),
            self.inner.passkey.expose_secret(),
            push,
            self.inner.clock.now(),
        )?;
        let reply = self.call(Endpoint::StkPush, &body).await?;
        let accepted: StkPushReply = reply.decode()?;
        if !is_success_code(&accepted.response_code) {
            return Err(MpesaError::NotAccepted {
                endpoint: Endpoint::StkPush,
                response_code: accepted.response_code,
                description: accepted.response_description,
            });
        }
        // The business event ("STK push accepted for order …") is logged once, by the caller.
        debug!(
            mpesa.checkout_request_id = %accepted.checkout_request_id,
            mpesa.merchant_request_id = %accepted.merchant_request_id,
            "Daraja accepted the STK push"
        );
        Ok(StkPushAccepted {
            merchant_request_id: accepted.merchant_request_id,
            checkout_request_id: accepted.checkout_request_id,
            customer_message: accepted.customer_message,
        })
    }

    /// Asks Daraja how a push ended. Poll every 15–30 s at most: the query is rate-limited.
    ///
    /// # Errors
    /// As [`DarajaClient::stk_push`], except that the `500.001.1001` "being processed" envelope
    /// is [`StkQueryOutcome::Pending`], not an error. An unknown `CheckoutRequestID` is a
    /// rejection (`400.002.02`).
    #[tracing::instrument(
        name = "mpesa.stk_query",
        skip_all,
        fields(mpesa.checkout_request_id = %checkout_request_id)
    )]
    pub async fn stk_query(
        &self,
        checkout_request_id: &str,
    ) -> Result<StkQueryOutcome, MpesaError> {
        let checkout_request_id = checkout_request_id.trim();
        if checkout_request_id.is_empty() {
            return Err(MpesaError::InvalidRequest(
                "the CheckoutRequestID is empty".into(),
            ));
        }
        let timestamp = eat_timestamp(self.inner.clock.now());
        let body = StkQueryBody {
            business_short_code: self.inner.shortcode_number,
            password: stk_password(
                &self.inner.shortcode,
                self.inner.passkey.expose_secret(),
                &timestamp,
            ),
            timestamp,
            checkout_request_id,
        };
        let reply = self.call(Endpoint::StkQuery, &body).await?;
        if reply
            .envelope()
            .is_some_and(|e| e.code == ErrorCode::RequestRefused && e.is_still_processing())
        {
            return Ok(StkQueryOutcome::Pending);
        }
        let answer: StkQueryReply = reply.decode()?;
        if !is_success_code(&answer.response_code) {
            return Err(MpesaError::NotAccepted {
                endpoint: Endpoint::StkQuery,
                response_code: answer.response_code,
                description: answer.response_description,
            });
        }
        // A success envelope without a ResultCode has nothing final to say yet.
        let Some(result_code) = answer.result_code else {
            return Ok(StkQueryOutcome::Pending);
        };
        info!(
            mpesa.result_code = result_code,
            "STK query: result {result_code}"
        );
        Ok(StkQueryOutcome::Completed(StkQueryResult {
            merchant_request_id: answer.merchant_request_id,
            checkout_request_id: if answer.checkout_request_id.is_empty() {
                checkout_request_id.to_owned()
            } else {
                answer.checkout_request_id
            },
            result_code,
            result_desc: answer.result_desc,
        }))
    }

    /// Registers the paybill's C2B URLs (v1) with `ResponseType: "Completed"`, so a validation
    /// outage blocks no payment. In production this is one-time, and changes go through the
    /// portal (reported).
    ///
    /// # Errors
    /// [`MpesaError::InvalidRequest`] when a URL breaks Daraja's rules; otherwise as
    /// [`DarajaClient::stk_push`].
    #[tracing::instrument(name = "mpesa.register_c2b_urls", skip_all)]
    pub async fn register_c2b_urls(
        &self,
        confirmation_url: &str,
        validation_url: &str,
    ) -> Result<C2bUrlsRegistered, MpesaError> {
        for (field, url) in [
            ("ConfirmationURL", confirmation_url),
            ("ValidationURL", validation_url),
        ] {
            check_callback_url(url, false)
                .map_err(|e| MpesaError::InvalidRequest(format!("{field}: {e}")))?;
        }
        let body = C2bRegisterBody {
            short_code: &self.inner.shortcode,
            response_type: "Completed",
            confirmation_url: confirmation_url.trim(),
            validation_url: validation_url.trim(),
        };
        let reply = self.call(Endpoint::C2bRegister, &body).await?;
        let answer: C2bRegisterReply = reply.decode()?;
        if !is_success_code(&answer.response_code) {
            return Err(MpesaError::NotAccepted {
                endpoint: Endpoint::C2bRegister,
                response_code: answer.response_code,
                description: answer.response_description,
            });
        }
        info!("C2B URLs registered for shortcode {}", self.inner.shortcode);
        Ok(C2bUrlsRegistered {
            originator_conversation_id: answer.originator_conversation_id,
            response_description: answer.response_description,
        })
    }

    /// POSTs `body` with the cached token, and once more with a fresh token if Daraja refuses
    /// the first one.
    pub(crate) async fn call<B: Serialize + ?Sized>(
        &self,
        endpoint: Endpoint,
        body: &B,
    ) -> Result<Reply, MpesaError> {
        let token = self.token().await?;
        let reply = self.post(endpoint, &token, body).await?;
        if !reply.is_invalid_token() {
            return Ok(reply);
        }
        warn!(
            mpesa.endpoint = %endpoint,
            "Daraja refused the access token on the {endpoint}; fetching a new one and retrying once"
        );
        self.inner.tokens.invalidate(token.generation);
        let token = self.token().await?;
        self.post(endpoint, &token, body).await
    }

    async fn post<B: Serialize + ?Sized>(
        &self,
        endpoint: Endpoint,
        token: &CachedToken,
        body: &B,
    ) -> Result<Reply, MpesaError> {
        let url = format!("{}{}", self.inner.base_url, endpoint.path());
        let request = self
            .inner
            .http
            .post(url)
            .bearer_auth(token.value.expose_secret())
            .json(body);
        send(endpoint, request).await
    }

    /// The cached token, or a new one. Waits behind a refresh already running.
    async fn token(&self) -> Result<Arc<CachedToken>, MpesaError> {
        let tokens = &self.inner.tokens;
        if let Some(token) = tokens.fresh(self.inner.clock.now()) {
            return Ok(token);
        }
        let _refreshing = tokens.refresh.lock().await;
        // Whoever held the lock before us may have just fetched one.
        if let Some(token) = tokens.fresh(self.inner.clock.now()) {
            return Ok(token);
        }
        let (value, expires_in) = self
            .fetch_token()
            .await
            .map_err(|e| MpesaError::Token(Box::new(e)))?;
        let fetched_at = self.inner.clock.now();
        Ok(tokens.store(value, refresh_after(fetched_at, expires_in)))
    }

    async fn fetch_token(&self) -> Result<(SecretString, u64), MpesaError> {
        const DOCUMENTED_LIFETIME: u64 = 3600;
        let endpoint = Endpoint::Token;
        // The query string is written out: a stray space gets `400.008.02` (reported).
        let url = format!(
            "{}{}?grant_type=client_credentials",
            self.inner.base_url,
            endpoint.path()
        );
        let request = self.inner.http.get(url).basic_auth(
            &self.inner.consumer_key,
            Some(self.inner.consumer_secret.expose_secret()),
        );
        let reply = send(endpoint, request).await?;
        let status = reply.status;
        if !status.is_success() {
            return Err(reply.error());
        }
        match serde_json::from_slice::<TokenReply>(&reply.body) {
            Ok(token) if !token.access_token.is_empty() => {
                debug!("fetched a Daraja access token");
                Ok((
                    SecretString::from(token.access_token),
                    token.expires_in.unwrap_or(DOCUMENTED_LIFETIME),
                ))
            }
            // The body is not quoted in the error: it may hold a token.
            _ => Err(MpesaError::UnexpectedReply {
                endpoint,
                status: status.as_u16(),
                body_start: "<token reply withheld>".into(),
            }),
        }
    }
}

fn parse_shortcode(shortcode: &str) -> Result<u64, MpesaError> {
    let is_shortcode =
        (5..=7).contains(&shortcode.len()) && shortcode.bytes().all(|b| b.is_ascii_digit());
    if !is_shortcode {
        return Err(MpesaError::Config(format!(
            "the shortcode {shortcode:?} is not 5 to 7 digits"
        )));
    }
    shortcode
        .parse()
        .map_err(|_| MpesaError::Config(format!("the shortcode {shortcode:?} is not a number")))
}

/// Builds the push body for `now`, refusing what Daraja would refuse anyway. With a `till`,
/// `shortcode` is the store number: it stays `BusinessShortCode` and signs the `Password`,
/// and the till is `PartyB`.
pub(crate) fn push_body(
    shortcode: &str,
    till: Option<&str>,
    passkey: &str,
    push: &StkPush<'_>,
    now: DateTime<Utc>,
) -> Result<StkPushBody, MpesaError> {
    let shortcode_number = parse_shortcode(shortcode)?;
    let (transaction_type, party_b) = match till {
        Some(till) => (TILL_TRANSACTION_TYPE, parse_shortcode(till)?),
        None => (PAYBILL_TRANSACTION_TYPE, shortcode_number),
    };
    let amount = push.amount.to_mpesa_whole_shillings().map_err(|e| {
        MpesaError::InvalidRequest(format!("the amount {} is not payable: {e}", push.amount))
    })?;
    let phone: u64 = push.payer.digits().parse().map_err(|_| {
        MpesaError::InvalidRequest(format!("the payer {} is not all digits", push.payer))
    })?;
    let account_reference = account_reference(push.account_reference)?;
    let transaction_desc = transaction_desc(push.description)?;
    let callback_url = push.callback_url.trim();
    check_callback_url(callback_url, false)
        .map_err(|e| MpesaError::InvalidRequest(format!("CallBackURL: {e}")))?;
    let timestamp = eat_timestamp(now);
    Ok(StkPushBody {
        business_short_code: shortcode_number,
        password: stk_password(shortcode, passkey, &timestamp),
        timestamp,
        transaction_type,
        amount,
        party_a: phone,
        party_b,
        phone_number: phone,
        callback_url: callback_url.to_owned(),
        account_reference,
        transaction_desc,
    })
}

/// `AccountReference`: 1–12 ASCII letters or digits, refused rather than cut, since it becomes
/// the account number the shopper would type at the paybill.
fn account_reference(raw: &str) -> Result<String, MpesaError> {
    let trimmed = raw.trim();
    let valid =
        (1..=12).contains(&trimmed.len()) && trimmed.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(MpesaError::InvalidRequest(format!(
            "the AccountReference {trimmed:?} is not 1 to 12 letters or digits"
        )))
    }
}

/// `TransactionDesc`: trimmed and cut to 13 characters, since it is only a label.
fn transaction_desc(raw: &str) -> Result<String, MpesaError> {
    const MAX_CHARS: usize = 13;
    let cut: String = raw.trim().chars().take(MAX_CHARS).collect();
    let cut = cut.trim_end();
    if cut.is_empty() {
        return Err(MpesaError::InvalidRequest(
            "the TransactionDesc is empty".into(),
        ));
    }
    Ok(cut.to_owned())
}

/// When to stop using a token fetched at `fetched_at` that lives `expires_in` seconds.
fn refresh_after(fetched_at: DateTime<Utc>, expires_in: u64) -> DateTime<Utc> {
    const MARGIN: u64 = 5 * 60;
    const LONGEST: u64 = 24 * 3600;
    let lifetime = expires_in.min(LONGEST);
    let usable = lifetime - MARGIN.min(lifetime / 2);
    // `usable` is at most a day; a clock at the end of chrono's range just refreshes every time.
    let usable = chrono::Duration::seconds(i64::try_from(usable).unwrap_or(0));
    fetched_at.checked_add_signed(usable).unwrap_or(fetched_at)
}

/// A token and when to stop using it. Not `Debug`: it holds the token.
struct CachedToken {
    value: SecretString,
    refresh_after: DateTime<Utc>,
    /// Tells a refused token from one fetched since, so a late refusal never drops a new token.
    generation: u64,
}

#[derive(Default)]
struct TokenCache {
    current: RwLock<Option<Arc<CachedToken>>>,
    /// Held while a token is being fetched, so only one fetch runs at a time.
    refresh: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl TokenCache {
    fn fresh(&self, now: DateTime<Utc>) -> Option<Arc<CachedToken>> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|token| now < token.refresh_after)
            .cloned()
    }

    fn store(&self, value: SecretString, refresh_after: DateTime<Utc>) -> Arc<CachedToken> {
        let token = Arc::new(CachedToken {
            value,
            refresh_after,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
        });
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&token));
        token
    }

    fn invalidate(&self, generation: u64) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            *current = None;
        }
    }
}

/// A reply as it came off the wire, before it is judged.
pub(crate) struct Reply {
    endpoint: Endpoint,
    status: StatusCode,
    body: Bytes,
}

impl Reply {
    pub(crate) fn envelope(&self) -> Option<DarajaError> {
        let envelope: ErrorEnvelope = serde_json::from_slice(&self.body).ok()?;
        Some(DarajaError {
            request_id: envelope.request_id,
            code: ErrorCode::parse(&envelope.error_code),
            message: envelope.error_message,
        })
    }

    fn is_invalid_token(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
            || self
                .envelope()
                .is_some_and(|e| e.code == ErrorCode::InvalidAccessToken)
    }

    /// The error this reply stands for: the envelope if there is one, else the raw status and
    /// the first bytes.
    fn error(&self) -> MpesaError {
        match self.envelope() {
            Some(error) => MpesaError::Daraja {
                endpoint: self.endpoint,
                status: self.status.as_u16(),
                error,
            },
            None => MpesaError::UnexpectedReply {
                endpoint: self.endpoint,
                status: self.status.as_u16(),
                body_start: body_start(&self.body),
            },
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, MpesaError> {
        if !self.status.is_success() {
            return Err(self.error());
        }
        serde_json::from_slice(&self.body).map_err(|_| self.error())
    }
}

/// Sends a request and reads its whole reply. A failure to connect means the request never
/// left; a failure while reading means it may have arrived (see [`MpesaError::disposition`]).
async fn send(endpoint: Endpoint, request: reqwest::RequestBuilder) -> Result<Reply, MpesaError> {
    let response = request
        .send()
        .await
        .map_err(|e| from_transport(endpoint, e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|source| MpesaError::NoReply { endpoint, source })?;
    Ok(Reply {
        endpoint,
        status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn golden_push<'a>(payer: &'a Msisdn) -> StkPush<'a> {
        StkPush {
            amount: Kes::whole(450),
            payer,
            account_reference: "DK10427",
            description: "Duka DK10427",
            callback_url: "https://shop.example.co.ke/payments/Xq7vT2kd9LwP4nRbH3s8Ze/stk",
        }
    }

    fn golden_instant() -> DateTime<Utc> {
        "2026-11-24T11:30:05Z".parse().unwrap()
    }

    #[test]
    fn the_golden_push_body_has_daraja_s_exact_fields_and_types() {
        let payer = Msisdn::parse("0712345678").unwrap();
        let body = push_body(
            "174379",
            None,
            "test-passkey",
            &golden_push(&payer),
            golden_instant(),
        )
        .unwrap();
        let expected = json!({"BusinessShortCode": 174379, "Password": "MTc0Mzc5dGVzdC1wYXNza2V5MjAyNjExMjQxNDMwMDU=",
            "Timestamp": "20261124143005", "TransactionType": "CustomerPayBillOnline", "Amount": 450,
            "PartyA": 254712345678u64, "PartyB": 174379, "PhoneNumber": 254712345678u64,
            "CallBackURL": "https://shop.example.co.ke/payments/Xq7vT2kd9LwP4nRbH3s8Ze/stk",
            "AccountReference": "DK10427", "TransactionDesc": "Duka DK10427"});
        // `Value` equality tells `450` from `450.0` and `"450"`, so the types are checked too.
        assert_eq!(serde_json::to_value(&body).unwrap(), expected);
    }

    /// The first ```json block after `heading` in a reference page.
    fn golden_json(doc: &str, heading: &str) -> serde_json::Value {
        let section = &doc[doc.find(heading).expect("heading")..];
        let start = section.find("```json").expect("a json block") + "```json".len();
        let end = start + section[start..].find("```").expect("the block's end");
        serde_json::from_str(&section[start..end]).expect("valid JSON")
    }

    #[test]
    fn the_golden_till_push_body_matches_the_till_reference() {
        let doc = include_str!("reference-till.md");
        let payer = Msisdn::parse("0712345678").unwrap();
        let body = push_body(
            "174379",
            Some("5123456"),
            "test-passkey",
            &golden_push(&payer),
            golden_instant(),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            golden_json(doc, "## STK push to a till")
        );
    }

    #[test]
    fn a_till_that_is_not_5_to_7_digits_is_refused() {
        let payer = Msisdn::parse("0712345678").unwrap();
        for till in ["51234x6", "1234", ""] {
            assert!(
                push_body(
                    "174379",
                    Some(till),
                    "k",
                    &golden_push(&payer),
                    golden_instant()
                )
                .is_err(),
                "{till:?}"
            );
        }
    }

    #[test]
    fn an_amount_with_cents_is_rounded_up_by_the_money_rule_and_sent_as_an_integer() {
        let payer = Msisdn::parse("0712345678").unwrap();
        let push = StkPush {
            amount: Kes::parse("449.50").unwrap(),
            ..golden_push(&payer)
        };
        let body = push_body("174379", None, "k", &push, golden_instant()).unwrap();
        assert_eq!(serde_json::to_value(&body).unwrap()["Amount"], json!(450));
    }

    #[test]
    fn pushes_daraja_would_refuse_are_refused_before_sending() {
        let payer = Msisdn::parse("0712345678").unwrap();
        let cases = [
            StkPush {
                amount: Kes::ZERO,
                ..golden_push(&payer)
            },
            StkPush {
                account_reference: "DK1042700000X",
                ..golden_push(&payer)
            },
            StkPush {
                account_reference: "DK-10427",
                ..golden_push(&payer)
            },
            StkPush {
                account_reference: "",
                ..golden_push(&payer)
            },
            StkPush {
                description: "   ",
                ..golden_push(&payer)
            },
            StkPush {
                callback_url: "https://shop.example.co.ke/mpesa/stk",
                ..golden_push(&payer)
            },
        ];
        for push in cases {
            let error = push_body("174379", None, "k", &push, golden_instant())
                .err()
                .unwrap_or_else(|| panic!("accepted {push:?}"));
            assert!(matches!(error, MpesaError::InvalidRequest(_)), "{error:?}");
            assert!(error.never_arrived());
        }
    }

    #[test]
    fn a_long_description_is_cut_to_13_characters() {
        assert_eq!(
            transaction_desc("  Duka order DK10427  ").unwrap(),
            "Duka order DK"
        );
        assert_eq!(
            transaction_desc("Malipo ya duka ").unwrap(),
            "Malipo ya duk"
        );
        assert_eq!(
            transaction_desc("Ünïcödé chars ok")
                .unwrap()
                .chars()
                .count(),
            13
        );
    }

    #[test]
    fn a_shortcode_must_be_5_to_7_digits() {
        assert_eq!(parse_shortcode("174379").unwrap(), 174379);
        for bad in ["1743", "17437900", "17a379", ""] {
            assert!(
                matches!(parse_shortcode(bad), Err(MpesaError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_is_dropped_five_minutes_early_or_at_half_its_life_when_short() {
        let at = golden_instant();
        let after = |expires_in| (refresh_after(at, expires_in) - at).num_seconds();
        assert_eq!(after(3599), 3299);
        assert_eq!(after(600), 300);
        assert_eq!(after(60), 30);
        assert_eq!(after(1), 1);
        assert_eq!(after(0), 0);
        assert_eq!(after(u64::MAX), 24 * 3600 - 300);
    }

    #[test]
    fn a_refusal_of_an_old_token_does_not_drop_the_new_one() {
        let cache = TokenCache::default();
        let later = golden_instant() + chrono::Duration::hours(1);
        let old = cache.store(SecretString::from("old"), later);
        let new = cache.store(SecretString::from("new"), later);
        cache.invalidate(old.generation);
        assert_eq!(
            cache.fresh(golden_instant()).map(|t| t.generation),
            Some(new.generation)
        );
        cache.invalidate(new.generation);
        assert!(cache.fresh(golden_instant()).is_none());
    }

    #[test]
    fn a_bad_configuration_is_refused_when_the_client_is_built() {
        let config = |base: &str, shortcode: &str| {
            DarajaConfig::new(
                base,
                "key",
                SecretString::from("secret"),
                shortcode,
                SecretString::from("passkey"),
            )
        };
        assert!(DarajaClient::new(config("https://sandbox.safaricom.co.ke/", "174379")).is_ok());
        assert!(DarajaClient::new(config("not a url", "174379")).is_err());
        assert!(DarajaClient::new(config("ftp://x", "174379")).is_err());
        assert!(DarajaClient::new(config("https://x", "12")).is_err());
    }

    #[test]
    fn a_push_s_debug_hides_the_callback_secret_and_the_number() {
        let payer = Msisdn::parse("0712345678").unwrap();
        let shown = format!("{:?}", golden_push(&payer));
        assert!(shown.contains("https://shop.example.co.ke"));
        assert!(!shown.contains("Xq7vT2kd9LwP4nRbH3s8Ze"));
        assert!(!shown.contains("254712345678"));
    }

    #[test]
    fn the_config_s_debug_shows_no_secret() {
        let config = DarajaConfig::new(
            "https://x",
            "key",
            SecretString::from("the-secret"),
            "174379",
            SecretString::from("the-passkey"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("the-secret") && !shown.contains("the-passkey"));
    }
}
