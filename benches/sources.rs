//! A GitHub-signed start against the same start with a token, through
//! `WebhookStarter::handle`, for a real 7 KB `push` payload
//! (@octokit/webhooks-examples) and one of 64 KiB, each signed by GitHub's
//! own library (`node tests/senders/bench_fixtures.mjs` wrote them).
//! Both calls carry a key (the delivery id, an `Idempotency-Key`), so that
//! the difference is the source's look-up and its signature check.
//! Measured interleaved (see `common`).
//!
//! Run with `cargo bench --bench sources`. `ONLY=token` (or `github`)
//! with `N=20000` runs that side alone N times, for a profiler (`perf
//! record`, `valgrind --tool=callgrind`).

use std::hint::black_box;
use std::sync::Arc;

use process_webhook::*;

mod common;
use common::{NoopEngine, PROCESS, block_on, ratio, show};

fn main() {
    let process: ProcessUuid = PROCESS.parse().unwrap();
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(
        process,
        production.organization().clone(),
        "Pushes",
    ));
    let form = StartForm::new([
        FieldSpec::mandatory("ref", FieldKind::Text),
        FieldSpec::mandatory("repository", FieldKind::Object),
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
    sources.put_source(
        WebhookSource::new(
            "github".parse().unwrap(),
            production,
            process,
            SourceScheme::Github,
            [SourceSecret::new("bench-secret").unwrap()],
        )
        .unwrap(),
    );
    let starter = WebhookStarter::new(models, tokens, Arc::new(NoopEngine)).with_sources(sources);
    let token_target = webhook_url("/webhook/send", &process);
    let source_target = format!("{token_target}&source=github");
    let auth = format!("Bearer {}", token.expose_secret());

    println!("{:<34} {:>7}", "target", "ratio");
    for (label, name, iters) in [
        ("7KB push", "github_push", 400),
        ("64KiB push", "github_push_64k", 60),
    ] {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures/");
        let body = std::fs::read(format!("{dir}{name}.json")).unwrap();
        let signature = std::fs::read_to_string(format!("{dir}{name}.sig")).unwrap();
        let with_token = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        let from_github = [
            ("x-hub-signature-256", signature.trim()),
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        let call = |target: &str, headers: &[(&str, &str)]| {
            let reply = block_on(starter.handle(target, headers.iter().copied(), black_box(&body)));
            assert_eq!(reply.status(), 202);
            drop(black_box(reply));
        };
        if let Ok(only) = std::env::var("ONLY") {
            for _ in 0..std::env::var("N").map_or(20_000, |n| n.parse().unwrap()) {
                if only == "token" {
                    call(&token_target, &with_token)
                } else {
                    call(&source_target, &from_github)
                }
            }
            return;
        }
        let r = ratio(
            iters,
            || call(&token_target, &with_token),
            || call(&source_target, &from_github),
        );
        show(&format!("GitHub-signed / token, {label}"), "token", r, "us");
    }
}
