//! A table of bad calls through `WebhookStarter::handle`: each gets its
//! documented status and code, none panics, none reaches the engine.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;

const T: &str = "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555";
const GOOD: &str = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;

struct Case {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn cases(world: &World) -> Vec<Case> {
    let auth = || vec![("authorization".to_owned(), world.bearer())];
    let with = |extra: &[(&str, &str)]| {
        let mut headers = auth();
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        headers
    };
    let case = |name, target: &str, headers: Vec<(String, String)>, body: &[u8], status, code| Case {
        name,
        method: "POST",
        target: target.to_owned(),
        headers,
        body: body.to_vec(),
        status,
        code,
    };
    let deep_object = format!("{}1{}", "{\"a\":".repeat(1_000), "}".repeat(1_000));
    let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(1_000), "]".repeat(1_000));
    let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let long_key = "k".repeat(256);
    let mut all = vec![
        // Targets.
        case(
            "no query",
            "/webhook/send",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "empty query",
            "/webhook/send?",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "empty uid",
            "/webhook/send?uid=",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "blank uid",
            "/webhook/send?uid=+",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "other parameter only",
            "/webhook/send?id=1",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case("empty target", "", auth(), GOOD.as_bytes(), 400, "missing_uid"),
        case(
            "uid in the fragment",
            "/x#?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "number uid",
            "/webhook/send?uid=42",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "short uid",
            "/webhook/send?uid=dd9759e0-cc94-11ed-938f",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "uid with junk",
            "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555;drop",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "uid of bad percent bytes",
            "/webhook/send?uid=%FF%00",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "two uids",
            &format!("{T}&uid=dd9759e0-cc94-11ed-938f-13cf60270555"),
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "uid of line breaks only",
            "/webhook/send?uid=%0a%0d",
            auth(),
            GOOD.as_bytes(),
            400,
            "missing_uid",
        ),
        case(
            "uid of control characters",
            "/webhook/send?uid=%01%02",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        case(
            "unicode uid",
            "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf6027055\u{0665}",
            auth(),
            GOOD.as_bytes(),
            400,
            "invalid_uid",
        ),
        // Tokens.
        case(
            "no authorization",
            T,
            vec![],
            GOOD.as_bytes(),
            401,
            "missing_token",
        ),
        case(
            "empty authorization",
            T,
            vec![("authorization".into(), "".into())],
            GOOD.as_bytes(),
            401,
            "missing_token",
        ),
        case(
            "bearer without token",
            T,
            vec![("authorization".into(), "Bearer ".into())],
            GOOD.as_bytes(),
            401,
            "missing_token",
        ),
        case(
            "unknown token",
            T,
            vec![("authorization".into(), "Bearer nope".into())],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "token with wrong case",
            T,
            vec![("authorization".into(), world.token.expose_secret().to_uppercase())],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "token with a suffix",
            T,
            vec![(
                "authorization".into(),
                format!("{}x", world.token.expose_secret()),
            )],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "basic scheme",
            T,
            vec![(
                "authorization".into(),
                format!("Basic {}", world.token.expose_secret()),
            )],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "token of control bytes",
            T,
            vec![("authorization".into(), "\u{0}\u{1}\u{7f}".into())],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "megabyte token",
            T,
            vec![("authorization".into(), "t".repeat(1 << 20))],
            GOOD.as_bytes(),
            401,
            "invalid_token",
        ),
        case(
            "two authorizations",
            T,
            with(&[("Authorization", "Bearer other")]),
            GOOD.as_bytes(),
            400,
            "duplicate_header",
        ),
        // Idempotency keys.
        case(
            "empty key",
            T,
            with(&[("idempotency-key", "")]),
            GOOD.as_bytes(),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "key too long",
            T,
            with(&[("idempotency-key", &long_key)]),
            GOOD.as_bytes(),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "key with a tab",
            T,
            with(&[("idempotency-key", "a\tb")]),
            GOOD.as_bytes(),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "key with a newline",
            T,
            with(&[("idempotency-key", "a\nb")]),
            GOOD.as_bytes(),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "non-ascii key",
            T,
            with(&[("idempotency-key", "schlüssel")]),
            GOOD.as_bytes(),
            400,
            "invalid_idempotency_key",
        ),
        case(
            "two keys",
            T,
            with(&[("idempotency-key", "a"), ("IDEMPOTENCY-KEY", "b")]),
            GOOD.as_bytes(),
            400,
            "duplicate_header",
        ),
        // Bodies.
        case(
            "not json",
            T,
            auth(),
            b"customerName=John",
            400,
            "malformed_payload",
        ),
        case("array", T, auth(), b"[]", 400, "malformed_payload"),
        case("string", T, auth(), b"\"John\"", 400, "malformed_payload"),
        case("number", T, auth(), b"1e999", 400, "malformed_payload"),
        case("null", T, auth(), b"null", 400, "malformed_payload"),
        case(
            "truncated",
            T,
            auth(),
            b"{\"customerName\": \"Jo",
            400,
            "malformed_payload",
        ),
        case("trailing garbage", T, auth(), b"{} {}", 400, "malformed_payload"),
        case(
            "invalid utf-8",
            T,
            auth(),
            b"{\"customerName\": \"\xff\xfe\"}",
            400,
            "malformed_payload",
        ),
        case(
            "lone surrogate escape",
            T,
            auth(),
            br#"{"customerName": "\ud800"}"#,
            400,
            "malformed_payload",
        ),
        case(
            "utf-16 bom",
            T,
            auth(),
            b"\xfe\xff\x00{\x00}",
            400,
            "malformed_payload",
        ),
        case(
            "deeply nested object",
            T,
            auth(),
            deep_object.as_bytes(),
            400,
            "malformed_payload",
        ),
        case(
            "deeply nested array",
            T,
            auth(),
            deep_array.as_bytes(),
            400,
            "malformed_payload",
        ),
        case("nul bytes", T, auth(), b"\0\0\0\0", 400, "malformed_payload"),
        case(
            "over the limit",
            T,
            auth(),
            huge.as_bytes(),
            413,
            "payload_too_large",
        ),
        // Start rules.
        case("empty object", T, auth(), b"{}", 422, "invalid_payload"),
        case("empty body", T, auth(), b"", 422, "invalid_payload"),
        case(
            "blank mandatory fields",
            T,
            auth(),
            br#"{"customerName": " ", "orderNumber": "\t", "productCode": "\n"}"#,
            422,
            "invalid_payload",
        ),
        case(
            "null mandatory fields",
            T,
            auth(),
            br#"{"customerName": null, "orderNumber": null, "productCode": null}"#,
            422,
            "invalid_payload",
        ),
        case(
            "wrong kinds",
            T,
            auth(),
            br#"{"customerName": 1, "orderNumber": [], "productCode": {}}"#,
            422,
            "invalid_payload",
        ),
        case(
            "draft process",
            &webhook_url("/webhook/send", &uuid(DRAFT_ONLY)),
            auth(),
            GOOD.as_bytes(),
            409,
            "draft_version",
        ),
        case(
            "undeployed process",
            &webhook_url("/webhook/send", &uuid(UNDEPLOYED)),
            auth(),
            GOOD.as_bytes(),
            409,
            "not_deployed",
        ),
        case(
            "unknown process",
            "/webhook/send?uid=00000000-0000-0000-0000-000000000000",
            auth(),
            GOOD.as_bytes(),
            404,
            "unknown_process",
        ),
        case(
            "another organization's process",
            &webhook_url("/webhook/send", &uuid(FOREIGN)),
            auth(),
            GOOD.as_bytes(),
            404,
            "unknown_process",
        ),
        case(
            "dry run of a draft",
            &webhook_url("/webhook/send", &uuid(DRAFT_ONLY)),
            with(&[("prefer", "dry-run")]),
            GOOD.as_bytes(),
            409,
            "draft_version",
        ),
    ];
    for method in ["PUT", "DELETE", "PATCH", "CONNECT", "TRACE", "", "P\u{0}ST"] {
        all.push(Case {
            method,
            ..case(
                "other method",
                T,
                auth(),
                GOOD.as_bytes(),
                405,
                "method_not_allowed",
            )
        });
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_call_gets_its_documented_answer_and_starts_nothing() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let cases = cases(&world);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in &cases {
        let headers = case.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let reply = starter
            .handle_method(case.method, &case.target, headers, &case.body)
            .await;
        let doc: serde_json::Value = serde_json::from_slice(reply.body())
            .unwrap_or_else(|e| panic!("{}: the body is not JSON: {e}", case.name));
        assert_eq!(
            (reply.status(), doc["code"].as_str()),
            (case.status, Some(case.code)),
            "{}: {doc}",
            case.name
        );
        assert_eq!(reply.content_type(), "application/problem+json", "{}", case.name);
        assert_eq!(world.started(), 0, "{} reached the engine", case.name);
    }
    // The world still works after all of it.
    let reply = starter
        .handle(T, [("authorization", world.bearer())], GOOD.as_bytes())
        .await;
    assert_eq!(reply.status(), 202);
}
