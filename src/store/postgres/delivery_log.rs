//! [`PostgresStore`] as a [`DeliveryLog`]: the `delivery_log` table, in the
//! same database as the inbox, purged by age.

use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::Postgres;

use super::PostgresStore;
use crate::delivery_log::{DeliveryLog, LogPage, LogQuery, LoggedDelivery, SourceSummary, micros_of};
use crate::id::DeliveryId;
use crate::store::StoreError;
use crate::store::sql::delivery_log::{
    COLUMNS, clean, json_text, merged, page_from, page_select, record_from, summaries_from, summary_counts,
};

/// How a record merges into the row of its id: the later outcome and
/// instance win, what the record has replaces what the row lacks, the
/// attempts are appended (as [`LoggedDelivery::merge`] says).
const MERGE: &str = "ON CONFLICT (id) DO UPDATE SET \
     received_us = LEAST(l.received_us, EXCLUDED.received_us), \
     outcome = CASE WHEN EXCLUDED.updated_us >= l.updated_us THEN EXCLUDED.outcome ELSE l.outcome END, \
     instance = CASE WHEN EXCLUDED.updated_us >= l.updated_us THEN COALESCE(EXCLUDED.instance, l.instance) \
                ELSE COALESCE(l.instance, EXCLUDED.instance) END, \
     updated_us = GREATEST(l.updated_us, EXCLUDED.updated_us), \
     version = COALESCE(EXCLUDED.version, l.version), source = COALESCE(EXCLUDED.source, l.source), \
     sender_id = COALESCE(EXCLUDED.sender_id, l.sender_id), event = COALESCE(EXCLUDED.event, l.event), \
     status = COALESCE(EXCLUDED.status, l.status), code = COALESCE(EXCLUDED.code, l.code), \
     problem = COALESCE(EXCLUDED.problem, l.problem), duration_us = COALESCE(EXCLUDED.duration_us, l.duration_us), \
     headers = COALESCE(EXCLUDED.headers, l.headers), payload = COALESCE(EXCLUDED.payload, l.payload), \
     attempts = l.attempts || EXCLUDED.attempts";

/// A batch as one array per column.
#[derive(Default)]
struct Columns {
    id: Vec<uuid::Uuid>,
    received: Vec<i64>,
    updated: Vec<i64>,
    environment: Vec<String>,
    process: Vec<uuid::Uuid>,
    version: Vec<Option<i32>>,
    source: Vec<Option<String>>,
    sender: Vec<Option<String>>,
    event: Vec<Option<String>>,
    outcome: Vec<&'static str>,
    status: Vec<Option<i32>>,
    code: Vec<Option<String>>,
    problem: Vec<Option<String>>,
    instance: Vec<Option<String>>,
    attempts: Vec<String>,
    duration: Vec<Option<i64>>,
    headers: Vec<Option<String>>,
    payload: Vec<Option<String>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            received: Vec::with_capacity(n),
            updated: Vec::with_capacity(n),
            environment: Vec::with_capacity(n),
            process: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
            ..Self::default()
        }
    }
}

#[async_trait]
impl DeliveryLog for PostgresStore {
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = merged(records);
        let encode = |what: &'static str| move |e: serde_json::Error| StoreError::new(what).with_source(e);
        let mut columns = Columns::with_capacity(rows.len());
        for r in rows.iter() {
            columns.id.push(*r.id.as_uuid());
            columns.received.push(micros_of(r.received_at));
            columns.updated.push(micros_of(r.updated_at));
            columns.environment.push(clean(r.environment.as_str()));
            columns.process.push(*r.process.as_uuid());
            columns
                .version
                .push(r.version.map(|v| i32::try_from(v).unwrap_or(i32::MAX)));
            columns
                .source
                .push(r.source.as_ref().map(|s| s.as_str().to_owned()));
            columns.sender.push(r.sender_id.as_deref().map(clean));
            columns.event.push(r.event.as_deref().map(clean));
            columns.outcome.push(r.outcome.as_str());
            columns.status.push(r.status.map(i32::from));
            columns.code.push(r.code.clone());
            columns.problem.push(
                r.problem
                    .as_ref()
                    .map(json_text)
                    .transpose()
                    .map_err(encode("encoding a problem document"))?,
            );
            columns
                .instance
                .push(r.instance.as_ref().map(|i| clean(i.as_str())));
            columns
                .attempts
                .push(json_text(&r.attempts).map_err(encode("encoding attempts"))?);
            columns.duration.push(
                r.duration
                    .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            );
            columns.headers.push(
                r.headers
                    .as_ref()
                    .map(json_text)
                    .transpose()
                    .map_err(encode("encoding headers"))?,
            );
            columns.payload.push(r.payload.as_deref().map(clean));
        }
        // One statement for every batch (so it is prepared once): the
        // records as arrays, one row of each.
        let s = &self.sql.quoted;
        let sql = format!(
            "INSERT INTO {s}.delivery_log AS l ({COLUMNS}) \
             SELECT id, received_us, updated_us, environment, process, version, source, sender_id, event, outcome, \
               status, code, problem::jsonb, instance, attempts::jsonb, duration_us, headers::jsonb, payload \
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::text[], $5::uuid[], $6::int4[], $7::text[], \
               $8::text[], $9::text[], $10::text[], $11::int4[], $12::text[], $13::text[], $14::text[], $15::text[], \
               $16::int8[], $17::text[], $18::text[]) \
               AS t(id, received_us, updated_us, environment, process, version, source, sender_id, event, outcome, \
               status, code, problem, instance, attempts, duration_us, headers, payload) {MERGE}"
        );
        let query = sqlx::query(&sql)
            .bind(columns.id)
            .bind(columns.received)
            .bind(columns.updated)
            .bind(columns.environment)
            .bind(columns.process)
            .bind(columns.version)
            .bind(columns.source)
            .bind(columns.sender)
            .bind(columns.event)
            .bind(columns.outcome)
            .bind(columns.status)
            .bind(columns.code)
            .bind(columns.problem)
            .bind(columns.instance)
            .bind(columns.attempts)
            .bind(columns.duration)
            .bind(columns.headers)
            .bind(columns.payload);
        self.run("writing the delivery log", query.execute(&self.pool))
            .await?;
        Ok(())
    }

    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {}.delivery_log WHERE id = $1",
            self.sql.quoted
        );
        let row = self
            .run(
                "reading the delivery log",
                sqlx::query(&sql).bind(id.as_uuid()).fetch_optional(&self.pool),
            )
            .await?;
        row.as_ref().map(record_from).transpose()
    }

    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let table = format!("{}.delivery_log", self.sql.quoted);
        let mut select = page_select::<Postgres>(&table, query);
        let rows = self
            .run("listing the delivery log", select.build().fetch_all(&self.pool))
            .await?;
        page_from(&rows, query.limit)
    }

    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        let s = &self.sql.quoted;
        let counts = summary_counts(&format!("{s}.delivery_log"));
        let failures = format!(
            "SELECT DISTINCT ON (source, process) source, process, id, received_us, outcome, code \
             FROM {s}.delivery_log WHERE received_us >= $1 AND outcome IN ('refused', 'dead') \
             ORDER BY source, process, received_us DESC"
        );
        let since = micros_of(since);
        let counts = self
            .run(
                "summarizing the delivery log",
                sqlx::query(&counts).bind(since).fetch_all(&self.pool),
            )
            .await?;
        let failures = self
            .run(
                "summarizing the delivery log",
                sqlx::query(&failures).bind(since).fetch_all(&self.pool),
            )
            .await?;
        summaries_from(&counts, &failures)
    }

    async fn purge(&self, before: SystemTime, batch: usize) -> Result<u64, StoreError> {
        let s = &self.sql.quoted;
        let sql = format!(
            "DELETE FROM {s}.delivery_log WHERE id IN \
             (SELECT id FROM {s}.delivery_log WHERE received_us < $1 LIMIT $2)"
        );
        let done = self
            .run(
                "purging the delivery log",
                sqlx::query(&sql)
                    .bind(micros_of(before))
                    .bind(i64::try_from(batch).unwrap_or(i64::MAX))
                    .execute(&self.pool),
            )
            .await?;
        Ok(done.rows_affected())
    }
}
