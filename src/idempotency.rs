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
        let mut hasher = Sha256::new();
        write_canonical_object(&mut HashWriter(&mut hasher), payload);
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

/// Writes `object` as JSON with its keys sorted at every depth, whatever
/// order the map keeps them in (serde_json's `preserve_order` feature, which
/// any crate in a host's build may turn on, keeps insertion order).
fn write_canonical_object(out: &mut HashWriter<'_>, object: &Map<String, Value>) {
    out.0.update(b"{");
    // Without `preserve_order` the keys are sorted already: no allocation.
    if object.keys().is_sorted() {
        write_members(out, object.iter());
    } else {
        let mut members: Vec<_> = object.iter().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        write_members(out, members.into_iter());
    }
    out.0.update(b"}");
}

fn write_members<'a>(out: &mut HashWriter<'_>, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.0.update(b",");
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.0.update(b":");
        write_canonical(out, value);
    }
}

fn write_canonical(out: &mut HashWriter<'_>, value: &Value) {
    match value {
        Value::Object(object) => write_canonical_object(out, object),
        Value::Array(items) => {
            out.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_canonical(out, item);
            }
            out.0.update(b"]");
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
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
    /// The store has no room for another key before some expire (and, for
    /// a store that shares its room between environments, this key's
    /// environment holds its share): the start is refused with
    /// `503 idempotency_store_full`, and nothing is started.
    Full {
        /// When room is expected, if the store knows.
        retry_after: Option<Duration>,
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
/// [`with_ttl`](Self::with_ttl)) measured from the reservation, and never
/// forgotten before it ends. The store holds at most
/// [`capacity`](Self::with_capacity) keys (100,000 by default): when it is
/// full, expired and abandoned keys are reclaimed first (oldest first, in
/// amortized constant time), and if none is, `reserve` answers
/// [`Reservation::Full`] with the time until the oldest key expires (the
/// start is refused with `503 idempotency_store_full`).
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
}

#[derive(Debug)]
struct Entry {
    created: Instant,
    fingerprint: PayloadFingerprint,
    outcome: Option<StartOutcome>,
}

impl Keys {
    fn insert(&mut self, key: IdempotencyKey, entry: Entry) {
        *self.per_environment.entry(key.environment.clone()).or_insert(0) += 1;
        self.order.push_back((entry.created, key.clone()));
        self.map.insert(key, entry);
    }

    fn remove(&mut self, key: &IdempotencyKey) {
        if self.map.remove(key).is_some() {
            if let Some(count) = self.per_environment.get_mut(&key.environment) {
                *count -= 1;
                if *count == 0 {
                    self.per_environment.remove(&key.environment);
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
            keys.remove(key);
        }
        if keys.map.len() >= self.capacity
            || keys.held_by(&key.environment) >= self.share(keys, &key.environment)
        {
            self.reclaim(keys, now);
        }
        if keys.map.len() >= self.capacity {
            return Ok(Reservation::Full {
                retry_after: self.room_after(keys, now),
            });
        }
        if keys.held_by(&key.environment) >= self.share(keys, &key.environment) {
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
            keys.remove(key);
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
        let outcome = crate::webhook::sample_outcome(InstanceId::new("1"));
        for k in ["a", "b"] {
            assert_eq!(store.reserve(&key(k), fp()).await.unwrap(), Reservation::Reserved);
            store.complete(&key(k), &outcome).await.unwrap();
        }
        let Reservation::Full {
            retry_after: Some(after),
        } = store.reserve(&key("c"), fp()).await.unwrap()
        else {
            panic!("a full store refuses a new key");
        };
        assert!(after > Duration::from_secs(3590) && after <= Duration::from_secs(3600));
        // Both earlier keys are still replayed.
        for k in ["a", "b"] {
            assert!(matches!(
                store.reserve(&key(k), fp()).await.unwrap(),
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
    async fn one_environment_cannot_crowd_out_another() {
        let store = InMemoryIdempotencyStore::new().with_capacity(4);
        // Alone, an environment may fill the whole store.
        for i in 0..4 {
            let k = key_in("noisy", &format!("n{i}"));
            assert_eq!(store.reserve(&k, fp()).await.unwrap(), Reservation::Reserved);
        }
        // The store is full; a quiet environment is refused, but the noisy
        // one's keys are all kept.
        assert!(matches!(
            store.reserve(&key_in("quiet", "q0"), fp()).await.unwrap(),
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
            store.reserve(&key_in("quiet", "q0"), fp()).await.unwrap(),
            Reservation::Reserved
        );
        for i in 0..2 {
            let k = key_in("noisy", &format!("n{i}"));
            assert_eq!(store.reserve(&k, fp()).await.unwrap(), Reservation::Reserved);
        }
        assert_eq!(
            store.reserve(&key_in("noisy", "n2"), fp()).await.unwrap(),
            Reservation::Full { retry_after: None },
            "the noisy environment holds its half"
        );
        assert_eq!(
            store.reserve(&key_in("quiet", "q1"), fp()).await.unwrap(),
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
            assert_eq!(store.reserve(&k, fp()).await.unwrap(), Reservation::Reserved);
        }
        assert_eq!(
            store.reserve(&key_in("a", "k2"), fp()).await.unwrap(),
            Reservation::Full { retry_after: None }
        );
        assert_eq!(
            store.reserve(&key_in("b", "k0"), fp()).await.unwrap(),
            Reservation::Reserved
        );
    }

    #[test]
    fn the_fingerprint_ignores_key_order_at_every_depth() {
        // Built in two orders; with serde_json's `preserve_order` the maps
        // keep those orders, without it both are sorted.
        let mut inner_ab = Map::new();
        inner_ab.insert("a".into(), Value::from(1));
        inner_ab.insert("b".into(), Value::from(vec![Value::from(2)]));
        let mut inner_ba = Map::new();
        inner_ba.insert("b".into(), Value::from(vec![Value::from(2)]));
        inner_ba.insert("a".into(), Value::from(1));
        let mut x = Map::new();
        x.insert("z".into(), Value::Object(inner_ab.clone()));
        x.insert("y".into(), Value::from("text"));
        let mut y = Map::new();
        y.insert("y".into(), Value::from("text"));
        y.insert("z".into(), Value::Object(inner_ba));
        assert_eq!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&y));
        // The canonical text is the sorted JSON.
        let mut hasher = Sha256::new();
        hasher.update(br#"{"y":"text","z":{"a":1,"b":[2]}}"#);
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(PayloadFingerprint::of(&x).as_bytes(), &expected);
        // And another payload has another fingerprint.
        let mut other = x.clone();
        other.insert("y".into(), Value::from("other"));
        assert_ne!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&other));
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
