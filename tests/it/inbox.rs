//! No delivery lost while the engine is away: a starter with an inbox keeps
//! a start that passed every check, answers `202 queued`, and its
//! dispatcher starts it once the engine is back, exactly once.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::Value;

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

fn json(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap()
}

/// An engine that is away (`unavailable`) until `up` is called.
fn away() -> Arc<FlakyEngine> {
    Arc::new(FlakyEngine::failing(usize::MAX, || {
        EngineError::unavailable("connection refused")
    }))
}

fn up(engine: &FlakyEngine) {
    engine.failures_left.store(0, Ordering::SeqCst);
}

struct Setup {
    world: World,
    engine: Arc<FlakyEngine>,
    inbox: Arc<InMemoryInbox>,
    starter: WebhookStarter,
}

fn setup(engine: Arc<FlakyEngine>, policy: InboxPolicy) -> Setup {
    let world = World::new();
    let inbox = Arc::new(InMemoryInbox::new());
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
        .with_inbox(inbox.clone(), policy);
    Setup {
        world,
        engine,
        inbox,
        starter,
    }
}

impl Setup {
    async fn post(&self, headers: &[(&'static str, &str)], body: &[u8]) -> HttpReply {
        let mut all = vec![("authorization", self.world.bearer())];
        all.extend(headers.iter().map(|(n, v)| (*n, (*v).to_owned())));
        self.starter.handle(&target(), all, body).await
    }

    fn started(&self) -> Vec<StartedInstance> {
        self.engine.inner.started()
    }
}

#[tokio::test]
async fn with_the_engine_away_a_start_is_queued_and_started_once_it_is_back() {
    let s = setup(away(), InboxPolicy::Fallback);
    let reply = s.post(&[], &body()).await;
    assert_eq!(reply.status(), 202);
    let queued = json(&reply);
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["processUuid"], ORDER_INTAKE);
    assert_eq!(
        (queued["version"].as_u64(), queued["environment"].as_str()),
        (Some(2), Some("production"))
    );
    assert_eq!(queued["replayed"], false);
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    assert!(s.started().is_empty(), "the engine started nothing");
    assert_eq!(s.engine.calls(), 1, "the engine was tried once");

    // No backoff, so that the test need not wait for one.
    let dispatcher = s
        .starter
        .dispatcher()
        .unwrap()
        .with_backoff(Duration::ZERO, Duration::ZERO);
    // Still away: the start is rescheduled, with the engine's words kept.
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let kept = s.inbox.get(&id).await.unwrap().unwrap();
    assert_eq!((kept.status, kept.attempts), (DeliveryStatus::Queued, 1));
    assert!(kept.last_error.unwrap().contains("connection refused"));
    assert!(kept.due_at >= kept.kept_at, "due again");

    up(&s.engine);
    let retried = s.inbox.retry(&id).await.unwrap();
    assert!(!retried, "a queued start is not retried: it is due by itself");
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let started = s.started();
    assert_eq!(started.len(), 1, "started exactly once");
    assert_eq!(
        started[0].command.variables,
        Value::Object(order_payload()).as_object().unwrap().clone()
    );
    assert_eq!(
        started[0].command.idempotency_key.as_deref(),
        Some(id.to_string().as_str()),
        "a start without a key is keyed by its delivery id"
    );
    let kept = s.inbox.get(&id).await.unwrap().unwrap();
    assert_eq!(kept.status, DeliveryStatus::Started);
    assert_eq!(kept.instance.as_ref(), Some(&started[0].id));
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap(),
        0,
        "nothing is left to dispatch"
    );
}

#[tokio::test]
async fn always_keeps_every_start_and_answers_before_the_engine_is_called() {
    let s = setup(
        Arc::new(FlakyEngine::failing(0, || EngineError::new("unused"))),
        InboxPolicy::Always,
    );
    let reply = s.post(&[], &body()).await;
    assert_eq!(
        (reply.status(), json(&reply)["status"].as_str()),
        (202, Some("queued"))
    );
    assert_eq!(s.engine.calls(), 0, "the engine is not called by the call");
    assert_eq!(s.starter.dispatcher().unwrap().dispatch_due().await.unwrap(), 1);
    assert_eq!(s.started().len(), 1);
}

#[tokio::test]
async fn a_keyed_repeat_gets_the_queued_answer_then_the_started_one() {
    let s = setup(away(), InboxPolicy::Fallback);
    let key = [("idempotency-key", "order-1")];
    let first = json(&s.post(&key, &body()).await);
    let again = s.post(&key, &body()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let again = json(&again);
    assert_eq!(
        (again["status"].as_str(), again["replayed"].as_bool()),
        (Some("queued"), Some(true))
    );
    assert_eq!(again["deliveryId"], first["deliveryId"], "the same kept start");
    assert_eq!(
        s.engine.calls(),
        1,
        "a repeat of a kept start does not call the engine"
    );

    let other = s
        .post(
            &key,
            &serde_json::to_vec(
                &serde_json::json!({"customerName": "Jane", "orderNumber": "9", "productCode": "X"}),
            )
            .unwrap(),
        )
        .await;
    assert_reply(&other, 422, "idempotency_key_reused");

    up(&s.engine);
    let id: DeliveryId = first["deliveryId"].as_str().unwrap().parse().unwrap();
    s.inbox.get(&id).await.unwrap().unwrap();
    let dispatcher = s
        .starter
        .dispatcher()
        .unwrap()
        .with_backoff(Duration::ZERO, Duration::ZERO);
    for _ in 0..3 {
        dispatcher.dispatch_due().await.unwrap();
    }
    let started = s.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].command.idempotency_key.as_deref(),
        Some("order-1"),
        "the caller's key reaches the engine"
    );
    let replay = s.post(&key, &body()).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let replay = json(&replay);
    assert_eq!(
        (replay["status"].as_str(), replay["replayed"].as_bool()),
        (Some("started"), Some(true))
    );
    assert_eq!(replay["instanceId"], started[0].id.as_str());
    assert_eq!(s.started().len(), 1, "still one instance");
}

#[tokio::test]
async fn a_start_the_engine_refuses_is_dead_until_an_operator_retries_it() {
    let refusing = Arc::new(FlakyEngine::failing(1, || {
        EngineError::refused("no such definition")
    }));
    let s = setup(refusing, InboxPolicy::Always);
    let queued = json(&s.post(&[], &body()).await);
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    let dispatcher = s.starter.dispatcher().unwrap();
    dispatcher.dispatch_due().await.unwrap();
    let dead = s.inbox.get(&id).await.unwrap().unwrap();
    assert_eq!(dead.status, DeliveryStatus::Dead, "a refusal is dead at once");
    assert!(dead.last_error.unwrap().contains("no such definition"));
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap(),
        0,
        "a dead start is not dispatched"
    );

    // The cause fixed (the engine takes it now), the operator retries.
    assert!(s.inbox.retry(&id).await.unwrap());
    dispatcher.dispatch_due().await.unwrap();
    assert_eq!(
        s.inbox.get(&id).await.unwrap().unwrap().status,
        DeliveryStatus::Started
    );
    assert_eq!(s.started().len(), 1);
}

#[tokio::test]
async fn a_start_older_than_the_maximum_age_is_dead_and_never_reaches_the_engine() {
    let s = setup(
        Arc::new(FlakyEngine::failing(0, || EngineError::new("unused"))),
        InboxPolicy::Always,
    );
    let queued = json(&s.post(&[], &body()).await);
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let dispatcher = s
        .starter
        .dispatcher()
        .unwrap()
        .with_max_age(Duration::from_millis(1));
    dispatcher.dispatch_due().await.unwrap();
    let dead = s.inbox.get(&id).await.unwrap().unwrap();
    assert_eq!(dead.status, DeliveryStatus::Dead);
    assert!(dead.last_error.unwrap().contains("maximum age"));
    assert_eq!(s.engine.calls(), 0);
}

#[tokio::test]
async fn a_full_inbox_refuses_with_503_inbox_full_and_keeps_nothing() {
    let s = setup(away(), InboxPolicy::Always);
    let starter = s.starter.clone().with_inbox_limit(1);
    let headers = [("authorization", s.world.bearer())];
    assert_eq!(
        starter.handle(&target(), headers.clone(), &body()).await.status(),
        202
    );
    let full = starter.handle(&target(), headers, &body()).await;
    assert_reply(&full, 503, "inbox_full");
    assert_eq!(full.header("retry-after"), Some("30"));
    let kept = s.inbox.list(&InboxQuery::default()).await.unwrap();
    assert_eq!(kept.len(), 1, "nothing more was kept");
    assert_eq!(s.engine.calls(), 0);
}

#[tokio::test]
async fn a_failure_not_worth_retrying_is_answered_as_without_an_inbox() {
    let s = setup(
        Arc::new(FlakyEngine::failing(1, || EngineError::refused("bad variables"))),
        InboxPolicy::Fallback,
    );
    let reply = s.post(&[("idempotency-key", "k-refused")], &body()).await;
    assert_reply(&reply, 502, "engine_failed");
    assert!(
        s.inbox.list(&InboxQuery::default()).await.unwrap().is_empty(),
        "nothing kept"
    );
    // The key was released: the call may be sent again, and starts.
    let again = s.post(&[("idempotency-key", "k-refused")], &body()).await;
    assert_eq!(
        (again.status(), json(&again)["status"].as_str()),
        (202, Some("started"))
    );
}

#[tokio::test]
async fn every_check_runs_before_a_start_is_kept() {
    let s = setup(away(), InboxPolicy::Always);
    assert_reply(&s.post(&[], b"{}").await, 422, "invalid_payload");
    let draft = s
        .starter
        .handle(
            &webhook_url("/webhook/send", &uuid(DRAFT_ONLY)),
            [("authorization", s.world.bearer())],
            &body(),
        )
        .await;
    assert_reply(&draft, 409, "draft_version");
    let no_token = s.starter.handle(&target(), [("x", "y")], &body()).await;
    assert_reply(&no_token, 401, "missing_token");
    assert!(
        s.inbox.list(&InboxQuery::default()).await.unwrap().is_empty(),
        "nothing kept"
    );
}

#[tokio::test]
async fn two_dispatchers_start_each_of_many_kept_starts_exactly_once() {
    let s = setup(
        Arc::new(FlakyEngine::failing(0, || EngineError::new("unused"))),
        InboxPolicy::Always,
    );
    for n in 0..300 {
        let mut payload = order_payload();
        payload.insert("orderNumber".into(), Value::from(n.to_string()));
        let reply = s.post(&[], &serde_json::to_vec(&payload).unwrap()).await;
        assert_eq!(reply.status(), 202);
    }
    let a = s.starter.dispatcher().unwrap().with_batch(7);
    let b = s.starter.dispatcher().unwrap().with_batch(11);
    loop {
        let (x, y) = tokio::join!(a.dispatch_due(), b.dispatch_due());
        if x.unwrap() + y.unwrap() == 0 {
            break;
        }
    }
    let started = s.started();
    assert_eq!(started.len(), 300, "each started");
    let mut numbers: Vec<String> = started
        .iter()
        .map(|i| i.command.variables["orderNumber"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 300, "none twice");
    let queued = s
        .inbox
        .list(&InboxQuery::default().with_status(DeliveryStatus::Queued))
        .await
        .unwrap();
    assert!(queued.is_empty(), "none left queued");
}

#[tokio::test]
async fn accept_answers_as_the_http_exchange_and_start_never_keeps() {
    let s = setup(away(), InboxPolicy::Fallback);
    let request = s.world.request(ORDER_INTAKE, order_payload());
    match s.starter.accept(request.clone()).await.unwrap() {
        Accepted::Queued(queued) => {
            assert!(!queued.is_replayed());
            assert_eq!(queued.version(), 2);
        }
        other => panic!("queued expected, got {other:?}"),
    }
    assert_refused(s.starter.start(request).await, 503, "engine_unavailable");
}

#[tokio::test]
async fn a_starter_that_keeps_every_start_stays_ready_while_the_engine_is_away() {
    struct Away;
    #[async_trait::async_trait]
    impl Engine for Away {
        async fn start(&self, _: &StartCommand) -> Result<ProcessInstance, EngineError> {
            Err(EngineError::unavailable("down"))
        }
        async fn ready(&self) -> Result<(), EngineError> {
            Err(EngineError::unavailable("down"))
        }
    }
    let world = World::new();
    let plain = WebhookStarter::new(world.models.clone(), world.tokens.clone(), Arc::new(Away));
    let not_ready = plain.ready().await.unwrap_err();
    assert_eq!(not_ready.components().collect::<Vec<_>>(), [Component::Engine]);
    let fallback = plain
        .clone()
        .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Fallback);
    assert!(
        fallback.ready().await.is_err(),
        "a fallback starter still needs its engine to start"
    );
    let always = plain.with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Always);
    always
        .ready()
        .await
        .expect("every start is kept: ready without the engine");
}

/// A server that stops cleanly stops its dispatcher: the start it was
/// making when told to stop ends (started, not left claimed for its lease
/// to run out), and no next round begins.
#[cfg(feature = "dispatcher")]
#[tokio::test]
async fn a_stopped_dispatcher_ends_the_start_in_flight_and_leaves_nothing_claimed() {
    let s = setup(
        Arc::new(FlakyEngine::slow(Duration::from_millis(300))),
        InboxPolicy::Always,
    );
    let queued = json(&s.post(&[], &body()).await);
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    let dispatcher = s.starter.dispatcher().unwrap();
    let running = Running::spawn(dispatcher);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.engine.calls() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dispatcher never called the engine"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await;
    let kept = s.inbox.get(&id).await.unwrap().unwrap();
    assert_eq!(kept.status, DeliveryStatus::Started, "ended, not left claimed");
    assert_eq!(s.started().len(), 1);
    // Stopped: a start kept now waits for the next dispatcher.
    s.post(&[], &body()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(s.engine.calls(), 1);
}
