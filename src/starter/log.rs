//! A starter's report of one call: its log event and its metrics, the
//! `process` label only where the host opted in.

use std::time::Instant;

use crate::error::WebhookError;
use crate::id::EnvironmentId;
use crate::observe::{self, Observed};
use crate::starter::WebhookStarter;

impl WebhookStarter {
    /// The one log event and the metrics of a call. `outcome` names a
    /// success (`started`, `replayed`, `queued`, `dry_run`, `schema`,
    /// `options`, `ignored`, `challenge`); errors are `client_error` or
    /// `server_error`. `instance` is the instance started (or the kept
    /// start's delivery id).
    pub(crate) fn log_call(
        &self,
        observed: &Observed,
        result: Result<u16, &WebhookError>,
        outcome: &'static str,
        instance: Option<&str>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let (status, code, outcome) = match result {
            Ok(status) => (status, "ok", outcome),
            Err(error) if error.status() >= 500 => (error.status(), error.code(), "server_error"),
            Err(error) => (error.status(), error.code(), "client_error"),
        };
        let process = observed
            .process
            .filter(|_| self.settings.process_label && observed.deployed)
            .map(|p| p.to_string());
        observe::call(
            status,
            code,
            outcome,
            observed.environment.as_ref().map(EnvironmentId::as_str),
            process,
            observed.scheme,
            elapsed,
        );
        observe::log_call(observed, result, outcome, instance, elapsed);
    }
}
