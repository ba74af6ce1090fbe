//! Conformance suites (feature `testing`): run them against your own store
//! implementations to check that they keep the traits' contracts. The
//! crate's own tests run them against the in-memory stores, directly and
//! through `dyn` trait objects.
//!
//! There is a suite for each port: [`check_model_store`],
//! [`check_token_store`], [`check_source_store`], [`check_idempotency_store`],
//! [`check_engine`], [`check_rate_limiter`] and [`check_inbox`].
//!
//! **Stability**: the suites may check more rules in a later version (a
//! store that passed may then fail, where it breaks a rule the traits'
//! docs already state); their signatures and the fixtures' shape follow
//! the crate's semver.
//!
//! Each suite panics (like `assert!`) at the first broken rule, so call it
//! from a test:
//!
//! ```
//! use process_webhook::{InMemoryModelStore, testing};
//!
//! # tokio_test::block_on(async {
//! let store = InMemoryModelStore::new();
//! let fixtures = testing::model_fixtures();
//! for model in &fixtures.models { store.insert_model(model.clone()); }
//! for deployment in &fixtures.deployments { store.deploy(deployment.clone()); }
//! testing::check_model_store(&store, &fixtures).await;
//! # });
//! ```

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value};

use crate::engine::{Engine, StartCommand};
use crate::form::{FieldKind, FieldSpec, StartForm};
use crate::id::{EnvironmentId, InstanceId, OrganizationId, ProcessUuid};
use crate::limit::{Quota, RateLimiter};
use crate::model::{Deployment, Environment, ProcessModel, VersionTag};
use crate::outcome::sample_outcome;
use crate::source::{
    HmacAlgorithm, HmacEncoding, HmacScheme, SourceId, SourceScheme, SourceSecret, WebhookSource,
};
use crate::store::{IdempotencyKey, IdempotencyStore, PayloadFingerprint, Reservation};
use crate::store::{ModelStore, SourceStore, TokenStore};
use crate::token::EnvironmentToken;

mod delivery_log;
mod inbox;

pub use delivery_log::check_delivery_log;
pub use inbox::check_inbox;

/// Models and deployments to put in a store before
/// [`check_model_store`]: insert every model, then deploy every deployment
/// in order (a later deployment of the same process to the same environment
/// replaces the earlier).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelFixtures {
    /// The models.
    pub models: Vec<ProcessModel>,
    /// The deployments, in the order to deploy them.
    pub deployments: Vec<Deployment>,
}

fn uuid(n: u128) -> ProcessUuid {
    uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | n).into()
}

/// Fixtures for [`check_model_store`].
pub fn model_fixtures() -> ModelFixtures {
    let (acme, globex) = (OrganizationId::new("acme"), OrganizationId::new("globex"));
    let (prod, dev) = (
        EnvironmentId::new("production"),
        EnvironmentId::new("development"),
    );
    let form = StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]);
    ModelFixtures {
        models: vec![
            ProcessModel::new(uuid(1), acme.clone(), "Order intake"),
            ProcessModel::new(uuid(2), acme, "Refund"),
            ProcessModel::new(uuid(3), globex, "Onboarding"),
        ],
        deployments: vec![
            Deployment::new(uuid(1), VersionTag::Released(1), prod.clone(), form.clone()),
            Deployment::new(uuid(1), VersionTag::Released(2), prod.clone(), form.clone())
                .with_definition_key("order-intake"),
            Deployment::new(uuid(1), VersionTag::Draft, dev, form.clone()),
            Deployment::new(uuid(3), VersionTag::Released(7), prod, form),
        ],
    }
}

/// Checks a [`ModelStore`] holding [`model_fixtures`].
///
/// # Panics
///
/// When the store breaks the contract (or fails).
pub async fn check_model_store<S: ModelStore + ?Sized>(store: &S, fixtures: &ModelFixtures) {
    for model in &fixtures.models {
        let found = store.model(model.uuid()).await.expect("model look-up failed");
        assert_eq!(found.as_ref(), Some(model), "model {} as inserted", model.uuid());
    }
    assert_eq!(
        store.model(&uuid(99)).await.expect("look-up failed"),
        None,
        "an unknown model is Ok(None)"
    );
    for deployment in &fixtures.deployments {
        let latest = fixtures
            .deployments
            .iter()
            .rev()
            .find(|d| d.process() == deployment.process() && d.environment() == deployment.environment())
            .expect("the deployment itself");
        let found = store
            .deployment(deployment.process(), deployment.environment())
            .await
            .expect("deployment look-up failed");
        if let Some(found) = &found {
            assert_eq!(
                found.id(),
                latest.id(),
                "the deployment of {} in {} came back with another id: `Deployment::new` gives \
                 each deployment a random id, which the store must keep with it (or restore with \
                 `Deployment::with_id` when it reads the deployment back)",
                deployment.process(),
                deployment.environment()
            );
        }
        assert_eq!(
            found.as_ref(),
            Some(latest),
            "the latest deployment of {} in {}",
            deployment.process(),
            deployment.environment()
        );
        let both = store
            .model_with_deployment(deployment.process(), deployment.environment())
            .await
            .expect("model_with_deployment failed")
            .expect("the model of a deployment");
        assert_eq!(
            (both.0.uuid(), both.1.as_ref()),
            (deployment.process(), Some(latest)),
            "model_with_deployment agrees with model and deployment"
        );
        check_model_with_deployment_now(store, deployment.process(), deployment.environment()).await;
    }
    check_model_with_deployment_now(store, &uuid(99), &EnvironmentId::new("production")).await;
    check_model_with_deployment_now(store, &uuid(2), &EnvironmentId::new("production")).await;
    check_model_with_deployment_now(store, &uuid(1), &EnvironmentId::new("nowhere")).await;
    let nowhere = EnvironmentId::new("nowhere");
    assert_eq!(
        store
            .deployment(&uuid(1), &nowhere)
            .await
            .expect("look-up failed"),
        None,
        "a process not deployed to an environment is Ok(None)"
    );
    assert_eq!(
        store
            .deployment(&uuid(2), &EnvironmentId::new("production"))
            .await
            .expect("look-up failed"),
        None,
        "a model never deployed is Ok(None)"
    );
}

/// A store's answer at once, where it gives one, is its async answer.
async fn check_model_with_deployment_now<S: ModelStore + ?Sized>(
    store: &S,
    uuid: &ProcessUuid,
    environment: &EnvironmentId,
) {
    if let Some(now) = store.model_with_deployment_now(uuid, environment) {
        let later = store.model_with_deployment(uuid, environment).await;
        assert_eq!(
            now.expect("model_with_deployment_now failed"),
            later.expect("model_with_deployment failed"),
            "model_with_deployment_now gives the answer of model_with_deployment ({uuid} in {environment})"
        );
    }
}

/// A store's answer at once, where it gives one, is its async answer.
async fn check_environment_now<S: TokenStore + ?Sized>(store: &S, token: &EnvironmentToken) {
    if let Some(now) = store.environment_now(token) {
        let later = store.environment(token).await;
        assert_eq!(
            now.expect("environment_now failed"),
            later.expect("environment failed"),
            "environment_now gives the answer of environment"
        );
    }
}

/// Tokens and their environments to put in a store before
/// [`check_token_store`].
pub fn token_fixtures() -> Vec<(EnvironmentToken, Environment)> {
    let acme = OrganizationId::new("acme");
    vec![
        (
            EnvironmentToken::generate(),
            Environment::new(EnvironmentId::new("production"), acme.clone()),
        ),
        (
            EnvironmentToken::generate(),
            Environment::new(EnvironmentId::new("development"), acme),
        ),
    ]
}

/// Checks a [`TokenStore`] holding [`token_fixtures`].
///
/// # Panics
///
/// When the store breaks the contract (or fails).
pub async fn check_token_store<S: TokenStore + ?Sized>(
    store: &S,
    fixtures: &[(EnvironmentToken, Environment)],
) {
    for (token, environment) in fixtures {
        let found = store.environment(token).await.expect("token look-up failed");
        assert_eq!(
            found.as_ref(),
            Some(environment),
            "the environment of a known token"
        );
        check_environment_now(store, token).await;
        let mut near = token.expose_secret().to_owned();
        near.pop();
        let near = EnvironmentToken::new(near);
        let found = store.environment(&near).await.expect("look-up failed");
        assert_eq!(found, None, "a token one character short is unknown");
        check_environment_now(store, &near).await;
    }
    let empty = EnvironmentToken::new("");
    let found = store.environment(&empty).await.expect("look-up failed");
    assert_eq!(found, None, "the empty token is unknown");
    check_environment_now(store, &empty).await;
}

/// Sources for [`check_source_store`]: one of each shape a store must keep
/// (settings, several secrets in order, binary secrets, an event list).
///
/// # Panics
///
/// Never: the fixtures are valid.
pub fn source_fixtures() -> Vec<WebhookSource> {
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    let secret = |s: &[u8]| SourceSecret::new(s).expect("a fixture secret");
    let hmac = HmacScheme::new("X-Signature")
        .and_then(|h| h.with_timestamp_header("X-Timestamp"))
        .expect("a fixture scheme")
        .with_prefix("sha512=")
        .with_algorithm(HmacAlgorithm::Sha512)
        .with_encoding(HmacEncoding::Base64);
    let source = |id: &str, scheme: SourceScheme, secrets: Vec<SourceSecret>| {
        WebhookSource::new(
            SourceId::new(id).expect("a fixture id"),
            production.clone(),
            uuid(1),
            scheme,
            secrets,
        )
        .expect("a fixture source")
    };
    vec![
        source(
            "github",
            SourceScheme::Github,
            vec![secret(b"new"), secret(b"old")],
        )
        .with_events(["push", "release"])
        .expect("github names events"),
        source(
            "acme-hmac",
            SourceScheme::hmac(hmac),
            vec![secret(&[0, 159, 146, 150, 255])],
        ),
        source(
            "twilio",
            SourceScheme::twilio("https://hooks.example.com".parse().expect("an origin")),
            vec![secret(b"auth-token")],
        ),
        source("zapier", SourceScheme::basic("zapier"), vec![secret(b"password")]),
        #[cfg(feature = "mapping")]
        mapped(source("mapped", SourceScheme::Github, vec![secret(b"mapped")])),
    ]
}

/// A fixture source with every rule: a mapping (in an order that is not
/// alphabetical), a body variable, conditions, a delivery query.
#[cfg(feature = "mapping")]
fn mapped(source: WebhookSource) -> WebhookSource {
    use crate::{Condition, JsonQuery, PayloadMapping};
    let query = |q: &str| q.parse::<JsonQuery>().expect("a fixture query");
    let mapping = PayloadMapping::new()
        .with_field("title", query("$.body.pull_request.title"))
        .and_then(|m| m.with_field("author", query("$.body.pull_request.user.login")))
        .and_then(|m| m.with_body_variable("delivery"))
        .expect("a fixture mapping");
    let conditions = [
        Condition::new(query("$.body.action"), ["opened", "reopened"]),
        Condition::new(
            query("$.body.number"),
            [serde_json::json!(7), serde_json::json!(true)],
        ),
    ]
    .map(|c| c.expect("a fixture condition"));
    source
        .with_mapping(mapping)
        .with_conditions(conditions)
        .with_delivery_query(query("$.body.delivery_id"))
}

/// Checks a [`SourceStore`] holding [`source_fixtures`]: each comes back
/// whole (scheme, settings, environment, process, events, every secret in
/// order, and with the `mapping` feature its mapping, conditions and
/// delivery query), and an unknown id is `Ok(None)`.
///
/// # Panics
///
/// When the store breaks the contract (or fails).
pub async fn check_source_store<S: SourceStore + ?Sized>(store: &S, fixtures: &[WebhookSource]) {
    for source in fixtures {
        let found = store
            .source(source.id())
            .await
            .expect("source look-up failed")
            .unwrap_or_else(|| panic!("source {} as inserted", source.id()));
        assert_eq!(found.scheme(), source.scheme(), "the scheme of {}", source.id());
        assert_eq!(
            (found.environment(), found.process(), found.events()),
            (source.environment(), source.process(), source.events()),
            "the environment, process and events of {}",
            source.id()
        );
        assert!(
            found.secrets() == source.secrets(),
            "every secret of {} comes back, in order, byte for byte",
            source.id()
        );
        #[cfg(feature = "mapping")]
        assert_eq!(
            (found.mapping(), found.conditions(), found.delivery_query()),
            (source.mapping(), source.conditions(), source.delivery_query()),
            "the mapping, conditions and delivery query of {}",
            source.id()
        );
        assert_eq!(&found, source, "source {} as inserted", source.id());
    }
    let unknown = SourceId::new("no-such-source").expect("an id");
    let found = store.source(&unknown).await.expect("look-up failed");
    assert!(found.is_none(), "an unknown source is Ok(None)");
}

/// Checks [`IdempotencyStore::take_over`] of an empty store (with a
/// retention and a lease of at least a minute): a reservation in progress
/// is taken over only for its own fingerprint and only once it is
/// `held_for` old, its age then starts again, of 16 concurrent takers one
/// wins, a completed key is replayed, and a free key is reserved.
///
/// A store that keeps the default `take_over` (every reservation holds
/// until its lease ends) fails it: run it against stores that take over.
///
/// # Panics
///
/// When the store breaks the contract (or fails).
pub async fn check_idempotency_takeover<S: IdempotencyStore + ?Sized>(store: &S) {
    let key = IdempotencyKey::new(EnvironmentId::new("production"), uuid(1), "takeover-1");
    let mut payload = Map::new();
    let fp = PayloadFingerprint::of(&payload);
    payload.insert("a".into(), 1.into());
    let other_fp = PayloadFingerprint::of(&payload);
    let hour = Duration::from_secs(3600);
    let take = |fingerprint, held_for| store.take_over(&key, fingerprint, held_for);

    assert_eq!(
        take(fp, hour).await.expect("take_over failed"),
        Reservation::Reserved,
        "a free key is reserved"
    );
    assert_eq!(
        take(fp, hour).await.expect("take_over failed"),
        Reservation::InProgress { fingerprint: fp },
        "a reservation younger than held_for is not taken"
    );
    assert_eq!(
        take(other_fp, Duration::ZERO).await.expect("take_over failed"),
        Reservation::InProgress { fingerprint: fp },
        "a reservation is never taken for another payload"
    );
    // A blocking sleep: the suite runs on any executor, and awaits nothing
    // meanwhile.
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(
        take(fp, Duration::from_millis(100))
            .await
            .expect("take_over failed"),
        Reservation::Reserved,
        "a reservation older than held_for is taken"
    );
    assert_eq!(
        take(fp, Duration::from_millis(100))
            .await
            .expect("take_over failed"),
        Reservation::InProgress { fingerprint: fp },
        "a taken reservation's age starts again"
    );
    assert_eq!(
        store.reserve(&key, fp).await.expect("reserve failed"),
        Reservation::InProgress { fingerprint: fp },
        "a plain reservation never takes over"
    );
    std::thread::sleep(Duration::from_millis(120));
    let results = join_all((0..16).map(|_| take(fp, Duration::from_millis(100)))).await;
    let taken = results
        .iter()
        .filter(|r| matches!(r, Ok(Reservation::Reserved)))
        .count();
    assert_eq!(taken, 1, "exactly one of 16 concurrent takers wins");
    let done = sample_outcome(InstanceId::new("instance-taken"));
    store.complete(&key, &done).await.expect("complete failed");
    assert_eq!(
        take(fp, Duration::ZERO).await.expect("take_over failed"),
        Reservation::Completed {
            fingerprint: fp,
            outcome: done
        },
        "a completed key is replayed, never taken"
    );
}

/// Checks an empty [`IdempotencyStore`] (with a retention of at least a
/// minute): reservation, completion, release, scoping, and that of 32
/// concurrent reservations of one key exactly one wins.
///
/// # Panics
///
/// When the store breaks the contract (or fails).
pub async fn check_idempotency_store<S: IdempotencyStore + ?Sized>(store: &S) {
    let prod = EnvironmentId::new("production");
    let key = IdempotencyKey::new(prod.clone(), uuid(1), "conformance-1");
    let mut payload = Map::new();
    let fp = PayloadFingerprint::of(&payload);
    payload.insert("a".into(), 1.into());
    let other_fp = PayloadFingerprint::of(&payload);
    assert_ne!(fp, other_fp);

    assert_eq!(
        store.reserve(&key, fp).await.expect("reserve failed"),
        Reservation::Reserved
    );
    assert_eq!(
        store.reserve(&key, other_fp).await.expect("reserve failed"),
        Reservation::InProgress { fingerprint: fp },
        "a held key reports the first fingerprint"
    );
    store.release(&key).await.expect("release failed");
    assert_eq!(
        store.reserve(&key, fp).await.expect("reserve failed"),
        Reservation::Reserved,
        "a released key is free"
    );
    let done = sample_outcome(InstanceId::new("instance-1"));
    store.complete(&key, &done).await.expect("complete failed");
    assert_eq!(
        store.reserve(&key, fp).await.expect("reserve failed"),
        Reservation::Completed {
            fingerprint: fp,
            outcome: done.clone()
        }
    );
    store.release(&key).await.expect("release failed");
    assert!(
        matches!(
            store.reserve(&key, fp).await.expect("reserve failed"),
            Reservation::Completed { .. }
        ),
        "release does not forget a completed key"
    );

    for scoped in [
        IdempotencyKey::new(EnvironmentId::new("development"), uuid(1), "conformance-1"),
        IdempotencyKey::new(prod.clone(), uuid(2), "conformance-1"),
    ] {
        assert_eq!(
            store.reserve(&scoped, fp).await.expect("reserve failed"),
            Reservation::Reserved,
            "keys are scoped by environment and process"
        );
    }

    let contested = IdempotencyKey::new(prod, uuid(1), "conformance-concurrent");
    let results = join_all((0..32).map(|_| store.reserve(&contested, fp))).await;
    let reserved = results
        .iter()
        .filter(|r| matches!(r, Ok(Reservation::Reserved)))
        .count();
    assert_eq!(reserved, 1, "exactly one of 32 concurrent reservations wins");
}

/// Checks an [`Engine`] that can start `deployment` (its definition key
/// names a definition the engine runs) with `variables`: it is ready, it has
/// a name, two starts without an idempotency key are two instances with
/// distinct, non-empty ids, and a start with a key succeeds.
///
/// The engine's `wait` is not checked: an engine that cannot wait answers
/// `Ok(None)` by default, and one that can needs an instance that ends.
///
/// # Panics
///
/// When the engine breaks the contract (or fails).
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let deployment = testing::model_fixtures().deployments[0].clone();
/// testing::check_engine(&InMemoryEngine::new(), &deployment, serde_json::Map::new()).await;
/// # });
/// ```
pub async fn check_engine<E: Engine + ?Sized>(
    engine: &E,
    deployment: &Deployment,
    variables: Map<String, Value>,
) {
    engine.ready().await.expect("the engine is ready");
    assert!(!engine.name().is_empty(), "an engine has a name");
    let version = deployment.startable_version().unwrap_or(1);
    let command = || StartCommand::new(deployment, version, variables.clone());
    let first = engine
        .start(&command())
        .await
        .expect("the engine starts an instance");
    let second = engine
        .start(&command())
        .await
        .expect("the engine starts a second instance");
    assert!(!first.id().as_str().is_empty(), "an instance has an id");
    assert_ne!(
        first.id(),
        second.id(),
        "two starts without an idempotency key are two instances"
    );
    let key = format!("conformance-{}", uuid::Uuid::new_v4());
    let keyed = engine
        .start(&command().with_idempotency_key(key))
        .await
        .expect("the engine starts an instance with an idempotency key");
    assert!(!keyed.id().as_str().is_empty(), "a keyed instance has an id");
    assert_ne!(keyed.id(), first.id(), "a keyed start is an instance of its own");
}

/// Checks a [`RateLimiter`]: a quota of two a minute allows two units of a
/// key and refuses the third (with a `Retry-After`, taking nothing);
/// `peek` takes nothing; keys are independent; an answer at once
/// ([`RateLimiter::acquire_now`]), where the limiter gives one, is the one
/// `acquire` would give. Keys are random, so a shared limiter (Redis) may
/// be checked while it serves.
///
/// # Panics
///
/// When the limiter breaks the contract (or fails).
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// testing::check_rate_limiter(&InMemoryRateLimiter::new()).await;
/// # });
/// ```
pub async fn check_rate_limiter<L: RateLimiter + ?Sized>(limiter: &L) {
    let quota = Quota::per_minute(2);
    let prefix = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    let (key, other) = (format!("{prefix}:a"), format!("{prefix}:b"));
    let peeked = limiter.peek(&key, quota).await.expect("peek failed");
    assert!(peeked.allowed(), "a new key's unit is allowed");
    for n in 1..=2 {
        let decision = limiter.acquire(&key, quota).await.expect("acquire failed");
        assert!(decision.allowed(), "unit {n} of 2 is allowed (peek took nothing)");
    }
    let refused = limiter.acquire(&key, quota).await.expect("acquire failed");
    assert!(!refused.allowed(), "the third unit of 2 a minute is refused");
    assert_eq!(refused.remaining(), 0, "nothing remains once refused");
    assert!(!refused.retry_after().is_zero(), "a refusal says when to retry");
    let peeked = limiter.peek(&key, quota).await.expect("peek failed");
    assert!(!peeked.allowed(), "peek sees the key spent");
    assert!(
        limiter
            .acquire(&other, quota)
            .await
            .expect("acquire failed")
            .allowed(),
        "another key has its own allowance"
    );
    if let Some(now) = limiter.acquire_now(&other, quota) {
        let now = now.expect("acquire_now failed");
        assert!(
            now.allowed(),
            "acquire_now gives the answer of acquire: the second unit"
        );
        let later = limiter
            .acquire_now(&other, quota)
            .expect("it answered at once before");
        assert!(
            !later.expect("acquire_now failed").allowed(),
            "acquire_now gives the answer of acquire: the third unit is refused"
        );
    }
}
