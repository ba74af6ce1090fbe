//! The operators' edge: the admin API (`/api/v1/…`, JSON) and the console
//! in the browser (`/`, server-rendered HTML) over a [`DeliveryLog`] and
//! an [`Inbox`], on a listener of their own (feature `console`).
//!
//! Every route but `GET /api/v1/openapi.json` and the sign-in page needs
//! the [`AdminToken`]: the API as `Authorization: Bearer …`, the console
//! through a session cookie its sign-in form sets. The console guide
//! ([`guide::console`](crate::guide::console)) lists the routes, the
//! filters and the codes.

use std::sync::Arc;
use std::time::Duration;

use crate::delivery_log::DeliveryLog;
use crate::inbox::Inbox;

mod actions;
mod api;
mod auth;
mod console;
mod error;
mod filters;

pub use actions::Operator;
pub use auth::{AdminToken, InvalidAdminToken};
pub use error::AdminError;

/// The admin API and the console over a delivery log (and the inbox whose
/// kept starts it retries and discards): [`router`](Self::router) serves
/// both. Clones share the sessions and the failure counts.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// use tower::ServiceExt as _;
/// let token: AdminToken = "an-admin-token-of-at-least-32-characters".parse()?;
/// let log = Arc::new(InMemoryDeliveryLog::new());
/// let admin = Admin::new(token, log).with_inbox(Arc::new(InMemoryInbox::new()));
/// let call = axum::http::Request::get("/api/v1/deliveries?status=dead")
///     .header("authorization", "Bearer an-admin-token-of-at-least-32-characters")
///     .body(axum::body::Body::empty())?;
/// let answer = admin.router().oneshot(call).await?;
/// assert_eq!(answer.status(), 200);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Admin {
    pub(crate) ops: Operator,
    pub(crate) auth: Arc<auth::Guard>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("operator", &self.ops)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// How long a console session lasts: 8 hours.
    pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3_600);

    /// Failed authentications a client may make in a minute before it is
    /// answered `429 too_many_failures`: 10.
    pub const FAILURES_PER_MINUTE: u32 = 10;

    /// The admin API and console over `log`, for the bearer of `token`.
    pub fn new(token: AdminToken, log: Arc<dyn DeliveryLog>) -> Self {
        Self {
            ops: Operator::new(log),
            auth: Arc::new(auth::Guard::new(token)),
        }
    }

    /// Retries and discards kept starts of `inbox` (without it, every retry
    /// and discard is `409`).
    pub fn with_inbox(mut self, inbox: Arc<dyn Inbox>) -> Self {
        self.ops = self.ops.with_inbox(inbox);
        self
    }

    /// The routes of the API and the console.
    pub fn router(self) -> axum::Router {
        api::routes().merge(console::routes()).with_state(self)
    }
}
