//! Envelope bodies: a whole call carried as one JSON document
//! (`{"headers": {…}, "payload": {…}}`), the shape of the product's
//! documented example.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::http::RequestHead;
use crate::id::ProcessUuid;
use crate::request::WebhookStartRequest;

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
