//! [`InMemorySourceStore`]: webhook sources in memory.

use std::sync::Arc;

use async_trait::async_trait;

use crate::source::{SourceId, WebhookSource};
use crate::store::{SourceStore, StoreError};

/// Webhook sources in memory, for tests and small hosts; clones share
/// them, and a change is seen by the next call.
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
/// let sources = InMemorySourceStore::new();
/// let github = WebhookSource::new("github".parse().unwrap(), production, uuid,
///     SourceScheme::Github, [SourceSecret::new("s3cr3t").unwrap()]).unwrap();
/// sources.put_source(github.clone());
/// assert_eq!(sources.source(github.id()).await?, Some(github.clone()));
/// assert!(sources.remove_source(github.id()));
/// assert_eq!(sources.source(github.id()).await?, None);
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default, Debug)]
pub struct InMemorySourceStore {
    sources: Arc<papaya::HashMap<SourceId, WebhookSource, foldhash::fast::RandomState>>,
}

impl InMemorySourceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `source`, or replaces the source with its id (to rotate its
    /// secrets, give it the new and the old one; later, the new alone).
    pub fn put_source(&self, source: WebhookSource) {
        self.sources.pin().insert(source.id().clone(), source);
    }

    /// Removes the source with id `id`; whether there was one.
    pub fn remove_source(&self, id: &SourceId) -> bool {
        self.sources.pin().remove(id).is_some()
    }
}

#[async_trait]
impl SourceStore for InMemorySourceStore {
    async fn source(&self, id: &SourceId) -> Result<Option<WebhookSource>, StoreError> {
        Ok(self.sources.pin().get(id).cloned())
    }
}
