//! Instructions a start costs with and without the in-memory rate limiter,
//! for callgrind (repeatable where wall time on a shared machine is not):
//!
//! ```sh
//! cargo build --release --example limit_cost
//! for mode in plain limited; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode ./target/release/examples/limit_cost $mode 20000
//! done
//! ```
//!
//! Each run does 1,000 warm-up starts then `N` measured ones; compare the
//! totals (`callgrind_annotate /tmp/cg.plain | head`), less a run with
//! `N = 0`, divided by `N`.

use std::sync::Arc;

use process_webhook::*;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let starts: usize = args.next().map_or(20_000, |n| n.parse().expect("a number"));
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
    let mut starter = WebhookStarter::new(models, tokens, engine);
    if mode == "limited" {
        starter = starter.with_rate_limit(
            Arc::new(InMemoryRateLimiter::new()),
            RateLimitPolicy::default().with_per_environment(Quota::per_second(u32::MAX)),
        );
    }
    let payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let payload = payload.as_object().unwrap().clone();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for _ in 0..1_000 + starts {
        let request = WebhookStartRequest::new(uuid, Some(token.clone()), payload.clone());
        runtime.block_on(starter.start(request)).unwrap();
    }
}
