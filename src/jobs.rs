//! Background work that must survive restarts and run once across many nodes.
//!
//! Every piece of deferred work (send an STK push, query a silent one, expire an unpaid order,
//! deliver an SMS) is a [`Job`]: a short string in the sorted set of its shard
//! ([`crate::keys::Keys::jobs`]), scored by when it is due. It is added in the same atomic commit
//! as the state that needs it (the order, the paid transition), so a crash can never lose it.
//!
//! Every node runs [`run_worker`]. A worker claims due jobs with
//! [`Store::claim_due`](crate::store::Store::claim_due), which leases them for [`LEASE_MS`]:
//! another node sees a claimed job again only if the lease runs out, which is how a node killed
//! mid-job hands its work over. A finished job is removed; a job to try again later is moved to
//! its new due time. Handlers are idempotent (they re-read the state and act only if it still
//! calls for it), because a lease can run out under a slow handler and a job may run twice.
//!
//! The node that schedules a job wakes its own worker for that shard at once, so an STK push goes
//! out milliseconds after the checkout reply rather than at the next sweep.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::keys::{shard_of, SHARDS};
use crate::shop::Shop;
use crate::store::Batch;

/// How long a claimed job stays invisible to other workers.
pub const LEASE_MS: i64 = 30_000;
/// How many jobs of one shard a worker claims at once.
const CLAIM_BATCH: usize = 32;
/// How long a stopping node waits for its running jobs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How many jobs one node runs at the same time.
const CONCURRENT_JOBS: usize = 64;

/// A unit of background work, stored as a short string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Job {
    /// Send the STK push of attempt `attempt` of an order.
    Push { order: String, attempt: u32 },
    /// Start a new STK attempt for an unpaid order ("Pay again"), to `payer` (12 digits).
    PayAgain { order: String, payer: String },
    /// Ask Daraja what became of an attempt that has no result.
    Query { order: String, attempt: u32 },
    /// Expire the order if it is still unpaid.
    Expire { order: String },
    /// Deliver an outbox message.
    Sms { message: String },
    /// Send the refund request for the payment `receipt` of an order to Daraja.
    Refund { order: String, receipt: String },
    /// Ask Daraja about the payment with this receipt (`duka mpesa find`).
    Find { receipt: String },
    /// Ask Daraja whether the paybill payment `receipt`, counted as the echo of an STK payment
    /// of order `order`, was one (see [`crate::payments::Outcome::folded`]).
    CheckFold { order: String, receipt: String },
}

impl Job {
    /// The shard whose queue holds this job: the shard of its order (or message owner).
    pub fn shard(&self) -> u16 {
        match self {
            Job::Push { order, .. }
            | Job::PayAgain { order, .. }
            | Job::Query { order, .. }
            | Job::Expire { order }
            | Job::Refund { order, .. }
            | Job::CheckFold { order, .. } => shard_of(order),
            Job::Sms { message } => shard_of(message_owner(message)),
            Job::Find { receipt } => shard_of(receipt),
        }
    }

    pub fn encode(&self) -> String {
        match self {
            Job::Push { order, attempt } => format!("push:{order}:{attempt}"),
            Job::PayAgain { order, payer } => format!("pay:{order}:{payer}"),
            Job::Query { order, attempt } => format!("query:{order}:{attempt}"),
            Job::Expire { order } => format!("expire:{order}"),
            Job::Sms { message } => format!("sms:{message}"),
            Job::Refund { order, receipt } => format!("refund:{order}:{receipt}"),
            Job::Find { receipt } => format!("find:{receipt}"),
            Job::CheckFold { order, receipt } => format!("fold:{order}:{receipt}"),
        }
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(3, ':');
        let kind = parts.next()?;
        let first = parts.next()?.to_owned();
        let second = parts.next();
        Some(match (kind, second) {
            ("push", Some(n)) => Job::Push {
                order: first,
                attempt: n.parse().ok()?,
            },
            ("pay", Some(payer)) => Job::PayAgain {
                order: first,
                payer: payer.to_owned(),
            },
            ("query", Some(n)) => Job::Query {
                order: first,
                attempt: n.parse().ok()?,
            },
            ("expire", None) => Job::Expire { order: first },
            ("sms", None) => Job::Sms { message: first },
            ("refund", Some(receipt)) => Job::Refund {
                order: first,
                receipt: receipt.to_owned(),
            },
            ("find", None) => Job::Find { receipt: first },
            ("fold", Some(receipt)) => Job::CheckFold {
                order: first,
                receipt: receipt.to_owned(),
            },
            _ => return None,
        })
    }
}

/// The part of an outbox message id that places it in a shard: `DK10427.r` → `DK10427`.
pub fn message_owner(message_id: &str) -> &str {
    message_id.split('.').next().unwrap_or(message_id)
}

/// What a handler made of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished (or nothing left to do): remove it.
    Done,
    /// Run it again at this time (ms since the epoch).
    RetryAt(i64),
}

/// Runs jobs. Implemented by the application, which knows the payment and SMS clients.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, shop: &Shop, job: &Job) -> JobOutcome;
}

/// The wake-up line of this node's worker, and the helper to schedule jobs.
pub struct JobQueue {
    wake_tx: mpsc::UnboundedSender<u16>,
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<u16>>>,
}

impl Default for JobQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl JobQueue {
    pub fn new() -> Self {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        Self {
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
        }
    }

    /// Adds `job` to `batch`, due at `due_ms`. Call [`JobQueue::wake`] after the commit.
    pub fn schedule(shop: &Shop, batch: &mut Batch, job: &Job, due_ms: i64) {
        batch.zadd(shop.keys.jobs(job.shard()), due_ms, job.encode());
    }

    /// Tells this node's worker that `shard` has work due now.
    pub fn wake(&self, shard: u16) {
        // The worker may not run (replay without background work): a closed line is fine.
        let _ = self.wake_tx.send(shard);
    }
}

/// Claims and runs due jobs until `shutdown` fires. Sweeps every shard each `sweep_every`,
/// and a woken shard at once.
pub async fn run_worker(
    shop: Arc<Shop>,
    handler: Arc<dyn JobHandler>,
    sweep_every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mut wake_rx) = shop.jobs.wake_rx.lock().await.take() else {
        tracing::error!("a second worker was started on the same shop; it does nothing");
        return;
    };
    let permits = Arc::new(Semaphore::new(CONCURRENT_JOBS));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(shard) = wake_rx.recv() => {
                claim_and_run(&shop, &handler, &permits, shard).await;
            }
            _ = sweep.tick() => {
                for shard in 0..SHARDS {
                    // A store that is down makes each claim wait for its timeout: stop sweeping
                    // as soon as shutdown is asked for rather than after all 64 shards.
                    if *shutdown.borrow() {
                        break;
                    }
                    claim_and_run(&shop, &handler, &permits, shard).await;
                }
            }
        }
    }
    // Let running jobs finish, for a while: their leases hand unfinished ones to another node.
    let _ =
        tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(CONCURRENT_JOBS as u32)).await;
}

async fn claim_and_run(
    shop: &Arc<Shop>,
    handler: &Arc<dyn JobHandler>,
    permits: &Arc<Semaphore>,
    shard: u16,
) {
    let queue = shop.keys.jobs(shard);
    let now = shop.clock.now_ms();
    let claimed = match shop
        .store
        .claim_due(&queue, now, LEASE_MS, CLAIM_BATCH)
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::warn!(error.message = %e, jobs.shard = shard, "could not claim jobs; will retry at the next sweep");
            return;
        }
    };
    for raw in claimed {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let shop = shop.clone();
        let handler = handler.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = match Job::decode(&raw) {
                Some(job) => handler.run(&shop, &job).await,
                None => {
                    tracing::error!(jobs.job = %raw, "dropping a job that cannot be decoded");
                    JobOutcome::Done
                }
            };
            let mut batch = Batch::new();
            match outcome {
                JobOutcome::Done => batch.zrem(&queue, &raw),
                JobOutcome::RetryAt(due) => batch.zadd(&queue, due, &raw),
            };
            if let Err(e) = shop.store.commit(&batch).await {
                tracing::warn!(error.message = %e, jobs.job = %raw, "could not settle a job; its lease will bring it back");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_their_string_form() {
        for job in [
            Job::Push {
                order: "D7K2Q9".into(),
                attempt: 2,
            },
            Job::PayAgain {
                order: "D7K2Q9".into(),
                payer: "254712345678".into(),
            },
            Job::Query {
                order: "D7K2Q9".into(),
                attempt: 1,
            },
            Job::Expire {
                order: "D7K2Q9".into(),
            },
            Job::Sms {
                message: "D7K2Q9.r".into(),
            },
            Job::Refund {
                order: "D7K2Q9".into(),
                receipt: "SGL7M2XK4P".into(),
            },
            Job::Find {
                receipt: "SGL7M2XK4P".into(),
            },
            Job::CheckFold {
                order: "D7K2Q9".into(),
                receipt: "SGL7M2XK4P".into(),
            },
        ] {
            assert_eq!(Job::decode(&job.encode()), Some(job));
        }
        assert_eq!(Job::decode("push:X"), None);
        assert_eq!(Job::decode("push:X:notanumber"), None);
        assert_eq!(Job::decode("bogus:X"), None);
    }

    #[test]
    fn a_job_lives_in_the_shard_of_its_order() {
        let order = Job::Push {
            order: "D7K2Q9".into(),
            attempt: 1,
        };
        let receipt = Job::Sms {
            message: "D7K2Q9.r".into(),
        };
        assert_eq!(order.shard(), shard_of("D7K2Q9"));
        assert_eq!(receipt.shard(), shard_of("D7K2Q9"));
    }
}
