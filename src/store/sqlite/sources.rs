//! [`SqliteStore`] as a [`SourceStore`]: webhook sources in a table, their
//! secrets sealed as `PostgresStore` seals them (`store/sql/sealing.rs`).

use async_trait::async_trait;

use super::{SqliteStore, now};
use crate::source::{SourceId, WebhookSource};
use crate::store::sql::Columns as _;
use crate::store::sql::sealing::EncryptionKey;
use crate::store::sql::sources::{SourceRow, source_from};
use crate::store::{SourceStore, StoreError};

impl SqliteStore {
    /// Seals source secrets with `key` from now on (and opens rows sealed
    /// under it). To roll in a new key, give the store the new one here and
    /// the old one with [`with_decryption_key`](Self::with_decryption_key),
    /// then [`reseal_sources`](Self::reseal_sources).
    pub fn with_encryption_key(mut self, key: EncryptionKey) -> Self {
        std::sync::Arc::make_mut(&mut self.keys).seal_with(key);
        self
    }

    /// Opens rows sealed under `key` too (an older key, during a roll).
    pub fn with_decryption_key(mut self, key: EncryptionKey) -> Self {
        std::sync::Arc::make_mut(&mut self.keys).open_with(key);
        self
    }

    /// Adds `source`, or replaces the source with its id. Its secrets are
    /// sealed with AES-256-GCM under the store's encryption key, bound to
    /// the source's id; no secret is written in plain text.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store has no encryption key
    /// ([`with_encryption_key`](Self::with_encryption_key)), or the file
    /// cannot be written.
    pub async fn put_source(&self, source: &WebhookSource) -> Result<(), StoreError> {
        let row = SourceRow::of(source, &self.keys)?;
        let events = source
            .events()
            .map(|events| serde_json::to_value(events).unwrap_or_default());
        let query = sqlx::query(
            "INSERT INTO sources (id, organization, environment, process, scheme, events, secrets, rules, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
             organization = excluded.organization, environment = excluded.environment, \
             process = excluded.process, scheme = excluded.scheme, events = excluded.events, \
             secrets = excluded.secrets, rules = excluded.rules, updated_at = excluded.updated_at",
        )
        .bind(source.id().as_str())
        .bind(source.environment().organization().as_str())
        .bind(source.environment().id().as_str())
        .bind(*source.process().as_uuid())
        .bind(row.scheme)
        .bind(events)
        .bind(row.secrets)
        .bind(row.rules)
        .bind(now());
        self.run("storing a source", query.execute(&self.write)).await?;
        Ok(())
    }

    /// Removes the source with id `id`: true if there was one.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn remove_source(&self, id: &SourceId) -> Result<bool, StoreError> {
        let query = sqlx::query("DELETE FROM sources WHERE id = $1").bind(id.as_str());
        let done = self.run("removing a source", query.execute(&self.write)).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every source, its secrets opened with the store's keys, ordered by
    /// id: what moving to another store copies (the other store seals them
    /// under its own key).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when a row cannot be opened (a key missing) or the
    /// file cannot be read.
    pub async fn sources(&self) -> Result<Vec<WebhookSource>, StoreError> {
        let rows = self
            .run(
                "listing sources",
                sqlx::query("SELECT id FROM sources ORDER BY id").fetch_all(&self.read),
            )
            .await?;
        let mut sources = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.text("id")?;
            let id = SourceId::new(&id)
                .map_err(|e| StoreError::new("a stored source id is invalid").with_source(e))?;
            if let Some(source) = self.source(&id).await? {
                sources.push(source);
            }
        }
        Ok(sources)
    }

    /// Seals every source's secrets again under the current encryption
    /// key (after a new one was rolled in), so that the old key can be
    /// retired; how many sources were rewritten.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when a row cannot be opened (a key missing) or the
    /// file cannot be read or written.
    pub async fn reseal_sources(&self) -> Result<u64, StoreError> {
        let Some(current) = self.keys.sealing_id().map(str::to_owned) else {
            return Err(StoreError::new(
                "resealing needs an encryption key: give the store one with SqliteStore::with_encryption_key",
            ));
        };
        let query = sqlx::query(
            "SELECT id FROM sources WHERE EXISTS \
             (SELECT 1 FROM json_each(sources.secrets) WHERE json_extract(value, '$.key') <> $1)",
        )
        .bind(&current);
        let rows = self
            .run("listing sources to reseal", query.fetch_all(&self.read))
            .await?;
        let mut resealed = 0;
        for row in rows {
            let id = row.text("id")?;
            let id = SourceId::new(&id)
                .map_err(|e| StoreError::new("a stored source id is invalid").with_source(e))?;
            if let Some(source) = self.source(&id).await? {
                self.put_source(&source).await?;
                resealed += 1;
            }
        }
        Ok(resealed)
    }
}

#[async_trait]
impl SourceStore for SqliteStore {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        let query = sqlx::query(
            "SELECT organization, environment, process, scheme, events, secrets, rules FROM sources WHERE id = $1",
        )
        .bind(id.as_str());
        let Some(row) = self
            .run("reading a source", query.fetch_optional(&self.read))
            .await?
        else {
            return Ok(None);
        };
        let events = row
            .opt_json("events")?
            .map(serde_json::from_value::<Vec<String>>)
            .transpose()
            .map_err(|e| {
                StoreError::new(format!("stored source {id} has an invalid event list")).with_source(e)
            })?;
        source_from(&row, id, &self.keys, events).map(Some)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
