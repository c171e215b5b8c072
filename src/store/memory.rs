//! The embedded store: the [`Store`] primitives over a map in this process.
//!
//! `duka serve` uses it when `REDIS_URL` is unset, so the demo runs on a machine with nothing
//! installed, and `duka replay` uses it for fast, isolated runs. It keeps nothing across restarts
//! and cannot be shared between nodes; the log says so loudly at start-up.
//!
//! One mutex guards the whole map. Every primitive is a handful of map operations, so the lock is
//! held for microseconds; that is simpler than sharding the map and fast enough for one process.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Batch, Guarded, Store, StoreError, Write};

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    /// A hash of integer counters.
    Counters(HashMap<String, i64>),
    /// A sorted set: members by score, and each member's score.
    Sorted {
        by_score: BTreeSet<(i64, String)>,
        scores: HashMap<String, i64>,
    },
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

/// The in-process store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys are live (for tests).
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .values()
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are checked
        // before anything is written), so a poisoned map is still consistent.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn live<'a>(map: &'a HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a Entry> {
    map.get(key)
        .filter(|e| e.expires_at.is_none_or(|t| t > now))
}

fn bytes<'a>(map: &'a HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a [u8]> {
    match live(map, key, now).map(|e| &e.value) {
        Some(Value::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn sorted_mut<'a>(
    map: &'a mut HashMap<String, Entry>,
    key: &str,
    now: Instant,
) -> (
    &'a mut BTreeSet<(i64, String)>,
    &'a mut HashMap<String, i64>,
) {
    let expired = map.get(key).is_some_and(|e| {
        e.expires_at.is_some_and(|t| t <= now) || !matches!(e.value, Value::Sorted { .. })
    });
    if expired {
        map.remove(key);
    }
    let entry = map.entry(key.to_owned()).or_insert_with(|| Entry {
        value: Value::Sorted {
            by_score: BTreeSet::new(),
            scores: HashMap::new(),
        },
        expires_at: None,
    });
    match &mut entry.value {
        Value::Sorted { by_score, scores } => (by_score, scores),
        Value::Bytes(_) | Value::Counters(_) => unreachable!("replaced above"),
    }
}

fn zadd(map: &mut HashMap<String, Entry>, key: &str, score: i64, member: &str, now: Instant) {
    let (by_score, scores) = sorted_mut(map, key, now);
    if let Some(old) = scores.insert(member.to_owned(), score) {
        by_score.remove(&(old, member.to_owned()));
    }
    by_score.insert((score, member.to_owned()));
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let now = Instant::now();
        let map = self.lock();
        Ok(keys
            .iter()
            .map(|k| bytes(&map, k, now).map(<[u8]>::to_vec))
            .collect())
    }

    async fn commit_reading(&self, batch: &Batch) -> Result<Guarded, StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        for guard in &batch.guards {
            if bytes(&map, &guard.key, now) != guard.expected.as_deref() {
                return Ok(Guarded::Conflict(
                    batch
                        .guards
                        .iter()
                        .map(|g| bytes(&map, &g.key, now).map(<[u8]>::to_vec))
                        .collect(),
                ));
            }
        }
        for write in &batch.writes {
            match write {
                Write::Set { key, value, ttl_ms } => {
                    map.insert(
                        key.clone(),
                        Entry {
                            value: Value::Bytes(value.clone()),
                            expires_at: ttl_ms.map(|ms| now + Duration::from_millis(ms)),
                        },
                    );
                }
                Write::Delete { key } => {
                    map.remove(key);
                }
                Write::ZAdd { key, score, member } => zadd(&mut map, key, *score, member, now),
                Write::ZRem { key, member } => {
                    let (by_score, scores) = sorted_mut(&mut map, key, now);
                    if let Some(old) = scores.remove(member) {
                        by_score.remove(&(old, member.clone()));
                    }
                }
                Write::HIncrBy { key, field, by } => {
                    let stale = map.get(key.as_str()).is_some_and(|e| {
                        e.expires_at.is_some_and(|t| t <= now)
                            || !matches!(e.value, Value::Counters(_))
                    });
                    if stale {
                        map.remove(key.as_str());
                    }
                    let entry = map.entry(key.clone()).or_insert_with(|| Entry {
                        value: Value::Counters(HashMap::new()),
                        expires_at: None,
                    });
                    if let Value::Counters(fields) = &mut entry.value {
                        *fields.entry(field.clone()).or_default() += by;
                    }
                }
                Write::Expire { key, ttl_ms } => {
                    if let Some(entry) = map
                        .get_mut(key)
                        .filter(|e| e.expires_at.is_none_or(|t| t > now))
                    {
                        entry.expires_at = Some(now + Duration::from_millis(*ttl_ms));
                    }
                }
            }
        }
        Ok(Guarded::Applied)
    }

    async fn claim_due(
        &self,
        queue: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let mut map = self.lock();
        let (by_score, _) = sorted_mut(&mut map, queue, now);
        let due: Vec<String> = by_score
            .iter()
            .take_while(|(score, _)| *score <= now_ms)
            .take(limit)
            .map(|(_, member)| member.clone())
            .collect();
        for member in &due {
            zadd(&mut map, queue, now_ms + lease_ms, member, now);
        }
        Ok(due)
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let map = self.lock();
        Ok(match live(&map, key, now).map(|e| &e.value) {
            Some(Value::Sorted { by_score, .. }) => {
                by_score.iter().map(|(_, m)| m.clone()).collect()
            }
            _ => Vec::new(),
        })
    }

    async fn counters(&self, key: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let now = Instant::now();
        let map = self.lock();
        Ok(match live(&map, key, now).map(|e| &e.value) {
            Some(Value::Counters(fields)) => fields.iter().map(|(f, n)| (f.clone(), *n)).collect(),
            _ => Vec::new(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_keeps_the_store_contract() {
        super::super::contract_tests::all(&MemoryStore::new()).await;
    }
}
