//! The admin API: `/api/v1/…`, JSON, `Authorization: Bearer` with the
//! admin token; refusals as problem documents.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::Admin;
use super::error::AdminError;
use super::filters::{read_query, record_json, rfc3339};

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/api/v1/deliveries", get(list))
        .route("/api/v1/deliveries/retry", post(retry_dead))
        .route("/api/v1/deliveries/{id}", get(show))
        .route("/api/v1/deliveries/{id}/retry", post(retry))
        .route("/api/v1/deliveries/{id}/discard", post(discard))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The client's address, where the server gives it (as
/// `ConnectInfo<SocketAddr>`, as [`serve`](crate::serve()) does).
pub(super) struct Client(pub(super) Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

fn authorized(admin: &Admin, client: Option<IpAddr>, headers: &HeaderMap) -> Result<(), AdminError> {
    let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    admin.auth.check_bearer(client, header)
}

/// A refusal as a problem document.
fn problem(error: &AdminError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        error.to_problem_json().to_string(),
    )
        .into_response();
    if let Some(seconds) = error.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    if matches!(error, AdminError::MissingToken | AdminError::InvalidToken) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer realm=\"process-webhook admin\""),
        );
    }
    if let AdminError::Unavailable(cause) = error {
        tracing::error!(target: "process_webhook", error = %crate::observe::chain(cause), "the admin API could not read the delivery log");
    }
    response
}

fn answer(result: Result<(StatusCode, Value), AdminError>) -> Response {
    let mut response = match result {
        Ok((status, body)) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Err(error) => problem(&error),
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

async fn list(State(admin): State<Admin>, Client(client): Client, headers: HeaderMap, uri: Uri) -> Response {
    answer(
        async {
            authorized(&admin, client, &headers)?;
            let query = read_query(uri.query().unwrap_or(""))?;
            let page = admin.ops.log.page(&query).await?;
            Ok((
                StatusCode::OK,
                json!({
                    "deliveries": page.deliveries.iter().map(|r| record_json(r, false)).collect::<Vec<_>>(),
                    "cursor": page.next.map(|c| c.to_string()),
                }),
            ))
        }
        .await,
    )
}

/// What the API does to one delivery.
#[derive(Clone, Copy)]
enum OnOne {
    Show,
    Retry,
    Discard,
}

async fn one(admin: Admin, client: Option<IpAddr>, headers: HeaderMap, id: String, on: OnOne) -> Response {
    answer(
        async {
            authorized(&admin, client, &headers)?;
            Ok(match on {
                OnOne::Show => (
                    StatusCode::OK,
                    record_json(&admin.ops.delivery_at(&id).await?, true),
                ),
                OnOne::Retry => (
                    StatusCode::ACCEPTED,
                    record_json(&admin.ops.retry_at(&id).await?, false),
                ),
                OnOne::Discard => (
                    StatusCode::OK,
                    record_json(&admin.ops.discard_at(&id).await?, false),
                ),
            })
        }
        .await,
    )
}

async fn show(
    State(admin): State<Admin>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(admin, client, headers, id, OnOne::Show).await
}

async fn retry(
    State(admin): State<Admin>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(admin, client, headers, id, OnOne::Retry).await
}

async fn discard(
    State(admin): State<Admin>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one(admin, client, headers, id, OnOne::Discard).await
}

async fn retry_dead(
    State(admin): State<Admin>,
    Client(client): Client,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    answer(
        async {
            authorized(&admin, client, &headers)?;
            let query = read_query(uri.query().unwrap_or(""))?;
            Ok((
                StatusCode::ACCEPTED,
                json!({"retried": admin.ops.retry_dead(&query).await?}),
            ))
        }
        .await,
    )
}

/// The last 24 hours.
pub(super) const SUMMARY_WINDOW: Duration = Duration::from_secs(24 * 3_600);

async fn sources(State(admin): State<Admin>, Client(client): Client, headers: HeaderMap) -> Response {
    answer(
        async {
            authorized(&admin, client, &headers)?;
            let since = SystemTime::now() - SUMMARY_WINDOW;
            let summaries = admin.ops.log.summarize(since).await?;
            let sources: Vec<Value> = summaries
                .iter()
                .map(|s| {
                    json!({
                        "source": s.source.as_ref().map(|s| s.as_str()),
                        "process": s.process.to_string(),
                        "counts": s.counts.iter().map(|(o, n)| (o.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
                        "lastReceivedAt": rfc3339(s.last_received_at),
                        "lastFailure": s.last_failure.as_ref().map(|f| json!({
                            "id": f.id.to_string(),
                            "receivedAt": rfc3339(f.received_at),
                            "outcome": f.outcome.as_str(),
                            "code": f.code,
                        })),
                    })
                })
                .collect();
            Ok((StatusCode::OK, json!({"since": rfc3339(since), "sources": sources})))
        }
        .await,
    )
}

async fn openapi() -> Response {
    answer(Ok((StatusCode::OK, document())))
}

/// The API's OpenAPI 3.1 document.
pub(crate) fn document() -> Value {
    let problem = json!({"description": "a problem document", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let filters = json!([
        {"name": "status", "in": "query", "schema": {"type": "string", "enum": crate::delivery_log::LoggedOutcome::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>()}},
        {"name": "source", "in": "query", "schema": {"type": "string"}},
        {"name": "process", "in": "query", "schema": {"type": "string", "format": "uuid"}},
        {"name": "environment", "in": "query", "schema": {"type": "string"}},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]);
    let mut paged = filters.as_array().cloned().unwrap_or_default();
    paged.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": super::filters::MAX_LIMIT}}));
    paged.push(json!({"name": "cursor", "in": "query", "schema": {"type": "string"}}));
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
    let errors = |codes: &[&str]| {
        let mut responses = serde_json::Map::new();
        for (code, status, _) in AdminError::TABLE {
            if codes.contains(&code) {
                responses.insert(status.to_string(), problem.clone());
            }
        }
        responses
    };
    let auth = [
        "missing_admin_token",
        "invalid_admin_token",
        "too_many_failures",
        "log_unavailable",
    ];
    let with = |ok: (&str, &str), more: &[&str]| {
        let mut responses = errors(&[&auth[..], more].concat());
        responses.insert(
            ok.0.to_owned(),
            json!({"description": ok.1, "content": {"application/json": {}}}),
        );
        Value::Object(responses)
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": "process-webhook admin API", "version": env!("CARGO_PKG_VERSION")},
        "security": [{"adminToken": []}],
        "paths": {
            "/api/v1/deliveries": {"get": {"summary": "Deliveries, newest first", "parameters": paged, "responses": with(("200", "a page of deliveries and the next page's cursor"), &["invalid_filter"])}},
            "/api/v1/deliveries/retry": {"post": {"summary": "Retry every dead delivery the filters take", "parameters": filters, "responses": with(("202", "how many were retried"), &["invalid_filter"])}},
            "/api/v1/deliveries/{id}": {"get": {"summary": "One delivery: attempts, headers, payload", "parameters": id, "responses": with(("200", "the delivery"), &["delivery_not_found"])}},
            "/api/v1/deliveries/{id}/retry": {"post": {"summary": "Retry a dead delivery", "parameters": id, "responses": with(("202", "the delivery, queued"), &["delivery_not_found", "not_retryable"])}},
            "/api/v1/deliveries/{id}/discard": {"post": {"summary": "Discard a queued or dead delivery", "parameters": id, "responses": with(("200", "the delivery, discarded"), &["delivery_not_found", "not_discardable"])}},
            "/api/v1/sources": {"get": {"summary": "Per source and process: the last 24 hours", "responses": with(("200", "the summaries"), &[])}},
        },
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {"type": "object", "required": ["type", "title", "status", "detail", "code"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string", "enum": AdminError::TABLE.iter().map(|r| r.0).collect::<Vec<_>>()}
            }}}
        }
    })
}
