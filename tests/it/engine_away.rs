//! The engine away, for real: PostgreSQL keeps the starts and the real
//! Temporal dev server starts them. GitHub deliveries (bodies from
//! `@octokit/webhooks-examples`, signed by `@octokit/webhooks-methods`),
//! Stripe events (signed by npm `stripe`) and token callers all get `202
//! queued` while Temporal cannot be reached; once it can, a dispatcher on
//! another replica starts each exactly once with its input, and every
//! redelivery then replays the started answer.
#![cfg(all(feature = "postgres", feature = "temporal"))]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::senders::Senders;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

const GITHUB_SECRET: &str = "a-github-secret-of-the-engine-away-test";
const STRIPE_SECRET: &str = "whsec_engine_away_test_secret";
/// How many deliveries of each sender.
const EACH: usize = 100;
/// The bound within which the dispatcher starts every kept start, once
/// Temporal answers (measured: a few seconds for 300 on two cores).
const BOUND: Duration = Duration::from_secs(90);

struct Delivery {
    target: String,
    headers: Vec<(String, String)>,
    body: String,
    /// The key the start is recognised by (the sender's delivery id, or the
    /// caller's idempotency key).
    key: String,
}

fn github_deliveries(senders: &Senders) -> Vec<Delivery> {
    senders
        .github_examples(GITHUB_SECRET)
        .into_iter()
        .filter(|e| e["event"] != "ping")
        .take(EACH)
        .map(|example| {
            let id = uuid::Uuid::new_v4().to_string();
            Delivery {
                target: format!("/webhook/send?uid={ORDER_INTAKE}&source=github-orders"),
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("x-github-event".into(), example["event"].as_str().unwrap().into()),
                    ("x-github-delivery".into(), id.clone()),
                    (
                        "x-hub-signature-256".into(),
                        example["signature"].as_str().unwrap().into(),
                    ),
                ],
                body: example["body"].as_str().unwrap().to_owned(),
                key: id,
            }
        })
        .collect()
}

fn stripe_deliveries(senders: &Senders) -> Vec<Delivery> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    (0..EACH)
        .map(|n| {
            let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
            let body =
                json!({"id": id, "type": "invoice.paid", "data": {"object": {"amount_paid": n}}}).to_string();
            let mut headers = senders.sign(json!({
                "scheme": "stripe", "secret": STRIPE_SECRET, "body": body, "timestamp": now,
            }));
            headers.push(("content-type".into(), "application/json".into()));
            Delivery {
                target: format!("/webhook/send?uid={ORDER_INTAKE}&source=stripe-orders"),
                headers,
                body,
                key: id,
            }
        })
        .collect()
}

fn token_deliveries(world: &World) -> Vec<Delivery> {
    (0..EACH)
        .map(|n| {
            let key = format!("order-{}", uuid::Uuid::new_v4().simple());
            Delivery {
                target: format!("/webhook/send?uid={ORDER_INTAKE}"),
                headers: vec![
                    ("authorization".into(), world.bearer()),
                    ("idempotency-key".into(), key.clone()),
                    ("content-type".into(), "application/json".into()),
                ],
                body:
                    json!({"customerName": "John Doe", "orderNumber": n.to_string(), "productCode": "ABC123"})
                        .to_string(),
                key,
            }
        })
        .collect()
}

async fn send(starter: &WebhookStarter, delivery: &Delivery) -> (u16, Value, Option<String>) {
    let headers = delivery.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let reply = starter
        .handle(&delivery.target, headers, delivery.body.as_bytes())
        .await;
    let body = serde_json::from_slice(reply.body()).unwrap_or(Value::Null);
    (
        reply.status(),
        body,
        reply.header("idempotent-replayed").map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_temporal_away_every_delivery_is_queued_and_started_once_when_it_is_back() {
    let (Some(database), Some(temporal)) = (
        server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test"),
        server_setting("TEMPORAL_URL", "e.g. http://127.0.0.1:7243"),
    ) else {
        return;
    };
    let Some(senders) = Senders::find() else { return };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::connect(&database)
        .await
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    store.migrate().await.unwrap();
    let store = Arc::new(store);

    // The order process takes any payload: a sender's event as it comes.
    let world = World::new();
    world.models.deploy(Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(3),
        EnvironmentId::new("production"),
        StartForm::default(),
    ));
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let sources = Arc::new(InMemorySourceStore::new());
    for (id, scheme, secret) in [
        ("github-orders", SourceScheme::Github, GITHUB_SECRET),
        ("stripe-orders", SourceScheme::Stripe, STRIPE_SECRET),
    ] {
        let source = WebhookSource::new(
            id.parse().unwrap(),
            production.clone(),
            uuid(ORDER_INTAKE),
            scheme,
            [SourceSecret::new(secret).unwrap()],
        )
        .unwrap();
        sources.put_source(source);
    }
    let queue = format!("engine-away-{}", uuid::Uuid::new_v4().simple());
    let replica = |engine: TemporalEngine| {
        WebhookStarter::new(world.models.clone(), world.tokens.clone(), Arc::new(engine))
            .with_idempotency(store.clone())
            .with_sources(sources.clone())
            .with_inbox(store.clone(), InboxPolicy::Fallback)
    };
    // Nothing listens on the discard port.
    let away = replica(TemporalEngine::new("http://127.0.0.1:9", "default", &queue));

    let mut deliveries = github_deliveries(&senders);
    deliveries.extend(stripe_deliveries(&senders));
    deliveries.extend(token_deliveries(&world));
    assert_eq!(deliveries.len(), 3 * EACH);
    for delivery in &deliveries {
        let (status, body, _) = send(&away, delivery).await;
        assert_eq!((status, body["status"].as_str()), (202, Some("queued")), "{body}");
    }
    let kept = store.counts().await.unwrap();
    assert_eq!(kept.queued, (3 * EACH) as u64, "every delivery kept");
    for source in ["github-orders", "stripe-orders"] {
        let of_source = store
            .list(&InboxQuery::default().with_source(source.parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(
            of_source.len(),
            EACH,
            "{source}'s deliveries, kept with their source"
        );
    }

    // Temporal is back, for another replica: its dispatcher starts them.
    let back = replica(TemporalEngine::new(&temporal, "default", &queue));
    let dispatcher = back.dispatcher().unwrap();
    let began = Instant::now();
    while store.counts().await.unwrap().queued > 0 {
        assert!(began.elapsed() < BOUND, "not dispatched within {BOUND:?}");
        dispatcher.dispatch_due().await.unwrap();
    }
    let took = began.elapsed();
    println!(
        "engine away: {} kept starts dispatched into Temporal in {:.1} s",
        3 * EACH,
        took.as_secs_f64()
    );
    assert_eq!(store.counts().await.unwrap().dead, 0, "none dead");

    // Each exactly once, with its input; every redelivery replays it.
    let client = reqwest::Client::new();
    let environment = EnvironmentId::new("production");
    for delivery in &deliveries {
        let workflow_id = TemporalEngine::workflow_id_for(&environment, &uuid(ORDER_INTAKE), &delivery.key);
        let history = temporal_get(&client, &temporal, &format!("workflows/{workflow_id}/history")).await;
        let started = &history["history"]["events"][0]["workflowExecutionStartedEventAttributes"];
        let input: Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(
            started["input"],
            json!([as_shown(input)]),
            "the input of {workflow_id}"
        );
        let (status, body, replayed) = send(&back, delivery).await;
        assert_eq!(
            (status, body["status"].as_str(), replayed.as_deref()),
            (202, Some("started"), Some("true"))
        );
        let run = workflow_run(&client, &temporal, &workflow_id).await;
        assert_eq!(
            body["instanceId"].as_str(),
            run.as_deref(),
            "replayed with its run"
        );
    }
    assert_eq!(
        workflows_on_queue(&client, &temporal, &queue, 3 * EACH).await,
        (3 * EACH) as u64,
        "exactly one workflow per delivery"
    );
    let pool = process_webhook::sqlx::PgPool::connect(&database).await.unwrap();
    process_webhook::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// A JSON value as Temporal's HTTP API shows a `json/plain` payload: its
/// gateway reads the payload into a protobuf `Struct`, which shows an empty
/// list as `null` (the payload itself, base64 of the exact JSON sent, is
/// what a worker gets; `TemporalEngine`'s unit tests check its bytes).
fn as_shown(value: Value) -> Value {
    match value {
        Value::Array(items) if items.is_empty() => Value::Null,
        Value::Array(items) => Value::Array(items.into_iter().map(as_shown).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, as_shown(v))).collect()),
        other => other,
    }
}
