//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`, the
//! delivery id in `X-Shopify-Webhook-Id`, the event in `X-Shopify-Topic`.

use crate::error::WebhookError;
use crate::source::HmacAlgorithm;
use crate::source::call::{Delivery, Keys, SourceCall, from_base64};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let sent = call.required("x-shopify-hmac-sha256")?;
    let sent = from_base64(sent).ok_or(WebhookError::InvalidSignature)?;
    keys.expect_mac(HmacAlgorithm::Sha256, &[call.body], &sent)
}

pub(crate) fn delivery(call: &SourceCall<'_>) -> Delivery {
    Delivery::from_headers(call, Some("x-shopify-webhook-id"), Some("x-shopify-topic"))
}
