//! In-memory implementations of the stores and the engine, for tests, doc
//! examples and small hosts.
//!
//! All of them take `&self` for changes, so they can be shared in an `Arc`
//! and changed while serving; clones share state. No lock is held across an
//! `.await`.

use std::collections::{HashMap as StdHashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;

use crate::engine::{Engine, EngineError, ProcessInstance, StartCommand};
use crate::id::{EnvironmentId, InstanceId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel};
use crate::store::{ModelStore, StoreError, TokenStore};
use crate::token::{EnvironmentToken, TokenDigest};

/// The in-memory maps hash with foldhash (randomly seeded per process): a
/// start does three look-ups, and SipHash was a visible part of its cost.
/// Keys are inserted by the host, never by callers, so callers cannot
/// flood a bucket.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

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
    inner: Arc<RwLock<Models>>,
}

#[derive(Default, Debug)]
struct Models {
    models: HashMap<ProcessUuid, ProcessModel>,
    deployments: HashMap<ProcessUuid, HashMap<EnvironmentId, Deployment>>,
}

impl InMemoryModelStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a model, replacing one with the same UUID.
    pub fn insert_model(&self, model: ProcessModel) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.models.insert(*model.uuid(), model);
    }

    /// Deploys a version: from now on, starts of its process in its
    /// environment use it. It replaces an earlier deployment of the same
    /// process to the same environment.
    pub fn deploy(&self, deployment: Deployment) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner
            .deployments
            .entry(*deployment.process())
            .or_default()
            .insert(deployment.environment().clone(), deployment);
    }

    /// Removes the deployment of `process` in `environment`, returning it.
    pub fn undeploy(&self, process: &ProcessUuid, environment: &EnvironmentId) -> Option<Deployment> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.deployments.get_mut(process)?.remove(environment)
    }
}

#[async_trait]
impl ModelStore for InMemoryModelStore {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Ok(inner.models.get(uuid).cloned())
    }

    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        environment: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Ok(inner
            .deployments
            .get(uuid)
            .and_then(|by_env| by_env.get(environment))
            .cloned())
    }
}

/// Environment tokens in memory, kept only as SHA-256 digests.
///
/// Look-ups hash the presented token and find its digest in a hash map whose
/// key equality is constant-time ([`TokenDigest`]); the store never holds a
/// token's text.
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
    inner: Arc<RwLock<HashMap<TokenDigest, Environment>>>,
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
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.insert(digest, environment);
    }

    /// Revokes `token`; returns whether it was known.
    pub fn revoke(&self, token: &EnvironmentToken) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.remove(&token.digest()).is_some()
    }

    /// The number of tokens stored.
    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        let digest = token.digest();
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        Ok(inner.get(&digest).cloned())
    }
}

/// An instance [`InMemoryEngine`] started, with the command that started it.
#[derive(Clone, PartialEq, Debug)]
pub struct StartedInstance {
    /// The instance's id (a random UUID).
    pub id: InstanceId,
    /// The command it was started with.
    pub command: StartCommand,
}

/// The default number of starts [`InMemoryEngine`] remembers: 10,000.
pub const DEFAULT_ENGINE_HISTORY: usize = 10_000;

/// An engine that records starts in memory and gives each instance a
/// random UUID as its id. It never fails.
///
/// It remembers the last 10,000 starts ([`with_capacity`](Self::with_capacity)
/// sets another bound), so that a long-running host does not grow without
/// end; [`started`](Self::started) lists those, oldest first, and
/// [`total_started`](Self::total_started) counts every start. Clones share
/// state.
///
/// # Example
///
/// ```
/// use process_webhook::InMemoryEngine;
/// let engine = InMemoryEngine::new();
/// assert!(engine.started().is_empty());
/// assert_eq!(engine.total_started(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryEngine {
    started: Arc<Mutex<History>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct History {
    recent: VecDeque<StartedInstance>,
    total: u64,
}

impl Default for InMemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEngine {
    /// An engine that has started nothing and remembers the last 10,000
    /// starts.
    pub fn new() -> Self {
        Self {
            started: Arc::default(),
            capacity: DEFAULT_ENGINE_HISTORY,
        }
    }

    /// Sets how many of the latest starts are remembered (0 keeps none).
    pub fn with_capacity(mut self, starts: usize) -> Self {
        self.capacity = starts;
        self
    }

    /// The remembered instances, oldest first.
    pub fn started(&self) -> Vec<StartedInstance> {
        self.history().recent.iter().cloned().collect()
    }

    /// How many instances were started in all, remembered or not.
    pub fn total_started(&self) -> u64 {
        self.history().total
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Engine for InMemoryEngine {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        let id = InstanceId::new(uuid::Uuid::new_v4().to_string());
        let mut instance = ProcessInstance::new(id.clone());
        if let Some(key) = &command.idempotency_key {
            instance = instance.with_business_key(key.clone());
        }
        let mut history = self.history();
        history.total += 1;
        if self.capacity > 0 {
            if history.recent.len() >= self.capacity {
                history.recent.pop_front();
            }
            history.recent.push_back(StartedInstance { id, command });
        }
        Ok(instance)
    }
}
