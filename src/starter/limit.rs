//! A starter's rate limits, applied: an environment's calls, and a
//! client's failed authentications.

use std::net::IpAddr;

use crate::error::WebhookError;
use crate::limit::OnLimiterError;
use crate::model::Environment;
use crate::observe::{self, Observed, chain};
use crate::starter::WebhookStarter;
use crate::store::StoreError;

impl WebhookStarter {
    /// Takes one unit of `environment`'s limit.
    pub(crate) async fn limit_environment(
        &self,
        environment: &Environment,
        observed: &mut Observed,
    ) -> Result<(), WebhookError> {
        let Some((limiter, policy)) = &self.settings.limiter else {
            return Ok(());
        };
        let Some(quota) = policy.per_environment else {
            return Ok(());
        };
        let (organization, id) = (environment.organization().as_str(), environment.id().as_str());
        // A limiter that decides at once gets the key from a buffer of this
        // thread (no allocation, no boxed future); others get their own.
        let now = ENV_KEY.with_borrow_mut(|key| {
            key.clear();
            push_env_key(key, organization, id);
            limiter.acquire_now(key, quota)
        });
        let decided = match now {
            Some(decided) => decided,
            None => {
                let mut key = String::with_capacity(5 + organization.len() + id.len());
                push_env_key(&mut key, organization, id);
                limiter.acquire(&key, quota).await
            }
        };
        match decided {
            Ok(decision) => {
                observed.rate = Some((quota, decision));
                if decision.allowed() {
                    Ok(())
                } else {
                    observe::rate_limited("environment");
                    Err(WebhookError::RateLimited {
                        retry_after: decision.retry_after(),
                    })
                }
            }
            Err(error) => limiter_failed(error, policy.on_error),
        }
    }

    /// Refuses a client over its limit of failed authentications, before its
    /// token is looked up.
    pub(crate) async fn check_client(&self, observed: &Observed) -> Result<(), WebhookError> {
        let (Some((limiter, policy)), Some(peer)) = (&self.settings.limiter, observed.peer) else {
            return Ok(());
        };
        let Some(quota) = policy.failed_auth else {
            return Ok(());
        };
        match limiter.peek(&format!("auth:{peer}"), quota).await {
            Ok(decision) if decision.allowed() => Ok(()),
            Ok(decision) => {
                observe::rate_limited("client");
                Err(WebhookError::RateLimited {
                    retry_after: decision.retry_after(),
                })
            }
            Err(error) => limiter_failed(error, policy.on_error),
        }
    }

    /// Counts a failed authentication against the client's limit.
    pub(crate) async fn note_failed_auth(&self, peer: Option<IpAddr>) {
        let (Some((limiter, policy)), Some(peer)) = (&self.settings.limiter, peer) else {
            return;
        };
        if let Some(quota) = policy.failed_auth {
            if let Err(error) = limiter.acquire(&format!("auth:{peer}"), quota).await {
                let _ = limiter_failed(error, OnLimiterError::Allow);
            }
        }
    }
}

thread_local! {
    /// The buffer [`WebhookStarter::limit_environment`] writes an
    /// environment's limiter key into.
    static ENV_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An environment's limiter key: `env:{organization}/{environment}`.
fn push_env_key(key: &mut String, organization: &str, environment: &str) {
    key.push_str("env:");
    key.push_str(organization);
    key.push('/');
    key.push_str(environment);
}

/// What the starter does when its limiter fails: logs it, then lets the
/// call through or refuses it.
fn limiter_failed(error: StoreError, on_error: OnLimiterError) -> Result<(), WebhookError> {
    tracing::error!(
        target: "process_webhook",
        error = %chain(&error),
        "the rate limiter could not answer"
    );
    match on_error {
        OnLimiterError::Refuse => Err(WebhookError::StoreUnavailable { source: error }),
        _ => Ok(()),
    }
}
