//! The stores the server keeps its state in: PostgreSQL (`DATABASE_URL`)
//! or memory, Redis (`REDIS_URL`) for keys and limits, seeded with what it
//! serves.

use std::sync::Arc;

use process_webhook::*;

use crate::BadSetting;
use crate::Seed;
#[cfg(any(feature = "postgres", feature = "redis"))]
use crate::bad_setting;

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
    /// The durable delivery log (PostgreSQL), where there is one.
    pub(crate) log: Option<Arc<dyn DeliveryLog>>,
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

/// The key of `WEBHOOK_SECRET_KEY` and the older ones of
/// `WEBHOOK_OLD_SECRET_KEYS`, each named by the start of its SHA-256 (so
/// that rows say which key sealed them without naming it).
#[cfg(feature = "postgres")]
fn secret_keys() -> Result<(Option<EncryptionKey>, Vec<EncryptionKey>), BadSetting> {
    use sha2::Digest as _;
    let key = |variable: &'static str, text: &str| {
        let named = |bytes: &[u8]| format!("k{}", &hex::encode(sha2::Sha256::digest(bytes))[..12]);
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text.trim())
            .unwrap_or_default();
        EncryptionKey::from_base64(&named(&bytes), text).map_err(|e| bad_setting(variable, None, &e))
    };
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

/// PostgreSQL when `DATABASE_URL` is set (feature `postgres`), else memory;
/// seeded either way, with the configured sources.
pub(crate) async fn stores(
    seed: &Seed,
    sources: &[WebhookSource],
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
        println!(
            "stores: PostgreSQL from DATABASE_URL (schema {}) for models, tokens, sources and idempotency keys",
            store.schema()
        );
        let wakeup = Arc::new(tokio::sync::Notify::new());
        store.spawn_inbox_wakeups(&wakeup);
        let store = Arc::new(store);
        return with_redis(Stores {
            inbox_wakeup: Some(wakeup),
            models: store.clone(),
            tokens: store.clone(),
            sources: store.clone(),
            inbox: Some(store.clone()),
            log: Some(store.clone()),
            idempotency: store,
            limiter: Arc::new(InMemoryRateLimiter::new()),
        })
        .await;
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
    println!("stores: in memory (set DATABASE_URL, with the postgres feature, for PostgreSQL)");
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
