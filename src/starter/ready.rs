//! Readiness: whether a starter's stores and engine can serve now
//! ([`WebhookStarter::ready`](crate::WebhookStarter::ready)).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::future::{Either, select};
use serde_json::{Value, json};

use crate::signal::Flag;

/// The default bound on a readiness check: 2 seconds.
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A part of a starter that a readiness check asks.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Component {
    /// The [`ModelStore`](crate::ModelStore).
    ModelStore,
    /// The [`TokenStore`](crate::TokenStore).
    TokenStore,
    /// The [`IdempotencyStore`](crate::IdempotencyStore), when there is one.
    IdempotencyStore,
    /// The [`RateLimiter`](crate::RateLimiter), when there is one.
    RateLimiter,
    /// The [`Engine`](crate::Engine).
    Engine,
}

impl Component {
    /// Its stable, machine-readable name: `model_store`, `token_store`,
    /// `idempotency_store`, `rate_limiter` or `engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ModelStore => "model_store",
            Self::TokenStore => "token_store",
            Self::IdempotencyStore => "idempotency_store",
            Self::RateLimiter => "rate_limiter",
            Self::Engine => "engine",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::ModelStore => "the model store",
            Self::TokenStore => "the token store",
            Self::IdempotencyStore => "the idempotency store",
            Self::RateLimiter => "the rate limiter",
            Self::Engine => "the engine",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one component is not ready.
#[derive(Debug)]
enum Failure {
    /// It answered that it cannot serve.
    Unavailable(Box<dyn StdError + Send + Sync>),
    /// It did not answer in time.
    TimedOut(Duration),
}

/// A failed readiness check: which components cannot serve, and why.
///
/// Its `Display` and [`to_problem_json`](Self::to_problem_json) name the
/// components and whether each failed or did not answer in time, and never
/// say more (no connection string, host or credential); the first failure's
/// own error is its [`source`](std::error::Error::source), for the host's
/// logs.
#[derive(Debug)]
pub struct NotReady {
    failures: Vec<(Component, Failure)>,
}

impl NotReady {
    /// The components that are not ready, in the order
    /// [`Component`] lists them.
    pub fn components(&self) -> impl Iterator<Item = Component> + '_ {
        self.failures.iter().map(|(component, _)| *component)
    }

    /// Whether `component` did not answer within the check's time bound
    /// (rather than answering that it cannot serve).
    pub fn timed_out(&self, component: Component) -> bool {
        self.failures
            .iter()
            .any(|(c, failure)| *c == component && matches!(failure, Failure::TimedOut(_)))
    }

    /// The `503` answer's body, an RFC 9457 problem document:
    /// `{"type": "about:blank", "title": "Not ready", "status": 503,
    /// "code": "not_ready", "detail": "…", "components": ["…"]}`.
    pub fn to_problem_json(&self) -> Value {
        json!({
            "type": "about:blank",
            "title": "Not ready",
            "status": 503,
            "code": "not_ready",
            "detail": self.to_string(),
            "components": self.components().map(Component::as_str).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not ready: ")?;
        for (i, (component, failure)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match failure {
                Failure::Unavailable(_) => write!(f, "{} cannot serve", component.describe())?,
                Failure::TimedOut(after) => {
                    write!(f, "{} did not answer within {after:?}", component.describe())?;
                }
            }
        }
        Ok(())
    }
}

impl StdError for NotReady {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.failures.iter().find_map(|(_, failure)| match failure {
            Failure::Unavailable(error) => Some(&**error as &(dyn StdError + 'static)),
            Failure::TimedOut(_) => None,
        })
    }
}

/// Runs readiness checks against one shared deadline.
pub(crate) struct Checks {
    deadline: Deadline,
    bound: Duration,
}

impl Checks {
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            deadline: Deadline::after(bound),
            bound,
        }
    }

    /// Runs one component's check, bounded by the deadline.
    pub(crate) async fn check<E>(
        &self,
        component: Component,
        check: impl Future<Output = Result<(), E>>,
    ) -> Option<(Component, FailureOf)>
    where
        E: StdError + Send + Sync + 'static,
    {
        let check = std::pin::pin!(check);
        let deadline = std::pin::pin!(self.deadline.elapsed());
        match select(check, deadline).await {
            Either::Left((Ok(()), _)) => None,
            Either::Left((Err(error), _)) => {
                Some((component, FailureOf(Failure::Unavailable(Box::new(error)))))
            }
            Either::Right(((), _)) => Some((component, FailureOf(Failure::TimedOut(self.bound)))),
        }
    }

    /// The result of all checks.
    pub(crate) fn verdict(
        failures: impl IntoIterator<Item = Option<(Component, FailureOf)>>,
    ) -> Result<(), NotReady> {
        let failures: Vec<_> = failures.into_iter().flatten().map(|(c, f)| (c, f.0)).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotReady { failures })
        }
    }
}

/// A failure, opaque outside this module.
pub(crate) struct FailureOf(Failure);

/// A deadline that needs no async runtime: a short-lived thread sleeps until
/// it and raises a flag (a readiness check runs a few times a minute, so a
/// thread per check costs nothing that matters). If no thread can be
/// started, the deadline never passes and each component's own timeout
/// bounds the check.
struct Deadline(Flag);

impl Deadline {
    fn after(bound: Duration) -> Self {
        let flag = Flag::default();
        let timer = flag.clone();
        let _ = std::thread::Builder::new()
            .name("process-webhook-ready".into())
            .spawn(move || {
                std::thread::sleep(bound);
                timer.raise();
            });
        Self(flag)
    }

    fn elapsed(&self) -> impl Future<Output = ()> + '_ {
        self.0.raised()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn every_failing_component_is_named_in_order_and_only_the_first_cause_is_the_source() {
        let not_ready = Checks::verdict([
            None,
            Some((
                Component::IdempotencyStore,
                FailureOf(Failure::Unavailable(Box::new(StoreError::new("redis: ping")))),
            )),
            Some((
                Component::Engine,
                FailureOf(Failure::TimedOut(Duration::from_secs(2))),
            )),
        ])
        .unwrap_err();
        assert_eq!(
            not_ready.to_string(),
            "not ready: the idempotency store cannot serve; the engine did not answer within 2s"
        );
        assert_eq!(
            not_ready.to_problem_json()["components"],
            json!(["idempotency_store", "engine"])
        );
        assert_eq!(StdError::source(&not_ready).unwrap().to_string(), "redis: ping");
        assert!(Checks::verdict([None, None]).is_ok());
    }
}
