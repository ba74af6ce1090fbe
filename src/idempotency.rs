//! The identity of an idempotent start: the caller's key ([`CallerKey`]),
//! checked once, in its scope ([`IdempotencyKey`]), and the fingerprint of
//! its payload ([`PayloadFingerprint`]).

use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::WebhookError;
use crate::id::{EnvironmentId, ProcessUuid};

/// A caller's idempotency key, checked: 1 to 255 printable ASCII characters
/// (space to `~`), as the `Idempotency-Key` header carries it.
///
/// A start parses the key of its request once, into this type, and every
/// later step (the idempotency store's scope, the engine's command) takes it
/// from there.
///
/// # Example
///
/// ```
/// use process_webhook::CallerKey;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let key: CallerKey = "order-123456".parse()?;
/// assert_eq!(key.as_str(), "order-123456");
/// let err = "".parse::<CallerKey>().unwrap_err();
/// assert_eq!((err.status(), err.code()), (400, "invalid_idempotency_key"));
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CallerKey(String);

impl CallerKey {
    /// `key`, if it is 1 to 255 printable ASCII characters.
    ///
    /// # Errors
    ///
    /// [`InvalidIdempotencyKey`], which is
    /// [`WebhookError::InvalidIdempotencyKey`] (`400 invalid_idempotency_key`)
    /// through `?` or `into()`.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidIdempotencyKey> {
        let key = key.into();
        let printable = key.bytes().all(|b| (b' '..=b'~').contains(&b));
        if (1..=255).contains(&key.len()) && printable {
            Ok(Self(key))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An idempotency key that is not 1 to 255 printable ASCII characters.
///
/// The error of [`CallerKey::new`] and of parsing a [`CallerKey`]; it
/// converts into [`WebhookError::InvalidIdempotencyKey`], whose status and
/// code it also answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the idempotency key must be 1 to 255 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

impl InvalidIdempotencyKey {
    /// `400`, as [`WebhookError::status`] answers it.
    pub fn status(&self) -> u16 {
        WebhookError::from(*self).status()
    }

    /// `invalid_idempotency_key`, as [`WebhookError::code`] answers it.
    pub fn code(&self) -> &'static str {
        WebhookError::from(*self).code()
    }
}

impl From<InvalidIdempotencyKey> for WebhookError {
    fn from(_: InvalidIdempotencyKey) -> Self {
        WebhookError::InvalidIdempotencyKey
    }
}

impl std::str::FromStr for CallerKey {
    type Err = InvalidIdempotencyKey;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Self::new(key)
    }
}

impl fmt::Display for CallerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<CallerKey> for String {
    fn from(key: CallerKey) -> Self {
        key.0
    }
}

/// An idempotency key in its scope: the same key sent to another process or
/// in another environment is another key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IdempotencyKey {
    environment: EnvironmentId,
    process: ProcessUuid,
    key: String,
}

impl IdempotencyKey {
    /// The key `key` for starts of `process` in `environment`.
    pub fn new(environment: EnvironmentId, process: ProcessUuid, key: impl Into<String>) -> Self {
        Self {
            environment,
            process,
            key: key.into(),
        }
    }

    /// The environment.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The process.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The caller's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The SHA-256 of a payload's canonical JSON (keys sorted), which tells a
/// repeated call with the same payload from a reuse of the key with another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadFingerprint([u8; 32]);

impl PayloadFingerprint {
    /// The fingerprint of `payload`.
    ///
    /// ```
    /// use process_webhook::PayloadFingerprint;
    /// use serde_json::json;
    ///
    /// let a = json!({"a": 1, "b": 2});
    /// let b: serde_json::Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
    /// assert_eq!(
    ///     PayloadFingerprint::of(a.as_object().unwrap()),
    ///     PayloadFingerprint::of(b.as_object().unwrap()),
    /// );
    /// ```
    pub fn of(payload: &Map<String, Value>) -> Self {
        let mut hasher = Sha256::new();
        write_canonical_object(&mut HashWriter(&mut hasher), payload);
        Self(hasher.finalize().into())
    }

    /// A fingerprint from its bytes (as a host stored them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The fingerprint's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PayloadFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadFingerprint(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Writes `object` as JSON with its keys sorted at every depth, whatever
/// order the map keeps them in (serde_json's `preserve_order` feature, which
/// any crate in a host's build may turn on, keeps insertion order).
fn write_canonical_object(out: &mut HashWriter<'_>, object: &Map<String, Value>) {
    out.0.update(b"{");
    // Without `preserve_order` the keys are sorted already: no allocation.
    if object.keys().is_sorted() {
        write_members(out, object.iter());
    } else {
        let mut members: Vec<_> = object.iter().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        write_members(out, members.into_iter());
    }
    out.0.update(b"}");
}

fn write_members<'a>(out: &mut HashWriter<'_>, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.0.update(b",");
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.0.update(b":");
        write_canonical(out, value);
    }
}

fn write_canonical(out: &mut HashWriter<'_>, value: &Value) {
    match value {
        Value::Object(object) => write_canonical_object(out, object),
        Value::Array(items) => {
            out.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_canonical(out, item);
            }
            out.0.update(b"]");
        }
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_key_is_1_to_255_printable_ascii_characters() {
        for good in ["a", " ", "~", &"k".repeat(255), "order-123456"] {
            assert_eq!(CallerKey::new(good).unwrap().as_str(), good);
            assert_eq!(good.parse::<CallerKey>().unwrap().to_string(), good);
        }
        for bad in [
            "",
            &"k".repeat(256),
            "tab\there",
            "caf\u{e9}",
            "nul\0",
            "del\u{7f}",
        ] {
            assert!(
                matches!(CallerKey::new(bad), Err(InvalidIdempotencyKey)),
                "{bad:?}"
            );
        }
        assert_eq!(String::from(CallerKey::new("k").unwrap()), "k");
    }

    #[test]
    fn a_key_reads_back_its_scope_and_text() {
        let process = ProcessUuid::from(uuid::Uuid::from_u128(42));
        let key = IdempotencyKey::new(EnvironmentId::new("production"), process, "order-123456");
        assert_eq!(key.environment().as_str(), "production");
        assert_eq!(key.process(), &process);
        assert_eq!(key.key(), "order-123456");
    }

    #[test]
    fn a_fingerprint_shows_only_its_first_six_bytes() {
        let fingerprint = PayloadFingerprint::from_bytes(std::array::from_fn(|i| (i * 17) as u8));
        assert_eq!(format!("{fingerprint:?}"), "PayloadFingerprint(001122334455…)");
        assert_eq!(fingerprint.as_bytes()[31], (31 * 17) as u8);
    }

    #[test]
    fn the_fingerprint_ignores_key_order_at_every_depth() {
        // Built in two orders; with serde_json's `preserve_order` the maps
        // keep those orders, without it both are sorted.
        let mut inner_ab = Map::new();
        inner_ab.insert("a".into(), Value::from(1));
        inner_ab.insert("b".into(), Value::from(vec![Value::from(2), Value::from(3)]));
        let mut inner_ba = Map::new();
        inner_ba.insert("b".into(), Value::from(vec![Value::from(2), Value::from(3)]));
        inner_ba.insert("a".into(), Value::from(1));
        let mut x = Map::new();
        x.insert("z".into(), Value::Object(inner_ab.clone()));
        x.insert("y".into(), Value::from("text"));
        let mut y = Map::new();
        y.insert("y".into(), Value::from("text"));
        y.insert("z".into(), Value::Object(inner_ba));
        assert_eq!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&y));
        // The canonical text is the sorted JSON.
        let mut hasher = Sha256::new();
        hasher.update(br#"{"y":"text","z":{"a":1,"b":[2,3]}}"#);
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(PayloadFingerprint::of(&x).as_bytes(), &expected);
        // And another payload has another fingerprint.
        let mut other = x.clone();
        other.insert("y".into(), Value::from("other"));
        assert_ne!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&other));
        // Items are separated: [2,3] is not [23].
        let mut joined = x.clone();
        let mut inner = inner_ab;
        inner.insert("b".into(), Value::from(vec![Value::from(23)]));
        joined.insert("z".into(), Value::Object(inner));
        assert_ne!(PayloadFingerprint::of(&x), PayloadFingerprint::of(&joined));
    }
}
