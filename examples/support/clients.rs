//! The benchmarks' HTTP clients: the documented call, posted over
//! loopback (keep-alive) by tokio tasks in the benchmark's own process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use process_webhook::*;

/// The documented example for a benchmark: the order intake deployed
/// (version 1, three mandatory text fields) in `acme`'s `production`, and
/// a token of it.
pub(crate) fn order_intake() -> (
    ProcessUuid,
    Arc<InMemoryModelStore>,
    Arc<InMemoryTokenStore>,
    EnvironmentToken,
) {
    let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().expect("a UUID");
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
    models.deploy(Deployment::new(
        uuid,
        VersionTag::Released(1),
        production.clone(),
        StartForm::new(
            ["customerName", "orderNumber", "productCode"].map(|n| FieldSpec::mandatory(n, FieldKind::Text)),
        ),
    ));
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    (uuid, models, tokens, token)
}

/// Calls answered `202` a second by `clients` posting for `seconds`.
#[allow(dead_code)] // each example uses one of the two
pub(crate) async fn router_rate(url: &str, token: &EnvironmentToken, clients: usize, seconds: u64) -> f64 {
    rate(url, token, clients, seconds, false).await
}

/// [`router_rate`] with an `Idempotency-Key` of its own on every call, as
/// a sender's deliveries are keyed by their ids.
#[allow(dead_code)] // each example uses one of the two
pub(crate) async fn keyed_router_rate(
    url: &str,
    token: &EnvironmentToken,
    clients: usize,
    seconds: u64,
) -> f64 {
    rate(url, token, clients, seconds, true).await
}

async fn rate(url: &str, token: &EnvironmentToken, clients: usize, seconds: u64, keyed: bool) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let auth = format!("Bearer {}", token.expose_secret());
    let began = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (done, stop, url, auth) = (done.clone(), stop.clone(), url.to_owned(), auth.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut request = client.post(&url);
                    if keyed {
                        request = request.header("idempotency-key", uuid::Uuid::new_v4().to_string());
                    }
                    let reply = request
                        .header("authorization", &auth)
                        .header("content-type", "application/json")
                        .body(r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#)
                        .send()
                        .await
                        .expect("the router answers");
                    assert_eq!(reply.status().as_u16(), 202);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client ends");
    }
    done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
}
