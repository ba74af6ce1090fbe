//! `SqliteStore`: one file in a temporary directory holds what a single
//! server must not forget. The conformance suites pass against it; a store
//! opened again on the file finds every key, source, kept start and log
//! record; keyed load runs far past the in-memory store's old cliff.
#![cfg(all(feature = "sqlite", feature = "testing"))]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use process_webhook::*;

fn key(id: &str, n: u8) -> EncryptionKey {
    EncryptionKey::new(id, [n; 32]).unwrap()
}

/// A fresh directory and the path of a database file in it.
fn file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("process-webhook.db");
    (dir, path)
}

async fn seed(store: &SqliteStore) -> EnvironmentToken {
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    store
        .insert_model(ProcessModel::new(
            uuid(ORDER_INTAKE),
            acme.clone(),
            "Order intake",
        ))
        .await
        .unwrap();
    store
        .deploy(Deployment::new(
            uuid(ORDER_INTAKE),
            VersionTag::Released(1),
            production.clone(),
            order_form(),
        ))
        .await
        .unwrap();
    let token = EnvironmentToken::generate();
    store
        .insert(&token, Environment::new(production, acme))
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn the_conformance_suites_pass_against_a_file_directly_and_as_trait_objects() {
    let (_dir, path) = file();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_encryption_key(key("k1", 1));
    let fixtures = testing::model_fixtures();
    for model in &fixtures.models {
        store.insert_model(model.clone()).await.unwrap();
    }
    for deployment in &fixtures.deployments {
        store.deploy(deployment.clone()).await.unwrap();
    }
    testing::check_model_store(&store, &fixtures).await;
    let tokens = testing::token_fixtures();
    for (token, environment) in &tokens {
        store.insert(token, environment.clone()).await.unwrap();
    }
    testing::check_token_store(&store, &tokens).await;
    testing::check_idempotency_store(&store).await;
    testing::check_idempotency_takeover(&store).await;
    let sources = testing::source_fixtures();
    for source in &sources {
        store.put_source(source).await.unwrap();
    }
    testing::check_source_store(&store, &sources).await;
    testing::check_inbox(&store).await;
    testing::check_delivery_log(&store).await;

    let as_dyn: Arc<dyn ModelStore> = Arc::new(store.clone());
    testing::check_model_store(&*as_dyn, &fixtures).await;
    let as_dyn: Arc<dyn Inbox> = Arc::new(store.clone());
    testing::check_inbox(&*as_dyn).await;
    let as_dyn: Arc<dyn DeliveryLog> = Arc::new(store.clone());
    testing::check_delivery_log(&*as_dyn).await;
    let as_dyn: Arc<dyn SourceStore> = Arc::new(store.clone());
    testing::check_source_store(&*as_dyn, &sources).await;

    // The history of deployments is kept, oldest first, and the latest
    // of each process and environment is listed.
    let first = &fixtures.deployments[0];
    let history = store
        .deployments(first.process(), first.environment())
        .await
        .unwrap();
    assert_eq!(history, fixtures.deployments[..2].to_vec());
    let deployed = store.deployed().await.unwrap();
    assert!(
        deployed
            .iter()
            .any(|(model, d)| model.uuid() == first.process() && *d == fixtures.deployments[1])
    );
    assert!(
        !deployed.contains(&(fixtures.models[0].clone(), first.clone())),
        "not the older one"
    );
}

#[tokio::test]
async fn a_store_opened_again_on_the_file_finds_keys_sources_kept_starts_and_the_log() {
    let (_dir, path) = file();
    let process = uuid(ORDER_INTAKE);
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let source = WebhookSource::new(
        "gitlab".parse().unwrap(),
        production.clone(),
        process,
        SourceScheme::Gitlab,
        [SourceSecret::new("gitlab-token").unwrap()],
    )
    .unwrap();
    let target = format!("{}&source=gitlab", webhook_url("/webhook/send", &process));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let headers = [("X-Gitlab-Token", "gitlab-token"), ("X-Gitlab-Event-UUID", "e1")];
    let engine = Arc::new(InMemoryEngine::new());
    let starter = |store: &Arc<SqliteStore>| {
        WebhookStarter::new(store.clone(), store.clone(), engine.clone())
            .with_idempotency(store.clone())
            .with_sources(store.clone())
    };

    let (first, kept_id) = {
        let store = Arc::new(
            SqliteStore::open(&path)
                .await
                .unwrap()
                .with_encryption_key(key("k1", 1)),
        );
        let token = seed(&store).await;
        store.put_source(&source).await.unwrap();
        let first = starter(&store).handle(&target, headers, &body).await;
        assert_eq!(first.status(), 202, "{}", String::from_utf8_lossy(first.body()));
        // A start kept for later, and a log record.
        let deployment = store
            .deployment(&process, production.id())
            .await
            .unwrap()
            .unwrap();
        let kept = KeptStart::new(
            DeliveryId::new_random(),
            StartCommand::new(&deployment, 1, order_payload()),
            None,
        );
        let kept_id = kept.id;
        assert_eq!(store.keep(kept, 10).await.unwrap(), Keeping::Kept);
        let record = LoggedDelivery::new(
            kept_id,
            std::time::SystemTime::now(),
            production.id().clone(),
            process,
            LoggedOutcome::Queued,
        );
        store.append(&[record]).await.unwrap();
        // The token works before the restart.
        assert!(store.environment(&token).await.unwrap().is_some());
        (
            serde_json::from_slice::<serde_json::Value>(first.body()).unwrap(),
            kept_id,
        )
    };

    // Opened again, as after a restart: the same key, source, kept start
    // and record are there.
    let store = Arc::new(
        SqliteStore::open(&path)
            .await
            .unwrap()
            .with_encryption_key(key("k1", 1)),
    );
    let again = starter(&store).handle(&target, headers, &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let again: serde_json::Value = serde_json::from_slice(again.body()).unwrap();
    assert_eq!(
        again["instanceId"], first["instanceId"],
        "the same instance, replayed"
    );
    assert_eq!(engine.started().len(), 1, "started once across the restart");
    assert_eq!(store.source(source.id()).await.unwrap(), Some(source.clone()));
    let kept = store.get(&kept_id).await.unwrap().unwrap();
    assert_eq!(kept.status, DeliveryStatus::Queued);
    assert_eq!(
        store.read(&kept_id).await.unwrap().unwrap().outcome,
        LoggedOutcome::Queued
    );
    // A forged token still fails after the restart.
    let wrong = starter(&store)
        .handle(
            &target,
            [("X-Gitlab-Token", "gitlab-tokem"), ("X-Gitlab-Event-UUID", "e2")],
            &body,
        )
        .await;
    assert_reply(&wrong, 401, "invalid_signature");
    assert_eq!(engine.started().len(), 1);
}

#[tokio::test]
async fn a_kept_start_is_dispatched_from_the_file_once_the_engine_is_back() {
    let (_dir, path) = file();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let token = seed(&store).await;
    let engine = Arc::new(FlakyEngine::failing(1, || {
        EngineError::unavailable("connection refused")
    }));
    let wakeup = Arc::new(tokio::sync::Notify::new());
    store.notify_on_keep(&wakeup);
    let starter = WebhookStarter::new(store.clone(), store.clone(), engine.clone())
        .with_idempotency(store.clone())
        .with_inbox(store.clone(), InboxPolicy::Fallback);
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let bearer = format!("Bearer {}", token.expose_secret());
    let headers = [("authorization", bearer.as_str()), ("idempotency-key", "order-1")];
    let reply = starter.handle(&target, headers, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let queued: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(queued["status"], "queued");
    // The keep woke the dispatcher at once.
    tokio::time::timeout(Duration::from_secs(1), wakeup.notified())
        .await
        .expect("woken");
    // The same key while kept answers from the inbox, starting nothing.
    let repeat = starter.handle(&target, headers, &body).await;
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));

    let dispatcher = starter
        .dispatcher()
        .unwrap()
        .with_backoff(Duration::ZERO, Duration::ZERO);
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 0, "nothing due twice");
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    let delivery = store.get(&id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Started);
    assert_eq!(engine.inner.started().len(), 1);
    assert_eq!(delivery.instance.as_ref(), Some(&engine.inner.started()[0].id));
    assert_eq!(store.counts().await.unwrap().queued, 0);
}

#[tokio::test]
async fn keyed_starts_run_far_past_the_old_in_memory_cliff_without_store_full() {
    let (_dir, path) = file();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let token = seed(&store).await;
    let engine = Arc::new(InMemoryEngine::new());
    let starter =
        WebhookStarter::new(store.clone(), store.clone(), engine.clone()).with_idempotency(store.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let bearer = format!("Bearer {}", token.expose_secret());
    const KEYS: usize = 120_000;
    let mut statuses = std::collections::BTreeMap::new();
    let calls = futures_util::stream::iter(0..KEYS).map(|n| {
        let (starter, target, body, bearer) = (&starter, &target, &body, &bearer);
        async move {
            let key = format!("delivery-{n}");
            let headers = [
                ("authorization", bearer.as_str()),
                ("idempotency-key", key.as_str()),
            ];
            starter.handle(target, headers, body).await.status()
        }
    });
    use futures_util::StreamExt as _;
    let mut calls = calls.buffer_unordered(16);
    while let Some(status) = calls.next().await {
        *statuses.entry(status).or_insert(0usize) += 1;
    }
    assert_eq!(
        statuses,
        [(202, KEYS)].into_iter().collect(),
        "every keyed start started"
    );
    assert_eq!(engine.total_started(), KEYS as u64);
    // The first key still replays.
    let headers = [
        ("authorization", bearer.as_str()),
        ("idempotency-key", "delivery-0"),
    ];
    let first = starter.handle(&target, headers, &body).await;
    assert_eq!(first.header("idempotent-replayed"), Some("true"));
    assert_eq!(engine.total_started(), KEYS as u64);
}

#[tokio::test]
async fn the_file_is_the_owners_only_and_holds_no_secret_in_plain_text() {
    let (dir, path) = file();
    let store = SqliteStore::open(&path).await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "created owner-only");
    }
    // Without an encryption key a source's secret is refused.
    let source = WebhookSource::new(
        "stripe".parse().unwrap(),
        Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme")),
        uuid(ORDER_INTAKE),
        SourceScheme::Stripe,
        [SourceSecret::new("whsec_a-long-and-recognisable-secret-0123456789").unwrap()],
    )
    .unwrap();
    let err = store.put_source(&source).await.unwrap_err();
    assert!(err.to_string().contains("no encryption key"), "{err}");
    assert_eq!(
        store.source(source.id()).await.unwrap(),
        None,
        "nothing was written"
    );

    let store = store.with_encryption_key(key("k1", 1));
    store
        .insert_model(ProcessModel::new(
            uuid(ORDER_INTAKE),
            OrganizationId::new("acme"),
            "Order intake",
        ))
        .await
        .unwrap();
    store.put_source(&source).await.unwrap();
    let token = EnvironmentToken::generate();
    store.insert(&token, source.environment().clone()).await.unwrap();
    drop(store);
    // Every byte of the file and its log: neither the secret nor the token.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("a-long-and-recognisable-secret"));
    assert!(!text.contains(token.expose_secret()));
    assert!(text.contains("\"key\":\"k1\""), "the sealed secret names its key");

    // Without the key a store says which key it needs; a wrong one fails.
    let keyless = SqliteStore::open(&path).await.unwrap();
    let err = keyless.source(source.id()).await.unwrap_err();
    assert!(err.to_string().contains("key `k1`"), "{err}");
    let wrong = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_encryption_key(key("k1", 7));
    assert!(
        wrong
            .source(source.id())
            .await
            .unwrap_err()
            .to_string()
            .contains("does not decrypt")
    );
    // A second key rolled in reseals the rows; the old one can go.
    let rolled = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_encryption_key(key("k2", 2))
        .with_decryption_key(key("k1", 1));
    assert_eq!(rolled.reseal_sources().await.unwrap(), 1);
    assert_eq!(rolled.reseal_sources().await.unwrap(), 0);
    let new_only = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_encryption_key(key("k2", 2));
    assert_eq!(new_only.source(source.id()).await.unwrap(), Some(source));
}

#[tokio::test]
async fn a_file_of_a_newer_version_or_not_a_database_is_refused_clearly() {
    let (dir, path) = file();
    let store = SqliteStore::open(&path).await.unwrap();
    drop(store);
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE schema_version SET version = 99")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("schema version 99, newer than"), "{err}");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are not the tables you are looking for").unwrap();
    let err = SqliteStore::open(&text).await.unwrap_err();
    assert!(err.to_string().starts_with("sqlite: "), "{err}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "these are not the tables you are looking for",
        "the file is left as it was"
    );
    let err = SqliteStore::open(dir.path().join("no/such/dir/x.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not create"), "{err}");
}

#[tokio::test]
async fn purging_deletes_expired_keys_and_the_purger_ends_with_the_store() {
    let (_dir, path) = file();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_idempotency_ttl(Duration::from_millis(50));
    let scope = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "k");
    for n in 0..3 {
        let key = IdempotencyKey::new(scope.environment().clone(), *scope.process(), format!("k{n}"));
        assert_eq!(
            store
                .reserve(&key, PayloadFingerprint::from_bytes([n; 32]))
                .await
                .unwrap(),
            Reservation::Reserved
        );
    }
    assert_eq!(store.purge_expired(10).await.unwrap(), 0, "none expired yet");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(store.purge_expired(2).await.unwrap(), 2, "a batch at a time");
    assert_eq!(store.purge_expired(2).await.unwrap(), 1);
    let purger = store.spawn_purger(Duration::from_millis(10));
    drop(store);
    tokio::time::timeout(Duration::from_secs(2), purger)
        .await
        .expect("ends")
        .unwrap();
}

#[test]
fn debug_shows_the_file_and_no_key() {
    let (_dir, path) = file();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime
        .block_on(SqliteStore::open(&path))
        .unwrap()
        .with_encryption_key(key("k1", 0xab));
    let debug = format!("{store:?}");
    assert!(debug.starts_with("SqliteStore { path: "), "{debug}");
    assert!(
        debug.contains("process-webhook.db") && debug.contains("Some(\"k1\")"),
        "{debug}"
    );
    assert!(!debug.contains("171") && !debug.contains("ab, "), "{debug}");
}

#[tokio::test]
async fn sixty_four_deliveries_of_one_key_at_once_start_one_instance() {
    let (_dir, path) = file();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let token = seed(&store).await;
    let engine = Arc::new(InMemoryEngine::new());
    let starter =
        WebhookStarter::new(store.clone(), store.clone(), engine.clone()).with_idempotency(store.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let bearer = format!("Bearer {}", token.expose_secret());
    // Reservations of one key, and of others, land in the same groups.
    let calls = (0..64).map(|n| {
        let (starter, target, body, bearer) = (&starter, &target, &body, &bearer);
        async move {
            let key = if n % 2 == 0 {
                "same".to_owned()
            } else {
                format!("other-{n}")
            };
            let headers = [
                ("authorization", bearer.as_str()),
                ("idempotency-key", key.as_str()),
            ];
            (n % 2 == 0, starter.handle(target, headers, body).await)
        }
    });
    let replies = futures_util::future::join_all(calls).await;
    let same: Vec<_> = replies.iter().filter(|(same, _)| *same).map(|(_, r)| r).collect();
    let instances: std::collections::BTreeSet<_> = same
        .iter()
        .filter(|r| r.status() == 202)
        .map(|r| serde_json::from_slice::<serde_json::Value>(r.body()).unwrap()["instanceId"].to_string())
        .collect();
    assert_eq!(instances.len(), 1, "one instance for the key");
    for reply in &same {
        // Each is the instance, or told the first is still in progress.
        assert!(
            reply.status() == 202 || reply.status() == 409,
            "{} {}",
            reply.status(),
            String::from_utf8_lossy(reply.body())
        );
    }
    assert!(
        replies
            .iter()
            .filter(|(same, _)| !same)
            .all(|(_, r)| r.status() == 202)
    );
    assert_eq!(
        engine.total_started(),
        1 + 32,
        "one for the key, one for each other key"
    );
}

#[tokio::test]
async fn another_process_changes_are_seen_within_the_cache_second_and_at_once_without_the_cache() {
    let (_dir, path) = file();
    let server = SqliteStore::open(&path).await.unwrap();
    let token = seed(&server).await;
    let uncached = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_cache_ttl(Duration::ZERO);
    // Another store on the file, as `webhook_server admin` is.
    let admin = SqliteStore::open(&path).await.unwrap();
    assert!(server.environment(&token).await.unwrap().is_some(), "cached now");
    assert!(uncached.environment(&token).await.unwrap().is_some());
    assert!(admin.revoke(&token).await.unwrap());
    assert!(
        uncached.environment(&token).await.unwrap().is_none(),
        "without the cache, at once"
    );
    assert!(
        server.environment(&token).await.unwrap().is_some(),
        "with it, the cached answer for up to a second"
    );
    tokio::time::sleep(SqliteStore::DEFAULT_CACHE_TTL + Duration::from_millis(50)).await;
    assert!(
        server.environment(&token).await.unwrap().is_none(),
        "then refused"
    );
    // The store's own change empties its cache at once.
    let again = EnvironmentToken::generate();
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    server.insert(&again, production).await.unwrap();
    assert!(server.environment(&again).await.unwrap().is_some());
    assert!(server.revoke(&again).await.unwrap());
    assert!(server.environment(&again).await.unwrap().is_none());
    // A redeployment through the store is seen at once too.
    let process = uuid(ORDER_INTAKE);
    let env = EnvironmentId::new("production");
    assert_eq!(
        server
            .deployment(&process, &env)
            .await
            .unwrap()
            .unwrap()
            .version(),
        VersionTag::Released(1)
    );
    let v2 = Deployment::new(process, VersionTag::Released(2), env.clone(), order_form());
    server.deploy(v2.clone()).await.unwrap();
    assert_eq!(server.deployment(&process, &env).await.unwrap(), Some(v2));
    assert_eq!(server.path(), path.as_path());
}

#[tokio::test]
async fn memory_is_not_a_file_and_a_slow_writer_is_bounded() {
    let err = SqliteStore::open(":memory:").await.unwrap_err();
    assert!(err.to_string().contains("keeps a file"), "{err}");
    let (_dir, path) = file();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    // Another connection holds the write lock: the store's write waits for
    // it no longer than its timeout, and says so.
    use sqlx::Connection as _;
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let began = std::time::Instant::now();
    let err = store
        .insert_model(ProcessModel::new(
            uuid(ORDER_INTAKE),
            OrganizationId::new("acme"),
            "Order intake",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no answer within 200 ms"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(3));
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
}

#[tokio::test]
async fn an_expired_key_and_an_abandoned_reservation_are_taken_over() {
    let (_dir, path) = file();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_idempotency_ttl(Duration::from_millis(300))
        .with_idempotency_lease(Duration::from_millis(150));
    let key = |k: &str| IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), k);
    let (one, two) = (
        PayloadFingerprint::from_bytes([1; 32]),
        PayloadFingerprint::from_bytes([2; 32]),
    );
    // A reservation left unfinished: in progress within its lease,
    // abandoned after it, then anyone's (with another payload too).
    assert_eq!(
        store.reserve(&key("left"), one).await.unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store.reserve(&key("left"), two).await.unwrap(),
        Reservation::InProgress { fingerprint: one }
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        store.reserve(&key("left"), two).await.unwrap(),
        Reservation::Reserved
    );
    // A completed key replays until it expires, then starts afresh.
    assert_eq!(
        store.reserve(&key("done"), one).await.unwrap(),
        Reservation::Reserved
    );
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    IdempotencyStore::complete(&store, &key("done"), &outcome)
        .await
        .unwrap();
    assert!(matches!(
        store.reserve(&key("done"), one).await.unwrap(),
        Reservation::Completed { .. }
    ));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        store.reserve(&key("done"), two).await.unwrap(),
        Reservation::Reserved
    );
}

#[tokio::test]
async fn a_key_write_that_fails_says_why_and_is_not_taken_for_a_stopped_writer() {
    let (_dir, path) = file();
    let store = SqliteStore::open(&path)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    use sqlx::Connection as _;
    let mut holder = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // Held past the writer's 5-second wait for the lock.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "k");
    let reserving = store.reserve(&key, PayloadFingerprint::from_bytes([1; 32]));
    let err = reserving.await.unwrap_err();
    let chain = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(chain.starts_with("sqlite: reserving a key"), "{chain}");
    assert!(chain.contains("locked"), "{chain}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    // Nothing was reserved: the key is free once the lock is gone.
    assert_eq!(
        store
            .reserve(&key, PayloadFingerprint::from_bytes([2; 32]))
            .await
            .unwrap(),
        Reservation::Reserved
    );
}

#[tokio::test]
async fn clones_with_other_key_lifetimes_keep_their_own_rules_in_one_group() {
    let (_dir, path) = file();
    let long = SqliteStore::open(&path).await.unwrap();
    let short = long.clone().with_idempotency_ttl(Duration::from_millis(100));
    let key = |k: &str| IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), k);
    let (one, two) = (
        PayloadFingerprint::from_bytes([1; 32]),
        PayloadFingerprint::from_bytes([2; 32]),
    );
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    assert_eq!(long.reserve(&key("k"), one).await.unwrap(), Reservation::Reserved);
    IdempotencyStore::complete(&long, &key("k"), &outcome)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Reservations of the long-lived clone first, the short-lived one's
    // among them: handed to the writer at once, so grouped.
    let others = (0..16).map(|n| {
        let (long, key) = (&long, key(&format!("other-{n}")));
        async move { long.reserve(&key, one).await.unwrap() }
    });
    let k = key("k");
    let (others, expired) = tokio::join!(futures_util::future::join_all(others), short.reserve(&k, two));
    assert!(others.iter().all(|r| *r == Reservation::Reserved));
    assert_eq!(
        expired.unwrap(),
        Reservation::Reserved,
        "expired under the short clone's rules"
    );
    // Under the long clone's rules it would have replayed.
    assert!(matches!(
        long.reserve(&key("k"), two).await.unwrap(),
        Reservation::InProgress { .. }
    ));
}

/// The operator runs `webhook_server admin` beside the server: each command
/// opens the file and may write to it. Opening writes nothing, and the
/// server's log goes on recording its deliveries' outcomes meanwhile, none
/// refused for the other writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_recording_while_admin_commands_open_and_write_the_file() {
    use sqlx::Connection as _;
    let (_dir, path) = file();
    let server = SqliteStore::open(&path).await.unwrap();
    seed(&server).await;
    let mut watcher = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let before = data_version(&mut watcher).await;
    drop(SqliteStore::open(&path).await.unwrap());
    assert_eq!(
        data_version(&mut watcher).await,
        before,
        "opening the file wrote to it"
    );

    let (production, process) = (EnvironmentId::new("production"), uuid(ORDER_INTAKE));
    let ids: Vec<DeliveryId> = (0..100).map(|_| DeliveryId::new_random()).collect();
    let queued: Vec<LoggedDelivery> = ids
        .iter()
        .map(|id| {
            LoggedDelivery::new(
                *id,
                std::time::SystemTime::now(),
                production.clone(),
                process,
                LoggedOutcome::Queued,
            )
        })
        .collect();
    server.append(&queued).await.unwrap();
    // Each outcome is merged into its logged call (a read, then a write)
    // while another process's store writes tokens as fast as it can.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin = tokio::spawn({
        let (path, done) = (path.clone(), done.clone());
        async move {
            let admin = SqliteStore::open(&path).await.unwrap();
            let environment = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
            let mut written = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) && written < 20_000 {
                written += 1;
                admin
                    .insert(&EnvironmentToken::generate(), environment.clone())
                    .await
                    .unwrap();
            }
        }
    });
    for (n, id) in ids.iter().enumerate() {
        let mut started = LoggedDelivery::new(
            *id,
            std::time::SystemTime::now(),
            production.clone(),
            process,
            LoggedOutcome::Started,
        );
        started.instance = Some(InstanceId::new(format!("instance-{n}")));
        server
            .append(&[started])
            .await
            .unwrap_or_else(|e| panic!("outcome {n} refused beside the admin's writes: {e}"));
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    admin.await.unwrap();
    for (n, id) in ids.iter().enumerate() {
        let read = server.read(id).await.unwrap().unwrap();
        assert_eq!(read.outcome, LoggedOutcome::Started);
        assert_eq!(read.instance, Some(InstanceId::new(format!("instance-{n}"))));
    }
    assert!(
        data_version(&mut watcher).await > before,
        "the admin's writes are seen"
    );
}

/// SQLite's count of the commits other connections made to the file.
async fn data_version(connection: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(connection)
        .await
        .unwrap()
}

/// After a clean stop the file alone holds every write: a copy of it,
/// without its `-wal`, is a backup that finds the token, the model and the
/// log. The closed store refuses to work, saying why.
#[tokio::test]
async fn a_closed_store_leaves_one_file_that_holds_everything() {
    let (dir, path) = file();
    let store = SqliteStore::open(&path).await.unwrap();
    let token = seed(&store).await;
    let id = DeliveryId::new_random();
    let record = LoggedDelivery::new(
        id,
        std::time::SystemTime::now(),
        EnvironmentId::new("production"),
        uuid(ORDER_INTAKE),
        LoggedOutcome::Started,
    );
    store.append(&[record]).await.unwrap();
    let wal = dir.path().join("process-webhook.db-wal");
    assert!(wal.exists(), "writes go to the write-ahead log first");
    store.clone().close().await;
    assert!(!wal.exists(), "closed, the log is folded into the file");
    let err = store.environment(&token).await.unwrap_err();
    assert!(err.to_string().contains("sqlite"), "{err}");

    let backup = tempfile::tempdir().unwrap();
    let copy = backup.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let copied = SqliteStore::open(&copy).await.unwrap();
    assert!(copied.environment(&token).await.unwrap().is_some());
    assert!(
        copied
            .deployment(&uuid(ORDER_INTAKE), &EnvironmentId::new("production"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        copied.read(&id).await.unwrap().unwrap().outcome,
        LoggedOutcome::Started
    );
}
