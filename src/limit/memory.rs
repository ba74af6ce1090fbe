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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn past_the_bound_on_keys_whole_allowances_are_forgotten_and_held_ones_kept() {
        let limiter = InMemoryRateLimiter::new();
        let (fast, slow) = (
            Quota::per_second(1_000_000),
            Quota::new(1, Duration::from_secs(3600)),
        );
        for i in 0..MAX_KEYS - 1 {
            assert!(limiter.decide(&format!("k{i}"), fast, true).allowed());
        }
        assert!(limiter.decide("held", slow, true).allowed());
        let len = || limiter.state.lock().unwrap().len();
        assert_eq!(len(), MAX_KEYS, "nothing is forgotten below the bound");
        std::thread::sleep(Duration::from_millis(5));
        // The next new key finds the bound reached: the fast keys' allowances
        // are whole again and go; the held one stays.
        assert!(limiter.decide("new", slow, true).allowed());
        assert_eq!(len(), 2);
        assert!(!limiter.decide("held", slow, true).allowed(), "still held");
        assert!(
            limiter.decide("k0", fast, true).allowed(),
            "a forgotten key starts whole"
        );
    }
}
