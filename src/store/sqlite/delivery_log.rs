//! [`SqliteStore`] as a [`DeliveryLog`]: the `delivery_log` table, written
//! a batch per transaction, records of an id already there merged by the
//! domain's own rule ([`LoggedDelivery::merge`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::Sqlite;

use super::SqliteStore;
use crate::delivery_log::{DeliveryLog, LogPage, LogQuery, LoggedDelivery, SourceSummary, micros_of};
use crate::id::DeliveryId;
use crate::store::StoreError;
use crate::store::sql::delivery_log::{
    COLUMNS, clean, json_text, merged, page_from, page_select, record_from, summaries_from, summary_counts,
};

/// The most records one `INSERT` carries (18 parameters each, under
/// SQLite's 32,766).
const ROWS_PER_INSERT: usize = 256;

/// `records` as rows of one multi-row `INSERT OR REPLACE`.
fn insert<'a>(
    records: impl ExactSizeIterator<Item = &'a LoggedDelivery>,
) -> Result<sqlx::QueryBuilder<'static, Sqlite>, StoreError> {
    let encode = |what: &'static str| move |e: serde_json::Error| StoreError::new(what).with_source(e);
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        rows.push((
            r,
            r.problem
                .as_ref()
                .map(json_text)
                .transpose()
                .map_err(encode("encoding a problem document"))?,
            json_text(&r.attempts).map_err(encode("encoding attempts"))?,
            r.headers
                .as_ref()
                .map(json_text)
                .transpose()
                .map_err(encode("encoding headers"))?,
        ));
    }
    let mut insert = sqlx::QueryBuilder::new(format!("INSERT OR REPLACE INTO delivery_log ({COLUMNS}) "));
    insert.push_values(rows, |mut b, (r, problem, attempts, headers)| {
        b.push_bind(*r.id.as_uuid())
            .push_bind(micros_of(r.received_at))
            .push_bind(micros_of(r.updated_at))
            .push_bind(clean(r.environment.as_str()))
            .push_bind(*r.process.as_uuid())
            .push_bind(r.version.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
            .push_bind(r.source.as_ref().map(|s| s.as_str().to_owned()))
            .push_bind(r.sender_id.as_deref().map(clean))
            .push_bind(r.event.as_deref().map(clean))
            .push_bind(r.outcome.as_str())
            .push_bind(r.status.map(i32::from))
            .push_bind(r.code.clone())
            .push_bind(problem)
            .push_bind(r.instance.as_ref().map(|i| clean(i.as_str())))
            .push_bind(attempts)
            .push_bind(
                r.duration
                    .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            )
            .push_bind(headers)
            .push_bind(r.payload.as_deref().map(clean));
    });
    Ok(insert)
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    /// One transaction a batch: the rows of ids already logged are read
    /// and merged with the new records, then every record is written. The
    /// transaction takes the file's write lock before it reads (`BEGIN
    /// IMMEDIATE`): one that read first could not write once another
    /// process (`webhook_server admin`) had written in between.
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows = merged(records);
        let work = async {
            let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
            let mut written = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                let mut select = sqlx::QueryBuilder::<Sqlite>::new(format!(
                    "SELECT {COLUMNS} FROM delivery_log WHERE id IN ("
                ));
                let mut ids = select.separated(", ");
                for r in chunk {
                    ids.push_bind(*r.id.as_uuid());
                }
                select.push(")");
                let found = select.build().fetch_all(&mut *tx).await?;
                written.push((chunk, found));
            }
            Ok::<_, sqlx::Error>((tx, written))
        };
        let (mut tx, written) = self.run("reading the delivery log", work).await?;
        let mut batches = Vec::with_capacity(written.len());
        for (chunk, found) in written {
            // Only a record whose id is logged already is copied, to be
            // merged into what the row holds.
            let mut earlier = found
                .iter()
                .map(|row| record_from(row).map(|r| (r.id, r)))
                .collect::<Result<HashMap<_, _>, _>>()?;
            let chunk: Vec<Cow<'_, LoggedDelivery>> = chunk
                .iter()
                .map(|record| match earlier.remove(&record.id) {
                    Some(mut row) => {
                        row.merge(record.clone());
                        Cow::Owned(row)
                    }
                    None => Cow::Borrowed(record),
                })
                .collect();
            batches.push(insert(chunk.iter().map(AsRef::as_ref))?);
        }
        let work = async {
            for mut batch in batches {
                batch.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        };
        self.run("writing the delivery log", work).await
    }

    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM delivery_log WHERE id = $1");
        let query = sqlx::query(&sql).bind(*id.as_uuid());
        let row = self
            .run("reading the delivery log", query.fetch_optional(&self.read))
            .await?;
        row.as_ref().map(record_from).transpose()
    }

    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let mut select = page_select::<Sqlite>("delivery_log", query);
        let rows = self
            .run("listing the delivery log", select.build().fetch_all(&self.read))
            .await?;
        page_from(&rows, query.limit)
    }

    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        let since = micros_of(since);
        let counts = summary_counts("delivery_log");
        // SQLite takes a bare column of a `max()` group from the row that
        // holds the maximum: the newest failure of each source and process.
        let failures = "SELECT source, process, id, max(received_us) AS received_us, outcome, code \
             FROM delivery_log WHERE received_us >= $1 AND outcome IN ('refused', 'dead') \
             GROUP BY source, process";
        let counts = self
            .run(
                "summarizing the delivery log",
                sqlx::query(&counts).bind(since).fetch_all(&self.read),
            )
            .await?;
        let failures = self
            .run(
                "summarizing the delivery log",
                sqlx::query(failures).bind(since).fetch_all(&self.read),
            )
            .await?;
        summaries_from(&counts, &failures)
    }

    async fn purge(&self, before: SystemTime, batch: usize) -> Result<u64, StoreError> {
        let query = sqlx::query(
            "DELETE FROM delivery_log WHERE id IN (SELECT id FROM delivery_log WHERE received_us < $1 LIMIT $2)",
        )
        .bind(micros_of(before))
        .bind(i64::try_from(batch).unwrap_or(i64::MAX));
        let done = self
            .run("purging the delivery log", query.execute(&self.write))
            .await?;
        Ok(done.rows_affected())
    }
}
