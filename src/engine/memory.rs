//! [`InMemoryEngine`]: an engine that records starts in memory, for tests,
//! doc examples and small hosts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use std::time::Duration;

use crate::engine::{Completion, Engine, EngineError, InstanceRef, ProcessInstance, StartCommand};
use crate::id::InstanceId;

/// An instance [`InMemoryEngine`] started, with the command that started it.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub struct StartedInstance {
    /// The instance's id (a random UUID).
    pub id: InstanceId,
    /// The command it was started with.
    pub command: StartCommand,
}

/// The default number of starts [`InMemoryEngine`] remembers: 10,000.
pub(crate) const DEFAULT_ENGINE_HISTORY: usize = 10_000;

/// An engine that records starts in memory and gives each instance a
/// random UUID as its id. It never fails.
///
/// It remembers the last 10,000 starts ([`with_capacity`](Self::with_capacity)
/// sets another bound), so that a long-running host does not grow without
/// end; [`started`](Self::started) lists those, oldest first, and
/// [`total_started`](Self::total_started) counts every start. Clones share
/// state.
///
/// # Example
///
/// ```
/// use process_webhook::InMemoryEngine;
/// let engine = InMemoryEngine::new();
/// assert!(engine.started().is_empty());
/// assert_eq!(engine.total_started(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct InMemoryEngine {
    started: Arc<Mutex<History>>,
    capacity: usize,
    completion: Arc<Mutex<Option<Completion>>>,
}

#[derive(Debug, Default)]
struct History {
    recent: VecDeque<StartedInstance>,
    total: u64,
}

impl Default for InMemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryEngine {
    /// The default number of starts [`InMemoryEngine`] remembers: 10,000.
    pub const DEFAULT_HISTORY: usize = DEFAULT_ENGINE_HISTORY;
}

impl InMemoryEngine {
    /// An engine that has started nothing and remembers the last 10,000
    /// starts.
    pub fn new() -> Self {
        Self {
            started: Arc::default(),
            capacity: DEFAULT_ENGINE_HISTORY,
            completion: Arc::default(),
        }
    }

    /// Makes [`wait`](Engine::wait) answer `completion` at once for every
    /// instance (`None`, the default: it cannot wait). Clones share it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use process_webhook::*;
    ///
    /// # tokio_test::block_on(async {
    /// let engine = InMemoryEngine::new();
    /// engine.complete_waits_with(Some(Completion::Completed(serde_json::json!({"total": 42.5}))));
    /// let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    /// let instance = InstanceRef::new(InstanceId::new("1"), process, EnvironmentId::new("production"));
    /// let waited = engine.wait(&instance, Duration::from_secs(1)).await.unwrap();
    /// assert_eq!(waited, Some(Completion::Completed(serde_json::json!({"total": 42.5}))));
    /// # });
    /// ```
    pub fn complete_waits_with(&self, completion: Option<Completion>) {
        *self.completion.lock().unwrap_or_else(PoisonError::into_inner) = completion;
    }

    /// Sets how many of the latest starts are remembered (0 keeps none).
    pub fn with_capacity(mut self, starts: usize) -> Self {
        self.capacity = starts;
        self
    }

    /// The remembered instances, oldest first.
    pub fn started(&self) -> Vec<StartedInstance> {
        self.history().recent.iter().cloned().collect()
    }

    /// How many instances were started in all, remembered or not.
    pub fn total_started(&self) -> u64 {
        self.history().total
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Engine for InMemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn wait(&self, _: &InstanceRef, _: Duration) -> Result<Option<Completion>, EngineError> {
        Ok(self
            .completion
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone())
    }

    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let id = InstanceId::new(uuid::Uuid::new_v4().to_string());
        let mut instance = ProcessInstance::new(id.clone());
        if let Some(key) = &command.idempotency_key {
            instance = instance.with_business_key(key.clone());
        }
        let mut history = self.history();
        history.total += 1;
        if self.capacity > 0 {
            if history.recent.len() >= self.capacity {
                history.recent.pop_front();
            }
            history.recent.push_back(StartedInstance {
                id,
                command: command.clone(),
            });
        }
        Ok(instance)
    }
}
