//! The conformance suites, run against the in-memory stores directly and
//! through trait objects.
#![cfg(feature = "testing")]

use std::sync::Arc;

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
    let dynamic: Arc<dyn ModelStore> = Arc::new(store);
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
    let dynamic: Box<dyn TokenStore> = Box::new(store);
    testing::check_token_store(&*dynamic, &fixtures).await;
}

#[tokio::test]
async fn the_in_memory_idempotency_store_keeps_the_contract() {
    testing::check_idempotency_store(&InMemoryIdempotencyStore::new()).await;
    let dynamic: Arc<dyn IdempotencyStore> = Arc::new(InMemoryIdempotencyStore::new());
    testing::check_idempotency_store(&*dynamic).await;
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
