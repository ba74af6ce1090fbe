//! Rate limits through the public API, with the in-memory limiter: per
//! environment after authentication, per client for failed
//! authentications, the IETF fields on every answer, and the policy when
//! the limiter fails.

use crate::common;

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use process_webhook::*;

fn target() -> String {
    webhook_url("/webhook/send", &uuid(ORDER_INTAKE))
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&order_payload()).unwrap()
}

fn limited(world: &World, policy: RateLimitPolicy) -> WebhookStarter {
    world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
        .with_rate_limit(Arc::new(InMemoryRateLimiter::new()), policy)
}

#[tokio::test]
async fn an_environment_over_its_limit_gets_429_and_nothing_is_started_or_reserved() {
    let world = World::new();
    let starter = limited(
        &world,
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(3)),
    );
    for left in [2, 1, 0] {
        let reply = starter
            .handle(&target(), [("authorization", world.bearer())], &body())
            .await;
        assert_eq!(reply.status(), 202);
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(r#""environment";q=3;w=60"#)
        );
        // A whole allowance is back 20 s per unit used, rounded up to a
        // whole second (the calls take microseconds).
        assert_eq!(
            reply.header("ratelimit"),
            Some(format!(r#""environment";r={left};t={}"#, 20 * (3 - left)).as_str())
        );
    }
    let keyed = [
        ("authorization", world.bearer()),
        ("idempotency-key", "k-1".to_owned()),
    ];
    let reply = starter.handle(&target(), keyed.clone(), &body()).await;
    let doc = assert_reply(&reply, 429, "rate_limited");
    assert_eq!(doc["title"], "Too many requests");
    let after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (19..=20).contains(&after),
        "one unit comes back every 20 s: {after}"
    );
    assert!(
        reply
            .header("ratelimit")
            .unwrap()
            .starts_with(r#""environment";r=0;t="#)
    );
    assert_eq!(world.started(), 3);
    // Dry runs and schema requests count against the same limit.
    let reply = starter
        .handle(
            &target(),
            [("authorization", world.bearer()), ("prefer", "dry-run".into())],
            &body(),
        )
        .await;
    assert_reply(&reply, 429, "rate_limited");
    let reply = starter
        .handle_method("GET", &target(), [("authorization", world.bearer())], b"")
        .await;
    assert_reply(&reply, 429, "rate_limited");
    // Nothing was reserved: the keyed call is a fresh start on an unlimited starter sharing nothing.
    // Another environment has its own allowance.
    let reply = starter
        .handle(
            &target(),
            [(
                "authorization",
                format!("Bearer {}", world.dev_token.expose_secret()),
            )],
            &body(),
        )
        .await;
    assert_reply(&reply, 409, "draft_version");
    assert!(
        reply
            .header("ratelimit")
            .unwrap()
            .starts_with(r#""environment";r=2;"#)
    );
}

#[tokio::test]
async fn a_refused_call_reserves_no_idempotency_key() {
    let world = World::new();
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let starter = world.starter().with_idempotency(store.clone()).with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(1)),
    );
    let keyed = |k: &str| {
        [
            ("authorization", world.bearer()),
            ("idempotency-key", k.to_owned()),
        ]
    };
    assert_eq!(starter.handle(&target(), keyed("a"), &body()).await.status(), 202);
    assert_reply(
        &starter.handle(&target(), keyed("b"), &body()).await,
        429,
        "rate_limited",
    );
    assert_eq!(store.len(), 1, "only the first key was reserved");
}

#[tokio::test]
async fn a_client_over_its_failed_authentications_is_refused_before_its_token_is_looked_up() {
    let world = World::new();
    let counting = Arc::new(CountingTokens {
        inner: world.tokens.clone(),
        lookups: Default::default(),
    });
    let starter = WebhookStarter::new(world.models.clone(), counting.clone(), world.engine.clone())
        .with_rate_limit(
            Arc::new(InMemoryRateLimiter::new()),
            RateLimitPolicy::default().with_failed_authentications_per_client(Quota::per_minute(3)),
        );
    let guesser: IpAddr = "192.0.2.1".parse().unwrap();
    let honest: IpAddr = "192.0.2.2".parse().unwrap();
    for i in 0..3 {
        let guess = format!("Bearer guess-{i}");
        let reply = starter
            .handle_method_from(
                Some(guesser),
                "POST",
                &target(),
                [("authorization", guess)],
                &body(),
            )
            .await;
        assert_reply(&reply, 401, "invalid_token");
    }
    assert_eq!(counting.lookups(), 3);
    // Over the limit: refused without a look-up, even with the right token.
    let reply = starter
        .handle_method_from(
            Some(guesser),
            "POST",
            &target(),
            [("authorization", world.bearer())],
            &body(),
        )
        .await;
    assert_reply(&reply, 429, "rate_limited");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(counting.lookups(), 3, "the token store was not consulted");
    // Another client is not affected.
    let reply = starter
        .handle_method_from(
            Some(honest),
            "POST",
            &target(),
            [("authorization", world.bearer())],
            &body(),
        )
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(world.started(), 1);
}

struct CountingTokens {
    inner: Arc<InMemoryTokenStore>,
    lookups: std::sync::atomic::AtomicUsize,
}

impl CountingTokens {
    fn lookups(&self) -> usize {
        self.lookups.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenStore for CountingTokens {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.environment(token).await
    }
}

/// A limiter whose store is down.
struct BrokenLimiter;

#[async_trait]
impl RateLimiter for BrokenLimiter {
    async fn acquire(&self, _: &str, _: Quota) -> Result<RateDecision, StoreError> {
        Err(StoreError::new("redis: connection refused"))
    }
    async fn peek(&self, _: &str, _: Quota) -> Result<RateDecision, StoreError> {
        Err(StoreError::new("redis: connection refused"))
    }
}

#[tokio::test]
async fn a_failing_limiter_lets_calls_through_by_default_or_refuses_them_when_told() {
    let world = World::new();
    let quota = Quota::per_second(1);
    let open = world.starter().with_rate_limit(
        Arc::new(BrokenLimiter),
        RateLimitPolicy::default().with_per_environment(quota),
    );
    for _ in 0..3 {
        let reply = open
            .handle(&target(), [("authorization", world.bearer())], &body())
            .await;
        assert_eq!(reply.status(), 202);
        assert_eq!(reply.header("ratelimit"), None, "no decision, no fields");
    }
    let closed = world.starter().with_rate_limit(
        Arc::new(BrokenLimiter),
        RateLimitPolicy::default()
            .with_per_environment(quota)
            .with_on_error(OnLimiterError::Refuse),
    );
    let reply = closed
        .handle(&target(), [("authorization", world.bearer())], &body())
        .await;
    let doc = assert_reply(&reply, 503, "store_unavailable");
    assert!(!doc.to_string().contains("redis"), "the cause stays in the logs");
    assert_eq!(world.started(), 3);
}

#[tokio::test]
async fn start_and_dry_run_through_the_api_are_limited_too() {
    let world = World::new();
    let starter = limited(
        &world,
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(1)),
    );
    starter
        .start(world.request(ORDER_INTAKE, order_payload()))
        .await
        .unwrap();
    assert_refused(
        starter.start(world.request(ORDER_INTAKE, order_payload())).await,
        429,
        "rate_limited",
    );
    assert_refused(
        starter
            .dry_run(world.request(ORDER_INTAKE, order_payload()))
            .await,
        429,
        "rate_limited",
    );
    assert_eq!(world.started(), 1);
}
