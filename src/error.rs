//! `WebhookError`: every way a webhook start can be refused or fail, with its
//! HTTP status, its stable code and its RFC 9457 problem document.

use std::time::Duration;

use serde_json::{Value, json};

use crate::form::FieldViolation;
use crate::id::{EnvironmentId, ProcessUuid};
use crate::port_error::{EngineError, EngineErrorKind, StoreError};

/// Whether the answers of a code carry `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// Never.
    Never,
    /// Always: this many seconds, unless the error knows better (an
    /// engine's or a store's own).
    Default(Duration),
    /// Always, the time the error itself carries (a rate limit's window).
    Own,
}

/// One problem code: the one row of the table of codes that
/// [`WebhookError::status`], its titles, `Retry-After`, the rules guide and
/// the OpenAPI documents read.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) code: &'static str,
    pub(crate) status: u16,
    pub(crate) title: &'static str,
    pub(crate) retry_after: RetryAfter,
}

const fn row(code: &'static str, status: u16, title: &'static str, retry_after: RetryAfter) -> Problem {
    Problem {
        code,
        status,
        title,
        retry_after,
    }
}

/// `Retry-After: n` by default.
const fn seconds(n: u64) -> RetryAfter {
    RetryAfter::Default(Duration::from_secs(n))
}

/// The answer to what should never happen.
const INTERNAL: Problem = row("internal_error", 500, "Internal error", RetryAfter::Never);

/// Every code a webhook call can be answered with (the rules guide's table
/// says when; a test keeps the two equal).
pub(crate) const PROBLEMS: &[Problem] = &[
    row("missing_uid", 400, "Bad request", RetryAfter::Never),
    row("invalid_uid", 400, "Bad request", RetryAfter::Never),
    row("malformed_payload", 400, "Bad request", RetryAfter::Never),
    row("conflicting_headers", 400, "Bad request", RetryAfter::Never),
    row("invalid_idempotency_key", 400, "Bad request", RetryAfter::Never),
    row("duplicate_header", 400, "Bad request", RetryAfter::Never),
    row("dry_run_not_started", 400, "Bad request", RetryAfter::Never),
    row("missing_token", 401, "Unauthorized", RetryAfter::Never),
    row("invalid_token", 401, "Unauthorized", RetryAfter::Never),
    row("invalid_signature", 401, "Unauthorized", RetryAfter::Never),
    row("stale_timestamp", 401, "Unauthorized", RetryAfter::Never),
    row("missing_signature", 401, "Unauthorized", RetryAfter::Never),
    row("unknown_process", 404, "Unknown process", RetryAfter::Never),
    row("unknown_source", 404, "Unknown source", RetryAfter::Never),
    row("unknown_path", 404, "Not found", RetryAfter::Never),
    row("method_not_allowed", 405, "Method not allowed", RetryAfter::Never),
    row("body_timeout", 408, "Request timeout", RetryAfter::Never),
    row("not_deployed", 409, "Conflict", RetryAfter::Never),
    row("draft_version", 409, "Conflict", RetryAfter::Never),
    row("start_in_progress", 409, "Conflict", seconds(1)),
    row("payload_too_large", 413, "Payload too large", RetryAfter::Never),
    row(
        "unsupported_media_type",
        415,
        "Unsupported media type",
        RetryAfter::Never,
    ),
    row("file_part", 415, "Unsupported media type", RetryAfter::Never),
    row("invalid_payload", 422, "Unprocessable payload", RetryAfter::Never),
    row(
        "idempotency_key_reused",
        422,
        "Unprocessable payload",
        RetryAfter::Never,
    ),
    row("engine_overloaded", 429, "Engine overloaded", seconds(5)),
    row("rate_limited", 429, "Too many requests", RetryAfter::Own),
    INTERNAL,
    row("engine_failed", 502, "Engine failed", RetryAfter::Never),
    row("engine_unavailable", 503, "Service unavailable", seconds(5)),
    row("store_unavailable", 503, "Service unavailable", seconds(5)),
    row("idempotency_store_full", 503, "Service unavailable", seconds(60)),
    row("inbox_full", 503, "Service unavailable", seconds(30)),
    row("server_busy", 503, "Service unavailable", seconds(1)),
    row("too_many_connections", 503, "Service unavailable", seconds(1)),
];

impl Problem {
    /// The row of `code` (`internal_error`'s for a code the table lacks,
    /// which a test proves none is).
    pub(crate) fn of(code: &str) -> &'static Problem {
        PROBLEMS.iter().find(|p| p.code == code).unwrap_or(&INTERNAL)
    }
}

/// Why a webhook start did not start an instance.
///
/// Each variant has an HTTP [`status`](WebhookError::status) and a stable
/// machine-readable [`code`](WebhookError::code) (codes are API: they are
/// never renamed). Messages never contain a token, and for 5xx errors they
/// never contain the internal cause, which stays reachable through
/// [`source`](std::error::Error::source) for the host's logs.
///
/// Every code, with its status, title and `Retry-After`, is in the
/// [rules guide's table of codes](crate::guide::rules#the-codes) (one
/// table in the crate, which `status`, `code`, the problem documents and
/// the OpenAPI documents all read).
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
    /// The environment holds as many kept starts as its starter's inbox
    /// allows: nothing was kept, nothing started.
    #[error("the inbox holds as many starts of this environment as it may")]
    InboxFull,
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
        self.problem().status
    }

    /// The row of the table of codes for this error's code.
    fn problem(&self) -> &'static Problem {
        Problem::of(self.code())
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
            Self::InboxFull => "inbox_full",
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
            | Self::InboxFull
            | Self::RateLimited { .. } => true,
            Self::EngineFailed { source } => source.is_retryable(),
            _ => false,
        }
    }

    /// How long a caller should wait before trying again, where the answer
    /// says so (sent as `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match (self, self.problem().retry_after) {
            (_, RetryAfter::Never) => None,
            (Self::RateLimited { retry_after }, _) => Some(*retry_after),
            (Self::EngineFailed { source }, RetryAfter::Default(default)) => {
                Some(source.retry_after().unwrap_or(default))
            }
            (Self::IdempotencyStoreFull { retry_after }, RetryAfter::Default(default)) => {
                Some(retry_after.unwrap_or(default))
            }
            (_, RetryAfter::Default(default)) => Some(default),
            (_, RetryAfter::Own) => None,
        }
    }

    /// A short, stable, human-readable title for the code.
    fn title(&self) -> &'static str {
        self.problem().title
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

#[cfg(test)]
mod table_tests {
    use super::*;

    /// One error of every variant (and of every engine kind): the match
    /// below has no wildcard, so a new variant must be added here.
    fn one_of_each() -> Vec<WebhookError> {
        let process = ProcessUuid::from(uuid::Uuid::nil());
        let environment = EnvironmentId::new("production");
        let all = vec![
            WebhookError::MissingUid,
            WebhookError::InvalidUid,
            WebhookError::RepeatedUid,
            WebhookError::MalformedPayload { source: None },
            WebhookError::MalformedEnvelope { problem: "x" },
            WebhookError::ConflictingHeaders { name: "x" },
            WebhookError::PayloadTooLarge { limit: 1 },
            WebhookError::TooManyJsonValues { limit: 1 },
            WebhookError::BodyTimeout {
                limit: Duration::from_secs(1),
            },
            WebhookError::UnsupportedMediaType,
            WebhookError::JsonSentAsForm,
            WebhookError::FilePart { part: "x".into() },
            WebhookError::MalformedMultipart { problem: "x" },
            WebhookError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
            WebhookError::ServerBusy,
            WebhookError::TooManyConnections,
            WebhookError::IdempotencyStoreFull { retry_after: None },
            WebhookError::InboxFull,
            WebhookError::InvalidIdempotencyKey,
            WebhookError::DuplicateHeader { name: "x" },
            WebhookError::DryRunNotStarted,
            WebhookError::MissingToken,
            WebhookError::InvalidToken,
            WebhookError::InvalidSignature,
            WebhookError::StaleTimestamp,
            WebhookError::MissingSignature,
            WebhookError::UnknownSource,
            WebhookError::UnknownProcess { process },
            WebhookError::UnknownPath { webhook: "/w".into() },
            WebhookError::MethodNotAllowed { method: "PUT".into() },
            WebhookError::NotDeployed {
                process,
                environment: environment.clone(),
            },
            WebhookError::DraftVersion { process, environment },
            WebhookError::StartInProgress,
            WebhookError::InvalidPayload {
                violations: Vec::new(),
            },
            WebhookError::IdempotencyKeyReused,
            WebhookError::EngineFailed {
                source: EngineError::new("x"),
            },
            WebhookError::EngineFailed {
                source: EngineError::refused("x"),
            },
            WebhookError::EngineFailed {
                source: EngineError::overloaded("x"),
            },
            WebhookError::EngineFailed {
                source: EngineError::unavailable("x"),
            },
            WebhookError::EngineFailed {
                source: EngineError::key_reused("x"),
            },
            WebhookError::StoreUnavailable {
                source: StoreError::new("x"),
            },
            WebhookError::Internal,
        ];
        for error in &all {
            match error {
                WebhookError::MissingUid
                | WebhookError::InvalidUid
                | WebhookError::RepeatedUid
                | WebhookError::MalformedPayload { .. }
                | WebhookError::MalformedEnvelope { .. }
                | WebhookError::ConflictingHeaders { .. }
                | WebhookError::PayloadTooLarge { .. }
                | WebhookError::TooManyJsonValues { .. }
                | WebhookError::BodyTimeout { .. }
                | WebhookError::UnsupportedMediaType
                | WebhookError::JsonSentAsForm
                | WebhookError::FilePart { .. }
                | WebhookError::MalformedMultipart { .. }
                | WebhookError::RateLimited { .. }
                | WebhookError::ServerBusy
                | WebhookError::TooManyConnections
                | WebhookError::IdempotencyStoreFull { .. }
                | WebhookError::InboxFull
                | WebhookError::InvalidIdempotencyKey
                | WebhookError::DuplicateHeader { .. }
                | WebhookError::DryRunNotStarted
                | WebhookError::MissingToken
                | WebhookError::InvalidToken
                | WebhookError::InvalidSignature
                | WebhookError::StaleTimestamp
                | WebhookError::MissingSignature
                | WebhookError::UnknownSource
                | WebhookError::UnknownProcess { .. }
                | WebhookError::UnknownPath { .. }
                | WebhookError::MethodNotAllowed { .. }
                | WebhookError::NotDeployed { .. }
                | WebhookError::DraftVersion { .. }
                | WebhookError::StartInProgress
                | WebhookError::InvalidPayload { .. }
                | WebhookError::IdempotencyKeyReused
                | WebhookError::EngineFailed { .. }
                | WebhookError::StoreUnavailable { .. }
                | WebhookError::Internal => {}
            }
        }
        all
    }

    #[test]
    fn every_code_of_the_table_is_some_errors_and_every_errors_code_is_in_it() {
        let errors = one_of_each();
        let mut codes: Vec<&str> = errors.iter().map(WebhookError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut table: Vec<&str> = PROBLEMS.iter().map(|p| p.code).collect();
        table.sort_unstable();
        let before = table.len();
        table.dedup();
        assert_eq!(table.len(), before, "a code twice in the table");
        assert_eq!(codes, table);
        for error in &errors {
            let row = Problem::of(error.code());
            assert_eq!(row.code, error.code());
            let doc = error.to_problem_json();
            assert_eq!(
                (doc["status"].as_u64(), doc["title"].as_str()),
                (Some(u64::from(row.status)), Some(row.title))
            );
            // Retry-After exactly where the table says.
            assert_eq!(
                error.retry_after().is_some(),
                row.retry_after != RetryAfter::Never,
                "{error:?}"
            );
        }
    }

    #[test]
    fn the_rules_guides_table_of_codes_is_the_table() {
        let guide = include_str!("docs/rules.md");
        let section = &guide[guide.find("## The codes").expect("the section")..];
        let rows: Vec<Vec<&str>> = section
            .lines()
            .skip_while(|l| !l.starts_with("| status"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), PROBLEMS.len());
        for (row, problem) in rows.iter().zip(PROBLEMS) {
            let retry = match problem.retry_after {
                RetryAfter::Never => "—".to_owned(),
                RetryAfter::Own => "the limit's window".to_owned(),
                RetryAfter::Default(after) => after.as_secs().to_string(),
            };
            assert_eq!(
                (row[0], row[1], row[2], row[3].to_owned()),
                (
                    problem.status.to_string().as_str(),
                    format!("`{}`", problem.code).as_str(),
                    problem.title,
                    retry
                ),
            );
        }
    }

    #[test]
    fn a_code_the_table_lacks_is_answered_as_internal() {
        assert_eq!(Problem::of("no_such_code").code, "internal_error");
        assert_eq!(Problem::of("no_such_code").status, 500);
    }
}
