//! The app the HTTP measurements use, shared by `examples/http_bench_server.rs`,
//! `examples/router_calls.rs` and `benches/http.rs`: the `axum` integration at
//! `/webhook/send` over the in-memory stores and an engine that does nothing;
//! at `/bare`, the floor: a bare axum handler that only parses the same JSON
//! body and answers 202; and at `/start`, a bare handler that does the start
//! itself and nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use process_webhook::*;
use serde_json::{Map, Value};

/// The process the app starts.
pub const PROCESS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

/// An engine that does nothing but drop the command.
pub struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        std::hint::black_box(command);
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}

/// The floor: parse the body, answer 202.
pub async fn bare(body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Map<String, Value>>(&body) {
        Ok(map) => {
            drop(std::hint::black_box(map));
            StatusCode::ACCEPTED
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// Between the floor and the router: a bare axum handler that does the
/// start itself (reads the call with `WebhookStartRequest::from_parts`, runs
/// `start_via_webhook` on the same stores and engine, answers 202 with the
/// outcome as JSON) and none of the router's own work (limits, body budget,
/// panic guard, completion after a hang-up, log, span).
pub async fn bare_start(
    State(stores): State<Arc<(InMemoryModelStore, InMemoryTokenStore)>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = uri.path_and_query().map_or("", |pq| pq.as_str());
    let headers = headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let started = match WebhookStartRequest::from_parts(target, headers, &body) {
        Ok(request) => start_via_webhook(request, &stores.0, &stores.1, &NoopEngine).await,
        Err(error) => Err(error),
    };
    match started {
        Ok(outcome) => (
            StatusCode::ACCEPTED,
            [(CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&outcome).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => StatusCode::from_u16(error.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}

/// The models and deployments of the bench: "Order intake", deployed to
/// `production` with its three mandatory text fields.
#[allow(dead_code)]
pub fn seed() -> (Vec<ProcessModel>, Vec<Deployment>) {
    let process: ProcessUuid = PROCESS.parse().expect("a UUID");
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    (
        vec![ProcessModel::new(
            process,
            OrganizationId::new("acme"),
            "Order intake",
        )],
        vec![Deployment::new(
            process,
            VersionTag::Released(1),
            EnvironmentId::new("production"),
            form,
        )],
    )
}

/// The environment the bench token opens.
#[allow(dead_code)]
pub fn environment() -> Environment {
    Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
}

/// Both routes; `token` opens the `production` environment where "Order
/// intake" is deployed with its three mandatory text fields.
pub fn app(token: &EnvironmentToken) -> Router {
    let process: ProcessUuid = PROCESS.parse().expect("a UUID");
    let (acme, prod) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    models.deploy(Deployment::new(
        process,
        VersionTag::Released(1),
        prod.clone(),
        form,
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    tokens.insert(token, Environment::new(prod, acme));
    // Clones share their maps: `/start` reads the very stores the router does.
    let stores = Arc::new(((*models).clone(), (*tokens).clone()));
    let starter = WebhookStarter::new(models, tokens, Arc::new(NoopEngine));
    Router::new()
        .route("/bare", post(bare))
        .route("/start", post(bare_start).with_state(stores))
        .merge(router("/webhook/send", starter))
}
