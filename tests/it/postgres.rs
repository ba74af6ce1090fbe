//! `PostgresStore` against a real PostgreSQL server (`DATABASE_URL`): the
//! conformance suites, many replicas on one database, revocations that
//! reach every replica, a database that goes away and comes back, and
//! hostile text. Each test works in a schema of its own and drops it.
#![cfg(all(feature = "postgres", feature = "axum", feature = "testing"))]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process_webhook::*;
use serde_json::Value;

/// The database URL, or `None` (with a line saying so) outside CI.
fn database_url() -> Option<String> {
    common::server_setting("DATABASE_URL", "e.g. postgres://postgres@127.0.0.1:5432/test")
}

/// Says, past the test harness's capture, that a test was skipped.
fn skipped(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// A migrated store in a fresh schema, dropped when the guard goes.
struct Db {
    url: String,
    schema: String,
}

impl Db {
    fn new() -> Option<Self> {
        let url = database_url()?;
        Some(Self {
            url,
            schema: format!("test_{}", uuid::Uuid::new_v4().simple()),
        })
    }

    async fn store(&self) -> PostgresStore {
        let store = PostgresStore::connect(&self.url)
            .await
            .expect("the test database answers")
            .with_schema(&self.schema)
            .unwrap();
        store.migrate().await.expect("migrations run");
        store
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A fresh runtime on its own thread: the test's may be gone.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection as _;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await;
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn a_schema_name_outside_the_rule_is_refused_and_one_inside_it_is_taken() {
    let Some(url) = database_url() else { return };
    let store = PostgresStore::connect(&url)
        .await
        .expect("the test database answers");
    let too_long = "a".repeat(49);
    for bad in [
        "",
        "1orders",
        "Orders",
        "order-intake",
        "a b",
        "caf\u{e9}",
        "a;drop",
        &too_long,
    ] {
        let err = store.clone().with_schema(bad).expect_err(bad);
        assert_eq!(
            err.to_string(),
            "a schema name is 1 to 48 lower-case letters, digits and `_`, not starting with a digit",
            "{bad:?}"
        );
    }
    let longest = "a".repeat(48);
    for good in ["_", "o", "orders_2", "_9", &longest] {
        let taken = store.clone().with_schema(good).expect(good);
        assert_eq!(taken.schema(), good);
        assert!(
            format!("{taken:?}").contains(&format!("schema: \"{good}\"")),
            "{good:?}"
        );
    }
    assert_eq!(store.schema(), "process_webhook", "the default schema");
}

#[tokio::test]
async fn debug_shows_the_schema_and_the_timings() {
    let Some(url) = database_url() else { return };
    let store = PostgresStore::connect(&url)
        .await
        .expect("the test database answers");
    assert_eq!(
        format!("{store:?}"),
        "PostgresStore { schema: \"process_webhook\", timeout: 2s, cache_ttl: 1s, \
         ttl: 86400s, lease: 300s, encryption_key: None, .. }"
    );
}

#[tokio::test]
async fn revoke_says_whether_the_token_was_stored() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let token = seed(&store).await;
    assert!(store.revoke(&token).await.unwrap(), "a stored token");
    assert!(!store.revoke(&token).await.unwrap(), "already revoked");
    assert!(
        !store.revoke(&EnvironmentToken::generate()).await.unwrap(),
        "never stored"
    );
    assert_eq!(store.environment(&token).await.unwrap(), None);
}

#[tokio::test]
async fn signing_secrets_are_the_replicas_own_and_can_be_replaced_or_removed() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let plain = Environment::new(production, acme);
    let secret = SigningSecret::generate();
    let signed = plain.clone().with_signing_secret(secret.clone());
    let token = EnvironmentToken::generate();
    store.insert(&token, signed.clone()).await.unwrap();
    assert_eq!(
        store.environment(&token).await.unwrap(),
        Some(signed.clone()),
        "insert keeps them"
    );

    let other = SigningSecret::generate();
    let replaced = plain.clone().with_signing_secret(other.clone());
    store.load_signing_secrets(&replaced);
    let found = store.environment(&token).await.unwrap().unwrap();
    assert_eq!(found.signing_secrets(), &[other][..]);

    store.load_signing_secrets(&plain);
    let found = store.environment(&token).await.unwrap().unwrap();
    assert!(found.signing_secrets().is_empty(), "removed");

    let replica = PostgresStore::connect(&db.url)
        .await
        .unwrap()
        .with_schema(&db.schema)
        .unwrap();
    let there = replica.environment(&token).await.unwrap().unwrap();
    assert!(
        there.signing_secrets().is_empty(),
        "secrets never go through the database"
    );
}

#[tokio::test]
async fn purge_deletes_expired_keys_in_batches_and_counts_them() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let fingerprint = PayloadFingerprint::of(&order_payload());
    for key in ["a", "b", "c"] {
        let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), key);
        store.reserve(&key, fingerprint).await.unwrap();
    }
    assert_eq!(store.purge_expired(10).await.unwrap(), 0, "none has expired");
    let expiring = store.clone().with_idempotency_ttl(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(expiring.purge_expired(2).await.unwrap(), 2, "a batch of two");
    assert_eq!(expiring.purge_expired(10).await.unwrap(), 1, "the last one");
    assert_eq!(expiring.purge_expired(10).await.unwrap(), 0);
}

#[tokio::test]
async fn the_purger_stops_once_every_clone_of_the_store_is_dropped() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let replica = store.clone();
    let purger = store.spawn_purger(Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!purger.is_finished(), "it runs while a clone is alive");
    drop(store);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!purger.is_finished(), "one clone still holds the store");
    drop(replica);
    tokio::time::timeout(Duration::from_secs(5), purger)
        .await
        .expect("the purger ends within a round of the last drop")
        .expect("it ended without a panic");
}

#[tokio::test]
async fn an_unknown_token_is_not_cached_and_a_known_one_is() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await.with_cache_ttl(Duration::from_secs(60));
    seed(&store).await;
    let token = EnvironmentToken::generate();
    assert_eq!(store.environment(&token).await.unwrap(), None);
    // Written straight into the table: no change notice reaches the store.
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let table = format!("\"{}\".tokens", db.schema);
    sqlx::query(&format!(
        "INSERT INTO {table} (digest, organization, environment) VALUES ($1, 'acme', 'production')"
    ))
    .bind(&token.digest().as_bytes()[..])
    .execute(&mut conn)
    .await
    .unwrap();
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    assert_eq!(
        store.environment(&token).await.unwrap(),
        Some(production.clone()),
        "a guess that missed was not remembered"
    );
    sqlx::query(&format!("DELETE FROM {table} WHERE digest = $1"))
        .bind(&token.digest().as_bytes()[..])
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        store.environment(&token).await.unwrap(),
        Some(production),
        "a token found is cached for the cache's lifetime"
    );
}

/// The example world's acme/production in the store.
async fn seed(store: &PostgresStore) -> EnvironmentToken {
    let acme = OrganizationId::new("acme");
    let production = EnvironmentId::new("production");
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

async fn start_server(starter: WebhookStarter) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router("/webhook/send", starter);
    let server = tokio::spawn(serve(
        listener,
        app,
        ServeOptions::default(),
        std::future::pending(),
    ));
    (addr, server)
}

fn url(addr: SocketAddr) -> String {
    webhook_url(&format!("http://{addr}/webhook/send"), &uuid(ORDER_INTAKE))
}

#[tokio::test]
async fn the_conformance_suites_pass() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
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
    // And through trait objects.
    let as_dyn: Arc<dyn ModelStore> = Arc::new(store.clone());
    testing::check_model_store(&*as_dyn, &fixtures).await;
    // The history of deployments is kept, oldest first.
    let history = store
        .deployments(
            fixtures.deployments[0].process(),
            fixtures.deployments[0].environment(),
        )
        .await
        .unwrap();
    assert_eq!(history, fixtures.deployments[..2].to_vec());
}

#[tokio::test]
async fn migrating_twice_or_from_two_replicas_at_once_is_safe_and_a_newer_schema_is_refused() {
    let Some(db) = Db::new() else { return };
    let (a, b) = (db.store().await, db.store().await);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    sqlx::query(&format!(
        "UPDATE \"{}\".schema_version SET version = 99",
        db.schema
    ))
    .execute(a.pool())
    .await
    .unwrap();
    let err = a.migrate().await.unwrap_err();
    assert!(err.to_string().contains("newer than this version"), "{err}");
}

#[tokio::test]
async fn a_start_reads_the_database_and_sees_new_deployments() {
    let Some(db) = Db::new() else { return };
    let store = Arc::new(db.store().await.with_cache_ttl(Duration::ZERO));
    let token = seed(&store).await;
    let engine = Arc::new(InMemoryEngine::new());
    let starter = WebhookStarter::new(store.clone(), store.clone(), engine.clone());
    let auth = [("authorization", format!("Bearer {}", token.expose_secret()))];
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let reply = starter.handle(&target, auth.clone(), &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let first: Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(first["version"], 1);
    store
        .deploy(Deployment::new(
            uuid(ORDER_INTAKE),
            VersionTag::Draft,
            EnvironmentId::new("production"),
            order_form(),
        ))
        .await
        .unwrap();
    let reply = starter.handle(&target, auth, &body).await;
    assert_reply(&reply, 409, "draft_version");
    assert_eq!(engine.started().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_start_one_instance_for_64_deliveries_of_a_key() {
    let Some(db) = Db::new() else { return };
    let (a, b) = (Arc::new(db.store().await), Arc::new(db.store().await));
    let token = seed(&a).await;
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(50)));
    let replica = |store: Arc<PostgresStore>| {
        WebhookStarter::new(store.clone(), store.clone(), engine.clone()).with_idempotency(store)
    };
    let (addr_a, _) = start_server(replica(a)).await;
    let (addr_b, _) = start_server(replica(b)).await;
    let client = reqwest::Client::new();
    let calls = (0..64).map(|i| {
        let client = client.clone();
        let target = url(if i % 2 == 0 { addr_a } else { addr_b });
        let token = token.expose_secret().to_owned();
        async move {
            let response = client
                .post(target)
                .bearer_auth(token)
                .header("idempotency-key", "order-123456")
                .json(&order_payload())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let body: Value = response.json().await.unwrap();
            (status, replayed, body)
        }
    });
    let answers = futures_join_all(calls).await;
    assert_eq!(engine.calls(), 1, "exactly one start reached the engine");
    let started: Vec<_> = answers.iter().filter(|(s, r, _)| *s == 202 && !r).collect();
    assert_eq!(started.len(), 1);
    let instance = &started[0].2["instanceId"];
    for (status, replayed, body) in &answers {
        match status {
            202 => assert!(*replayed || body["instanceId"] == *instance),
            409 => assert_eq!(body["code"], "start_in_progress"),
            other => panic!("unexpected answer {other}: {body}"),
        }
        if *status == 202 {
            assert_eq!(
                body["instanceId"], *instance,
                "every replay names the one instance"
            );
        }
    }
}

async fn futures_join_all<F>(calls: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_mid_start_leaves_its_key_to_the_lease_and_the_key_then_starts_once() {
    let Some(db) = Db::new() else { return };
    let lease = Duration::from_millis(1500);
    let a = Arc::new(db.store().await.with_idempotency_lease(lease));
    let b = Arc::new(db.store().await.with_idempotency_lease(lease));
    let token = seed(&a).await;
    // Replica A's engine never answers; A is then killed mid-start.
    let stuck = Arc::new(FlakyEngine::slow(Duration::from_secs(600)));
    let (addr_a, server_a) =
        start_server(WebhookStarter::new(a.clone(), a.clone(), stuck.clone()).with_idempotency(a.clone()))
            .await;
    let engine = Arc::new(InMemoryEngine::new());
    let (addr_b, _) =
        start_server(WebhookStarter::new(b.clone(), b.clone(), engine.clone()).with_idempotency(b.clone()))
            .await;
    let client = reqwest::Client::new();
    let send = |addr| {
        client
            .post(url(addr))
            .bearer_auth(token.expose_secret())
            .header("idempotency-key", "order-7")
            .json(&order_payload())
            .timeout(Duration::from_secs(5))
            .send()
    };
    let dying = tokio::spawn(send(addr_a));
    let began = Instant::now();
    while stuck.calls() == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the engine was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server_a.abort();
    dying.abort();
    // Meanwhile the key is held.
    let held = send(addr_b).await.unwrap();
    assert_eq!(held.status().as_u16(), 409);
    // After the lease, the key starts once on B.
    tokio::time::sleep(lease).await;
    let retry = send(addr_b).await.unwrap();
    assert_eq!(retry.status().as_u16(), 202);
    let again = send(addr_b).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(engine.started().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_reaches_the_other_at_once() {
    let Some(db) = Db::new() else { return };
    // A long cache TTL: only the notification can make B forget in time.
    let a = Arc::new(db.store().await.with_cache_ttl(Duration::from_secs(60)));
    let b = Arc::new(db.store().await.with_cache_ttl(Duration::from_secs(60)));
    let first = seed(&a).await;
    let engine = Arc::new(InMemoryEngine::new());
    let starter_b = WebhookStarter::new(b.clone(), b.clone(), engine.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let call = |token: &EnvironmentToken| {
        let auth = [("authorization", format!("Bearer {}", token.expose_secret()))];
        let (starter, target, body) = (starter_b.clone(), target.clone(), body.clone());
        async move { starter.handle(&target, auth, &body).await.status() }
    };

    // B's cache is in use: a row deleted behind the store's back (no
    // notification) is still served from it.
    assert_eq!(call(&first).await, 202);
    tokio::time::sleep(Duration::from_millis(300)).await; // B's listener is up
    sqlx::query(&format!("DELETE FROM \"{}\".tokens", db.schema))
        .execute(a.pool())
        .await
        .unwrap();
    assert_eq!(call(&first).await, 202, "served from B's cache");

    // A revocation through the store reaches B at once, every time.
    let mut delays = Vec::new();
    for _ in 0..20 {
        let token = EnvironmentToken::generate();
        a.insert(
            &token,
            Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme")),
        )
        .await
        .unwrap();
        assert_eq!(call(&token).await, 202);
        assert_eq!(call(&token).await, 202); // cached on B now
        assert!(a.revoke(&token).await.unwrap());
        let revoked = Instant::now();
        let mut status = 202;
        while status == 202 && revoked.elapsed() < Duration::from_secs(10) {
            status = call(&token).await;
        }
        assert_eq!(status, 401, "the revoked token is refused on the other replica");
        delays.push(revoked.elapsed());
    }
    delays.sort();
    println!(
        "revocation reached the other replica after: median {:?}, max {:?} (20 revocations)",
        delays[10], delays[19]
    );
    assert!(delays[19] < Duration::from_secs(10));
}

/// A PostgreSQL server of the test's own (initdb + pg_ctl as the
/// `postgres` user), so that it may be stopped and started again.
struct OwnServer {
    dir: std::path::PathBuf,
    port: u16,
}

impl OwnServer {
    const BIN: &'static str = "/usr/lib/postgresql/15/bin";

    fn start_new() -> Option<Self> {
        let missing = !std::path::Path::new(Self::BIN).join("initdb").exists() || !running_as_root();
        if missing {
            if std::env::var_os("CI").is_some() {
                panic!("the fault test needs PostgreSQL 15's initdb and root (to act as `postgres`)");
            }
            skipped(&format!("no initdb at {} or not root", Self::BIN));
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("pw-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        as_postgres(&["chown", "postgres:postgres", dir.to_str().unwrap()], true);
        let data = dir.join("data");
        as_postgres(
            &[
                &format!("{}/initdb", Self::BIN),
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            false,
        );
        let server = Self { dir, port };
        server.start();
        Some(server)
    }

    fn start(&self) {
        let data = self.dir.join("data");
        let options = format!("-p {} -k {} -h 127.0.0.1", self.port, self.dir.display());
        as_postgres(
            &[
                &format!("{}/pg_ctl", Self::BIN),
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
            false,
        );
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        as_postgres(
            &[
                &format!("{}/pg_ctl", Self::BIN),
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            false,
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn as_postgres(args: &[&str], as_root: bool) {
    let status = if as_root {
        std::process::Command::new(args[0]).args(&args[1..]).output()
    } else {
        std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .output()
    }
    .expect("the command runs");
    assert!(
        status.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_503_within_the_bound_and_starts_work_again_when_it_returns() {
    if database_url().is_none() {
        return;
    }
    let Some(server) = OwnServer::start_new() else {
        return;
    };
    let bound = Duration::from_millis(500);
    let store = Arc::new(
        PostgresStore::connect(&server.url())
            .await
            .unwrap()
            .with_timeout(bound)
            .with_cache_ttl(Duration::ZERO),
    );
    store.migrate().await.unwrap();
    let token = seed(&store).await;
    let engine = Arc::new(InMemoryEngine::new());
    let starter =
        WebhookStarter::new(store.clone(), store.clone(), engine.clone()).with_idempotency(store.clone());
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let call = |key: String| {
        let auth = [
            ("authorization", format!("Bearer {}", token.expose_secret())),
            ("idempotency-key", key),
        ];
        let (starter, target, body) = (starter.clone(), target.clone(), body.clone());
        async move {
            let started = Instant::now();
            let reply = starter.handle(&target, auth, &body).await;
            (reply, started.elapsed())
        }
    };
    let (reply, _) = call("before".into()).await;
    assert_eq!(reply.status(), 202);
    assert!(starter.ready().await.is_ok());

    server.stop();
    let not_ready = starter.ready().await.expect_err("the database is away");
    assert_eq!(
        not_ready.components().collect::<Vec<_>>(),
        [
            Component::ModelStore,
            Component::TokenStore,
            Component::IdempotencyStore
        ]
    );
    let problem = not_ready.to_problem_json().to_string();
    assert!(
        !problem.contains("127.0.0.1") && !problem.contains("postgres://"),
        "{problem}"
    );
    for i in 0..10 {
        let (reply, took) = call(format!("during-{i}")).await;
        assert_reply(&reply, 503, "store_unavailable");
        assert!(reply.header("retry-after").is_some());
        assert!(
            took < bound * 3 + Duration::from_millis(500),
            "answered in {took:?}"
        );
    }
    assert_eq!(
        engine.started().len(),
        1,
        "nothing started while the database was away"
    );

    server.start();
    let mut status = 0;
    let back = Instant::now();
    while status != 202 && back.elapsed() < Duration::from_secs(20) {
        status = call("after".into()).await.0.status();
        if status != 202 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(status, 202, "the store recovered by itself");
    assert!(starter.ready().await.is_ok(), "ready again");
    // Nothing half-written: the keys tried while it was away are free.
    let (reply, _) = call("during-0".into()).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert_eq!(engine.started().len(), 3);
}

#[tokio::test]
async fn hostile_text_is_stored_exactly_or_refused_clearly() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let names = [
        "O'Reilly \"quoted\" \\ backslash; DROP TABLE models; --".to_owned(),
        "ünïcödé ✓ \u{1F600}".to_owned(),
        "n".repeat(10_000),
    ];
    for (i, name) in names.iter().enumerate() {
        let process = ProcessUuid::from(uuid::Uuid::from_u128(0x4000_8000_0000_0000 + i as u128));
        let org = OrganizationId::new(format!("org '{i}' \\"));
        store
            .insert_model(ProcessModel::new(process, org.clone(), name.clone()))
            .await
            .unwrap();
        let env = EnvironmentId::new(format!("env \"{i}\"; --"));
        let form = StartForm::new([
            FieldSpec::optional("note", FieldKind::Text).with_default(Value::String(name.clone()))
        ]);
        let deployment = Deployment::new(process, VersionTag::Released(1), env.clone(), form)
            .with_definition_key(name.clone());
        store.deploy(deployment.clone()).await.unwrap();
        let (model, found) = store
            .model_with_deployment(&process, &env)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(model.name(), name);
        assert_eq!(model.organization(), &org);
        assert_eq!(found, Some(deployment));
        let token = EnvironmentToken::generate();
        store
            .insert(&token, Environment::new(env.clone(), org.clone()))
            .await
            .unwrap();
        assert_eq!(
            store.environment(&token).await.unwrap(),
            Some(Environment::new(env, org))
        );
    }
    // PostgreSQL text cannot hold U+0000: refused, with a clear error.
    let process = ProcessUuid::from(uuid::Uuid::from_u128(0x4000_8000_0000_0000_0000_0000_0000_00ff));
    let err = store
        .insert_model(ProcessModel::new(
            process,
            OrganizationId::new("acme"),
            "nul\u{0}name",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("U+0000"), "{err}");
    assert_eq!(store.model(&process).await.unwrap(), None, "nothing was written");
    let form = StartForm::new([
        FieldSpec::optional("n", FieldKind::Text).with_default(Value::String("a\u{0}b".into()))
    ]);
    store
        .insert_model(ProcessModel::new(process, OrganizationId::new("acme"), "ok"))
        .await
        .unwrap();
    let err = store
        .deploy(Deployment::new(
            process,
            VersionTag::Released(1),
            EnvironmentId::new("production"),
            form,
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("U+0000"), "{err}");
    assert_eq!(
        store
            .deployment(&process, &EnvironmentId::new("production"))
            .await
            .unwrap(),
        None
    );
}

fn key(id: &str, n: u8) -> EncryptionKey {
    EncryptionKey::new(id, [n; 32]).unwrap()
}

#[tokio::test]
async fn sources_pass_their_suite_and_come_back_after_a_restart_with_no_secret_in_a_row() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await.with_encryption_key(key("k1", 1));
    let mut fixtures = testing::source_fixtures();
    fixtures.push(
        WebhookSource::new(
            "long-secret".parse().unwrap(),
            fixtures[0].environment().clone(),
            *fixtures[0].process(),
            SourceScheme::Stripe,
            [SourceSecret::new("whsec_a-long-and-recognisable-secret-0123456789").unwrap()],
        )
        .unwrap(),
    );
    for source in &fixtures {
        store.put_source(source).await.unwrap();
    }
    testing::check_source_store(&store, &fixtures).await;

    // A new replica (or the same after a restart) with the key reads them.
    let restarted = db.store().await.with_encryption_key(key("k1", 1));
    testing::check_source_store(&restarted, &fixtures).await;

    // No row holds a secret in plain text, in hex or in base64.
    let rows: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT row_to_json(s)::text FROM \"{}\".sources s",
        db.schema
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), fixtures.len());
    use base64::Engine as _;
    for source in &fixtures {
        for secret in source.secrets() {
            let bytes = secret.expose_secret();
            let spellings = [
                String::from_utf8_lossy(bytes).into_owned(),
                hex::encode(bytes),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ];
            for row in &rows {
                // (Spellings shorter than 8 characters could turn up in
                // random ciphertext by chance.)
                for spelling in spellings.iter().filter(|s| s.len() >= 8) {
                    assert!(!row.contains(spelling.as_str()), "{spelling} in {row}");
                }
                assert!(row.contains("\"key\": \"k1\""), "{row}");
            }
        }
    }

    // Without its key, a replica says which key it needs.
    let keyless = db.store().await;
    let err = keyless.source(fixtures[0].id()).await.unwrap_err();
    assert!(err.to_string().contains("key `k1`"), "{err}");
    // A removed source is gone.
    assert!(store.remove_source(fixtures[0].id()).await.unwrap());
    assert!(!store.remove_source(fixtures[0].id()).await.unwrap());
    assert_eq!(store.source(fixtures[0].id()).await.unwrap(), None);
}

#[tokio::test]
async fn a_store_without_an_encryption_key_refuses_to_store_a_source_secret() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    let source = &testing::source_fixtures()[0];
    let err = store.put_source(source).await.unwrap_err();
    assert!(err.to_string().contains("no encryption key"), "{err}");
    assert!(err.to_string().contains("with_encryption_key"), "{err}");
    assert_eq!(
        store.source(source.id()).await.unwrap(),
        None,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_second_key_rolled_in_reads_the_old_rows_and_reseals_them() {
    let Some(db) = Db::new() else { return };
    let fixtures = testing::source_fixtures();
    let old = db.store().await.with_encryption_key(key("k1", 1));
    for source in &fixtures {
        old.put_source(source).await.unwrap();
    }
    let rolled = db
        .store()
        .await
        .with_encryption_key(key("k2", 2))
        .with_decryption_key(key("k1", 1));
    testing::check_source_store(&rolled, &fixtures).await;
    assert_eq!(rolled.reseal_sources().await.unwrap(), fixtures.len() as u64);
    assert_eq!(
        rolled.reseal_sources().await.unwrap(),
        0,
        "nothing left under the old key"
    );
    // The old key can now be retired.
    let new_only = db.store().await.with_encryption_key(key("k2", 2));
    testing::check_source_store(&new_only, &fixtures).await;
    // A key of the right id but the wrong bytes opens nothing.
    let wrong = db.store().await.with_encryption_key(key("k2", 7));
    let err = wrong.source(fixtures[0].id()).await.unwrap_err();
    assert!(err.to_string().contains("does not decrypt"), "{err}");
}

#[tokio::test]
async fn a_gitlab_source_in_postgres_starts_its_process_through_the_starter() {
    let Some(db) = Db::new() else { return };
    let store = Arc::new(db.store().await.with_encryption_key(key("k1", 1)));
    seed(&store).await;
    let process = uuid(ORDER_INTAKE);
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let source = WebhookSource::new(
        "gitlab".parse().unwrap(),
        production,
        process,
        SourceScheme::Gitlab,
        [SourceSecret::new("gitlab-token").unwrap()],
    )
    .unwrap();
    store.put_source(&source).await.unwrap();
    let engine = Arc::new(InMemoryEngine::new());
    let starter = WebhookStarter::new(store.clone(), store.clone(), engine.clone())
        .with_idempotency(store.clone())
        .with_sources(store.clone());
    let target = format!("{}&source=gitlab", webhook_url("/webhook/send", &process));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let headers = [("X-Gitlab-Token", "gitlab-token"), ("X-Gitlab-Event-UUID", "e1")];
    let first = starter.handle(&target, headers, &body).await;
    assert_eq!(first.status(), 202, "{}", String::from_utf8_lossy(first.body()));
    let again = starter.handle(&target, headers, &body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let wrong = starter
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
async fn as_a_source_store_it_is_ready_only_when_its_database_answers() {
    // Nothing listens on port 1 of this machine.
    let options = sqlx::postgres::PgPoolOptions::new().acquire_timeout(Duration::from_millis(500));
    let gone = PostgresStore::new(
        options
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .unwrap(),
    );
    assert!(SourceStore::ready(&gone).await.is_err());
    let Some(db) = Db::new() else { return };
    assert!(SourceStore::ready(&db.store().await).await.is_ok());
}

#[tokio::test]
async fn the_postgres_store_keeps_the_inbox_contract_directly_and_as_a_trait_object() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    testing::check_inbox(&store).await;
    let as_dyn: Arc<dyn Inbox> = Arc::new(store.clone());
    testing::check_inbox(&*as_dyn).await;
}

#[tokio::test]
async fn the_postgres_store_keeps_the_delivery_log_contract_directly_and_as_a_trait_object() {
    let Some(db) = Db::new() else { return };
    let store = db.store().await;
    testing::check_delivery_log(&store).await;
    let as_dyn: Arc<dyn DeliveryLog> = Arc::new(store.clone());
    testing::check_delivery_log(&*as_dyn).await;
}

#[tokio::test]
async fn a_start_kept_in_postgres_is_dispatched_by_another_replica_with_its_form_key_and_trace() {
    let Some(db) = Db::new() else { return };
    let (keeper, dispatcher_store) = (db.store().await, db.store().await);
    let world = World::new();
    let away = Arc::new(FlakyEngine::failing(1, || EngineError::unavailable("down")));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), away)
        .with_inbox(Arc::new(keeper), InboxPolicy::Fallback);
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let reply = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [
                ("authorization", world.bearer()),
                ("idempotency-key", "pg-order-1".to_owned()),
                ("traceparent", traceparent.to_owned()),
            ],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let queued: Value = serde_json::from_slice(reply.body()).unwrap();
    assert_eq!(queued["status"], "queued");

    // Another replica, over the same database, with the engine up.
    let engine = Arc::new(InMemoryEngine::new());
    let other = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_inbox(Arc::new(dispatcher_store.clone()), InboxPolicy::Fallback);
    assert_eq!(other.dispatcher().unwrap().dispatch_due().await.unwrap(), 1);
    let started = engine.started();
    assert_eq!(started.len(), 1);
    let command = &started[0].command;
    assert_eq!(
        Value::Object(command.variables.clone()),
        Value::Object(order_payload())
    );
    assert_eq!(command.idempotency_key.as_deref(), Some("pg-order-1"));
    assert_eq!(
        command.trace.as_ref().map(TraceContext::traceparent),
        Some(traceparent)
    );
    assert_eq!(
        command.start_form().fields().len(),
        order_form().fields().len(),
        "the form kept with it"
    );
    assert_eq!(
        command.fingerprint,
        Some(PayloadFingerprint::of(&order_payload()))
    );
    let id: DeliveryId = queued["deliveryId"].as_str().unwrap().parse().unwrap();
    let kept = dispatcher_store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (kept.status, kept.instance.as_ref()),
        (DeliveryStatus::Started, Some(&started[0].id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_kept_by_one_replica_wakes_the_dispatcher_of_another_before_its_poll() {
    let Some(url) = database_url() else { return };
    // The longest schema name the store takes: its channels still fit.
    let schema = format!("w{}", "x".repeat(47 - 32)) + &uuid::Uuid::new_v4().simple().to_string();
    assert_eq!(schema.len(), 48);
    let db = Db { url, schema };
    let (keeper, listener) = (db.store().await, db.store().await);
    let world = World::new();
    keeper
        .insert_model(ProcessModel::new(
            uuid(ORDER_INTAKE),
            OrganizationId::new("acme"),
            "Order intake",
        ))
        .await
        .expect("a change notifies under a long schema");
    keeper.deploy(order_deployment(2)).await.expect("and another");

    let engine = Arc::new(InMemoryEngine::new());
    let dispatching = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
        .with_inbox(Arc::new(listener.clone()), InboxPolicy::Always);
    let wakeup = Arc::new(tokio::sync::Notify::new());
    listener.spawn_inbox_wakeups(&wakeup);
    let dispatcher = dispatching
        .dispatcher()
        .unwrap()
        .with_poll_interval(Duration::from_secs(600))
        .with_wakeup(wakeup.clone());
    let running = Running::spawn(dispatcher);
    // The dispatcher's first round found nothing; its next poll is ten
    // minutes away. The listener needs a moment to LISTEN.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let keeping = WebhookStarter::new(
        world.models.clone(),
        world.tokens.clone(),
        Arc::new(InMemoryEngine::new()),
    )
    .with_inbox(Arc::new(keeper), InboxPolicy::Always);
    let reply = keeping
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer())],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.started().is_empty() {
        assert!(Instant::now() < deadline, "the keep did not wake the dispatcher");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;
}
