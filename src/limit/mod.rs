//! Rate limits: the [`RateLimiter`] port, its [`Quota`]s and decisions,
//! and the GCRA arithmetic every backend shares.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::StoreError;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::InMemoryRateLimiter;
#[cfg(feature = "redis")]
pub use redis::RedisRateLimiter;

/// A rate: `count` units per `period`, of which up to `burst` may be taken
/// at once (by default the whole `count`).
///
/// Parsed from `100/s`, `6000/min`, `10/h` (also `/sec`, `/second`,
/// `/minute`, `/hour`).
///
/// ```
/// use std::time::Duration;
/// use process_webhook::Quota;
///
/// let quota: Quota = "6000/min".parse().unwrap();
/// assert_eq!((quota.count(), quota.period()), (6000, Duration::from_secs(60)));
/// assert_eq!("100/s".parse::<Quota>().unwrap(), Quota::per_second(100));
/// assert!("0/s".parse::<Quota>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Quota {
    /// `count` units per `period` (both at least 1 unit / 1 ms), burst `count`.
    pub fn new(count: u32, period: Duration) -> Self {
        let count = count.max(1);
        Self {
            count,
            period: period.max(Duration::from_millis(1)),
            burst: count,
        }
    }

    /// `count` units a second.
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` units a minute.
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// Sets how many units may be taken at once (at least 1).
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// The units per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time one unit takes to come back, in microseconds (at least 1).
    pub(crate) fn interval_us(&self) -> u64 {
        // In u64: a u128 division is a library call, on every decision.
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.count)).max(1)
    }
}

/// A quota's text is not `N/s`, `N/min` or `N/h` with N ≥ 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate limit is written N/s, N/min or N/h, with N at least 1")]
pub struct InvalidQuota;

impl FromStr for Quota {
    type Err = InvalidQuota;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, unit) = s.trim().split_once('/').ok_or(InvalidQuota)?;
        let count: u32 = count.trim().parse().map_err(|_| InvalidQuota)?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "m" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(InvalidQuota),
        };
        if count == 0 {
            return Err(InvalidQuota);
        }
        Ok(Self::new(count, period))
    }
}

/// What a [`RateLimiter`] decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RateDecision {
    allowed: bool,
    remaining: u32,
    reset_after: Duration,
    retry_after: Duration,
}

impl RateDecision {
    /// A decision (for a limiter of your own).
    pub fn new(allowed: bool, remaining: u32, reset_after: Duration, retry_after: Duration) -> Self {
        Self {
            allowed,
            remaining,
            reset_after,
            retry_after,
        }
    }

    /// Whether the unit may be taken.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Units that may still be taken at once.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// The time until the allowance is whole again.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// The time until a refused unit would be allowed (zero when allowed).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// Where rate-limit state is kept: in memory for one process, in Redis for
/// many replicas that share one limit.
///
/// # Contract
///
/// - `acquire` takes one unit of `key`'s allowance under `quota` if it is
///   there, atomically (concurrent callers never take more than the quota
///   allows), and says what it decided; a refused unit is not taken.
/// - `peek` says whether one unit would be allowed, taking nothing.
/// - Keys forget their state once it is whole again.
/// - An `Err` means the limiter could not answer; the starter then follows
///   its policy ([`OnLimiterError`]).
///
/// # Methods, as you write them
///
/// With [`#[async_trait]`](crate::async_trait):
///
/// ```text
/// async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError>;
/// async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError>;
/// ```
///
/// # Wrappers
///
/// A limiter that wraps another forwards [`acquire_now`](Self::acquire_now)
/// and [`ready`](Self::ready) too: the defaults would hide the inner
/// limiter's. `Arc<L>` does.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one unit of `key`'s allowance, if it is there.
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError>;

    /// Whether one unit of `key`'s allowance would be taken, taking nothing.
    async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError>;

    /// [`acquire`](Self::acquire) without waiting, for a limiter that can
    /// decide at once (one in the process's memory): `Some` with the
    /// decision, or `None` (the default) when the starter must call
    /// `acquire`. It spares a start the boxed future of an async call; the
    /// decision must be the one `acquire` would make.
    fn acquire_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, StoreError>> {
        let _ = (key, quota);
        None
    }

    /// Whether the limiter can serve now (Redis's `PING` for
    /// `RedisRateLimiter`); the default says yes.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl<T: RateLimiter + ?Sized> RateLimiter for std::sync::Arc<T> {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        (**self).acquire(key, quota).await
    }

    async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        (**self).peek(key, quota).await
    }

    fn acquire_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, StoreError>> {
        (**self).acquire_now(key, quota)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        (**self).ready().await
    }
}

/// What the starter does when its limiter cannot answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum OnLimiterError {
    /// Let the call through and log an error (the default: a limiter
    /// outage does not stop starts).
    #[default]
    Allow,
    /// Refuse the call with `503 store_unavailable`.
    Refuse,
}

/// Which limits a [`WebhookStarter`](crate::WebhookStarter) applies.
///
/// ```
/// use process_webhook::{OnLimiterError, Quota, RateLimitPolicy};
///
/// let policy = RateLimitPolicy::default()
///     .with_per_environment(Quota::per_second(100).with_burst(20))
///     .with_failed_authentications_per_client(Quota::per_minute(30))
///     .with_on_error(OnLimiterError::Refuse);
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RateLimitPolicy {
    pub(crate) per_environment: Option<Quota>,
    pub(crate) failed_auth: Option<Quota>,
    pub(crate) on_error: OnLimiterError,
}

impl RateLimitPolicy {
    /// Limits the calls of each environment (starts, dry runs and schema
    /// requests alike), checked after authentication and before
    /// validation, the idempotency store and the engine.
    pub fn with_per_environment(mut self, quota: Quota) -> Self {
        self.per_environment = Some(quota);
        self
    }

    /// Limits failed authentications per client address; once a client is
    /// over it, its calls are refused before the token store is consulted.
    pub fn with_failed_authentications_per_client(mut self, quota: Quota) -> Self {
        self.failed_auth = Some(quota);
        self
    }

    /// Sets what happens when the limiter cannot answer (default: allow).
    pub fn with_on_error(mut self, on_error: OnLimiterError) -> Self {
        self.on_error = on_error;
        self
    }

    /// The limit of each environment's calls, if any.
    pub fn per_environment(&self) -> Option<Quota> {
        self.per_environment
    }

    /// The limit of each client's failed authentications, if any.
    pub fn failed_authentications_per_client(&self) -> Option<Quota> {
        self.failed_auth
    }

    /// What happens when the limiter cannot answer.
    pub fn on_error(&self) -> OnLimiterError {
        self.on_error
    }
}

/// The Generic Cell Rate Algorithm on one key: `tat` is the stored
/// theoretical arrival time (µs, any epoch shared with `now`), `take`
/// whether a unit is taken. Returns the decision and the new `tat` to store
/// (when a unit was taken).
pub(crate) fn gcra(tat: Option<u64>, now: u64, quota: Quota, take: bool) -> (RateDecision, Option<u64>) {
    let interval = quota.interval_us();
    let window = interval.saturating_mul(u64::from(quota.burst));
    let tat = tat.unwrap_or(now).max(now);
    let next = tat.saturating_add(interval);
    let remaining_after =
        |held: u64| (window.saturating_sub(held) / interval).min(u64::from(u32::MAX)) as u32;
    if next - now > window {
        // Refused: not even one unit is left.
        let decision = RateDecision::new(
            false,
            0,
            Duration::from_micros(tat - now),
            Duration::from_micros(next - now - window),
        );
        (decision, None)
    } else {
        let held = if take { next } else { tat };
        let decision = RateDecision::new(
            true,
            remaining_after(held - now),
            Duration::from_micros(held - now),
            Duration::ZERO,
        );
        (decision, take.then_some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_one_unit_per_interval() {
        let quota = Quota::per_second(10).with_burst(3); // 100 ms a unit
        let mut tat = None;
        let mut now = 1_000_000;
        for left in [2, 1, 0] {
            let (d, next) = gcra(tat, now, quota, true);
            assert!(d.allowed());
            assert_eq!(d.remaining(), left);
            tat = next;
        }
        let (d, next) = gcra(tat, now, quota, true);
        assert!(!d.allowed());
        assert_eq!(next, None, "a refused unit is not taken");
        assert_eq!(d.retry_after(), Duration::from_millis(100));
        assert_eq!(d.reset_after(), Duration::from_millis(300));
        now += 100_000;
        let (d, _) = gcra(tat, now, quota, false);
        assert!(d.allowed(), "a peek after the interval sees room");
        let (d, next) = gcra(tat, now, quota, true);
        assert!(d.allowed());
        assert_eq!(d.remaining(), 0);
        tat = next;
        // Long idle: whole again.
        let (d, _) = gcra(tat, now + 10_000_000, quota, false);
        assert_eq!(d.remaining(), 3);
        assert_eq!(d.reset_after(), Duration::ZERO);
    }

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        assert_eq!("100/s".parse::<Quota>().unwrap(), Quota::per_second(100));
        assert_eq!(" 6000 / min ".parse::<Quota>().unwrap(), Quota::per_minute(6000));
        assert_eq!(
            "10/h".parse::<Quota>().unwrap().period(),
            Duration::from_secs(3600)
        );
        for bad in ["", "100", "x/s", "-1/s", "0/min", "5/day", "5/"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
        assert_eq!(Quota::per_second(1000).interval_us(), 1000);
        let quota = Quota::per_minute(60).with_burst(7);
        assert_eq!(
            (quota.count(), quota.burst(), quota.period()),
            (60, 7, Duration::from_secs(60))
        );
        assert_eq!(
            Quota::per_second(5).burst(),
            5,
            "the burst is the count unless set"
        );
        assert_eq!(Quota::per_second(5).with_burst(0).burst(), 1, "at least one");
    }
}
