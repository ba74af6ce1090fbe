//! [`PostgresStore`] as a [`SourceStore`]: webhook sources in a table,
//! their secrets sealed under the host's encryption keys
//! (`store/sql/sealing.rs`); adding, replacing and removing them.

use async_trait::async_trait;

use super::PostgresStore;
use super::queries::{get, storable};
use crate::source::{SourceId, WebhookSource};
use crate::store::sql::sealing::EncryptionKey;
use crate::store::sql::sources::{SourceRow, source_from};
use crate::store::{SourceStore, StoreError};

impl PostgresStore {
    /// Seals source secrets with `key` from now on (and opens rows sealed
    /// under it). Every replica that reads sources needs the keys their
    /// rows were sealed under; to roll in a new key, give replicas the new
    /// one here and the old one with
    /// [`with_decryption_key`](Self::with_decryption_key), then
    /// [`reseal_sources`](Self::reseal_sources).
    pub fn with_encryption_key(mut self, key: EncryptionKey) -> Self {
        std::sync::Arc::make_mut(&mut self.keys).seal_with(key);
        self
    }

    /// Opens rows sealed under `key` too (an older key, during a roll).
    pub fn with_decryption_key(mut self, key: EncryptionKey) -> Self {
        std::sync::Arc::make_mut(&mut self.keys).open_with(key);
        self
    }

    /// Adds `source`, or replaces the source with its id (to rotate its
    /// secrets, put it with the new and the old secret; later, the new
    /// alone). Its secrets are sealed with AES-256-GCM under the store's
    /// encryption key, bound to the source's id; no secret is written in
    /// plain text.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store has no encryption key
    /// ([`with_encryption_key`](Self::with_encryption_key)): it refuses to
    /// store a secret it cannot seal. Or when the database cannot write it.
    pub async fn put_source(&self, source: &WebhookSource) -> Result<(), StoreError> {
        storable(
            "the source's organization",
            source.environment().organization().as_str(),
        )?;
        storable("the source's environment", source.environment().id().as_str())?;
        for event in source.events().unwrap_or_default() {
            storable("a source's event", event)?;
        }
        let row = SourceRow::of(source, &self.keys)?;
        if row.scheme.to_string().contains("\\u0000") {
            return Err(super::queries::nul_refused("the source's scheme"));
        }
        if row
            .rules
            .as_ref()
            .is_some_and(|r| r.to_string().contains("\\u0000"))
        {
            return Err(super::queries::nul_refused("the source's rules"));
        }
        let query = sqlx::query(&self.sql.put_source)
            .bind(source.id().as_str())
            .bind(source.environment().organization().as_str())
            .bind(source.environment().id().as_str())
            .bind(source.process().as_uuid())
            .bind(row.scheme)
            .bind(source.events().map(<[String]>::to_vec))
            .bind(row.secrets)
            .bind(row.rules);
        self.run("storing a source", query.execute(&self.pool)).await?;
        Ok(())
    }

    /// Removes the source with id `id`: true if there was one.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot write it.
    pub async fn remove_source(&self, id: &SourceId) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.remove_source).bind(id.as_str());
        let done = self.run("removing a source", query.execute(&self.pool)).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Seals every source's secrets again under the current encryption
    /// key (after a new one was rolled in), so that the old key can be
    /// retired; how many sources were rewritten.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when a row cannot be opened (a key missing) or the
    /// database cannot answer.
    pub async fn reseal_sources(&self) -> Result<u64, StoreError> {
        let Some(current) = self.keys.sealing_id().map(str::to_owned) else {
            return Err(StoreError::new(
                "resealing needs an encryption key: give the store one with PostgresStore::with_encryption_key",
            ));
        };
        let query = format!(
            "SELECT id FROM {}.sources WHERE jsonb_path_exists(secrets, '$[*] ? (@.key != $k)', jsonb_build_object('k', $1::text))",
            self.sql.quoted
        );
        let rows = self
            .run(
                "listing sources to reseal",
                sqlx::query(&query).bind(&current).fetch_all(&self.pool),
            )
            .await?;
        let mut resealed = 0;
        for row in rows {
            let id: String = get(&row, "id")?;
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
impl SourceStore for PostgresStore {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        let query = sqlx::query(&self.sql.source).bind(id.as_str());
        let Some(row) = self
            .run("reading a source", query.fetch_optional(&self.pool))
            .await?
        else {
            return Ok(None);
        };
        let events: Option<Vec<String>> = get(&row, "events")?;
        source_from(&row, id, &self.keys, events).map(Some)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
