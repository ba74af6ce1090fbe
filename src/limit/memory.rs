//! [`InMemoryRateLimiter`]: rate limits for one process.

use std::collections::HashMap as StdHashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;

use crate::limit::{Quota, RateDecision, RateLimiter, gcra};
use crate::store::StoreError;

/// Keys are hashed with foldhash: a start takes one look-up, and SipHash
/// was most of the limiter's cost. Keys are environments and client
/// addresses, which a caller cannot choose freely.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// Keys held at most; past it, keys whose allowance is whole are forgotten.
const MAX_KEYS: usize = 100_000;

/// Rate limits in memory (GCRA), for one process. Clones share state.
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let limiter = InMemoryRateLimiter::new();
/// let quota = Quota::per_minute(2);
/// assert!(limiter.acquire("env:acme/production", quota).await?.allowed());
/// assert!(limiter.acquire("env:acme/production", quota).await?.allowed());
/// assert!(!limiter.acquire("env:acme/production", quota).await?.allowed());
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryRateLimiter {
    epoch: Instant,
    state: Arc<Mutex<HashMap<String, u64>>>,
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryRateLimiter {
    /// A limiter with no state.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            state: Arc::new(Mutex::new(HashMap::default())),
        }
    }

    fn decide(&self, key: &str, quota: Quota, take: bool) -> RateDecision {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tat) = state.get_mut(key) {
            let (decision, next) = gcra(Some(*tat), now, quota, take);
            if let Some(next) = next {
                *tat = next;
            }
            return decision;
        }
        let (decision, next) = gcra(None, now, quota, take);
        if let Some(next) = next {
            if state.len() >= MAX_KEYS {
                state.retain(|_, tat| *tat > now);
            }
            state.insert(key.to_owned(), next);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        Ok(self.decide(key, quota, true))
    }

    async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        Ok(self.decide(key, quota, false))
    }

    fn acquire_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, StoreError>> {
        Some(Ok(self.decide(key, quota, true)))
    }
}
