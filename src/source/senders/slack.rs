//! Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`
//! (`X-Slack-Request-Timestamp`) with HMAC-SHA256; the delivery id is the
//! body's `event_id`, the event its `event.type` (an interactive payload's
//! `type`), and a `url_verification` call is answered with its `challenge`.

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::source::HmacAlgorithm;
use crate::source::call::{Delivery, Keys, Reaction, SourceCall, from_hex, text_at};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let sent = call.required("x-slack-signature")?;
    let timestamp = call.required("x-slack-request-timestamp")?;
    let sent = sent
        .strip_prefix("v0=")
        .and_then(from_hex)
        .ok_or(WebhookError::InvalidSignature)?;
    keys.fresh(timestamp)?;
    keys.expect_mac(
        HmacAlgorithm::Sha256,
        &[b"v0:", timestamp.as_bytes(), b":", call.body],
        &sent,
    )
}

pub(crate) fn delivery(payload: &Map<String, Value>) -> Delivery {
    if text_at(payload, &["type"]).as_deref() == Some("url_verification") {
        let challenge = text_at(payload, &["challenge"]).unwrap_or_default();
        return Delivery {
            reaction: Reaction::Challenge(challenge),
            ..Delivery::default()
        };
    }
    Delivery {
        id: text_at(payload, &["event_id"]),
        // An Events API callback names its inner event; an interactive
        // payload (`payload=` in a form) its own `type`: `block_actions`,
        // `shortcut`, `view_submission`.
        event: text_at(payload, &["event", "type"]).or_else(|| text_at(payload, &["type"])),
        ..Delivery::default()
    }
}
