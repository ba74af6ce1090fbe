//! The bounds of calls that wait for their instance (`Prefer: wait=N`):
//! the settings, their defaults, and the places among the waiting calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::starter::WebhookStarter;

/// The default longest wait of a call with `Prefer: wait`: 30 seconds.
pub(crate) const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// The default bound on calls waiting at once: 1,000.
pub(crate) const DEFAULT_MAX_WAITING_CALLS: usize = 1_000;

/// How calls with `Prefer: wait` are served.
#[derive(Clone, Debug)]
pub(crate) struct Waits {
    /// The longest wait (zero: never wait).
    pub(crate) max: Duration,
    /// The most calls waiting at once, and how many wait now.
    pub(crate) max_calls: usize,
    pub(crate) waiting: Arc<AtomicUsize>,
    /// Whether a failed instance's message is shown to the caller.
    pub(crate) show_failures: bool,
}

/// A place among the waiting calls, given back when dropped.
pub(crate) struct WaitSlot(Arc<AtomicUsize>);

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waits {
    pub(crate) fn slot(&self) -> Option<WaitSlot> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_calls).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitSlot(self.waiting.clone()))
    }
}

impl WebhookStarter {
    /// Sets the longest a call with `Prefer: wait=N` waits for its instance
    /// to end (default 30 s, [`WebhookStarter::DEFAULT_MAX_WAIT`](crate::WebhookStarter::DEFAULT_MAX_WAIT));
    /// a call waits `min(N, this)`. Zero turns waiting off: such calls are
    /// answered as any start.
    pub fn with_max_wait(mut self, max: Duration) -> Self {
        Arc::make_mut(&mut self.settings).waits.max = max;
        self
    }

    /// Sets how many calls may wait at once (default 1,000,
    /// [`WebhookStarter::DEFAULT_MAX_WAITING_CALLS`](crate::WebhookStarter::DEFAULT_MAX_WAITING_CALLS));
    /// past it a call is answered at once, as any start. Clones share the
    /// count.
    pub fn with_max_waiting_calls(mut self, calls: usize) -> Self {
        Arc::make_mut(&mut self.settings).waits.max_calls = calls;
        self
    }

    /// Shows a failed instance's message (the engine's own words) in the
    /// answer to a waiting call (default off: the caller sees only
    /// `"status": "failed"`).
    pub fn with_failure_messages(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.settings).waits.show_failures = on;
        self
    }

    /// The calls waiting for their instance now.
    pub fn waiting_calls(&self) -> usize {
        self.settings.waits.waiting.load(Ordering::Acquire)
    }
}
