//! Fixtures shared by the benchmarks.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use process_webhook::*;
use serde_json::{Value, json};

/// An engine that does nothing but drop the command.
pub struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        black_box(command);
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}

pub const PROCESS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

pub struct Fixture {
    pub models: InMemoryModelStore,
    pub tokens: InMemoryTokenStore,
    pub token: EnvironmentToken,
    pub auth: String,
    pub target: String,
}

/// The documented example, with `extra_models` more models (each deployed)
/// and `extra_tokens` more tokens.
pub fn fixture(extra_models: usize, extra_tokens: usize) -> Fixture {
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
        token,
        target: webhook_url("/webhook/send", &process),
    }
}

/// The documented payload, padded with an `items` array to at least `size`
/// bytes (75 bytes: the documented payload alone).
pub fn body(size: usize) -> Vec<u8> {
    let mut payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let mut items = Vec::new();
    let mut len = serde_json::to_vec(&payload).unwrap().len();
    while len < size {
        let item = json!({"sku": format!("SKU-{:06}", items.len()), "quantity": items.len() % 7 + 1, "price": 19.99, "note": "gift wrap"});
        len += serde_json::to_vec(&item).unwrap().len() + 1;
        items.push(item);
    }
    if !items.is_empty() {
        payload["items"] = Value::Array(items);
    }
    serde_json::to_vec(&payload).unwrap()
}

/// Polls a future that never waits (the in-memory stores and the no-op
/// engine are ready at once) without a runtime's overhead.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the in-memory path never waits"),
    }
}

/// A whole start from raw parts.
pub async fn start(f: &Fixture, body: &[u8]) -> StartOutcome {
    let request =
        WebhookStartRequest::from_parts(&f.target, [("authorization", f.auth.as_str())], body).unwrap();
    start_via_webhook(request, &f.models, &f.tokens, &NoopEngine)
        .await
        .unwrap()
}

/// Runs `starts` whole starts (or, with `parse_only`, body parses) on
/// `runtime`, spread over 64 tasks so that scheduling does not dominate.
pub fn spread_starts(
    runtime: &tokio::runtime::Runtime,
    f: &std::sync::Arc<Fixture>,
    body: &std::sync::Arc<[u8]>,
    starts: usize,
    parse_only: bool,
) {
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (f, body) = (f.clone(), body.clone());
                tokio::spawn(async move {
                    for _ in 0..starts / 64 {
                        if parse_only {
                            black_box(
                                serde_json::from_slice::<serde_json::Map<String, Value>>(&body).unwrap(),
                            );
                        } else {
                            black_box(start(&f, &body).await);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

// Interleaved ratios: each round times the subject and its floor back to
// back, alternating which goes first; the report is the median of the
// per-round ratios, so that a noisy machine's drift cancels.

pub const ROUNDS: usize = 41;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Times `iters` calls of `f`.
pub fn time(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

/// Median over rounds of (subject time / floor time), with the median
/// per-call times of each.
pub fn ratio(iters: u32, mut floor: impl FnMut(), mut subject: impl FnMut()) -> (f64, f64, f64) {
    let (mut ratios, mut floors, mut subjects) = (Vec::new(), Vec::new(), Vec::new());
    time(iters, &mut floor);
    time(iters, &mut subject);
    for round in 0..ROUNDS {
        // Alternate which goes first.
        let (f, s) = if round % 2 == 0 {
            let f = time(iters, &mut floor);
            (f, time(iters, &mut subject))
        } else {
            let s = time(iters, &mut subject);
            (time(iters, &mut floor), s)
        };
        ratios.push(s.as_secs_f64() / f.as_secs_f64());
        floors.push(f.as_secs_f64() / iters as f64);
        subjects.push(s.as_secs_f64() / iters as f64);
    }
    (median(ratios), median(floors), median(subjects))
}

pub fn show(name: &str, floor_name: &str, (r, f, s): (f64, f64, f64), unit: &str) {
    let scale = if unit == "us" { 1e6 } else { 1e9 };
    println!(
        "{name:<34} {r:>6.2}x   ({floor_name} {:.1} {unit}, subject {:.1} {unit})",
        f * scale,
        s * scale
    );
}
