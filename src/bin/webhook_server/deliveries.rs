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
        status: Option<DeliveryStatus>,
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

fn line(delivery: &Delivery) -> String {
    format!(
        "{} {} kept {} in {}{} process {} v{} attempts {}{}",
        delivery.id,
        delivery.status,
        at(delivery.kept_at),
        delivery.environment,
        delivery
            .source
            .as_ref()
            .map(|s| format!(" from {s}"))
            .unwrap_or_default(),
        delivery.process,
        delivery.version,
        delivery.attempts,
        delivery
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}

/// Runs `command` against `inbox`, printing to standard output.
pub(crate) async fn run(inbox: &dyn Inbox, command: Deliveries) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Deliveries::List {
            status,
            environment,
            source,
            limit,
        } => {
            let mut query = InboxQuery::default().with_limit(limit);
            if let Some(source) = source {
                query = query.with_source(source);
            }
            if let Some(status) = status {
                query = query.with_status(status);
            }
            if let Some(environment) = environment {
                query = query.with_environment(EnvironmentId::new(environment));
            }
            for delivery in inbox.list(&query).await? {
                println!("{}", line(&delivery));
            }
        }
        Deliveries::Show { id, payload } => {
            let delivery = inbox.get(&id).await?.ok_or("no such delivery")?;
            println!("{}", line(&delivery));
            println!("due at: {}", at(delivery.due_at));
            if let Some(key) = &delivery.caller_key {
                println!("idempotency key: {key}");
            }
            if let Some(instance) = &delivery.instance {
                println!("instance: {instance}");
            }
            println!("deployment: {}", delivery.command.deployment);
            if payload {
                println!(
                    "payload: {}",
                    serde_json::to_string_pretty(&delivery.command.variables)?
                );
            }
        }
        Deliveries::Retry {
            ids,
            dead,
            environment,
            source,
        } => {
            let ids = if dead {
                let mut query = InboxQuery::default().with_status(DeliveryStatus::Dead);
                if let Some(source) = source {
                    query = query.with_source(source);
                }
                if let Some(environment) = environment {
                    query = query.with_environment(EnvironmentId::new(environment));
                }
                inbox.list(&query).await?.into_iter().map(|d| d.id).collect()
            } else {
                ids
            };
            let mut retried = 0;
            for id in &ids {
                if inbox.retry(id).await? {
                    retried += 1;
                } else {
                    eprintln!("{id}: not dead (or unknown): not retried");
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
                if inbox.discard(id).await? {
                    discarded += 1;
                } else {
                    eprintln!("{id}: not queued or dead (or unknown): not discarded");
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
