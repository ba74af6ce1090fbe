//! `webhook_server admin copy-to-postgres`: the file's state
//! (`WEBHOOK_DATA`) copied into PostgreSQL (`DATABASE_URL`,
//! `WEBHOOK_SCHEMA`), for the move from one server to replicas. Source
//! secrets are opened with the file's key and sealed again under
//! `WEBHOOK_SECRET_KEY`, in this process only: they never leave it in
//! plain text. What is there already is left as it is, so the copy can be
//! run again.

use process_webhook::*;

/// Copies models and every deployment, token digests, sources, the
/// completed idempotency keys that have not expired, and the queued kept
/// starts. Dead kept starts are counted and left (retry or discard them
/// first); the delivery log is history and stays in the file.
pub(crate) async fn copy_to_postgres() -> Result<(), Box<dyn std::error::Error>> {
    let crate::stores::Data::File(path) = crate::stores::data() else {
        return Err("WEBHOOK_DATA=:memory: has nothing to copy: name the file to copy from".into());
    };
    if !path.exists() {
        return Err(format!("WEBHOOK_DATA: {} does not exist", path.display()).into());
    }
    if std::env::var("WEBHOOK_SECRET_KEY").is_err() {
        return Err(
            "WEBHOOK_SECRET_KEY: not set: the copy seals the sources' secrets under the key \
                    PostgreSQL's servers will use (32 bytes in base64, e.g. from `openssl rand -base64 32`)"
                .into(),
        );
    }
    let file = crate::stores::sqlite_store(&path).await?;
    let postgres = crate::stores::postgres_store().await?;

    let mut deployments = 0;
    for (model, latest) in file.deployed().await? {
        postgres.insert_model(model).await?;
        for deployment in file.deployments(latest.process(), latest.environment()).await? {
            postgres.deploy(deployment).await?;
            deployments += 1;
        }
    }
    let tokens = file.tokens().await?;
    for (digest, environment) in &tokens {
        postgres.insert_digest(*digest, environment.clone()).await?;
    }
    let sources = file.sources().await?;
    for source in &sources {
        postgres.put_source(source).await?;
    }
    let (mut keys, mut keys_there) = (0, 0);
    for (key, fingerprint, outcome) in file.completed_keys().await? {
        match postgres.reserve(&key, fingerprint).await? {
            Reservation::Reserved => {
                IdempotencyStore::complete(&postgres, &key, &outcome).await?;
                keys += 1;
            }
            _ => keys_there += 1,
        }
    }
    let (mut kept, mut kept_there) = (0, 0);
    let queued = file
        .list(&InboxQuery::default().with_status(DeliveryStatus::Queued))
        .await?;
    for delivery in queued {
        if postgres.get(&delivery.id).await?.is_some() {
            kept_there += 1;
            continue;
        }
        let caller_key = delivery
            .caller_key
            .as_ref()
            .map(|key| IdempotencyKey::new(delivery.environment.clone(), delivery.process, key.as_str()));
        // Its key stays reserved, as in the file, so that the dispatcher
        // that starts it records the outcome a redelivery then replays.
        if let (Some(key), Some(fingerprint)) = (&caller_key, delivery.command.fingerprint) {
            postgres.reserve(key, fingerprint).await?;
        }
        let mut start = KeptStart::new(delivery.id, delivery.command, caller_key);
        start.kept_at = delivery.kept_at;
        start.source = delivery.source;
        if postgres.keep(start, usize::MAX).await? == Keeping::Kept {
            kept += 1;
        }
    }
    let dead = file.counts().await?.dead;
    println!(
        "copied {} to PostgreSQL (schema {}): {deployments} deployments, {} tokens, {} sources, \
         {keys} idempotency keys ({keys_there} already there), {kept} queued starts ({kept_there} already there)",
        path.display(),
        postgres.schema(),
        tokens.len(),
        sources.len(),
    );
    if dead > 0 {
        println!(
            "not copied: {dead} dead kept starts (webhook_server admin deliveries list --status dead; retry or discard them, then copy again)"
        );
    }
    Ok(())
}
