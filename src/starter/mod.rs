//! [`WebhookStarter`]: the stores, the engine and the options in one value
//! that a host shares between requests: how it is built and configured, and
//! whether it can serve ([`WebhookStarter::ready`]). Its starts are in
//! `start.rs`; the HTTP exchange over it is in `http/`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::limit::{RateLimitPolicy, RateLimiter};
use crate::observe::chain;
use crate::signature::DEFAULT_SIGNATURE_TOLERANCE;
use crate::starter::inbox::InboxSettings;
use crate::starter::protect::{AuthFailures, BodyBudget};
use crate::starter::ready::Checks;
use crate::starter::waits::Waits;
use crate::store::{IdempotencyStore, ModelStore, SourceStore, TokenStore};

pub(crate) mod deliveries;
mod dispatch;
pub(crate) mod inbox;
mod limit;
mod log;
pub(crate) mod protect;
mod ready;
mod start;
mod waits;

pub use dispatch::Dispatcher;
pub use inbox::InboxPolicy;
pub use ready::{Component, NotReady};

/// The default limit on a webhook body: 1 MiB.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default bound on the JSON values in one payload: 10,000.
pub(crate) const DEFAULT_MAX_JSON_VALUES: usize = 10_000;

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
    pub(crate) settings: Arc<Settings>,
}

/// What a [`WebhookStarter`] was built with. The `with_*` methods change
/// their starter's own copy (copied on write if it is shared).
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) models: Arc<dyn ModelStore>,
    pub(crate) tokens: Arc<dyn TokenStore>,
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) idempotency: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) sources: Option<Arc<dyn SourceStore>>,
    pub(crate) body_limit: usize,
    pub(crate) max_json_values: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) body_budget: Arc<BodyBudget>,
    pub(crate) envelopes: bool,
    pub(crate) signature_tolerance: Duration,
    pub(crate) auth_failures: Arc<AuthFailures>,
    pub(crate) limiter: Option<(Arc<dyn RateLimiter>, RateLimitPolicy)>,
    pub(crate) process_label: bool,
    pub(crate) ready_timeout: Duration,
    pub(crate) waits: Waits,
    pub(crate) takeover_margin: Duration,
    pub(crate) inbox: Option<InboxSettings>,
    #[cfg(feature = "delivery-log")]
    pub(crate) log: Option<crate::delivery_log::LogSink>,
}

impl fmt::Debug for WebhookStarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookStarter")
            .field("idempotency", &self.settings.idempotency.is_some())
            .field("sources", &self.settings.sources.is_some())
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

impl WebhookStarter {
    /// The default limit on a webhook body: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = DEFAULT_BODY_LIMIT;

    /// The default bound on the JSON values in one payload: 10,000.
    pub const DEFAULT_MAX_JSON_VALUES: usize = DEFAULT_MAX_JSON_VALUES;

    /// The default time limit for a whole body to arrive: 10 seconds.
    pub const DEFAULT_BODY_TIMEOUT: Duration = protect::DEFAULT_BODY_TIMEOUT;

    /// The default bound on the bytes of bodies being read at once, across all
    /// connections: 64 MiB.
    pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = protect::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT;

    /// The default longest wait of a call with `Prefer: wait`: 30 seconds.
    pub const DEFAULT_MAX_WAIT: Duration = waits::DEFAULT_MAX_WAIT;

    /// The default bound on calls waiting at once: 1,000.
    pub const DEFAULT_MAX_WAITING_CALLS: usize = waits::DEFAULT_MAX_WAITING_CALLS;

    /// The default bound on a readiness check: 2 seconds.
    pub const DEFAULT_READY_TIMEOUT: Duration = ready::DEFAULT_READY_TIMEOUT;
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
            sources: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_json_values: DEFAULT_MAX_JSON_VALUES,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            body_budget: BodyBudget::new(Self::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT),
            envelopes: true,
            signature_tolerance: DEFAULT_SIGNATURE_TOLERANCE,
            auth_failures: Arc::default(),
            limiter: None,
            process_label: false,
            ready_timeout: Self::DEFAULT_READY_TIMEOUT,
            waits: Waits {
                max: Self::DEFAULT_MAX_WAIT,
                max_calls: Self::DEFAULT_MAX_WAITING_CALLS,
                waiting: Arc::default(),
                show_failures: false,
            },
            takeover_margin: crate::engine::TAKEOVER_MARGIN,
            inbox: None,
            #[cfg(feature = "delivery-log")]
            log: None,
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
    ///         .with_per_environment("100/s".parse().unwrap())
    ///         .with_failed_authentications_per_client(Quota::per_minute(30)),
    /// );
    /// # let _ = starter;
    /// ```
    pub fn with_rate_limit(mut self, limiter: Arc<dyn RateLimiter>, policy: RateLimitPolicy) -> Self {
        Arc::make_mut(&mut self.settings).limiter = Some((limiter, policy));
        self
    }

    /// Serves the webhook sources in `sources`: a call with
    /// `source={id}` in its query is authenticated by that source's scheme
    /// (GitHub's, Stripe's, …; see [`SourceScheme`](crate::SourceScheme))
    /// instead of an environment token, and starts the source's process in
    /// the source's environment; every other rule applies as to a token's
    /// call. Without sources (the default) such a call is
    /// `404 unknown_source`.
    ///
    /// With an idempotency store, each delivery starts exactly once: the
    /// scheme's delivery id (GitHub's `X-GitHub-Delivery`, Stripe's event
    /// `id`, …) is the idempotency key, unless the call sends an
    /// `Idempotency-Key`, and a redelivery replays the first answer.
    ///
    /// The [sources guide](crate::guide::sources) has the whole story
    /// (built into the docs with every feature on).
    pub fn with_sources(mut self, sources: Arc<dyn SourceStore>) -> Self {
        Arc::make_mut(&mut self.settings).sources = Some(sources);
        self
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
    /// [`WebhookStarter::DEFAULT_READY_TIMEOUT`](crate::WebhookStarter::DEFAULT_READY_TIMEOUT)) for them.
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
        self.readiness().await.0
    }

    /// [`ready`](Self::ready), and whether the engine answered. A starter
    /// that keeps every start ([`InboxPolicy::Always`](crate::InboxPolicy::Always))
    /// serves its senders while the engine is away: the engine's failure
    /// is then not a reason to be unready, only reported.
    pub(crate) async fn readiness(&self) -> (Result<(), NotReady>, bool) {
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
        let engine_ready = engine.is_none();
        let keeps_every_start = matches!(
            &self.settings.inbox,
            Some(kept) if kept.policy == crate::InboxPolicy::Always
        );
        let engine = if keeps_every_start { None } else { engine };
        let verdict = Checks::verdict([models, tokens, idempotency, limiter, engine]);
        if let Err(not_ready) = &verdict {
            tracing::warn!(target: "process_webhook", error = %chain(not_ready), "readiness check failed");
        }
        (verdict, engine_ready)
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
    /// ([`WebhookStarter::DEFAULT_MAX_JSON_VALUES`](crate::WebhookStarter::DEFAULT_MAX_JSON_VALUES)), keeps
    /// the memory of a call a small multiple of its bytes.
    pub fn with_max_json_values(mut self, values: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_json_values = values;
        self
    }

    /// Sets how long the whole body of a call may take to arrive in the
    /// `router` (feature `axum`) (default 10 s,
    /// [`WebhookStarter::DEFAULT_BODY_TIMEOUT`](crate::WebhookStarter::DEFAULT_BODY_TIMEOUT)); a slower body
    /// is `408 body_timeout` and its buffer is freed.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.settings).body_timeout = timeout;
        self
    }

    /// Sets how many body bytes the `router` (feature `axum`) reads and
    /// holds at once, across all calls (default 64 MiB,
    /// [`WebhookStarter::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT`](crate::WebhookStarter::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT));
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

    /// Sets what is added to the call deadline of an engine that finds
    /// starts by business key ([`Recovery::FindsByBusinessKey`](crate::Recovery::FindsByBusinessKey))
    /// before a key's reservation, cut off by a crash, is taken over by the
    /// key's next delivery (default 5 s, [`TAKEOVER_MARGIN`](crate::TAKEOVER_MARGIN)):
    /// longer than the idempotency store's own calls take, so that the
    /// holder, if it lives, has recorded its outcome by then.
    pub fn with_takeover_margin(mut self, margin: Duration) -> Self {
        Arc::make_mut(&mut self.settings).takeover_margin = margin;
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
}
