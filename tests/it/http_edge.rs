//! The HTTP edge: reading raw calls, and `WebhookStarter::handle`.

use crate::common;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

const TARGET: &str = "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555";
const NO_HEADERS: [(&str, &str); 0] = [];

fn parse(target: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<WebhookStartRequest, WebhookError> {
    WebhookStartRequest::from_parts(target, headers.iter().copied(), body)
}

#[test]
fn a_full_url_or_a_path_with_query_names_the_process() {
    for target in [
        "https://run.stackfl.com/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
        "/webhook/send?tenant=x&uid=DD9759E0-CC94-11ED-938F-13CF60270555&utm=1",
        "/webhook/send?uid=dd9759e0%2Dcc94%2D11ed%2D938f%2D13cf60270555",
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555#fragment",
    ] {
        let request = parse(target, &[], b"").unwrap();
        assert_eq!(request.process(), &uuid(ORDER_INTAKE), "{target}");
    }
}

#[test]
fn a_missing_or_empty_uid_is_missing_uid() {
    for target in [
        "/webhook/send",
        "/webhook/send?",
        "/webhook/send?uid=",
        "/webhook/send?uid=%20",
        "/webhook/send?id=x",
        "",
        "https://run.stackfl.com/webhook/send#uid=dd9759e0-cc94-11ed-938f-13cf60270555",
    ] {
        assert_refused(parse(target, &[], b"{}"), 400, "missing_uid");
    }
}

#[test]
fn a_uid_that_is_not_a_uuid_is_invalid_uid() {
    for target in [
        "/webhook/send?uid=42",
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf6027055",
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555x",
        "/webhook/send?uid=%FF%FE",
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555&uid=dd9759e0-cc94-11ed-938f-13cf60270555",
    ] {
        assert_refused(parse(target, &[], b"{}"), 400, "invalid_uid");
    }
}

#[test]
fn the_token_is_read_bare_or_as_bearer_with_any_header_case() {
    for (name, value) in [
        ("authorization", "s3cr3t"),
        ("Authorization", "Bearer s3cr3t"),
        ("AUTHORIZATION", "bearer   s3cr3t  "),
        ("authorization", "  s3cr3t"),
    ] {
        let request = parse(TARGET, &[(name, value)], b"").unwrap();
        assert_eq!(
            request.token().map(EnvironmentToken::expose_secret),
            Some("s3cr3t"),
            "{name}: {value}"
        );
    }
    for value in ["", "   ", "Bearer", "Bearer   "] {
        let request = parse(TARGET, &[("authorization", value)], b"").unwrap();
        assert!(request.token().is_none(), "{value:?}");
    }
    assert!(parse(TARGET, &[], b"").unwrap().token().is_none());
}

#[test]
fn a_header_that_must_be_unique_given_twice_is_refused() {
    let err = assert_refused(
        parse(TARGET, &[("authorization", "a"), ("Authorization", "b")], b"{}"),
        400,
        "duplicate_header",
    );
    assert!(err.to_string().contains("authorization"));
    assert_refused(
        parse(
            TARGET,
            &[("idempotency-key", "a"), ("Idempotency-Key", "a")],
            b"{}",
        ),
        400,
        "duplicate_header",
    );
}

#[test]
fn the_idempotency_key_header_is_kept_and_checked() {
    let request = parse(TARGET, &[("Idempotency-Key", "order-123456")], b"").unwrap();
    assert_eq!(request.idempotency_key(), Some("order-123456"));
    for bad in ["", "ключ", &"k".repeat(256)] {
        assert_refused(
            parse(TARGET, &[("idempotency-key", bad)], b"{}"),
            400,
            "invalid_idempotency_key",
        );
    }
}

#[test]
fn the_body_is_the_payload_and_an_empty_body_is_an_empty_payload() {
    let request = parse(TARGET, &[], br#"{"customerName": "John Doe", "n": 1}"#).unwrap();
    assert_eq!(
        Value::Object(request.payload().clone()),
        json!({"customerName": "John Doe", "n": 1})
    );
    assert!(parse(TARGET, &[], b"").unwrap().payload().is_empty());
    assert!(parse(TARGET, &[], b" \r\n").unwrap().payload().is_empty());
}

#[test]
fn a_body_that_is_not_a_json_object_is_malformed_payload() {
    let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
    let cases: Vec<&[u8]> = vec![
        b"not json",
        b"[1, 2]",
        b"\"text\"",
        b"42",
        b"null",
        b"{\"a\": 1",
        b"{\"a\": 1} trailing",
        b"\xff\xfe{}",
        b"{\"name\": \"\xc3\x28\"}",
        deep.as_bytes(),
    ];
    for body in cases {
        let err = assert_refused(parse(TARGET, &[], body), 400, "malformed_payload");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the parser's error is the source"
        );
    }
}

#[test]
fn a_malformed_body_is_told_where_it_breaks_and_never_what_it_holds() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"{\"customerName\": \"John\",\n \"orderNumber\": secret}",
            "the payload is not valid JSON: syntax error at line 2, column 17",
        ),
        (
            b"{\"customerName\": \"secret",
            "the payload is not valid JSON: it ends early, at line 1, column 24",
        ),
        (
            b"\"secret\"",
            "the payload is not a JSON object of the expected shape (at line 1, column 8)",
        ),
        (
            b"[\"secret\"]",
            "the payload is not a JSON object of the expected shape (at line 1, column 0)",
        ),
        (
            b"{} {\"secret\": 1}",
            "the payload is not valid JSON: syntax error at line 1, column 4",
        ),
    ];
    for (body, detail) in cases {
        let err = assert_refused(parse(TARGET, &[], body), 400, "malformed_payload");
        assert_eq!(err.to_string(), detail);
        let doc = err.to_problem_json();
        assert_eq!(doc["detail"], detail);
        assert!(!doc.to_string().contains("secret"), "{doc}");
    }
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_parsed() {
    let body = vec![b'x'; WebhookStarter::DEFAULT_BODY_LIMIT + 1];
    let err = assert_refused(parse(TARGET, &[], &body), 413, "payload_too_large");
    assert!(
        err.to_string()
            .contains(&WebhookStarter::DEFAULT_BODY_LIMIT.to_string())
    );
    assert_refused(
        WebhookStartRequest::from_parts_with_limit(TARGET, NO_HEADERS, b"{\"a\": 1}", 4),
        413,
        "payload_too_large",
    );
    assert!(
        WebhookStartRequest::from_parts_with_limit(TARGET, NO_HEADERS, b"{}", 2).is_ok(),
        "exactly the limit"
    );
}

#[test]
fn the_envelope_carries_headers_and_payload() {
    let request = WebhookStartRequest::from_envelope_json(
        uuid(ORDER_INTAKE),
        br#"{"headers": {"Authorization": "Bearer s3cr3t", "idempotency-key": "k-1"}, "payload": {"orderNumber": "123456"}}"#,
    )
    .unwrap();
    assert_eq!(
        request.token().map(EnvironmentToken::expose_secret),
        Some("s3cr3t")
    );
    assert_eq!(request.idempotency_key(), Some("k-1"));
    assert_eq!(request.payload()["orderNumber"], "123456");

    let bare =
        WebhookStartRequest::from_envelope_json(uuid(ORDER_INTAKE), br#"{"headers": {}, "payload": {}}"#)
            .unwrap();
    assert!(bare.token().is_none() && bare.payload().is_empty());
}

#[test]
fn a_malformed_envelope_is_refused() {
    for json in [
        &br#"[]"#[..],
        br#"not json"#,
        br#"{}"#,
        br#"{"headers": {"authorization": 42}, "payload": {}}"#,
        br#"{"headers": [], "payload": {}}"#,
        br#"{"headers": {}, "payload": [1]}"#,
        br#"{"headers": {}, "payload": "x"}"#,
        br#"{"headers": {}, "payloads": {}}"#,
    ] {
        assert_refused(
            WebhookStartRequest::from_envelope_json(uuid(ORDER_INTAKE), json),
            400,
            "malformed_payload",
        );
    }
    assert_refused(
        WebhookStartRequest::from_envelope_json(
            uuid(ORDER_INTAKE),
            br#"{"headers": {"authorization": "a", "AUTHORIZATION": "b"}, "payload": {}}"#,
        ),
        400,
        "duplicate_header",
    );
    assert_refused(
        WebhookStartRequest::from_envelope_json(
            uuid(ORDER_INTAKE),
            br#"{"headers": {"idempotency-key": ""}, "payload": {}}"#,
        ),
        400,
        "invalid_idempotency_key",
    );
}

#[test]
fn webhook_urls_are_built_from_a_base() {
    let process = uuid(ORDER_INTAKE);
    assert_eq!(
        webhook_url(DEFAULT_WEBHOOK_BASE, &process),
        format!("https://run.stackfl.com/webhook/send?uid={ORDER_INTAKE}")
    );
    assert_eq!(
        webhook_url("http://h/hook?a=1", &process),
        format!("http://h/hook?a=1&uid={ORDER_INTAKE}")
    );
    assert_eq!(
        webhook_url("http://h/hook?", &process),
        format!("http://h/hook?uid={ORDER_INTAKE}")
    );
    let back = WebhookStartRequest::from_parts(&webhook_url(DEFAULT_WEBHOOK_BASE, &process), NO_HEADERS, b"")
        .unwrap();
    assert_eq!(back.process(), &process);
}

#[tokio::test]
async fn handle_answers_202_with_the_outcome() {
    let world = World::new();
    let reply = world
        .starter()
        .handle(
            TARGET,
            [("authorization", world.bearer())],
            serde_json::to_vec(&order_payload()).unwrap().as_slice(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.content_type(), "application/json");
    let body: Value = serde_json::from_slice(reply.body()).unwrap();
    let started = world.engine.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        body,
        json!({"status": "started", "instanceId": started[0].id.as_str(), "processUuid": ORDER_INTAKE, "version": 2, "environment": "production", "replayed": false})
    );
}

#[tokio::test]
async fn handle_answers_each_refusal_with_its_problem_document() {
    let world = World::new();
    let starter = world.starter();
    let auth = world.bearer();
    let payload = serde_json::to_vec(&order_payload()).unwrap();

    let reply = starter.handle(TARGET, NO_HEADERS, &payload).await;
    let doc = assert_reply(&reply, 401, "missing_token");
    assert_eq!(doc["type"], "urn:process-webhook:problem:missing_token");
    assert!(doc["title"].is_string() && doc["detail"].is_string());

    let reply = starter
        .handle(
            TARGET,
            [("authorization", auth.as_str())],
            br#"{"customerName": "John Doe"}"#,
        )
        .await;
    let doc = assert_reply(&reply, 422, "invalid_payload");
    assert_eq!(doc["violations"].as_array().unwrap().len(), 2);
    assert_eq!(doc["violations"][0]["field"], "orderNumber");

    let draft = webhook_url("/webhook/send", &uuid(DRAFT_ONLY));
    assert_reply(
        &starter
            .handle(&draft, [("authorization", auth.as_str())], &payload)
            .await,
        409,
        "draft_version",
    );

    assert_reply(
        &starter
            .handle(
                "/webhook/send?uid=nope",
                [("authorization", auth.as_str())],
                &payload,
            )
            .await,
        400,
        "invalid_uid",
    );
    assert_reply(
        &starter
            .handle("/webhook/send", [("authorization", auth.as_str())], &payload)
            .await,
        400,
        "missing_uid",
    );
    assert_reply(
        &starter
            .handle(TARGET, [("authorization", auth.as_str())], b"[1]")
            .await,
        400,
        "malformed_payload",
    );

    let small = world.starter().with_body_limit(16);
    assert_eq!(small.body_limit(), 16);
    assert_reply(
        &small
            .handle(TARGET, [("authorization", auth.as_str())], &payload)
            .await,
        413,
        "payload_too_large",
    );

    let reply = starter
        .handle_method("DELETE", TARGET, [("authorization", auth.as_str())], &payload)
        .await;
    assert_reply(&reply, 405, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS, POST"));

    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn methods_are_case_sensitive_so_a_lower_case_post_starts_nothing() {
    let world = World::new();
    let starter = world.starter();
    let payload = serde_json::to_vec(&order_payload()).unwrap();
    for method in ["post", "Post", "get", "options"] {
        let reply = starter
            .handle_method(method, TARGET, [("authorization", world.bearer())], &payload)
            .await;
        assert_reply(&reply, 405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
    }
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn handle_authenticates_before_it_parses_the_body() {
    let world = World::new();
    let reply = world.starter().handle(TARGET, NO_HEADERS, b"not json").await;
    assert_reply(&reply, 401, "missing_token");
}

#[tokio::test]
async fn store_failures_are_503_with_retry_after() {
    let world = World::new();
    let starter = WebhookStarter::new(
        std::sync::Arc::new(BrokenStore),
        world.tokens.clone(),
        world.engine.clone(),
    );
    let reply = starter
        .handle(TARGET, [("authorization", world.bearer())], b"{}")
        .await;
    assert_reply(&reply, 503, "store_unavailable");
    assert!(reply.header("retry-after").is_some());
    assert!(!String::from_utf8_lossy(reply.body()).contains("db-7"));
    assert_eq!(world.started(), 0);
}
