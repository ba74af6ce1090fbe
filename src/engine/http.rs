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

/// A request to `to` that failed before an answer. One that never
/// connected (refused, no route, a name that does not resolve, a connect
/// timeout) sent nothing, so the engine is
/// [`Unavailable`](crate::EngineErrorKind::Unavailable): `503
/// engine_unavailable` with `Retry-After`. Any other (a timeout or a reset
/// after the request may have been sent) is uncertain: a retryable failure.
pub(crate) fn transport_error(to: &str, error: reqwest::Error) -> EngineError {
    if error.is_connect() {
        return EngineError::unavailable(format!("the request to {to} could not connect")).with_source(error);
    }
    let what = if error.is_timeout() { "timed out" } else { "failed" };
    EngineError::new(format!("the request to {to} {what}"))
        .with_retryable(true)
        .with_source(error)
}

/// An answer's status and its JSON body (`null` when it has none, or none
/// that parses): what the Camunda engines' reads branch on.
#[cfg(any(feature = "camunda7", feature = "camunda8"))]
pub(crate) async fn status_and_json(
    to: &str,
    response: reqwest::Response,
) -> Result<(u16, serde_json::Value), EngineError> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| transport_error(to, e))?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
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

/// Polls an instance with `look` until it has ended or `within` has passed
/// (then [`Completion::Running`](crate::Completion::Running)): at once,
/// then after 100 ms, the pause doubling up to a second. `look` is given
/// the time left (its request's timeout at most) and answers `Ok(None)`
/// while the instance runs; a retryable failure once the time is up is
/// `Running` too, any other failure ends the wait.
#[cfg(any(feature = "camunda7", feature = "camunda8"))]
pub(crate) async fn poll_until_ended<F, Fut>(
    within: Duration,
    mut look: F,
) -> Result<Option<crate::Completion>, EngineError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Option<crate::Completion>, EngineError>>,
{
    use crate::Completion;
    let deadline = std::time::Instant::now() + within;
    let mut pause = Duration::from_millis(100);
    loop {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            return Ok(Some(Completion::Running));
        }
        match look(remaining).await {
            Ok(Some(ended)) => return Ok(Some(ended)),
            Ok(None) => {}
            Err(error) if error.is_retryable() && std::time::Instant::now() >= deadline => {
                return Ok(Some(Completion::Running));
            }
            Err(error) => return Err(error),
        }
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        // reqwest already needs a tokio runtime, so its timer is there.
        tokio::time::sleep(pause.min(remaining)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}
