//! `TemporalEngine` against a real Temporal server (`TEMPORAL_URL`, the
//! frontend's HTTP API): what the workflow holds, checked through
//! Temporal's own API; one execution for concurrent duplicate starts; a
//! different payload under a key refused; an unknown namespace refused.
#![cfg(feature = "temporal")]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

fn temporal_url() -> Option<String> {
    server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243")
}

/// A key no other test run has used (the server keeps workflows for its
/// lifetime).
fn fresh_key() -> String {
    format!("order-{}", uuid::Uuid::new_v4())
}

/// The example world with Order intake's definition key, on Temporal.
fn world_on(url: &str, namespace: &str) -> (World, Arc<TemporalEngine>) {
    let world = World::new();
    let engine = Arc::new(TemporalEngine::new(url, namespace, "process-webhook-tests"));
    (world, engine)
}

async fn get(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn a_start_is_a_workflow_with_exactly_the_variables_as_input_and_the_memo() {
    let Some(url) = temporal_url() else { return };
    let (world, engine) = world_on(&url, "default");
    let key = fresh_key();
    let request = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key(key.clone());
    let outcome = start_via_webhook(request, &*world.models, &*world.tokens, &*engine)
        .await
        .unwrap();
    let workflow_id =
        TemporalEngine::workflow_id_for(&EnvironmentId::new("production"), &uuid(ORDER_INTAKE), &key);

    let described = get(format!("{url}/api/v1/namespaces/default/workflows/{workflow_id}")).await;
    let info = &described["workflowExecutionInfo"];
    assert_eq!(
        info["execution"]["runId"],
        outcome.instance_id().as_str(),
        "the instance id is the run id"
    );
    assert_eq!(
        info["type"]["name"], "order-intake",
        "the workflow type is the definition key"
    );
    assert_eq!(info["taskQueue"], "process-webhook-tests");
    let memo = &info["memo"]["fields"];
    assert_eq!(memo["processUuid"], ORDER_INTAKE);
    assert_eq!(memo["version"], 2);
    assert_eq!(memo["environment"], "production");
    assert_eq!(memo["deploymentId"], world.order_deployment.to_string());

    let history = get(format!(
        "{url}/api/v1/namespaces/default/workflows/{workflow_id}/history"
    ))
    .await;
    let started = &history["history"]["events"][0]["workflowExecutionStartedEventAttributes"];
    assert_eq!(
        started["input"],
        json!([Value::Object(order_payload())]),
        "one argument: the variables"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_starts_with_one_key_make_one_execution() {
    let Some(url) = temporal_url() else { return };
    let (world, engine) = world_on(&url, "default");
    let key = fresh_key();
    // No idempotency store: the engine alone must deduplicate, as for two
    // replicas that share none.
    let starts = (0..16).map(|_| {
        let request = world
            .request(ORDER_INTAKE, order_payload())
            .with_idempotency_key(key.clone());
        let (models, tokens, engine) = (world.models.clone(), world.tokens.clone(), engine.clone());
        tokio::spawn(async move { start_via_webhook(request, &*models, &*tokens, &*engine).await })
    });
    let mut runs = std::collections::BTreeSet::new();
    for start in starts.collect::<Vec<_>>() {
        runs.insert(start.await.unwrap().unwrap().instance_id().as_str().to_owned());
    }
    assert_eq!(runs.len(), 1, "every start answered the same run: {runs:?}");
    let workflow_id =
        TemporalEngine::workflow_id_for(&EnvironmentId::new("production"), &uuid(ORDER_INTAKE), &key);
    let history = get(format!(
        "{url}/api/v1/namespaces/default/workflows/{workflow_id}/history"
    ))
    .await;
    let starts = history["history"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED")
        .count();
    assert_eq!(starts, 1);
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_refused_as_a_reused_key() {
    let Some(url) = temporal_url() else { return };
    let (world, engine) = world_on(&url, "default");
    let key = fresh_key();
    let first = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key(key.clone());
    let outcome = start_via_webhook(first, &*world.models, &*world.tokens, &*engine)
        .await
        .unwrap();
    let mut other = order_payload();
    other.insert("orderNumber".into(), json!("999999"));
    let second = world
        .request(ORDER_INTAKE, other)
        .with_idempotency_key(key.clone());
    let err = assert_refused(
        start_via_webhook(second, &*world.models, &*world.tokens, &*engine).await,
        422,
        "idempotency_key_reused",
    );
    let source = std::error::Error::source(&err).and_then(std::error::Error::source);
    let problem = source
        .and_then(|s| s.downcast_ref::<TemporalProblem>())
        .expect("Temporal's answer is the source");
    assert_eq!((problem.status(), problem.code()), (409, Some(6)));
    assert!(problem.message().contains("already"), "{}", problem.message());
    assert_eq!(
        problem.to_string(),
        format!("temporal answered 409 (code 6): {}", problem.message())
    );
    assert!(
        !err.to_problem_json().to_string().contains("already"),
        "Temporal's text stays in the source"
    );
    // The first payload again is the same run.
    let again = world
        .request(ORDER_INTAKE, order_payload())
        .with_idempotency_key(key);
    let replayed = start_via_webhook(again, &*world.models, &*world.tokens, &*engine)
        .await
        .unwrap();
    assert_eq!(replayed.instance_id(), outcome.instance_id());
}

#[tokio::test]
async fn a_namespace_that_does_not_exist_is_a_refusal() {
    let Some(url) = temporal_url() else { return };
    let (world, engine) = world_on(&url, &format!("missing-{}", uuid::Uuid::new_v4().simple()));
    let request = world.request(ORDER_INTAKE, order_payload());
    let err = assert_refused(
        start_via_webhook(request, &*world.models, &*world.tokens, &*engine).await,
        502,
        "engine_failed",
    );
    let WebhookError::EngineFailed { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), EngineErrorKind::Refused);
    assert!(!source.is_retryable());
    let problem = std::error::Error::source(source)
        .and_then(|s| s.downcast_ref::<TemporalProblem>())
        .expect("Temporal's answer is the source");
    assert_eq!((problem.status(), problem.code()), (404, Some(5)));
    assert!(problem.message().contains("not found"), "{}", problem.message());
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable_503_with_retry_after() {
    let (world, _) = world_on("http://127.0.0.1:9", "default");
    let engine = TemporalEngine::new("http://127.0.0.1:9", "default", "q");
    let request = world.request(ORDER_INTAKE, order_payload());
    let err = assert_refused(
        start_via_webhook(request, &*world.models, &*world.tokens, &engine).await,
        503,
        "engine_unavailable",
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(5)));
}

#[tokio::test]
async fn the_callers_trace_context_is_in_the_started_workflows_memo() {
    let Some(url) = temporal_url() else { return };
    let (world, engine) = world_on(&url, "default");
    let key = fresh_key();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [
                ("authorization", world.bearer().as_str()),
                ("idempotency-key", key.as_str()),
                ("traceparent", traceparent),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let workflow_id =
        TemporalEngine::workflow_id_for(&EnvironmentId::new("production"), &uuid(ORDER_INTAKE), &key);
    let described = get(format!("{url}/api/v1/namespaces/default/workflows/{workflow_id}")).await;
    let memo = &described["workflowExecutionInfo"]["memo"]["fields"];
    assert_eq!(memo["traceparent"], traceparent);
    assert_eq!(memo["tracestate"], "congo=t61rcWkgMzE");
}

#[tokio::test]
async fn the_engine_is_ready_when_the_namespace_answers_and_not_when_it_is_missing_or_unreachable() {
    let Some(url) = temporal_url() else { return };
    let (_, engine) = world_on(&url, "default");
    engine.ready().await.expect("the dev server's default namespace");
    let (_, missing) = world_on(&url, &format!("missing-{}", uuid::Uuid::new_v4().simple()));
    let error = missing.ready().await.expect_err("no such namespace");
    assert_eq!(error.kind(), EngineErrorKind::Unavailable);
    let away = TemporalEngine::new("http://127.0.0.1:9", "default", "q");
    assert!(away.ready().await.is_err());
    assert_eq!(away.name(), "temporal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_wait_answers_with_what_a_real_worker_returned() {
    let Some(url) = temporal_url() else { return };
    let queue = format!("process-webhook-waits-{}", uuid::Uuid::new_v4().simple());
    let Some(_worker) = PythonWorker::start(&queue) else {
        return;
    };
    let world = World::new();
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let mut processes = Vec::new();
    for key in ["wait-sleeper", "wait-failing"] {
        let process = ProcessUuid::from(uuid::Uuid::new_v4());
        world
            .models
            .insert_model(ProcessModel::new(process, acme.clone(), key));
        world.models.deploy(
            Deployment::new(process, VersionTag::Released(1), production.clone(), order_form())
                .with_definition_key(key),
        );
        processes.push(process);
    }
    let engine = Arc::new(TemporalEngine::new(&url, "default", &queue));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine)
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
        .with_max_wait(Duration::from_secs(3));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let call = |process: ProcessUuid, extra: Vec<(&'static str, String)>| {
        let (starter, body) = (starter.clone(), body.clone());
        let mut headers = vec![("authorization", world.bearer())];
        headers.extend(extra);
        async move {
            let began = Instant::now();
            let reply = starter
                .handle(&webhook_url("/webhook/send", &process), headers, &body)
                .await;
            let doc: Value = serde_json::from_slice(reply.body()).unwrap();
            (reply, doc, began.elapsed())
        }
    };
    let wait = |seconds: u32| ("prefer", format!("wait={seconds}"));

    // Completed: exactly the worker's result, derived from the input.
    let key = fresh_key();
    let (reply, doc, _) = call(
        uuid(ORDER_INTAKE),
        vec![wait(10), ("idempotency-key", key.clone())],
    )
    .await;
    assert_eq!(reply.status(), 200, "{doc}");
    assert_eq!(reply.header("preference-applied"), Some("wait=3"));
    assert_eq!(doc["status"], "completed");
    assert_eq!(
        doc["result"],
        json!({"accepted": true, "orderNumber": "123456", "total": 42.5})
    );

    // A replay with wait: the same instance's result, nothing new started.
    let (again, again_doc, _) = call(uuid(ORDER_INTAKE), vec![wait(10), ("idempotency-key", key)]).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again_doc["instanceId"], doc["instanceId"]);
    assert_eq!(again_doc["result"], doc["result"]);

    // Still running at the deadline: today's 202, plus the status.
    let (running, running_doc, took) = call(processes[0], vec![wait(2)]).await;
    assert_eq!(running.status(), 202, "{running_doc}");
    assert_eq!(running_doc["status"], "running");
    assert_eq!(running.header("preference-applied"), Some("wait=2"));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Failed: 200 failed, without the engine's message.
    let (failed, failed_doc, _) = call(processes[1], vec![wait(10)]).await;
    assert_eq!(failed.status(), 200, "{failed_doc}");
    assert_eq!(failed_doc["status"], "failed");
    assert!(failed_doc.get("message").is_none());

    // No preference: unchanged.
    let (plain, plain_doc, _) = call(uuid(ORDER_INTAKE), vec![]).await;
    assert_eq!((plain.status(), plain.header("preference-applied")), (202, None));
    assert_eq!(plain_doc["status"], "started");
}

#[test]
fn debug_shows_the_settings_and_hides_the_api_key() {
    let engine = TemporalEngine::new("http://127.0.0.1:7243/", "default", "orders").with_api_key("k3y");
    assert_eq!(
        format!("{engine:?}"),
        "TemporalEngine { base: \"http://127.0.0.1:7243\", namespace: \"default\", \
         task_queue: \"orders\", api_key: Some(\"[redacted]\"), timeout: 10s, .. }"
    );
    let keyless = TemporalEngine::new("http://127.0.0.1:7243", "default", "orders");
    assert!(format!("{keyless:?}").contains("api_key: None,"), "{keyless:?}");
}

/// A server on loopback that answers every connection with `head` and then
/// either stalls or hangs up: the transport failures a history read meets.
async fn answering_then(head: &'static str, stall: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(head.as_bytes()).await;
                if stall {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn a_run() -> InstanceRef {
    InstanceRef::new(
        InstanceId::new("run-1"),
        uuid(ORDER_INTAKE),
        EnvironmentId::new("production"),
    )
    .with_business_key("webhook-order-1")
}

#[tokio::test]
async fn a_history_read_cut_off_by_the_deadline_is_running_and_a_broken_one_an_error() {
    // Headers, then nothing: the wait's deadline ends the read.
    let stalled = answering_then("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{", true).await;
    let engine = TemporalEngine::new(&stalled, "default", "q");
    let waited = engine.wait(&a_run(), Duration::from_millis(300)).await.unwrap();
    assert_eq!(waited, Some(Completion::Running));

    // Headers, then the connection is gone: no answer to give.
    let cut = answering_then("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{", false).await;
    let engine = TemporalEngine::new(&cut, "default", "q");
    let err = engine.wait(&a_run(), Duration::from_secs(10)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    // Nobody there, with time left.
    let gone = TemporalEngine::new("http://127.0.0.1:9", "default", "q");
    let err = gone.wait(&a_run(), Duration::from_secs(10)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    // No answer at all within the deadline.
    let silent = answering_then("", true).await;
    let engine = TemporalEngine::new(&silent, "default", "q");
    let waited = engine.wait(&a_run(), Duration::from_millis(300)).await.unwrap();
    assert_eq!(waited, Some(Completion::Running));
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn the_temporal_engine_passes_the_engine_suite() {
    let Some(url) = temporal_url() else { return };
    let engine = TemporalEngine::new(&url, "default", "process-webhook-tests");
    let deployment = order_deployment(1);
    testing::check_engine(&engine, &deployment, order_payload()).await;
}
