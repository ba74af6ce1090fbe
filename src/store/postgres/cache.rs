//! The read-through cache of [`PostgresStore`], and the listener that
//! empties it on every replica when any of them changes something.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool};

use super::{CACHE_CAPACITY, ModelAndDeployment, PostgresStore};
use crate::id::{EnvironmentId, ProcessUuid};
use crate::model::Environment;
use crate::store::StoreError;
use crate::token::TokenDigest;

impl PostgresStore {
    /// Tells every replica that something changed.
    pub(super) async fn announce(&self) -> Result<(), StoreError> {
        self.cache.clear();
        let query = sqlx::query("SELECT pg_notify($1, 'changed')").bind(&self.sql.channel);
        self.run("announcing a change", query.execute(&self.pool)).await?;
        Ok(())
    }

    /// Starts the listener that empties the cache on every change, once.
    pub(super) fn listen(&self) {
        if self.cache_ttl.is_zero() || self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, channel) = (self.pool.clone(), self.sql.channel.clone());
        let cache = Arc::downgrade(&self.cache);
        tokio::spawn(listen_for_changes(pool, channel, cache));
    }
}

/// Listens for changes and empties the cache on each, until the store is
/// gone. A lost connection also empties it (changes may have been missed).
pub(super) async fn listen_for_changes(pool: PgPool, channel: String, cache: Weak<Cache>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(target: "process_webhook", error = %error, "cannot listen for changes; retrying");
                match cache.upgrade() {
                    Some(cache) => cache.clear(),
                    None => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match event {
                Ok(Ok(Some(_))) => cache.clear(),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // The connection was lost: changes may have been missed.
                    cache.clear();
                    break;
                }
                Err(_) => {} // quiet: look again whether the store still exists
            }
        }
    }
}

/// The read-through caches. A read that began before a change is not
/// cached after it: each change moves the generation on.
#[derive(Debug, Default)]
pub(super) struct Cache {
    pub(super) tokens: Timed<TokenDigest, Option<Environment>>,
    pub(super) models: Timed<(ProcessUuid, EnvironmentId), Option<ModelAndDeployment>>,
    pub(super) generation: AtomicU64,
}

impl Cache {
    pub(super) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tokens.clear();
        self.models.clear();
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn unchanged_since(&self, generation: u64) -> bool {
        self.generation() == generation
    }
}

/// A map whose entries expire.
#[derive(Debug)]
pub(super) struct Timed<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Timed<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Timed<K, V> {
    pub(super) fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        if ttl.is_zero() {
            return None;
        }
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    pub(super) fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    pub(super) fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_change_moves_the_generation_on() {
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
    pub(super) fn a_timed_map_keeps_entries_for_their_lifetime_and_empties_when_full() {
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
