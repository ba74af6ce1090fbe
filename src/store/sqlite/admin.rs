//! What an operator writes through [`SqliteStore`]: models, deployments,
//! tokens, signing secrets, and the purge of expired idempotency keys.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;

use super::{SqliteStore, now};
use crate::id::{EnvironmentId, OrganizationId, ProcessUuid};
use crate::idempotency::{IdempotencyKey, PayloadFingerprint};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::outcome::StartOutcome;
use crate::store::StoreError;
use crate::store::idempotency::outcome_from_stored;
use crate::store::sql::{Columns as _, bounded, deployment_from, model_from, stored_version};
use crate::token::{EnvironmentToken, TokenDigest};

impl SqliteStore {
    /// Adds a model, or replaces the organization and name of the model
    /// with its UUID.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn insert_model(&self, model: ProcessModel) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO models (uuid, organization, name) VALUES ($1, $2, $3) \
             ON CONFLICT (uuid) DO UPDATE SET organization = excluded.organization, name = excluded.name",
        )
        .bind(*model.uuid().as_uuid())
        .bind(model.organization().as_str())
        .bind(model.name());
        self.run("inserting a model", query.execute(&self.write)).await?;
        self.cache.clear();
        Ok(())
    }

    /// Deploys a version: from now on, starts of its process in its
    /// environment use it. Earlier deployments stay in the history
    /// ([`deployments`](Self::deployments)); deploying the same deployment
    /// (the same id) again changes nothing.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the process has no model, or the file cannot
    /// be written.
    pub async fn deploy(&self, deployment: Deployment) -> Result<(), StoreError> {
        let form = serde_json::to_value(deployment.start_form())
            .map_err(|e| StoreError::new("the start form could not be stored").with_source(e))?;
        let query = sqlx::query(
            "INSERT INTO deployments (id, process, environment, version, start_form, definition_key, deployed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(*deployment.id().as_uuid())
        .bind(*deployment.process().as_uuid())
        .bind(deployment.environment().as_str())
        .bind(stored_version(deployment.version())?)
        .bind(form)
        .bind(deployment.definition_key())
        .bind(now());
        self.run("deploying (is the model inserted?)", query.execute(&self.write))
            .await?;
        self.cache.clear();
        Ok(())
    }

    /// Every deployment of `process` to `environment`, oldest first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be read.
    pub async fn deployments(
        &self,
        process: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Vec<Deployment>, StoreError> {
        let query = sqlx::query(
            "SELECT id, version, start_form, definition_key FROM deployments \
             WHERE process = $1 AND environment = $2 ORDER BY seq",
        )
        .bind(*process.as_uuid())
        .bind(environment.as_str());
        let rows = self
            .run("reading deployments", query.fetch_all(&self.read))
            .await?;
        rows.iter()
            .map(|row| deployment_from(row, *process, environment.clone()))
            .collect()
    }

    /// What is deployed where: the latest deployment of each process in
    /// each environment, with its model, ordered by process and
    /// environment.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be read.
    pub async fn deployed(&self) -> Result<Vec<(ProcessModel, Deployment)>, StoreError> {
        let query = sqlx::query(
            "SELECT m.uuid, m.organization, m.name, d.environment, d.id, d.version, d.start_form, d.definition_key \
             FROM deployments d JOIN models m ON m.uuid = d.process \
             WHERE d.seq = (SELECT max(seq) FROM deployments l WHERE l.process = d.process AND l.environment = d.environment) \
             ORDER BY d.process, d.environment",
        );
        let rows = self
            .run("listing deployments", query.fetch_all(&self.read))
            .await?;
        rows.iter()
            .map(|row| {
                let uuid = ProcessUuid::from(row.uuid("uuid")?);
                let environment = EnvironmentId::new(row.text("environment")?);
                Ok((model_from(row, uuid)?, deployment_from(row, uuid, environment)?))
            })
            .collect()
    }

    /// Stores `token` (as its digest) for `environment`, adding the
    /// environment if it is new. The environment's signing secrets are held
    /// in memory, not stored.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn insert(&self, token: &EnvironmentToken, environment: Environment) -> Result<(), StoreError> {
        self.insert_digest(token.digest(), environment).await
    }

    /// [`insert`](Self::insert) with the token's digest only.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn insert_digest(
        &self,
        digest: TokenDigest,
        environment: Environment,
    ) -> Result<(), StoreError> {
        self.load_signing_secrets(&environment);
        let (organization, id) = (environment.organization().as_str(), environment.id().as_str());
        let work = async {
            let mut tx = self.write.begin().await?;
            sqlx::query("INSERT INTO environments (organization, id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(organization)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO tokens (digest, organization, environment, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (digest) DO UPDATE SET organization = excluded.organization, \
                 environment = excluded.environment",
            )
            .bind(&digest.as_bytes()[..])
            .bind(organization)
            .bind(id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        self.run("inserting a token", work).await?;
        self.cache.clear();
        Ok(())
    }

    /// Revokes `token`: true if it was stored.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn revoke(&self, token: &EnvironmentToken) -> Result<bool, StoreError> {
        let query =
            sqlx::query("DELETE FROM tokens WHERE digest = $1").bind(token.digest().as_bytes().to_vec());
        let done = self.run("revoking a token", query.execute(&self.write)).await?;
        self.cache.clear();
        Ok(done.rows_affected() > 0)
    }

    /// Every stored token's digest and its environment (without signing
    /// secrets, which are not stored), ordered by organization and
    /// environment: what moving to another store copies.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be read.
    pub async fn tokens(&self) -> Result<Vec<(TokenDigest, Environment)>, StoreError> {
        let query = sqlx::query(
            "SELECT digest, organization, environment FROM tokens ORDER BY organization, environment, created_at",
        );
        let rows = self.run("listing tokens", query.fetch_all(&self.read)).await?;
        rows.iter()
            .map(|row| {
                let digest: Vec<u8> = crate::store::sql::column(row, "digest")?;
                let digest = <[u8; 32]>::try_from(digest.as_slice())
                    .map_err(|_| StoreError::new("sqlite: a stored token digest is not 32 bytes"))?;
                Ok((
                    TokenDigest::from_bytes(digest),
                    Environment::new(
                        EnvironmentId::new(row.text("environment")?),
                        OrganizationId::new(row.text("organization")?),
                    ),
                ))
            })
            .collect()
    }

    /// Every idempotency key whose start completed and has not expired,
    /// with its payload's fingerprint and outcome, oldest first: what
    /// moving to another store copies, so that a redelivery after the move
    /// still replays.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be read.
    pub async fn completed_keys(
        &self,
    ) -> Result<Vec<(IdempotencyKey, PayloadFingerprint, StartOutcome)>, StoreError> {
        let query = sqlx::query(
            "SELECT environment, process, key, fingerprint, outcome FROM idempotency_keys \
             WHERE outcome IS NOT NULL AND reserved_at > $1 ORDER BY reserved_at",
        )
        .bind(now() - self.ttl.as_secs_f64());
        let rows = self
            .run("listing idempotency keys", query.fetch_all(&self.read))
            .await?;
        rows.iter()
            .map(|row| {
                let fingerprint: Vec<u8> = crate::store::sql::column(row, "fingerprint")?;
                let fingerprint = <[u8; 32]>::try_from(fingerprint.as_slice())
                    .map_err(|_| StoreError::new("sqlite: a stored fingerprint is not 32 bytes"))?;
                let key = IdempotencyKey::new(
                    EnvironmentId::new(row.text("environment")?),
                    ProcessUuid::from(row.uuid("process")?),
                    row.text("key")?,
                );
                let outcome = outcome_from_stored(&row.json("outcome")?)?;
                Ok((key, PayloadFingerprint::from_bytes(fingerprint), outcome))
            })
            .collect()
    }

    /// Gives this store the signing secrets of `environment` (as the
    /// environment carries them; none removes them), from the host's
    /// secret store.
    pub fn load_signing_secrets(&self, environment: &Environment) {
        self.secrets.load(environment);
    }

    /// Deletes up to `batch` expired idempotency keys; how many were
    /// deleted.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be written.
    pub async fn purge_expired(&self, batch: u32) -> Result<u64, StoreError> {
        purge(&self.write, self.ttl, self.timeout, batch).await
    }

    /// Runs [`purge_expired`](Self::purge_expired) in batches of 1,000
    /// every `every`, until the store and all its clones are dropped (the
    /// task holds none of them). Errors are logged and retried at the next
    /// round.
    pub fn spawn_purger(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let (write, ttl, timeout) = (self.write.clone(), self.ttl, self.timeout);
        let path = std::sync::Arc::downgrade(&self.path);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Every clone of the store holds `path`: once it is gone,
                // so is the store.
                if path.strong_count() == 0 {
                    return;
                }
                loop {
                    match purge(&write, ttl, timeout, 1_000).await {
                        Ok(1_000) => continue,
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(target: "process_webhook", error = %error, "purging idempotency keys failed");
                            break;
                        }
                    }
                }
            }
        })
    }
}

/// Deletes up to `batch` keys older than `ttl`; how many were deleted.
async fn purge(write: &SqlitePool, ttl: Duration, timeout: Duration, batch: u32) -> Result<u64, StoreError> {
    let query = sqlx::query(
        "DELETE FROM idempotency_keys WHERE rowid IN \
         (SELECT rowid FROM idempotency_keys WHERE reserved_at <= $1 LIMIT $2)",
    )
    .bind(now() - ttl.as_secs_f64())
    .bind(i64::from(batch));
    let done = bounded("sqlite", "purging expired keys", query.execute(write), timeout).await?;
    Ok(done.rows_affected())
}
