//! Checking signed webhooks, as the Standard Webhooks specification defines them:
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers carrying
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw body}">`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::error::WebhookError;
use crate::token::SigningSecret;

/// How far a signed timestamp may be from the receiver's clock, in either
/// direction, by default: 5 minutes.
pub const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The Standard Webhooks headers of a call.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignatureHeaders {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signatures: String,
}

impl SignatureHeaders {
    pub(crate) fn verify(
        &self,
        secrets: &[SigningSecret],
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), WebhookError> {
        verify_signature(
            secrets,
            &self.id,
            &self.timestamp,
            &self.signatures,
            body,
            now,
            tolerance,
        )
    }
}

/// Checks a Standard Webhooks signature: the timestamp must be within
/// `tolerance` of `now` (either direction), and one of the space-separated
/// `v1,<base64>` signatures must be the HMAC-SHA256 of
/// `"{id}.{timestamp}.{body}"` under one of `secrets` (several while rotating).
/// Comparisons are constant-time.
///
/// # Errors
///
/// [`WebhookError::StaleTimestamp`] for a timestamp outside the window;
/// [`WebhookError::InvalidSignature`] for anything else that does not verify
/// (no secret, an empty id, a timestamp that is not a number, no matching
/// signature).
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use process_webhook::{verify_signature, SigningSecret, DEFAULT_SIGNATURE_TOLERANCE};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let secret: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse()?;
/// let now = UNIX_EPOCH + Duration::from_secs(1649367553 + 60);
/// verify_signature(
///     &[secret],
///     "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
///     "1649367553",
///     "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
///     br#"{"email":"test@example.com","username":"test_user"}"#,
///     now,
///     DEFAULT_SIGNATURE_TOLERANCE,
/// )?;
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
pub fn verify_signature(
    secrets: &[SigningSecret],
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), WebhookError> {
    if secrets.is_empty() || id.is_empty() {
        return Err(WebhookError::InvalidSignature);
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::InvalidSignature)?;
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    if now.abs_diff(ts) > tolerance.as_secs() {
        return Err(WebhookError::StaleTimestamp);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let expected = secret.mac(id, ts, body).finalize().into_bytes();
        for candidate in &candidates {
            matched |= expected.as_slice().ct_eq(candidate);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}
