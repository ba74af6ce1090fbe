//! A starter's inbox: the policy that decides when a start that passed
//! every check is kept instead of started, and the keeping itself.

use std::sync::Arc;

use crate::engine::Recovery;
use crate::error::WebhookError;
use crate::id::DeliveryId;
use crate::idempotency::IdempotencyKey;
use crate::inbox::{DeliveryStatus, Inbox, Keeping, KeptStart};
use crate::observe::catch_panic;
use crate::observe::chain;
use crate::outcome::{Accepted, QueuedStart, StartOutcome};
use crate::start::{Checked, Reserved, command_of, record, reserve};
use crate::starter::WebhookStarter;
use crate::store::IdempotencyStore;

/// When a starter with an inbox keeps a start instead of answering with
/// the engine's failure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum InboxPolicy {
    /// Start at once; keep the start when the engine is unavailable,
    /// overloaded, times out or fails in a way worth retrying (the answer is
    /// then `202` queued, not `502`/`503`).
    Fallback,
    /// Keep every start that passed every check and answer at once; the
    /// dispatcher starts it.
    Always,
}

/// What a starter keeps its starts in, and when.
#[derive(Clone)]
pub(crate) struct InboxSettings {
    pub(crate) inbox: Arc<dyn Inbox>,
    pub(crate) policy: InboxPolicy,
    /// The most kept (queued or dead) starts of one environment.
    pub(crate) limit: usize,
}

/// The default bound on the kept starts of one environment: 100,000.
pub(crate) const DEFAULT_INBOX_LIMIT: usize = 100_000;

impl WebhookStarter {
    /// The default bound on the kept starts of one environment
    /// ([`with_inbox_limit`](Self::with_inbox_limit)): 100,000.
    pub const DEFAULT_INBOX_LIMIT: usize = DEFAULT_INBOX_LIMIT;

    /// Keeps starts in `inbox` as `policy` says, so that a start that
    /// passed every check survives the engine being away: the HTTP
    /// exchange (and [`accept`](Self::accept)) answers a kept start `202`
    /// with `{"status": "queued", "deliveryId", …}`, and a
    /// [`Dispatcher`](crate::Dispatcher) starts it later. Every check
    /// (authentication, the draft rule, the form, the key) runs before a
    /// start is kept: a kept start is one that will start, pinned to the
    /// deployment it was checked against.
    ///
    /// With an inbox, every start has a key the engine sees (the caller's,
    /// or else its delivery id), by which an engine recognises a repeated
    /// dispatch. [`start`](Self::start) never keeps: it starts now.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use process_webhook::*;
    ///
    /// # tokio_test::block_on(async {
    /// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    /// let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    /// let models = Arc::new(InMemoryModelStore::new());
    /// models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
    /// models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(), StartForm::default()));
    /// let tokens = Arc::new(InMemoryTokenStore::new());
    /// let token = EnvironmentToken::generate();
    /// tokens.insert(&token, Environment::new(production, acme));
    /// let engine = Arc::new(InMemoryEngine::new());
    /// let inbox = Arc::new(InMemoryInbox::new());
    /// let starter = WebhookStarter::new(models, tokens, engine.clone())
    ///     .with_inbox(inbox.clone(), InboxPolicy::Always);
    ///
    /// let auth = format!("Bearer {}", token.expose_secret());
    /// let reply = starter.handle(&webhook_url("/webhook/send", &uuid), [("authorization", auth)], b"{}").await;
    /// assert_eq!(reply.status(), 202);
    /// assert_eq!(serde_json::from_slice::<serde_json::Value>(reply.body()).unwrap()["status"], "queued");
    /// assert!(engine.started().is_empty());
    ///
    /// // The dispatcher starts it.
    /// let dispatcher = starter.dispatcher().unwrap();
    /// assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    /// assert_eq!(engine.started().len(), 1);
    /// # });
    /// ```
    pub fn with_inbox(mut self, inbox: Arc<dyn Inbox>, policy: InboxPolicy) -> Self {
        let limit = self
            .settings
            .inbox
            .as_ref()
            .map_or(DEFAULT_INBOX_LIMIT, |kept| kept.limit);
        Arc::make_mut(&mut self.settings).inbox = Some(InboxSettings { inbox, policy, limit });
        self
    }

    /// Sets the most starts of one environment the inbox holds, queued or
    /// dead (default [`DEFAULT_INBOX_LIMIT`](Self::DEFAULT_INBOX_LIMIT));
    /// past it a start that would be kept is `503 inbox_full` with
    /// `Retry-After`. Without an inbox it does nothing.
    pub fn with_inbox_limit(mut self, limit: usize) -> Self {
        if let Some(kept) = &mut Arc::make_mut(&mut self.settings).inbox {
            kept.limit = limit;
        }
        self
    }

    /// The start of a checked call, or, as the inbox policy says, the start
    /// kept for later.
    pub(crate) async fn start_or_keep(
        &self,
        kept: &InboxSettings,
        checked: Checked,
    ) -> Result<Accepted, WebhookError> {
        let id = DeliveryId::new_random();
        let deployment = &checked.deployment;
        let caller_key = checked.key.as_ref().map(|key| {
            IdempotencyKey::new(
                deployment.environment().clone(),
                *deployment.process(),
                key.as_str(),
            )
        });
        let keys = self.settings.idempotency.as_deref();
        let reserved = match (keys, &caller_key, checked.fingerprint) {
            (Some(store), Some(key), Some(fingerprint)) => {
                // While its start is kept, a key is answered from the inbox.
                if let Some(found) = kept.inbox.find_by_key(key).await? {
                    if matches!(found.status, DeliveryStatus::Queued | DeliveryStatus::Dead) {
                        if found.command.fingerprint != Some(fingerprint) {
                            return Err(WebhookError::IdempotencyKeyReused);
                        }
                        let queued =
                            QueuedStart::new(found.id, found.process, found.version, found.environment);
                        return Ok(Accepted::Queued(queued.into_replay()));
                    }
                }
                let engine = &*self.settings.engine;
                match reserve(
                    store,
                    key,
                    fingerprint,
                    engine.recovery(),
                    self.settings.takeover_margin,
                )
                .await?
                {
                    Reserved::Replay(replay) => return Ok(Accepted::Started(replay)),
                    Reserved::Yes { taken } => Some((store, key, taken)),
                }
            }
            _ => None,
        };
        let source = checked.source.clone();
        let (mut command, answer) = command_of(checked);
        if command.idempotency_key.is_none() {
            command.idempotency_key = Some(id.to_string());
        }
        // A start taken over from one that did not finish may have started:
        // an engine that finds starts by business key is asked first.
        let engine = &*self.settings.engine;
        let found = match reserved {
            Some((_, _, true)) if matches!(engine.recovery(), Recovery::FindsByBusinessKey { .. }) => {
                let command = command.clone();
                catch_panic(async move { engine.find_started(&command).await.map_err(WebhookError::from) })
                    .await
            }
            _ => Ok(None),
        };
        let reserved = reserved.map(|(store, key, _)| (store, key));
        // A failed look-up leaves the key reserved; its next delivery takes
        // it over again.
        let found = found?;
        let failure = match (kept.policy, found) {
            (_, Some(instance)) => {
                let outcome = answer.outcome(&instance);
                if let Some((store, key)) = reserved {
                    record(store.complete(key, &outcome).await, key, "record the outcome of");
                }
                return Ok(Accepted::Started(outcome));
            }
            (InboxPolicy::Always, None) => None,
            (InboxPolicy::Fallback, None) => match self.call_engine(&command).await {
                Ok(instance) => {
                    let outcome = answer.outcome(&instance);
                    if let Some((store, key)) = reserved {
                        record(store.complete(key, &outcome).await, key, "record the outcome of");
                    }
                    return Ok(Accepted::Started(outcome));
                }
                Err(error) if worth_keeping(&error) => Some(error),
                Err(error) => {
                    if let Some((store, key)) = reserved {
                        record(store.release(key).await, key, "release the key of");
                    }
                    return Err(error);
                }
            },
        };
        let queued = QueuedStart::new(id, command.process, command.version, command.environment.clone());
        let mut start = KeptStart::new(id, command, caller_key.clone());
        start.source = source;
        let refusal = match kept.inbox.keep(start, kept.limit).await {
            Ok(Keeping::Kept) => {
                tracing::info!(
                    target: "process_webhook",
                    delivery = %id,
                    process = %queued.process(),
                    environment = %queued.environment(),
                    engine_failed = failure.is_some(),
                    "kept a start for the dispatcher"
                );
                return Ok(Accepted::Queued(queued));
            }
            Ok(Keeping::Full) => WebhookError::InboxFull,
            Err(error) => {
                tracing::error!(
                    target: "process_webhook",
                    error = %chain(&error),
                    "could not keep a start in the inbox"
                );
                // The engine's own failure says more to the sender.
                failure.unwrap_or(WebhookError::StoreUnavailable { source: error })
            }
        };
        if let Some((store, key)) = reserved {
            record(store.release(key).await, key, "release the key of");
        }
        Err(refusal)
    }
}

/// Whether an engine's failure leaves a start worth keeping: the engine was
/// away, overloaded, or failed in a way a retry may fix.
fn worth_keeping(error: &WebhookError) -> bool {
    matches!(error, WebhookError::EngineFailed { source } if source.is_retryable())
}

/// The outcome a dispatched start's key records.
pub(crate) async fn complete_key(
    store: Option<&dyn IdempotencyStore>,
    key: Option<&IdempotencyKey>,
    outcome: &StartOutcome,
) {
    if let (Some(store), Some(key)) = (store, key) {
        record(store.complete(key, outcome).await, key, "record the outcome of");
    }
}
