//! [`PostgresStore`] (feature `postgres`): models, deployments, tokens and
//! idempotency keys in PostgreSQL, so that several replicas share one truth.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor as _, Row as _};

use crate::id::{DeploymentId, EnvironmentId, OrganizationId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel, VersionTag};
use crate::outcome::StartOutcome;
use crate::signature::SigningSecret;
use crate::store::idempotency::{outcome_from_stored, stored_outcome};
use crate::store::{
    DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey, IdempotencyStore, ModelStore,
    PayloadFingerprint, Reservation, StoreError, TokenStore,
};
use crate::token::{EnvironmentToken, TokenDigest};

/// The schema the tables live in unless [`PostgresStore::with_schema`] says
/// otherwise.
pub const DEFAULT_POSTGRES_SCHEMA: &str = "process_webhook";

/// The default bound on one database operation (acquiring a connection
/// included): 2 seconds.
pub const DEFAULT_POSTGRES_TIMEOUT: Duration = Duration::from_secs(2);

/// The default time a read-through cache entry lives: 1 second.
pub const DEFAULT_POSTGRES_CACHE_TTL: Duration = Duration::from_secs(1);

/// The signing secrets this replica holds, by environment.
type Keyring = HashMap<(OrganizationId, EnvironmentId), Arc<[SigningSecret]>>;

/// What a start reads about a process.
type ModelAndDeployment = (ProcessModel, Option<Deployment>);

/// The migrations, in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[include_str!("migrations/postgres/0001_initial.sql")];

/// Entries each cache holds at most; a full cache is emptied.
const CACHE_CAPACITY: usize = 10_000;

/// Models, deployments, tokens and idempotency keys in PostgreSQL: one
/// value that is a [`ModelStore`], a [`TokenStore`] and an
/// [`IdempotencyStore`], built on the host's `sqlx::PgPool`.
///
/// - **Tables** (created by [`migrate`](Self::migrate), in their own schema,
///   `process_webhook` by default): `models`, `deployments` (every
///   deployment ever made; the latest of a process in an environment is the
///   one starts use), `environments`, `tokens` (SHA-256 digests only) and
///   `idempotency_keys`, plus `schema_version`.
/// - **Reads per start**: at most two round trips (the token's environment;
///   the model with its latest deployment in one query), fewer with the
///   cache.
/// - **Cache**: a read-through cache of token → environment and
///   (process, environment) → model and deployment, 1 s by default
///   ([`with_cache_ttl`](Self::with_cache_ttl); zero turns it off). The
///   management methods (`insert_model`, `deploy`, `insert`, `revoke`, …)
///   announce every change with PostgreSQL `NOTIFY`, and every replica's
///   store listens and empties its cache at once; if the listening
///   connection is lost, the cache is emptied and entries live at most the
///   TTL. The listener takes one connection of the pool.
/// - **Idempotency**: the rules of [`InMemoryIdempotencyStore`](crate::InMemoryIdempotencyStore)
///   (24 h retention, 5-minute lease for abandoned reservations), with time
///   taken from the database's clock. A reservation is one statement (it
///   inserts the key, or takes over an expired or abandoned one), completion
///   and release one each; [`purge_expired`](Self::purge_expired) (or
///   [`spawn_purger`](Self::spawn_purger)) deletes expired keys in bounded
///   batches, skipping rows in use. The database has no capacity bound, so
///   it never answers [`Reservation::Full`].
/// - **Faults**: every operation is bounded (2 s by default,
///   [`with_timeout`](Self::with_timeout)); a database that is down or slow
///   makes the start `503 store_unavailable`, and the pool reconnects by
///   itself when it is back.
/// - **Signing secrets** never go into the database (stored secrets must be
///   digests, and a signature check needs the key itself): each replica
///   holds them in memory, given with [`insert`](Self::insert) or
///   [`set_signing_secrets`](Self::set_signing_secrets) from the host's
///   secret store.
///
/// Every value reaches SQL as a bound parameter; the schema name, the only
/// text put into statements, must be a plain lower-case identifier.
///
/// Clones share the pool, the cache and the secrets.
///
/// # Example
///
/// ```no_run
/// use process_webhook::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://localhost/app").await?;
/// store.migrate().await?;
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
/// store.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake")).await?;
/// store.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(), StartForm::default())).await?;
/// let token = EnvironmentToken::generate();
/// store.insert(&token, Environment::new(production, acme)).await?;
///
/// let store = std::sync::Arc::new(store);
/// let starter = WebhookStarter::new(store.clone(), store.clone(), std::sync::Arc::new(InMemoryEngine::new()))
///     .with_idempotency(store);
/// # let _ = starter;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    sql: Arc<Statements>,
    timeout: Duration,
    cache_ttl: Duration,
    ttl: Duration,
    lease: Duration,
    cache: Arc<Cache>,
    secrets: Arc<RwLock<Keyring>>,
    listening: Arc<AtomicBool>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A store on the host's pool, in schema `process_webhook`. Give the
    /// pool an acquire timeout; each operation is also bounded by
    /// [`with_timeout`](Self::with_timeout).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            sql: Arc::new(Statements::new(DEFAULT_POSTGRES_SCHEMA)),
            timeout: DEFAULT_POSTGRES_TIMEOUT,
            cache_ttl: DEFAULT_POSTGRES_CACHE_TTL,
            ttl: DEFAULT_IDEMPOTENCY_TTL,
            lease: DEFAULT_IDEMPOTENCY_LEASE,
            cache: Arc::default(),
            secrets: Arc::default(),
            listening: Arc::default(),
        }
    }

    /// A store on a new pool for `url` (up to 16 connections, a 2 s acquire
    /// timeout and a 2 s `statement_timeout`).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the URL is not valid or the database cannot be
    /// reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::new("the database URL is not valid").with_source(e))?
            .options([("statement_timeout", "2000")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(DEFAULT_POSTGRES_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::new("could not connect to the database").with_source(e))?;
        Ok(Self::new(pool))
    }

    /// Puts the tables in schema `schema` instead (a lower-case identifier:
    /// letters, digits and `_`, starting with a letter or `_`, at most 48
    /// characters).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] naming the rule when `schema` breaks it.
    pub fn with_schema(mut self, schema: &str) -> Result<Self, StoreError> {
        let valid = (1..=48).contains(&schema.len())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(StoreError::new(
                "a schema name is 1 to 48 lower-case letters, digits and `_`, not starting with a digit",
            ));
        }
        self.sql = Arc::new(Statements::new(schema));
        Ok(self)
    }

    /// Bounds each database operation (default 2 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long cached look-ups live (default 1 s; zero turns the
    /// cache off).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Sets how long idempotency keys are kept (default 24 h).
    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the lease after which an unfinished reservation counts as
    /// abandoned (default 5 minutes).
    pub fn with_idempotency_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// Creates or upgrades the tables. Safe to run from several replicas at
    /// once (they take turns on a transaction-scoped advisory lock); a
    /// database already migrated by a newer version of this crate is refused.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot be migrated, or its schema
    /// is newer than this crate knows.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.sql.schema.clone();
        let quoted = self.sql.quoted.clone();
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("process_webhook migrate {schema}"))
                .execute(&mut *tx)
                .await?;
            tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {quoted}").as_str())
                .await?;
            tx.execute(
                format!("CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version integer NOT NULL)")
                    .as_str(),
            )
            .await?;
            let found: Option<i32> =
                sqlx::query_scalar(&format!("SELECT max(version) FROM {quoted}.schema_version"))
                    .fetch_one(&mut *tx)
                    .await?;
            let found = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
            if found > MIGRATIONS.len() {
                tx.rollback().await?;
                return Ok(Err(found));
            }
            for migration in &MIGRATIONS[found..] {
                tx.execute(migration.replace("__SCHEMA__", &quoted).as_str())
                    .await?;
            }
            tx.execute(format!("DELETE FROM {quoted}.schema_version").as_str())
                .await?;
            sqlx::query(&format!(
                "INSERT INTO {quoted}.schema_version (version) VALUES ($1)"
            ))
            .bind(MIGRATIONS.len() as i32)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(()))
        };
        match self
            .bounded("migrating the schema", work, Duration::from_secs(60))
            .await?
        {
            Ok(()) => Ok(()),
            Err(found) => Err(StoreError::new(format!(
                "schema {schema} is at version {found}, newer than this version of process-webhook knows ({}): upgrade the crate",
                MIGRATIONS.len()
            ))),
        }
    }

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
        let version = match deployment.version() {
            VersionTag::Draft => None,
            VersionTag::Released(n) => {
                Some(i32::try_from(n).map_err(|_| StoreError::new("a version number must fit in 31 bits"))?)
            }
        };
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
        self.set_signing_secrets(&environment);
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
    pub fn set_signing_secrets(&self, environment: &Environment) {
        let key = (environment.organization().clone(), environment.id().clone());
        let mut secrets = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        if environment.signing_secrets().is_empty() {
            secrets.remove(&key);
        } else {
            secrets.insert(key, environment.signing_secrets().into());
        }
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

    /// Tells every replica that something changed.
    async fn announce(&self) -> Result<(), StoreError> {
        self.cache.clear();
        let query = sqlx::query("SELECT pg_notify($1, 'changed')").bind(&self.sql.channel);
        self.run("announcing a change", query.execute(&self.pool)).await?;
        Ok(())
    }

    /// Starts the listener that empties the cache on every change, once.
    fn listen(&self) {
        if self.cache_ttl.is_zero() || self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, channel) = (self.pool.clone(), self.sql.channel.clone());
        let cache = Arc::downgrade(&self.cache);
        tokio::spawn(listen_for_changes(pool, channel, cache));
    }

    /// One `SELECT 1`, bounded by the store's timeout: whether the database
    /// answers now.
    async fn ping(&self) -> Result<(), StoreError> {
        self.run("checking readiness", sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .map(drop)
    }

    async fn run<T>(
        &self,
        what: &'static str,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded(what, operation, self.timeout).await
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
        limit: Duration,
    ) -> Result<T, StoreError> {
        bounded(what, operation, limit).await
    }

    fn with_secrets(&self, environment: Environment) -> Environment {
        let secrets = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        let key = (environment.organization().clone(), environment.id().clone());
        match secrets.get(&key) {
            Some(list) => list
                .iter()
                .cloned()
                .fold(environment, Environment::with_signing_secret),
            None => environment,
        }
    }

    async fn fetch_model_with_deployment(
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
        let Some(row) = row else {
            return Ok(None);
        };
        let model = model_from(&row, *uuid)?;
        let deployment = match get::<Option<uuid::Uuid>>(&row, "id")? {
            Some(_) => Some(deployment_from(&row, *uuid, environment.clone())?),
            None => None,
        };
        Ok(Some((model, deployment)))
    }
}

/// Listens for changes and empties the cache on each, until the store is
/// gone. A lost connection also empties it (changes may have been missed).
/// `operation`, bounded by `limit`; a failure names `what` was being done.
async fn bounded<T>(
    what: &'static str,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
    limit: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(StoreError::new(format!("postgres: {what}")).with_source(error)),
        Err(_) => Err(StoreError::new(format!(
            "postgres: {what}: no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// Deletes up to `batch` keys older than `ttl`; how many were deleted.
async fn purge(
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

async fn listen_for_changes(pool: PgPool, channel: String, cache: Weak<Cache>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(target: "process_webhook", error = %error, "cannot listen for changes; retrying");
                match cache.upgrade() {
                    Some(cache) => cache.clear(),
                    None => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match event {
                Ok(Ok(Some(_))) => cache.clear(),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // The connection was lost: changes may have been missed.
                    cache.clear();
                    break;
                }
                Err(_) => {} // quiet: look again whether the store still exists
            }
        }
    }
}

/// PostgreSQL text cannot hold U+0000: such text is refused before it is
/// sent, with an error that says so.
fn storable(what: &'static str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        Err(nul_refused(what))
    } else {
        Ok(())
    }
}

fn nul_refused(what: &str) -> StoreError {
    StoreError::new(format!(
        "postgres cannot store text containing U+0000 ({what} has one)"
    ))
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| StoreError::new(format!("postgres: reading column {column}")).with_source(e))
}

fn model_from(row: &PgRow, uuid: ProcessUuid) -> Result<ProcessModel, StoreError> {
    Ok(ProcessModel::new(
        uuid,
        OrganizationId::new(get::<String>(row, "organization")?),
        get::<String>(row, "name")?,
    ))
}

fn deployment_from(
    row: &PgRow,
    process: ProcessUuid,
    environment: EnvironmentId,
) -> Result<Deployment, StoreError> {
    let id: uuid::Uuid = get(row, "id")?;
    let version = match get::<Option<i32>>(row, "version")? {
        None => VersionTag::Draft,
        Some(n) => VersionTag::Released(
            u32::try_from(n).map_err(|_| StoreError::new("postgres: a stored version is negative"))?,
        ),
    };
    let form: Value = get(row, "start_form")?;
    let form = serde_json::from_value(form)
        .map_err(|e| StoreError::new("postgres: a stored start form could not be read").with_source(e))?;
    let key: String = get(row, "definition_key")?;
    Ok(Deployment::new(process, version, environment, form)
        .with_id(DeploymentId::from(id))
        .with_definition_key(key))
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
        if let Some(found) = self.cache.models.get(&key, self.cache_ttl) {
            return Ok(found);
        }
        let generation = self.cache.generation();
        let found = self.fetch_model_with_deployment(uuid, environment).await?;
        if self.cache.unchanged_since(generation) {
            self.cache.models.put(key, found.clone(), self.cache_ttl);
        }
        Ok(found)
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
        if let Some(found) = self.cache.tokens.get(&digest, self.cache_ttl) {
            return Ok(found.map(|env| self.with_secrets(env)));
        }
        let generation = self.cache.generation();
        let query = sqlx::query(&self.sql.token).bind(&digest.as_bytes()[..]);
        let row = self
            .run("reading a token", query.fetch_optional(&self.pool))
            .await?;
        let found = row
            .map(|row| {
                Ok::<_, StoreError>(Environment::new(
                    EnvironmentId::new(get::<String>(&row, "environment")?),
                    OrganizationId::new(get::<String>(&row, "organization")?),
                ))
            })
            .transpose()?;
        // Unknown tokens are not cached: guesses must not fill memory.
        if found.is_some() && self.cache.unchanged_since(generation) {
            self.cache.tokens.put(digest, found.clone(), self.cache_ttl);
        }
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

#[async_trait]
impl IdempotencyStore for PostgresStore {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
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
                .bind(self.lease.as_secs_f64());
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

/// The statements, with the schema put in once.
#[derive(Debug)]
struct Statements {
    schema: String,
    quoted: String,
    channel: String,
    model: String,
    model_with_deployment: String,
    deployments: String,
    token: String,
    insert_model: String,
    deploy: String,
    insert_token: String,
    revoke: String,
    reserve: String,
    complete: String,
    release: String,
    purge: String,
}

impl Statements {
    /// `schema` is a validated identifier (see `with_schema`).
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            schema: schema.to_owned(),
            channel: format!("process_webhook_{schema}"),
            model: format!("SELECT organization, name FROM {s}.models WHERE uuid = $1"),
            model_with_deployment: format!(
                "SELECT m.organization, m.name, d.id, d.version, d.start_form, d.definition_key \
                 FROM {s}.models m LEFT JOIN LATERAL ( \
                   SELECT id, version, start_form, definition_key FROM {s}.deployments \
                   WHERE process = m.uuid AND environment = $2 ORDER BY seq DESC LIMIT 1 \
                 ) d ON true WHERE m.uuid = $1"
            ),
            deployments: format!(
                "SELECT id, version, start_form, definition_key FROM {s}.deployments \
                 WHERE process = $1 AND environment = $2 ORDER BY seq"
            ),
            token: format!("SELECT organization, environment FROM {s}.tokens WHERE digest = $1"),
            insert_model: format!(
                "INSERT INTO {s}.models (uuid, organization, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (uuid) DO UPDATE SET organization = EXCLUDED.organization, name = EXCLUDED.name"
            ),
            deploy: format!(
                "INSERT INTO {s}.deployments (id, process, environment, version, start_form, definition_key) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
            ),
            insert_token: format!(
                "WITH env AS (INSERT INTO {s}.environments (organization, id) VALUES ($2, $3) ON CONFLICT DO NOTHING) \
                 INSERT INTO {s}.tokens (digest, organization, environment) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO UPDATE SET organization = EXCLUDED.organization, environment = EXCLUDED.environment"
            ),
            revoke: format!("DELETE FROM {s}.tokens WHERE digest = $1"),
            reserve: format!(
                "WITH taken AS ( \
                   INSERT INTO {s}.idempotency_keys AS k (environment, process, key, fingerprint, outcome, reserved_at) \
                   VALUES ($1, $2, $3, $4, NULL, clock_timestamp()) \
                   ON CONFLICT (environment, process, key) DO UPDATE \
                     SET fingerprint = EXCLUDED.fingerprint, outcome = NULL, reserved_at = clock_timestamp() \
                     WHERE k.reserved_at <= clock_timestamp() - make_interval(secs => $5) \
                        OR (k.outcome IS NULL AND k.reserved_at <= clock_timestamp() - make_interval(secs => $6)) \
                   RETURNING 1 \
                 ) \
                 SELECT true AS reserved, NULL::bytea AS fingerprint, NULL::jsonb AS outcome FROM taken \
                 UNION ALL \
                 SELECT false, k.fingerprint, k.outcome FROM {s}.idempotency_keys k \
                 WHERE k.environment = $1 AND k.process = $2 AND k.key = $3 AND NOT EXISTS (SELECT 1 FROM taken)"
            ),
            complete: format!(
                "UPDATE {s}.idempotency_keys SET outcome = $4 \
                 WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL"
            ),
            release: format!(
                "DELETE FROM {s}.idempotency_keys \
                 WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL"
            ),
            purge: format!(
                "DELETE FROM {s}.idempotency_keys WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM {s}.idempotency_keys \
                   WHERE reserved_at <= clock_timestamp() - make_interval(secs => $1) \
                   LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ),
            quoted: s,
        }
    }
}

/// The read-through caches. A read that began before a change is not
/// cached after it: each change moves the generation on.
#[derive(Debug, Default)]
struct Cache {
    tokens: Timed<TokenDigest, Option<Environment>>,
    models: Timed<(ProcessUuid, EnvironmentId), Option<ModelAndDeployment>>,
    generation: AtomicU64,
}

impl Cache {
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tokens.clear();
        self.models.clear();
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn unchanged_since(&self, generation: u64) -> bool {
        self.generation() == generation
    }
}

/// A map whose entries expire.
#[derive(Debug)]
struct Timed<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Timed<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Timed<K, V> {
    fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        if ttl.is_zero() {
            return None;
        }
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_moves_the_generation_on() {
        let cache = Cache::default();
        let before = cache.generation();
        assert!(cache.unchanged_since(before));
        cache.clear();
        assert!(!cache.unchanged_since(before), "a read from before the change");
        assert!(cache.unchanged_since(cache.generation()));
        cache.clear();
        assert_eq!(cache.generation(), before + 2);
    }

    #[test]
    fn a_timed_map_keeps_entries_for_their_lifetime_and_empties_when_full() {
        let map = Timed::<usize, usize>::default();
        let ttl = Duration::from_secs(60);
        for key in 0..CACHE_CAPACITY {
            map.put(key, key * 2, ttl);
        }
        assert_eq!(map.get(&0, ttl), Some(0));
        assert_eq!(
            map.get(&(CACHE_CAPACITY - 1), ttl),
            Some(2 * (CACHE_CAPACITY - 1))
        );
        // One more than it holds: the map starts over with the new entry.
        map.put(CACHE_CAPACITY, 1, ttl);
        assert_eq!(map.get(&0, ttl), None);
        assert_eq!(map.get(&CACHE_CAPACITY, ttl), Some(1));
        assert_eq!(map.0.lock().unwrap().len(), 1);

        assert_eq!(map.get(&CACHE_CAPACITY, Duration::ZERO), None, "no cache");
        map.put(7, 7, Duration::ZERO);
        assert_eq!(map.get(&7, ttl), None, "nothing is put without a lifetime");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            map.get(&CACHE_CAPACITY, Duration::from_millis(1)),
            None,
            "expired"
        );
    }
}
