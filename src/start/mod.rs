//! The start, written once: one sequence of steps that every entry point
//! runs, in one order. [`start_via_webhook`], [`WebhookStarter`]'s
//! methods and the HTTP exchange each read their input into one [`Call`]
//! and its credential, then:
//!
//! 1. the call is read: its idempotency key's shape is checked (an HTTP
//!    call's target, size, method, headers and media type too);
//! 2. **identify**: the token's environment (or, for a webhook source, the
//!    source named in the URL and its environment);
//! 3. **limit**: one unit of that environment's rate limit;
//! 4. **verify**: the environment's signature (or the source's scheme) over
//!    the raw body; an HTTP body is parsed only after this;
//! 5. **resolve**: the deployment of the process in that environment;
//! 6. **read**: what the deployment decides of the body (an envelope, a
//!    source's mapped text), over HTTP only;
//! 7. **check**: the draft rule, then the payload against the start form;
//! 8. the call's [`Mode`]: a start (the idempotency key reserved, the
//!    engine called, the outcome recorded), a dry run, or the deployment's
//!    description (its schema, its OpenAPI document).
//!
//! Steps 2 to 4 are [`authenticate`] (the HTTP exchange runs 2 and 3 before
//! it reads a body, and 4 once it has); steps 5 to 8 are [`run`]. The rules
//! guide tells the same order to users.
//!
//! [`WebhookStarter`]: crate::WebhookStarter

use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use serde_json::{Map, Value};

use crate::engine::{Engine, ProcessInstance, StartCommand};
use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::idempotency::{CallerKey, PayloadFingerprint};
use crate::model::{Deployment, Environment};
use crate::observe::Observed;
use crate::outcome::{Accepted, DryRun, QueuedStart, StartOutcome};
use crate::request::{SignedCall, WebhookStartRequest};
use crate::signature::{DEFAULT_SIGNATURE_TOLERANCE, SignatureHeaders, verify};
use crate::source::SourceId;
use crate::store::{IdempotencyStore, ModelStore, TokenStore};
use crate::token::EnvironmentToken;
use crate::trace::TraceContext;

/// What a call ends with, once it passed its checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// The engine starts the instance.
    Start,
    /// The engine starts the instance, or the starter's inbox keeps it to
    /// start later (as the starter's inbox policy says).
    Accept,
    /// Nothing starts: the answer says what would.
    DryRun,
    /// The deployment, for its payload's schema (a draft is refused).
    Schema,
    /// The deployment, for its OpenAPI document (a draft is described).
    Document,
}

/// One call, as the sequence takes it: built once by every entry point,
/// after its credential is taken out of it.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) process: ProcessUuid,
    pub(crate) payload: Map<String, Value>,
    /// Whether the payload's values are a form's text, read by the start
    /// form's kinds (`"42"` for an integer).
    pub(crate) form: bool,
    /// The caller's idempotency key, its shape checked.
    pub(crate) key: Option<CallerKey>,
    pub(crate) trace: Option<Box<TraceContext>>,
    pub(crate) mode: Mode,
    /// The webhook source that authenticated the call, if one did.
    pub(crate) source: Option<SourceId>,
}

impl Call {
    /// A call without a payload, for a schema or a document.
    pub(crate) fn describing(process: ProcessUuid, mode: Mode) -> Self {
        Self {
            process,
            payload: Map::new(),
            form: false,
            key: None,
            trace: None,
            mode,
            source: None,
        }
    }
}

/// What a call's sequence ended with.
#[derive(Debug)]
pub(crate) enum Done {
    Started(StartOutcome),
    Queued(QueuedStart),
    DryRun(DryRun),
    /// The deployment a schema or a document describes.
    Described(Deployment),
}

/// What the steps read: the stores, the rate limit, the signature's
/// tolerance, and how a checked call is started. The free functions and
/// [`WebhookStarter`](crate::WebhookStarter) are the two contexts.
pub(crate) trait Context: Sync {
    type Models: ModelStore + ?Sized;
    type Tokens: TokenStore + ?Sized;
    fn models(&self) -> &Self::Models;
    fn tokens(&self) -> &Self::Tokens;
    /// How far a signature's timestamp may be from now.
    fn tolerance(&self) -> Duration;
    /// Step 3: takes one unit of `environment`'s rate limit, recording the
    /// environment and the decision in `observed` (for the call's log
    /// event).
    fn limit(
        &self,
        environment: &Environment,
        observed: &mut Observed,
    ) -> impl Future<Output = Result<(), WebhookError>> + Send;
    /// The start at the end of step 8.
    fn start(&self, checked: Checked)
    -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_;

    /// The end of step 8 in [`Mode::Accept`]: the start, or, for a context
    /// with an inbox, the start kept for later. Without one, the start.
    fn accept_checked(
        &self,
        checked: Checked,
    ) -> impl Future<Output = Result<Accepted, WebhookError>> + Send + '_ {
        self.start(checked).map(|started| started.map(Accepted::Started))
    }
}

impl WebhookStartRequest {
    /// Step 1 for a request built by a host: the call, its key's shape
    /// checked, and the credential taken out of it.
    pub(crate) fn into_call(self, mode: Mode) -> Result<(Call, Credential), WebhookError> {
        let key = self.idempotency_key.map(|key| key.into_checked()).transpose()?;
        let mode = match (mode, self.dry_run) {
            (Mode::Start, true) => return Err(WebhookError::DryRunNotStarted),
            (mode, _) => mode,
        };
        let call = Call {
            process: self.process,
            payload: self.payload,
            form: self.form,
            key,
            trace: self.trace,
            mode,
            source: None,
        };
        let credential = Credential {
            token: self.token,
            signed: self.signed,
        };
        Ok((call, credential))
    }
}

/// What a host's request authenticates with: its token, and the signature
/// headers with the raw body they sign.
pub(crate) struct Credential {
    token: Option<EnvironmentToken>,
    signed: Option<Box<SignedCall>>,
}

/// Steps 2 to 4: the environment of `token`, limited, its signature (if it
/// requires one) checked over the raw body.
pub(crate) async fn authenticate<C: Context>(
    context: &C,
    token: Option<&EnvironmentToken>,
    signed: Option<(&SignatureHeaders, &[u8])>,
    observed: &mut Observed,
) -> Result<Environment, WebhookError> {
    let environment = identify(context, token).await?;
    context.limit(&environment, observed).await?;
    verify_signed(&environment, signed, context.tolerance())?;
    Ok(environment)
}

/// Step 2: the environment of the token, from the store.
pub(crate) async fn identify<C: Context>(
    context: &C,
    token: Option<&EnvironmentToken>,
) -> Result<Environment, WebhookError> {
    let token = token.ok_or(WebhookError::MissingToken)?;
    let tokens = context.tokens();
    let found = match tokens.environment_now(token) {
        Some(found) => found,
        None => tokens.environment(token).await,
    };
    // The environment is recorded for a log event by the starter's limit
    // step: the free functions have no event, and a clone would cost them.
    found?.ok_or(WebhookError::InvalidToken)
}

/// Step 4: the signature an environment may require.
pub(crate) fn verify_signed(
    environment: &Environment,
    signed: Option<(&SignatureHeaders, &[u8])>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if !environment.signing_secrets().is_empty() {
        let (headers, body) = signed.ok_or(WebhookError::InvalidSignature)?;
        verify(
            environment.signing_secrets(),
            headers,
            body,
            SystemTime::now(),
            tolerance,
        )?;
    }
    Ok(())
}

/// Steps 5 to 8 of an authenticated call of `process`: its deployment,
/// the call as the deployment reads it (`read`: for the HTTP exchange, an
/// envelope body opened or not, a source's mapped text; elsewhere the call
/// as it is), the checks, and the call's mode.
pub(crate) async fn run<C: Context>(
    context: &C,
    process: ProcessUuid,
    environment: &Environment,
    observed: &mut Observed,
    read: impl FnOnce(&Deployment) -> Result<Call, WebhookError>,
) -> Result<Done, WebhookError> {
    let deployment = resolve(&process, environment, context.models()).await?;
    observed.deployed = true;
    if let Some(captured) = observed.captured.as_mut() {
        captured.version = deployment.version().number();
    }
    let call = read(&deployment)?;
    match call.mode {
        Mode::Document => Ok(Done::Described(deployment)),
        Mode::Schema => {
            deployment.startable_version()?;
            Ok(Done::Described(deployment))
        }
        Mode::DryRun => {
            let checked = check(call, deployment)?;
            Ok(Done::DryRun(DryRun::new(
                &checked.deployment,
                checked.version,
                checked.variables,
            )))
        }
        Mode::Start => context.start(check(call, deployment)?).await.map(Done::Started),
        Mode::Accept => match context.accept_checked(check(call, deployment)?).await? {
            Accepted::Started(outcome) => Ok(Done::Started(outcome)),
            Accepted::Queued(queued) => Ok(Done::Queued(queued)),
        },
    }
}

/// The whole sequence for a host's request: steps 1 to 8.
pub(crate) async fn run_request<C: Context>(
    context: &C,
    request: WebhookStartRequest,
    mode: Mode,
    observed: &mut Observed,
) -> Result<Done, WebhookError> {
    let (call, credential) = request.into_call(mode)?;
    let signed = credential.signed.as_ref().map(|s| (&s.headers, &s.body[..]));
    let environment = authenticate(context, credential.token.as_ref(), signed, observed).await?;
    run(context, call.process, &environment, observed, |_| Ok(call)).await
}

/// Steps 1 to 8 for a call that has no payload (a schema, a document): the
/// environment of `token` (refused where it requires signed calls: there is
/// no body to sign), then the deployment.
pub(crate) async fn describe<C: Context>(
    context: &C,
    process: ProcessUuid,
    token: Option<&EnvironmentToken>,
    mode: Mode,
    observed: &mut Observed,
) -> Result<(Environment, Deployment), WebhookError> {
    let environment = authenticate(context, token, None, observed).await?;
    match run(context, process, &environment, observed, |_| {
        Ok(Call::describing(process, mode))
    })
    .await?
    {
        Done::Described(deployment) => Ok((environment, deployment)),
        // `Schema` and `Document` end described.
        Done::Started(_) | Done::Queued(_) | Done::DryRun(_) => Err(WebhookError::Internal),
    }
}

/// Starts the process of a webhook call, if the call may start it.
///
/// In order (the steps every entry point runs; see the rules guide):
/// 1. A malformed idempotency key is `400 invalid_idempotency_key`.
/// 2. No token: `401 missing_token`; a token no environment has (or a revoked
///    one): `401 invalid_token`.
/// 3. An environment with signing secrets also needs a valid signature
///    (`401 invalid_signature` / `stale_timestamp`).
/// 4. The process must exist in the token's organization, else
///    `404 unknown_process` (a token never learns whether another
///    organization's process exists), and be deployed to the token's
///    environment, else `409 not_deployed`.
/// 5. A draft deployment is `409 draft_version`.
/// 6. The payload is validated against the deployment's start form, every
///    problem reported at once: `422 invalid_payload`.
/// 7. The engine starts the instance; its failure is `502 engine_failed`
///    (or `429`/`503`, see [`EngineErrorKind`](crate::EngineErrorKind)).
///
/// A store that fails is `503 store_unavailable`; the engine is then never
/// called. The idempotency key is only checked for shape and handed to the
/// engine: repeated calls are recognised by
/// [`WebhookStarter::with_idempotency`](crate::WebhookStarter::with_idempotency).
///
/// # Errors
///
/// A [`WebhookError`] as above; nothing was started.
///
/// # Example
///
/// ```
/// use process_webhook::*;
/// use serde_json::json;
///
/// # tokio_test::block_on(async {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
/// let models = InMemoryModelStore::new();
/// models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
/// models.deploy(Deployment::new(uuid, VersionTag::Draft, production.clone(), StartForm::default()));
/// let tokens = InMemoryTokenStore::new();
/// let token = EnvironmentToken::generate();
/// tokens.insert(&token, Environment::new(production, acme));
/// let engine = InMemoryEngine::new();
///
/// let request = WebhookStartRequest::new(uuid, Some(token), Default::default());
/// let err = start_via_webhook(request, &models, &tokens, &engine).await.unwrap_err();
/// assert_eq!((err.status(), err.code()), (409, "draft_version"));
/// assert!(engine.started().is_empty());
/// # });
/// ```
pub async fn start_via_webhook<M, T, E>(
    request: WebhookStartRequest,
    models: &M,
    tokens: &T,
    engine: &E,
) -> Result<StartOutcome, WebhookError>
where
    M: ModelStore + ?Sized,
    T: TokenStore + ?Sized,
    E: Engine + ?Sized,
{
    start_free(request, models, tokens, engine, None).await
}

/// [`start_via_webhook`], idempotent: a repeated call with the same
/// idempotency key and the same payload gets the first call's outcome,
/// marked as replayed, without reaching the engine; the same key with
/// another payload is `422 idempotency_key_reused`, and a start with that
/// key still running `409 start_in_progress`. A call without a key starts
/// as [`start_via_webhook`] does. See [`IdempotencyStore`] for the rules.
///
/// # Errors
///
/// As [`start_via_webhook`], and the refusals above; nothing was started.
///
/// # Example
///
/// ```
/// use process_webhook::*;
/// use serde_json::json;
///
/// # tokio_test::block_on(async {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
/// let models = InMemoryModelStore::new();
/// models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
/// models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(), StartForm::default()));
/// let tokens = InMemoryTokenStore::new();
/// let token = EnvironmentToken::generate();
/// tokens.insert(&token, Environment::new(production, acme));
/// let (engine, keys) = (InMemoryEngine::new(), InMemoryIdempotencyStore::new());
///
/// let call = || {
///     let payload = json!({"orderNumber": "123456"}).as_object().unwrap().clone();
///     WebhookStartRequest::new(uuid, Some(token.clone()), payload).with_idempotency_key("order-1")
/// };
/// let first = start_via_webhook_with_idempotency(call(), &models, &tokens, &engine, &keys).await.unwrap();
/// let again = start_via_webhook_with_idempotency(call(), &models, &tokens, &engine, &keys).await.unwrap();
/// assert!(!first.is_replayed() && again.is_replayed());
/// assert_eq!(again.instance_id(), first.instance_id());
/// assert_eq!(engine.started().len(), 1);
/// # });
/// ```
pub async fn start_via_webhook_with_idempotency<M, T, E>(
    request: WebhookStartRequest,
    models: &M,
    tokens: &T,
    engine: &E,
    keys: &dyn IdempotencyStore,
) -> Result<StartOutcome, WebhookError>
where
    M: ModelStore + ?Sized,
    T: TokenStore + ?Sized,
    E: Engine + ?Sized,
{
    start_free(request, models, tokens, engine, Some(keys)).await
}

/// The context of the free functions: their stores and engine, no rate
/// limit, the default signature tolerance.
struct Free<'a, M: ?Sized, T: ?Sized, E: ?Sized> {
    models: &'a M,
    tokens: &'a T,
    engine: &'a E,
    idempotency: Option<&'a dyn IdempotencyStore>,
}

impl<M, T, E> Context for Free<'_, M, T, E>
where
    M: ModelStore + ?Sized,
    T: TokenStore + ?Sized,
    E: Engine + ?Sized,
{
    type Models = M;
    type Tokens = T;

    fn models(&self) -> &M {
        self.models
    }

    fn tokens(&self) -> &T {
        self.tokens
    }

    fn tolerance(&self) -> Duration {
        DEFAULT_SIGNATURE_TOLERANCE
    }

    fn limit(
        &self,
        _: &Environment,
        _: &mut Observed,
    ) -> impl Future<Output = Result<(), WebhookError>> + Send {
        std::future::ready(Ok(()))
    }

    fn start(
        &self,
        checked: Checked,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
        let engine = self.engine;
        let calls = EngineCalls {
            start: move |command: StartCommand| async move {
                engine.start(&command).await.map_err(WebhookError::from)
            },
            find: move |command: StartCommand| async move {
                engine.find_started(&command).await.map_err(WebhookError::from)
            },
            recovery: engine.recovery(),
            margin: crate::engine::TAKEOVER_MARGIN,
        };
        start_checked(checked, self.idempotency, calls)
    }
}

/// The sequence of the free functions.
async fn start_free<M, T, E>(
    request: WebhookStartRequest,
    models: &M,
    tokens: &T,
    engine: &E,
    idempotency: Option<&dyn IdempotencyStore>,
) -> Result<StartOutcome, WebhookError>
where
    M: ModelStore + ?Sized,
    T: TokenStore + ?Sized,
    E: Engine + ?Sized,
{
    let context = Free {
        models,
        tokens,
        engine,
        idempotency,
    };
    match run_request(&context, request, Mode::Start, &mut Observed::default()).await? {
        Done::Started(outcome) => Ok(outcome),
        // `Mode::Start` ends started.
        Done::Queued(_) | Done::DryRun(_) | Done::Described(_) => Err(WebhookError::Internal),
    }
}

/// An engine's answer as a start's.
pub(crate) fn engine_result(
    result: Result<ProcessInstance, crate::engine::EngineError>,
) -> Result<ProcessInstance, WebhookError> {
    result.map_err(WebhookError::from)
}

/// Step 5: the deployment of `process` in the token's environment, read
/// with one store call.
pub(crate) async fn resolve<M: ModelStore + ?Sized>(
    process: &ProcessUuid,
    environment: &Environment,
    models: &M,
) -> Result<Deployment, WebhookError> {
    let found = match models.model_with_deployment_now(process, environment.id()) {
        Some(found) => found?,
        None => models.model_with_deployment(process, environment.id()).await?,
    };
    let deployment = match found {
        Some((model, deployment)) if model.organization() == environment.organization() => deployment,
        _ => return Err(WebhookError::UnknownProcess { process: *process }),
    };
    deployment.ok_or_else(|| WebhookError::NotDeployed {
        process: *process,
        environment: environment.id().clone(),
    })
}

/// A call that passed every check: what the engine gets, and what the answer
/// reports.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) deployment: Deployment,
    pub(crate) version: u32,
    pub(crate) variables: Map<String, Value>,
    pub(crate) key: Option<CallerKey>,
    pub(crate) fingerprint: Option<PayloadFingerprint>,
    pub(crate) trace: Option<Box<TraceContext>>,
    /// The webhook source that authenticated the call, if one did.
    pub(crate) source: Option<SourceId>,
}

/// Step 7: the draft rule, then the payload against the start form (every
/// problem at once; a form body's strings read as the form's kinds first).
/// The fingerprint of the payload is taken, before the form fills in
/// defaults, when the call has a key.
pub(crate) fn check(call: Call, deployment: Deployment) -> Result<Checked, WebhookError> {
    let version = deployment.startable_version()?;
    let fingerprint = call.key.as_ref().map(|_| PayloadFingerprint::of(&call.payload));
    let mut payload = call.payload;
    if call.form {
        deployment.start_form().read_form_strings(&mut payload);
    }
    let variables = deployment
        .start_form()
        .validate(payload)
        .map_err(|violations| WebhookError::InvalidPayload { violations })?;
    Ok(Checked {
        deployment,
        version,
        variables,
        key: call.key,
        fingerprint,
        trace: call.trace,
        source: call.source,
    })
}

mod finish;

pub(crate) use finish::{EngineCalls, Reserved, command_of, record, reserve, start_checked};
