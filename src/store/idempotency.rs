//! Idempotent starts: a store that remembers, per idempotency key, that a
//! start is running or what it started, so that a repeated delivery replays
//! the first outcome instead of starting another instance.

use std::fmt;
use std::time::Duration;

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

    /// Whether the store can serve now: a cheap round trip for a store
    /// behind a network (PostgreSQL's `SELECT 1`, Redis's `PING`), used by
    /// [`WebhookStarter::ready`](crate::WebhookStarter::ready). The default
    /// says yes, which is right for a store in the host's memory.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The default retention of an idempotency key: 24 hours.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a start may hold an idempotency key in
/// [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) before its reservation counts as abandoned:
/// 5 minutes.
pub const DEFAULT_IDEMPOTENCY_LEASE: Duration = Duration::from_secs(5 * 60);

/// The default bound on the keys [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) holds.
pub const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 100_000;

/// An outcome as a store keeps it: `{"instanceId", "processUuid",
/// "version", "environment", "deploymentId"}`.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn stored_outcome(outcome: &StartOutcome) -> serde_json::Value {
    serde_json::json!({
        "instanceId": outcome.instance_id().as_str(),
        "processUuid": outcome.process().to_string(),
        "version": outcome.version(),
        "environment": outcome.environment().as_str(),
        "deploymentId": outcome.deployment_id().to_string(),
    })
}

/// An outcome read back from [`stored_outcome`]'s form.
#[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
pub(crate) fn outcome_from_stored(stored: &Value) -> Result<StartOutcome, StoreError> {
    let bad = || StoreError::new("a stored outcome could not be read");
    let text = |name: &str| stored.get(name).and_then(Value::as_str).ok_or_else(bad);
    Ok(StartOutcome::from_parts(
        crate::id::InstanceId::new(text("instanceId")?),
        text("processUuid")?.parse().map_err(|_| bad())?,
        stored
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(bad)?,
        EnvironmentId::new(text("environment")?),
        text("deploymentId")?.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_its_scope_and_text() {
        let process = ProcessUuid::from(uuid::Uuid::from_u128(42));
        let key = IdempotencyKey::new(EnvironmentId::new("production"), process, "order-123456");
        assert_eq!(key.environment().as_str(), "production");
        assert_eq!(key.process(), &process);
        assert_eq!(key.key(), "order-123456");
    }

    #[test]
    fn a_fingerprint_shows_only_its_first_six_bytes() {
        let fingerprint = PayloadFingerprint::from_bytes(std::array::from_fn(|i| (i * 17) as u8));
        assert_eq!(format!("{fingerprint:?}"), "PayloadFingerprint(001122334455…)");
        assert_eq!(fingerprint.as_bytes()[31], (31 * 17) as u8);
    }

    #[test]
    fn the_fingerprint_ignores_key_order_at_every_depth() {
        // Built in two orders; with serde_json's `preserve_order` the maps
        // keep those orders, without it both are sorted.
        let mut inner_ab = Map::new();
        inner_ab.insert("a".into(), Value::from(1));
        inner_ab.insert("b".into(), Value::from(vec![Value::from(2), Value::from(3)]));
        let mut inner_ba = Map::new();
        inner_ba.insert("b".into(), Value::from(vec![Value::from(2), Value::from(3)]));
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
        hasher.update(br#"{"y":"text","z":{"a":1,"b":[2,3]}}"#);
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(PayloadFingerprint::of(&x).as_bytes(), &expected);
        // And another payload has another fingerprint.
        let mut other = x.clone();
        other.insert("y".into(), Value::from("other"));
        assert_ne!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&other));
        // Items are separated: [2,3] is not [23].
        let mut joined = x.clone();
        let mut inner = inner_ab;
        inner.insert("b".into(), Value::from(vec![Value::from(23)]));
        joined.insert("z".into(), Value::Object(inner));
        assert_ne!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&joined));
    }
}
