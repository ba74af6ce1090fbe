//! What guards a starter against hostile traffic: the bound on body bytes
//! being read at once, and the aggregated log of failed authentications.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The default bound on the bytes of bodies being read at once, across all
/// connections: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The default time limit for a whole body to arrive: 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of bodies being read (and held) at once, against a bound shared by
/// every clone of a starter.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
    max: usize,
}

/// Bytes taken from a [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct BodyBytes {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// The bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// An empty claim, to grow as bytes arrive.
    pub(crate) fn claim(self: &Arc<Self>) -> BodyBytes {
        BodyBytes {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl BodyBytes {
    /// The bytes taken so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes; false (and nothing taken) when that would pass the
    /// bound.
    pub(crate) fn grow(&mut self, more: usize) -> bool {
        let budget = &self.budget;
        let taken = budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&total| total <= budget.max)
            })
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for BodyBytes {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Failed authentications, counted per client address and logged at most
/// once a second per address (`warn`, target `process_webhook`), so that a
/// guessing run is seen without one event per guess.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    sources: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug)]
struct Window {
    /// When the last event for this source was emitted (never: `None`).
    logged: Option<Instant>,
    /// Failures since then, not yet in an event.
    unlogged: u64,
}

/// How many sources are remembered at most; past it, sources whose last
/// event is over a second old are forgotten (their next failure is logged at
/// once).
const MAX_SOURCES: usize = 10_000;

impl AuthFailures {
    /// Counts one failure of `source` (`code` is the refusal's code) and logs
    /// when the source's last event is a second old or more.
    pub(crate) fn record(&self, source: IpAddr, code: &'static str) {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, w| !w.is_due(now));
            if sources.len() >= MAX_SOURCES {
                // Still full of active sources: log this one alone, unmerged.
                drop(sources);
                log_failures(source, code, 1);
                return;
            }
        }
        let window = sources.entry(source).or_insert(Window {
            logged: None,
            unlogged: 0,
        });
        window.unlogged += 1;
        if window.is_due(now) {
            let failures = std::mem::take(&mut window.unlogged);
            window.logged = Some(now);
            drop(sources);
            log_failures(source, code, failures);
        }
    }
}

impl Window {
    /// Whether this source's next failure is logged: its last event is a
    /// second old or more, or there was none.
    fn is_due(&self, now: Instant) -> bool {
        self.logged
            .is_none_or(|logged| now.duration_since(logged) >= Duration::from_secs(1))
    }
}

fn log_failures(source: IpAddr, code: &'static str, failures: u64) {
    tracing::warn!(
        target: "process_webhook",
        client = %source,
        failures,
        last_code = code,
        "failed authentications"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_gives_bytes_back_when_a_claim_is_dropped() {
        let budget = BodyBudget::new(100);
        let mut a = budget.claim();
        assert!(a.grow(60));
        let mut b = budget.claim();
        assert!(!b.grow(41), "60 + 41 is over the bound");
        assert!(b.grow(40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
