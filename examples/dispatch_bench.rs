//! The dispatcher draining a backlog into Temporal, against Temporal's own
//! HTTP start at the same concurrency, in one run (wall time: run it on a
//! quiet machine, and compare the two figures of one run, never runs):
//!
//! ```sh
//! DATABASE_URL=postgres://… TEMPORAL_URL=http://127.0.0.1:7243 \
//!   cargo run --release --example dispatch_bench --features postgres,temporal -- 2000 32
//! ```
//!
//! Keeps `N` starts (default 2,000) in a fresh PostgreSQL schema, then
//! times a dispatcher claiming batches of `C` (default 32) until none is
//! queued; then times `N` other starts made by `C` tasks calling
//! `TemporalEngine::start` directly. Prints both rates and their ratio.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use process_webhook::*;
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(2_000, |a| a.parse().expect("a number of starts"));
    let c: usize = args.next().map_or(32, |a| a.parse().expect("a concurrency"));
    let database = std::env::var("DATABASE_URL")?;
    let temporal = std::env::var("TEMPORAL_URL")?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let schema = format!("bench_{run}");
    let store = Arc::new(PostgresStore::connect(&database).await?.with_schema(&schema)?);
    store.migrate().await?;

    let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let deployment = Deployment::new(
        uuid,
        VersionTag::Released(1),
        production.clone(),
        StartForm::default(),
    )
    .with_definition_key("order-intake");
    let command = |tag: &str, i: usize| {
        let variables = json!({"orderNumber": format!("{tag}-{i}")})
            .as_object()
            .unwrap()
            .clone();
        StartCommand::new(&deployment, 1, variables).with_idempotency_key(format!("{run}-{tag}-{i}"))
    };
    for i in 0..n {
        store
            .keep(
                KeptStart::new(DeliveryId::new_random(), command("kept", i), None),
                n,
            )
            .await?;
    }
    let engine = Arc::new(TemporalEngine::new(&temporal, "default", format!("bench-{run}")));
    let models = Arc::new(InMemoryModelStore::new());
    models.insert_model(ProcessModel::new(uuid, acme, "Order intake"));
    let starter = WebhookStarter::new(models, Arc::new(InMemoryTokenStore::new()), engine.clone())
        .with_inbox(store.clone(), InboxPolicy::Always);
    let dispatcher = starter.dispatcher().unwrap().with_batch(c);

    // Interleaved, so that neither side has the quieter half of the run:
    // half the backlog, half the direct starts, the other half of those,
    // the rest of the backlog.
    let half = n / 2;
    let mut dispatched = std::time::Duration::ZERO;
    let mut direct = std::time::Duration::ZERO;
    let began = Instant::now();
    while store.counts().await?.queued > (n - half) as u64 {
        dispatcher.dispatch_due().await?;
    }
    dispatched += began.elapsed();
    for (from, to) in [(0, half), (half, n)] {
        let commands: Arc<Vec<StartCommand>> = Arc::new((from..to).map(|i| command("direct", i)).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let began = Instant::now();
        let tasks: Vec<_> = (0..c)
            .map(|_| {
                let (engine, next, commands) = (engine.clone(), next.clone(), commands.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(command) = commands.get(i) else { break };
                        engine.start(command).await.expect("Temporal starts it");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        direct += began.elapsed();
    }
    let began = Instant::now();
    while store.counts().await?.queued > 0 {
        dispatcher.dispatch_due().await?;
    }
    dispatched += began.elapsed();

    let (a, b) = (
        n as f64 / dispatched.as_secs_f64(),
        n as f64 / direct.as_secs_f64(),
    );
    println!(
        "{n} starts at concurrency {c}: dispatcher {a:.0}/s ({:.2} s), Temporal's HTTP start {b:.0}/s ({:.2} s): {:.2}×",
        dispatched.as_secs_f64(),
        direct.as_secs_f64(),
        a / b
    );
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await?;
    Ok(())
}
