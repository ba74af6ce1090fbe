//! Running it in production: the metrics a call records (read back from a
//! test recorder), the readiness check and its `/readyz` answer, and the
//! caller's trace context reaching the engine.
#![cfg(all(feature = "axum", feature = "metrics"))]

use crate::common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use process_webhook::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt as _;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs `test` on a single-threaded runtime with its own metrics recorder
/// (so that parallel tests never see each other's metrics), and returns
/// what it returned and a snapshotter.
fn with_recorder<F: Future>(test: impl FnOnce(Snapshotter) -> F) -> F::Output {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test(snapshotter))
    })
}

type Row = (CompositeKey, DebugValue);

fn rows(snapshotter: &Snapshotter) -> Vec<Row> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

fn labels(key: &CompositeKey) -> Vec<(String, String)> {
    let mut labels: Vec<_> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    labels
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.sort();
    pairs
}

/// The value of the one metric named `name` with exactly these labels.
fn find<'a>(rows: &'a [Row], kind: MetricKind, name: &str, with: &[(&str, &str)]) -> Option<&'a DebugValue> {
    rows.iter()
        .find(|(key, _)| key.kind() == kind && key.key().name() == name && labels(key) == pairs(with))
        .map(|(_, value)| value)
}

fn counter(rows: &[Row], name: &str, with: &[(&str, &str)]) -> u64 {
    match find(rows, MetricKind::Counter, name, with) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("no counter {name} {with:?}: {other:?} in {:#?}", names(rows)),
    }
}

fn samples(rows: &[Row], name: &str, with: &[(&str, &str)]) -> usize {
    match find(rows, MetricKind::Histogram, name, with) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("no histogram {name} {with:?}: {other:?} in {:#?}", names(rows)),
    }
}

fn gauge(rows: &[Row], name: &str) -> f64 {
    match find(rows, MetricKind::Gauge, name, &[]) {
        Some(DebugValue::Gauge(value)) => value.into_inner(),
        other => panic!("no gauge {name}: {other:?}"),
    }
}

fn names(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|(key, _)| format!("{} {:?}", key.key().name(), labels(key)))
        .collect()
}

async fn post(starter: &WebhookStarter, process: &str, headers: &[(&str, &str)], body: &Value) -> HttpReply {
    let target = webhook_url("/webhook/send", &uuid(process));
    starter
        .handle(&target, headers.iter().copied(), body.to_string().as_bytes())
        .await
}

#[test]
fn every_call_is_counted_by_status_code_and_environment_and_timed_by_outcome() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let starter = world
            .starter()
            .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
        let auth = world.bearer();
        let payload = Value::Object(order_payload());
        let keyed = [
            ("authorization", auth.as_str()),
            ("idempotency-key", "order-key-1"),
        ];
        assert_eq!(post(&starter, ORDER_INTAKE, &keyed, &payload).await.status(), 202);
        assert_eq!(post(&starter, ORDER_INTAKE, &keyed, &payload).await.status(), 202);
        let wrong = [("authorization", "Bearer not-a-token-of-anyone")];
        assert_eq!(post(&starter, ORDER_INTAKE, &wrong, &payload).await.status(), 401);
        let plain = [("authorization", auth.as_str())];
        assert_eq!(
            post(&starter, ORDER_INTAKE, &plain, &json!({"orderNumber": 1}))
                .await
                .status(),
            422
        );
        let dry = [("authorization", auth.as_str()), ("prefer", "dry-run")];
        assert_eq!(post(&starter, ORDER_INTAKE, &dry, &payload).await.status(), 200);
        assert_eq!(world.started(), 1);

        let rows = rows(&snapshotter);
        let calls = "process_webhook_calls_total";
        let production = ("environment", "production");
        assert_eq!(
            counter(&rows, calls, &[("status", "202"), ("code", "ok"), production]),
            2
        );
        assert_eq!(
            counter(
                &rows,
                calls,
                &[("status", "401"), ("code", "invalid_token"), ("environment", "")]
            ),
            1
        );
        assert_eq!(
            counter(
                &rows,
                calls,
                &[("status", "422"), ("code", "invalid_payload"), production]
            ),
            1
        );
        assert_eq!(
            counter(&rows, calls, &[("status", "200"), ("code", "ok"), production]),
            1
        );

        let duration = "process_webhook_call_duration_seconds";
        assert_eq!(samples(&rows, duration, &[("outcome", "started")]), 1);
        assert_eq!(samples(&rows, duration, &[("outcome", "replayed")]), 1);
        assert_eq!(samples(&rows, duration, &[("outcome", "client_error")]), 2);
        assert_eq!(samples(&rows, duration, &[("outcome", "dry_run")]), 1);
        assert_eq!(
            samples(
                &rows,
                "process_webhook_engine_call_duration_seconds",
                &[("engine", "memory"), ("outcome", "ok")]
            ),
            1,
            "the replay and the refusals never reached the engine"
        );
        assert_eq!(gauge(&rows, "process_webhook_idempotency_keys"), 1.0);

        // No label is a process (not opted in), a token, a key or a payload value.
        let secret = world.token.expose_secret();
        for (key, _) in &rows {
            for (name, value) in labels(key) {
                assert_ne!(name, "process");
                for forbidden in [
                    secret,
                    "not-a-token-of-anyone",
                    "order-key-1",
                    "123456",
                    "John Doe",
                    ORDER_INTAKE,
                ] {
                    assert!(!value.contains(forbidden), "{name}={value}");
                }
            }
        }
    });
}

#[test]
fn a_start_through_the_library_is_timed_as_started_and_its_retry_as_replayed() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let starter = world
            .starter()
            .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
        let keyed = || {
            world
                .request(ORDER_INTAKE, order_payload())
                .with_idempotency_key("order-123456")
        };
        let first = starter.start(keyed()).await.unwrap();
        let again = starter.start(keyed()).await.unwrap();
        assert!(!first.is_replayed() && again.is_replayed());
        assert_eq!(world.engine.started().len(), 1);
        let before = rows(&snapshotter);
        let duration = "process_webhook_call_duration_seconds";
        assert_eq!(samples(&before, duration, &[("outcome", "started")]), 1);
        assert_eq!(samples(&before, duration, &[("outcome", "replayed")]), 1);

        let engine = Arc::new(FlakyEngine::failing(1, || EngineError::unavailable("restarting")));
        let failing = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine);
        let err = failing
            .start(world.request(ORDER_INTAKE, order_payload()))
            .await
            .unwrap_err();
        assert_eq!((err.status(), err.code()), (503, "engine_unavailable"));
        let after = rows(&snapshotter);
        assert_eq!(samples(&after, duration, &[("outcome", "server_error")]), 1);
    });
}

#[test]
fn the_process_is_a_label_only_when_the_host_opts_in_and_only_for_deployed_processes() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let starter = world.starter().with_process_label(true);
        let auth = world.bearer();
        let headers = [("authorization", auth.as_str())];
        let payload = Value::Object(order_payload());
        assert_eq!(
            post(&starter, ORDER_INTAKE, &headers, &payload).await.status(),
            202
        );
        assert_eq!(post(&starter, DRAFT_ONLY, &headers, &payload).await.status(), 409);
        // A UUID nobody deployed: no series of its own, or a caller could
        // make the metrics backend keep one per invented UUID.
        let invented = "11111111-2222-4333-8444-555555555555";
        assert_eq!(post(&starter, invented, &headers, &payload).await.status(), 404);

        let rows = rows(&snapshotter);
        let calls = "process_webhook_calls_total";
        let production = ("environment", "production");
        assert_eq!(
            counter(
                &rows,
                calls,
                &[
                    ("status", "202"),
                    ("code", "ok"),
                    production,
                    ("process", ORDER_INTAKE)
                ]
            ),
            1
        );
        assert_eq!(
            counter(
                &rows,
                calls,
                &[
                    ("status", "409"),
                    ("code", "draft_version"),
                    production,
                    ("process", DRAFT_ONLY)
                ]
            ),
            1
        );
        assert_eq!(
            counter(
                &rows,
                calls,
                &[("status", "404"), ("code", "unknown_process"), production]
            ),
            1
        );
        assert!(!names(&rows).iter().any(|row| row.contains(invented)));
    });
}

/// An engine a host wrote, that names nothing but how to start.
struct HostEngine;

#[async_trait]
impl Engine for HostEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        Ok(ProcessInstance::new(InstanceId::new(format!(
            "host-{}",
            command.process
        ))))
    }
}

#[test]
fn the_engine_label_is_the_engines_kind_through_an_arc_and_custom_for_a_hosts_own_engine() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        // The host's own engine never named itself; the in-memory one is
        // shared behind a second `Arc`, which answers for it.
        let engines: [Arc<dyn Engine>; 2] = [Arc::new(HostEngine), Arc::new(world.engine.clone())];
        for engine in engines {
            let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine);
            starter
                .start(world.request(ORDER_INTAKE, order_payload()))
                .await
                .unwrap();
        }
        assert_eq!(world.engine.started().len(), 1);
        let rows = rows(&snapshotter);
        let engine_calls = "process_webhook_engine_call_duration_seconds";
        for engine in ["custom", "memory"] {
            assert_eq!(
                samples(&rows, engine_calls, &[("engine", engine), ("outcome", "ok")]),
                1,
                "{engine}"
            );
        }
    });
}

#[test]
fn rate_limited_calls_are_counted_by_scope() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let starter = world.starter().with_rate_limit(
            Arc::new(InMemoryRateLimiter::new()),
            RateLimitPolicy::default()
                .with_per_environment(Quota::per_minute(1))
                .with_failed_authentications_per_client(Quota::per_minute(1)),
        );
        let auth = world.bearer();
        let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
        let body = Value::Object(order_payload()).to_string();
        let call = |auth: String| {
            let (starter, target, body) = (starter.clone(), target.clone(), body.clone());
            async move {
                let peer = Some("192.0.2.7".parse().unwrap());
                starter
                    .handle_method_from(peer, "POST", &target, [("authorization", auth)], body.as_bytes())
                    .await
                    .status()
            }
        };
        assert_eq!(call(auth.clone()).await, 202);
        assert_eq!(call(auth.clone()).await, 429);
        assert_eq!(call("Bearer wrong".into()).await, 401);
        assert_eq!(call("Bearer wrong".into()).await, 429);
        assert_eq!(world.started(), 1);

        let rows = rows(&snapshotter);
        let limited = "process_webhook_rate_limited_total";
        assert_eq!(counter(&rows, limited, &[("scope", "environment")]), 1);
        assert_eq!(counter(&rows, limited, &[("scope", "client")]), 1);
    });
}

#[test]
fn bodies_being_read_are_a_gauge_that_returns_to_zero() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let app = router("/webhook/send", world.starter());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            app,
            ServeOptions::default(),
            std::future::pending(),
        ));

        let body = Value::Object(order_payload()).to_string();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            world.bearer(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows_while_reading = rows(&snapshotter);
        assert_eq!(
            gauge(&rows_while_reading, "process_webhook_bodies_in_flight"),
            1.0
        );
        assert_eq!(
            gauge(&rows_while_reading, "process_webhook_body_bytes_in_flight"),
            body.len() as f64,
            "a declared length is claimed whole"
        );

        stream.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = stream.read(&mut answer).await.unwrap();
        assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 202"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rows_after = rows(&snapshotter);
        assert_eq!(gauge(&rows_after, "process_webhook_bodies_in_flight"), 0.0);
        assert_eq!(gauge(&rows_after, "process_webhook_body_bytes_in_flight"), 0.0);

        // A chunked body is in flight from its head on, before any byte.
        let mut chunked = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            world.bearer(),
        );
        chunked.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rows_waiting = rows(&snapshotter);
        assert_eq!(gauge(&rows_waiting, "process_webhook_bodies_in_flight"), 1.0);
        assert_eq!(gauge(&rows_waiting, "process_webhook_body_bytes_in_flight"), 0.0);
    });
}

#[test]
fn connections_the_server_closes_or_refuses_are_counted_by_reason() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let app = router("/webhook/send", world.starter());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = ServeOptions::default()
            .with_header_read_timeout(Duration::from_millis(100))
            .with_max_connections(1);
        tokio::spawn(serve(listener, app, options, std::future::pending()));

        // A head that never ends: closed after the header read timeout.
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /webhook/send HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The second connection while the first is open: refused.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut answer = String::new();
        second.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest).await;

        let rows = rows(&snapshotter);
        let refused = "process_webhook_refused_connections_total";
        assert_eq!(counter(&rows, refused, &[("reason", "too_many_connections")]), 1);
        assert_eq!(counter(&rows, refused, &[("reason", "header_timeout")]), 1);
    });
}

/// A token store whose readiness a test switches, or that never answers.
struct Switchable {
    inner: Arc<InMemoryTokenStore>,
    down: AtomicBool,
    hangs: bool,
}

#[async_trait]
impl TokenStore for Switchable {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        self.inner.environment(token).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.hangs {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(
                "tokens.internal:5432 refused the connection, password=hunter2",
            ))
        } else {
            Ok(())
        }
    }
}

async fn get(app: &axum::Router, path: &str) -> (u16, String, Value) {
    let request = axum::http::Request::get(path)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, content_type, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn readyz_turns_503_naming_the_failing_store_and_200_when_it_recovers() {
    let world = World::new();
    let tokens = Arc::new(Switchable {
        inner: world.tokens.clone(),
        down: AtomicBool::new(false),
        hangs: false,
    });
    let starter = WebhookStarter::new(world.models.clone(), tokens.clone(), world.engine.clone());
    let app = health_router(starter.clone());

    assert_eq!(
        get(&app, "/readyz").await,
        (
            200,
            "application/json".into(),
            json!({"status": "ready", "engine": "ready"})
        )
    );
    tokens.down.store(true, Ordering::SeqCst);
    let (status, content_type, doc) = get(&app, "/readyz").await;
    assert_eq!((status, content_type.as_str()), (503, "application/problem+json"));
    assert_eq!(
        doc,
        json!({
            "type": "about:blank",
            "title": "Not ready",
            "status": 503,
            "code": "not_ready",
            "detail": "not ready: the token store cannot serve",
            "components": ["token_store"],
        }),
        "the store's own message (host, password) stays out of the answer"
    );
    let not_ready = starter.ready().await.unwrap_err();
    assert_eq!(
        not_ready.components().collect::<Vec<_>>(),
        [Component::TokenStore]
    );
    assert_eq!(Component::TokenStore.to_string(), "token_store");
    assert!(!not_ready.timed_out(Component::TokenStore));
    assert!(
        std::error::Error::source(&not_ready).is_some(),
        "the cause is there for the host's logs"
    );
    // The process itself still lives.
    assert_eq!(
        get(&app, "/healthz").await,
        (200, "application/json".into(), json!({"status": "live"}))
    );

    tokens.down.store(false, Ordering::SeqCst);
    assert_eq!(get(&app, "/readyz").await.0, 200);
}

#[tokio::test]
async fn a_component_that_does_not_answer_is_not_ready_after_the_ready_timeout() {
    let world = World::new();
    let tokens = Arc::new(Switchable {
        inner: world.tokens.clone(),
        down: AtomicBool::new(false),
        hangs: true,
    });
    let engine = Arc::new(FlakyEngine::failing(0, || EngineError::new("unused")));
    let starter = WebhookStarter::new(Arc::new(BrokenStore), tokens, engine)
        .with_ready_timeout(Duration::from_millis(200));
    let began = std::time::Instant::now();
    let not_ready = starter.ready().await.unwrap_err();
    assert!(began.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        not_ready.components().collect::<Vec<_>>(),
        [Component::TokenStore]
    );
    assert!(not_ready.timed_out(Component::TokenStore));
    assert_eq!(
        not_ready.to_string(),
        "not ready: the token store did not answer within 200ms"
    );
}

#[tokio::test]
async fn the_callers_traceparent_reaches_the_engine_and_a_malformed_one_changes_nothing() {
    let world = World::new();
    let starter = world.starter();
    let auth = world.bearer();
    let payload = Value::Object(order_payload());
    let traced = [
        ("authorization", auth.as_str()),
        ("traceparent", TRACEPARENT),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ];
    assert_eq!(
        post(&starter, ORDER_INTAKE, &traced, &payload).await.status(),
        202
    );
    let malformed = [
        ("authorization", auth.as_str()),
        ("traceparent", "00-not-a-trace-01"),
    ];
    assert_eq!(
        post(&starter, ORDER_INTAKE, &malformed, &payload).await.status(),
        202
    );
    let repeated = [
        ("authorization", auth.as_str()),
        ("traceparent", TRACEPARENT),
        ("traceparent", TRACEPARENT),
    ];
    assert_eq!(
        post(&starter, ORDER_INTAKE, &repeated, &payload).await.status(),
        202
    );
    // In an envelope body, like signature headers, it does not count.
    let envelope =
        json!({"headers": {"authorization": auth, "traceparent": TRACEPARENT}, "payload": payload});
    assert_eq!(post(&starter, ORDER_INTAKE, &[], &envelope).await.status(), 202);

    let traces: Vec<Option<TraceContext>> = world
        .engine
        .started()
        .into_iter()
        .map(|s| s.command.trace)
        .collect();
    assert_eq!(
        traces,
        [
            TraceContext::parse(TRACEPARENT, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")),
            None,
            None,
            None
        ]
    );
    assert_eq!(
        traces[0].as_ref().unwrap().tracestate(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
}

#[tokio::test]
async fn start_carries_the_trace_context_of_a_request_built_in_code() {
    let world = World::new();
    let trace = TraceContext::parse(TRACEPARENT, None).unwrap();
    let request = world
        .request(ORDER_INTAKE, order_payload())
        .with_trace_context(trace.clone());
    assert_eq!(request.trace_context(), Some(&trace));
    world.starter().start(request).await.unwrap();
    assert_eq!(world.engine.started()[0].command.trace, Some(trace));
}

#[test]
fn the_inbox_reports_its_queued_and_dead_starts_and_each_dispatch_by_outcome() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let refusing = Arc::new(FlakyEngine::failing(1, || {
            EngineError::refused("no such definition")
        }));
        let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), refusing)
            .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Always);
        let auth = world.bearer();
        for _ in 0..2 {
            let reply = post(
                &starter,
                ORDER_INTAKE,
                &[("authorization", auth.as_str())],
                &Value::Object(order_payload()),
            )
            .await;
            assert_eq!(reply.status(), 202);
        }
        let dispatcher = starter.dispatcher().unwrap().with_batch(1);
        dispatcher.report().await;
        let before = rows(&snapshotter);
        let queued = find(
            &before,
            MetricKind::Gauge,
            "process_webhook_inbox_starts",
            &[("status", "queued")],
        );
        assert!(
            matches!(queued, Some(DebugValue::Gauge(v)) if v.into_inner() == 2.0),
            "{queued:?}"
        );
        assert!(gauge(&before, "process_webhook_inbox_oldest_queued_seconds") >= 0.0);
        // A queued call is timed as `queued` (a snapshot drains histograms).
        assert_eq!(
            samples(
                &before,
                "process_webhook_call_duration_seconds",
                &[("outcome", "queued")]
            ),
            2
        );
        // The first is refused (dead), the second started.
        dispatcher.dispatch_due().await.unwrap();
        dispatcher.dispatch_due().await.unwrap();
        dispatcher.report().await;
        let after = rows(&snapshotter);
        assert_eq!(
            counter(
                &after,
                "process_webhook_dispatch_attempts_total",
                &[("outcome", "dead")]
            ),
            1
        );
        assert_eq!(
            counter(
                &after,
                "process_webhook_dispatch_attempts_total",
                &[("outcome", "started")]
            ),
            1
        );
        for (status, n) in [("queued", 0.0), ("dead", 1.0)] {
            let value = find(
                &after,
                MetricKind::Gauge,
                "process_webhook_inbox_starts",
                &[("status", status)],
            );
            assert!(
                matches!(value, Some(DebugValue::Gauge(v)) if v.into_inner() == n),
                "{status}: {value:?}"
            );
        }
        assert_eq!(gauge(&after, "process_webhook_inbox_oldest_queued_seconds"), 0.0);
    });
}

/// A running dispatcher sets the inbox's gauges before its first round,
/// not one poll interval later: an operator's dashboard shows the starts
/// kept before a restart from the start.
#[cfg(feature = "dispatcher")]
#[test]
fn a_running_dispatcher_reports_the_inbox_before_its_first_round() {
    with_recorder(|snapshotter| async move {
        let world = World::new();
        let away = Arc::new(FlakyEngine::failing(usize::MAX, || {
            EngineError::unavailable("connection refused")
        }));
        let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), away)
            .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Always);
        let auth = world.bearer();
        let reply = post(
            &starter,
            ORDER_INTAKE,
            &[("authorization", auth.as_str())],
            &Value::Object(order_payload()),
        )
        .await;
        assert_eq!(reply.status(), 202);
        let dispatcher = starter
            .dispatcher()
            .unwrap()
            .with_poll_interval(Duration::from_secs(600));
        let running = Running::spawn(dispatcher);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = rows(&snapshotter);
            let queued = find(
                &rows,
                MetricKind::Gauge,
                "process_webhook_inbox_starts",
                &[("status", "queued")],
            );
            if matches!(queued, Some(DebugValue::Gauge(v)) if v.into_inner() == 1.0) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no report while the poll interval is ten minutes away: {queued:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running.stop().await;
    });
}
