//! The app the HTTP measurements use, shared by `examples/http_bench_server.rs`,
//! `examples/router_calls.rs` and `benches/http.rs`: the `axum` integration at
//! `/webhook/send` over the in-memory stores and an engine that does nothing,
//! and, at `/bare`, the floor: a bare axum handler that only parses the same
//! JSON body and answers 202.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use process_webhook::*;
use serde_json::{Map, Value};

/// The process the app starts.
pub const PROCESS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

/// An engine that does nothing but drop the command.
pub struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        drop(std::hint::black_box(command));
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
    let starter = WebhookStarter::new(models, tokens, Arc::new(NoopEngine));
    Router::new()
        .route("/bare", post(bare))
        .merge(router("/webhook/send", starter))
}
