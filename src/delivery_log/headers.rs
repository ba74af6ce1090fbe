//! Which of a request's headers the delivery log keeps: every one but the
//! credentials.

/// Whether the header `name` (any case) may carry a credential, and so is
/// never kept in the delivery log: `authorization`, `proxy-authorization`,
/// `cookie`, `set-cookie`, and every name holding `auth`, `token`,
/// `secret`, `password`, `signature`, `hmac`, `key` (an API key) or
/// `session` (`x-hub-signature-256`, `stripe-signature`,
/// `x-gitlab-token`, `webhook-signature`, `x-shopify-hmac-sha256`,
/// `x-twilio-signature`, `x-api-key`, …).
///
/// An idempotency key is not a credential: `idempotency-key` is kept.
///
/// # Example
///
/// ```
/// use process_webhook::is_credential_header;
///
/// assert!(is_credential_header("Authorization"));
/// assert!(is_credential_header("x-hub-signature-256"));
/// assert!(is_credential_header("X-Gitlab-Token"));
/// assert!(!is_credential_header("x-github-event"));
/// assert!(!is_credential_header("idempotency-key"));
/// ```
pub fn is_credential_header(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "auth",
        "token",
        "secret",
        "password",
        "signature",
        "hmac",
        "key",
        "session",
        "cookie",
    ];
    let name = name.trim_ascii().to_ascii_lowercase();
    if name == "idempotency-key" {
        return false;
    }
    WORDS.iter().any(|word| name.contains(word))
}

/// The headers the log keeps of a request: names in lower case, the
/// credentials left out, in the order sent.
pub(crate) fn logged_headers<K: AsRef<str>, V: AsRef<str>>(
    headers: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(name, _)| !is_credential_header(name.as_ref()))
        .map(|(name, value)| {
            (
                name.as_ref().trim_ascii().to_ascii_lowercase(),
                value.as_ref().to_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_senders_credential_header_is_left_out_and_the_rest_kept() {
        let sent = [
            ("Authorization", "Bearer t"),
            ("proxy-authorization", "x"),
            ("Cookie", "a=b"),
            ("x-hub-signature-256", "sha256=…"),
            ("x-hub-signature", "sha1=…"),
            ("stripe-signature", "t=1,v1=…"),
            ("x-slack-signature", "v0=…"),
            ("x-shopify-hmac-sha256", "…"),
            ("x-twilio-signature", "…"),
            ("x-gitlab-token", "…"),
            ("webhook-signature", "v1,…"),
            ("x-api-key", "…"),
            ("x-webhook-secret", "…"),
            ("x-password", "…"),
            ("x-session-id", "…"),
            ("X-GitHub-Event", "push"),
            ("content-type", "application/json"),
            ("Idempotency-Key", "k-1"),
            ("user-agent", "GitHub-Hookshot/1"),
        ];
        let kept = logged_headers(sent);
        assert_eq!(
            kept,
            [
                ("x-github-event".to_owned(), "push".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned()),
                ("idempotency-key".to_owned(), "k-1".to_owned()),
                ("user-agent".to_owned(), "GitHub-Hookshot/1".to_owned()),
            ]
        );
    }
}
