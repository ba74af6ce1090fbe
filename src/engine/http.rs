//! What the engines that speak HTTP (Camunda 7, Camunda 8, Temporal) share:
//! reading `Retry-After`, and turning a failed request into an error.

use std::time::Duration;

use crate::engine::EngineError;

/// The `Retry-After` of an answer, in seconds, when it has one.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A request to `to` that failed before an answer: retryable.
pub(crate) fn transport_error(to: &str, error: reqwest::Error) -> EngineError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    EngineError::new(format!("the request to {to} {what}"))
        .with_retryable(true)
        .with_source(error)
}

/// Sends a readiness probe (a `GET` that starts nothing): ready when the
/// answer is a success.
pub(crate) async fn probe(to: &str, request: reqwest::RequestBuilder) -> Result<(), EngineError> {
    let response = request.send().await.map_err(|e| transport_error(to, e))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(EngineError::unavailable(format!(
            "{to} answered {} to a readiness probe",
            status.as_u16()
        )))
    }
}
