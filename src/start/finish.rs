//! The end of a start: the key's reservation (or the replay of its first
//! outcome, or the takeover of a start cut off), the engine's call, and the
//! outcome recorded.

use std::time::Duration;

use futures_util::future::Either;

use super::Checked;
use crate::engine::{ProcessInstance, Recovery, StartCommand};
use crate::error::WebhookError;
use crate::idempotency::{CallerKey, IdempotencyKey, PayloadFingerprint};
use crate::model::Deployment;
use crate::observe::chain;
use crate::outcome::StartOutcome;
use crate::store::{IdempotencyStore, Reservation};

/// Steps 4 to 6: with an idempotency store and a key, the key's
/// reservation (or the replay of its first outcome), the engine, the
/// outcome recorded; else the engine alone. `call` is how this start calls
/// its engine (the starter's guards panics and times it).
///
/// The command is built, and the engine's future made, when this is called
/// for a start without a reservation: the future returned keeps only the
/// engine's future and what the answer needs, so that a start waiting on its
/// engine holds little.
pub(crate) fn start_checked<'a, F, Fut, G, GFut>(
    checked: Checked,
    idempotency: Option<&'a dyn IdempotencyStore>,
    calls: EngineCalls<F, G>,
) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + 'a
where
    F: FnOnce(StartCommand) -> Fut + Send + 'a,
    Fut: Future<Output = Result<ProcessInstance, WebhookError>> + Send + 'a,
    G: FnOnce(StartCommand) -> GFut + Send + 'a,
    GFut: Future<Output = Result<Option<ProcessInstance>, WebhookError>> + Send + 'a,
{
    match (idempotency, &checked.key) {
        // Boxed: the idempotent path holds the key and its store's futures
        // besides the engine's, and would make every start's future (most
        // have no key) that much larger.
        (Some(store), Some(_)) => Either::Right(Box::pin(start_idempotent(store, checked, calls))),
        _ => Either::Left(start_now(checked, calls.start)),
    }
}

/// How a start reaches its engine: the start call, and, for a keyed start
/// whose reservation was cut off, what the engine can do
/// ([`Recovery`]) and its look-up of a start by business key.
pub(crate) struct EngineCalls<F, G> {
    pub(crate) start: F,
    pub(crate) find: G,
    pub(crate) recovery: Recovery,
    /// What is added to a finding engine's call deadline.
    pub(crate) margin: Duration,
}

/// What an answer needs once the engine has started the instance.
pub(crate) struct Answer {
    deployment: Deployment,
    version: u32,
    key: Option<CallerKey>,
}

impl Answer {
    pub(crate) fn outcome(self, instance: &ProcessInstance) -> StartOutcome {
        StartOutcome::new(instance.id().clone(), &self.deployment, self.version)
            .with_business_key(instance.business_key())
            // Moved, not copied: the key's one copy is the engine's command's.
            .with_idempotency_key(self.key.map(String::from))
    }
}

/// The command for the engine (the variables moved, not copied), and what
/// the answer needs.
pub(crate) fn command_of(checked: Checked) -> (StartCommand, Answer) {
    let Checked {
        deployment,
        version,
        variables,
        key,
        fingerprint,
        trace,
        source: _,
    } = checked;
    let mut command = StartCommand::new(&deployment, version, variables);
    command.idempotency_key = key.as_ref().map(|k| k.as_str().to_owned());
    command.fingerprint = fingerprint;
    command.trace = trace.map(|t| *t);
    (
        command,
        Answer {
            deployment,
            version,
            key,
        },
    )
}

/// Step 5 alone: the engine starts the instance.
fn start_now<'a, F, Fut>(
    checked: Checked,
    call: F,
) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + 'a
where
    F: FnOnce(StartCommand) -> Fut + Send + 'a,
    Fut: Future<Output = Result<ProcessInstance, WebhookError>> + Send + 'a,
{
    let (command, answer) = command_of(checked);
    let started = call(command);
    async move {
        let instance = started.await?;
        Ok(answer.outcome(&instance))
    }
}

/// Why a taken-over start has no outcome: its look-up failed (the key must
/// stay reserved), or its start did (the key is released, as after any
/// failed start).
enum Recovered {
    LookupFailed(WebhookError),
    Failed(WebhookError),
}

/// The start of a taken-over reservation: for an engine that finds starts
/// by business key, the instance found (started only when there is none);
/// for one that deduplicates, the start again (which returns the instance
/// the cut-off start began, if it did).
async fn start_taken_over<F, Fut, G, GFut>(
    checked: Checked,
    calls: EngineCalls<F, G>,
) -> Result<StartOutcome, Recovered>
where
    F: FnOnce(StartCommand) -> Fut + Send,
    Fut: Future<Output = Result<ProcessInstance, WebhookError>> + Send,
    G: FnOnce(StartCommand) -> GFut + Send,
    GFut: Future<Output = Result<Option<ProcessInstance>, WebhookError>> + Send,
{
    if !matches!(calls.recovery, Recovery::FindsByBusinessKey { .. }) {
        return start_now(checked, calls.start).await.map_err(Recovered::Failed);
    }
    let (command, answer) = command_of(checked);
    let instance = match (calls.find)(command.clone())
        .await
        .map_err(Recovered::LookupFailed)?
    {
        Some(instance) => instance,
        None => (calls.start)(command).await.map_err(Recovered::Failed)?,
    };
    Ok(answer.outcome(&instance))
}

/// What a key's reservation decides for a start with `fingerprint`:
/// `Ok(None)` to go on (the key is reserved for it), the first start's
/// outcome replayed, or the refusal (a full store, a start in progress, a
/// key reused with another payload).
pub(crate) fn settled(
    reservation: Reservation,
    fingerprint: PayloadFingerprint,
    key: &IdempotencyKey,
) -> Result<Option<StartOutcome>, WebhookError> {
    match reservation {
        Reservation::Reserved => Ok(None),
        Reservation::Full { retry_after } => {
            tracing::error!(
                target: "process_webhook",
                process = %key.process(),
                environment = %key.environment(),
                "the idempotency store is full: an idempotent start was refused"
            );
            Err(WebhookError::IdempotencyStoreFull { retry_after })
        }
        Reservation::InProgress { fingerprint: held } => Err(if held == fingerprint {
            WebhookError::StartInProgress
        } else {
            WebhookError::IdempotencyKeyReused
        }),
        Reservation::Completed {
            fingerprint: held,
            outcome,
        } => {
            if held == fingerprint {
                Ok(Some(outcome.into_replay().with_idempotency_key(Some(key.key()))))
            } else {
                Err(WebhookError::IdempotencyKeyReused)
            }
        }
    }
}

/// What the reservation of a start's key decided.
pub(crate) enum Reserved {
    /// The key is this start's; `taken` when it was taken over from a start
    /// that did not finish (which may have started: the engine can tell, or
    /// deduplicates).
    Yes { taken: bool },
    /// The key's first start ended: its outcome, replayed.
    Replay(StartOutcome),
}

/// Reserves `key` for a start with `fingerprint`, taking over a reservation
/// of the same payload in progress where the engine allows (`recovery`),
/// or answers the replay or the refusal.
pub(crate) async fn reserve(
    store: &dyn IdempotencyStore,
    key: &IdempotencyKey,
    fingerprint: PayloadFingerprint,
    recovery: Recovery,
    margin: Duration,
) -> Result<Reserved, WebhookError> {
    let mut reservation = store.reserve(key, fingerprint).await?;
    let mut taken = false;
    if let (Reservation::InProgress { fingerprint: held }, Some(after)) =
        (&reservation, recovery.takeover_after(margin))
    {
        if *held == fingerprint {
            // Its start may have been cut off: the engine can tell, or
            // deduplicates, so the reservation is taken over.
            reservation = store.take_over(key, fingerprint, after).await?;
            taken = reservation == Reservation::Reserved;
        }
    }
    if let Some(replay) = settled(reservation, fingerprint, key)? {
        return Ok(Reserved::Replay(replay));
    }
    if taken {
        tracing::warn!(
            target: "process_webhook",
            process = %key.process(),
            environment = %key.environment(),
            "took over the reservation of an idempotent start that did not finish"
        );
    }
    Ok(Reserved::Yes { taken })
}

/// Steps 4 to 6 with a key: reserve it (or replay its first outcome, or
/// refuse a reused or running key), start, record the outcome (or free the
/// key after a failure).
async fn start_idempotent<F, Fut, G, GFut>(
    store: &dyn IdempotencyStore,
    checked: Checked,
    calls: EngineCalls<F, G>,
) -> Result<StartOutcome, WebhookError>
where
    F: FnOnce(StartCommand) -> Fut + Send,
    Fut: Future<Output = Result<ProcessInstance, WebhookError>> + Send,
    G: FnOnce(StartCommand) -> GFut + Send,
    GFut: Future<Output = Result<Option<ProcessInstance>, WebhookError>> + Send,
{
    let (Some(caller_key), Some(fingerprint)) = (&checked.key, checked.fingerprint) else {
        return start_now(checked, calls.start).await;
    };
    let key = IdempotencyKey::new(
        checked.deployment.environment().clone(),
        *checked.deployment.process(),
        caller_key.as_str(),
    );
    let taken = match reserve(store, &key, fingerprint, calls.recovery, calls.margin).await? {
        Reserved::Replay(replay) => return Ok(replay),
        Reserved::Yes { taken } => taken,
    };
    let result = if taken {
        start_taken_over(checked, calls).await
    } else {
        start_now(checked, calls.start).await.map_err(Recovered::Failed)
    };
    let result = match result {
        Ok(outcome) => Ok(outcome),
        // The look-up failed: the key stays reserved, and its next
        // delivery takes it over again once its age allows.
        Err(Recovered::LookupFailed(error)) => return Err(error),
        Err(Recovered::Failed(error)) => Err(error),
    };
    let recorded = match &result {
        Ok(outcome) => store.complete(&key, outcome).await,
        Err(_) => store.release(&key).await,
    };
    record(recorded, &key, "record the outcome of");
    result
}

/// Logs a key store's failure to record what became of a start (`what`:
/// "record the outcome of", "release the key of"): the start's own answer
/// stands, and a key left reserved counts as abandoned once the store's
/// lease ends.
pub(crate) fn record(result: Result<(), crate::store::StoreError>, key: &IdempotencyKey, what: &str) {
    if let Err(error) = result {
        tracing::error!(
            target: "process_webhook",
            process = %key.process(),
            environment = %key.environment(),
            error = %chain(&error),
            "could not {what} an idempotent start"
        );
    }
}
