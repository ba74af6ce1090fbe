//! The idempotency port: a store that remembers, per idempotency key, that
//! a start is running or what it started, so that a repeated delivery
//! replays the first outcome instead of starting another instance.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::id::EnvironmentId;
use crate::idempotency::{IdempotencyKey, PayloadFingerprint};
use crate::outcome::StartOutcome;
use crate::store::StoreError;

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
/// - `take_over` is `reserve`, except that a reservation in progress for
///   the same fingerprint, made (or last taken over) at least `held_for`
///   ago, is taken too: atomically, so that of concurrent takers of one
///   reservation at most one gets it while it is younger than `held_for`.
///   Its default is `reserve` (no reservation is ever taken over: the
///   lease holds).
/// - An `Err` means the store could not answer; the start is then refused
///   with `503 store_unavailable` and the engine is not called.
///
/// # Wrappers
///
/// A store that wraps another (a cache, metrics, a tracing layer) forwards
/// [`take_over`](Self::take_over) and [`ready`](Self::ready) as well as the
/// required methods: the defaults would hide the inner store's (a wrapper
/// that drops `take_over` silently loses crash takeover). `Arc<S>` does.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Reserves `key` for a start of a payload with `fingerprint`, or reports
    /// who has it.
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError>;

    /// Reserves `key` as [`reserve`](Self::reserve) does, or takes over its
    /// reservation when that is in progress for a payload with
    /// `fingerprint` and was made (or last taken over) at least `held_for`
    /// ago: the start that reserved it was cut off (its replica died) or
    /// its engine deduplicates. The taker then holds the key (its
    /// reservation's age starts again) and completes or releases it.
    ///
    /// The starter calls it, after `reserve` found the key in progress, for
    /// an engine whose [`Recovery`](crate::Recovery) allows it. The default
    /// is `reserve`: a store that does not implement it keeps the lease.
    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        let _ = held_for;
        self.reserve(key, fingerprint).await
    }

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

#[async_trait]
impl<T: IdempotencyStore + ?Sized> IdempotencyStore for std::sync::Arc<T> {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        (**self).reserve(key, fingerprint).await
    }

    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        (**self).take_over(key, fingerprint, held_for).await
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        (**self).complete(key, outcome).await
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        (**self).release(key).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}

/// The default retention of an idempotency key: 24 hours.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a start may hold an idempotency key in
/// [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) before its reservation counts as abandoned:
/// 5 minutes.
pub const DEFAULT_IDEMPOTENCY_LEASE: Duration = Duration::from_secs(5 * 60);

/// The default bound on the keys [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore) holds:
/// 500,000 (about 257 MiB when full, at 539 bytes a completed key measured
/// by `cargo bench --bench memory`): a server answering one keyed start a
/// second holds 86,400 at most with the 24-hour retention, and five and a
/// half a second for a whole day fit.
pub(crate) const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 500_000;

/// An outcome as a store keeps it: `{"instanceId", "processUuid",
/// "version", "environment", "deploymentId"}`, and `"businessKey"` when the
/// engine gave the instance one (a later wait for a replay asks for it).
#[cfg_attr(
    not(any(feature = "postgres", feature = "sqlite", feature = "redis")),
    allow(dead_code)
)]
pub(crate) fn stored_outcome(outcome: &StartOutcome) -> serde_json::Value {
    let mut stored = serde_json::json!({
        "instanceId": outcome.instance_id().as_str(),
        "processUuid": outcome.process().to_string(),
        "version": outcome.version(),
        "environment": outcome.environment().as_str(),
        "deploymentId": outcome.deployment_id().to_string(),
    });
    if let Some(key) = outcome.instance().business_key() {
        stored["businessKey"] = Value::from(key);
    }
    stored
}

/// An outcome read back from [`stored_outcome`]'s form.
#[cfg_attr(
    not(any(feature = "postgres", feature = "sqlite", feature = "redis")),
    allow(dead_code)
)]
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
    )
    .with_business_key(stored.get("businessKey").and_then(Value::as_str)))
}
