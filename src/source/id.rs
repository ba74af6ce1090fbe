//! [`SourceId`]: the name of a webhook source in its URL (`&source=…`).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

/// The longest source id: 64 characters.
pub const MAX_SOURCE_ID_LEN: usize = 64;

/// The id of a [`WebhookSource`](crate::WebhookSource), as it appears in
/// its webhook URL (`…/webhook/send?uid={process}&source={id}`).
///
/// 1 to 64 URL-safe characters (ASCII letters, digits, `-`, `.`, `_`,
/// `~`: RFC 3986's unreserved set, which needs no escaping in a query),
/// chosen by the host, or [generated](Self::generate) with 128 random bits.
///
/// # Example
///
/// ```
/// use process_webhook::SourceId;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let id: SourceId = "github-orders".parse()?;
/// assert_eq!(id.as_str(), "github-orders");
/// assert!("github orders".parse::<SourceId>().is_err());
/// assert_ne!(SourceId::generate(), SourceId::generate());
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SourceId(SmolStr);

impl SourceId {
    /// A source id from `id`, if it is 1 to 64 URL-safe characters.
    ///
    /// # Errors
    ///
    /// [`InvalidSourceId`] for an empty id, a longer one, or one with any
    /// other character.
    pub fn new(id: &str) -> Result<Self, InvalidSourceId> {
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if id.is_empty() || id.len() > MAX_SOURCE_ID_LEN || !id.bytes().all(url_safe) {
            return Err(InvalidSourceId);
        }
        Ok(Self(SmolStr::new(id)))
    }

    /// A new id: `src_` and 128 random bits from the operating system, in
    /// URL-safe base64 (26 characters).
    ///
    /// # Panics
    ///
    /// Only when the operating system has no random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(SmolStr::new(format!("src_{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SourceId {
    type Err = InvalidSourceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({})", self.0)
    }
}

/// A source id is not 1 to 64 URL-safe characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a source id must be 1 to 64 characters, each an ASCII letter, a digit, `-`, `.`, `_` or `~`")]
pub struct InvalidSourceId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_id_is_one_to_sixty_four_url_safe_characters() {
        assert!(SourceId::new("a").is_ok());
        assert!(SourceId::new(&"a".repeat(64)).is_ok());
        assert_eq!(SourceId::new(&"a".repeat(65)), Err(InvalidSourceId));
        assert_eq!(SourceId::new(""), Err(InvalidSourceId));
        assert!(SourceId::new("A-z.0_9~").is_ok());
        for bad in ["a b", "a/b", "a&b", "a=b", "a%20", "é", "a+b"] {
            assert_eq!(SourceId::new(bad), Err(InvalidSourceId), "{bad}");
        }
    }

    #[test]
    fn a_generated_id_is_valid_and_carries_128_random_bits() {
        let id = SourceId::generate();
        assert_eq!(id.as_str().len(), 26);
        assert!(id.as_str().starts_with("src_"));
        assert_eq!(SourceId::new(id.as_str()), Ok(id.clone()));
        let bits = URL_SAFE_NO_PAD.decode(&id.as_str()[4..]).unwrap();
        assert_eq!(bits.len(), 16);
    }

    #[test]
    fn serde_refuses_an_invalid_id() {
        let id: SourceId = serde_json::from_str("\"github\"").unwrap();
        assert_eq!(id.to_string(), "github");
        assert!(serde_json::from_str::<SourceId>("\"git hub\"").is_err());
        assert_eq!(format!("{id:?}"), "SourceId(github)");
    }
}
