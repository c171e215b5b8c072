//! The job handler: hands each background job to the module that owns it.
//!
//! [`crate::jobs`] claims jobs and settles them; this is where a job meets the outside world's
//! clients (Daraja for pushes and queries, Africa's Talking for SMS).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument as _;

use crate::jobs::{Job, JobHandler, JobOutcome};
use crate::metrics::Metrics;
use crate::payments::worker::PaymentJobs;
use crate::shop::Shop;
use crate::sms::africastalking::AtSmsClient;

/// Runs every kind of job of a node.
pub struct Background {
    pub payments: PaymentJobs,
    pub sms: AtSmsClient,
    pub metrics: Arc<Metrics>,
    /// The abuse limits (the daily SMS ceiling).
    pub limits: Arc<crate::limits::Limits>,
}

#[async_trait]
impl JobHandler for Background {
    async fn run(&self, shop: &Shop, job: &Job) -> JobOutcome {
        let span = tracing::info_span!("job", job = %job.encode());
        async move {
            match job {
                Job::Push { order, attempt } => {
                    self.payments
                        .push(shop, &self.metrics, order, *attempt)
                        .await
                }
                Job::PayAgain { order, payer } => self.payments.pay_again(shop, order, payer).await,
                Job::Query { order, attempt } => {
                    self.payments
                        .query(shop, &self.metrics, order, *attempt)
                        .await
                }
                Job::Expire { order } => self.payments.expire(shop, order).await,
                Job::Refund { order, receipt } => {
                    self.payments
                        .refund(shop, &self.metrics, order, receipt)
                        .await
                }
                Job::Find { receipt } => self.payments.find(shop, &self.metrics, receipt).await,
                Job::CheckFold { order, receipt } => {
                    crate::payments::find::check_fold(shop, order, receipt).await
                }
                Job::Sms { message } => {
                    crate::sms::worker::deliver(
                        shop,
                        &self.sms,
                        &self.metrics,
                        message,
                        self.limits.sms_daily_limit,
                    )
                    .await
                }
            }
        }
        .instrument(span)
        .await
    }
}
