//! A call's head: what its headers say before its body is read (the
//! token, the idempotency key, the signature headers, the preferences, the
//! trace context, the media type).

use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::idempotency::CallerKey;
use crate::request::{RequestKey, WebhookStartRequest};
use crate::signature::SignatureHeaders;
use crate::start::{Call, Mode};
use crate::token::EnvironmentToken;
use crate::trace::{MAX_TRACESTATE_LEN, TraceContext};
use serde_json::{Map, Value};

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

/// Whether a `Content-Type` value is `application/x-www-form-urlencoded`,
/// with any parameters, in any case.
pub(crate) fn is_form_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim_ascii();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// What a call's target and headers say, before its body is read.
#[derive(Debug, Default)]
pub(crate) struct RequestHead {
    pub(crate) token: Option<EnvironmentToken>,
    pub(crate) idempotency_key: Option<CallerKey>,
    /// A signed call's `webhook-id`, which stands in for a missing
    /// `Idempotency-Key` and is checked as one when read.
    pub(crate) signature_key: Option<CallerKey>,
    pub(crate) signature: Option<SignatureHeaders>,
    /// Whether a `Prefer` header was sent, and whether it asks for a dry run.
    pub(crate) prefer: bool,
    pub(crate) dry_run: bool,
    /// The seconds of a `wait` preference (RFC 7240), when there is one.
    pub(crate) wait: Option<u32>,
    /// Whether a `Content-Type` was sent that is neither JSON nor a form.
    pub(crate) not_json: bool,
    /// Whether the body is a form (`application/x-www-form-urlencoded`,
    /// or `multipart/form-data`): its strings are read by kind.
    pub(crate) form: bool,
    /// A `multipart/form-data` body's boundary (`Some(None)`: its
    /// `Content-Type` has none usable).
    #[cfg(feature = "multipart")]
    pub(crate) multipart: Option<Option<Box<str>>>,
    /// The caller's trace context (a valid, single `traceparent`).
    pub(crate) trace: Option<TraceContext>,
    /// Whether `Accept` asks for an OpenAPI document (and, once the target
    /// is read, the webhook's path).
    pub(crate) openapi: Option<Box<str>>,
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
                if is_form_media_type(value) {
                    head.form = true;
                    continue;
                }
                #[cfg(feature = "multipart")]
                if let Some(boundary) = super::multipart::multipart_boundary(value) {
                    head.form = true;
                    head.multipart = Some(boundary);
                    continue;
                }
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
            } else if name.eq_ignore_ascii_case("accept") && head.openapi.is_none() && accepts_openapi(value)
            {
                head.openapi = Some("".into());
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
        // Only a `webhook-id` that was sent stands in for the key: signature
        // headers without one are the signature check's business, not a
        // malformed key.
        if head.idempotency_key.is_none() && !signature.id.is_empty() {
            head.signature_key = Some(CallerKey::new(signature.id.clone())?);
        }
        // Without a `webhook-id` there is no signature to check: an
        // environment that needs one refuses the call (`invalid_signature`)
        // as it would refuse a signature without its id.
        if has_id {
            head.signature = Some(signature);
        }
        Ok(head)
    }

    /// The call, once the body is read (its credential stays in the
    /// head): the caller's key, or the `webhook-id` that stands in for it.
    pub(crate) fn call(&mut self, process: ProcessUuid, payload: Map<String, Value>) -> Call {
        Call {
            process,
            payload,
            form: self.form,
            key: self.idempotency_key.take().or_else(|| self.signature_key.take()),
            trace: self.trace.take().map(Box::new),
            mode: if self.dry_run { Mode::DryRun } else { Mode::Accept },
            source: None,
        }
    }

    /// The request a host's call is read into ([`from_parts`]), the raw
    /// body kept for its signature.
    ///
    /// [`from_parts`]: WebhookStartRequest::from_parts
    pub(crate) fn into_request(
        self,
        process: ProcessUuid,
        payload: Map<String, Value>,
    ) -> WebhookStartRequest {
        let mut request = WebhookStartRequest::new(process, self.token, payload);
        request.idempotency_key = self
            .idempotency_key
            .or(self.signature_key)
            .map(RequestKey::Checked);
        request.dry_run = self.dry_run;
        request.form = self.form;
        request.trace = self.trace.map(Box::new);
        request
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

/// Whether an `Accept` value lists the OpenAPI media type (with any
/// parameters, in any case) at a weight above zero.
fn accepts_openapi(value: &str) -> bool {
    value.split(',').any(|range| {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or_default().trim_ascii();
        essence.eq_ignore_ascii_case(super::OPENAPI_MEDIA_TYPE)
            && !parts.any(|parameter| {
                parameter.split_once('=').is_some_and(|(name, weight)| {
                    name.trim_ascii().eq_ignore_ascii_case("q")
                        && weight.trim_ascii().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            })
    })
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
