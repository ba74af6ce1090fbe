//! The cost of the in-memory rate limiter per start: a whole start through
//! `WebhookStarter::start` with and without a per-environment limit (a quota
//! it never reaches), side by side.
//!
//! ```sh
//! cargo bench --bench limit
//! ```

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use process_webhook::*;
use serde_json::json;

fn world() -> (WebhookStarter, EnvironmentToken, ProcessUuid) {
    let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
    models.deploy(Deployment::new(
        uuid,
        VersionTag::Released(1),
        production.clone(),
        StartForm::new([
            FieldSpec::mandatory("customerName", FieldKind::Text),
            FieldSpec::mandatory("orderNumber", FieldKind::Text),
            FieldSpec::mandatory("productCode", FieldKind::Text),
        ]),
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    let engine = Arc::new(InMemoryEngine::new().with_capacity(0));
    (WebhookStarter::new(models, tokens, engine), token, uuid)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (plain, token, uuid) = world();
    let limited = plain.clone().with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_second(u32::MAX)),
    );
    let payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let payload = payload.as_object().unwrap().clone();
    let mut group = c.benchmark_group("rate_limit_cost");
    for (name, starter) in [("start", &plain), ("start_with_limit", &limited)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = WebhookStartRequest::new(uuid, Some(token.clone()), payload.clone());
                runtime.block_on(starter.start(request)).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
