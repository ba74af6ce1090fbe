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
        .start(&command(
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
        .start(&command(json!({}), None))
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
    engine.start(&cmd).await.unwrap();
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
        .start(&command(json!({}), None))
        .await
        .unwrap_err()
}

fn problem_of(err: &EngineError) -> &Camunda7Problem {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<Camunda7Problem>())
        .expect("a Camunda7Problem source")
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
    let err = engine.start(&command(json!({}), None)).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_an_unavailable_engine_answered_503_with_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Camunda7Engine::new(format!("http://{addr}/engine-rest"))
        .start(&command(json!({}), None))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.is_retryable()),
        (EngineErrorKind::Unavailable, true)
    );
    assert!(err.to_string().contains("could not connect"), "{err}");
    let webhook = WebhookError::from(err);
    assert_eq!((webhook.status(), webhook.code()), (503, "engine_unavailable"));
    assert_eq!(webhook.retry_after(), Some(Duration::from_secs(5)));
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
        .start(&traced(json!({"orderNumber": "1"})))
        .await
        .unwrap();
    Camunda7Engine::new(camunda.base())
        .with_trace_variable("trace")
        .start(&traced(json!({"orderNumber": "2", "trace": "the payload's own"})))
        .await
        .unwrap();
    Camunda7Engine::new(camunda.base())
        .without_trace_variable()
        .start(&traced(json!({"orderNumber": "3"})))
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

/// A fake Camunda that keeps its instances: `POST …/start` creates one
/// (with the business key sent), `GET /process-instance` lists the running
/// ones and `GET /history/process-instance` every one, each filtered by
/// the query parameters of Camunda 7's REST reference (`businessKey` or
/// `processInstanceBusinessKey`, `processDefinitionKey`, `tenantIdIn`),
/// in the shapes it documents.
/// An instance the fake keeps: id, definition key, business key, tenant,
/// and whether it ended.
type Kept = (String, String, String, Option<String>, bool);

struct StatefulCamunda {
    addr: SocketAddr,
    instances: Arc<Mutex<Vec<Kept>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl StatefulCamunda {
    async fn start() -> Self {
        let instances: Arc<Mutex<Vec<Kept>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, recorded) = (instances.clone(), requests.clone());
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (kept, recorded) = (kept.clone(), recorded.clone());
            async move {
                let (parts, sent) = request.into_parts();
                let sent = axum::body::to_bytes(sent, usize::MAX).await.unwrap();
                let path = parts.uri.path().to_owned();
                recorded.lock().unwrap().push(format!(
                    "{} {}",
                    parts.method,
                    parts.uri.path_and_query().map_or("", |pq| pq.as_str())
                ));
                let query: Vec<(String, String)> =
                    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                let mut instances = kept.lock().unwrap();
                let body = if parts.method == "POST" {
                    let sent: Value = serde_json::from_slice(&sent).unwrap_or(Value::Null);
                    let definition = path.split('/').nth(4).unwrap_or_default().to_owned();
                    let id = format!("camunda-instance-{}", instances.len() + 1);
                    let key = sent["businessKey"].as_str().unwrap_or_default().to_owned();
                    instances.push((id.clone(), definition, key.clone(), None, false));
                    let mut body = started_body();
                    body["id"] = json!(id);
                    body["businessKey"] = json!(key);
                    body
                } else if let Some(id) = path.strip_prefix("/engine-rest/history/process-instance/") {
                    // One instance in the history, as Camunda 7.24.0 answers
                    // it (404 for an id it does not know).
                    let Some((id, definition, key, _, ended)) = instances.iter().find(|i| i.0 == id) else {
                        return (
                            axum::http::StatusCode::NOT_FOUND,
                            [("content-type", "application/json")],
                            json!({"type": "InvalidRequestException", "message": "no instance", "code": 0})
                                .to_string(),
                        );
                    };
                    json!({
                        "id": id, "businessKey": key, "processDefinitionKey": definition,
                        "state": if *ended { "COMPLETED" } else { "ACTIVE" },
                    })
                } else if path.ends_with("/history/variable-instance") {
                    // What the real engine lists with deserializeValues=false:
                    // a Json variable as its text.
                    assert_eq!(param("deserializeValues").as_deref(), Some("false"));
                    json!([
                        {"name": "orderNumber", "type": "String", "value": "123456", "valueInfo": {}},
                        {"name": "address", "type": "Json", "value": "{\"city\":\"Berlin\"}", "valueInfo": {}},
                        {"name": "quantity", "type": "Integer", "value": 3, "valueInfo": {}},
                    ])
                } else {
                    let history = path.ends_with("/history/process-instance");
                    let key = param(if history { "processInstanceBusinessKey" } else { "businessKey" });
                    let listed: Vec<Value> = instances
                        .iter()
                        .filter(|(_, definition, business_key, tenant, ended)| {
                            (history || !ended)
                                && key.as_deref().is_none_or(|k| k == business_key)
                                && param("processDefinitionKey").is_none_or(|d| d == *definition)
                                && param("tenantIdIn").is_none_or(|t| tenant.as_deref() == Some(t.as_str()))
                        })
                        .map(|(id, definition, business_key, tenant, ended)| {
                            if history {
                                json!({
                                    "id": id, "businessKey": business_key,
                                    "processDefinitionId": format!("{definition}:1:7"),
                                    "processDefinitionKey": definition, "processDefinitionName": "Order intake",
                                    "startTime": "2026-12-01T10:00:00.000+0000",
                                    "endTime": if *ended { json!("2026-12-01T10:00:01.000+0000") } else { Value::Null },
                                    "state": if *ended { "COMPLETED" } else { "ACTIVE" },
                                    "tenantId": tenant,
                                })
                            } else {
                                json!({
                                    "links": [], "id": id, "definitionId": format!("{definition}:1:7"),
                                    "businessKey": business_key, "caseInstanceId": null,
                                    "ended": false, "suspended": false, "tenantId": tenant,
                                })
                            }
                        })
                        .collect();
                    Value::Array(listed)
                };
                (
                    axum::http::StatusCode::OK,
                    [("content-type", "application/json")],
                    body.to_string(),
                )
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            instances,
            requests,
        }
    }

    fn base(&self) -> String {
        format!("http://{}/engine-rest", self.addr)
    }

    fn add(&self, id: &str, definition: &str, key: &str, tenant: Option<&str>, ended: bool) {
        self.instances.lock().unwrap().push((
            id.to_owned(),
            definition.to_owned(),
            key.to_owned(),
            tenant.map(str::to_owned),
            ended,
        ));
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn find_started_asks_the_running_instances_then_the_history_by_business_key_and_definition() {
    let camunda = StatefulCamunda::start().await;
    camunda.add("running-1", "order-intake", "order-1", None, false);
    camunda.add("ended-2", "order-intake", "order-2", None, true);
    camunda.add("other-definition", "refunds", "order-3", None, false);
    let engine = Camunda7Engine::new(camunda.base());
    assert_eq!(
        engine.recovery(),
        Recovery::FindsByBusinessKey {
            call_deadline: Duration::from_secs(10)
        }
    );

    let running = engine
        .find_started(&command(json!({}), Some("order-1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.id().as_str(), "running-1");
    assert_eq!(running.definition_id(), Some("order-intake:1:7"));
    assert_eq!(running.business_key(), Some("order-1"));
    assert_eq!(
        camunda.requests(),
        ["GET /engine-rest/process-instance?businessKey=order-1&processDefinitionKey=order-intake"]
    );

    let ended = engine
        .find_started(&command(json!({}), Some("order-2")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.id().as_str(), "ended-2");
    assert_eq!(ended.definition_id(), Some("order-intake:1:7"));
    assert_eq!(
        camunda.requests()[1..],
        [
            "GET /engine-rest/process-instance?businessKey=order-2&processDefinitionKey=order-intake",
            "GET /engine-rest/history/process-instance?processInstanceBusinessKey=order-2&processDefinitionKey=order-intake",
        ]
    );

    // Another definition's instance under the key is not this start's.
    assert_eq!(
        engine
            .find_started(&command(json!({}), Some("order-3")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        engine
            .find_started(&command(json!({}), Some("order 4&x")))
            .await
            .unwrap(),
        None
    );
    assert!(
        camunda
            .requests()
            .last()
            .unwrap()
            .ends_with("processInstanceBusinessKey=order+4%26x&processDefinitionKey=order-intake"),
        "{:?}",
        camunda.requests()
    );
    let unkeyed = engine.find_started(&command(json!({}), None)).await.unwrap_err();
    assert_eq!(unkeyed.kind(), EngineErrorKind::Refused);
}

#[tokio::test]
async fn a_tenants_engine_finds_only_its_tenants_instances() {
    let camunda = StatefulCamunda::start().await;
    camunda.add("theirs", "order-intake", "order-1", Some("globex"), false);
    camunda.add("ours", "order-intake", "order-1", Some("acme"), true);
    let engine = Camunda7Engine::new(camunda.base()).with_tenant_id("acme");
    let found = engine
        .find_started(&command(json!({}), Some("order-1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id().as_str(), "ours");
    assert!(
        camunda.requests()[0].ends_with("&tenantIdIn=acme"),
        "{:?}",
        camunda.requests()
    );
}

#[tokio::test]
async fn a_failed_look_up_is_a_retryable_error_never_a_none() {
    for (status, body) in [
        (
            500,
            json!({"type": "ProcessEngineException", "message": "the database is gone"}),
        ),
        (
            404,
            json!({"type": "InvalidRequestException", "message": "no such resource"}),
        ),
    ] {
        let camunda = FakeCamunda::start(status, "", body, Duration::ZERO).await;
        let engine = Camunda7Engine::new(camunda.base());
        let error = engine
            .find_started(&command(json!({}), Some("order-1")))
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{status}: {error}");
    }
    let camunda = FakeCamunda::start(200, "", json!({"not": "a list"}), Duration::ZERO).await;
    let error = Camunda7Engine::new(camunda.base())
        .find_started(&command(json!({}), Some("order-1")))
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test]
async fn after_a_replicas_crash_the_keys_next_delivery_completes_with_the_instance_camunda_has() {
    let camunda = StatefulCamunda::start().await;
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let starter = WebhookStarter::new(
        world.models.clone(),
        world.tokens.clone(),
        Arc::new(Camunda7Engine::new(camunda.base()).with_timeout(Duration::from_millis(100))),
    )
    .with_idempotency(store.clone())
    .with_takeover_margin(Duration::from_millis(50));
    // The replica reserved the key, Camunda started the instance, and the
    // replica died before it completed the key.
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "order-9");
    store
        .reserve(&key, PayloadFingerprint::of(&order_payload()))
        .await
        .unwrap();
    camunda.add("started-before-the-crash", "order-intake", "order-9", None, false);
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let deliver = || {
        starter.handle(
            &target,
            [
                ("authorization", world.bearer()),
                ("idempotency-key", "order-9".to_owned()),
            ],
            &body,
        )
    };
    assert_reply(&deliver().await, 409, "start_in_progress");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = deliver().await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let outcome: Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(outcome["instanceId"], "started-before-the-crash");
    assert!(
        camunda.requests().iter().all(|r| !r.starts_with("POST")),
        "nothing started again: {:?}",
        camunda.requests()
    );
    assert_eq!(camunda.instances.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_wait_polls_the_history_and_answers_an_ended_instance_with_its_variables() {
    let camunda = StatefulCamunda::start().await;
    camunda.add("ended-1", "order-intake", "order-1", None, true);
    camunda.add("running-2", "order-review", "order-2", None, false);
    let engine = Camunda7Engine::new(camunda.base());
    let instance = |id: &str| {
        InstanceRef::new(
            InstanceId::new(id),
            uuid(ORDER_INTAKE),
            EnvironmentId::new("production"),
        )
    };
    let waited = engine
        .wait(&instance("ended-1"), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        waited,
        Some(Completion::Completed(
            json!({"orderNumber": "123456", "address": {"city": "Berlin"}, "quantity": 3})
        ))
    );
    let started = std::time::Instant::now();
    let waited = engine
        .wait(&instance("running-2"), Duration::from_millis(400))
        .await
        .unwrap();
    assert_eq!(waited, Some(Completion::Running));
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Not (yet) in the history: polled like a running one.
    let waited = engine
        .wait(&instance("unknown-3"), Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(waited, Some(Completion::Running));
    let asked = camunda.requests();
    assert!(
        asked
            .iter()
            .any(|r| r == "GET /engine-rest/history/process-instance/ended-1"),
        "{asked:?}"
    );
    assert!(
        asked.iter().any(|r| r == "GET /engine-rest/history/variable-instance?processInstanceId=ended-1&deserializeValues=false"),
        "{asked:?}"
    );
    assert!(
        asked.iter().filter(|r| r.ends_with("/running-2")).count() >= 2,
        "it polled: {asked:?}"
    );
}
