//! [`SourceSecret`]: a secret a sender signs its deliveries with (or, for
//! `gitlab` and `basic`, sends as it is).

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A source's secret, as the sender's settings show it (GitHub's "Secret",
/// Stripe's `whsec_…` signing secret, Slack's signing secret, Shopify's
/// client secret, Twilio's auth token, GitLab's secret token, a Standard
/// Webhooks `whsec_…` secret, the password of `basic`).
///
/// Its `Debug` shows no byte of it; equality is constant-time.
///
/// # Example
///
/// ```
/// use process_webhook::SourceSecret;
///
/// let secret = SourceSecret::new("It's a Secret to Everybody").unwrap();
/// assert_eq!(format!("{secret:?}"), "SourceSecret([redacted])");
/// assert!(SourceSecret::new("").is_err());
/// ```
#[derive(Clone)]
pub struct SourceSecret(Arc<[u8]>);

impl SourceSecret {
    /// A secret of the bytes of `secret`.
    ///
    /// # Errors
    ///
    /// [`EmptySourceSecret`] for an empty secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, EmptySourceSecret> {
        let bytes = secret.as_ref();
        if bytes.is_empty() {
            return Err(EmptySourceSecret);
        }
        Ok(Self(Arc::from(bytes)))
    }

    /// The secret's bytes, for a store that must keep them (encrypted).
    ///
    /// # Security Warning
    ///
    /// Anyone with them can sign deliveries: never log or show them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Whether `sent` is this secret, compared as SHA-256 digests in
    /// constant time (so that neither its bytes nor its length leak).
    pub(crate) fn matches(&self, sent: &[u8]) -> bool {
        digests_match(&self.0, sent)
    }
}

impl PartialEq for SourceSecret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for SourceSecret {}

impl fmt::Debug for SourceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceSecret([redacted])")
    }
}

/// Whether `a` and `b` are the same bytes, compared as SHA-256 digests in
/// constant time (so that neither their bytes nor their lengths leak).
pub(crate) fn digests_match(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// A source secret must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a source secret must not be empty")]
pub struct EmptySourceSecret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_equal_exactly_when_their_bytes_are() {
        let a = SourceSecret::new("secret-a").unwrap();
        assert!(a == SourceSecret::new(b"secret-a").unwrap());
        assert!(a != SourceSecret::new("secret-b").unwrap());
        assert!(a != SourceSecret::new("secret-a ").unwrap());
        assert!(a.matches(b"secret-a") && !a.matches(b"secret"));
        assert_eq!(a.expose_secret(), b"secret-a");
    }

    #[test]
    fn debug_shows_no_byte_of_the_secret() {
        let secret = SourceSecret::new("secret-a").unwrap();
        assert_eq!(format!("{secret:?}"), "SourceSecret([redacted])");
    }
}
