//! How much later than the workflow's own completion a `Prefer: wait`
//! answer arrives, against a real Temporal: for each of `N` calls, the time
//! the answer was in hand minus the close event's `eventTime` in the
//! workflow's history (one clock: the server runs on this machine).
//!
//! Needs a Temporal dev server (HTTP on 7243, gRPC on 7233) and the test
//! worker on task queue `wait-latency`:
//!
//! ```sh
//! python tests/temporal_worker/worker.py --address 127.0.0.1:7233 --task-queue wait-latency &
//! cargo run --release --example wait_latency --features temporal -- 200
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use process_webhook::*;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(200), |n| n.parse())?;
    let url = std::env::var("TEMPORAL_URL").unwrap_or_else(|_| "http://127.0.0.1:7243".into());
    let process: ProcessUuid = ORDER_INTAKE.parse()?;
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    models.deploy(
        Deployment::new(
            process,
            VersionTag::Released(1),
            production.clone(),
            StartForm::default(),
        )
        .with_definition_key("order-intake"),
    );
    let tokens = Arc::new(InMemoryTokenStore::new());
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(production, acme));
    let engine = Arc::new(TemporalEngine::new(&url, "default", "wait-latency"));
    let starter = WebhookStarter::new(models, tokens, engine);
    let auth = format!("Bearer {}", token.expose_secret());
    let target = webhook_url("/webhook/send", &process);
    let client = reqwest::Client::new();

    let mut added = Vec::with_capacity(calls);
    for i in 0..calls {
        let body = format!(r#"{{"orderNumber": "{i}"}}"#);
        let headers = [("authorization", auth.as_str()), ("prefer", "wait=10")];
        let reply = starter.handle(&target, headers, body.as_bytes()).await;
        let answered = SystemTime::now();
        let doc: Value = serde_json::from_slice(reply.body())?;
        assert_eq!(doc["status"], "completed", "{doc}");
        // The workflow id of an unkeyed start is not in the answer: find the
        // run's close event through the run id.
        let run = doc["instanceId"].as_str().unwrap_or_default();
        let list: Value = client
            .get(format!("{url}/api/v1/namespaces/default/workflows"))
            .query(&[("query", format!("RunId = '{run}'"))])
            .send()
            .await?
            .json()
            .await?;
        let workflow = list["executions"][0]["execution"]["workflowId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let history: Value = client
            .get(format!(
                "{url}/api/v1/namespaces/default/workflows/{workflow}/history"
            ))
            .query(&[
                ("execution.runId", run),
                ("historyEventFilterType", "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT"),
            ])
            .send()
            .await?
            .json()
            .await?;
        let closed = history["history"]["events"][0]["eventTime"]
            .as_str()
            .unwrap_or_default();
        let closed: SystemTime = OffsetDateTime::parse(closed, &Rfc3339)?.into();
        added.push(answered.duration_since(closed).unwrap_or(Duration::ZERO));
    }
    added.sort();
    let at = |q: f64| added[((added.len() - 1) as f64 * q) as usize];
    println!(
        "{calls} waits: added latency over the workflow's completion p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    Ok(())
}
