//! Who may use the admin API and the console: the admin token (compared in
//! constant time, as digests), console sessions with their CSRF tokens, and
//! the count of failed authentications per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Admin;
use super::error::AdminError;

/// The admin token: at least 32 characters, visible ASCII. Its `Debug`
/// prints `[redacted]`; it is kept only as its SHA-256 digest once given to
/// [`Admin::new`], and compared in constant time.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// A token shorter than 32 characters, or holding a character that is not
/// visible ASCII.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("an admin token is at least 32 characters of visible ASCII (no spaces)")]
pub struct InvalidAdminToken;

impl AdminToken {
    /// The fewest characters a token has.
    pub const MIN_LEN: usize = 32;
}

impl std::str::FromStr for AdminToken {
    type Err = InvalidAdminToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < Self::MIN_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidAdminToken);
        }
        Ok(Self(s.to_owned()))
    }
}

fn digest(text: &[u8]) -> [u8; 32] {
    Sha256::digest(text).into()
}

/// The admin token's digest, the console's sessions and the failures per
/// client.
pub(crate) struct Guard {
    token: [u8; 32],
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

/// A console session: when it ends, and the CSRF token its forms carry.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) csrf: String,
    ends: Instant,
}

impl Guard {
    pub(crate) fn new(token: AdminToken) -> Self {
        Self {
            token: digest(token.0.as_bytes()),
            sessions: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Whether `presented` is the admin token (in constant time).
    fn is_token(&self, presented: &str) -> bool {
        digest(presented.as_bytes()).ct_eq(&self.token).into()
    }

    /// `Err(TooManyFailures)` when `client` failed too often in the last
    /// minute.
    pub(crate) fn admit(&self, client: Option<IpAddr>) -> Result<(), AdminError> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&client) {
            Some((count, since)) if *count >= Admin::FAILURES_PER_MINUTE && since.elapsed() < MINUTE => {
                Err(AdminError::TooManyFailures {
                    retry_after: (MINUTE - since.elapsed()).as_secs() + 1,
                })
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication of `client`.
    pub(crate) fn failed(&self, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < MINUTE);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= MINUTE {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// Checks a bearer token (the API's `Authorization` header value).
    pub(crate) fn check_bearer(
        &self,
        client: Option<IpAddr>,
        header: Option<&str>,
    ) -> Result<(), AdminError> {
        self.admit(client)?;
        let Some(header) = header else {
            return Err(AdminError::MissingToken);
        };
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        if self.is_token(presented) {
            Ok(())
        } else {
            self.failed(client);
            Err(AdminError::InvalidToken)
        }
    }

    /// Signs in with `presented`: a new session's id (for the cookie).
    pub(crate) fn sign_in(&self, client: Option<IpAddr>, presented: &str) -> Result<String, AdminError> {
        self.admit(client)?;
        if !self.is_token(presented.trim()) {
            self.failed(client);
            return Err(AdminError::InvalidToken);
        }
        let id = random_text();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.ends > Instant::now());
        sessions.insert(
            digest(id.as_bytes()),
            Session {
                csrf: random_text(),
                ends: Instant::now() + Admin::SESSION_LIFETIME,
            },
        );
        Ok(id)
    }

    /// The live session of the cookie value `id`.
    pub(crate) fn session(&self, id: &str) -> Option<Session> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .get(&digest(id.as_bytes()))
            .filter(|s| s.ends > Instant::now())
            .cloned()
    }

    /// Ends the session of `id`.
    pub(crate) fn sign_out(&self, id: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.remove(&digest(id.as_bytes()));
    }
}

impl Session {
    /// Whether a form's `csrf` field is this session's (in constant time).
    pub(crate) fn checks(&self, presented: &str) -> bool {
        digest(presented.as_bytes())
            .ct_eq(&digest(self.csrf.as_bytes()))
            .into()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// 256 random bits as URL-safe base64.
fn random_text() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "an-admin-token-of-at-least-32-characters";

    #[test]
    fn a_token_is_at_least_32_visible_characters_and_never_printed() {
        assert_eq!("short".parse::<AdminToken>().err(), Some(InvalidAdminToken));
        assert!(format!("{:?}", "x".repeat(31).parse::<AdminToken>()).contains("InvalidAdminToken"));
        assert!(
            "x".repeat(32).parse::<AdminToken>().is_ok(),
            "32 characters are enough"
        );
        assert!(
            format!("{} and more", "a".repeat(40))
                .parse::<AdminToken>()
                .is_err()
        );
        let token: AdminToken = TOKEN.parse().unwrap();
        assert_eq!(format!("{token:?}"), "AdminToken([redacted])");
    }

    #[test]
    fn the_eleventh_failure_in_a_minute_is_refused_even_with_the_right_token() {
        let guard = Guard::new(TOKEN.parse().unwrap());
        let client = Some(IpAddr::from([127, 0, 0, 9]));
        for _ in 0..Admin::FAILURES_PER_MINUTE {
            assert!(matches!(
                guard.check_bearer(client, Some("Bearer wrong")),
                Err(AdminError::InvalidToken)
            ));
        }
        let refused = guard.check_bearer(client, Some(&format!("Bearer {TOKEN}")));
        assert!(
            matches!(refused, Err(AdminError::TooManyFailures { retry_after }) if (1..=61).contains(&retry_after))
        );
        // Another client is not held back.
        assert!(
            guard
                .check_bearer(
                    Some(IpAddr::from([127, 0, 0, 8])),
                    Some(&format!("Bearer {TOKEN}"))
                )
                .is_ok()
        );
    }

    #[test]
    fn a_guessers_failures_are_kept_while_ten_thousand_other_clients_fail() {
        let guard = Guard::new(TOKEN.parse().unwrap());
        let guesser = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..Admin::FAILURES_PER_MINUTE {
            guard.failed(guesser);
        }
        // Past the bound of 10,000 clients, only those whose minute ended are forgotten.
        for n in 0..10_001_u32 {
            guard.failed(Some(IpAddr::from(n.to_be_bytes())));
        }
        assert!(matches!(
            guard.admit(guesser),
            Err(AdminError::TooManyFailures { .. })
        ));
    }

    #[test]
    fn sessions_have_ids_and_csrf_tokens_of_256_random_bits_and_signing_in_again_ends_none() {
        let guard = Guard::new(TOKEN.parse().unwrap());
        let first = guard.sign_in(None, TOKEN).unwrap();
        let second = guard.sign_in(None, TOKEN).unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 43, "256 bits in URL-safe base64");
        let (a, b) = (guard.session(&first).unwrap(), guard.session(&second).unwrap());
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.csrf, first);
        assert_eq!(a.csrf.len(), 43);
    }

    #[test]
    fn a_session_lives_until_signed_out_and_checks_its_own_csrf_token() {
        let guard = Guard::new(TOKEN.parse().unwrap());
        assert!(guard.sign_in(None, "wrong").is_err());
        let id = guard.sign_in(None, TOKEN).unwrap();
        let session = guard.session(&id).unwrap();
        assert!(session.checks(&session.csrf));
        assert!(!session.checks("another"));
        assert!(guard.session("not-a-session").is_none());
        guard.sign_out(&id);
        assert!(guard.session(&id).is_none());
    }
}
