//! The start itself: [`WebhookStartRequest`], [`start_via_webhook`] and its
//! [`StartOutcome`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{Engine, StartCommand};
use crate::error::WebhookError;
use crate::http::{DEFAULT_SIGNATURE_TOLERANCE, SignatureHeaders};
use crate::id::{DeploymentId, EnvironmentId, InstanceId, ProcessUuid};
use crate::model::{Deployment, Environment, VersionTag};
use crate::store::{ModelStore, TokenStore};
use crate::token::EnvironmentToken;
use crate::trace::TraceContext;

/// One call of a process's webhook: which process, the caller's token, and
/// the start fields.
///
/// Build it directly, or from a raw HTTP call with
/// [`from_parts`](WebhookStartRequest::from_parts). Its `Debug` never shows
/// the token.
///
/// # Example
///
/// ```
/// use process_webhook::{EnvironmentToken, ProcessUuid, WebhookStartRequest};
/// use serde_json::json;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let payload = json!({"customerName": "John Doe"}).as_object().cloned().unwrap();
/// let request = WebhookStartRequest::new(uuid, Some(EnvironmentToken::new("s3cr3t")), payload)
///     .with_idempotency_key("order-123456");
/// assert_eq!(request.idempotency_key(), Some("order-123456"));
/// assert!(!format!("{request:?}").contains("s3cr3t"));
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone)]
pub struct WebhookStartRequest {
    pub(crate) process: ProcessUuid,
    pub(crate) token: Option<EnvironmentToken>,
    pub(crate) payload: Map<String, Value>,
    pub(crate) idempotency_key: Option<String>,
    // Boxed, as is the trace context: both are rare, and a start in flight
    // holds the request (and the futures built around it) for its whole
    // life.
    pub(crate) signed: Option<Box<SignedCall>>,
    pub(crate) dry_run: bool,
    pub(crate) trace: Option<Box<TraceContext>>,
}

impl WebhookStartRequest {
    /// A call of `process`'s webhook.
    pub fn new(process: ProcessUuid, token: Option<EnvironmentToken>, payload: Map<String, Value>) -> Self {
        Self {
            process,
            token,
            payload,
            idempotency_key: None,
            signed: None,
            dry_run: false,
            trace: None,
        }
    }

    /// Sets the caller's trace context, handed to the engine with the start
    /// (see [`TraceContext`]).
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(Box::new(trace));
        self
    }

    /// The caller's trace context, when there is one.
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.trace.as_deref()
    }

    /// Sets the caller's idempotency key (1 to 255 printable ASCII characters,
    /// checked when the request is started).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Marks the call as a dry run: every check runs, nothing starts (see
    /// [`WebhookStarter::dry_run`](crate::WebhookStarter::dry_run)). The
    /// `Prefer: dry-run` header sets it. A request so marked is never started:
    /// [`start_via_webhook`] and
    /// [`WebhookStarter::start`](crate::WebhookStarter::start) refuse it with
    /// `400 dry_run_not_started`.
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    /// Whether the call is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The process to start.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The caller's token.
    pub fn token(&self) -> Option<&EnvironmentToken> {
        self.token.as_ref()
    }

    /// The start fields as sent.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The caller's idempotency key (or, for a signed call without one, its
    /// `webhook-id`).
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
}

/// The signature headers of a call built from raw parts, with the raw body
/// they sign (kept only for signed calls).
#[derive(Clone, Debug)]
pub(crate) struct SignedCall {
    pub(crate) headers: SignatureHeaders,
    pub(crate) body: Arc<[u8]>,
}

impl fmt::Debug for WebhookStartRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookStartRequest")
            .field("process", &self.process)
            .field("token", &self.token)
            .field("payload", &self.payload)
            .field("idempotency_key", &self.idempotency_key)
            .field("signed", &self.signed.is_some())
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

/// A started (or, with idempotency, replayed) instance.
///
/// Serialized as `{"instanceId", "processUuid", "version", "environment",
/// "replayed"}`: the body of the `202` answer.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartOutcome {
    instance_id: InstanceId,
    #[serde(rename = "processUuid")]
    process: ProcessUuid,
    version: u32,
    environment: EnvironmentId,
    #[serde(skip)]
    deployment_id: DeploymentId,
    replayed: bool,
}

impl StartOutcome {
    pub(crate) fn new(instance_id: InstanceId, deployment: &Deployment, version: u32) -> Self {
        Self {
            instance_id,
            process: *deployment.process(),
            version,
            environment: deployment.environment().clone(),
            deployment_id: deployment.id(),
            replayed: false,
        }
    }

    /// An outcome from its stored parts (a store reading one back).
    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub(crate) fn from_parts(
        instance_id: InstanceId,
        process: ProcessUuid,
        version: u32,
        environment: EnvironmentId,
        deployment_id: DeploymentId,
    ) -> Self {
        Self {
            instance_id,
            process,
            version,
            environment,
            deployment_id,
            replayed: false,
        }
    }

    /// The same outcome, marked as a replay of an earlier start.
    pub(crate) fn into_replay(mut self) -> Self {
        self.replayed = true;
        self
    }

    /// The new instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    /// The process started.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The version started.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it started in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The deployment that started.
    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// Whether this answers a repeated call with the outcome of the first
    /// (idempotency), rather than a new start.
    pub fn replayed(&self) -> bool {
        self.replayed
    }
}

/// Starts the process of a webhook call, if the call may start it.
///
/// In order:
/// 1. No token: `401 missing_token`; a token no environment has (or a revoked
///    one): `401 invalid_token`. An environment with signing secrets also
///    needs a valid signature (`401 invalid_signature` / `stale_timestamp`).
/// 2. The process must exist in the token's organization, else
///    `404 unknown_process` (a token never learns whether another
///    organization's process exists), and be deployed to the token's
///    environment, else `409 not_deployed`.
/// 3. A draft deployment is `409 draft_version`.
/// 4. The payload is validated against the deployment's start form, every
///    problem reported at once: `422 invalid_payload`.
/// 5. The engine starts the instance; its failure is `502 engine_failed`
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
    if request.dry_run {
        return Err(WebhookError::DryRunNotStarted);
    }
    let environment = authenticate_request(&request, tokens, DEFAULT_SIGNATURE_TOLERANCE).await?;
    let prepared = prepare(request, &environment, models).await?;
    start_on(prepared, engine).await.map(|(outcome, _)| outcome)
}

/// Step 1 for a request: its token, and its signature where it was built
/// from raw parts.
pub(crate) async fn authenticate_request<T: TokenStore + ?Sized>(
    request: &WebhookStartRequest,
    tokens: &T,
    tolerance: Duration,
) -> Result<Environment, WebhookError> {
    let signed = request.signed.as_ref().map(|s| (&s.headers, &s.body[..]));
    authenticate(request.token.as_ref(), signed, tokens, tolerance).await
}

/// Step 1: the token's environment, and the signature it may require
/// (checked over the raw body, before it is parsed, where the caller has it).
pub(crate) async fn authenticate<T: TokenStore + ?Sized>(
    token: Option<&EnvironmentToken>,
    signed: Option<(&SignatureHeaders, &[u8])>,
    tokens: &T,
    tolerance: Duration,
) -> Result<Environment, WebhookError> {
    let environment = environment_of(token, tokens).await?;
    verify_signed(&environment, signed, tolerance)?;
    Ok(environment)
}

/// The first half of step 1: the environment of the token, from the store.
pub(crate) async fn environment_of<T: TokenStore + ?Sized>(
    token: Option<&EnvironmentToken>,
    tokens: &T,
) -> Result<Environment, WebhookError> {
    let token = token.ok_or(WebhookError::MissingToken)?;
    let found = match tokens.environment_now(token) {
        Some(found) => found,
        None => tokens.environment(token).await,
    };
    found?.ok_or(WebhookError::InvalidToken)
}

/// The second half of step 1: the signature an environment may require.
pub(crate) fn verify_signed(
    environment: &Environment,
    signed: Option<(&SignatureHeaders, &[u8])>,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if !environment.signing_secrets().is_empty() {
        let (headers, body) = signed.ok_or(WebhookError::InvalidSignature)?;
        headers.verify(environment.signing_secrets(), body, SystemTime::now(), tolerance)?;
    }
    Ok(())
}

/// A call that passed every check: what the engine gets, and what the answer
/// reports.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) deployment: Deployment,
    pub(crate) version: u32,
    pub(crate) variables: Map<String, Value>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) trace: Option<Box<TraceContext>>,
}

/// Step 5: hands the variables (moved, not copied) to the engine. The
/// outcome, and the business key the engine gave the instance.
///
/// The command is built, and the engine's future made, when this is called:
/// the future returned keeps only the engine's future and what the answer
/// needs, so that a start waiting on its engine holds little (an `async fn`
/// would also keep its argument, the whole prepared call, beside them).
pub(crate) fn start_on<'e, E: Engine + ?Sized>(
    prepared: Prepared,
    engine: &'e E,
) -> impl Future<Output = Result<(StartOutcome, Option<String>), WebhookError>> + Send + 'e {
    let Prepared {
        deployment,
        version,
        variables,
        idempotency_key,
        trace,
    } = prepared;
    let command = StartCommand::for_deployment(
        &deployment,
        version,
        variables,
        idempotency_key,
        trace.map(|t| *t),
    );
    let started = engine.start(command);
    async move {
        let instance = started.await?;
        let outcome = StartOutcome::new(instance.id().clone(), &deployment, version);
        Ok((outcome, instance.business_key().map(str::to_owned)))
    }
}

/// Steps 2 to 4, for an authenticated call.
pub(crate) async fn prepare<M: ModelStore + ?Sized>(
    request: WebhookStartRequest,
    environment: &Environment,
    models: &M,
) -> Result<Prepared, WebhookError> {
    if let Some(key) = &request.idempotency_key {
        check_idempotency_key(key)?;
    }
    let deployment = resolve(&request.process, environment, models).await?;
    prepare_resolved(request, deployment)
}

/// Steps 3 and 4, once the deployment is known.
pub(crate) fn prepare_resolved(
    request: WebhookStartRequest,
    deployment: Deployment,
) -> Result<Prepared, WebhookError> {
    let idempotency_key = request.idempotency_key;
    let version = match deployment.version() {
        VersionTag::Draft => {
            return Err(WebhookError::DraftVersion {
                process: request.process,
                environment: deployment.environment().clone(),
            });
        }
        VersionTag::Released(n) => n,
    };
    let variables = deployment
        .start_form()
        .validate(request.payload)
        .map_err(|violations| WebhookError::InvalidPayload { violations })?;
    Ok(Prepared {
        deployment,
        version,
        variables,
        idempotency_key,
        trace: request.trace,
    })
}

/// Step 2: the deployment of `process` in the token's environment, read
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

/// An idempotency key is 1 to 255 printable ASCII characters (space to `~`).
pub(crate) fn check_idempotency_key(key: &str) -> Result<(), WebhookError> {
    let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
    if (1..=255).contains(&key.len()) && printable {
        Ok(())
    } else {
        Err(WebhookError::InvalidIdempotencyKey)
    }
}

/// An outcome of a released deployment of the nil process in `production`,
/// for the idempotency stores' unit tests and the conformance suite.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn sample_outcome(id: InstanceId) -> StartOutcome {
    let deployment = Deployment::new(
        ProcessUuid::from(uuid::Uuid::nil()),
        VersionTag::Released(1),
        EnvironmentId::new("production"),
        Default::default(),
    );
    StartOutcome::new(id, &deployment, 1)
}
