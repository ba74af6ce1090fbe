//! The `axum` integration against a bare axum handler that only parses the
//! same JSON body and answers 202, both served on loopback in this process
//! and driven by an HTTP/1.1 client with 32 requests in flight (group
//! `http`). The client shares the machine's cores with the servers, which
//! dilutes the difference; `examples/http_bench_server.rs` with `wrk` in a
//! separate process gives the README's figures, with p50/p99 latency.
//!
//! Run with `cargo bench --bench http --features axum`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use process_webhook::*;

mod common;
use common::{body, fixture};

#[path = "../examples/shared/bench_app.rs"]
#[allow(dead_code)]
mod bench_app;
use bench_app::{NoopEngine, bare};

const REQUESTS: usize = 512;
const IN_FLIGHT: usize = 32;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `REQUESTS` requests, `IN_FLIGHT` at a time; every answer must be 202.
async fn load(client: &reqwest::Client, url: &str, auth: &str, body: &Bytes) -> Duration {
    let start = Instant::now();
    let per_worker = REQUESTS / IN_FLIGHT;
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, url, auth, body) = (client.clone(), url.to_owned(), auth.to_owned(), body.clone());
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    let r = client
                        .post(&url)
                        .header("authorization", &auth)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 202);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    start.elapsed()
}

fn http(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(0, 0);
    let starter = WebhookStarter::new(
        Arc::new(f.models.clone()),
        Arc::new(f.tokens.clone()),
        Arc::new(NoopEngine),
    );
    let (ours, floor) = runtime.block_on(async {
        let ours = serve(router("/webhook/send", starter)).await;
        let floor = serve(Router::new().route("/bare", post(bare))).await;
        (ours, floor)
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let body = Bytes::from(body(75));
    let ours_url = format!("http://{ours}{}", f.target);
    let floor_url = format!("http://{floor}/bare");

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.sample_size(20);
    group.bench_function("bare_axum_parse_only", |b| {
        b.to_async(&runtime)
            .iter(|| load(&client, &floor_url, &f.auth, &body))
    });
    group.bench_function("process_webhook_router", |b| {
        b.to_async(&runtime)
            .iter(|| load(&client, &ours_url, &f.auth, &body))
    });
    group.finish();
}

criterion_group!(benches, http);
criterion_main!(benches);
