//! [`SqliteStore`] (feature `sqlite`): every port `PostgresStore`
//! implements, in one SQLite file, for a single server. This file holds the
//! store, its settings and its schema; beside it: `admin` (what an operator
//! writes), `lookups` (models, tokens, idempotency keys), `sources`,
//! `inbox` and `delivery_log`. What both SQL stores say the same way lives
//! in `store/sql`.

mod admin;
mod delivery_log;
mod inbox;
mod keys;
mod lookups;
mod sources;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use sqlx::Executor as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::store::sql::cache::Cache;
use crate::store::sql::sealing::Keys;
use crate::store::sql::{SigningSecrets, bounded};
use crate::store::{DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, StoreError};

/// The migrations, in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_initial.sql")];

/// Connections that read at once (SQLite's WAL lets readers run beside the
/// one writer).
const READERS: u32 = 4;

/// Every port of the crate in one SQLite file: a
/// [`ModelStore`](crate::ModelStore), [`TokenStore`](crate::TokenStore),
/// [`SourceStore`](crate::SourceStore), [`IdempotencyStore`](crate::IdempotencyStore),
/// [`Inbox`](crate::Inbox) and [`DeliveryLog`](crate::DeliveryLog), so that
/// a single server keeps its keys, sources, kept starts and log across a
/// restart without a database server. For more than one replica, use
/// `PostgresStore` (the [replicas guide](crate::guide::replicas) says how
/// to move).
///
/// - **The file** is created with owner-only permissions (on Unix) and
///   migrated by [`open`](Self::open); SQLite adds `-wal` and `-shm` files
///   beside it. One server process owns a file: the store writes through
///   one connection (SQLite has one writer at a time) and reads through
///   four. `webhook_server admin …` may write models, tokens and sources
///   from another process while the server runs.
/// - **Durability**: write-ahead log (WAL) with `synchronous = NORMAL`:
///   every committed write survives the process being killed; a power cut
///   may lose the last transactions before a checkpoint. Give
///   [`open_with`](Self::open_with) options with `synchronous = FULL` to
///   survive that too, at the cost of a sync per write.
/// - **The same rules as `PostgresStore`**: tokens as SHA-256 digests,
///   source secrets sealed with AES-256-GCM under the host's
///   [`EncryptionKey`](crate::EncryptionKey)s (a row sealed by one store
///   opens in the other with the same key), environments' signing secrets
///   held in memory only, idempotency keys kept 24 h with a 5-minute lease
///   and never [`Full`](crate::Reservation::Full), the inbox's leases, the
///   log's merge by id, and a read-through cache of tokens and models
///   (1 s, [`with_cache_ttl`](Self::with_cache_ttl)) that the store's own
///   changes empty at once.
/// - **Idempotency keys are written in groups**: the reservations and
///   outcomes waiting at once share one transaction (one statement each
///   kind), on a thread of the store's own, and each is answered only once
///   its transaction is committed.
/// - **Faults**: every operation is bounded (5 s by default,
///   [`with_timeout`](Self::with_timeout)); one that does not finish
///   within it is `503 store_unavailable`.
///
/// Clones share the connections, the keys and the secrets.
///
/// # Example
///
/// ```no_run
/// use process_webhook::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::open("process-webhook.db").await?;
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
pub struct SqliteStore {
    path: Arc<PathBuf>,
    read: SqlitePool,
    write: SqlitePool,
    timeout: Duration,
    ttl: Duration,
    lease: Duration,
    secrets: Arc<SigningSecrets>,
    keys: Arc<Keys>,
    wakeup: Arc<OnceLock<Weak<tokio::sync::Notify>>>,
    key_writer: tokio::sync::mpsc::Sender<keys::KeyWrite>,
    cache: Arc<Cache>,
    cache_ttl: Duration,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("cache_ttl", &self.cache_ttl)
            .field("encryption_key", &self.keys.sealing_id())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The default bound on one operation (waiting for the writer
    /// included): 5 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The default time a read-through cache entry lives: 1 second.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

    /// Opens the database file at `path` (creating it, owner-only, if it is
    /// missing), in WAL mode with `synchronous = NORMAL` and foreign keys
    /// on, and creates or upgrades its tables.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the path is `:memory:` (or empty) rather than a
    /// file, or the file cannot be created or opened, is not a SQLite
    /// database, or was migrated by a newer version of this crate.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        Self::open_with(options).await
    }

    /// [`open`](Self::open) with the host's options (its `synchronous`,
    /// cache size, …). The store turns on foreign keys and `create_if_missing`,
    /// and waits up to its timeout for the writer.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn open_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let path = options.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            // Each connection would have a database of its own.
            return Err(StoreError::new(
                "sqlite: a SqliteStore keeps a file: name one (for nothing kept, use the in-memory stores)",
            ));
        }
        let opening = |e: sqlx::Error| {
            StoreError::new(format!("sqlite: could not open {}", path.display())).with_source(e)
        };
        create_private(&path)?;
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Self::DEFAULT_TIMEOUT);
        // No test before each acquire: a file does not drop connections,
        // and the test is one more trip to the connection's thread.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Self::DEFAULT_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(opening)?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(READERS)
            .acquire_timeout(Self::DEFAULT_TIMEOUT)
            .connect_with(options.read_only(true))
            .await
            .map_err(opening)?;
        let store = Self {
            path: Arc::new(path),
            read,
            key_writer: keys::spawn(write.clone()),
            write,
            timeout: Self::DEFAULT_TIMEOUT,
            ttl: DEFAULT_IDEMPOTENCY_TTL,
            lease: DEFAULT_IDEMPOTENCY_LEASE,
            secrets: Arc::default(),
            keys: Arc::default(),
            wakeup: Arc::default(),
            cache: Arc::default(),
            cache_ttl: Self::DEFAULT_CACHE_TTL,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Bounds each operation (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long cached look-ups live (default 1 s; zero turns the
    /// cache off). This store's own changes empty the cache at once; a
    /// change another process makes to the file (`webhook_server admin …`)
    /// is seen within this time.
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

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the store's connections, for every clone, once the writes
    /// in flight are done, folding the write-ahead log into the file
    /// without waiting for other processes: when no other process has the
    /// file open, the `-wal` file is removed and the file alone holds every
    /// write (a copy of it is a backup). Every later operation fails. Call
    /// it last, when the server stops.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), process_webhook::StoreError> {
    /// let store = process_webhook::SqliteStore::open("process-webhook.db").await?;
    /// // … serve until asked to stop …
    /// store.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) {
        // The readers first, then the log folded in by the writer (a
        // passive checkpoint: it never waits for, nor blocks, another
        // process's readers or writer; what it leaves, the next open
        // folds in: nothing is lost).
        self.read.close().await;
        let folded = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.write);
        if let Err(error) = self
            .run("folding the write-ahead log into the file", folded)
            .await
        {
            tracing::warn!(target: "process_webhook", error = %crate::observe::chain(&error), "closing the file: its write-ahead log stays beside it");
        }
        self.write.close().await;
    }

    /// Wakes `wakeup` (and so a [`Dispatcher`](crate::Dispatcher) given it
    /// with `with_wakeup`) each time this store keeps a start, until
    /// `wakeup` is dropped everywhere else. (A file has one server: the
    /// store that keeps is the one whose dispatcher starts.) A store wakes
    /// one `Notify`; a second call changes nothing.
    pub fn notify_on_keep(&self, wakeup: &Arc<tokio::sync::Notify>) {
        let _ = self.wakeup.set(Arc::downgrade(wakeup));
    }

    fn kept(&self) {
        if let Some(wakeup) = self.wakeup.get().and_then(Weak::upgrade) {
            wakeup.notify_one();
        }
    }

    async fn run<T>(
        &self,
        what: &'static str,
        operation: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        bounded("sqlite", what, operation, self.timeout).await
    }

    /// One `SELECT 1` on a reading connection: whether the file answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.run("checking readiness", sqlx::query("SELECT 1").execute(&self.read))
            .await
            .map(drop)
    }

    /// Creates or upgrades the tables, in one transaction; a file migrated
    /// by a newer version of this crate is refused.
    async fn migrate(&self) -> Result<(), StoreError> {
        let work = async {
            let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                .await?;
            let found: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_version")
                .fetch_one(&mut *tx)
                .await?;
            let found = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
            if found > MIGRATIONS.len() {
                tx.rollback().await?;
                return Ok(Err(found));
            }
            if found == MIGRATIONS.len() {
                // Up to date: nothing written. A commit here would end the
                // read snapshot of every other connection to the file (the
                // running server's, when `webhook_server admin` opens it).
                tx.rollback().await?;
                return Ok(Ok(()));
            }
            for migration in &MIGRATIONS[found..] {
                tx.execute(*migration).await?;
            }
            tx.execute("DELETE FROM schema_version").await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(MIGRATIONS.len() as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(()))
        };
        match bounded("sqlite", "migrating the schema", work, Duration::from_secs(60)).await? {
            Ok(()) => Ok(()),
            Err(found) => Err(StoreError::new(format!(
                "{} is at schema version {found}, newer than this version of process-webhook knows ({}): \
                 upgrade the crate",
                self.path.display(),
                MIGRATIONS.len()
            ))),
        }
    }
}

/// Creates `path` empty with owner-only permissions when it is missing (on
/// Unix; SQLite gives its `-wal` and `-shm` files the same), so that the
/// digests, sealed secrets and logged payloads it will hold are not
/// readable by other users. An existing file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::new(format!("sqlite: could not create {}", path.display())).with_source(e)),
    }
}

/// Now, as seconds since the Unix epoch.
fn now() -> f64 {
    crate::store::sql::inbox::seconds(SystemTime::now())
}

crate::store::sql::columns_for!(sqlx::sqlite::SqliteRow, "sqlite");
