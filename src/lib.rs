//! Start deployed business processes from webhooks.
//!
//! A process model has a UUID; once a version of it is deployed to an
//! environment, a caller starts it by calling its webhook
//! `https://run.stackfl.com/webhook/send?uid={process_uuid}` with the
//! environment's token in the `authorization` header and the process's start
//! fields as a JSON object. Draft versions can never be started by webhook.
//!
//! This crate is the core of that, behind small traits that a host
//! implements over its own storage and engine: [`ModelStore`],
//! [`TokenStore`], [`Engine`] (and, for idempotent starts,
//! [`IdempotencyStore`]). In-memory implementations ship for tests and small
//! hosts. [`start_via_webhook`] is the start itself; [`WebhookStarter`] adds
//! idempotency and the whole HTTP exchange ([`WebhookStarter::handle`]) for
//! any web framework; the `axum` feature has a ready router and the
//! `camunda7` feature an engine that starts instances on Camunda 7.
//!
//! # Example
//!
//! ```
//! use process_webhook::*;
//! use serde_json::json;
//!
//! # tokio_test::block_on(async {
//! // The studio's side: a model, deployed to production, and the environment's token.
//! let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
//! let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
//! let models = InMemoryModelStore::new();
//! models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
//! let form = StartForm::new([
//!     FieldSpec::mandatory("customerName", FieldKind::Text),
//!     FieldSpec::mandatory("orderNumber", FieldKind::Text),
//!     FieldSpec::mandatory("productCode", FieldKind::Text),
//! ]);
//! models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(), form));
//! let tokens = InMemoryTokenStore::new();
//! let token = EnvironmentToken::generate();
//! tokens.insert(&token, Environment::new(production, acme));
//! let engine = InMemoryEngine::new();
//!
//! // The caller's side: the webhook call.
//! let payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
//! let request = WebhookStartRequest::new(uuid, Some(token.clone()), payload.as_object().unwrap().clone());
//! let outcome = start_via_webhook(request, &models, &tokens, &engine).await.unwrap();
//! assert_eq!(outcome.version(), 1);
//! assert_eq!(engine.started()[0].command.variables["orderNumber"], "123456");
//!
//! // A call without the mandatory fields is refused, and starts nothing.
//! let request = WebhookStartRequest::new(uuid, Some(token), Default::default());
//! let err = start_via_webhook(request, &models, &tokens, &engine).await.unwrap_err();
//! assert_eq!((err.status(), err.code()), (422, "invalid_payload"));
//! assert_eq!(err.violations().len(), 3);
//! assert_eq!(engine.started().len(), 1);
//! # });
//! ```
//!
//! # Implementing your own stores and engine
//!
//! A host keeps models, tokens and idempotency keys wherever it likes (a
//! database, a configuration file, a remote service) and starts instances
//! on whatever engine it runs, by implementing six small traits:
//! [`ModelStore`], [`TokenStore`], [`SourceStore`], [`IdempotencyStore`],
//! [`RateLimiter`] and [`Engine`] (the example below implements the
//! three a start needs, and an idempotency store).
//! They are `#[async_trait]` traits; the attribute is re-exported as
//! [`process_webhook::async_trait`](crate::async_trait), so this crate is
//! the only dependency an implementation needs. The rules:
//!
//! - Absence is `Ok(None)`; an `Err(StoreError)` means the store could not
//!   answer, and the start is refused with `503 store_unavailable` without
//!   reaching the engine.
//! - Token stores keep [`TokenDigest`]s, never tokens; its equality is
//!   constant-time.
//! - A deployment keeps the id it was created with ([`Deployment::new`]
//!   makes a random one).
//! - A store that can answer without waiting (in memory, or from a cache
//!   it holds) may implement [`TokenStore::environment_now`] and
//!   [`ModelStore::model_with_deployment_now`]: a start asks them first and
//!   skips the boxed future of the async call when they answer. Their
//!   answer must be the async one (the conformance suites check it).
//! - An idempotency store never forgets a key before its retention ends;
//!   see [`IdempotencyStore`]'s contract.
//! - A trait's `# Wrappers` section says which provided methods a store
//!   or engine that wraps another must forward.
//! - The `testing` feature has a conformance suite for each trait
//!   (`testing::check_model_store`, `check_token_store`,
//!   `check_source_store`, `check_idempotency_store`,
//!   `check_idempotency_takeover`, `check_engine`, `check_rate_limiter`)
//!   to run against your implementations.
//!
//! A complete example, with only this crate and `serde_json`:
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::{Duration, Instant};
//! use process_webhook::*;
//!
//! /// Models and deployments, as a host might keep them after loading
//! /// them from its database.
//! #[derive(Default)]
//! struct MyModels {
//!     models: HashMap<ProcessUuid, ProcessModel>,
//!     deployments: HashMap<(ProcessUuid, EnvironmentId), Deployment>,
//! }
//!
//! #[async_trait]
//! impl ModelStore for MyModels {
//!     async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
//!         Ok(self.models.get(uuid).cloned())
//!     }
//!
//!     async fn deployment(
//!         &self,
//!         uuid: &ProcessUuid,
//!         environment: &EnvironmentId,
//!     ) -> Result<Option<Deployment>, StoreError> {
//!         Ok(self.deployments.get(&(*uuid, environment.clone())).cloned())
//!     }
//! }
//!
//! /// Environments by token digest, e.g. from a configuration file.
//! struct MyTokens(HashMap<TokenDigest, Environment>);
//!
//! #[async_trait]
//! impl TokenStore for MyTokens {
//!     async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
//!         Ok(self.0.get(&token.digest()).cloned())
//!     }
//! }
//!
//! /// Idempotency keys with their retention and lease, behind one lock.
//! #[derive(Default)]
//! struct MyKeys(Mutex<HashMap<IdempotencyKey, (Instant, PayloadFingerprint, Option<StartOutcome>)>>);
//!
//! const RETENTION: Duration = DEFAULT_IDEMPOTENCY_TTL;
//! const LEASE: Duration = DEFAULT_IDEMPOTENCY_LEASE;
//!
//! #[async_trait]
//! impl IdempotencyStore for MyKeys {
//!     async fn reserve(&self, key: &IdempotencyKey, fingerprint: PayloadFingerprint)
//!         -> Result<Reservation, StoreError>
//!     {
//!         let mut keys = self.0.lock().map_err(|_| StoreError::new("lock poisoned"))?;
//!         if let Some((since, held, outcome)) = keys.get(key) {
//!             let age = since.elapsed();
//!             let alive = age < RETENTION && (outcome.is_some() || age < LEASE);
//!             if alive {
//!                 return Ok(match outcome {
//!                     Some(outcome) => Reservation::Completed { fingerprint: *held, outcome: outcome.clone() },
//!                     None => Reservation::InProgress { fingerprint: *held },
//!                 });
//!             }
//!         }
//!         keys.insert(key.clone(), (Instant::now(), fingerprint, None));
//!         Ok(Reservation::Reserved)
//!     }
//!
//!     async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
//!         let mut keys = self.0.lock().map_err(|_| StoreError::new("lock poisoned"))?;
//!         match keys.get_mut(key) {
//!             Some(entry) => Ok(entry.2 = Some(outcome.clone())),
//!             None => Err(StoreError::new("completing a key that is not reserved")),
//!         }
//!     }
//!
//!     async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
//!         let mut keys = self.0.lock().map_err(|_| StoreError::new("lock poisoned"))?;
//!         if keys.get(key).is_some_and(|entry| entry.2.is_none()) {
//!             keys.remove(key);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! /// An engine that hands starts to the host's own workflow runner.
//! #[derive(Default)]
//! struct MyEngine(Mutex<Vec<StartCommand>>);
//!
//! #[async_trait]
//! impl Engine for MyEngine {
//!     async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
//!         let mut started = self.0.lock().map_err(|_| EngineError::new("runner unavailable"))?;
//!         started.push(command.clone());
//!         Ok(ProcessInstance::new(InstanceId::new(format!("run-{}", started.len()))))
//!     }
//! }
//!
//! # fn block_on<F: std::future::Future>(future: F) -> F::Output {
//! #     // A minimal executor, so that this example needs no runtime crate.
//! #     struct Unpark(std::thread::Thread);
//! #     impl std::task::Wake for Unpark {
//! #         fn wake(self: Arc<Self>) { self.0.unpark(); }
//! #     }
//! #     let waker = Arc::new(Unpark(std::thread::current())).into();
//! #     let mut cx = std::task::Context::from_waker(&waker);
//! #     let mut future = std::pin::pin!(future);
//! #     loop {
//! #         if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) { return out; }
//! #         std::thread::park();
//! #     }
//! # }
//! # block_on(async {
//! let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
//! let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
//! let mut models = MyModels::default();
//! models.models.insert(uuid, ProcessModel::new(uuid, acme.clone(), "Order intake"));
//! let form = StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]);
//! let deployment = Deployment::new(uuid, VersionTag::Released(1), production.clone(), form);
//! models.deployments.insert((uuid, production.clone()), deployment);
//! let token = EnvironmentToken::generate();
//! let tokens = MyTokens(HashMap::from([(token.digest(), Environment::new(production, acme))]));
//! let engine = Arc::new(MyEngine::default());
//!
//! let starter = WebhookStarter::new(Arc::new(models), Arc::new(tokens), engine.clone())
//!     .with_idempotency(Arc::new(MyKeys::default()));
//! let target = webhook_url("/webhook/send", &uuid);
//! let auth = format!("Bearer {}", token.expose_secret());
//! let headers = [("authorization", auth.as_str()), ("idempotency-key", "order-1")];
//! let body = serde_json::json!({"orderNumber": "123456"}).to_string();
//! assert_eq!(starter.handle(&target, headers, body.as_bytes()).await.status(), 202);
//! let again = starter.handle(&target, headers, body.as_bytes()).await;
//! assert_eq!(again.header("idempotent-replayed"), Some("true"));
//! assert_eq!(engine.0.lock().unwrap().len(), 1);
//!
//! // With the `testing` feature, the conformance suites check a store
//! // against the traits' contracts, e.g.
//! // `process_webhook::testing::check_idempotency_store(&MyKeys::default()).await`.
//! # #[cfg(feature = "testing")]
//! # process_webhook::testing::check_idempotency_store(&MyKeys::default()).await;
//! # });
//! ```
//!
//! # Serving it with axum
//!
//! With the `axum` feature, `router` and `serve` are ready. They are built
//! on axum 0.8 and tokio 1: depend on those yourself, with the features your
//! application uses (e.g. `axum = "0.8"`, `tokio = { version = "1",
//! features = ["macros", "rt-multi-thread", "net", "signal"] }`). `router`
//! is generic over your router's state, so it merges into a
//! `Router<AppState>` as it is. A complete `main`:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod server {
//! use std::sync::Arc;
//! use process_webhook::*;
//!
//! fn main() -> std::io::Result<()> {
//!     let starter = WebhookStarter::new(
//!         Arc::new(InMemoryModelStore::new()), // or your own stores and engine
//!         Arc::new(InMemoryTokenStore::new()),
//!         Arc::new(InMemoryEngine::new()),
//!     );
//!     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//!     runtime.block_on(async {
//!         let app = router("/webhook/send", starter); // an axum::Router: merge it into yours
//!         let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!         serve(listener, app, ServeOptions::default(), async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await
//!     })
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # Features
//!
//! - `axum`: `router`, a ready `axum::Router` for the webhook endpoint,
//!   `health_router` (`/healthz`, `/readyz`), and `serve`, a server loop
//!   with header, idle and connection limits.
//! - `metrics`: counters, histograms and gauges through the `metrics`
//!   facade (see "Metrics" below).
//! - `camunda7`: `Camunda7Engine`, an [`Engine`] over Camunda 7's REST API.
//! - `camunda8`: `Camunda8Engine`, an [`Engine`] over Camunda 8's
//!   Orchestration Cluster REST API (none, basic, bearer or OAuth client
//!   credentials).
//! - `temporal`: `TemporalEngine`, an [`Engine`] that starts Temporal
//!   workflows through Temporal's HTTP API, exactly once per idempotency key.
//! - `redis`: `RedisIdempotencyStore` and `RedisRateLimiter`, idempotency
//!   keys and rate limits shared by replicas through Redis.
//! - `postgres`: `PostgresStore`, models, tokens, webhook sources (their
//!   secrets encrypted), idempotency keys and the inbox's kept starts in
//!   PostgreSQL (sqlx), shared by several replicas.
//! - `sqlite`: `SqliteStore`, every port `PostgresStore` implements, in one
//!   SQLite file (SQLite compiled in): a single server's state across
//!   restarts, without a database server.
//! - `testing`: the `testing` module, conformance suites for a host's own
//!   stores.
//! - `mapping`: webhook sources that map a sender's payload into the start
//!   form (RFC 9535 JSONPath), with conditions.
//! - `multipart`: `multipart/form-data` bodies.
//! - `dispatcher`: `Dispatcher::run`, the loop that starts the starts an
//!   [`Inbox`] keeps (without it, call [`Dispatcher::dispatch_due`] on a
//!   timer of your own).
//! - `server`: the `webhook_server` binary.
//!
//! # Guides
//!
//! The [`guide`] module has the rest: the [rules and answers](guide::rules),
//! the [guarantees](guide::guarantees), [idempotency and signed
//! webhooks](guide::idempotency), [webhook sources](guide::sources)
//! (GitHub, Stripe, Slack, Shopify, Twilio, GitLab and any HMAC sender,
//! verified by their own signatures), [running it in
//! production](guide::production) (limits, metrics, health, trace context),
//! [one server on its file, many replicas](guide::replicas), the [engines](guide::engines) and
//! [`Prefer: wait`](guide::waiting). The inbox (a start kept while the
//! engine is away, and the [`Dispatcher`] that starts it later) is in the
//! guarantees guide.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

#[cfg(feature = "console")]
mod admin;
mod delivery_log;
mod engine;
mod error;
mod form;
mod http;
mod id;
mod idempotency;
mod inbox;
mod limit;
mod model;
mod observe;
mod outcome;
mod port_error;
#[cfg(feature = "redis")]
mod redis_call;
mod request;
mod signal;
mod signature;
mod source;
mod start;
mod starter;
mod store;
mod token;
mod trace;

// The guides are documentation only; their examples are doc-tests that
// need every feature, so they are compiled for documentation, and for
// doc-tests only with those features on.
#[cfg(any(
    doc,
    all(
        doctest,
        feature = "axum",
        feature = "camunda7",
        feature = "camunda8",
        feature = "postgres",
        feature = "redis",
        feature = "sqlite",
        feature = "temporal"
    )
))]
pub mod guide;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

/// The `redis` whose connection [`RedisIdempotencyStore`] and
/// [`RedisRateLimiter`] share (feature `redis`).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use ::redis;
/// The `reqwest` whose `Client` the HTTP engines take (features
/// `camunda7`, `camunda8`, `temporal`).
#[cfg(any(feature = "camunda7", feature = "camunda8", feature = "temporal"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "camunda7", feature = "camunda8", feature = "temporal")))
)]
pub use ::reqwest;
/// The `sqlx` whose pools `PostgresStore` and `SqliteStore` are built on
/// (features `postgres`, `sqlite`), so that a host's pool is of the same
/// version.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use ::sqlx;
/// The attribute the traits are written with: `#[async_trait]` on an
/// `impl` of [`ModelStore`], [`TokenStore`], [`SourceStore`],
/// [`IdempotencyStore`], [`RateLimiter`] or [`Engine`].
pub use async_trait::async_trait;

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub use crate::admin::{Admin, AdminError, AdminToken, InvalidAdminToken, Operator};
pub use crate::delivery_log::{
    Attempt, Cursor, DeliveryLog, InMemoryDeliveryLog, InvalidCursor, LastFailure, LogPage, LogQuery,
    LoggedDelivery, LoggedHeaders, LoggedOutcome, SourceSummary, UnknownOutcome, is_credential_field,
    is_credential_header,
};
#[cfg(feature = "delivery-log")]
#[cfg_attr(docsrs, doc(cfg(feature = "delivery-log")))]
pub use crate::delivery_log::{KeepPayloads, LogSink, LogWriter};
#[cfg(any(feature = "camunda7", feature = "camunda8"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "camunda7", feature = "camunda8"))))]
pub use crate::engine::DEFAULT_TRACE_VARIABLE;
#[cfg(feature = "camunda7")]
#[cfg_attr(docsrs, doc(cfg(feature = "camunda7")))]
pub use crate::engine::{Camunda7Engine, Camunda7Problem};
#[cfg(feature = "camunda8")]
#[cfg_attr(docsrs, doc(cfg(feature = "camunda8")))]
pub use crate::engine::{Camunda8Auth, Camunda8Engine, Camunda8Problem};
pub use crate::engine::{
    Completion, Engine, EngineError, EngineErrorKind, InMemoryEngine, InstanceRef, ProcessInstance, Recovery,
    StartCommand, StartedInstance, TAKEOVER_MARGIN,
};
#[cfg(feature = "temporal")]
#[cfg_attr(docsrs, doc(cfg(feature = "temporal")))]
pub use crate::engine::{TemporalEngine, TemporalProblem};
pub use crate::error::WebhookError;
pub use crate::form::{FieldKind, FieldSpec, FieldViolation, StartForm, Violation};
pub use crate::http::{
    DEFAULT_WEBHOOK_BASE, HttpReply, OPENAPI_MEDIA_TYPE, OpenApiOptions, openapi_document_for,
    source_webhook_url, webhook_url,
};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::http::{ServeOptions, health_router, router, serve};
pub use crate::id::{DeliveryId, DeploymentId, EnvironmentId, InstanceId, OrganizationId, ProcessUuid};
pub use crate::idempotency::{CallerKey, IdempotencyKey, InvalidIdempotencyKey, PayloadFingerprint};
pub use crate::inbox::{
    Claimed, Delivery, DeliveryStatus, InMemoryInbox, Inbox, InboxCounts, InboxQuery, Keeping, KeptStart,
    UnknownStatus,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::limit::RedisRateLimiter;
pub use crate::limit::{
    InMemoryRateLimiter, InvalidQuota, OnLimiterError, Quota, RateDecision, RateLimitPolicy, RateLimiter,
};
pub use crate::model::{Deployment, Environment, ProcessModel, VersionTag};
pub use crate::outcome::{Accepted, DryRun, QueuedStart, StartOutcome};
pub use crate::request::WebhookStartRequest;
pub use crate::signature::{
    InvalidSigningSecret, SignatureError, SignatureHeaders, SignatureVerifier, SigningSecret,
};
#[cfg(feature = "mapping")]
#[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
pub use crate::source::{Condition, InvalidQuery, JsonQuery, PayloadMapping};
pub use crate::source::{
    EmptySourceSecret, HmacAlgorithm, HmacEncoding, HmacScheme, InvalidScheme, InvalidSource,
    InvalidSourceId, MAX_SOURCE_ID_LEN, PublicOrigin, SourceId, SourceScheme, SourceSecret, WebhookSource,
};
pub use crate::start::{start_via_webhook, start_via_webhook_with_idempotency};
pub use crate::starter::{Component, Dispatcher, InboxPolicy, NotReady, WebhookStarter};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::store::RedisIdempotencyStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use crate::store::SqliteStore;
pub use crate::store::{
    DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyStore, InMemoryIdempotencyStore,
    InMemoryModelStore, InMemorySourceStore, InMemoryTokenStore, ModelStore, Reservation, SourceStore,
    StoreError, TokenStore,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use crate::store::{EncryptionKey, InvalidEncryptionKey};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use crate::store::{InvalidSchemaName, PostgresStore};
pub use crate::token::{EnvironmentToken, TokenDigest};
pub use crate::trace::{MAX_TRACESTATE_LEN, TraceContext};

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "camunda7", feature = "postgres", feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
