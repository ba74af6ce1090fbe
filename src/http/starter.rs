//! [`WebhookStarter`]: the stores, the engine and the options in one value
//! that a host shares between requests, with the whole HTTP exchange in
//! [`WebhookStarter::handle`].

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::{Either, select};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::engine::{Completion, Engine, InstanceRef};
use crate::error::WebhookError;
use crate::http::health::{Checks, Component, DEFAULT_READY_TIMEOUT, NotReady};
use crate::http::protect::{
    AuthFailures, BodyBudget, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
};
use crate::http::signal::Flag;
use crate::http::{
    ALLOWED_METHODS, DEFAULT_BODY_LIMIT, DEFAULT_MAX_JSON_VALUES, HttpReply, RequestHead, check_body_size,
    is_envelope, open_envelope, parse_payload, process_from_target,
};
use crate::http::{DEFAULT_SIGNATURE_TOLERANCE, SignatureHeaders};
use crate::id::{DeploymentId, EnvironmentId, ProcessUuid};
use crate::limit::{OnLimiterError, Quota, RateDecision, RateLimitPolicy, RateLimiter};
use crate::model::{Deployment, Environment, VersionTag};
use crate::observe;
use crate::store::{IdempotencyKey, IdempotencyStore, PayloadFingerprint, Reservation};
use crate::store::{ModelStore, StoreError, TokenStore};
use crate::token::EnvironmentToken;
use crate::webhook::{
    Prepared, StartOutcome, WebhookStartRequest, authenticate, authenticate_request, check_idempotency_key,
    environment_of, prepare, prepare_resolved, resolve, start_on, verify_signed,
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
    // Behind one `Arc`: a host (and the axum router, per request) clones the
    // starter, and a clone is then one reference count and one pointer
    // instead of a dozen of each in every call in flight.
    settings: Arc<Settings>,
}

/// What a [`WebhookStarter`] was built with. The `with_*` methods change
/// their starter's own copy (copied on write if it is shared).
#[derive(Clone)]
struct Settings {
    models: Arc<dyn ModelStore>,
    tokens: Arc<dyn TokenStore>,
    engine: Arc<dyn Engine>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    body_limit: usize,
    max_json_values: usize,
    body_timeout: Duration,
    body_budget: Arc<BodyBudget>,
    envelopes: bool,
    signature_tolerance: Duration,
    auth_failures: Arc<AuthFailures>,
    limiter: Option<(Arc<dyn RateLimiter>, RateLimitPolicy)>,
    process_label: bool,
    ready_timeout: Duration,
    waits: Waits,
}

/// How calls with `Prefer: wait` are served.
#[derive(Clone, Debug)]
struct Waits {
    /// The longest wait (zero: never wait).
    max: Duration,
    /// The most calls waiting at once, and how many wait now.
    max_calls: usize,
    waiting: Arc<AtomicUsize>,
    /// Whether a failed instance's message is shown to the caller.
    show_failures: bool,
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

impl fmt::Debug for WebhookStarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookStarter")
            .field("idempotency", &self.settings.idempotency.is_some())
            .field("body_limit", &self.settings.body_limit)
            .field("max_json_values", &self.settings.max_json_values)
            .field("body_timeout", &self.settings.body_timeout)
            .field("body_budget", &self.settings.body_budget)
            .field("envelopes", &self.settings.envelopes)
            .field("signature_tolerance", &self.settings.signature_tolerance)
            .field(
                "rate_limit",
                &self.settings.limiter.as_ref().map(|(_, policy)| policy),
            )
            .field("process_label", &self.settings.process_label)
            .field("ready_timeout", &self.settings.ready_timeout)
            .field("max_wait", &self.settings.waits.max)
            .field("max_waiting_calls", &self.settings.waits.max_calls)
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

/// What one call's log event says.
#[derive(Default)]
pub(crate) struct Observed {
    process: Option<ProcessUuid>,
    environment: Option<EnvironmentId>,
    peer: Option<IpAddr>,
    /// The environment's limit and what it decided, for the answer's
    /// `RateLimit` fields.
    rate: Option<(Quota, RateDecision)>,
    /// Whether the process was found deployed in the call's environment
    /// (only then may it be a metrics label).
    deployed: bool,
    /// Raised when the caller hung up (the router sets it): a wait stops.
    pub(crate) hung_up: Option<Flag>,
}

impl Observed {
    pub(crate) fn from_peer(peer: Option<IpAddr>) -> Self {
        Self {
            peer,
            ..Self::default()
        }
    }
}

/// What a call's method, target and headers established, before its body is
/// read.
#[derive(Debug)]
pub(crate) struct Admitted {
    method: Method,
    process: ProcessUuid,
    head: RequestHead,
    /// The environment of the token on the request; `None` for a `POST`
    /// without one, whose token can only be inside an envelope body.
    environment: Option<Environment>,
}

impl Admitted {
    /// Whether the token on the request was checked (else the body is read
    /// before the call is authenticated).
    #[cfg(feature = "axum")]
    pub(crate) fn is_authenticated(&self) -> bool {
        self.environment.is_some()
    }
}

/// The methods the webhook URL serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Post,
    Get,
    Head,
    Options,
}

impl Method {
    fn parse(method: &str) -> Result<Self, WebhookError> {
        [
            ("POST", Self::Post),
            ("GET", Self::Get),
            ("HEAD", Self::Head),
            ("OPTIONS", Self::Options),
        ]
        .into_iter()
        // Methods are case-sensitive (RFC 9110, section 9.1): `post` is not `POST`.
        .find(|(name, _)| method == *name)
        .map(|(_, m)| m)
        .ok_or_else(|| WebhookError::MethodNotAllowed {
            method: method.chars().take(32).collect(),
        })
    }
}

/// What a successful call answers.
pub(crate) enum Success {
    Started(StartOutcome),
    DryRun(DryRun),
    Schema(Value),
    /// The answer to `HEAD`: the schema's headers, without its body.
    SchemaHead(Value),
    /// The answer to `OPTIONS`.
    Options,
    /// A start the call waited for (`Prefer: wait`): the outcome, how the
    /// instance stood at the end, and the seconds the wait was allowed.
    Waited(StartOutcome, Completion, u32),
}

impl WebhookStarter {
    /// A starter over these stores and this engine, with a body limit of
    /// 1 MiB, no idempotency, and a signature tolerance of 5 minutes.
    ///
    /// `Arc`s of concrete types are accepted as they are
    /// (`Arc<InMemoryModelStore>` becomes `Arc<dyn ModelStore>`).
    pub fn new(models: Arc<dyn ModelStore>, tokens: Arc<dyn TokenStore>, engine: Arc<dyn Engine>) -> Self {
        let settings = Settings {
            models,
            tokens,
            engine,
            idempotency: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_json_values: DEFAULT_MAX_JSON_VALUES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            body_budget: BodyBudget::new(DEFAULT_MAX_BODY_BYTES_IN_FLIGHT),
            envelopes: true,
            signature_tolerance: DEFAULT_SIGNATURE_TOLERANCE,
            auth_failures: Arc::default(),
            limiter: None,
            process_label: false,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            waits: Waits {
                max: DEFAULT_MAX_WAIT,
                max_calls: DEFAULT_MAX_WAITING_CALLS,
                waiting: Arc::default(),
                show_failures: false,
            },
        };
        Self {
            settings: Arc::new(settings),
        }
    }

    /// Limits calls with `limiter` as `policy` says: per environment (after
    /// authentication, before validation, the idempotency store and the
    /// engine; dry runs and schema requests count too), and failed
    /// authentications per client address (a client over that limit is
    /// refused before the token store is consulted). Over a limit a call is
    /// `429 rate_limited` with `Retry-After`, and nothing is started or
    /// reserved. Every answer to a limited environment carries the
    /// `RateLimit-Policy` and `RateLimit` fields of the IETF draft
    /// (`"environment";q=100;w=1` and `"environment";r=42;t=1`).
    ///
    /// When the limiter cannot answer, `policy`'s
    /// [`OnLimiterError`](crate::OnLimiterError) decides: let the call
    /// through and log an error (the default), or refuse it with
    /// `503 store_unavailable`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use process_webhook::*;
    ///
    /// # fn starter() -> WebhookStarter { WebhookStarter::new(Arc::new(InMemoryModelStore::new()), Arc::new(InMemoryTokenStore::new()), Arc::new(InMemoryEngine::new())) }
    /// let starter = starter().with_rate_limit(
    ///     Arc::new(InMemoryRateLimiter::new()),
    ///     RateLimitPolicy::default()
    ///         .per_environment("100/s".parse().unwrap())
    ///         .failed_authentications_per_client(Quota::per_minute(30)),
    /// );
    /// # let _ = starter;
    /// ```
    pub fn with_rate_limit(mut self, limiter: Arc<dyn RateLimiter>, policy: RateLimitPolicy) -> Self {
        Arc::make_mut(&mut self.settings).limiter = Some((limiter, policy));
        self
    }

    /// Takes one unit of `environment`'s limit.
    async fn limit_environment(
        &self,
        environment: &Environment,
        observed: &mut Observed,
    ) -> Result<(), WebhookError> {
        let Some((limiter, policy)) = &self.settings.limiter else {
            return Ok(());
        };
        let Some(quota) = policy.per_environment else {
            return Ok(());
        };
        let (organization, id) = (environment.organization().as_str(), environment.id().as_str());
        // A limiter that decides at once gets the key from a buffer of this
        // thread (no allocation, no boxed future); others get their own.
        let now = ENV_KEY.with_borrow_mut(|key| {
            key.clear();
            push_env_key(key, organization, id);
            limiter.acquire_now(key, quota)
        });
        let decided = match now {
            Some(decided) => decided,
            None => {
                let mut key = String::with_capacity(5 + organization.len() + id.len());
                push_env_key(&mut key, organization, id);
                limiter.acquire(&key, quota).await
            }
        };
        match decided {
            Ok(decision) => {
                observed.rate = Some((quota, decision));
                if decision.allowed() {
                    Ok(())
                } else {
                    observe::rate_limited("environment");
                    Err(WebhookError::RateLimited {
                        retry_after: decision.retry_after(),
                    })
                }
            }
            Err(error) => limiter_failed(error, policy.on_error),
        }
    }

    /// Refuses a client over its limit of failed authentications, before its
    /// token is looked up.
    async fn check_client(&self, observed: &Observed) -> Result<(), WebhookError> {
        let (Some((limiter, policy)), Some(peer)) = (&self.settings.limiter, observed.peer) else {
            return Ok(());
        };
        let Some(quota) = policy.failed_auth else {
            return Ok(());
        };
        match limiter.peek(&format!("auth:{peer}"), quota).await {
            Ok(decision) if decision.allowed() => Ok(()),
            Ok(decision) => {
                observe::rate_limited("client");
                Err(WebhookError::RateLimited {
                    retry_after: decision.retry_after(),
                })
            }
            Err(error) => limiter_failed(error, policy.on_error),
        }
    }

    /// Counts a failed authentication against the client's limit.
    async fn note_failed_auth(&self, peer: Option<IpAddr>) {
        let (Some((limiter, policy)), Some(peer)) = (&self.settings.limiter, peer) else {
            return;
        };
        if let Some(quota) = policy.failed_auth {
            if let Err(error) = limiter.acquire(&format!("auth:{peer}"), quota).await {
                let _ = limiter_failed(error, OnLimiterError::Allow);
            }
        }
    }

    /// The answer to a call's result, after counting a failed
    /// authentication against its client.
    pub(crate) async fn settle(
        &self,
        result: Result<Success, WebhookError>,
        observed: &Observed,
        started: Instant,
    ) -> HttpReply {
        if matches!(&result, Err(error) if error.status() == 401) {
            self.note_failed_auth(observed.peer).await;
        }
        self.reply(result, observed, started)
    }

    /// Adds the process UUID as a `process` label to the calls counter
    /// (`process_webhook_calls_total`, feature `metrics`) of authenticated
    /// calls (default off). Turn it on when the number of deployed processes
    /// is bounded and small: each one multiplies the series the metrics
    /// backend keeps. Unauthenticated calls never carry it, so a caller
    /// cannot create series by inventing UUIDs.
    pub fn with_process_label(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.settings).process_label = on;
        self
    }

    /// Whether this starter can serve now: asks the model store, the token
    /// store, the idempotency store and the rate limiter (when it has them)
    /// and the engine, all at once, each through its `ready` method (a cheap
    /// round trip for the PostgreSQL, Redis, Camunda and Temporal adapters),
    /// and waits at most the ready timeout (default 2 s,
    /// [`DEFAULT_READY_TIMEOUT`](crate::DEFAULT_READY_TIMEOUT)) for them.
    /// Needs no async runtime of its own. A failure is logged at `warn` with
    /// its cause.
    ///
    /// The axum integration serves it as `GET /readyz`
    /// (`health_router`, feature `axum`).
    ///
    /// # Errors
    ///
    /// [`NotReady`], naming every component that answered it cannot serve
    /// or did not answer in time.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use process_webhook::*;
    ///
    /// # tokio_test::block_on(async {
    /// let starter = WebhookStarter::new(
    ///     Arc::new(InMemoryModelStore::new()),
    ///     Arc::new(InMemoryTokenStore::new()),
    ///     Arc::new(InMemoryEngine::new()),
    /// );
    /// assert!(starter.ready().await.is_ok());
    /// # });
    /// ```
    pub async fn ready(&self) -> Result<(), NotReady> {
        let checks = Checks::new(self.settings.ready_timeout);
        let (models, tokens, idempotency, limiter, engine) = futures_util::future::join5(
            checks.check(Component::ModelStore, self.settings.models.ready()),
            checks.check(Component::TokenStore, self.settings.tokens.ready()),
            checks.check(Component::IdempotencyStore, async {
                match &self.settings.idempotency {
                    Some(store) => store.ready().await,
                    None => Ok(()),
                }
            }),
            checks.check(Component::RateLimiter, async {
                match &self.settings.limiter {
                    Some((limiter, _)) => limiter.ready().await,
                    None => Ok(()),
                }
            }),
            checks.check(Component::Engine, self.settings.engine.ready()),
        )
        .await;
        let verdict = Checks::verdict([models, tokens, idempotency, limiter, engine]);
        if let Err(not_ready) = &verdict {
            tracing::warn!(target: "process_webhook", error = %chain(not_ready), "readiness check failed");
        }
        verdict
    }

    /// Sets how long [`ready`](Self::ready) waits for the components
    /// (default 2 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).ready_timeout = timeout;
        self
    }

    /// Sets the most JSON values (scalars, arrays and objects, counted
    /// before the body is parsed) a payload may hold; more is
    /// `413 payload_too_large`. The default, 10,000
    /// ([`DEFAULT_MAX_JSON_VALUES`](crate::DEFAULT_MAX_JSON_VALUES)), keeps
    /// the memory of a call a small multiple of its bytes.
    pub fn with_max_json_values(mut self, values: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_json_values = values;
        self
    }

    /// Sets how long the whole body of a call may take to arrive in the
    /// `router` (feature `axum`) (default 10 s,
    /// [`DEFAULT_BODY_TIMEOUT`](crate::DEFAULT_BODY_TIMEOUT)); a slower body
    /// is `408 body_timeout` and its buffer is freed.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).body_timeout = timeout;
        self
    }

    /// Sets how many body bytes the `router` (feature `axum`) reads and
    /// holds at once, across all calls (default 64 MiB,
    /// [`DEFAULT_MAX_BODY_BYTES_IN_FLIGHT`](crate::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT));
    /// a call that would pass it is `503 server_busy` with `Retry-After`.
    /// Bodies of calls without a token on the request may take at most half
    /// of it together. Clones made before this call keep the bound they had.
    pub fn with_max_body_bytes_in_flight(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).body_budget = BodyBudget::new(bytes);
        self
    }

    /// Turns reading envelope bodies on or off (default on). An envelope is
    /// a body whose top-level keys are exactly `headers` (an object of
    /// strings) and `payload` (an object), the shape of the product's
    /// documented example: its `payload` is the start's payload and its
    /// `headers` count as the call's headers. See
    /// [`handle`](Self::handle) for the rules.
    pub fn with_envelope_bodies(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.settings).envelopes = on;
        self
    }

    /// The bytes of bodies the `router` (feature `axum`) holds now.
    pub fn body_bytes_in_flight(&self) -> usize {
        self.settings.body_budget.held()
    }

    /// The body time limit.
    pub fn body_timeout(&self) -> Duration {
        self.settings.body_timeout
    }

    #[cfg(feature = "axum")]
    pub(crate) fn body_budget(&self) -> &Arc<BodyBudget> {
        &self.settings.body_budget
    }

    /// Sets the largest body [`handle`](Self::handle) reads, in bytes; a
    /// larger one is `413 payload_too_large`, refused before it is parsed.
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.settings).body_limit = bytes;
        self
    }

    /// Makes starts idempotent: a repeated call with the same idempotency key
    /// (the `Idempotency-Key` header, or `webhook-id` of a signed call) and
    /// the same payload gets the first call's outcome, marked as replayed,
    /// without reaching the engine. See [`IdempotencyStore`] for the rules.
    pub fn with_idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        Arc::make_mut(&mut self.settings).idempotency = Some(store);
        self
    }

    /// Sets how far a signed call's timestamp may be from now, either way.
    pub fn with_signature_tolerance(mut self, tolerance: Duration) -> Self {
        Arc::make_mut(&mut self.settings).signature_tolerance = tolerance;
        self
    }

    /// The body limit, in bytes.
    pub fn body_limit(&self) -> usize {
        self.settings.body_limit
    }

    /// Starts the process of `request`: [`start_via_webhook`](crate::start_via_webhook)'s
    /// checks, then, with idempotency on, the key's rules. A panic in a
    /// store or the engine is caught and answered `500 internal_error`.
    /// Emits one `tracing` event.
    ///
    /// # Errors
    ///
    /// A [`WebhookError`]; nothing was started (a replay is `Ok`).
    pub fn start(
        &self,
        request: WebhookStartRequest,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
        // Not an `async fn`: the future of a start in flight holds the
        // request once (an `async fn` keeps its argument beside every future
        // it hands it to; measured with `-Zprint-type-sizes`).
        let span = call_span();
        if let Some(trace) = &request.trace {
            span.record("trace_id", trace.trace_id());
        }
        let process = request.process;
        let started = Instant::now();
        AssertUnwindSafe(self.checked_start(request))
            .catch_unwind()
            .map(move |caught| {
                let (result, observed) = caught.unwrap_or_else(|_| {
                    let observed = Observed {
                        process: Some(process),
                        ..Observed::default()
                    };
                    (Err(WebhookError::Internal), observed)
                });
                let outcome = match &result {
                    Ok(outcome) if outcome.replayed() => "replayed",
                    _ => "started",
                };
                self.log_call(&observed, result.as_ref().map(|_| 202), outcome, started);
                result
            })
            .instrument(span)
    }

    /// The checks and the start of [`start`](Self::start), with what the
    /// call's log event reports.
    // Not an `async fn`: that would keep the request twice (its argument
    // and the local it moves into), 760 bytes against 640.
    #[allow(clippy::manual_async_fn)]
    fn checked_start(
        &self,
        request: WebhookStartRequest,
    ) -> impl Future<Output = (Result<StartOutcome, WebhookError>, Observed)> + Send + '_ {
        async move {
            let mut observed = Observed {
                process: Some(request.process),
                ..Observed::default()
            };
            // A labelled block rather than an inner `async` block with `?`,
            // which would hold a second copy of the request.
            let result = 'start: {
                if request.dry_run {
                    break 'start Err(WebhookError::DryRunNotStarted);
                }
                let environment = match self.authenticate_request(&request).await {
                    Ok(environment) => environment,
                    Err(error) => break 'start Err(error),
                };
                observed.environment = Some(environment.id().clone());
                if let Err(error) = self.limit_environment(&environment, &mut observed).await {
                    break 'start Err(error);
                }
                if let Some(Err(error)) = request.idempotency_key().map(check_idempotency_key) {
                    break 'start Err(error);
                }
                let deployment = match resolve(&request.process, &environment, &*self.settings.models).await {
                    Ok(deployment) => deployment,
                    Err(error) => break 'start Err(error),
                };
                observed.deployed = true;
                self.start_resolved(request, &environment, deployment)
                    .await
                    .map(|(outcome, _)| outcome)
            };
            (result, observed)
        }
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
        self.limit_environment(&environment, &mut Observed::default())
            .await?;
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
        let environment = authenticate(
            token,
            None,
            &*self.settings.tokens,
            self.settings.signature_tolerance,
        )
        .await?;
        self.limit_environment(&environment, &mut Observed::default())
            .await?;
        self.schema_authenticated(process, &environment).await
    }

    /// The whole HTTP exchange of a `POST`, without any web framework: reads
    /// the call (as [`WebhookStartRequest::from_parts`] does, with this
    /// starter's limits), starts it, and answers:
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
    /// (`413`), headers (`duplicate_header`, `invalid_idempotency_key`), the
    /// token on the request (`401`), the body (`413` for too many JSON
    /// values, `malformed_payload`), the signature over the raw body, and
    /// the start goes on as [`start`](Self::start).
    ///
    /// # Waiting for the result: `Prefer: wait=N`
    ///
    /// A `POST` with the `wait` preference of RFC 7240 (`Prefer: wait=10`,
    /// alone or among other preferences) starts as any other, then waits up
    /// to `min(N, max)` seconds (max: [`with_max_wait`](Self::with_max_wait),
    /// default 30 s) for the instance to end, through
    /// [`Engine::wait`](crate::Engine::wait):
    ///
    /// - it completed: `200` with the start's fields, `"status": "completed"`
    ///   and `"result"` (the engine's: Temporal's workflow result, Camunda's
    ///   variables);
    /// - it failed, was terminated or cancelled: `200` with
    ///   `"status": "failed"` (`terminated`, `cancelled`), and the engine's
    ///   message only with [`with_failure_messages`](Self::with_failure_messages);
    /// - still running at the deadline: `202` as without the preference,
    ///   plus `"status": "running"`.
    ///
    /// Those answers carry `Preference-Applied: wait=S`, S the seconds the
    /// wait was allowed. A replay of an idempotent start waits on the same
    /// instance. The answer is exactly that of a call without the
    /// preference (no `status`, no `Preference-Applied`) when the engine
    /// cannot wait, waiting is off (max zero, or `wait=0`), or the bound on
    /// waiting calls ([`with_max_waiting_calls`](Self::with_max_waiting_calls),
    /// default 1,000) is reached. With the `router`, a caller that hangs up
    /// ends its wait, never its instance.
    ///
    /// # Envelope bodies
    ///
    /// The product documents a webhook call as one JSON document,
    /// `{"headers": {"authorization": "…"}, "payload": {…}}`. A body of
    /// exactly that shape (top-level keys exactly `headers` and `payload`)
    /// is read as the call's headers and payload, unless the host turned
    /// this off ([`with_envelope_bodies`](Self::with_envelope_bodies)) or
    /// the deployment's start form itself names a field `headers` or
    /// `payload` (its bodies are then always plain payloads, so that no
    /// valid payload is reinterpreted).
    ///
    /// - Header names in the envelope are case-insensitive; `authorization`,
    ///   `idempotency-key` and `prefer` count there. A header sent both on
    ///   the request and in the envelope must mean the same (the same token,
    ///   bare or `Bearer`; the same key; the same preferences), else
    ///   `400 conflicting_headers`.
    /// - Signature headers (`webhook-*`) and trace context (`traceparent`,
    ///   `tracestate`) count only on the request, and the signature is always
    ///   over the raw body as received.
    /// - The instance's variables are the envelope's `payload`; the `headers`
    ///   object never reaches the engine, a log or an answer.
    /// - `headers` that is not an object of strings, or `payload` that is not
    ///   an object, is `400 malformed_payload` saying which.
    /// - A call without an `authorization` header can only be authenticated
    ///   by an envelope, so its body is read before its token is checked; a
    ///   call whose header token is unknown is refused before its body is
    ///   read.
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
    /// let starter = WebhookStarter::new(models, tokens, engine.clone());
    ///
    /// // The documented call, as one JSON document in the body.
    /// let body = serde_json::json!({
    ///     "headers": {"authorization": token.expose_secret()},
    ///     "payload": {"orderNumber": "123456"},
    /// });
    /// let target = webhook_url("/webhook/send", &uuid);
    /// let no_headers: [(&str, &str); 0] = [];
    /// let reply = starter.handle(&target, no_headers, body.to_string().as_bytes()).await;
    /// assert_eq!(reply.status(), 202);
    /// let started = &engine.started()[0].command.variables;
    /// assert_eq!(serde_json::Value::Object(started.clone()), serde_json::json!({"orderNumber": "123456"}));
    /// # });
    /// ```
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
        self.handle_method_from(None, "POST", target, headers, body).await
    }

    /// [`handle`](Self::handle) for any method: `POST` starts, `GET` answers
    /// the payload's JSON Schema ([`schema`](Self::schema)) as
    /// `application/schema+json`, `HEAD` answers as `GET` without the body
    /// (RFC 9110 §9.3.2), `OPTIONS` answers `204` with
    /// `Allow: GET, HEAD, OPTIONS, POST` (no token needed), and anything else
    /// is `405 method_not_allowed` with that `Allow`.
    ///
    /// A `POST` whose `Content-Type` is present and not JSON
    /// (`application/json` or a `+json` type, any parameters) is
    /// `415 unsupported_media_type` with `Accept-Post: application/json`; a
    /// missing `Content-Type` is accepted, since senders often omit it. Every
    /// `401` carries `WWW-Authenticate: Bearer realm="process-webhook"` (with
    /// `error="invalid_token"` for a token no environment has), and a dry
    /// run's answer `Preference-Applied: dry-run`.
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
        self.handle_method_from(None, method, target, headers, body).await
    }

    /// [`handle_method`](Self::handle_method) for a call from the client
    /// address `peer`. Failed authentications are then logged at `warn` with
    /// that address, at most one event a second per address with the number
    /// of failures since the last (so that a guessing run is seen without
    /// flooding the log).
    pub async fn handle_method_from<K, V>(
        &self,
        peer: Option<IpAddr>,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let call = async {
            let mut observed = Observed::from_peer(peer);
            let started = Instant::now();
            let result = catch_panic(async {
                let admitted = self
                    .admit(method, target, headers, Some(body.len()), &mut observed)
                    .await?;
                self.finish(admitted, body, &mut observed).await
            })
            .await;
            self.settle(result, &observed, started).await
        };
        in_span(&call_span(), std::pin::pin!(call)).await
    }

    /// The answer to a call's result, with its one log event.
    pub(crate) fn reply(
        &self,
        result: Result<Success, WebhookError>,
        observed: &Observed,
        started: Instant,
    ) -> HttpReply {
        let outcome = match &result {
            Ok(Success::Started(outcome)) if outcome.replayed() => "replayed",
            Ok(Success::Started(_)) => "started",
            Ok(Success::DryRun(_)) => "dry_run",
            Ok(Success::Schema(_) | Success::SchemaHead(_)) => "schema",
            Ok(Success::Options) => "options",
            Ok(Success::Waited(..)) => "waited",
            Err(_) => "",
        };
        let reply = match &result {
            Ok(Success::Started(outcome)) => marked_replayed(HttpReply::started(outcome), outcome),
            Ok(Success::DryRun(dry_run)) => {
                HttpReply::json(200, dry_run).with_header("preference-applied", "dry-run".to_owned())
            }
            Ok(Success::Schema(schema)) => {
                HttpReply::json(200, schema).with_content_type("application/schema+json")
            }
            Ok(Success::SchemaHead(schema)) => HttpReply::json(200, schema)
                .with_content_type("application/schema+json")
                .without_body(),
            Ok(Success::Options) => HttpReply::empty(204).with_header("allow", ALLOWED_METHODS.to_owned()),
            Ok(Success::Waited(outcome, completion, seconds)) => {
                self.waited_reply(outcome, completion, *seconds)
            }
            Err(error) => {
                if let (401, Some(peer)) = (error.status(), observed.peer) {
                    self.settings.auth_failures.record(peer, error.code());
                }
                HttpReply::from_error(error)
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
        self.log_call(
            observed,
            result.as_ref().map(|_| reply.status()),
            outcome,
            started,
        );
        reply
    }

    /// The part of a call that needs no body: method, target, size, headers,
    /// and the token on the request. `body_len` is the body's size where it
    /// is known.
    pub(crate) async fn admit<K, V>(
        &self,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body_len: Option<usize>,
        observed: &mut Observed,
    ) -> Result<Admitted, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let method = Method::parse(method)?;
        if method == Method::Options {
            return Ok(Admitted {
                method,
                process: ProcessUuid::from(uuid::Uuid::nil()),
                head: RequestHead::default(),
                environment: None,
            });
        }
        let process = process_from_target(target)?;
        observed.process = Some(process);
        if let Some(len) = body_len {
            check_body_size(len, self.settings.body_limit)?;
        }
        let head = RequestHead::parse_headers(headers)?;
        if let Some(trace) = &head.trace {
            tracing::Span::current().record("trace_id", trace.trace_id());
        }
        if method == Method::Post && head.not_json {
            return Err(WebhookError::UnsupportedMediaType);
        }
        self.check_client(observed).await?;
        let environment = if head.token.is_none() && method == Method::Post && self.settings.envelopes {
            None
        } else {
            let environment = environment_of(head.token.as_ref(), &*self.settings.tokens).await?;
            observed.environment = Some(environment.id().clone());
            self.limit_environment(&environment, observed).await?;
            Some(environment)
        };
        Ok(Admitted {
            method,
            process,
            head,
            environment,
        })
    }

    /// The rest of a call, once its body is read.
    ///
    /// What only some calls do (a `GET`'s schema, a token read from an
    /// envelope body, a wait) runs in boxed futures of its own, so that the
    /// future of every `POST` holds no room for them.
    pub(crate) async fn finish(
        &self,
        admitted: Admitted,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        let Admitted {
            method,
            process,
            head,
            environment,
        } = admitted;
        if method == Method::Options {
            return Ok(Success::Options);
        }
        if method != Method::Post {
            // `admit` looked the token up for every GET and HEAD.
            let environment = environment.ok_or(WebhookError::MissingToken)?;
            return Box::pin(self.finish_schema(method, process, &head, environment, body, observed)).await;
        }
        let (mut head, environment, from_envelope, mut payload) = match environment {
            Some(environment) => {
                // The signature is checked over the raw body, before it is parsed.
                self.verify_body(&environment, head.signature.as_ref(), body)?;
                let payload = parse_payload(body, self.settings.max_json_values)?;
                (head, environment, false, payload)
            }
            None => {
                let (head, environment, payload) =
                    Box::pin(self.open_token_envelope(head, body, observed)).await?;
                (head, environment, true, payload)
            }
        };
        let deployment = resolve(&process, &environment, &*self.settings.models).await?;
        observed.deployed = true;
        let envelopes_here = self.settings.envelopes && !names_envelope_fields(&deployment);
        if from_envelope && !envelopes_here {
            // The deployment takes its bodies as plain payloads: the token
            // read from the body does not count.
            return Err(WebhookError::MissingToken);
        }
        if !from_envelope && envelopes_here && is_envelope(&payload) {
            let (inner, inner_payload) = open_envelope(payload)?;
            head.merge_envelope(inner)?;
            payload = inner_payload;
        }
        let wait = head.wait;
        let (request, _) = head.into_request(process, payload);
        if let Some(key) = request.idempotency_key() {
            check_idempotency_key(key)?;
        }
        if request.dry_run {
            let prepared = prepare_resolved(request, deployment)?;
            return Ok(Success::DryRun(DryRun::from(prepared)));
        }
        let key = request.idempotency_key().map(str::to_owned);
        let (outcome, business_key) = self.start_resolved(request, &environment, deployment).await?;
        match wait {
            Some(seconds) => Ok(Box::pin(self.wait_for(outcome, business_key, key, seconds, observed)).await),
            None => Ok(Success::Started(outcome)),
        }
    }

    /// The signature `environment` may require, over the raw `body`.
    fn verify_body(
        &self,
        environment: &Environment,
        signature: Option<&SignatureHeaders>,
        body: &[u8],
    ) -> Result<(), WebhookError> {
        verify_signed(
            environment,
            signature.map(|s| (s, body)),
            self.settings.signature_tolerance,
        )
    }

    /// A `GET` or `HEAD`: the schema of the payload, once the signature over
    /// the (empty) body holds.
    async fn finish_schema(
        &self,
        method: Method,
        process: ProcessUuid,
        head: &RequestHead,
        environment: Environment,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        self.verify_body(&environment, head.signature.as_ref(), body)?;
        let schema = self.schema_authenticated(&process, &environment).await?;
        observed.deployed = true;
        Ok(if method == Method::Head {
            Success::SchemaHead(schema)
        } else {
            Success::Schema(schema)
        })
    }

    /// A `POST` without a token on the request: only an envelope body can
    /// carry one. Its environment (looked up, limited, and its signature
    /// checked against the request's own signature headers), the head with
    /// the envelope's headers merged in, and the envelope's payload.
    async fn open_token_envelope(
        &self,
        mut head: RequestHead,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<(RequestHead, Environment, Map<String, Value>), WebhookError> {
        let payload = match parse_payload(body, self.settings.max_json_values) {
            Ok(payload) if is_envelope(&payload) => payload,
            _ => return Err(WebhookError::MissingToken),
        };
        // Signature headers inside an envelope do not count: the request's
        // own are kept aside before the envelope's are merged.
        let signature = head.signature.clone();
        let (inner, payload) = open_envelope(payload)?;
        head.merge_envelope(inner)?;
        let environment = environment_of(head.token.as_ref(), &*self.settings.tokens).await?;
        observed.environment = Some(environment.id().clone());
        self.limit_environment(&environment, observed).await?;
        self.verify_body(&environment, signature.as_ref(), body)?;
        Ok((head, environment, payload))
    }

    async fn authenticate_request(&self, request: &WebhookStartRequest) -> Result<Environment, WebhookError> {
        authenticate_request(request, &*self.settings.tokens, self.settings.signature_tolerance).await
    }

    async fn dry_run_authenticated(
        &self,
        request: WebhookStartRequest,
        environment: &Environment,
    ) -> Result<DryRun, WebhookError> {
        let prepared = prepare(request, environment, &*self.settings.models).await?;
        Ok(DryRun::from(prepared))
    }

    async fn schema_authenticated(
        &self,
        process: &ProcessUuid,
        environment: &Environment,
    ) -> Result<Value, WebhookError> {
        let deployment = resolve(process, environment, &*self.settings.models).await?;
        if deployment.version() == VersionTag::Draft {
            return Err(WebhookError::DraftVersion {
                process: *process,
                environment: environment.id().clone(),
            });
        }
        Ok(deployment.start_form().json_schema())
    }

    /// A start whose deployment is known: checks, idempotency, the engine.
    ///
    /// The checks run when this is called; the future returned holds the
    /// prepared call, not the request it was made from (see
    /// [`start_on`]).
    fn start_resolved(
        &self,
        request: WebhookStartRequest,
        environment: &Environment,
        deployment: Deployment,
    ) -> impl Future<Output = Result<(StartOutcome, Option<String>), WebhookError>> + Send + '_ {
        let idempotent = match (&self.settings.idempotency, request.idempotency_key()) {
            (Some(store), Some(key)) => Some((
                store,
                IdempotencyKey::new(environment.id().clone(), request.process, key),
                PayloadFingerprint::of(&request.payload),
            )),
            _ => None,
        };
        let prepared = match prepare_resolved(request, deployment) {
            Ok(prepared) => prepared,
            Err(error) => return Either::Left(Either::Left(std::future::ready(Err(error)))),
        };
        match idempotent {
            None => Either::Left(Either::Right(self.call_engine(prepared))),
            // Boxed: the idempotent path holds the key and its store's
            // futures besides the engine's, and would make every start's
            // future (most have no key) that much larger.
            Some((store, key, fingerprint)) => Either::Right(Box::pin(self.start_idempotent(
                &**store,
                key,
                fingerprint,
                prepared,
            ))),
        }
    }

    /// [`start_resolved`](Self::start_resolved) with an idempotency key: the
    /// key's reservation, the engine, the outcome recorded.
    async fn start_idempotent(
        &self,
        store: &dyn IdempotencyStore,
        key: IdempotencyKey,
        fingerprint: PayloadFingerprint,
        prepared: Prepared,
    ) -> Result<(StartOutcome, Option<String>), WebhookError> {
        match store.reserve(&key, fingerprint).await? {
            Reservation::Reserved => {}
            Reservation::Full { retry_after } => {
                tracing::error!(
                    target: "process_webhook",
                    process = %key.process(),
                    environment = %key.environment(),
                    "the idempotency store is full: an idempotent start was refused"
                );
                return Err(WebhookError::IdempotencyStoreFull { retry_after });
            }
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
                    Ok((outcome.into_replay(), None))
                } else {
                    Err(WebhookError::IdempotencyKeyReused)
                };
            }
        }
        let result = self.call_engine(prepared).await;
        let recorded = match &result {
            Ok((outcome, _)) => store.complete(&key, outcome).await,
            Err(_) => store.release(&key).await,
        };
        if let Err(error) = recorded {
            // The start's own result stands; a key left reserved counts
            // as abandoned once the store's lease ends.
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

    /// The engine's start of a prepared call, a panic (while the engine
    /// builds its future or while it runs) answered `500 internal_error`.
    fn call_engine(
        &self,
        prepared: Prepared,
    ) -> impl Future<Output = Result<(StartOutcome, Option<String>), WebhookError>> + Send + '_ {
        // Timed only when the metrics are compiled in: two clock reads are a
        // measurable part of a start.
        #[cfg(feature = "metrics")]
        let began = Instant::now();
        let engine = &*self.settings.engine;
        let started = match std::panic::catch_unwind(AssertUnwindSafe(|| start_on(prepared, engine))) {
            Ok(future) => Either::Left(catch_panic(future)),
            Err(_) => Either::Right(std::future::ready(Err(WebhookError::Internal))),
        };
        started.map(move |result| {
            #[cfg(feature = "metrics")]
            observe::engine_call(engine.name(), result.is_ok(), began.elapsed());
            result
        })
    }

    /// Waits (as `Prefer: wait=seconds` asked, within this starter's bounds)
    /// for the instance of `outcome` to end. A call that cannot wait (no
    /// wait allowed, no place among the waiting calls, an engine that cannot
    /// wait or fails to, or a caller that hung up) is answered as a start.
    async fn wait_for(
        &self,
        outcome: StartOutcome,
        business_key: Option<String>,
        idempotency_key: Option<String>,
        seconds: u32,
        observed: &Observed,
    ) -> Success {
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
        let mut instance = InstanceRef::new(
            outcome.instance_id().clone(),
            *outcome.process(),
            outcome.environment().clone(),
        );
        if let Some(key) = business_key {
            instance = instance.with_business_key(key);
        }
        if let Some(key) = idempotency_key {
            instance = instance.with_idempotency_key(key);
        }
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
    fn waited_reply(&self, outcome: &StartOutcome, completion: &Completion, seconds: u32) -> HttpReply {
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

    /// The one log event and the metrics of a call. `outcome` names a
    /// success (`started`, `replayed`, `dry_run`, `schema`, `options`);
    /// errors are `client_error` or `server_error`.
    fn log_call(
        &self,
        observed: &Observed,
        result: Result<u16, &WebhookError>,
        outcome: &'static str,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let (status, code, outcome) = match result {
            Ok(status) => (status, "ok", outcome),
            Err(error) if error.status() >= 500 => (error.status(), error.code(), "server_error"),
            Err(error) => (error.status(), error.code(), "client_error"),
        };
        let process = observed
            .process
            .filter(|_| self.settings.process_label && observed.deployed)
            .map(|p| p.to_string());
        observe::call(
            status,
            code,
            outcome,
            observed.environment.as_ref().map(EnvironmentId::as_str),
            process,
            elapsed,
        );
        log_call(observed, result, elapsed);
    }
}

impl From<Prepared> for DryRun {
    fn from(prepared: Prepared) -> Self {
        Self {
            dry_run: true,
            process_uuid: *prepared.deployment.process(),
            version: prepared.version,
            environment: prepared.deployment.environment().clone(),
            deployment_id: prepared.deployment.id(),
            definition_key: prepared.deployment.definition_key().to_owned(),
            variables: prepared.variables,
        }
    }
}

thread_local! {
    /// The buffer [`WebhookStarter::limit_environment`] writes an
    /// environment's limiter key into.
    static ENV_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An environment's limiter key: `env:{organization}/{environment}`.
fn push_env_key(key: &mut String, organization: &str, environment: &str) {
    key.push_str("env:");
    key.push_str(organization);
    key.push('/');
    key.push_str(environment);
}

/// What the starter does when its limiter fails: logs it, then lets the
/// call through or refuses it.
fn limiter_failed(error: StoreError, on_error: OnLimiterError) -> Result<(), WebhookError> {
    tracing::error!(
        target: "process_webhook",
        error = %chain(&error),
        "the rate limiter could not answer"
    );
    match on_error {
        OnLimiterError::Refuse => Err(WebhookError::StoreUnavailable { source: error }),
        _ => Ok(()),
    }
}

/// `reply` with `idempotent-replayed: true` when `outcome` is a replay.
fn marked_replayed(reply: HttpReply, outcome: &StartOutcome) -> HttpReply {
    if outcome.replayed() {
        reply.with_header("idempotent-replayed", "true".to_owned())
    } else {
        reply
    }
}

/// A duration in whole seconds, rounded up.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Whether a deployment's start form names a field `headers` or `payload`:
/// its bodies are then never read as envelopes.
fn names_envelope_fields(deployment: &Deployment) -> bool {
    deployment
        .start_form()
        .fields()
        .iter()
        .any(|f| matches!(f.name(), "headers" | "payload"))
}

/// The span of one call: its events carry the caller's trace id (the
/// `trace_id` field, recorded once the `traceparent` header is read), so
/// that logs and the started instance join up.
pub(crate) fn call_span() -> tracing::Span {
    tracing::info_span!(target: "process_webhook", "webhook_call", trace_id = tracing::field::Empty)
}

/// Polls `future` inside `span`. Unlike `Instrument::instrument`, it
/// borrows the pinned future rather than moving it: a start's future is a
/// few KiB, and moving it cost about a tenth of a start (measured with
/// `cargo bench --bench limit`: 1.81 µs with the move, 1.66 µs without).
pub(crate) async fn in_span<F: Future>(span: &tracing::Span, mut future: std::pin::Pin<&mut F>) -> F::Output {
    std::future::poll_fn(|cx| {
        let _entered = span.enter();
        future.as_mut().poll(cx)
    })
    .await
}

/// Runs `future`, turning a panic into `500 internal_error`.
///
/// A plain function returning a combinator, not an `async fn`: an
/// `async fn` keeps its argument and the future it awaits side by side,
/// which doubled the size of every start in flight (measured with
/// `-Zprint-type-sizes`: 4,696 bytes for `WebhookStarter::start`).
pub(crate) fn catch_panic<T>(
    future: impl Future<Output = Result<T, WebhookError>>,
) -> impl Future<Output = Result<T, WebhookError>> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .map(|caught| caught.unwrap_or(Err(WebhookError::Internal)))
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
fn log_call(observed: &Observed, result: Result<u16, &WebhookError>, elapsed: Duration) {
    // Formatted only when a subscriber records the event.
    let process = observed.process.as_ref().map(tracing::field::display);
    let environment = observed.environment.as_ref().map(EnvironmentId::as_str);
    let duration_us = elapsed.as_micros() as u64;
    match result {
        Ok(status) => tracing::info!(
            target: "process_webhook",
            process, environment, status, code = "ok", duration_us,
            "webhook call"
        ),
        // Refusals that guard the server: worth seeing at `warn`.
        Err(error) if matches!(error.status(), 408 | 413) || error.code() == "server_busy" => tracing::warn!(
            target: "process_webhook",
            process, environment, status = error.status(), code = error.code(), duration_us,
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
