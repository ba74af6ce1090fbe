//! Starts kept in PostgreSQL through the router (`InboxPolicy::Always`),
//! per second, against `pgbench`'s single-row inserts with the same number
//! of clients, interleaved in one run (wall time: compare the figures of one
//! run, never runs):
//!
//! ```sh
//! DATABASE_URL=postgres://user:password@127.0.0.1:5432/db \
//!   cargo run --release --example keep_bench --features axum,postgres -- 16 5
//! ```
//!
//! `C` clients (default 16) for `S` seconds (default 5) a round, in the
//! order: the router, `pgbench`, `pgbench`, the router. The router's
//! clients post the documented call over loopback (keep-alive); `pgbench`
//! (`PGBENCH`, default `pgbench` on the `PATH` or PostgreSQL's `bin`)
//! inserts one row of a uuid and a small JSON document per transaction.

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
    let database = std::env::var("DATABASE_URL")?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(PostgresStore::connect(&database).await?.with_schema(&schema)?);
    store.migrate().await?;

    let (uuid, models, tokens, token) = clients::order_intake();
    let starter = WebhookStarter::new(models, tokens, Arc::new(InMemoryEngine::new().with_capacity(0)))
        .with_inbox(store.clone(), InboxPolicy::Always)
        .with_inbox_limit(usize::MAX);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = webhook_url(&format!("http://{}/webhook/send", listener.local_addr()?), &uuid);
    tokio::spawn(serve(
        listener,
        router("/webhook/send", starter),
        ServeOptions::default(),
        std::future::pending(),
    ));

    let pgbench = std::env::var("PGBENCH").unwrap_or_else(|_| {
        let debian = "/usr/lib/postgresql/15/bin/pgbench";
        if std::path::Path::new(debian).exists() {
            debian.to_owned()
        } else {
            "pgbench".to_owned()
        }
    });
    let script = std::env::temp_dir().join(format!("{schema}.sql"));
    std::fs::write(
        &script,
        format!(
            "INSERT INTO {schema}.bench_rows (id, body) VALUES (gen_random_uuid(), '{{\"orderNumber\": \"123456\"}}');\n"
        ),
    )?;
    sqlx::query(&format!(
        "CREATE TABLE {schema}.bench_rows (id uuid PRIMARY KEY, body jsonb NOT NULL)"
    ))
    .execute(store.pool())
    .await?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in ["router", "pgbench", "pgbench", "router"] {
        let rate = match round {
            "router" => router_rate(&url, &token, clients, seconds).await,
            _ => pgbench_rate(&pgbench, &database, &script, clients, seconds)?,
        };
        println!("{round}: {rate:.0}/s");
        if round == "router" {
            ours.push(rate)
        } else {
            theirs.push(rate)
        }
    }
    let (ours, theirs) = (ours.iter().sum::<f64>() / 2.0, theirs.iter().sum::<f64>() / 2.0);
    println!(
        "{clients} clients: starts kept through the router {ours:.0}/s, pgbench single-row inserts {theirs:.0}/s: {:.2}×",
        ours / theirs
    );
    let _ = std::fs::remove_file(&script);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// `pgbench`'s transactions a second, as it reports them.
fn pgbench_rate(
    pgbench: &str,
    database: &str,
    script: &std::path::Path,
    clients: usize,
    seconds: u64,
) -> Result<f64, Box<dyn std::error::Error>> {
    let output = std::process::Command::new(pgbench)
        .args([
            "-n",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(script)
        .arg(database)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .ok_or_else(|| format!("pgbench said: {text}{}", String::from_utf8_lossy(&output.stderr)))?;
    Ok(tps)
}
