//! [`InMemoryIdempotencyStore`]: idempotency keys in memory, bounded, with
//! their retention and lease.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::HashMap;
use crate::id::EnvironmentId;
use crate::observe;
use crate::outcome::StartOutcome;
use crate::store::{
    DEFAULT_IDEMPOTENCY_CAPACITY, DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey,
    IdempotencyStore, PayloadFingerprint, Reservation, StoreError,
};

/// Idempotency keys in memory, for tests and single-process hosts.
///
/// Keys are kept for a retention time (24 h by default,
/// [`with_ttl`](Self::with_ttl)) measured from the reservation, and never
/// forgotten before it ends. The store holds at most
/// [`capacity`](Self::with_capacity) keys (500,000 by default, about 257 MiB
/// when full): past 80 % of it, a warning is logged (once, until it is below
/// 70 % again) and the gauges `process_webhook_idempotency_keys` and
/// `process_webhook_idempotency_capacity` say how close it is. When it is
/// full, expired and abandoned keys are reclaimed first (oldest first, in
/// amortized constant time), and if none is, `reserve` answers
/// [`Reservation::Full`] with the time until the oldest key expires (the
/// start is refused with `503 idempotency_store_full`). Reclaiming walks the
/// keys in the order they were reserved and stops at the first one still
/// held, so an abandoned reservation younger than a completed key still held
/// waits for the keys before it.
///
/// **Shares.** So that one environment's traffic cannot crowd out another's,
/// an environment holds at most a share of the capacity: by default the
/// *fair share*, the capacity divided by the number of environments holding
/// keys (counting the one asking), so a store used by one environment gives
/// it all of its room, and with two each may fill half. A fixed bound per
/// environment replaces the fair share with
/// [`with_environment_limit`](Self::with_environment_limit). Keys an
/// environment already holds are never dropped to honour a share; it gets
/// `Full` until its own keys expire.
///
/// A reservation whose start never finishes (its future was dropped, say
/// because the caller hung up and the host cancelled the request) is
/// abandoned after a lease of 5 minutes ([`with_lease`](Self::with_lease)):
/// the next call with that key reserves it again. Keep the lease longer than
/// the engine's timeout. Clones share state.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use process_webhook::*;
/// use serde_json::Map;
///
/// # tokio_test::block_on(async {
/// let store = InMemoryIdempotencyStore::new().with_ttl(Duration::from_secs(3600));
/// let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid::Uuid::nil().into(), "order-1");
/// let fp = PayloadFingerprint::of(&Map::new());
/// assert_eq!(store.reserve(&key, fp).await?, Reservation::Reserved);
/// assert_eq!(store.reserve(&key, fp).await?, Reservation::InProgress { fingerprint: fp });
/// store.release(&key).await?;
/// assert_eq!(store.reserve(&key, fp).await?, Reservation::Reserved);
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryIdempotencyStore {
    inner: Arc<Mutex<Keys>>,
    ttl: Duration,
    lease: Duration,
    capacity: usize,
    environment_limit: Option<usize>,
}

/// The keys, and the order they were reserved in, oldest first, so that
/// reclaiming does not scan the whole map. An order record whose key was
/// since removed or reserved anew (its `created` differs) is stale and
/// skipped; the queue is compacted when stale records outnumber live ones.
#[derive(Debug, Default)]
struct Keys {
    map: HashMap<IdempotencyKey, Entry>,
    order: VecDeque<(Instant, IdempotencyKey)>,
    /// How many keys of `map` each environment holds (no zero counts).
    per_environment: HashMap<EnvironmentId, usize>,
    /// Whether the warning of a store past 80 % of its capacity was logged
    /// (again only once it is below 70 %).
    warned: bool,
}

#[derive(Debug)]
struct Entry {
    created: Instant,
    fingerprint: PayloadFingerprint,
    outcome: Option<StartOutcome>,
}

impl Keys {
    fn insert(&mut self, key: IdempotencyKey, entry: Entry) {
        *self.per_environment.entry(key.environment().clone()).or_insert(0) += 1;
        self.order.push_back((entry.created, key.clone()));
        self.map.insert(key, entry);
    }

    fn remove(&mut self, key: &IdempotencyKey) {
        if self.map.remove(key).is_some() {
            if let Some(count) = self.per_environment.get_mut(key.environment()) {
                *count -= 1;
                if *count == 0 {
                    self.per_environment.remove(key.environment());
                }
            }
        }
    }

    fn held_by(&self, environment: &EnvironmentId) -> usize {
        self.per_environment.get(environment).copied().unwrap_or(0)
    }
}

impl Default for InMemoryIdempotencyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryIdempotencyStore {
    /// The default bound on the keys [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) holds:
    /// 500,000 (about 257 MiB when full: 539 bytes a completed key, measured
    /// by `cargo bench --bench memory`).
    pub const DEFAULT_CAPACITY: usize = DEFAULT_IDEMPOTENCY_CAPACITY;
}

impl InMemoryIdempotencyStore {
    /// An empty store with the default retention, lease and capacity, and
    /// fair shares between environments.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            ttl: DEFAULT_IDEMPOTENCY_TTL,
            lease: DEFAULT_IDEMPOTENCY_LEASE,
            capacity: DEFAULT_IDEMPOTENCY_CAPACITY,
            environment_limit: None,
        }
    }

    /// Sets how long a key is remembered.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long a start may hold a key before its reservation counts as
    /// abandoned (default 5 minutes).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets how many keys are kept at most (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Bounds the keys one environment may hold to `keys` (at least 1),
    /// instead of the fair share (see the type's docs).
    pub fn with_environment_limit(mut self, keys: usize) -> Self {
        self.environment_limit = Some(keys.max(1));
        self
    }

    /// The number of keys held (expired ones included until reclaimed).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reservation of `key`, or, with `held_for`, the takeover of its
    /// reservation in progress for `fingerprint` made at least that long ago.
    fn reserve_or_take(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Option<Duration>,
    ) -> Result<Reservation, StoreError> {
        let now = Instant::now();
        let mut keys = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = &mut *keys;
        if let Some(entry) = keys.map.get(key) {
            let taken = entry.outcome.is_none()
                && entry.fingerprint == fingerprint
                && held_for.is_some_and(|held_for| now.duration_since(entry.created) >= held_for);
            if !taken && !self.is_dead(entry, now) {
                return Ok(match &entry.outcome {
                    None => Reservation::InProgress {
                        fingerprint: entry.fingerprint,
                    },
                    Some(outcome) => Reservation::Completed {
                        fingerprint: entry.fingerprint,
                        outcome: outcome.clone(),
                    },
                });
            }
            keys.remove(key);
        }
        if keys.map.len() >= self.capacity
            || keys.held_by(key.environment()) >= self.share(keys, key.environment())
        {
            self.reclaim(keys, now);
        }
        if keys.map.len() >= self.capacity {
            return Ok(Reservation::Full {
                retry_after: self.room_after(keys, now),
            });
        }
        if keys.held_by(key.environment()) >= self.share(keys, key.environment()) {
            return Ok(Reservation::Full { retry_after: None });
        }
        if keys.order.len() > 2 * keys.map.len() + 64 {
            let map = &keys.map;
            keys.order
                .retain(|(created, k)| map.get(k).is_some_and(|e| e.created == *created));
        }
        keys.insert(
            key.clone(),
            Entry {
                created: now,
                fingerprint,
                outcome: None,
            },
        );
        observe::idempotency_keys(keys.map.len(), self.capacity);
        self.watch(keys);
        Ok(Reservation::Reserved)
    }

    /// Logs, once, a store past 80 % of its capacity (and re-arms below
    /// 70 %): at 100 % keyed starts are refused until keys expire.
    fn watch(&self, keys: &mut Keys) {
        let held = keys.map.len();
        if !keys.warned && held.saturating_mul(5) >= self.capacity.saturating_mul(4) {
            keys.warned = true;
            tracing::warn!(
                target: "process_webhook",
                held,
                capacity = self.capacity,
                "the in-memory idempotency store holds over 80 % of the keys it may: at 100 % every keyed start \
                 is refused (503 idempotency_store_full) until keys expire; raise its capacity, or keep keys in \
                 PostgreSQL or Redis"
            );
        } else if keys.warned && held.saturating_mul(10) < self.capacity.saturating_mul(7) {
            keys.warned = false;
        }
    }

    /// Whether an entry no longer holds its key at `now`.
    fn is_dead(&self, entry: &Entry, now: Instant) -> bool {
        let age = now.duration_since(entry.created);
        age >= self.ttl || (entry.outcome.is_none() && age >= self.lease)
    }

    /// Drops the dead keys at the front of the reservation order (and stale
    /// records), stopping at the first live key: keys are reserved in order
    /// and share one retention time, so the keys behind a live one have not
    /// expired either. Amortized O(1): each record is popped once.
    fn reclaim(&self, keys: &mut Keys, now: Instant) {
        while let Some((created, key)) = keys.order.front() {
            match keys.map.get(key) {
                Some(entry) if entry.created == *created => {
                    if !self.is_dead(entry, now) {
                        break;
                    }
                    let key = key.clone();
                    keys.remove(&key);
                }
                _ => {} // a stale record
            }
            keys.order.pop_front();
        }
    }

    /// How many keys `environment` may hold: the fixed limit, or the fair
    /// share of the capacity.
    fn share(&self, keys: &Keys, environment: &EnvironmentId) -> usize {
        if let Some(limit) = self.environment_limit {
            return limit.min(self.capacity);
        }
        let others = keys.per_environment.len() - usize::from(keys.held_by(environment) > 0);
        (self.capacity / (others + 1)).max(1)
    }

    /// The time until the oldest live key expires, when the store is full.
    fn room_after(&self, keys: &Keys, now: Instant) -> Option<Duration> {
        let (created, _) = keys.order.front()?;
        let expires = created.checked_add(self.ttl)?;
        Some(expires.saturating_duration_since(now))
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, None)
    }

    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, Some(held_for))
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        let mut keys = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.map.get_mut(key) {
            Some(entry) => {
                entry.outcome = Some(outcome.clone());
                Ok(())
            }
            None => Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            )),
        }
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let mut keys = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.map.get(key).is_some_and(|e| e.outcome.is_none()) {
            keys.remove(key);
            observe::idempotency_keys(keys.map.len(), self.capacity);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceId, ProcessUuid};
    use serde_json::Map;

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::new(
            EnvironmentId::new("prod"),
            ProcessUuid::from(uuid::Uuid::nil()),
            k,
        )
    }

    fn fp() -> PayloadFingerprint {
        PayloadFingerprint::of(&Map::new())
    }

    /// The answer to a reservation of `key` with the empty payload's
    /// fingerprint.
    async fn reserve(store: &InMemoryIdempotencyStore, key: &IdempotencyKey) -> Reservation {
        store.reserve(key, fp()).await.unwrap()
    }

    /// A short lease, for tests of abandoned reservations.
    const LEASE: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn past_eighty_percent_the_store_warns_once_and_again_only_after_falling_below_seventy() {
        let store = InMemoryIdempotencyStore::new().with_capacity(10);
        let warned = |store: &InMemoryIdempotencyStore| store.inner.lock().unwrap().warned;
        for n in 0..7 {
            assert_eq!(
                reserve(&store, &key(&format!("k{n}"))).await,
                Reservation::Reserved
            );
        }
        assert!(!warned(&store), "70 % is not past 80 %");
        reserve(&store, &key("k7")).await;
        assert!(warned(&store), "8 of 10");
        reserve(&store, &key("k8")).await;
        assert!(warned(&store));
        for n in 0..4 {
            store.release(&key(&format!("k{n}"))).await.unwrap();
        }
        // 5 held; the next reservation makes 6: below 70 %, re-armed.
        reserve(&store, &key("again-1")).await;
        assert!(!warned(&store));
        assert_eq!(InMemoryIdempotencyStore::DEFAULT_CAPACITY, 500_000);
        assert_eq!(InMemoryIdempotencyStore::new().capacity, 500_000);
    }

    async fn past_the_lease() {
        tokio::time::sleep(LEASE + Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn the_store_counts_the_keys_it_holds() {
        let store = InMemoryIdempotencyStore::new();
        assert!(store.is_empty());
        assert_eq!(store.len(), 0);
        reserve(&store, &key("a")).await;
        reserve(&store, &key("b")).await;
        assert!(!store.is_empty());
        assert_eq!(store.len(), 2);
        store.release(&key("a")).await.unwrap();
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_reservation_is_free_after_the_lease_but_a_completed_key_is_kept() {
        let store = InMemoryIdempotencyStore::new().with_lease(Duration::ZERO);
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
        let outcome = crate::outcome::sample_outcome(InstanceId::new("1"));
        store.complete(&key("a"), &outcome).await.unwrap();
        assert!(matches!(
            reserve(&store, &key("a")).await,
            Reservation::Completed { .. }
        ));
    }

    #[tokio::test]
    async fn expired_keys_are_forgotten() {
        let store = InMemoryIdempotencyStore::new().with_ttl(Duration::ZERO);
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
    }

    fn key_in(environment: &str, k: &str) -> IdempotencyKey {
        IdempotencyKey::new(
            EnvironmentId::new(environment),
            ProcessUuid::from(uuid::Uuid::nil()),
            k,
        )
    }

    #[tokio::test]
    async fn a_full_store_forgets_no_unexpired_key_and_says_when_room_comes() {
        let store = InMemoryIdempotencyStore::new()
            .with_capacity(2)
            .with_ttl(Duration::from_secs(3600));
        let outcome = crate::outcome::sample_outcome(InstanceId::new("1"));
        for k in ["a", "b"] {
            assert_eq!(reserve(&store, &key(k)).await, Reservation::Reserved);
            store.complete(&key(k), &outcome).await.unwrap();
        }
        let Reservation::Full {
            retry_after: Some(after),
        } = reserve(&store, &key("c")).await
        else {
            panic!("a full store refuses a new key");
        };
        assert!(after > Duration::from_secs(3590) && after <= Duration::from_secs(3600));
        // Both earlier keys are still replayed.
        for k in ["a", "b"] {
            assert!(matches!(
                reserve(&store, &key(k)).await,
                Reservation::Completed { .. }
            ));
        }
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn expired_keys_make_room_oldest_first_and_the_bound_holds_under_churn() {
        let store = InMemoryIdempotencyStore::new()
            .with_capacity(3)
            .with_ttl(Duration::ZERO);
        let outcome = crate::outcome::sample_outcome(InstanceId::new("1"));
        for i in 0..1_000 {
            let k = key(&format!("k{i}"));
            assert_eq!(reserve(&store, &k).await, Reservation::Reserved);
            if i % 2 == 0 {
                store.complete(&k, &outcome).await.unwrap();
            } else {
                store.release(&k).await.unwrap();
            }
            assert!(store.len() <= 3);
        }
        let keys = store.inner.lock().unwrap();
        assert!(
            keys.order.len() <= 2 * keys.map.len() + 65,
            "stale records are compacted"
        );
        assert_eq!(
            keys.per_environment.values().sum::<usize>(),
            keys.map.len(),
            "the counts per environment agree with the keys"
        );
    }

    #[tokio::test]
    async fn a_key_reserved_anew_after_its_release_takes_a_new_place_in_the_order() {
        let store = InMemoryIdempotencyStore::new()
            .with_capacity(2)
            .with_lease(LEASE)
            .with_ttl(Duration::from_secs(3600));
        let outcome = crate::outcome::sample_outcome(InstanceId::new("1"));
        // "a" is reserved and released, then "b" is reserved (and will be
        // abandoned), then "a" is reserved again and completed.
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
        store.release(&key("a")).await.unwrap();
        assert_eq!(reserve(&store, &key("b")).await, Reservation::Reserved);
        assert_eq!(reserve(&store, &key("a")).await, Reservation::Reserved);
        store.complete(&key("a"), &outcome).await.unwrap();
        assert!(matches!(
            reserve(&store, &key("c")).await,
            Reservation::Full { .. }
        ));
        past_the_lease().await;
        // "b", abandoned, is now the oldest key: it makes room for "c",
        // and "a", completed later, is kept.
        assert_eq!(reserve(&store, &key("c")).await, Reservation::Reserved);
        assert!(matches!(
            reserve(&store, &key("a")).await,
            Reservation::Completed { .. }
        ));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn abandoned_keys_are_counted_until_their_room_is_needed() {
        let store = InMemoryIdempotencyStore::new().with_capacity(3).with_lease(LEASE);
        for k in ["a", "b"] {
            assert_eq!(reserve(&store, &key(k)).await, Reservation::Reserved);
        }
        past_the_lease().await;
        // Room is left: nothing is reclaimed, and the abandoned keys count.
        assert_eq!(reserve(&store, &key("c")).await, Reservation::Reserved);
        assert_eq!(store.len(), 3);
        // Full: the abandoned keys make room.
        assert_eq!(reserve(&store, &key("d")).await, Reservation::Reserved);
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn an_environment_at_its_share_reclaims_its_abandoned_keys_while_the_store_has_room() {
        let store = InMemoryIdempotencyStore::new().with_capacity(4).with_lease(LEASE);
        for k in ["a1", "a2"] {
            assert_eq!(reserve(&store, &key_in("a", k)).await, Reservation::Reserved);
        }
        assert_eq!(reserve(&store, &key_in("b", "b1")).await, Reservation::Reserved);
        // Two environments: "a" holds its fair share of 2 of 4.
        assert_eq!(
            reserve(&store, &key_in("a", "a3")).await,
            Reservation::Full { retry_after: None }
        );
        past_the_lease().await;
        assert_eq!(reserve(&store, &key_in("a", "a3")).await, Reservation::Reserved);
    }

    /// The reservation order's length, checked against the keys held.
    fn assert_order_bounded(store: &InMemoryIdempotencyStore) {
        let keys = store.inner.lock().unwrap();
        assert!(
            keys.order.len() <= 2 * keys.map.len() + 65,
            "{} order records for {} keys",
            keys.order.len(),
            keys.map.len()
        );
    }

    #[tokio::test]
    async fn stale_order_records_never_pile_up_whatever_the_order_of_calls() {
        let store = InMemoryIdempotencyStore::new().with_ttl(Duration::ZERO);
        reserve(&store, &key("held")).await;
        let reserve_and_release = async |k: &str| {
            reserve(&store, &key(k)).await;
            assert_order_bounded(&store);
            store.release(&key(k)).await.unwrap();
            assert_order_bounded(&store);
        };
        for i in 0..64 {
            reserve_and_release(&format!("k{i}")).await;
        }
        // Just short of compacting, a release, then a reservation of the
        // expired "held" that removes it first: the records pass the
        // bound in a step of two.
        reserve_and_release("z").await;
        reserve(&store, &key("held")).await;
        assert_order_bounded(&store);
        for i in 64..300 {
            reserve_and_release(&format!("k{i}")).await;
        }
        // A burst of 100 reservations held at once, all released: the
        // records of every one are stale at once.
        let burst: Vec<_> = (0..100).map(|i| key(&format!("burst{i}"))).collect();
        for k in &burst {
            reserve(&store, k).await;
        }
        for k in &burst {
            store.release(k).await.unwrap();
        }
        for i in 300..400 {
            reserve_and_release(&format!("k{i}")).await;
        }
    }

    #[tokio::test]
    async fn compacting_the_order_keeps_the_held_keys_reclaimable() {
        let store = InMemoryIdempotencyStore::new().with_capacity(3).with_lease(LEASE);
        for k in ["a", "b"] {
            assert_eq!(reserve(&store, &key(k)).await, Reservation::Reserved);
        }
        // Enough released keys for the order to be compacted.
        for i in 0..100 {
            let k = key(&format!("k{i}"));
            assert_eq!(reserve(&store, &k).await, Reservation::Reserved);
            store.release(&k).await.unwrap();
        }
        assert!(store.inner.lock().unwrap().order.len() < 100, "compacted");
        past_the_lease().await;
        // "a" and "b", abandoned, make room once the store is full.
        assert_eq!(reserve(&store, &key("x")).await, Reservation::Reserved);
        assert_eq!(reserve(&store, &key("y")).await, Reservation::Reserved);
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn one_environment_cannot_crowd_out_another() {
        let store = InMemoryIdempotencyStore::new().with_capacity(4);
        // Alone, an environment may fill the whole store.
        for i in 0..4 {
            let k = key_in("noisy", &format!("n{i}"));
            assert_eq!(reserve(&store, &k).await, Reservation::Reserved);
        }
        // The store is full; a quiet environment is refused, but the noisy
        // one's keys are all kept.
        assert!(matches!(
            reserve(&store, &key_in("quiet", "q0")).await,
            Reservation::Full { .. }
        ));
        for i in 0..4 {
            assert!(matches!(
                store
                    .reserve(&key_in("noisy", &format!("n{i}")), fp())
                    .await
                    .unwrap(),
                Reservation::InProgress { .. }
            ));
        }
        // Two environments: each may hold half.
        let store = InMemoryIdempotencyStore::new().with_capacity(4);
        assert_eq!(
            reserve(&store, &key_in("quiet", "q0")).await,
            Reservation::Reserved
        );
        for i in 0..2 {
            let k = key_in("noisy", &format!("n{i}"));
            assert_eq!(reserve(&store, &k).await, Reservation::Reserved);
        }
        assert_eq!(
            reserve(&store, &key_in("noisy", "n2")).await,
            Reservation::Full { retry_after: None },
            "the noisy environment holds its half"
        );
        assert_eq!(
            reserve(&store, &key_in("quiet", "q1")).await,
            Reservation::Reserved,
            "the quiet one still gets its half"
        );
    }

    #[tokio::test]
    async fn a_fixed_environment_limit_replaces_the_fair_share() {
        let store = InMemoryIdempotencyStore::new()
            .with_capacity(10)
            .with_environment_limit(2);
        for i in 0..2 {
            let k = key_in("a", &format!("k{i}"));
            assert_eq!(reserve(&store, &k).await, Reservation::Reserved);
        }
        assert_eq!(
            reserve(&store, &key_in("a", "k2")).await,
            Reservation::Full { retry_after: None }
        );
        assert_eq!(reserve(&store, &key_in("b", "k0")).await, Reservation::Reserved);
    }

    #[tokio::test]
    async fn release_does_not_forget_a_completed_key() {
        let store = InMemoryIdempotencyStore::new();
        reserve(&store, &key("a")).await;
        let outcome = crate::outcome::sample_outcome(InstanceId::new("1"));
        store.complete(&key("a"), &outcome).await.unwrap();
        store.release(&key("a")).await.unwrap();
        assert!(matches!(
            reserve(&store, &key("a")).await,
            Reservation::Completed { .. }
        ));
    }
}
