//! `Camunda7Engine` against a fake Camunda on loopback (an axum app, as
//! the Camunda 8 fake is) that records each request and answers with
//! Camunda's documented bodies.
#![cfg(all(feature = "camunda7", feature = "axum"))]

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A fake Camunda: answers every request with `status`, `headers` and
/// `body`, after `delay`, and records what it was sent.
struct FakeCamunda {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeCamunda {
    async fn start(status: u16, extra_headers: &'static str, body: Value, delay: Duration) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        // `extra_headers` is written as on the wire: `name: value\r\n` lines.
        let extra: Vec<(String, String)> = extra_headers
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let body = body.to_string();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (recorded, extra, body) = (recorded.clone(), extra.clone(), body.clone());
            async move {
                let (parts, sent) = request.into_parts();
                let sent = axum::body::to_bytes(sent, usize::MAX).await.unwrap();
                recorded.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or_else(String::new, |pq| pq.to_string()),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect(),
                    body: serde_json::from_slice(&sent).unwrap_or(Value::Null),
                });
                tokio::time::sleep(delay).await;
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert("content-type", "application/json".parse().unwrap());
                for (name, value) in &extra {
                    headers.insert(
                        axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.parse().unwrap(),
                    );
                }
                response
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, requests }
    }

    /// A fake whose every start answers a new instance id, and whose
    /// `GET /version` answers Camunda's version document.
    async fn numbered() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (recorded, count) = (recorded.clone(), count.clone());
            async move {
                let (parts, sent) = request.into_parts();
                let sent = axum::body::to_bytes(sent, usize::MAX).await.unwrap();
                recorded.lock().unwrap().push(Recorded {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    headers: Vec::new(),
                    body: serde_json::from_slice(&sent).unwrap_or(Value::Null),
                });
                let body = if parts.uri.path().ends_with("/version") {
                    json!({"version": "7.22.0"})
                } else {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut body = started_body();
                    body["id"] = json!(format!("instance-{n}"));
                    body
                };
                ([("content-type", "application/json")], body.to_string())
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, requests }
    }

    async fn ok() -> Self {
        Self::start(200, "", started_body(), Duration::ZERO).await
    }

    fn base(&self) -> String {
        format!("http://{}/engine-rest", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Camunda's documented answer to a start.
fn started_body() -> Value {
    json!({
        "links": [{"method": "GET", "href": "http://localhost:8080/rest-test/process-instance/anId", "rel": "self"}],
        "id": "anId",
        "definitionId": "aProcessDefinitionId",
        "businessKey": "myBusinessKey",
        "caseInstanceId": null,
        "tenantId": null,
        "ended": false,
        "suspended": false
    })
}

fn command(variables: Value, key: Option<&str>) -> StartCommand {
    let deployment = order_deployment(2);
    let command = StartCommand::new(&deployment, 2, object(variables));
    match key {
        Some(key) => command.with_idempotency_key(key),
        None => command,
    }
}

#[tokio::test]
async fn a_start_posts_typed_variables_and_the_business_key_to_the_definition_key() {
    let camunda = FakeCamunda::ok().await;
    let engine = Camunda7Engine::new(camunda.base()).with_basic_auth("demo", "s3cret");
    let instance = engine
        .start(command(
            json!({
                "customerName": "John Doe",
                "quantity": 3,
                "big": 3_000_000_000i64,
                "price": 9.99,
                "express": true,
                "note": null,
                "address": {"city": "Berlin"},
                "items": ["ABC123"],
            }),
            Some("order-123456"),
        ))
        .await
        .unwrap();
    assert_eq!(instance.id().as_str(), "anId");
    assert_eq!(instance.definition_id(), Some("aProcessDefinitionId"));
    assert_eq!(instance.business_key(), Some("myBusinessKey"));

    let requests = camunda.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/engine-rest/process-definition/key/order-intake/start"
    );
    // base64("demo:s3cret")
    assert_eq!(request.header("authorization"), Some("Basic ZGVtbzpzM2NyZXQ="));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.body,
        json!({
            "variables": {
                "customerName": {"value": "John Doe", "type": "String"},
                "quantity": {"value": 3, "type": "Integer"},
                "big": {"value": 3_000_000_000i64, "type": "Long"},
                "price": {"value": 9.99, "type": "Double"},
                "express": {"value": true, "type": "Boolean"},
                "note": {"value": null, "type": "Null"},
                "address": {"value": "{\"city\":\"Berlin\"}", "type": "Json"},
                "items": {"value": "[\"ABC123\"]", "type": "Json"},
            },
            "businessKey": "order-123456",
        })
    );
}

#[tokio::test]
async fn without_an_idempotency_key_there_is_no_business_key_and_no_auth() {
    let camunda = FakeCamunda::ok().await;
    Camunda7Engine::new(camunda.base())
        .start(command(json!({}), None))
        .await
        .unwrap();
    let request = &camunda.requests()[0];
    assert_eq!(request.body, json!({"variables": {}}));
    assert_eq!(request.header("authorization"), None);
}

#[tokio::test]
async fn a_tenant_uses_the_tenant_path_and_segments_are_percent_encoded() {
    let camunda = FakeCamunda::ok().await;
    let engine = Camunda7Engine::new(camunda.base()).with_tenant_id("acme corp/eu");
    let mut cmd = command(json!({}), None);
    cmd.definition_key = "order intake?v=1".into();
    engine.start(cmd).await.unwrap();
    assert_eq!(
        camunda.requests()[0].path,
        "/engine-rest/process-definition/key/order%20intake%3Fv%3D1/tenant-id/acme%20corp%2Feu/start"
    );
}

#[tokio::test]
async fn date_fields_of_the_start_form_are_sent_as_camunda_dates() {
    let camunda = FakeCamunda::ok().await;
    let world = World::new();
    let engine = Arc::new(Camunda7Engine::new(camunda.base()));
    start_via_webhook(
        world.request(TYPED, typed_payload()),
        &*world.models,
        &*world.tokens,
        &*engine,
    )
    .await
    .unwrap();
    let variables = &camunda.requests()[0].body["variables"];
    assert_eq!(
        variables["deliveryDate"],
        json!({"value": "2024-02-29T00:00:00.000+0000", "type": "Date"})
    );
    assert_eq!(
        variables["orderedAt"],
        json!({"value": "2024-02-20T10:00:00.000+0100", "type": "Date"})
    );
    assert_eq!(variables["name"], json!({"value": "John Doe", "type": "String"}));
    assert_eq!(variables["amount"], json!({"value": 12.5, "type": "Double"}));
    assert_eq!(
        variables["priority"],
        json!({"value": "low", "type": "String"}),
        "the default is sent too"
    );
}

async fn failure(status: u16, headers: &'static str, body: Value) -> EngineError {
    let camunda = FakeCamunda::start(status, headers, body, Duration::ZERO).await;
    Camunda7Engine::new(camunda.base())
        .start(command(json!({}), None))
        .await
        .unwrap_err()
}

fn problem_of(err: &EngineError) -> &CamundaProblem {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<CamundaProblem>())
        .expect("a CamundaProblem source")
}

#[tokio::test]
async fn a_404_for_an_unknown_definition_is_a_refusal_carrying_camundas_type_and_message() {
    let err = failure(404, "", json!({"type": "RestException", "message": "No matching process definition with key: order-intake and no tenant-id"})).await;
    assert_eq!(err.kind(), EngineErrorKind::Refused);
    assert!(!err.is_retryable());
    let problem = problem_of(&err);
    assert_eq!((problem.status(), problem.kind()), (404, "RestException"));
    assert!(problem.message().starts_with("No matching process definition"));
    assert_eq!(
        problem.to_string(),
        "camunda answered 404 RestException: No matching process definition with key: order-intake and no tenant-id"
    );
    assert!(
        err.to_string().contains("No matching process definition"),
        "the message is for the logs"
    );
}

#[tokio::test]
async fn a_400_is_a_refusal_with_its_code() {
    let err = failure(400, "", json!({"type": "InvalidRequestException", "message": "Cannot instantiate process definition", "code": 0})).await;
    assert_eq!(err.kind(), EngineErrorKind::Refused);
    assert_eq!(problem_of(&err).code(), Some(&json!(0)));

    let untyped = failure(
        400,
        "",
        json!({"message": "Cannot instantiate process definition"}),
    )
    .await;
    assert_eq!(
        problem_of(&untyped).to_string(),
        "camunda answered 400: Cannot instantiate process definition"
    );
    let bare = failure(400, "", json!({})).await;
    assert_eq!(problem_of(&bare).to_string(), "camunda answered 400");
}

#[tokio::test]
async fn a_500_is_retryable_and_reaches_the_caller_only_as_engine_failed() {
    let err = failure(
        500,
        "",
        json!({"type": "ProcessEngineException", "message": "database deadlock in ACT_RU_EXECUTION"}),
    )
    .await;
    assert_eq!(err.kind(), EngineErrorKind::Failed);
    assert!(err.is_retryable());
    let webhook = WebhookError::from(err);
    assert_eq!((webhook.status(), webhook.code()), (502, "engine_failed"));
    assert!(!webhook.to_problem_json().to_string().contains("deadlock"));
}

#[tokio::test]
async fn a_503_and_a_429_are_load_signals_with_retry_after() {
    let err = failure(
        503,
        "retry-after: 30\r\n",
        json!({"type": "X", "message": "maintenance"}),
    )
    .await;
    assert_eq!(err.kind(), EngineErrorKind::Unavailable);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    let err = failure(429, "", json!({})).await;
    assert_eq!(err.kind(), EngineErrorKind::Overloaded);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_200_without_an_id_is_an_error() {
    let err = failure(200, "", json!({"links": []})).await;
    assert_eq!(err.kind(), EngineErrorKind::Failed);
    assert!(
        !err.is_retryable(),
        "the instance may have started: do not blindly retry"
    );
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let camunda = FakeCamunda::start(200, "", started_body(), Duration::from_secs(5)).await;
    let engine = Camunda7Engine::new(camunda.base()).with_timeout(Duration::from_millis(200));
    let err = engine.start(command(json!({}), None)).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Camunda7Engine::new(format!("http://{addr}/engine-rest"))
        .start(command(json!({}), None))
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn debug_shows_the_settings_and_hides_the_password() {
    let engine = Camunda7Engine::new("http://h/")
        .with_basic_auth("demo", "pa55word")
        .with_tenant_id("acme");
    let shown = format!("{engine:?}");
    assert!(!shown.contains("pa55word"));
    assert_eq!(
        shown,
        "Camunda7Engine { base: \"http://h\", auth: Some((\"demo\", \"[redacted]\")), \
         tenant: Some(\"acme\"), timeout: 10s, \
         trace_variable: Some(\"traceparent\"), .. }"
    );
}

#[tokio::test]
async fn the_callers_traceparent_arrives_as_a_string_variable_and_never_overwrites_the_payload() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let camunda = FakeCamunda::ok().await;
    let traced = |variables: Value| {
        command(variables, None).with_trace_context(TraceContext::parse(TRACEPARENT, None).unwrap())
    };
    Camunda7Engine::new(camunda.base())
        .start(traced(json!({"orderNumber": "1"})))
        .await
        .unwrap();
    Camunda7Engine::new(camunda.base())
        .with_trace_variable("trace")
        .start(traced(json!({"orderNumber": "2", "trace": "the payload's own"})))
        .await
        .unwrap();
    Camunda7Engine::new(camunda.base())
        .without_trace_variable()
        .start(traced(json!({"orderNumber": "3"})))
        .await
        .unwrap();
    let bodies: Vec<Value> = camunda
        .requests()
        .iter()
        .map(|r| r.body["variables"].clone())
        .collect();
    assert_eq!(
        bodies,
        [
            json!({"orderNumber": {"value": "1", "type": "String"}, "traceparent": {"value": TRACEPARENT, "type": "String"}}),
            json!({"orderNumber": {"value": "2", "type": "String"}, "trace": {"value": "the payload's own", "type": "String"}}),
            json!({"orderNumber": {"value": "3", "type": "String"}}),
        ]
    );
}

#[tokio::test]
async fn ready_asks_camundas_version_endpoint_with_the_engines_credentials() {
    // Camunda 7's `GET /version` answers `{"version": "7.22.0"}`.
    let camunda = FakeCamunda::start(200, "", json!({"version": "7.22.0"}), Duration::ZERO).await;
    let engine = Camunda7Engine::new(camunda.base()).with_basic_auth("demo", "s3cret");
    engine.ready().await.unwrap();
    let requests = camunda.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", "/engine-rest/version")
    );
    assert_eq!(
        requests[0].header("authorization"),
        Some("Basic ZGVtbzpzM2NyZXQ=")
    );
    assert_eq!(engine.name(), "camunda7");

    let down = FakeCamunda::start(503, "", json!({"type": "ServiceUnavailable"}), Duration::ZERO).await;
    let error = Camunda7Engine::new(down.base()).ready().await.unwrap_err();
    assert_eq!(error.kind(), EngineErrorKind::Unavailable);
    assert!(
        Camunda7Engine::new("http://127.0.0.1:9/engine-rest")
            .ready()
            .await
            .is_err()
    );
}

#[cfg(feature = "testing")]
#[tokio::test]
async fn the_camunda7_engine_passes_the_engine_suite_against_the_fake() {
    // The fake answers every start with Camunda's documented body, whose
    // id is always `anId`: give each start its own id, as Camunda does.
    let camunda = FakeCamunda::numbered().await;
    let engine = Camunda7Engine::new(camunda.base());
    let deployment = testing::model_fixtures().deployments[0].clone();
    testing::check_engine(&engine, &deployment, order_payload()).await;
    assert_eq!(camunda.requests().len(), 4, "one GET /version, then three starts");
}
