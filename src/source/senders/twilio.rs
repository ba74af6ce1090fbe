//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1>` over the URL Twilio
//! called (the source's public origin, then the call's path and query)
//! followed by the form's parameters sorted by name, each name then its
//! value (a repeated name: its distinct values, sorted). A JSON body is
//! signed by its SHA-256 in the URL's `bodySHA256` parameter instead, and
//! the signature is then over the URL alone. As Twilio's own libraries do,
//! the URL is tried with and without the scheme's default port. The
//! delivery id is `I-Twilio-Idempotency-Token`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::WebhookError;
use crate::source::call::{Delivery, Keys, SourceCall, from_base64, from_hex};
use crate::source::{HmacAlgorithm, PublicOrigin};

pub(crate) fn verify(
    origin: &PublicOrigin,
    call: &SourceCall<'_>,
    keys: &Keys<'_>,
) -> Result<(), WebhookError> {
    let sent = call.required("x-twilio-signature")?;
    let sent = from_base64(sent).ok_or(WebhookError::InvalidSignature)?;
    let body_hash = query_value(call.target, "bodySHA256");
    let params = match &body_hash {
        Some(_) => String::new(),
        None => sorted_params(call.body),
    };
    let signed = [origin.as_str(), with_other_port(origin.as_str()).as_str()]
        .into_iter()
        .any(|origin| {
            let parts: [&[u8]; 3] = [origin.as_bytes(), call.target.as_bytes(), params.as_bytes()];
            keys.any_mac(HmacAlgorithm::Sha1, &parts, &sent)
        });
    if !signed {
        return Err(WebhookError::InvalidSignature);
    }
    match body_hash {
        Some(hash) => {
            let expected = Sha256::digest(call.body);
            let sent = from_hex(&hash).ok_or(WebhookError::InvalidSignature)?;
            if bool::from(expected.as_slice().ct_eq(&*sent)) {
                Ok(())
            } else {
                Err(WebhookError::InvalidSignature)
            }
        }
        None => Ok(()),
    }
}

pub(crate) fn delivery(call: &SourceCall<'_>) -> Delivery {
    Delivery::from_headers(call, Some("i-twilio-idempotency-token"), None)
}

/// The form's parameters as Twilio signs them: sorted by name, each name
/// followed by its value; a repeated name once per distinct value, the
/// values sorted.
fn sorted_params(body: &[u8]) -> String {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        params
            .entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    let mut signed = String::new();
    for (name, mut values) in params {
        values.sort();
        values.dedup();
        for value in values {
            signed.push_str(&name);
            signed.push_str(&value);
        }
    }
    signed
}

/// The value of query parameter `name` in `target`, decoded.
fn query_value(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The origin with the scheme's default port when it has none, or without
/// its port when it has one.
fn with_other_port(origin: &str) -> String {
    let (scheme, host) = origin.split_once("://").unwrap_or(("https", origin));
    // A colon after an IPv6 literal's closing bracket starts the port
    // (the search may start at the bracket: it is not a colon).
    let after = host.rfind(']').unwrap_or(0);
    match host[after..].find(':') {
        Some(colon) => format!("{scheme}://{}", &host[..after + colon]),
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{host}:{port}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_port_is_added_or_removed() {
        assert_eq!(with_other_port("https://a.example"), "https://a.example:443");
        assert_eq!(with_other_port("http://a.example"), "http://a.example:80");
        assert_eq!(with_other_port("https://a.example:8443"), "https://a.example");
        assert_eq!(with_other_port("http://[::1]:80"), "http://[::1]");
        assert_eq!(with_other_port("http://[::1]"), "http://[::1]:80");
        assert_eq!(with_other_port("http://[::]:8080"), "http://[::]");
        assert_eq!(with_other_port("https://[::]"), "https://[::]:443");
    }

    #[test]
    fn params_are_sorted_by_name_and_repeated_values_deduplicated() {
        assert_eq!(
            sorted_params(b"To=%2B1&From=%2B2&Body=hi+there"),
            "Bodyhi thereFrom+2To+1"
        );
        assert_eq!(sorted_params(b"b=2&a=1&b=1&b=2"), "a1b1b2");
        assert_eq!(sorted_params(b""), "");
    }

    #[test]
    fn a_query_value_is_found_and_decoded() {
        assert_eq!(
            query_value("/w?uid=1&bodySHA256=ab%63", "bodySHA256").as_deref(),
            Some("abc")
        );
        assert_eq!(query_value("/w?uid=1", "bodySHA256"), None);
        assert_eq!(query_value("/w", "uid"), None);
    }
}
