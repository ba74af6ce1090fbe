//! Logging: one `tracing` event per call, naming the process, environment,
//! status, code and duration, and never the token.
//!
//! Alone in its test binary: `tracing` caches a call site's interest when it
//! is first hit, and a test on another thread without a subscriber would
//! otherwise race this one's thread-local subscriber.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use process_webhook::*;

/// A `tracing` writer that keeps everything written.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

pub(crate) fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    (captured.clone(), tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn logs_name_process_environment_and_code_but_never_the_token() {
    let world = World::new();
    let secret = world.token.expose_secret().to_owned();
    let starter = world.starter();
    let (captured, _guard) = capture_logs();
    let auth = world.bearer();
    let ok = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", auth.as_str())],
            serde_json::to_vec(&order_payload()).unwrap().as_slice(),
        )
        .await;
    assert_eq!(ok.status(), 202);
    let refused = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(DRAFT_ONLY)),
            [("authorization", auth.as_str())],
            b"{}",
        )
        .await;
    assert_eq!(refused.status(), 409);
    let broken = WebhookStarter::new(world.models.clone(), Arc::new(BrokenStore), world.engine.clone());
    let failed = broken
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", auth.as_str())],
            b"{}",
        )
        .await;
    assert_eq!(failed.status(), 503);

    let logs = captured.text();
    assert_eq!(logs.lines().count(), 3, "one event per call:\n{logs}");
    assert!(
        logs.contains(ORDER_INTAKE) && logs.contains("production"),
        "{logs}"
    );
    assert!(logs.contains("code=\"ok\"") || logs.contains("code=ok"), "{logs}");
    assert!(logs.contains("draft_version"), "{logs}");
    assert!(
        logs.contains("store_unavailable") && logs.contains("db-7.internal"),
        "causes go to the logs: {logs}"
    );
    assert!(logs.contains("duration_us"), "{logs}");
    assert!(!logs.contains(&secret), "{logs}");
}

#[tokio::test]
async fn a_token_inside_an_envelope_body_is_never_logged() {
    let world = World::new();
    let secret = world.token.expose_secret().to_owned();
    let starter = world.starter();
    let (captured, _guard) = capture_logs();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let no_headers: [(&str, &str); 0] = [];
    let ok = serde_json::json!({"headers": {"authorization": secret}, "payload": order_payload()});
    let reply = starter
        .handle(&target, no_headers, ok.to_string().as_bytes())
        .await;
    assert_eq!(reply.status(), 202);
    let guessed = "guessed-token-0123456789abcdef";
    let bad = serde_json::json!({"headers": {"authorization": guessed}, "payload": {}});
    let reply = starter
        .handle(&target, no_headers, bad.to_string().as_bytes())
        .await;
    assert_eq!(reply.status(), 401);
    let conflict = serde_json::json!({"headers": {"authorization": guessed}, "payload": {}});
    let auth = world.bearer();
    let reply = starter
        .handle(
            &target,
            [("authorization", auth.as_str())],
            conflict.to_string().as_bytes(),
        )
        .await;
    assert_eq!(reply.status(), 400);

    let logs = captured.text();
    assert_eq!(logs.lines().count(), 3, "one event per call:\n{logs}");
    assert!(!logs.contains(&secret), "{logs}");
    assert!(!logs.contains(guessed), "{logs}");
    assert!(!logs.contains("payload"), "{logs}");
}

#[tokio::test]
async fn failed_authentications_are_logged_per_client_at_most_once_a_second() {
    let world = World::new();
    let starter = world.starter();
    let (captured, _guard) = capture_logs();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let guesser: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let other: std::net::IpAddr = "198.51.100.1".parse().unwrap();
    for i in 0..5 {
        let guess = format!("guess-{i}");
        let reply = starter
            .handle_method_from(
                Some(guesser),
                "POST",
                &target,
                [("authorization", guess.as_str())],
                b"{}",
            )
            .await;
        assert_eq!(reply.status(), 401);
    }
    let reply = starter
        .handle_method_from(Some(other), "POST", &target, [("authorization", "nope")], b"{}")
        .await;
    assert_eq!(reply.status(), 401);
    let warnings = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("WARN") && l.contains("failed authentications"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let logged = warnings(&captured.text());
    assert_eq!(logged.len(), 2, "the first failure of each client: {logged:?}");
    assert!(logged[0].contains("192.0.2.7") && logged[0].contains("failures=1"));
    assert!(logged[1].contains("198.51.100.1"));
    // A second later, the next failure reports the ones held back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reply = starter
        .handle_method_from(
            Some(guesser),
            "POST",
            &target,
            [("authorization", "guess-5")],
            b"{}",
        )
        .await;
    assert_eq!(reply.status(), 401);
    let logged = warnings(&captured.text());
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert!(
        logged[2].contains("192.0.2.7") && logged[2].contains("failures=5"),
        "{logged:?}"
    );
    assert!(!captured.text().contains("guess-"), "guesses are never logged");
}

#[tokio::test]
async fn a_calls_events_carry_the_callers_trace_id_in_their_span() {
    let world = World::new();
    let starter = world.starter();
    let (captured, _guard) = capture_logs();
    let auth = world.bearer();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let traced = [
        ("authorization", auth.as_str()),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    assert_eq!(starter.handle(&target, traced, &body).await.status(), 202);
    assert_eq!(
        starter
            .handle(&target, [("authorization", auth.as_str())], &body)
            .await
            .status(),
        202
    );
    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].contains(r#"webhook_call{trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}"#),
        "{logs}"
    );
    assert!(
        lines[1].contains("webhook_call:") && !lines[1].contains("trace_id"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_start_through_the_library_is_logged_with_its_process_even_when_a_store_panics() {
    let world = World::new();
    let (captured, _guard) = capture_logs();
    let started = world
        .starter()
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await;
    assert!(started.is_ok(), "{started:?}");
    let panicking = WebhookStarter::new(
        world.models.clone(),
        Arc::new(PanickingStore),
        world.engine.clone(),
    );
    let err = panicking
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (500, "internal_error"));
    assert_eq!(world.engine.started().len(), 1, "only the first started");

    let logs = captured.text();
    let events: Vec<&str> = logs.lines().collect();
    assert_eq!(events.len(), 2, "one event per call:\n{logs}");
    for event in events {
        assert!(event.contains(ORDER_INTAKE), "the process is named: {event}");
    }
}

#[tokio::test]
async fn refusals_that_guard_the_server_are_warnings_failures_errors_and_the_rest_info() {
    let world = World::new();
    let auth = world.bearer();
    let (captured, _guard) = capture_logs();
    let url = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let too_large = world
        .starter()
        .with_body_limit(16)
        .handle(&url, [("authorization", auth.as_str())], &body)
        .await;
    assert_eq!(too_large.status(), 413);
    let unknown = world
        .starter()
        .handle(&url, [("authorization", "Bearer guessed")], &body)
        .await;
    assert_eq!(unknown.status(), 401);
    let broken = WebhookStarter::new(world.models.clone(), Arc::new(BrokenStore), world.engine.clone());
    let failed = broken
        .handle(&url, [("authorization", auth.as_str())], &body)
        .await;
    assert_eq!(failed.status(), 503);

    let logs = captured.text();
    let events: Vec<&str> = logs.lines().collect();
    assert_eq!(events.len(), 3, "one event per call:\n{logs}");
    let level = |event: &str| event.split_whitespace().nth(1).unwrap_or_default().to_owned();
    assert_eq!(level(events[0]), "WARN", "{}", events[0]);
    assert!(events[0].contains("payload_too_large"), "{}", events[0]);
    assert_eq!(level(events[1]), "INFO", "{}", events[1]);
    assert!(events[1].contains("invalid_token"), "{}", events[1]);
    assert_eq!(level(events[2]), "ERROR", "{}", events[2]);
    assert!(events[2].contains("db-7.internal"), "the cause: {}", events[2]);
    assert_eq!(world.engine.started().len(), 0);
}

#[tokio::test]
async fn a_calls_line_names_its_source_delivery_instance_and_outcome() {
    let world = World::new();
    let inbox = Arc::new(InMemoryInbox::new());
    let starter = world.starter().with_inbox(inbox, InboxPolicy::Always);
    let (captured, _guard) = capture_logs();
    let auth = world.bearer();
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let queued = starter
        .handle(
            &target,
            [("authorization", auth.as_str()), ("idempotency-key", "k-log-1")],
            &body,
        )
        .await;
    assert_eq!(queued.status(), 202);
    let delivery: serde_json::Value = serde_json::from_slice(queued.body()).unwrap();
    let delivery_id = delivery["deliveryId"].as_str().unwrap().to_owned();
    let started = world
        .starter()
        .handle(
            &target,
            [("authorization", auth.as_str()), ("idempotency-key", "k-log-2")],
            &body,
        )
        .await;
    let instance = world.engine.started()[0].id.as_str().to_owned();
    assert_eq!(started.status(), 202);

    let logs = captured.text();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("webhook call")).collect();
    assert_eq!(lines.len(), 2, "{logs}");
    for (line, key, outcome, id) in [
        (lines[0], "k-log-1", "queued", delivery_id.as_str()),
        (lines[1], "k-log-2", "started", instance.as_str()),
    ] {
        assert!(
            line.contains(&format!("delivery=\"{key}\"")) || line.contains(&format!("delivery={key}")),
            "{line}"
        );
        assert!(
            line.contains(&format!("outcome=\"{outcome}\"")) || line.contains(&format!("outcome={outcome}")),
            "{line}"
        );
        assert!(line.contains(id), "{line}");
    }
    assert!(!logs.contains(world.token.expose_secret()), "{logs}");

    // A source's call names its source.
    let host = crate::sources::Host::new(order_form());
    host.add(
        "zapier-orders",
        SourceScheme::basic("zapier"),
        &["a-basic-password-of-some-length"],
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("zapier:a-basic-password-of-some-length");
    let headers = [
        ("authorization".to_owned(), format!("Basic {basic}")),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), "zap-1".to_owned()),
    ];
    let reply = host
        .post(
            "zapier-orders",
            &headers,
            &serde_json::to_string(&order_payload()).unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let logs = captured.text();
    let line = logs.lines().rfind(|l| l.contains("webhook call")).unwrap();
    assert!(
        line.contains("source=zapier-orders") || line.contains("source=\"zapier-orders\""),
        "{line}"
    );
    assert!(line.contains("zap-1"), "{line}");
    assert!(!logs.contains("a-basic-password-of-some-length"), "{logs}");
}
