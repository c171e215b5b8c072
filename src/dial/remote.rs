//! The terminal phone's handset when it dials a running server: the demo's sandbox routes on
//! that server's own port (see [`crate::sandbox::demo`]).
//!
//! [`RemoteDemo::probe`] asks the server to hold this phone's pushes for a person. A server that
//! answers is a demo whose prompts and SMS the phone can show; any other answer (a production
//! server's 404, a non-loopback refusal) means the phone shows the screens only, and says why.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::msisdn::Msisdn;
use crate::sandbox::mpesa::PromptAnswer;

/// How often the phone looks again for a prompt or an SMS that has not come yet.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A running demo's sandboxes, as one phone sees them.
pub(super) struct RemoteDemo {
    http: reqwest::Client,
    base_url: String,
    phone: Msisdn,
    /// The PIN that pays.
    pub pin: String,
    /// How long an unanswered prompt stays open on the server.
    pub prompt_timeout: Duration,
}

/// An open PIN prompt on the server.
pub(super) struct RemotePrompt {
    pub checkout_request_id: String,
    pub text: String,
}

/// One SMS in the phone's inbox.
pub(super) struct Sms {
    pub from: String,
    pub text: String,
}

impl RemoteDemo {
    /// Makes the server's M-Pesa sandbox wait for a person on `phone`; `Err` says why this
    /// server has no demo sandboxes to drive.
    pub async fn probe(
        http: &reqwest::Client,
        base_url: &str,
        phone: &Msisdn,
    ) -> Result<Self, String> {
        let reply = http
            .post(format!("{base_url}/sandbox/mpesa/interactive"))
            .json(&json!({ "phone": phone.e164() }))
            .send()
            .await
            .map_err(|e| format!("could not reach it: {e}"))?;
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        match (status.as_u16(), body["pin"].as_str()) {
            (200, Some(pin)) => Ok(Self {
                http: http.clone(),
                base_url: base_url.to_owned(),
                phone: phone.clone(),
                pin: pin.to_owned(),
                prompt_timeout: Duration::from_secs(
                    body["prompt_timeout_s"].as_u64().unwrap_or(60),
                ),
            }),
            (403, _) => Err("it only lets callers on its own machine drive its sandboxes".into()),
            (404, _) => Err("it has no built-in sandboxes (a production server?)".into()),
            (status, _) => Err(format!("its sandbox answered HTTP {status}")),
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}?phone={}", self.base_url, self.phone.digits());
        let reply = self.http.get(url).send().await.ok()?;
        if !reply.status().is_success() {
            return None;
        }
        reply.json().await.ok()
    }

    async fn open_prompts(&self) -> Option<Vec<RemotePrompt>> {
        let reply = self.get("/sandbox/mpesa/prompts").await?;
        Some(
            reply["prompts"]
                .as_array()?
                .iter()
                .map(|p| RemotePrompt {
                    checkout_request_id: p["CheckoutRequestID"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    text: p["Text"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        )
    }

    /// Waits for the phone's oldest open prompt.
    pub async fn wait_for_prompt(&self, deadline: Instant) -> Option<RemotePrompt> {
        loop {
            if let Some(prompt) = self.open_prompts().await.and_then(|p| p.into_iter().next()) {
                return Some(prompt);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits until the prompt is no longer open (it timed out); true if it closed in time.
    pub async fn wait_until_closed(&self, checkout_request_id: &str, deadline: Instant) -> bool {
        loop {
            let open = self.open_prompts().await.is_some_and(|prompts| {
                prompts
                    .iter()
                    .any(|p| p.checkout_request_id == checkout_request_id)
            });
            if !open {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Answers a prompt; the result code, or why the server refused.
    pub async fn answer(
        &self,
        checkout_request_id: &str,
        answer: PromptAnswer,
    ) -> Result<i64, String> {
        let body = match answer {
            PromptAnswer::Cancel => json!({ "cancel": true }),
            PromptAnswer::Pin(pin) => json!({ "pin": pin }),
        };
        let reply = self
            .http
            .post(format!(
                "{}/sandbox/mpesa/prompts/{checkout_request_id}",
                self.base_url
            ))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("could not reach the server: {e}"))?;
        let value: Value = reply
            .json()
            .await
            .map_err(|e| format!("unreadable answer: {e}"))?;
        value["ResultCode"]
            .as_i64()
            .ok_or_else(|| value["error"].as_str().unwrap_or("refused").to_owned())
    }

    /// Every SMS the phone received so far, oldest first; `None` when the inbox cannot be read.
    pub async fn inbox(&self) -> Option<Vec<Sms>> {
        let reply = self.get("/sandbox/sms/inbox").await?;
        Some(
            reply["messages"]
                .as_array()?
                .iter()
                .map(|m| Sms {
                    from: m["from"].as_str().unwrap_or("DUKA").to_owned(),
                    text: m["text"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        )
    }

    /// Pays `amount` to the paybill with `account`, as this phone; the sandbox's answer.
    pub async fn pay_bill(&self, account: &str, amount: &str) -> Result<Value, String> {
        let reply = self
            .http
            .post(format!("{}/sandbox/mpesa/c2b", self.base_url))
            .json(&json!({ "phone": self.phone.e164(), "account": account, "amount": amount }))
            .send()
            .await
            .map_err(|e| format!("could not reach the server: {e}"))?;
        let status = reply.status();
        let value: Value = reply.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["error"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned))
        }
    }
}
