//! A generic HMAC: the signature in the header the source names (after an
//! optional prefix), in hex or base64, over the body or, with a timestamp
//! header, over `{timestamp}.{body}`; the delivery id in the header the
//! source names, if any.

use crate::error::WebhookError;
use crate::source::call::{Delivery, Keys, SourceCall, from_base64, from_hex};
use crate::source::{HmacEncoding, HmacScheme};

pub(crate) fn verify(
    scheme: &HmacScheme,
    call: &SourceCall<'_>,
    keys: &Keys<'_>,
) -> Result<(), WebhookError> {
    let sent = call.required(scheme.header())?;
    let sent = sent
        .strip_prefix(scheme.prefix())
        .and_then(|s| match scheme.encoding() {
            HmacEncoding::Hex => from_hex(s),
            HmacEncoding::Base64 => from_base64(s),
        })
        .ok_or(WebhookError::InvalidSignature)?;
    match scheme.timestamp_header() {
        Some(header) => {
            let timestamp = call.required(header)?;
            keys.fresh(timestamp)?;
            keys.expect_mac(
                scheme.algorithm(),
                &[timestamp.as_bytes(), b".", call.body],
                &sent,
            )
        }
        None => keys.expect_mac(scheme.algorithm(), &[call.body], &sent),
    }
}

pub(crate) fn delivery(scheme: &HmacScheme, call: &SourceCall<'_>) -> Delivery {
    Delivery::from_headers(call, scheme.delivery_header(), None)
}
