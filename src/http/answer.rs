//! What a call's result answers: the reply for each kind of success or
//! error, with the environment's `RateLimit` fields and the call's one log
//! event.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine::Completion;
use crate::error::WebhookError;
use crate::http::{ALLOWED_METHODS, HttpReply, OPENAPI_MEDIA_TYPE};
use crate::observe::{Observed, started_label};
use crate::outcome::{DryRun, QueuedStart, StartOutcome};
use crate::starter::WebhookStarter;
use crate::starter::deliveries::Answered;

/// What a successful call answers.
pub(crate) enum Success {
    Started(StartOutcome),
    /// A start kept in the inbox, to be started by a dispatcher.
    Queued(QueuedStart),
    DryRun(DryRun),
    Schema(Value),
    /// The answer to `HEAD`: the schema's headers, without its body.
    SchemaHead(Value),
    /// The OpenAPI document (a `GET` whose `Accept` asks for it), and
    /// whether the call was a `HEAD`.
    OpenApi(Value, bool),
    /// The answer to `OPTIONS`.
    Options,
    /// A start the call waited for (`Prefer: wait`): the outcome, how the
    /// instance stood at the end, and the seconds the wait was allowed.
    Waited(StartOutcome, Completion, u32),
    /// A source's delivery that starts nothing: an event the source does
    /// not list, or the sender's own check (GitHub's `ping`).
    Ignored(Option<String>),
    /// Slack's `url_verification`: its challenge, answered.
    Challenge(String),
}

impl WebhookStarter {
    /// The answer to a call's result, with its one log event.
    pub(crate) fn reply(
        &self,
        result: Result<Success, WebhookError>,
        observed: &mut Observed,
        started: Instant,
        body: &[u8],
    ) -> HttpReply {
        let outcome = match &result {
            Ok(Success::Started(outcome)) => started_label(outcome),
            Ok(Success::Queued(_)) => "queued",
            Ok(Success::DryRun(_)) => "dry_run",
            Ok(Success::Schema(_) | Success::SchemaHead(_)) => "schema",
            Ok(Success::OpenApi(..)) => "openapi",
            Ok(Success::Options) => "options",
            Ok(Success::Waited(..)) => "waited",
            Ok(Success::Ignored(_)) => "ignored",
            Ok(Success::Challenge(_)) => "challenge",
            Err(_) => "",
        };
        let reply = match &result {
            Ok(Success::Started(outcome)) => marked_replayed(HttpReply::started(outcome), outcome),
            Ok(Success::Queued(queued)) => {
                let reply = HttpReply::json(202, queued);
                if queued.is_replayed() {
                    reply.with_header("idempotent-replayed", "true".to_owned())
                } else {
                    reply
                }
            }
            Ok(Success::DryRun(dry_run)) => {
                HttpReply::json(200, dry_run).with_header("preference-applied", "dry-run".to_owned())
            }
            Ok(Success::Schema(schema)) => {
                HttpReply::json(200, schema).with_content_type("application/schema+json")
            }
            Ok(Success::SchemaHead(schema)) => HttpReply::json(200, schema)
                .with_content_type("application/schema+json")
                .without_body(),
            Ok(Success::OpenApi(document, head)) => {
                let reply = HttpReply::json(200, document).with_content_type(OPENAPI_MEDIA_TYPE);
                if *head { reply.without_body() } else { reply }
            }
            Ok(Success::Options) => HttpReply::empty(204).with_header("allow", ALLOWED_METHODS.to_owned()),
            Ok(Success::Waited(outcome, completion, seconds)) => {
                self.waited_reply(outcome, completion, *seconds)
            }
            Ok(Success::Ignored(event)) => {
                // `{"status":"ignored"}`, with the event where the sender names one.
                let answer = match event {
                    Some(event) => serde_json::json!({"status": "ignored", "event": event}),
                    None => serde_json::json!({"status": "ignored"}),
                };
                HttpReply::json(200, &answer)
            }
            Ok(Success::Challenge(challenge)) => {
                HttpReply::json(200, &serde_json::json!({"challenge": challenge}))
            }
            Err(error) => {
                if let (401, Some(peer)) = (error.status(), observed.peer) {
                    self.settings.auth_failures.record(peer, error.code());
                }
                HttpReply::from_error_of(error, observed.scheme)
            }
        };
        let reply = match observed.rate {
            Some((quota, decision)) => reply
                .with_header(
                    "ratelimit-policy",
                    format!(
                        "\"environment\";q={};w={}",
                        quota.count(),
                        whole_seconds(quota.period())
                    ),
                )
                .with_header(
                    "ratelimit",
                    format!(
                        "\"environment\";r={};t={}",
                        decision.remaining(),
                        whole_seconds(decision.reset_after())
                    ),
                ),
            None => reply,
        };
        let kept = match &result {
            Ok(Success::Queued(queued)) => Some(queued.delivery_id().to_string()),
            _ => None,
        };
        let instance = match &result {
            Ok(Success::Started(outcome) | Success::Waited(outcome, ..)) => {
                Some(outcome.instance_id().as_str())
            }
            _ => kept.as_deref(),
        };
        if self.logs_deliveries() {
            let answered = match &result {
                Ok(Success::Started(outcome) | Success::Waited(outcome, ..)) => Answered::Started {
                    instance: outcome.instance_id(),
                    replayed: outcome.is_replayed(),
                },
                Ok(Success::Queued(queued)) => Answered::Queued {
                    id: queued.delivery_id(),
                    replayed: queued.is_replayed(),
                },
                Ok(Success::Ignored(_)) => Answered::Ignored,
                Ok(Success::Challenge(_)) => Answered::Challenge,
                Ok(_) => Answered::NotADelivery,
                Err(error) => Answered::Refused(error),
            };
            self.log_delivery(observed, answered, reply.status(), started, body);
        }
        self.log_call(
            observed,
            result.as_ref().map(|_| reply.status()),
            outcome,
            instance,
            started,
        );
        reply
    }
}

/// `reply` with `idempotent-replayed: true` when `outcome` is a replay.
pub(crate) fn marked_replayed(reply: HttpReply, outcome: &StartOutcome) -> HttpReply {
    if outcome.is_replayed() {
        reply.with_header("idempotent-replayed", "true".to_owned())
    } else {
        reply
    }
}

/// A duration in whole seconds, rounded up.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
