//! Starts the documented example on a real Camunda 7.
//!
//! ```sh
//! CAMUNDA_URL=http://localhost:8080/engine-rest \
//! CAMUNDA_DEFINITION_KEY=order-intake \
//!   cargo run --example camunda7 --features camunda7
//! ```
//!
//! `CAMUNDA_USER` and `CAMUNDA_PASSWORD` turn on basic auth,
//! `CAMUNDA_TENANT` starts a tenant's definition. The definition key must be
//! deployed on that Camunda.

use std::sync::Arc;

use process_webhook::*;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("CAMUNDA_URL").unwrap_or_else(|_| "http://localhost:8080/engine-rest".to_owned());
    let key = std::env::var("CAMUNDA_DEFINITION_KEY").unwrap_or_else(|_| "order-intake".to_owned());

    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ]);
    models.deploy(
        Deployment::new(process, VersionTag::Released(1), production.clone(), form).with_definition_key(key),
    );
    let tokens = InMemoryTokenStore::new();
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));

    let mut engine = Camunda7Engine::new(&url);
    if let (Ok(user), Ok(password)) = (std::env::var("CAMUNDA_USER"), std::env::var("CAMUNDA_PASSWORD")) {
        engine = engine.with_basic_auth(user, password);
    }
    if let Ok(tenant) = std::env::var("CAMUNDA_TENANT") {
        engine = engine.with_tenant_id(tenant);
    }

    let payload = json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"});
    let request = WebhookStartRequest::new(
        process,
        Some(token),
        payload.as_object().cloned().unwrap_or_default(),
    )
    .with_idempotency_key("order-123456");
    match start_via_webhook(request, &*models, &tokens, &engine).await {
        Ok(outcome) => println!("started Camunda instance {} ({url})", outcome.instance_id()),
        Err(err) => {
            eprintln!("{} {}: {err}", err.status(), err.code());
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            std::process::exit(1);
        }
    }
    Ok(())
}
