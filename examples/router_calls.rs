//! The router and the bare parse-and-202 handler called in-process (tower
//! `oneshot`, no network), for counting instructions per request, which
//! unlike wall-clock time is repeatable on a noisy machine:
//!
//! ```sh
//! cargo build --release --example router_calls --features axum
//! valgrind --tool=callgrind ./target/release/examples/router_calls bare 20000
//! valgrind --tool=callgrind ./target/release/examples/router_calls start 20000  # the start alone in a bare handler
//! valgrind --tool=callgrind ./target/release/examples/router_calls ours 20000
//! valgrind --tool=callgrind ./target/release/examples/router_calls ours 0   # the fixed cost to subtract
//! ```
//!
//! Instructions per request = (total(N) - total(0)) / N.

#[path = "shared/bench_app.rs"]
mod bench_app;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use process_webhook::EnvironmentToken;
use tower::ServiceExt;

const BODY: &str = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;

#[inline(never)]
async fn call(app: &Router, uri: &str) -> u16 {
    let request = Request::post(uri)
        .header("authorization", "Bearer bench")
        .header("content-type", "application/json")
        .header("host", "x")
        .header("user-agent", "wrk")
        .body(Body::from(BODY))
        .expect("a request");
    let response = app.clone().oneshot(request).await.expect("an answer");
    let status = response.status().as_u16();
    let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
    status
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let uri = match which.as_str() {
        "bare" => "/bare".to_owned(),
        "start" => format!("/start?uid={}", bench_app::PROCESS),
        _ => format!("/webhook/send?uid={}", bench_app::PROCESS),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let app = bench_app::app(&EnvironmentToken::new("bench"));
    runtime.block_on(async {
        for _ in 0..n {
            assert_eq!(call(&app, &uri).await, 202);
        }
    });
}
