//! The storage a start reads: process models and deployments, the
//! environments behind tokens, and webhook sources.
//!
//! How to implement them: the crate docs' section "Implementing your own
//! stores and engine".

use async_trait::async_trait;

pub(crate) mod idempotency;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub(crate) use crate::idempotency::{IdempotencyKey, PayloadFingerprint};
pub use crate::port_error::StoreError;
pub(crate) use idempotency::DEFAULT_IDEMPOTENCY_CAPACITY;
pub use idempotency::{DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyStore, Reservation};
pub use memory::{InMemoryIdempotencyStore, InMemoryModelStore, InMemorySourceStore, InMemoryTokenStore};
#[cfg(feature = "postgres")]
pub use postgres::{InvalidSchemaName, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::RedisIdempotencyStore;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::sealing::{EncryptionKey, InvalidEncryptionKey};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::id::{EnvironmentId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::source::{SourceId, WebhookSource};
use crate::token::EnvironmentToken;

/// Where process models and their deployments are kept.
///
/// # Contract
///
/// - `model` returns the model with that UUID, or `Ok(None)`.
/// - `deployment` returns the deployment that webhook starts of `uuid` in
///   `environment` use (the latest one), or `Ok(None)` when that process has
///   never been deployed there.
/// - A deployment comes back with the id it was stored with:
///   [`Deployment::new`](crate::Deployment::new) gives each a random id, so
///   a store keeps it (or restores it with
///   [`Deployment::with_id`](crate::Deployment::with_id)).
/// - An `Err` means the store could not answer (not "not found").
///
/// # Methods, as you write them
///
/// With [`#[async_trait]`](crate::async_trait) (re-exported here):
///
/// ```text
/// async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError>;
/// async fn deployment(&self, uuid: &ProcessUuid, environment: &EnvironmentId)
///     -> Result<Option<Deployment>, StoreError>;
/// ```
///
/// The crate docs have a complete implementation.
///
/// # Wrappers
///
/// A store that wraps another forwards the provided
/// [`model_with_deployment`](Self::model_with_deployment),
/// [`model_with_deployment_now`](Self::model_with_deployment_now) and
/// [`ready`](Self::ready) too: the defaults would hide the inner store's
/// one-round-trip look-up, its answer without waiting and its health.
/// `Arc<S>` does.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// The model with this UUID.
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError>;

    /// The deployment of `uuid` that starts in `environment` use.
    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError>;

    /// The model with this UUID and, if it has one, its deployment that
    /// starts in `environment` use: what a start reads, in one call.
    ///
    /// The default asks [`model`](Self::model), then
    /// [`deployment`](Self::deployment). A database-backed store overrides
    /// it to answer in one round trip.
    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        let Some(model) = self.model(uuid).await? else {
            return Ok(None);
        };
        let deployment = self.deployment(uuid, environment).await?;
        Ok(Some((model, deployment)))
    }

    /// [`model_with_deployment`](Self::model_with_deployment) without
    /// waiting, for a store that can answer at once (one in the process's
    /// memory, or a cache that holds the answer): `Some` with the answer, or
    /// `None` (the default) when the start must call `model_with_deployment`.
    /// It spares a start the boxed future of an async call; the answer must
    /// be the one `model_with_deployment` would give.
    #[allow(clippy::type_complexity)] // `model_with_deployment`'s answer, in an `Option`
    fn model_with_deployment_now(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Option<Result<Option<(ProcessModel, Option<Deployment>)>, StoreError>> {
        let _ = (uuid, environment);
        None
    }

    /// Whether the store can serve now: a cheap round trip for a store
    /// behind a network (PostgreSQL's `SELECT 1`, Redis's `PING`), used by
    /// [`WebhookStarter::ready`](crate::WebhookStarter::ready). The default
    /// says yes, which is right for a store in the host's memory.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where the environment behind each token is kept.
///
/// # Contract
///
/// - `environment` returns the environment `token` belongs to, or `Ok(None)`
///   for a token no environment has (or one that was revoked).
/// - Implementations keep only [`TokenDigest`](crate::TokenDigest)s and compare
///   in constant time; `TokenDigest`'s equality does that.
/// - An `Err` means the store could not answer.
///
/// # Methods, as you write them
///
/// With [`#[async_trait]`](crate::async_trait) (re-exported here):
///
/// ```text
/// async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError>;
/// ```
///
/// The crate docs have a complete implementation.
///
/// # Wrappers
///
/// A store that wraps another forwards
/// [`environment_now`](Self::environment_now) and [`ready`](Self::ready)
/// too: the defaults would hide the inner store's. `Arc<S>` does.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The environment of `token`.
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError>;

    /// [`environment`](Self::environment) without waiting, for a store that
    /// can answer at once (one in the process's memory): `Some` with the
    /// answer, or `None` (the default) when the start must call
    /// `environment`. It spares a start the boxed future of an async call;
    /// the answer must be the one `environment` would give.
    fn environment_now(&self, token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        let _ = token;
        None
    }

    /// Whether the store can serve now: a cheap round trip for a store
    /// behind a network (PostgreSQL's `SELECT 1`, Redis's `PING`), used by
    /// [`WebhookStarter::ready`](crate::WebhookStarter::ready). The default
    /// says yes, which is right for a store in the host's memory.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Where webhook sources are kept: the senders connected to processes
/// ([`WebhookSource`]), looked up by the `source` of a call.
///
/// # Contract
///
/// - `source` returns the source with that id, with all its secrets, or
///   `Ok(None)` for an id no source has (or one that was removed).
/// - The secrets must be recoverable (the schemes need them to compute
///   HMACs) but never readable at rest: keep them encrypted (as
///   `PostgresStore` does, with AES-256-GCM under
///   a key the host holds apart from the data) and never put one in a log
///   line, an error or a `Debug`.
/// - An `Err` means the store could not answer.
///
/// # Methods, as you write them
///
/// With [`#[async_trait]`](crate::async_trait) (re-exported here):
///
/// ```text
/// async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError>;
/// ```
///
/// `testing::check_source_store` (feature `testing`) checks an
/// implementation.
///
/// # Wrappers
///
/// A store that wraps another forwards [`ready`](Self::ready) too.
/// `Arc<S>` does.
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// The source with id `id`.
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError>;

    /// Whether the store can serve now (see [`TokenStore::ready`]); the
    /// default says yes.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl<T: SourceStore + ?Sized> SourceStore for std::sync::Arc<T> {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        (**self).source(id).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}

#[async_trait]
impl<T: ModelStore + ?Sized> ModelStore for std::sync::Arc<T> {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        (**self).model(uuid).await
    }

    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError> {
        (**self).deployment(uuid, environment).await
    }

    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        (**self).model_with_deployment(uuid, environment).await
    }

    fn model_with_deployment_now(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Option<Result<Option<(ProcessModel, Option<Deployment>)>, StoreError>> {
        (**self).model_with_deployment_now(uuid, environment)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for std::sync::Arc<T> {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        (**self).environment(token).await
    }

    fn environment_now(&self, token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        (**self).environment_now(token)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}
