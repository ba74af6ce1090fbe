//! The server behind the README's HTTP performance figures: on one port, the
//! `axum` integration at `/webhook/send` (in-memory stores, an engine that
//! does nothing); at `/bare`, a bare axum handler that only parses the same
//! JSON body and answers 202, the floor to compare with; and at `/start`, a
//! bare handler that does the start and nothing else (`from_parts`,
//! `start_via_webhook`, 202 with the outcome).
//!
//! ```sh
//! BENCH_TOKEN=bench cargo run --release --example http_bench_server --features axum
//! wrk -t1 -c32 -d10s --latency -s benches/post.lua 'http://127.0.0.1:8090/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! wrk -t1 -c32 -d10s --latency -s benches/post.lua 'http://127.0.0.1:8090/start?uid=dd9759e0-cc94-11ed-938f-13cf60270555'
//! wrk -t1 -c32 -d10s --latency -s benches/post.lua 'http://127.0.0.1:8090/bare'
//! ```
//!
//! `BENCH_ADDR` sets the address (default `127.0.0.1:8090`), `BENCH_WORKERS`
//! the runtime's worker threads (default: all cores).

#[path = "shared/bench_app.rs"]
mod bench_app;

use process_webhook::EnvironmentToken;

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
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving /webhook/send, /start and /bare on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, bench_app::app(&token))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
