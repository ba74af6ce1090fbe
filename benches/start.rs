//! Issue 5's targets, each measured against its floor in the same group so
//! that the ratio is read from one run:
//!
//! - `start_vs_parse/{75B,4KiB,64KiB}`: `from_parts` + `start_via_webhook`
//!   (in-memory stores, no-op engine) against `serde_json::from_slice` of the
//!   same body alone.
//! - `store_size`: the same start with 10 tokens and models stored, and with
//!   100,000 tokens and 10,000 models.
//! - `cores`: 20,000 starts on the multi-threaded runtime with 1 and with 2
//!   worker threads.
//!
//! Run with `cargo bench --bench start`. The HTTP and memory targets are in
//! `benches/http.rs` and `benches/memory.rs`.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use process_webhook::*;
use serde_json::{Map, Value, json};

/// An engine that does nothing but drop the command.
struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        drop(black_box(command));
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}

const PROCESS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

struct Fixture {
    models: InMemoryModelStore,
    tokens: InMemoryTokenStore,
    auth: String,
    target: String,
}

/// The documented example, with `extra_models` more models (each deployed)
/// and `extra_tokens` more tokens.
fn fixture(extra_models: usize, extra_tokens: usize) -> Fixture {
    let acme = OrganizationId::new("acme");
    let prod = EnvironmentId::new("production");
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    let process: ProcessUuid = PROCESS.parse().unwrap();
    let models = InMemoryModelStore::new();
    for i in 0..extra_models {
        let uuid = ProcessUuid::from(uuid::Uuid::from_u128(i as u128 + 1));
        models.insert_model(ProcessModel::new(uuid, acme.clone(), format!("model {i}")));
        models.deploy(Deployment::new(
            uuid,
            VersionTag::Released(1),
            prod.clone(),
            form.clone(),
        ));
    }
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    models.deploy(Deployment::new(
        process,
        VersionTag::Released(1),
        prod.clone(),
        form,
    ));
    let tokens = InMemoryTokenStore::new();
    for i in 0..extra_tokens {
        let env = Environment::new(
            EnvironmentId::new(format!("env-{i}")),
            OrganizationId::new(format!("org-{i}")),
        );
        tokens.insert(&EnvironmentToken::generate(), env);
    }
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(prod, acme));
    Fixture {
        models,
        tokens,
        auth: format!("Bearer {}", token.expose_secret()),
        target: webhook_url("/webhook/send", &process),
    }
}

/// The documented payload, padded with an `items` array to about `size` bytes.
fn body(size: usize) -> Vec<u8> {
    let mut payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    if size > 100 {
        let mut items = Vec::new();
        let mut i = 0;
        while serde_json::to_vec(&payload).unwrap().len() < size {
            items.push(json!({"sku": format!("SKU-{i:06}"), "quantity": i % 7 + 1, "price": 19.99, "note": "gift wrap"}));
            payload["items"] = Value::Array(items.clone());
            i += 1;
        }
    }
    serde_json::to_vec(&payload).unwrap()
}

async fn start(f: &Fixture, body: &[u8]) -> StartOutcome {
    let request =
        WebhookStartRequest::from_parts(&f.target, [("authorization", f.auth.as_str())], body).unwrap();
    start_via_webhook(request, &f.models, &f.tokens, &NoopEngine)
        .await
        .unwrap()
}

fn start_vs_parse(c: &mut Criterion) {
    let f = fixture(0, 0);
    let mut group = c.benchmark_group("start_vs_parse");
    for (label, size) in [("75B", 75), ("4KiB", 4096), ("64KiB", 65536)] {
        let body = body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_only", label), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<Map<String, Value>>(black_box(body)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("whole_start", label), &body, |b, body| {
            b.iter(|| futures_executor_block_on(start(&f, black_box(body))))
        });
    }
    group.finish();
}

fn store_size(c: &mut Criterion) {
    let small = fixture(10, 10);
    let large = fixture(10_000, 100_000);
    let body = body(75);
    let mut group = c.benchmark_group("store_size");
    group.bench_function("10_models_10_tokens", |b| {
        b.iter(|| futures_executor_block_on(start(&small, black_box(&body))))
    });
    group.bench_function("10k_models_100k_tokens", |b| {
        b.iter(|| futures_executor_block_on(start(&large, black_box(&body))))
    });
    group.finish();
}

fn cores(c: &mut Criterion) {
    const STARTS: usize = 20_000;
    let f = Arc::new(fixture(0, 0));
    let body: Arc<[u8]> = body(75).into();
    let mut group = c.benchmark_group("cores");
    group.sample_size(20);
    group.throughput(Throughput::Elements(STARTS as u64));
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("starts", format!("{workers}_workers")), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    // One task per worker-sized share, so that scheduling
                    // overhead does not dominate.
                    let tasks: Vec<_> = (0..64)
                        .map(|_| {
                            let (f, body) = (f.clone(), body.clone());
                            tokio::spawn(async move {
                                for _ in 0..STARTS / 64 {
                                    black_box(start(&f, &body).await);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

/// Polls a future that never waits (the in-memory stores and the no-op
/// engine are ready at once) without a runtime's overhead.
fn futures_executor_block_on<F: Future>(future: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the in-memory path never waits"),
    }
}

criterion_group!(benches, start_vs_parse, store_size, cores);
criterion_main!(benches);
