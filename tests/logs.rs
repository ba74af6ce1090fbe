//! Logging: one `tracing` event per call, naming the process, environment,
//! status, code and duration, and never the token.
//!
//! Alone in its test binary: `tracing` caches a call site's interest when it
//! is first hit, and a test on another thread without a subscriber would
//! otherwise race this one's thread-local subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use process_webhook::*;

/// A `tracing` writer that keeps everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

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
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
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
