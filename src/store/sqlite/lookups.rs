//! [`SqliteStore`] as the three store traits: models and deployments,
//! tokens, and idempotency keys.

use std::time::Duration;

use async_trait::async_trait;

use super::{SqliteStore, now};
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

    /// One query: the model and its latest deployment in `environment`.
    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
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
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        let query = sqlx::query("SELECT organization, environment FROM tokens WHERE digest = $1")
            .bind(token.digest().as_bytes().to_vec());
        let row = self
            .run("reading a token", query.fetch_optional(&self.read))
            .await?;
        row.map(|row| {
            Ok(self.secrets.attach(Environment::new(
                EnvironmentId::new(row.text("environment")?),
                OrganizationId::new(row.text("organization")?),
            )))
        })
        .transpose()
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

impl SqliteStore {
    /// A reservation of `key`, or, with `held_for`, the takeover of its
    /// reservation in progress for `fingerprint` made at least that long
    /// ago: one upsert on the writer, and when it changes nothing, the row
    /// that stopped it, read on the same connection before another write.
    async fn reserve_or_take(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Option<Duration>,
    ) -> Result<Reservation, StoreError> {
        let now = now();
        let work = async {
            let mut writer = self.write.acquire().await?;
            let taken = sqlx::query(
                "INSERT INTO idempotency_keys AS k (environment, process, key, fingerprint, outcome, reserved_at) \
                 VALUES ($1, $2, $3, $4, NULL, $5) \
                 ON CONFLICT (environment, process, key) DO UPDATE \
                   SET fingerprint = excluded.fingerprint, outcome = NULL, reserved_at = excluded.reserved_at \
                   WHERE k.reserved_at <= $6 \
                      OR (k.outcome IS NULL AND k.reserved_at <= $7) \
                      OR (k.outcome IS NULL AND k.fingerprint = excluded.fingerprint AND k.reserved_at <= $8) \
                 RETURNING 1",
            )
            .bind(key.environment().as_str())
            .bind(*key.process().as_uuid())
            .bind(key.key())
            .bind(&fingerprint.as_bytes()[..])
            .bind(now)
            .bind(now - self.ttl.as_secs_f64())
            .bind(now - self.lease.as_secs_f64())
            .bind(held_for.map(|held_for| now - held_for.as_secs_f64()))
            .fetch_optional(&mut *writer)
            .await?;
            if taken.is_some() {
                return Ok(None);
            }
            sqlx::query(
                "SELECT fingerprint, outcome FROM idempotency_keys \
                 WHERE environment = $1 AND process = $2 AND key = $3",
            )
            .bind(key.environment().as_str())
            .bind(*key.process().as_uuid())
            .bind(key.key())
            .fetch_optional(&mut *writer)
            .await
            .map(Some)
        };
        let Some(row) = self.run("reserving a key", work).await? else {
            return Ok(Reservation::Reserved);
        };
        // Without a row the key was deleted between the two statements
        // (it cannot be: one writer); say so rather than guess.
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
        let query = sqlx::query(
            "UPDATE idempotency_keys SET outcome = $4 \
             WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL",
        )
        .bind(key.environment().as_str())
        .bind(*key.process().as_uuid())
        .bind(key.key())
        .bind(stored_outcome(outcome));
        let done = self.run("completing a key", query.execute(&self.write)).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            ));
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let query = sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL",
        )
        .bind(key.environment().as_str())
        .bind(*key.process().as_uuid())
        .bind(key.key());
        self.run("releasing a key", query.execute(&self.write)).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
