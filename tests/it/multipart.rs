//! `multipart/form-data` bodies, as HTML forms and fetch's `FormData` send
//! them (each body made by Node's own `FormData`): text parts are fields
//! exactly as a form-urlencoded body's, a file part is refused by name,
//! and the body limits hold while a body is read.
#![cfg(feature = "multipart")]

use crate::common;
use crate::forms::{FORM, typed_host};

use common::senders::Senders;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

async fn post(
    starter: &WebhookStarter,
    token: &EnvironmentToken,
    content_type: &str,
    body: &[u8],
) -> HttpReply {
    let auth = format!("Bearer {}", token.expose_secret());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    starter
        .handle(
            &target,
            [("authorization", auth.as_str()), ("content-type", content_type)],
            body,
        )
        .await
}

fn problem(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap()
}

#[tokio::test]
async fn text_parts_start_with_their_strings_read_by_kind() {
    let Some(senders) = Senders::find() else { return };
    let (starter, engine, token) = typed_host();
    let (content_type, body) = senders.multipart(
        &[
            ("name", "John Doe"),
            ("quantity", "3"),
            ("express", "true"),
            ("tags", "a"),
            ("tags", "b"),
        ],
        &[],
    );
    let reply = post(&starter, &token, &content_type, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(
        Value::Object(engine.started()[0].command.variables.clone()),
        json!({"name": "John Doe", "quantity": 3, "express": true, "tags": ["a", "b"]})
    );
}

#[tokio::test]
async fn a_file_part_is_refused_by_name_and_starts_nothing() {
    let Some(senders) = Senders::find() else { return };
    let (starter, engine, token) = typed_host();
    let (content_type, body) = senders.multipart(
        &[("name", "x"), ("quantity", "1")],
        &[("invoice", "a.pdf", "%PDF-1.7")],
    );
    let reply = post(&starter, &token, &content_type, &body).await;
    assert_eq!(reply.status(), 415);
    let answer = problem(&reply);
    assert_eq!(answer["code"], "file_part");
    assert_eq!(
        answer["detail"],
        "part `invoice` of the multipart body is a file: only text parts can be start fields"
    );
    assert_eq!(
        reply.header("accept-post"),
        Some("application/json, application/x-www-form-urlencoded, multipart/form-data")
    );
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn a_missing_mandatory_field_is_the_same_422_as_for_json_and_a_form() {
    let Some(senders) = Senders::find() else { return };
    let (starter, engine, token) = typed_host();
    let (content_type, multipart) = senders.multipart(&[("quantity", "2")], &[]);
    let as_multipart = post(&starter, &token, &content_type, &multipart).await;
    let as_form = post(&starter, &token, FORM, b"quantity=2").await;
    let as_json = post(&starter, &token, "application/json", br#"{"quantity": 2}"#).await;
    assert_eq!(as_multipart.status(), 422);
    assert_eq!(problem(&as_multipart)["code"], "invalid_payload");
    assert_eq!(problem(&as_multipart), problem(&as_json));
    assert_eq!(problem(&as_multipart), problem(&as_form));
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn the_body_limits_hold_while_a_multipart_body_is_read() {
    let Some(senders) = Senders::find() else { return };
    let (starter, engine, token) = typed_host();
    // More parts than the value limit allows (each a name and a value).
    let limited = starter.clone().with_max_json_values(4);
    let (content_type, body) = senders.multipart(&[("name", "x"), ("quantity", "1"), ("amount", "2")], &[]);
    let reply = post(&limited, &token, &content_type, &body).await;
    assert_eq!(
        (reply.status(), problem(&reply)["code"].clone()),
        (413, json!("payload_too_large"))
    );
    // A body over the byte limit, refused before it is read.
    let small = starter.clone().with_body_limit(256);
    let big = "x".repeat(300);
    let (content_type, body) = senders.multipart(&[("name", &big), ("quantity", "1")], &[]);
    let reply = post(&small, &token, &content_type, &body).await;
    assert_eq!(
        (reply.status(), problem(&reply)["code"].clone()),
        (413, json!("payload_too_large"))
    );
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn a_malformed_multipart_body_is_400_and_starts_nothing() {
    let (starter, engine, token) = typed_host();
    for (content_type, body) in [
        ("multipart/form-data", &b"--x\r\n"[..]),
        ("multipart/form-data; boundary=abc", b"no boundary here"),
        (
            "multipart/form-data; boundary=abc",
            b"--abc\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ncut short",
        ),
    ] {
        let reply = post(&starter, &token, content_type, body).await;
        assert_eq!(reply.status(), 400, "{content_type}");
        assert_eq!(problem(&reply)["code"], "malformed_payload");
    }
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn a_source_s_multipart_delivery_starts_with_its_text_parts() {
    use crate::sources::{Host, pairs};
    use base64::Engine as _;
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("name", FieldKind::Text),
        FieldSpec::mandatory("quantity", FieldKind::Integer),
    ]));
    host.add("zapier", SourceScheme::basic("zapier"), &["zapier-password"]);
    let (content_type, body) = senders.multipart(&[("name", "John Doe"), ("quantity", "12")], &[]);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("zapier:zapier-password")
    );
    let headers = pairs(&[("Content-Type", &content_type), ("Authorization", &basic)]);
    let reply = host
        .post("zapier", &headers, std::str::from_utf8(&body).unwrap())
        .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(
        Value::Object(host.engine.started()[0].command.variables.clone()),
        json!({"name": "John Doe", "quantity": 12})
    );
}
