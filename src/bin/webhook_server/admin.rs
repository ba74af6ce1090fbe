//! `webhook_server admin …`: what an operator changes in the server's
//! state, PostgreSQL (`DATABASE_URL`, `WEBHOOK_SCHEMA`) or the file
//! (`WEBHOOK_DATA`), without a configuration file. Each change reaches
//! running servers as the store's changes do (PostgreSQL at once; the file
//! within its cache's second). Secrets and tokens are read from standard
//! input or an environment variable, never from the command line.

use std::io::Read as _;

use clap::Subcommand;
use process_webhook::*;

use crate::config;
use crate::stores::StateStore;

/// One administration command.
#[derive(Subcommand)]
pub(crate) enum Action {
    /// Create a token for an environment (adding the environment if it is
    /// new). The token is printed once; only its digest is stored.
    CreateToken {
        /// The environment's id, e.g. `production`.
        #[arg(long)]
        environment: String,
        /// The organization it belongs to.
        #[arg(long)]
        organization: String,
    },
    /// Revoke a token, read from standard input: replicas refuse it from
    /// then on.
    RevokeToken,
    /// Deploy a version of a process (adding or renaming its model), its
    /// start form read from a TOML or JSON file of `fields`.
    Deploy {
        /// The process's UUID.
        #[arg(long)]
        process: ProcessUuid,
        /// The organization it belongs to.
        #[arg(long)]
        organization: String,
        /// The process's name.
        #[arg(long)]
        name: String,
        /// The environment to deploy to.
        #[arg(long)]
        environment: String,
        /// The released version number (or `--draft`).
        #[arg(long, conflicts_with = "draft", required_unless_present = "draft")]
        version: Option<u32>,
        /// Deploy a draft (never started by webhook).
        #[arg(long)]
        draft: bool,
        /// The start form: `fields = [{ name, kind, mandatory, default,
        /// options }, …]` in TOML, or the same in JSON (`.json`).
        #[arg(long, value_name = "FILE")]
        form: String,
        /// The engine's definition key (default: the process's UUID).
        #[arg(long)]
        definition_key: Option<String>,
    },
    /// List what is deployed where: the latest deployment of each process
    /// in each environment.
    List,
    /// Add a source, or replace the one with its id, from a file of one
    /// `[[source]]` table; its secret from the environment variable its
    /// `secret_env` names.
    PutSource {
        /// The file.
        #[arg(long, value_name = "FILE")]
        file: String,
    },
    /// Rotate a source's secret: the new one, read from standard input,
    /// verifies from now on, the old ones too until `--retire-old`.
    RotateSource {
        /// The source's id.
        #[arg(long)]
        id: SourceId,
        /// Keep only the newest secret (after the sender has the new one).
        #[arg(long)]
        retire_old: bool,
    },
    /// Remove a source.
    RemoveSource {
        /// The source's id.
        #[arg(long)]
        id: SourceId,
    },
    /// The starts the inbox keeps: list, show, retry, discard.
    #[command(subcommand)]
    Deliveries(crate::deliveries::Deliveries),
    /// Copy the file's state (WEBHOOK_DATA) into PostgreSQL (DATABASE_URL,
    /// WEBHOOK_SCHEMA, WEBHOOK_SECRET_KEY), to move to replicas: models,
    /// deployments, token digests, sources (their secrets sealed again
    /// under WEBHOOK_SECRET_KEY), unexpired idempotency keys and queued
    /// kept starts. Safe to run again.
    #[cfg(feature = "postgres")]
    CopyToPostgres,
}

/// Standard input, trimmed: a token or a secret.
fn secret_from_stdin(what: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(format!("no {what} on standard input").into());
    }
    Ok(text)
}

/// Runs `action` against the store of `DATABASE_URL` (feature `postgres`),
/// else the file of `WEBHOOK_DATA`.
pub(crate) async fn run(action: Action) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "postgres")]
    if std::env::var("DATABASE_URL").is_ok() {
        return run_on(crate::stores::postgres_store().await?, action).await;
    }
    match crate::stores::data() {
        crate::stores::Data::File(path) => {
            let store = crate::stores::sqlite_store(&path).await?;
            let done = run_on(store.clone(), action).await;
            store.close().await;
            done
        }
        crate::stores::Data::Memory => Err(
            "WEBHOOK_DATA=:memory: keeps nothing to change: the admin commands \
             change the file of WEBHOOK_DATA or, with the postgres feature, DATABASE_URL"
                .into(),
        ),
    }
}

async fn run_on(store: impl StateStore, action: Action) -> Result<(), Box<dyn std::error::Error>> {
    match action {
        Action::CreateToken {
            environment,
            organization,
        } => {
            let token = EnvironmentToken::generate();
            let environment =
                Environment::new(EnvironmentId::new(environment), OrganizationId::new(organization));
            store.insert(&token, environment.clone()).await?;
            println!(
                "token of {} ({}), shown once: {}",
                environment.id(),
                environment.organization(),
                token.expose_secret()
            );
        }
        Action::RevokeToken => {
            let token = EnvironmentToken::new(secret_from_stdin("token")?);
            if store.revoke(&token).await? {
                println!("revoked");
            } else {
                return Err("no such token".into());
            }
        }
        Action::Deploy {
            process,
            organization,
            name,
            environment,
            version,
            draft,
            form,
            definition_key,
        } => {
            let form = config::read_form(&form)?;
            store
                .insert_model(ProcessModel::new(
                    process,
                    OrganizationId::new(organization),
                    name,
                ))
                .await?;
            let version = match (version, draft) {
                (Some(n), false) => VersionTag::Released(n),
                _ => VersionTag::Draft,
            };
            let mut deployment = Deployment::new(process, version, EnvironmentId::new(environment), form);
            if let Some(key) = definition_key {
                deployment = deployment.with_definition_key(key);
            }
            store.deploy(deployment.clone()).await?;
            println!(
                "deployed {process} {} to {}",
                config::shown(deployment.version()),
                deployment.environment()
            );
        }
        Action::List => {
            for (model, deployment) in store.deployed().await? {
                let fields: Vec<&str> = deployment
                    .start_form()
                    .fields()
                    .iter()
                    .map(FieldSpec::name)
                    .collect();
                println!(
                    "{} {} ({}) in {}: {}, fields {}",
                    model.uuid(),
                    model.name(),
                    model.organization(),
                    deployment.environment(),
                    config::shown(deployment.version()),
                    fields.join(", ")
                );
            }
        }
        Action::PutSource { file } => {
            let served: Vec<config::Served> = store
                .deployed()
                .await?
                .into_iter()
                .map(|(model, deployment)| config::Served {
                    process: *model.uuid(),
                    environment: Environment::new(
                        deployment.environment().clone(),
                        model.organization().clone(),
                    ),
                    form: deployment.start_form().clone(),
                })
                .collect();
            let config = config::read_config(&file, &served, None, |name| std::env::var(name).ok())?;
            if config.declared.is_some() || config.sources.len() != 1 {
                return Err(format!("{file}: put-source takes a file of one [[source]] table").into());
            }
            let source = &config.sources[0];
            store.put_source(source).await?;
            println!("source {} ({}) stored", source.id(), source.scheme());
        }
        Action::RotateSource { id, retire_old } => {
            let source = store.source(&id).await?.ok_or("no such source")?;
            let newest = SourceSecret::new(secret_from_stdin("secret")?)?;
            let mut secrets = vec![newest];
            if !retire_old {
                secrets.extend(source.secrets().iter().cloned());
            }
            let rotated = rebuilt(&source, secrets)?;
            store.put_source(&rotated).await?;
            println!("source {id}: {} secrets", rotated.secrets().len());
        }
        Action::Deliveries(command) => {
            let store = std::sync::Arc::new(store.clone());
            let (log, inbox): (std::sync::Arc<dyn DeliveryLog>, std::sync::Arc<dyn Inbox>) =
                (store.clone(), store);
            crate::deliveries::run(Operator::new(log).with_inbox(inbox), command).await?
        }
        #[cfg(feature = "postgres")]
        Action::CopyToPostgres => crate::copy::copy_to_postgres().await?,
        Action::RemoveSource { id } => {
            if store.remove_source(&id).await? {
                println!("source {id} removed");
            } else {
                return Err("no such source".into());
            }
        }
    }
    Ok(())
}

/// `source` with `secrets` instead of its own, everything else kept.
fn rebuilt(source: &WebhookSource, secrets: Vec<SourceSecret>) -> Result<WebhookSource, InvalidSource> {
    let mut rebuilt = WebhookSource::new(
        source.id().clone(),
        source.environment().clone(),
        *source.process(),
        source.scheme().clone(),
        secrets,
    )?;
    if let Some(events) = source.events() {
        rebuilt = rebuilt.with_events(events.iter().cloned())?;
    }
    if let Some(mapping) = source.mapping() {
        rebuilt = rebuilt.with_mapping(mapping.clone());
    }
    rebuilt = rebuilt.with_conditions(source.conditions().iter().cloned());
    if let Some(query) = source.delivery_query() {
        rebuilt = rebuilt.with_delivery_query(query.clone());
    }
    Ok(rebuilt)
}
