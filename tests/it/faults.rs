//! Faults: failing and panicking stores and engines, and the engine's load
//! signals.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use process_webhook::*;

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

async fn reply_with(world: &World, engine: Arc<dyn Engine>) -> HttpReply {
    WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine)
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await
}

#[tokio::test]
async fn an_overloaded_engine_is_429_with_its_retry_after() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::overloaded("queue full").with_retry_after(Duration::from_secs(7))
    }));
    let reply = reply_with(&world, engine.clone()).await;
    assert_reply(&reply, 429, "engine_overloaded");
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert!(!String::from_utf8_lossy(reply.body()).contains("queue full"));
}

#[tokio::test]
async fn an_unavailable_engine_is_503_with_retry_after() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::unavailable("maintenance")
    }));
    let reply = reply_with(&world, engine).await;
    assert_reply(&reply, 503, "engine_unavailable");
    assert_eq!(
        reply.header("retry-after"),
        Some("5"),
        "the default when the engine names none"
    );
}

#[tokio::test]
async fn a_refusing_engine_stays_502_without_retry_after() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::refused("no such definition")
    }));
    let reply = reply_with(&world, engine).await;
    assert_reply(&reply, 502, "engine_failed");
    assert_eq!(reply.header("retry-after"), None);
}

#[tokio::test]
async fn panicking_stores_are_answered_500_and_the_starter_keeps_serving() {
    let world = World::new();
    let panicking_tokens = WebhookStarter::new(
        world.models.clone(),
        Arc::new(PanickingStore),
        world.engine.clone(),
    );
    let panicking_models = WebhookStarter::new(
        Arc::new(PanickingStore),
        world.tokens.clone(),
        world.engine.clone(),
    );
    for starter in [&panicking_tokens, &panicking_models] {
        let reply = starter
            .handle(&target(), [("authorization", world.bearer())], &body())
            .await;
        assert_reply(&reply, 500, "internal_error");
        let err = starter
            .start(world.request(ORDER_INTAKE, order_payload()))
            .await
            .unwrap_err();
        assert_eq!((err.status(), err.code()), (500, "internal_error"));
    }
    assert_eq!(world.started(), 0);
    let reply = world
        .starter()
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(reply.status(), 202);
}

#[tokio::test]
async fn errors_say_whether_a_retry_can_help() {
    assert!(WebhookError::from(StoreError::new("x")).is_retryable());
    assert!(WebhookError::StartInProgress.is_retryable());
    assert!(!WebhookError::MissingToken.is_retryable());
    let world = World::new();
    let invalid = world.start(world.request(ORDER_INTAKE, Default::default())).await;
    assert_eq!(invalid.as_ref().unwrap_err().code(), "invalid_payload");
    assert!(!invalid.unwrap_err().is_retryable());
    assert!(!WebhookError::from(EngineError::refused("x")).is_retryable());
    assert!(WebhookError::from(EngineError::new("x").with_retryable(true)).is_retryable());
}
