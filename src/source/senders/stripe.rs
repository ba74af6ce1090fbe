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
            // As Stripe's own libraries read it: the last `t` counts.
            Some(("t", t)) => timestamp = Some(t),
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::source::SourceSecret;

    #[test]
    fn the_last_timestamp_counts_as_stripe_s_libraries_read_it() {
        let secret = [SourceSecret::new("whsec_test").unwrap()];
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let keys = Keys {
            secrets: &secret,
            now,
            tolerance: Duration::from_secs(300),
        };
        // Made by Stripe's library (npm `stripe`, `generateTestHeaderString`)
        // for the body `{}` at 1700000000.
        let sig = "35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91";
        let header = |value: String| vec![("stripe-signature".to_owned(), value)];
        let verify_with = |value: String| {
            let headers = header(value);
            verify(
                &SourceCall {
                    headers: &headers,
                    body: b"{}",
                    target: "/",
                },
                &keys,
            )
        };
        assert!(verify_with(format!("t=1,t=1700000000,v1={sig}")).is_ok());
        assert_eq!(
            verify_with(format!("t=1700000000,t=1,v1={sig}"))
                .unwrap_err()
                .code(),
            "stale_timestamp"
        );
    }
}
