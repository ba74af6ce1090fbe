//! Signed webhooks, as the Standard Webhooks specification defines them:
//! an environment's [`SigningSecret`]s, the `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers of a call
//! ([`SignatureHeaders`]), and their check ([`SignatureVerifier`]) over
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw body}">`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::WebhookError;

/// How far a signed timestamp may be from the receiver's clock, in either
/// direction, by default: 5 minutes.
pub(crate) const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A secret that signs an environment's webhooks: `whsec_` followed by the
/// base64 of the key bytes.
///
/// Its `Debug` does not show the key; equality is constant-time.
///
/// # Example
///
/// ```
/// use process_webhook::SigningSecret;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let secret: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse()?;
/// let signature = secret.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, br#"{"email":"test@example.com","username":"test_user"}"#);
/// assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
/// assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone)]
pub struct SigningSecret(Arc<[u8]>);

impl SigningSecret {
    /// A new secret of 32 random bytes from the operating system.
    ///
    /// # Panics
    ///
    /// Only when the operating system has no random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(Arc::from(&bytes[..]))
    }

    /// The secret in its `whsec_…` form, to hand to the sender.
    ///
    /// # Security Warning
    ///
    /// Anyone with it can sign calls; show it once, never log it.
    pub fn expose_secret(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.0))
    }

    /// The `v1,<base64>` signature of a call.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    pub(crate) fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl std::str::FromStr for SigningSecret {
    type Err = InvalidSigningSecret;

    /// Reads `whsec_<base64>` (the prefix is optional), at least 1 byte.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s.strip_prefix("whsec_").unwrap_or(s);
        match STANDARD.decode(encoded) {
            Ok(bytes) if !bytes.is_empty() => Ok(Self(bytes.into())),
            _ => Err(InvalidSigningSecret),
        }
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SigningSecret {}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// A signing secret's text is not `whsec_` and base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a signing secret must be `whsec_` followed by non-empty base64")]
pub struct InvalidSigningSecret;

/// Why a signed call did not verify: the error of [`SignatureVerifier`].
///
/// It converts into [`WebhookError::InvalidSignature`] or
/// [`WebhookError::StaleTimestamp`], whose status and code it also answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature matches (or the id or timestamp is missing or not a
    /// number, or there is no secret): `401 invalid_signature`.
    #[error("the webhook signature does not verify")]
    Invalid,
    /// The signed timestamp is outside the tolerance: `401 stale_timestamp`.
    #[error("the webhook timestamp is outside the tolerance")]
    Stale,
}

impl SignatureError {
    /// `401`, as [`WebhookError::status`] answers it.
    pub fn status(&self) -> u16 {
        WebhookError::from(*self).status()
    }

    /// `invalid_signature` or `stale_timestamp`, as [`WebhookError::code`]
    /// answers it.
    pub fn code(&self) -> &'static str {
        WebhookError::from(*self).code()
    }
}

impl From<SignatureError> for WebhookError {
    fn from(error: SignatureError) -> Self {
        match error {
            SignatureError::Invalid => WebhookError::InvalidSignature,
            SignatureError::Stale => WebhookError::StaleTimestamp,
        }
    }
}

/// The Standard Webhooks headers of a call: `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` (one or more space-separated
/// `v1,<base64>` signatures).
///
/// Read from a raw call by the HTTP edge; build them directly to check a
/// call a host received some other way ([`SignatureVerifier::verify`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signatures: String,
}

impl SignatureHeaders {
    /// The headers' values, as sent.
    pub fn new(id: impl Into<String>, timestamp: impl Into<String>, signatures: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            timestamp: timestamp.into(),
            signatures: signatures.into(),
        }
    }

    /// `webhook-id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `webhook-timestamp`.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// `webhook-signature`.
    pub fn signatures(&self) -> &str {
        &self.signatures
    }
}

/// Checks Standard Webhooks signatures against an environment's secrets
/// (several while a secret is rotated), with a tolerance for the signed
/// timestamp (default [`SignatureVerifier::DEFAULT_TOLERANCE`](crate::SignatureVerifier::DEFAULT_TOLERANCE), 5 minutes either
/// way). Comparisons are constant-time; its `Debug` shows no secret.
///
/// # Example
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use process_webhook::{SignatureHeaders, SignatureVerifier, SigningSecret};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let secret: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse()?;
/// let verifier = SignatureVerifier::new([secret]);
/// let headers = SignatureHeaders::new(
///     "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
///     "1649367553",
///     "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
/// );
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
/// let now = UNIX_EPOCH + Duration::from_secs(1649367553 + 60);
/// verifier.verify_at(body, &headers, now)?;
/// let err = verifier.verify_at(b"{}", &headers, now).unwrap_err();
/// assert_eq!(err.code(), "invalid_signature");
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SignatureVerifier {
    secrets: Vec<SigningSecret>,
    tolerance: Duration,
}

impl SignatureVerifier {
    /// How far a signed timestamp may be from the receiver's clock, in either
    /// direction, by default: 5 minutes.
    pub const DEFAULT_TOLERANCE: Duration = DEFAULT_SIGNATURE_TOLERANCE;
}

impl SignatureVerifier {
    /// A verifier of signatures made with any of `secrets`.
    pub fn new(secrets: impl IntoIterator<Item = SigningSecret>) -> Self {
        Self {
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_SIGNATURE_TOLERANCE,
        }
    }

    /// Sets how far a signed timestamp may be from the clock, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The tolerance for the signed timestamp.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// Checks `headers` over the raw `body`, against the system clock.
    ///
    /// # Errors
    ///
    /// As [`verify_at`](Self::verify_at).
    pub fn verify(&self, body: &[u8], headers: &SignatureHeaders) -> Result<(), SignatureError> {
        self.verify_at(body, headers, SystemTime::now())
    }

    /// Checks `headers` over the raw `body`, with `now` as the clock: the
    /// timestamp must be within the tolerance of `now` (either direction),
    /// and one of the `v1,<base64>` signatures must be the HMAC-SHA256 of
    /// `"{id}.{timestamp}.{body}"` under one of the secrets.
    ///
    /// # Errors
    ///
    /// [`SignatureError::Stale`] for a timestamp outside the window;
    /// [`SignatureError::Invalid`] for anything else that does not verify
    /// (no secret, an empty id, a timestamp that is not a number, no
    /// matching signature).
    pub fn verify_at(
        &self,
        body: &[u8],
        headers: &SignatureHeaders,
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        verify(&self.secrets, headers, body, now, self.tolerance)
    }
}

/// The check of [`SignatureVerifier::verify_at`], over secrets the caller
/// holds (an environment's), without collecting them.
pub(crate) fn verify(
    secrets: &[SigningSecret],
    headers: &SignatureHeaders,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let SignatureHeaders {
        id,
        timestamp,
        signatures,
    } = headers;
    if secrets.is_empty() || id.is_empty() {
        return Err(SignatureError::Invalid);
    }
    let ts = check_timestamp(timestamp, now, tolerance)?;
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
        Err(SignatureError::Invalid)
    }
}

/// A signed Unix timestamp (seconds), if it is within `tolerance` of `now`
/// either way: `invalid_signature` for one that is not a number,
/// `stale_timestamp` for one outside the window.
pub(crate) fn check_timestamp(
    timestamp: &str,
    now: SystemTime,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Invalid)?;
    let now = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    if now.abs_diff(ts) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_secrets_are_equal_exactly_when_their_bytes_are() {
        let a: SigningSecret = "whsec_c2VjcmV0LWE=".parse().unwrap();
        let same: SigningSecret = "c2VjcmV0LWE=".parse().unwrap(); // the prefix is optional
        let b: SigningSecret = "whsec_c2VjcmV0LWI=".parse().unwrap();
        assert!(a == same);
        assert!(a != b);
        assert!(a != SigningSecret::generate());
    }
}
