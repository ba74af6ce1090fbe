//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`,
//! the delivery id in `X-GitHub-Delivery`, the event in `X-GitHub-Event`
//! (a `ping` when the webhook is created).

use crate::error::WebhookError;
use crate::source::HmacAlgorithm;
use crate::source::call::{Delivery, Keys, Reaction, SourceCall, from_hex};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let sent = call.required("x-hub-signature-256")?;
    let sent = sent
        .strip_prefix("sha256=")
        .and_then(from_hex)
        .ok_or(WebhookError::InvalidSignature)?;
    keys.expect_mac(HmacAlgorithm::Sha256, &[call.body], &sent)
}

pub(crate) fn delivery(call: &SourceCall<'_>) -> Delivery {
    let mut delivery = Delivery::from_headers(call, Some("x-github-delivery"), Some("x-github-event"));
    if delivery.event.as_deref() == Some("ping") {
        delivery.reaction = Reaction::Ping;
    }
    delivery
}
