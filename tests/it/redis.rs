//! Redis against a real server (`REDIS_URL`): the idempotency conformance
//! suite, two replicas sharing keys and one rate limit, and a Redis that
//! goes away and comes back. Each test uses key prefixes of its own.
#![cfg(all(feature = "redis", feature = "axum", feature = "testing"))]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process_webhook::*;
use serde_json::Value;

fn redis_url() -> Option<String> {
    server_setting("REDIS_URL", "e.g. redis://127.0.0.1:6379")
}

fn prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

async fn keys_at(url: &str, prefix: &str) -> RedisIdempotencyStore {
    RedisIdempotencyStore::connect(url)
        .await
        .expect("Redis answers")
        .with_prefix(prefix)
}

async fn start_server(starter: WebhookStarter) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router("/webhook/send", starter),
        ServeOptions::default(),
        std::future::pending(),
    ));
    addr
}

fn url(addr: SocketAddr) -> String {
    webhook_url(&format!("http://{addr}/webhook/send"), &uuid(ORDER_INTAKE))
}

#[tokio::test]
async fn the_idempotency_conformance_suite_passes() {
    let Some(redis) = redis_url() else { return };
    let store = keys_at(&redis, &prefix()).await;
    testing::check_idempotency_store(&store).await;
    let as_dyn: Arc<dyn IdempotencyStore> = Arc::new(keys_at(&redis, &prefix()).await);
    testing::check_idempotency_store(&*as_dyn).await;
    testing::check_idempotency_takeover(&*Arc::new(keys_at(&redis, &prefix()).await)).await;
}

#[tokio::test]
async fn an_abandoned_reservation_is_free_after_the_lease_and_keys_expire_by_themselves() {
    let Some(redis) = redis_url() else { return };
    let store = keys_at(&redis, &prefix())
        .await
        .with_lease(Duration::from_millis(200))
        .with_ttl(Duration::from_millis(600));
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "k");
    let fp = PayloadFingerprint::of(&order_payload());
    assert_eq!(store.reserve(&key, fp).await.unwrap(), Reservation::Reserved);
    assert!(matches!(
        store.reserve(&key, fp).await.unwrap(),
        Reservation::InProgress { .. }
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.reserve(&key, fp).await.unwrap(),
        Reservation::Reserved,
        "abandoned after the lease"
    );
    let outcome_key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(ORDER_INTAKE), "done");
    assert_eq!(
        store.reserve(&outcome_key, fp).await.unwrap(),
        Reservation::Reserved
    );
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    store.complete(&outcome_key, &outcome).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.reserve(&outcome_key, fp).await.unwrap(),
        Reservation::Completed {
            fingerprint: fp,
            outcome: outcome.clone()
        },
        "a completed key outlives the lease"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.reserve(&outcome_key, fp).await.unwrap(),
        Reservation::Reserved,
        "and expires with its retention"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_start_one_instance_for_64_deliveries_of_a_key() {
    let Some(redis) = redis_url() else { return };
    let prefix = prefix();
    let world = World::new();
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(50)));
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let keys = Arc::new(keys_at(&redis, &prefix).await);
        let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone())
            .with_idempotency(keys);
        addrs.push(start_server(starter).await);
    }
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let request = client
                .post(url(addrs[i % 2]))
                .bearer_auth(world.token.expose_secret())
                .header("idempotency-key", "order-123456")
                .json(&order_payload());
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut instances = std::collections::BTreeSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        match status {
            202 => {
                instances.insert(body["instanceId"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(body["code"], "start_in_progress"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(engine.calls(), 1, "one start reached the engine");
    assert_eq!(instances.len(), 1, "every 202 names the one instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_shared_by_two_replicas_admits_its_rate_across_both() {
    let Some(redis) = redis_url() else { return };
    let rate_prefix = prefix();
    let world = World::new();
    let (limit, seconds) = (40u32, 2u64);
    let quota = Quota::per_second(limit).with_burst(1);
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let keys = keys_at(&redis, &prefix()).await;
        let limiter = Arc::new(RedisRateLimiter::new(keys.connection()).with_prefix(rate_prefix.clone()));
        let starter = world
            .starter()
            .with_rate_limit(limiter, RateLimitPolicy::default().with_per_environment(quota));
        addrs.push(start_server(starter).await);
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let senders: Vec<_> = (0..8)
        .map(|i| {
            let (client, target, token) = (
                client.clone(),
                url(addrs[i % 2]),
                world.token.expose_secret().to_owned(),
            );
            tokio::spawn(async move {
                let (mut admitted, mut refused) = (0u32, Vec::new());
                while Instant::now() < deadline {
                    let response = client
                        .post(&target)
                        .bearer_auth(&token)
                        .json(&order_payload())
                        .send()
                        .await
                        .unwrap();
                    match response.status().as_u16() {
                        202 => admitted += 1,
                        429 => refused.push((
                            response.headers()["retry-after"].to_str().unwrap().to_owned(),
                            response.headers()["ratelimit"].to_str().unwrap().to_owned(),
                            response.headers()["ratelimit-policy"]
                                .to_str()
                                .unwrap()
                                .to_owned(),
                        )),
                        other => panic!("unexpected {other}"),
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let (mut admitted, mut refused) = (0u32, Vec::new());
    for sender in senders {
        let (a, r) = sender.await.unwrap();
        admitted += a;
        refused.extend(r);
    }
    let expected = f64::from(limit) * seconds as f64;
    assert!(
        (f64::from(admitted) - expected).abs() <= expected * 0.1 + 1.0,
        "{admitted} admitted over {seconds} s at {limit}/s across both replicas"
    );
    assert!(!refused.is_empty(), "the flood was over the limit");
    for (retry_after, fields, policy) in &refused {
        assert_eq!(retry_after, "1", "a unit comes back within a second");
        assert!(fields.starts_with(r#""environment";r=0;t="#), "{fields}");
        assert_eq!(policy, &format!(r#""environment";q={limit};w=1"#));
    }
    assert_eq!(world.started() as u32, admitted);
}

/// A `redis-server` of the test's own, on a free port, that it may stop.
struct OwnRedis {
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let server = Self { child: Some(child) };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_goes_away_is_503_or_fail_open_and_work_resumes_when_it_returns() {
    if redis_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = OwnRedis::start_on(port);
    let url = format!("redis://127.0.0.1:{port}");
    let keys = Arc::new(RedisIdempotencyStore::connect(&url).await.unwrap());
    let limiter = Arc::new(RedisRateLimiter::new(keys.connection()));
    let world = World::new();
    let starter = world.starter().with_idempotency(keys.clone()).with_rate_limit(
        limiter,
        RateLimitPolicy::default().with_per_environment(Quota::per_second(1000)),
    );
    let call = |key: &str| {
        let headers = [
            ("authorization", world.bearer()),
            ("idempotency-key", key.to_owned()),
        ];
        let (starter, target, body) = (
            starter.clone(),
            webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            serde_json::to_vec(&order_payload()).unwrap(),
        );
        async move {
            let started = Instant::now();
            let reply = starter.handle(&target, headers, &body).await;
            (reply, started.elapsed())
        }
    };
    assert_eq!(call("before").await.0.status(), 202);
    assert!(starter.ready().await.is_ok());

    server.stop();
    let not_ready = starter.ready().await.expect_err("Redis is away");
    assert_eq!(
        not_ready.components().collect::<Vec<_>>(),
        [Component::IdempotencyStore, Component::RateLimiter]
    );
    for i in 0..5 {
        let (reply, took) = call(&format!("during-{i}")).await;
        // The limiter fails open (the default); the idempotency store cannot
        // answer, so the start is refused.
        assert_reply(&reply, 503, "store_unavailable");
        assert!(
            took < Duration::from_secs(3),
            "answered within the bound: {took:?}"
        );
    }
    let unkeyed = starter
        .handle(
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer())],
            &serde_json::to_vec(&order_payload()).unwrap(),
        )
        .await;
    assert_eq!(
        unkeyed.status(),
        202,
        "without a key, the failing limiter lets the call through"
    );
    assert_eq!(world.started(), 2);

    let _server = OwnRedis::start_on(port);
    let back = Instant::now();
    let mut status = 0;
    while status != 202 && back.elapsed() < Duration::from_secs(15) {
        status = call("after").await.0.status();
        if status != 202 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(status, 202, "the store reconnected by itself");
    assert!(starter.ready().await.is_ok(), "ready again");
}

#[tokio::test]
async fn a_replica_that_did_not_reserve_a_key_completes_it_but_never_an_unreserved_one() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    // Two replicas: only the first knows the fingerprint it reserved with.
    let (first, second) = (keys_at(&url, &prefix).await, keys_at(&url, &prefix).await);
    let shown = format!("{first:?}");
    assert!(
        shown.starts_with("RedisIdempotencyStore {") && shown.contains(&prefix),
        "{shown}"
    );
    let world = World::new();
    let outcome = world
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    let fingerprint = PayloadFingerprint::of(&order_payload());
    let key = IdempotencyKey::new(
        EnvironmentId::new("production"),
        uuid(ORDER_INTAKE),
        "handed-over",
    );
    assert!(matches!(
        first.reserve(&key, fingerprint).await.unwrap(),
        Reservation::Reserved
    ));
    second
        .complete(&key, &outcome)
        .await
        .expect("completed through the script");
    match first.reserve(&key, fingerprint).await.unwrap() {
        Reservation::Completed {
            fingerprint: held,
            outcome: stored,
        } => {
            assert_eq!(held, fingerprint);
            assert_eq!(stored.instance_id(), outcome.instance_id());
        }
        other => panic!("{other:?}"),
    }
    let never = IdempotencyKey::new(
        EnvironmentId::new("production"),
        uuid(ORDER_INTAKE),
        "never-reserved",
    );
    let refused = second.complete(&never, &outcome).await.expect_err("not reserved");
    assert_eq!(
        refused.message(),
        "completing an idempotency key that is not reserved"
    );
}

#[tokio::test]
async fn debug_of_a_limiter_shows_its_prefix_and_timeout() {
    let Some(redis) = redis_url() else { return };
    let keys = keys_at(&redis, &prefix()).await;
    let limiter = RedisRateLimiter::new(keys.connection())
        .with_prefix("acme:rate")
        .with_timeout(Duration::from_millis(250));
    assert_eq!(
        format!("{limiter:?}"),
        "RedisRateLimiter { prefix: \"acme:rate\", timeout: 250ms, .. }"
    );
    assert_eq!(
        format!("{:?}", RedisRateLimiter::new(keys.connection())),
        "RedisRateLimiter { prefix: \"process_webhook:rate\", timeout: 1s, .. }"
    );
}

#[tokio::test]
async fn the_redis_limiter_passes_the_rate_limiter_suite() {
    let Some(redis) = redis_url() else { return };
    let keys = keys_at(&redis, &prefix()).await;
    let limiter = RedisRateLimiter::new(keys.connection()).with_prefix(prefix());
    testing::check_rate_limiter(&limiter).await;
    let as_dyn: Arc<dyn RateLimiter> = Arc::new(limiter);
    testing::check_rate_limiter(&*as_dyn).await;
}
