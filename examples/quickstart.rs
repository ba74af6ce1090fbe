//! The documented example end to end with the in-memory stores: a deployed
//! "Order intake", its production token, a webhook call as raw HTTP parts,
//! and the refusals a caller can meet.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::sync::Arc;

use process_webhook::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
    let order_intake: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;

    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(order_intake, acme.clone(), "Order intake"));
    models.deploy(Deployment::new(
        order_intake,
        VersionTag::Released(1),
        production.clone(),
        StartForm::new([
            FieldSpec::mandatory("customerName", FieldKind::Text),
            FieldSpec::mandatory("orderNumber", FieldKind::Text),
            FieldSpec::mandatory("productCode", FieldKind::Text),
        ]),
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    let engine = Arc::new(InMemoryEngine::new());
    let starter = WebhookStarter::new(models, tokens, engine.clone());

    let url = webhook_url(DEFAULT_WEBHOOK_BASE, &order_intake);
    let auth = format!("Bearer {}", token.expose_secret());
    /// What the call is, its headers and its body.
    type Call<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
    let calls: [Call<'_>; 3] = [
        (
            "the documented call",
            vec![("authorization", &auth)],
            br#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#,
        ),
        ("without a token", vec![], br#"{"customerName": "John Doe"}"#),
        (
            "with fields missing",
            vec![("authorization", &auth)],
            br#"{"customerName": "John Doe"}"#,
        ),
    ];
    println!("POST {url}");
    for (what, headers, body) in calls {
        let reply = starter.handle(&url, headers, body).await;
        println!(
            "\n{what}: {}\n{}",
            reply.status(),
            String::from_utf8_lossy(reply.body())
        );
    }
    let started = engine.started();
    println!(
        "\nthe engine started {} instance(s): {:?}",
        started.len(),
        started[0].command.variables
    );
    Ok(())
}
