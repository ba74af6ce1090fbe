//! A delivery log record as a row of either SQL store holds it: times as
//! microseconds since the Unix epoch, attempts and headers as JSON.

use std::collections::{BTreeMap, HashMap};

use super::Columns;
use crate::delivery_log::{
    Attempt, LastFailure, LogPage, LogQuery, LoggedDelivery, LoggedOutcome, SourceSummary, micros_of,
    time_of_micros,
};
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::source::SourceId;
use crate::store::StoreError;

/// The columns of `delivery_log`, in the order both stores write them.
pub(crate) const COLUMNS: &str = "id, received_us, updated_us, environment, process, version, source, sender_id, \
    event, outcome, status, code, problem, instance, attempts, duration_us, headers, payload";

/// Text either store takes: a NUL (which PostgreSQL's `text` and `jsonb`
/// refuse) becomes U+FFFD, so that a record reads back the same from both.
pub(crate) fn clean(text: &str) -> String {
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

/// The records of a batch, those of one id merged in order: one row each
/// (borrowed as they are when every id is its own, as in most batches).
pub(crate) fn merged(records: &[LoggedDelivery]) -> std::borrow::Cow<'_, [LoggedDelivery]> {
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
pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    if !text.contains("\\u0000") {
        return Ok(text);
    }
    serde_json::to_string(&clean_json(serde_json::to_value(value)?))
}

/// A row's `source`.
pub(crate) fn source_of<R: Columns>(row: &R) -> Result<Option<SourceId>, StoreError> {
    row.opt_text("source")?
        .map(|s| {
            SourceId::new(&s)
                .map_err(|_| StoreError::new(format!("the delivery log holds an invalid source id {s:?}")))
        })
        .transpose()
}

/// A row's `outcome`.
pub(crate) fn outcome_of<R: Columns>(row: &R) -> Result<LoggedOutcome, StoreError> {
    let outcome = row.text("outcome")?;
    outcome
        .parse()
        .map_err(|_| StoreError::new(format!("the delivery log holds an unknown outcome {outcome:?}")))
}

/// A row of `delivery_log` as the record it holds.
pub(crate) fn record_from<R: Columns>(row: &R) -> Result<LoggedDelivery, StoreError> {
    let decode = |what: &'static str| {
        move |e: serde_json::Error| {
            StoreError::new(format!("decoding the delivery log's {what}")).with_source(e)
        }
    };
    let attempts: Vec<Attempt> = serde_json::from_value(row.json("attempts")?).map_err(decode("attempts"))?;
    let headers: Option<crate::delivery_log::LoggedHeaders> = row
        .opt_json("headers")?
        .map(serde_json::from_value)
        .transpose()
        .map_err(decode("headers"))?;
    let mut record = LoggedDelivery::new(
        DeliveryId::from(row.uuid("id")?),
        time_of_micros(row.long("received_us")?),
        EnvironmentId::new(row.text("environment")?),
        ProcessUuid::from(row.uuid("process")?),
        outcome_of(row)?,
    );
    record.updated_at = time_of_micros(row.long("updated_us")?);
    record.version = row.opt_int("version")?.and_then(|v| u32::try_from(v).ok());
    record.source = source_of(row)?;
    record.sender_id = row.opt_text("sender_id")?;
    record.event = row.opt_text("event")?;
    record.status = row.opt_int("status")?.and_then(|s| u16::try_from(s).ok());
    record.code = row.opt_text("code")?;
    record.problem = row.opt_json("problem")?;
    record.instance = row.opt_text("instance")?.map(InstanceId::new);
    record.attempts = attempts;
    record.duration = row
        .opt_long("duration_us")?
        .map(|d| std::time::Duration::from_micros(u64::try_from(d).unwrap_or_default()));
    record.headers = headers;
    record.payload = row.opt_text("payload")?;
    Ok(record)
}

/// The statement of a page of `table` (`LogQuery`'s filters, newest
/// first, one row more than the page to tell whether another follows),
/// the same text in both dialects.
pub(crate) fn page_select<'a, DB>(table: &str, query: &LogQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    uuid::Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut select = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM {table} WHERE 1 = 1"));
    if let Some(outcome) = query.outcome {
        select
            .push(" AND outcome = ")
            .push_bind(outcome.as_str().to_owned());
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
    select
}

/// The page of `rows` as [`page_select`] read them.
pub(crate) fn page_from<R: Columns>(rows: &[R], limit: usize) -> Result<LogPage, StoreError> {
    let mut deliveries = rows.iter().map(record_from).collect::<Result<Vec<_>, _>>()?;
    let next = if deliveries.len() > limit {
        deliveries.truncate(limit);
        deliveries.last().map(LoggedDelivery::position)
    } else {
        None
    };
    Ok(LogPage { deliveries, next })
}

/// The counts of `table` per source, process and outcome since `$1`, the
/// same text in both dialects.
pub(crate) fn summary_counts(table: &str) -> String {
    format!(
        "SELECT source, process, outcome, count(*) AS n, max(received_us) AS last \
         FROM {table} WHERE received_us >= $1 GROUP BY source, process, outcome"
    )
}

/// The summaries of rows of [`summary_counts`] and of the newest failure
/// of each source and process (`source`, `process`, `id`, `received_us`,
/// `outcome`, `code`).
pub(crate) fn summaries_from<R: Columns>(
    counts: &[R],
    failures: &[R],
) -> Result<Vec<SourceSummary>, StoreError> {
    let mut summaries: BTreeMap<(Option<SourceId>, ProcessUuid), SourceSummary> = BTreeMap::new();
    for row in counts {
        let (source, process) = (source_of(row)?, ProcessUuid::from(row.uuid("process")?));
        let outcome = outcome_of(row)?;
        let (n, last) = (row.long("n")?, time_of_micros(row.long("last")?));
        let summary = summaries
            .entry((source.clone(), process))
            .or_insert_with(|| SourceSummary {
                source,
                process,
                counts: Default::default(),
                last_received_at: last,
                last_failure: None,
            });
        summary
            .counts
            .insert(outcome, u64::try_from(n).unwrap_or_default());
        summary.last_received_at = summary.last_received_at.max(last);
    }
    for row in failures {
        let key = (source_of(row)?, ProcessUuid::from(row.uuid("process")?));
        if let Some(summary) = summaries.get_mut(&key) {
            summary.last_failure = Some(LastFailure {
                id: DeliveryId::from(row.uuid("id")?),
                received_at: time_of_micros(row.long("received_us")?),
                outcome: outcome_of(row)?,
                code: row.opt_text("code")?,
            });
        }
    }
    Ok(summaries.into_values().collect())
}
