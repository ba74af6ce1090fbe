//! The `webhook_server` example binary as an operator runs it: a start, its
//! health checks, and a Prometheus scrape of what it did.
#![cfg(feature = "server")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const TOKEN: &str = "an-operator-chosen-token-of-40-characters";
const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

/// The server, on free ports, with the in-memory stores and engine.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(metrics_addr: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_webhook_server"));
        command
            .env("WEBHOOK_ADDR", "127.0.0.1:0")
            .env("WEBHOOK_TOKEN", TOKEN)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("TEMPORAL_URL")
            .env_remove("CAMUNDA_URL")
            .env_remove("WEBHOOK_RATE_LIMIT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match metrics_addr {
            Some(addr) => command.env("WEBHOOK_METRICS_ADDR", addr),
            None => command.env_remove("WEBHOOK_METRICS_ADDR"),
        };
        let mut child = command.spawn().expect("webhook_server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("webhook server listening on ")
                    .map(str::to_owned)
            })
            .expect("the server prints its address");
        // Keep reading (and dropping) what it prints, so that it never blocks.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_order(client: &reqwest::Client, base: &str) -> u16 {
    client
        .post(format!("{base}/webhook/send?uid={ORDER_INTAKE}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn it_serves_health_checks_and_a_prometheus_scrape_of_its_calls() {
    let server = Server::start(None);
    let client = reqwest::Client::new();
    assert_eq!(start_order(&client, &server.base).await, 202);
    let wrong = client
        .post(format!("{}/webhook/send?uid={ORDER_INTAKE}", server.base))
        .header("authorization", "Bearer wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    for (path, body) in [
        ("/healthz", r#"{"status":"live"}"#),
        ("/readyz", r#"{"status":"ready"}"#),
    ] {
        let response = client.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), body);
    }

    let scrape = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.headers()["content-type"], "text/plain; version=0.0.4");
    let text = scrape.text().await.unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(r#"process_webhook_calls_total{status="202",code="ok",environment="production"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"process_webhook_calls_total{status="401",code="invalid_token",environment=""} 1"#),
        "{text}"
    );
    assert!(
        has("# TYPE process_webhook_call_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        has(r#"process_webhook_engine_call_duration_seconds_count{engine="memory",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(!text.contains(TOKEN) && !text.contains("123456"), "{text}");
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::start(Some(&metrics_addr));
    let client = reqwest::Client::new();
    assert_eq!(start_order(&client, &server.base).await, 202);
    let on_webhook_port = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(on_webhook_port.status(), 404, "not on the public address");
    let text = client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"process_webhook_calls_total{status="202",code="ok",environment="production"} 1"#),
        "{text}"
    );
}
