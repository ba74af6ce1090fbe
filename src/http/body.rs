//! A call's body: its size, its count of JSON values, its parse into the
//! start fields, and a whole raw call read at once
//! ([`WebhookStartRequest::from_parts`]).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::form::insert_repeated;
use crate::http::{RequestHead, process_from_target};
use crate::request::{SignedCall, WebhookStartRequest};
use crate::starter::{DEFAULT_BODY_LIMIT, DEFAULT_MAX_JSON_VALUES};

/// Counts the JSON values of `body` (every scalar, array and object, the
/// outermost included), stopping as soon as the count passes `limit`.
///
/// One pass over the bytes, no allocation: it runs before the body is parsed,
/// so that a body of many tiny values is refused before it is turned into a
/// tree several times its size. For a body that is not valid JSON the count
/// is meaningless, and the parser reports the real problem.
pub(crate) fn json_values_exceed(body: &[u8], limit: usize) -> bool {
    let mut count: usize = 0;
    // Right after `[` or `{`: the next token starts the first element, if
    // the container is not empty.
    let mut opened = false;
    let mut at = 0;
    while at < body.len() {
        let b = body[at];
        at += 1;
        if b.is_ascii_whitespace() {
            continue;
        }
        if std::mem::take(&mut opened) && b != b']' && b != b'}' {
            count += 1; // the first element of a non-empty container
        }
        match b {
            b'[' | b'{' => opened = true,
            b',' => count += 1, // every further element
            // A string holds no values: jump past it (or to the end of a
            // body where it never closes).
            b'"' => at = string_end(body, at).unwrap_or(body.len()),
            _ => {}
        }
        // With the outermost value, `count + 1` values so far.
        if count >= limit {
            return true;
        }
    }
    false
}

/// Where the string whose text begins at `from` ends: just past its
/// closing quote, the first `"` not escaped by a `\`. `memchr` finds the
/// next quote or backslash, so long texts are crossed in vector steps.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let found = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[found] == b'"' {
            return Some(found + 1);
        }
        from = found + 2; // the backslash and the byte it escapes
    }
}

/// Reads a body as the JSON object of start fields; an empty (or all
/// white-space) body is an empty payload.
pub(crate) fn parse_payload(body: &[u8], max_values: usize) -> Result<Map<String, Value>, WebhookError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    // A JSON value takes at least one byte of its own, so a body no longer
    // than the bound cannot exceed it: the count is skipped.
    if body.len() > max_values && json_values_exceed(body, max_values) {
        return Err(WebhookError::TooManyJsonValues { limit: max_values });
    }
    // One UTF-8 check of the whole body, then `from_str`, which trusts it:
    // faster than `from_slice` checking each string on its own (75 B: 528
    // against 645 ns). A body that is not UTF-8 is read by `from_slice`,
    // whose error says where and why, as it always did.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    };
    parsed.map_err(|e| WebhookError::MalformedPayload { source: Some(e) })
}

/// Reads an `application/x-www-form-urlencoded` body as an object of
/// strings (a repeated name: an array of its strings, in order). Each name
/// and each value counts as a value against `max_values`, as a JSON
/// body's do; an empty body is an empty payload.
pub(crate) fn parse_form(body: &[u8], max_values: usize) -> Result<Map<String, Value>, WebhookError> {
    // Each pair is a name and a value: two values, as `{"name": "value"}`
    // counts in a JSON body.
    let pairs = memchr::memchr_iter(b'&', body).count() + 1;
    if pairs.saturating_mul(2) > max_values {
        return Err(WebhookError::TooManyJsonValues { limit: max_values });
    }
    if is_json_document(body) {
        return Err(WebhookError::JsonSentAsForm);
    }
    let mut payload = Map::new();
    for (name, value) in form_urlencoded::parse(body) {
        insert_repeated(&mut payload, name, Value::String(value.into_owned()));
    }
    if payload.len() == 1
        && let Some((name, value)) = payload.iter().next()
        && value.as_str() == Some("")
        && is_json_document(name.as_bytes())
    {
        // The one name, decoded, is a JSON document (`%7B…%7D`).
        return Err(WebhookError::JsonSentAsForm);
    }
    Ok(payload)
}

/// Whether a form body is in fact a JSON object or array (what `curl -d
/// '{…}'` sends without a content type): no form a sender makes starts
/// with `{` or `[` and parses as JSON.
fn is_json_document(body: &[u8]) -> bool {
    let text = body.trim_ascii();
    matches!(text.first(), Some(b'{' | b'[')) && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

/// A call's body as start fields, as its head's media type says: a
/// multipart body, a form, or JSON.
pub(crate) fn parse_body(
    head: &RequestHead,
    body: &[u8],
    max_values: usize,
    body_limit: usize,
) -> Result<Map<String, Value>, WebhookError> {
    #[cfg(feature = "multipart")]
    if let Some(boundary) = &head.multipart {
        let boundary = boundary.as_deref().ok_or(WebhookError::MalformedMultipart {
            problem: "its Content-Type names no boundary",
        })?;
        return super::multipart::parse_multipart(body, boundary, max_values, body_limit);
    }
    let _ = body_limit;
    if head.form {
        parse_form(body, max_values)
    } else {
        parse_payload(body, max_values)
    }
}

pub(crate) fn check_body_size(len: usize, limit: usize) -> Result<(), WebhookError> {
    if len > limit {
        Err(WebhookError::PayloadTooLarge { limit })
    } else {
        Ok(())
    }
}

impl WebhookStartRequest {
    /// Reads a raw HTTP call, with the default body limit of 1 MiB
    /// ([`WebhookStarter::DEFAULT_BODY_LIMIT`](crate::WebhookStarter::DEFAULT_BODY_LIMIT)).
    ///
    /// - `target` is a full URL or a path with query
    ///   (`/webhook/send?uid=…`); the process is the `uid` query parameter
    ///   (percent-decoded, any case; other parameters are ignored). The path
    ///   is not checked: mount the endpoint where you like.
    /// - Header names are case-insensitive. `authorization` holds the token,
    ///   bare or as `Bearer <token>`; `Idempotency-Key` the idempotency key;
    ///   `Prefer: dry-run` marks a dry run; `webhook-id`, `webhook-timestamp`
    ///   and `webhook-signature` a Standard Webhooks signature (the raw body
    ///   is then kept to verify it).
    /// - The body is the JSON object of start fields, or (with
    ///   `Content-Type: application/x-www-form-urlencoded`) a form, read as
    ///   an object of strings (a repeated name: an array of strings) whose
    ///   strings the start form's kinds then read (`"42"` for an integer,
    ///   `"true"` for a boolean); an empty body is an empty payload.
    /// - The `source` query parameter (a webhook source's call) is not read
    ///   here: such calls are authenticated by their source's scheme, which
    ///   [`WebhookStarter::handle`](crate::WebhookStarter::handle) and the
    ///   router check.
    ///
    /// # Errors
    ///
    /// Checked in this order, and nothing else happens:
    /// `400 missing_uid` (no or empty `uid`), `400 invalid_uid` (not a UUID, or
    /// given twice), `413 payload_too_large` (refused before parsing),
    /// `400 duplicate_header` (`authorization`, `idempotency-key`,
    /// `webhook-id` or `webhook-timestamp` more than once),
    /// `400 invalid_idempotency_key`, `415 unsupported_media_type` (a
    /// `Content-Type` that is neither JSON nor a form; none is fine),
    /// `413 payload_too_large` (more than 10,000 JSON values),
    /// `400 malformed_payload` (not JSON, not an object, invalid UTF-8,
    /// nested deeper than 128 levels).
    ///
    /// # Example
    ///
    /// ```
    /// use process_webhook::WebhookStartRequest;
    ///
    /// # fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let request = WebhookStartRequest::from_parts(
    ///     "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
    ///     [("Authorization", "Bearer s3cr3t"), ("Idempotency-Key", "order-123456")],
    ///     br#"{"customerName": "John Doe"}"#,
    /// )?;
    /// assert_eq!(request.process().to_string(), "dd9759e0-cc94-11ed-938f-13cf60270555");
    /// assert_eq!(request.token().map(|t| t.expose_secret()), Some("s3cr3t"));
    /// assert_eq!(request.payload()["customerName"], "John Doe");
    ///
    /// let err = WebhookStartRequest::from_parts("/webhook/send?uid=42", [("authorization", "x")], b"{}").unwrap_err();
    /// assert_eq!((err.status(), err.code()), (400, "invalid_uid"));
    /// # Ok(())
    /// # }
    /// # example().unwrap();
    /// ```
    pub fn from_parts<K, V>(
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> Result<Self, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::from_parts_with_limit(target, headers, body, DEFAULT_BODY_LIMIT)
    }

    /// [`from_parts`](Self::from_parts) with a body limit of `limit` bytes.
    ///
    /// # Errors
    ///
    /// As [`from_parts`](Self::from_parts).
    pub fn from_parts_with_limit<K, V>(
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
        limit: usize,
    ) -> Result<Self, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let process = process_from_target(target)?;
        check_body_size(body.len(), limit)?;
        let mut head = RequestHead::parse_headers(headers)?;
        if head.not_json {
            return Err(WebhookError::UnsupportedMediaType);
        }
        let payload = parse_body(&head, body, DEFAULT_MAX_JSON_VALUES, limit)?;
        let signature = head.signature.take();
        let mut request = head.into_request(process, payload);
        request.signed = signature.map(|headers| {
            Box::new(SignedCall {
                headers,
                body: Arc::from(body),
            })
        });
        Ok(request)
    }
}
