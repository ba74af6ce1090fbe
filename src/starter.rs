//! [`WebhookStarter`]: the stores, the engine and the options in one value
//! that a host shares between requests, with the whole HTTP exchange in
//! [`WebhookStarter::handle`].

use std::error::Error as StdError;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::Engine;
use crate::error::WebhookError;
use crate::http::{
    DEFAULT_BODY_LIMIT, HttpReply, RequestHead, check_body_size, parse_payload, process_from_target,
};
use crate::id::{DeploymentId, EnvironmentId, ProcessUuid};
use crate::idempotency::{IdempotencyKey, IdempotencyStore, PayloadFingerprint, Reservation};
use crate::model::{Environment, VersionTag};
use crate::signature::DEFAULT_SIGNATURE_TOLERANCE;
use crate::store::{ModelStore, TokenStore};
use crate::token::EnvironmentToken;
use crate::webhook::{
    Prepared, StartOutcome, WebhookStartRequest, authenticate, authenticate_request, prepare, resolve,
    start_on,
};

/// Starts processes from webhook calls: the stores, the engine and the
/// options, shared (it is cheap to clone) between all requests.
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
/// models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(),
///     StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)])));
/// let tokens = Arc::new(InMemoryTokenStore::new());
/// let token = EnvironmentToken::generate();
/// tokens.insert(&token, Environment::new(production, acme));
/// let engine = Arc::new(InMemoryEngine::new());
/// let starter = WebhookStarter::new(models, tokens, engine.clone())
///     .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
///
/// let target = webhook_url("/webhook/send", &uuid);
/// let auth = format!("Bearer {}", token.expose_secret());
/// let headers = [("authorization", auth.as_str()), ("idempotency-key", "order-1")];
/// let first = starter.handle(&target, headers, br#"{"orderNumber": "123456"}"#).await;
/// assert_eq!(first.status(), 202);
/// let again = starter.handle(&target, headers, br#"{"orderNumber": "123456"}"#).await;
/// assert_eq!(again.status(), 202);
/// assert_eq!(again.header("idempotent-replayed"), Some("true"));
/// assert_eq!(engine.started().len(), 1);
/// # });
/// ```
#[derive(Clone)]
pub struct WebhookStarter {
    models: Arc<dyn ModelStore>,
    tokens: Arc<dyn TokenStore>,
    engine: Arc<dyn Engine>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    body_limit: usize,
    signature_tolerance: Duration,
}

impl fmt::Debug for WebhookStarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookStarter")
            .field("idempotency", &self.idempotency.is_some())
            .field("body_limit", &self.body_limit)
            .field("signature_tolerance", &self.signature_tolerance)
            .finish_non_exhaustive()
    }
}

/// The answer to a dry run: what a start would hand the engine.
///
/// Serialized as `{"dryRun": true, "processUuid", "version", "environment",
/// "deploymentId", "definitionKey", "variables"}`, the body of the `200`
/// answer.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    dry_run: bool,
    process_uuid: ProcessUuid,
    version: u32,
    environment: EnvironmentId,
    deployment_id: DeploymentId,
    definition_key: String,
    variables: Map<String, Value>,
}

impl DryRun {
    /// The process that would start.
    pub fn process(&self) -> &ProcessUuid {
        &self.process_uuid
    }

    /// The version that would start.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it would start in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The deployment that would start.
    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// The engine's key for the definition.
    pub fn definition_key(&self) -> &str {
        &self.definition_key
    }

    /// The exact variables the engine would get.
    pub fn variables(&self) -> &Map<String, Value> {
        &self.variables
    }
}

/// What one call's log event says.
#[derive(Default)]
struct Observed {
    process: Option<ProcessUuid>,
    environment: Option<EnvironmentId>,
}

/// What a successful call answers.
enum Success {
    Started(StartOutcome),
    DryRun(DryRun),
    Schema(Value),
}

impl WebhookStarter {
    /// A starter over these stores and this engine, with a body limit of
    /// 1 MiB, no idempotency, and a signature tolerance of 5 minutes.
    ///
    /// `Arc`s of concrete types are accepted as they are
    /// (`Arc<InMemoryModelStore>` becomes `Arc<dyn ModelStore>`).
    pub fn new(models: Arc<dyn ModelStore>, tokens: Arc<dyn TokenStore>, engine: Arc<dyn Engine>) -> Self {
        Self {
            models,
            tokens,
            engine,
            idempotency: None,
            body_limit: DEFAULT_BODY_LIMIT,
            signature_tolerance: DEFAULT_SIGNATURE_TOLERANCE,
        }
    }

    /// Sets the largest body [`handle`](Self::handle) reads, in bytes; a
    /// larger one is `413 payload_too_large`, refused before it is parsed.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Makes starts idempotent: a repeated call with the same idempotency key
    /// (the `Idempotency-Key` header, or `webhook-id` of a signed call) and
    /// the same payload gets the first call's outcome, marked as replayed,
    /// without reaching the engine. See [`IdempotencyStore`] for the rules.
    pub fn with_idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.idempotency = Some(store);
        self
    }

    /// Sets how far a signed call's timestamp may be from now, either way.
    pub fn with_signature_tolerance(mut self, tolerance: Duration) -> Self {
        self.signature_tolerance = tolerance;
        self
    }

    /// The body limit, in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// Starts the process of `request`: [`start_via_webhook`](crate::start_via_webhook)'s
    /// checks, then, with idempotency on, the key's rules. A panic in a
    /// store or the engine is caught and answered `500 internal_error`.
    /// Emits one `tracing` event.
    ///
    /// # Errors
    ///
    /// A [`WebhookError`]; nothing was started (a replay is `Ok`).
    pub async fn start(&self, request: WebhookStartRequest) -> Result<StartOutcome, WebhookError> {
        let mut observed = Observed {
            process: Some(request.process),
            environment: None,
        };
        let started = Instant::now();
        let result = catch_panic(async {
            if request.dry_run {
                return Err(WebhookError::DryRunNotStarted);
            }
            let environment = self.authenticate_request(&request).await?;
            observed.environment = Some(environment.id().clone());
            self.start_authenticated(request, &environment).await
        })
        .await;
        log_call(&observed, result.as_ref().map(|_| 202), started);
        result
    }

    /// Runs every check of a start (token, signature, deployment, draft
    /// rule, validation) and returns what the engine would get, without
    /// calling it or touching the idempotency store.
    ///
    /// # Errors
    ///
    /// The [`WebhookError`] the start would fail with (before the engine).
    pub async fn dry_run(&self, request: WebhookStartRequest) -> Result<DryRun, WebhookError> {
        let environment = self.authenticate_request(&request).await?;
        self.dry_run_authenticated(request, &environment).await
    }

    /// The JSON Schema of the payload that `token` may start `process` with:
    /// that of the deployment its environment would start.
    ///
    /// An environment that requires signed webhooks also requires a signed
    /// `GET` (over an empty body): this method has no signature to check, so
    /// it answers `401 invalid_signature` there; serve such environments
    /// through [`handle_method`](Self::handle_method).
    ///
    /// # Errors
    ///
    /// As a start would fail before validation: `401`, `404 unknown_process`,
    /// `409 not_deployed`, `409 draft_version`, `503 store_unavailable`.
    pub async fn schema(
        &self,
        process: &ProcessUuid,
        token: Option<&EnvironmentToken>,
    ) -> Result<Value, WebhookError> {
        let environment = authenticate(token, None, &*self.tokens, self.signature_tolerance).await?;
        self.schema_authenticated(process, &environment).await
    }

    /// The whole HTTP exchange of a `POST`, without any web framework: reads
    /// the call (as [`WebhookStartRequest::from_parts`] does, with this
    /// starter's body limit), starts it, and answers:
    ///
    /// - `202` with the [`StartOutcome`] as `application/json` (a replay also
    ///   has `idempotent-replayed: true`);
    /// - for a dry run (`Prefer: dry-run`), `200` with the [`DryRun`];
    /// - for every error, its
    ///   [`to_problem_json`](WebhookError::to_problem_json) as
    ///   `application/problem+json` with its status (and `Retry-After` where
    ///   it has one).
    ///
    /// The order of checks: target (`missing_uid`, `invalid_uid`), body size
    /// (`413`), headers (`duplicate_header`, `invalid_idempotency_key`), token
    /// and signature (`401`, the signature over the raw body), then the body
    /// is parsed (`malformed_payload`) and the start goes on as
    /// [`start`](Self::start).
    pub async fn handle<K, V>(
        &self,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        self.handle_method("POST", target, headers, body).await
    }

    /// [`handle`](Self::handle) for any method: `POST` starts, `GET` answers
    /// the payload's JSON Schema ([`schema`](Self::schema)) as
    /// `application/schema+json`, and anything else is
    /// `405 method_not_allowed` with `Allow: GET, POST`.
    pub async fn handle_method<K, V>(
        &self,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut observed = Observed::default();
        let started = Instant::now();
        let result = catch_panic(self.exchange(method, target, headers, body, &mut observed)).await;
        let reply = match &result {
            Ok(Success::Started(outcome)) => {
                let reply = HttpReply::json(202, outcome);
                if outcome.replayed() {
                    reply.with_header("idempotent-replayed", "true".to_owned())
                } else {
                    reply
                }
            }
            Ok(Success::DryRun(dry_run)) => HttpReply::json(200, dry_run),
            Ok(Success::Schema(schema)) => {
                HttpReply::json(200, schema).with_content_type("application/schema+json")
            }
            Err(error) => HttpReply::from_error(error),
        };
        log_call(&observed, result.as_ref().map(|_| reply.status()), started);
        reply
    }

    async fn exchange<K, V>(
        &self,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let is_get = method.eq_ignore_ascii_case("GET");
        if !is_get && !method.eq_ignore_ascii_case("POST") {
            return Err(WebhookError::MethodNotAllowed {
                method: method.chars().take(32).collect(),
            });
        }
        let process = process_from_target(target)?;
        observed.process = Some(process);
        check_body_size(body, self.body_limit)?;
        let head = RequestHead::parse_headers(headers)?;
        let signed = head.signature.as_ref().map(|s| (s, body));
        let environment = authenticate(
            head.token.as_ref(),
            signed,
            &*self.tokens,
            self.signature_tolerance,
        )
        .await?;
        observed.environment = Some(environment.id().clone());
        if is_get {
            return self
                .schema_authenticated(&process, &environment)
                .await
                .map(Success::Schema);
        }
        let payload = parse_payload(body)?;
        // The signature was verified above, over the raw body.
        let (request, _) = head.into_request(process, payload);
        if request.dry_run {
            self.dry_run_authenticated(request, &environment)
                .await
                .map(Success::DryRun)
        } else {
            self.start_authenticated(request, &environment)
                .await
                .map(Success::Started)
        }
    }

    async fn authenticate_request(&self, request: &WebhookStartRequest) -> Result<Environment, WebhookError> {
        authenticate_request(request, &*self.tokens, self.signature_tolerance).await
    }

    async fn dry_run_authenticated(
        &self,
        request: WebhookStartRequest,
        environment: &Environment,
    ) -> Result<DryRun, WebhookError> {
        let prepared = prepare(request, environment, &*self.models).await?;
        Ok(DryRun {
            dry_run: true,
            process_uuid: *prepared.deployment.process(),
            version: prepared.version,
            environment: prepared.deployment.environment().clone(),
            deployment_id: prepared.deployment.id(),
            definition_key: prepared.deployment.definition_key().to_owned(),
            variables: prepared.variables,
        })
    }

    async fn schema_authenticated(
        &self,
        process: &ProcessUuid,
        environment: &Environment,
    ) -> Result<Value, WebhookError> {
        let deployment = resolve(process, environment, &*self.models).await?;
        if deployment.version() == VersionTag::Draft {
            return Err(WebhookError::DraftVersion {
                process: *process,
                environment: environment.id().clone(),
            });
        }
        Ok(deployment.start_form().json_schema())
    }

    /// Everything after authentication: checks, idempotency, the engine.
    async fn start_authenticated(
        &self,
        request: WebhookStartRequest,
        environment: &Environment,
    ) -> Result<StartOutcome, WebhookError> {
        let idempotent = match (&self.idempotency, request.idempotency_key()) {
            (Some(store), Some(key)) => Some((
                store,
                IdempotencyKey::new(environment.id().clone(), request.process, key),
                PayloadFingerprint::of(&request.payload),
            )),
            _ => None,
        };
        let prepared = prepare(request, environment, &*self.models).await?;
        let Some((store, key, fingerprint)) = idempotent else {
            return self.call_engine(prepared).await;
        };
        match store.reserve(&key, fingerprint).await? {
            Reservation::Reserved => {}
            Reservation::InProgress { fingerprint: held } => {
                return Err(if held == fingerprint {
                    WebhookError::StartInProgress
                } else {
                    WebhookError::IdempotencyKeyReused
                });
            }
            Reservation::Completed {
                fingerprint: held,
                outcome,
            } => {
                return if held == fingerprint {
                    Ok(outcome.into_replay())
                } else {
                    Err(WebhookError::IdempotencyKeyReused)
                };
            }
        }
        let result = self.call_engine(prepared).await;
        let recorded = match &result {
            Ok(outcome) => store.complete(&key, outcome).await,
            Err(_) => store.release(&key).await,
        };
        if let Err(error) = recorded {
            // The start's own result stands; a key left reserved counts as
            // abandoned once the store's lease ends.
            tracing::error!(
                target: "process_webhook",
                process = %key.process(),
                environment = %key.environment(),
                error = %chain(&error),
                "could not record the outcome of an idempotent start"
            );
        }
        result
    }

    async fn call_engine(&self, prepared: Prepared) -> Result<StartOutcome, WebhookError> {
        catch_panic(start_on(prepared, &*self.engine)).await
    }
}

/// Runs `future`, turning a panic into `500 internal_error`.
async fn catch_panic<T>(future: impl Future<Output = Result<T, WebhookError>>) -> Result<T, WebhookError> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(WebhookError::Internal),
    }
}

/// The error and its causes, joined by `: ` (for logs only).
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The one event of a call: process, environment, status, code, duration.
/// Never a token: neither the request nor its headers are logged.
fn log_call(observed: &Observed, result: Result<u16, &WebhookError>, started: Instant) {
    // Formatted only when a subscriber records the event.
    let process = observed.process.as_ref().map(tracing::field::display);
    let environment = observed.environment.as_ref().map(EnvironmentId::as_str);
    let duration_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(status) => tracing::info!(
            target: "process_webhook",
            process, environment, status, code = "ok", duration_us,
            "webhook call"
        ),
        Err(error) if error.status() >= 500 => tracing::error!(
            target: "process_webhook",
            process, environment, status = error.status(), code = error.code(), duration_us,
            error = %chain(error),
            "webhook call"
        ),
        Err(error) => tracing::info!(
            target: "process_webhook",
            process, environment, status = error.status(), code = error.code(), duration_us,
            "webhook call"
        ),
    }
}
