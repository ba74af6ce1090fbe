//! Waiting for a started instance to end (`Prefer: wait=N`): the wait
//! within the starter's bounds, and the answer.

use std::time::Duration;

use futures_util::future::{Either, select};
use serde::Serialize;
use serde_json::Value;

use crate::engine::Completion;
use crate::error::WebhookError;
use crate::http::HttpReply;
use crate::http::answer::{Success, marked_replayed};
use crate::observe::{Observed, catch_panic, chain};
use crate::outcome::StartOutcome;
use crate::starter::WebhookStarter;

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
}
