//! Tokens and signing secrets never show: not in `Debug`, errors, problem
//! documents, logs or panic messages.

use crate::common;

use std::sync::{Arc, Mutex};

use common::*;
use process_webhook::*;

#[test]
fn debug_of_everything_that_holds_a_token_hides_it() {
    let world = World::new();
    let secret = world.token.expose_secret().to_owned();
    let request = world.request(ORDER_INTAKE, order_payload());
    let shown = format!(
        "{:?} {:#?} {:?} {:?} {:?} {:?}",
        world.token,
        request,
        world.token.digest(),
        world.tokens,
        world.starter(),
        WebhookStartRequest::from_parts(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer())],
            b"{}",
        )
        .unwrap(),
    );
    assert!(!shown.contains(&secret), "{shown}");
    assert!(shown.contains("[redacted]"));
}

#[test]
fn debug_of_a_request_shows_what_a_log_needs_and_the_token_redacted() {
    let world = World::new();
    let request = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key("order-123456");
    let shown = format!("{request:?}");
    for part in [
        "WebhookStartRequest",
        ORDER_INTAKE,
        "EnvironmentToken([redacted])",
        "\"orderNumber\"",
        "order-123456",
        "dry_run: false",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    assert!(!shown.contains(world.token.expose_secret()));
}

#[test]
fn the_in_memory_token_store_keeps_digests_not_tokens() {
    let tokens = InMemoryTokenStore::new();
    let token = EnvironmentToken::new("plain-text-secret-123");
    tokens.insert(
        &token,
        Environment::new(EnvironmentId::new("p"), OrganizationId::new("o")),
    );
    let shown = format!("{tokens:?}");
    assert!(!shown.contains("plain-text-secret-123"));
    assert!(shown.contains("TokenDigest"));
    // A host that only has the digest can insert it, and the token opens it.
    let other = InMemoryTokenStore::new();
    other.insert_digest(
        token.digest(),
        Environment::new(EnvironmentId::new("p"), OrganizationId::new("o")),
    );
    let found = tokio_test::block_on(other.environment(&token)).unwrap();
    assert_eq!(found.unwrap().id().as_str(), "p");
}

#[test]
fn token_digests_compare_by_value() {
    let a = EnvironmentToken::new("same").digest();
    assert_eq!(a, EnvironmentToken::new("same").digest());
    assert_ne!(a, EnvironmentToken::new("same ").digest());
    assert_ne!(a, EnvironmentToken::new("Same").digest());
}

#[test]
fn signing_secrets_hide_in_debug() {
    let secret: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().unwrap();
    let env = Environment::new(EnvironmentId::new("p"), OrganizationId::new("o")).with_signing_secret(secret);
    let shown = format!("{env:?}");
    assert!(!shown.contains("C2FVsBQIhrscChlQIMV"), "{shown}");
}

#[tokio::test]
async fn no_error_and_no_problem_document_contains_the_token() {
    let world = World::new();
    let secret = world.token.expose_secret().to_owned();
    let starter = world.starter();
    let target = webhook_url("/webhook/send", &uuid(DRAFT_ONLY));
    let auth = world.bearer();
    let cases: Vec<(String, &[u8])> = vec![
        (target.clone(), b"{}"),
        (target.clone(), b"not json"),
        (webhook_url("/webhook/send", &uuid(ORDER_INTAKE)), b"{}"),
        (webhook_url("/webhook/send", &uuid(UNDEPLOYED)), b"{}"),
        (format!("/webhook/send?uid={secret}"), b"{}"),
    ];
    for (target, body) in cases {
        let reply = starter
            .handle(&target, [("authorization", auth.as_str())], body)
            .await;
        assert!(reply.status() >= 400);
        let text = String::from_utf8_lossy(reply.body()).into_owned();
        assert!(!text.contains(&secret), "{text}");
    }
    // An unknown token, echoed nowhere.
    let reply = starter
        .handle(&target, [("authorization", "Bearer my-guessed-token-xyz")], b"{}")
        .await;
    assert_reply(&reply, 401, "invalid_token");
    assert!(!String::from_utf8_lossy(reply.body()).contains("my-guessed-token-xyz"));
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_panicking_engine_is_answered_500_and_the_panic_never_shows_the_token() {
    let world = World::new();
    let secret = world.token.expose_secret().to_owned();
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = messages.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| seen.lock().unwrap().push(info.to_string())));

    let engine = Arc::new(FlakyEngine::panicking());
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer())],
            serde_json::to_vec(&order_payload()).unwrap().as_slice(),
        )
        .await;
    std::panic::set_hook(previous);

    assert_reply(&reply, 500, "internal_error");
    assert_eq!(engine.calls(), 1);
    let messages = messages.lock().unwrap();
    assert_eq!(messages.len(), 1, "the engine's panic, caught");
    assert!(messages[0].contains("engine bug"));
    assert!(!messages.iter().any(|m| m.contains(&secret)));
}

#[test]
fn debug_of_a_starter_shows_its_settings() {
    let world = World::new();
    assert_eq!(
        format!("{:?}", world.starter()),
        "WebhookStarter { idempotency: false, sources: false, body_limit: 1048576, max_json_values: 10000, \
         body_timeout: 10s, body_budget: BodyBudget { held: 0, bodies: 0, max: 67108864 }, \
         envelopes: true, signature_tolerance: 300s, rate_limit: None, process_label: false, \
         ready_timeout: 2s, max_wait: 30s, max_waiting_calls: 1000, .. }"
    );
}
