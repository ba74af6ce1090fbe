//! The read-through cache of the SQL stores: token → environment and
//! (process, environment) → model and deployment, each entry living a TTL,
//! emptied by every change the store makes (and, in PostgreSQL, by every
//! change another replica announces).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::id::{EnvironmentId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::token::TokenDigest;

/// Entries each cache holds at most; a full cache is emptied.
pub(crate) const CACHE_CAPACITY: usize = 10_000;

/// What a start reads about a process.
type ModelAndDeployment = (ProcessModel, Option<Deployment>);

/// The read-through caches. A read that began before a change is not
/// cached after it: each change moves the generation on.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(crate) tokens: Timed<TokenDigest, Option<Environment>>,
    pub(crate) models: Timed<(ProcessUuid, EnvironmentId), Option<ModelAndDeployment>>,
    pub(crate) generation: AtomicU64,
}

impl Cache {
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tokens.clear();
        self.models.clear();
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn unchanged_since(&self, generation: u64) -> bool {
        self.generation() == generation
    }

    /// The entry of `key` in `map`, or what `fetch` reads, kept in `map`
    /// when `keep` says so and no change came while it was read.
    pub(crate) async fn through<K, V>(
        &self,
        map: &Timed<K, V>,
        key: K,
        ttl: Duration,
        keep: impl FnOnce(&V) -> bool,
        fetch: impl std::future::Future<Output = Result<V, crate::store::StoreError>>,
    ) -> Result<V, crate::store::StoreError>
    where
        K: std::hash::Hash + Eq,
        V: Clone,
    {
        if let Some(found) = map.get(&key, ttl) {
            return Ok(found);
        }
        let generation = self.generation();
        let found = fetch.await?;
        if keep(&found) && self.unchanged_since(generation) {
            map.put(key, found.clone(), ttl);
        }
        Ok(found)
    }
}

/// A map whose entries expire.
#[derive(Debug)]
pub(crate) struct Timed<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Timed<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Timed<K, V> {
    pub(crate) fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        if ttl.is_zero() {
            return None;
        }
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    pub(crate) fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn a_change_moves_the_generation_on() {
        let cache = Cache::default();
        let before = cache.generation();
        assert!(cache.unchanged_since(before));
        cache.clear();
        assert!(!cache.unchanged_since(before), "a read from before the change");
        assert!(cache.unchanged_since(cache.generation()));
        cache.clear();
        assert_eq!(cache.generation(), before + 2);
    }

    #[test]
    pub(crate) fn a_timed_map_keeps_entries_for_their_lifetime_and_empties_when_full() {
        let map = Timed::<usize, usize>::default();
        let ttl = Duration::from_secs(60);
        for key in 0..CACHE_CAPACITY {
            map.put(key, key * 2, ttl);
        }
        assert_eq!(map.get(&0, ttl), Some(0));
        assert_eq!(
            map.get(&(CACHE_CAPACITY - 1), ttl),
            Some(2 * (CACHE_CAPACITY - 1))
        );
        // One more than it holds: the map starts over with the new entry.
        map.put(CACHE_CAPACITY, 1, ttl);
        assert_eq!(map.get(&0, ttl), None);
        assert_eq!(map.get(&CACHE_CAPACITY, ttl), Some(1));
        assert_eq!(map.0.lock().unwrap().len(), 1);

        assert_eq!(map.get(&CACHE_CAPACITY, Duration::ZERO), None, "no cache");
        map.put(7, 7, Duration::ZERO);
        assert_eq!(map.get(&7, ttl), None, "nothing is put without a lifetime");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            map.get(&CACHE_CAPACITY, Duration::from_millis(1)),
            None,
            "expired"
        );
    }
}
