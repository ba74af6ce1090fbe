//! The conformance suites, run against the in-memory stores directly and
//! through trait objects.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use process_webhook::*;

fn seeded_models() -> (InMemoryModelStore, testing::ModelFixtures) {
    let store = InMemoryModelStore::new();
    let fixtures = testing::model_fixtures();
    for model in &fixtures.models {
        store.insert_model(model.clone());
    }
    for deployment in &fixtures.deployments {
        store.deploy(deployment.clone());
    }
    (store, fixtures)
}

#[tokio::test]
async fn the_in_memory_model_store_keeps_the_contract() {
    let (store, fixtures) = seeded_models();
    testing::check_model_store(&store, &fixtures).await;
    // Shared: an `Arc` of a store is a store that answers for it.
    let shared = Arc::new(store);
    testing::check_model_store(&shared, &fixtures).await;
    let dynamic: Arc<dyn ModelStore> = shared;
    testing::check_model_store(&*dynamic, &fixtures).await;
}

#[tokio::test]
async fn the_in_memory_token_store_keeps_the_contract() {
    let store = InMemoryTokenStore::new();
    let fixtures = testing::token_fixtures();
    for (token, env) in &fixtures {
        store.insert(token, env.clone());
    }
    testing::check_token_store(&store, &fixtures).await;
    let shared = Arc::new(store.clone());
    testing::check_token_store(&shared, &fixtures).await;
    let dynamic: Box<dyn TokenStore> = Box::new(store);
    testing::check_token_store(&*dynamic, &fixtures).await;
}

#[tokio::test]
async fn the_in_memory_idempotency_store_keeps_the_contract() {
    testing::check_idempotency_store(&InMemoryIdempotencyStore::new()).await;
    let dynamic: Arc<dyn IdempotencyStore> = Arc::new(InMemoryIdempotencyStore::new());
    testing::check_idempotency_store(&*dynamic).await;
    testing::check_idempotency_takeover(&InMemoryIdempotencyStore::new()).await;
    testing::check_idempotency_takeover(&*Arc::new(InMemoryIdempotencyStore::new())).await;
    // An `Arc` of a store is a store that forwards every method, the
    // provided `take_over` too (its default would keep the lease and fail
    // the takeover suite).
    let shared: Arc<dyn IdempotencyStore> = Arc::new(InMemoryIdempotencyStore::new());
    testing::check_idempotency_store(&shared).await;
    testing::check_idempotency_takeover(&Arc::new(InMemoryIdempotencyStore::new())).await;
    testing::check_idempotency_takeover(&shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_memory_idempotency_store_keeps_the_contract_across_threads() {
    let store = Arc::new(InMemoryIdempotencyStore::new());
    let key = IdempotencyKey::new(EnvironmentId::new("p"), uuid::Uuid::nil().into(), "k");
    let fp = PayloadFingerprint::of(&serde_json::Map::new());
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.reserve(&key, fp).await.unwrap() })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        if task.await.unwrap() == Reservation::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 1);
}

/// A broken store fails the suite: the suite can fail.
#[tokio::test]
#[should_panic(expected = "an unknown model is Ok(None)")]
async fn a_store_that_invents_models_fails_the_suite() {
    struct Inventive(InMemoryModelStore);
    #[async_trait::async_trait]
    impl ModelStore for Inventive {
        async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
            Ok(Some(self.0.model(uuid).await?.unwrap_or_else(|| {
                ProcessModel::new(*uuid, OrganizationId::new("x"), "invented")
            })))
        }
        async fn deployment(
            &self,
            uuid: &ProcessUuid,
            env: &EnvironmentId,
        ) -> Result<Option<Deployment>, StoreError> {
            self.0.deployment(uuid, env).await
        }
    }
    let (store, fixtures) = seeded_models();
    testing::check_model_store(&Inventive(store), &fixtures).await;
}

/// A model store whose answer at once disagrees with its async answer.
struct HastyModels(InMemoryModelStore);

#[async_trait::async_trait]
impl ModelStore for HastyModels {
    async fn model(&self, uuid: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        self.0.model(uuid).await
    }
    async fn deployment(
        &self,
        uuid: &ProcessUuid,
        env: &EnvironmentId,
    ) -> Result<Option<Deployment>, StoreError> {
        self.0.deployment(uuid, env).await
    }
    fn model_with_deployment_now(
        &self,
        _uuid: &ProcessUuid,
        _env: &EnvironmentId,
    ) -> Option<Result<Option<(ProcessModel, Option<Deployment>)>, StoreError>> {
        Some(Ok(None))
    }
}

#[tokio::test]
#[should_panic(expected = "model_with_deployment_now gives the answer of model_with_deployment")]
async fn a_model_store_whose_answer_at_once_differs_fails_the_suite() {
    let (store, fixtures) = seeded_models();
    testing::check_model_store(&HastyModels(store), &fixtures).await;
}

/// A token store that opens an environment for a token one character
/// short of a real one (as a prefix comparison would).
struct Lenient(Vec<(EnvironmentToken, Environment)>);

#[async_trait::async_trait]
impl TokenStore for Lenient {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        let presented = token.expose_secret();
        Ok(self
            .0
            .iter()
            .find(|(known, _)| !presented.is_empty() && known.expose_secret().starts_with(presented))
            .map(|(_, env)| env.clone()))
    }
}

#[tokio::test]
#[should_panic(expected = "a token one character short is unknown")]
async fn a_token_store_that_accepts_a_prefix_fails_the_suite() {
    let fixtures = testing::token_fixtures();
    let store = Lenient(fixtures.clone());
    testing::check_token_store(&store, &fixtures).await;
}

/// A token store whose answer at once disagrees with its async answer.
struct HastyTokens(InMemoryTokenStore);

#[async_trait::async_trait]
impl TokenStore for HastyTokens {
    async fn environment(&self, token: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        self.0.environment(token).await
    }
    fn environment_now(&self, _token: &EnvironmentToken) -> Option<Result<Option<Environment>, StoreError>> {
        Some(Ok(None))
    }
}

#[tokio::test]
#[should_panic(expected = "environment_now gives the answer of environment")]
async fn a_token_store_whose_answer_at_once_differs_fails_the_suite() {
    let fixtures = testing::token_fixtures();
    let store = HastyTokens(InMemoryTokenStore::new());
    for (token, env) in &fixtures {
        store.0.insert(token, env.clone());
    }
    testing::check_token_store(&store, &fixtures).await;
}

/// An idempotency store that forgets a completed key when it is released
/// (as one that deletes on release without looking would).
struct Forgetful(InMemoryIdempotencyStore, std::sync::Mutex<Vec<IdempotencyKey>>);

#[async_trait::async_trait]
impl IdempotencyStore for Forgetful {
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: PayloadFingerprint,
    ) -> Result<Reservation, StoreError> {
        if self.1.lock().unwrap().contains(key) {
            return Ok(Reservation::Reserved);
        }
        self.0.reserve(key, fingerprint).await
    }
    async fn complete(&self, key: &IdempotencyKey, outcome: &StartOutcome) -> Result<(), StoreError> {
        self.0.complete(key, outcome).await
    }
    async fn release(&self, key: &IdempotencyKey) -> Result<(), StoreError> {
        if matches!(
            self.0
                .reserve(key, PayloadFingerprint::of(&serde_json::Map::new()))
                .await?,
            Reservation::Completed { .. }
        ) {
            self.1.lock().unwrap().push(key.clone());
        }
        self.0.release(key).await
    }
}

#[tokio::test]
#[should_panic(expected = "release does not forget a completed key")]
async fn an_idempotency_store_that_forgets_completed_keys_fails_the_suite() {
    let store = Forgetful(InMemoryIdempotencyStore::new(), Default::default());
    testing::check_idempotency_store(&store).await;
}

#[tokio::test]
async fn the_in_memory_engine_and_limiter_pass_their_suites_directly_and_as_trait_objects() {
    let deployment = testing::model_fixtures().deployments[0].clone();
    let engine = InMemoryEngine::new();
    testing::check_engine(&engine, &deployment, crate::common::order_payload()).await;
    assert_eq!(engine.total_started(), 3, "the suite started three instances");
    let dynamic: std::sync::Arc<dyn Engine> = std::sync::Arc::new(InMemoryEngine::new());
    testing::check_engine(&*dynamic, &deployment, crate::common::order_payload()).await;
    testing::check_rate_limiter(&InMemoryRateLimiter::new()).await;
    let dynamic: std::sync::Arc<dyn RateLimiter> = std::sync::Arc::new(InMemoryRateLimiter::new());
    testing::check_rate_limiter(&*dynamic).await;
    // The `Arc` itself is a limiter that forwards (`acquire_now` too: the
    // in-memory limiter decides at once).
    testing::check_rate_limiter(&dynamic).await;
    let now = RateLimiter::acquire_now(&dynamic, "arc-key", Quota::per_second(1));
    assert!(now.is_some_and(|d| d.unwrap().allowed()));
}

/// An engine that gives every instance the same id.
struct OneInstance;

#[async_trait::async_trait]
impl Engine for OneInstance {
    async fn start(&self, _command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        Ok(ProcessInstance::new(InstanceId::new("the-one")))
    }
}

#[tokio::test]
#[should_panic(expected = "two starts without an idempotency key are two instances")]
async fn an_engine_that_answers_one_instance_for_every_start_fails_the_suite() {
    let deployment = testing::model_fixtures().deployments[0].clone();
    testing::check_engine(&OneInstance, &deployment, crate::common::order_payload()).await;
}

/// A limiter that never refuses.
struct Unlimited;

#[async_trait::async_trait]
impl RateLimiter for Unlimited {
    async fn acquire(&self, _key: &str, _quota: Quota) -> Result<RateDecision, StoreError> {
        Ok(RateDecision::new(true, 1, Duration::ZERO, Duration::ZERO))
    }
    async fn peek(&self, _key: &str, _quota: Quota) -> Result<RateDecision, StoreError> {
        Ok(RateDecision::new(true, 1, Duration::ZERO, Duration::ZERO))
    }
}

#[tokio::test]
#[should_panic(expected = "the third unit of 2 a minute is refused")]
async fn a_limiter_that_never_refuses_fails_the_suite() {
    testing::check_rate_limiter(&Unlimited).await;
}

/// A limiter whose answer at once always allows (it forgot to take the
/// unit its async answer takes).
struct HastyLimiter(InMemoryRateLimiter);

#[async_trait::async_trait]
impl RateLimiter for HastyLimiter {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        self.0.acquire(key, quota).await
    }
    async fn peek(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        self.0.peek(key, quota).await
    }
    fn acquire_now(&self, _key: &str, _quota: Quota) -> Option<Result<RateDecision, StoreError>> {
        Some(Ok(RateDecision::new(true, 1, Duration::ZERO, Duration::ZERO)))
    }
}

#[tokio::test]
#[should_panic(expected = "acquire_now gives the answer of acquire: the third unit is refused")]
async fn a_limiter_whose_answer_at_once_differs_fails_the_suite() {
    testing::check_rate_limiter(&HastyLimiter(InMemoryRateLimiter::new())).await;
}

#[tokio::test]
async fn the_in_memory_source_store_keeps_the_contract() {
    let store = InMemorySourceStore::new();
    let fixtures = testing::source_fixtures();
    for source in &fixtures {
        store.put_source(source.clone());
    }
    testing::check_source_store(&store, &fixtures).await;
    // Removing says whether there was a source, and a removed one is gone.
    let removed = fixtures[0].id();
    assert!(store.clone().remove_source(removed));
    assert!(!store.remove_source(removed));
    assert_eq!(store.source(removed).await.unwrap(), None);
    store.put_source(fixtures[0].clone());
    let dynamic: Arc<dyn SourceStore> = Arc::new(store);
    testing::check_source_store(&dynamic, &fixtures).await;
    testing::check_source_store(&*dynamic, &fixtures).await;
}

/// `source` made again from its id, environment, process, scheme and
/// events, with `secrets`, and nothing else.
fn rebuilt(source: &WebhookSource, secrets: Vec<SourceSecret>) -> WebhookSource {
    let bare = WebhookSource::new(
        source.id().clone(),
        source.environment().clone(),
        *source.process(),
        source.scheme().clone(),
        secrets,
    )
    .unwrap();
    match source.events() {
        Some(events) => bare.with_events(events.iter().cloned()).unwrap(),
        None => bare,
    }
}

/// Keeps only a source's newest secret.
struct ForgetsOldSecrets(InMemorySourceStore);

#[async_trait]
impl SourceStore for ForgetsOldSecrets {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        Ok(self
            .0
            .source(id)
            .await?
            .map(|s| rebuilt(&s, s.secrets()[..1].to_vec())))
    }
}

#[tokio::test]
#[should_panic(expected = "every secret of github comes back")]
async fn a_source_store_that_forgets_a_rotated_secret_fails_the_suite() {
    let store = InMemorySourceStore::new();
    let fixtures = testing::source_fixtures();
    for source in &fixtures {
        store.put_source(source.clone());
    }
    testing::check_source_store(&ForgetsOldSecrets(store), &fixtures).await;
}

/// Keeps everything of a source but its mapping, conditions and delivery
/// query.
#[cfg(feature = "mapping")]
struct ForgetsRules(InMemorySourceStore);

#[cfg(feature = "mapping")]
#[async_trait]
impl SourceStore for ForgetsRules {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        Ok(self
            .0
            .source(id)
            .await?
            .map(|s| rebuilt(&s, s.secrets().to_vec())))
    }
}

#[cfg(feature = "mapping")]
#[tokio::test]
#[should_panic(expected = "the mapping, conditions and delivery query of mapped")]
async fn a_source_store_that_forgets_a_mapping_fails_the_suite() {
    let store = InMemorySourceStore::new();
    let fixtures = testing::source_fixtures();
    for source in &fixtures {
        store.put_source(source.clone());
    }
    testing::check_source_store(&ForgetsRules(store), &fixtures).await;
}

#[tokio::test]
async fn the_in_memory_delivery_log_keeps_the_contract_directly_and_as_a_trait_object() {
    testing::check_delivery_log(&InMemoryDeliveryLog::new()).await;
    let shared = Arc::new(InMemoryDeliveryLog::new());
    testing::check_delivery_log(&shared).await;
    let dynamic: Arc<dyn DeliveryLog> = shared;
    testing::check_delivery_log(&*dynamic).await;
}

#[tokio::test]
#[should_panic(expected = "43")]
async fn a_log_that_keeps_too_few_records_fails_the_suite() {
    testing::check_delivery_log(&InMemoryDeliveryLog::with_capacity(20)).await;
}

#[tokio::test]
async fn the_in_memory_delivery_log_forgets_its_oldest_records_past_its_capacity() {
    let log = InMemoryDeliveryLog::with_capacity(3);
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    let ids: Vec<DeliveryId> = (0..5).map(|_| DeliveryId::new_random()).collect();
    for (n, id) in ids.iter().enumerate() {
        let at = t0 + std::time::Duration::from_secs(n as u64);
        log.append(&[LoggedDelivery::new(
            *id,
            at,
            EnvironmentId::new("production"),
            process,
            LoggedOutcome::Started,
        )])
        .await
        .unwrap();
    }
    assert_eq!(log.len(), 3);
    let kept: Vec<DeliveryId> = log
        .page(&LogQuery::newest(10))
        .await
        .unwrap()
        .deliveries
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(kept, [ids[4], ids[3], ids[2]]);
}

#[tokio::test]
async fn the_in_memory_inbox_keeps_the_contract_directly_and_as_a_trait_object() {
    testing::check_inbox(&InMemoryInbox::new()).await;
    let shared = Arc::new(InMemoryInbox::new());
    testing::check_inbox(&shared).await;
    let dynamic: Arc<dyn Inbox> = shared;
    testing::check_inbox(&*dynamic).await;
}

/// An inbox whose claims hold no lease: a start is claimed twice at once.
struct LeaselessInbox(InMemoryInbox);

#[async_trait::async_trait]
impl Inbox for LeaselessInbox {
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError> {
        self.0.keep(start, limit).await
    }
    async fn claim(
        &self,
        now: std::time::SystemTime,
        _: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.0.claim(now, Duration::ZERO, max).await
    }
    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError> {
        self.0.complete(claimed, instance).await
    }
    async fn reschedule(
        &self,
        claimed: &Claimed,
        at: std::time::SystemTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.0.reschedule(claimed, at, error).await
    }
    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError> {
        self.0.bury(claimed, reason).await
    }
    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        self.0.retry(id).await
    }
    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        self.0.discard(id).await
    }
    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        self.0.get(id).await
    }
    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError> {
        self.0.list(query).await
    }
    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError> {
        self.0.find_by_key(key).await
    }
    async fn counts(&self) -> Result<InboxCounts, StoreError> {
        self.0.counts().await
    }
}

#[tokio::test]
#[should_panic(expected = "a leased start is not claimed again")]
async fn an_inbox_that_claims_a_leased_start_again_fails_the_suite() {
    testing::check_inbox(&LeaselessInbox(InMemoryInbox::new())).await;
}
