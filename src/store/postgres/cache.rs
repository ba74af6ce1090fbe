//! The listener that empties the read-through cache of
//! [`PostgresStore`] (`store/sql/cache.rs`) on every replica when any of
//! them changes something.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

use super::PostgresStore;
use crate::store::StoreError;
pub(super) use crate::store::sql::cache::Cache;

impl PostgresStore {
    /// Tells every replica that something changed.
    pub(super) async fn announce(&self) -> Result<(), StoreError> {
        self.cache.clear();
        let query = sqlx::query("SELECT pg_notify($1, 'changed')").bind(&self.sql.channel);
        self.run("announcing a change", query.execute(&self.pool)).await?;
        Ok(())
    }

    /// Starts the listener that empties the cache on every change, once.
    pub(super) fn listen(&self) {
        if self.cache_ttl.is_zero() || self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, channel) = (self.pool.clone(), self.sql.channel.clone());
        let cache = Arc::downgrade(&self.cache);
        tokio::spawn(listen_for_changes(pool, channel, cache));
    }
}

/// Listens for changes and empties the cache on each, until the store is
/// gone. A lost connection also empties it (changes may have been missed).
pub(super) async fn listen_for_changes(pool: PgPool, channel: String, cache: Weak<Cache>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listener.await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(target: "process_webhook", error = %error, "cannot listen for changes; retrying");
                match cache.upgrade() {
                    Some(cache) => cache.clear(),
                    None => return,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
            let Some(cache) = cache.upgrade() else {
                return;
            };
            match event {
                Ok(Ok(Some(_))) => cache.clear(),
                Ok(Ok(None)) | Ok(Err(_)) => {
                    // The connection was lost: changes may have been missed.
                    cache.clear();
                    break;
                }
                Err(_) => {} // quiet: look again whether the store still exists
            }
        }
    }
}
