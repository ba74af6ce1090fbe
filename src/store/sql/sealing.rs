//! Source secrets at rest: sealed with AES-256-GCM (RustCrypto `aes-gcm`)
//! under the host's [`EncryptionKey`]s, each sealed secret naming its key
//! so that a new key can be rolled in while rows sealed under an older one
//! still open.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::source::SourceSecret;
use crate::store::StoreError;

/// A key that seals source secrets in `PostgresStore` and `SqliteStore`:
/// 32 bytes, and an id (1 to 32 characters: letters, digits, `-`, `_`, `.`)
/// stored beside each secret it seals.
///
/// Its `Debug` shows the id, never the key.
///
/// # Example
///
/// ```
/// use process_webhook::EncryptionKey;
///
/// // `openssl rand -base64 32`
/// let key = EncryptionKey::from_base64("2026-12", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=").unwrap();
/// assert_eq!(key.id(), "2026-12");
/// assert_eq!(format!("{key:?}"), "EncryptionKey { id: \"2026-12\", key: [redacted] }");
/// assert!(EncryptionKey::from_base64("2026-12", "c2hvcnQ=").is_err());
/// ```
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: Arc<Aes256Gcm>,
}

impl EncryptionKey {
    /// A key of `bytes`, named `id`.
    ///
    /// # Errors
    ///
    /// [`InvalidEncryptionKey::Id`] for an id that breaks the rule above.
    pub fn new(id: &str, bytes: [u8; 32]) -> Result<Self, InvalidEncryptionKey> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if id.is_empty() || id.len() > 32 || !id.bytes().all(allowed) {
            return Err(InvalidEncryptionKey::Id);
        }
        Ok(Self {
            id: id.to_owned(),
            cipher: Arc::new(Aes256Gcm::new(&bytes.into())),
        })
    }

    /// A key from the standard base64 of its 32 bytes (as
    /// `openssl rand -base64 32` prints them), named `id`.
    ///
    /// # Errors
    ///
    /// [`InvalidEncryptionKey::Key`] when `base64` is not the base64 of
    /// 32 bytes; [`InvalidEncryptionKey::Id`] for a bad id.
    pub fn from_base64(id: &str, base64: &str) -> Result<Self, InvalidEncryptionKey> {
        let bytes = STANDARD
            .decode(base64.trim_ascii())
            .map_err(|_| InvalidEncryptionKey::Key)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| InvalidEncryptionKey::Key)?;
        Self::new(id, bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

/// An [`EncryptionKey`] cannot be made as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEncryptionKey {
    /// The key is not the standard base64 of exactly 32 bytes.
    #[error("an encryption key must be the base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)")]
    Key,
    /// The id is not 1 to 32 letters, digits, `-`, `_` or `.`.
    #[error("an encryption key's id must be 1 to 32 letters, digits, `-`, `_` or `.`")]
    Id,
}

/// The keys a store seals with (the first) and opens with (any).
#[derive(Clone, Debug, Default)]
pub(crate) struct Keys(Vec<EncryptionKey>);

/// One secret as a row holds it (sealed: its `Debug` shows nothing
/// secret).
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Sealed {
    key: String,
    nonce: String,
    sealed: String,
}

impl Keys {
    /// Seals with `key` from now on; the keys before stay for opening.
    pub(crate) fn seal_with(&mut self, key: EncryptionKey) {
        self.0.retain(|k| k.id != key.id);
        self.0.insert(0, key);
    }

    /// Opens rows sealed under `key` too.
    pub(crate) fn open_with(&mut self, key: EncryptionKey) {
        if !self.0.iter().any(|k| k.id == key.id) {
            self.0.push(key);
        }
    }

    /// The id of the key that seals, if there is one.
    pub(crate) fn sealing_id(&self) -> Option<&str> {
        self.0.first().map(|k| k.id.as_str())
    }

    /// `secret` sealed under the sealing key, bound to `source`.
    pub(crate) fn seal(&self, secret: &SourceSecret, source: &str) -> Result<Sealed, StoreError> {
        let key = self.0.first().ok_or_else(|| {
            StoreError::new(
                "a source's secrets are stored encrypted, and this store has no encryption key: \
                 give it one with with_encryption_key",
            )
        })?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce)
            .map_err(|_| StoreError::new("the operating system's random source failed"))?;
        let payload = Payload {
            msg: secret.expose_secret(),
            aad: source.as_bytes(),
        };
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| StoreError::new("a source secret could not be encrypted"))?;
        Ok(Sealed {
            key: key.id.clone(),
            nonce: STANDARD.encode(nonce),
            sealed: STANDARD.encode(sealed),
        })
    }

    /// The secret in `sealed`, which must be bound to `source`.
    pub(crate) fn open(&self, sealed: &Sealed, source: &str) -> Result<SourceSecret, StoreError> {
        let key = self.0.iter().find(|k| k.id == sealed.key).ok_or_else(|| {
            StoreError::new(format!(
                "a secret of source {source} is encrypted under key `{}`, which this store was not given \
                 (with_decryption_key)",
                sealed.key
            ))
        })?;
        let broken = || {
            StoreError::new(format!(
                "a secret of source {source} does not decrypt under key `{}`",
                key.id
            ))
        };
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| broken())?;
        let text = STANDARD.decode(&sealed.sealed).map_err(|_| broken())?;
        if nonce.len() != 12 {
            return Err(broken());
        }
        let payload = Payload {
            msg: &text,
            aad: source.as_bytes(),
        };
        // The plain text is wiped when dropped, not left in freed memory.
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(Nonce::from_slice(&nonce), payload)
                .map_err(|_| broken())?,
        );
        SourceSecret::new(&*plain).map_err(|_| broken())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, n: u8) -> EncryptionKey {
        EncryptionKey::new(id, [n; 32]).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_under_its_key_for_its_source_only() {
        let mut keys = Keys::default();
        let secret = SourceSecret::new("It's a Secret to Everybody").unwrap();
        assert!(
            keys.seal(&secret, "github")
                .unwrap_err()
                .to_string()
                .contains("no encryption key")
        );
        keys.seal_with(key("k1", 1));
        let sealed = keys.seal(&secret, "github").unwrap();
        assert_eq!(sealed.key, "k1");
        assert!(
            !sealed.sealed.contains("Secret") && STANDARD.decode(&sealed.sealed).unwrap().len() == 26 + 16
        );
        assert!(keys.open(&sealed, "github").unwrap() == secret);
        // Bound to its source: another row's copy does not open.
        assert!(
            keys.open(&sealed, "gitlab")
                .unwrap_err()
                .to_string()
                .contains("does not decrypt")
        );
        // Two seals of one secret differ (a fresh nonce each).
        assert_ne!(keys.seal(&secret, "github").unwrap().nonce, sealed.nonce);
    }

    #[test]
    fn a_new_key_seals_while_the_old_one_still_opens() {
        let mut keys = Keys::default();
        keys.seal_with(key("k1", 1));
        let secret = SourceSecret::new("s3cr3t").unwrap();
        let old = keys.seal(&secret, "src").unwrap();
        keys.seal_with(key("k2", 2));
        keys.open_with(key("k1", 1));
        assert_eq!(keys.sealing_id(), Some("k2"));
        assert_eq!(keys.seal(&secret, "src").unwrap().key, "k2");
        assert!(keys.open(&old, "src").unwrap() == secret);
        // Without the old key, its rows say which key they need.
        let mut only_new = Keys::default();
        only_new.seal_with(key("k2", 2));
        assert!(
            only_new
                .open(&old, "src")
                .unwrap_err()
                .to_string()
                .contains("key `k1`")
        );
        // A key of the same id but other bytes does not open it.
        let mut wrong = Keys::default();
        wrong.seal_with(key("k1", 9));
        assert!(wrong.open(&old, "src").is_err());
    }

    #[test]
    fn a_key_sealing_from_now_on_keeps_the_keys_before_it_for_opening() {
        let mut keys = Keys::default();
        keys.seal_with(key("k1", 1));
        let secret = SourceSecret::new("s3cr3t").unwrap();
        let old = keys.seal(&secret, "src").unwrap();
        keys.seal_with(key("k2", 2));
        assert!(keys.open(&old, "src").unwrap() == secret, "k1 still opens");
        // The same id again replaces its key rather than adding a second.
        keys.seal_with(key("k2", 3));
        assert_eq!(
            keys.0.iter().map(EncryptionKey::id).collect::<Vec<_>>(),
            ["k2", "k1"]
        );
        keys.open_with(key("k1", 9));
        assert_eq!(keys.0.len(), 2, "a known id is not added twice");
        assert!(keys.open(&old, "src").unwrap() == secret);
    }

    #[test]
    fn a_key_shows_its_id_and_never_its_bytes() {
        let key = key("2026-12", 0xab);
        assert_eq!(key.id(), "2026-12");
        let debug = format!("{key:?}");
        assert_eq!(debug, "EncryptionKey { id: \"2026-12\", key: [redacted] }");
        assert!(!debug.contains("ab") && !debug.contains("171"));
    }

    #[test]
    fn key_ids_and_bytes_are_checked() {
        assert_eq!(
            EncryptionKey::new("", [0; 32]).unwrap_err(),
            InvalidEncryptionKey::Id
        );
        assert_eq!(
            EncryptionKey::new("a b", [0; 32]).unwrap_err(),
            InvalidEncryptionKey::Id
        );
        assert_eq!(
            EncryptionKey::new(&"a".repeat(33), [0; 32]).unwrap_err(),
            InvalidEncryptionKey::Id
        );
        assert_eq!(
            EncryptionKey::from_base64("k", "not base64").unwrap_err(),
            InvalidEncryptionKey::Key
        );
        assert_eq!(
            EncryptionKey::from_base64("k", &STANDARD.encode([1; 31])).unwrap_err(),
            InvalidEncryptionKey::Key
        );
        assert!(EncryptionKey::from_base64("k", &STANDARD.encode([1; 32])).is_ok());
    }
}
