//! Every delivery visible: a starter with a delivery log records each call
//! that passed authentication, once, with its outcome, the sender's event
//! and delivery id, the instance, the headers less every credential, and
//! the payload as the policy says; the dispatcher records each attempt; a
//! full channel drops records, never a start.
#![cfg(feature = "delivery-log")]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::senders::Senders;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const REPOSITORY_EVENTS: &str = "3f9c1a52-0d7e-4b8a-9e61-7a2b5c4d3e21";

struct Logged {
    world: World,
    log: InMemoryDeliveryLog,
    sink: LogSink,
    starter: WebhookStarter,
}

/// The example world with a delivery log, a GitHub source (starting a
/// process whose form takes anything) and a Slack one.
fn logged(payloads: KeepPayloads) -> Logged {
    let world = World::new();
    let acme = OrganizationId::new("acme");
    let production = Environment::new(EnvironmentId::new("production"), acme.clone());
    world.models.insert_model(ProcessModel::new(
        uuid(REPOSITORY_EVENTS),
        acme,
        "Repository events",
    ));
    world.models.deploy(Deployment::new(
        uuid(REPOSITORY_EVENTS),
        VersionTag::Released(7),
        production.id().clone(),
        StartForm::default(),
    ));
    let sources = Arc::new(InMemorySourceStore::new());
    for (id, scheme, secret) in [
        ("github-repo", SourceScheme::Github, GITHUB_SECRET),
        ("slack-app", SourceScheme::Slack, SLACK_SECRET),
    ] {
        let source = WebhookSource::new(
            id.parse().unwrap(),
            production.clone(),
            uuid(REPOSITORY_EVENTS),
            scheme,
            [SourceSecret::new(secret).unwrap()],
        )
        .unwrap();
        let source = if id == "github-repo" {
            source.with_events(["push"]).unwrap()
        } else {
            source
        };
        sources.put_source(source);
    }
    let log = InMemoryDeliveryLog::new();
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 1_000, payloads);
    tokio::spawn(writer.run());
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
        .with_sources(sources)
        .with_delivery_log(sink.clone());
    Logged {
        world,
        log,
        sink,
        starter,
    }
}

impl Logged {
    async fn token_call(&self, headers: &[(&str, &str)], body: &Value) -> HttpReply {
        let mut all = vec![("authorization".to_owned(), self.world.bearer())];
        all.extend(headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
        self.starter
            .handle(&target, all, body.to_string().as_bytes())
            .await
    }

    async fn source_call(&self, source: &str, headers: &[(String, String)], body: &str) -> HttpReply {
        let target = format!("/webhook/send?uid={REPOSITORY_EVENTS}&source={source}");
        let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        self.starter.handle(&target, headers, body.as_bytes()).await
    }

    /// The log's records once it holds `n` (newest first).
    async fn records(&self, n: usize) -> Vec<LoggedDelivery> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let page = self.log.page(&LogQuery::newest(100)).await.unwrap();
            if page.deliveries.len() >= n || tokio::time::Instant::now() > deadline {
                assert_eq!(page.deliveries.len(), n, "records: {:#?}", page.deliveries);
                return page.deliveries;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn github_headers(senders: &Senders, event: &str, delivery: &str, body: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("X-GitHub-Event".to_owned(), event.to_owned()),
        ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
        ("User-Agent".to_owned(), "GitHub-Hookshot/044aadd".to_owned()),
        ("Cookie".to_owned(), "session=a-browser-session".to_owned()),
    ];
    headers.extend(senders.sign(json!({"scheme": "github", "secret": GITHUB_SECRET, "body": body})));
    headers
}

fn header<'a>(record: &'a LoggedDelivery, name: &str) -> Option<&'a str> {
    record.headers.as_ref().and_then(|h| h.get(name))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_outcome_of_an_authenticated_call_is_recorded_once_with_its_fields_and_no_credential() {
    let Some(senders) = Senders::find() else { return };
    let w = logged(KeepPayloads::Failed);

    // A token call that starts, and its repeat.
    let order = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let started = w.token_call(&[("idempotency-key", "order-123456")], &order).await;
    assert_eq!(started.status(), 202);
    let instance = serde_json::from_slice::<Value>(started.body()).unwrap()["instanceId"].clone();
    let replayed = w.token_call(&[("idempotency-key", "order-123456")], &order).await;
    assert_eq!(replayed.status(), 202);
    // A refused one: two mandatory fields missing.
    let refused = w
        .token_call(&[], &json!({"customerName": "<script>alert(1)</script>"}))
        .await;
    assert_reply(&refused, 422, "invalid_payload");
    // GitHub: a ping (ignored) and a push (started), signed by GitHub's own library.
    let ping = senders.github_example("ping");
    assert_eq!(
        w.source_call(
            "github-repo",
            &github_headers(&senders, "ping", "ping-1", &ping),
            &ping
        )
        .await
        .status(),
        200
    );
    let push = senders.github_example("push");
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let pushed = w
        .source_call(
            "github-repo",
            &github_headers(&senders, "push", delivery, &push),
            &push,
        )
        .await;
    assert_eq!(pushed.status(), 202);
    // Slack's URL check, signed by Slack's SDK.
    let check =
        json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1a", "type": "url_verification"})
            .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut slack = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    slack.extend(senders.slack(SLACK_SECRET, now, &check));
    assert_eq!(w.source_call("slack-app", &slack, &check).await.status(), 200);
    // Calls that never passed authentication are not delivery records.
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let wrong = w
        .starter
        .handle(
            &target,
            [("authorization", "Bearer not-a-token-of-anyone-here-at-all")],
            b"{}",
        )
        .await;
    assert_reply(&wrong, 401, "invalid_token");
    let forged = github_headers(&senders, "push", "forged-1", "{}");
    assert_reply(
        &w.source_call("github-repo", &forged, &push).await,
        401,
        "invalid_signature",
    );

    let records = w.records(6).await;
    let by = |outcome: LoggedOutcome| -> Vec<&LoggedDelivery> {
        records.iter().filter(|r| r.outcome == outcome).collect()
    };
    for (outcome, count) in [
        (LoggedOutcome::Started, 2),
        (LoggedOutcome::Replayed, 1),
        (LoggedOutcome::Refused, 1),
        (LoggedOutcome::Ignored, 1),
        (LoggedOutcome::Challenge, 1),
    ] {
        assert_eq!(by(outcome).len(), count, "{outcome}");
    }
    let token_start = by(LoggedOutcome::Started)
        .into_iter()
        .find(|r| r.source.is_none())
        .unwrap();
    assert_eq!(
        token_start.instance.as_ref().map(|i| i.as_str()),
        instance.as_str()
    );
    assert_eq!(
        (
            token_start.environment.as_str(),
            token_start.version,
            token_start.status
        ),
        ("production", Some(2), Some(202))
    );
    assert_eq!(token_start.sender_id.as_deref(), Some("order-123456"));
    assert_eq!(
        token_start.payload, None,
        "a started delivery's payload is not kept by default"
    );
    assert_eq!(header(token_start, "idempotency-key"), Some("order-123456"));
    assert!(token_start.duration.is_some());

    let push_record = by(LoggedOutcome::Started)
        .into_iter()
        .find(|r| r.source.is_some())
        .unwrap();
    assert_eq!(
        push_record.source.as_ref().map(SourceId::as_str),
        Some("github-repo")
    );
    assert_eq!(
        (push_record.event.as_deref(), push_record.sender_id.as_deref()),
        (Some("push"), Some(delivery))
    );
    assert_eq!(push_record.version, Some(7));
    assert!(push_record.instance.is_some());
    assert_eq!(header(push_record, "x-github-event"), Some("push"));
    assert_eq!(
        header(push_record, "x-hub-signature-256"),
        None,
        "the signature is a credential"
    );
    assert_eq!(header(push_record, "cookie"), None);

    let refusal = by(LoggedOutcome::Refused)[0];
    assert_eq!(
        (refusal.status, refusal.code.as_deref()),
        (Some(422), Some("invalid_payload"))
    );
    let problem = refusal.problem.as_ref().unwrap();
    assert_eq!(
        problem["violations"].as_array().map(Vec::len),
        Some(2),
        "{problem}"
    );
    assert_eq!(
        refusal.payload.as_deref(),
        Some(r#"{"customerName":"<script>alert(1)</script>"}"#)
    );
    assert_eq!(by(LoggedOutcome::Ignored)[0].event.as_deref(), Some("ping"));

    // No credential anywhere in the log.
    let everything = serde_json::to_string(&records).unwrap();
    for secret in [
        w.world.token.expose_secret(),
        GITHUB_SECRET,
        SLACK_SECRET,
        "a-browser-session",
        "sha256=",
    ] {
        assert!(!everything.contains(secret), "{secret} is in the log");
    }
    assert!(!everything.to_ascii_lowercase().contains("authorization"));
    assert_eq!(w.sink.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_start_is_recorded_queued_then_dead_then_retried_and_started_with_every_attempt() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::refused("no definition order-intake")
    }));
    let inbox = Arc::new(InMemoryInbox::new());
    let log = InMemoryDeliveryLog::new();
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 100, KeepPayloads::Failed);
    tokio::spawn(writer.run());
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_delivery_log(sink)
        .with_inbox(inbox.clone(), InboxPolicy::Always);
    let dispatcher = starter.dispatcher().unwrap();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let reply = starter
        .handle(&target, [("authorization", world.bearer())], &body)
        .await;
    assert_eq!(reply.status(), 202);
    let id: DeliveryId = serde_json::from_slice::<Value>(reply.body()).unwrap()["deliveryId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let read = |want: LoggedOutcome| {
        let log = log.clone();
        async move {
            for _ in 0..500 {
                if let Some(record) = log.read(&id).await.unwrap().filter(|r| r.outcome == want) {
                    return record;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("{id} never became {want}: {:?}", log.read(&id).await);
        }
    };
    let queued = read(LoggedOutcome::Queued).await;
    assert_eq!(queued.status, Some(202));
    assert!(
        queued.payload.as_deref().unwrap().contains("John Doe"),
        "a queued payload is kept"
    );

    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let dead = read(LoggedOutcome::Dead).await;
    assert_eq!(dead.attempts.len(), 1);
    assert!(
        dead.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no definition order-intake")
    );
    assert_eq!(dead.status, Some(202), "the call's side stays");

    // The operator fixes the cause and retries it.
    let operator = Operator::new(Arc::new(log.clone())).with_inbox(inbox.clone());
    assert_eq!(operator.retry(&id).await.unwrap().outcome, LoggedOutcome::Queued);
    assert_eq!(operator.retry(&id).await.unwrap_err().code(), "not_retryable");
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let started = read(LoggedOutcome::Started).await;
    assert_eq!(
        started.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [LoggedOutcome::Dead, LoggedOutcome::Queued, LoggedOutcome::Started]
    );
    assert_eq!(started.instance.as_ref(), Some(&engine.inner.started()[0].id));
    assert_eq!(engine.inner.started().len(), 1, "started once");
    assert_eq!(operator.discard(&id).await.unwrap_err().code(), "not_discardable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_channel_drops_records_and_counts_them_while_every_start_succeeds() {
    let world = World::new();
    let log = InMemoryDeliveryLog::new();
    // The writer is not running yet: the channel holds two records.
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 2, KeepPayloads::All);
    let starter = world.starter().with_delivery_log(sink.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    for _ in 0..10 {
        let reply = starter
            .handle(&target, [("authorization", world.bearer())], &body)
            .await;
        assert_eq!(reply.status(), 202);
    }
    assert_eq!(world.started(), 10, "every start succeeded");
    assert_eq!(sink.dropped(), 8);
    drop((starter, sink));
    writer.run().await;
    assert_eq!(log.len(), 2, "the two the channel held are written");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_payload_policy_keeps_every_payload_or_none() {
    for (policy, kept) in [(KeepPayloads::All, true), (KeepPayloads::None, false)] {
        let world = World::new();
        let log = InMemoryDeliveryLog::new();
        let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 10, policy);
        let starter = world.starter().with_delivery_log(sink);
        let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
        let body = serde_json::to_vec(&order_payload()).unwrap();
        assert_eq!(
            starter
                .handle(&target, [("authorization", world.bearer())], &body)
                .await
                .status(),
            202
        );
        assert_eq!(
            starter
                .handle(&target, [("authorization", world.bearer())], b"{}")
                .await
                .status(),
            422
        );
        drop(starter);
        writer.run().await;
        let page = log.page(&LogQuery::newest(10)).await.unwrap();
        assert_eq!(page.deliveries.len(), 2);
        for record in page.deliveries {
            assert_eq!(record.payload.is_some(), kept, "{policy:?} {}", record.outcome);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_payload_never_holds_the_token_an_envelope_body_carries() {
    let world = World::new();
    let log = InMemoryDeliveryLog::new();
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 10, KeepPayloads::All);
    let starter = world.starter().with_delivery_log(sink);
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    // The documented envelope, refused for a missing field.
    let envelope = json!({
        "headers": {"authorization": world.token.expose_secret()},
        "payload": {"customerName": "John Doe", "password": "hunter2"},
    });
    let no_headers: [(&str, &str); 0] = [];
    let reply = starter
        .handle(&target, no_headers, envelope.to_string().as_bytes())
        .await;
    assert_reply(&reply, 422, "invalid_payload");
    drop(starter);
    writer.run().await;
    let record = log.page(&LogQuery::newest(1)).await.unwrap().deliveries.remove(0);
    assert_eq!(record.outcome, LoggedOutcome::Refused);
    let payload = record.payload.unwrap();
    assert!(!payload.contains(world.token.expose_secret()), "{payload}");
    assert!(!payload.contains("hunter2"), "{payload}");
    assert!(payload.contains("John Doe"), "{payload}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sources_own_signature_header_is_left_out_whatever_its_name() {
    let Some(senders) = Senders::find() else { return };
    let w = logged(KeepPayloads::None);
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let source = WebhookSource::new(
        "shop".parse().unwrap(),
        production,
        uuid(REPOSITORY_EVENTS),
        SourceScheme::hmac(HmacScheme::new("X-Shop-Hash").unwrap()),
        [SourceSecret::new("a-shop-secret").unwrap()],
    )
    .unwrap();
    let sources = Arc::new(InMemorySourceStore::new());
    sources.put_source(source);
    let starter = w.starter.clone().with_sources(sources);
    let body = json!({"order": 42}).to_string();
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let signed = senders.sign(json!({
        "scheme": "hmac", "secret": "a-shop-secret", "body": body,
        "algorithm": "sha256", "encoding": "hex", "header": "X-Shop-Hash",
    }));
    let hash = signed[0].1.clone();
    headers.extend(signed);
    let target = format!("/webhook/send?uid={REPOSITORY_EVENTS}&source=shop");
    let reply = starter
        .handle(
            &target,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let record = w.records(1).await.remove(0);
    assert_eq!(header(&record, "content-type"), Some("application/json"));
    assert_eq!(header(&record, "x-shop-hash"), None);
    assert!(!serde_json::to_string(&record).unwrap().contains(&hash));
}

/// A log that records each write it is asked for (how many records, and
/// when) and fails while it is down.
#[derive(Clone, Default)]
struct Watched {
    log: InMemoryDeliveryLog,
    down: Arc<std::sync::atomic::AtomicUsize>,
    tried: Arc<std::sync::atomic::AtomicUsize>,
    writes: Arc<std::sync::Mutex<Vec<(usize, tokio::time::Instant)>>>,
}

impl Watched {
    /// Fails the next `writes` writes.
    fn fail_next(&self, writes: usize) {
        self.down.store(writes, std::sync::atomic::Ordering::SeqCst);
    }

    /// The writes tried since the last call.
    fn tried(&self) -> usize {
        self.tried.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl DeliveryLog for Watched {
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.tried.fetch_add(1, SeqCst);
        self.writes
            .lock()
            .unwrap()
            .push((records.len(), tokio::time::Instant::now()));
        if self
            .down
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::new("the log's file is locked"));
        }
        self.log.append(records).await
    }
    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError> {
        self.log.read(id).await
    }
    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        self.log.page(query).await
    }
    async fn summarize(&self, since: std::time::SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        self.log.summarize(since).await
    }
    async fn purge(&self, before: std::time::SystemTime, batch: usize) -> Result<u64, StoreError> {
        self.log.purge(before, batch).await
    }
}

/// A write that fails for a moment is tried again and nothing is lost; a
/// log that stays down loses the batch, counted, and is then tried once a
/// batch, without waits, until it is back.
#[tokio::test(start_paused = true)]
async fn a_failed_write_is_tried_again_and_a_log_that_stays_down_costs_one_try_a_batch() {
    let world = World::new();
    let log = Watched::default();
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 100, KeepPayloads::Failed);
    let writing = tokio::spawn(writer.run());
    let starter = world.starter().with_delivery_log(sink.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let start = || async {
        let reply = starter
            .handle(&target, [("authorization", world.bearer())], &body)
            .await;
        assert_eq!(reply.status(), 202);
        // Past the gathering and every retry's pause.
        tokio::time::sleep(Duration::from_secs(5)).await;
    };

    // Down for two writes: written by the third, nothing dropped.
    log.fail_next(2);
    start().await;
    assert_eq!((log.tried(), log.log.len(), sink.dropped()), (3, 1, 0));

    // Down for longer than the retries: the batch is dropped, counted.
    log.fail_next(usize::MAX);
    start().await;
    assert_eq!(log.tried(), 1 + LogWriter::RETRIES.len());
    assert_eq!((log.log.len(), sink.dropped()), (1, 1));
    // Still down: the next batch is tried once.
    start().await;
    assert_eq!((log.tried(), log.log.len(), sink.dropped()), (1, 1, 2));
    // Back: written at once, and a later failure is retried again.
    log.fail_next(0);
    start().await;
    assert_eq!((log.tried(), log.log.len(), sink.dropped()), (1, 2, 2));
    log.fail_next(1);
    start().await;
    assert_eq!((log.tried(), log.log.len(), sink.dropped()), (2, 3, 2));
    assert_eq!(world.started(), 5, "every start succeeded, logged or not");
    drop((starter, sink));
    writing.await.unwrap();
}

fn a_record() -> LoggedDelivery {
    LoggedDelivery::new(
        DeliveryId::new_random(),
        std::time::SystemTime::now(),
        EnvironmentId::new("production"),
        uuid(ORDER_INTAKE),
        LoggedOutcome::Started,
    )
}

/// The writer wakes a few dozen times a second under load, not once per
/// record: a short batch waits `GATHER` for more and is written with them;
/// a full one is written at once. (Time is the test's own: paused.)
#[tokio::test(start_paused = true)]
async fn a_short_batch_gathers_records_for_a_moment_and_a_full_one_is_written_at_once() {
    let log = Watched::default();
    let (sink, writer) = LogWriter::new(Arc::new(log.clone()), 1_000, KeepPayloads::None);
    let writing = tokio::spawn(writer.run());
    let began = tokio::time::Instant::now();
    assert!(sink.record(a_record()));
    tokio::time::sleep(LogWriter::GATHER / 2).await;
    assert!(sink.record(a_record()));
    tokio::time::sleep(LogWriter::GATHER * 2).await;
    assert_eq!(
        *log.writes.lock().unwrap(),
        [(2, began + LogWriter::GATHER)],
        "one write of both, once the first had waited"
    );

    let full = tokio::time::Instant::now();
    for _ in 0..LogWriter::BATCH {
        assert!(sink.record(a_record()));
    }
    tokio::time::sleep(LogWriter::GATHER * 2).await;
    assert_eq!(log.writes.lock().unwrap()[1], (LogWriter::BATCH, full), "no wait");

    // A short batch that fills while it gathers is written full, the rest
    // after it.
    let short = tokio::time::Instant::now();
    assert!(sink.record(a_record()));
    tokio::time::sleep(LogWriter::GATHER / 2).await;
    for _ in 0..LogWriter::BATCH {
        assert!(sink.record(a_record()));
    }
    tokio::time::sleep(LogWriter::GATHER * 3).await;
    let writes = log.writes.lock().unwrap()[2..].to_vec();
    assert_eq!(
        writes,
        [
            (LogWriter::BATCH, short + LogWriter::GATHER),
            (1, short + LogWriter::GATHER * 2)
        ]
    );
    drop(sink);
    writing.await.unwrap();
    assert_eq!(log.log.len(), 2 * LogWriter::BATCH + 3);
}
