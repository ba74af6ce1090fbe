//! What a source's mapping and a multipart body cost, each side by side
//! with the same call without it (interleaved, see `common`):
//!
//! - mapped / unmapped: a real 21 KB `pull_request` `opened` delivery
//!   (@octokit/webhooks-examples, signed by @octokit/webhooks-methods:
//!   `node tests/senders/bench_fixtures.mjs`), to a GitHub source that
//!   maps five fields out of it against one that hands the whole body on;
//! - multipart / JSON: the documented call's three fields as a
//!   `multipart/form-data` body (as fetch's `FormData` encodes it) against
//!   the same fields as JSON, with a token.
//!
//! Run with `cargo bench --bench mapping --features mapping,multipart`.
//! `ONLY=mapped` (or `unmapped`, `multipart`, `json`) with `N=20000` runs
//! that side alone N times, for a profiler.

use std::hint::black_box;
use std::sync::Arc;

use process_webhook::*;

mod common;
use common::{NoopEngine, PROCESS, block_on, ratio, show};

const MULTIPART: &str = "------formdata-undici-026210150657\r\n\
Content-Disposition: form-data; name=\"customerName\"\r\n\r\nJohn Doe\r\n\
------formdata-undici-026210150657\r\n\
Content-Disposition: form-data; name=\"orderNumber\"\r\n\r\n123456\r\n\
------formdata-undici-026210150657\r\n\
Content-Disposition: form-data; name=\"productCode\"\r\n\r\nABC123\r\n\
------formdata-undici-026210150657--\r\n";
const JSON_BODY: &str = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;

fn main() {
    let process: ProcessUuid = PROCESS.parse().unwrap();
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(
        process,
        production.organization().clone(),
        "Reviews",
    ));
    // Optional fields the unmapped body does not have, so that it starts
    // too (with its own members passed through).
    let form = StartForm::new([
        FieldSpec::optional("author", FieldKind::Text),
        FieldSpec::optional("repositoryName", FieldKind::Text),
        FieldSpec::optional("title", FieldKind::Text),
        FieldSpec::optional("pullRequest", FieldKind::Integer),
        FieldSpec::optional("event", FieldKind::Text),
        FieldSpec::optional("customerName", FieldKind::Text),
        FieldSpec::optional("orderNumber", FieldKind::Text),
        FieldSpec::optional("productCode", FieldKind::Text),
    ]);
    models.deploy(Deployment::new(
        process,
        VersionTag::Released(1),
        production.id().clone(),
        form,
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, production.clone());
    let sources = Arc::new(InMemorySourceStore::new());
    let github = |id: &str| {
        WebhookSource::new(
            id.parse().unwrap(),
            production.clone(),
            process,
            SourceScheme::Github,
            [SourceSecret::new("bench-secret").unwrap()],
        )
        .unwrap()
    };
    let query = |q: &str| q.parse::<JsonQuery>().unwrap();
    let mapping = PayloadMapping::new()
        .with_field("author", query("$.body.pull_request.user.login"))
        .and_then(|m| m.with_field("repositoryName", query("$.body.repository.full_name")))
        .and_then(|m| m.with_field("title", query("$.body.pull_request.title")))
        .and_then(|m| m.with_field("pullRequest", query("$.body.number")))
        .and_then(|m| m.with_field("event", query("$.headers['x-github-event']")))
        .unwrap();
    sources.put_source(github("unmapped"));
    sources.put_source(github("mapped").with_mapping(mapping));
    let starter = WebhookStarter::new(models, tokens, Arc::new(NoopEngine)).with_sources(sources);
    let token_target = webhook_url("/webhook/send", &process);
    let auth = format!("Bearer {}", token.expose_secret());

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/");
    let delivery = std::fs::read(format!("{dir}github_pull_request.json")).unwrap();
    let signature = std::fs::read_to_string(format!("{dir}github_pull_request.sig")).unwrap();
    let from_github = [
        ("x-hub-signature-256", signature.trim()),
        ("content-type", "application/json"),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let multipart_type = "multipart/form-data; boundary=----formdata-undici-026210150657";
    let call = |target: &str, headers: &[(&str, &str)], body: &[u8]| {
        let reply = block_on(starter.handle(target, headers.iter().copied(), black_box(body)));
        assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
        drop(black_box(reply));
    };
    let source = |id: &str| format!("{token_target}&source={id}");
    let (mapped, unmapped) = (source("mapped"), source("unmapped"));
    let with_token =
        |content_type: &'static str| [("authorization", auth.as_str()), ("content-type", content_type)];
    let mapped_call = || call(&mapped, &from_github, &delivery);
    let unmapped_call = || call(&unmapped, &from_github, &delivery);
    let multipart_call = || call(&token_target, &with_token(multipart_type), MULTIPART.as_bytes());
    let json_call = || {
        call(
            &token_target,
            &with_token("application/json"),
            JSON_BODY.as_bytes(),
        )
    };

    if let Ok(only) = std::env::var("ONLY") {
        let n = std::env::var("N").map_or(20_000, |n| n.parse().unwrap());
        for _ in 0..n {
            match only.as_str() {
                "mapped" => mapped_call(),
                "unmapped" => unmapped_call(),
                "multipart" => multipart_call(),
                _ => json_call(),
            }
        }
        return;
    }
    println!("{:<34} {:>7}", "target", "ratio");
    let r = ratio(200, unmapped_call, mapped_call);
    show("mapped / unmapped, 21KB PR", "unmapped", r, "us");
    let r = ratio(2000, json_call, multipart_call);
    show("multipart / JSON, 3 fields", "JSON", r, "us");
}
