//! `Camunda8Engine` against a recording fake of Camunda 8's Orchestration
//! Cluster REST API on loopback (no Camunda 8 can run here). The fake's
//! shapes follow Camunda's published reference for
//! `POST /v2/process-instances`: the `CreateProcessInstanceResult` fields
//! (`processInstanceKey` and the other keys as strings) and RFC 9457
//! problem documents (`type`, `title`, `status`, `detail`, `instance`).
#![cfg(all(feature = "camunda8", feature = "axum"))]

use crate::common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

/// What the fake was sent: path, headers, body.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

#[derive(Clone, Default)]
struct Fake {
    seen: Seen,
    /// Scripted answers to `/v2/process-instances`, in order; when empty, a
    /// created instance.
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
    tokens_issued: Arc<Mutex<u32>>,
    /// The `expires_in` of issued tokens, in seconds; 0 stands for 3,600.
    expires_in: Arc<Mutex<u64>>,
    /// Scripted answers to `GET /v2/process-instances/{key}`, in order; the
    /// last one repeats.
    states: Arc<Mutex<VecDeque<(u16, Value)>>>,
    /// How long `GET /v2/process-instances/{key}` takes to answer.
    state_delay: Arc<Mutex<Duration>>,
}

const CREATED_KEY: &str = "2251799813686019";

async fn create(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push(("/v2/process-instances".into(), headers, body));
    match fake.answers.lock().unwrap().pop_front() {
        Some((status, doc)) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/problem+json")],
            doc.to_string(),
        )
            .into_response(),
        None => json_answer(json!({
            "processDefinitionId": "order-intake",
            "processDefinitionVersion": 3,
            "processDefinitionKey": "2251799813685249",
            "processInstanceKey": CREATED_KEY,
            "tenantId": "<default>",
            "variables": {},
        })),
    }
}

async fn token(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push(("/oauth/token".into(), headers, body));
    let mut issued = fake.tokens_issued.lock().unwrap();
    *issued += 1;
    let expires_in = match *fake.expires_in.lock().unwrap() {
        0 => 3600,
        seconds => seconds,
    };
    json_answer(
        json!({"access_token": format!("access-{issued}"), "token_type": "Bearer", "expires_in": expires_in}),
    )
}

/// `GET /v2/process-instances/{key}`: the scripted states, the last one
/// repeating (fields as Camunda's reference lists them).
async fn instance(
    State(fake): State<Fake>,
    axum::extract::Path(key): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push((format!("/v2/process-instances/{key}"), headers, String::new()));
    let delay = *fake.state_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let mut states = fake.states.lock().unwrap();
    let (status, state) = if states.len() > 1 {
        states.pop_front().unwrap()
    } else {
        states.front().cloned().unwrap_or((404, Value::Null))
    };
    if status != 200 {
        let (status, doc) = problem(status, "NOT_FOUND", "no such process instance");
        return (StatusCode::from_u16(status).unwrap(), doc.to_string()).into_response();
    }
    json_answer(json!({
        "processInstanceKey": key,
        "processDefinitionId": "order-intake",
        "processDefinitionKey": "2251799813685249",
        "processDefinitionName": "Order intake",
        "processDefinitionVersion": 3,
        "startDate": "2026-11-29T10:00:00.000Z",
        "state": state,
        "hasIncident": false,
        "tenantId": "<default>",
    }))
}

/// `POST /v2/variables/search`: the instance's root-scope variables, values
/// as JSON text, one of them truncated.
async fn variables(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push(("/v2/variables/search".into(), headers, body));
    let item = |name: &str, value: &str, truncated: bool, key: &str| {
        json!({"name": name, "value": value, "isTruncated": truncated, "variableKey": key,
               "scopeKey": CREATED_KEY, "processInstanceKey": CREATED_KEY, "tenantId": "<default>"})
    };
    json_answer(json!({
        "items": [
            item("accepted", "true", false, "1"),
            item("total", "42.5", false, "2"),
            item("items", "[\"ABC", true, "3"),
        ],
        "page": {"totalItems": 3},
    }))
}

/// `GET /v2/variables/{key}`: a whole value.
async fn variable(axum::extract::Path(key): axum::extract::Path<String>) -> Response {
    assert_eq!(key, "3");
    json_answer(json!({"name": "items", "value": "[\"ABC123\",\"XYZ789\"]", "variableKey": key}))
}

/// `GET /v2/topology`, as Camunda's reference shows it (abridged).
async fn topology(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    fake.seen
        .lock()
        .unwrap()
        .push(("/v2/topology".into(), headers, String::new()));
    json_answer(
        json!({"brokers": [], "clusterSize": 1, "partitionsCount": 1, "replicationFactor": 1, "gatewayVersion": "8.8.0"}),
    )
}

fn json_answer(doc: Value) -> Response {
    ([("content-type", "application/json")], doc.to_string()).into_response()
}

async fn start_fake() -> (SocketAddr, Fake) {
    let fake = Fake::default();
    let app = axum::Router::new()
        .route("/v2/process-instances", post(create))
        .route("/oauth/token", post(token))
        .route("/v2/topology", axum::routing::get(topology))
        .route("/v2/process-instances/{key}", axum::routing::get(instance))
        .route("/v2/variables/search", post(variables))
        .route("/v2/variables/{key}", axum::routing::get(variable))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, fake)
}

fn problem(status: u16, title: &str, detail: &str) -> (u16, Value) {
    (
        status,
        json!({"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": "/v2/process-instances"}),
    )
}

async fn start(
    world: &World,
    engine: &Camunda8Engine,
    key: Option<&str>,
) -> Result<StartOutcome, WebhookError> {
    let mut request = world.request(ORDER_INTAKE, order_payload());
    if let Some(key) = key {
        request = request.with_idempotency_key(key);
    }
    start_via_webhook(request, &*world.models, &*world.tokens, engine).await
}

#[tokio::test]
async fn a_start_posts_the_definition_the_variables_the_tenant_and_the_business_id() {
    let (addr, fake) = start_fake().await;
    let world = World::new();
    let engine = Camunda8Engine::new(&format!("http://{addr}/")).with_tenant_id("acme");
    let outcome = start(&world, &engine, Some("order-123456")).await.unwrap();
    assert_eq!(
        outcome.instance_id().as_str(),
        CREATED_KEY,
        "the instance id is processInstanceKey, as text"
    );
    let seen = fake.seen.lock().unwrap();
    let (path, headers, body) = &seen[0];
    assert_eq!(path, "/v2/process-instances");
    assert!(headers.get("authorization").is_none());
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        json!({
            "processDefinitionId": "order-intake",
            "variables": Value::Object(order_payload()),
            "tenantId": "acme",
            "businessId": "order-123456",
        })
    );
}

#[tokio::test]
async fn the_engine_reports_the_instance_and_definition_keys() {
    let (addr, _fake) = start_fake().await;
    let engine = Camunda8Engine::new(&format!("http://{addr}"));
    let deployment = order_deployment(1);
    let command = StartCommand::new(&deployment, 1, order_payload()).with_idempotency_key("k");
    let instance = engine.start(&command).await.unwrap();
    assert_eq!(instance.id().as_str(), CREATED_KEY);
    assert_eq!(instance.definition_id(), Some("2251799813685249"));
    assert_eq!(instance.business_key(), Some("k"));
}

#[tokio::test]
async fn basic_and_bearer_authentication_are_sent() {
    let (addr, fake) = start_fake().await;
    let world = World::new();
    let basic = Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::Basic {
        user: "demo".into(),
        password: "demo".into(),
    });
    start(&world, &basic, None).await.unwrap();
    let bearer =
        Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::Bearer("static-token".into()));
    start(&world, &bearer, None).await.unwrap();
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen[0].1["authorization"], "Basic ZGVtbzpkZW1v");
    assert_eq!(seen[1].1["authorization"], "Bearer static-token");
}

#[tokio::test]
async fn client_credentials_are_exchanged_once_cached_and_refreshed_once_on_401() {
    let (addr, fake) = start_fake().await;
    let world = World::new();
    let engine = Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::ClientCredentials {
        token_url: format!("http://{addr}/oauth/token"),
        client_id: "webhooks".into(),
        client_secret: "client-s3cret".into(),
        audience: Some("orchestration-api".into()),
    });
    start(&world, &engine, None).await.unwrap();
    start(&world, &engine, None).await.unwrap();
    assert_eq!(*fake.tokens_issued.lock().unwrap(), 1, "the token is cached");
    // A token revoked early: 401, a new token, the call again.
    fake.answers
        .lock()
        .unwrap()
        .push_back(problem(401, "UNAUTHORIZED", "token expired"));
    start(&world, &engine, None).await.unwrap();
    assert_eq!(*fake.tokens_issued.lock().unwrap(), 2);
    let seen = fake.seen.lock().unwrap();
    let token_request = &seen.iter().find(|(p, _, _)| p == "/oauth/token").unwrap().2;
    for part in [
        "grant_type=client_credentials",
        "client_id=webhooks",
        "client_secret=client-s3cret",
        "audience=orchestration-api",
    ] {
        assert!(token_request.contains(part), "{token_request}");
    }
    let calls: Vec<_> = seen
        .iter()
        .filter(|(p, _, _)| p == "/v2/process-instances")
        .collect();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[0].1["authorization"], "Bearer access-1");
    assert_eq!(calls[2].1["authorization"], "Bearer access-1");
    assert_eq!(calls[3].1["authorization"], "Bearer access-2");
    assert_eq!(world.started(), 0, "the in-memory engine was not used");
}

#[tokio::test]
async fn a_token_that_expires_within_the_margin_is_fetched_again_for_each_call() {
    let (addr, fake) = start_fake().await;
    // 20 s is inside the 30 s margin kept before a token's expiry.
    *fake.expires_in.lock().unwrap() = 20;
    let world = World::new();
    let engine = Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::ClientCredentials {
        token_url: format!("http://{addr}/oauth/token"),
        client_id: "webhooks".into(),
        client_secret: "x".into(),
        audience: None,
    });
    start(&world, &engine, None).await.unwrap();
    start(&world, &engine, None).await.unwrap();
    assert_eq!(*fake.tokens_issued.lock().unwrap(), 2);
    // 31 s is just outside it: kept.
    *fake.expires_in.lock().unwrap() = 31;
    start(&world, &engine, None).await.unwrap();
    start(&world, &engine, None).await.unwrap();
    assert_eq!(*fake.tokens_issued.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_problem_without_a_title_or_a_detail_says_what_it_has() {
    for (doc, shown) in [
        (json!({"detail": "boom"}), "camunda 8 answered 500: boom"),
        (json!({"title": "INTERNAL"}), "camunda 8 answered 500 INTERNAL"),
        (json!({}), "camunda 8 answered 500"),
    ] {
        let (addr, fake) = start_fake().await;
        let world = World::new();
        fake.answers.lock().unwrap().push_back((500, doc));
        let engine = Camunda8Engine::new(&format!("http://{addr}"));
        let err = assert_refused(start(&world, &engine, None).await, 502, "engine_failed");
        let problem = std::error::Error::source(&err)
            .and_then(std::error::Error::source)
            .and_then(|s| s.downcast_ref::<Camunda8Problem>())
            .expect("the problem is the source");
        assert_eq!(problem.to_string(), shown);
    }
}

#[tokio::test]
async fn a_401_that_persists_is_a_refusal_after_one_refresh() {
    let (addr, fake) = start_fake().await;
    let world = World::new();
    let engine = Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::ClientCredentials {
        token_url: format!("http://{addr}/oauth/token"),
        client_id: "webhooks".into(),
        client_secret: "x".into(),
        audience: None,
    });
    for _ in 0..2 {
        fake.answers
            .lock()
            .unwrap()
            .push_back(problem(401, "UNAUTHORIZED", "no"));
    }
    let err = assert_refused(start(&world, &engine, None).await, 502, "engine_failed");
    let WebhookError::EngineFailed { source, .. } = &err else {
        panic!()
    };
    assert_eq!(source.kind(), EngineErrorKind::Refused);
    assert_eq!(*fake.tokens_issued.lock().unwrap(), 2, "one refresh, no more");
}

#[tokio::test]
async fn camunda_problems_map_to_the_documented_answers_and_stay_in_the_source() {
    let cases = [
        (
            problem(503, "RESOURCE_EXHAUSTED", "backpressure"),
            429,
            "engine_overloaded",
            true,
        ),
        (
            problem(503, "UNAVAILABLE", "leader change"),
            503,
            "engine_unavailable",
            true,
        ),
        (
            problem(400, "INVALID_ARGUMENT", "no process with id order-intake"),
            502,
            "engine_failed",
            false,
        ),
        (
            problem(404, "NOT_FOUND", "no such definition"),
            502,
            "engine_failed",
            false,
        ),
        (
            problem(409, "CONFLICT", "business id order-1 is in use"),
            502,
            "engine_failed",
            false,
        ),
        (
            problem(429, "TOO_MANY_REQUESTS", "slow down"),
            429,
            "engine_overloaded",
            true,
        ),
        (problem(500, "INTERNAL", "boom"), 502, "engine_failed", true),
        (
            problem(504, "DEADLINE_EXCEEDED", "gateway timeout"),
            502,
            "engine_failed",
            true,
        ),
    ];
    for ((status, doc), want_status, want_code, retryable) in cases {
        let (addr, fake) = start_fake().await;
        let world = World::new();
        fake.answers.lock().unwrap().push_back((status, doc.clone()));
        let engine = Camunda8Engine::new(&format!("http://{addr}"));
        let err = assert_refused(
            start(&world, &engine, Some("order-1")).await,
            want_status,
            want_code,
        );
        assert_eq!(err.is_retryable(), retryable, "{status} {doc}");
        let shown = err.to_problem_json().to_string();
        assert!(
            !shown.contains(doc["detail"].as_str().unwrap()),
            "Camunda's detail is not shown: {shown}"
        );
        let source = std::error::Error::source(&err).and_then(std::error::Error::source);
        let problem = source
            .and_then(|s| s.downcast_ref::<Camunda8Problem>())
            .expect("the problem is the source");
        assert_eq!(
            (problem.status(), problem.title(), problem.detail()),
            (
                status,
                doc["title"].as_str().unwrap(),
                doc["detail"].as_str().unwrap()
            )
        );
        assert_eq!(
            problem.to_string(),
            format!(
                "camunda 8 answered {status} {}: {}",
                doc["title"].as_str().unwrap(),
                doc["detail"].as_str().unwrap()
            )
        );
        if status == 409 {
            let WebhookError::EngineFailed { source, .. } = &err else {
                panic!()
            };
            assert!(
                source.message().contains("business id \"order-1\""),
                "{}",
                source.message()
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_camunda_is_unavailable_503_with_retry_after() {
    let world = World::new();
    let engine = Camunda8Engine::new("http://127.0.0.1:9");
    let err = assert_refused(start(&world, &engine, None).await, 503, "engine_unavailable");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn the_callers_traceparent_arrives_as_a_variable_named_as_configured() {
    let (addr, fake) = start_fake().await;
    let world = World::new();
    let trace = TraceContext::parse(TRACEPARENT, Some("congo=t61rcWkgMzE")).unwrap();
    let traced = || {
        world
            .request(ORDER_INTAKE, order_payload())
            .with_trace_context(trace.clone())
    };
    let base = format!("http://{addr}");
    for engine in [
        Camunda8Engine::new(&base),
        Camunda8Engine::new(&base).with_trace_variable("otelTraceparent"),
        Camunda8Engine::new(&base).without_trace_variable(),
    ] {
        start_via_webhook(traced(), &*world.models, &*world.tokens, &engine)
            .await
            .unwrap();
    }
    let variables: Vec<Value> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, body)| serde_json::from_str::<Value>(body).unwrap()["variables"].clone())
        .collect();
    let with = |name: &str| {
        let mut expected = order_payload();
        expected.insert(name.into(), json!(TRACEPARENT));
        Value::Object(expected)
    };
    assert_eq!(
        variables,
        [
            with("traceparent"),
            with("otelTraceparent"),
            Value::Object(order_payload())
        ]
    );
}

#[tokio::test]
async fn ready_asks_the_topology_with_the_engines_credentials() {
    let (addr, fake) = start_fake().await;
    let engine =
        Camunda8Engine::new(&format!("http://{addr}")).with_auth(Camunda8Auth::Bearer("t0ken".into()));
    engine.ready().await.unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "/v2/topology");
    assert_eq!(seen[0].1["authorization"], "Bearer t0ken");
    assert_eq!(engine.name(), "camunda8");
    // A base without the API (404) or no server at all: not ready.
    let wrong = Camunda8Engine::new(&format!("http://{addr}/elsewhere"));
    assert_eq!(
        wrong.ready().await.unwrap_err().kind(),
        EngineErrorKind::Unavailable
    );
    assert!(Camunda8Engine::new("http://127.0.0.1:9").ready().await.is_err());
}

async fn wait_on(
    fake_states: Vec<(u16, Value)>,
    wait: &str,
    max: Duration,
) -> (HttpReply, Value, Fake, Duration) {
    let (addr, fake) = start_fake().await;
    *fake.states.lock().unwrap() = fake_states.into();
    let world = World::new();
    let engine = Arc::new(Camunda8Engine::new(&format!("http://{addr}")));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine).with_max_wait(max);
    let began = std::time::Instant::now();
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer().as_str()), ("prefer", wait)],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    let took = began.elapsed();
    let doc: Value = serde_json::from_slice(reply.body()).unwrap();
    (reply, doc, fake, took)
}

#[tokio::test]
async fn a_wait_polls_the_instance_and_answers_its_root_variables_when_it_completes() {
    let states = vec![
        (404, Value::Null),
        (200, json!("ACTIVE")),
        (200, json!("COMPLETED")),
    ];
    let (reply, doc, fake, _) = wait_on(states, "wait=5", Duration::from_secs(30)).await;
    assert_eq!(reply.status(), 200, "{doc}");
    assert_eq!(reply.header("preference-applied"), Some("wait=5"));
    assert_eq!(doc["instanceId"], CREATED_KEY);
    assert_eq!(doc["status"], "completed");
    assert_eq!(
        doc["result"],
        json!({"accepted": true, "total": 42.5, "items": ["ABC123", "XYZ789"]})
    );
    let seen = fake.seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|(path, _, _)| path.as_str()).collect();
    let instance = format!("/v2/process-instances/{CREATED_KEY}");
    assert_eq!(
        paths,
        [
            "/v2/process-instances",
            &instance,
            &instance,
            &instance,
            "/v2/variables/search"
        ]
    );
    let search: Value = serde_json::from_str(&seen[4].2).unwrap();
    assert_eq!(
        search["filter"],
        json!({"processInstanceKey": CREATED_KEY, "scopeKey": CREATED_KEY})
    );
}

#[tokio::test]
async fn an_instance_still_active_at_the_deadline_is_202_running_and_a_terminated_one_200() {
    let (reply, doc, fake, took) =
        wait_on(vec![(200, json!("ACTIVE"))], "wait=10", Duration::from_secs(1)).await;
    assert_eq!(reply.status(), 202, "{doc}");
    // Polls back off from 100 ms (at 0, 0.1, 0.3 and 0.7 s in the second).
    let polls = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _, _)| path.starts_with("/v2/process-instances/"))
        .count();
    assert!((3..=6).contains(&polls), "{polls} polls in 1 s");
    assert_eq!(doc["status"], "running");
    assert_eq!(reply.header("preference-applied"), Some("wait=1"));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let (reply, doc, _, _) = wait_on(
        vec![(200, json!("TERMINATED"))],
        "wait=10",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (reply.status(), doc["status"].as_str()),
        (200, Some("terminated"))
    );
}

#[test]
fn debug_shows_the_settings_and_hides_every_credential() {
    let engine = Camunda8Engine::new("http://camunda:8080/")
        .with_tenant_id("acme")
        .with_auth(Camunda8Auth::Basic {
            user: "demo".into(),
            password: "pa55word".into(),
        });
    assert_eq!(
        format!("{engine:?}"),
        "Camunda8Engine { base: \"http://camunda:8080\", \
         auth: Basic { user: \"demo\", password: \"[redacted]\" }, tenant: Some(\"acme\"), \
         timeout: 10s, trace_variable: Some(\"traceparent\"), .. }"
    );
    let shown = [
        Camunda8Auth::None,
        Camunda8Auth::Bearer("t0ken".into()),
        Camunda8Auth::ClientCredentials {
            token_url: "http://issuer/token".into(),
            client_id: "webhooks".into(),
            client_secret: "s3cret".into(),
            audience: Some("orchestration-api".into()),
        },
    ]
    .map(|auth| format!("{auth:?}"));
    assert_eq!(
        shown,
        [
            "None",
            "Bearer([redacted])",
            "ClientCredentials { token_url: \"http://issuer/token\", client_id: \"webhooks\", \
             client_secret: \"[redacted]\", audience: Some(\"orchestration-api\") }",
        ]
    );
}

fn created_instance() -> InstanceRef {
    InstanceRef::new(
        InstanceId::new(CREATED_KEY),
        uuid(ORDER_INTAKE),
        EnvironmentId::new("production"),
    )
}

#[tokio::test]
async fn a_wait_cut_off_by_its_deadline_is_running_and_an_unreachable_camunda_an_error() {
    // Camunda answers slower than the wait: the read is cut off at the
    // deadline, and the instance is still running as far as anyone knows.
    let (addr, fake) = start_fake().await;
    *fake.states.lock().unwrap() = vec![(200, json!("ACTIVE"))].into();
    *fake.state_delay.lock().unwrap() = Duration::from_secs(5);
    let engine = Camunda8Engine::new(&format!("http://{addr}"));
    let waited = engine
        .wait(&created_instance(), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(matches!(waited, Some(Completion::Running)), "{waited:?}");

    // Nobody there, with time left: the failure is the answer.
    let gone = Camunda8Engine::new("http://127.0.0.1:9");
    let err = gone
        .wait(&created_instance(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
