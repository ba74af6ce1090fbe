//! Crash safety, end to end: two `webhook_server` replicas share their
//! idempotency keys (PostgreSQL, or Redis) and start workflows on a real
//! Temporal dev server; one replica is killed with `SIGKILL` every second
//! for 30 s and started again, while a client delivers 3,000 keyed starts
//! (100 a second),
//! each retried on either replica (honouring `Retry-After`) until it gets
//! a 2xx. Every key must be answered 2xx within the run, and Temporal must
//! hold exactly one workflow per key, with that key's input.
//!
//! Each run prints one line (`crash run: …`) with what the client saw: the
//! figure of the guarantees guide. `WEBHOOK_SERVER_BIN` runs another build
//! of the server (to measure one without the takeover, say).
#![cfg(all(
    feature = "server",
    feature = "temporal",
    feature = "postgres",
    feature = "redis"
))]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process_webhook::{
    DeliveryId, DeliveryStatus, Deployment, EnvironmentId, FieldKind, FieldSpec, Inbox, InboxQuery,
    KeptStart, PostgresStore, ProcessUuid, StartCommand, StartForm, TemporalEngine, VersionTag,
};
use serde_json::{Value, json};

const TOKEN: &str = "a-crash-test-token-of-40-characters-long";
const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const KEYS: usize = 3_000;
const KILLING: Duration = Duration::from_secs(30);
/// How long after the killing ends a key may still be retried.
const GRACE: Duration = Duration::from_secs(20);

/// One run at a time: each runs two replicas and a client on this
/// machine's two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The settings every replica clears, so that only the run's own count.
const SETTINGS: [&str; 21] = [
    "WEBHOOK_DATA",
    "WEBHOOK_IDEMPOTENCY_CAPACITY",
    "WEBHOOK_KEEP_PAYLOADS",
    "WEBHOOK_LOG_RETENTION",
    "WEBHOOK_ADMIN_ADDR",
    "WEBHOOK_ADMIN_TOKEN",
    "WEBHOOK_INBOX",
    "WEBHOOK_INBOX_MAX_AGE",
    "WEBHOOK_INBOX_LIMIT",
    "WEBHOOK_CONFIG",
    "WEBHOOK_SCHEMA",
    "WEBHOOK_RATE_LIMIT",
    "WEBHOOK_METRICS_ADDR",
    "DATABASE_URL",
    "REDIS_URL",
    "TEMPORAL_URL",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_NAMESPACE",
    "CAMUNDA_URL",
    "RUST_LOG",
    "WEBHOOK_SECRET_KEY",
];

/// A replica on a fixed port, started again after each kill.
struct Replica {
    port: u16,
    settings: Vec<(String, String)>,
    child: Option<Child>,
    /// Where its output goes, run after run (its warnings among it).
    log: std::path::PathBuf,
}

impl Replica {
    fn new(settings: &[(&str, &str)], log: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = settings
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let mut replica = Self {
            port,
            settings,
            child: None,
            log: log.to_owned(),
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let binary = std::env::var("WEBHOOK_SERVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_webhook_server").to_owned());
        let mut command = Command::new(binary);
        for name in SETTINGS {
            command.env_remove(name);
        }
        command
            .env("WEBHOOK_ADDR", format!("127.0.0.1:{}", self.port))
            .env("WEBHOOK_TOKEN", TOKEN)
            // The replicas share PostgreSQL or Redis, never a file.
            .env("WEBHOOK_DATA", ":memory:")
            .env("RUST_LOG", "process_webhook=warn")
            .stdout(Stdio::from(open_log(&self.log)))
            .stderr(Stdio::null());
        for (name, value) in &self.settings {
            command.env(name, value);
        }
        self.child = Some(command.spawn().expect("webhook_server starts"));
    }

    /// `SIGKILL`: no shutdown, no key completed or released.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn open_log(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a log file")
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn healthy(client: &reqwest::Client, base: &str) -> bool {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status() == 200 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn payload(key: &str) -> Value {
    json!({"customerName": "Crash Test", "orderNumber": key, "productCode": "ABC123"})
}

/// What the client saw of one key.
#[derive(Default, Clone)]
struct Delivered {
    /// The instance of its 2xx answer, if it got one.
    instance: Option<String>,
    attempts: u32,
    in_progress: u32,
    /// From its first attempt to its 2xx.
    took: Duration,
}

/// Delivers `key` until a 2xx or the deadline: each attempt on the other
/// replica than the last, waiting as `Retry-After` says (at most 1 s) after
/// a refusal and 100 ms after a failed connection.
async fn deliver(client: &reqwest::Client, bases: &[String; 2], key: &str, deadline: Instant) -> Delivered {
    let body = payload(key).to_string();
    let began = Instant::now();
    let mut seen = Delivered::default();
    let mut at = key.len() % 2;
    while Instant::now() < deadline {
        seen.attempts += 1;
        let sent = client
            .post(format!("{}/webhook/send?uid={ORDER_INTAKE}", bases[at]))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.clone())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        at = 1 - at;
        let pause = match sent {
            Ok(response) if response.status().is_success() => {
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                seen.instance = answer["instanceId"].as_str().map(str::to_owned);
                seen.took = began.elapsed();
                return seen;
            }
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                if answer["code"] == "start_in_progress" {
                    seen.in_progress += 1;
                }
                Duration::from_secs(retry_after.unwrap_or(1).min(1))
            }
            Err(_) => Duration::from_millis(100),
        };
        tokio::time::sleep(pause).await;
    }
    seen.took = began.elapsed();
    seen
}

/// The run: replicas with `shared` settings, the killing, the client; then
/// what Temporal holds.
async fn crash_run(label: &str, shared: &[(&str, &str)], temporal: &str) {
    let queue = format!("crash-{}", uuid::Uuid::new_v4().simple());
    let mut settings: Vec<(&str, &str)> = shared.to_vec();
    settings.push(("TEMPORAL_URL", temporal));
    settings.push(("TEMPORAL_TASK_QUEUE", &queue));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let log = std::env::temp_dir().join(format!("{queue}.log"));
    let steady = Replica::new(&settings, &log);
    let killed = Arc::new(Mutex::new(Replica::new(&settings, &log)));
    let bases = [steady.base(), killed.lock().unwrap().base()];
    for base in &bases {
        assert!(
            healthy(&client, base).await,
            "{label}: a replica did not start at {base}"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (killed, stop, kills) = (killed.clone(), stop.clone(), kills.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                let mut replica = killed.lock().unwrap();
                replica.kill();
                kills.fetch_add(1, Ordering::SeqCst);
                replica.spawn();
            }
        })
    };

    // The keys released at an even pace (one every 10 ms) while the
    // killing goes on, delivered by 64 workers at once.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("crash-{run}-{i}")).collect();
    let began = Instant::now();
    let deadline = began + KILLING + GRACE;
    let next = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<HashMap<String, Delivered>>> = Arc::default();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (client, bases, keys, next, seen) = (
                client.clone(),
                bases.clone(),
                keys.clone(),
                next.clone(),
                seen.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(key) = keys.get(i) else { break };
                    let due = began + Duration::from_millis(10 * i as u64);
                    tokio::time::sleep_until(due.into()).await;
                    let delivered = deliver(&client, &bases, key, deadline).await;
                    seen.lock().unwrap().insert(key.clone(), delivered);
                }
            })
        })
        .collect();
    tokio::time::sleep_until((began + KILLING).into()).await;
    stop.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();

    let unanswered: Vec<&String> = keys.iter().filter(|k| seen[*k].instance.is_none()).collect();
    let held: Vec<&Delivered> = seen.values().filter(|d| d.in_progress > 0).collect();
    let slowest = seen.values().map(|d| d.took).max().unwrap_or_default();
    let retried = seen.values().filter(|d| d.attempts > 1).count();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let takeovers = logged.matches("took over the reservation").count();
    println!(
        "crash run ({label}): {KEYS} keys, {} kills of one replica in {} s; {} keys never answered 2xx \
         within the run; {} keys saw 409 start_in_progress at least once ({} times in all); {retried} keys \
         retried; {takeovers} reservations taken over; slowest key answered 2xx after {:.1} s",
        kills.load(Ordering::SeqCst),
        KILLING.as_secs(),
        unanswered.len(),
        held.len(),
        held.iter().map(|d| d.in_progress).sum::<u32>(),
        slowest.as_secs_f64(),
    );
    assert!(
        kills.load(Ordering::SeqCst) >= 25,
        "{label}: the replica was killed every second"
    );
    assert!(
        unanswered.is_empty(),
        "{label}: {} keys never got a 2xx, e.g. {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(5)]
    );

    // Temporal holds one workflow per key (its id follows the key, and a
    // workflow id is never reused), with that key's input, and it is the
    // run the client was answered with.
    let environment = EnvironmentId::new("production");
    let process: ProcessUuid = ORDER_INTAKE.parse().unwrap();
    let base = temporal.trim_end_matches('/');
    for key in &keys {
        let workflow_id = TemporalEngine::workflow_id_for(&environment, &process, key);
        let history: Value = client
            .get(format!(
                "{base}/api/v1/namespaces/default/workflows/{workflow_id}/history"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = history["history"]["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{label}: no workflow {workflow_id} for key {key}: {history}"));
        let started = &events[0]["workflowExecutionStartedEventAttributes"];
        // The HTTP API shows a `json/plain` input as the JSON it holds.
        assert_eq!(
            started["input"],
            json!([payload(key)]),
            "{label}: the input of {workflow_id}"
        );
        let described: Value = client
            .get(format!(
                "{base}/api/v1/namespaces/default/workflows/{workflow_id}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            described["workflowExecutionInfo"]["execution"]["runId"].as_str(),
            seen[key].instance.as_deref(),
            "{label}: key {key} was answered with its workflow's run"
        );
    }
    // And nothing else ran on the run's task queue (visibility may lag).
    assert_eq!(
        common::workflows_on_queue(&client, temporal, &queue, KEYS).await,
        KEYS as u64,
        "{label}: exactly one workflow per key on the task queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_postgres_answer_every_key_once_while_one_is_killed_every_second() {
    let (Some(database), Some(temporal)) = (
        common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test"),
        common::server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243"),
    ) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
    // Without the inbox, as the guarantees guide's figures were measured:
    // the takeover alone answers every key.
    crash_run(
        "PostgreSQL",
        &[
            ("DATABASE_URL", &database),
            ("WEBHOOK_SCHEMA", &schema),
            ("WEBHOOK_INBOX", "off"),
        ],
        &temporal,
    )
    .await;
    drop_schema(&database, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_answer_every_key_once_while_one_is_killed_every_second() {
    let (Some(redis), Some(temporal)) = (
        common::server_setting("REDIS_URL", "e.g. redis://127.0.0.1:6379"),
        common::server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243"),
    ) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    crash_run("Redis", &[("REDIS_URL", &redis)], &temporal).await;
}

/// How many kept starts the dispatch crash run dispatches.
const BACKLOG: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_dispatching_a_backlog_start_each_once_while_one_is_killed_every_second() {
    let (Some(database), Some(temporal)) = (
        common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test"),
        common::server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243"),
    ) else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let schema = format!("crash_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::connect(&database)
        .await
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    store.migrate().await.unwrap();

    // The backlog: the example's order starts, kept as a starter keeps them
    // (each keyed by its delivery id).
    let production = EnvironmentId::new("production");
    let process: ProcessUuid = ORDER_INTAKE.parse().unwrap();
    let form = StartForm::new(
        ["customerName", "orderNumber", "productCode"]
            .map(|name| FieldSpec::mandatory(name, FieldKind::Text)),
    );
    let deployment = Deployment::new(process, VersionTag::Released(1), production.clone(), form)
        .with_definition_key("order-intake");
    let mut ids = Vec::with_capacity(BACKLOG);
    for n in 0..BACKLOG {
        let id = DeliveryId::new_random();
        let variables = payload(&format!("backlog-{n}")).as_object().unwrap().clone();
        let command = StartCommand::new(&deployment, 1, variables).with_idempotency_key(id.to_string());
        store
            .keep(KeptStart::new(id, command, None), BACKLOG)
            .await
            .unwrap();
        ids.push(id);
    }

    let queue = format!("crash-dispatch-{}", uuid::Uuid::new_v4().simple());
    let settings = [
        ("DATABASE_URL", database.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("TEMPORAL_URL", temporal.as_str()),
        ("TEMPORAL_TASK_QUEUE", queue.as_str()),
        ("WEBHOOK_INBOX", "fallback"),
    ];
    let log = std::env::temp_dir().join(format!("{queue}.log"));
    let began = Instant::now();
    let _steady = Replica::new(&settings, &log);
    let mut killed = Replica::new(&settings, &log);
    let mut kills = 0;
    let bound = Duration::from_secs(240);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = store.counts().await.unwrap();
        if counts.queued == 0 {
            break;
        }
        assert!(
            began.elapsed() < bound,
            "{} starts still queued after {bound:?}",
            counts.queued
        );
        killed.kill();
        kills += 1;
        killed.spawn();
    }
    let took = began.elapsed();
    let _ = std::fs::remove_file(&log);

    // Nothing lost, nothing dead, each started once (Temporal holds one
    // workflow per delivery, the run the inbox recorded).
    let all = store.list(&InboxQuery::default()).await.unwrap();
    assert_eq!(all.len(), BACKLOG, "nothing lost");
    assert!(
        all.iter().all(|d| d.status == DeliveryStatus::Started),
        "each started"
    );
    let attempts: u32 = all.iter().map(|d| d.attempts).sum();
    let client = reqwest::Client::new();
    assert_eq!(
        common::workflows_on_queue(&client, &temporal, &queue, BACKLOG).await,
        BACKLOG as u64,
        "exactly one workflow per kept start"
    );
    for delivery in all.iter().step_by(50) {
        let workflow_id = TemporalEngine::workflow_id_for(&production, &process, &delivery.id.to_string());
        assert_eq!(
            common::workflow_run(&client, &temporal, &workflow_id)
                .await
                .as_deref(),
            delivery.instance.as_ref().map(|i| i.as_str()),
            "the inbox recorded the run Temporal holds"
        );
    }
    println!(
        "dispatch crash run: {BACKLOG} kept starts dispatched by two replicas, one killed {kills} times, \
         in {:.1} s; {} dispatch attempts in all ({} more than starts)",
        took.as_secs_f64(),
        attempts,
        attempts as usize - BACKLOG
    );
    assert!(kills >= 3, "the replica was killed while dispatching");
    let _ = ids;
    drop_schema(&database, &schema).await;
}

/// Drops a run's schema.
async fn drop_schema(database: &str, schema: &str) {
    let pool = process_webhook::sqlx::PgPool::connect(database).await.unwrap();
    process_webhook::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
