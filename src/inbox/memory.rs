//! [`InMemoryInbox`]: kept starts in this process's memory, bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Claimed, Delivery, DeliveryStatus, Inbox, InboxCounts, InboxQuery, Keeping, KeptStart};
use crate::id::{DeliveryId, EnvironmentId, InstanceId};
use crate::idempotency::IdempotencyKey;
use crate::port_error::StoreError;

/// An [`Inbox`] in memory: for tests, and for a single server that accepts
/// losing its kept starts when it stops.
///
/// **It does not survive a restart**: starts kept here and not yet started
/// are gone with the process. Use `PostgresStore` (feature `postgres`) for
/// starts that must outlive it.
///
/// Bounded: an environment holds at most the `limit` its starter gives
/// [`keep`](Inbox::keep) queued or dead starts; of the started and
/// discarded ones, the newest 10,000 are remembered (for `get` and `list`),
/// older ones forgotten. Clones share their starts.
///
/// # Example
///
/// ```
/// use process_webhook::*;
/// use std::time::{Duration, SystemTime};
///
/// # tokio_test::block_on(async {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let deployment = Deployment::new(uuid, VersionTag::Released(1), EnvironmentId::new("production"), StartForm::default());
/// let inbox = InMemoryInbox::new();
/// let id = DeliveryId::new_random();
/// let command = StartCommand::new(&deployment, 1, Default::default());
/// assert_eq!(inbox.keep(KeptStart::new(id, command, None), 10).await.unwrap(), Keeping::Kept);
///
/// let claimed = inbox.claim(SystemTime::now(), Duration::from_secs(30), 10).await.unwrap();
/// assert_eq!(claimed.len(), 1);
/// assert!(inbox.complete(&claimed[0], &InstanceId::new("i-1")).await.unwrap());
/// assert_eq!(inbox.get(&id).await.unwrap().unwrap().status, DeliveryStatus::Started);
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct InMemoryInbox {
    state: Arc<Mutex<State>>,
}

/// How many started or discarded starts are remembered.
const FINISHED_KEPT: usize = 10_000;

#[derive(Debug, Default)]
struct State {
    entries: HashMap<DeliveryId, Entry>,
    /// The newest start kept with each caller key.
    by_key: HashMap<IdempotencyKey, DeliveryId>,
    /// Queued or dead starts per environment.
    held: HashMap<EnvironmentId, usize>,
    /// Started or discarded starts, oldest first (to forget the oldest).
    finished: std::collections::VecDeque<DeliveryId>,
    next_lease: u64,
}

#[derive(Debug)]
struct Entry {
    start: KeptStart,
    status: DeliveryStatus,
    due_at: SystemTime,
    attempts: u32,
    /// The newest lease, and until when it holds.
    lease: Option<(u64, SystemTime)>,
    last_error: Option<String>,
    instance: Option<InstanceId>,
}

impl Entry {
    fn delivery(&self) -> Delivery {
        let command = &self.start.command;
        Delivery {
            id: self.start.id,
            status: self.status,
            environment: command.environment.clone(),
            process: command.process,
            version: command.version,
            caller_key: self.start.caller_key.as_ref().map(|k| k.key().to_owned()),
            source: self.start.source.clone(),
            kept_at: self.start.kept_at,
            due_at: self.due_at,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            instance: self.instance.clone(),
            command: command.clone(),
        }
    }

    /// Whether `claimed` holds this start's newest lease, the start queued.
    fn held_by(&self, claimed: &Claimed) -> bool {
        self.status == DeliveryStatus::Queued
            && matches!(self.lease, Some((lease, _)) if lease == claimed.lease)
    }
}

impl InMemoryInbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl State {
    /// Moves a held start out of its environment's count and into the
    /// finished ones, forgetting the oldest finished past the bound.
    fn finish(&mut self, id: DeliveryId, environment: &EnvironmentId) {
        if let Some(held) = self.held.get_mut(environment) {
            *held = held.saturating_sub(1);
        }
        self.finished.push_back(id);
        while self.finished.len() > FINISHED_KEPT {
            let Some(old) = self.finished.pop_front() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&old) {
                if let Some(key) = &entry.start.caller_key {
                    if self.by_key.get(key) == Some(&old) {
                        self.by_key.remove(key);
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Inbox for InMemoryInbox {
    async fn keep(&self, start: KeptStart, limit: usize) -> Result<Keeping, StoreError> {
        Ok(self.with_state(|state| {
            let environment = start.command.environment.clone();
            let held = state.held.entry(environment).or_default();
            if *held >= limit {
                return Keeping::Full;
            }
            *held += 1;
            if let Some(key) = &start.caller_key {
                state.by_key.insert(key.clone(), start.id);
            }
            let entry = Entry {
                due_at: start.kept_at,
                start,
                status: DeliveryStatus::Queued,
                attempts: 0,
                lease: None,
                last_error: None,
                instance: None,
            };
            state.entries.insert(entry.start.id, entry);
            Keeping::Kept
        }))
    }

    async fn claim(&self, now: SystemTime, lease: Duration, max: usize) -> Result<Vec<Claimed>, StoreError> {
        Ok(self.with_state(|state| {
            let mut due: Vec<(SystemTime, DeliveryId)> = state
                .entries
                .values()
                .filter(|e| e.status == DeliveryStatus::Queued && e.due_at <= now)
                .filter(|e| !matches!(e.lease, Some((_, until)) if until > now))
                .map(|e| (e.due_at, e.start.id))
                .collect();
            due.sort();
            due.truncate(max);
            let mut claimed = Vec::with_capacity(due.len());
            for (_, id) in due {
                state.next_lease += 1;
                let number = state.next_lease;
                if let Some(entry) = state.entries.get_mut(&id) {
                    let attempts = entry.attempts;
                    entry.attempts += 1;
                    entry.lease = Some((number, now + lease));
                    claimed.push(Claimed {
                        start: entry.start.clone(),
                        attempts,
                        lease: number,
                    });
                }
            }
            claimed
        }))
    }

    async fn complete(&self, claimed: &Claimed, instance: &InstanceId) -> Result<bool, StoreError> {
        Ok(self.with_state(|state| {
            let Some(entry) = state.entries.get_mut(&claimed.start.id) else {
                return false;
            };
            if !entry.held_by(claimed) {
                return false;
            }
            entry.status = DeliveryStatus::Started;
            entry.instance = Some(instance.clone());
            entry.lease = None;
            let environment = entry.start.command.environment.clone();
            state.finish(claimed.start.id, &environment);
            true
        }))
    }

    async fn reschedule(&self, claimed: &Claimed, at: SystemTime, error: &str) -> Result<bool, StoreError> {
        Ok(
            self.with_state(|state| match state.entries.get_mut(&claimed.start.id) {
                Some(entry) if entry.held_by(claimed) => {
                    entry.due_at = at;
                    entry.lease = None;
                    entry.last_error = Some(error.to_owned());
                    true
                }
                _ => false,
            }),
        )
    }

    async fn bury(&self, claimed: &Claimed, reason: &str) -> Result<bool, StoreError> {
        Ok(
            self.with_state(|state| match state.entries.get_mut(&claimed.start.id) {
                Some(entry) if entry.held_by(claimed) => {
                    entry.status = DeliveryStatus::Dead;
                    entry.lease = None;
                    entry.last_error = Some(reason.to_owned());
                    true
                }
                _ => false,
            }),
        )
    }

    async fn retry(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        Ok(self.with_state(|state| match state.entries.get_mut(id) {
            Some(entry) if entry.status == DeliveryStatus::Dead => {
                entry.status = DeliveryStatus::Queued;
                entry.due_at = SystemTime::now();
                entry.lease = None;
                true
            }
            _ => false,
        }))
    }

    async fn discard(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        Ok(self.with_state(|state| {
            let environment = match state.entries.get_mut(id) {
                Some(entry) if matches!(entry.status, DeliveryStatus::Queued | DeliveryStatus::Dead) => {
                    entry.status = DeliveryStatus::Discarded;
                    entry.lease = None;
                    entry.start.command.environment.clone()
                }
                _ => return false,
            };
            state.finish(*id, &environment);
            true
        }))
    }

    async fn get(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Ok(self.with_state(|state| state.entries.get(id).map(Entry::delivery)))
    }

    async fn list(&self, query: &InboxQuery) -> Result<Vec<Delivery>, StoreError> {
        Ok(self.with_state(|state| {
            let mut found: Vec<&Entry> = state
                .entries
                .values()
                .filter(|e| query.status.is_none_or(|s| e.status == s))
                .filter(|e| {
                    query
                        .source
                        .as_ref()
                        .is_none_or(|s| e.start.source.as_ref() == Some(s))
                })
                .filter(|e| {
                    query
                        .environment
                        .as_ref()
                        .is_none_or(|env| e.start.command.environment == *env)
                })
                .collect();
            found.sort_by(|a, b| {
                b.start
                    .kept_at
                    .cmp(&a.start.kept_at)
                    .then(b.start.id.cmp(&a.start.id))
            });
            found.truncate(query.limit.unwrap_or(usize::MAX));
            found.into_iter().map(Entry::delivery).collect()
        }))
    }

    async fn find_by_key(&self, key: &IdempotencyKey) -> Result<Option<Delivery>, StoreError> {
        Ok(self.with_state(|state| {
            state
                .by_key
                .get(key)
                .and_then(|id| state.entries.get(id))
                .map(Entry::delivery)
        }))
    }

    async fn counts(&self) -> Result<InboxCounts, StoreError> {
        Ok(self.with_state(|state| {
            let mut counts = InboxCounts::default();
            for entry in state.entries.values() {
                match entry.status {
                    DeliveryStatus::Queued => {
                        counts.queued += 1;
                        let kept = entry.start.kept_at;
                        counts.oldest_queued = Some(counts.oldest_queued.map_or(kept, |o| o.min(kept)));
                    }
                    DeliveryStatus::Dead => counts.dead += 1,
                    _ => {}
                }
            }
            counts
        }))
    }
}
