//! The webhook describes itself: a `GET` with `Accept:
//! application/vnd.oai.openapi+json` answers an OpenAPI 3.1 document of the
//! process's webhook, which a validator from PyPI (`openapi-spec-validator`,
//! in the Python of `OPENAPI_PYTHON`) accepts, and which describes every
//! answer the webhook gives.

use crate::common;

use std::sync::Arc;

use common::*;
use process_webhook::*;
use serde_json::{Value, json};

const TARGET: &str = "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555";
const DRAFT_TARGET: &str = "/webhook/send?uid=6f1d0c3a-2b4e-4c5d-8e9f-0a1b2c3d4e5f";
const OPENAPI: &str = "application/vnd.oai.openapi+json";

fn json_of(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).expect("a JSON body")
}

async fn document(starter: &WebhookStarter, world: &World, target: &str) -> Value {
    let reply = starter
        .handle_method(
            "GET",
            target,
            [("authorization", world.bearer()), ("accept", OPENAPI.to_owned())],
            b"",
        )
        .await;
    assert_eq!(reply.status(), 200, "{:?}", String::from_utf8_lossy(reply.body()));
    assert_eq!(reply.content_type(), OPENAPI);
    json_of(&reply)
}

/// The schema at `pointer` in `document`, as a validator that resolves the
/// document's own `$ref`s.
fn validator_at(document: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = document.clone();
    root["$ref"] = json!(format!("#{pointer}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("the document's schemas compile")
}

/// Asserts that `document` describes `reply` to a call of `method`: its
/// status is listed, its media type too, and its body is valid by the
/// schema listed there.
#[track_caller]
fn assert_described(document: &Value, method: &str, reply: &HttpReply) {
    let status = reply.status().to_string();
    let answer = &document["paths"]["/webhook/send"][method]["responses"][&status];
    assert!(answer.is_object(), "{method} {status} is not in the document");
    let media = reply.content_type();
    let content = &answer["content"][media];
    assert!(
        content.is_object(),
        "{method} {status} {media} is not in the document"
    );
    let pointer = format!(
        "/paths/~1webhook~1send/{method}/responses/{status}/content/{}/schema",
        media.replace('~', "~0").replace('/', "~1")
    );
    let body = json_of(reply);
    let validator = validator_at(document, &pointer);
    let errors: Vec<String> = validator.iter_errors(&body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {status}: {body} does not match: {errors:?}"
    );
    // Each header the document lists: there when required, and as its
    // schema says when there.
    for (name, header) in answer["headers"].as_object().into_iter().flatten() {
        let sent = reply.header(&name.to_ascii_lowercase());
        if header["required"] == true {
            assert!(
                sent.is_some(),
                "{method} {status}: the required {name} is missing"
            );
        }
        if let Some(sent) = sent {
            let schema = validator_at(
                document,
                &format!("/paths/~1webhook~1send/{method}/responses/{status}/headers/{name}/schema"),
            );
            assert!(
                schema.is_valid(&json!(sent)),
                "{method} {status}: {name}: {sent:?}"
            );
        }
    }
}

#[tokio::test]
async fn get_asking_for_openapi_answers_the_document_of_the_process_as_deployed() {
    let world = World::new();
    let starter = world.starter();
    let document = document(&starter, &world, TARGET).await;
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], "2");
    let post = &document["paths"]["/webhook/send"]["post"];
    assert_eq!(post["parameters"][0]["name"], "uid");
    assert_eq!(post["parameters"][0]["schema"]["enum"], json!([ORDER_INTAKE]));
    let mut schema = order_form().json_schema();
    schema.as_object_mut().unwrap().remove("$schema");
    assert_eq!(document["components"]["schemas"]["StartPayload"], schema);
    for status in [
        "200", "202", "400", "401", "404", "409", "413", "415", "422", "500", "502", "503",
    ] {
        assert!(post["responses"][status].is_object(), "POST {status}");
    }
    // No idempotency store, no rate limit, no signing secrets: not described.
    let codes_409 = &post["responses"]["409"]["content"]["application/problem+json"]["schema"]["properties"]
        ["code"]["enum"];
    assert_eq!(codes_409, &json!(["not_deployed", "draft_version"]));
    assert!(post["responses"]["429"]["content"]["application/problem+json"]["schema"]["properties"]["code"]["enum"]
        .as_array()
        .is_some_and(|codes| !codes.contains(&json!("rate_limited"))));
    let headers: Vec<&str> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(headers, ["uid", "Idempotency-Key", "Prefer"]);
    assert_eq!(
        document["paths"]["/webhook/send"]["options"]["security"],
        json!([])
    );
    // Nothing was started by describing.
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn without_accept_asking_for_it_get_answers_the_payload_schema_as_before() {
    let world = World::new();
    let starter = world.starter();
    for accept in [
        None,
        Some("application/json"),
        Some("application/vnd.oai.openapi+json;q=0"),
    ] {
        let mut headers = vec![("authorization", world.bearer())];
        if let Some(accept) = accept {
            headers.push(("accept", accept.to_owned()));
        }
        let reply = starter.handle_method("GET", TARGET, headers, b"").await;
        assert_eq!(reply.status(), 200, "{accept:?}");
        assert_eq!(reply.content_type(), "application/schema+json", "{accept:?}");
        assert_eq!(json_of(&reply), order_form().json_schema(), "{accept:?}");
    }
    // Among other media types, at any weight above zero, in any case.
    let reply = starter
        .handle_method(
            "GET",
            TARGET,
            [
                ("authorization", world.bearer()),
                (
                    "Accept",
                    "application/json;q=0.5, Application/VND.OAI.OpenAPI+JSON;q=0.9".to_owned(),
                ),
            ],
            b"",
        )
        .await;
    assert_eq!(reply.content_type(), OPENAPI);
}

#[tokio::test]
async fn head_answers_the_documents_headers_without_its_body() {
    let world = World::new();
    let reply = world
        .starter()
        .handle_method(
            "HEAD",
            TARGET,
            [("authorization", world.bearer()), ("accept", OPENAPI.to_owned())],
            b"",
        )
        .await;
    assert_eq!((reply.status(), reply.content_type()), (200, OPENAPI));
    assert!(reply.body().is_empty());
}

#[tokio::test]
async fn the_document_is_refused_as_the_schema_is_without_a_valid_token() {
    let world = World::new();
    let starter = world.starter();
    let reply = starter
        .handle_method("GET", TARGET, [("accept", OPENAPI)], b"")
        .await;
    assert_reply(&reply, 401, "missing_token");
    let reply = starter
        .handle_method(
            "GET",
            TARGET,
            [("authorization", "Bearer not-a-token"), ("accept", OPENAPI)],
            b"",
        )
        .await;
    assert_reply(&reply, 401, "invalid_token");
    let reply = starter
        .handle_method(
            "GET",
            "/webhook/send?uid=0b7e4f1c-9d2a-4e3b-8c5d-6e7f8091a2b3",
            [("authorization", world.bearer()), ("accept", OPENAPI.to_owned())],
            b"",
        )
        .await;
    assert_reply(&reply, 409, "not_deployed");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_draft_is_described_as_served_every_post_answers_draft_version() {
    let world = World::new();
    let starter = world.starter();
    let document = document(&starter, &world, DRAFT_TARGET).await;
    assert_eq!(document["info"]["version"], "draft");
    let responses = &document["paths"]["/webhook/send"]["post"]["responses"];
    for status in ["200", "202", "422", "502"] {
        assert!(
            responses.get(status).is_none(),
            "a draft's POST never answers {status}"
        );
    }
    let reply = starter
        .handle_method(
            "POST",
            DRAFT_TARGET,
            [("authorization", world.bearer())],
            br#"{"customerName":"x"}"#,
        )
        .await;
    assert_reply(&reply, 409, "draft_version");
    assert_described(&document, "post", &reply);
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn a_redeploy_with_another_form_changes_the_body_schema_of_the_next_document() {
    let world = World::new();
    let starter = world.starter();
    let before = document(&starter, &world, TARGET).await;
    world.models.deploy(Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(3),
        EnvironmentId::new("production"),
        StartForm::new([FieldSpec::mandatory("invoiceId", FieldKind::Integer)]),
    ));
    let after = document(&starter, &world, TARGET).await;
    assert_ne!(
        before["components"]["schemas"]["StartPayload"],
        after["components"]["schemas"]["StartPayload"]
    );
    assert_eq!(after["info"]["version"], "3");
    assert_eq!(
        after["components"]["schemas"]["StartPayload"]["required"],
        json!(["invoiceId"])
    );
    assert_eq!(
        after["components"]["schemas"]["StartPayload"]["properties"]["invoiceId"]["type"],
        "integer"
    );
}

#[tokio::test]
async fn the_starters_options_and_the_environments_secrets_are_described() {
    let world = World::new();
    let secret = SigningSecret::generate();
    world.tokens.insert(
        &world.token,
        Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
            .with_signing_secret(secret.clone()),
    );
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
        .with_rate_limit(
            Arc::new(InMemoryRateLimiter::new()),
            RateLimitPolicy::default().with_per_environment(Quota::per_minute(100)),
        );
    let id = "msg_openapi";
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = |body: &[u8]| {
        vec![
            ("authorization", world.bearer()),
            ("accept", OPENAPI.to_owned()),
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", secret.sign(id, ts, body)),
        ]
    };
    let reply = starter.handle_method("GET", TARGET, signed(b""), b"").await;
    assert_eq!(reply.status(), 200);
    let document = json_of(&reply);
    let post = &document["paths"]["/webhook/send"]["post"];
    let names: Vec<&str> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "uid",
            "Idempotency-Key",
            "Prefer",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature"
        ]
    );
    let problem = |status: &str| {
        post["responses"][status]["content"]["application/problem+json"]["schema"]["properties"]["code"]["enum"].clone()
    };
    assert_eq!(
        problem("401"),
        json!([
            "missing_token",
            "invalid_token",
            "invalid_signature",
            "stale_timestamp"
        ])
    );
    assert_eq!(
        problem("409"),
        json!(["not_deployed", "draft_version", "start_in_progress"])
    );
    assert_eq!(problem("429"), json!(["rate_limited", "engine_overloaded"]));
    assert!(post["responses"]["202"]["headers"]["RateLimit"].is_object());
    assert!(post["responses"]["202"]["headers"]["idempotent-replayed"].is_object());
    assert!(post["responses"]["409"]["headers"]["Retry-After"].is_object());
    // An unsigned GET is refused, as a GET of the schema is.
    let reply = starter
        .handle_method(
            "GET",
            TARGET,
            [("authorization", world.bearer()), ("accept", OPENAPI.to_owned())],
            b"",
        )
        .await;
    assert_reply(&reply, 401, "invalid_signature");

    // The signed start, its replay and the refusals are each described.
    let body = serde_json::to_vec(&json!(order_payload())).unwrap();
    let mut headers = signed(&body);
    headers.push(("idempotency-key", "order-1".to_owned()));
    let first = starter
        .handle_method("POST", TARGET, headers.clone(), &body)
        .await;
    assert_eq!(first.status(), 202);
    assert_described(&document, "post", &first);
    let replay = starter.handle_method("POST", TARGET, headers, &body).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_described(&document, "post", &replay);
    let bad = br#"{"customerName": 5}"#;
    let refused = starter.handle_method("POST", TARGET, signed(bad), bad).await;
    assert_reply(&refused, 422, "invalid_payload");
    assert_described(&document, "post", &refused);
    let forged = starter.handle_method("POST", TARGET, signed(b"{}"), &body).await;
    assert_reply(&forged, 401, "invalid_signature");
    assert_described(&document, "post", &forged);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn dry_runs_and_refusals_of_an_unsigned_environment_are_described() {
    let world = World::new();
    let starter = world.starter();
    let document = document(&starter, &world, TARGET).await;
    let body = serde_json::to_vec(&json!(order_payload())).unwrap();
    let dry = starter
        .handle_method(
            "POST",
            TARGET,
            [
                ("authorization", world.bearer()),
                ("prefer", "dry-run".to_owned()),
            ],
            &body,
        )
        .await;
    assert_eq!(dry.status(), 200);
    assert_described(&document, "post", &dry);
    // The schemas do refuse what the webhook never answers.
    let outcome = validator_at(
        &document,
        "/paths/~1webhook~1send/post/responses/202/content/application~1json/schema",
    );
    assert!(!outcome.is_valid(&json!({"instanceId": 5})));
    assert!(!outcome.is_valid(&json_of(&dry)));
    for (headers, body, status) in [
        (vec![("authorization", world.bearer())], &b"{"[..], 400),
        (vec![("authorization", "Bearer wrong".to_owned())], &body[..], 401),
        (
            vec![
                ("authorization", world.bearer()),
                ("content-type", "text/plain".to_owned()),
            ],
            &body[..],
            415,
        ),
        (
            vec![
                ("authorization", world.bearer()),
                ("idempotency-key", "".to_owned()),
            ],
            &body[..],
            400,
        ),
    ] {
        let reply = starter.handle_method("POST", TARGET, headers, body).await;
        assert_eq!(reply.status(), status);
        assert_described(&document, "post", &reply);
    }
    let headers =
        |status: &str| document["paths"]["/webhook/send"]["post"]["responses"][status]["headers"].clone();
    assert_eq!(headers("401")["WWW-Authenticate"]["required"], true);
    assert_eq!(headers("415")["Accept-Post"]["required"], true);
    assert!(headers("400").get("WWW-Authenticate").is_none());
    let unknown = starter
        .handle_method(
            "GET",
            "/webhook/send?uid=00000000-0000-4000-8000-000000000000",
            [("authorization", world.bearer())],
            b"",
        )
        .await;
    assert_reply(&unknown, 404, "unknown_process");
    assert_described(&document, "get", &unknown);
    assert_eq!(world.started(), 0);
}

#[test]
fn the_documents_are_valid_openapi_3_1_by_openapi_spec_validator() {
    let Some(python) = server_setting(
        "OPENAPI_PYTHON",
        "OPENAPI_PYTHON=target/tools/openapi-venv/bin/python",
    ) else {
        return;
    };
    let uuid: ProcessUuid = ORDER_INTAKE.parse().unwrap();
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let signed = production.clone().with_signing_secret(SigningSecret::generate());
    let documents = [
        openapi_document_for(&order_deployment(2), &production, &OpenApiOptions::default()),
        openapi_document_for(
            &Deployment::new(uuid, VersionTag::Draft, production.id().clone(), typed_form()),
            &signed,
            &OpenApiOptions::new("/hooks").with_server("https://run.example.com"),
        ),
        openapi_document_for(
            &Deployment::new(
                uuid,
                VersionTag::Released(7),
                production.id().clone(),
                typed_form(),
            ),
            &signed,
            &OpenApiOptions::default()
                .with_idempotency_keys(true)
                .with_rate_limit(true)
                .with_waits(false)
                .with_envelopes(false),
        ),
    ];
    for document in documents {
        assert_valid_openapi(&python, &document);
    }
}

/// Asserts that openapi-spec-validator (in the Python of `python`) takes
/// `document` as OpenAPI 3.1.0.
pub(crate) fn assert_valid_openapi(python: &str, document: &serde_json::Value) {
    let output = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\n\
             spec = json.load(sys.stdin)\nvalidate(spec)\n\
             print(spec['openapi'])",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&serde_json::to_vec(&document).unwrap())?;
            child.wait_with_output()
        })
        .expect("the validator runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        serde_json::to_string_pretty(&document).unwrap()
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3.1.0");
}

#[tokio::test]
async fn a_host_asks_the_starter_for_the_document_of_its_own_path() {
    let world = World::new();
    let starter = world
        .starter()
        .with_envelope_bodies(false)
        .with_max_wait(std::time::Duration::ZERO);
    let document = starter
        .openapi_document(&uuid(ORDER_INTAKE), Some(&world.token), "/hooks/start")
        .await
        .unwrap();
    let post = &document["paths"]["/hooks/start"]["post"];
    assert_eq!(post["operationId"], "start");
    // No envelopes: the JSON body is the payload itself; no waits: `Prefer` says only `dry-run`.
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/StartPayload"})
    );
    let prefer = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Prefer")
        .unwrap();
    assert!(
        !prefer["description"].as_str().unwrap().contains("wait"),
        "{prefer}"
    );
    let codes = &post["responses"]["400"]["content"]["application/problem+json"]["schema"]["properties"]["code"]
        ["enum"];
    assert!(
        !codes.as_array().unwrap().contains(&json!("malformed_envelope")),
        "{codes}"
    );

    assert_refused(
        starter
            .openapi_document(&uuid(ORDER_INTAKE), None, "/hooks")
            .await,
        401,
        "missing_token",
    );
    assert_refused(
        starter
            .openapi_document(&uuid(UNDEPLOYED), Some(&world.token), "/hooks")
            .await,
        409,
        "not_deployed",
    );
    let draft = starter
        .openapi_document(&uuid(DRAFT_ONLY), Some(&world.token), "/hooks")
        .await
        .unwrap();
    assert_eq!(draft["info"]["version"], "draft");
}

#[test]
fn the_options_name_the_path_and_the_server() {
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let options = OpenApiOptions::new("/hooks").with_server("https://run.example.com");
    assert_eq!(options.path(), "/hooks");
    assert_eq!(OpenApiOptions::default().path(), "/webhook/send");
    let document = openapi_document_for(&order_deployment(2), &production, &options);
    assert_eq!(document["servers"], json!([{"url": "https://run.example.com"}]));
    assert!(document["paths"]["/hooks"]["post"].is_object());
    // Without a server, the document's own location is the server.
    let document = openapi_document_for(&order_deployment(2), &production, &OpenApiOptions::default());
    assert!(document.get("servers").is_none());
    assert!(document["paths"]["/webhook/send"]["get"].is_object());
}

#[tokio::test]
async fn a_form_that_names_payload_takes_its_bodies_as_they_are_and_the_document_says_so() {
    let world = World::new();
    world.models.deploy(Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(3),
        EnvironmentId::new("production"),
        StartForm::new([
            FieldSpec::mandatory("headers", FieldKind::Object),
            FieldSpec::mandatory("payload", FieldKind::Object),
        ]),
    ));
    let named = document(&world.starter(), &world, TARGET).await;
    let post = &named["paths"]["/webhook/send"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"],
        json!({"$ref": "#/components/schemas/StartPayload"}),
        "no envelope: such a body is the payload"
    );
    let codes = &post["responses"]["400"]["content"]["application/problem+json"]["schema"]["properties"]["code"]
        ["enum"];
    assert!(
        !codes.as_array().unwrap().contains(&json!("malformed_envelope")),
        "{codes}"
    );
    // And the default form's document has the envelope.
    let world = World::new();
    let document = document(&world.starter(), &world, TARGET).await;
    let body =
        &document["paths"]["/webhook/send"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["anyOf"][1], json!({"$ref": "#/components/schemas/Envelope"}));
}

/// Every `code` the document lists, over all its operations.
fn listed_codes(document: &Value) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(codes)) = map.get("code").and_then(|c| c.get("enum")) {
                    out.extend(codes.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(document, &mut out);
    out
}

/// The example order with another order number.
fn other_order() -> Vec<u8> {
    let mut payload = order_payload();
    payload.insert("orderNumber".into(), "654321".into());
    serde_json::to_vec(&payload).unwrap()
}

#[tokio::test]
async fn every_code_the_document_lists_is_one_a_call_gets() {
    use std::collections::BTreeSet;
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut got: BTreeSet<String> = BTreeSet::new();
    let mut note = |reply: HttpReply| {
        let doc = json_of(&reply);
        got.insert(doc["code"].as_str().unwrap_or_default().to_owned());
    };

    // The document of a starter with every option, in a signed environment.
    let world = World::new();
    let secret = SigningSecret::generate();
    world.tokens.insert(
        &world.token,
        Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
            .with_signing_secret(secret.clone()),
    );
    let keys = Arc::new(InMemoryIdempotencyStore::new());
    let options = |starter: WebhookStarter| {
        starter
            .with_body_limit(4096)
            .with_rate_limit(
                Arc::new(InMemoryRateLimiter::new()),
                RateLimitPolicy::default().with_per_environment(Quota::per_minute(1_000)),
            )
            .with_idempotency(keys.clone())
            .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Fallback)
    };
    let signed_starter = options(world.starter());
    let signed = |body: &[u8], ts: i64| {
        vec![
            ("authorization", world.bearer()),
            ("webhook-id", "msg_codes".to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", secret.sign("msg_codes", ts, body)),
        ]
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A signed environment's document is served to a signed GET.
    let mut asking = signed(b"", now);
    asking.push(("accept", OPENAPI.to_owned()));
    let reply = signed_starter.handle_method("GET", &target, asking, b"").await;
    assert_eq!(reply.status(), 200);
    let mut listed = listed_codes(&json_of(&reply));
    note(
        signed_starter
            .handle(&target, [("authorization", world.bearer())], &body)
            .await,
    );
    note(
        signed_starter
            .handle(&target, signed(&body, now - 3600), &body)
            .await,
    );

    // The rest in an unsigned environment that starts the process.
    let world = World::new();
    let dev = || ("authorization", world.bearer());
    let starter = options(world.starter());
    listed.extend(listed_codes(
        &starter
            .openapi_document(&uuid(ORDER_INTAKE), Some(&world.token), "/webhook/send")
            .await
            .unwrap(),
    ));
    let post = |target: String, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let starter = starter.clone();
        async move { starter.handle(&target, headers, &body).await }
    };
    note(post("/webhook/send".into(), vec![dev()], body.clone()).await);
    note(post("/webhook/send?uid=nope".into(), vec![dev()], body.clone()).await);
    note(post(target.clone(), vec![dev(), dev()], body.clone()).await);
    note(
        post(
            target.clone(),
            vec![dev(), ("idempotency-key", String::new())],
            body.clone(),
        )
        .await,
    );
    note(post(target.clone(), vec![dev()], b"not json".to_vec()).await);
    let envelope = serde_json::json!({"headers": {"authorization": "another"}, "payload": {}});
    note(post(target.clone(), vec![dev()], envelope.to_string().into_bytes()).await);
    note(post(target.clone(), vec![], body.clone()).await);
    note(
        post(
            target.clone(),
            vec![("authorization", "wrong".into())],
            body.clone(),
        )
        .await,
    );
    note(
        post(
            webhook_url("/webhook/send", &uuid("00000000-0000-4000-8000-000000000000")),
            vec![dev()],
            body.clone(),
        )
        .await,
    );
    note(
        post(
            webhook_url("/webhook/send", &uuid(UNDEPLOYED)),
            vec![dev()],
            body.clone(),
        )
        .await,
    );
    note(
        post(
            webhook_url("/webhook/send", &uuid(DRAFT_ONLY)),
            vec![dev()],
            body.clone(),
        )
        .await,
    );
    note(post(target.clone(), vec![dev()], vec![b' '; 5000]).await);
    note(
        post(
            target.clone(),
            vec![dev(), ("content-type", "text/plain".into())],
            body.clone(),
        )
        .await,
    );
    let multipart =
        "--b\r\ncontent-disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nx\r\n--b--\r\n";
    note(
        post(
            target.clone(),
            vec![dev(), ("content-type", "multipart/form-data; boundary=b".into())],
            multipart.into(),
        )
        .await,
    );
    note(post(target.clone(), vec![dev()], b"{}".to_vec()).await);
    let keyed = || vec![dev(), ("idempotency-key", "k-codes".to_owned())];
    assert_eq!(post(target.clone(), keyed(), body.clone()).await.status(), 202);
    note(post(target.clone(), keyed(), other_order()).await);
    // A start whose key is held by a start still running.
    let held = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "k-held");
    keys.reserve(&held, PayloadFingerprint::of(&order_payload()))
        .await
        .unwrap();
    note(
        post(
            target.clone(),
            vec![dev(), ("idempotency-key", "k-held".into())],
            body.clone(),
        )
        .await,
    );

    // A limit of one call, a full key store, engines that fail each way,
    // a store that fails.
    let limited = world.starter().with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(1)),
    );
    limited.handle(&target, [dev()], &body).await;
    note(limited.handle(&target, [dev()], &body).await);
    let full = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new().with_capacity(1)));
    let first = full
        .handle(&target, [dev(), ("idempotency-key", "k-first".into())], &body)
        .await;
    assert_eq!(first.status(), 202);
    note(
        full.handle(&target, [dev(), ("idempotency-key", "k-full".into())], &body)
            .await,
    );
    let failures: [fn() -> EngineError; 3] = [
        || EngineError::overloaded("busy"),
        || EngineError::unavailable("down"),
        || EngineError::new("refused"),
    ];
    for error in failures {
        let engine = Arc::new(FlakyEngine::failing(1, error));
        let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine);
        note(starter.handle(&target, [dev()], &body).await);
    }
    // An inbox with no room: a start the engine could not take is refused.
    let away = Arc::new(FlakyEngine::failing(1, || EngineError::unavailable("down")));
    let no_room = WebhookStarter::new(world.models.clone(), world.tokens.clone(), away)
        .with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Fallback)
        .with_inbox_limit(0);
    note(no_room.handle(&target, [dev()], &body).await);
    let panicking = WebhookStarter::new(
        world.models.clone(),
        world.tokens.clone(),
        Arc::new(FlakyEngine::panicking()),
    );
    note(panicking.handle(&target, [dev()], &body).await);
    let broken = WebhookStarter::new(Arc::new(BrokenStore), world.tokens.clone(), world.engine.clone());
    note(broken.handle(&target, [dev()], &body).await);

    // What the server loop answers before a call reaches the starter, each
    // proven over a real connection in `hardening`: a body that stalls
    // (`body_timeout`), the bodies in flight over their budget
    // (`server_busy`), the connections over their bound
    // (`too_many_connections`).
    got.extend(["body_timeout", "server_busy", "too_many_connections"].map(str::to_owned));

    let never: Vec<_> = listed.difference(&got).collect();
    assert!(never.is_empty(), "listed, but no call got them: {never:?}");
}
