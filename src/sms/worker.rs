//! Delivers one outbox message: the [`Job::Sms`](crate::jobs::Job::Sms) handler.
//!
//! See [`super::outbox`] for the states and why an ambiguous send is never repeated.

use super::africastalking::{AtSmsClient, FailureClass, SendOutcome, SmsError};
use super::outbox::{backoff_ms, OutboxMessage, SendStatus, MAX_ATTEMPTS, PAUSE_MS};
use crate::jobs::JobOutcome;
use crate::keys::ORDER_RETENTION_MS;
use crate::metrics::Metrics;
use crate::shop::Shop;
use crate::store::{from_json, to_json, Batch, Commit, StoreError};

/// How long an ambiguous send waits to be settled by a delivery report for its phone.
const UNCERTAIN_WINDOW_MS: u64 = 3_600_000;

/// What to do with a message after one send.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Sent(Option<String>),
    Retry(String),
    Pause(String),
    Fail(String),
    Uncertain(String),
}

fn next_after(result: &Result<SendOutcome, SmsError>) -> Next {
    match result {
        Ok(SendOutcome::Accepted { message_id, .. }) => Next::Sent(message_id.clone()),
        Ok(SendOutcome::Rejected {
            status_code,
            status,
            class,
        }) => {
            let reason = format!("{status} ({status_code})");
            match class {
                FailureClass::Retryable => Next::Retry(reason),
                FailureClass::Permanent => Next::Fail(reason),
                // RiskHold is about this message's content or recipient: fail the row (and alert).
                FailureClass::Alert if *status_code == 401 => Next::Fail(reason),
                FailureClass::Alert => Next::Pause(reason),
            }
        }
        Err(SmsError::NothingSent(e)) => Next::Retry(format!("nothing sent: {e}")),
        Err(SmsError::Http {
            status,
            body_head,
            class,
        }) => {
            let reason = format!("HTTP {status}: {body_head}");
            match class {
                FailureClass::Retryable => Next::Retry(reason),
                FailureClass::Permanent => Next::Fail(reason),
                FailureClass::Alert => Next::Pause(reason),
            }
        }
        Err(e @ (SmsError::Ambiguous(_) | SmsError::Decode { .. })) => {
            Next::Uncertain(e.to_string())
        }
    }
}

/// Moves the message from `from` to what `change` makes of it, guarded on what was read.
/// Returns the message as written, or `None` if it is missing or not in `from` any more.
async fn transition(
    shop: &Shop,
    id: &str,
    from: SendStatus,
    change: impl Fn(&mut OutboxMessage),
) -> Result<Option<OutboxMessage>, StoreError> {
    let key = shop.keys.message(id);
    for _ in 0..5 {
        let raw = shop.store.get_one(&key).await?;
        let Some(mut message) = from_json::<OutboxMessage>(raw.as_deref()) else {
            return Ok(None);
        };
        if message.status != from {
            return Ok(None);
        }
        change(&mut message);
        message.updated_at_ms = shop.clock.now_ms();
        let mut batch = Batch::new();
        batch
            .guard(&key, raw.as_deref())
            .set(&key, to_json(&message), Some(ORDER_RETENTION_MS));
        if shop.store.commit(&batch).await? == Commit::Applied {
            return Ok(Some(message));
        }
    }
    Ok(None)
}

/// Sends the message `id` if it is still owed. Idempotent: a message not `pending` is left alone
/// (a `sending` one, left by a worker that died mid-send, becomes `uncertain`).
pub async fn deliver(
    shop: &Shop,
    client: &AtSmsClient,
    metrics: &Metrics,
    id: &str,
    daily_limit: u64,
) -> JobOutcome {
    match deliver_inner(shop, client, metrics, id, daily_limit).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(error.message = %e, sms.id = id, "store failed while delivering an SMS; retrying soon");
            JobOutcome::RetryAt(shop.clock.now_ms() + 5_000)
        }
    }
}

async fn deliver_inner(
    shop: &Shop,
    client: &AtSmsClient,
    metrics: &Metrics,
    id: &str,
    daily_limit: u64,
) -> Result<JobOutcome, StoreError> {
    // A worker that died between "sending" and the answer: the SMS may be out. Never resend.
    if let Some(message) = transition(shop, id, SendStatus::Sending, |m| {
        m.status = SendStatus::Uncertain;
        m.failure_reason = Some("the worker sending it stopped before the answer".into());
    })
    .await?
    {
        metrics.inc("duka_sms_total", &[("outcome", "uncertain")]);
        tracing::warn!(sms.id = id, msisdn.masked = %message.to, "an SMS was left mid-send by a stopped worker; marked uncertain, not resent");
        remember_uncertain(shop, &message).await?;
        return Ok(JobOutcome::Done);
    }
    // The shop's daily ceiling, counted before the claim (see [`super::ceiling`]).
    let pending =
        from_json::<OutboxMessage>(shop.store.get_one(&shop.keys.message(id)).await?.as_deref())
            .filter(|m| m.status == SendStatus::Pending);
    let Some(pending) = pending else {
        return Ok(JobOutcome::Done);
    };
    match super::ceiling::take(shop, pending.kind, daily_limit).await? {
        super::ceiling::Taken::Yes => {}
        super::ceiling::Taken::Full => {
            metrics.inc("duka_sms_ceiling_reached_total", &[]);
            tracing::warn!(
                sms.id = id,
                sms.daily_limit = daily_limit,
                "the shop's daily SMS ceiling (DUKA_SMS_DAILY_LIMIT) is reached; the message waits"
            );
            return Ok(JobOutcome::RetryAt(
                shop.clock.now_ms() + super::ceiling::HOLD_MS,
            ));
        }
        super::ceiling::Taken::Busy => {
            tracing::debug!(
                sms.id = id,
                "the SMS day counter is contended; trying again"
            );
            let jitter = i64::from(rand::random::<u16>() % 400);
            return Ok(JobOutcome::RetryAt(shop.clock.now_ms() + 100 + jitter));
        }
    }
    let Some(message) = transition(shop, id, SendStatus::Pending, |m| {
        m.status = SendStatus::Sending;
        m.attempts += 1;
    })
    .await?
    else {
        return Ok(JobOutcome::Done);
    };

    let result = client.send(&message.to, &message.text).await;
    let next = next_after(&result);
    let now = shop.clock.now_ms();
    let outcome = match &next {
        Next::Sent(message_id) => {
            if let Some(message_id) = message_id {
                // The index first: a delivery report can only find a message it can look up.
                if !index_message_id(shop.store.as_ref(), &shop.keys, message_id, id).await? {
                    tracing::warn!(sms.id = id, sms.message_id = %message_id, "Africa's Talking gave a message id already recorded for another SMS; kept the earlier record");
                }
            }
            JobOutcome::Done
        }
        Next::Retry(_) if message.attempts >= MAX_ATTEMPTS => JobOutcome::Done,
        Next::Retry(_) => {
            JobOutcome::RetryAt(now + backoff_ms(message.attempts, shop.random_u64()))
        }
        Next::Pause(_) => JobOutcome::RetryAt(now + PAUSE_MS),
        Next::Fail(_) | Next::Uncertain(_) => JobOutcome::Done,
    };
    let written = transition(shop, id, SendStatus::Sending, |m| match &next {
        Next::Sent(message_id) => {
            m.status = SendStatus::Sent;
            m.message_id.clone_from(message_id);
            m.failure_reason = None;
        }
        Next::Retry(reason) if m.attempts >= MAX_ATTEMPTS => {
            m.status = SendStatus::Failed;
            m.failure_reason = Some(format!("gave up after {} attempts: {reason}", m.attempts));
        }
        Next::Retry(reason) | Next::Pause(reason) => {
            m.status = SendStatus::Pending;
            m.failure_reason = Some(reason.clone());
        }
        Next::Fail(reason) => {
            m.status = SendStatus::Failed;
            m.failure_reason = Some(reason.clone());
        }
        Next::Uncertain(reason) => {
            m.status = SendStatus::Uncertain;
            m.failure_reason = Some(reason.clone());
        }
    })
    .await?;

    let label = match &next {
        Next::Sent(_) => "sent",
        Next::Retry(_) => "retry",
        Next::Pause(_) => "paused",
        Next::Fail(_) => "failed",
        Next::Uncertain(_) => "uncertain",
    };
    metrics.inc("duka_sms_total", &[("outcome", label)]);
    match &next {
        Next::Sent(message_id) => {
            tracing::info!(sms.id = id, sms.message_id = message_id.as_deref(), msisdn.masked = %message.to, "SMS accepted by Africa's Talking")
        }
        Next::Retry(reason) => {
            tracing::warn!(sms.id = id, sms.attempts = message.attempts, error.message = %reason, "SMS not sent; will retry")
        }
        Next::Pause(reason) => {
            tracing::error!(sms.id = id, error.message = %reason, "Africa's Talking refused the account (balance, sender id or credentials): the outbox retries every 5 minutes until fixed")
        }
        Next::Fail(reason) => {
            tracing::warn!(sms.id = id, msisdn.masked = %message.to, error.message = %reason, "SMS refused for good; not retried")
        }
        Next::Uncertain(reason) => {
            tracing::warn!(sms.id = id, msisdn.masked = %message.to, error.message = %reason, "SMS send was ambiguous; marked uncertain, not resent")
        }
    }
    if let (Next::Uncertain(_), Some(uncertain)) = (&next, &written) {
        remember_uncertain(shop, uncertain).await?;
        // Its delivery reports may have come in while we waited for the lost reply.
        if super::delivery::settle_from_phone_orphans(shop, uncertain, message.updated_at_ms)
            .await?
        {
            tracing::info!(
                sms.id = id,
                "an uncertain SMS was settled as sent by its delivery report"
            );
        }
    }
    Ok(outcome)
}

/// Records which outbox message an API message id belongs to, unless that id already names
/// another message: an id reused by the API (a sandbox restarted on the same Redis, say) must
/// never take over an earlier message's record. True when the id is (now) recorded for `id`.
async fn index_message_id(
    store: &dyn crate::store::Store,
    keys: &crate::keys::Keys,
    message_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let key = keys.sms_index(message_id);
    let mut index = Batch::new();
    index.guard(key.clone(), None).set(
        key.clone(),
        id.as_bytes().to_vec(),
        Some(ORDER_RETENTION_MS),
    );
    match store.commit(&index).await? {
        Commit::Applied => Ok(true),
        Commit::Conflict => Ok(store.get_one(&key).await?.as_deref() == Some(id.as_bytes())),
    }
}

/// Notes the phone's uncertain message so that a delivery report with an unknown id for that
/// phone can settle it (see [`super::delivery`]).
async fn remember_uncertain(shop: &Shop, message: &OutboxMessage) -> Result<(), StoreError> {
    let mut batch = Batch::new();
    batch.set(
        shop.keys.sms_uncertain(&message.to),
        message.id.as_bytes().to_vec(),
        Some(UNCERTAIN_WINDOW_MS),
    );
    let _ = shop.store.commit(&batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reused_message_id_never_takes_over_an_earlier_record() {
        let store = crate::store::memory::MemoryStore::new();
        let keys = crate::keys::Keys::new("t".to_owned());
        assert!(index_message_id(&store, &keys, "ATXid_1", "sms-a")
            .await
            .unwrap());
        assert!(
            !index_message_id(&store, &keys, "ATXid_1", "sms-b")
                .await
                .unwrap(),
            "the second message is told the id was taken"
        );
        assert!(
            index_message_id(&store, &keys, "ATXid_1", "sms-a")
                .await
                .unwrap(),
            "the same message recording its own id again is fine"
        );
        let recorded = crate::store::Store::get_one(&store, &keys.sms_index("ATXid_1"))
            .await
            .unwrap();
        assert_eq!(recorded.as_deref(), Some(&b"sms-a"[..]));
    }

    #[test]
    fn each_answer_of_the_api_leads_to_the_right_next_state() {
        let accepted = Ok(SendOutcome::Accepted {
            message_id: Some("ATXid_1".into()),
            status_code: 101,
            cost: "KES 0.8000".into(),
        });
        assert_eq!(next_after(&accepted), Next::Sent(Some("ATXid_1".into())));
        let rejected = |code: u16, class| {
            next_after(&Ok(SendOutcome::Rejected {
                status_code: code,
                status: "X".into(),
                class,
            }))
        };
        assert!(matches!(
            rejected(500, FailureClass::Retryable),
            Next::Retry(_)
        ));
        assert!(matches!(
            rejected(406, FailureClass::Permanent),
            Next::Fail(_)
        ));
        assert!(matches!(rejected(405, FailureClass::Alert), Next::Pause(_)));
        assert!(matches!(rejected(402, FailureClass::Alert), Next::Pause(_)));
        assert!(matches!(rejected(401, FailureClass::Alert), Next::Fail(_)));
        let http = |status: u16, class| {
            next_after(&Err(SmsError::Http {
                status,
                body_head: "x".into(),
                class,
            }))
        };
        assert!(matches!(http(503, FailureClass::Retryable), Next::Retry(_)));
        assert!(matches!(http(401, FailureClass::Alert), Next::Pause(_)));
        let decode = Err(SmsError::Decode {
            status: 201,
            body_head: "<xml".into(),
            reason: "not json".into(),
        });
        assert!(matches!(next_after(&decode), Next::Uncertain(_)));
    }
}
