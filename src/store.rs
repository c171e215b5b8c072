//! The store: a few atomic primitives that Redis and the embedded store both provide.
//!
//! Duka's logic (the menu engine, the payment state machine, the outbox) runs in Rust against
//! values it has read, and writes its result back as one [`Batch`]: a list of guards ("this key
//! still holds exactly what I read") and a list of writes, applied all together or not at all.
//! This is optimistic concurrency: two hops of one session, or two payment callbacks of one order,
//! read the same value; the first commit wins and the second sees [`Commit::Conflict`], reads
//! again and decides again. It holds across nodes, because the check runs inside Redis.
//!
//! Keeping the logic out of the store means the embedded store cannot drift from Redis: it only
//! has to implement four small primitives, and one shared test suite
//! (`store::contract_tests`) proves both do the same.
//!
//! Every call touches keys of one hash slot (see [`crate::keys`]), so each is one round trip on a
//! single Redis and on a Redis Cluster alike.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

/// What went wrong talking to the store. Conflicts are not errors: see [`Commit`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] ::redis::RedisError),
    #[error("the store answered something unexpected: {0}")]
    Protocol(String),
}

/// One write of a [`Batch`].
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Set a string value, with a time to live in milliseconds (none: keep forever).
    Set {
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    /// Delete a key of any type.
    Delete { key: String },
    /// Add a member to a sorted set, or move it to a new score.
    ZAdd {
        key: String,
        score: i64,
        member: String,
    },
    /// Remove a member from a sorted set.
    ZRem { key: String, member: String },
    /// Give an existing key (of any type) a time to live in milliseconds; no-op when absent.
    Expire { key: String, ttl_ms: u64 },
    /// Add `by` to a field of a hash (`HINCRBY`), creating both as needed.
    HIncrBy { key: String, field: String, by: i64 },
}

impl Write {
    /// The key this write changes.
    pub fn key(&self) -> &str {
        match self {
            Write::Set { key, .. }
            | Write::Delete { key }
            | Write::ZAdd { key, .. }
            | Write::ZRem { key, .. }
            | Write::Expire { key, .. }
            | Write::HIncrBy { key, .. } => key,
        }
    }
}

/// A guard: the key must hold exactly `expected` (`None`: the key must not exist).
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    pub key: String,
    pub expected: Option<Vec<u8>>,
}

/// Writes applied atomically, only if every guard holds. All keys must share one hash slot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub guards: Vec<Guard>,
    pub writes: Vec<Write>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to still hold `expected` (as read).
    pub fn guard(&mut self, key: impl Into<String>, expected: Option<&[u8]>) -> &mut Self {
        self.guards.push(Guard {
            key: key.into(),
            expected: expected.map(<[u8]>::to_vec),
        });
        self
    }

    pub fn set(
        &mut self,
        key: impl Into<String>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> &mut Self {
        self.writes.push(Write::Set {
            key: key.into(),
            value,
            ttl_ms,
        });
        self
    }

    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.writes.push(Write::Delete { key: key.into() });
        self
    }

    pub fn zadd(
        &mut self,
        key: impl Into<String>,
        score: i64,
        member: impl Into<String>,
    ) -> &mut Self {
        self.writes.push(Write::ZAdd {
            key: key.into(),
            score,
            member: member.into(),
        });
        self
    }

    pub fn zrem(&mut self, key: impl Into<String>, member: impl Into<String>) -> &mut Self {
        self.writes.push(Write::ZRem {
            key: key.into(),
            member: member.into(),
        });
        self
    }

    pub fn expire(&mut self, key: impl Into<String>, ttl_ms: u64) -> &mut Self {
        self.writes.push(Write::Expire {
            key: key.into(),
            ttl_ms,
        });
        self
    }

    pub fn hincrby(
        &mut self,
        key: impl Into<String>,
        field: impl Into<String>,
        by: i64,
    ) -> &mut Self {
        self.writes.push(Write::HIncrBy {
            key: key.into(),
            field: field.into(),
            by,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// The outcome of [`Store::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Commit {
    Applied,
    /// A guard did not hold: someone else changed a key since it was read. Nothing was written.
    Conflict,
}

/// The outcome of [`Store::commit_reading`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Guarded {
    Applied,
    /// A guard did not hold; nothing was written. The guarded keys' current values, in the
    /// order of [`Batch::guards`] (`None`: absent).
    Conflict(Vec<Option<Vec<u8>>>),
}

/// The primitives every store provides. Each call is one round trip.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads string values (`MGET`). Keys of one slot.
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Reads one string value (an `MGET` of one key).
    async fn get_one(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .get(&[key.to_owned()])
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    /// Applies a batch atomically if its guards hold. Keys of one slot.
    async fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        Ok(match self.commit_reading(batch).await? {
            Guarded::Applied => Commit::Applied,
            Guarded::Conflict(_) => Commit::Conflict,
        })
    }

    /// [`Store::commit`], and on a conflict the current value of every guarded key, in the
    /// order of [`Batch::guards`], read in the same atomic step: a caller that guessed the
    /// values (a cache) can decide again without another round trip. Keys of one slot.
    async fn commit_reading(&self, batch: &Batch) -> Result<Guarded, StoreError>;

    /// Claims up to `limit` members of the sorted set `queue` whose score is at most `now_ms`,
    /// by moving each to `now_ms + lease_ms` in the same atomic step: a claimed job is invisible
    /// to other workers until its lease runs out, and comes back by itself if its worker dies.
    async fn claim_due(
        &self,
        queue: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Every member of the sorted set `key`, lowest score first (`ZRANGE key 0 -1`); empty when
    /// absent. For the operator console's day index, never on the USSD hop.
    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError>;

    /// Every field of the hash `key` with its integer value (`HGETALL`); empty when absent.
    /// For the console's funnel counters, never on the USSD hop.
    async fn counters(&self, key: &str) -> Result<Vec<(String, i64)>, StoreError>;

    /// Checks the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name for logs and metrics: `memory`, `redis`, `redis-cluster`.
    fn kind(&self) -> &'static str;

    /// Waits until the writes so far reached `replicas` replicas of the server that owns
    /// `slot_key`'s slot, or `timeout_ms` passed (`WAIT`); returns how many did. `None`: this
    /// store has no replicas to wait for.
    async fn wait_replicas(
        &self,
        _slot_key: &str,
        _replicas: u32,
        _timeout_ms: u64,
    ) -> Result<Option<u32>, StoreError> {
        Ok(None)
    }
}

/// The store as the application holds it.
pub type SharedStore = Arc<dyn Store>;

/// Reads a stored JSON value. A value that cannot be read (an older format, a manual edit) is
/// treated as absent rather than failing every request that touches it; it is overwritten on the
/// next write.
pub fn from_json<T: serde::de::DeserializeOwned>(raw: Option<&[u8]>) -> Option<T> {
    raw.and_then(|bytes| serde_json::from_slice(bytes).ok())
}

/// Encodes a value for the store. Duka's stored types are plain data, so this cannot fail.
pub fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored values are plain data and always serialise")
}

/// One behaviour, proven for every store: the embedded store and Redis run these same tests.
#[cfg(test)]
pub(crate) mod contract_tests {
    use super::*;

    fn k(name: &str) -> String {
        format!("t{{s01}}:{name}")
    }

    pub async fn all(store: &dyn Store) {
        absent_keys_read_as_none(store).await;
        guards_protect_against_lost_updates(store).await;
        a_guard_on_an_absent_key_requires_it_to_stay_absent(store).await;
        ttls_expire_values(store).await;
        claims_lease_jobs_until_they_expire(store).await;
        deletes_and_zrem_apply(store).await;
        a_conflict_returns_the_guarded_keys_as_they_are(store).await;
        members_read_in_score_order_and_expire(store).await;
        hash_counters_add_up(store).await;
    }

    async fn hash_counters_add_up(store: &dyn Store) {
        let key = k("funnel");
        assert!(store.counters(&key).await.unwrap().is_empty());
        let mut batch = Batch::new();
        batch.hincrby(&key, "main", 2).hincrby(&key, "cart", 1);
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);
        let mut again = Batch::new();
        again.hincrby(&key, "main", 3).expire(&key, 60_000);
        assert_eq!(store.commit(&again).await.unwrap(), Commit::Applied);
        let mut counters = store.counters(&key).await.unwrap();
        counters.sort();
        assert_eq!(
            counters,
            vec![("cart".to_owned(), 1), ("main".to_owned(), 5)]
        );
    }

    async fn members_read_in_score_order_and_expire(store: &dyn Store) {
        let index = k("day");
        assert!(store.members(&index).await.unwrap().is_empty());
        let mut batch = Batch::new();
        batch
            .zadd(&index, 30, "c")
            .zadd(&index, 10, "a")
            .zadd(&index, 20, "b")
            .expire(&index, 80)
            .expire(k("absent"), 80);
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);
        assert_eq!(store.members(&index).await.unwrap(), vec!["a", "b", "c"]);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(store.members(&index).await.unwrap().is_empty());
        assert_eq!(store.get(&[k("absent")]).await.unwrap(), vec![None]);
    }

    async fn a_conflict_returns_the_guarded_keys_as_they_are(store: &dyn Store) {
        let (a, b, c) = (k("read-a"), k("read-b"), k("read-c"));
        let mut first = Batch::new();
        first
            .guard(&a, None)
            .set(&a, b"a1".to_vec(), None)
            .set(&c, b"c1".to_vec(), None);
        assert_eq!(
            store.commit_reading(&first).await.unwrap(),
            Guarded::Applied
        );
        // A writer that guessed wrong about `a` learns what `a`, `b` and `c` hold now.
        let mut stale = Batch::new();
        stale
            .guard(&a, Some(b"a0"))
            .guard(&b, None)
            .guard(&c, Some(b"c1"))
            .set(&b, b"b2".to_vec(), None);
        assert_eq!(
            store.commit_reading(&stale).await.unwrap(),
            Guarded::Conflict(vec![Some(b"a1".to_vec()), None, Some(b"c1".to_vec())])
        );
        assert_eq!(
            store.get(std::slice::from_ref(&b)).await.unwrap(),
            vec![None]
        );
        // Deciding again from what came back succeeds.
        let mut again = Batch::new();
        again
            .guard(&a, Some(b"a1"))
            .guard(&b, None)
            .guard(&c, Some(b"c1"))
            .set(&b, b"b2".to_vec(), None);
        assert_eq!(
            store.commit_reading(&again).await.unwrap(),
            Guarded::Applied
        );
        assert_eq!(store.get(&[b]).await.unwrap(), vec![Some(b"b2".to_vec())]);
    }

    async fn absent_keys_read_as_none(store: &dyn Store) {
        let values = store.get(&[k("nothing"), k("nothing2")]).await.unwrap();
        assert_eq!(values, vec![None, None]);
    }

    async fn guards_protect_against_lost_updates(store: &dyn Store) {
        let key = k("counter");
        let mut first = Batch::new();
        first.guard(&key, None).set(&key, b"1".to_vec(), None);
        assert_eq!(store.commit(&first).await.unwrap(), Commit::Applied);

        // Two writers both read "1"; only one may turn it into "2".
        let mut a = Batch::new();
        a.guard(&key, Some(b"1")).set(&key, b"2a".to_vec(), None);
        let mut b = Batch::new();
        b.guard(&key, Some(b"1")).set(&key, b"2b".to_vec(), None);
        assert_eq!(store.commit(&a).await.unwrap(), Commit::Applied);
        assert_eq!(store.commit(&b).await.unwrap(), Commit::Conflict);
        assert_eq!(store.get(&[key]).await.unwrap(), vec![Some(b"2a".to_vec())]);
    }

    async fn a_guard_on_an_absent_key_requires_it_to_stay_absent(store: &dyn Store) {
        let key = k("once");
        let other = k("once-side-effect");
        let mut claim = Batch::new();
        claim
            .guard(&key, None)
            .set(&key, b"x".to_vec(), None)
            .set(&other, b"y".to_vec(), None);
        assert_eq!(store.commit(&claim).await.unwrap(), Commit::Applied);
        let mut again = Batch::new();
        again
            .guard(&key, None)
            .set(&key, b"z".to_vec(), None)
            .set(&other, b"w".to_vec(), None);
        assert_eq!(store.commit(&again).await.unwrap(), Commit::Conflict);
        assert_eq!(
            store.get(&[key, other]).await.unwrap(),
            vec![Some(b"x".to_vec()), Some(b"y".to_vec())],
            "a conflicting batch writes nothing at all"
        );
    }

    async fn ttls_expire_values(store: &dyn Store) {
        let key = k("short");
        let mut batch = Batch::new();
        batch.set(&key, b"v".to_vec(), Some(50));
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);
        assert_eq!(
            store.get(std::slice::from_ref(&key)).await.unwrap(),
            vec![Some(b"v".to_vec())]
        );
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        assert_eq!(store.get(&[key]).await.unwrap(), vec![None]);
    }

    async fn claims_lease_jobs_until_they_expire(store: &dyn Store) {
        let queue = k("jobs");
        let mut batch = Batch::new();
        batch
            .zadd(&queue, 100, "job-a")
            .zadd(&queue, 200, "job-b")
            .zadd(&queue, 5_000, "job-later");
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);

        let mut claimed = store.claim_due(&queue, 1_000, 10_000, 10).await.unwrap();
        claimed.sort();
        assert_eq!(claimed, vec!["job-a".to_owned(), "job-b".to_owned()]);
        // Leased until 11_000: invisible to a second worker now and just before.
        assert!(store
            .claim_due(&queue, 1_001, 10_000, 10)
            .await
            .unwrap()
            .is_empty());
        let at_10_999 = store.claim_due(&queue, 10_999, 10_000, 10).await.unwrap();
        assert!(!at_10_999.contains(&"job-a".to_owned()));
        // The lease runs out and another worker gets the job.
        let at_11_000 = store.claim_due(&queue, 11_000, 10_000, 1).await.unwrap();
        assert_eq!(at_11_000.len(), 1);
        assert!(at_11_000[0] == "job-a" || at_11_000[0] == "job-b");
    }

    async fn deletes_and_zrem_apply(store: &dyn Store) {
        let queue = k("jobs2");
        let key = k("gone");
        let mut batch = Batch::new();
        batch.zadd(&queue, 1, "j").set(&key, b"v".to_vec(), None);
        assert_eq!(store.commit(&batch).await.unwrap(), Commit::Applied);
        let mut remove = Batch::new();
        remove.zrem(&queue, "j").delete(&key);
        assert_eq!(store.commit(&remove).await.unwrap(), Commit::Applied);
        assert!(store
            .claim_due(&queue, 1_000, 1, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.get(&[key]).await.unwrap(), vec![None]);
    }
}
