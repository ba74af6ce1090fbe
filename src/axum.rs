//! A ready `axum` integration (feature `axum`).

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use crate::error::WebhookError;
use crate::http::HttpReply;
use crate::starter::WebhookStarter;

/// An `axum::Router` serving the webhook at `path` (e.g. `/webhook/send`)
/// through [`WebhookStarter::handle_method`]: `POST ?uid=…` starts, `GET ?uid=…`
/// answers the payload's JSON Schema, any other method is
/// `405 method_not_allowed`.
///
/// The body limit ([`WebhookStarter::with_body_limit`]) is enforced while the
/// body is read: a declared `Content-Length` over it is refused before any
/// byte is read, and a body that grows over it is cut off, both with
/// `413 payload_too_large`.
///
/// Each exchange runs in its own tokio task, so a start is not cut short
/// when the caller hangs up mid-request.
///
/// Merge it into a host's own router, or serve it alone:
///
/// ```no_run
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # async fn serve() -> std::io::Result<()> {
/// let starter = WebhookStarter::new(
///     Arc::new(InMemoryModelStore::new()),
///     Arc::new(InMemoryTokenStore::new()),
///     Arc::new(InMemoryEngine::new()),
/// );
/// let app = router("/webhook/send", starter);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn router(path: &str, starter: WebhookStarter) -> Router {
    Router::new().route(path, any(serve)).with_state(starter)
}

async fn serve(State(starter): State<WebhookStarter>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = starter.body_limit();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return into_response(HttpReply::from_error(&WebhookError::PayloadTooLarge { limit }));
    }
    let body = match read_limited(body, limit).await {
        Ok(bytes) => bytes,
        Err(reply) => return into_response(reply),
    };
    // The exchange runs in its own task: when the caller hangs up and hyper
    // drops this future, a start that reached the engine still completes and
    // records its outcome, so the caller's retry gets the replay instead of
    // a key held by an abandoned start.
    // Boxed: the exchange's future is a few KiB, and the task would
    // otherwise copy it on every move (profiled: a third of the handler's
    // instructions were memcpy, about 15% of all).
    let exchange = tokio::spawn(Box::pin(async move {
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())));
        starter
            .handle_method(parts.method.as_str(), target, headers, &body)
            .await
    }));
    match exchange.await {
        Ok(reply) => into_response(reply),
        Err(_) => into_response(HttpReply::from_error(&WebhookError::Internal)),
    }
}

async fn read_limited(body: Body, limit: usize) -> Result<axum::body::Bytes, HttpReply> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => {
            Err(HttpReply::from_error(&WebhookError::PayloadTooLarge { limit }))
        }
        Err(_) => Err(HttpReply::from_error(&WebhookError::MalformedPayload {
            source: None,
        })),
    }
}

fn into_response(reply: HttpReply) -> Response {
    let status = StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type_static()),
    );
    for (name, value) in reply.headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    (status, headers, reply.into_body()).into_response()
}
