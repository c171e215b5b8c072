//! What this node last wrote for each session, so that the next hop can skip the read.
//!
//! A hop reads the session, the cart and the profile, plans, and commits guarded on the three
//! values as read. When this node served the previous hop of the session, it already knows what
//! it wrote: [`SessionCache`] keeps those three values, byte for byte as committed, and the hop
//! uses them as the guards' expected values and goes straight to the commit (one round trip).
//!
//! The cache is only ever a guess. The guards check it inside the store, so a stale entry
//! (another node served a hop, a payment callback changed the profile, Redis expired a key) is a
//! conflict, and the commit hands back the current values ([`crate::store::Store::commit_reading`]):
//! the hop re-plans from them exactly as if it had read them. A guard that holds means the store
//! holds exactly the cached bytes, so the plan made from the cache is the plan a read would
//! have made. Nothing here can cause a wrong screen; at worst it costs the round trip it saves.
//!
//! Each entry also keeps the three records decoded, so a hop planned from the cache neither
//! copies nor parses them: an entry is shared (`Arc`) and immutable.
//!
//! The cache is bounded: a fixed number of shards, each a small map with a cap, entries expire
//! with the session's TTL, and a full shard drops expired entries and then an arbitrary one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The three records a hop reads, as the store holds them (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    pub session: Option<Vec<u8>>,
    pub cart: Option<Vec<u8>>,
    pub profile: Option<Vec<u8>>,
}

/// The three records both as stored (the guards' expected values) and decoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Known {
    pub records: Records,
    pub session: Option<super::SessionRecord>,
    pub cart: crate::menu::Cart,
    pub profile: crate::menu::Profile,
}

struct Entry {
    known: Arc<Known>,
    expires_at: Instant,
}

const SHARDS: usize = 32;

/// How many sessions one node remembers by default (`DUKA_SESSION_CACHE`): each entry is about
/// the 1 KiB a session costs in Redis, so this is tens of megabytes at most.
pub const DEFAULT_CAPACITY: usize = 32_768;

/// The bounded per-node cache of the records this node last committed for a session.
pub struct SessionCache {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    per_shard: usize,
    ttl: Duration,
}

impl SessionCache {
    /// A cache of at most about `capacity` sessions (0 turns it off), each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            ttl,
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What this node last wrote for `session_key`, unless it has expired or been dropped.
    pub fn get(&self, session_key: &str) -> Option<Arc<Known>> {
        if self.per_shard == 0 {
            return None;
        }
        let mut shard = self.shard(session_key);
        match shard.get(session_key) {
            Some(entry) if entry.expires_at > Instant::now() => Some(entry.known.clone()),
            Some(_) => {
                shard.remove(session_key);
                None
            }
            None => None,
        }
    }

    /// Remembers what was just committed (or just read) for `session_key`.
    pub fn put(&self, session_key: &str, known: Arc<Known>) {
        if self.per_shard == 0 {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shard(session_key);
        if shard.len() >= self.per_shard && !shard.contains_key(session_key) {
            shard.retain(|_, e| e.expires_at > now);
            if shard.len() >= self.per_shard {
                if let Some(victim) = shard.keys().next().cloned() {
                    shard.remove(&victim);
                }
            }
        }
        let entry = Entry {
            known,
            expires_at: now + self.ttl,
        };
        match shard.get_mut(session_key) {
            Some(old) => *old = entry,
            None => {
                shard.insert(session_key.to_owned(), entry);
            }
        }
    }

    /// Forgets `session_key` (its hop failed in a way that leaves the store's state unknown).
    pub fn forget(&self, session_key: &str) {
        if self.per_shard > 0 {
            self.shard(session_key).remove(session_key);
        }
    }

    /// How many sessions are remembered (for tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(session: &str) -> Arc<Known> {
        Arc::new(Known {
            records: Records {
                session: Some(session.as_bytes().to_vec()),
                cart: None,
                profile: Some(b"p".to_vec()),
            },
            ..Known::default()
        })
    }

    #[test]
    fn remembers_the_last_write_of_each_session() {
        let cache = SessionCache::new(100, Duration::from_secs(60));
        assert_eq!(cache.get("s1"), None);
        cache.put("s1", known("a"));
        cache.put("s1", known("b"));
        cache.put("s2", known("c"));
        assert_eq!(cache.get("s1"), Some(known("b")));
        assert_eq!(cache.get("s2"), Some(known("c")));
        cache.forget("s1");
        assert_eq!(cache.get("s1"), None);
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = SessionCache::new(64, Duration::from_secs(60));
        for i in 0..10_000 {
            cache.put(&format!("s{i}"), known("x"));
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert_eq!(cache.get("s9999"), Some(known("x")), "the newest stays");
    }

    #[test]
    fn entries_expire_with_the_session() {
        let cache = SessionCache::new(10, Duration::from_millis(20));
        cache.put("s1", known("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("s1"), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_zero_turns_it_off() {
        let cache = SessionCache::new(0, Duration::from_secs(60));
        cache.put("s1", known("a"));
        assert_eq!(cache.get("s1"), None);
    }
}
