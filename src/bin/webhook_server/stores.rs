//! The stores the server keeps its state in: PostgreSQL (`DATABASE_URL`),
//! else one SQLite file (`WEBHOOK_DATA`, `process-webhook.db` by default)
//! or memory (`WEBHOOK_DATA=:memory:`); Redis (`REDIS_URL`) for keys and
//! limits; seeded with what it serves.

use std::sync::Arc;

use process_webhook::*;

use crate::Seed;
use crate::{BadSetting, bad_setting};

/// The stores the server uses.
pub(crate) struct Stores {
    pub(crate) models: Arc<dyn ModelStore>,
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) sources: Arc<dyn SourceStore>,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) limiter: Arc<dyn RateLimiter>,
    /// The durable inbox (PostgreSQL), where there is one.
    pub(crate) inbox: Option<Arc<dyn Inbox>>,
    /// Notified when a replica keeps a start (PostgreSQL's `LISTEN`).
    pub(crate) inbox_wakeup: Option<Arc<tokio::sync::Notify>>,
    /// The durable delivery log (PostgreSQL or the file), where there is one.
    pub(crate) log: Option<Arc<dyn DeliveryLog>>,
    /// Where the durable state is, in words: `PostgreSQL`, `the file …`.
    pub(crate) kept_in: String,
    /// The file, to close when the server stops.
    pub(crate) file: Option<SqliteStore>,
    /// The file held a token of the example's environment already, so the
    /// one generated for this start was not stored.
    pub(crate) token_from_before: bool,
}

/// The file the server keeps its state in when `WEBHOOK_DATA` is unset.
pub(crate) const DEFAULT_DATA: &str = "process-webhook.db";

/// Where `WEBHOOK_DATA` says the state lives: a file, or memory.
pub(crate) enum Data {
    File(std::path::PathBuf),
    Memory,
}

/// `WEBHOOK_DATA`: a path (default `process-webhook.db` in the working
/// directory), or `:memory:`.
pub(crate) fn data() -> Data {
    match std::env::var("WEBHOOK_DATA") {
        Ok(text) if text.trim() == ":memory:" => Data::Memory,
        Ok(text) if !text.trim().is_empty() => Data::File(text.trim().into()),
        _ => Data::File(DEFAULT_DATA.into()),
    }
}

/// The file store at `path`, sealing source secrets under
/// `WEBHOOK_SECRET_KEY` or, without it, the key file beside the data
/// (generated at first start), and opening rows under
/// `WEBHOOK_OLD_SECRET_KEYS` and the key file too.
pub(crate) async fn sqlite_store(path: &std::path::Path) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    let mut store = SqliteStore::open(path)
        .await
        .map_err(|e| bad_setting("WEBHOOK_DATA", Some(&path.display().to_string()), &e))?;
    let (current, old) = secret_keys()?;
    let file_key = key_file(path)?;
    store = match current {
        Some(key) => store.with_encryption_key(key).with_decryption_key(file_key),
        None => store.with_encryption_key(file_key),
    };
    for key in old {
        store = store.with_decryption_key(key);
    }
    Ok(store)
}

/// The key beside the data file (`{data}.key`): read, or generated (32
/// random bytes, base64) and written owner-only at first start. Beside the
/// file, it keeps the secrets from anyone who can read the file but not
/// the key (another user, a copied backup of the file alone); a host that
/// keeps keys elsewhere sets `WEBHOOK_SECRET_KEY` instead.
pub(crate) fn key_file(data: &std::path::Path) -> Result<EncryptionKey, BadSetting> {
    let mut name = data.as_os_str().to_owned();
    name.push(".key");
    let path = std::path::PathBuf::from(name);
    let shown = path.display().to_string();
    let failed = |e: &dyn std::error::Error| bad_setting("WEBHOOK_DATA", Some(&shown), e);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| failed(&e))?;
            let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|e| failed(&e))?;
            std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).map_err(|e| failed(&e))?;
            println!("secret key: generated {shown} (owner-only; keep it with the data file)");
            text
        }
        Err(e) => return Err(failed(&e)),
    };
    key_named("WEBHOOK_DATA", &text)
}

/// The store of `DATABASE_URL`, in the schema `WEBHOOK_SCHEMA`, with the
/// keys of `WEBHOOK_SECRET_KEY` and `WEBHOOK_OLD_SECRET_KEYS`, migrated.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_store() -> Result<PostgresStore, Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| BadSetting {
        variable: "DATABASE_URL",
        value: None,
        problem: "not set: the PostgreSQL store's URL".to_owned(),
    })?;
    let mut store = PostgresStore::connect(&url)
        .await
        .map_err(|e| bad_setting("DATABASE_URL", None, &e))?;
    if let Ok(schema) = std::env::var("WEBHOOK_SCHEMA") {
        store = store
            .with_schema(&schema)
            .map_err(|e| bad_setting("WEBHOOK_SCHEMA", Some(&schema), &e))?;
    }
    let (current, old) = secret_keys()?;
    if let Some(key) = current {
        store = store.with_encryption_key(key);
    }
    for key in old {
        store = store.with_decryption_key(key);
    }
    store
        .migrate()
        .await
        .map_err(|e| bad_setting("DATABASE_URL", None, &e))?;
    Ok(store)
}

/// A key from its base64 text, named by the start of its SHA-256 (so that
/// rows say which key sealed them without naming it).
fn key_named(variable: &'static str, text: &str) -> Result<EncryptionKey, BadSetting> {
    use sha2::Digest as _;
    let named = |bytes: &[u8]| format!("k{}", &hex::encode(sha2::Sha256::digest(bytes))[..12]);
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim()).unwrap_or_default();
    EncryptionKey::from_base64(&named(&bytes), text).map_err(|e| bad_setting(variable, None, &e))
}

/// The key of `WEBHOOK_SECRET_KEY` and the older ones of
/// `WEBHOOK_OLD_SECRET_KEYS`.
fn secret_keys() -> Result<(Option<EncryptionKey>, Vec<EncryptionKey>), BadSetting> {
    let key = key_named;
    let current = match std::env::var("WEBHOOK_SECRET_KEY") {
        Ok(text) if !text.trim().is_empty() => Some(key("WEBHOOK_SECRET_KEY", &text)?),
        _ => None,
    };
    let old = std::env::var("WEBHOOK_OLD_SECRET_KEYS").unwrap_or_default();
    let old = old
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| key("WEBHOOK_OLD_SECRET_KEYS", t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((current, old))
}

/// Redis for idempotency keys and the rate limiter when `REDIS_URL` is set
/// (feature `redis`), replacing whatever `base` chose for them.
async fn with_redis(base: Stores) -> Result<Stores, Box<dyn std::error::Error>> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let keys = RedisIdempotencyStore::connect(&url)
            .await
            .map_err(|e| bad_setting("REDIS_URL", None, &e))?;
        let limiter = RedisRateLimiter::new(keys.connection());
        println!("stores: Redis from REDIS_URL for idempotency keys and rate limits");
        return Ok(Stores {
            idempotency: Arc::new(keys),
            limiter: Arc::new(limiter),
            ..base
        });
    }
    Ok(base)
}

/// What the server and the admin commands do with a durable store, as both
/// stores say it (by their own methods of the same names).
pub(crate) trait StateStore:
    ModelStore + TokenStore + IdempotencyStore + SourceStore + DeliveryLog + Inbox + Clone + 'static
{
    async fn insert(&self, token: &EnvironmentToken, environment: Environment) -> Result<(), StoreError>;
    async fn insert_digest(&self, digest: TokenDigest, environment: Environment) -> Result<(), StoreError>;
    async fn revoke(&self, token: &EnvironmentToken) -> Result<bool, StoreError>;
    async fn insert_model(&self, model: ProcessModel) -> Result<(), StoreError>;
    async fn deploy(&self, deployment: Deployment) -> Result<(), StoreError>;
    async fn deployed(&self) -> Result<Vec<(ProcessModel, Deployment)>, StoreError>;
    async fn put_source(&self, source: &WebhookSource) -> Result<(), StoreError>;
    async fn remove_source(&self, id: &SourceId) -> Result<bool, StoreError>;
    async fn reseal_sources(&self) -> Result<u64, StoreError>;
    fn spawn_purger(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()>;
}

macro_rules! state_store {
    ($store:ty) => {
        impl StateStore for $store {
            async fn insert(
                &self,
                token: &EnvironmentToken,
                environment: Environment,
            ) -> Result<(), StoreError> {
                <$store>::insert(self, token, environment).await
            }
            async fn insert_digest(
                &self,
                digest: TokenDigest,
                environment: Environment,
            ) -> Result<(), StoreError> {
                <$store>::insert_digest(self, digest, environment).await
            }
            async fn revoke(&self, token: &EnvironmentToken) -> Result<bool, StoreError> {
                <$store>::revoke(self, token).await
            }
            async fn insert_model(&self, model: ProcessModel) -> Result<(), StoreError> {
                <$store>::insert_model(self, model).await
            }
            async fn deploy(&self, deployment: Deployment) -> Result<(), StoreError> {
                <$store>::deploy(self, deployment).await
            }
            async fn deployed(&self) -> Result<Vec<(ProcessModel, Deployment)>, StoreError> {
                <$store>::deployed(self).await
            }
            async fn put_source(&self, source: &WebhookSource) -> Result<(), StoreError> {
                <$store>::put_source(self, source).await
            }
            async fn remove_source(&self, id: &SourceId) -> Result<bool, StoreError> {
                <$store>::remove_source(self, id).await
            }
            async fn reseal_sources(&self) -> Result<u64, StoreError> {
                <$store>::reseal_sources(self).await
            }
            fn spawn_purger(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
                <$store>::spawn_purger(self, every)
            }
        }
    };
}
#[cfg(feature = "postgres")]
state_store!(PostgresStore);
state_store!(SqliteStore);

/// `store` seeded (idempotently: a later start finds what is there) with
/// `seed` and the configured `sources`, its purger spawned, as the
/// server's stores; `wakeup` is notified when it keeps a start.
async fn durable<S: StateStore>(
    store: S,
    seed: &Seed,
    sources: &[WebhookSource],
    wakeup: Arc<tokio::sync::Notify>,
    kept_in: String,
) -> Result<Stores, Box<dyn std::error::Error>> {
    for model in &seed.models {
        store.insert_model(model.clone()).await?;
    }
    for deployment in &seed.deployments {
        store.deploy(deployment.clone()).await?;
    }
    for (digest, environment) in &seed.tokens {
        store.insert_digest(*digest, environment.clone()).await?;
    }
    for source in sources {
        store.put_source(source).await?;
    }
    if store.reseal_sources().await.is_ok_and(|n| n > 0) {
        println!("sources: secrets sealed again under WEBHOOK_SECRET_KEY");
    }
    store.spawn_purger(std::time::Duration::from_secs(60));
    let store = Arc::new(store);
    with_redis(Stores {
        inbox_wakeup: Some(wakeup),
        models: store.clone(),
        tokens: store.clone(),
        sources: store.clone(),
        inbox: Some(store.clone()),
        log: Some(store.clone()),
        idempotency: store,
        limiter: Arc::new(InMemoryRateLimiter::new()),
        kept_in,
        file: None,
        token_from_before: false,
    })
    .await
}

/// PostgreSQL when `DATABASE_URL` is set (feature `postgres`), else the
/// file of `WEBHOOK_DATA`, or memory with `WEBHOOK_DATA=:memory:`; seeded
/// either way (idempotently: a later start finds what is there), with the
/// configured sources. `generated`: the seed's token was generated for this
/// start; a file that holds a token of its environment already keeps that
/// one instead (a restart does not add a valid token each time).
pub(crate) async fn stores(
    seed: &Seed,
    sources: &[WebhookSource],
    generated: bool,
) -> Result<Stores, Box<dyn std::error::Error>> {
    #[cfg(feature = "postgres")]
    if std::env::var("DATABASE_URL").is_ok() {
        let (current, _) = secret_keys()?;
        if current.is_none() && !sources.is_empty() {
            return Err(Box::new(BadSetting {
                variable: "WEBHOOK_SECRET_KEY",
                value: None,
                problem: "not set: with DATABASE_URL, sources' secrets are stored encrypted under this key \
                          (32 bytes in base64, e.g. from `openssl rand -base64 32`), and the server refuses \
                          to store one without it"
                    .to_owned(),
            }));
        }
        let store = postgres_store().await?;
        println!(
            "stores: PostgreSQL from DATABASE_URL (schema {}) for models, tokens, sources and idempotency keys",
            store.schema()
        );
        let wakeup = Arc::new(tokio::sync::Notify::new());
        store.spawn_inbox_wakeups(&wakeup);
        return durable(store, seed, sources, wakeup, "PostgreSQL".to_owned()).await;
    }
    if let Data::File(path) = data() {
        let store = sqlite_store(&path).await?;
        let kept_in = format!("the file {}", path.display());
        println!(
            "stores: {kept_in} (WEBHOOK_DATA; :memory: for none) for models, tokens, sources, idempotency keys, \
             kept starts and the delivery log"
        );
        let wakeup = Arc::new(tokio::sync::Notify::new());
        store.notify_on_keep(&wakeup);
        let file = store.clone();
        let token_from_before = generated && {
            let held = store.tokens().await?;
            seed.tokens
                .iter()
                .any(|(_, environment)| held.iter().any(|(_, h)| h == environment))
        };
        let stores = if token_from_before {
            let without = Seed {
                tokens: Vec::new(),
                ..seed.clone()
            };
            durable(store, &without, sources, wakeup, kept_in).await?
        } else {
            durable(store, seed, sources, wakeup, kept_in).await?
        };
        return Ok(Stores {
            file: Some(file),
            token_from_before,
            ..stores
        });
    }
    let models = InMemoryModelStore::new();
    for model in &seed.models {
        models.insert_model(model.clone());
    }
    for deployment in &seed.deployments {
        models.deploy(deployment.clone());
    }
    let tokens = InMemoryTokenStore::new();
    for (digest, environment) in &seed.tokens {
        tokens.insert_digest(*digest, environment.clone());
    }
    let in_memory = InMemorySourceStore::new();
    for source in sources {
        in_memory.put_source(source.clone());
    }
    let capacity = idempotency_capacity()?;
    println!("stores: in memory (WEBHOOK_DATA=:memory:): nothing survives a restart");
    println!("idempotency keys: in memory, at most {capacity} (WEBHOOK_IDEMPOTENCY_CAPACITY)");
    with_redis(Stores {
        models: Arc::new(models),
        tokens: Arc::new(tokens),
        sources: Arc::new(in_memory),
        idempotency: Arc::new(InMemoryIdempotencyStore::new().with_capacity(capacity)),
        limiter: Arc::new(InMemoryRateLimiter::new()),
        inbox: None,
        inbox_wakeup: None,
        log: None,
        kept_in: "memory".to_owned(),
        file: None,
        token_from_before: false,
    })
    .await
}

/// `WEBHOOK_IDEMPOTENCY_CAPACITY`: the most keys the in-memory idempotency
/// store holds (500,000 by default; at least 1).
fn idempotency_capacity() -> Result<usize, BadSetting> {
    match std::env::var("WEBHOOK_IDEMPOTENCY_CAPACITY") {
        Ok(text) if !text.trim().is_empty() => match text.trim().parse::<usize>() {
            Ok(capacity) if capacity > 0 => Ok(capacity),
            _ => Err(BadSetting {
                variable: "WEBHOOK_IDEMPOTENCY_CAPACITY",
                value: Some(text.clone()),
                problem: "must be a whole number of keys, at least 1 (each holds about 540 bytes)".to_owned(),
            }),
        },
        _ => Ok(InMemoryIdempotencyStore::DEFAULT_CAPACITY),
    }
}
