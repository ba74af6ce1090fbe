//! Environment tokens: the secret a webhook caller presents, and its digest,
//! the only form in which a store should keep it.

use std::fmt;
use std::hash::{Hash, Hasher};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The secret token of one environment, sent by a webhook caller in the
/// `authorization` header.
///
/// It has no `Display` and no `Serialize`, and its `Debug` prints
/// `EnvironmentToken([redacted])`, so that it cannot reach a log or an error by
/// accident. Stores keep its [`TokenDigest`], never the token.
///
/// # Example
///
/// ```
/// use process_webhook::EnvironmentToken;
///
/// let token = EnvironmentToken::generate();
/// assert_eq!(format!("{token:?}"), "EnvironmentToken([redacted])");
/// assert!(token.expose_secret().len() >= 22);
/// ```
#[derive(Clone)]
pub struct EnvironmentToken(String);

impl EnvironmentToken {
    /// A token with this text (as sent by a caller, or as configured by an
    /// operator).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// A new token: 256 bits from the operating system's random source, as 43
    /// characters of URL-safe base64 (no padding).
    ///
    /// # Panics
    ///
    /// Only when the operating system has no random source at all (which
    /// `getrandom` reports as an error); a token made from anything weaker
    /// would be worse than no token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The secret text.
    ///
    /// # Security Warning
    ///
    /// Leaking the secret lets anyone start the environment's processes. Use it
    /// only to send it (e.g. in an `authorization` header) or to show it once
    /// to the operator who created it; never log or store it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The SHA-256 digest of the token: what a [`TokenStore`](crate::TokenStore)
    /// keeps and looks up by.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for EnvironmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvironmentToken([redacted])")
    }
}

/// The SHA-256 digest of an [`EnvironmentToken`].
///
/// Equality is decided in constant time (`subtle`), so a map keyed by digests
/// compares presented and stored tokens without a timing side channel; `Hash`
/// lets such a map find the entry without scanning. Its `Debug` does not print
/// the bytes.
///
/// # Example
///
/// ```
/// use process_webhook::{EnvironmentToken, TokenDigest};
///
/// let token = EnvironmentToken::new("s3cr3t");
/// let stored: TokenDigest = token.digest();
/// assert_eq!(EnvironmentToken::new("s3cr3t").digest(), stored);
/// assert_ne!(EnvironmentToken::new("s3cr3T").digest(), stored);
/// // A host that keeps digests in a database stores and reloads the bytes.
/// assert_eq!(TokenDigest::from_bytes(*stored.as_bytes()), stored);
/// ```
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// A digest from its 32 bytes (as a host stored them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as four words, which `subtle` compares in four steps
    /// rather than thirty-two.
    fn words(&self) -> [u64; 4] {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *word = u64::from_ne_bytes(bytes);
        }
        words
    }
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        self.words()[..].ct_eq(&other.words()[..]).into()
    }
}

impl Eq for TokenDigest {}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// A digest is serialized as its 64 lower-case hex digits (a digest is not
/// the token: storing it is the point). Tokens themselves are never
/// serialized.
impl serde::Serialize for TokenDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut hex = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(byte >> 4)];
            hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        serializer.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl<'de> serde::Deserialize<'de> for TokenDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(deserializer)?;
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        };
        let bytes = text.as_bytes();
        let mut digest = [0u8; 32];
        if bytes.len() != 64 {
            return Err(serde::de::Error::invalid_length(bytes.len(), &"64 hex digits"));
        }
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            match (digit(pair[0]), digit(pair[1])) {
                (Some(high), Some(low)) => digest[i] = high << 4 | low,
                _ => return Err(serde::de::Error::custom("a token digest is 64 hex digits")),
            }
        }
        Ok(Self(digest))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_url_safe_and_256_bits() {
        let a = EnvironmentToken::generate();
        let b = EnvironmentToken::generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), 43);
        assert!(
            a.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn debug_of_token_and_digest_hides_the_secret() {
        let token = EnvironmentToken::new("super-secret-value");
        let shown = format!("{token:?} {:?} {token:#?}", token.digest());
        assert!(!shown.contains("super-secret-value"));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn digest_is_sha256_of_the_text() {
        // SHA-256("abc") from FIPS 180-2.
        let digest = EnvironmentToken::new("abc").digest();
        assert_eq!(digest.as_bytes()[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn debug_of_a_token_is_its_type_and_redacted() {
        let token = EnvironmentToken::new("super-secret-value");
        assert_eq!(format!("{token:?}"), "EnvironmentToken([redacted])");
    }

    #[test]
    fn digests_hash_by_their_bytes() {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        // Stores key hash maps by digest: two tokens must not share a bucket
        // by construction (every digest hashing alike would make each look-up
        // walk the whole map).
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let (a, b) = (
            EnvironmentToken::new("a").digest(),
            EnvironmentToken::new("b").digest(),
        );
        assert_eq!(
            hasher.hash_one(a),
            hasher.hash_one(EnvironmentToken::new("a").digest())
        );
        assert_ne!(hasher.hash_one(a), hasher.hash_one(b));
    }

    #[test]
    fn digests_differing_in_any_one_bit_are_unequal() {
        let bytes = *EnvironmentToken::new("abc").digest().as_bytes();
        assert_eq!(TokenDigest::from_bytes(bytes), TokenDigest::from_bytes(bytes));
        for at in 0..32 {
            for bit in [0x01, 0x80] {
                let mut other = bytes;
                other[at] ^= bit;
                assert_ne!(
                    TokenDigest::from_bytes(bytes),
                    TokenDigest::from_bytes(other),
                    "byte {at}, bit {bit:#x}"
                );
            }
        }
    }
}
