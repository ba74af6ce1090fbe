//! What the delivery log keeps of a request: its headers but the
//! credentials, and its payload with every credential field redacted (an
//! envelope body carries the token in its `headers`; Slack's events carry
//! their verification `token`).

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
    const WORDS: [&[u8]; 9] = [
        b"auth",
        b"token",
        b"secret",
        b"password",
        b"signature",
        b"hmac",
        b"key",
        b"session",
        b"cookie",
    ];
    let name = name.trim_ascii().as_bytes();
    if name.eq_ignore_ascii_case(b"idempotency-key") {
        return false;
    }
    // Without a lower-case copy: this runs for every header of every call.
    WORDS.iter().any(|word| {
        name.windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word))
    })
}

/// A request's headers as the delivery log keeps them: in the order sent,
/// names in lower case, every credential left out
/// ([`is_credential_header`]). Held in one text (two allocations for all of
/// them: a record is made for every call); JSON as an array of
/// `[name, value]` pairs.
///
/// # Example
///
/// ```
/// use process_webhook::LoggedHeaders;
///
/// let headers = LoggedHeaders::from_pairs([("X-GitHub-Event", "push"), ("X-Hub-Signature-256", "sha256=…")]);
/// assert_eq!(headers.get("x-github-event"), Some("push"));
/// assert_eq!(headers.get("x-hub-signature-256"), None);
/// assert_eq!(serde_json::to_string(&headers).unwrap(), r#"[["x-github-event","push"]]"#);
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct LoggedHeaders {
    text: String,
    /// Where each name ends and its value ends in `text`.
    ends: Vec<(u32, u32)>,
}

impl LoggedHeaders {
    /// The headers of `pairs` the log keeps (credentials left out).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut kept = Self::default();
        for (name, value) in pairs {
            let name = name.as_ref().trim_ascii();
            if is_credential_header(name) {
                continue;
            }
            kept.text.extend(name.chars().map(|c| c.to_ascii_lowercase()));
            let name_end = u32::try_from(kept.text.len()).unwrap_or(u32::MAX);
            kept.text.push_str(value.as_ref());
            let value_end = u32::try_from(kept.text.len()).unwrap_or(u32::MAX);
            kept.ends.push((name_end, value_end));
        }
        kept
    }

    /// Each header, name and value, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (name_end, value_end) = (name_end as usize, value_end as usize);
            let pair = (&self.text[start..name_end], &self.text[name_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// The first value of the header `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// How many headers are kept.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::fmt::Debug for LoggedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for LoggedHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for LoggedHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs: Vec<(String, String)> = serde::Deserialize::deserialize(deserializer)?;
        Ok(Self::from_pairs(pairs))
    }
}

/// Whether a payload's field named `name` (any case) holds a credential,
/// and so is redacted in the payload the log keeps: every name holding
/// `authorization`, `password`, `secret` or `token` (Slack's verification
/// `token`, `access_token`, `client_secret`, an envelope's
/// `authorization`), and `apikey`, `api_key`, `api-key`.
///
/// Narrower than [`is_credential_header`]: a payload's `productKey` or
/// `idempotencyKey` is the sender's data, not a credential.
pub fn is_credential_field(name: &str) -> bool {
    const WORDS: [&[u8]; 4] = [b"authorization", b"password", b"secret", b"token"];
    let name = name.trim_ascii().as_bytes();
    ["apikey", "api_key", "api-key"]
        .iter()
        .any(|exact| name.eq_ignore_ascii_case(exact.as_bytes()))
        || WORDS.iter().any(|word| {
            name.windows(word.len())
                .any(|window| window.eq_ignore_ascii_case(word))
        })
}

/// What a redacted value reads.
pub(crate) const REDACTED: &str = "[redacted]";

/// A body as the log keeps it: JSON with every credential field's value
/// (at any depth) replaced by `"[redacted]"`; a form (`a=b&c=d`) the same
/// by field; anything else as sent (bytes that are not UTF-8 replaced).
pub(crate) fn redacted_payload(body: &[u8]) -> String {
    if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) {
        if redact_json(&mut json) {
            return json.to_string();
        }
        return String::from_utf8_lossy(body).into_owned();
    }
    let text = String::from_utf8_lossy(body);
    let is_form = !text.is_empty()
        && text
            .split('&')
            .all(|pair| pair.contains('=') && !pair.contains(char::is_whitespace));
    if is_form && form_urlencoded::parse(body).any(|(name, _)| is_credential_field(&name)) {
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (name, value) in form_urlencoded::parse(body) {
            let value = if is_credential_field(&name) {
                REDACTED.into()
            } else {
                value
            };
            kept.append_pair(&name, &value);
        }
        return kept.finish();
    }
    text.into_owned()
}

/// Redacts `value`'s credential fields in place: whether it changed any.
fn redact_json(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Object(members) => {
            let mut changed = false;
            for (name, member) in members.iter_mut() {
                if is_credential_field(name) && !member.is_null() {
                    *member = Value::String(REDACTED.to_owned());
                    changed = true;
                } else {
                    changed |= redact_json(member);
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| redact_json(item) | changed),
        _ => false,
    }
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
        let kept = LoggedHeaders::from_pairs(sent);
        assert_eq!(
            kept.iter().collect::<Vec<_>>(),
            [
                ("x-github-event", "push"),
                ("content-type", "application/json"),
                ("idempotency-key", "k-1"),
                ("user-agent", "GitHub-Hookshot/1"),
            ]
        );
        assert_eq!(
            (kept.len(), kept.get("user-agent"), kept.get("cookie")),
            (4, Some("GitHub-Hookshot/1"), None)
        );
        let json = serde_json::to_string(&kept).unwrap();
        assert_eq!(serde_json::from_str::<LoggedHeaders>(&json).unwrap(), kept);
        assert!(LoggedHeaders::default().is_empty());
        assert!(!kept.is_empty());
        assert_eq!(
            format!("{kept:?}"),
            r#"[("x-github-event", "push"), ("content-type", "application/json"), ("idempotency-key", "k-1"), ("user-agent", "GitHub-Hookshot/1")]"#
        );
    }

    #[test]
    fn a_payload_keeps_the_senders_data_and_loses_every_credential_field() {
        // The product's envelope: the token in its headers.
        let envelope = br#"{"headers": {"authorization": "Bearer tok-123", "x-trace": "t"}, "payload": {"orderNumber": "1", "productKey": "P-9"}}"#;
        let kept: serde_json::Value = serde_json::from_str(&redacted_payload(envelope)).unwrap();
        assert_eq!(kept["headers"]["authorization"], REDACTED);
        assert_eq!(kept["headers"]["x-trace"], "t");
        assert_eq!(
            kept["payload"],
            serde_json::json!({"orderNumber": "1", "productKey": "P-9"})
        );
        // Slack's events carry their verification token; arrays are walked.
        let slack =
            br#"{"token": "Jhj5dZ", "event": {"items": [{"access_token": "x", "ok": 1}]}, "nothing": null}"#;
        let kept = redacted_payload(slack);
        assert!(!kept.contains("Jhj5dZ") && !kept.contains("\"x\""), "{kept}");
        assert!(kept.contains("\"ok\":1"));
        // A JSON body without credentials is kept byte for byte (its order, its spaces).
        let plain = br#"{ "b": 1,  "a": "<script>" }"#;
        assert_eq!(redacted_payload(plain), r#"{ "b": 1,  "a": "<script>" }"#);
        // A form, field by field; text as sent.
        assert_eq!(
            redacted_payload(b"user=ann&password=hunter2&x=1"),
            "user=ann&password=%5Bredacted%5D&x=1"
        );
        assert_eq!(
            redacted_payload(b"orderNumber=1&note=hello"),
            "orderNumber=1&note=hello"
        );
        assert_eq!(redacted_payload(b"just some text"), "just some text");
        // Text that merely holds a credential's name, or a pair among prose,
        // is no form: kept as sent.
        assert_eq!(
            redacted_payload(b"my password=hunter2 is here"),
            "my password=hunter2 is here"
        );
        assert_eq!(redacted_payload(b"password"), "password");
        assert_eq!(redacted_payload(b"token=a&plain"), "token=a&plain");
        assert_eq!(redacted_payload(b""), "");
        assert_eq!(redacted_payload(&[0xff, b'a']), "\u{FFFD}a");
        for (name, credential) in [
            ("api_key", true),
            ("ApiKey", true),
            ("client_secret", true),
            ("productKey", false),
            ("idempotencyKey", false),
            ("keyboard", false),
        ] {
            assert_eq!(is_credential_field(name), credential, "{name}");
        }
    }
}
