//! What the two Redis backends (the idempotency store and the rate
//! limiter) share: a call bounded by a timeout, and a `PING` (feature
//! `redis`). Neither backend depends on the other.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::port_error::StoreError;

/// One `PING`, bounded by `timeout`: whether Redis answers now.
pub(crate) async fn ping(connection: &ConnectionManager, timeout: Duration) -> Result<(), StoreError> {
    let mut connection = connection.clone();
    let command = redis::cmd("PING");
    bounded("ping", timeout, command.query_async::<String>(&mut connection))
        .await
        .map(drop)
}

/// A Redis call bounded by `timeout`: its failure, or its silence, as a
/// [`StoreError`] saying `redis: {what}`.
pub(crate) async fn bounded<T>(
    what: &str,
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(StoreError::new(format!("redis: {what}")).with_source(error)),
        Err(_) => Err(StoreError::new(format!(
            "redis: {what}: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
