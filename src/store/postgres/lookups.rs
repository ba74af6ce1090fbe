//! [`PostgresStore`] as the three store traits: models and deployments,
//! tokens, and idempotency keys.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::PostgresStore;
use super::queries::{get, model_from};
use crate::id::{EnvironmentId, OrganizationId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::outcome::StartOutcome;
use crate::store::idempotency::{outcome_from_stored, stored_outcome};
use crate::store::sql::model_with_deployment_from;
use crate::store::{
    IdempotencyKey, IdempotencyStore, ModelStore, PayloadFingerprint, Reservation, StoreError, TokenStore,
};
use crate::token::EnvironmentToken;

impl PostgresStore {
    pub(super) async fn fetch_model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        let query = sqlx::query(&self.sql.model_with_deployment)
            .bind(uuid.as_uuid())
            .bind(environment.as_str());
        let row = self
            .run("reading a model", query.fetch_optional(&self.pool))
            .await?;
        row.map(|row| model_with_deployment_from(&row, *uuid, environment))
            .transpose()
    }
}

#[async_trait]
impl ModelStore for PostgresStore {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        let query = sqlx::query(&self.sql.model).bind(uuid.as_uuid());
        let row = self
            .run("reading a model", query.fetch_optional(&self.pool))
            .await?;
        row.map(|row| model_from(&row, *uuid)).transpose()
    }

    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError> {
        Ok(self
            .model_with_deployment(uuid, environment)
            .await?
            .and_then(|(_, deployment)| deployment))
    }

    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        self.listen();
        let key = (*uuid, environment.clone());
        let fetch = self.fetch_model_with_deployment(uuid, environment);
        self.cache
            .through(&self.cache.models, key, self.cache_ttl, |_| true, fetch)
            .await
    }

    /// A cached answer, without a future. (Nothing is cached before the
    /// first `model_with_deployment`, which starts the listener.)
    fn model_with_deployment_now(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Option<Result<Option<(ProcessModel, Option<Deployment>)>, StoreError>> {
        let key = (*uuid, environment.clone());
        self.cache.models.get(&key, self.cache_ttl).map(Ok)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        self.listen();
        let digest = token.digest();
        let fetch = async {
            let query = sqlx::query(&self.sql.token).bind(&digest.as_bytes()[..]);
            let row = self
                .run("reading a token", query.fetch_optional(&self.pool))
                .await?;
            row.map(|row| {
                Ok::<_, StoreError>(Environment::new(
                    EnvironmentId::new(get::<String>(&row, "environment")?),
                    OrganizationId::new(get::<String>(&row, "organization")?),
                ))
            })
            .transpose()
        };
        // Unknown tokens are not cached: guesses must not fill memory.
        let found = self
            .cache
            .through(&self.cache.tokens, digest, self.cache_ttl, Option::is_some, fetch)
            .await?;
        Ok(found.map(|env| self.with_secrets(env)))
    }

    /// A cached answer, without a future (known tokens only, as cached).
    fn environment_now(&self, token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        let found = self.cache.tokens.get(&token.digest(), self.cache_ttl)?;
        Some(Ok(found.map(|env| self.with_secrets(env))))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

impl PostgresStore {
    /// A reservation of `key`, or, with `held_for`, the takeover of its
    /// reservation in progress for `fingerprint` made at least that long ago.
    async fn reserve_or_take(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Option<Duration>,
    ) -> Result<Reservation, StoreError> {
        // One statement; it finds no row only when another replica
        // inserted the key after this statement's snapshot began: ask again.
        for _ in 0..3 {
            let query = sqlx::query(&self.sql.reserve)
                .bind(key.environment().as_str())
                .bind(key.process().as_uuid())
                .bind(key.key())
                .bind(&fingerprint.as_bytes()[..])
                .bind(self.ttl.as_secs_f64())
                .bind(self.lease.as_secs_f64())
                .bind(held_for.map(|held_for| held_for.as_secs_f64()));
            let row = self
                .run("reserving a key", query.fetch_optional(&self.pool))
                .await?;
            let Some(row) = row else { continue };
            if get::<bool>(&row, "reserved")? {
                return Ok(Reservation::Reserved);
            }
            let held: Vec<u8> = get(&row, "fingerprint")?;
            let held = <[u8; 32]>::try_from(held.as_slice())
                .map(PayloadFingerprint::from_bytes)
                .map_err(|_| StoreError::new("postgres: a stored fingerprint is not 32 bytes"))?;
            return Ok(match get::<Option<Value>>(&row, "outcome")? {
                None => Reservation::InProgress { fingerprint: held },
                Some(outcome) => Reservation::Completed {
                    fingerprint: held,
                    outcome: outcome_from_stored(&outcome)?,
                },
            });
        }
        Err(StoreError::new(
            "postgres: a key changed hands three times during one reservation",
        ))
    }
}

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, None).await
    }

    /// One statement, as `reserve`, that also takes over a reservation in
    /// progress for the same fingerprint made at least `held_for` ago (the
    /// row is locked by the upsert: of concurrent takers one updates it,
    /// the others then find it young).
    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, Some(held_for)).await
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        let stored = stored_outcome(outcome);
        let query = sqlx::query(&self.sql.complete)
            .bind(key.environment().as_str())
            .bind(key.process().as_uuid())
            .bind(key.key())
            .bind(stored);
        let done = self.run("completing a key", query.execute(&self.pool)).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            ));
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let query = sqlx::query(&self.sql.release)
            .bind(key.environment().as_str())
            .bind(key.process().as_uuid())
            .bind(key.key());
        self.run("releasing a key", query.execute(&self.pool)).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
