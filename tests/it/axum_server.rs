//! End to end over a real loopback socket: a real HTTP client against the
//! axum router on an ephemeral port.
#![cfg(feature = "axum")]

use crate::common;

use std::net::SocketAddr;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(starter: WebhookStarter) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router("/webhook/send", starter))
            .await
            .unwrap()
    });
    addr
}

fn url(addr: SocketAddr, process: &str) -> String {
    webhook_url(&format!("http://{addr}/webhook/send"), &uuid(process))
}

async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["code"], code, "{doc}");
    doc
}

#[tokio::test]
async fn a_start_over_http_answers_202_with_the_instance() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let response = reqwest::Client::new()
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let started = world.engine.started();
    assert_eq!(started.len(), 1);
    assert_eq!(body["instanceId"], started[0].id.as_str());
    assert_eq!(body["processUuid"], ORDER_INTAKE);
    assert_eq!(started[0].command.variables, order_payload());
}

#[tokio::test]
async fn refusals_over_http_carry_their_status_and_code_and_start_nothing() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let client = reqwest::Client::new();
    let token = world.token.expose_secret();

    let r = client
        .post(url(addr, ORDER_INTAKE))
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    problem(r, 401, "missing_token").await;
    let r = client
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth("wrong")
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    problem(r, 401, "invalid_token").await;
    let r = client
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(token)
        .json(&json!({"customerName": "John Doe"}))
        .send()
        .await
        .unwrap();
    let doc = problem(r, 422, "invalid_payload").await;
    assert_eq!(doc["violations"].as_array().unwrap().len(), 2);
    let r = client
        .post(url(addr, DRAFT_ONLY))
        .bearer_auth(token)
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    problem(r, 409, "draft_version").await;
    let r = client
        .post(url(addr, UNDEPLOYED))
        .bearer_auth(token)
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    problem(r, 409, "not_deployed").await;
    let r = client
        .post(url(addr, FOREIGN))
        .bearer_auth(token)
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    problem(r, 404, "unknown_process").await;
    let r = client
        .post(format!("http://{addr}/webhook/send?uid=x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    problem(r, 400, "invalid_uid").await;
    let r = client
        .post(format!("http://{addr}/webhook/send"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    problem(r, 400, "missing_uid").await;
    let r = client
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    problem(r, 400, "malformed_payload").await;

    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_uuid_in_the_path_instead_of_the_query_is_a_404_that_says_where_it_goes() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/webhook/send/{ORDER_INTAKE}"))
        .bearer_auth(world.token.expose_secret())
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    let doc = problem(response, 404, "unknown_path").await;
    assert_eq!(doc["title"], "Not found");
    assert_eq!(
        doc["detail"],
        "no webhook at this path: the process's UUID goes in the query, as `/webhook/send?uid=<process uuid>`"
    );
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn the_router_merges_into_a_host_router_with_its_own_state() {
    #[derive(Clone)]
    struct HostState(&'static str);
    let world = World::new();
    let host: axum::Router<HostState> = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(
                |axum::extract::State(state): axum::extract::State<HostState>| async move { state.0 },
            ),
        )
        .merge(router("/webhook/send", world.starter()));
    let app = host.with_state(HostState("hi"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let hello = client.get(format!("http://{addr}/hello")).send().await.unwrap();
    assert_eq!(hello.text().await.unwrap(), "hi");
    let started = client
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn other_methods_are_405() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let client = reqwest::Client::new();
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = client
            .request(method, url(addr, ORDER_INTAKE))
            .bearer_auth(world.token.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["allow"], "GET, HEAD, OPTIONS, POST");
        problem(r, 405, "method_not_allowed").await;
    }
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413() {
    let world = World::new();
    let addr = serve(world.starter().with_body_limit(1024)).await;
    let r = reqwest::Client::new()
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    problem(r, 413, "payload_too_large").await;
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let world = World::new();
    let addr = serve(world.starter().with_body_limit(1024)).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let path = url(addr, ORDER_INTAKE).replace(&format!("http://{addr}"), "");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        world.token.expose_secret()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..8 {
        let chunk = vec![b' '; 512];
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn get_answers_the_json_schema_of_the_payload() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let r = reqwest::Client::new()
        .get(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/schema+json");
    let schema: Value = r.json().await.unwrap();
    assert_eq!(
        schema["required"],
        json!(["customerName", "orderNumber", "productCode"])
    );
    let r = reqwest::Client::new()
        .get(url(addr, ORDER_INTAKE))
        .send()
        .await
        .unwrap();
    problem(r, 401, "missing_token").await;
}

#[tokio::test]
async fn a_start_completes_when_the_caller_hangs_up_and_its_retry_is_a_replay() {
    let world = World::new();
    let engine = std::sync::Arc::new(FlakyEngine::slow(std::time::Duration::from_millis(300)));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_idempotency(std::sync::Arc::new(InMemoryIdempotencyStore::new()));
    let addr = serve(starter).await;
    let body = serde_json::to_vec(&order_payload()).unwrap();

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let path = url(addr, ORDER_INTAKE).replace(&format!("http://{addr}"), "");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\nidempotency-key: hang-up\r\ncontent-length: {}\r\n\r\n",
        world.token.expose_secret(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(stream); // the caller hangs up while the engine works

    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(engine.inner.started().len(), 1, "the start went through");
    let retry = reqwest::Client::new()
        .post(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .header("idempotency-key", "hang-up")
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status().as_u16(), 202);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(engine.calls(), 1);
}

#[tokio::test]
async fn head_and_options_over_http() {
    let world = World::new();
    let addr = serve(world.starter()).await;
    let client = reqwest::Client::new();
    let head = client
        .head(url(addr, ORDER_INTAKE))
        .bearer_auth(world.token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-type"], "application/schema+json");
    assert!(head.bytes().await.unwrap().is_empty());
    let options = client
        .request(reqwest::Method::OPTIONS, url(addr, ORDER_INTAKE))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status().as_u16(), 204);
    assert_eq!(options.headers()["allow"], "GET, HEAD, OPTIONS, POST");
    let unauthorized = client
        .post(url(addr, ORDER_INTAKE))
        .json(&order_payload())
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthorized.headers()["www-authenticate"],
        r#"Bearer realm="process-webhook""#
    );
    assert_eq!(world.started(), 0);
}
