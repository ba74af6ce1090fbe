//! A replica that dies mid-start leaves its key reserved. The key's next
//! delivery takes that reservation over instead of answering `409
//! start_in_progress` until the lease ends: at once for an engine that
//! deduplicates, once the reservation is older than the engine's call
//! deadline plus a margin for one that finds starts by business key; an
//! engine that can do neither keeps the lease.
//!
//! Each story reserves the key in the store as the replica that died did,
//! then delivers the key.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::Value;

const KEY: &str = "order-7";

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

fn json_of(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap()
}

/// The key as the starter stores it, reserved by a replica that then died.
async fn reserved_by_a_dead_replica(store: &dyn IdempotencyStore) {
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), KEY);
    let reserved = store
        .reserve(&key, PayloadFingerprint::of(&order_payload()))
        .await
        .unwrap();
    assert_eq!(reserved, Reservation::Reserved);
}

/// An engine that finds starts by business key: it knows the instances
/// started under each key (the dead replica's among them, when it got that
/// far) and counts its look-ups and starts.
struct Finder {
    deadline: Duration,
    started: Mutex<Vec<(String, String)>>,
    finds: AtomicUsize,
    starts: AtomicUsize,
    find_delay: Duration,
}

impl Finder {
    fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            started: Mutex::new(Vec::new()),
            finds: AtomicUsize::new(0),
            starts: AtomicUsize::new(0),
            find_delay: Duration::ZERO,
        }
    }

    /// The dead replica's start had reached the engine.
    fn with_instance(self, key: &str, id: &str) -> Self {
        self.started.lock().unwrap().push((key.to_owned(), id.to_owned()));
        self
    }
}

#[async_trait]
impl Engine for Finder {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let key = command.idempotency_key.clone().unwrap_or_default();
        let id = format!("started-{}", self.starts.load(Ordering::SeqCst));
        self.started.lock().unwrap().push((key.clone(), id.clone()));
        Ok(ProcessInstance::new(InstanceId::new(id)).with_business_key(key))
    }

    fn recovery(&self) -> Recovery {
        Recovery::FindsByBusinessKey {
            call_deadline: self.deadline,
        }
    }

    async fn find_started(&self, command: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.find_delay).await;
        let key = command.idempotency_key.clone().unwrap_or_default();
        Ok(self
            .started
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, id)| ProcessInstance::new(InstanceId::new(id.clone())).with_business_key(key.clone())))
    }
}

fn starter(world: &World, engine: Arc<dyn Engine>, store: Arc<dyn IdempotencyStore>) -> WebhookStarter {
    WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine)
        .with_idempotency(store)
        .with_takeover_margin(Duration::from_millis(100))
}

async fn deliver(starter: &WebhookStarter, world: &World) -> HttpReply {
    starter
        .handle(
            &target(),
            [
                ("authorization", world.bearer()),
                ("idempotency-key", KEY.to_owned()),
            ],
            &body(),
        )
        .await
}

#[tokio::test]
async fn a_young_reservation_is_not_taken_and_one_older_than_the_deadline_is_and_completes_with_the_instance_found()
 {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let engine =
        Arc::new(Finder::new(Duration::from_millis(100)).with_instance(KEY, "started-by-the-dead-replica"));
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;

    // Younger than the deadline plus the margin: the holder's call may still run.
    let reply = deliver(&starter, &world).await;
    assert_reply(&reply, 409, "start_in_progress");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(engine.finds.load(Ordering::SeqCst), 0);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let reply = deliver(&starter, &world).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(json_of(&reply)["instanceId"], "started-by-the-dead-replica");
    assert_eq!(json_of(&reply)["replayed"], false);
    assert_eq!(engine.finds.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.starts.load(Ordering::SeqCst),
        0,
        "the instance was found, not started again"
    );

    // The key is completed with it: the next delivery is a replay.
    let reply = deliver(&starter, &world).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(json_of(&reply)["instanceId"], "started-by-the-dead-replica");
    assert_eq!(reply.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        (
            engine.finds.load(Ordering::SeqCst),
            engine.starts.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn a_taken_reservation_whose_start_never_reached_the_engine_starts_once() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let engine = Arc::new(Finder::new(Duration::ZERO));
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let reply = deliver(&starter, &world).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(json_of(&reply)["instanceId"], "started-1");
    let replay = deliver(&starter, &world).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(json_of(&replay)["instanceId"], "started-1");
    assert_eq!(
        (
            engine.finds.load(Ordering::SeqCst),
            engine.starts.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_takers_at_once_run_the_engines_recovery_once() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let mut finder = Finder::new(Duration::ZERO);
    finder.find_delay = Duration::from_millis(200);
    let engine = Arc::new(finder);
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    let replies = futures_util::future::join_all((0..8).map(|_| deliver(&starter, &world))).await;
    let statuses: Vec<u16> = replies.iter().map(HttpReply::status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 1, "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status() != 202) {
        assert_reply(reply, 409, "start_in_progress");
    }
    assert_eq!(
        (
            engine.finds.load(Ordering::SeqCst),
            engine.starts.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn a_failed_look_up_keeps_the_key_reserved_for_the_next_taker() {
    struct Lost(Finder);
    #[async_trait]
    impl Engine for Lost {
        async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
            self.0.start(command).await
        }
        fn recovery(&self) -> Recovery {
            self.0.recovery()
        }
        async fn find_started(&self, _: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
            self.0.finds.fetch_add(1, Ordering::SeqCst);
            Err(EngineError::unavailable("the engine is down"))
        }
    }
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let engine = Arc::new(Lost(Finder::new(Duration::ZERO)));
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;
    tokio::time::sleep(Duration::from_millis(150)).await;

    assert_reply(&deliver(&starter, &world).await, 503, "engine_unavailable");
    // Not released: a plain reservation still finds it held, and the
    // taker's reservation is young again.
    assert_reply(&deliver(&starter, &world).await, 409, "start_in_progress");
    assert_eq!(engine.0.finds.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.0.starts.load(Ordering::SeqCst),
        0,
        "nothing started without knowing"
    );
}

/// An engine that deduplicates (as Temporal does): a repeated start of one
/// key returns its first instance.
#[derive(Default)]
struct Deduplicating {
    instances: Mutex<Vec<(String, String)>>,
    calls: AtomicUsize,
}

#[async_trait]
impl Engine for Deduplicating {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let key = command.idempotency_key.clone().unwrap_or_default();
        let mut instances = self.instances.lock().unwrap();
        let id = match instances.iter().find(|(k, _)| *k == key) {
            Some((_, id)) => id.clone(),
            None => {
                let id = format!("run-{}", instances.len() + 1);
                instances.push((key.clone(), id.clone()));
                id
            }
        };
        Ok(ProcessInstance::new(InstanceId::new(id)).with_business_key(key))
    }

    fn recovery(&self) -> Recovery {
        Recovery::Deduplicates
    }
}

#[tokio::test]
async fn with_an_engine_that_deduplicates_the_next_delivery_takes_over_at_once() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let engine = Arc::new(Deduplicating::default());
    // The dead replica's start had reached the engine.
    engine
        .instances
        .lock()
        .unwrap()
        .push((KEY.to_owned(), "run-of-the-dead-replica".to_owned()));
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;

    let reply = deliver(&starter, &world).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(json_of(&reply)["instanceId"], "run-of-the-dead-replica");
    let replay = deliver(&starter, &world).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(engine.calls.load(Ordering::SeqCst), 1);
    assert_eq!(engine.instances.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_engine_that_can_neither_deduplicate_nor_find_keeps_the_lease() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let starter = starter(&world, world.engine.clone(), store.clone());
    assert_eq!(world.engine.recovery(), Recovery::None);
    reserved_by_a_dead_replica(&*store).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..3 {
        assert_reply(&deliver(&starter, &world).await, 409, "start_in_progress");
    }
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn another_payload_under_a_held_key_is_refused_and_never_takes_it_over() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let engine = Arc::new(Deduplicating::default());
    let starter = starter(&world, engine.clone(), store.clone());
    reserved_by_a_dead_replica(&*store).await;
    let reply = starter
        .handle(
            &target(),
            [
                ("authorization", world.bearer()),
                ("idempotency-key", KEY.to_owned()),
            ],
            br#"{"customerName": "Jane Roe", "orderNumber": "9", "productCode": "X"}"#,
        )
        .await;
    assert_reply(&reply, 422, "idempotency_key_reused");
    assert_eq!(engine.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_free_function_takes_over_as_the_starter_does() {
    let world = World::new();
    let store = InMemoryIdempotencyStore::new();
    let engine = Deduplicating::default();
    reserved_by_a_dead_replica(&store).await;
    let request = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key(KEY);
    let outcome =
        start_via_webhook_with_idempotency(request, &*world.models, &*world.tokens, &engine, &store)
            .await
            .unwrap();
    assert_eq!(outcome.instance_id().as_str(), "run-1");
    assert!(!outcome.is_replayed());
}

#[tokio::test]
async fn an_engine_behind_an_arc_recovers_as_itself_and_the_default_never_says_nothing_started() {
    let finder = Arc::new(Finder::new(Duration::from_secs(3)).with_instance(KEY, "found"));
    let command = StartCommand::new(&order_deployment(2), 2, order_payload()).with_idempotency_key(KEY);
    // `Arc<E>`'s own implementation forwards both.
    assert_eq!(
        <Arc<Finder> as Engine>::recovery(&finder),
        Recovery::FindsByBusinessKey {
            call_deadline: Duration::from_secs(3)
        }
    );
    let found = <Arc<Finder> as Engine>::find_started(&finder, &command)
        .await
        .unwrap();
    assert_eq!(
        found.map(|i| i.id().as_str().to_owned()).as_deref(),
        Some("found")
    );
    // An engine that does not find starts refuses, rather than answer that
    // none was started.
    let refused = InMemoryEngine::new().find_started(&command).await.unwrap_err();
    assert_eq!(refused.kind(), EngineErrorKind::Refused);
    assert_eq!(
        <Arc<InMemoryEngine> as Engine>::recovery(&Arc::new(InMemoryEngine::new())),
        Recovery::None
    );
}

#[tokio::test]
async fn with_an_inbox_a_start_cut_off_is_taken_over_as_without_one() {
    for policy in [InboxPolicy::Fallback, InboxPolicy::Always] {
        // Camunda-like: found by business key once the deadline is past.
        let world = World::new();
        let store = Arc::new(InMemoryIdempotencyStore::new());
        let engine = Arc::new(
            Finder::new(Duration::from_millis(100)).with_instance(KEY, "started-by-the-dead-replica"),
        );
        let finding =
            starter(&world, engine.clone(), store.clone()).with_inbox(Arc::new(InMemoryInbox::new()), policy);
        reserved_by_a_dead_replica(&*store).await;
        assert_reply(&deliver(&finding, &world).await, 409, "start_in_progress");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let reply = deliver(&finding, &world).await;
        assert_eq!(reply.status(), 202, "{policy:?}");
        assert_eq!(
            json_of(&reply)["instanceId"],
            "started-by-the-dead-replica",
            "{policy:?}"
        );
        assert_eq!(json_of(&reply)["status"], "started", "{policy:?}");
        assert_eq!(
            engine.starts.load(Ordering::SeqCst),
            0,
            "{policy:?}: found, not started again"
        );

        // Temporal-like: taken over at once; kept (Always) or started.
        let world = World::new();
        let store = Arc::new(InMemoryIdempotencyStore::new());
        let engine = Arc::new(Deduplicating::default());
        engine
            .instances
            .lock()
            .unwrap()
            .push((KEY.to_owned(), "run-of-the-dead-replica".to_owned()));
        let deduplicating =
            starter(&world, engine.clone(), store.clone()).with_inbox(Arc::new(InMemoryInbox::new()), policy);
        reserved_by_a_dead_replica(&*store).await;
        let reply = deliver(&deduplicating, &world).await;
        assert_eq!(reply.status(), 202, "{policy:?}");
        if policy == InboxPolicy::Always {
            assert_eq!(json_of(&reply)["status"], "queued");
            deduplicating.dispatcher().unwrap().dispatch_due().await.unwrap();
        } else {
            assert_eq!(json_of(&reply)["instanceId"], "run-of-the-dead-replica");
        }
        let replay = deliver(&deduplicating, &world).await;
        assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{policy:?}");
        assert_eq!(
            json_of(&replay)["instanceId"],
            "run-of-the-dead-replica",
            "{policy:?}"
        );
        assert_eq!(
            engine.instances.lock().unwrap().len(),
            1,
            "{policy:?}: one instance"
        );
    }
}
