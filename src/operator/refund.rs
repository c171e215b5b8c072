//! `duka refund ORDER_NO [--amount KES]`: an operator approves a refund.
//!
//! Approving is one payment event ([`Event::RefundRequested`]) settled like any other: the
//! refund is written into the order, guarded, together with the job that sends it to Daraja. So
//! approving twice, or two operators at once, refunds once; what is refundable and how (reversal
//! or B2C) is decided by [`crate::payments::refunds`]. The demo approves through the operator
//! endpoint ([`super::endpoint`]); production writes to the shop's Redis directly.

use crate::money::Kes;
use crate::payments::refunds::RefundRefusal;
use crate::payments::settle::{settle, SettleError};
use crate::payments::Event;
use crate::shop::Shop;

use super::ReportRefund;

/// Why a refund was not approved.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("no order {0}")]
    NoOrder(String),
    #[error("refund refused: {0}")]
    Refused(#[from] RefundRefusal),
    #[error(transparent)]
    Settle(#[from] SettleError),
}

/// Approves a refund of `amount` (or all that is refundable of the first payment with some)
/// for order `number`; the refund as written, in state `requested`.
///
/// # Errors
/// See [`ApproveError`].
pub async fn approve(
    shop: &Shop,
    number: &str,
    amount: Option<Kes>,
) -> Result<ReportRefund, ApproveError> {
    let number = crate::orders::normalise_order_number(number);
    let settled = settle(shop, &number, &Event::RefundRequested { amount }, None)
        .await?
        .ok_or_else(|| ApproveError::NoOrder(number.clone()))?;
    if let Some(refusal) = settled.outcome.refund_refused {
        return Err(refusal.into());
    }
    let receipt = settled
        .outcome
        .refund_requested
        .ok_or_else(|| ApproveError::NoOrder(number.clone()))?;
    let refund = settled
        .order
        .refunds
        .iter()
        .find(|r| r.receipt == receipt)
        .ok_or(ApproveError::NoOrder(number))?;
    tracing::info!(
        order.number = %settled.order.number,
        mpesa.receipt = %receipt,
        "refund of KES {} approved",
        refund.amount
    );
    Ok(ReportRefund::of(refund))
}

/// Approves a refund straight in the shop's Redis (production: `REDIS_URL` set). The running
/// servers' job workers pick the request up from the queue.
///
/// # Errors
/// The store cannot be reached, the menus do not load, or see [`ApproveError`].
pub async fn approve_in_store(
    settings: &crate::config::Settings,
    number: &str,
    amount: Option<Kes>,
) -> anyhow::Result<ReportRefund> {
    let shop = super::shop_in_store(settings).await?;
    Ok(approve(&shop, number, amount).await?)
}

/// The refund approved, as text for a person.
pub fn render(number: &str, refund: &ReportRefund) -> String {
    let how = match refund.method {
        crate::orders::RefundMethod::Reversal => "reversal of the whole payment".to_owned(),
        crate::orders::RefundMethod::B2c => format!("B2C payment to {}", refund.to),
    };
    format!(
        "Refund approved for order {number}: KES {} of payment {} by {how}. Its result shows in `duka order {number}`; the shopper gets an SMS when it is done.\n",
        refund.amount, refund.receipt
    )
}
