//! Form bodies (`application/x-www-form-urlencoded`), as Twilio and Slack's
//! slash commands post them, for every call: read as an object of strings,
//! a repeated name as an array, the start form's kinds reading the strings.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// A starter whose process takes typed fields.
pub(crate) fn typed_host() -> (WebhookStarter, Arc<InMemoryEngine>, EnvironmentToken) {
    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(
        uuid(ORDER_INTAKE),
        acme.clone(),
        "Order intake",
    ));
    models.deploy(Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(1),
        production.clone(),
        StartForm::new([
            FieldSpec::mandatory("name", FieldKind::Text),
            FieldSpec::mandatory("quantity", FieldKind::Integer),
            FieldSpec::optional("amount", FieldKind::Number),
            FieldSpec::optional("express", FieldKind::Boolean),
            FieldSpec::optional("deliveryDate", FieldKind::Date),
            FieldSpec::optional("tags", FieldKind::Array),
        ]),
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    let engine = Arc::new(InMemoryEngine::new());
    (WebhookStarter::new(models, tokens, engine.clone()), engine, token)
}

async fn post_form(starter: &WebhookStarter, token: &EnvironmentToken, body: &str) -> HttpReply {
    let auth = format!("Bearer {}", token.expose_secret());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    starter
        .handle(
            &target,
            [("authorization", auth.as_str()), ("content-type", FORM)],
            body.as_bytes(),
        )
        .await
}

#[tokio::test]
async fn the_documented_call_as_a_form_starts_with_its_strings() {
    let world = World::new();
    let starter = world.starter();
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [
                ("authorization", world.bearer()),
                ("content-type", format!("{FORM}; charset=utf-8")),
            ],
            b"customerName=John+Doe&orderNumber=123456&productCode=ABC%20123",
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let variables = &world.engine.started()[0].command.variables;
    assert_eq!(
        Value::Object(variables.clone()),
        json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC 123"})
    );
}

#[tokio::test]
async fn the_start_form_s_kinds_read_a_form_s_strings_and_a_repeated_name_is_an_array() {
    let (starter, engine, token) = typed_host();
    let body =
        "name=J%C3%BCrgen&quantity=3&amount=12.5&express=true&deliveryDate=2024-02-29&tags=a&tags=b&tags=a";
    let reply = post_form(&starter, &token, body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(
        Value::Object(engine.started()[0].command.variables.clone()),
        json!({
            "name": "Jürgen", "quantity": 3, "amount": 12.5, "express": true,
            "deliveryDate": "2024-02-29", "tags": ["a", "b", "a"],
        })
    );
}

#[tokio::test]
async fn a_string_that_does_not_read_as_its_kind_is_the_wrong_type_and_starts_nothing() {
    let (starter, engine, token) = typed_host();
    let reply = post_form(
        &starter,
        &token,
        "name=x&quantity=three&express=yes&deliveryDate=2023-02-29",
    )
    .await;
    let problem = assert_reply(&reply, 422, "invalid_payload");
    let fields: Vec<(&str, &str)> = problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["field"].as_str().unwrap(), v["problem"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("quantity", "wrong_type"),
            ("express", "wrong_type"),
            ("deliveryDate", "wrong_type")
        ]
    );
    // A name given once is a string: the array field refuses it.
    let reply = post_form(&starter, &token, "name=x&quantity=1&tags=only-one").await;
    assert_reply(&reply, 422, "invalid_payload");
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn a_form_counts_against_the_value_limit_and_is_never_an_envelope() {
    let (starter, engine, token) = typed_host();
    let limited = starter.clone().with_max_json_values(4);
    let reply = post_form(&limited, &token, "name=x&quantity=1&amount=2").await;
    assert_reply(&reply, 413, "payload_too_large");
    assert_eq!(
        post_form(&limited, &token, "name=x&quantity=1").await.status(),
        202
    );

    // Without a token on the request, a form cannot carry one.
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let envelope = format!("headers=authorization%3D{}&payload=x", token.expose_secret());
    let reply = starter
        .handle(&target, [("content-type", FORM)], envelope.as_bytes())
        .await;
    assert_reply(&reply, 401, "missing_token");
    // An empty form is an empty payload: the mandatory fields are missing.
    assert_reply(&post_form(&starter, &token, "").await, 422, "invalid_payload");
    assert_eq!(engine.started().len(), 1);
}

#[test]
fn from_parts_reads_a_form_as_strings() {
    let request = WebhookStartRequest::from_parts(
        &format!("/webhook/send?uid={ORDER_INTAKE}"),
        [("authorization", "Bearer s3cr3t"), ("content-type", FORM)],
        b"quantity=3&tags=a&tags=b",
    )
    .unwrap();
    assert_eq!(
        Value::Object(request.payload().clone()),
        json!({"quantity": "3", "tags": ["a", "b"]})
    );
}

#[tokio::test]
async fn json_sent_as_a_form_is_415_saying_which_content_type_to_send_and_starts_nothing() {
    let (starter, engine, token) = typed_host();
    // What `curl -d '{…}'` sends without `-H content-type`: the JSON as
    // the body of a form (a `&` or `=` in it splits no field).
    for body in [
        r#"{"name": "x", "quantity": 1}"#,
        r#"  {"name": "a&b=c", "quantity": 1}"#,
        r#"[{"name": "x"}]"#,
        "%7B%22name%22%3A%22x%22%7D",
    ] {
        let reply = post_form(&starter, &token, body).await;
        assert_reply(&reply, 415, "unsupported_media_type");
        let problem: Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(
            problem["detail"],
            "the body is JSON but was sent as a form (`application/x-www-form-urlencoded`, curl's \
             default for -d): send `content-type: application/json`",
            "{body}"
        );
        assert!(
            reply
                .header("accept-post")
                .is_some_and(|a| a.starts_with("application/json"))
        );
    }
    // `from_parts` reads a call the same way.
    let error = WebhookStartRequest::from_parts(
        &format!("/webhook/send?uid={ORDER_INTAKE}"),
        [("authorization", "Bearer s3cr3t"), ("content-type", FORM)],
        br#"{"quantity": 3}"#,
    )
    .unwrap_err();
    assert_eq!((error.status(), error.code()), (415, "unsupported_media_type"));
    assert!(engine.started().is_empty());
    // A form whose field holds JSON as its value is a form; so is one
    // that only starts like JSON, and one that is a JSON scalar.
    let reply = post_form(&starter, &token, "name=%7B%7D&quantity=1").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(engine.started()[0].command.variables["name"], "{}");
    let reply = post_form(&starter, &token, "{x=1&name=a&quantity=2").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(engine.started()[1].command.variables["{x"], "1");
    let reply = post_form(&starter, &token, "42").await;
    assert_reply(&reply, 422, "invalid_payload");
    assert_eq!(engine.started().len(), 2);
}
