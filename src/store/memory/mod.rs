//! In-memory model and token stores (idempotency keys beside them), for tests, doc
//! examples and small hosts.
//!
//! Models and tokens are here; idempotency keys in `idempotency.rs`,
//! webhook sources in `source.rs`.
//!
//! All of them take `&self` for changes, so they can be shared in an `Arc`
//! and changed while serving; clones share state. No lock is held across an
//! `.await`.

use std::collections::HashMap as StdHashMap;
use std::sync::Arc;

use async_trait::async_trait;

mod idempotency;
mod source;

pub use idempotency::InMemoryIdempotencyStore;
pub use source::InMemorySourceStore;

use crate::id::{EnvironmentId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::store::{ModelStore, StoreError, TokenStore};
use crate::token::{EnvironmentToken, TokenDigest};

/// The in-memory maps hash with foldhash (randomly seeded per process): a
/// start does three look-ups, and SipHash was a visible part of its cost.
/// Keys are inserted by the host, never by callers, so callers cannot
/// flood a bucket.
pub(super) type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// The models' and tokens' maps: lock-free reads (papaya), same hasher.
type ConcurrentMap<K, V> = papaya::HashMap<K, V, foldhash::fast::RandomState>;

/// Process models and deployments in memory.
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let production = EnvironmentId::new("production");
/// let models = InMemoryModelStore::new();
/// models.insert_model(ProcessModel::new(uuid, OrganizationId::new("acme"), "Order intake"));
/// models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(), StartForm::default()));
/// models.deploy(Deployment::new(uuid, VersionTag::Released(2), production.clone(), StartForm::default()));
/// let latest = models.deployment(&uuid, &production).await?.unwrap();
/// assert_eq!(latest.version(), VersionTag::Released(2));
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default, Debug)]
pub struct InMemoryModelStore {
    inner: Arc<Models>,
}

/// Read without locks: a start's look-ups write no memory another thread
/// reads (an `RwLock`'s reader count did, and kept two cores from
/// scaling), and a change never waits for readers.
#[derive(Default, Debug)]
struct Models {
    models: ConcurrentMap<ProcessUuid, ProcessModel>,
    deployments: ConcurrentMap<(ProcessUuid, EnvironmentId), Deployment>,
}

impl InMemoryModelStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model, replacing one with the same UUID.
    pub fn insert_model(&self, model: ProcessModel) {
        self.inner.models.pin().insert(*model.uuid(), model);
    }

    /// Deploys a version: from now on, starts of its process in its
    /// environment use it. It replaces an earlier deployment of the same
    /// process to the same environment.
    pub fn deploy(&self, deployment: Deployment) {
        let key = (*deployment.process(), deployment.environment().clone());
        self.inner.deployments.pin().insert(key, deployment);
    }

    /// Removes the deployment of `process` in `environment`, returning it.
    pub fn undeploy(&self, process: &ProcessUuid, environment: &EnvironmentId) -> Option<Deployment> {
        self.inner
            .deployments
            .pin()
            .remove(&(*process, environment.clone()))
            .cloned()
    }

    /// The model and its deployment in `environment`, as a start reads them.
    fn both(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Option<(ProcessModel, Option<Deployment>)> {
        let model = self.inner.models.pin().get(uuid).cloned()?;
        let deployment = self
            .inner
            .deployments
            .pin()
            .get(&(*uuid, environment.clone()))
            .cloned();
        Some((model, deployment))
    }
}

#[async_trait]
impl ModelStore for InMemoryModelStore {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        Ok(self.inner.models.pin().get(uuid).cloned())
    }

    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError> {
        Ok(self
            .inner
            .deployments
            .pin()
            .get(&(*uuid, environment.clone()))
            .cloned())
    }

    /// Both in one call (the default would make two, each a boxed future).
    async fn model_with_deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<(ProcessModel, Option<Deployment>)>, StoreError> {
        Ok(self.both(uuid, environment))
    }

    /// Always answers at once: a start reads this store without a future.
    fn model_with_deployment_now(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Option<Result<Option<(ProcessModel, Option<Deployment>)>, StoreError>> {
        Some(Ok(self.both(uuid, environment)))
    }
}

/// Environment tokens in memory, kept only as SHA-256 digests.
///
/// Look-ups hash the presented token and find its digest in a hash map whose
/// key equality is constant-time ([`TokenDigest`]); the store never holds a
/// token's text. Look-ups take no lock.
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let tokens = InMemoryTokenStore::new();
/// let token = EnvironmentToken::generate();
/// tokens.insert(&token, Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme")));
/// assert!(tokens.environment(&token).await?.is_some());
/// assert!(tokens.revoke(&token));
/// assert!(tokens.environment(&token).await?.is_none());
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default, Debug)]
pub struct InMemoryTokenStore {
    inner: Arc<ConcurrentMap<TokenDigest, Environment>>,
}

impl InMemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `token` open `environment` (replacing what it opened before).
    pub fn insert(&self, token: &EnvironmentToken, environment: Environment) {
        self.insert_digest(token.digest(), environment);
    }

    /// Like [`insert`](Self::insert), for a host that only has the digest.
    pub fn insert_digest(&self, digest: TokenDigest, environment: Environment) {
        self.inner.pin().insert(digest, environment);
    }

    /// Revokes `token`; returns whether it was known.
    pub fn revoke(&self, token: &EnvironmentToken) -> bool {
        self.inner.pin().remove(&token.digest()).is_some()
    }

    /// The number of tokens stored.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The environment `token` opens.
    fn find(&self, token: &EnvironmentToken) -> Option<Environment> {
        self.inner.pin().get(&token.digest()).cloned()
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        Ok(self.find(token))
    }

    /// Always answers at once: a start reads this store without a future.
    fn environment_now(&self, token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        Some(Ok(self.find(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EnvironmentToken, OrganizationId, ProcessUuid, StartForm, VersionTag};

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the in-memory stores never wait"),
        }
    }

    #[test]
    fn models_and_deployments_in_any_order_and_undeploy_removes_one_environment_only() {
        let uuid = ProcessUuid::from(uuid::Uuid::from_u128(7));
        let (production, staging) = (EnvironmentId::new("production"), EnvironmentId::new("staging"));
        let models = InMemoryModelStore::new();
        let v1 = Deployment::new(
            uuid,
            VersionTag::Released(1),
            production.clone(),
            StartForm::default(),
        );
        let v2 = Deployment::new(
            uuid,
            VersionTag::Released(2),
            production.clone(),
            StartForm::default(),
        );
        let staged = Deployment::new(uuid, VersionTag::Draft, staging.clone(), StartForm::default());
        // Deployed before its model is known: not a process yet.
        models.deploy(v1.clone());
        assert_eq!(
            block_on(models.model_with_deployment(&uuid, &production)).unwrap(),
            None
        );
        let model = ProcessModel::new(uuid, OrganizationId::new("acme"), "Order intake");
        models.insert_model(model.clone());
        assert_eq!(
            block_on(models.model_with_deployment(&uuid, &production)).unwrap(),
            Some((model.clone(), Some(v1)))
        );
        // A new version replaces the one in its environment only.
        models.deploy(staged.clone());
        models.deploy(v2.clone());
        assert_eq!(
            block_on(models.deployment(&uuid, &production)).unwrap(),
            Some(v2.clone())
        );
        assert_eq!(
            block_on(models.deployment(&uuid, &staging)).unwrap(),
            Some(staged.clone())
        );
        // A model inserted again keeps the deployments.
        models.insert_model(model.clone());
        assert_eq!(block_on(models.model(&uuid)).unwrap(), Some(model.clone()));
        assert_eq!(
            block_on(models.deployment(&uuid, &staging)).unwrap(),
            Some(staged.clone())
        );
        // Undeploying returns the deployment once, and leaves the others.
        assert_eq!(models.undeploy(&uuid, &staging), Some(staged));
        assert_eq!(models.undeploy(&uuid, &staging), None);
        assert_eq!(block_on(models.deployment(&uuid, &staging)).unwrap(), None);
        assert_eq!(
            block_on(models.model_with_deployment(&uuid, &staging)).unwrap(),
            Some((model.clone(), None))
        );
        assert_eq!(block_on(models.deployment(&uuid, &production)).unwrap(), Some(v2));
        let unknown = ProcessUuid::from(uuid::Uuid::from_u128(8));
        assert_eq!(models.undeploy(&unknown, &production), None);
        assert_eq!(block_on(models.model(&unknown)).unwrap(), None);
    }

    #[test]
    fn the_token_store_counts_its_tokens_and_a_revoked_one_no_longer_opens_anything() {
        let tokens = InMemoryTokenStore::new();
        assert!(tokens.is_empty());
        assert_eq!(tokens.len(), 0);
        let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
        let staging = Environment::new(EnvironmentId::new("staging"), OrganizationId::new("acme"));
        let (first, second) = (EnvironmentToken::generate(), EnvironmentToken::generate());
        tokens.insert(&first, production.clone());
        assert!(!tokens.is_empty());
        assert_eq!(tokens.len(), 1);
        tokens.insert_digest(second.digest(), staging.clone());
        assert_eq!(tokens.len(), 2);
        // A token inserted again opens its new environment, and is counted once.
        tokens.insert(&first, staging.clone());
        assert_eq!(tokens.len(), 2);
        assert_eq!(
            block_on(tokens.environment(&first)).unwrap(),
            Some(staging.clone())
        );
        assert!(tokens.revoke(&first));
        assert!(!tokens.revoke(&first), "a token is revoked once");
        assert_eq!(tokens.len(), 1);
        assert_eq!(block_on(tokens.environment(&first)).unwrap(), None);
        assert_eq!(block_on(tokens.environment(&second)).unwrap(), Some(staging));
        assert!(tokens.revoke(&second));
        assert!(tokens.is_empty());
    }
}
