//! A delivery as the schemes check it ([`SourceCall`]), what it says once
//! checked ([`Delivery`]), and the pieces the schemes share: HMACs over
//! several parts, the secrets tried in turn, a signed timestamp's window.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::WebhookError;
use crate::signature::check_timestamp;
use crate::source::{HmacAlgorithm, SourceSecret};

/// The raw parts of a delivery a scheme checks: its headers (names in
/// lower case), its body as received, and its target (path and query).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SourceCall<'a> {
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
    pub(crate) target: &'a str,
}

impl<'a> SourceCall<'a> {
    /// The first value of header `name` (lower case), trimmed.
    pub(crate) fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim_ascii())
    }

    /// The value of header `name`, or `401 missing_signature`.
    pub(crate) fn required(&self, name: &str) -> Result<&'a str, WebhookError> {
        self.header(name)
            .filter(|v| !v.is_empty())
            .ok_or(WebhookError::MissingSignature)
    }
}

/// What a source's check is made with: its secrets and the clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keys<'a> {
    pub(crate) secrets: &'a [SourceSecret],
    pub(crate) now: SystemTime,
    pub(crate) tolerance: Duration,
}

impl Keys<'_> {
    /// Whether `sent` is the HMAC of the concatenated `parts` under one of
    /// the secrets; each comparison constant-time, nothing allocated.
    pub(crate) fn any_mac(&self, algorithm: HmacAlgorithm, parts: &[&[u8]], sent: &[u8]) -> bool {
        fn matches<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            parts: &[&[u8]],
            sent: &[u8],
        ) -> subtle::Choice {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().as_slice().ct_eq(sent)
        }
        let mut matched = subtle::Choice::from(0u8);
        for secret in self.secrets {
            let key = secret.expose_secret();
            matched |= match algorithm {
                HmacAlgorithm::Sha256 => matches::<Hmac<Sha256>>(key, parts, sent),
                HmacAlgorithm::Sha512 => matches::<Hmac<Sha512>>(key, parts, sent),
                HmacAlgorithm::Sha1 => matches::<Hmac<Sha1>>(key, parts, sent),
            };
        }
        matched.into()
    }

    /// [`any_mac`](Self::any_mac) as a result: `401 invalid_signature`
    /// when no secret signed it.
    pub(crate) fn expect_mac(
        &self,
        algorithm: HmacAlgorithm,
        parts: &[&[u8]],
        sent: &[u8],
    ) -> Result<(), WebhookError> {
        if self.any_mac(algorithm, parts, sent) {
            Ok(())
        } else {
            Err(WebhookError::InvalidSignature)
        }
    }

    /// Whether `sent` is one of the secrets itself (GitLab's token, a
    /// Basic password), each compared as digests in constant time.
    pub(crate) fn any_secret(&self, sent: &[u8]) -> bool {
        let mut matched = false;
        for secret in self.secrets {
            matched |= secret.matches(sent);
        }
        matched
    }

    /// A signed Unix timestamp, if it is within the tolerance of the clock.
    pub(crate) fn fresh(&self, timestamp: &str) -> Result<(), WebhookError> {
        check_timestamp(timestamp, self.now, self.tolerance)?;
        Ok(())
    }
}

/// A signature as sent, decoded: at most 64 bytes (SHA-512's), on the
/// stack.
#[derive(Clone, Copy)]
pub(crate) struct Sent {
    bytes: [u8; 64],
    len: usize,
}

impl std::ops::Deref for Sent {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Hex digits (either case) of at most 64 bytes; `None` for anything else.
pub(crate) fn from_hex(text: &str) -> Option<Sent> {
    // (An odd length fails the decoding: it must fill exactly `len` bytes.)
    let len = text.len() / 2;
    if len > 64 {
        return None;
    }
    let mut sent = Sent { bytes: [0; 64], len };
    hex::decode_to_slice(text, &mut sent.bytes[..len]).ok()?;
    Some(sent)
}

/// Standard base64 (padded) of at most 64 bytes; `None` for anything else.
pub(crate) fn from_base64(text: &str) -> Option<Sent> {
    use base64::Engine as _;
    let mut sent = Sent {
        bytes: [0; 64],
        len: 0,
    };
    // A longer text cannot decode to 64 bytes or fewer.
    if text.len() > 88 {
        return None;
    }
    sent.len = base64::engine::general_purpose::STANDARD
        .decode_slice(text, &mut sent.bytes)
        .ok()?;
    Some(sent)
}

/// What a checked delivery says: its id (the idempotency key, where the
/// caller sent none), its event, and what to do with it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) reaction: Reaction,
}

/// What a checked delivery asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Start the process (if the source's events allow it).
    #[default]
    Start,
    /// A sender's own check of the endpoint (GitHub's `ping`): answered
    /// `200` as an ignored event, nothing started.
    Ping,
    /// Slack's `url_verification`: answered `200` with the challenge.
    Challenge(String),
}

impl Delivery {
    /// A delivery with the id and event of headers `id` and `event`.
    pub(crate) fn from_headers(call: &SourceCall<'_>, id: Option<&str>, event: Option<&str>) -> Self {
        let read = |name: Option<&str>| {
            name.and_then(|n| call.header(n))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Self {
            id: read(id),
            event: read(event),
            reaction: Reaction::Start,
        }
    }
}

/// The text at `path` in a JSON payload, if it is a string.
pub(crate) fn text_at(payload: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut value = payload.get(*first)?;
    for name in rest {
        value = value.get(name)?;
    }
    value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hex_signature_is_at_most_64_bytes_of_an_even_count_of_digits() {
        let sha512 = "ab".repeat(64);
        assert_eq!(from_hex(&sha512).as_deref(), Some(&[0xab; 64][..]));
        assert_eq!(from_hex("00FF").as_deref(), Some(&[0, 255][..]));
        assert!(from_hex(&"ab".repeat(65)).is_none());
        assert!(from_hex(&format!("{sha512}a")).is_none());
        assert!(from_hex("abc").is_none());
        assert!(from_hex("zz").is_none());
        assert_eq!(from_hex("").as_deref(), Some(&[][..]));
    }

    #[test]
    fn a_base64_signature_is_at_most_64_bytes() {
        use base64::Engine as _;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(from_base64(&encode(&[7; 64])).as_deref(), Some(&[7; 64][..]));
        assert!(from_base64(&encode(&[7; 65])).is_none());
        assert!(from_base64("not base64!").is_none());
    }
}
