//! The server behind the README's Redis figures: the same webhook with
//! idempotency keys in memory and in Redis, and an engine that does nothing.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --example redis_bench_server --features axum,redis
//! wrk -t1 -c32 -d10s -s benches/post_keyed.lua 'http://127.0.0.1:8092/redis-idempotent?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! redis-benchmark -t set -c 32 -n 300000 -q
//! ```
//!
//! `BENCH_ADDR` sets the address (default `127.0.0.1:8092`), `BENCH_TOKEN`
//! the token (default `bench`). Keys go under a prefix of their own.

#[path = "shared/bench_app.rs"]
#[allow(dead_code)] // the other examples use the rest
mod bench_app;

use std::sync::Arc;

use process_webhook::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL")?;
    let addr = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:8092".to_owned());
    let token = EnvironmentToken::new(std::env::var("BENCH_TOKEN").unwrap_or_else(|_| "bench".to_owned()));
    let (models, deployments) = bench_app::seed();
    let model_store = Arc::new(InMemoryModelStore::new());
    models.into_iter().for_each(|m| model_store.insert_model(m));
    deployments.into_iter().for_each(|d| model_store.deploy(d));
    let tokens = Arc::new(InMemoryTokenStore::new());
    tokens.insert(&token, bench_app::environment());
    let engine = Arc::new(bench_app::NoopEngine);
    let keys = RedisIdempotencyStore::connect(&url)
        .await?
        .with_prefix(format!("bench:{}", uuid::Uuid::new_v4().simple()));
    let app = router(
        "/memory-idempotent",
        WebhookStarter::new(model_store.clone(), tokens.clone(), engine.clone()).with_idempotency(Arc::new(
            InMemoryIdempotencyStore::new().with_capacity(10_000_000),
        )),
    )
    .merge(router(
        "/redis-idempotent",
        WebhookStarter::new(model_store, tokens, engine).with_idempotency(Arc::new(keys)),
    ));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving /memory-idempotent and /redis-idempotent on http://{}",
        listener.local_addr()?
    );
    serve(listener, app, ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
