//! Waiting for a started instance to end (`Prefer: wait=N`): the bounds,
//! the places among the waiting calls, and the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};
use serde::Serialize;
use serde_json::Value;

use crate::engine::Completion;
use crate::error::WebhookError;
use crate::http::HttpReply;
use crate::http::exchange::{Success, marked_replayed};
use crate::observe::{Observed, catch_panic, chain};
use crate::outcome::StartOutcome;
use crate::starter::WebhookStarter;

/// The default longest wait of a call with `Prefer: wait`: 30 seconds.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// The default bound on calls waiting at once: 1,000.
pub const DEFAULT_MAX_WAITING_CALLS: usize = 1_000;

/// The answer to a call that waited: the start outcome's fields, then
/// `status`, and `result` or (when the host shows them) `message`.
#[derive(Serialize)]
struct WaitedBody<'a> {
    #[serde(flatten)]
    outcome: &'a StartOutcome,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

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
struct WaitSlot(Arc<AtomicUsize>);

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Waits {
    fn slot(&self) -> Option<WaitSlot> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_calls).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitSlot(self.waiting.clone()))
    }
}

impl WebhookStarter {
    /// Waits (as `Prefer: wait=seconds` asked, within this starter's bounds)
    /// for the instance of `outcome` to end. A call that cannot wait (no
    /// wait allowed, no place among the waiting calls, an engine that cannot
    /// wait or fails to, or a caller that hung up) is answered as a start.
    pub(crate) async fn wait_for(&self, outcome: StartOutcome, seconds: u32, observed: &Observed) -> Success {
        let within = Duration::from_secs(u64::from(seconds)).min(self.settings.waits.max);
        if within.is_zero() {
            return Success::Started(outcome);
        }
        let Some(_slot) = self.settings.waits.slot() else {
            tracing::warn!(
                target: "process_webhook",
                max_waiting_calls = self.settings.waits.max_calls,
                "too many calls waiting: answered without waiting"
            );
            return Success::Started(outcome);
        };
        // A copy: the answer takes the outcome whatever the wait brings.
        let instance = outcome.instance().clone();
        let waited = catch_panic(async {
            self.settings
                .engine
                .wait(&instance, within)
                .await
                .map_err(WebhookError::from)
        });
        let hung_up = async {
            match &observed.hung_up {
                Some(flag) => flag.raised().await,
                None => std::future::pending().await,
            }
        };
        let waited = match select(std::pin::pin!(waited), std::pin::pin!(hung_up)).await {
            Either::Left((waited, _)) => waited,
            Either::Right(((), _)) => return Success::Started(outcome),
        };
        match waited {
            Ok(Some(completion)) => Success::Waited(outcome, completion, within.as_secs() as u32),
            Ok(None) => Success::Started(outcome),
            Err(error) => {
                tracing::warn!(
                    target: "process_webhook",
                    process = %outcome.process(),
                    error = %chain(&error),
                    "waiting for an instance failed: answered without the result"
                );
                Success::Started(outcome)
            }
        }
    }

    /// The answer to a start the call waited for.
    pub(crate) fn waited_reply(
        &self,
        outcome: &StartOutcome,
        completion: &Completion,
        seconds: u32,
    ) -> HttpReply {
        let body = WaitedBody {
            outcome,
            status: completion.status(),
            result: match completion {
                Completion::Completed(result) => Some(result),
                _ => None,
            },
            message: match completion {
                Completion::Failed(Some(message)) if self.settings.waits.show_failures => Some(message),
                _ => None,
            },
        };
        let status = if *completion == Completion::Running {
            202
        } else {
            200
        };
        let reply =
            HttpReply::json(status, &body).with_header("preference-applied", format!("wait={seconds}"));
        marked_replayed(reply, outcome)
    }

    /// Sets the longest a call with `Prefer: wait=N` waits for its instance
    /// to end (default 30 s, [`DEFAULT_MAX_WAIT`](crate::DEFAULT_MAX_WAIT));
    /// a call waits `min(N, this)`. Zero turns waiting off: such calls are
    /// answered as any start.
    pub fn with_max_wait(mut self, max: Duration) -> Self {
        Arc::make_mut(&mut self.settings).waits.max = max;
        self
    }

    /// Sets how many calls may wait at once (default 1,000,
    /// [`DEFAULT_MAX_WAITING_CALLS`](crate::DEFAULT_MAX_WAITING_CALLS));
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
