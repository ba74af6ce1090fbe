//! `webhook_server admin deliveries …`: the starts the inbox keeps in the
//! PostgreSQL store (`DATABASE_URL`, `WEBHOOK_SCHEMA`): list them, show one,
//! retry dead ones, discard. A payload is printed only when asked for.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use process_webhook::*;

/// One command on the kept starts.
#[derive(Subcommand)]
pub(crate) enum Deliveries {
    /// The kept starts, newest first: id, status, kept at, environment,
    /// process, version, attempts, and the last error.
    List {
        /// Only those with this status (`queued`, `started`, `dead`, `discarded`).
        #[arg(long)]
        status: Option<LoggedOutcome>,
        /// Only those of this environment.
        #[arg(long)]
        environment: Option<String>,
        /// Only those of this webhook source.
        #[arg(long)]
        source: Option<SourceId>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One kept start: its metadata, attempts and last error; its payload
    /// only with `--payload`.
    Show {
        /// The delivery id.
        id: DeliveryId,
        /// Print the variables the engine gets.
        #[arg(long)]
        payload: bool,
    },
    /// Make dead starts due again: the ids given, or every dead one
    /// (`--dead`, of one environment with `--environment`).
    Retry {
        /// The delivery ids.
        ids: Vec<DeliveryId>,
        /// Every dead start.
        #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
        dead: bool,
        /// With `--dead`: only this environment's.
        #[arg(long, requires = "dead")]
        environment: Option<String>,
        /// With `--dead`: only this webhook source's.
        #[arg(long, requires = "dead")]
        source: Option<SourceId>,
    },
    /// Discard queued or dead starts: they will not start.
    Discard {
        /// The delivery ids.
        #[arg(required = true)]
        ids: Vec<DeliveryId>,
    },
}

/// Seconds since the epoch, as the log lines print times.
fn at(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

fn line(record: &LoggedDelivery) -> String {
    format!(
        "{} {} received {} in {}{} process {}{} attempts {}{}{}",
        record.id,
        record.outcome,
        at(record.received_at),
        record.environment,
        record
            .source
            .as_ref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default(),
        record.process,
        record.version.map(|v| format!(" v{v}")).unwrap_or_default(),
        record.attempts.len(),
        record
            .code
            .as_deref()
            .map(|c| format!(" code {c}"))
            .unwrap_or_default(),
        record
            .attempts
            .last()
            .and_then(|a| a.error.as_deref())
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}

pub(crate) async fn run(operator: Operator, command: Deliveries) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Deliveries::List {
            status,
            environment,
            source,
            limit,
        } => {
            let mut query = LogQuery::newest(limit);
            query.outcome = status;
            query.source = source;
            query.environment = environment.map(EnvironmentId::new);
            for record in operator.page(&query).await?.deliveries {
                println!("{}", line(&record));
            }
        }
        Deliveries::Show { id, payload } => {
            let record = operator.delivery(&id).await?;
            println!("{}", line(&record));
            if let Some(key) = &record.sender_id {
                println!("delivery id or idempotency key: {key}");
            }
            if let Some(event) = &record.event {
                println!("event: {event}");
            }
            if let Some(instance) = &record.instance {
                println!("instance: {instance}");
            }
            for attempt in &record.attempts {
                println!(
                    "attempt at {}: {}{}",
                    at(attempt.at),
                    attempt.outcome,
                    attempt
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            if payload {
                match &record.payload {
                    Some(text) => println!("payload: {}", pretty(text)),
                    None => println!("payload: not kept (WEBHOOK_KEEP_PAYLOADS)"),
                }
            }
        }
        Deliveries::Retry {
            ids,
            dead,
            environment,
            source,
        } => {
            if dead {
                let mut query = LogQuery::newest(1);
                query.source = source;
                query.environment = environment.map(EnvironmentId::new);
                let retried = operator.retry_dead(&query).await?;
                println!("{retried} retried");
                return Ok(());
            }
            let mut retried = 0;
            for id in &ids {
                match operator.retry(id).await {
                    Ok(_) => retried += 1,
                    Err(error) => eprintln!("{id}: {error}: not retried"),
                }
            }
            println!("{retried} of {} retried", ids.len());
            if retried < ids.len() {
                return Err("some deliveries were not retried".into());
            }
        }
        Deliveries::Discard { ids } => {
            let mut discarded = 0;
            for id in &ids {
                match operator.discard(id).await {
                    Ok(_) => discarded += 1,
                    Err(error) => eprintln!("{id}: {error}: not discarded"),
                }
            }
            println!("{discarded} of {} discarded", ids.len());
            if discarded < ids.len() {
                return Err("some deliveries were not discarded".into());
            }
        }
    }
    Ok(())
}

/// A payload pretty-printed when it is JSON, as sent otherwise.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
