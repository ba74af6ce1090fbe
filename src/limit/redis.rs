//! [`RedisRateLimiter`]: rate limits that several replicas share.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use crate::limit::{Quota, RateDecision, RateLimiter};
use crate::store::StoreError;

/// GCRA in one script, on Redis's clock: KEYS[1] the key; ARGV the interval
/// (µs), the burst, and 1 to take a unit or 0 to look.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > window then
  return {0, math.floor((window - (tat - now)) / interval), tat - now, nxt - now - window}
end
local held = tat
if ARGV[3] == '1' then
  held = nxt
  redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
end
return {1, math.floor((window - (held - now)) / interval), held - now, 0}
";

/// Rate limits in Redis (GCRA in one Lua script, on Redis's clock), so that
/// replicas sharing the Redis share each limit. Keys are `{prefix}:{key}`
/// and expire once their allowance is whole. Each call is bounded (1 s by
/// default). Clones share the connection.
#[derive(Clone)]
pub struct RedisRateLimiter {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    script: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on this connection, with keys under `process_webhook:rate`.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            prefix: "process_webhook:rate".to_owned(),
            timeout: Duration::from_secs(1),
            script: Script::new(GCRA),
        }
    }

    /// Puts the keys under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each call (default 1 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&self, key: &str, quota: Quota, take: bool) -> Result<RateDecision, StoreError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("{}:{key}", self.prefix))
            .arg(quota.interval_us())
            .arg(quota.burst())
            .arg(if take { "1" } else { "0" });
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        let (allowed, remaining, reset, retry) =
            crate::redis_call::bounded("rate limit", self.timeout, call).await?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(RateDecision::new(
            allowed == 1,
            u32::try_from(remaining).unwrap_or(0),
            micros(reset),
            micros(retry),
        ))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        self.run(key, quota, true).await
    }

    async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        self.run(key, quota, false).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        crate::redis_call::ping(&self.connection, self.timeout).await
    }
}
