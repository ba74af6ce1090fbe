//! Fuzzes the real entry point, `WebhookStarter::handle_method`, over the
//! in-memory stores and engine of the documented example (with an
//! idempotency store and envelope bodies on): arbitrary methods, targets,
//! headers and bodies, the example's token sometimes in `authorization`.
//! Any panic is a bug, and so is any answer of 5xx (nothing here can fail)
//! but the idempotency store's `503 idempotency_store_full` once it is full.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use process_webhook::*;

const TOKEN: &str = "fuzz-token-of-at-least-thirty-two-characters";

fn starter() -> &'static WebhookStarter {
    static STARTER: OnceLock<WebhookStarter> = OnceLock::new();
    STARTER.get_or_init(|| {
        let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
        let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
        let models = InMemoryModelStore::new();
        models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
        models.deploy(Deployment::new(
            uuid,
            VersionTag::Released(1),
            production.clone(),
            StartForm::new([
                FieldSpec::mandatory("orderNumber", FieldKind::Text),
                FieldSpec::optional("quantity", FieldKind::Integer),
                FieldSpec::optional("when", FieldKind::Date),
            ]),
        ));
        let tokens = InMemoryTokenStore::new();
        tokens.insert(&EnvironmentToken::new(TOKEN), Environment::new(production, acme));
        WebhookStarter::new(Arc::new(models), Arc::new(tokens), Arc::new(InMemoryEngine::new()))
            .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: method \0 target \0 header-name \0 header-value \0 body; a
    // first byte that is odd adds the example's token.
    let with_token = data.first().is_some_and(|b| b % 2 == 1);
    let mut parts = data.get(1..).unwrap_or_default().splitn(5, |&b| b == 0);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (method, target, name, value) = (text(), text(), text(), text());
    let body = parts.next().unwrap_or_default();
    let mut headers = vec![(name, value)];
    if with_token {
        headers.push(("authorization".to_owned(), format!("Bearer {TOKEN}")));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let reply = runtime.block_on(starter().handle_method(&method, &target, headers, body));
    // The idempotency store fills after 100,000 keys: that 503 is its
    // documented answer, not a failure.
    let full = String::from_utf8_lossy(reply.body()).contains("\"idempotency_store_full\"");
    assert!(reply.status() < 500 || full, "{} for {method} {target}", reply.status());
});
