//! Which problems each operation of the webhook may answer, and when: the
//! document's list, whose statuses and `Retry-After` are the table of codes'.

/// When a problem code is a possible answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// To every call of the operation.
    Always,
    /// Where the environment requires signed calls.
    Signed,
    /// Where the starter has an idempotency store.
    Idempotency,
    /// Where the environment is rate limited.
    RateLimit,
    /// Where envelope bodies are read.
    Envelopes,
    /// Where the deployment is startable (not a draft): the engine's and
    /// the validation's answers.
    Startable,
    /// Where the starter keeps starts in an inbox.
    Inbox,
    /// Where multipart bodies are read (the `multipart` feature).
    Multipart,
}

/// Which operations a problem code may answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ops {
    /// `POST` only.
    Post,
    /// `POST`, `GET` and `HEAD`.
    Calls,
    /// Every method, `OPTIONS` too: what the server's protection answers
    /// before a call is read.
    All,
}

/// Every problem a call of a token's webhook can answer: its code (its
/// status and `Retry-After` are the table of codes'), the operations it
/// answers, and when.
pub(super) const PROBLEMS: &[(&str, Ops, When)] = &[
    ("missing_uid", Ops::Calls, When::Always),
    ("invalid_uid", Ops::Calls, When::Always),
    ("duplicate_header", Ops::Calls, When::Always),
    ("invalid_idempotency_key", Ops::Calls, When::Always),
    ("malformed_payload", Ops::Post, When::Always),
    ("conflicting_headers", Ops::Post, When::Envelopes),
    ("missing_token", Ops::Calls, When::Always),
    ("invalid_token", Ops::Calls, When::Always),
    ("invalid_signature", Ops::Calls, When::Signed),
    ("stale_timestamp", Ops::Calls, When::Signed),
    ("unknown_process", Ops::Calls, When::Always),
    ("body_timeout", Ops::Calls, When::Always),
    ("not_deployed", Ops::Calls, When::Always),
    ("draft_version", Ops::Calls, When::Always),
    ("start_in_progress", Ops::Post, When::Idempotency),
    ("payload_too_large", Ops::Calls, When::Always),
    ("unsupported_media_type", Ops::Post, When::Always),
    ("file_part", Ops::Post, When::Multipart),
    ("invalid_payload", Ops::Post, When::Startable),
    ("idempotency_key_reused", Ops::Post, When::Startable),
    ("rate_limited", Ops::Calls, When::RateLimit),
    ("engine_overloaded", Ops::Post, When::Startable),
    ("internal_error", Ops::Calls, When::Always),
    ("engine_failed", Ops::Post, When::Startable),
    ("store_unavailable", Ops::Calls, When::Always),
    ("engine_unavailable", Ops::Post, When::Startable),
    ("idempotency_store_full", Ops::Post, When::Idempotency),
    ("inbox_full", Ops::Post, When::Inbox),
    ("server_busy", Ops::All, When::Always),
    ("too_many_connections", Ops::All, When::Always),
];

/// The operations of the document.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Post,
    Get,
    Head,
    Options,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Problem;

    #[test]
    fn every_code_the_document_can_list_is_in_the_table_of_codes_once() {
        // The table's own test proves each of its codes is some error's.
        let mut seen = Vec::new();
        for &(code, _, _) in PROBLEMS {
            assert_eq!(Problem::of(code).code, code, "{code} is no code of the table");
            assert!(!seen.contains(&code), "{code} twice");
            seen.push(code);
        }
    }
}
