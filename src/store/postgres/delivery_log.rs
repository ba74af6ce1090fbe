//! [`PostgresStore`] as a [`DeliveryLog`]: the `delivery_log` table, in the
//! same database as the inbox, purged by age.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use super::queries::get;
use crate::delivery_log::{
    Attempt, DeliveryLog, LastFailure, LogPage, LogQuery, LoggedDelivery, LoggedOutcome, SourceSummary,
    micros_of, time_of_micros,
};
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::source::SourceId;
use crate::store::StoreError;

const COLUMNS: &str = "id, received_us, updated_us, environment, process, version, source, sender_id, event, \
    outcome, status, code, problem, instance, attempts, duration_us, headers, payload";

/// Text PostgreSQL takes: a NUL (which `text` and `jsonb` refuse) becomes
/// U+FFFD.
fn clean(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// A JSON value PostgreSQL's `jsonb` takes (no `\u0000` in any string).
fn clean_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(clean(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_json).collect()),
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (clean(&k), clean_json(v)))
                .collect(),
        ),
        other => other,
    }
}

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

/// The records of a batch, those of one id merged in order: one row each
/// (borrowed as they are when every id is its own, as in most batches).
fn merged(records: &[LoggedDelivery]) -> std::borrow::Cow<'_, [LoggedDelivery]> {
    let mut at: HashMap<DeliveryId, usize> = HashMap::with_capacity(records.len());
    if records
        .iter()
        .enumerate()
        .all(|(i, r)| at.insert(r.id, i).is_none())
    {
        return std::borrow::Cow::Borrowed(records);
    }
    at.clear();
    let mut rows: Vec<LoggedDelivery> = Vec::with_capacity(records.len());
    for record in records {
        match at.get(&record.id) {
            Some(&i) => rows[i].merge(record.clone()),
            None => {
                at.insert(record.id, rows.len());
                rows.push(record.clone());
            }
        }
    }
    std::borrow::Cow::Owned(rows)
}

/// `value` as the JSON text `jsonb` takes: serialized once, and cleaned of
/// NULs (which `jsonb` refuses) only when it holds one.
fn json_text<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    if !text.contains("\\u0000") {
        return Ok(text);
    }
    serde_json::to_string(&clean_json(serde_json::to_value(value)?))
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
        let s = &self.sql.quoted;
        let mut select: QueryBuilder<'_, Postgres> =
            QueryBuilder::new(format!("SELECT {COLUMNS} FROM {s}.delivery_log WHERE true"));
        if let Some(outcome) = query.outcome {
            select.push(" AND outcome = ").push_bind(outcome.as_str());
        }
        if let Some(source) = &query.source {
            select
                .push(" AND source = ")
                .push_bind(source.as_str().to_owned());
        }
        if let Some(process) = query.process {
            select.push(" AND process = ").push_bind(*process.as_uuid());
        }
        if let Some(environment) = &query.environment {
            select
                .push(" AND environment = ")
                .push_bind(environment.as_str().to_owned());
        }
        if let Some(since) = query.since {
            select.push(" AND received_us >= ").push_bind(micros_of(since));
        }
        if let Some(until) = query.until {
            select.push(" AND received_us < ").push_bind(micros_of(until));
        }
        if let Some(after) = query.after {
            let (at, id) = after.parts();
            select
                .push(" AND (received_us, id) < (")
                .push_bind(micros_of(at))
                .push(", ")
                .push_bind(*id.as_uuid())
                .push(")");
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX - 1);
        select
            .push(" ORDER BY received_us DESC, id DESC LIMIT ")
            .push_bind(limit.saturating_add(1));
        let rows = self
            .run("listing the delivery log", select.build().fetch_all(&self.pool))
            .await?;
        let mut deliveries = rows.iter().map(record_from).collect::<Result<Vec<_>, _>>()?;
        let next = if deliveries.len() > query.limit {
            deliveries.truncate(query.limit);
            deliveries.last().map(LoggedDelivery::position)
        } else {
            None
        };
        Ok(LogPage { deliveries, next })
    }

    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        let s = &self.sql.quoted;
        let counts = format!(
            "SELECT source, process, outcome, count(*) AS n, max(received_us) AS last \
             FROM {s}.delivery_log WHERE received_us >= $1 GROUP BY source, process, outcome"
        );
        let failures = format!(
            "SELECT DISTINCT ON (source, process) source, process, id, received_us, outcome, code \
             FROM {s}.delivery_log WHERE received_us >= $1 AND outcome IN ('refused', 'dead') \
             ORDER BY source, process, received_us DESC"
        );
        let since = micros_of(since);
        let rows = self
            .run(
                "summarizing the delivery log",
                sqlx::query(&counts).bind(since).fetch_all(&self.pool),
            )
            .await?;
        let mut summaries: std::collections::BTreeMap<(Option<SourceId>, ProcessUuid), SourceSummary> =
            std::collections::BTreeMap::new();
        for row in &rows {
            let (source, process) = (
                source_of(row)?,
                ProcessUuid::from(get::<uuid::Uuid>(row, "process")?),
            );
            let outcome = outcome_of(row)?;
            let (n, last): (i64, i64) = (get(row, "n")?, get(row, "last")?);
            let summary = summaries
                .entry((source.clone(), process))
                .or_insert_with(|| SourceSummary {
                    source,
                    process,
                    counts: Default::default(),
                    last_received_at: time_of_micros(last),
                    last_failure: None,
                });
            summary
                .counts
                .insert(outcome, u64::try_from(n).unwrap_or_default());
            summary.last_received_at = summary.last_received_at.max(time_of_micros(last));
        }
        let rows = self
            .run(
                "summarizing the delivery log",
                sqlx::query(&failures).bind(since).fetch_all(&self.pool),
            )
            .await?;
        for row in &rows {
            let key = (
                source_of(row)?,
                ProcessUuid::from(get::<uuid::Uuid>(row, "process")?),
            );
            if let Some(summary) = summaries.get_mut(&key) {
                summary.last_failure = Some(LastFailure {
                    id: DeliveryId::from(get::<uuid::Uuid>(row, "id")?),
                    received_at: time_of_micros(get(row, "received_us")?),
                    outcome: outcome_of(row)?,
                    code: get(row, "code")?,
                });
            }
        }
        Ok(summaries.into_values().collect())
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

fn source_of(row: &PgRow) -> Result<Option<SourceId>, StoreError> {
    let source: Option<String> = get(row, "source")?;
    source
        .map(|s| {
            SourceId::new(&s)
                .map_err(|_| StoreError::new(format!("the delivery log holds an invalid source id {s:?}")))
        })
        .transpose()
}

fn outcome_of(row: &PgRow) -> Result<LoggedOutcome, StoreError> {
    let outcome: String = get(row, "outcome")?;
    outcome
        .parse()
        .map_err(|_| StoreError::new(format!("the delivery log holds an unknown outcome {outcome:?}")))
}

fn record_from(row: &PgRow) -> Result<LoggedDelivery, StoreError> {
    let decode = |what: &'static str| {
        move |e: serde_json::Error| {
            StoreError::new(format!("decoding the delivery log's {what}")).with_source(e)
        }
    };
    let attempts: serde_json::Value = get(row, "attempts")?;
    let attempts: Vec<Attempt> = serde_json::from_value(attempts).map_err(decode("attempts"))?;
    let headers: Option<serde_json::Value> = get(row, "headers")?;
    let headers: Option<crate::delivery_log::LoggedHeaders> = headers
        .map(serde_json::from_value)
        .transpose()
        .map_err(decode("headers"))?;
    let version: Option<i32> = get(row, "version")?;
    let status: Option<i32> = get(row, "status")?;
    let duration: Option<i64> = get(row, "duration_us")?;
    let instance: Option<String> = get(row, "instance")?;
    let mut record = LoggedDelivery::new(
        DeliveryId::from(get::<uuid::Uuid>(row, "id")?),
        time_of_micros(get(row, "received_us")?),
        EnvironmentId::new(get::<String>(row, "environment")?),
        ProcessUuid::from(get::<uuid::Uuid>(row, "process")?),
        outcome_of(row)?,
    );
    record.updated_at = time_of_micros(get(row, "updated_us")?);
    record.version = version.and_then(|v| u32::try_from(v).ok());
    record.source = source_of(row)?;
    record.sender_id = get(row, "sender_id")?;
    record.event = get(row, "event")?;
    record.status = status.and_then(|s| u16::try_from(s).ok());
    record.code = get(row, "code")?;
    record.problem = get(row, "problem")?;
    record.instance = instance.map(InstanceId::new);
    record.attempts = attempts;
    record.duration =
        duration.map(|d| std::time::Duration::from_micros(u64::try_from(d).unwrap_or_default()));
    record.headers = headers;
    record.payload = get(row, "payload")?;
    Ok(record)
}
