//! The guides: how the webhook behaves, and how to run it.
//!
//! Each module below is one guide, with no items of its own:
//!
//! - [`rules`]: the rules a start applies, in order, and every answer;
//!   the HTTP details and envelope bodies.
//! - [`guarantees`]: what a caller can rely on, failure by failure.
//! - [`idempotency`]: idempotency keys and signed webhooks.
//! - [`sources`]: webhook sources: GitHub, Stripe, Slack, Shopify, Twilio,
//!   GitLab and any HMAC sender, verified by their own signatures; their
//!   payloads mapped into the start form; form and multipart bodies.
//! - [`production`]: the limits of the server loop and the starter, what an
//!   attack does to it, metrics, health checks and trace context.
//! - [`console`]: the delivery log, the admin API and the console in
//!   the browser: every delivery visible, dead ones retried.
//! - [`replicas`]: many replicas on PostgreSQL, rate limits and Redis.
//! - [`engines`]: Camunda 7, Camunda 8 and Temporal.
//! - [`waiting`]: `Prefer: wait`, for callers that need the outcome.
//! - [`implementing`]: your own stores and engine.
//!
//! The examples in them compile as doc-tests with every feature on.

#[doc = include_str!("docs/rules.md")]
pub mod rules {}

#[doc = include_str!("docs/guarantees.md")]
pub mod guarantees {}

#[doc = include_str!("docs/idempotency.md")]
pub mod idempotency {}

#[doc = include_str!("docs/sources.md")]
pub mod sources {}

#[doc = include_str!("docs/production.md")]
#[doc = ""]
#[doc = include_str!("docs/settings.md")]
pub mod production {}

#[doc = include_str!("docs/console.md")]
pub mod console {}

#[doc = include_str!("docs/replicas.md")]
pub mod replicas {}

#[doc = include_str!("docs/engines.md")]
pub mod engines {}

#[doc = include_str!("docs/waiting.md")]
pub mod waiting {}

#[doc = include_str!("docs/implementing.md")]
pub mod implementing {}
