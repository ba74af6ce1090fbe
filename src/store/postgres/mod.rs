//! [`PostgresStore`] (feature `postgres`): models, deployments, tokens and
//! idempotency keys in PostgreSQL, so that several replicas share one truth.
//! This file holds the store and its settings; beside it: `migrations`
//! (the schema), `queries` (the SQL and reading rows back), `cache` (the
//! read-through cache and the listener that empties it), `admin` (what an
//! operator writes) and `lookups` (the three store traits).

mod admin;
mod cache;
mod delivery_log;
mod inbox;
mod lookups;
mod migrations;
mod queries;
mod sources;

use cache::Cache;
use queries::Statements;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::model::Environment;
use crate::store::{DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, StoreError};

/// A schema name [`PostgresStore::with_schema`] refuses: a schema name is 1
/// to 48 lower-case letters, digits and `_`, not starting with a digit (so
/// that it needs no quoting and cannot carry SQL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a schema name is 1 to 48 lower-case letters, digits and `_`, not starting with a digit")]
#[non_exhaustive]
pub struct InvalidSchemaName;

/// The schema the tables live in unless [`PostgresStore::with_schema`] says
/// otherwise.
pub(crate) const DEFAULT_POSTGRES_SCHEMA: &str = "process_webhook";

/// The default bound on one database operation (acquiring a connection
/// included): 2 seconds.
pub(crate) const DEFAULT_POSTGRES_TIMEOUT: Duration = Duration::from_secs(2);

/// The default time a read-through cache entry lives: 1 second.
pub(crate) const DEFAULT_POSTGRES_CACHE_TTL: Duration = Duration::from_secs(1);

/// Models, deployments, tokens and idempotency keys in PostgreSQL: one
/// value that is a [`ModelStore`](crate::ModelStore), a [`TokenStore`](crate::TokenStore) and an
/// [`IdempotencyStore`](crate::IdempotencyStore), built on the host's `sqlx::PgPool`.
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
///   it never answers [`Reservation::Full`](crate::Reservation::Full).
/// - **Faults**: every operation is bounded (2 s by default,
///   [`with_timeout`](Self::with_timeout)); a database that is down or slow
///   makes the start `503 store_unavailable`, and the pool reconnects by
///   itself when it is back.
/// - **Signing secrets** never go into the database (stored secrets must be
///   digests, and a signature check needs the key itself): each replica
///   holds them in memory, given with [`insert`](Self::insert) or
///   [`load_signing_secrets`](Self::load_signing_secrets) from the host's
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
    secrets: Arc<crate::store::sql::SigningSecrets>,
    keys: Arc<crate::store::sql::sealing::Keys>,
    listening: Arc<AtomicBool>,
    held: Arc<inbox::Held>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("encryption_key", &self.keys.sealing_id())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The schema the tables live in unless [`PostgresStore::with_schema`] says
    /// otherwise.
    pub const DEFAULT_SCHEMA: &'static str = DEFAULT_POSTGRES_SCHEMA;

    /// The default bound on one database operation (acquiring a connection
    /// included): 2 seconds.
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_POSTGRES_TIMEOUT;

    /// The default time a read-through cache entry lives: 1 second.
    pub const DEFAULT_CACHE_TTL: Duration = DEFAULT_POSTGRES_CACHE_TTL;
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
            keys: Arc::default(),
            listening: Arc::default(),
            held: Arc::default(),
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
    /// [`InvalidSchemaName`] naming the rule when `schema` breaks it (a
    /// mistake in the host's settings, not a database that cannot answer).
    pub fn with_schema(mut self, schema: &str) -> Result<Self, InvalidSchemaName> {
        let valid = (1..=48).contains(&schema.len())
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Err(InvalidSchemaName);
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
        self.secrets.attach(environment)
    }
}

/// `operation`, bounded by `limit`; a failure names `what` was being done.
async fn bounded<T>(
    what: &'static str,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
    limit: Duration,
) -> Result<T, StoreError> {
    crate::store::sql::bounded("postgres", what, operation, limit).await
}
