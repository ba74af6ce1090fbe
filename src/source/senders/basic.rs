//! `basic`: `authorization: Basic base64(user:password)`, the user the
//! source names and one of its secrets as the password, each compared as
//! digests in constant time.

use crate::error::WebhookError;
use crate::source::call::{Keys, SourceCall};
use crate::source::secret::digests_match;

pub(crate) fn verify(user: &str, call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let sent = call.required("authorization")?;
    let credentials = match sent.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim_ascii(),
        _ => return Err(WebhookError::MissingSignature),
    };
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .map_err(|_| WebhookError::InvalidSignature)?;
    let at = memchr::memchr(b':', &decoded).ok_or(WebhookError::InvalidSignature)?;
    let (sent_user, password) = (&decoded[..at], &decoded[at + 1..]);
    // Both compared, whichever is wrong: the answer takes as long.
    let user_ok = digests_match(user.as_bytes(), sent_user);
    let password_ok = keys.any_secret(password);
    if user_ok & password_ok {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}
