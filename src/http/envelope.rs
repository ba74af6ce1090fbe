//! Envelope bodies: a whole call carried as one JSON document
//! (`{"headers": {…}, "payload": {…}}`), the shape of the product's
//! documented example.

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::http::{RequestHead, parse_payload};
use crate::id::ProcessUuid;
use crate::request::WebhookStartRequest;
use crate::starter::DEFAULT_MAX_JSON_VALUES;

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

impl WebhookStartRequest {
    /// Reads a whole call carried as one JSON document (by a queue or a test
    /// tool), with the rules of an envelope body sent to the webhook URL:
    /// `{"headers": {"authorization": "…", "idempotency-key": "…"},
    /// "payload": {…}}`, both members required; header names are
    /// case-insensitive and their values strings.
    ///
    /// # Errors
    ///
    /// `400 malformed_payload` when the document is not such an object
    /// (saying which member is wrong), `400 duplicate_header`,
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
        let body = parse_payload(json, DEFAULT_MAX_JSON_VALUES)?;
        if !is_envelope(&body) {
            return Err(WebhookError::MalformedEnvelope {
                problem: "the document must have exactly the members `headers` and `payload`",
            });
        }
        // An envelope carries no raw body to verify a signature over: an
        // environment that requires one refuses it (`invalid_signature`).
        let (head, payload) = open_envelope(body)?;
        Ok(head.into_request(process, payload))
    }
}
