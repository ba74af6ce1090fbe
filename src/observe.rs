//! What the crate reports about each call: its one log event, its span,
//! the panics it catches, and the [`metrics`](https://docs.rs/metrics)
//! (feature `metrics`; without it every metrics function here is empty and
//! compiles away).
//!
//! The metrics' names, kinds and labels are documented in one table in the
//! production guide. No label ever holds a token, an idempotency
//! key or a payload value: `environment` is an environment id the token
//! store resolved, `process` (only when the host opts in) a deployed
//! process's UUID, and the rest come from fixed sets.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;

use crate::error::WebhookError;
use crate::id::{EnvironmentId, ProcessUuid};
use crate::limit::{Quota, RateDecision};
use crate::signal::Flag;
use crate::source::SourceId;

#[cfg(feature = "metrics")]
mod names {
    pub(crate) const CALLS: &str = "process_webhook_calls_total";
    pub(crate) const CALL_DURATION: &str = "process_webhook_call_duration_seconds";
    pub(crate) const ENGINE_DURATION: &str = "process_webhook_engine_call_duration_seconds";
    pub(crate) const IDEMPOTENCY_KEYS: &str = "process_webhook_idempotency_keys";
    pub(crate) const IDEMPOTENCY_CAPACITY: &str = "process_webhook_idempotency_capacity";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const BODIES: &str = "process_webhook_bodies_in_flight";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const BODY_BYTES: &str = "process_webhook_body_bytes_in_flight";
    pub(crate) const RATE_LIMITED: &str = "process_webhook_rate_limited_total";
    pub(crate) const DISPATCHED: &str = "process_webhook_dispatch_attempts_total";
    pub(crate) const KEPT: &str = "process_webhook_inbox_starts";
    pub(crate) const OLDEST: &str = "process_webhook_inbox_oldest_queued_seconds";
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) const REFUSED_CONNECTIONS: &str = "process_webhook_refused_connections_total";
    #[cfg_attr(not(feature = "delivery-log"), allow(dead_code))]
    pub(crate) const LOG_DROPPED: &str = "process_webhook_delivery_log_dropped_total";
}

/// One answered call: counted by `status`, `code` and `environment` (and
/// `process` when the host opted in, `scheme` for a webhook source's call),
/// timed by `outcome`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn call(
    status: u16,
    code: &'static str,
    outcome: &'static str,
    environment: Option<&str>,
    process: Option<String>,
    scheme: Option<&'static str>,
    elapsed: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        let environment = environment.unwrap_or_default().to_owned();
        let status = status_label(status);
        match (process, scheme) {
            (process, Some(scheme)) => {
                let mut labels = vec![
                    metrics::Label::new("status", status),
                    metrics::Label::new("code", code),
                    metrics::Label::new("environment", environment),
                ];
                if let Some(process) = process {
                    labels.push(metrics::Label::new("process", process));
                }
                labels.push(metrics::Label::new("scheme", scheme));
                metrics::counter!(names::CALLS, labels).increment(1);
            }
            (Some(process), None) => metrics::counter!(
                names::CALLS,
                "status" => status, "code" => code, "environment" => environment, "process" => process
            )
            .increment(1),
            (None, None) => metrics::counter!(
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

/// The keys an in-memory idempotency store holds now, and how many it may.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn idempotency_keys(held: usize, capacity: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(names::IDEMPOTENCY_KEYS).set(held as f64);
        metrics::gauge!(names::IDEMPOTENCY_CAPACITY).set(capacity as f64);
    }
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

/// Records the delivery log dropped: its channel full, or the log failing
/// to write them.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
#[cfg_attr(not(feature = "delivery-log"), allow(dead_code))]
pub(crate) fn log_dropped(records: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::LOG_DROPPED).increment(records);
}

/// One dispatch of a kept start: `outcome` is `started`, `rescheduled`,
/// `dead` or `lost` (another dispatcher took it over).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn dispatched(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::DISPATCHED, "outcome" => outcome).increment(1);
}

/// What an inbox holds: queued and dead starts, and the age of the oldest
/// queued one (zero when none is).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn inbox(queued: u64, dead: u64, oldest: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!(names::KEPT, "status" => "queued").set(queued as f64);
        metrics::gauge!(names::KEPT, "status" => "dead").set(dead as f64);
        metrics::gauge!(names::OLDEST).set(oldest.as_secs_f64());
    }
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

/// What one call's log event says.
#[derive(Default)]
pub(crate) struct Observed {
    pub(crate) process: Option<ProcessUuid>,
    pub(crate) environment: Option<EnvironmentId>,
    pub(crate) peer: Option<IpAddr>,
    /// The environment's limit and what it decided, for the answer's
    /// `RateLimit` fields.
    pub(crate) rate: Option<(Quota, RateDecision)>,
    /// Whether the process was found deployed in the call's environment
    /// (only then may it be a metrics label).
    pub(crate) deployed: bool,
    /// The scheme of the webhook source that the call named, when it named
    /// one that exists (a metrics label).
    pub(crate) scheme: Option<&'static str>,
    /// Raised when the caller hung up (the router sets it): a wait stops.
    pub(crate) hung_up: Option<Flag>,
    /// The webhook source the call named, when it exists (for the log).
    pub(crate) source: Option<SourceId>,
    /// The sender's delivery id or the caller's idempotency key (for the
    /// log; recorded only when the log event is enabled).
    pub(crate) delivery: Option<Box<str>>,
    /// Whether the call passed authentication (its token, and the
    /// signature its environment or source requires): only then is it a
    /// delivery the delivery log keeps.
    pub(crate) authenticated: bool,
    /// What the delivery log keeps of the call, when the starter has one.
    pub(crate) captured: Option<Box<crate::starter::deliveries::Captured>>,
}

impl Observed {
    pub(crate) fn from_peer(peer: Option<IpAddr>) -> Self {
        Self {
            peer,
            ..Self::default()
        }
    }
}

/// The outcome label of a start's log event and metrics: `replayed` or
/// `started`.
pub(crate) fn started_label(outcome: &crate::outcome::StartOutcome) -> &'static str {
    if outcome.is_replayed() {
        "replayed"
    } else {
        "started"
    }
}

/// The span of one call: its events carry the caller's trace id (the
/// `trace_id` field, recorded once the `traceparent` header is read), so
/// that logs and the started instance join up.
pub(crate) fn call_span() -> tracing::Span {
    tracing::info_span!(target: "process_webhook", "webhook_call", trace_id = tracing::field::Empty)
}

/// Polls `future` inside `span`. Unlike `Instrument::instrument`, it
/// borrows the pinned future rather than moving it: a start's future is a
/// few KiB, and moving it cost about a tenth of a start (measured with
/// `cargo bench --bench limit`: 1.81 µs with the move, 1.66 µs without).
pub(crate) async fn in_span<F: Future>(span: &tracing::Span, mut future: std::pin::Pin<&mut F>) -> F::Output {
    std::future::poll_fn(|cx| {
        let _entered = span.enter();
        future.as_mut().poll(cx)
    })
    .await
}

/// Runs `future`, turning a panic into `500 internal_error`.
///
/// A plain function returning a combinator, not an `async fn`: an
/// `async fn` keeps its argument and the future it awaits side by side,
/// which doubled the size of every start in flight (measured with
/// `-Zprint-type-sizes`: 4,696 bytes for `WebhookStarter::start`).
pub(crate) fn catch_panic<T>(
    future: impl Future<Output = Result<T, WebhookError>>,
) -> impl Future<Output = Result<T, WebhookError>> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .map(|caught| caught.unwrap_or(Err(WebhookError::Internal)))
}

/// The error and its causes, joined by `: ` (for logs only).
pub(crate) fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The one event of a call: process, environment, the source and the
/// delivery id or key, the instance (or a kept start's delivery id), the
/// outcome, status, code, duration. Never a token: neither the request
/// nor its headers are logged.
pub(crate) fn log_call(
    observed: &Observed,
    result: Result<u16, &WebhookError>,
    outcome: &str,
    instance: Option<&str>,
    elapsed: Duration,
) {
    // Formatted only when a subscriber records the event.
    let process = observed.process.as_ref().map(tracing::field::display);
    let environment = observed.environment.as_ref().map(EnvironmentId::as_str);
    let source = observed.source.as_ref().map(SourceId::as_str);
    let delivery = observed.delivery.as_deref();
    let duration_us = elapsed.as_micros() as u64;
    match result {
        Ok(status) => tracing::info!(
            target: "process_webhook",
            process, environment, source, delivery, instance, outcome, status, code = "ok", duration_us,
            "webhook call"
        ),
        // Refusals that guard the server: worth seeing at `warn`.
        Err(error) if matches!(error.status(), 408 | 413) || error.code() == "server_busy" => tracing::warn!(
            target: "process_webhook",
            process, environment, source, delivery, outcome, status = error.status(), code = error.code(), duration_us,
            "webhook call"
        ),
        Err(error) if error.status() >= 500 => tracing::error!(
            target: "process_webhook",
            process, environment, source, delivery, outcome, status = error.status(), code = error.code(), duration_us,
            error = %chain(error),
            "webhook call"
        ),
        Err(error) => tracing::info!(
            target: "process_webhook",
            process, environment, source, delivery, outcome, status = error.status(), code = error.code(), duration_us,
            "webhook call"
        ),
    }
}
