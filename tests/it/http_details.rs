//! HTTP as the RFCs have it: challenges on 401, HEAD and OPTIONS, media
//! types, applied preferences; and integers as engines store them.

use crate::common;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

#[tokio::test]
async fn every_401_says_how_to_authenticate() {
    let world = World::new();
    let starter = world.starter();
    let missing = starter
        .handle(&target(), [("content-type", "application/json")], &body())
        .await;
    assert_reply(&missing, 401, "missing_token");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="process-webhook""#)
    );
    let wrong = starter
        .handle(&target(), [("authorization", "Bearer nope")], &body())
        .await;
    assert_reply(&wrong, 401, "invalid_token");
    assert_eq!(
        wrong.header("www-authenticate"),
        Some(r#"Bearer realm="process-webhook", error="invalid_token""#)
    );
    let ok = starter
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(ok.status(), 202);
    assert_eq!(ok.header("www-authenticate"), None);
}

#[tokio::test]
async fn head_answers_like_get_without_a_body_and_options_lists_the_methods() {
    let world = World::new();
    let starter = world.starter();
    let auth = [("authorization", world.bearer())];
    let get = starter.handle_method("GET", &target(), auth.clone(), b"").await;
    let head = starter.handle_method("HEAD", &target(), auth.clone(), b"").await;
    assert_eq!((get.status(), head.status()), (200, 200));
    assert_eq!(head.content_type(), "application/schema+json");
    assert!(!get.body().is_empty());
    assert!(head.body().is_empty());
    // HEAD is authenticated like GET.
    let head = starter
        .handle_method("HEAD", &target(), [("authorization", "x")], b"")
        .await;
    assert_eq!(head.status(), 401);

    let options = starter
        .handle_method("OPTIONS", &target(), common_no_headers(), b"")
        .await;
    assert_eq!(options.status(), 204);
    assert_eq!(options.header("allow"), Some("GET, HEAD, OPTIONS, POST"));
    assert!(options.body().is_empty());
    assert_eq!(world.started(), 0);
}

fn common_no_headers() -> [(&'static str, &'static str); 0] {
    []
}

#[tokio::test]
async fn a_body_declared_as_neither_json_nor_a_form_is_415() {
    let world = World::new();
    let starter = world.starter();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencodedx",
        #[cfg(not(feature = "multipart"))]
        "multipart/form-data; boundary=x",
        "multipart/mixed; boundary=x",
        "json",
        "application/jsonp",
        // A suffix needs a name before it.
        "application/+json",
        // Not ASCII: refused, never a panic on a character's middle byte.
        "application/a€bcd",
    ] {
        let reply = starter
            .handle(
                &target(),
                [
                    ("authorization", world.bearer()),
                    ("content-type", content_type.into()),
                ],
                &body(),
            )
            .await;
        assert_reply(&reply, 415, "unsupported_media_type");
        let accepted = if cfg!(feature = "multipart") {
            "application/json, application/x-www-form-urlencoded, multipart/form-data"
        } else {
            "application/json, application/x-www-form-urlencoded"
        };
        assert_eq!(reply.header("accept-post"), Some(accepted), "{content_type}");
    }
    for content_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/vnd.acme+json",
        "text/x-order+JSON",
    ] {
        let mut payload = order_payload();
        payload.insert("orderNumber".into(), json!(content_type));
        let reply = starter
            .handle(
                &target(),
                [
                    ("authorization", world.bearer()),
                    ("content-type", content_type.into()),
                ],
                &serde_json::to_vec(&payload).unwrap(),
            )
            .await;
        assert_eq!(reply.status(), 202, "{content_type}");
    }
    // No content type at all: accepted.
    let reply = starter
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(world.started(), 5);
    let err = WebhookStartRequest::from_parts(&target(), [("content-type", "text/csv")], b"a,b").unwrap_err();
    assert_eq!((err.status(), err.code()), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn a_dry_run_says_the_preference_was_applied() {
    let world = World::new();
    let reply = world
        .starter()
        .handle(
            &target(),
            [("authorization", world.bearer()), ("prefer", "dry-run".into())],
            &body(),
        )
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.header("preference-applied"), Some("dry-run"));
    let start = world
        .starter()
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    assert_eq!(start.header("preference-applied"), None);
}

#[tokio::test]
async fn integers_written_as_floats_reach_the_engine_as_integers_and_too_large_ones_are_refused() {
    let world = World::new();
    let start = |quantity: &str| {
        let mut text = serde_json::to_string(&typed_payload()).unwrap();
        text = text.replace("\"quantity\":3", &format!("\"quantity\":{quantity}"));
        world.request(TYPED, serde_json::from_str(&text).unwrap())
    };
    for (sent, expected) in [
        ("1.0", json!(1)),
        ("1e3", json!(1000)),
        ("-2E2", json!(-200)),
        ("9223372036854775807", json!(i64::MAX)),
        // -2^63 written as a float: the smallest i64, exactly.
        ("-9.223372036854775808e18", json!(i64::MIN)),
    ] {
        world
            .start(start(sent))
            .await
            .unwrap_or_else(|e| panic!("{sent}: {e}"));
        let started = world.engine.started();
        let variables = &started.last().unwrap().command.variables;
        assert_eq!(variables["quantity"], expected, "{sent}");
        assert!(
            variables["quantity"].is_i64(),
            "{sent} is an integer, not a float"
        );
    }
    // 2^63 written as a float is one past the largest i64.
    for sent in [
        "9223372036854775808",
        "9.223372036854775808e18",
        "1e19",
        "-1e19",
        "18446744073709551615",
    ] {
        let err = assert_refused(world.start(start(sent)).await, 422, "invalid_payload");
        let violation = &err.violations()[0];
        assert_eq!(
            (violation.field(), violation.violation().code()),
            ("quantity", "out_of_range"),
            "{sent}"
        );
        assert!(violation.to_string().contains("9223372036854775807"));
    }
    assert_eq!(world.started(), 5);
}

#[test]
fn the_schema_puts_string_keywords_only_on_fields_that_may_be_strings() {
    let schema = typed_form().json_schema();
    let properties = schema["properties"].as_object().unwrap();
    for (name, field) in properties {
        let types: Vec<&str> = match &field["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![], // any type
        };
        let may_be_string = types.is_empty() || types.contains(&"string");
        assert_eq!(
            field.get("pattern").is_some(),
            may_be_string && TYPED_MANDATORY.contains(&name.as_str()),
            "{name}: {field}"
        );
    }
    assert_eq!(properties["quantity"]["maximum"], json!(i64::MAX));
    assert_eq!(properties["quantity"]["minimum"], json!(i64::MIN));
}
