//! The server behind the README's HTTP performance figures: on one port, the
//! `axum` integration at `/webhook/send` (in-memory stores, an engine that
//! does nothing) and, at `/bare`, a bare axum handler that only parses the
//! same JSON body and answers 202, the floor to compare with.
//!
//! ```sh
//! BENCH_TOKEN=bench cargo run --release --example http_bench_server --features axum
//! wrk -t1 -c32 -d10s --latency -s benches/post.lua 'http://127.0.0.1:8090/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! wrk -t1 -c32 -d10s --latency -s benches/post.lua 'http://127.0.0.1:8090/bare'
//! ```
//!
//! `BENCH_ADDR` sets the address (default `127.0.0.1:8090`), `BENCH_WORKERS`
//! the runtime's worker threads (default: all cores).

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use process_webhook::*;
use serde_json::{Map, Value};

struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        drop(command);
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}

/// The floor: parse the body, answer 202.
async fn bare(body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Map<String, Value>>(&body) {
        Ok(map) => {
            drop(std::hint::black_box(map));
            StatusCode::ACCEPTED
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::env::var("BENCH_WORKERS").ok().and_then(|w| w.parse().ok());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = workers {
        runtime.worker_threads(workers);
    }
    runtime.build()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:8090".to_owned());
    let token = EnvironmentToken::new(std::env::var("BENCH_TOKEN").unwrap_or_else(|_| "bench".to_owned()));
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
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
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving /webhook/send and /bare on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
