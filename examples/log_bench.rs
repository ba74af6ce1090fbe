//! HTTP starts per second through the router with the delivery log on
//! (PostgreSQL, `failed` payloads: the default) against the same starter
//! with the log off, interleaved in one run (wall time: compare the figures
//! of one run, never runs):
//!
//! ```sh
//! DATABASE_URL=postgres://user:password@127.0.0.1:5432/db \
//!   cargo run --release --example log_bench --features axum,postgres,delivery-log -- 16 5 2
//! ```
//!
//! `C` clients (default 16) for `S` seconds (default 5) a round, `B`
//! blocks (default 2) of rounds in the order: off, on, on, off. Both starters start into the in-memory engine;
//! the log's writer keeps its records in the benchmark's own schema. It
//! prints each round, the ratio, and how many records the log wrote and
//! dropped (a full channel drops records, never a start: a ratio with
//! records dropped says so).

use std::sync::Arc;

use process_webhook::*;

#[path = "support/clients.rs"]
mod clients;
use clients::router_rate;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args
        .next()
        .map_or(16, |a| a.parse().expect("a number of clients"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("a number of seconds"));
    let blocks: usize = args.next().map_or(2, |a| a.parse().expect("a number of blocks"));
    let database = std::env::var("DATABASE_URL")?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(PostgresStore::connect(&database).await?.with_schema(&schema)?);
    store.migrate().await?;

    let (uuid, models, tokens, token) = clients::order_intake();
    let off = WebhookStarter::new(models, tokens, Arc::new(InMemoryEngine::new().with_capacity(0)));
    let (sink, writer) = LogWriter::new(store.clone(), LogWriter::DEFAULT_CAPACITY, KeepPayloads::Failed);
    let writing = tokio::spawn(writer.run());
    let on = off.clone().with_delivery_log(sink.clone());
    let mut urls = Vec::new();
    for starter in [off, on] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        urls.push(webhook_url(
            &format!("http://{}/webhook/send", listener.local_addr()?),
            &uuid,
        ));
        tokio::spawn(serve(
            listener,
            router("/webhook/send", starter),
            ServeOptions::default(),
            std::future::pending(),
        ));
    }

    let (mut with_log, mut without) = (Vec::new(), Vec::new());
    for round in std::iter::repeat_n(["off", "on", "on", "off"], blocks).flatten() {
        let url = if round == "on" { &urls[1] } else { &urls[0] };
        let rate = router_rate(url, &token, clients, seconds).await;
        println!("log {round}: {rate:.0}/s");
        if round == "on" {
            with_log.push(rate)
        } else {
            without.push(rate)
        }
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (on, off) = (mean(&with_log), mean(&without));
    // Let the writer catch up before counting what it wrote.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let written: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.delivery_log"))
        .fetch_one(store.pool())
        .await?;
    println!(
        "{clients} clients: starts with the delivery log (PostgreSQL, failed payloads) {on:.0}/s, without {off:.0}/s: {:.2}×; \
         records written {written}, dropped {}",
        on / off,
        sink.dropped()
    );
    drop(sink);
    writing.abort();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await?;
    Ok(())
}
