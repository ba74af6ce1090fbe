//! The server behind the README's figures for many replicas: the same
//! webhook on one port over three kinds of stores, with an engine that does
//! nothing, so that the difference is the stores'.
//!
//! - `/memory`: the in-memory stores, no idempotency;
//! - `/postgres`: `PostgresStore` (its cache on), no idempotency;
//! - `/postgres-idempotent`: `PostgresStore`, idempotency keys in PostgreSQL.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo run --release --example stores_bench_server --features axum,postgres
//! wrk -t1 -c32 -d10s -s benches/post.lua 'http://127.0.0.1:8091/memory?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! wrk -t1 -c32 -d10s -s benches/post.lua 'http://127.0.0.1:8091/postgres?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! wrk -t1 -c32 -d10s -s benches/post_keyed.lua 'http://127.0.0.1:8091/postgres-idempotent?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! ```
//!
//! It works in schema `bench_stores` (dropped and created anew at start).
//! `BENCH_ADDR` sets the address (default `127.0.0.1:8091`), `BENCH_TOKEN`
//! the token (default `bench`).

#[path = "shared/bench_app.rs"]
#[allow(dead_code)] // the other examples use the rest
mod bench_app;

use std::sync::Arc;

use process_webhook::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:8091".to_owned());
    let token = EnvironmentToken::new(std::env::var("BENCH_TOKEN").unwrap_or_else(|_| "bench".to_owned()));

    let store = PostgresStore::connect(&url).await?.with_schema("bench_stores")?;
    sqlx::query("DROP SCHEMA IF EXISTS bench_stores CASCADE")
        .execute(store.pool())
        .await?;
    store.migrate().await?;
    let (models, deployments) = bench_app::seed();
    let memory_models = Arc::new(InMemoryModelStore::new());
    for model in models {
        store.insert_model(model.clone()).await?;
        memory_models.insert_model(model);
    }
    for deployment in deployments {
        store.deploy(deployment.clone()).await?;
        memory_models.deploy(deployment);
    }
    let environment = bench_app::environment();
    store.insert(&token, environment.clone()).await?;
    let memory_tokens = Arc::new(InMemoryTokenStore::new());
    memory_tokens.insert(&token, environment);
    let store = Arc::new(store);
    let engine = Arc::new(bench_app::NoopEngine);

    let app = router(
        "/memory",
        WebhookStarter::new(memory_models, memory_tokens, engine.clone()),
    )
    .merge(router(
        "/postgres",
        WebhookStarter::new(store.clone(), store.clone(), engine.clone()),
    ))
    .merge(router(
        "/postgres-idempotent",
        WebhookStarter::new(store.clone(), store.clone(), engine).with_idempotency(store),
    ));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving /memory, /postgres and /postgres-idempotent on http://{}",
        listener.local_addr()?
    );
    serve(listener, app, ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
