//! Dry runs: every check, the exact variables, and nothing started.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_dry_run_answers_200_with_the_version_and_the_exact_variables() {
    let world = World::new();
    let idempotency = Arc::new(InMemoryIdempotencyStore::new());
    let starter = world.starter().with_idempotency(idempotency.clone());
    let mut payload = typed_payload();
    payload.insert("campaign".into(), json!("spring"));
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(TYPED)),
            [
                ("authorization", world.bearer()),
                ("prefer", "respond-async, dry-run".into()),
                ("idempotency-key", "k".into()),
            ],
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 200);
    let doc: Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(doc["dryRun"], true);
    assert_eq!(doc["processUuid"], TYPED);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["environment"], "production");
    assert_eq!(doc["definitionKey"], TYPED);
    let mut expected = payload.clone();
    expected.insert("priority".into(), json!("low"));
    assert_eq!(doc["variables"], Value::Object(expected.clone()));

    assert_eq!(world.started(), 0, "the engine was not called");
    assert!(idempotency.is_empty(), "the idempotency store was not touched");

    // The real start gets exactly those variables.
    starter
        .start(world.request(TYPED, payload).with_idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!(world.engine.started()[0].command.variables, expected);
}

#[tokio::test]
async fn a_dry_run_fails_every_check_a_start_would() {
    let world = World::new();
    let starter = world.starter();
    let dry = |process: &str, payload| starter.dry_run(world.request(process, payload).with_dry_run(true));
    assert_refused(dry(DRAFT_ONLY, order_payload()).await, 409, "draft_version");
    assert_refused(dry(UNDEPLOYED, order_payload()).await, 409, "not_deployed");
    assert_refused(dry(FOREIGN, order_payload()).await, 404, "unknown_process");
    let err = assert_refused(
        dry(ORDER_INTAKE, Default::default()).await,
        422,
        "invalid_payload",
    );
    assert_eq!(err.violations().len(), 3);
    let anonymous = WebhookStartRequest::new(uuid(ORDER_INTAKE), None, order_payload());
    assert_refused(starter.dry_run(anonymous).await, 401, "missing_token");

    let ok = dry(ORDER_INTAKE, order_payload()).await.unwrap();
    assert_eq!((ok.version(), ok.definition_key()), (2, "order-intake"));
    assert_eq!(ok.deployment_id(), world.order_deployment);
    assert_eq!(ok.variables(), &order_payload());
    assert_eq!(world.started(), 0);
}

#[test]
fn a_call_is_a_dry_run_only_when_it_asks_for_one() {
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = br#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;
    let plain = WebhookStartRequest::from_parts(&target, [("prefer", "respond-async")], body).unwrap();
    assert!(!plain.is_dry_run());
    let asked =
        WebhookStartRequest::from_parts(&target, [("prefer", "respond-async, dry-run")], body).unwrap();
    assert!(asked.is_dry_run());
    let built = WebhookStartRequest::new(uuid(ORDER_INTAKE), None, Default::default());
    assert!(!built.is_dry_run());
    assert!(built.with_dry_run(true).is_dry_run());
}
