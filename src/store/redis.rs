//! [`RedisIdempotencyStore`] (feature `redis`): idempotency keys that
//! several replicas share through Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::store::idempotency::{outcome_from_stored, stored_outcome};
use crate::store::{
    DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey, IdempotencyStore, PayloadFingerprint,
    Reservation, StoreError,
};
use crate::webhook::StartOutcome;

/// The default bound on one Redis call: 1 second.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Reserves a key, or reports who has it: `{1, '', ''}` when reserved, else
/// `{0, fingerprint, outcome or ''}`. KEYS[1]: the key; ARGV: the
/// fingerprint, the retention (ms), the lease (µs).
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = redis.call('HMGET', KEYS[1], 'fp', 'at', 'outcome')
if cur[1] then
  if cur[3] or (now - tonumber(cur[2])) < tonumber(ARGV[3]) then
    return {0, cur[1], cur[3] or ''}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, '', ''}
";

/// Records an outcome: 1 done, 0 not reserved.
const COMPLETE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'outcome') == 0 then
  redis.call('HSET', KEYS[1], 'outcome', ARGV[1])
end
return 1
";

/// Frees a key that has no outcome.
const RELEASE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 'outcome') == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Idempotency keys in Redis, with the rules of the other idempotency stores:
/// kept 24 h from the reservation (Redis expires them by itself), a 5-minute
/// lease for abandoned reservations, replay, `422` reuse, `409` in progress.
///
/// Each operation is one Lua script, atomic in Redis and on Redis's clock.
/// A key is stored as a hash at `{prefix}:idem:{h}` (prefix
/// `process_webhook` by default), where `h` is the hex SHA-256 of
/// environment, process and key, so that any key text is safe. Each call is
/// bounded (1 s by default): Redis down or slow is `503 store_unavailable`,
/// and the connection manager reconnects by itself. Redis has no capacity
/// bound here, so it never answers [`Reservation::Full`]; give Redis the
/// memory for a day of keys (and no eviction policy that drops them).
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = RedisIdempotencyStore::connect("redis://127.0.0.1:6379").await?;
/// let limiter = RedisRateLimiter::new(keys.connection());
/// # let _ = (keys, limiter);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    connection: ConnectionManager,
    prefix: String,
    ttl: Duration,
    lease: Duration,
    timeout: Duration,
    scripts: (Script, Script, Script),
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// A store on this connection.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: "process_webhook".to_owned(),
            ttl: DEFAULT_IDEMPOTENCY_TTL,
            lease: DEFAULT_IDEMPOTENCY_LEASE,
            timeout: DEFAULT_REDIS_TIMEOUT,
            scripts: (Script::new(RESERVE), Script::new(COMPLETE), Script::new(RELEASE)),
        }
    }

    /// A store on a new connection manager for `url` (1 s connection and
    /// response timeouts; it reconnects by itself).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the URL is not valid or Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::new("the Redis URL is not valid").with_source(e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEFAULT_REDIS_TIMEOUT))
            .set_response_timeout(Some(DEFAULT_REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::new("could not connect to Redis").with_source(e))?;
        Ok(Self::new(connection))
    }

    /// The connection, to share with a [`RedisRateLimiter`](crate::RedisRateLimiter).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Puts the keys under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets how long keys are kept (default 24 h).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the lease after which an unfinished reservation counts as
    /// abandoned (default 5 minutes).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Bounds each call (default 1 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn redis_key(&self, key: &IdempotencyKey) -> String {
        let mut hasher = Sha256::new();
        hasher.update(key.environment().as_str().as_bytes());
        hasher.update(b"\n");
        hasher.update(key.process().to_string().as_bytes());
        hasher.update(b"\n");
        hasher.update(key.key().as_bytes());
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:idem:{hex}", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &Script,
        key: String,
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = script.prepare_invoke();
        invocation.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::new(format!("redis: {what}")).with_source(error)),
            Err(_) => Err(StoreError::new(format!(
                "redis: {what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

/// One `PING`, bounded by `timeout`: whether Redis answers now.
pub(crate) async fn ping(connection: &ConnectionManager, timeout: Duration) -> Result<(), StoreError> {
    let mut connection = connection.clone();
    let command = redis::cmd("PING");
    let ping = command.query_async::<String>(&mut connection);
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(StoreError::new("redis: ping").with_source(error)),
        Err(_) => Err(StoreError::new(format!(
            "redis: ping: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    async fn ready(&self) -> Result<(), StoreError> {
        ping(&self.connection, self.timeout).await
    }

    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        let fp: String = fingerprint
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ttl_ms = self.ttl.as_millis().max(1).to_string();
        let lease_us = self.lease.as_micros().to_string();
        let answer: (i64, String, String) = self
            .run(
                "reserving a key",
                &self.scripts.0,
                self.redis_key(key),
                &[fp, ttl_ms, lease_us],
            )
            .await?;
        match answer {
            (1, _, _) => Ok(Reservation::Reserved),
            (_, held, outcome) => {
                let held = parse_fingerprint(&held)?;
                Ok(match Some(outcome).filter(|text| !text.is_empty()) {
                    None => Reservation::InProgress { fingerprint: held },
                    Some(text) => {
                        let stored = serde_json::from_str(&text).map_err(|e| {
                            StoreError::new("redis: a stored outcome is not JSON").with_source(e)
                        })?;
                        Reservation::Completed {
                            fingerprint: held,
                            outcome: outcome_from_stored(&stored)?,
                        }
                    }
                })
            }
        }
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        let stored = stored_outcome(outcome).to_string();
        let done: i64 = self
            .run(
                "completing a key",
                &self.scripts.1,
                self.redis_key(key),
                &[stored],
            )
            .await?;
        if done == 0 {
            return Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            ));
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let _: i64 = self
            .run("releasing a key", &self.scripts.2, self.redis_key(key), &[])
            .await?;
        Ok(())
    }
}

fn parse_fingerprint(hex: &str) -> Result<PayloadFingerprint, StoreError> {
    let bad = || StoreError::new("redis: a stored fingerprint is not 64 hex digits");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(PayloadFingerprint::from_bytes(bytes))
}
