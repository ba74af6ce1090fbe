//! [`WebhookStartRequest`]: one call of a process's webhook, as the start
//! takes it.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::idempotency::CallerKey;
use crate::signature::SignatureHeaders;
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
    pub(crate) idempotency_key: Option<RequestKey>,
    // Boxed, as is the trace context: both are rare, and a start in flight
    // holds the request (and the futures built around it) for its whole
    // life.
    pub(crate) signed: Option<Box<SignedCall>>,
    pub(crate) dry_run: bool,
    /// Whether the payload was read from a form body: its strings are then
    /// read by the start form's kinds (`"42"` for an integer).
    pub(crate) form: bool,
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
            form: false,
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
    /// checked once, into a [`CallerKey`](crate::CallerKey), when the request
    /// is started).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(RequestKey::Unchecked(key.into()));
        self
    }

    /// Marks the call as a dry run (`on`), or not: every check runs, nothing
    /// starts (see [`WebhookStarter::dry_run`](crate::WebhookStarter::dry_run)).
    /// The `Prefer: dry-run` header sets it. A request so marked is never
    /// started: [`start_via_webhook`](crate::start_via_webhook) and
    /// [`WebhookStarter::start`](crate::WebhookStarter::start) refuse it with
    /// `400 dry_run_not_started`.
    pub fn with_dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
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
        self.idempotency_key.as_ref().map(RequestKey::as_str)
    }
}

/// A request's idempotency key: checked where the HTTP edge read it from
/// the `Idempotency-Key` header, else as the host (or a `webhook-id`) gave
/// it, checked when the start takes it ([`RequestKey::into_checked`]).
#[derive(Clone, Debug)]
pub(crate) enum RequestKey {
    Checked(CallerKey),
    Unchecked(String),
}

impl RequestKey {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Checked(key) => key.as_str(),
            Self::Unchecked(key) => key,
        }
    }

    /// The key, checked (once: a checked key is not checked again).
    pub(crate) fn into_checked(self) -> Result<CallerKey, WebhookError> {
        match self {
            Self::Checked(key) => Ok(key),
            Self::Unchecked(key) => Ok(CallerKey::new(key)?),
        }
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
            .field("form", &self.form)
            .finish()
    }
}
