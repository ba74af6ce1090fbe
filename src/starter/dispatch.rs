//! The [`Dispatcher`]: starts the starts an inbox keeps, with leases,
//! backoff and dead starts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;

use crate::engine::{Engine, ProcessInstance, Recovery};
use crate::error::WebhookError;
use crate::id::InstanceId;
use crate::inbox::{Claimed, Inbox};
use crate::observe::{self, catch_panic, chain};
use crate::outcome::StartOutcome;
use crate::port_error::StoreError;
use crate::starter::WebhookStarter;
use crate::starter::inbox::complete_key;
use crate::store::IdempotencyStore;
#[cfg(feature = "delivery-log")]
use crate::{delivery_log::LoggedOutcome, starter::deliveries::attempt_record};

/// Starts what a starter's inbox keeps: claims due starts with a lease,
/// calls the engine, and completes each start (and its idempotency key)
/// with its instance. A failure worth retrying makes the start due again
/// after an exponential backoff with full jitter (honouring the engine's
/// `Retry-After`); a start the engine refuses, or one older than the
/// maximum age, is dead, with the reason kept for the operator.
///
/// Each replica runs one: the host calls [`dispatch_due`](Self::dispatch_due)
/// on a timer, or, with the `dispatcher` feature, spawns
/// `run` (feature `dispatcher`). Replicas share the work through the leases: a start
/// is dispatched by one at a time, and a replica that dies while
/// dispatching leaves its starts to another once their lease ends. A start
/// dispatched again is recognised by an engine that deduplicates (Temporal:
/// the workflow id follows the start's key) or finds starts by business key
/// (Camunda 7 looks first); see the guarantees guide for other engines. No
/// order of starts is promised.
#[derive(Clone)]
pub struct Dispatcher {
    inbox: Arc<dyn Inbox>,
    engine: Arc<dyn Engine>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    lease: Duration,
    poll_interval: Duration,
    batch: usize,
    backoff_base: Duration,
    backoff_cap: Duration,
    max_age: Duration,
    #[cfg(feature = "dispatcher")]
    wakeup: Option<Arc<tokio::sync::Notify>>,
    #[cfg(feature = "delivery-log")]
    log: Option<crate::delivery_log::LogSink>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("batch", &self.batch)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// What became of one claimed start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dispatched {
    Started,
    Rescheduled,
    Dead,
    /// Another dispatcher took it over (its lease ended) or the inbox failed.
    Lost,
}

impl Dispatched {
    fn label(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Rescheduled => "rescheduled",
            Self::Dead => "dead",
            Self::Lost => "lost",
        }
    }
}

impl WebhookStarter {
    /// The dispatcher of this starter's inbox (its engine and idempotency
    /// store), or `None` without an inbox.
    pub fn dispatcher(&self) -> Option<Dispatcher> {
        let kept = self.settings.inbox.as_ref()?;
        Some(Dispatcher {
            inbox: kept.inbox.clone(),
            engine: self.settings.engine.clone(),
            idempotency: self.settings.idempotency.clone(),
            lease: Dispatcher::DEFAULT_LEASE,
            poll_interval: Dispatcher::DEFAULT_POLL_INTERVAL,
            batch: Dispatcher::DEFAULT_BATCH,
            backoff_base: Dispatcher::DEFAULT_BACKOFF_BASE,
            backoff_cap: Dispatcher::DEFAULT_BACKOFF_CAP,
            max_age: Dispatcher::DEFAULT_MAX_AGE,
            #[cfg(feature = "dispatcher")]
            wakeup: None,
            #[cfg(feature = "delivery-log")]
            log: self.settings.log.clone(),
        })
    }
}

impl Dispatcher {
    /// How long a claim holds a start (default 60 s): longer than an engine
    /// call may take, so that a start is not dispatched twice while its call
    /// runs.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    /// How often `run` (feature `dispatcher`) looks for due starts when it found none
    /// (default 1 s).
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// How many starts one round claims and dispatches at once (default 32).
    pub const DEFAULT_BATCH: usize = 32;
    /// The first retry's longest delay (default 1 s); it doubles per attempt.
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
    /// The longest delay between two attempts (default 5 minutes).
    pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
    /// How old a start may grow before it is dead (default 72 hours).
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 60 * 60);

    /// Sets how long a claim holds a start.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets how often `run` (feature `dispatcher`) looks for due starts.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets how many starts one round claims (at least one).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Sets the backoff: the first retry waits up to `base`, each next one
    /// up to twice as long, never more than `cap` (full jitter: a random
    /// delay between zero and that bound).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Wakes `run` (feature `dispatcher`) between its polls when `wakeup` is
    /// notified (`PostgresStore::spawn_inbox_wakeups` notifies it each
    /// time a replica keeps a start).
    #[cfg(feature = "dispatcher")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatcher")))]
    pub fn with_wakeup(mut self, wakeup: Arc<tokio::sync::Notify>) -> Self {
        self.wakeup = Some(wakeup);
        self
    }

    /// Sets how old a start may grow before it is dead.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// One round: claims up to a batch of due starts and dispatches them,
    /// concurrently; answers how many it claimed.
    ///
    /// # Errors
    ///
    /// The inbox could not claim; nothing was dispatched.
    pub async fn dispatch_due(&self) -> Result<usize, StoreError> {
        let claimed = self
            .inbox
            .claim(SystemTime::now(), self.lease, self.batch)
            .await?;
        let count = claimed.len();
        for dispatched in join_all(claimed.into_iter().map(|c| self.dispatch(c))).await {
            observe::dispatched(dispatched.label());
        }
        Ok(count)
    }

    /// Dispatches until `stop` resolves: a round, then the next at once
    /// when the round found starts, else after the poll interval or when
    /// woken ([`with_wakeup`](Self::with_wakeup)). An inbox that fails is
    /// logged and tried again after the poll interval. A round in flight
    /// when `stop` resolves ends first (each of its starts started,
    /// rescheduled or dead, none left to its lease), so that a server
    /// stopping cleanly leaves nothing claimed.
    #[cfg(feature = "dispatcher")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatcher")))]
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut counted = std::time::Instant::now() - self.poll_interval;
        loop {
            if counted.elapsed() >= self.poll_interval {
                counted = std::time::Instant::now();
                self.report().await;
            }
            let claimed = self.dispatch_due().await;
            let pause = match claimed {
                Ok(0) => self.poll_interval,
                Ok(_) => Duration::ZERO,
                Err(error) => {
                    tracing::error!(
                        target: "process_webhook",
                        error = %chain(&error),
                        "the dispatcher could not claim kept starts"
                    );
                    self.poll_interval
                }
            };
            let woken = async {
                match &self.wakeup {
                    Some(wakeup) => wakeup.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
                () = woken => {}
            }
        }
    }

    /// Sets the inbox's gauges (queued and dead starts, the oldest queued
    /// start's age) from its counts; an inbox that cannot count is logged.
    pub async fn report(&self) {
        match self.inbox.counts().await {
            Ok(counts) => {
                let oldest = counts
                    .oldest_queued
                    .and_then(|kept| SystemTime::now().duration_since(kept).ok())
                    .unwrap_or_default();
                observe::inbox(counts.queued, counts.dead, oldest);
            }
            Err(error) => tracing::warn!(
                target: "process_webhook",
                error = %chain(&error),
                "the inbox could not count its starts"
            ),
        }
    }

    /// One claimed start: started, rescheduled or dead.
    async fn dispatch(&self, claimed: Claimed) -> Dispatched {
        let now = SystemTime::now();
        let age = now.duration_since(claimed.start.kept_at).unwrap_or_default();
        if age > self.max_age {
            let reason = format!("older than the maximum age of {} s", self.max_age.as_secs());
            let done = self.inbox.bury(&claimed, &reason).await;
            return self.settle(&claimed, done, Dispatched::Dead, None, Some(reason));
        }
        match self.start(&claimed).await {
            Ok(instance) => {
                let command = &claimed.start.command;
                let outcome = StartOutcome::from_parts(
                    instance.id().clone(),
                    command.process,
                    command.version,
                    command.environment.clone(),
                    command.deployment,
                )
                .with_business_key(instance.business_key())
                .with_idempotency_key(claimed.start.caller_key.as_ref().map(|k| k.key().to_owned()));
                complete_key(
                    self.idempotency.as_deref(),
                    claimed.start.caller_key.as_ref(),
                    &outcome,
                )
                .await;
                let done = self.inbox.complete(&claimed, instance.id()).await;
                self.settle(&claimed, done, Dispatched::Started, Some(instance.id()), None)
            }
            // The engine was away, overloaded, or failed in a way a retry
            // may fix; a store could not answer; a panic was caught.
            Err(error) if error.is_retryable() => {
                let at = now + self.backoff(claimed.attempts, error.retry_after());
                let error = chain(&error);
                let done = self.inbox.reschedule(&claimed, at, &error).await;
                self.settle(&claimed, done, Dispatched::Rescheduled, None, Some(error))
            }
            Err(error) => {
                tracing::warn!(
                    target: "process_webhook",
                    delivery = %claimed.start.id,
                    process = %claimed.start.command.process,
                    error = %chain(&error),
                    "a kept start is dead: the engine refused it"
                );
                let error = chain(&error);
                let done = self.inbox.bury(&claimed, &error).await;
                self.settle(&claimed, done, Dispatched::Dead, None, Some(error))
            }
        }
    }

    /// The engine's start of a claimed start: for an engine that finds
    /// starts by business key, a start tried before is looked up first.
    async fn start(&self, claimed: &Claimed) -> Result<ProcessInstance, WebhookError> {
        // Borrowed, not copied: an engine borrows the command it starts.
        let command = &claimed.start.command;
        if claimed.attempts > 0 && matches!(self.engine.recovery(), Recovery::FindsByBusinessKey { .. }) {
            let engine = &self.engine;
            let found =
                catch_panic(async { engine.find_started(command).await.map_err(WebhookError::from) }).await?;
            if let Some(instance) = found {
                return Ok(instance);
            }
        }
        let engine = &self.engine;
        catch_panic(async move { engine.start(command).await.map_err(WebhookError::from) }).await
    }

    /// A random delay before attempt `attempts + 1`: up to
    /// `min(cap, base × 2^attempts)`, at least the engine's `Retry-After`.
    fn backoff(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let bound = self
            .backoff_base
            .saturating_mul(1_u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX))
            .min(self.backoff_cap);
        let jitter = bound.mul_f64(random_fraction());
        jitter.max(retry_after.unwrap_or_default().min(self.backoff_cap))
    }

    /// What the inbox said of a settled start; the delivery log (if the
    /// starter keeps one) gets the attempt when the inbox recorded it.
    #[cfg_attr(not(feature = "delivery-log"), allow(unused_variables))]
    fn settle(
        &self,
        claimed: &Claimed,
        done: Result<bool, StoreError>,
        dispatched: Dispatched,
        instance: Option<&InstanceId>,
        error: Option<String>,
    ) -> Dispatched {
        match done {
            Ok(true) => {
                #[cfg(feature = "delivery-log")]
                if let Some(sink) = &self.log {
                    let outcome = match dispatched {
                        Dispatched::Started => LoggedOutcome::Started,
                        Dispatched::Dead => LoggedOutcome::Dead,
                        Dispatched::Rescheduled | Dispatched::Lost => LoggedOutcome::Queued,
                    };
                    sink.record(attempt_record(&claimed.start, outcome, instance, error));
                }
                dispatched
            }
            Ok(false) => Dispatched::Lost,
            Err(error) => {
                tracing::error!(
                    target: "process_webhook",
                    error = %chain(&error),
                    "the inbox could not record a dispatched start: its lease ends and it is dispatched again"
                );
                Dispatched::Lost
            }
        }
    }
}

/// A uniform random number in `[0, 1)`.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    // Without randomness the delay is the bound: still a backoff.
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher() -> Dispatcher {
        use crate::{InMemoryEngine, InMemoryInbox, InMemoryModelStore, InMemoryTokenStore, InboxPolicy};
        let starter = WebhookStarter::new(
            Arc::new(InMemoryModelStore::new()),
            Arc::new(InMemoryTokenStore::new()),
            Arc::new(InMemoryEngine::new()),
        )
        .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Always);
        starter.dispatcher().unwrap()
    }

    #[test]
    fn the_backoff_doubles_its_bound_up_to_the_cap_and_honours_retry_after() {
        let d = dispatcher().with_backoff(Duration::from_secs(1), Duration::from_secs(300));
        for attempts in 0..12 {
            let bound = Duration::from_secs(1 << attempts).min(Duration::from_secs(300));
            for _ in 0..50 {
                assert!(d.backoff(attempts, None) <= bound, "{attempts}");
            }
        }
        assert_eq!(
            d.backoff(40, Some(Duration::from_secs(1_000))),
            Duration::from_secs(300)
        );
        assert!(d.backoff(0, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        // Full jitter: the delays of one attempt differ.
        let delays: std::collections::HashSet<_> = (0..20).map(|_| d.backoff(8, None)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn random_fractions_are_within_zero_and_one() {
        for _ in 0..1_000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
