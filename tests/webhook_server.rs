//! The `webhook_server` example binary as an operator runs it: a start, its
//! health checks, a Prometheus scrape of what it did, the token and rate
//! limit it is given (or refuses), and replicas sharing Redis or starting
//! on Temporal.
#![cfg(feature = "server")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const TOKEN: &str = "an-operator-chosen-token-of-40-characters";
const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const RETURNS_DRAFT: &str = "6f1d0c3a-2b4e-4c5d-8e9f-0a1b2c3d4e5f";

/// The variables the server reads; each test sets the ones it needs.
const SETTINGS: [&str; 29] = [
    "WEBHOOK_IDEMPOTENCY_CAPACITY",
    "WEBHOOK_KEEP_PAYLOADS",
    "WEBHOOK_LOG_RETENTION",
    "WEBHOOK_ADMIN_ADDR",
    "WEBHOOK_ADMIN_TOKEN",
    "WEBHOOK_INBOX",
    "WEBHOOK_INBOX_MAX_AGE",
    "WEBHOOK_INBOX_LIMIT",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "CAMUNDA_USER",
    "CAMUNDA_PASSWORD",
    "WEBHOOK_CONFIG",
    "WEBHOOK_SCHEMA",
    "WEBHOOK_SECRET_KEY",
    "WEBHOOK_OLD_SECRET_KEYS",
    "GITHUB_WEBHOOK_SECRET",
    "RUST_LOG",
    "WEBHOOK_ADDR",
    "WEBHOOK_TOKEN",
    "WEBHOOK_METRICS_ADDR",
    "WEBHOOK_RATE_LIMIT",
    "DATABASE_URL",
    "REDIS_URL",
    "TEMPORAL_URL",
    "TEMPORAL_TASK_QUEUE",
    "CAMUNDA_URL",
    "CAMUNDA_DEFINITION_KEY",
    "WEBHOOK_DATA",
];

/// The server binary on a free port with only `settings` set (and the
/// operator's token unless `settings` says otherwise).
fn command(settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook_server"));
    for name in SETTINGS {
        command.env_remove(name);
    }
    // In memory unless a test names a file: tests run at once, and the
    // default file is in the working directory.
    command
        .env("WEBHOOK_ADDR", "127.0.0.1:0")
        .env("WEBHOOK_TOKEN", TOKEN)
        .env("WEBHOOK_DATA", ":memory:");
    for (name, value) in settings {
        command.env(name, value);
    }
    command
}

/// The server, on free ports, with the in-memory stores and engine unless
/// `settings` name others (a `WEBHOOK_DATA` file, `DATABASE_URL`, an
/// engine).
struct Server {
    child: Child,
    base: String,
    /// What it printed before it started serving.
    printed: Vec<String>,
    /// The command it printed after `try:`, its lines joined.
    curl: String,
    /// What it printed since.
    later: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn with(settings: &[(&str, &str)]) -> Self {
        let mut child = command(settings)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("webhook_server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let printed: Vec<String> = lines
            .by_ref()
            .map_while(Result::ok)
            .take_while(|line| !line.starts_with("try"))
            .collect();
        let base = printed
            .iter()
            .find_map(|line| {
                line.strip_prefix("webhook server listening on ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("the server prints its address: {printed:?}"));
        let curl: String = lines
            .by_ref()
            .map_while(Result::ok)
            .take_while(|line| !line.is_empty())
            .map(|line| line.trim().trim_end_matches('\\').to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        // Keep reading what it prints, so that it never blocks.
        let later = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = later.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base,
            printed,
            curl,
            later,
        }
    }

    /// The line it printed that starts with `prefix`, without the prefix.
    fn printed(&self, prefix: &str) -> Option<&str> {
        self.printed.iter().find_map(|line| line.strip_prefix(prefix))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the server with `settings`, which it must refuse within 10 s: its
/// exit status and what it wrote to stderr.
fn refused(settings: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = command(settings)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("webhook_server runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let names: Vec<&str> = settings.iter().map(|(name, _)| *name).collect();
            panic!("the server did not refuse its {names:?}: it is still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

async fn start_order(client: &reqwest::Client, base: &str) -> u16 {
    call(client, base, TOKEN, &[]).await.status().as_u16()
}

/// The documented start of Order intake with `token` and `headers`.
async fn call(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client
        .post(format!("{base}/webhook/send?uid={ORDER_INTAKE}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn it_serves_health_checks_and_a_prometheus_scrape_of_its_calls() {
    let server = Server::with(&[]);
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
        ("/readyz", r#"{"engine":"ready","status":"ready"}"#),
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
async fn it_answers_the_openapi_document_of_each_example_process() {
    let server = Server::with(&[("WEBHOOK_RATE_LIMIT", "100/s")]);
    let client = reqwest::Client::new();
    let fetch = |uid: &'static str| {
        client
            .get(format!("{}/webhook/send?uid={uid}", server.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("accept", "application/vnd.oai.openapi+json")
            .send()
    };
    let response = fetch(ORDER_INTAKE).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.oai.openapi+json"
    );
    let document: serde_json::Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let post = &document["paths"]["/webhook/send"]["post"];
    assert_eq!(post["parameters"][0]["schema"]["enum"][0], ORDER_INTAKE);
    assert_eq!(
        document["components"]["schemas"]["StartPayload"]["required"],
        serde_json::json!(["customerName", "orderNumber", "productCode"])
    );
    // Its starter has an idempotency store and, here, a rate limit.
    let codes = |status: &str| {
        post["responses"][status]["content"]["application/problem+json"]["schema"]["properties"]["code"]["enum"].clone()
    };
    assert_eq!(
        codes("409"),
        serde_json::json!(["not_deployed", "draft_version", "start_in_progress"])
    );
    assert!(
        codes("429")
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("rate_limited"))
    );
    assert!(post["responses"]["202"]["headers"]["RateLimit"].is_object());

    let draft: serde_json::Value = fetch(RETURNS_DRAFT).await.unwrap().json().await.unwrap();
    assert_eq!(draft["info"]["version"], "draft");
    assert!(
        draft["paths"]["/webhook/send"]["post"]["responses"]
            .get("202")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_can_have_an_address_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let server = Server::with(&[("WEBHOOK_METRICS_ADDR", &metrics_addr)]);
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

#[tokio::test]
async fn a_token_shorter_than_32_characters_is_refused_and_one_of_32_is_served() {
    let short = "s".repeat(31);
    let (code, stderr) = refused(&[("WEBHOOK_TOKEN", &short)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_TOKEN is too short: a token must have at least 32 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains(&short), "the token is never printed");

    let exact = "e".repeat(32);
    let server = Server::with(&[("WEBHOOK_TOKEN", &exact)]);
    assert_eq!(server.printed("production token: "), Some("from WEBHOOK_TOKEN"));
    let client = reqwest::Client::new();
    assert_eq!(call(&client, &server.base, &exact, &[]).await.status(), 202);
}

#[tokio::test]
async fn a_blank_token_has_one_generated_and_shown_once() {
    let server = Server::with(&[("WEBHOOK_TOKEN", "   ")]);
    let token = server
        .printed("production token (shown once): ")
        .expect("the generated token is shown")
        .to_owned();
    assert!(token.chars().count() >= 32, "{token}");
    let client = reqwest::Client::new();
    assert_eq!(call(&client, &server.base, &token, &[]).await.status(), 202);
    assert_eq!(call(&client, &server.base, TOKEN, &[]).await.status(), 401);
}

#[tokio::test]
async fn a_rate_limit_refuses_the_call_over_it_and_a_malformed_one_stops_the_server() {
    let client = reqwest::Client::new();
    let limited = Server::with(&[("WEBHOOK_RATE_LIMIT", "1/min")]);
    assert_eq!(limited.printed("rate limit: "), Some("1/min per environment"));
    assert_eq!(start_order(&client, &limited.base).await, 202);
    let over = call(&client, &limited.base, TOKEN, &[]).await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let problem: Value = over.json().await.unwrap();
    assert_eq!(problem["code"], "rate_limited");

    // Blank is no limit.
    let unlimited = Server::with(&[("WEBHOOK_RATE_LIMIT", " ")]);
    assert_eq!(unlimited.printed("rate limit: "), None);
    for _ in 0..3 {
        assert_eq!(start_order(&client, &unlimited.base).await, 202);
    }

    let (code, stderr) = refused(&[("WEBHOOK_RATE_LIMIT", "lots")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("WEBHOOK_RATE_LIMIT=lots"), "{stderr}");
}

#[tokio::test]
async fn a_blank_metrics_address_serves_metrics_on_the_webhook_address() {
    let server = Server::with(&[("WEBHOOK_METRICS_ADDR", "  ")]);
    let client = reqwest::Client::new();
    assert_eq!(start_order(&client, &server.base).await, 202);
    let scrape = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    assert!(
        text.contains(r#"process_webhook_calls_total{status="202",code="ok",environment="production"} 1"#),
        "{text}"
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn replicas_sharing_redis_share_idempotency_keys_and_the_rate_limit() {
    let Some(url) = common::server_setting("REDIS_URL", "e.g. redis://127.0.0.1:6379") else {
        return;
    };
    let client = reqwest::Client::new();
    let shared = [("REDIS_URL", url.as_str())];
    let (a, b) = (Server::with(&shared), Server::with(&shared));
    assert!(a.printed("stores: Redis").is_some(), "{:?}", a.printed);
    let key = format!("order-{}", uuid::Uuid::new_v4());
    let first = call(&client, &a.base, TOKEN, &[("idempotency-key", &key)]).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = call(&client, &b.base, TOKEN, &[("idempotency-key", &key)]).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["instanceId"], first["instanceId"],
        "one start for both replicas"
    );
    drop((a, b));

    // A fresh window for the environment's documented limiter key.
    let redis = redis::Client::open(url.as_str()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg("process_webhook:rate:env:acme/production")
        .query_async(&mut connection)
        .await
        .unwrap();
    let limited = [("REDIS_URL", url.as_str()), ("WEBHOOK_RATE_LIMIT", "1/min")];
    let (a, b) = (Server::with(&limited), Server::with(&limited));
    assert_eq!(start_order(&client, &a.base).await, 202);
    assert_eq!(
        start_order(&client, &b.base).await,
        429,
        "the other replica counts the same limit"
    );
}

#[cfg(feature = "temporal")]
#[tokio::test]
async fn on_temporal_it_starts_workflows_waits_for_their_result_and_is_not_ready_without_temporal() {
    let Some(url) = common::server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243") else {
        return;
    };
    let queue = format!("webhook-server-{}", uuid::Uuid::new_v4().simple());
    let Some(_worker) = common::PythonWorker::start(&queue) else {
        return;
    };
    let client = reqwest::Client::new();
    let server = Server::with(&[("TEMPORAL_URL", &url), ("TEMPORAL_TASK_QUEUE", &queue)]);
    assert!(
        server.printed("engine: Temporal at").is_some(),
        "{:?}",
        server.printed
    );
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let waited = call(&client, &server.base, TOKEN, &[("prefer", "wait=10")]).await;
    assert_eq!(waited.status(), 200);
    let doc: Value = waited.json().await.unwrap();
    assert_eq!(doc["status"], "completed", "{doc}");
    assert_eq!(
        doc["result"],
        serde_json::json!({"accepted": true, "orderNumber": "123456", "total": 42.5})
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let away = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = Server::with(&[("TEMPORAL_URL", &away)]);
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let problem: Value = ready.json().await.unwrap();
    assert_eq!(problem["code"], "not_ready");
    assert_eq!(problem["components"], serde_json::json!(["engine"]), "{problem}");
}

#[test]
fn the_printed_curl_starts_the_process_as_pasted_with_the_operators_token() {
    let server = Server::with(&[]);
    assert!(server.curl.starts_with("curl "), "{}", server.curl);
    assert!(
        !server.curl.contains(TOKEN),
        "the operator's token is never printed"
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("{} -s -o /dev/null -w '%{{http_code}}'", server.curl))
        .env("WEBHOOK_TOKEN", TOKEN)
        .output()
        .expect("sh runs curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "202", "{}", server.curl);
}

#[test]
fn a_bad_or_busy_address_names_the_variable_and_the_problem() {
    let (code, stderr) = refused(&[("WEBHOOK_ADDR", "not-an-address")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: WEBHOOK_ADDR=not-an-address: cannot listen there"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Custom {") && !stderr.contains("Os {"),
        "no Rust Debug value: {stderr}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = refused(&[("WEBHOOK_ADDR", &addr)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("error: WEBHOOK_ADDR={addr}: the address is in use by another program")
    );
    let (code, stderr) = refused(&[("WEBHOOK_METRICS_ADDR", &addr)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: WEBHOOK_METRICS_ADDR={addr}: the address is in use"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn its_log_lines_have_no_colours_when_its_output_is_not_a_terminal() {
    let server = Server::with(&[("RUST_LOG", "process_webhook=info")]);
    let client = reqwest::Client::new();
    assert_eq!(start_order(&client, &server.base).await, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let logged = loop {
        let later = server.later.lock().unwrap().clone();
        if let Some(line) = later.iter().find(|line| line.contains("process_webhook")) {
            break line.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no log line: {later:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(logged.contains("INFO"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "no ANSI escape: {logged:?}");
}

/// A `WEBHOOK_CONFIG` file with `text`, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("webhook-config-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const GITHUB_SOURCE: &str = r#"
# GitHub's "Payload URL" is the printed URL, its "Secret" $GITHUB_WEBHOOK_SECRET.
[[source]]
id = "github-orders"
process = "dd9759e0-cc94-11ed-938f-13cf60270555"
environment = "production"
scheme = "github"
secret_env = "GITHUB_WEBHOOK_SECRET"
events = ["push"]
"#;

const GITHUB_SECRET: &str = "an operator's GitHub webhook secret";

/// A delivery of the documented order payload, as GitHub signs it.
async fn github_delivery(
    client: &reqwest::Client,
    url: &str,
    senders: &common::senders::Senders,
    event: &str,
    delivery: &str,
) -> reqwest::Response {
    let body = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;
    let signed = senders.sign(serde_json::json!({"scheme": "github", "secret": GITHUB_SECRET, "body": body}));
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body);
    for (name, value) in signed {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_github_source_in_its_config_file_starts_once_per_delivery_and_no_secret_is_printed() {
    let Some(senders) = common::senders::Senders::find() else {
        return;
    };
    let file = ConfigFile::new(GITHUB_SOURCE);
    let server = Server::with(&[
        ("WEBHOOK_CONFIG", file.path()),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
    ]);
    let url = server
        .printed("source github-orders (github): ")
        .unwrap_or_else(|| panic!("the source's URL is printed: {:?}", server.printed))
        .to_owned();
    assert_eq!(
        url,
        format!(
            "{}/webhook/send?uid={ORDER_INTAKE}&source=github-orders",
            server.base
        )
    );
    let client = reqwest::Client::new();

    let ping = github_delivery(&client, &url, &senders, "ping", "d-0").await;
    assert_eq!(ping.status(), 200);
    let first = github_delivery(&client, &url, &senders, "push", "d-1").await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = github_delivery(&client, &url, &senders, "push", "d-1").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["instanceId"], first["instanceId"]);
    let forged = client
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .header("x-github-event", "push")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // One start, for the first delivery; the scheme is a metrics label.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let later = server.later.lock().unwrap().join("\n");
    assert_eq!(later.matches("started instance").count(), 1, "{later}");
    let scrape = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(scrape.contains("scheme=\"github\""), "{scrape}");
    let everything = format!("{}\n{later}\n{scrape}", server.printed.join("\n"));
    assert!(!everything.contains(GITHUB_SECRET), "{everything}");
}

#[test]
fn a_config_file_it_cannot_use_stops_it_naming_the_file_line_and_key() {
    let file = ConfigFile::new(&GITHUB_SOURCE.replace("scheme = \"github\"", "scheme = \"gihtub\""));
    let (status, stderr) = refused(&[
        ("WEBHOOK_CONFIG", file.path()),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
    ]);
    assert_eq!(status, Some(1));
    let expected = format!("error: {}:7:10: scheme: unknown scheme `gihtub`", file.path());
    assert!(stderr.starts_with(&expected), "{stderr}");

    let file = ConfigFile::new(GITHUB_SOURCE);
    let (status, stderr) = refused(&[("WEBHOOK_CONFIG", file.path())]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains(":8:14: secret_env: the environment variable GITHUB_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );
    let (status, stderr) = refused(&[("WEBHOOK_CONFIG", "/nonexistent/sources.toml")]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("WEBHOOK_CONFIG=/nonexistent/sources.toml: cannot read the file"),
        "{stderr}"
    );
}

const MAPPED_SOURCE: &str = r#"
[[source]]
id = "shop-orders"
process = "dd9759e0-cc94-11ed-938f-13cf60270555"
environment = "production"
scheme = "hmac"
header = "X-Shop-Signature"
secret_env = "SHOP_SECRET"
when = [{ path = "$.body.topic", equals = ["orders/create"] }]
delivery = "$.body.id"

[source.map]
customerName = "$.body.customer.name"
orderNumber = "$.body.order.number"
productCode = "$.headers['x-product']"
"#;

#[tokio::test]
async fn a_mapped_source_in_its_config_file_starts_with_the_mapped_fields_and_ignores_other_topics() {
    let Some(senders) = common::senders::Senders::find() else {
        return;
    };
    let file = ConfigFile::new(MAPPED_SOURCE);
    let server = Server::with(&[("WEBHOOK_CONFIG", file.path()), ("SHOP_SECRET", "shop-secret")]);
    let url = server.printed("source shop-orders (hmac): ").unwrap().to_owned();
    let client = reqwest::Client::new();
    let deliver = |topic: &str, dry_run: bool| {
        let body = serde_json::json!({
            "id": 4242, "topic": topic,
            "customer": {"name": "John Doe"}, "order": {"number": "123456"},
        })
        .to_string();
        let signed = senders.sign(serde_json::json!({
            "scheme": "hmac", "secret": "shop-secret", "body": body,
            "header": "X-Shop-Signature", "algorithm": "sha256", "encoding": "hex",
        }));
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-product", "ABC123")
            .body(body);
        if dry_run {
            request = request.header("prefer", "dry-run");
        }
        for (name, value) in signed {
            request = request.header(name, value);
        }
        request.send()
    };
    let dry = deliver("orders/create", true).await.unwrap();
    assert_eq!(dry.status(), 200);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(
        dry["variables"],
        serde_json::json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"})
    );
    let started = deliver("orders/create", false).await.unwrap();
    assert_eq!(started.status(), 202);
    let again = deliver("orders/create", false).await.unwrap();
    assert_eq!(
        again.headers()["idempotent-replayed"],
        "true",
        "the body's id is the delivery id"
    );
    let other = deliver("orders/cancelled", false).await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(
        other.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ignored"})
    );
}

#[test]
fn a_bad_query_in_the_config_file_stops_it_with_the_line_and_the_position_in_the_query() {
    let file = ConfigFile::new(&MAPPED_SOURCE.replace("$.body.order.number", "$.body.order[*].number"));
    let (status, stderr) = refused(&[("WEBHOOK_CONFIG", file.path()), ("SHOP_SECRET", "shop-secret")]);
    assert_eq!(status, Some(1));
    let expected = format!(
        "error: {}:14:15: map.orderNumber: JSONPath query `$.body.order[*].number` at position 12: not singular",
        file.path()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

const OWN_PROCESS: &str = r#"
# An operator's own process, in its own environment.
[[environment]]
id = "live"
organization = "shop"
token_env = "SHOP_TOKEN"

[[process]]
uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
organization = "shop"
name = "Refund"

[[process.deployment]]
environment = "live"
version = 4
fields = [
  { name = "orderNumber", kind = "text", mandatory = true },
  { name = "amount", kind = "number", mandatory = true },
  { name = "reason", kind = "choice", options = ["damaged", "late"], default = "damaged" },
]

[[process]]
uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
organization = "shop"
name = "Exchange"

[[process.deployment]]
environment = "live"
draft = true
"#;

const SHOP_TOKEN: &str = "an-operator's-own-shop-token-0123456789";

#[tokio::test]
async fn a_config_file_of_its_own_processes_serves_them_and_not_the_example() {
    let file = ConfigFile::new(OWN_PROCESS);
    let server = Server::with(&[("WEBHOOK_CONFIG", file.path()), ("SHOP_TOKEN", SHOP_TOKEN)]);
    let refund = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    assert_eq!(
        server.printed("process Refund (version 4) in live: "),
        Some(format!("{}/webhook/send?uid={refund}", server.base).as_str()),
        "{:?}",
        server.printed
    );
    assert!(server.printed("Order intake").is_none(), "{:?}", server.printed);
    let client = reqwest::Client::new();
    let post = |process: &str, token: &str, body: &'static str| {
        client
            .post(format!("{}/webhook/send?uid={process}", server.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let started = post(refund, SHOP_TOKEN, r#"{"orderNumber": "123456", "amount": 19.5}"#)
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let dry = client
        .post(format!("{}/webhook/send?uid={refund}", server.base))
        .header("authorization", format!("Bearer {SHOP_TOKEN}"))
        .header("prefer", "dry-run")
        .body(r#"{"orderNumber": "123456", "amount": 19.5}"#)
        .send()
        .await
        .unwrap();
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(
        dry["variables"],
        serde_json::json!({"orderNumber": "123456", "amount": 19.5, "reason": "damaged"}),
        "typed fields and the default"
    );
    let wrong_type = post(
        refund,
        SHOP_TOKEN,
        r#"{"orderNumber": "123456", "amount": "a lot"}"#,
    )
    .await
    .unwrap();
    assert_eq!(wrong_type.status(), 422);
    let draft = post("6ba7b810-9dad-11d1-80b4-00c04fd430c8", SHOP_TOKEN, "{}")
        .await
        .unwrap();
    assert_eq!(draft.status(), 409);
    assert_eq!(draft.json::<Value>().await.unwrap()["code"], "draft_version");
    let wrong_token = post(refund, TOKEN, "{}").await.unwrap();
    assert_eq!(wrong_token.status(), 401, "the example's token is no token here");
    let example = post(ORDER_INTAKE, SHOP_TOKEN, "{}").await.unwrap();
    assert_eq!(example.status(), 404, "the documented example is not served");
    // The printed curl, run by a shell with the token in $TOKEN, starts it.
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} -s -o /dev/null -w '%{{http_code}}'", server.curl))
        .env("TOKEN", SHOP_TOKEN)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "202", "{}", server.curl);
    let later = server.later.lock().unwrap().join("\n");
    let everything = format!("{}\n{}\n{later}", server.printed.join("\n"), server.curl);
    assert!(!everything.contains(SHOP_TOKEN), "{everything}");
}

#[test]
fn check_validates_a_config_file_without_serving() {
    let good = ConfigFile::new(OWN_PROCESS);
    let output = command(&[("SHOP_TOKEN", SHOP_TOKEN)])
        .args(["--check", good.path()])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "{}: ok (1 environments, 2 processes, 2 deployments, 0 sources)\n",
            good.path()
        )
    );
    let bad = ConfigFile::new(&OWN_PROCESS.replace("kind = \"number\"", "kind = \"money\""));
    let output = command(&[("SHOP_TOKEN", SHOP_TOKEN)])
        .args(["--check", bad.path()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let expected = format!("error: {}:18:29: fields.kind: unknown kind `money`", bad.path());
    assert!(
        String::from_utf8_lossy(&output.stderr).starts_with(&expected),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty());
    let unknown = command(&[]).arg("--serve").output().unwrap();
    assert_eq!(unknown.status.code(), Some(2));
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn with_postgres_sources_are_stored_encrypted_under_the_key_and_refused_without_one() {
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let file = ConfigFile::new(
        GITHUB_SOURCE
            .replace("scheme = \"github\"\n", "scheme = \"gitlab\"\n")
            .replace("events = [\"push\"]\n", "")
            .as_str(),
    );
    let base = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_CONFIG", file.path()),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
    ];
    let (status, stderr) = refused(&base);
    assert_eq!(status, Some(1));
    assert!(
        stderr.starts_with("error: WEBHOOK_SECRET_KEY: not set"),
        "{stderr}"
    );

    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
    let mut settings = base.to_vec();
    settings.push(("WEBHOOK_SECRET_KEY", key));
    let client = reqwest::Client::new();
    let gitlab = |base: &str, token: &str| {
        client
            .post(format!(
                "{base}/webhook/send?uid={ORDER_INTAKE}&source=github-orders"
            ))
            .header("x-gitlab-token", token)
            .header("content-type", "application/json")
            .body(r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#)
            .send()
    };
    {
        let server = Server::with(&settings);
        assert_eq!(gitlab(&server.base, GITHUB_SECRET).await.unwrap().status(), 202);
    }
    // A replica without the file reads the source from the database.
    settings.retain(|(name, _)| *name != "WEBHOOK_CONFIG" && *name != "GITHUB_WEBHOOK_SECRET");
    let replica = Server::with(&settings);
    assert_eq!(gitlab(&replica.base, GITHUB_SECRET).await.unwrap().status(), 202);
    assert_eq!(
        gitlab(&replica.base, "another secret").await.unwrap().status(),
        401
    );
    let rows: Vec<String> = {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let rows = sqlx::query_scalar(&format!(
            "SELECT row_to_json(s)::text FROM \"{schema}\".sources s"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
        rows
    };
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].contains("GitHub webhook secret"), "{}", rows[0]);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn with_postgres_two_replicas_apply_the_same_file_once_and_both_serve_it() {
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let file = ConfigFile::new(OWN_PROCESS);
    let settings = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_CONFIG", file.path()),
        ("SHOP_TOKEN", SHOP_TOKEN),
    ];
    // Started together, as replicas are.
    let (first, second) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::with(&settings));
        let b = s.spawn(|| Server::with(&settings));
        (a.join().unwrap(), b.join().unwrap())
    });
    let client = reqwest::Client::new();
    for server in [&first, &second] {
        let reply = client
            .post(format!(
                "{}/webhook/send?uid=1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                server.base
            ))
            .header("authorization", format!("Bearer {SHOP_TOKEN}"))
            .body(r#"{"orderNumber": "123456", "amount": 2}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202);
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        let schema = schema.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{schema}\".{table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("models").await, 2, "each model once");
    assert_eq!(count("deployments").await, 2, "each deployment once");
    assert_eq!(count("tokens").await, 1, "the token once, as its digest");
    let tokens: Vec<String> =
        sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{schema}\".tokens t"))
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(!tokens[0].contains(SHOP_TOKEN), "{}", tokens[0]);
    drop((first, second));
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// `webhook_server admin ARGS` with `settings`, `stdin` on its standard
/// input: its exit code, standard output and standard error.
#[cfg(feature = "postgres")]
/// `admin create-token` for acme's production.
fn create_production_token(settings: &[(&str, &str)]) -> (Option<i32>, String, String) {
    admin(
        settings,
        &[
            "create-token",
            "--environment",
            "production",
            "--organization",
            "acme",
        ],
        "",
    )
}

/// The arguments of `admin deploy` of Order intake's `version` to
/// production, with the form in `form`.
fn deploy_order_intake<'a>(version: &'a str, form: &'a str) -> [&'a str; 13] {
    [
        "deploy",
        "--process",
        ORDER_INTAKE,
        "--organization",
        "acme",
        "--name",
        "Order intake",
        "--environment",
        "production",
        "--version",
        version,
        "--form",
        form,
    ]
}

fn admin(settings: &[(&str, &str)], args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    use std::io::Write as _;
    let mut child = command(settings)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("webhook_server admin runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn admin_commands_change_what_a_running_replica_serves() {
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let settings = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_SECRET_KEY", key),
    ];
    // A replica serving the example from the database.
    let replica = Server::with(&settings);
    let client = reqwest::Client::new();
    let order = format!("{}/webhook/send?uid={ORDER_INTAKE}", replica.base);
    let post = |token: String, body: &'static str| {
        client
            .post(&order)
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .send()
    };
    let payload = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;

    // A token, created and printed once, starts through the replica.
    let (code, out, err) = create_production_token(&settings);
    assert_eq!(code, Some(0), "{err}");
    let token = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        out.starts_with("token of production (acme), shown once: "),
        "{out}"
    );
    assert_eq!(post(token.clone(), payload).await.unwrap().status(), 202);

    // Revoked (read from standard input), the replica refuses it within a second.
    let (code, out, err) = admin(&settings, &["revoke-token"], &token);
    assert_eq!((code, out.as_str()), (Some(0), "revoked\n"), "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let status = post(token.clone(), payload).await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {status} a second after the revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, _, err) = admin(&settings, &["revoke-token"], &token);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such token"), "{err}");

    // A new version with another form, from a TOML file: the replica starts it.
    let (_, out, _) = create_production_token(&settings);
    let token = out.trim().rsplit(' ').next().unwrap().to_owned();
    let form = ConfigFile::new(
        "fields = [\n  { name = \"customerName\", kind = \"text\", mandatory = true },\n  { name = \"quantity\", kind = \"integer\", mandatory = true },\n]\n",
    );
    let (code, out, err) = admin(&settings, &deploy_order_intake("2", form.path()), "");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, format!("deployed {ORDER_INTAKE} version 2 to production\n"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let reply = post(token.clone(), r#"{"customerName": "John Doe", "quantity": 3}"#)
            .await
            .unwrap();
        if reply.status() == 202 {
            let outcome: Value = reply.json().await.unwrap();
            assert_eq!(outcome["version"], 2, "{outcome}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new version is not served: {}",
            reply.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (code, out, _) = admin(&settings, &["list"], "");
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!(
            "{ORDER_INTAKE} Order intake (acme) in production: version 2, fields customerName, quantity"
        )),
        "{out}"
    );
    // A bad form file is refused with its line, and deploys nothing.
    let bad = ConfigFile::new("fields = [{ name = \"a\", kind = \"money\" }]\n");
    let (code, _, err) = admin(&settings, &deploy_order_intake("3", bad.path()), "");
    assert_eq!(code, Some(1));
    assert!(err.contains(":1:32: fields.kind: unknown kind `money`"), "{err}");

    // A source, put from a file, then its secret rotated and the old retired.
    let source = ConfigFile::new(&format!(
        "[[source]]\nid = \"gitlab-orders\"\nprocess = \"{ORDER_INTAKE}\"\nenvironment = \"production\"\n\
         scheme = \"gitlab\"\nsecret_env = \"GITLAB_SECRET\"\n"
    ));
    let mut with_secret = settings.to_vec();
    with_secret.push(("GITLAB_SECRET", "the-first-gitlab-secret"));
    let (code, out, err) = admin(&with_secret, &["put-source", "--file", source.path()], "");
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "source gitlab-orders (gitlab) stored\n"),
        "{err}"
    );
    let from_gitlab = |secret: &'static str| {
        client
            .post(format!("{order}&source=gitlab-orders"))
            .header("x-gitlab-token", secret)
            .header("x-gitlab-event", "Push Hook")
            .body(r#"{"customerName": "John Doe", "quantity": 1}"#)
            .send()
    };
    assert_eq!(
        from_gitlab("the-first-gitlab-secret").await.unwrap().status(),
        202
    );
    let (code, out, _) = admin(
        &settings,
        &["rotate-source", "--id", "gitlab-orders"],
        "the-second-gitlab-secret\n",
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "source gitlab-orders: 2 secrets\n")
    );
    assert_eq!(
        from_gitlab("the-second-gitlab-secret").await.unwrap().status(),
        202
    );
    assert_eq!(
        from_gitlab("the-first-gitlab-secret").await.unwrap().status(),
        202
    );
    let (code, _, _) = admin(
        &settings,
        &["rotate-source", "--id", "gitlab-orders", "--retire-old"],
        "the-third-gitlab-secret",
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        from_gitlab("the-third-gitlab-secret").await.unwrap().status(),
        202
    );
    assert_eq!(
        from_gitlab("the-second-gitlab-secret").await.unwrap().status(),
        401
    );
    let (code, out, _) = admin(&settings, &["remove-source", "--id", "gitlab-orders"], "");
    assert_eq!((code, out.as_str()), (Some(0), "source gitlab-orders removed\n"));
    assert_eq!(
        from_gitlab("the-third-gitlab-secret").await.unwrap().status(),
        404
    );

    // No secret or token in what the replica printed.
    let later = replica.later.lock().unwrap().join("\n");
    for secret in [
        "the-first-gitlab-secret",
        "the-third-gitlab-secret",
        token.as_str(),
    ] {
        assert!(!later.contains(secret), "{later}");
    }
    drop(replica);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// `webhook_server --check FILE` with `settings`: its exit code and what
/// it wrote to standard error.
fn check(settings: &[(&str, &str)], file: &str) -> (Option<i32>, String) {
    let output = command(settings).args(["--check", file]).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The names of the environment variables the server's source reads.
fn variables_read() -> Vec<String> {
    let mut names = vec!["RUST_LOG".to_owned()];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/webhook_server");
    let mut files = vec![root.clone()];
    let mut sources = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            sources.push(path);
        }
    }
    assert!(sources.len() >= 5, "{sources:?}");
    for path in sources {
        let text = std::fs::read_to_string(path).unwrap();
        for (at, _) in text.match_indices("env::var(\"") {
            let rest = &text[at + "env::var(\"".len()..];
            names.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn help_lists_every_setting_it_reads_with_its_default() {
    let output = command(&[]).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    let names = variables_read();
    assert!(names.len() >= 19, "{names:?}");
    for name in &names {
        let row = help
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}`")) || line.contains(&format!(", `{name}`")))
            .unwrap_or_else(|| panic!("--help has no row for {name}:\n{help}"));
        // variable, default, example, what: four cells, none empty.
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 4, "{row}");
        assert!(cells.iter().all(|c| !c.trim().is_empty()), "{row}");
        // And every test starts the server without the operator's value.
        assert!(SETTINGS.contains(&name.as_str()), "{name} is not among SETTINGS");
    }
    // The short help points to it.
    let short = command(&[]).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&short.stdout).contains("--help"));
}

#[test]
fn check_names_the_file_it_cannot_read_and_the_key_it_cannot_use() {
    let output = command(&[])
        .args(["--check", "/nonexistent/nope.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: /nonexistent/nope.toml: cannot read the file: "),
        "{stderr}"
    );
    assert!(!stderr.contains("WEBHOOK_CONFIG"), "{stderr}");

    // A misspelt key, with the one it means.
    let typo = ConfigFile::new(&GITHUB_SOURCE.replace("secret_env", "secret_evn"));
    assert_eq!(
        check(&[], typo.path()),
        (
            Some(1),
            format!(
                "error: {}:8:1: unknown key 'secret_evn' (did you mean 'secret_env'?)\n",
                typo.path()
            )
        )
    );

    // A map key that is no field of Order intake's form: every delivery
    // would be 422.
    let misspelt = ConfigFile::new(&MAPPED_SOURCE.replace("orderNumber =", "orderNumbr ="));
    let (status, stderr) = check(&[("SHOP_SECRET", "shop-secret")], misspelt.path());
    assert_eq!(status, Some(1));
    let line = MAPPED_SOURCE
        .lines()
        .position(|l| l.starts_with("orderNumber ="))
        .unwrap()
        + 1;
    assert!(
        stderr.starts_with(&format!(
            "error: {}:{line}:14: map.orderNumbr: `orderNumbr` is no field of the start form of process \
             {ORDER_INTAKE} in `production` (its fields: customerName, orderNumber, productCode)",
            misspelt.path()
        )),
        "{stderr}"
    );
    // And the server refuses it at start-up the same way.
    let (status, stderr) = refused(&[
        ("WEBHOOK_CONFIG", misspelt.path()),
        ("SHOP_SECRET", "shop-secret"),
    ]);
    assert_eq!(status, Some(1));
    assert!(
        stderr.contains("map.orderNumbr: `orderNumbr` is no field"),
        "{stderr}"
    );
}

#[cfg(feature = "temporal")]
#[test]
fn a_process_without_definition_key_is_refused_for_temporal_by_check_and_at_start() {
    let file = ConfigFile::new(OWN_PROCESS);
    // Nothing listens there: the file is refused before any engine call.
    let temporal = ("TEMPORAL_URL", "http://127.0.0.1:9");
    let expected = format!(
        "{}:8:1: definition_key: process `Refund` (1b4e28ba-2fa1-11d2-883f-0016d3cca427) has no \
         definition_key: Temporal (TEMPORAL_URL) starts the process definition (workflow type) it names",
        file.path()
    );
    let (status, stderr) = check(&[("SHOP_TOKEN", SHOP_TOKEN), temporal], file.path());
    assert_eq!(status, Some(1));
    assert_eq!(stderr, format!("error: {expected}\n"));
    let (status, stderr) = refused(&[
        ("WEBHOOK_CONFIG", file.path()),
        ("SHOP_TOKEN", SHOP_TOKEN),
        temporal,
    ]);
    assert_eq!(status, Some(1));
    assert_eq!(stderr, format!("error: {expected}\n"));
    // With both keys, the same file checks.
    let keyed = ConfigFile::new(&own_process_keyed("refund", "exchange"));
    let (status, stderr) = check(&[("SHOP_TOKEN", SHOP_TOKEN), temporal], keyed.path());
    assert_eq!(status, Some(0), "{stderr}");
}

/// [`OWN_PROCESS`] with the definition keys of Refund and Exchange.
fn own_process_keyed(refund: &str, exchange: &str) -> String {
    OWN_PROCESS
        .replace(
            "name = \"Refund\"\n",
            &format!("name = \"Refund\"\ndefinition_key = \"{refund}\"\n"),
        )
        .replace(
            "name = \"Exchange\"\n",
            &format!("name = \"Exchange\"\ndefinition_key = \"{exchange}\"\n"),
        )
}

#[cfg(feature = "camunda7")]
#[tokio::test]
async fn on_camunda_7_a_declared_process_starts_an_instance_with_its_variables_in_camundas_history() {
    let Some(camunda) = common::server_setting("CAMUNDA_URL", "scripts/camunda start prints it") else {
        return;
    };
    // Refund starts Camunda's `order-intake` (it ends at once), Exchange
    // (a draft) names `order-review`.
    let file = ConfigFile::new(&own_process_keyed("order-intake", "order-review"));
    let server = Server::with(&[
        ("WEBHOOK_CONFIG", file.path()),
        ("SHOP_TOKEN", SHOP_TOKEN),
        ("CAMUNDA_URL", &camunda),
    ]);
    assert!(
        server
            .printed
            .iter()
            .any(|l| l == &format!("engine: Camunda 7 at {camunda}")),
        "{:?}",
        server.printed
    );
    let client = reqwest::Client::new();
    let key = format!("refund-{}", std::process::id());
    let reply = client
        .post(format!(
            "{}/webhook/send?uid=1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            server.base
        ))
        .header("authorization", format!("Bearer {SHOP_TOKEN}"))
        .header("content-type", "application/json")
        .header("idempotency-key", &key)
        .body(r#"{"orderNumber": "R-1", "amount": 19.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    let answer: Value = reply.json().await.unwrap();
    let id = answer["instanceId"].as_str().unwrap();
    let history: Value = client
        .get(format!("{camunda}/history/process-instance/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["processDefinitionKey"], "order-intake");
    assert_eq!(history["businessKey"], key.as_str());
    assert_eq!(history["state"], "COMPLETED");
    let variables: Value = client
        .get(format!(
            "{camunda}/history/variable-instance?processInstanceId={id}&deserializeValues=false"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut seen: Vec<(String, Value, Value)> = variables
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["type"].clone(),
                v["value"].clone(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("amount".to_owned(), Value::from("Double"), Value::from(19.5)),
            (
                "orderNumber".to_owned(),
                Value::from("String"),
                Value::from("R-1")
            ),
            ("reason".to_owned(), Value::from("String"), Value::from("damaged")),
        ]
    );
}

#[tokio::test]
async fn with_postgres_and_the_engine_away_a_start_is_queued_and_the_admin_commands_show_and_discard_it() {
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    // Nothing listens on the discard port: every engine call is refused.
    let settings = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("TEMPORAL_URL", "http://127.0.0.1:9"),
    ];
    let server = Server::with(&settings);
    assert_eq!(
        server.printed("inbox: "),
        Some("fallback, in PostgreSQL (kept starts survive a restart)")
    );
    let response = call(&reqwest::Client::new(), &server.base, TOKEN, &[]).await;
    assert_eq!(response.status().as_u16(), 202);
    let body = response.text().await.unwrap();
    let queued: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(queued["status"], "queued");
    let id = queued["deliveryId"].as_str().unwrap().to_owned();

    // The dispatcher tries, fails, and keeps the engine's words for the operator.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let (code, out, err) = admin(&settings, &["deliveries", "list", "--status", "queued"], "");
        assert_eq!(code, Some(0), "{err}");
        if out.contains("attempts 1") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(listed.starts_with(&format!("{id} queued received ")), "{listed}");
    assert!(
        listed.contains("in production process dd9759e0-cc94-11ed-938f-13cf60270555 v1"),
        "{listed}"
    );
    assert!(listed.contains("attempts 1"), "{listed}");
    let (code, of_source, _) = admin(
        &settings,
        &["deliveries", "list", "--source", "github-orders"],
        "",
    );
    assert_eq!(
        (code, of_source.as_str()),
        (Some(0), ""),
        "a token call has no source"
    );

    let (code, shown, _) = admin(&settings, &["deliveries", "show", &id], "");
    assert_eq!(code, Some(0));
    assert!(!shown.contains("John Doe"), "no payload unless asked: {shown}");
    let (_, with_payload, _) = admin(&settings, &["deliveries", "show", &id, "--payload"], "");
    assert!(
        with_payload.contains("\"customerName\": \"John Doe\""),
        "{with_payload}"
    );

    let (code, out, _) = admin(&settings, &["deliveries", "retry", &id], "");
    assert_eq!(code, Some(1), "a queued start is not retried: {out}");
    let (code, out, err) = admin(&settings, &["deliveries", "discard", &id], "");
    assert_eq!((code, out.as_str()), (Some(0), "1 of 1 discarded\n"), "{err}");
    let (_, listed, _) = admin(&settings, &["deliveries", "list", "--status", "discarded"], "");
    assert!(listed.starts_with(&format!("{id} discarded")), "{listed}");
    let (code, _, err) = admin(&settings, &["deliveries", "show", "not-an-id"], "");
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn an_inbox_in_memory_says_it_does_not_survive_a_restart() {
    let server = Server::with(&[("WEBHOOK_INBOX", "always")]);
    assert_eq!(
        server.printed("inbox: "),
        Some("always, in memory: kept starts do not survive a restart (WEBHOOK_DATA=:memory:)")
    );
    let off = Server::with(&[]);
    assert!(off.printed("inbox: ").unwrap().starts_with("off"));
    let (code, err) = refused(&[("WEBHOOK_INBOX", "sometimes")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("WEBHOOK_INBOX"), "{err}");
}

/// The console in a real browser (tests/console/console.mjs: Debian's
/// Chromium driven by Playwright) against the server with PostgreSQL and
/// a real Camunda 7: sign-in, a GitHub delivery with its source, event and
/// instance, a refused one with its code and violations, the status filter,
/// a dead delivery retried from its page once its definition is deployed,
/// hostile payloads shown as text, no credential on any page.
#[tokio::test]
async fn the_console_in_a_browser_shows_every_delivery_and_retries_a_dead_one() {
    let Some(database) =
        common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let on_postgres = [
        ("DATABASE_URL", database.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        (
            "WEBHOOK_SECRET_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ];
    console_in_a_browser(&on_postgres, "postgres").await;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// The same, on the server's default: its file.
#[tokio::test]
async fn on_its_file_the_console_in_a_browser_shows_every_delivery_and_retries_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.db");
    console_in_a_browser(&[("WEBHOOK_DATA", data.to_str().unwrap())], "file").await;
}

/// `console.mjs` in a browser against the server on the store `store`
/// names; its screenshots under `console-screenshots-{name}`.
async fn console_in_a_browser(store: &[(&str, &str)], name: &str) {
    let (Some(camunda), Some(console)) = (
        common::server_setting(
            "CAMUNDA_URL",
            "e.g. http://127.0.0.1:8090/engine-rest (scripts/camunda start)",
        ),
        common::server_setting(
            "CONSOLE_LIBRARIES",
            "CONSOLE_LIBRARIES=tests/console, with npm ci run there",
        ),
    ) else {
        return;
    };
    const REPO: &str = "3f9c1a52-0d7e-4b8a-9e61-7a2b5c4d3e21";
    const REFUND: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    const ADMIN_TOKEN: &str = "the-console-test-admin-token-0123456789";
    let run = uuid::Uuid::new_v4().simple().to_string();
    let dead_key = format!("console-check-{}", &run[..12]);
    let file = ConfigFile::new(&format!(
        r#"
[[environment]]
id = "production"
organization = "acme"
token_env = "SHOP_TOKEN"

[[process]]
uuid = "{REPO}"
organization = "acme"
name = "Repository events"
definition_key = "order-intake"

[[process.deployment]]
environment = "production"
version = 3
fields = [
  {{ name = "ref", kind = "text", mandatory = true }},
  {{ name = "repository", kind = "text", mandatory = true }},
]

[[process]]
uuid = "{REFUND}"
organization = "acme"
name = "Refund"
definition_key = "{dead_key}"

[[process.deployment]]
environment = "production"
version = 1
fields = [{{ name = "orderNumber", kind = "text", mandatory = true }}]

[[source]]
id = "github-repo"
process = "{REPO}"
environment = "production"
scheme = "github"
secret_env = "GITHUB_WEBHOOK_SECRET"
events = ["push"]

[source.map]
ref = "$.body.ref"
repository = "$.body.repository.full_name"
"#
    ));
    let mut settings = store.to_vec();
    settings.extend([
        ("WEBHOOK_CONFIG", file.path()),
        ("CAMUNDA_URL", camunda.as_str()),
        ("WEBHOOK_INBOX", "always"),
        ("WEBHOOK_ADMIN_ADDR", "127.0.0.1:0"),
        ("WEBHOOK_ADMIN_TOKEN", ADMIN_TOKEN),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        ("SHOP_TOKEN", SHOP_TOKEN),
    ]);
    let server = Server::with(&settings);
    let admin_base = server
        .printed("console:         ")
        .and_then(|line| line.split(' ').next())
        .unwrap_or_else(|| panic!("the console's address is printed: {:?}", server.printed))
        .trim_end_matches('/')
        .to_owned();
    assert!(
        server.printed.iter().all(|line| !line.contains(ADMIN_TOKEN)),
        "the admin token is never printed"
    );
    let screenshots =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-screenshots-{name}"));
    let output = Command::new("node")
        .arg(std::path::Path::new(&console).join("console.mjs"))
        .current_dir(&console)
        .env("WEBHOOK_BASE", &server.base)
        .env("ADMIN_BASE", &admin_base)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("TOKEN", SHOP_TOKEN)
        .env("GITHUB_SECRET", GITHUB_SECRET)
        .env("CAMUNDA_URL", &camunda)
        .env("DEAD_KEY", &dead_key)
        .env("REPO_UUID", REPO)
        .env("REFUND_UUID", REFUND)
        .env("SCREENSHOTS", &screenshots)
        .output()
        .expect("node runs");
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{said}");
    assert!(output.status.success(), "the browser test failed:\n{said}");
    for page in [
        "01-sign-in",
        "03-deliveries",
        "04-refused",
        "06-dead",
        "07-retried-started",
        "08-sources",
    ] {
        assert!(screenshots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
    drop(server);
}

#[tokio::test]
async fn the_delivery_log_in_postgres_outlives_a_restart_and_is_purged_past_its_retention() {
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let settings = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_INBOX", "off"),
    ];
    let first = Server::with(&settings);
    assert_eq!(
        first.printed("delivery log: "),
        Some("in PostgreSQL, kept 7 days")
    );
    assert_eq!(
        first.printed("console:         "),
        Some("off (set WEBHOOK_ADMIN_ADDR and WEBHOOK_ADMIN_TOKEN)")
    );
    let response = call(
        &reqwest::Client::new(),
        &first.base,
        TOKEN,
        &[("idempotency-key", "order-1")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);
    let listed = |settings: &[(&str, &str)]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (code, out, err) = admin(settings, &["deliveries", "list"], "");
            assert_eq!(code, Some(0), "{err}");
            if !out.is_empty() || std::time::Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let out = listed(&settings);
    assert!(out.contains(" started received "), "{out}");
    drop(first);

    // A restart keeps it; one with a retention of a second purges it at once.
    let second = Server::with(&settings);
    assert_eq!(listed(&settings).lines().count(), 1);
    drop(second);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let mut short = settings.to_vec();
    short.push(("WEBHOOK_LOG_RETENTION", "1s"));
    let third = Server::with(&short);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, out, _) = admin(&settings, &["deliveries", "list"], "");
        if out.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never purged: {out}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(third);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// The server's default: its state in one file. A GitHub delivery starts;
/// the server is killed (`SIGKILL`) and started again with its engine
/// away: the redelivery replays the same instance and the source added
/// with `admin put-source` still verifies; new deliveries are kept; killed
/// and started once more with the engine back, each kept start is started
/// exactly once, and its redelivery replays it.
#[tokio::test]
async fn with_its_file_it_survives_sigkill_keys_replay_sources_stay_and_kept_starts_start_once() {
    let Some(senders) = common::senders::Senders::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.db");
    let data = data.to_str().unwrap();
    let settings = [("WEBHOOK_DATA", data), ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)];
    let client = reqwest::Client::new();
    let source_url = |base: &str| format!("{base}/webhook/send?uid={ORDER_INTAKE}&source=github-orders");
    let mut first = Server::with(&settings);
    assert_eq!(
        first.printed("inbox: "),
        Some(format!("fallback, in the file {data} (kept starts survive a restart)").as_str())
    );
    // The source is added to the running server's file.
    let source = ConfigFile::new(GITHUB_SOURCE);
    let (code, out, err) = admin(&settings, &["put-source", "--file", source.path()], "");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().last(),
        Some("source github-orders (github) stored"),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = std::fs::metadata(format!("{data}.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key & 0o777, 0o600, "the generated key is the owner's only");
        assert_eq!(
            std::fs::metadata(data).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let started = github_delivery(&client, &source_url(&first.base), &senders, "push", "d-1").await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["status"], "started");
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    // Again, with the engine away (nothing listens on the discard port).
    let mut away = Server::with(&[settings[0], settings[1], ("TEMPORAL_URL", "http://127.0.0.1:9")]);
    let url = source_url(&away.base);
    let again = github_delivery(&client, &url, &senders, "push", "d-1").await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["instanceId"], started["instanceId"], "the same instance");
    let mut kept = Vec::new();
    for delivery in ["d-2", "d-3", "d-4"] {
        let reply = github_delivery(&client, &url, &senders, "push", delivery).await;
        assert_eq!(reply.status(), 202);
        let reply: Value = reply.json().await.unwrap();
        assert_eq!(reply["status"], "queued", "{reply}");
        kept.push(reply["deliveryId"].as_str().unwrap().to_owned());
    }
    away.child.kill().unwrap();
    away.child.wait().unwrap();
    let away_said = away.later.lock().unwrap().join("\n");

    // Once more, with the engine back: each kept start starts once. A start
    // the killed server's dispatcher had claimed waits for its claim's
    // lease (60 s) to end: the dead dispatcher may have reached the engine.
    let back = Server::with(&settings);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(100);
    let listed = loop {
        let (code, out, err) = admin(&settings, &["deliveries", "list", "--status", "started"], "");
        assert_eq!(code, Some(0), "{err}");
        if kept.iter().all(|id| out.contains(id.as_str())) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    for id in &kept {
        if !listed.contains(&format!("{id} started")) {
            let (_, all, _) = admin(&settings, &["deliveries", "list"], "");
            let said = back.later.lock().unwrap().join("\n");
            panic!(
                "{id} not started within 100 s; every delivery:\n{all}\nthe server away said:\n{away_said}\nthe server back said:\n{said}"
            );
        }
    }
    let (_, queued, _) = admin(&settings, &["deliveries", "list", "--status", "queued"], "");
    assert_eq!(queued, "", "nothing left queued");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later = back.later.lock().unwrap().join("\n");
    assert_eq!(
        later.matches("started instance").count(),
        3,
        "each kept start once: {later}"
    );
    let redelivered = github_delivery(&client, &source_url(&back.base), &senders, "push", "d-2").await;
    assert_eq!(redelivered.headers()["idempotent-replayed"], "true");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let later = back.later.lock().unwrap().join("\n");
    assert_eq!(
        later.matches("started instance").count(),
        3,
        "the redelivery started nothing"
    );
}

/// Stopped cleanly (`SIGTERM`), the server leaves its state in the one
/// file, the write-ahead log folded in: a copy of that file alone (with
/// its key) is a backup on which a redelivery replays the same instance
/// and the delivery is listed.
#[cfg(unix)]
#[tokio::test]
async fn stopped_cleanly_its_file_alone_holds_everything_and_a_copy_replays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.db");
    let data = data.to_str().unwrap();
    let client = reqwest::Client::new();
    let mut server = Server::with(&[("WEBHOOK_DATA", data)]);
    let first = call(
        &client,
        &server.base,
        TOKEN,
        &[("idempotency-key", "order-123456")],
    )
    .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert!(
        std::path::Path::new(&format!("{data}-wal")).exists(),
        "serving, it writes ahead"
    );
    let term = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        server.child.wait().unwrap().success(),
        "SIGTERM stops it with status 0"
    );
    assert!(
        !std::path::Path::new(&format!("{data}-wal")).exists(),
        "stopped, the write-ahead log is folded into the file"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    let said = server.later.lock().unwrap().join("\n");
    assert!(said.ends_with("\nstopped"), "{said}");
    assert!(
        !said.contains("still writing"),
        "the dispatcher stopped and the log wrote its last records: {said}"
    );

    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("copy.db");
    let copy = copy.to_str().unwrap();
    std::fs::copy(data, copy).unwrap();
    std::fs::copy(format!("{data}.key"), format!("{copy}.key")).unwrap();
    let restored = Server::with(&[("WEBHOOK_DATA", copy)]);
    let again = call(
        &client,
        &restored.base,
        TOKEN,
        &[("idempotency-key", "order-123456")],
    )
    .await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["instanceId"], first["instanceId"], "the same instance");
    let (code, listed, err) = admin(&[("WEBHOOK_DATA", copy)], &["deliveries", "list"], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.contains(" started received "), "{listed}");
}

/// Without `WEBHOOK_TOKEN`, the first start on a file shows the token it
/// generated, once; a later start keeps that token (it still works) and
/// adds none, so restarts do not pile up valid credentials.
#[tokio::test]
async fn on_its_file_a_generated_token_is_shown_at_the_first_start_only_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.db");
    let settings = [("WEBHOOK_DATA", data.to_str().unwrap()), ("WEBHOOK_TOKEN", "")];
    let client = reqwest::Client::new();
    let first = Server::with(&settings);
    let token = first
        .printed("production token (shown once): ")
        .unwrap_or_else(|| panic!("the first start shows its token: {:?}", first.printed))
        .to_owned();
    assert!(first.curl.contains(&token), "{}", first.curl);
    drop(first);

    let again = Server::with(&settings);
    assert!(
        again.printed.iter().all(|line| !line.contains("shown once")),
        "{:?}",
        again.printed
    );
    let said = again.printed("production token: ").unwrap();
    assert!(said.starts_with("the one shown at the first start on "), "{said}");
    assert!(said.contains("admin create-token"), "{said}");
    assert!(again.curl.contains("Bearer $TOKEN"), "{}", again.curl);
    assert_eq!(call(&client, &again.base, &token, &[]).await.status(), 202);
    drop(again);
    use sqlx::Connection as _;
    let mut file = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", data.display()))
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
        .fetch_one(&mut file)
        .await
        .unwrap();
    assert_eq!(stored, 1, "one token stored after two starts");
}

/// `WEBHOOK_DATA=:memory:` keeps nothing, and the admin commands say they
/// have nothing to change; a data file it cannot open stops it, naming it.
#[test]
fn in_memory_the_admin_commands_refuse_and_an_unusable_file_is_named() {
    let (code, _, err) = admin(&[("WEBHOOK_DATA", ":memory:")], &["list"], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("WEBHOOK_DATA=:memory: keeps nothing to change"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database").unwrap();
    let (code, err) = refused(&[("WEBHOOK_DATA", text.to_str().unwrap())]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("WEBHOOK_DATA") && err.contains("notes.txt"), "{err}");
}

/// Moving from the file to PostgreSQL: `admin copy-to-postgres` copies the
/// file's state, and a server on PostgreSQL then replays the file's
/// deliveries, verifies its source (sealed again under PostgreSQL's key)
/// and starts the start the file kept, once. Copying again adds nothing.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_files_state_copied_to_postgres_replays_its_keys_verifies_its_source_and_starts_its_kept_start() {
    let Some(senders) = common::senders::Senders::find() else {
        return;
    };
    let Some(url) = common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.db");
    let data = data.to_str().unwrap();
    let file = [("WEBHOOK_DATA", data), ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)];
    let client = reqwest::Client::new();
    let source_url = |base: &str| format!("{base}/webhook/send?uid={ORDER_INTAKE}&source=github-orders");

    let mut on_file = Server::with(&file);
    let source = ConfigFile::new(GITHUB_SOURCE);
    let (code, _, err) = admin(&file, &["put-source", "--file", source.path()], "");
    assert_eq!(code, Some(0), "{err}");
    let started = github_delivery(&client, &source_url(&on_file.base), &senders, "push", "d-1").await;
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["status"], "started");
    on_file.child.kill().unwrap();
    on_file.child.wait().unwrap();
    let away = Server::with(&[file[0], file[1], ("TEMPORAL_URL", "http://127.0.0.1:9")]);
    let queued = github_delivery(&client, &source_url(&away.base), &senders, "push", "d-2").await;
    let queued: Value = queued.json().await.unwrap();
    assert_eq!(queued["status"], "queued", "{queued}");
    let kept = queued["deliveryId"].as_str().unwrap().to_owned();
    drop(away);

    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";
    let copy = [
        file[0],
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_SECRET_KEY", key),
    ];
    let (code, _, err) = admin(&copy[..3], &["copy-to-postgres"], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("WEBHOOK_SECRET_KEY: not set"), "{err}");
    let (code, out, err) = admin(&copy, &["copy-to-postgres"], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(
            "2 deployments, 1 tokens, 1 sources, 1 idempotency keys (0 already there), 1 queued starts (0 already there)"
        ),
        "{out}"
    );
    let (code, out, _) = admin(&copy, &["copy-to-postgres"], "");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("0 idempotency keys (1 already there), 0 queued starts (1 already there)"),
        "{out}"
    );

    let on_postgres = [
        ("DATABASE_URL", url.as_str()),
        ("WEBHOOK_SCHEMA", schema.as_str()),
        ("WEBHOOK_SECRET_KEY", key),
    ];
    let server = Server::with(&on_postgres);
    let url_pg = source_url(&server.base);
    let again = github_delivery(&client, &url_pg, &senders, "push", "d-1").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["instanceId"], started["instanceId"]);
    // The kept start is started by PostgreSQL's dispatcher, once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, out, _) = admin(&on_postgres, &["deliveries", "list", "--status", "started"], "");
        if out.contains(&kept) || std::time::Instant::now() > deadline {
            assert!(out.contains(&format!("{kept} started")), "{out}");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let redelivered = github_delivery(&client, &url_pg, &senders, "push", "d-2").await;
    assert_eq!(redelivered.headers()["idempotent-replayed"], "true");
    // The source's secret was sealed again and still verifies.
    let new = github_delivery(&client, &url_pg, &senders, "push", "d-3").await;
    assert_eq!(new.status(), 202);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let later = server.later.lock().unwrap().join("\n");
    assert_eq!(
        later.matches("started instance").count(),
        2,
        "d-2 once, d-3 once: {later}"
    );
    drop(server);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
