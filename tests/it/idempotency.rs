//! Retries and duplicates: with idempotency on, a repeated delivery replays
//! the first start instead of starting another instance.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

fn idempotent(world: &World, engine: Arc<dyn Engine>) -> WebhookStarter {
    WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine)
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
}

#[tokio::test]
async fn a_repeated_delivery_replays_the_first_outcome_without_reaching_the_engine() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    let headers = [
        ("authorization", world.bearer()),
        ("idempotency-key", "order-123456".into()),
    ];

    let first = starter.handle(&target(), headers.clone(), &body()).await;
    assert_eq!(first.status(), 202);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = starter.handle(&target(), headers.clone(), &body()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let first: Value = serde_json::from_slice(first.body()).unwrap();
    let again: Value = serde_json::from_slice(again.body()).unwrap();
    assert_eq!(first["instanceId"], again["instanceId"]);
    assert_eq!(first["replayed"], false);
    assert_eq!(again["replayed"], true);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn the_same_payload_with_its_keys_in_another_order_is_the_same_call() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    let headers = [("authorization", world.bearer()), ("idempotency-key", "k".into())];
    starter.handle(&target(), headers.clone(), &body()).await;
    let reordered = br#"{"productCode": "ABC123", "orderNumber": "123456", "customerName": "John Doe"}"#;
    let again = starter.handle(&target(), headers, reordered).await;
    assert_eq!(again.status(), 202);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_idempotency_key_reused() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    let request = |n: &str| {
        let mut payload = order_payload();
        payload.insert("orderNumber".into(), json!(n));
        world.request(ORDER_INTAKE, payload).with_idempotency_key("k-1")
    };
    starter.start(request("1")).await.unwrap();
    assert_refused(starter.start(request("2")).await, 422, "idempotency_key_reused");
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_environment_and_the_process() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    starter
        .start(
            world
                .request(ORDER_INTAKE, order_payload())
                .with_idempotency_key("k"),
        )
        .await
        .unwrap();
    // The same key for another process of the same environment starts anew.
    starter
        .start(world.request(TYPED, typed_payload()).with_idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!(world.started(), 2);
}

#[tokio::test]
async fn a_call_while_the_first_is_running_is_start_in_progress_with_retry_after() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(300)));
    let starter = idempotent(&world, engine.clone());
    let headers = [
        ("authorization", world.bearer()),
        ("idempotency-key", "slow".into()),
    ];
    let (target, body) = (target(), body());
    let (first, second) = tokio::join!(starter.handle(&target, headers.clone(), &body), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        starter.handle(&target, headers.clone(), &body).await
    });
    assert_eq!(first.status(), 202);
    assert_reply(&second, 409, "start_in_progress");
    assert!(second.header("retry-after").is_some());
    assert_eq!(engine.calls(), 1);
}

#[tokio::test]
async fn when_the_engine_fails_the_key_is_released_so_a_retry_starts() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::new("connection reset").with_retryable(true)
    }));
    let starter = idempotent(&world, engine.clone());
    let request = || {
        world
            .request(ORDER_INTAKE, order_payload())
            .with_idempotency_key("retry-me")
    };
    let err = assert_refused(starter.start(request()).await, 502, "engine_failed");
    assert!(err.is_retryable());
    let outcome = starter.start(request()).await.unwrap();
    assert!(!outcome.is_replayed());
    assert_eq!(engine.calls(), 2);
    assert_eq!(engine.inner.started().len(), 1);
}

#[tokio::test]
async fn when_the_engine_panics_the_key_is_released_too() {
    let world = World::new();
    let panicking = Arc::new(FlakyEngine::panicking());
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), panicking.clone())
        .with_idempotency(store.clone());
    let request = || {
        world
            .request(ORDER_INTAKE, order_payload())
            .with_idempotency_key("p")
    };
    assert_refused(starter.start(request()).await, 500, "internal_error");
    let healthy = WebhookStarter::new(world.models.clone(), world.tokens.clone(), world.engine.clone())
        .with_idempotency(store);
    healthy.start(request()).await.unwrap();
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn refused_calls_do_not_use_up_the_key() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    let bad = world
        .request(ORDER_INTAKE, Default::default())
        .with_idempotency_key("k");
    assert_refused(starter.start(bad).await, 422, "invalid_payload");
    let good = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key("k");
    assert!(!starter.start(good).await.unwrap().is_replayed());
}

#[tokio::test]
async fn without_a_key_every_call_starts() {
    let world = World::new();
    let starter = idempotent(&world, world.engine.clone());
    starter
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    starter
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    assert_eq!(world.started(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_deliveries_of_one_key_start_exactly_one_instance() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(20)));
    let starter = idempotent(&world, engine.clone());
    let auth = world.bearer();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (starter, auth) = (starter.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            starter
                .handle(
                    &target(),
                    [("authorization", auth), ("idempotency-key", "burst".to_owned())],
                    &body(),
                )
                .await
        }));
    }
    let mut instances = std::collections::HashSet::new();
    let (mut started, mut in_progress) = (0, 0);
    for task in tasks {
        let reply = task.await.unwrap();
        let doc: Value = serde_json::from_slice(reply.body()).unwrap();
        match reply.status() {
            202 => {
                started += 1;
                instances.insert(doc["instanceId"].as_str().unwrap().to_owned());
            }
            409 => {
                assert_eq!(doc["code"], "start_in_progress");
                in_progress += 1;
            }
            other => panic!("unexpected answer {other}: {doc}"),
        }
    }
    assert_eq!(started + in_progress, 64);
    assert!(started >= 1);
    assert_eq!(instances.len(), 1, "every 202 is the one instance");
    assert_eq!(engine.calls(), 1);
    assert_eq!(engine.inner.started().len(), 1);
}

#[tokio::test]
async fn a_failing_idempotency_store_is_store_unavailable_and_never_reaches_the_engine() {
    struct Broken;
    #[async_trait::async_trait]
    impl IdempotencyStore for Broken {
        async fn reserve(
            &self,
            _: &IdempotencyKey,
            _: PayloadFingerprint,
        ) -> Result<Reservation, StoreError> {
            Err(StoreError::new("redis down"))
        }
        async fn complete(&self, _: &IdempotencyKey, _: &StartOutcome) -> Result<(), StoreError> {
            Err(StoreError::new("redis down"))
        }
        async fn release(&self, _: &IdempotencyKey) -> Result<(), StoreError> {
            Err(StoreError::new("redis down"))
        }
    }
    let world = World::new();
    let starter = world.starter().with_idempotency(Arc::new(Broken));
    let request = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key("k");
    assert_refused(starter.start(request).await, 503, "store_unavailable");
    assert_eq!(world.started(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_load_past_the_old_bound_of_100_000_keys_is_never_refused_at_the_default_capacity() {
    let world = World::new();
    let engine = Arc::new(InMemoryEngine::new().with_capacity(0));
    let store = InMemoryIdempotencyStore::new();
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine)
        .with_idempotency(Arc::new(store.clone()));
    // 150,000 deliveries, each with its own key, as a sender's delivery ids.
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let (starter, bearer) = (starter.clone(), world.bearer());
            tokio::spawn(async move {
                for n in (worker..150_000).step_by(2) {
                    let key = format!("delivery-{n:06}");
                    let headers = [
                        ("authorization", bearer.as_str()),
                        ("idempotency-key", key.as_str()),
                    ];
                    let reply = starter.handle(&target(), headers, &body()).await;
                    assert_eq!(
                        reply.status(),
                        202,
                        "delivery {n}: {:?}",
                        std::str::from_utf8(reply.body())
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(store.len(), 150_000);
    // The first key still replays.
    let headers = [
        ("authorization", world.bearer()),
        ("idempotency-key", "delivery-000000".to_owned()),
    ];
    let again = starter.handle(&target(), headers, &body()).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}
