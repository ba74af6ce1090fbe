//! Instructions a call costs with and without an inbox, for callgrind
//! (repeatable where wall time on a shared machine is not):
//!
//! ```sh
//! cargo build --release --example inbox_cost
//! for mode in plain fallback; do
//!   for n in 20000 0; do
//!     valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode.$n ./target/release/examples/inbox_cost $mode $n
//!   done
//! done
//! ```
//!
//! `plain` is a starter without an inbox; `fallback` one with an in-memory
//! inbox and `InboxPolicy::Fallback`, its engine up (so that nothing is
//! kept: what every start pays for the inbox being there). Each run does
//! 1,000 warm-up calls then `N` measured ones through `handle`; compare the
//! totals less a run with `N = 0`, divided by `N`.

use std::sync::Arc;

use process_webhook::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "plain".into());
    let calls: usize = args.next().map_or(20_000, |n| n.parse().expect("a number"));
    let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
    models.deploy(Deployment::new(
        uuid,
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
    let engine = Arc::new(InMemoryEngine::new().with_capacity(0));
    let mut starter = WebhookStarter::new(models, tokens, engine);
    match mode.as_str() {
        "plain" => {}
        "fallback" => starter = starter.with_inbox(Arc::new(InMemoryInbox::new()), InboxPolicy::Fallback),
        other => panic!("mode is plain or fallback, not {other}"),
    }
    let target = webhook_url("/webhook/send", &uuid);
    let auth = format!("Bearer {}", token.expose_secret());
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = br#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for _ in 0..1_000 + calls {
        let reply = runtime.block_on(starter.handle(&target, headers, body));
        assert_eq!(reply.status(), 202);
    }
}
