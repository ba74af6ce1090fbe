//! The limits that keep a starter's memory bounded and its promises kept
//! under hostile traffic, through the public API.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::json;

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

#[tokio::test]
async fn a_full_idempotency_store_refuses_new_keys_and_still_replays_every_kept_one() {
    let world = World::new();
    let store = InMemoryIdempotencyStore::new().with_capacity(3);
    let starter = world.starter().with_idempotency(Arc::new(store));
    let call = |key: String| {
        let starter = starter.clone();
        let auth = world.bearer();
        async move {
            starter
                .handle(
                    &target(),
                    [("authorization", auth), ("idempotency-key", key)],
                    &body(),
                )
                .await
        }
    };
    for i in 0..3 {
        assert_eq!(call(format!("order-{i}")).await.status(), 202);
    }
    // Many other keys later: each is refused, none evicts a kept key.
    for i in 3..50 {
        let reply = call(format!("order-{i}")).await;
        assert_reply(&reply, 503, "idempotency_store_full");
        let after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!(after > 23 * 3600, "the oldest key expires in about 24 h: {after}");
    }
    assert_eq!(world.started(), 3);
    for i in 0..3 {
        let again = call(format!("order-{i}")).await;
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(world.started(), 3, "a retry of an early key never starts twice");
    // Calls without a key do not need the store.
    let reply = starter
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(reply.status(), 202);
}

#[tokio::test]
async fn keys_are_kept_for_24_hours_and_reservations_for_a_5_minute_lease() {
    assert_eq!(DEFAULT_IDEMPOTENCY_TTL, Duration::from_secs(24 * 3600));
    assert_eq!(DEFAULT_IDEMPOTENCY_LEASE, Duration::from_secs(300));
    assert_eq!(InMemoryIdempotencyStore::DEFAULT_CAPACITY, 500_000);
    let store = InMemoryIdempotencyStore::new().with_capacity(1);
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "k");
    let fp = PayloadFingerprint::of(&order_payload());
    assert_eq!(store.reserve(&key, fp).await.unwrap(), Reservation::Reserved);
    let other = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "other");
    // The store is full of one key still in progress: it tells when room
    // comes at the latest, the key's 24 hours.
    match store.reserve(&other, fp).await.unwrap() {
        Reservation::Full {
            retry_after: Some(after),
        } => assert!(after > Duration::from_secs(24 * 3600 - 60) && after <= DEFAULT_IDEMPOTENCY_TTL),
        other => panic!("expected Full, got {other:?}"),
    }
}

#[tokio::test]
async fn the_in_memory_engine_keeps_a_bounded_history() {
    assert_eq!(InMemoryEngine::DEFAULT_HISTORY, 10_000);
    let world = World::new();
    let engine = Arc::new(InMemoryEngine::new().with_capacity(2));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    for number in ["1", "2", "3"] {
        let mut payload = order_payload();
        payload.insert("orderNumber".into(), json!(number));
        let reply = starter
            .handle(
                &target(),
                [("authorization", world.bearer())],
                &serde_json::to_vec(&payload).unwrap(),
            )
            .await;
        assert_eq!(reply.status(), 202);
    }
    let kept: Vec<_> = engine
        .started()
        .iter()
        .map(|s| s.command.variables["orderNumber"].clone())
        .collect();
    assert_eq!(kept, [json!("2"), json!("3")], "the latest, oldest first");
    assert_eq!(engine.total_started(), 3);
    let none = InMemoryEngine::new().with_capacity(0);
    let reply = WebhookStarter::new(world.models.clone(), world.tokens.clone(), Arc::new(none.clone()))
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(reply.status(), 202);
    assert!(none.started().is_empty());
    assert_eq!(none.total_started(), 1);
}

#[tokio::test]
async fn a_payload_of_too_many_json_values_is_413_before_it_is_parsed() {
    let world = World::new();
    // 87,000 tiny members: about 1 MiB that would take ~12 MB as a tree.
    let many = format!(
        "{{{}}}",
        (0..87_000)
            .map(|i| format!("\"k{i}\":0"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert!(many.len() < WebhookStarter::DEFAULT_BODY_LIMIT);
    let reply = world
        .starter()
        .handle(&target(), [("authorization", world.bearer())], many.as_bytes())
        .await;
    let doc = assert_reply(&reply, 413, "payload_too_large");
    assert!(
        doc["detail"].as_str().unwrap().contains("10000 JSON values"),
        "{doc}"
    );

    // The bound counts every value, the object itself included.
    let starter = world.starter().with_max_json_values(4);
    let auth = [("authorization", world.bearer())];
    let three_fields = body(); // 1 object + 3 strings = 4 values
    assert_eq!(
        starter
            .handle(&target(), auth.clone(), &three_fields)
            .await
            .status(),
        202
    );
    let nested = br#"{"customerName": "a", "orderNumber": "b", "productCode": ["c"]}"#; // 5
    assert_reply(
        &starter.handle(&target(), auth.clone(), nested).await,
        413,
        "payload_too_large",
    );
    // Commas and brackets inside strings are text, not values.
    let texty = br#"{"customerName": "a,b,[c],{d}", "orderNumber": "\",\"", "productCode": "x"}"#;
    assert_eq!(starter.handle(&target(), auth.clone(), texty).await.status(), 202);
    let empty_containers = br#"{"customerName": "a", "orderNumber": "b", "productCode": {}}"#; // 4
    assert_eq!(
        starter.handle(&target(), auth, empty_containers).await.status(),
        422
    );
    assert_eq!(world.started(), 2);
}

#[test]
fn the_uid_is_a_hyphenated_uuid_or_its_urn_and_nothing_else() {
    let accepted = [
        "dd9759e0-cc94-11ed-938f-13cf60270555",
        "DD9759E0-CC94-11ED-938F-13CF60270555",
        "urn:uuid:dd9759e0-cc94-11ed-938f-13cf60270555",
        "URN:UUID:dd9759e0-cc94-11ed-938f-13cf60270555",
        "%20dd9759e0-cc94-11ed-938f-13cf60270555%09",
    ];
    for uid in accepted {
        let request = WebhookStartRequest::from_parts(
            &format!("/webhook/send?uid={uid}"),
            [("authorization", "t")],
            b"{}",
        )
        .unwrap_or_else(|e| panic!("{uid}: {e}"));
        assert_eq!(request.process(), &uuid(ORDER_INTAKE));
    }
    let refused = [
        "{dd9759e0-cc94-11ed-938f-13cf60270555}",
        "dd9759e0cc9411ed938f13cf60270555",
        "urn:uuid:dd9759e0cc9411ed938f13cf60270555",
        "%C2%A0dd9759e0-cc94-11ed-938f-13cf60270555",
        "%E2%80%83dd9759e0-cc94-11ed-938f-13cf60270555",
        "dd9759e0-cc94-11ed-938f-13cf6027055g",
        "dd9759e0+cc94-11ed-938f-13cf60270555",
    ];
    for uid in refused {
        let err = WebhookStartRequest::from_parts(
            &format!("/webhook/send?uid={uid}"),
            [("authorization", "t")],
            b"{}",
        )
        .expect_err(uid);
        assert_eq!((err.status(), err.code()), (400, "invalid_uid"), "{uid}");
        assert!(err.to_string().contains("not a UUID"), "{uid}: {err}");
    }
    let err = WebhookStartRequest::from_parts(
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555&uid=dd9759e0-cc94-11ed-938f-13cf60270555",
        [("authorization", "t")],
        b"{}",
    )
    .unwrap_err();
    assert_eq!((err.status(), err.code()), (400, "invalid_uid"));
    assert!(err.to_string().contains("more than once"), "{err}");
}

#[tokio::test]
async fn signature_headers_without_a_webhook_id_are_ignored_where_no_signature_is_required() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let auth = world.bearer();
    let reply = starter
        .handle(
            &target(),
            [
                ("authorization", auth.as_str()),
                ("webhook-timestamp", "1700000000"),
            ],
            &body(),
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(world.engine.started()[0].command.idempotency_key, None);
    // A webhook-id alone still serves as the idempotency key.
    let with_id = [("authorization", auth.as_str()), ("webhook-id", "msg_1")];
    assert_eq!(starter.handle(&target(), with_id, &body()).await.status(), 202);
    let again = starter.handle(&target(), with_id, &body()).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(world.started(), 2);
}
