//! What the crate reports through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`); without the feature every function here is
//! empty and compiles away.
//!
//! The names, kinds and labels are documented in one table in the crate
//! docs (section "Metrics"). No label ever holds a token, an idempotency
//! key or a payload value: `environment` is an environment id the token
//! store resolved, `process` (only when the host opts in) a deployed
//! process's UUID, and the rest come from fixed sets.

use std::time::Duration;

#[cfg(feature = "metrics")]
mod names {
    pub(crate) const CALLS: &str = "process_webhook_calls_total";
    pub(crate) const CALL_DURATION: &str = "process_webhook_call_duration_seconds";
    pub(crate) const ENGINE_DURATION: &str = "process_webhook_engine_call_duration_seconds";
    pub(crate) const IDEMPOTENCY_KEYS: &str = "process_webhook_idempotency_keys";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const BODIES: &str = "process_webhook_bodies_in_flight";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const BODY_BYTES: &str = "process_webhook_body_bytes_in_flight";
    pub(crate) const RATE_LIMITED: &str = "process_webhook_rate_limited_total";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const REFUSED_CONNECTIONS: &str = "process_webhook_refused_connections_total";
}

/// One answered call: counted by `status`, `code` and `environment` (and
/// `process` when the host opted in), timed by `outcome`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn call(
    status: u16,
    code: &'static str,
    outcome: &'static str,
    environment: Option<&str>,
    process: Option<String>,
    elapsed: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        let environment = environment.unwrap_or_default().to_owned();
        let status = status_label(status);
        match process {
            Some(process) => metrics::counter!(
                names::CALLS,
                "status" => status, "code" => code, "environment" => environment, "process" => process
            )
            .increment(1),
            None => metrics::counter!(
                names::CALLS, "status" => status, "code" => code, "environment" => environment
            )
            .increment(1),
        }
        metrics::histogram!(names::CALL_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
    }
}

/// One call to the engine, timed by `engine` and `outcome` (`ok`, `error`).
/// Called only with the feature: the clock reads it needs are a measurable
/// part of a start.
#[cfg(feature = "metrics")]
pub(crate) fn engine_call(engine: &'static str, ok: bool, elapsed: Duration) {
    metrics::histogram!(
        names::ENGINE_DURATION,
        "engine" => engine, "outcome" => if ok { "ok" } else { "error" }
    )
    .record(elapsed.as_secs_f64());
}

/// The keys an in-memory idempotency store holds now.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn idempotency_keys(held: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::IDEMPOTENCY_KEYS).set(held as f64);
}

/// The bodies the router is reading or holding now, and their bytes.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // the router and `serve` report these
pub(crate) fn bodies_in_flight(bodies: usize, bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(names::BODIES).set(bodies as f64);
        metrics::gauge!(names::BODY_BYTES).set(bytes as f64);
    }
}

/// A call refused by a rate limit: `scope` is `environment` or `client`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn rate_limited(scope: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::RATE_LIMITED, "scope" => scope).increment(1);
}

/// A connection [`serve`](crate::serve()) refused or closed: `reason` is
/// `too_many_connections`, `header_timeout` or `idle_timeout`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
#[cfg_attr(not(feature = "axum"), allow(dead_code))] // the router and `serve` report these
pub(crate) fn refused_connection(reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REFUSED_CONNECTIONS, "reason" => reason).increment(1);
}

/// A status as a label, without allocating for the statuses this crate
/// answers.
#[cfg(feature = "metrics")]
fn status_label(status: u16) -> metrics::SharedString {
    const KNOWN: [(u16, &str); 18] = [
        (200, "200"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (403, "403"),
    ];
    match KNOWN.iter().find(|(known, _)| *known == status) {
        Some((_, label)) => metrics::SharedString::const_str(label),
        None => metrics::SharedString::from(status.to_string()),
    }
}
