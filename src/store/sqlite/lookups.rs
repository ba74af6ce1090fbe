//! [`SqliteStore`] as the three store traits: models and deployments,
//! tokens, and idempotency keys.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::SqliteStore;
use super::keys::{self, KeyWrite, Rules};
use crate::id::{EnvironmentId, OrganizationId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::outcome::StartOutcome;
use crate::store::idempotency::{outcome_from_stored, stored_outcome};
use crate::store::sql::{Columns as _, model_from, model_with_deployment_from};
use crate::store::{
    IdempotencyKey, IdempotencyStore, ModelStore, PayloadFingerprint, Reservation, StoreError, TokenStore,
};
use crate::token::EnvironmentToken;

#[async_trait]
impl ModelStore for SqliteStore {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        let query =
            sqlx::query("SELECT organization, name FROM models WHERE uuid = $1").bind(*uuid.as_uuid());
        let row = self
            .run("reading a model", query.fetch_optional(&self.read))
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

    /// One query (or the cache): the model and its latest deployment in
    /// `environment`.
    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        let fetch = async {
            let query = sqlx::query(
                "SELECT m.organization, m.name, d.id, d.version, d.start_form, d.definition_key \
                 FROM models m LEFT JOIN deployments d ON d.seq = \
                   (SELECT max(seq) FROM deployments WHERE process = m.uuid AND environment = $2) \
                 WHERE m.uuid = $1",
            )
            .bind(*uuid.as_uuid())
            .bind(environment.as_str());
            let row = self
                .run("reading a model", query.fetch_optional(&self.read))
                .await?;
            row.map(|row| model_with_deployment_from(&row, *uuid, environment))
                .transpose()
        };
        let key = (*uuid, environment.clone());
        self.cache
            .through(&self.cache.models, key, self.cache_ttl, |_| true, fetch)
            .await
    }

    /// A cached answer, without a future.
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
impl TokenStore for SqliteStore {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        let digest = token.digest();
        let fetch = async {
            let query = sqlx::query("SELECT organization, environment FROM tokens WHERE digest = $1")
                .bind(digest.as_bytes().to_vec());
            let row = self
                .run("reading a token", query.fetch_optional(&self.read))
                .await?;
            row.map(|row| {
                Ok::<_, StoreError>(Environment::new(
                    EnvironmentId::new(row.text("environment")?),
                    OrganizationId::new(row.text("organization")?),
                ))
            })
            .transpose()
        };
        // Unknown tokens are not cached: guesses must not fill memory.
        let found = self
            .cache
            .through(&self.cache.tokens, digest, self.cache_ttl, Option::is_some, fetch)
            .await?;
        Ok(found.map(|env| self.secrets.attach(env)))
    }

    /// A cached answer, without a future (known tokens only, as cached).
    fn environment_now(&self, token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        let found = self.cache.tokens.get(&token.digest(), self.cache_ttl)?;
        Some(Ok(found.map(|env| self.secrets.attach(env))))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

impl SqliteStore {
    /// A reservation of `key`, or, with `held_for`, the takeover of its
    /// reservation in progress for `fingerprint` made at least that long
    /// ago, by the keys' writer (`keys.rs`).
    async fn reserve_or_take(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Option<Duration>,
    ) -> Result<Reservation, StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = KeyWrite::Reserve {
            key: key.clone(),
            fingerprint,
            held_for,
            rules: Rules {
                ttl: self.ttl,
                lease: self.lease,
            },
            reply,
        };
        let Some(row) = self.write_key("reserving a key", write, answer).await? else {
            return Ok(Reservation::Reserved);
        };
        let row = row.ok_or_else(|| StoreError::new("sqlite: a key vanished during its reservation"))?;
        let held: Vec<u8> = crate::store::sql::column(&row, "fingerprint")?;
        let held = <[u8; 32]>::try_from(held.as_slice())
            .map(PayloadFingerprint::from_bytes)
            .map_err(|_| StoreError::new("sqlite: a stored fingerprint is not 32 bytes"))?;
        Ok(match row.opt_json("outcome")? {
            None => Reservation::InProgress { fingerprint: held },
            Some(outcome) => Reservation::Completed {
                fingerprint: held,
                outcome: outcome_from_stored(&outcome)?,
            },
        })
    }

    /// `write` handed to the keys' writer, and its answer once committed,
    /// bounded by the store's timeout.
    async fn write_key<T>(
        &self,
        what: &'static str,
        write: KeyWrite,
        answer: oneshot::Receiver<Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let work = async {
            self.key_writer.send(write).await.map_err(|_| None)?;
            answer.await.map_err(|_| None)?.map_err(Some)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Some(error))) => Err(StoreError::new(format!("sqlite: {what}")).with_source(error)),
            Ok(Err(None)) => Err(keys::gone()),
            Err(_) => Err(StoreError::new(format!(
                "sqlite: {what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, None).await
    }

    /// As `reserve`, and also takes over a reservation in progress for the
    /// same fingerprint made at least `held_for` ago (writes are one at a
    /// time: of concurrent takers the first updates it, the others then
    /// find it young).
    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, Some(held_for)).await
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = KeyWrite::Complete {
            key: key.clone(),
            outcome: stored_outcome(outcome),
            reply,
        };
        if self.write_key("completing a key", write, answer).await? == 0 {
            return Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            ));
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = KeyWrite::Release {
            key: key.clone(),
            reply,
        };
        self.write_key("releasing a key", write, answer).await.map(drop)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
