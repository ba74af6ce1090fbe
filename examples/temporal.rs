//! Starts the documented example as a Temporal workflow, then shows the
//! workflow's description as Temporal has it.
//!
//! ```sh
//! temporal server start-dev --headless --ip 127.0.0.1 --port 7233 --http-port 7243 &
//! TEMPORAL_URL=http://127.0.0.1:7243 cargo run --example temporal --features temporal
//! ```
//!
//! `TEMPORAL_NAMESPACE` (default `default`) and `TEMPORAL_TASK_QUEUE`
//! (default `process-webhook`) choose where; the workflow type is the
//! deployment's definition key, `order-intake`. Run it twice: the second
//! start is the same run (the idempotency key makes the workflow id).

use process_webhook::*;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TEMPORAL_URL").unwrap_or_else(|_| "http://127.0.0.1:7243".to_owned());
    let namespace = std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let queue = std::env::var("TEMPORAL_TASK_QUEUE").unwrap_or_else(|_| "process-webhook".to_owned());

    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
    let models = InMemoryModelStore::new();
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    models.deploy(
        Deployment::new(process, VersionTag::Released(1), production.clone(), form)
            .with_definition_key("order-intake"),
    );
    let tokens = InMemoryTokenStore::new();
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    let engine = TemporalEngine::new(&url, namespace.clone(), queue);

    let payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let request = WebhookStartRequest::new(
        process,
        Some(token),
        payload.as_object().cloned().unwrap_or_default(),
    )
    .with_idempotency_key("order-123456");
    let outcome = match start_via_webhook(request, &models, &tokens, &engine).await {
        Ok(outcome) => outcome,
        Err(err) => {
            eprintln!("{} {}: {err}", err.status(), err.code());
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            std::process::exit(1);
        }
    };
    println!(
        "started run {} ({url}, namespace {namespace})",
        outcome.instance_id()
    );

    // The workflow, as Temporal describes it.
    let workflow_id =
        TemporalEngine::workflow_id_for(&EnvironmentId::new("production"), &process, "order-123456");
    let described: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "{url}/api/v1/namespaces/{namespace}/workflows/{workflow_id}"
        ))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&described["workflowExecutionInfo"])?
    );
    Ok(())
}
