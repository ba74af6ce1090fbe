//! [`RedisIdempotencyStore`] (feature `redis`): idempotency keys that
//! several replicas share through Redis.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::outcome::StartOutcome;
use crate::redis_call::{bounded, ping};
use crate::store::idempotency::{outcome_from_stored, stored_outcome};
use crate::store::{
    DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey, IdempotencyStore, PayloadFingerprint,
    Reservation, StoreError,
};

/// The default bound on one Redis call: 1 second.
pub(crate) const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

// A key's value is a string: `R{fingerprint}` while reserved, then
// `C{fingerprint}{outcome}` once completed (the fingerprint as 64 hex
// digits, the outcome as JSON). Its age is read off its TTL, on Redis's
// clock: the TTL is set once, at the reservation, and kept after it.

/// The reservation of a key that exists (the fast path, a plain
/// `SET … NX PX`, found it taken): reports who holds it, or takes it over
/// when its reservation is older than the lease, or (a takeover) when it
/// holds the same value (fingerprint) and is at least the takeover age
/// old. `{1, '', ''}` when reserved, else `{0, fingerprint, outcome or
/// ''}`. KEYS[1]: the key; ARGV: the new value, the retention (ms), the
/// lease (ms), the takeover age (ms; the lease for a plain reservation).
const RESERVE: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 1) == 'C' then
    return {0, string.sub(v, 2, 65), string.sub(v, 66)}
  end
  local age = tonumber(ARGV[2]) - redis.call('PTTL', KEYS[1])
  if age < tonumber(ARGV[3]) and (v ~= ARGV[1] or age < tonumber(ARGV[4])) then
    return {0, string.sub(v, 2, 65), ''}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, '', ''}
";

/// Records an outcome when this process no longer knows the key's
/// fingerprint: 1 done (or already completed), 0 not reserved.
const COMPLETE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if string.sub(v, 1, 1) == 'R' then
  redis.call('SET', KEYS[1], 'C' .. string.sub(v, 2, 65) .. ARGV[1], 'KEEPTTL')
end
return 1
";

/// Frees a key that has no outcome.
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'R' then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// How many reservations in flight this process remembers the fingerprint
/// of before it forgets those older than the lease (their start's future
/// was dropped).
const INFLIGHT_PRUNE_AT: usize = 4096;

/// Idempotency keys in Redis, with the rules of the other idempotency stores:
/// kept 24 h from the reservation (Redis expires them by itself), a 5-minute
/// lease for abandoned reservations, replay, `422` reuse, `409` in progress.
///
/// Each operation is one atomic Redis call on Redis's clock: a new key is
/// reserved with a plain `SET … NX PX` and completed with
/// `SET … XX KEEPTTL` (the fingerprint the reservation wrote is remembered
/// in process until then), and the rarer cases (a key that exists, a
/// release) are one Lua script each. A key is stored as a string at
/// `{prefix}:idem:{h}` (prefix
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
    scripts: Arc<(Script, Script, Script)>,
    /// The fingerprints of reservations this process made and has not
    /// completed or released yet, by Redis key.
    inflight: Arc<Mutex<HashMap<String, (PayloadFingerprint, Instant)>>>,
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
    /// The default bound on one Redis call: 1 second.
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_REDIS_TIMEOUT;
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
            scripts: Arc::new((Script::new(RESERVE), Script::new(COMPLETE), Script::new(RELEASE))),
            inflight: Arc::default(),
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
        hasher.update(
            key.process()
                .as_uuid()
                .as_hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        hasher.update(b"\n");
        hasher.update(key.key().as_bytes());
        let mut redis_key = String::with_capacity(self.prefix.len() + 6 + 64);
        redis_key.push_str(&self.prefix);
        redis_key.push_str(":idem:");
        push_hex(&mut redis_key, &hasher.finalize());
        redis_key
    }

    /// Remembers the fingerprint of a reservation until it is completed or
    /// released.
    fn remember(&self, redis_key: String, fingerprint: PayloadFingerprint) {
        let now = Instant::now();
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if inflight.len() >= INFLIGHT_PRUNE_AT {
            let lease = self.lease;
            inflight.retain(|_, (_, at)| now.duration_since(*at) < lease);
        }
        inflight.insert(redis_key, (fingerprint, now));
    }

    fn forget(&self, redis_key: &str) -> Option<PayloadFingerprint> {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(redis_key)
            .map(|(fingerprint, _)| fingerprint)
    }

    /// Runs one command, bounded by the timeout.
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        command: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        bounded(what, self.timeout, command.query_async::<T>(&mut connection)).await
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
        bounded(what, self.timeout, invocation.invoke_async::<T>(&mut connection)).await
    }
}

impl RedisIdempotencyStore {
    /// A reservation of `key`, or the takeover of its reservation in
    /// progress for `fingerprint` made at least `held_for` ago (the lease,
    /// for a plain reservation).
    async fn reserve_or_take(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        let redis_key = self.redis_key(key);
        let mut value = String::with_capacity(65);
        value.push('R');
        push_hex(&mut value, fingerprint.as_bytes());
        let ttl_ms = self.ttl.as_millis().max(1) as u64;
        let mut set = redis::cmd("SET");
        set.arg(&redis_key).arg(&value).arg("NX").arg("PX").arg(ttl_ms);
        let fresh: Option<String> = self.query("reserving a key", set).await?;
        if fresh.is_some() {
            self.remember(redis_key, fingerprint);
            return Ok(Reservation::Reserved);
        }
        let lease_ms = self.lease.as_millis().to_string();
        let answer: (i64, String, String) = self
            .run(
                "reserving a key",
                &self.scripts.0,
                redis_key.clone(),
                &[
                    value,
                    ttl_ms.to_string(),
                    lease_ms,
                    held_for.as_millis().to_string(),
                ],
            )
            .await?;
        match answer {
            (1, _, _) => {
                self.remember(redis_key, fingerprint);
                Ok(Reservation::Reserved)
            }
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
        self.reserve_or_take(key, fingerprint, self.lease).await
    }

    /// The reservation script with a takeover age: atomic in Redis, so of
    /// concurrent takers one resets the key's age and the others find it
    /// young.
    async fn take_over(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Duration,
    ) -> Result<Reservation, StoreError> {
        self.reserve_or_take(key, fingerprint, held_for).await
    }

    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        let stored = stored_outcome(outcome).to_string();
        let done = match self.forget(&redis_key) {
            Some(fingerprint) => {
                let mut value = String::with_capacity(65 + stored.len());
                value.push('C');
                push_hex(&mut value, fingerprint.as_bytes());
                value.push_str(&stored);
                let mut set = redis::cmd("SET");
                set.arg(&redis_key).arg(value).arg("XX").arg("KEEPTTL");
                let set: Option<String> = self.query("completing a key", set).await?;
                set.is_some()
            }
            None => {
                let done: i64 = self
                    .run("completing a key", &self.scripts.1, redis_key, &[stored])
                    .await?;
                done == 1
            }
        };
        if !done {
            return Err(StoreError::new(
                "completing an idempotency key that is not reserved",
            ));
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        let redis_key = self.redis_key(key);
        self.forget(&redis_key);
        let _: i64 = self
            .run("releasing a key", &self.scripts.2, redis_key, &[])
            .await?;
        Ok(())
    }
}

/// Appends `bytes` as lowercase hex digits.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
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
