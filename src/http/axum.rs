//! A ready `axum` integration (feature `axum`): the router, and a server
//! loop with the connection limits a public endpoint needs ([`serve`](crate::serve())).

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::FutureExt as _;
use http_body_util::BodyExt as _;
use serde_json::json;

use crate::error::WebhookError;
use crate::http::HttpReply;
use crate::observe::{Observed, call_span, catch_panic, in_span};
use crate::signal::{Flag, RaiseOnDrop};
use crate::starter::WebhookStarter;
use crate::starter::protect::BodyBytes;

/// An `axum::Router` serving the webhook at `path` (e.g. `/webhook/send`)
/// through [`WebhookStarter::handle_method`]: `POST ?uid=…` starts, `GET ?uid=…`
/// answers the payload's JSON Schema, any other method is
/// `405 method_not_allowed`.
///
/// What it does before reading a body, so that unauthenticated callers
/// cannot make it hold memory:
///
/// - the target and headers are checked, and a declared `Content-Length`
///   over the body limit ([`WebhookStarter::with_body_limit`]) is
///   `413 payload_too_large`;
/// - the token on the request is looked up: a missing or unknown one is
///   `401`, answered without reading the body (a `POST` without an
///   `authorization` header is the exception: its token may be inside an
///   envelope body, see [`WebhookStarter::handle`]; turn envelopes off with
///   [`WebhookStarter::with_envelope_bodies`] to refuse it unread as well).
///
/// While reading a body: a body that grows over the limit is cut off with
/// `413`; one that has not fully arrived after the body timeout
/// ([`WebhookStarter::with_body_timeout`], default 10 s) is `408 body_timeout`;
/// and the bytes of all bodies being read and handled at once are bounded
/// ([`WebhookStarter::with_max_body_bytes_in_flight`], default 64 MiB):
/// past it a call is `503 server_busy` with `Retry-After`. Bodies of calls
/// without a token on the request (whose token can only be in an envelope
/// body) may take at most half of that bound together, so that they never
/// crowd out authenticated callers.
///
/// Each exchange runs in its own tokio task once its body is read, so a
/// start is not cut short when the caller hangs up mid-request. The client
/// address, where the server provides it (`ConnectInfo<SocketAddr>`, as
/// [`serve`](crate::serve()) and `axum::serve(…into_make_service_with_connect_info…)` do),
/// goes to the log of failed authentications
/// ([`WebhookStarter::handle_method_from`]).
///
/// Merge it into a host's own router, or serve it with [`serve`](crate::serve()), which adds
/// header, idle and connection limits:
///
/// ```no_run
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # async fn run() -> std::io::Result<()> {
/// let starter = WebhookStarter::new(
///     Arc::new(InMemoryModelStore::new()),
///     Arc::new(InMemoryTokenStore::new()),
///     Arc::new(InMemoryEngine::new()),
/// );
/// let app = router("/webhook/send", starter);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve(listener, app, ServeOptions::default(), std::future::pending()).await
/// # }
/// ```
///
/// A call under the webhook's path (`/webhook/send/dd9759e0-…`, the UUID
/// put in the path instead of the query) is `404 unknown_path`, whose
/// detail shows where the `uid` goes.
///
/// The router is generic over the host's state `S`, so that it merges into
/// a host's `Router<S>` as it is; it needs none of that state itself.
pub fn router<S>(path: &str, starter: WebhookStarter) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut routes = Router::new().route(path, any(serve_call));
    if !path.ends_with('/') {
        let webhook = path.to_owned();
        routes = routes.route(
            &format!("{path}/{{*rest}}"),
            any(move |State(starter): State<WebhookStarter>| wrong_path(starter, webhook.clone())),
        );
    }
    routes.with_state(starter)
}

/// A call under the webhook's path: refused with a hint, and counted and
/// logged as every refusal is.
async fn wrong_path(starter: WebhookStarter, webhook: String) -> Response {
    let (mut observed, started) = (Observed::default(), Instant::now());
    into_response(starter.reply(
        Err(WebhookError::UnknownPath { webhook }),
        &mut observed,
        started,
        &[],
    ))
}

/// An `axum::Router` with the two health checks a load balancer or an
/// orchestrator probes, to merge into the host's router next to
/// [`router`]:
///
/// - `GET /healthz`: the process lives and serves HTTP: always `200`
///   `{"status": "live"}`, touching no store;
/// - `GET /readyz`: [`WebhookStarter::ready`]: `200` `{"status": "ready"}`,
///   or `503` with the [`NotReady`](crate::NotReady) problem document naming
///   the components that cannot serve (never a secret or a connection
///   string) and `Retry-After: 1`.
///
/// Neither needs a token: they say nothing about processes or environments.
///
/// ```no_run
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # async fn run() -> std::io::Result<()> {
/// let starter = WebhookStarter::new(
///     Arc::new(InMemoryModelStore::new()),
///     Arc::new(InMemoryTokenStore::new()),
///     Arc::new(InMemoryEngine::new()),
/// );
/// let app = router("/webhook/send", starter.clone()).merge(health_router(starter));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// serve(listener, app, ServeOptions::default(), std::future::pending()).await
/// # }
/// ```
pub fn health_router<S>(starter: WebhookStarter) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/healthz",
            get(|| async { json_response(StatusCode::OK, &json!({"status": "live"})) }),
        )
        .route("/readyz", get(readyz))
        .with_state(starter)
}

async fn readyz(State(starter): State<WebhookStarter>) -> Response {
    match starter.readiness().await {
        (Ok(()), engine_ready) => {
            let engine = if engine_ready { "ready" } else { "unavailable" };
            json_response(StatusCode::OK, &json!({"status": "ready", "engine": engine}))
        }
        (Err(not_ready), _) => {
            let mut response = json_response(StatusCode::SERVICE_UNAVAILABLE, &not_ready.to_problem_json());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response()
}

async fn serve_call(State(starter): State<WebhookStarter>, request: Request) -> Response {
    let span = call_span();
    let call = serve_call_in(starter, request, span.clone());
    in_span(&span, std::pin::pin!(call)).await
}

async fn serve_call_in(starter: WebhookStarter, request: Request, span: tracing::Span) -> Response {
    let (parts, body) = request.into_parts();
    let started = Instant::now();
    let mut observed = Observed::from_peer(
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip()),
    );
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|len| usize::try_from(len).unwrap_or(usize::MAX));
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), header_text(value)));
    let admitted =
        catch_panic(starter.admit(parts.method.as_str(), target, headers, declared, &mut observed)).await;
    let admitted = match admitted {
        Ok(admitted) => admitted,
        // Refused on its head: the body is never read.
        Err(error) => return into_response(starter.settle(Err(error), &mut observed, started, &[]).await),
    };
    let authenticated = admitted.is_authenticated();
    let (body, held) = match read_body(body, &starter, declared, authenticated).await {
        Ok(read) => read,
        Err(error) => return into_response(starter.reply(Err(error), &mut observed, started, &[])),
    };
    // The rest runs to its end even when the caller hangs up and hyper
    // drops this future (see `RunToEnd`): a start that reached the engine
    // still completes and records its outcome, so the caller's retry gets
    // the replay instead of a key held by an abandoned start.
    // A caller that hangs up drops this future, and with it the guard:
    // the rest sees the flag raised and stops waiting (`Prefer: wait`),
    // never the start.
    let hung_up = Flag::default();
    observed.hung_up = Some(hung_up.clone());
    let _guard = RaiseOnDrop(hung_up);
    let task_starter = starter.clone();
    let exchange = RunToEnd::new(async move {
        let starter = task_starter;
        let call = async {
            let result = catch_panic(starter.finish(admitted, &body, &mut observed)).await;
            let reply = starter.settle(result, &mut observed, started, &body).await;
            drop(held);
            reply
        };
        in_span(&span, std::pin::pin!(call)).await
    });
    match std::panic::AssertUnwindSafe(exchange).catch_unwind().await {
        Ok(reply) => into_response(reply),
        Err(_) => into_response(HttpReply::from_error(&WebhookError::Internal)),
    }
}

/// A header value as text: itself when it is UTF-8 (checked by the fast
/// `from_utf8`), else with U+FFFD for what is not.
fn header_text(value: &HeaderValue) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// Runs a future in the task that awaits it and, if that task drops it
/// before it is done (hyper drops a handler whose caller hung up), runs the
/// rest in a task of its own: a start that reached the engine still
/// completes and records its outcome. Boxed, so that it can move to that
/// task without moving (the future is pinned on the heap).
///
/// Spawning a task for every call did the same at the cost of a task, its
/// scheduling and a wake-up per call; this spawns only for calls whose
/// caller left.
struct RunToEnd<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    future: Option<std::pin::Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> RunToEnd<F>
where
    F::Output: Send + 'static,
{
    fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F: Future + Send + 'static> Future for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        // Taken out while it is polled: a future that panics is dropped
        // with the panic, never handed on.
        let Some(mut future) = self.future.take() else {
            return std::task::Poll::Pending;
        };
        match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => std::task::Poll::Ready(output),
            std::task::Poll::Pending => {
                self.future = Some(future);
                std::task::Poll::Pending
            }
        }
    }
}

impl<F: Future + Send + 'static> Drop for RunToEnd<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let (Some(future), Ok(runtime)) = (self.future.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(future);
        }
    }
}

/// Reads a body within the starter's limits: its size, its time, and the
/// bytes all bodies may hold at once (the claim on them is returned, to be
/// dropped when the call is done).
async fn read_body(
    mut body: Body,
    starter: &WebhookStarter,
    declared: Option<usize>,
    authenticated: bool,
) -> Result<(Vec<u8>, BodyBytes), WebhookError> {
    let limit = starter.body_limit();
    let mut held = starter.body_budget().claim(authenticated);
    // A declared length is claimed whole before any byte is read.
    if let Some(len) = declared {
        if !held.grow(len) {
            return Err(WebhookError::ServerBusy);
        }
    }
    let read = async {
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(64 * 1024));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| WebhookError::MalformedPayload { source: None })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = bytes.len() + data.len();
            if len > limit {
                return Err(WebhookError::PayloadTooLarge { limit });
            }
            if !held.grow(len.saturating_sub(held.bytes())) {
                return Err(WebhookError::ServerBusy);
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes)
    };
    let limit = starter.body_timeout();
    match tokio::time::timeout(limit, read).await {
        Ok(result) => result.map(|bytes| (bytes, held)),
        Err(_) => Err(WebhookError::BodyTimeout { limit }),
    }
}

/// The response of a reply, its headers written straight into the
/// response's own map (a map of our own merged into it cost a second map).
fn into_response(reply: HttpReply) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() =
        StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let map = response.headers_mut();
    // Room for `Content-Type`, ours, and the `Content-Length` axum adds.
    map.reserve(reply.headers().count() + 2);
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type_static()),
    );
    for (name, value) in reply.headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            map.append(name, value);
        }
    }
    *response.body_mut() = Body::from(reply.into_body());
    response
}
