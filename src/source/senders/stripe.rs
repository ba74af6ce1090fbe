//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]` over
//! `{t}.{body}` with HMAC-SHA256 (the secret is the whole `whsec_…` text,
//! as Stripe's libraries use it); the delivery id is the event's `id`, the
//! event its `type`.

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::source::HmacAlgorithm;
use crate::source::call::{Delivery, Keys, SourceCall, from_hex, text_at};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let header = call.required("stripe-signature")?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim_ascii().split_once('=') {
            Some(("t", t)) if timestamp.is_none() => timestamp = Some(t),
            Some(("v1", v1)) => signatures.extend(from_hex(v1)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::InvalidSignature)?;
    keys.fresh(timestamp)?;
    let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", call.body];
    let mut matched = false;
    for signature in &signatures {
        matched |= keys.any_mac(HmacAlgorithm::Sha256, &parts, signature);
    }
    if matched {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

pub(crate) fn delivery(payload: &Map<String, Value>) -> Delivery {
    Delivery {
        id: text_at(payload, &["id"]),
        event: text_at(payload, &["type"]),
        ..Delivery::default()
    }
}
