//! `WebhookError`: every way a webhook start can be refused or fail, with its
//! HTTP status, its stable code and its RFC 9457 problem document.

use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::{EngineError, EngineErrorKind};
use crate::form::FieldViolation;
use crate::id::{EnvironmentId, ProcessUuid};
use crate::store::StoreError;

/// Why a webhook start did not start an instance.
///
/// Each variant has an HTTP [`status`](WebhookError::status) and a stable
/// machine-readable [`code`](WebhookError::code) (codes are API: they are
/// never renamed). Messages never contain a token, and for 5xx errors they
/// never contain the internal cause, which stays reachable through
/// [`source`](std::error::Error::source) for the host's logs.
///
/// | status | code | when |
/// |---|---|---|
/// | 400 | `missing_uid` | the target has no (or an empty) `uid` query parameter |
/// | 400 | `invalid_uid` | `uid` is not a UUID in the hyphenated or `urn:uuid:` form, or is given twice |
/// | 400 | `malformed_payload` | the body is not a JSON object (the `detail` says at which line and column), or an envelope or multipart body is malformed |
/// | 400 | `conflicting_headers` | a header on the request and the same header in an envelope body differ |
/// | 400 | `invalid_idempotency_key` | the key is not 1 to 255 printable ASCII characters |
/// | 400 | `duplicate_header` | a header that must appear once appears more often |
/// | 400 | `dry_run_not_started` | a request marked as a dry run was handed to a start |
/// | 401 | `missing_token` | no token |
/// | 401 | `invalid_token` | a token no environment has |
/// | 401 | `invalid_signature` | the environment requires signed webhooks and the signature is absent or wrong |
/// | 401 | `stale_timestamp` | the signed timestamp is outside the tolerance window |
/// | 401 | `missing_signature` | a call of a webhook source lacks its scheme's signature header (or Basic credentials) |
/// | 404 | `unknown_process` | no such process in the token's organization |
/// | 404 | `unknown_source` | no webhook source has the call's `source` id, or it starts another process than `uid` |
/// | 404 | `unknown_path` | (the axum router) a path under the webhook's path, e.g. the UUID in the path instead of the query |
/// | 405 | `method_not_allowed` | a method other than `POST`, `GET`, `HEAD` or `OPTIONS` |
/// | 409 | `not_deployed` | the process has no deployment in the token's environment |
/// | 409 | `draft_version` | the deployment is a draft |
/// | 408 | `body_timeout` | the body did not arrive within the time limit |
/// | 409 | `start_in_progress` | a start with the same idempotency key is still running |
/// | 413 | `payload_too_large` | the body is over the byte limit, or holds more JSON values than allowed |
/// | 415 | `unsupported_media_type` | a `Content-Type` was sent and it is not JSON, a form or (with the `multipart` feature) `multipart/form-data` |
/// | 415 | `file_part` | a `multipart/form-data` body holds a file (the `detail` names the part): no process variable can hold one |
/// | 422 | `invalid_payload` | the payload does not satisfy the start form |
/// | 422 | `idempotency_key_reused` | the idempotency key was used with another payload |
/// | 429 | `engine_overloaded` | the engine is overloaded |
/// | 429 | `rate_limited` | over the environment's rate limit, or a client over its limit of failed authentications |
/// | 500 | `internal_error` | a store or engine panicked |
/// | 502 | `engine_failed` | the engine failed or refused |
/// | 503 | `engine_unavailable` | the engine is unavailable for now |
/// | 503 | `store_unavailable` | a store could not answer |
/// | 503 | `idempotency_store_full` | the idempotency store has no room for another unexpired key |
/// | 503 | `server_busy` | the server is reading as many body bytes as it allows at once |
/// | 503 | `too_many_connections` | the server holds as many connections as it allows |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The target has no `uid` query parameter, or an empty one.
    #[error("the webhook target has no `uid` query parameter")]
    MissingUid,
    /// The `uid` query parameter is not a UUID in the hyphenated form (any
    /// case) or its `urn:uuid:` form.
    #[error("the `uid` query parameter is not a UUID in the hyphenated form")]
    InvalidUid,
    /// The `uid` query parameter is given more than once (code `invalid_uid`).
    #[error("the `uid` query parameter is given more than once")]
    RepeatedUid,
    /// The body is not a JSON object. The message says where JSON parsing
    /// stopped (line and column), never what the body holds.
    #[error("{}", malformed(source.as_ref()))]
    #[non_exhaustive]
    MalformedPayload {
        /// Why it could not be read, when JSON parsing failed.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// A body read as an envelope (`{"headers": {…}, "payload": {…}}`) is
    /// malformed (code `malformed_payload`).
    #[error("the envelope body is malformed: {problem}")]
    #[non_exhaustive]
    MalformedEnvelope {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A header sent on the request and the same header inside an envelope
    /// body have different values.
    #[error("the `{name}` header on the request differs from the one in the envelope body")]
    #[non_exhaustive]
    ConflictingHeaders {
        /// The header's name, in lower case.
        name: &'static str,
    },
    /// The body is over the limit.
    #[error("the payload is larger than the limit of {limit} bytes")]
    #[non_exhaustive]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body holds more JSON values than allowed (code
    /// `payload_too_large`): the limit keeps a call's memory a small
    /// multiple of its bytes.
    #[error("the payload holds more than {limit} JSON values")]
    #[non_exhaustive]
    TooManyJsonValues {
        /// The limit, in JSON values.
        limit: usize,
    },
    /// The body did not arrive within the time limit.
    #[error("the request body did not arrive within {} seconds", limit.as_secs_f64())]
    #[non_exhaustive]
    BodyTimeout {
        /// The time limit for the whole body.
        limit: Duration,
    },
    /// The body's `Content-Type` is not JSON (`application/json` or a
    /// `+json` type), a form (`application/x-www-form-urlencoded`) or,
    /// with the `multipart` feature, `multipart/form-data`.
    #[error("the body must be JSON (`application/json`) or a form")]
    UnsupportedMediaType,
    /// A form body (`Content-Type: application/x-www-form-urlencoded`,
    /// curl's default for `-d`) that is a JSON document (code
    /// `unsupported_media_type`): read as a form it would be one field
    /// named by the whole document, so it is refused with a detail saying
    /// which content type to send.
    #[error(
        "the body is JSON but was sent as a form (`application/x-www-form-urlencoded`, curl's default \
         for -d): send `content-type: application/json`"
    )]
    JsonSentAsForm,
    /// A `multipart/form-data` body holds a file part (one with a file
    /// name, or a content type other than text): no process variable can
    /// hold a file.
    #[error("part `{part}` of the multipart body is a file: only text parts can be start fields")]
    #[non_exhaustive]
    FilePart {
        /// The part's name (its first 64 characters).
        part: String,
    },
    /// A `multipart/form-data` body is malformed (code `malformed_payload`).
    #[error("the multipart body is malformed: {problem}")]
    #[non_exhaustive]
    MalformedMultipart {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The caller is over a rate limit (its environment's, or its client
    /// address's for failed authentications).
    #[error("too many calls: over the rate limit")]
    #[non_exhaustive]
    RateLimited {
        /// When a call would be allowed again.
        retry_after: Duration,
    },
    /// The server is reading as many body bytes at once as it allows.
    #[error("the server is busy reading other requests")]
    ServerBusy,
    /// The server holds as many connections as it allows.
    #[error("the server holds too many connections")]
    TooManyConnections,
    /// The idempotency store has no room for another key before some expire.
    #[error("the idempotency store is full")]
    #[non_exhaustive]
    IdempotencyStoreFull {
        /// When a key is expected to expire, if the store knows.
        retry_after: Option<Duration>,
    },
    /// The idempotency key is not 1 to 255 printable ASCII characters.
    #[error("the idempotency key must be 1 to 255 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// A header that must appear at most once appears more often.
    #[error("the `{name}` header appears more than once")]
    #[non_exhaustive]
    DuplicateHeader {
        /// The header's name, in lower case.
        name: &'static str,
    },
    /// A request marked as a dry run was handed to a function that starts.
    #[error("a request marked as a dry run is never started; check it with `WebhookStarter::dry_run`")]
    DryRunNotStarted,
    /// No token was sent.
    #[error("no environment token was sent")]
    MissingToken,
    /// No environment has this token (or it was revoked).
    #[error("the environment token is not valid")]
    InvalidToken,
    /// The environment requires signed webhooks, and the signature headers
    /// are absent, malformed, or match none of its secrets.
    #[error("the webhook signature is missing or does not match")]
    InvalidSignature,
    /// The signed timestamp is outside the tolerance window.
    #[error("the webhook timestamp is outside the tolerance window")]
    StaleTimestamp,
    /// A call of a webhook source lacks the header its scheme signs with
    /// (or, for `basic`, Basic credentials).
    #[error("the call has no signature header of its source's scheme")]
    MissingSignature,
    /// No webhook source has the call's `source` id (or it is not a valid
    /// id), or the source starts another process than the call's `uid`.
    #[error("no webhook source of this process has this id")]
    UnknownSource,
    /// No such process in the token's organization.
    #[error("process {process} does not exist")]
    #[non_exhaustive]
    UnknownProcess {
        /// The process asked for.
        process: ProcessUuid,
    },
    /// The call's path is under the webhook's path rather than the webhook's
    /// own (`/webhook/send/<uuid>`): the process goes in the query.
    #[error(
        "no webhook at this path: the process's UUID goes in the query, as `{webhook}?uid=<process uuid>`"
    )]
    #[non_exhaustive]
    UnknownPath {
        /// The webhook's path.
        webhook: String,
    },
    /// The method is not one the endpoint serves.
    #[error("method {method} is not allowed")]
    #[non_exhaustive]
    MethodNotAllowed {
        /// The method used.
        method: String,
    },
    /// The process has no deployment in the token's environment.
    #[error("process {process} is not deployed to environment {environment}")]
    #[non_exhaustive]
    NotDeployed {
        /// The process asked for.
        process: ProcessUuid,
        /// The token's environment.
        environment: EnvironmentId,
    },
    /// The deployment in the token's environment is a draft.
    #[error(
        "process {process} is deployed to environment {environment} only as a draft, which cannot be started by webhook"
    )]
    #[non_exhaustive]
    DraftVersion {
        /// The process asked for.
        process: ProcessUuid,
        /// The token's environment.
        environment: EnvironmentId,
    },
    /// A start with the same idempotency key is still running.
    #[error("a start with this idempotency key is still in progress")]
    StartInProgress,
    /// The payload does not satisfy the start form.
    #[error("the payload is invalid: {} problem(s), first: {}", violations.len(), violations.first().map(ToString::to_string).unwrap_or_default())]
    #[non_exhaustive]
    InvalidPayload {
        /// Every problem found.
        violations: Vec<FieldViolation>,
    },
    /// The idempotency key was already used with a different payload.
    #[error("the idempotency key was already used with a different payload")]
    IdempotencyKeyReused,
    /// The engine could not start the instance.
    #[error("the process engine could not start the instance")]
    #[non_exhaustive]
    EngineFailed {
        /// The engine's error.
        #[source]
        source: EngineError,
    },
    /// A store could not answer.
    #[error("a store could not answer")]
    #[non_exhaustive]
    StoreUnavailable {
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// A store or the engine panicked.
    #[error("internal error")]
    Internal,
}

/// What is wrong with a malformed body, and where: serde_json's own message
/// is not used, since it may quote the body (`invalid type: string "…"`).
fn malformed(source: Option<&serde_json::Error>) -> String {
    use serde_json::error::Category;
    let Some(error) = source else {
        return "the payload is not a JSON object".to_owned();
    };
    let (line, column) = (error.line(), error.column());
    match error.classify() {
        Category::Syntax => {
            format!("the payload is not valid JSON: syntax error at line {line}, column {column}")
        }
        Category::Eof => {
            format!("the payload is not valid JSON: it ends early, at line {line}, column {column}")
        }
        Category::Data | Category::Io => {
            format!(
                "the payload is not a JSON object of the expected shape (at line {line}, column {column})"
            )
        }
    }
}

/// A store that could not answer: `503 store_unavailable`.
impl From<StoreError> for WebhookError {
    fn from(source: StoreError) -> Self {
        Self::StoreUnavailable { source }
    }
}

/// An engine that could not start: `502 engine_failed` (or `429`/`503`, by
/// its [`kind`](EngineError::kind)).
impl From<EngineError> for WebhookError {
    fn from(source: EngineError) -> Self {
        Self::EngineFailed { source }
    }
}

impl WebhookError {
    /// The HTTP status of the answer.
    ///
    /// ```
    /// use process_webhook::WebhookError;
    /// assert_eq!(WebhookError::MissingToken.status(), 401);
    /// assert_eq!(WebhookError::MissingToken.code(), "missing_token");
    /// ```
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingUid
            | Self::InvalidUid
            | Self::RepeatedUid
            | Self::MalformedPayload { .. }
            | Self::MalformedEnvelope { .. }
            | Self::MalformedMultipart { .. }
            | Self::ConflictingHeaders { .. }
            | Self::InvalidIdempotencyKey
            | Self::DuplicateHeader { .. }
            | Self::DryRunNotStarted => 400,
            Self::MissingToken
            | Self::InvalidToken
            | Self::InvalidSignature
            | Self::StaleTimestamp
            | Self::MissingSignature => 401,
            Self::UnknownProcess { .. } | Self::UnknownPath { .. } | Self::UnknownSource => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTimeout { .. } => 408,
            Self::NotDeployed { .. } | Self::DraftVersion { .. } | Self::StartInProgress => 409,
            Self::PayloadTooLarge { .. } | Self::TooManyJsonValues { .. } => 413,
            Self::UnsupportedMediaType | Self::JsonSentAsForm | Self::FilePart { .. } => 415,
            Self::RateLimited { .. } => 429,
            Self::InvalidPayload { .. } | Self::IdempotencyKeyReused => 422,
            Self::EngineFailed { source } => match source.kind() {
                EngineErrorKind::Overloaded => 429,
                EngineErrorKind::Unavailable => 503,
                EngineErrorKind::KeyReused => 422,
                _ => 502,
            },
            Self::StoreUnavailable { .. }
            | Self::IdempotencyStoreFull { .. }
            | Self::ServerBusy
            | Self::TooManyConnections => 503,
            Self::Internal => 500,
        }
    }

    /// The stable machine-readable code (see the table on [`WebhookError`]).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingUid => "missing_uid",
            Self::InvalidUid | Self::RepeatedUid => "invalid_uid",
            Self::MalformedPayload { .. }
            | Self::MalformedEnvelope { .. }
            | Self::MalformedMultipart { .. } => "malformed_payload",
            Self::ConflictingHeaders { .. } => "conflicting_headers",
            Self::PayloadTooLarge { .. } | Self::TooManyJsonValues { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::UnsupportedMediaType | Self::JsonSentAsForm => "unsupported_media_type",
            Self::FilePart { .. } => "file_part",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerBusy => "server_busy",
            Self::TooManyConnections => "too_many_connections",
            Self::IdempotencyStoreFull { .. } => "idempotency_store_full",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::DuplicateHeader { .. } => "duplicate_header",
            Self::DryRunNotStarted => "dry_run_not_started",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InvalidSignature => "invalid_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::MissingSignature => "missing_signature",
            Self::UnknownSource => "unknown_source",
            Self::UnknownProcess { .. } => "unknown_process",
            Self::UnknownPath { .. } => "unknown_path",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::NotDeployed { .. } => "not_deployed",
            Self::DraftVersion { .. } => "draft_version",
            Self::StartInProgress => "start_in_progress",
            Self::InvalidPayload { .. } => "invalid_payload",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::EngineFailed { source } => match source.kind() {
                EngineErrorKind::Overloaded => "engine_overloaded",
                EngineErrorKind::Unavailable => "engine_unavailable",
                EngineErrorKind::KeyReused => "idempotency_key_reused",
                _ => "engine_failed",
            },
            Self::StoreUnavailable { .. } => "store_unavailable",
            Self::Internal => "internal_error",
        }
    }

    /// Every problem with the payload (empty unless `invalid_payload`).
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Self::InvalidPayload { violations } => violations,
            _ => &[],
        }
    }

    /// Whether the same call may succeed later without change: a store or
    /// engine that could not answer, an overloaded engine, a start still in
    /// progress.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::StoreUnavailable { .. }
            | Self::StartInProgress
            | Self::Internal
            | Self::BodyTimeout { .. }
            | Self::ServerBusy
            | Self::TooManyConnections
            | Self::IdempotencyStoreFull { .. }
            | Self::RateLimited { .. } => true,
            Self::EngineFailed { source } => source.is_retryable(),
            _ => false,
        }
    }

    /// How long a caller should wait before trying again, where the answer
    /// says so (sent as `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::StartInProgress => Some(Duration::from_secs(1)),
            Self::EngineFailed { source }
                if matches!(
                    source.kind(),
                    EngineErrorKind::Overloaded | EngineErrorKind::Unavailable
                ) =>
            {
                Some(source.retry_after().unwrap_or(Duration::from_secs(5)))
            }
            Self::StoreUnavailable { .. } => Some(Duration::from_secs(5)),
            Self::ServerBusy | Self::TooManyConnections => Some(Duration::from_secs(1)),
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::IdempotencyStoreFull { retry_after } => {
                Some(retry_after.unwrap_or(Duration::from_secs(60)))
            }
            _ => None,
        }
    }

    /// A short, stable, human-readable title for the code.
    fn title(&self) -> &'static str {
        match self.status() {
            400 => "Bad request",
            401 => "Unauthorized",
            404 if self.code() == "unknown_path" => "Not found",
            404 if self.code() == "unknown_source" => "Unknown source",
            404 => "Unknown process",
            405 => "Method not allowed",
            408 => "Request timeout",
            409 => "Conflict",
            413 => "Payload too large",
            415 => "Unsupported media type",
            422 => "Unprocessable payload",
            429 if self.code() == "rate_limited" => "Too many requests",
            429 => "Engine overloaded",
            502 => "Engine failed",
            503 => "Service unavailable",
            _ => "Internal error",
        }
    }

    /// The RFC 9457 problem document sent to the caller:
    /// `type`, `title`, `status`, `detail`, `code`, and `violations` where there
    /// are any. `type` is `urn:process-webhook:problem:{code}`.
    ///
    /// ```
    /// use process_webhook::WebhookError;
    /// let doc = WebhookError::InvalidToken.to_problem_json();
    /// assert_eq!(doc["status"], 401);
    /// assert_eq!(doc["code"], "invalid_token");
    /// ```
    pub fn to_problem_json(&self) -> Value {
        let mut doc = json!({
            "type": format!("urn:process-webhook:problem:{}", self.code()),
            "title": self.title(),
            "status": self.status(),
            "detail": self.to_string(),
            "code": self.code(),
        });
        if let Self::InvalidPayload { violations } = self {
            doc["violations"] = serde_json::to_value(violations).unwrap_or(Value::Null);
        }
        doc
    }
}
