//! The inbox port: starts that passed every check, kept to be started
//! later, so that no delivery is lost while the engine is away.
//!
//! A kept start is pinned to what it was checked against: its
//! [`StartCommand`] holds the deployment, its version and the validated
//! variables. A dispatcher claims due starts with a lease, calls the engine,
//! and completes, reschedules or buries each (see
//! [`Dispatcher`](crate::Dispatcher)).
//!
//! # Implementing an inbox
//!
//! [`InMemoryInbox`] is the reference; `PostgresStore` keeps its starts in
//! the same database as its idempotency keys. Run
//! [`testing::check_inbox`](crate::testing::check_inbox) against your own.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::engine::StartCommand;
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::idempotency::IdempotencyKey;
use crate::port_error::StoreError;
use crate::source::SourceId;

mod memory;

pub use memory::InMemoryInbox;

/// What a kept start is now.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Waiting to be started (a dispatcher may hold it, leased, right now).
    Queued,
    /// The engine started it.
    Started,
    /// It will not start by itself: the engine refused it, or it grew older
    /// than the dispatcher's maximum age. An operator may retry it.
    Dead,
    /// An operator discarded it.
    Discarded,
}

impl DeliveryStatus {
    /// `queued`, `started`, `dead` or `discarded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Started => "started",
            Self::Dead => "dead",
            Self::Discarded => "discarded",
        }
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Queued, Self::Started, Self::Dead, Self::Discarded]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(UnknownStatus)
    }
}

/// A status that is not `queued`, `started`, `dead` or `discarded`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("a delivery's status is `queued`, `started`, `dead` or `discarded`")]
pub struct UnknownStatus;

/// A start that passed every check, to be kept.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct KeptStart {
    /// Its id (its `deliveryId`), given when it is kept.
    pub id: DeliveryId,
    /// What the engine gets: the deployment and version it was checked
    /// against, the variables, and a key (the caller's, or the delivery id)
    /// by which an engine recognises a repeated dispatch.
    pub command: StartCommand,
    /// The caller's idempotency key, in its scope, when the caller sent one:
    /// a repeated call finds the kept start by it.
    pub caller_key: Option<IdempotencyKey>,
    /// When it was kept.
    pub kept_at: SystemTime,
    /// The webhook source that authenticated it, if one did.
    pub source: Option<SourceId>,
}

impl KeptStart {
    /// `command`, kept now as `id`.
    pub fn new(id: DeliveryId, command: StartCommand, caller_key: Option<IdempotencyKey>) -> Self {
        Self {
            id,
            command,
            caller_key,
            kept_at: SystemTime::now(),
            source: None,
        }
    }

    /// The same start, authenticated by `source`.
    pub fn with_source(mut self, source: SourceId) -> Self {
        self.source = Some(source);
        self
    }
}

/// What [`Inbox::keep`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Keeping {
    /// The start is kept, due at once.
    Kept,
    /// Its environment already holds the most kept starts it may: nothing
    /// was kept (`503 inbox_full`).
    Full,
}

/// A kept start a dispatcher claimed: it holds it until its lease ends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Claimed {
    /// The start.
    pub start: KeptStart,
    /// How many dispatches were tried before this one.
    pub attempts: u32,
    /// This claim's lease: [`Inbox::complete`], [`reschedule`](Inbox::reschedule)
    /// and [`bury`](Inbox::bury) act only while it is the start's newest.
    pub lease: u64,
}

/// One kept start as an operator sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// What it is now.
    pub status: DeliveryStatus,
    /// The environment it starts in.
    pub environment: EnvironmentId,
    /// The process it starts.
    pub process: ProcessUuid,
    /// The version it starts.
    pub version: u32,
    /// The caller's idempotency key, when it sent one.
    pub caller_key: Option<String>,
    /// The webhook source that authenticated it, if one did.
    pub source: Option<SourceId>,
    /// When it was kept.
    pub kept_at: SystemTime,
    /// When it is due (for a queued start).
    pub due_at: SystemTime,
    /// The dispatches tried.
    pub attempts: u32,
    /// The last failure (the engine's words, or why it is dead): for the
    /// operator, never shown to a sender.
    pub last_error: Option<String>,
    /// The instance, once started.
    pub instance: Option<InstanceId>,
    /// What the engine gets (the payload, among the rest).
    pub command: StartCommand,
}

/// How many starts an inbox holds, for the metrics.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct InboxCounts {
    /// Starts queued (leased ones too).
    pub queued: u64,
    /// Dead starts.
    pub dead: u64,
    /// When the oldest queued start was kept.
    pub oldest_queued: Option<SystemTime>,
}

/// Which kept starts [`Inbox::list`] answers, newest first.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct InboxQuery {
    /// Only starts with this status.
    pub status: Option<DeliveryStatus>,
    /// Only starts in this environment.
    pub environment: Option<EnvironmentId>,
    /// Only starts of this webhook source.
    pub source: Option<SourceId>,
    /// At most this many (all when `None`).
    pub limit: Option<usize>,
}

impl InboxQuery {
    /// Only starts with `status`.
    pub fn with_status(mut self, status: DeliveryStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only starts in `environment`.
    pub fn with_environment(mut self, environment: EnvironmentId) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Only starts of the webhook source `source`.
    pub fn with_source(mut self, source: SourceId) -> Self {
        self.source = Some(source);
        self
    }

    /// At most `limit` starts.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Where a starter keeps the starts that passed every check until they are
/// started.
///
/// # Contract
///
/// - [`keep`](Self::keep) keeps a start due at once, or answers
///   [`Keeping::Full`] (keeping nothing) when its environment already holds
///   `limit` queued or dead starts.
/// - [`claim`](Self::claim) leases up to `max` queued starts due at or
///   before `now` and not leased (or whose lease ended), oldest due first,
///   each until `now + lease`; a start is claimed by one caller at a time,
///   and each claim gets a new lease number and counts one attempt.
/// - [`complete`](Self::complete), [`reschedule`](Self::reschedule) and
///   [`bury`](Self::bury) act only on a start still queued whose newest
///   lease is the claim's (`Ok(false)` otherwise: another dispatcher took it
///   over). Completed, it is `Started` with its instance; rescheduled, due
///   at `at` with the error kept; buried, `Dead` with the reason.
/// - [`retry`](Self::retry) makes a dead start queued and due at once;
///   [`discard`](Self::discard) makes a queued or dead one `Discarded`; each
///   answers `Ok(false)` for a start in another status or unknown.
/// - [`counts`](Self::counts) answers how many starts are queued and dead
///   (in every environment), and when the oldest queued one was kept.
/// - [`get`](Self::get), [`list`](Self::list) and
///   [`find_by_key`](Self::find_by_key) answer what is kept (absence is
///   `Ok(None)` or an empty list); `find_by_key` answers the newest start
///   kept with that caller key.
/// - An error means the inbox could not answer; nothing changed.
///
/// # Wrappers
///
/// The trait has no provided methods: a wrapper forwards each.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Keeps `start`, unless its environment holds `limit` kept starts.
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError>;

    /// Leases up to `max` due starts until `now + lease`.
    async fn claim(&self, now: SystemTime, lease: Duration, max: usize) -> Result<Vec<Claimed>, StoreError>;

    /// Records that the engine started `claimed` as `instance`.
    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError>;

    /// Makes `claimed` due again at `at`, keeping `error`.
    async fn reschedule(&self, claimed: &Claimed, at: SystemTime, error: &str) -> Result<bool, StoreError>;

    /// Makes `claimed` dead, keeping `reason`.
    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError>;

    /// A dead start, queued again and due at once.
    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError>;

    /// A queued or dead start, discarded.
    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError>;

    /// The start kept as `id`.
    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// The kept starts `query` asks for, newest first.
    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError>;

    /// The newest start kept with the caller key `key`.
    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError>;

    /// How many starts are queued and dead.
    async fn counts(&self) -> Result<InboxCounts, StoreError>;
}

#[async_trait]
impl<I: Inbox + ?Sized> Inbox for Arc<I> {
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError> {
        (**self).keep(start, limit).await
    }

    async fn claim(&self, now: SystemTime, lease: Duration, max: usize) -> Result<Vec<Claimed>, StoreError> {
        (**self).claim(now, lease, max).await
    }

    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError> {
        (**self).complete(claimed, instance).await
    }

    async fn reschedule(&self, claimed: &Claimed, at: SystemTime, error: &str) -> Result<bool, StoreError> {
        (**self).reschedule(claimed, at, error).await
    }

    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError> {
        (**self).bury(claimed, reason).await
    }

    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        (**self).retry(id).await
    }

    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        (**self).discard(id).await
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        (**self).get(id).await
    }

    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError> {
        (**self).list(query).await
    }

    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError> {
        (**self).find_by_key(key).await
    }

    async fn counts(&self) -> Result<InboxCounts, StoreError> {
        (**self).counts().await
    }
}
