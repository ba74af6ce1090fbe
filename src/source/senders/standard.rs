//! Standard Webhooks: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature`, checked as an environment's signing secrets are;
//! the delivery id is the `webhook-id`.

use crate::error::WebhookError;
use crate::signature::{SignatureHeaders, SigningSecret, verify as verify_standard};
use crate::source::call::{Delivery, Keys, SourceCall};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let headers = SignatureHeaders::new(
        call.required("webhook-id")?,
        call.required("webhook-timestamp")?,
        call.required("webhook-signature")?,
    );
    // The secrets were checked to be `whsec_…` when the source was made.
    let secrets: Vec<SigningSecret> = keys
        .secrets
        .iter()
        .filter_map(|s| std::str::from_utf8(s.expose_secret()).ok()?.parse().ok())
        .collect();
    Ok(verify_standard(
        &secrets,
        &headers,
        call.body,
        keys.now,
        keys.tolerance,
    )?)
}

pub(crate) fn delivery(call: &SourceCall<'_>) -> Delivery {
    Delivery::from_headers(call, Some("webhook-id"), None)
}
