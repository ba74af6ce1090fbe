//! [`HttpReply`]: the answer to a call, independent of any web framework,
//! and the bytes of a start's `202`.

use crate::error::WebhookError;
use crate::http::ALLOWED_METHODS;
use crate::outcome::StartOutcome;

/// The realm of the `WWW-Authenticate` challenge of a `401`.
const REALM: &str = "process-webhook";

/// The media types a `POST` body may have (`Accept-Post`, RFC 9110).
#[cfg(not(feature = "multipart"))]
pub(crate) const ACCEPTED_MEDIA_TYPES: &str = "application/json, application/x-www-form-urlencoded";
/// The media types a `POST` body may have (`Accept-Post`, RFC 9110).
#[cfg(feature = "multipart")]
pub(crate) const ACCEPTED_MEDIA_TYPES: &str =
    "application/json, application/x-www-form-urlencoded, multipart/form-data";

/// `value` as JSON, in a buffer sized for the answers this crate sends (a
/// start's outcome is about 170 bytes) so that it is written without
/// growing.
fn json_bytes(value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// The `202` answer of a start: what `serde_json` writes for a
/// [`StartOutcome`], written directly (field names and the UUID need no
/// escaping; an id is escaped by `serde_json` only when it holds a byte
/// JSON escapes). A property test holds it to `serde_json`'s bytes.
pub(crate) fn outcome_json(outcome: &StartOutcome) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        } else {
            // Writing to a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut *out, text);
        }
    }
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"status\":\"started\",\"instanceId\":");
    string(&mut out, outcome.instance_id().as_str());
    out.extend_from_slice(b",\"processUuid\":\"");
    let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(
        outcome
            .process()
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut uuid)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"version\":");
    out.extend_from_slice(itoa::Buffer::new().format(outcome.version()).as_bytes());
    out.extend_from_slice(b",\"environment\":");
    string(&mut out, outcome.environment().as_str());
    out.extend_from_slice(if outcome.is_replayed() {
        b",\"replayed\":true}"
    } else {
        b",\"replayed\":false}"
    });
    out
}

/// An HTTP answer, independent of any web framework.
///
/// # Example
///
/// ```
/// use process_webhook::{HttpReply, WebhookError};
///
/// let reply = HttpReply::from_error(&WebhookError::MissingToken);
/// assert_eq!(reply.status(), 401);
/// assert_eq!(reply.content_type(), "application/problem+json");
/// let doc: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
/// assert_eq!(doc["code"], "missing_token");
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HttpReply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    /// An answer with a JSON body.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: json_bytes(body),
        }
    }

    /// The problem document of `error`, with its status, and `Retry-After`
    /// (in seconds) where the error has one.
    pub fn from_error(error: &WebhookError) -> Self {
        Self::from_error_of(error, None)
    }

    /// [`from_error`](Self::from_error) for a call of a webhook source of
    /// `scheme` (`None`: a call with a token): a `401`'s challenge is one
    /// the sender can answer, `Basic` for a Basic source, none for a sender
    /// that signs (a `Bearer` challenge would ask for a token it cannot
    /// send).
    pub(crate) fn from_error_of(error: &WebhookError, scheme: Option<&str>) -> Self {
        let mut reply = Self {
            status: error.status(),
            content_type: "application/problem+json",
            headers: Vec::new(),
            body: json_bytes(&error.to_problem_json()),
        };
        if let Some(after) = error.retry_after() {
            // Whole seconds, rounded up: a caller that waits that long is
            // not refused again for waiting too little.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            reply = reply.with_header("retry-after", secs.max(1).to_string());
        }
        match error {
            WebhookError::MethodNotAllowed { .. } => {
                reply = reply.with_header("allow", ALLOWED_METHODS.to_owned());
            }
            WebhookError::UnsupportedMediaType
            | WebhookError::JsonSentAsForm
            | WebhookError::FilePart { .. } => {
                reply = reply.with_header("accept-post", ACCEPTED_MEDIA_TYPES.to_owned());
            }
            // RFC 9110 §11.6.1: a 401 says how to authenticate, where the
            // caller can.
            _ if error.status() == 401 && scheme == Some("basic") => {
                reply = reply.with_header("www-authenticate", format!("Basic realm=\"{REALM}\""));
            }
            _ if scheme.is_some() => {}
            WebhookError::InvalidToken => {
                reply = reply.with_header(
                    "www-authenticate",
                    format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
                );
            }
            _ if error.status() == 401 => {
                reply = reply.with_header("www-authenticate", format!("Bearer realm=\"{REALM}\""));
            }
            _ => {}
        }
        reply
    }

    /// The `202` answer of a start.
    pub(crate) fn started(outcome: &StartOutcome) -> Self {
        Self {
            status: 202,
            content_type: "application/json",
            headers: Vec::new(),
            body: outcome_json(outcome),
        }
    }

    /// An answer without a body (`204`, say).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The same answer without its body (the answer to a `HEAD`).
    pub fn without_body(mut self) -> Self {
        self.body = Vec::new();
        self
    }

    /// Replaces the `Content-Type`.
    pub fn with_content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `Content-Type`.
    pub fn content_type(&self) -> &str {
        self.content_type
    }

    #[cfg(feature = "axum")]
    pub(crate) fn content_type_static(&self) -> &'static str {
        self.content_type
    }

    /// Headers to send besides `Content-Type` (names in lower case).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str()))
    }

    /// The value of header `name` (case-insensitive), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, owned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use crate::store::StoreError;
    use serde_json::Value;

    #[test]
    fn every_refusal_that_says_when_to_retry_has_its_documented_status_code_title_and_retry_after() {
        use std::time::Duration;
        let secs = Duration::from_secs;
        let cases = [
            (
                WebhookError::StartInProgress,
                409,
                "start_in_progress",
                "Conflict",
                Some("1"),
            ),
            (
                WebhookError::ServerBusy,
                503,
                "server_busy",
                "Service unavailable",
                Some("1"),
            ),
            (
                WebhookError::TooManyConnections,
                503,
                "too_many_connections",
                "Service unavailable",
                Some("1"),
            ),
            (
                WebhookError::RateLimited {
                    retry_after: Duration::from_millis(2_500),
                },
                429,
                "rate_limited",
                "Too many requests",
                Some("3"),
            ),
            (
                WebhookError::RateLimited {
                    retry_after: Duration::from_millis(200),
                },
                429,
                "rate_limited",
                "Too many requests",
                Some("1"),
            ),
            (
                WebhookError::IdempotencyStoreFull {
                    retry_after: Some(secs(7)),
                },
                503,
                "idempotency_store_full",
                "Service unavailable",
                Some("7"),
            ),
            (
                WebhookError::IdempotencyStoreFull { retry_after: None },
                503,
                "idempotency_store_full",
                "Service unavailable",
                Some("60"),
            ),
            (
                WebhookError::StoreUnavailable {
                    source: StoreError::new("down"),
                },
                503,
                "store_unavailable",
                "Service unavailable",
                Some("5"),
            ),
            (
                WebhookError::EngineFailed {
                    source: EngineError::overloaded("busy").with_retry_after(secs(3)),
                },
                429,
                "engine_overloaded",
                "Engine overloaded",
                Some("3"),
            ),
            (
                WebhookError::EngineFailed {
                    source: EngineError::unavailable("restarting"),
                },
                503,
                "engine_unavailable",
                "Service unavailable",
                Some("5"),
            ),
            (
                WebhookError::EngineFailed {
                    source: EngineError::key_reused("other payload"),
                },
                422,
                "idempotency_key_reused",
                "Unprocessable payload",
                None,
            ),
            (
                WebhookError::EngineFailed {
                    source: EngineError::refused("no such definition"),
                },
                502,
                "engine_failed",
                "Engine failed",
                None,
            ),
            (
                WebhookError::InvalidToken,
                401,
                "invalid_token",
                "Unauthorized",
                None,
            ),
        ];
        for (error, status, code, title, retry_after) in cases {
            assert_eq!((error.status(), error.code()), (status, code), "{error:?}");
            let reply = HttpReply::from_error(&error);
            assert_eq!(reply.status(), status);
            assert_eq!(reply.header("retry-after"), retry_after, "{error:?}");
            let doc: Value = serde_json::from_slice(reply.body()).unwrap();
            assert_eq!(
                (doc["code"].as_str(), doc["title"].as_str()),
                (Some(code), Some(title))
            );
        }
    }

    #[test]
    fn every_status_has_its_title_and_only_a_401_says_how_to_authenticate() {
        use std::time::Duration;
        let cases = [
            (WebhookError::MissingUid, 400, "Bad request"),
            (WebhookError::MissingToken, 401, "Unauthorized"),
            (
                WebhookError::UnknownProcess {
                    process: "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap(),
                },
                404,
                "Unknown process",
            ),
            (
                WebhookError::MethodNotAllowed { method: "PUT".into() },
                405,
                "Method not allowed",
            ),
            (
                WebhookError::BodyTimeout {
                    limit: Duration::from_secs(10),
                },
                408,
                "Request timeout",
            ),
            (
                WebhookError::PayloadTooLarge { limit: 1024 },
                413,
                "Payload too large",
            ),
            (WebhookError::UnsupportedMediaType, 415, "Unsupported media type"),
            (WebhookError::Internal, 500, "Internal error"),
        ];
        for (error, status, title) in cases {
            let reply = HttpReply::from_error(&error);
            assert_eq!(reply.status(), status);
            let doc: Value = serde_json::from_slice(reply.body()).unwrap();
            assert_eq!(doc["title"].as_str(), Some(title), "{error:?}");
            let challenge = reply.header("www-authenticate");
            if status == 401 {
                assert_eq!(challenge, Some("Bearer realm=\"process-webhook\""));
            } else {
                assert_eq!(challenge, None, "{error:?}");
            }
        }
    }
}
