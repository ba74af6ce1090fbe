//! [`AdminError`]: every refusal of the admin API and the console, with its
//! status and stable code from one table.

use crate::port_error::StoreError;

/// A refusal of the admin API or the console. Answered as a problem
/// document (`application/problem+json`) by the API, as a page by the
/// console; [`code`](Self::code) strings are API and never renamed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No `Authorization: Bearer …` (or, in the console, no session).
    #[error("the admin API needs `Authorization: Bearer` with the admin token")]
    MissingToken,
    /// A token that is not the admin token.
    #[error("the admin token is not valid")]
    InvalidToken,
    /// Too many failed authentications from this client in the last minute.
    #[error("too many failed authentications from this client: try again in {retry_after} s")]
    TooManyFailures {
        /// Seconds until the client may try again.
        retry_after: u64,
    },
    /// A console form without the session's CSRF token.
    #[error("the form's CSRF token does not match the session: reload the page")]
    InvalidCsrf,
    /// A filter, limit or cursor that cannot be read.
    #[error("invalid {name}: {expected}")]
    InvalidFilter {
        /// The query parameter.
        name: &'static str,
        /// What it takes.
        expected: &'static str,
    },
    /// No delivery with that id in the log.
    #[error("no delivery with that id in the delivery log")]
    NotFound,
    /// A retry of a delivery that is not dead (or without an inbox).
    #[error("only a dead delivery can be retried; this one is {outcome}")]
    NotRetryable {
        /// What the delivery is now.
        outcome: String,
    },
    /// A discard of a delivery that is neither queued nor dead.
    #[error("only a queued or dead delivery can be discarded; this one is {outcome}")]
    NotDiscardable {
        /// What the delivery is now.
        outcome: String,
    },
    /// The delivery log or the inbox could not answer.
    #[error("the delivery log could not answer")]
    Unavailable(#[source] StoreError),
}

impl AdminError {
    /// The table: code, status and title of every refusal.
    pub const TABLE: [(&'static str, u16, &'static str); 9] = [
        ("missing_admin_token", 401, "Missing admin token"),
        ("invalid_admin_token", 401, "Invalid admin token"),
        ("too_many_failures", 429, "Too many failed authentications"),
        ("invalid_csrf_token", 403, "Invalid CSRF token"),
        ("invalid_filter", 400, "Invalid filter"),
        ("delivery_not_found", 404, "Delivery not found"),
        ("not_retryable", 409, "Not retryable"),
        ("not_discardable", 409, "Not discardable"),
        ("log_unavailable", 503, "Delivery log unavailable"),
    ];

    fn row(&self) -> (&'static str, u16, &'static str) {
        let index = match self {
            Self::MissingToken => 0,
            Self::InvalidToken => 1,
            Self::TooManyFailures { .. } => 2,
            Self::InvalidCsrf => 3,
            Self::InvalidFilter { .. } => 4,
            Self::NotFound => 5,
            Self::NotRetryable { .. } => 6,
            Self::NotDiscardable { .. } => 7,
            Self::Unavailable(_) => 8,
        };
        Self::TABLE[index]
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.row().0
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.row().1
    }

    /// The problem document (RFC 9457), as the webhook's.
    pub fn to_problem_json(&self) -> serde_json::Value {
        let (code, status, title) = self.row();
        serde_json::json!({
            "type": format!("urn:process-webhook:problem:{code}"),
            "title": title,
            "status": status,
            "detail": self.to_string(),
            "code": code,
        })
    }

    /// The seconds to wait, for `429`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyFailures { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        Self::Unavailable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_guide_lists_every_code_with_its_status() {
        let guide = include_str!("../docs/console.md");
        for (code, status, _) in AdminError::TABLE {
            assert!(guide.contains(&format!("| `{code}` | {status} |")), "{code}");
        }
        let one_of_each = [
            AdminError::MissingToken,
            AdminError::InvalidToken,
            AdminError::TooManyFailures { retry_after: 3 },
            AdminError::InvalidCsrf,
            AdminError::InvalidFilter {
                name: "limit",
                expected: "a number",
            },
            AdminError::NotFound,
            AdminError::NotRetryable {
                outcome: "started".into(),
            },
            AdminError::NotDiscardable {
                outcome: "started".into(),
            },
            AdminError::Unavailable(StoreError::new("postgres: reading")),
        ];
        let codes: Vec<&str> = one_of_each.iter().map(AdminError::code).collect();
        let table: Vec<&str> = AdminError::TABLE.iter().map(|row| row.0).collect();
        assert_eq!(codes, table, "each variant has its own row");
        for error in &one_of_each {
            let doc = error.to_problem_json();
            assert_eq!(
                (doc["status"].as_u64(), doc["code"].as_str()),
                (Some(u64::from(error.status())), Some(error.code()))
            );
        }
        assert_eq!(
            AdminError::TooManyFailures { retry_after: 3 }.retry_after(),
            Some(3)
        );
        assert_eq!(AdminError::NotFound.retry_after(), None);
    }
}
