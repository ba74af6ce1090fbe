//! [`SqliteStore`] as an [`Inbox`]: kept starts in the `deliveries` table,
//! claimed with a lease numbered from `delivery_leases`, on the one
//! writing connection.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::SqliteStore;
use crate::id::{DeliveryId, EnvironmentId, InstanceId};
use crate::idempotency::IdempotencyKey;
use crate::inbox::{Claimed, Delivery, DeliveryStatus, Inbox, InboxCounts, InboxQuery, Keeping, KeptStart};
use crate::source::SourceId;
use crate::store::StoreError;
use crate::store::sql::Columns as _;
use crate::store::sql::inbox::{StoredCommand, claimed_from, delivery_from, seconds, time_of};

/// The columns a delivery is read back from.
const COLUMNS: &str = "id, status, environment, process, version, caller_key, source, command, kept_at, due_at, \
    attempts, last_error, instance, lease";

#[async_trait]
impl Inbox for SqliteStore {
    /// One `INSERT` that counts the environment's kept starts first (one
    /// writer: the count is exact) and keeps nothing past `limit`.
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError> {
        let command = &start.command;
        let stored = serde_json::to_value(StoredCommand::of(command))
            .map_err(|e| StoreError::new("sqlite: serializing a kept start").with_source(e))?;
        let query = sqlx::query(
            "INSERT INTO deliveries (id, environment, process, version, caller_key, command, status, kept_at, due_at, source) \
             SELECT $1, $2, $3, $4, $5, $6, 'queued', $7, $7, $8 \
             WHERE (SELECT count(*) FROM deliveries WHERE environment = $2 AND status IN ('queued', 'dead')) < $9",
        )
        .bind(*start.id.as_uuid())
        .bind(command.environment.as_str())
        .bind(*command.process.as_uuid())
        .bind(i32::try_from(command.version).unwrap_or(i32::MAX))
        .bind(start.caller_key.as_ref().map(IdempotencyKey::key))
        .bind(&stored)
        .bind(seconds(start.kept_at))
        .bind(start.source.as_ref().map(SourceId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let done = self.run("keeping a start", query.execute(&self.write)).await?;
        if done.rows_affected() == 0 {
            return Ok(Keeping::Full);
        }
        self.kept();
        Ok(Keeping::Kept)
    }

    async fn claim(&self, now: SystemTime, lease: Duration, max: usize) -> Result<Vec<Claimed>, StoreError> {
        let now = seconds(now);
        let work = async {
            let mut tx = self.write.begin().await?;
            let number: i64 = sqlx::query_scalar("UPDATE delivery_leases SET n = n + 1 RETURNING n")
                .fetch_one(&mut *tx)
                .await?;
            let rows = sqlx::query(
                "UPDATE deliveries SET lease = $1, leased_until = $2 + $3, attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND due_at <= $2 \
                   AND (leased_until IS NULL OR leased_until <= $2) ORDER BY due_at LIMIT $4) \
                 RETURNING id, status, environment, process, version, caller_key, source, command, kept_at, \
                   due_at, attempts - 1 AS attempts, last_error, instance, lease",
            )
            .bind(number)
            .bind(now)
            .bind(lease.as_secs_f64())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        };
        let rows = self.run("claiming kept starts", work).await?;
        let mut claimed = rows.iter().map(claimed_from).collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives rows in no promised order: oldest due first.
        claimed.sort_by_key(|c| c.start.kept_at);
        Ok(claimed)
    }

    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE deliveries SET status = 'started', instance = $3, leased_until = NULL \
             WHERE id = $1 AND lease = $2 AND status = 'queued'",
        )
        .bind(*claimed.start.id.as_uuid())
        .bind(i64::try_from(claimed.lease).unwrap_or(i64::MAX))
        .bind(instance.as_str());
        let done = self
            .run("completing a kept start", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn reschedule(&self, claimed: &Claimed, at: SystemTime, error: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE deliveries SET due_at = $3, lease = NULL, leased_until = NULL, last_error = $4 \
             WHERE id = $1 AND lease = $2 AND status = 'queued'",
        )
        .bind(*claimed.start.id.as_uuid())
        .bind(i64::try_from(claimed.lease).unwrap_or(i64::MAX))
        .bind(seconds(at))
        .bind(error);
        let done = self
            .run("rescheduling a kept start", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE deliveries SET status = 'dead', leased_until = NULL, last_error = $3 \
             WHERE id = $1 AND lease = $2 AND status = 'queued'",
        )
        .bind(*claimed.start.id.as_uuid())
        .bind(i64::try_from(claimed.lease).unwrap_or(i64::MAX))
        .bind(reason);
        let done = self
            .run("burying a kept start", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE deliveries SET status = 'queued', due_at = $2, leased_until = NULL \
             WHERE id = $1 AND status = 'dead'",
        )
        .bind(*id.as_uuid())
        .bind(super::now());
        let done = self
            .run("retrying a kept start", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE deliveries SET status = 'discarded', leased_until = NULL \
             WHERE id = $1 AND status IN ('queued', 'dead')",
        )
        .bind(*id.as_uuid());
        let done = self
            .run("discarding a kept start", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE id = $1");
        let query = sqlx::query(&sql).bind(*id.as_uuid());
        let row = self
            .run("reading a kept start", query.fetch_optional(&self.read))
            .await?;
        row.as_ref()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .transpose()
    }

    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError> {
        let limit = query
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {COLUMNS} FROM deliveries \
             WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR environment = $2) \
               AND ($4 IS NULL OR source = $4) \
             ORDER BY kept_at DESC, id DESC LIMIT $3"
        );
        let select = sqlx::query(&sql)
            .bind(query.status.map(DeliveryStatus::as_str))
            .bind(query.environment.as_ref().map(EnvironmentId::as_str))
            .bind(limit)
            .bind(query.source.as_ref().map(SourceId::as_str));
        let rows = self
            .run("listing kept starts", select.fetch_all(&self.read))
            .await?;
        rows.iter()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .collect()
    }

    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM deliveries \
             WHERE environment = $1 AND process = $2 AND caller_key = $3 ORDER BY kept_at DESC LIMIT 1"
        );
        let query = sqlx::query(&sql)
            .bind(key.environment().as_str())
            .bind(*key.process().as_uuid())
            .bind(key.key());
        let row = self
            .run("finding a kept start by key", query.fetch_optional(&self.read))
            .await?;
        row.as_ref()
            .map(|row| delivery_from(row).map(|(d, _)| d))
            .transpose()
    }

    async fn counts(&self) -> Result<InboxCounts, StoreError> {
        let query = sqlx::query(
            "SELECT count(*) FILTER (WHERE status = 'queued') AS queued, \
               count(*) FILTER (WHERE status = 'dead') AS dead, \
               min(kept_at) FILTER (WHERE status = 'queued') AS oldest \
             FROM deliveries WHERE status IN ('queued', 'dead')",
        );
        let row = self
            .run("counting kept starts", query.fetch_one(&self.read))
            .await?;
        let (queued, dead) = (row.long("queued")?, row.long("dead")?);
        let oldest: Option<f64> = crate::store::sql::column(&row, "oldest")?;
        Ok(InboxCounts {
            queued: u64::try_from(queued).unwrap_or_default(),
            dead: u64::try_from(dead).unwrap_or_default(),
            oldest_queued: oldest.map(time_of),
        })
    }
}
