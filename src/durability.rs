//! Nothing acknowledged is lost: Redis must persist, and a paid order reaches a replica before
//! Safaricom hears "accepted".
//!
//! At start-up with `REDIS_URL` (a single server), [`check_persistence`] asks Redis
//! `CONFIG GET appendonly` and `appendfsync` and `INFO replication`:
//! - `appendonly no` refuses to start, with the reason, unless `DUKA_ALLOW_NO_PERSISTENCE=1`
//!   (then a warning): without the AOF a Redis restart forgets paid orders and queued receipts;
//! - the fsync policy is logged (`always`: nothing acknowledged is lost on a crash; `everysec`:
//!   up to a second of writes; `no`: whatever the OS had not flushed);
//! - managed Redis often disables `CONFIG`: then the log says what could not be checked;
//! - the connected replicas decide the default of `DUKA_REDIS_WAIT_REPLICAS` (1 with any, else 0).
//!
//! [`wait_for_replicas`] is the `WAIT n ms` sent after a payment becomes paid and before the
//! callback is answered (see `payments::callbacks`). Its remaining window: a master that dies
//! after the commit and before the replica copied it, and is then failed over, loses the payment;
//! Safaricom was not yet answered, so it retries the callback and the payment is applied again on
//! the new master (the payment state machine is idempotent per receipt).

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// What start-up learnt about Redis's durability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persistence {
    /// `CONFIG GET appendonly`, when `CONFIG` answered.
    pub appendonly: Option<bool>,
    /// `CONFIG GET appendfsync`.
    pub appendfsync: Option<String>,
    /// `connected_slaves` from `INFO replication`.
    pub connected_replicas: Option<u32>,
}

/// Why `duka serve` refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    #[error(
        "Redis runs with appendonly no: a Redis restart would forget paid orders and queued receipts. \
         Turn the AOF on (`CONFIG SET appendonly yes`, and `appendonly yes` in redis.conf), or set \
         DUKA_ALLOW_NO_PERSISTENCE=1 to run without it"
    )]
    NoAppendOnly,
    #[error(
        "the Redis Cluster master {0} runs with appendonly no: its restart would forget paid orders \
         and queued receipts. Turn the AOF on on every master and replica, or set \
         DUKA_ALLOW_NO_PERSISTENCE=1 to run without it"
    )]
    MasterWithoutAppendOnly(String),
    #[error("could not list the Redis Cluster's masters through any seed: {0}")]
    NoMasters(String),
    #[error("could not ask Redis about persistence: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Checks Redis at `url` (see the module docs) and logs what it found.
///
/// # Errors
/// [`PersistenceError::NoAppendOnly`] unless `allow_no_persistence`; Redis unreachable.
pub async fn check_persistence(
    url: &str,
    allow_no_persistence: bool,
) -> Result<Persistence, PersistenceError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let found = inspect(&mut conn).await;
    decide(&found, allow_no_persistence)?;
    Ok(found)
}

/// [`check_persistence`] for a Redis Cluster: asks every master (listed by `CLUSTER NODES`
/// through the first seed that answers) and refuses when any runs without the AOF. The fsync
/// policy logged is every master's (`mixed` when they differ), and the replicas the fewest any
/// master has.
///
/// # Errors
/// [`PersistenceError::MasterWithoutAppendOnly`] unless `allow_no_persistence`; no seed
/// answered; a master unreachable.
pub async fn check_cluster_persistence(
    seeds: &[String],
    allow_no_persistence: bool,
) -> Result<Persistence, PersistenceError> {
    let mut why = String::from("no seeds");
    let mut masters = None;
    for seed in seeds {
        match masters_of(seed).await {
            Ok(found) if !found.is_empty() => {
                masters = Some(found);
                break;
            }
            Ok(_) => why = format!("{} lists no masters", crate::startup::redact_url(seed)),
            Err(e) => why = e.to_string(),
        }
    }
    let masters = masters.ok_or(PersistenceError::NoMasters(why))?;
    let mut all = Persistence {
        appendonly: Some(true),
        appendfsync: None,
        connected_replicas: None,
    };
    for master in &masters {
        let client = redis::Client::open(master.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let found = inspect(&mut conn).await;
        let shown = crate::startup::redact_url(master);
        match found.appendonly {
            Some(false) if !allow_no_persistence => {
                return Err(PersistenceError::MasterWithoutAppendOnly(shown))
            }
            Some(false) => all.appendonly = Some(false),
            None if all.appendonly == Some(true) => all.appendonly = None,
            _ => {}
        }
        all.appendfsync = match (all.appendfsync.take(), found.appendfsync) {
            (None, found) => found,
            (Some(seen), Some(found)) if seen != found => Some("mixed".to_owned()),
            (seen, _) => seen,
        };
        all.connected_replicas = match (all.connected_replicas, found.connected_replicas) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (None, b) => b,
            (a, None) => a,
        };
    }
    tracing::info!(
        redis.masters = masters.len(),
        "checked every Redis Cluster master"
    );
    decide(&all, allow_no_persistence)?;
    Ok(all)
}

/// The URLs of the cluster's live masters, as seen by `seed` (its scheme and credentials, each
/// master's address).
async fn masters_of(seed: &str) -> Result<Vec<String>, PersistenceError> {
    let client = redis::Client::open(seed)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await?;
    let base = reqwest::Url::parse(seed).map_err(|e| PersistenceError::NoMasters(e.to_string()))?;
    Ok(master_addresses(&nodes)
        .into_iter()
        .filter_map(|(host, port)| {
            let mut url = base.clone();
            url.set_host(Some(&host)).ok()?;
            url.set_port(Some(port)).ok()?;
            Some(url.to_string())
        })
        .collect())
}

/// `CLUSTER NODES` → the (host, port) of every master not marked failed.
fn master_addresses(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _id = fields.next()?;
            let address = fields.next()?;
            let flags = fields.next()?;
            let live_master = flags.split(',').any(|f| f == "master")
                && !flags
                    .split(',')
                    .any(|f| matches!(f, "fail" | "fail?" | "noaddr"));
            if !live_master {
                return None;
            }
            // `127.0.0.1:7000@17000` or `127.0.0.1:7000@17000,hostname`.
            let host_port = address.split(['@', ',']).next()?;
            let (host, port) = host_port.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

async fn inspect(conn: &mut MultiplexedConnection) -> Persistence {
    let config = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await;
            match reply {
                Ok(pair) => pair.get(1).cloned(),
                Err(e) => {
                    tracing::warn!(error.message = %e, "Redis refused CONFIG GET {name} (managed Redis?): could not check it");
                    None
                }
            }
        }
    };
    let appendonly = config("appendonly").await.map(|v| v == "yes");
    let appendfsync = config("appendfsync").await;
    let info: redis::RedisResult<String> = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await;
    let connected_replicas = info.ok().and_then(|info| {
        info.lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse().ok())
    });
    Persistence {
        appendonly,
        appendfsync,
        connected_replicas,
    }
}

fn decide(found: &Persistence, allow_no_persistence: bool) -> Result<(), PersistenceError> {
    match found.appendonly {
        Some(false) if !allow_no_persistence => return Err(PersistenceError::NoAppendOnly),
        Some(false) => tracing::warn!(
            "Redis runs with appendonly no and DUKA_ALLOW_NO_PERSISTENCE=1: a Redis restart loses paid orders and queued receipts"
        ),
        Some(true) => {}
        None => tracing::warn!("could not check that Redis persists (appendonly): make sure it does"),
    }
    let fsync = found.appendfsync.as_deref().unwrap_or("unknown");
    let window = match fsync {
        "always" => "none: every write is on disk before Redis answers",
        "everysec" => "up to one second of writes on a crash of the Redis machine",
        "no" => "whatever the operating system had not flushed",
        _ => "unknown",
    };
    tracing::info!(
        redis.appendonly = ?found.appendonly,
        redis.appendfsync = fsync,
        redis.replicas = ?found.connected_replicas,
        "Redis persistence: loss window {window}"
    );
    Ok(())
}

/// How many replicas to wait for: the setting, else 1 when Redis had a replica at start-up.
pub fn replicas_to_wait_for(setting: Option<u32>, found: &Persistence) -> u32 {
    setting.unwrap_or(u32::from(found.connected_replicas.unwrap_or(0) > 0))
}

/// Sends `WAIT replicas timeout` on `conn`; returns how many replicas acknowledged.
///
/// # Errors
/// Redis fails.
pub async fn wait_for_replicas(
    conn: &mut impl redis::aio::ConnectionLike,
    replicas: u32,
    timeout: Duration,
) -> redis::RedisResult<u32> {
    redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64)
        .query_async(conn)
        .await
}

/// Called after a payment became paid, before Safaricom's callback is answered: `WAIT`s for the
/// configured replicas of the order's master. Fewer acknowledgements than asked (or an error) is
/// logged and counted (`duka_redis_wait_short_total`), and the callback is answered anyway: the
/// payment is committed on the master, and a refused answer would not make Daraja resend it.
pub async fn after_paid(app: &crate::startup::AppState, number: &str) {
    let replicas = app.limits.wait_replicas.unwrap_or(0);
    if replicas == 0 {
        return;
    }
    let timeout_ms = app.limits.wait_timeout.as_millis() as u64;
    let key = app.shop.keys.order(number);
    match app
        .shop
        .store
        .wait_replicas(&key, replicas, timeout_ms)
        .await
    {
        Ok(None) => {}
        Ok(Some(acked)) if acked >= replicas => {}
        Ok(Some(acked)) => {
            app.metrics.inc("duka_redis_wait_short_total", &[]);
            tracing::warn!(
                order.number = number,
                redis.replicas_acked = acked,
                redis.replicas_wanted = replicas,
                "a paid order reached fewer Redis replicas than DUKA_REDIS_WAIT_REPLICAS within DUKA_REDIS_WAIT_MS"
            );
        }
        Err(e) => {
            app.metrics.inc("duka_redis_wait_short_total", &[]);
            tracing::warn!(order.number = number, error.message = %e, "could not WAIT for Redis replicas after a payment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendonly_no_refuses_unless_allowed() {
        let off = Persistence {
            appendonly: Some(false),
            ..Persistence::default()
        };
        assert!(matches!(
            decide(&off, false),
            Err(PersistenceError::NoAppendOnly)
        ));
        assert!(decide(&off, true).is_ok());
        // CONFIG disabled: cannot check, so start (with a warning).
        assert!(decide(&Persistence::default(), false).is_ok());
    }

    #[test]
    fn cluster_nodes_lists_the_live_masters() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238317741 1426238316071 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            master_addresses(nodes),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30001)
            ]
        );
    }

    #[test]
    fn waits_for_one_replica_when_there_is_one() {
        let with = Persistence {
            connected_replicas: Some(2),
            ..Persistence::default()
        };
        assert_eq!(replicas_to_wait_for(None, &with), 1);
        assert_eq!(replicas_to_wait_for(None, &Persistence::default()), 0);
        assert_eq!(replicas_to_wait_for(Some(2), &Persistence::default()), 2);
    }

    #[tokio::test]
    async fn asks_a_real_redis() {
        let Ok(redis) = crate::testing::TestRedis::start() else {
            return;
        };
        assert!(matches!(
            check_persistence(&redis.url(), false).await,
            Err(PersistenceError::NoAppendOnly)
        ));
        let found = check_persistence(&redis.url(), true).await.unwrap();
        assert_eq!(found.appendonly, Some(false));
        assert_eq!(found.connected_replicas, Some(0));
    }
}
