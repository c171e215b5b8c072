//! A phone behind a gateway, over real HTTP: what `duka replay`, `duka dial` and the shared
//! scenario tests use to talk to a server exactly as a given aggregator would.
//!
//! It keeps one session's history (the deep-dial inputs, what was typed, the hop number),
//! asks the [`Gateway`] to build each wire request, sends it with `reqwest`, and reads the reply
//! back through the same gateway. Nothing here knows any wire format.

use std::time::Duration;

use axum::http::header::CONTENT_TYPE;

use super::{ClientHop, Gateway, WireRequest};
use crate::error::error_chain;
use crate::menu::Reply;
use crate::msisdn::Msisdn;

/// Why a hop got no screen back.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("no session: dial first")]
    NoSession,
    #[error("Duka did not answer: {0}")]
    Unreachable(String),
    #[error("the {gateway} gateway could not read Duka's answer: {why}")]
    Unreadable { gateway: &'static str, why: String },
}

/// One phone on one gateway.
pub struct Phone {
    http: reqwest::Client,
    /// `http://host:port`, plus the secret path segment if the server has one.
    base_url: String,
    gateway: &'static dyn Gateway,
    pub msisdn: Msisdn,
    pub service_code: String,
    pub network_code: String,
    call: Option<Call>,
}

/// The session in progress.
#[derive(Clone, Debug)]
struct Call {
    id: String,
    dial: Vec<String>,
    typed: Vec<String>,
    seq: u32,
}

impl Phone {
    pub fn new(
        base_url: &str,
        gateway: &'static dyn Gateway,
        msisdn: Msisdn,
        service_code: &str,
        network_code: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            gateway,
            msisdn,
            service_code: service_code.to_owned(),
            network_code: network_code.to_owned(),
            call: None,
        }
    }

    pub fn gateway(&self) -> &'static dyn Gateway {
        self.gateway
    }

    /// Starts a session: a plain dial (`dial` empty) or a deep dial with these inputs.
    ///
    /// # Errors
    /// [`PhoneError`] when no screen comes back.
    pub async fn dial(&mut self, session_id: &str, dial: Vec<String>) -> Result<Reply, PhoneError> {
        self.call = Some(Call {
            id: session_id.to_owned(),
            dial,
            typed: Vec::new(),
            seq: 1,
        });
        self.send().await
    }

    /// Types one input on the current screen.
    ///
    /// # Errors
    /// [`PhoneError`] when there is no session or no screen comes back.
    pub async fn press(&mut self, input: &str) -> Result<Reply, PhoneError> {
        let call = self.call.as_mut().ok_or(PhoneError::NoSession)?;
        call.typed.push(input.to_owned());
        call.seq += 1;
        self.send().await
    }

    /// Whether typing `input` now would send the same request as the last hop did, which Duka
    /// takes for a resend within its resend window (a per-hop gateway that numbers no hops).
    /// A person is never that fast; a script should wait out the window first.
    pub fn would_look_like_a_resend(&self, input: &str) -> bool {
        self.gateway.repeats_look_like_resends()
            && self
                .call
                .as_ref()
                .and_then(|call| call.typed.last())
                .is_some_and(|last| last == input)
    }

    /// Sends the last request again, as a gateway retransmitting it would.
    ///
    /// # Errors
    /// [`PhoneError`] when there is no session or no screen comes back.
    pub async fn resend(&mut self) -> Result<Reply, PhoneError> {
        self.call.as_ref().ok_or(PhoneError::NoSession)?;
        self.send().await
    }

    /// Sends this whole input history at once (a cumulative gateway out of step).
    ///
    /// # Errors
    /// [`PhoneError`] when there is no session or no screen comes back.
    pub async fn text(&mut self, text: &str) -> Result<Reply, PhoneError> {
        let call = self.call.as_mut().ok_or(PhoneError::NoSession)?;
        call.dial.clear();
        call.typed = vec![text.to_owned()];
        call.seq += 1;
        self.send().await
    }

    /// The whole input history sent so far, `*`-joined (for reports).
    pub fn history(&self) -> String {
        self.call
            .as_ref()
            .map(|call| self.hop(call).cumulative_text())
            .unwrap_or_default()
    }

    /// Hangs up: the gateway's end-of-session report, if it sends one. Returns whether it did.
    ///
    /// # Errors
    /// [`PhoneError`] when there is no session or Duka refuses the report.
    pub async fn hang_up(&mut self, incomplete: bool) -> Result<bool, PhoneError> {
        let call = self.call.as_ref().ok_or(PhoneError::NoSession)?;
        let Some(request) = self.gateway.end_request(&self.hop(call), incomplete) else {
            return Ok(false);
        };
        let (status, _, body) = self.exchange(request).await?;
        if (200..300).contains(&status) {
            Ok(true)
        } else {
            Err(PhoneError::Unreadable {
                gateway: self.gateway.name(),
                why: format!(
                    "the end of the session got HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            })
        }
    }

    fn hop<'a>(&'a self, call: &'a Call) -> ClientHop<'a> {
        ClientHop {
            session_id: &call.id,
            phone: &self.msisdn,
            service_code: &self.service_code,
            network_code: &self.network_code,
            dial: &call.dial,
            typed: &call.typed,
            seq: call.seq,
        }
    }

    async fn send(&self) -> Result<Reply, PhoneError> {
        let call = self.call.as_ref().ok_or(PhoneError::NoSession)?;
        let request = self.gateway.hop_request(&self.hop(call));
        let (status, headers, body) = self.exchange(request).await?;
        self.gateway
            .read_reply(status, &headers, &body)
            .map_err(|why| PhoneError::Unreadable {
                gateway: self.gateway.name(),
                why,
            })
    }

    async fn exchange(
        &self,
        request: WireRequest,
    ) -> Result<(u16, axum::http::HeaderMap, bytes::Bytes), PhoneError> {
        let url = format!("{}{}", self.base_url, request.path_and_query);
        let mut builder = self.http.request(request.method, url);
        if let Some(content_type) = request.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        let response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| PhoneError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| PhoneError::Unreachable(error_chain(&e)))?;
        Ok((status, headers, body))
    }
}
