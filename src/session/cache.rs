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
//! The cache is bounded: a fixed number of shards, each a small map with a cap; entries expire
//! with the session's TTL, and a full shard drops its oldest entry first (first in, first out),
//! in constant time: a full cache is the normal state of a busy node, so a hop must never pay
//! for a sweep of the shard. Each operation hashes the session key once (keyed SipHash, so
//! callers cannot aim keys at one bucket); the shard is picked and the entry found by that hash,
//! and the entry keeps its key to tell two sessions of one hash apart.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
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
    key: String,
    known: Arc<Known>,
    expires_at: Instant,
}

/// One shard: entries by the hash of their key, and the hashes in the order they came in.
#[derive(Default)]
struct Shard {
    entries: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
    /// Every hash put since the last compaction, oldest first; a hash whose entry is gone (or
    /// was put again) is skipped when its turn comes.
    arrivals: VecDeque<u64>,
}

/// The map's hasher for keys that are already hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach here (`write_u64`); fold anything else in rather than panic.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The shard is picked by the top bits, so within a shard they are all alike: turn the
        // word so that the map's bucket and tag bits both come from the bits that vary.
        self.0 = n.rotate_left(32);
    }
}

/// The top bits of a key's hash that pick its shard.
const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;

/// How many sessions one node remembers by default (`DUKA_SESSION_CACHE`): each entry is about
/// the 1 KiB a session costs in Redis, so this is tens of megabytes at most.
pub const DEFAULT_CAPACITY: usize = 32_768;

/// The bounded per-node cache of the records this node last committed for a session.
pub struct SessionCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    ttl: Duration,
    hasher: RandomState,
}

impl SessionCache {
    /// A cache of at most about `capacity` sessions (0 turns it off), each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            ttl,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> (u64, std::sync::MutexGuard<'_, Shard>) {
        let hash = self.hasher.hash_one(key);
        // The top bits pick the shard (see `Prehashed` for the map's own bits).
        let shard = self.shards[(hash >> (64 - SHARD_BITS)) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (hash, shard)
    }

    /// What this node last wrote for `session_key`, unless it has expired or been dropped.
    pub fn get(&self, session_key: &str) -> Option<Arc<Known>> {
        if self.per_shard == 0 {
            return None;
        }
        let (hash, mut shard) = self.shard(session_key);
        let entry = shard.entries.get(&hash)?;
        if entry.key != session_key {
            return None;
        }
        if entry.expires_at > Instant::now() {
            return Some(entry.known.clone());
        }
        shard.entries.remove(&hash);
        None
    }

    /// Remembers what was just committed (or just read) for `session_key`.
    pub fn put(&self, session_key: &str, known: Arc<Known>) {
        if self.per_shard == 0 {
            return;
        }
        let expires_at = Instant::now() + self.ttl;
        let (hash, mut shard) = self.shard(session_key);
        if let Some(entry) = shard.entries.get_mut(&hash) {
            if entry.key != session_key {
                entry.key = session_key.to_owned();
            }
            entry.known = known;
            entry.expires_at = expires_at;
            return;
        }
        while shard.entries.len() >= self.per_shard {
            let Some(oldest) = shard.arrivals.pop_front() else {
                break;
            };
            shard.entries.remove(&oldest);
        }
        shard.entries.insert(
            hash,
            Entry {
                key: session_key.to_owned(),
                known,
                expires_at,
            },
        );
        shard.arrivals.push_back(hash);
        // Forgotten sessions leave their hash behind: drop those now and then, so the queue
        // stays within twice the shard (amortised constant time per put).
        if shard.arrivals.len() > 2 * self.per_shard.max(8) {
            let Shard { entries, arrivals } = &mut *shard;
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            arrivals.retain(|h| entries.contains_key(h) && seen.insert(*h));
        }
    }

    /// Forgets `session_key` (its hop failed in a way that leaves the store's state unknown).
    pub fn forget(&self, session_key: &str) {
        if self.per_shard > 0 {
            let (hash, mut shard) = self.shard(session_key);
            if shard
                .entries
                .get(&hash)
                .is_some_and(|e| e.key == session_key)
            {
                shard.entries.remove(&hash);
            }
        }
    }

    /// How many sessions are remembered (for tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
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
    fn a_full_cache_drops_its_oldest_entries_first() {
        let cache = SessionCache::new(SHARDS * 4, Duration::from_secs(60));
        for i in 0..1_000 {
            cache.put(&format!("s{i}"), known("x"));
        }
        // Each shard keeps its 4 newest: every one of the last few is still there.
        for i in 996..1_000 {
            assert_eq!(cache.get(&format!("s{i}")), Some(known("x")), "s{i}");
        }
        assert_eq!(cache.get("s0"), None);
        assert!(cache.len() <= SHARDS * 4);
    }

    #[test]
    fn forgotten_sessions_do_not_pile_up_in_the_queue() {
        let cache = SessionCache::new(SHARDS * 4, Duration::from_secs(60));
        for i in 0..10_000 {
            let key = format!("s{i}");
            cache.put(&key, known("x"));
            cache.forget(&key);
        }
        for shard in &cache.shards {
            let shard = shard.lock().unwrap();
            assert!(
                shard.arrivals.len() <= 2 * 8 + 1,
                "{}",
                shard.arrivals.len()
            );
        }
        assert!(cache.is_empty());
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
