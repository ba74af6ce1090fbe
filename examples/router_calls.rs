//! The router and the bare parse-and-202 handler called in-process (tower
//! `oneshot`, no network), for counting instructions per request, which
//! unlike wall-clock time is repeatable on a noisy machine:
//!
//! ```sh
//! cargo build --release --example router_calls --features axum
//! valgrind --tool=callgrind ./target/release/examples/router_calls bare 20000
//! valgrind --tool=callgrind ./target/release/examples/router_calls ours 20000
//! valgrind --tool=callgrind ./target/release/examples/router_calls ours 0   # the fixed cost to subtract
//! ```
//!
//! Instructions per request = (total(N) - total(0)) / N.

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::routing::post;
use process_webhook::*;
use serde_json::{Map, Value};
use std::sync::Arc;
use tower::ServiceExt;

struct NoopEngine;
#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        drop(command);
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}
async fn bare(body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Map<String, Value>>(&body) {
        Ok(map) => {
            drop(std::hint::black_box(map));
            StatusCode::ACCEPTED
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}
const BODY: &str = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;
#[inline(never)]
async fn call(app: &Router, uri: &str) -> u16 {
    let req = Request::post(uri)
        .header("authorization", "Bearer bench")
        .header("content-type", "application/json")
        .header("host", "x")
        .header("user-agent", "wrk")
        .body(Body::from(BODY))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    status
}
#[inline(never)]
async fn bare_call(app: &Router) -> u16 {
    call(app, "/bare").await
}
#[inline(never)]
async fn ours_call(app: &Router) -> u16 {
    call(app, "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555").await
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let token = EnvironmentToken::new("bench");
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
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
    tokens.insert(&token, Environment::new(prod, acme));
    let starter = WebhookStarter::new(models, tokens, Arc::new(NoopEngine));
    let app = Router::new()
        .route("/bare", post(bare))
        .merge(router("/webhook/send", starter));
    rt.block_on(async {
        let which = std::env::args().nth(1).unwrap_or_default();
        let n: usize = std::env::args()
            .nth(2)
            .map(|n| n.parse().unwrap())
            .unwrap_or(20000);
        for _ in 0..n {
            if which == "bare" {
                assert_eq!(bare_call(&app).await, 202);
            } else {
                assert_eq!(ours_call(&app).await, 202);
            }
        }
    });
}
