//! [`PostgresStore`] as a [`SourceStore`]: webhook sources in a table,
//! their secrets sealed under the host's encryption keys
//! (`sealing.rs`); adding, replacing and removing them.

use async_trait::async_trait;
use serde_json::Value;

use super::PostgresStore;
use super::queries::{get, storable};
use super::sealing::{EncryptionKey, Sealed};
use crate::id::{EnvironmentId, OrganizationId};
use crate::model::Environment;
use crate::source::{SourceId, SourceScheme, WebhookSource};
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
        let id = source.id().as_str();
        let sealed = source
            .secrets()
            .iter()
            .map(|secret| self.keys.seal(secret, id))
            .collect::<Result<Vec<Sealed>, StoreError>>()?;
        let secrets = serde_json::to_value(&sealed)
            .map_err(|e| StoreError::new("sealed secrets could not be stored").with_source(e))?;
        let scheme = serde_json::to_value(source.scheme())
            .map_err(|e| StoreError::new("a source's scheme could not be stored").with_source(e))?;
        if scheme.to_string().contains("\\u0000") {
            return Err(super::queries::nul_refused("the source's scheme"));
        }
        let rules = stored_rules(source)?;
        let query = sqlx::query(&self.sql.put_source)
            .bind(id)
            .bind(source.environment().organization().as_str())
            .bind(source.environment().id().as_str())
            .bind(source.process().as_uuid())
            .bind(scheme)
            .bind(source.events().map(<[String]>::to_vec))
            .bind(secrets)
            .bind(rules);
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
        let invalid = |what: &str| StoreError::new(format!("stored source {id} has an invalid {what}"));
        let environment = Environment::new(
            EnvironmentId::new(get::<String>(&row, "environment")?),
            OrganizationId::new(get::<String>(&row, "organization")?),
        );
        let process: uuid::Uuid = get(&row, "process")?;
        let scheme: SourceScheme = serde_json::from_value(get::<Value>(&row, "scheme")?)
            .map_err(|e| invalid("scheme").with_source(e))?;
        let sealed: Vec<Sealed> = serde_json::from_value(get::<Value>(&row, "secrets")?)
            .map_err(|e| invalid("secret list").with_source(e))?;
        let secrets = sealed
            .iter()
            .map(|s| self.keys.open(s, id.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let source = WebhookSource::new(id.clone(), environment, process.into(), scheme, secrets)
            .map_err(|e| invalid("definition").with_source(e))?;
        let source = read_rules(source, get::<Option<Value>>(&row, "rules")?)?;
        let events: Option<Vec<String>> = get(&row, "events")?;
        match events {
            Some(events) => source
                .with_events(events)
                .map(Some)
                .map_err(|e| invalid("event list").with_source(e)),
            None => Ok(Some(source)),
        }
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

/// A source's rules as the `rules` column keeps them (`NULL`: none).
#[cfg(feature = "mapping")]
fn stored_rules(source: &WebhookSource) -> Result<Option<Value>, StoreError> {
    let Some(rules) = source.rules() else {
        return Ok(None);
    };
    let rules = serde_json::to_value(rules)
        .map_err(|e| StoreError::new("a source's rules could not be stored").with_source(e))?;
    if rules.to_string().contains("\\u0000") {
        return Err(super::queries::nul_refused("the source's rules"));
    }
    Ok(Some(rules))
}

/// Without the `mapping` feature a source has no rules.
#[cfg(not(feature = "mapping"))]
fn stored_rules(_: &WebhookSource) -> Result<Option<Value>, StoreError> {
    Ok(None)
}

/// `source` with the rules of its row.
#[cfg(feature = "mapping")]
fn read_rules(source: WebhookSource, rules: Option<Value>) -> Result<WebhookSource, StoreError> {
    match rules {
        None => Ok(source),
        Some(rules) => {
            let rules = serde_json::from_value(rules).map_err(|e| {
                StoreError::new(format!("stored source {} has invalid rules", source.id())).with_source(e)
            })?;
            Ok(source.with_rules(rules))
        }
    }
}

/// Without the `mapping` feature, a source stored with rules is refused:
/// starting it without them would hand the engine other variables.
#[cfg(not(feature = "mapping"))]
fn read_rules(source: WebhookSource, rules: Option<Value>) -> Result<WebhookSource, StoreError> {
    match rules {
        None => Ok(source),
        Some(_) => Err(StoreError::new(format!(
            "stored source {} maps its payload: this build lacks the `mapping` feature",
            source.id()
        ))),
    }
}
