//! A webhook server over the in-memory stores, seeded with the documented
//! example: organization `acme`, environment `production`, the deployed
//! process "Order intake" and a draft-only process.
//!
//! ```sh
//! cargo run --features server
//! ```
//!
//! It serves `GET /healthz`, `GET /readyz` and Prometheus metrics at
//! `GET /metrics`, on the webhook's address or on `WEBHOOK_METRICS_ADDR`
//! when that is set.
//!
//! `WEBHOOK_ADDR` sets the address (default `127.0.0.1:8080`); `WEBHOOK_TOKEN`
//! sets the production token (at least 32 characters; never printed), else
//! one is generated and printed once (on a file, at its first start only: a
//! later start keeps the file's token). `RUST_LOG=process_webhook=info` shows
//! one log line per call. It serves with [`serve`]'s default limits and stops
//! gracefully on Ctrl-C or SIGTERM (calls in flight get up to 10 s).
//!
//! `WEBHOOK_CONFIG` names a TOML file whose `[[source]]` tables add webhook
//! sources (GitHub, Stripe, Slack, Shopify, Twilio, GitLab, Standard
//! Webhooks, HMAC, Basic) of the example's processes: `id`, `process`,
//! `environment`, `scheme`, `secret_env` (the environment variable, or a
//! list of them during a rotation, that holds the secret: secrets are never
//! in the file), `events` (optional); for `hmac`: `header`, `prefix`,
//! `algorithm`, `encoding`, `timestamp_header`, `delivery_header`; for
//! `twilio`: `public_origin`; for `basic`: `user`. Each source's URL is
//! printed at start; a table the server cannot use stops it, naming the
//! file, the line and the key.
//!
//! The same file may declare the operator's own environments and processes
//! instead of the example: `[[environment]]` (`id`, `organization`,
//! `token_env` and/or `token_sha256`, one or a list), `[[process]]`
//! (`uuid`, `organization`, `name`, `definition_key`) with
//! `[[process.deployment]]` tables (`environment`, `version` or
//! `draft = true`, `fields`: `{ name, kind, mandatory, default, options }`,
//! `kind` the `type` of a field kind's serde shape). When it declares any,
//! the example is not seeded. `webhook_server --check FILE` validates a
//! file without serving (exit 0, or 1 with the same message a start gives).
//!
//! With the `postgres` feature, `webhook_server admin …` changes the
//! store replicas share (`DATABASE_URL`, `WEBHOOK_SCHEMA`,
//! `WEBHOOK_SECRET_KEY`) without a file: `create-token` (printed once,
//! stored as its digest), `revoke-token` (read from standard input),
//! `deploy` (a version or a draft, its form from a TOML or JSON file of
//! `fields`), `list`, `put-source` (a file of one `[[source]]` table),
//! `rotate-source` (the new secret from standard input; `--retire-old`),
//! `remove-source`. `--help` documents each.
//!
//! With `--features server,postgres` and `DATABASE_URL` set, models, tokens,
//! sources and idempotency keys live in PostgreSQL (migrated and seeded at
//! start, idempotently, so that several replicas can share the database),
//! in the schema `WEBHOOK_SCHEMA` (default `process_webhook`). Source secrets are stored encrypted (AES-256-GCM) under
//! `WEBHOOK_SECRET_KEY` (32 bytes, base64: `openssl rand -base64 32`);
//! without it the server refuses to store a source's secret. During a key
//! roll, `WEBHOOK_OLD_SECRET_KEYS` (comma-separated) still opens rows
//! sealed under older keys, which the server then seals again under the
//! new one.
//!
//! With `--features server,redis` and `REDIS_URL` set, idempotency keys
//! (in preference to PostgreSQL's) and rate limits live in Redis.
//! `WEBHOOK_RATE_LIMIT` (`100/s`, `6000/min`; unset: no limit) limits each
//! environment's calls.
//!
//! With `--features server,temporal` and `TEMPORAL_URL` set (the frontend's
//! HTTP API, e.g. `http://127.0.0.1:7243`), starts become Temporal workflows
//! (`TEMPORAL_NAMESPACE`, default `default`; `TEMPORAL_TASK_QUEUE`, default
//! `process-webhook`; `TEMPORAL_API_KEY` if the server wants one).
//!
//! With `--features server,camunda7` and `CAMUNDA_URL` set (e.g.
//! `http://localhost:8080/engine-rest`), starts go to that Camunda 7 instead
//! of the in-memory engine.

mod admin;
mod config;
mod console;
#[cfg(feature = "postgres")]
mod copy;
mod deliveries;
mod engine;
mod inbox;
mod stores;

use process_webhook::*;

const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const RETURNS_DRAFT: &str = "6f1d0c3a-2b4e-4c5d-8e9f-0a1b2c3d4e5f";

/// A shorter token could be guessed online.
const MIN_TOKEN_CHARS: usize = 32;

use engine::EngineChoice;
use stores::stores;

/// What the server serves: the models, deployments and token digests it
/// puts into its stores.
#[derive(Clone)]
struct Seed {
    models: Vec<ProcessModel>,
    deployments: Vec<Deployment>,
    tokens: Vec<(TokenDigest, Environment)>,
    environments: Vec<Environment>,
}

impl Seed {
    /// The documented example: organization `acme`, its `production`
    /// environment and `token`, the deployed "Order intake" and the
    /// draft-only "Returns". The deployments have fixed ids, so that
    /// seeding a database twice (or from two replicas at once) adds nothing
    /// the second time.
    fn example(token: &EnvironmentToken) -> Self {
        let acme = OrganizationId::new("acme");
        let production = EnvironmentId::new("production");
        let order_intake: ProcessUuid = ORDER_INTAKE.parse().expect("a UUID");
        let returns: ProcessUuid = RETURNS_DRAFT.parse().expect("a UUID");
        let form = StartForm::new([
            FieldSpec::mandatory("customerName", FieldKind::Text),
            FieldSpec::mandatory("orderNumber", FieldKind::Text),
            FieldSpec::mandatory("productCode", FieldKind::Text),
        ]);
        let definition_key =
            std::env::var("CAMUNDA_DEFINITION_KEY").unwrap_or_else(|_| "order-intake".to_owned());
        let environment = Environment::new(production.clone(), acme.clone());
        Self {
            models: vec![
                ProcessModel::new(order_intake, acme.clone(), "Order intake"),
                ProcessModel::new(returns, acme.clone(), "Returns (draft)"),
            ],
            deployments: vec![
                Deployment::new(
                    order_intake,
                    VersionTag::Released(1),
                    production.clone(),
                    form.clone(),
                )
                .with_id(uuid::Uuid::from_u128(0x5eed_0001_0000_4000_8000_0000_0000_0001).into())
                .with_definition_key(definition_key),
                Deployment::new(returns, VersionTag::Draft, production.clone(), form)
                    .with_id(uuid::Uuid::from_u128(0x5eed_0002_0000_4000_8000_0000_0000_0002).into()),
            ],
            tokens: vec![(token.digest(), environment.clone())],
            environments: vec![environment],
        }
    }

    /// The processes and environments it deploys to.
    fn served(&self) -> Vec<config::Served> {
        config::served(&self.deployments, &self.environments)
    }
}

impl From<config::Declared> for Seed {
    fn from(declared: config::Declared) -> Self {
        Self {
            models: declared.models,
            deployments: declared.deployments,
            tokens: declared.tokens,
            environments: declared.environments,
        }
    }
}

/// The `WEBHOOK_CONFIG` file, if one is named, for processes served to
/// `engine`.
fn configured(
    example: &Seed,
    engine: &EngineChoice,
) -> Result<Option<config::Config>, Box<dyn std::error::Error>> {
    let Ok(path) = std::env::var("WEBHOOK_CONFIG") else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("WEBHOOK_CONFIG={path}: cannot read the file: {e}"))?;
    let config = config::parse_config(&path, &text, &example.served(), engine.keyed(), |name| {
        std::env::var(name).ok()
    })?;
    Ok(Some(config))
}

/// `WEBHOOK_RATE_LIMIT` (`100/s`, `6000/min`), if set.
fn rate_limit() -> Result<Option<Quota>, Box<dyn std::error::Error>> {
    match std::env::var("WEBHOOK_RATE_LIMIT") {
        Ok(text) if !text.trim().is_empty() => {
            let quota: Quota = text
                .parse()
                .map_err(|e| bad_setting("WEBHOOK_RATE_LIMIT", Some(&text), &e))?;
            println!("rate limit: {text} per environment");
            Ok(Some(quota))
        }
        _ => Ok(None),
    }
}

/// A setting that stops the server at start: the variable, its value
/// (where showing it is safe) and what is wrong with it.
#[derive(Debug)]
struct BadSetting {
    pub(crate) variable: &'static str,
    pub(crate) value: Option<String>,
    pub(crate) problem: String,
}

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}: {}", self.variable, self.problem),
            None => write!(f, "{}: {}", self.variable, self.problem),
        }
    }
}

impl std::error::Error for BadSetting {}

/// What went wrong with `variable`, and its cause with the whole chain of
/// its sources. URLs (which may hold passwords) are never shown.
fn bad_setting(variable: &'static str, value: Option<&str>, error: &dyn std::error::Error) -> BadSetting {
    let mut problem = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        problem.push_str(": ");
        problem.push_str(&cause.to_string());
        source = cause.source();
    }
    BadSetting {
        variable,
        value: value.map(str::to_owned),
        problem,
    }
}

/// Binds `addr`, the value of `variable`, or says which variable and why not.
async fn listen(variable: &'static str, addr: &str) -> Result<tokio::net::TcpListener, BadSetting> {
    tokio::net::TcpListener::bind(addr).await.map_err(|error| {
        let problem = match error.kind() {
            std::io::ErrorKind::AddrInUse => "the address is in use by another program".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "the address is not one of this machine's".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "not allowed to listen there (a port below 1024?)".to_owned()
            }
            _ => format!("cannot listen there (expected host:port, e.g. 127.0.0.1:8080): {error}"),
        };
        BadSetting {
            variable,
            value: Some(addr.to_owned()),
            problem,
        }
    })
}

/// The command line: no arguments serve; `--check FILE` validates a
/// `WEBHOOK_CONFIG` file; `admin …` changes the server's state.
#[derive(clap::Parser)]
#[command(
    name = "webhook_server",
    about = "Serves the webhook that starts business processes",
    after_help = "Settings: environment variables, listed with their defaults by --help.",
    after_long_help = include_str!("../../docs/settings.md")
)]
struct Cli {
    /// Check a WEBHOOK_CONFIG file without serving: exit 0, or 1 with the
    /// message a start would give.
    #[arg(long, value_name = "FILE")]
    check: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Change the server's state: the file of WEBHOOK_DATA, or the
    /// PostgreSQL store replicas share (DATABASE_URL, WEBHOOK_SCHEMA,
    /// WEBHOOK_SECRET_KEY): tokens, deployments, sources, kept starts.
    Admin {
        #[command(subcommand)]
        action: admin::Action,
    },
}

fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    let cli = Cli::parse();
    if let Some(path) = cli.check {
        // Validates the file as a start would, without serving.
        let example = Seed::example(&EnvironmentToken::generate());
        // The engine the variables choose, as a start would.
        let engine = EngineChoice::from_env();
        return match config::read_config(&path, &example.served(), engine.keyed(), |name| {
            std::env::var(name).ok()
        }) {
            Ok(config) => {
                let what = match &config.declared {
                    Some(d) => format!(
                        "{} environments, {} processes, {} deployments",
                        d.environments.len(),
                        d.models.len(),
                        d.deployments.len()
                    ),
                    None => "the documented example".to_owned(),
                };
                println!("{path}: ok ({what}, {} sources)", config.sources.len());
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let work = async {
        match cli.command {
            None => run().await,
            Some(Command::Admin { action }) => admin::run(action).await,
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,process_webhook=info")),
        )
        // Colours only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let addr = std::env::var("WEBHOOK_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let (token, generated) = match std::env::var("WEBHOOK_TOKEN") {
        Ok(token) if !token.trim().is_empty() => {
            let token = token.trim();
            if token.chars().count() < MIN_TOKEN_CHARS {
                eprintln!(
                    "WEBHOOK_TOKEN is too short: a token must have at least {MIN_TOKEN_CHARS} characters \
                     (unset it to have a random one generated)"
                );
                std::process::exit(2);
            }
            (EnvironmentToken::new(token), false)
        }
        _ => (EnvironmentToken::generate(), true),
    };

    let order_intake: ProcessUuid = ORDER_INTAKE.parse()?;
    let returns: ProcessUuid = RETURNS_DRAFT.parse()?;
    let example = Seed::example(&token);
    // A file that declares environments or processes serves those, not
    // the example.
    let choice = EngineChoice::from_env();
    let (seed, sources, is_example) = match configured(&example, &choice)? {
        None => (example, Vec::new(), true),
        Some(config::Config {
            declared: None,
            sources,
        }) => (example, sources, true),
        Some(config::Config {
            declared: Some(declared),
            sources,
        }) => (Seed::from(declared), sources, false),
    };
    let stores = stores(&seed, &sources, generated).await?;
    // A file's token from an earlier start, kept: none to show.
    let generated = generated && !stores.token_from_before;
    let inbox_settings = inbox::InboxSettings::from_env(stores.inbox.is_some())?;
    let console_settings = console::ConsoleSettings::from_env()?;
    let engine = choice.engine();
    let mut starter = WebhookStarter::new(stores.models, stores.tokens, engine)
        .with_idempotency(stores.idempotency)
        .with_sources(stores.sources);
    if let Some(limit) = rate_limit()? {
        starter = starter.with_rate_limit(
            stores.limiter,
            RateLimitPolicy::default().with_per_environment(limit),
        );
    }
    // The log before the inbox: the dispatcher records its attempts in it.
    let (starter, log, writing) = console_settings.apply(starter, stores.log, &stores.kept_in);
    let (starter, inbox, dispatcher) =
        inbox_settings.apply(starter, stores.inbox, stores.inbox_wakeup, &stores.kept_in);
    let metrics = metrics_router()?;
    let mut app = router("/webhook/send", starter.clone()).merge(health_router(starter));
    let listener = listen("WEBHOOK_ADDR", &addr).await?;
    let local = listener.local_addr()?;
    let metrics_at = match std::env::var("WEBHOOK_METRICS_ADDR") {
        Ok(metrics_addr) if !metrics_addr.trim().is_empty() => {
            let metrics_listener = listen("WEBHOOK_METRICS_ADDR", metrics_addr.trim()).await?;
            let at = metrics_listener.local_addr()?;
            tokio::spawn(serve(
                metrics_listener,
                metrics,
                ServeOptions::default(),
                std::future::pending(),
            ));
            at
        }
        _ => {
            app = app.merge(metrics);
            local
        }
    };

    let url = webhook_url(&format!("http://{local}/webhook/send"), &order_intake);
    // In double quotes, so that a shell expands `$WEBHOOK_TOKEN` when the
    // line is pasted (a generated token has only URL-safe characters).
    let shown_token = if generated {
        token.expose_secret().to_owned()
    } else if stores.token_from_before {
        "$TOKEN".to_owned()
    } else {
        "$WEBHOOK_TOKEN".to_owned()
    };
    println!("webhook server listening on http://{local}");
    println!("health:          http://{local}/healthz, http://{local}/readyz");
    println!("metrics:         http://{metrics_at}/metrics");
    console_settings.serve(log, inbox).await?;
    if !is_example {
        // The file's own processes: no example, no token to show.
        for deployment in &seed.deployments {
            let name = seed
                .models
                .iter()
                .find(|m| m.uuid() == deployment.process())
                .map_or("", ProcessModel::name);
            let version = config::shown(deployment.version());
            println!(
                "process {name} ({version}) in {}: {}",
                deployment.environment(),
                webhook_url(&format!("http://{local}/webhook/send"), deployment.process())
            );
        }
        print_sources(&sources, local);
        println!("tokens: from WEBHOOK_CONFIG (never printed)");
        println!();
        if let Some(first) = seed.deployments.iter().find(|d| d.startable_version().is_ok()) {
            println!(
                "try (with one of the tokens of `{}` in $TOKEN):",
                first.environment()
            );
            println!(
                "  curl -i -X POST '{}' -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    -d '{}'",
                webhook_url(&format!("http://{local}/webhook/send"), first.process()),
                example_payload(first.start_form())
            );
            println!();
        }
        let dispatching = inbox::spawn_dispatcher(dispatcher);
        serve(listener, app, ServeOptions::default(), stop_signal()).await?;
        stopped(dispatching, writing, stores.file).await;
        return Ok(());
    }
    println!("Order intake:    {url}");
    println!(
        "Returns (draft): {}",
        webhook_url(&format!("http://{local}/webhook/send"), &returns)
    );
    print_sources(&sources, local);
    if generated {
        println!("production token (shown once): {}", token.expose_secret());
    } else if stores.token_from_before {
        println!(
            "production token: the one shown at the first start on {} (`webhook_server admin create-token \
             --environment production --organization acme` makes another)",
            stores.kept_in.trim_start_matches("the file ")
        );
    } else {
        println!("production token: from WEBHOOK_TOKEN");
    }
    println!();
    println!("try:");
    println!(
        "  curl -i -X POST '{url}' -H \"authorization: Bearer {shown_token}\" -H 'content-type: application/json' \\\n    -d '{{\"customerName\": \"John Doe\", \"orderNumber\": \"123456\", \"productCode\": \"ABC123\"}}'"
    );
    println!();

    let dispatching = inbox::spawn_dispatcher(dispatcher);
    serve(listener, app, ServeOptions::default(), stop_signal()).await?;
    stopped(dispatching, writing, stores.file).await;
    Ok(())
}

/// What the server does once it has stopped serving: the dispatcher ends
/// its round, the delivery log writes what it was handed (within 10 s),
/// and the file, if the state is in one, is closed, its write-ahead log
/// folded in: after a clean stop the file alone holds everything.
async fn stopped(
    dispatching: inbox::Dispatching,
    writing: tokio::task::JoinHandle<()>,
    file: Option<SqliteStore>,
) {
    dispatching.stop().await;
    // The log's writer ends once the starter's last copy (the dispatcher's
    // among them) is dropped and its channel is empty.
    if tokio::time::timeout(std::time::Duration::from_secs(10), writing)
        .await
        .is_err()
    {
        tracing::warn!(
            "the delivery log was still writing 10 s after the stop: what it had not written is lost"
        );
    }
    if let Some(file) = file {
        file.close().await;
    }
    println!("stopped");
}

/// A payload the start form takes: each field's default, or a value of
/// its kind.
fn example_payload(form: &StartForm) -> serde_json::Value {
    let mut payload = serde_json::Map::new();
    for field in form.fields() {
        let value = field
            .default_value()
            .cloned()
            .unwrap_or_else(|| match field.kind() {
                FieldKind::Text => "text".into(),
                FieldKind::Number | FieldKind::Integer => 1.into(),
                FieldKind::Boolean => true.into(),
                FieldKind::Date => "2026-01-31".into(),
                FieldKind::DateTime => "2026-01-31T12:00:00Z".into(),
                FieldKind::Choice(options) => options.first().cloned().unwrap_or_default().into(),
                FieldKind::Object => serde_json::json!({}),
                FieldKind::Array => serde_json::json!([]),
                _ => serde_json::Value::Null,
            });
        payload.insert(field.name().to_owned(), value);
    }
    serde_json::Value::Object(payload)
}

/// Each source's URL, to paste into its sender's webhook settings.
fn print_sources(sources: &[WebhookSource], local: std::net::SocketAddr) {
    for source in sources {
        let url = source_webhook_url(
            &format!("http://{local}/webhook/send"),
            source.process(),
            source.id(),
        );
        println!("source {} ({}): {url}", source.id(), source.scheme());
    }
}

/// Installs the Prometheus recorder and answers its scrape at `/metrics`.
fn metrics_router() -> Result<axum::Router, Box<dyn std::error::Error>> {
    // Call and engine durations as Prometheus histograms, from 0.5 ms to 10 s.
    const BUCKETS: [f64; 14] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    ))
}

/// Ctrl-C, or SIGTERM (what container runtimes and service managers send).
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    println!("shutting down: finishing the calls in flight");
}
