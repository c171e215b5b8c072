//! `duka mpesa find RECEIPT [--order N]`: an operator looks a payment up by its M-Pesa receipt
//! and has it applied to its order if Duka missed it ([`crate::payments::find`]).
//!
//! The lookup is asynchronous (Daraja answers at Duka's result URL), so the command starts it
//! and then watches the lookup record until it ends or `--wait` runs out. The demo goes through
//! the operator endpoint ([`super::endpoint`]); production writes to the shop's Redis, where the
//! running servers' workers send the query and receive its result.

use std::time::Duration;

use secrecy::SecretString;

use crate::payments::find::{self, Lookup};
use crate::shop::Shop;

/// Where the lookup runs.
pub enum Target {
    /// The running demo at this URL, with its operator token.
    Demo { url: String, token: SecretString },
    /// A production shop's Redis.
    Store(Box<Shop>),
}

impl Target {
    async fn request(&self, receipt: &str, order: Option<&str>) -> anyhow::Result<Lookup> {
        match self {
            Target::Demo { url, token } => {
                Ok(super::remote::request_find(url, token, receipt, order).await?)
            }
            Target::Store(shop) => Ok(find::request(shop, receipt, order).await?),
        }
    }

    async fn poll(&self, receipt: &str) -> anyhow::Result<Option<Lookup>> {
        match self {
            Target::Demo { url, token } => {
                Ok(super::remote::fetch_lookup(url, token, receipt).await?)
            }
            Target::Store(shop) => Ok(find::load(shop, receipt).await?),
        }
    }
}

/// Starts the lookup of `receipt` and waits up to `wait` for it to end; the lookup as it
/// stands then.
///
/// # Errors
/// The lookup could not be started (a malformed receipt, no such order, the store or the
/// server unreachable).
pub async fn find_and_wait(
    target: &Target,
    receipt: &str,
    order: Option<&str>,
    wait: Duration,
) -> anyhow::Result<Lookup> {
    let mut lookup = target.request(receipt, order).await?;
    let deadline = tokio::time::Instant::now() + wait;
    while !lookup.state.is_final() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(now) = target.poll(&lookup.receipt).await? {
            lookup = now;
        }
    }
    Ok(lookup)
}
