#![cfg(feature = "axum")]
//! `Prefer: wait=N`: a caller that asks to wait gets the instance's result
//! when it ends in time, `202 running` when it does not, and exactly
//! today's answer when it did not ask or the engine cannot wait.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

fn body(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap()
}

fn payload() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

async fn call(starter: &WebhookStarter, world: &World, extra: &[(&str, &str)]) -> HttpReply {
    let auth = world.bearer();
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            headers,
            &payload(),
        )
        .await
}

#[tokio::test]
async fn a_completed_instance_is_answered_200_with_its_result_and_the_applied_preference() {
    let world = World::new();
    world.engine.complete_waits_with(Some(Completion::Completed(
        json!({"accepted": true, "total": 42.5}),
    )));
    let reply = call(&world.starter(), &world, &[("prefer", "wait=10")]).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.header("preference-applied"), Some("wait=10"));
    let started = &world.engine.started()[0];
    assert_eq!(
        body(&reply),
        json!({
            "instanceId": started.id.as_str(),
            "processUuid": ORDER_INTAKE,
            "version": 2,
            "environment": "production",
            "replayed": false,
            "status": "completed",
            "result": {"accepted": true, "total": 42.5},
        })
    );
}

#[tokio::test]
async fn without_the_preference_or_with_an_engine_that_cannot_wait_the_answer_is_todays() {
    let world = World::new();
    let plain = call(&world.starter(), &world, &[]).await;
    let cannot = call(&world.starter(), &world, &[("prefer", "wait=10")]).await;
    for reply in [&plain, &cannot] {
        assert_eq!(reply.status(), 202);
        assert_eq!(reply.header("preference-applied"), None);
        let doc = body(reply);
        assert_eq!(doc.as_object().unwrap().len(), 6, "{doc}");
        assert_eq!(doc["status"], "started");
    }
    // And with a completion to give, not asking means not waiting.
    world
        .engine
        .complete_waits_with(Some(Completion::Completed(json!(1))));
    assert_eq!(call(&world.starter(), &world, &[]).await.status(), 202);
    assert_eq!(world.started(), 3);
}

#[tokio::test]
async fn the_wait_is_capped_by_the_starters_maximum_and_zero_turns_it_off() {
    let world = World::new();
    world.engine.complete_waits_with(Some(Completion::Running));
    let capped = call(&world.starter(), &world, &[("prefer", "wait=100")]).await;
    assert_eq!(capped.status(), 202);
    assert_eq!(capped.header("preference-applied"), Some("wait=30"));
    assert_eq!(body(&capped)["status"], "running");

    let shorter = world.starter().with_max_wait(Duration::from_secs(5));
    assert_eq!(
        call(&shorter, &world, &[("prefer", "wait=100")])
            .await
            .header("preference-applied"),
        Some("wait=5")
    );
    let off = world.starter().with_max_wait(Duration::ZERO);
    let reply = call(&off, &world, &[("prefer", "wait=10")]).await;
    assert_eq!((reply.status(), reply.header("preference-applied")), (202, None));
    assert_eq!(body(&reply)["status"], "started");
    let zero = call(&world.starter(), &world, &[("prefer", "wait=0")]).await;
    assert_eq!((zero.status(), zero.header("preference-applied")), (202, None));
}

#[tokio::test]
async fn failed_terminated_and_cancelled_instances_are_200_with_their_status_and_no_internals() {
    let world = World::new();
    let cases = [
        (Completion::Failed(Some("disk full on worker-3".into())), "failed"),
        (Completion::Terminated, "terminated"),
        (Completion::Cancelled, "cancelled"),
    ];
    for (completion, status) in cases {
        world.engine.complete_waits_with(Some(completion));
        let reply = call(&world.starter(), &world, &[("prefer", "wait=3")]).await;
        assert_eq!(reply.status(), 200);
        let doc = body(&reply);
        assert_eq!(doc["status"], status);
        assert!(
            doc.get("result").is_none() && doc.get("message").is_none(),
            "{doc}"
        );
    }
    world
        .engine
        .complete_waits_with(Some(Completion::Failed(Some("disk full on worker-3".into()))));
    let shown = call(
        &world.starter().with_failure_messages(true),
        &world,
        &[("prefer", "wait=3")],
    )
    .await;
    assert_eq!(body(&shown)["message"], "disk full on worker-3");
}

#[tokio::test]
async fn a_replay_with_wait_waits_on_the_same_instance_and_starts_nothing() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let first = call(&starter, &world, &[("idempotency-key", "order-7")]).await;
    assert_eq!(first.status(), 202);
    world
        .engine
        .complete_waits_with(Some(Completion::Completed(json!({"total": 42.5}))));
    let again = call(
        &starter,
        &world,
        &[("idempotency-key", "order-7"), ("prefer", "wait=10")],
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(body(&again)["instanceId"], body(&first)["instanceId"]);
    assert_eq!(body(&again)["result"], json!({"total": 42.5}));
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn preferences_are_read_as_rfc_7240_writes_them() {
    let world = World::new();
    world.engine.complete_waits_with(Some(Completion::Running));
    let starter = world.starter();
    for (prefer, applied) in [
        ("respond-async, wait=5", Some("wait=5")),
        ("wait=\"7\"", Some("wait=7")),
        ("WAIT = 4 ; foo=bar", Some("wait=4")),
        ("wait=3, wait=9", Some("wait=3")),
        ("wait=abc", None),
        ("wait", None),
        ("wait=-1", None),
        ("wait=99999999999999999999", Some("wait=30")),
        // Another preference's number is not a wait.
        ("handling=5", None),
    ] {
        let reply = call(&starter, &world, &[("prefer", prefer)]).await;
        assert_eq!(reply.header("preference-applied"), applied, "{prefer}");
    }
    // A dry run starts nothing, so there is nothing to wait for.
    let dry = call(&starter, &world, &[("prefer", "dry-run, wait=5")]).await;
    assert_eq!(
        (dry.status(), dry.header("preference-applied")),
        (200, Some("dry-run"))
    );
    assert_eq!(world.started(), 9);
}

#[tokio::test]
async fn an_envelope_must_not_contradict_the_requests_wait() {
    let world = World::new();
    let envelope = json!({"headers": {"prefer": "wait=5"}, "payload": order_payload()});
    let reply = world
        .starter()
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer().as_str()), ("prefer", "wait=10")],
            envelope.to_string().as_bytes(),
        )
        .await;
    assert_reply(&reply, 400, "conflicting_headers");
    assert_eq!(world.started(), 0);
}

/// An engine whose waits last until the caller gives up.
struct NeverEnds(InMemoryEngine);

#[async_trait]
impl Engine for NeverEnds {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        self.0.start(command).await
    }

    async fn wait(&self, _: &InstanceRef, _: Duration) -> Result<Option<Completion>, EngineError> {
        std::future::pending().await
    }
}

/// Returns once a call waits on `starter`; fails after 5 s.
async fn until_waiting(starter: &WebhookStarter) {
    let began = std::time::Instant::now();
    while starter.waiting_calls() == 0 {
        assert!(began.elapsed() < Duration::from_secs(5), "no call began to wait");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn past_the_bound_on_waiting_calls_a_call_is_answered_at_once() {
    let world = World::new();
    let engine = Arc::new(NeverEnds(InMemoryEngine::new()));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_max_waiting_calls(1);
    let waiting = tokio::spawn({
        let (starter, auth) = (starter.clone(), world.bearer());
        async move {
            starter
                .handle(
                    &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
                    [("authorization", auth.as_str()), ("prefer", "wait=30")],
                    &payload(),
                )
                .await
        }
    });
    until_waiting(&starter).await;
    let second = call(&starter, &world, &[("prefer", "wait=30")]).await;
    assert_eq!(
        (second.status(), second.header("preference-applied")),
        (202, None)
    );
    assert_eq!(engine.0.started().len(), 2, "both started");
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(starter.waiting_calls(), 0, "the place is given back");
}

#[tokio::test]
async fn a_caller_that_hangs_up_stops_the_wait_never_the_instance() {
    use tokio::io::AsyncWriteExt;
    let world = World::new();
    let engine = Arc::new(NeverEnds(InMemoryEngine::new()));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router("/webhook/send", starter.clone()),
        ServeOptions::default(),
        std::future::pending(),
    ));
    let body = payload();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\nprefer: wait=30\r\ncontent-length: {}\r\n\r\n",
        webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
        world.bearer(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    until_waiting(&starter).await;
    drop(stream);
    let gone = std::time::Instant::now();
    while starter.waiting_calls() > 0 && gone.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(starter.waiting_calls(), 0, "the wait stopped with the connection");
    assert_eq!(engine.0.started().len(), 1, "the instance was started and stays");
}

/// Records what each wait was asked about, and completes at once.
#[derive(Default)]
struct Recording {
    engine: InMemoryEngine,
    asked: std::sync::Mutex<Vec<InstanceRef>>,
}

#[async_trait]
impl Engine for Recording {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        self.engine.start(command).await
    }

    async fn wait(&self, instance: &InstanceRef, _: Duration) -> Result<Option<Completion>, EngineError> {
        self.asked.lock().unwrap().push(instance.clone());
        Ok(Some(Completion::Completed(json!(null))))
    }
}

#[tokio::test]
async fn the_engine_is_told_the_instance_its_business_key_and_the_callers_key() {
    let world = World::new();
    let engine = Arc::new(Recording::default());
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let keyed = [("idempotency-key", "order-9"), ("prefer", "wait=5")];
    let first = call(&starter, &world, &keyed).await;
    let again = call(&starter, &world, &keyed).await;
    let unkeyed = call(&starter, &world, &[("prefer", "wait=5")]).await;
    let asked = engine.asked.lock().unwrap().clone();
    let ids: Vec<Value> = [&first, &again, &unkeyed]
        .iter()
        .map(|r| body(r)["instanceId"].clone())
        .collect();
    assert_eq!(asked.len(), 3);
    for (instance, id) in asked.iter().zip(&ids) {
        assert_eq!(instance.id().as_str(), id.as_str().unwrap());
        assert_eq!(*instance.process(), uuid(ORDER_INTAKE));
        assert_eq!(instance.environment().as_str(), "production");
    }
    // The in-memory engine gives a keyed instance the key as business key;
    // a replay knows it too, from the outcome the idempotency store kept.
    let keys: Vec<(Option<&str>, Option<&str>)> = asked
        .iter()
        .map(|i| (i.business_key(), i.idempotency_key()))
        .collect();
    assert_eq!(
        keys,
        [
            (Some("order-9"), Some("order-9")),
            (Some("order-9"), Some("order-9")),
            (None, None)
        ]
    );
}
