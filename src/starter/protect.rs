//! What guards a starter against hostile traffic: the bound on body bytes
//! being read at once, and the aggregated log of failed authentications.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[cfg(feature = "axum")]
use crate::observe;

/// The default bound on the bytes of bodies being read at once, across all
/// connections: 64 MiB.
pub(crate) const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;

/// The default time limit for a whole body to arrive: 10 seconds.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of bodies being read (and held) at once, against a bound shared by
/// every clone of a starter.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    held: AtomicUsize,
    /// Claims alive (bodies being read or handled), for the gauge.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    bodies: AtomicUsize,
    // Only the axum router reads bodies against the budget.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    max: usize,
}

/// Bytes taken from a [`BodyBudget`], given back when dropped.
#[cfg(feature = "axum")]
#[derive(Debug)]
pub(crate) struct BodyBytes {
    budget: Arc<BodyBudget>,
    bytes: usize,
    /// The most that all claims of this kind may hold together: the whole
    /// budget, or half of it for calls not yet authenticated.
    ceiling: usize,
}

impl BodyBudget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            bodies: AtomicUsize::new(0),
            max,
        })
    }

    /// The bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// An empty claim, to grow as bytes arrive. The bodies of calls that
    /// are not authenticated yet (their token, if any, is in the body) may
    /// together take at most half of the budget, so that they never crowd
    /// out authenticated callers.
    #[cfg(feature = "axum")]
    pub(crate) fn claim(self: &Arc<Self>, authenticated: bool) -> BodyBytes {
        let bodies = self.bodies.fetch_add(1, Ordering::AcqRel) + 1;
        observe::bodies_in_flight(bodies, self.held());
        BodyBytes {
            budget: self.clone(),
            bytes: 0,
            ceiling: if authenticated { self.max } else { self.max / 2 },
        }
    }
}

#[cfg(feature = "axum")]
impl BodyBytes {
    /// The bytes taken so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `more` bytes; false (and nothing taken) when that would pass the
    /// bound. Taking no bytes always succeeds.
    pub(crate) fn grow(&mut self, more: usize) -> bool {
        if more == 0 {
            return true;
        }
        let (budget, ceiling) = (&self.budget, self.ceiling);
        let taken = budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(more).filter(|&total| total <= ceiling)
            });
        if let Ok(held) = taken {
            self.bytes += more;
            observe::bodies_in_flight(budget.bodies.load(Ordering::Acquire), held + more);
        }
        taken.is_ok()
    }
}

#[cfg(feature = "axum")]
impl Drop for BodyBytes {
    fn drop(&mut self) {
        let held = self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        let bodies = self.budget.bodies.fetch_sub(1, Ordering::AcqRel) - 1;
        observe::bodies_in_flight(bodies, held);
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
    fn the_defaults_are_the_documented_ones() {
        assert_eq!(DEFAULT_MAX_BODY_BYTES_IN_FLIGHT, 67_108_864, "64 MiB");
        assert_eq!(DEFAULT_BODY_TIMEOUT, Duration::from_secs(10));
    }

    #[test]
    fn the_failure_log_remembers_a_bounded_number_of_sources() {
        let failures = AuthFailures::default();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            failures.record(IpAddr::from(i.to_be_bytes()), "invalid_token");
        }
        let sources = failures.sources.lock().unwrap();
        assert_eq!(
            sources.len(),
            MAX_SOURCES,
            "sources past the bound are logged unmerged"
        );
        let first = &sources[&IpAddr::from(0u32.to_be_bytes())];
        assert_eq!(first.unlogged, 0, "a source's first failure is logged at once");
        assert!(first.logged.is_some());
    }

    #[cfg(feature = "axum")]
    #[test]
    fn a_budget_gives_bytes_back_when_a_claim_is_dropped() {
        let budget = BodyBudget::new(100);
        let mut a = budget.claim(true);
        assert!(a.grow(60));
        let mut b = budget.claim(true);
        assert!(!b.grow(41), "60 + 41 is over the bound");
        assert_eq!(b.bytes(), 0, "a refused growth takes nothing");
        assert!(b.grow(40));
        assert_eq!((a.bytes(), b.bytes()), (60, 40));
        assert_eq!(budget.held(), 100);
        drop(a);
        assert_eq!(budget.held(), 40);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[cfg(feature = "axum")]
    #[test]
    fn calls_not_yet_authenticated_share_half_of_the_budget() {
        let budget = BodyBudget::new(100);
        let mut anonymous = budget.claim(false);
        assert!(anonymous.grow(50));
        assert!(!budget.claim(false).grow(1), "half is taken");
        let mut known = budget.claim(true);
        assert!(known.grow(50), "authenticated callers keep the other half");
        assert!(!known.grow(1));
    }
}
