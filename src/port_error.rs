//! What a port answers when it cannot do its job: [`EngineError`] (with
//! its [`EngineErrorKind`]) for an engine, [`StoreError`] for a store or a
//! limiter. They live in the domain because [`WebhookError`] wraps them;
//! the ports re-export them.
//!
//! [`WebhookError`]: crate::WebhookError

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// How an engine failed, as far as a sender should act on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum EngineErrorKind {
    /// The engine failed, or the failure is not classified:
    /// `502 engine_failed`.
    Failed,
    /// The engine refused this start (e.g. unknown definition, bad variables):
    /// `502 engine_failed`; sending it again will not help.
    Refused,
    /// The engine is unavailable for now: `503 engine_unavailable`, with
    /// `Retry-After`.
    Unavailable,
    /// The engine is overloaded: `429 engine_overloaded`, with `Retry-After`.
    Overloaded,
    /// The engine already started an instance for this idempotency key with
    /// other variables: `422 idempotency_key_reused`, as the idempotency
    /// store answers. Engines that deduplicate starts by key say this.
    KeyReused,
}

/// An engine could not start an instance.
///
/// Its message and source are for the host's logs; the webhook caller only
/// sees the status and code of its [`kind`](EngineError::kind).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use process_webhook::{EngineError, EngineErrorKind};
///
/// let err = EngineError::overloaded("job executor saturated").with_retry_after(Duration::from_secs(5));
/// assert_eq!(err.kind(), EngineErrorKind::Overloaded);
/// assert!(err.is_retryable());
/// assert!(!EngineError::refused("no such definition").is_retryable());
/// ```
#[derive(Debug)]
pub struct EngineError {
    kind: EngineErrorKind,
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl EngineError {
    /// A failure of kind [`Failed`](EngineErrorKind::Failed), not retryable
    /// unless marked with [`with_retryable`](EngineError::with_retryable).
    pub fn new(message: impl Into<String>) -> Self {
        Self::of_kind(EngineErrorKind::Failed, message)
    }

    /// The engine refused this start.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::of_kind(EngineErrorKind::Refused, message)
    }

    /// The engine is unavailable for now (retryable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::of_kind(EngineErrorKind::Unavailable, message).with_retryable(true)
    }

    /// The engine is overloaded (retryable).
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::of_kind(EngineErrorKind::Overloaded, message).with_retryable(true)
    }

    /// The engine already holds an instance for this start's idempotency key,
    /// started with other variables.
    pub fn key_reused(message: impl Into<String>) -> Self {
        Self::of_kind(EngineErrorKind::KeyReused, message)
    }

    fn of_kind(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: false,
            retry_after: None,
            source: None,
        }
    }

    /// Whether the failure may succeed when tried again (a timeout, a lost
    /// connection, a 5xx): `true` marks it so.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// How long the engine asked callers to wait before trying again.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// An error caused by `source`.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> EngineErrorKind {
        self.kind
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// How long to wait before trying again, when the engine said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message (for logs; never shown to a caller).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for EngineError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A store could not answer.
///
/// Its message is for the host's logs; the webhook caller only sees
/// `503 store_unavailable`.
///
/// # Example
///
/// ```
/// use process_webhook::StoreError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "db timed out");
/// let err = StoreError::new("loading deployment").with_source(io);
/// assert_eq!(err.to_string(), "loading deployment");
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<BoxError>,
}

impl StoreError {
    /// An error with this message (for logs; never shown to a caller).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The message given to [`StoreError::new`].
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}
