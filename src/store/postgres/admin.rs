//! What an operator writes through [`PostgresStore`]: models,
//! deployments, tokens, signing secrets, and the purge of expired
//! idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;

use super::queries::{Statements, deployment_from, get, nul_refused, storable};
use super::{PostgresStore, bounded};
use crate::id::{EnvironmentId, OrganizationId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::store::StoreError;
use crate::token::{EnvironmentToken, TokenDigest};

impl PostgresStore {
    /// Adds a model, or replaces the organization and name of the model
    /// with its UUID.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot write it.
    pub async fn insert_model(&self, model: ProcessModel) -> Result<(), StoreError> {
        storable("the model's organization", model.organization().as_str())?;
        storable("the model's name", model.name())?;
        let query = sqlx::query(&self.sql.insert_model)
            .bind(model.uuid().as_uuid())
            .bind(model.organization().as_str())
            .bind(model.name());
        self.run("inserting a model", query.execute(&self.pool)).await?;
        self.announce().await
    }

    /// Deploys a version: from now on, starts of its process in its
    /// environment use it. Earlier deployments stay in the history
    /// ([`deployments`](Self::deployments)). Deploying the same deployment
    /// (the same id) again changes nothing, so seeding is idempotent.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the process has no model, or the database
    /// cannot write it.
    pub async fn deploy(&self, deployment: Deployment) -> Result<(), StoreError> {
        storable("the environment", deployment.environment().as_str())?;
        storable("the definition key", deployment.definition_key())?;
        let form = serde_json::to_value(deployment.start_form())
            .map_err(|e| StoreError::new("the start form could not be stored").with_source(e))?;
        if form.to_string().contains("\\u0000") {
            return Err(nul_refused("the start form"));
        }
        let version = crate::store::sql::stored_version(deployment.version())?;
        let query = sqlx::query(&self.sql.deploy)
            .bind(*deployment.id().as_uuid())
            .bind(deployment.process().as_uuid())
            .bind(deployment.environment().as_str())
            .bind(version)
            .bind(form)
            .bind(deployment.definition_key());
        self.run("deploying (is the model inserted?)", query.execute(&self.pool))
            .await?;
        self.announce().await
    }

    /// Every deployment of `process` to `environment`, oldest first.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot answer.
    pub async fn deployments(
        &self,
        process: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Vec<Deployment>, StoreError> {
        let query = sqlx::query(&self.sql.deployments)
            .bind(process.as_uuid())
            .bind(environment.as_str());
        let rows = self
            .run("reading deployments", query.fetch_all(&self.pool))
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
    /// A [`StoreError`] when the database cannot answer.
    pub async fn deployed(&self) -> Result<Vec<(ProcessModel, Deployment)>, StoreError> {
        let s = &self.sql.quoted;
        let query = format!(
            "SELECT DISTINCT ON (d.process, d.environment) m.uuid, m.organization, m.name, d.environment, \
             d.id, d.version, d.start_form, d.definition_key \
             FROM {s}.deployments d JOIN {s}.models m ON m.uuid = d.process \
             ORDER BY d.process, d.environment, d.seq DESC"
        );
        let rows = self
            .run("listing deployments", sqlx::query(&query).fetch_all(&self.pool))
            .await?;
        rows.iter()
            .map(|row| {
                let uuid: uuid::Uuid = get(row, "uuid")?;
                let model = ProcessModel::new(
                    uuid.into(),
                    OrganizationId::new(get::<String>(row, "organization")?),
                    get::<String>(row, "name")?,
                );
                let environment = EnvironmentId::new(get::<String>(row, "environment")?);
                Ok((model, deployment_from(row, uuid.into(), environment)?))
            })
            .collect()
    }

    /// Stores `token` (as its digest) for `environment`, adding the
    /// environment if it is new. The environment's signing secrets are held
    /// by this replica, not stored (see the type's docs).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot write it.
    pub async fn insert(&self, token: &EnvironmentToken, environment: Environment) -> Result<(), StoreError> {
        self.insert_digest(token.digest(), environment).await
    }

    /// [`insert`](Self::insert) with the token's digest only.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot write it.
    pub async fn insert_digest(
        &self,
        digest: TokenDigest,
        environment: Environment,
    ) -> Result<(), StoreError> {
        storable("the organization", environment.organization().as_str())?;
        storable("the environment", environment.id().as_str())?;
        self.load_signing_secrets(&environment);
        let query = sqlx::query(&self.sql.insert_token)
            .bind(&digest.as_bytes()[..])
            .bind(environment.organization().as_str())
            .bind(environment.id().as_str());
        self.run("inserting a token", query.execute(&self.pool)).await?;
        self.announce().await
    }

    /// Revokes `token` on every replica: true if it was stored.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot write it.
    pub async fn revoke(&self, token: &EnvironmentToken) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.revoke).bind(token.digest().as_bytes().to_vec());
        let done = self.run("revoking a token", query.execute(&self.pool)).await?;
        self.announce().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives this replica the signing secrets of `environment` (as the
    /// environment carries them; none removes them). Each replica does this
    /// itself, from the host's secret store.
    pub fn load_signing_secrets(&self, environment: &Environment) {
        self.secrets.load(environment);
    }

    /// Deletes up to `batch` expired idempotency keys, skipping rows other
    /// transactions hold; returns how many were deleted.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot answer.
    pub async fn purge_expired(&self, batch: u32) -> Result<u64, StoreError> {
        purge(&self.pool, &self.sql, self.ttl, self.timeout, batch).await
    }

    /// Runs [`purge_expired`](Self::purge_expired) in batches of 1,000 every
    /// `every`, until the store and all its clones are dropped (the task
    /// holds none of them). Errors are logged and retried at the next round.
    pub fn spawn_purger(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let (pool, ttl, timeout) = (self.pool.clone(), self.ttl, self.timeout);
        let sql = Arc::downgrade(&self.sql);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Every clone of the store holds `sql`: once it is gone, so
                // is the store.
                let Some(sql) = sql.upgrade() else { return };
                loop {
                    match purge(&pool, &sql, ttl, timeout, 1_000).await {
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
pub(super) async fn purge(
    pool: &PgPool,
    sql: &Statements,
    ttl: Duration,
    timeout: Duration,
    batch: u32,
) -> Result<u64, StoreError> {
    let query = sqlx::query(&sql.purge)
        .bind(ttl.as_secs_f64())
        .bind(i64::from(batch));
    let done = bounded("purging expired keys", query.execute(pool), timeout).await?;
    Ok(done.rows_affected())
}
