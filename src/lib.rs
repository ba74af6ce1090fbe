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
//! # Features
//!
//! - `axum`: `router`, a ready `axum::Router` for the webhook endpoint, and
//!   `serve`, a server loop with header, idle and connection limits.
//! - `camunda7`: `Camunda7Engine`, an [`Engine`] over Camunda 7's REST API.
//! - `testing`: the `testing` module, conformance suites for a host's own
//!   stores.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod engine;
mod error;
mod form;
mod http;
mod id;
mod idempotency;
mod memory;
mod model;
mod protect;
mod signature;
mod starter;
mod store;
mod token;
mod webhook;

#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "camunda7")]
mod camunda7;
#[cfg(feature = "axum")]
mod serve;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::engine::{Engine, EngineError, EngineErrorKind, ProcessInstance, StartCommand};
pub use crate::error::WebhookError;
pub use crate::form::{FieldKind, FieldSpec, FieldViolation, StartForm, Violation};
pub use crate::http::{
    DEFAULT_BODY_LIMIT, DEFAULT_MAX_JSON_VALUES, DEFAULT_WEBHOOK_BASE, HttpReply, webhook_url,
};
pub use crate::id::{DeploymentId, EnvironmentId, InstanceId, OrganizationId, ProcessUuid};
pub use crate::idempotency::{
    DEFAULT_IDEMPOTENCY_CAPACITY, DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_IDEMPOTENCY_TTL, IdempotencyKey,
    IdempotencyStore, InMemoryIdempotencyStore, PayloadFingerprint, Reservation,
};
pub use crate::memory::{
    DEFAULT_ENGINE_HISTORY, InMemoryEngine, InMemoryModelStore, InMemoryTokenStore, StartedInstance,
};
pub use crate::model::{Deployment, Environment, ProcessModel, VersionTag};
pub use crate::protect::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT};
pub use crate::signature::{
    DEFAULT_SIGNATURE_TOLERANCE, InvalidSigningSecret, SigningSecret, verify_signature,
};
pub use crate::starter::{DryRun, WebhookStarter};
pub use crate::store::{ModelStore, StoreError, TokenStore};
pub use crate::token::{EnvironmentToken, TokenDigest};
pub use crate::webhook::{StartOutcome, WebhookStartRequest, start_via_webhook};

#[cfg(feature = "axum")]
pub use crate::axum::router;
#[cfg(feature = "axum")]
pub use crate::serve::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
    ServeOptions, serve,
};

/// The README's examples, compiled and run as doc-tests.
#[cfg(all(doctest, feature = "camunda7"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
#[cfg(feature = "camunda7")]
pub use crate::camunda7::{Camunda7Engine, CamundaProblem};
