//! [`PostgresStore`] as an [`Inbox`]: kept starts in the `deliveries`
//! table, claimed with `FOR UPDATE SKIP LOCKED` and a lease, so that the
//! dispatchers of every replica share them.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::PostgresStore;
use super::queries::{get, storable};
use crate::id::{DeliveryId, EnvironmentId, InstanceId};
use crate::idempotency::IdempotencyKey;
use crate::inbox::{Claimed, Delivery, DeliveryStatus, Inbox, InboxCounts, InboxQuery, Keeping, KeptStart};
use crate::source::SourceId;
use crate::store::StoreError;
use crate::store::sql::inbox::{StoredCommand, claimed_from, delivery_from, seconds, time_of};

/// The inbox's statements, with the schema put in once.
#[derive(Debug)]
pub(super) struct InboxStatements {
    held: String,
    keep: String,
    claim: String,
    complete: String,
    reschedule: String,
    bury: String,
    retry: String,
    discard: String,
    get: String,
    list: String,
    find_by_key: String,
    counts: String,
}

/// The columns a delivery is read back from.
const COLUMNS: &str = "id, status, environment, process, version, caller_key, source, command, \
    extract(epoch from kept_at)::float8 AS kept_at, extract(epoch from due_at)::float8 AS due_at, \
    attempts, last_error, instance, lease";

impl InboxStatements {
    pub(super) fn new(s: &str) -> Self {
        Self {
            held: format!(
                "SELECT count(*) FROM {s}.deliveries WHERE environment = $1 AND status IN ('queued', 'dead')"
            ),
            keep: format!(
                "INSERT INTO {s}.deliveries (id, environment, process, version, caller_key, command, status, kept_at, due_at, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', to_timestamp($7), to_timestamp($7), $8)"
            ),
            claim: format!(
                "UPDATE {s}.deliveries d SET lease = nextval('{s}.delivery_leases'), \
                   leased_until = to_timestamp($1) + make_interval(secs => $2), attempts = d.attempts + 1 \
                 FROM (SELECT id FROM {s}.deliveries \
                       WHERE status = 'queued' AND due_at <= to_timestamp($1) \
                         AND (leased_until IS NULL OR leased_until <= to_timestamp($1)) \
                       ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) c \
                 WHERE d.id = c.id RETURNING d.id, d.status, d.environment, d.process, d.version, d.caller_key, d.source, \
                   d.command, extract(epoch from d.kept_at)::float8 AS kept_at, \
                   extract(epoch from d.due_at)::float8 AS due_at, d.attempts - 1 AS attempts, d.last_error, \
                   d.instance, d.lease"
            ),
            complete: format!(
                "UPDATE {s}.deliveries SET status = 'started', instance = $3, leased_until = NULL \
                 WHERE id = $1 AND lease = $2 AND status = 'queued'"
            ),
            reschedule: format!(
                "UPDATE {s}.deliveries SET due_at = to_timestamp($3), lease = NULL, leased_until = NULL, last_error = $4 \
                 WHERE id = $1 AND lease = $2 AND status = 'queued'"
            ),
            bury: format!(
                "UPDATE {s}.deliveries SET status = 'dead', leased_until = NULL, last_error = $3 \
                 WHERE id = $1 AND lease = $2 AND status = 'queued'"
            ),
            retry: format!(
                "UPDATE {s}.deliveries SET status = 'queued', due_at = clock_timestamp(), leased_until = NULL \
                 WHERE id = $1 AND status = 'dead'"
            ),
            discard: format!(
                "UPDATE {s}.deliveries SET status = 'discarded', leased_until = NULL \
                 WHERE id = $1 AND status IN ('queued', 'dead')"
            ),
            get: format!("SELECT {COLUMNS} FROM {s}.deliveries WHERE id = $1"),
            list: format!(
                "SELECT {COLUMNS} FROM {s}.deliveries \
                 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR environment = $2) \
                   AND ($4::text IS NULL OR source = $4) \
                 ORDER BY kept_at DESC, id DESC LIMIT $3"
            ),
            counts: format!(
                "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, \
                   count(*) FILTER (WHERE status = 'dead') AS dead, \
                   extract(epoch from min(kept_at) FILTER (WHERE status = 'queued'))::float8 AS oldest \
                 FROM {s}.deliveries WHERE status IN ('queued', 'dead')"
            ),
            find_by_key: format!(
                "SELECT {COLUMNS} FROM {s}.deliveries \
                 WHERE environment = $1 AND process = $2 AND caller_key = $3 ORDER BY kept_at DESC LIMIT 1"
            ),
        }
    }
}

/// What a store knows of its environments' kept starts between counts, and
/// when it last woke the dispatchers.
#[derive(Debug, Default)]
pub(super) struct Held {
    counts: std::sync::Mutex<std::collections::HashMap<String, (usize, std::time::Instant)>>,
    notified: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Held {
    /// Whether `environment`'s count is stale (over a second old) or near
    /// `limit` (within a tenth of it): then it is counted again.
    fn near(&self, environment: &str, limit: usize) -> bool {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.get(environment) {
            Some((held, at)) => {
                at.elapsed() > Duration::from_secs(1) || held.saturating_add(limit / 10 + 1) >= limit
            }
            None => true,
        }
    }

    fn set(&self, environment: &str, held: usize) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.insert(environment.to_owned(), (held, std::time::Instant::now()));
    }

    /// One more kept start of `environment` since its count.
    fn kept(&self, environment: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((held, _)) = counts.get_mut(environment) {
            *held += 1;
        }
    }

    /// Whether to wake the dispatchers now: not within 50 ms of the last.
    fn notify_now(&self) -> bool {
        let mut notified = self
            .notified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *notified {
            Some(at) if at.elapsed() < Duration::from_millis(50) => false,
            _ => {
                *notified = Some(std::time::Instant::now());
                true
            }
        }
    }
}

impl PostgresStore {
    /// Wakes `wakeup` (and so a [`Dispatcher`](crate::Dispatcher) given it
    /// with `with_wakeup`) each time a replica keeps a start, through
    /// PostgreSQL's `LISTEN`, until `wakeup` is dropped everywhere else. A
    /// lost connection is made again (and wakes it: a start may have been
    /// missed); the dispatcher's poll interval covers the time between.
    #[cfg(feature = "dispatcher")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatcher")))]
    pub fn spawn_inbox_wakeups(&self, wakeup: &std::sync::Arc<tokio::sync::Notify>) {
        let (pool, channel) = (self.pool.clone(), self.sql.inbox_channel.clone());
        let wakeup = std::sync::Arc::downgrade(wakeup);
        tokio::spawn(async move {
            loop {
                let listening = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(&channel).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listening.await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(target: "process_webhook", error = %error, "cannot listen for kept starts; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                loop {
                    let event = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
                    let Some(wakeup) = wakeup.upgrade() else { return };
                    match event {
                        Ok(Ok(Some(_))) => wakeup.notify_one(),
                        Ok(Ok(None)) | Ok(Err(_)) => {
                            wakeup.notify_one();
                            break;
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    }
}

#[async_trait]
impl Inbox for PostgresStore {
    /// One `INSERT`, no transaction of its own: keeps from every client
    /// commit together, as single-row inserts do. The limit is checked
    /// against a count of the environment's kept starts that each store
    /// refreshes at most once a second (and again whenever it nears the
    /// limit), so replicas keeping at once may pass it by the starts they
    /// keep in that second. Dispatchers are woken (`NOTIFY`) at most every
    /// 50 ms per store: a `NOTIFY` serializes the commits that carry it.
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError> {
        let command = &start.command;
        let stored = serde_json::to_value(StoredCommand::of(command))
            .map_err(|e| StoreError::new("postgres: serializing a kept start").with_source(e))?;
        if let Some(key) = &start.caller_key {
            storable("an idempotency key", key.key())?;
        }
        storable("an environment id", command.environment.as_str())?;
        let sql = &self.sql.inbox;
        let environment = command.environment.as_str();
        if self.held.near(environment, limit) {
            let query = sqlx::query_scalar::<_, i64>(&sql.held).bind(environment);
            let held = self
                .run("counting kept starts", query.fetch_one(&self.pool))
                .await?;
            let held = usize::try_from(held).unwrap_or(usize::MAX);
            self.held.set(environment, held);
            if held >= limit {
                return Ok(Keeping::Full);
            }
        }
        let query = sqlx::query(&sql.keep)
            .bind(start.id.as_uuid())
            .bind(environment)
            .bind(command.process.as_uuid())
            .bind(i32::try_from(command.version).unwrap_or(i32::MAX))
            .bind(start.caller_key.as_ref().map(IdempotencyKey::key))
            .bind(&stored)
            .bind(seconds(start.kept_at))
            .bind(start.source.as_ref().map(SourceId::as_str));
        self.run("keeping a start", query.execute(&self.pool)).await?;
        self.held.kept(environment);
        if self.held.notify_now() {
            let notify = sqlx::query("SELECT pg_notify($1, '')").bind(&self.sql.inbox_channel);
            // A lost wake-up costs a dispatcher one poll interval, never a start.
            if let Err(error) = self.run("waking dispatchers", notify.execute(&self.pool)).await {
                tracing::warn!(target: "process_webhook", error = %crate::observe::chain(&error), "could not wake the dispatchers");
            }
        }
        Ok(Keeping::Kept)
    }

    async fn claim(&self, now: SystemTime, lease: Duration, max: usize) -> Result<Vec<Claimed>, StoreError> {
        let query = sqlx::query(&self.sql.inbox.claim)
            .bind(seconds(now))
            .bind(lease.as_secs_f64())
            .bind(i64::try_from(max).unwrap_or(i64::MAX));
        let rows = self
            .run("claiming kept starts", query.fetch_all(&self.pool))
            .await?;
        rows.iter().map(claimed_from).collect()
    }

    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError> {
        storable("an instance id", instance.as_str())?;
        let query = sqlx::query(&self.sql.inbox.complete)
            .bind(claimed.start.id.as_uuid())
            .bind(claimed.lease as i64)
            .bind(instance.as_str());
        let done = self
            .run("completing a kept start", query.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn reschedule(&self, claimed: &Claimed, at: SystemTime, error: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.inbox.reschedule)
            .bind(claimed.start.id.as_uuid())
            .bind(claimed.lease as i64)
            .bind(seconds(at))
            .bind(error.replace('\0', " "));
        let done = self
            .run("rescheduling a kept start", query.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.inbox.bury)
            .bind(claimed.start.id.as_uuid())
            .bind(claimed.lease as i64)
            .bind(reason.replace('\0', " "));
        let done = self
            .run("burying a kept start", query.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.inbox.retry).bind(id.as_uuid());
        let done = self
            .run("retrying a kept start", query.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.inbox.discard).bind(id.as_uuid());
        let done = self
            .run("discarding a kept start", query.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let query = sqlx::query(&self.sql.inbox.get).bind(id.as_uuid());
        let row = self
            .run("reading a kept start", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .transpose()
    }

    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError> {
        let limit = query
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = sqlx::query(&self.sql.inbox.list)
            .bind(query.status.map(DeliveryStatus::as_str))
            .bind(query.environment.as_ref().map(EnvironmentId::as_str))
            .bind(limit)
            .bind(query.source.as_ref().map(SourceId::as_str));
        let rows = self.run("listing kept starts", sql.fetch_all(&self.pool)).await?;
        rows.iter()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .collect()
    }

    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError> {
        if storable("an idempotency key", key.key()).is_err() {
            // No such key can have been kept.
            return Ok(None);
        }
        let query = sqlx::query(&self.sql.inbox.find_by_key)
            .bind(key.environment().as_str())
            .bind(key.process().as_uuid())
            .bind(key.key());
        let row = self
            .run("finding a kept start by key", query.fetch_optional(&self.pool))
            .await?;
        row.as_ref()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .transpose()
    }

    async fn counts(&self) -> Result<InboxCounts, StoreError> {
        let query = sqlx::query(&self.sql.inbox.counts);
        let row = self
            .run("counting kept starts", query.fetch_one(&self.pool))
            .await?;
        let (queued, dead): (i64, i64) = (get(&row, "queued")?, get(&row, "dead")?);
        let oldest: Option<f64> = get(&row, "oldest")?;
        Ok(InboxCounts {
            queued: u64::try_from(queued).unwrap_or_default(),
            dead: u64::try_from(dead).unwrap_or_default(),
            oldest_queued: oldest.map(time_of),
        })
    }
}
