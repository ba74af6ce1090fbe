//! [`InMemoryDeliveryLog`]: the newest records, in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{Cursor, DeliveryLog, LastFailure, LogPage, LogQuery, LoggedDelivery, SourceSummary};
use crate::id::{DeliveryId, ProcessUuid};
use crate::port_error::StoreError;
use crate::source::SourceId;

/// A [`DeliveryLog`] in memory that keeps the newest `capacity` records
/// (10,000 by default): the oldest is forgotten when a new one comes. It
/// does not survive a restart. Clones share the same records.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let log = InMemoryDeliveryLog::new();
/// let id = DeliveryId::new_random();
/// let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let record = LoggedDelivery::new(id, SystemTime::now(), EnvironmentId::new("production"),
///     process, LoggedOutcome::Started);
/// log.append(&[record]).await?;
/// let page = log.page(&LogQuery::newest(10)).await?;
/// assert_eq!(page.deliveries[0].id, id);
/// # Ok::<(), StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryDeliveryLog {
    records: Arc<RwLock<Records>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Records {
    by_id: HashMap<DeliveryId, LoggedDelivery>,
    /// Every record's position, oldest first.
    order: BTreeSet<Cursor>,
}

impl Default for InMemoryDeliveryLog {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryDeliveryLog {
    /// How many records [`new`](Self::new) keeps: 10,000.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// An empty log keeping the newest 10,000 records.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty log keeping the newest `capacity` records (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// How many records it holds now.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl DeliveryLog for InMemoryDeliveryLog {
    async fn append(&self, records: &[LoggedDelivery]) -> Result<(), StoreError> {
        let mut held = self.records.write().unwrap_or_else(PoisonError::into_inner);
        for record in records {
            match held.by_id.remove(&record.id) {
                Some(mut existing) => {
                    held.order.remove(&existing.position());
                    existing.merge(record.clone());
                    held.order.insert(existing.position());
                    held.by_id.insert(existing.id, existing);
                }
                None => {
                    held.order.insert(record.position());
                    held.by_id.insert(record.id, record.clone());
                }
            }
            while held.by_id.len() > self.capacity {
                let Some(oldest) = held.order.pop_first() else {
                    break;
                };
                held.by_id.remove(&oldest.parts().1);
            }
        }
        Ok(())
    }

    async fn read(&self, id: &DeliveryId) -> Result<Option<LoggedDelivery>, StoreError> {
        Ok(self.read().by_id.get(id).cloned())
    }

    async fn page(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let held = self.read();
        let mut deliveries = Vec::new();
        let mut next = None;
        let newest_first = held
            .order
            .iter()
            .rev()
            .filter(|position| query.after.is_none_or(|after| after.precedes(position)))
            .filter_map(|position| held.by_id.get(&position.parts().1))
            .filter(|record| record.matches(query));
        for record in newest_first {
            if deliveries.len() == query.limit {
                next = deliveries.last().map(LoggedDelivery::position);
                break;
            }
            deliveries.push(record.clone());
        }
        Ok(LogPage { deliveries, next })
    }

    async fn summarize(&self, since: SystemTime) -> Result<Vec<SourceSummary>, StoreError> {
        let held = self.read();
        let mut summaries: BTreeMap<(Option<SourceId>, ProcessUuid), SourceSummary> = BTreeMap::new();
        for record in held.by_id.values().filter(|r| r.received_at >= since) {
            let summary = summaries
                .entry((record.source.clone(), record.process))
                .or_insert_with(|| SourceSummary {
                    source: record.source.clone(),
                    process: record.process,
                    counts: BTreeMap::new(),
                    last_received_at: record.received_at,
                    last_failure: None,
                });
            *summary.counts.entry(record.outcome).or_default() += 1;
            summary.last_received_at = summary.last_received_at.max(record.received_at);
            let later = summary
                .last_failure
                .as_ref()
                .is_none_or(|f| f.received_at < record.received_at);
            if record.outcome.is_failure() && later {
                summary.last_failure = Some(LastFailure {
                    id: record.id,
                    received_at: record.received_at,
                    outcome: record.outcome,
                    code: record.code.clone(),
                });
            }
        }
        Ok(summaries.into_values().collect())
    }

    async fn purge(&self, before: SystemTime, batch: usize) -> Result<u64, StoreError> {
        let mut held = self.records.write().unwrap_or_else(PoisonError::into_inner);
        let mut removed = 0;
        while removed < batch {
            match held.order.first() {
                Some(oldest) if oldest.parts().0 < before => {
                    let oldest = *oldest;
                    held.order.remove(&oldest);
                    held.by_id.remove(&oldest.parts().1);
                    removed += 1;
                }
                _ => break,
            }
        }
        Ok(removed as u64)
    }
}
