//! Keyed starts per second through the router with every store in one
//! SQLite file (WAL), against the in-memory stores and, with
//! `DATABASE_URL`, `PostgresStore`, interleaved in one run (wall time:
//! compare the figures of one run, never runs):
//!
//! ```sh
//! DATABASE_URL=postgres://user:password@127.0.0.1:5432/db \
//!   cargo run --release --example sqlite_bench --features axum,sqlite,postgres -- 16 5 2
//! ```
//!
//! `C` clients (default 16) for `S` seconds (default 5) a round, `B`
//! blocks (default 2) of rounds in the order memory, SQLite, PostgreSQL,
//! PostgreSQL, SQLite, memory. Every call carries an idempotency key of its
//! own (as a sender's delivery id), so every start reserves and completes
//! a key in its store; the engine is the in-memory one. The file lives in
//! a temporary directory, PostgreSQL's tables in a schema of their own,
//! both removed at the end.

use std::sync::Arc;

use process_webhook::*;

#[path = "support/clients.rs"]
mod clients;
use clients::keyed_router_rate;

async fn serve_starter(starter: WebhookStarter, uuid: &ProcessUuid) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = webhook_url(&format!("http://{}/webhook/send", listener.local_addr()?), uuid);
    tokio::spawn(serve(
        listener,
        router("/webhook/send", starter),
        ServeOptions::default(),
        std::future::pending(),
    ));
    Ok(url)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args
        .next()
        .map_or(16, |a| a.parse().expect("a number of clients"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("a number of seconds"));
    let blocks: usize = args.next().map_or(2, |a| a.parse().expect("a number of blocks"));
    let engine = Arc::new(InMemoryEngine::new().with_capacity(0));

    let (uuid, models, tokens, token) = clients::order_intake();
    let memory = WebhookStarter::new(models.clone(), tokens.clone(), engine.clone()).with_idempotency(
        Arc::new(InMemoryIdempotencyStore::new().with_capacity(usize::MAX)),
    );
    let mut urls = vec![("memory", serve_starter(memory, &uuid).await?)];

    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(SqliteStore::open(dir.path().join("bench.db")).await?);
    let environment = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let model = models.model(&uuid).await?.expect("seeded");
    let deployment = models.deployment(&uuid, environment.id()).await?.expect("seeded");
    sqlite.insert_model(model.clone()).await?;
    sqlite.deploy(deployment.clone()).await?;
    sqlite.insert(&token, environment.clone()).await?;
    let starter =
        WebhookStarter::new(sqlite.clone(), sqlite.clone(), engine.clone()).with_idempotency(sqlite.clone());
    urls.push(("SQLite", serve_starter(starter, &uuid).await?));

    let mut postgres = None;
    if let Ok(database) = std::env::var("DATABASE_URL") {
        let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let store = Arc::new(PostgresStore::connect(&database).await?.with_schema(&schema)?);
        store.migrate().await?;
        store.insert_model(model).await?;
        store.deploy(deployment).await?;
        store.insert(&token, environment).await?;
        let starter =
            WebhookStarter::new(store.clone(), store.clone(), engine.clone()).with_idempotency(store.clone());
        urls.push(("PostgreSQL", serve_starter(starter, &uuid).await?));
        postgres = Some((store, schema));
    }

    let mut rates = vec![Vec::new(); urls.len()];
    let order: Vec<usize> = (0..urls.len()).chain((0..urls.len()).rev()).collect();
    for _ in 0..blocks {
        for &i in &order {
            let rate = keyed_router_rate(&urls[i].1, &token, clients, seconds).await;
            println!("{}: {rate:.0}/s", urls[i].0);
            rates[i].push(rate);
        }
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let memory = mean(&rates[0]);
    for (i, (name, _)) in urls.iter().enumerate() {
        println!(
            "{clients} clients, keyed starts: {name} {:.0}/s, {:.2}× memory",
            mean(&rates[i]),
            mean(&rates[i]) / memory
        );
    }
    if let Some((store, schema)) = postgres {
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(store.pool())
            .await?;
    }
    Ok(())
}
