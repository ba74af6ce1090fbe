//! The rules of `start_via_webhook`, in the order it applies them.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;
use serde_json::json;

#[tokio::test]
async fn a_deployed_process_starts_with_the_documented_payload() {
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();

    assert_eq!(outcome.process(), &uuid(ORDER_INTAKE));
    assert_eq!(outcome.version(), 2, "the latest deployment in the environment");
    assert_eq!(outcome.environment().as_str(), "production");
    assert_eq!(outcome.deployment_id(), world.order_deployment);
    assert!(!outcome.is_replayed());

    let started = world.engine.started();
    assert_eq!(started.len(), 1);
    assert_eq!(&started[0].id, outcome.instance_id());
    let command = &started[0].command;
    assert_eq!(command.definition_key, "order-intake");
    assert_eq!(command.version, 2);
    assert_eq!(command.deployment, world.order_deployment);
    assert_eq!(command.environment.as_str(), "production");
    assert_eq!(command.variables, order_payload());
    assert_eq!(command.idempotency_key, None);
}

#[tokio::test]
async fn the_outcome_serializes_to_the_documented_shape() {
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&outcome).unwrap(),
        json!({
            "instanceId": outcome.instance_id().as_str(),
            "processUuid": ORDER_INTAKE,
            "version": 2,
            "environment": "production",
            "replayed": false,
        })
    );
}

#[tokio::test]
async fn the_definition_key_defaults_to_the_process_uuid() {
    let world = World::new();
    world.start(world.request(TYPED, typed_payload())).await.unwrap();
    assert_eq!(world.engine.started()[0].command.definition_key, TYPED);
}

#[tokio::test]
async fn no_token_is_missing_token_and_starts_nothing() {
    let world = World::new();
    let request = WebhookStartRequest::new(uuid(ORDER_INTAKE), None, order_payload());
    assert_refused(world.start(request).await, 401, "missing_token");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn an_unknown_token_is_invalid_token_and_starts_nothing() {
    let world = World::new();
    let request = WebhookStartRequest::new(
        uuid(ORDER_INTAKE),
        Some(EnvironmentToken::new("guessed")),
        order_payload(),
    );
    assert_refused(world.start(request).await, 401, "invalid_token");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_revoked_token_is_invalid_token_and_starts_nothing() {
    let world = World::new();
    assert!(world.tokens.revoke(&world.token));
    assert!(!world.tokens.revoke(&world.token), "revoking twice finds nothing");
    assert_refused(
        world.start(world.request(ORDER_INTAKE, order_payload())).await,
        401,
        "invalid_token",
    );
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn an_unknown_process_is_unknown_process() {
    let world = World::new();
    let request = world.request("00000000-0000-4000-8000-000000000000", order_payload());
    assert_refused(world.start(request).await, 404, "unknown_process");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn another_organizations_process_looks_unknown_even_when_deployed_to_an_environment_of_the_same_name() {
    let world = World::new();
    // FOREIGN is globex's, deployed to globex's "production"; acme's
    // production token must not learn that it exists.
    let err = assert_refused(
        world.start(world.request(FOREIGN, order_payload())).await,
        404,
        "unknown_process",
    );
    let unknown = world
        .start(world.request("00000000-0000-4000-8000-000000000000", order_payload()))
        .await;
    assert_eq!(
        err.to_problem_json()["title"],
        unknown.unwrap_err().to_problem_json()["title"]
    );
    assert_eq!(world.started(), 0);

    // Its own organization starts it.
    let request = WebhookStartRequest::new(
        uuid(FOREIGN),
        Some(world.globex_token.clone()),
        Default::default(),
    );
    world.start(request).await.unwrap();
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_process_never_deployed_to_the_tokens_environment_is_not_deployed() {
    let world = World::new();
    let err = assert_refused(
        world.start(world.request(UNDEPLOYED, order_payload())).await,
        409,
        "not_deployed",
    );
    assert!(err.to_string().contains(UNDEPLOYED));
    assert!(err.to_string().contains("production"));
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_draft_is_never_started_by_webhook() {
    let world = World::new();
    assert_refused(
        world.start(world.request(DRAFT_ONLY, order_payload())).await,
        409,
        "draft_version",
    );
    // Order intake is released in production but only a draft in development.
    let request =
        WebhookStartRequest::new(uuid(ORDER_INTAKE), Some(world.dev_token.clone()), order_payload());
    assert_refused(world.start(request).await, 409, "draft_version");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn deploying_a_draft_over_a_release_stops_webhook_starts() {
    let world = World::new();
    world.models.deploy(Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Draft,
        EnvironmentId::new("production"),
        order_form(),
    ));
    assert_refused(
        world.start(world.request(ORDER_INTAKE, order_payload())).await,
        409,
        "draft_version",
    );
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn every_missing_field_is_reported_at_once_and_nothing_starts() {
    let world = World::new();
    let payload = object(json!({"customerName": "  ", "orderNumber": null}));
    let err = assert_refused(
        world.start(world.request(ORDER_INTAKE, payload)).await,
        422,
        "invalid_payload",
    );
    let fields: Vec<_> = err
        .violations()
        .iter()
        .map(|v| (v.field(), v.violation().code()))
        .collect();
    assert_eq!(
        fields,
        [
            ("customerName", "missing"),
            ("orderNumber", "missing"),
            ("productCode", "missing")
        ]
    );
    let doc = err.to_problem_json();
    assert_eq!(doc["violations"][2]["field"], "productCode");
    assert_eq!(doc["violations"][2]["problem"], "missing");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn values_of_the_wrong_kind_are_type_errors() {
    let world = World::new();
    let payload = object(json!({
        "name": 7,
        "amount": "12.5",
        "quantity": 2.5,
        "express": "yes",
        "deliveryDate": "2023-02-29",
        "orderedAt": "2024-02-20 10:00",
        "size": "XL",
        "address": "Berlin",
        "items": {},
        "extra": "x",
    }));
    let err = assert_refused(
        world.start(world.request(TYPED, payload)).await,
        422,
        "invalid_payload",
    );
    let wrong: Vec<_> = err
        .violations()
        .iter()
        .filter(|v| v.violation().code() == "wrong_type")
        .map(|v| v.field())
        .collect();
    // Every mandatory field but `extra`, which is Any.
    assert_eq!(wrong, TYPED_MANDATORY[..9]);
    assert_eq!(err.violations().len(), 9, "`extra` is Any and accepts a string");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn defaults_fill_absent_optional_fields_and_unknown_fields_pass_through() {
    let world = World::new();
    let mut payload = typed_payload();
    payload.insert("campaign".into(), json!({"source": "newsletter"}));
    world.start(world.request(TYPED, payload)).await.unwrap();
    let variables = &world.engine.started()[0].command.variables;
    assert_eq!(variables["priority"], "low", "the default");
    assert!(!variables.contains_key("note"), "no default, stays absent");
    assert_eq!(variables["campaign"], json!({"source": "newsletter"}));
}

#[tokio::test]
async fn an_optional_field_sent_as_null_stays_null() {
    let world = World::new();
    let mut payload = typed_payload();
    payload.insert("priority".into(), json!(null));
    world.start(world.request(TYPED, payload)).await.unwrap();
    assert_eq!(
        world.engine.started()[0].command.variables["priority"],
        json!(null)
    );
}

#[tokio::test]
async fn a_failing_engine_is_engine_failed_and_hides_its_message() {
    let world = World::new();
    let engine = FlakyEngine::failing(1, || {
        EngineError::new("NullPointerException in BpmnParse line 42")
    });
    let err = start_via_webhook(
        world.request(ORDER_INTAKE, order_payload()),
        &*world.models,
        &*world.tokens,
        &engine,
    )
    .await
    .unwrap_err();
    assert_eq!((err.status(), err.code()), (502, "engine_failed"));
    let shown = format!("{err} {}", err.to_problem_json());
    assert!(!shown.contains("NullPointerException"), "{shown}");
    let source = std::error::Error::source(&err).expect("the engine's error is the source");
    assert!(source.to_string().contains("NullPointerException"));
    assert_eq!(engine.inner.started().len(), 0);
}

#[tokio::test]
async fn a_failing_token_store_is_store_unavailable_and_never_reaches_the_engine() {
    let world = World::new();
    let engine = FlakyEngine::failing(0, || EngineError::new("unused"));
    let err = start_via_webhook(
        world.request(ORDER_INTAKE, order_payload()),
        &*world.models,
        &BrokenStore,
        &engine,
    )
    .await
    .unwrap_err();
    assert_eq!((err.status(), err.code()), (503, "store_unavailable"));
    assert!(!err.to_problem_json().to_string().contains("db-7.internal"));
    assert!(
        std::error::Error::source(&err)
            .unwrap()
            .to_string()
            .contains("db-7.internal")
    );
    assert_eq!(engine.calls(), 0);
}

#[tokio::test]
async fn a_failing_model_store_is_store_unavailable_and_never_reaches_the_engine() {
    let world = World::new();
    let engine = FlakyEngine::failing(0, || EngineError::new("unused"));
    let err = start_via_webhook(
        world.request(ORDER_INTAKE, order_payload()),
        &BrokenStore,
        &*world.tokens,
        &engine,
    )
    .await
    .unwrap_err();
    assert_eq!((err.status(), err.code()), (503, "store_unavailable"));
    assert_eq!(engine.calls(), 0);
}

#[tokio::test]
async fn stores_and_engine_work_as_trait_objects() {
    let world = World::new();
    let models: Arc<dyn ModelStore> = world.models.clone();
    let tokens: Box<dyn TokenStore> = Box::new((*world.tokens).clone());
    let engine: &dyn Engine = &*world.engine;
    let outcome = start_via_webhook(
        world.request(ORDER_INTAKE, order_payload()),
        &*models,
        &*tokens,
        engine,
    )
    .await
    .unwrap();
    assert_eq!(outcome.version(), 2);
    assert_eq!(world.started(), 1, "clones of the in-memory engine share state");
}

#[tokio::test]
async fn the_idempotency_key_reaches_the_engine_and_a_malformed_one_is_refused() {
    let world = World::new();
    world
        .start(
            world
                .request(ORDER_INTAKE, order_payload())
                .with_idempotency_key("order-123456"),
        )
        .await
        .unwrap();
    assert_eq!(
        world.engine.started()[0].command.idempotency_key.as_deref(),
        Some("order-123456")
    );

    for bad in ["", "tab\there", "ü", &"k".repeat(256)] {
        let request = world
            .request(ORDER_INTAKE, order_payload())
            .with_idempotency_key(bad);
        assert_refused(world.start(request).await, 400, "invalid_idempotency_key");
    }
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_request_marked_as_a_dry_run_is_never_started() {
    let world = World::new();
    let request = world.request(ORDER_INTAKE, order_payload()).with_dry_run(true);
    assert_refused(world.start(request).await, 400, "dry_run_not_started");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn the_engine_gets_the_start_form_and_for_a_keyed_start_the_payloads_fingerprint() {
    let world = World::new();
    world
        .start(
            world
                .request(ORDER_INTAKE, order_payload())
                .with_idempotency_key("order-1"),
        )
        .await
        .unwrap();
    world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    let started = world.engine.started();
    let (keyed, plain) = (&started[0].command, &started[1].command);
    assert_eq!(keyed.fingerprint, Some(PayloadFingerprint::of(&order_payload())));
    assert_eq!(keyed.idempotency_key.as_deref(), Some("order-1"));
    assert_eq!(plain.fingerprint, None, "no key, nothing to fingerprint");
    let names: Vec<&str> = keyed.start_form().fields().iter().map(FieldSpec::name).collect();
    assert_eq!(names, ["customerName", "orderNumber", "productCode"]);
}

#[tokio::test]
async fn the_free_function_replays_an_idempotent_start_and_refuses_a_reused_key() {
    let world = World::new();
    let keys = InMemoryIdempotencyStore::new();
    let start = |payload| {
        let request = world
            .request(ORDER_INTAKE, payload)
            .with_idempotency_key("order-1");
        start_via_webhook_with_idempotency(request, &*world.models, &*world.tokens, &*world.engine, &keys)
    };
    let first = start(order_payload()).await.unwrap();
    let again = start(order_payload()).await.unwrap();
    assert!(!first.is_replayed() && again.is_replayed());
    assert_eq!(again.instance_id(), first.instance_id());
    assert_eq!(again.instance().idempotency_key(), Some("order-1"));
    let mut other = order_payload();
    other.insert("orderNumber".into(), json!("999"));
    let err = start(other).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (422, "idempotency_key_reused"));
    let err = start_via_webhook_with_idempotency(
        world
            .request(ORDER_INTAKE, order_payload())
            .with_idempotency_key("tab\there"),
        &*world.models,
        &*world.tokens,
        &*world.engine,
        &keys,
    )
    .await
    .unwrap_err();
    assert_eq!((err.status(), err.code()), (400, "invalid_idempotency_key"));
    assert_eq!(world.started(), 1, "one start for all of them");
}
