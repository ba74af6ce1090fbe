//! The delivery log port: every authenticated call and what became of it,
//! for the operator (the admin API and the console read it).
//!
//! A starter with a log (`WebhookStarter::with_delivery_log`, feature
//! `delivery-log`) hands it one [`LoggedDelivery`] per call that
//! passed authentication, and the dispatcher one per dispatch of a kept
//! start; records of the same id merge (see [`DeliveryLog`]'s contract).
//! Writing never slows or fails a start: records go through a bounded
//! channel (`LogWriter`) and are written in batches.
//!
//! # Implementing a delivery log
//!
//! [`InMemoryDeliveryLog`] is the reference; `PostgresStore` keeps the log
//! in the same database as its inbox. Run `testing::check_delivery_log`
//! (feature `testing`) against your own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::port_error::StoreError;
use crate::source::SourceId;

mod memory;
mod redact;
#[cfg(feature = "delivery-log")]
mod writer;

pub use memory::InMemoryDeliveryLog;
pub(crate) use redact::redacted_payload;
pub use redact::{LoggedHeaders, is_credential_field, is_credential_header};
#[cfg(feature = "delivery-log")]
pub use writer::{KeepPayloads, LogSink, LogWriter};

/// What became of a delivery.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LoggedOutcome {
    /// The engine started an instance.
    Started,
    /// A repeated key: the first start's answer was replayed.
    Replayed,
    /// The sender's event is one the source does not start on (or a ping).
    Ignored,
    /// The sender's own check (Slack's `url_verification`) was answered.
    Challenge,
    /// Refused after authentication, with a code (and violations).
    Refused,
    /// Kept in the inbox, to be started.
    Queued,
    /// Kept, and will not start by itself (the engine refused it, or it
    /// grew too old): an operator may retry it.
    Dead,
    /// Kept, and discarded by an operator.
    Discarded,
}

impl LoggedOutcome {
    /// Every outcome, in the order the console lists them.
    pub const ALL: [Self; 8] = [
        Self::Started,
        Self::Replayed,
        Self::Ignored,
        Self::Challenge,
        Self::Refused,
        Self::Queued,
        Self::Dead,
        Self::Discarded,
    ];

    /// `started`, `replayed`, `ignored`, `challenge`, `refused`, `queued`,
    /// `dead` or `discarded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Replayed => "replayed",
            Self::Ignored => "ignored",
            Self::Challenge => "challenge",
            Self::Refused => "refused",
            Self::Queued => "queued",
            Self::Dead => "dead",
            Self::Discarded => "discarded",
        }
    }

    /// Whether the delivery failed (refused or dead): its payload is kept
    /// under the default `failed` policy, with the queued ones.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Refused | Self::Dead)
    }
}

impl std::fmt::Display for LoggedOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LoggedOutcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or(UnknownOutcome)
    }
}

/// An outcome that is none of [`LoggedOutcome::ALL`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error(
    "an outcome is `started`, `replayed`, `ignored`, `challenge`, `refused`, `queued`, `dead` or `discarded`"
)]
pub struct UnknownOutcome;

/// One dispatch of a kept start, or an operator's retry or discard.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attempt {
    /// When it ended.
    #[serde(with = "unix_micros")]
    pub at: SystemTime,
    /// What it made of the delivery: `started`, `queued` (to be tried
    /// again), `dead` or `discarded`.
    pub outcome: LoggedOutcome,
    /// The failure, for the operator (the engine's words): never a secret.
    pub error: Option<String>,
}

impl Attempt {
    /// An attempt that ended at `at` with `outcome`.
    pub fn new(at: SystemTime, outcome: LoggedOutcome, error: Option<String>) -> Self {
        Self { at, outcome, error }
    }
}

/// One delivery as the log keeps it.
///
/// A record from a call has the request's side (`status`, `headers`, the
/// payload as the policy keeps it, `duration`); a record from a dispatch
/// has one [`Attempt`] and none of those. Records of one id merge (the
/// contract of [`DeliveryLog`]).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoggedDelivery {
    /// Its id: the inbox's `deliveryId` for a kept start, else a fresh one.
    pub id: DeliveryId,
    /// When the call came in.
    #[serde(with = "unix_micros")]
    pub received_at: SystemTime,
    /// When its outcome was last set: of two records of one id, the later
    /// one's outcome and instance win.
    #[serde(with = "unix_micros")]
    pub updated_at: SystemTime,
    /// The environment the token or source authenticated.
    pub environment: EnvironmentId,
    /// The process the call named.
    pub process: ProcessUuid,
    /// The deployed version it was checked against, when it got that far.
    pub version: Option<u32>,
    /// The webhook source that authenticated it (`None` for a token).
    pub source: Option<SourceId>,
    /// The sender's delivery id or the caller's idempotency key.
    pub sender_id: Option<String>,
    /// The sender's event, where it names one.
    pub event: Option<String>,
    /// What became of it.
    pub outcome: LoggedOutcome,
    /// The HTTP status answered (a call's record).
    pub status: Option<u16>,
    /// A refusal's code (from the one table of codes).
    pub code: Option<String>,
    /// A refusal's problem document (its detail and violations; never a
    /// secret).
    pub problem: Option<serde_json::Value>,
    /// The instance started.
    pub instance: Option<InstanceId>,
    /// The dispatches of a kept start, and an operator's retries and
    /// discards, oldest first.
    pub attempts: Vec<Attempt>,
    /// How long the call took (a call's record).
    #[serde(with = "opt_micros")]
    pub duration: Option<Duration>,
    /// The request's headers, every credential removed
    /// ([`is_credential_header`]); `None` in a dispatch's record.
    pub headers: Option<LoggedHeaders>,
    /// The body as sent (text; bytes that are not UTF-8 replaced), where
    /// the payload policy keeps it, every credential field's value
    /// redacted ([`is_credential_field`]).
    pub payload: Option<String>,
}

impl LoggedDelivery {
    /// A record of `id` in `environment` for `process`, received and
    /// updated at `at`, with `outcome` and nothing else.
    pub fn new(
        id: DeliveryId,
        at: SystemTime,
        environment: EnvironmentId,
        process: ProcessUuid,
        outcome: LoggedOutcome,
    ) -> Self {
        Self {
            id,
            received_at: at,
            updated_at: at,
            environment,
            process,
            version: None,
            source: None,
            sender_id: None,
            event: None,
            outcome,
            status: None,
            code: None,
            problem: None,
            instance: None,
            attempts: Vec::new(),
            duration: None,
            headers: None,
            payload: None,
        }
    }

    /// Merges `later`, a record of the same id, into this one: what
    /// `later` has replaces what this one lacks or had (the request's side),
    /// the outcome and instance of the record updated last win, the
    /// received time is the earlier one, and the attempts are appended.
    pub fn merge(&mut self, later: LoggedDelivery) {
        let newer = later.updated_at >= self.updated_at;
        self.received_at = self.received_at.min(later.received_at);
        if newer {
            self.updated_at = later.updated_at;
            self.outcome = later.outcome;
            self.instance = later.instance.or(self.instance.take());
        } else if self.instance.is_none() {
            self.instance = later.instance;
        }
        self.version = later.version.or(self.version);
        self.source = later.source.or(self.source.take());
        self.sender_id = later.sender_id.or(self.sender_id.take());
        self.event = later.event.or(self.event.take());
        self.status = later.status.or(self.status);
        self.code = later.code.or(self.code.take());
        self.problem = later.problem.or(self.problem.take());
        self.duration = later.duration.or(self.duration);
        self.headers = later.headers.or(self.headers.take());
        self.payload = later.payload.or(self.payload.take());
        self.attempts.extend(later.attempts);
    }

    /// Whether `query`'s filters (not its page) take this record.
    pub fn matches(&self, query: &LogQuery) -> bool {
        query.outcome.is_none_or(|o| o == self.outcome)
            && query
                .source
                .as_ref()
                .is_none_or(|s| self.source.as_ref() == Some(s))
            && query.process.is_none_or(|p| p == self.process)
            && query.environment.as_ref().is_none_or(|e| *e == self.environment)
            && query.since.is_none_or(|t| self.received_at >= t)
            && query.until.is_none_or(|t| self.received_at < t)
    }

    /// Where this record sits in the newest-first order.
    pub fn position(&self) -> Cursor {
        Cursor {
            received_at: self.received_at,
            id: self.id,
        }
    }
}

/// Which records [`DeliveryLog::page`] answers, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LogQuery {
    /// Only this outcome.
    pub outcome: Option<LoggedOutcome>,
    /// Only this webhook source.
    pub source: Option<SourceId>,
    /// Only this process.
    pub process: Option<ProcessUuid>,
    /// Only this environment.
    pub environment: Option<EnvironmentId>,
    /// Only records received at or after this time.
    pub since: Option<SystemTime>,
    /// Only records received before this time.
    pub until: Option<SystemTime>,
    /// At most this many (the log may answer fewer).
    pub limit: usize,
    /// Only records after this one in the order (the previous page's
    /// [`LogPage::next`]).
    pub after: Option<Cursor>,
}

impl LogQuery {
    /// The newest `limit` records, unfiltered.
    pub fn newest(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only records with `outcome`.
    pub fn with_outcome(mut self, outcome: LoggedOutcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Only records of the webhook source `source`.
    pub fn with_source(mut self, source: SourceId) -> Self {
        self.source = Some(source);
        self
    }

    /// Only records of `process`.
    pub fn with_process(mut self, process: ProcessUuid) -> Self {
        self.process = Some(process);
        self
    }

    /// Only records in `environment`.
    pub fn with_environment(mut self, environment: EnvironmentId) -> Self {
        self.environment = Some(environment);
        self
    }

    /// Only records received in `[since, until)`.
    pub fn received(mut self, since: Option<SystemTime>, until: Option<SystemTime>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// The page after `cursor`.
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// A position in the newest-first order of the log: opaque to callers as
/// text ([`Display`](std::fmt::Display) and [`FromStr`](std::str::FromStr)
/// agree).
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub struct Cursor {
    received_at: SystemTime,
    id: DeliveryId,
}

impl Cursor {
    /// Whether a record at `position` comes after this cursor in the
    /// newest-first order.
    pub fn precedes(&self, position: &Cursor) -> bool {
        position < self
    }

    /// The time and id the cursor stands at.
    pub fn parts(&self) -> (SystemTime, DeliveryId) {
        (self.received_at, self.id)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{}.{}", micros_of(self.received_at), self.id);
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text))
    }
}

/// A cursor that is not one the log gave.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("the cursor is not one a page of deliveries gave")]
pub struct InvalidCursor;

impl std::str::FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| InvalidCursor)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| InvalidCursor)?;
        let (micros, id) = text.split_once('.').ok_or(InvalidCursor)?;
        let micros: i64 = micros.parse().map_err(|_| InvalidCursor)?;
        Ok(Self {
            received_at: time_of_micros(micros),
            id: id.parse().map_err(|_| InvalidCursor)?,
        })
    }
}

/// One page of [`DeliveryLog::page`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LogPage {
    /// The records, newest first.
    pub deliveries: Vec<LoggedDelivery>,
    /// The cursor of the next page, when there is one.
    pub next: Option<Cursor>,
}

/// The deliveries of one source (or of tokens, `source` `None`) and
/// process since a time: counts by outcome, the last delivery, the last
/// failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SourceSummary {
    /// The webhook source (`None`: calls with an environment token).
    pub source: Option<SourceId>,
    /// The process.
    pub process: ProcessUuid,
    /// Records by outcome (outcomes with none left out).
    pub counts: BTreeMap<LoggedOutcome, u64>,
    /// When the newest record was received.
    #[serde(with = "unix_micros")]
    pub last_received_at: SystemTime,
    /// The newest refused or dead record: its id, time and code.
    pub last_failure: Option<LastFailure>,
}

/// The newest failure of a [`SourceSummary`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LastFailure {
    /// The record's id.
    pub id: DeliveryId,
    /// When it was received.
    #[serde(with = "unix_micros")]
    pub received_at: SystemTime,
    /// `refused` or `dead`.
    pub outcome: LoggedOutcome,
    /// The refusal's code, if it has one.
    pub code: Option<String>,
}

impl PartialOrd for LoggedOutcome {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LoggedOutcome {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Where a starter's delivery records are kept, for the operator.
///
/// # Contract
///
/// - [`append`](Self::append) keeps each record; a record whose id the log
///   holds merges into it as [`LoggedDelivery::merge`] says (records are
///   merged in the order given, so a batch may hold one id twice).
/// - [`read`](Self::read) answers the record of an id (`Ok(None)` when the
///   log does not hold it).
/// - [`page`](Self::page) answers the records `query` takes, newest first
///   (by received time, then id), at most `query.limit`, each once across
///   pages, with the next page's cursor when more records match.
/// - [`summarize`](Self::summarize) answers, per source and process, the
///   counts by outcome of records received since `since`.
/// - [`purge`](Self::purge) removes up to `batch` records received before
///   `before` and answers how many it removed.
/// - A log may forget old records by a bound of its own (the in-memory one
///   keeps the newest `N`); an error means it could not answer.
///
/// # Wrappers
///
/// The trait has no provided methods: a wrapper forwards each.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Keeps `records`, merging each into the record of its id.
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError>;

    /// The record of `id`.
    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError>;

    /// The records `query` asks for, newest first.
    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError>;

    /// Per source and process, the records received since `since`.
    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError>;

    /// Removes up to `batch` records received before `before`.
    async fn purge(&self, before: SystemTime, batch: usize) -> Result<u64, StoreError>;
}

#[async_trait]
impl<L: DeliveryLog + ?Sized> DeliveryLog for Arc<L> {
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError> {
        (**self).append(records).await
    }

    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError> {
        (**self).read(id).await
    }

    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        (**self).page(query).await
    }

    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        (**self).summarize(since).await
    }

    async fn purge(&self, before: SystemTime, batch: usize) -> Result<u64, StoreError> {
        (**self).purge(before, batch).await
    }
}

/// Microseconds since the Unix epoch (negative before it).
pub(crate) fn micros_of(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The time `micros` microseconds after the Unix epoch.
pub(crate) fn time_of_micros(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// A time as microseconds since the epoch in JSON.
mod unix_micros {
    use std::time::SystemTime;

    pub(super) fn serialize<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::micros_of(*time))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let micros: i64 = serde::Deserialize::deserialize(d)?;
        Ok(super::time_of_micros(micros))
    }
}

/// An optional duration as microseconds in JSON.
mod opt_micros {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let micros: Option<u64> = serde::Deserialize::deserialize(d)?;
        Ok(micros.map(Duration::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_itself_and_refuses_what_it_never_wrote() {
        let cursor = Cursor {
            received_at: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            id: DeliveryId::new_random(),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        for bad in ["", "abc", "MTIz", "!!"] {
            assert_eq!(bad.parse::<Cursor>(), Err(InvalidCursor), "{bad}");
        }
    }

    #[test]
    fn every_outcome_reads_back_from_its_name() {
        for outcome in LoggedOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<LoggedOutcome>(), Ok(outcome));
        }
        assert_eq!("Started".parse::<LoggedOutcome>(), Err(UnknownOutcome));
    }

    #[test]
    fn a_later_dispatch_sets_the_outcome_and_an_earlier_one_does_not() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        let id = DeliveryId::new_random();
        let uuid = ProcessUuid::from(uuid::Uuid::nil());
        let env = EnvironmentId::new("production");
        let mut call = LoggedDelivery::new(id, t0, env.clone(), uuid, LoggedOutcome::Queued);
        call.status = Some(202);
        call.payload = Some("{}".into());
        let mut started = LoggedDelivery::new(
            id,
            t0 + Duration::from_secs(1),
            env.clone(),
            uuid,
            LoggedOutcome::Started,
        );
        started.instance = Some(InstanceId::new("i-1"));
        started.attempts.push(Attempt::new(
            t0 + Duration::from_secs(1),
            LoggedOutcome::Started,
            None,
        ));
        // The dispatch's record arrived first: the call's does not undo it.
        let mut merged = started.clone();
        merged.merge(call.clone());
        assert_eq!(merged.outcome, LoggedOutcome::Started);
        assert_eq!(merged.instance, Some(InstanceId::new("i-1")));
        assert_eq!(
            (merged.status, merged.payload.as_deref()),
            (Some(202), Some("{}"))
        );
        assert_eq!(merged.received_at, t0);
        // In order, the same.
        let mut ordered = call;
        ordered.merge(started);
        assert_eq!(ordered, merged);
    }
}
