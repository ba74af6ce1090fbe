//! One order for every entry point: a call reaches the steps of a start
//! (its key's shape, the token, the rate limit, the signature, the
//! deployment, the checks) in the same order whether it comes through
//! `start_via_webhook`, `WebhookStarter::start` or the HTTP exchange.

use crate::common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use process_webhook::*;

fn target(process: &str) -> String {
    webhook_url("/webhook/send", &uuid(process))
}

/// A world whose production environment requires signed calls, and a
/// starter over it that allows one call a minute per environment.
fn signed_and_limited() -> (World, SigningSecret, WebhookStarter) {
    let world = World::new();
    let secret = SigningSecret::generate();
    let environment = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
        .with_signing_secret(secret.clone());
    world.tokens.insert(&world.token, environment);
    let starter = world.starter().with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(1)),
    );
    (world, secret, starter)
}

fn signed(world: &World, secret: &SigningSecret, body: &[u8]) -> Vec<(&'static str, String)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    vec![
        ("authorization", world.bearer()),
        ("webhook-id", "msg_1".to_owned()),
        ("webhook-timestamp", now.to_string()),
        ("webhook-signature", secret.sign("msg_1", now, body)),
    ]
}

#[tokio::test]
async fn a_call_with_a_bad_signature_spends_a_unit_of_its_environments_limit_through_start() {
    let (world, secret, starter) = signed_and_limited();
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let forged = signed(&world, &SigningSecret::generate(), &body);
    let request = WebhookStartRequest::from_parts(&target(ORDER_INTAKE), forged, &body).unwrap();
    assert_refused(starter.start(request).await, 401, "invalid_signature");

    // The forged call took the minute's one unit: the signed call waits.
    let good = signed(&world, &secret, &body);
    let request = WebhookStartRequest::from_parts(&target(ORDER_INTAKE), good, &body).unwrap();
    assert_refused(starter.start(request).await, 429, "rate_limited");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_call_with_a_bad_signature_spends_a_unit_of_its_environments_limit_over_http() {
    let (world, secret, starter) = signed_and_limited();
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let forged = signed(&world, &SigningSecret::generate(), &body);
    let reply = starter.handle(&target(ORDER_INTAKE), forged, &body).await;
    assert_reply(&reply, 401, "invalid_signature");

    let reply = starter
        .handle(&target(ORDER_INTAKE), signed(&world, &secret, &body), &body)
        .await;
    assert_reply(&reply, 429, "rate_limited");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_webhook_id_that_is_no_key_is_refused_before_the_process_is_looked_up() {
    // A `webhook-id` stands in for a missing `Idempotency-Key`: it is
    // checked as one when the call is read, so the process (here one that
    // does not exist) is never looked up.
    let world = World::new();
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let long_id = "m".repeat(256);
    let headers = [
        ("authorization", world.bearer()),
        ("webhook-id", long_id.clone()),
        ("webhook-timestamp", "1".to_owned()),
        ("webhook-signature", "v1,x".to_owned()),
    ];
    let unknown = target("00000000-0000-4000-8000-000000000000");

    let reply = world.starter().handle(&unknown, headers.clone(), &body).await;
    assert_reply(&reply, 400, "invalid_idempotency_key");

    let read = WebhookStartRequest::from_parts(&unknown, headers.clone(), &body);
    assert_refused(read, 400, "invalid_idempotency_key");

    // A host's request with such a key: refused before its token is
    // looked up, by the free function as by the starter.
    let request = WebhookStartRequest::new(
        uuid("00000000-0000-4000-8000-000000000000"),
        None,
        order_payload(),
    )
    .with_idempotency_key(long_id);
    let free = start_via_webhook(request.clone(), &*world.models, &*world.tokens, &*world.engine).await;
    assert_refused(free, 400, "invalid_idempotency_key");
    assert_refused(
        world.starter().start(request.clone()).await,
        400,
        "invalid_idempotency_key",
    );
    assert_refused(
        world.starter().dry_run(request).await,
        400,
        "invalid_idempotency_key",
    );
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_schema_and_a_document_are_limited_as_a_start_is() {
    let world = World::new();
    let starter = world.starter().with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(2)),
    );
    let process = uuid(ORDER_INTAKE);
    starter.schema(&process, Some(&world.token)).await.unwrap();
    starter
        .openapi_document(&process, Some(&world.token), "/webhook/send")
        .await
        .unwrap();
    let reply = starter
        .handle(
            &target(ORDER_INTAKE),
            [("authorization", world.bearer())],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    assert_reply(&reply, 429, "rate_limited");
    assert_eq!(world.started(), 0);
}
