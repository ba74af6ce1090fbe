//! The HTTP edge without a web framework: reading a raw call into a
//! [`WebhookStartRequest`], the webhook URL, and [`HttpReply`].

use std::sync::Arc;

use serde::Deserialize;

#[cfg(feature = "axum")]
mod axum;
mod exchange;
pub(crate) mod health;
pub(crate) mod protect;
#[cfg(feature = "axum")]
mod serve;
pub(crate) mod signal;
pub(crate) mod wait;

#[cfg(feature = "axum")]
pub use self::axum::{health_router, router};
pub use health::{Component, DEFAULT_READY_TIMEOUT, NotReady};
pub use protect::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT};
use serde_json::{Map, Value};
#[cfg(feature = "axum")]
pub use serve::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
    ServeOptions, serve,
};
pub use wait::{DEFAULT_MAX_WAIT, DEFAULT_MAX_WAITING_CALLS};

use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::idempotency::CallerKey;
use crate::outcome::StartOutcome;
use crate::request::{RequestKey, SignedCall, WebhookStartRequest};
use crate::signature::SignatureHeaders;
use crate::token::EnvironmentToken;
use crate::trace::{MAX_TRACESTATE_LEN, TraceContext};

/// The base of every process's webhook URL.
pub const DEFAULT_WEBHOOK_BASE: &str = "https://run.stackfl.com/webhook/send";

/// The methods the webhook URL serves, as its `Allow` header lists them.
pub(crate) const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS, POST";

/// The realm of the `WWW-Authenticate` challenge of a `401`.
const REALM: &str = "process-webhook";

/// Whether a `Content-Type` value is JSON: `application/json` or any
/// `…/…+json` type, with any parameters, in any case.
pub(crate) fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim_ascii();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let ends_with_json = subtype.len() > 5
        && subtype.is_char_boundary(subtype.len() - 5)
        && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json");
    !kind.is_empty()
        && ((kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json"))
            || ends_with_json)
}

/// The default limit on a webhook body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The webhook URL of `process` under `base`: `{base}?uid={process}`, or
/// `{base}&uid={process}` when `base` already has a query.
///
/// ```
/// use process_webhook::{webhook_url, DEFAULT_WEBHOOK_BASE, ProcessUuid};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// assert_eq!(
///     webhook_url(DEFAULT_WEBHOOK_BASE, &uuid),
///     "https://run.stackfl.com/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
/// );
/// assert_eq!(
///     webhook_url("http://localhost:8080/hook?tenant=a", &uuid),
///     "http://localhost:8080/hook?tenant=a&uid=dd9759e0-cc94-11ed-938f-13cf60270555",
/// );
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
pub fn webhook_url(base: &str, process: &ProcessUuid) -> String {
    let separator = match base.find('?') {
        None => '?',
        Some(i) if i + 1 == base.len() || base.ends_with('&') => return format!("{base}uid={process}"),
        Some(_) => '&',
    };
    format!("{base}{separator}uid={process}")
}

/// What a call's target and headers say, before its body is read.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    pub(crate) token: Option<EnvironmentToken>,
    pub(crate) idempotency_key: Option<CallerKey>,
    pub(crate) signature: Option<SignatureHeaders>,
    /// Whether a `Prefer` header was sent, and whether it asks for a dry run.
    pub(crate) prefer: bool,
    pub(crate) dry_run: bool,
    /// The seconds of a `wait` preference (RFC 7240), when there is one.
    pub(crate) wait: Option<u32>,
    /// Whether a `Content-Type` was sent that is not JSON.
    pub(crate) not_json: bool,
    /// The caller's trace context (a valid, single `traceparent`).
    pub(crate) trace: Option<TraceContext>,
}

impl RequestHead {
    /// Reads the headers the start needs.
    pub(crate) fn parse_headers<K, V>(headers: impl IntoIterator<Item = (K, V)>) -> Result<Self, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut head = Self::default();
        let mut has_authorization = false;
        let mut signature = SignatureHeaders::default();
        let mut key = None;
        let (mut has_key, mut has_id, mut has_timestamp) = (false, false, false);
        // Trace headers never fail a call: a repeated `traceparent` is
        // ignored, as the W3C recommendation says; `tracestate` lines join.
        let (mut traceparent, mut traceparents, mut tracestate) = (None, 0_u32, String::new());
        for (name, value) in headers {
            let (name, value) = (name.as_ref().trim_ascii(), value.as_ref());
            if name.eq_ignore_ascii_case("authorization") {
                once(&mut has_authorization, "authorization")?;
                head.token = token_from_authorization(value);
            } else if name.eq_ignore_ascii_case("idempotency-key") {
                once(&mut has_key, "idempotency-key")?;
                key = Some(value.trim_ascii().to_owned());
            } else if name.eq_ignore_ascii_case("prefer") {
                head.prefer = true;
                for preference in value.split(',') {
                    let (name, value) = preference_of(preference);
                    if name.eq_ignore_ascii_case("dry-run") {
                        head.dry_run = true;
                    } else if name.eq_ignore_ascii_case("wait") && head.wait.is_none() {
                        // RFC 7240: only a preference's first instance counts.
                        head.wait = value.and_then(wait_seconds);
                    }
                }
            } else if name.eq_ignore_ascii_case("content-type") {
                head.not_json |= !is_json_media_type(value);
            } else if name.eq_ignore_ascii_case("webhook-id") {
                once(&mut has_id, "webhook-id")?;
                signature.id = value.trim_ascii().to_owned();
            } else if name.eq_ignore_ascii_case("webhook-timestamp") {
                once(&mut has_timestamp, "webhook-timestamp")?;
                signature.timestamp = value.trim_ascii().to_owned();
            } else if name.eq_ignore_ascii_case("webhook-signature") {
                if !signature.signatures.is_empty() {
                    signature.signatures.push(' ');
                }
                signature.signatures.push_str(value.trim_ascii());
            } else if name.eq_ignore_ascii_case("traceparent") {
                traceparents += 1;
                traceparent = (value.len() <= 128).then(|| value.to_owned());
            } else if name.eq_ignore_ascii_case("tracestate") && tracestate.len() <= MAX_TRACESTATE_LEN {
                if !tracestate.is_empty() {
                    tracestate.push(',');
                }
                tracestate.push_str(value.trim_ascii());
            }
        }
        if let (Some(traceparent), 1) = (traceparent, traceparents) {
            let tracestate = (!tracestate.is_empty()).then_some(tracestate.as_str());
            head.trace = TraceContext::parse(&traceparent, tracestate);
        }
        // Checked once, here: the start takes the key as it is.
        head.idempotency_key = key.map(CallerKey::new).transpose()?;
        // Without a `webhook-id` there is no signature to check: an
        // environment that needs one refuses the call (`invalid_signature`)
        // as it would refuse a signature without its id.
        if has_id {
            head.signature = Some(signature);
        }
        Ok(head)
    }

    /// The request, once the body is read, and the signature headers to
    /// verify. A signed call without an idempotency key uses its
    /// `webhook-id` as one.
    pub(crate) fn into_request(
        self,
        process: ProcessUuid,
        payload: Map<String, Value>,
    ) -> (WebhookStartRequest, Option<SignatureHeaders>) {
        let mut request = WebhookStartRequest::new(process, self.token, payload);
        // Only a `webhook-id` that was sent stands in for the key: signature
        // headers without one are the signature check's business, not a
        // malformed key.
        request.idempotency_key = match self.idempotency_key {
            Some(key) => Some(RequestKey::Checked(key)),
            None => self
                .signature
                .as_ref()
                .filter(|s| !s.id.is_empty())
                .map(|s| RequestKey::Unchecked(s.id.clone())),
        };
        request.dry_run = self.dry_run;
        request.trace = self.trace.map(Box::new);
        (request, self.signature)
    }

    /// Takes in the headers of an envelope body. A header given in both
    /// places must have the same meaning there (the same token, the same key,
    /// the same preferences), else `400 conflicting_headers`; one given only
    /// in the envelope counts as if it had been sent on the request.
    /// Signature headers count only on the request.
    pub(crate) fn merge_envelope(&mut self, envelope: RequestHead) -> Result<(), WebhookError> {
        match (&self.token, envelope.token) {
            // Digests compare in constant time.
            (Some(ours), Some(theirs)) if ours.digest() != theirs.digest() => {
                return Err(WebhookError::ConflictingHeaders {
                    name: "authorization",
                });
            }
            (None, theirs) => self.token = theirs,
            _ => {}
        }
        match (&self.idempotency_key, envelope.idempotency_key) {
            (Some(ours), Some(theirs)) if *ours != theirs => {
                return Err(WebhookError::ConflictingHeaders {
                    name: "idempotency-key",
                });
            }
            (None, theirs) => self.idempotency_key = theirs,
            _ => {}
        }
        if envelope.prefer {
            if self.prefer && (self.dry_run != envelope.dry_run || self.wait != envelope.wait) {
                return Err(WebhookError::ConflictingHeaders { name: "prefer" });
            }
            self.prefer = true;
            self.dry_run = envelope.dry_run;
            self.wait = envelope.wait;
        }
        Ok(())
    }
}

/// Whether a body is an envelope: a JSON object whose top-level keys are
/// exactly `headers` and `payload`.
pub(crate) fn is_envelope(body: &Map<String, Value>) -> bool {
    body.len() == 2 && body.contains_key("headers") && body.contains_key("payload")
}

/// Opens an envelope body (see [`is_envelope`]): the headers inside it
/// (signature headers left out: they count only on the request) and the
/// payload.
///
/// # Errors
///
/// `400 malformed_payload` naming what is wrong (`headers` not an object of
/// strings, `payload` not an object), and the errors of the headers
/// themselves (`duplicate_header`, `invalid_idempotency_key`).
pub(crate) fn open_envelope(
    mut body: Map<String, Value>,
) -> Result<(RequestHead, Map<String, Value>), WebhookError> {
    let malformed = |problem| WebhookError::MalformedEnvelope { problem };
    let Some(Value::Object(headers)) = body.remove("headers") else {
        return Err(malformed("`headers` must be an object"));
    };
    let Some(Value::Object(payload)) = body.remove("payload") else {
        return Err(malformed("`payload` must be an object"));
    };
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        match value {
            Value::String(value) => pairs.push((name, value)),
            _ => return Err(malformed("every value in `headers` must be a string")),
        }
    }
    let mut head = RequestHead::parse_headers(pairs)?;
    // Like signatures, trace context counts only on the request.
    head.signature = None;
    head.trace = None;
    Ok((head, payload))
}

/// A preference's name and value (RFC 7240 §2: `token [ "=" word ]`, then
/// parameters after `;`, which this crate does not use), both trimmed, the
/// value unquoted.
fn preference_of(preference: &str) -> (&str, Option<&str>) {
    let preference = preference.split(';').next().unwrap_or_default();
    match preference.split_once('=') {
        Some((name, value)) => {
            let value = value.trim_ascii();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (name.trim_ascii(), Some(unquoted))
        }
        None => (preference.trim_ascii(), None),
    }
}

/// The seconds of a `wait` value: decimal digits (larger values saturate);
/// anything else is no preference.
fn wait_seconds(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u32>().unwrap_or(u32::MAX))
}

/// Marks header `name` as seen; an error when it was seen before.
fn once(seen: &mut bool, name: &'static str) -> Result<(), WebhookError> {
    if std::mem::replace(seen, true) {
        Err(WebhookError::DuplicateHeader { name })
    } else {
        Ok(())
    }
}

/// The token of an `authorization` value: bare, or after `Bearer ` (any case).
fn token_from_authorization(value: &str) -> Option<EnvironmentToken> {
    let value = value.trim_ascii();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_ascii(),
        // The scheme alone carries no token.
        None if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    (!token.is_empty()).then(|| EnvironmentToken::new(token))
}

/// The `uid` query parameter of a full URL or a path with query.
///
/// Pairs without `%` or `+` are compared as they are; the others are
/// decoded by `form_urlencoded` (this keeps the common case free of
/// allocation and UTF-8 re-validation, which profiling showed to cost more
/// than parsing the documented payload).
pub(crate) fn process_from_target(target: &str) -> Result<ProcessUuid, WebhookError> {
    // The separators are ASCII and found with `memchr`: a target is read in
    // a few vector steps rather than byte by byte.
    let bytes = target.as_bytes();
    let query = match memchr::memchr2(b'?', b'#', bytes) {
        Some(at) if bytes[at] == b'?' => {
            let query = &target[at + 1..];
            match memchr::memchr(b'#', query.as_bytes()) {
                Some(fragment) => &query[..fragment],
                None => query,
            }
        }
        _ => return Err(WebhookError::MissingUid),
    };
    let mut uid: Option<std::borrow::Cow<'_, str>> = None;
    let mut rest = query;
    loop {
        let (pair, next) = match memchr::memchr(b'&', rest.as_bytes()) {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        let found = if memchr::memchr2(b'%', b'+', pair.as_bytes()).is_some() {
            form_urlencoded::parse(pair.as_bytes())
                .next()
                .filter(|(name, _)| name == "uid")
                .map(|(_, value)| value)
        } else {
            let (name, value) = match memchr::memchr(b'=', pair.as_bytes()) {
                Some(equals) => (&pair[..equals], &pair[equals + 1..]),
                None => (pair, ""),
            };
            (name == "uid").then_some(value.into())
        };
        if let Some(value) = found {
            if uid.is_some() {
                return Err(WebhookError::RepeatedUid);
            }
            uid = Some(value);
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    let uid = uid.ok_or(WebhookError::MissingUid)?;
    parse_uid(&uid)
}

/// The `uid` of a webhook URL: a UUID in the hyphenated form (any case) or
/// its `urn:uuid:` form (the two RFC 9562 names), with ASCII white space
/// around it trimmed. Braces, the form without hyphens and other white
/// space are refused, so that one process has one spelling (give or take
/// case) in URLs.
pub(crate) fn parse_uid(uid: &str) -> Result<ProcessUuid, WebhookError> {
    let uid = uid.trim_ascii();
    if uid.is_empty() {
        return Err(WebhookError::MissingUid);
    }
    const URN: &str = "urn:uuid:";
    let hyphenated = match uid.get(..URN.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(URN) => &uid[URN.len()..],
        _ => uid,
    };
    decode_hyphenated(hyphenated.as_bytes())
        .map(|bytes| ProcessUuid::from(uuid::Uuid::from_bytes(bytes)))
        .ok_or(WebhookError::InvalidUid)
}

/// The 16 bytes of a hyphenated UUID (`8-4-4-4-12` hex digits, any case),
/// or `None` for any other text. One pass over the 36 bytes: the shape
/// check and the decoding are the same loop.
fn decode_hyphenated(text: &[u8]) -> Option<[u8; 16]> {
    let text: &[u8; 36] = text.try_into().ok()?;
    if [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    // Byte `k` of the UUID is the two digits at DIGIT_AT[k] and the next.
    const DIGIT_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, &at) in out.iter_mut().zip(DIGIT_AT.iter()) {
        let (high, low) = (HEX[usize::from(text[at])], HEX[usize::from(text[at + 1])]);
        if high > 0x0f || low > 0x0f {
            return None;
        }
        *byte = (high << 4) | low;
    }
    Some(out)
}

/// The value of each hex digit (either case); 0xff for every other byte.
const HEX: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The default bound on the JSON values in one payload: 10,000.
pub const DEFAULT_MAX_JSON_VALUES: usize = 10_000;

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

pub(crate) fn check_body_size(len: usize, limit: usize) -> Result<(), WebhookError> {
    if len > limit {
        Err(WebhookError::PayloadTooLarge { limit })
    } else {
        Ok(())
    }
}

impl WebhookStartRequest {
    /// Reads a raw HTTP call, with the default body limit of 1 MiB
    /// ([`DEFAULT_BODY_LIMIT`]).
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
    /// - The body is the JSON object of start fields; an empty body is an
    ///   empty payload.
    ///
    /// # Errors
    ///
    /// Checked in this order, and nothing else happens:
    /// `400 missing_uid` (no or empty `uid`), `400 invalid_uid` (not a UUID, or
    /// given twice), `413 payload_too_large` (refused before parsing),
    /// `400 duplicate_header` (`authorization`, `idempotency-key`,
    /// `webhook-id` or `webhook-timestamp` more than once),
    /// `400 invalid_idempotency_key`, `415 unsupported_media_type` (a
    /// `Content-Type` that is not JSON; none is fine),
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
        let head = RequestHead::parse_headers(headers)?;
        if head.not_json {
            return Err(WebhookError::UnsupportedMediaType);
        }
        let payload = parse_payload(body, DEFAULT_MAX_JSON_VALUES)?;
        let (mut request, signature) = head.into_request(process, payload);
        request.signed = signature.map(|headers| {
            Box::new(SignedCall {
                headers,
                body: Arc::from(body),
            })
        });
        Ok(request)
    }

    /// Reads a whole call carried as one JSON document (by a queue or a test
    /// tool): `{"headers": {"authorization": "…", "idempotency-key": "…"},
    /// "payload": {…}}`. Both members are optional; header names are
    /// case-insensitive and their values strings.
    ///
    /// # Errors
    ///
    /// `400 malformed_payload` when the document is not such an object (or
    /// `payload` is not an object), `400 duplicate_header`,
    /// `400 invalid_idempotency_key`.
    ///
    /// # Example
    ///
    /// ```
    /// use process_webhook::{ProcessUuid, WebhookStartRequest};
    ///
    /// # fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
    /// let request = WebhookStartRequest::from_envelope_json(
    ///     uuid,
    ///     br#"{"headers": {"authorization": "s3cr3t"}, "payload": {"orderNumber": "123456"}}"#,
    /// )?;
    /// assert_eq!(request.payload()["orderNumber"], "123456");
    /// # Ok(())
    /// # }
    /// # example().unwrap();
    /// ```
    pub fn from_envelope_json(process: ProcessUuid, json: &[u8]) -> Result<Self, WebhookError> {
        // `headers` is an object; read it as a list of pairs so that a name
        // given twice (in any case) is seen rather than silently merged.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope {
            #[serde(default, deserialize_with = "pairs")]
            headers: Vec<(String, String)>,
            #[serde(default)]
            payload: Map<String, Value>,
        }
        // A derived struct would also read a JSON array; the envelope is an object.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            let source = serde_json::from_slice::<Map<String, Value>>(json).err();
            return Err(WebhookError::MalformedPayload { source });
        }
        let envelope: Envelope =
            serde_json::from_slice(json).map_err(|e| WebhookError::MalformedPayload { source: Some(e) })?;
        let head = RequestHead::parse_headers(envelope.headers)?;
        // An envelope carries no raw body to verify a signature over: an
        // environment that requires one refuses it (`invalid_signature`).
        Ok(head.into_request(process, envelope.payload).0)
    }
}

/// Deserializes a JSON object of strings into its pairs, in order.
fn pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of header names to string values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(pair) = map.next_entry::<String, String>()? {
                out.push(pair);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}

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
    out.extend_from_slice(b"{\"instanceId\":");
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
            WebhookError::UnsupportedMediaType => {
                reply = reply.with_header("accept-post", "application/json".to_owned());
            }
            // RFC 9110 §11.6.1: a 401 says how to authenticate.
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
    use proptest::prelude::*;

    /// The straightforward reading: decode every pair with form_urlencoded.
    fn reference(target: &str) -> Result<ProcessUuid, WebhookError> {
        let without_fragment = target.split_once('#').map_or(target, |(t, _)| t);
        let query = without_fragment.split_once('?').map_or("", |(_, q)| q);
        let uids: Vec<_> = form_urlencoded::parse(query.as_bytes())
            .filter(|(n, _)| n == "uid")
            .collect();
        match uids.as_slice() {
            [] => Err(WebhookError::MissingUid),
            [(_, v)] if v.trim().is_empty() => Err(WebhookError::MissingUid),
            [(_, v)] => v.trim().parse().map_err(|_| WebhookError::InvalidUid),
            _ => Err(WebhookError::InvalidUid),
        }
    }

    proptest! {
        #[test]
        fn the_fast_uid_reader_agrees_with_form_urlencoded(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("uid=dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                    Just("u%69d=dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                    Just("uid=dd9759e0%2Dcc94-11ed-938f-13cf60270555".to_owned()),
                    Just("uid=+dd9759e0-cc94-11ed-938f-13cf60270555+".to_owned()),
                    // A value may hold `=`: the name ends at the first.
                    Just("uid=dd9759e0-cc94-11ed-938f-13cf60270555=1".to_owned()),
                    Just("uid==dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                    Just("uid".to_owned()),
                    Just("uid=".to_owned()),
                    Just("=x".to_owned()),
                    "[a-z%+=0-9-]{0,12}",
                ],
                0..4,
            ),
            fragment in prop::option::of("[a-z=&]{0,6}"),
        ) {
            let mut target = format!("/webhook/send?{}", parts.join("&"));
            if let Some(f) = fragment {
                target.push('#');
                target.push_str(&f);
            }
            let ours = process_from_target(&target).map_err(|e| e.code());
            let theirs = reference(&target).map_err(|e| e.code());
            prop_assert_eq!(ours, theirs, "{}", target);
        }

        #[test]
        fn the_uid_decoder_agrees_with_the_uuid_crate(
            // The bytes next to the digits in ASCII ('/', ':', '@', 'G', '`',
            // 'g') in either digit of a pair.
            text in "[0-9a-fA-F-]{36}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F/:@G`g]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        ) {
            let ours = decode_hyphenated(text.as_bytes()).map(uuid::Uuid::from_bytes);
            // The uuid crate also reads 36 characters as hyphenated only.
            let theirs = uuid::Uuid::try_parse(&text).ok();
            prop_assert_eq!(ours, theirs, "{}", text);
        }

        #[test]
        fn the_started_answer_is_what_serde_json_writes(
            // Plain ids, and ids with what JSON escapes (quotes, backslashes,
            // control characters) and what it does not (DEL, non-ASCII).
            instance in "[a-z0-9-]{1,40}|[a-z\"\\\\\u{0}-\u{1f}\u{7f}é]{0,8}|.{0,12}",
            environment in "[a-z]{1,12}|[a-z\"\\\\\u{0}-\u{1f}\u{7f}é]{0,8}",
            process in any::<u128>(),
            version in any::<u32>(),
            replayed in any::<bool>(),
        ) {
            let outcome = StartOutcome::from_parts(
                crate::InstanceId::new(instance),
                ProcessUuid::from(uuid::Uuid::from_u128(process)),
                version,
                crate::EnvironmentId::new(environment),
                crate::DeploymentId::from(uuid::Uuid::from_u128(process ^ 1)),
            );
            let outcome = if replayed { outcome.into_replay() } else { outcome };
            let ours = String::from_utf8(outcome_json(&outcome)).unwrap();
            let theirs = serde_json::to_string(&outcome).unwrap();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn the_value_count_is_exact(value in json_value(), pretty in any::<bool>()) {
            fn values(value: &Value) -> usize {
                1 + match value {
                    Value::Array(items) => items.iter().map(values).sum(),
                    Value::Object(members) => members.values().map(values).sum(),
                    _ => 0,
                }
            }
            let body = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let count = values(&value);
            for limit in count.saturating_sub(1).max(1)..=count + 1 {
                prop_assert_eq!(json_values_exceed(&body, limit), count > limit, "limit {} for {}", limit, value);
            }
        }

        #[test]
        fn a_body_no_longer_than_the_bound_never_exceeds_it(value in json_value()) {
            let body = serde_json::to_vec(&value).unwrap();
            prop_assert!(!json_values_exceed(&body, body.len()));
        }
    }

    /// Any JSON value, nested up to four levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z,:\\[\\]{}\"\\\\]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z,\"\\\\]{0,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn only_tracestate_lines_make_the_tracestate() {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let head =
            RequestHead::parse_headers([("traceparent", traceparent), ("user-agent", "curl/8.5")]).unwrap();
        assert_eq!(head.trace.as_ref().map(TraceContext::tracestate), Some(None));
        let head = RequestHead::parse_headers([
            ("traceparent", traceparent),
            ("tracestate", "a=1"),
            ("user-agent", "curl/8.5"),
            ("tracestate", "b=2"),
        ])
        .unwrap();
        assert_eq!(
            head.trace.as_ref().and_then(TraceContext::tracestate),
            Some("a=1,b=2")
        );
    }

    #[test]
    fn uids_in_each_accepted_spelling_decode_to_the_same_process() {
        let expected: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
        for uid in [
            "dd9759e0-cc94-11ed-938f-13cf60270555",
            "DD9759E0-CC94-11ED-938F-13CF60270555",
            "urn:uuid:dd9759e0-cc94-11ed-938f-13cf60270555",
            " dd9759e0-cc94-11ed-938f-13cf60270555\t",
        ] {
            assert_eq!(parse_uid(uid).unwrap(), expected, "{uid}");
        }
        assert_eq!(
            process_from_target("/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555=1")
                .unwrap_err()
                .code(),
            "invalid_uid"
        );
        for uid in [
            "dd9759e0cc9411ed938f13cf60270555",
            "{dd9759e0-cc94-11ed-938f-13cf60270555}",
            "dd9759e0-cc94-11ed-938f-13cf6027055g",
            "dd9759e0-cc94-11ed-938f_13cf60270555",
            "dd9759e0-cc94-11ed-938f-13cf602705555",
        ] {
            assert_eq!(parse_uid(uid).unwrap_err().code(), "invalid_uid", "{uid}");
        }
    }
}
