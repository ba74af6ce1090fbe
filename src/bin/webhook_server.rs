//! A webhook server over the in-memory stores, seeded with the documented
//! example: organization `acme`, environment `production`, the deployed
//! process "Order intake" and a draft-only process.
//!
//! ```sh
//! cargo run --features server
//! ```
//!
//! `WEBHOOK_ADDR` sets the address (default `127.0.0.1:8080`); `WEBHOOK_TOKEN`
//! sets the production token (at least 32 characters; never printed), else
//! one is generated and printed once. `RUST_LOG=process_webhook=info` shows
//! one log line per call. It serves with [`serve`]'s default limits and stops
//! gracefully on Ctrl-C or SIGTERM (calls in flight get up to 10 s).
//!
//! With `--features server,camunda7` and `CAMUNDA_URL` set (e.g.
//! `http://localhost:8080/engine-rest`), starts go to that Camunda 7 instead
//! of the in-memory engine.

use std::sync::Arc;

use async_trait::async_trait;
use process_webhook::*;

const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const RETURNS_DRAFT: &str = "6f1d0c3a-2b4e-4c5d-8e9f-0a1b2c3d4e5f";

/// A shorter token could be guessed online.
const MIN_TOKEN_CHARS: usize = 32;

/// An engine that prints one line for each start.
struct PrintingEngine<E>(E);

#[async_trait]
impl<E: Engine> Engine for PrintingEngine<E> {
    async fn start(&self, command: StartCommand) -> Result<ProcessInstance, EngineError> {
        let (process, environment) = (command.process, command.environment.clone());
        let instance = self.0.start(command).await?;
        println!("started instance {} of {process} in {environment}", instance.id());
        Ok(instance)
    }
}

/// The in-memory engine, or, with the `camunda7` feature and `CAMUNDA_URL`
/// set, a Camunda 7 (the deployment's definition key is `CAMUNDA_DEFINITION_KEY`,
/// default `order-intake`).
fn engine(models: &Arc<InMemoryModelStore>) -> Arc<dyn Engine> {
    #[cfg(feature = "camunda7")]
    if let Ok(url) = std::env::var("CAMUNDA_URL") {
        let mut engine = Camunda7Engine::new(&url).with_model_store(models.clone());
        if let (Ok(user), Ok(password)) = (std::env::var("CAMUNDA_USER"), std::env::var("CAMUNDA_PASSWORD")) {
            engine = engine.with_basic_auth(user, password);
        }
        println!("starting instances on Camunda 7 at {url}");
        return Arc::new(PrintingEngine(engine));
    }
    let _ = models;
    Arc::new(PrintingEngine(InMemoryEngine::new()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
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

    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
    let order_intake: ProcessUuid = ORDER_INTAKE.parse()?;
    let returns: ProcessUuid = RETURNS_DRAFT.parse()?;
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(order_intake, acme.clone(), "Order intake"));
    models.insert_model(ProcessModel::new(returns, acme.clone(), "Returns (draft)"));
    models.deploy(Deployment::new(
        order_intake,
        VersionTag::Released(1),
        production.clone(),
        form.clone(),
    ));
    models.deploy(Deployment::new(
        returns,
        VersionTag::Draft,
        production.clone(),
        form,
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    tokens.insert(&token, Environment::new(production, acme));

    let engine = engine(&models);
    let starter = WebhookStarter::new(models, tokens, engine)
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let app = router("/webhook/send", starter);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;

    let url = webhook_url(&format!("http://{local}/webhook/send"), &order_intake);
    let shown_token = if generated {
        token.expose_secret().to_owned()
    } else {
        "$WEBHOOK_TOKEN".to_owned()
    };
    println!("webhook server listening on http://{local}");
    println!("Order intake:    {url}");
    println!(
        "Returns (draft): {}",
        webhook_url(&format!("http://{local}/webhook/send"), &returns)
    );
    if generated {
        println!("production token (shown once): {}", token.expose_secret());
    } else {
        println!("production token: from WEBHOOK_TOKEN");
    }
    println!();
    println!("try:");
    println!(
        "  curl -i -X POST '{url}' -H 'authorization: Bearer {shown_token}' -H 'content-type: application/json' \\\n    -d '{{\"customerName\": \"John Doe\", \"orderNumber\": \"123456\", \"productCode\": \"ABC123\"}}'"
    );
    println!();

    serve(listener, app, ServeOptions::default(), stop_signal()).await?;
    println!("stopped");
    Ok(())
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
