//! Idempotent starts: a store that remembers, per idempotency key, that a
//! start is running or what it started, so that a repeated delivery replays
//! the first outcome instead of starting another instance.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::id::{EnvironmentId, ProcessUuid};
use crate::store::StoreError;
use crate::webhook::StartOutcome;

/// An idempotency key in its scope: the same key sent to another process or
/// in another environment is another key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IdempotencyKey {
    environment: EnvironmentId,
    process: ProcessUuid,
    key: String,
}

impl IdempotencyKey {
    /// The key `key` for starts of `process` in `environment`.
    pub fn new(environment: EnvironmentId, process: ProcessUuid, key: impl Into<String>) -> Self {
        Self {
            environment,
            process,
            key: key.into(),
        }
    }

    /// The environment.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The process.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The caller's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The SHA-256 of a payload's canonical JSON (keys sorted), which tells a
/// repeated call with the same payload from a reuse of the key with another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadFingerprint([u8; 32]);

impl PayloadFingerprint {
    /// The fingerprint of `payload`.
    ///
    /// ```
    /// use process_webhook::PayloadFingerprint;
    /// use serde_json::json;
    ///
    /// let a = json!({"a": 1, "b": 2});
    /// let b: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
    /// assert_eq!(
    ///     PayloadFingerprint::of(a.as_object().unwrap()),
    ///     PayloadFingerprint::of(b.as_object().unwrap()),
    /// );
    /// ```
    pub fn of(payload: &Map<String, Value>) -> Self {
        // serde_json's `Map` keeps its keys sorted (without the
        // `preserve_order` feature), so this text is canonical.
        let mut hasher = Sha256::new();
        let _ = serde_json::to_writer(HashWriter(&mut hasher), payload);
        Self(hasher.finalize().into())
    }

    /// A fingerprint from its bytes (as a host stored them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The fingerprint's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PayloadFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadFingerprint(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`IdempotencyStore::reserve`] found.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Reservation {
    /// The key was free and is now reserved for the caller, who must later
    /// [`complete`](IdempotencyStore::complete) or
    /// [`release`](IdempotencyStore::release) it.
    Reserved,
    /// Another start holds the key and has not finished.
    InProgress {
        /// The fingerprint of that start's payload.
        fingerprint: PayloadFingerprint,
    },
    /// A start with this key finished.
    Completed {
        /// The fingerprint of that start's payload.
        fingerprint: PayloadFingerprint,
        /// What it started.
        outcome: StartOutcome,
    },
}

/// Where idempotency keys are remembered.
///
/// # Contract
///
/// - `reserve` is atomic: of any number of concurrent calls for one key, at
///   most one gets [`Reservation::Reserved`] until that reservation is
///   released or expires.
/// - `complete` records the outcome of a reserved key; later `reserve`s get
///   [`Reservation::Completed`] until the retention time ends.
/// - `release` frees a reserved key whose start failed, so that a retry can
///   start; it does nothing to a completed key.
/// - A reservation that is neither completed nor released (the start's
///   future was dropped) must not hold the key for ever: free it after a
///   lease longer than the engine's timeout.
/// - An `Err` means the store could not answer; the start is then refused
///   with `503 store_unavailable` and the engine is not called.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Reserves `key` for a start of a payload with `fingerprint`, or reports
    /// who has it.
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError>;

    /// Records the outcome of the start that reserved `key`.
    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError>;

    /// Frees `key`, reserved by a start that failed.
    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError>;
}

/// The default retention of an idempotency key: 24 hours.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a start may hold an idempotency key in
/// [`InMemoryIdempotencyStore`] before its reservation counts as abandoned:
/// 5 minutes.
pub const DEFAULT_IDEMPOTENCY_LEASE: Duration = Duration::from_secs(5 * 60);

/// The default bound on the keys [`InMemoryIdempotencyStore`] holds.
pub const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 100_000;

/// Idempotency keys in memory, for tests and single-process hosts.
///
/// Keys are kept for a retention time (24 h by default,
/// [`with_ttl`](Self::with_ttl)) measured from the reservation, and at most
/// [`capacity`](Self::with_capacity) of them (100,000 by default). When it is
/// full, the oldest keys that are expired, abandoned or completed make room,
/// in reservation order, in amortized constant time; if every key is a start
/// still in progress, `reserve` fails with a [`StoreError`] (`503`). Clones
/// share state.
///
/// A reservation whose start never finishes (its future was dropped, say
/// because the caller hung up and the host cancelled the request) is
/// abandoned after a lease of 5 minutes ([`with_lease`](Self::with_lease)):
/// the next call with that key reserves it again. Keep the lease longer than
/// the engine's timeout.
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
}

/// The keys, and the order they were reserved in, oldest first, so that
/// making room does not scan the whole map. An order record whose key was
/// since removed or reserved anew (its `created` differs) is stale and
/// skipped; the queue is compacted when stale records outnumber live ones.
#[derive(Debug, Default)]
struct Keys {
    map: HashMap<IdempotencyKey, Entry>,
    order: VecDeque<(Instant, IdempotencyKey)>,
}

#[derive(Debug)]
struct Entry {
    created: Instant,
    fingerprint: PayloadFingerprint,
    outcome: Option<StartOutcome>,
}

impl Default for InMemoryIdempotencyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryIdempotencyStore {
    /// An empty store with the default retention and capacity.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            ttl: DEFAULT_IDEMPOTENCY_TTL,
            lease: DEFAULT_IDEMPOTENCY_LEASE,
            capacity: DEFAULT_IDEMPOTENCY_CAPACITY,
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

    /// The number of keys held (expired ones included until dropped).
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

    /// Whether an entry no longer holds its key at `now`.
    fn is_dead(&self, entry: &Entry, now: Instant) -> bool {
        let age = now.duration_since(entry.created);
        age >= self.ttl || (entry.outcome.is_none() && age >= self.lease)
    }

    /// Makes room for one more key: drops dead keys and then the oldest
    /// completed one, oldest first; false when every key is a start still in
    /// progress. Amortized O(1): each order record is looked at once, except
    /// the in-progress ones at the front, as many as starts run at once.
    fn make_room(&self, keys: &mut Keys, now: Instant) -> bool {
        let mut kept = Vec::new();
        let mut room = keys.map.len() < self.capacity;
        while !room {
            let Some((created, key)) = keys.order.pop_front() else {
                break;
            };
            let Some(entry) = keys.map.get(&key).filter(|e| e.created == created) else {
                continue; // stale record
            };
            if self.is_dead(entry, now) || entry.outcome.is_some() {
                keys.map.remove(&key);
                room = true;
            } else {
                kept.push((created, key));
            }
        }
        for record in kept.into_iter().rev() {
            keys.order.push_front(record);
        }
        room
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        let now = Instant::now();
        let mut keys = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = &mut *keys;
        if let Some(entry) = keys.map.get(key) {
            if !self.is_dead(entry, now) {
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
            keys.map.remove(key);
        }
        if !self.make_room(keys, now) {
            return Err(StoreError::new("idempotency store is full of starts in progress"));
        }
        if keys.order.len() > 2 * keys.map.len() + 64 {
            let map = &keys.map;
            keys.order
                .retain(|(created, k)| map.get(k).is_some_and(|e| e.created == *created));
        }
        keys.order.push_back((now, key.clone()));
        keys.map.insert(
            key.clone(),
            Entry {
                created: now,
                fingerprint,
                outcome: None,
            },
        );
        Ok(Reservation::Reserved)
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
            keys.map.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceId, ProcessUuid};

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

    #[tokio::test]
    async fn an_abandoned_reservation_is_free_after_the_lease_but_a_completed_key_is_kept() {
        let store = InMemoryIdempotencyStore::new().with_lease(Duration::ZERO);
        assert_eq!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Reserved
        );
        let outcome = crate::webhook::sample_outcome(InstanceId::new("1"));
        store.complete(&key("a"), &outcome).await.unwrap();
        assert!(matches!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Completed { .. }
        ));
    }

    #[tokio::test]
    async fn expired_keys_are_forgotten() {
        let store = InMemoryIdempotencyStore::new().with_ttl(Duration::ZERO);
        assert_eq!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Reserved
        );
        assert_eq!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Reserved
        );
    }

    #[tokio::test]
    async fn a_full_store_drops_the_oldest_completed_key_and_never_one_in_progress() {
        let store = InMemoryIdempotencyStore::new().with_capacity(2);
        store.reserve(&key("a"), fp()).await.unwrap();
        store.reserve(&key("b"), fp()).await.unwrap();
        assert!(
            store.reserve(&key("c"), fp()).await.is_err(),
            "both keys are in progress"
        );
        let outcome = crate::webhook::sample_outcome(InstanceId::new("1"));
        store.complete(&key("a"), &outcome).await.unwrap();
        assert_eq!(
            store.reserve(&key("c"), fp()).await.unwrap(),
            Reservation::Reserved
        );
        assert_eq!(store.len(), 2);
        store.complete(&key("c"), &outcome).await.unwrap();
        // `a` was dropped to make room for `c`: it is free again, not a replay.
        assert_eq!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Reserved
        );
    }

    #[tokio::test]
    async fn a_full_store_keeps_its_bound_under_churn_and_frees_the_oldest_first() {
        let store = InMemoryIdempotencyStore::new().with_capacity(3);
        let outcome = crate::webhook::sample_outcome(InstanceId::new("1"));
        for i in 0..1_000 {
            let k = key(&format!("k{i}"));
            assert_eq!(store.reserve(&k, fp()).await.unwrap(), Reservation::Reserved);
            if i % 2 == 0 {
                store.complete(&k, &outcome).await.unwrap();
            } else {
                store.release(&k).await.unwrap();
            }
            assert!(store.len() <= 3);
        }
        {
            let keys = store.inner.lock().unwrap();
            assert!(
                keys.order.len() <= 2 * keys.map.len() + 65,
                "stale records are compacted"
            );
        }
        // The newest completed keys are still remembered; the oldest are not.
        assert!(matches!(
            store.reserve(&key("k998"), fp()).await.unwrap(),
            Reservation::Completed { .. }
        ));
        assert_eq!(
            store.reserve(&key("k0"), fp()).await.unwrap(),
            Reservation::Reserved
        );
    }

    #[tokio::test]
    async fn release_does_not_forget_a_completed_key() {
        let store = InMemoryIdempotencyStore::new();
        store.reserve(&key("a"), fp()).await.unwrap();
        let outcome = crate::webhook::sample_outcome(InstanceId::new("1"));
        store.complete(&key("a"), &outcome).await.unwrap();
        store.release(&key("a")).await.unwrap();
        assert!(matches!(
            store.reserve(&key("a"), fp()).await.unwrap(),
            Reservation::Completed { .. }
        ));
    }
}
