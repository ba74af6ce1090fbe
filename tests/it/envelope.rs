//! The product's documented webhook call is one JSON document,
//! `{"headers": {"authorization": …}, "payload": {…}}`: posted as a body, it
//! starts the process as if its headers had been sent on the request.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

const TARGET: &str = "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555";
const NO_HEADERS: [(&str, &str); 0] = [];

/// The seed documentation's example, with only the token filled in.
fn seed_document(token: &str) -> Vec<u8> {
    format!(
        r#"{{
  "headers": {{ "authorization": "{token}" }},
  "payload": {{ "customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123" }}
}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn the_documented_document_as_a_body_starts_the_process_with_exactly_its_payload() {
    let world = World::new();
    let body = seed_document(world.token.expose_secret());
    let reply = world.starter().handle(TARGET, NO_HEADERS, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let started = world.engine.started();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].command.variables, order_payload());
    assert!(!started[0].command.variables.contains_key("headers"));
}

#[tokio::test]
async fn the_envelope_and_the_request_may_both_carry_the_same_token() {
    let world = World::new();
    let body = seed_document(world.token.expose_secret());
    // Bare in the envelope, `Bearer` on the request: the same token.
    let reply = world
        .starter()
        .handle(TARGET, [("authorization", world.bearer())], &body)
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_different_token_on_the_request_and_in_the_envelope_is_a_conflict() {
    let world = World::new();
    let body = seed_document(world.dev_token.expose_secret());
    let reply = world
        .starter()
        .handle(TARGET, [("authorization", world.bearer())], &body)
        .await;
    let doc = assert_reply(&reply, 400, "conflicting_headers");
    assert!(doc["detail"].as_str().unwrap().contains("authorization"));
    assert!(!String::from_utf8_lossy(reply.body()).contains(world.dev_token.expose_secret()));
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_different_idempotency_key_or_preference_is_a_conflict_and_the_same_is_fine() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let body = json!({
        "headers": {"Authorization": world.token.expose_secret(), "Idempotency-Key": "order-1", "Prefer": "dry-run"},
        "payload": order_payload(),
    })
    .to_string();
    let reply = starter
        .handle(TARGET, [("idempotency-key", "order-2")], body.as_bytes())
        .await;
    let doc = assert_reply(&reply, 400, "conflicting_headers");
    assert!(doc["detail"].as_str().unwrap().contains("idempotency-key"));

    let reply = starter
        .handle(TARGET, [("prefer", "return=minimal")], body.as_bytes())
        .await;
    let doc = assert_reply(&reply, 400, "conflicting_headers");
    assert!(doc["detail"].as_str().unwrap().contains("prefer"));
    assert_eq!(world.started(), 0);

    // The same key and preference on both sides: a dry run, nothing started.
    let reply = starter
        .handle(
            TARGET,
            [("idempotency-key", "order-1"), ("prefer", "dry-run")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status(), 200);
    let dry: Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["variables"], Value::Object(order_payload()));
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn an_idempotency_key_inside_the_envelope_makes_a_retry_a_replay() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let body = json!({
        "headers": {"authorization": world.token.expose_secret(), "idempotency-key": "order-123456"},
        "payload": order_payload(),
    })
    .to_string();
    let first = starter.handle(TARGET, NO_HEADERS, body.as_bytes()).await;
    assert_eq!(first.status(), 202);
    let again = starter.handle(TARGET, NO_HEADERS, body.as_bytes()).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(world.started(), 1);
    assert_eq!(
        world.engine.started()[0].command.idempotency_key.as_deref(),
        Some("order-123456")
    );
}

#[tokio::test]
async fn a_malformed_envelope_is_refused_naming_what_is_wrong() {
    let world = World::new();
    let token = world.token.expose_secret();
    let cases = [
        (
            json!({"headers": "x", "payload": {}}),
            "`headers` must be an object",
        ),
        (
            json!({"headers": {"authorization": token}, "payload": []}),
            "`payload` must be an object",
        ),
        (
            json!({"headers": {"authorization": token, "x-count": 1}, "payload": {}}),
            "every value in `headers` must be a string",
        ),
    ];
    for (body, problem) in cases {
        for headers in [vec![], vec![("authorization", world.bearer())]] {
            let reply = world
                .starter()
                .handle(TARGET, headers, body.to_string().as_bytes())
                .await;
            let doc = assert_reply(&reply, 400, "malformed_payload");
            let detail = doc["detail"].as_str().unwrap();
            assert!(detail.contains(problem), "{detail}");
            assert!(!detail.contains(token));
        }
    }
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_form_that_names_a_payload_field_takes_such_bodies_as_plain_payloads() {
    let world = World::new();
    let wrapped: ProcessUuid = "3e5f7a9b-1c2d-4e6f-8a0b-c1d2e3f4a5b6".parse().unwrap();
    world.models.insert_model(ProcessModel::new(
        wrapped,
        OrganizationId::new("acme"),
        "Forwarded call",
    ));
    world.models.deploy(Deployment::new(
        wrapped,
        VersionTag::Released(1),
        EnvironmentId::new("production"),
        StartForm::new([
            FieldSpec::mandatory("headers", FieldKind::Object),
            FieldSpec::mandatory("payload", FieldKind::Object),
        ]),
    ));
    let target = webhook_url("/webhook/send", &wrapped);
    let body = json!({"headers": {"x-source": "crm"}, "payload": {"orderNumber": "1"}});
    let reply = world
        .starter()
        .handle(
            &target,
            [("authorization", world.bearer())],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(
        Value::Object(world.engine.started()[0].command.variables.clone()),
        body,
        "the body is the payload, untouched"
    );

    // There, a token inside the body does not count.
    let body = json!({"headers": {"authorization": world.token.expose_secret()}, "payload": {}});
    let reply = world
        .starter()
        .handle(&target, NO_HEADERS, body.to_string().as_bytes())
        .await;
    assert_reply(&reply, 401, "missing_token");
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_host_can_turn_envelope_bodies_off() {
    let world = World::new();
    let starter = world.starter().with_envelope_bodies(false);
    let body = seed_document(world.token.expose_secret());
    let reply = starter.handle(TARGET, NO_HEADERS, &body).await;
    assert_reply(&reply, 401, "missing_token");
    // With the token on the request, the envelope is just a payload that
    // lacks the mandatory fields.
    let reply = starter
        .handle(TARGET, [("authorization", world.bearer())], &body)
        .await;
    assert_reply(&reply, 422, "invalid_payload");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn only_exactly_headers_and_payload_make_an_envelope() {
    let world = World::new();
    let body = json!({
        "headers": {"authorization": world.token.expose_secret()},
        "payload": order_payload(),
        "extra": 1,
    });
    let reply = world
        .starter()
        .handle(TARGET, NO_HEADERS, body.to_string().as_bytes())
        .await;
    assert_reply(&reply, 401, "missing_token");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn an_unknown_token_in_the_envelope_is_401_invalid_token() {
    let world = World::new();
    let reply = world
        .starter()
        .handle(TARGET, NO_HEADERS, &seed_document("not-a-token"))
        .await;
    let doc = assert_reply(&reply, 401, "invalid_token");
    assert!(!doc.to_string().contains("not-a-token"));
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn signature_headers_count_only_on_the_request_and_sign_the_raw_body() {
    let world = World::new();
    let secret = SigningSecret::generate();
    let signed = EnvironmentToken::generate();
    world.tokens.insert(
        &signed,
        Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
            .with_signing_secret(secret.clone()),
    );
    let body = seed_document(signed.expose_secret());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signature = secret.sign("msg_1", now, &body);

    // In the envelope, signature headers do not count.
    let in_envelope = json!({
        "headers": {
            "authorization": signed.expose_secret(),
            "webhook-id": "msg_1",
            "webhook-timestamp": now.to_string(),
            "webhook-signature": signature,
        },
        "payload": order_payload(),
    });
    let reply = world
        .starter()
        .handle(TARGET, NO_HEADERS, in_envelope.to_string().as_bytes())
        .await;
    assert_reply(&reply, 401, "invalid_signature");
    assert_eq!(world.started(), 0);

    // On the request, over the raw envelope body, they do.
    let ts = now.to_string();
    let headers = [
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", signature.as_str()),
    ];
    let reply = world.starter().handle(TARGET, headers, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(world.engine.started()[0].command.variables, order_payload());
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn over_http_the_documented_document_starts_the_process() {
    let world = World::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router("/webhook/send", world.starter());
    tokio::spawn(serve(
        listener,
        app,
        ServeOptions::default(),
        std::future::pending(),
    ));
    let url = format!("http://{addr}{TARGET}");
    let client = reqwest::Client::new();

    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(seed_document(world.token.expose_secret()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(world.engine.started()[0].command.variables, order_payload());

    let response = client
        .post(&url)
        .bearer_auth(world.token.expose_secret())
        .body(seed_document(world.dev_token.expose_secret()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["code"], "conflicting_headers");
    assert_eq!(world.started(), 1);
}

#[test]
fn an_envelope_read_in_code_follows_the_rules_of_an_envelope_body() {
    // One reader, one set of rules: both members, `headers` an object of
    // strings, `payload` an object; the answer says which is wrong.
    for (json, problem) in [
        (
            &br#"{"headers": ["authorization"], "payload": {}}"#[..],
            "`headers` must be an object",
        ),
        (
            br#"{"headers": {}, "payload": [1]}"#,
            "`payload` must be an object",
        ),
        (
            br#"{"headers": {"authorization": 42}, "payload": {}}"#,
            "every value in `headers` must be a string",
        ),
        (
            br#"{"headers": {}}"#,
            "exactly the members `headers` and `payload`",
        ),
        (
            br#"{"payload": {}}"#,
            "exactly the members `headers` and `payload`",
        ),
    ] {
        let err = WebhookStartRequest::from_envelope_json(uuid(ORDER_INTAKE), json).unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "malformed_payload"));
        assert!(err.to_string().contains(problem), "{err}");
    }
}
