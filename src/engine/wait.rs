//! Waiting for a started instance to end: what an engine is asked
//! ([`InstanceRef`]) and what it answers ([`Completion`]).

use serde_json::Value;

use crate::id::{EnvironmentId, InstanceId, ProcessUuid};

/// An instance an engine started, as the starter knows it when it waits for
/// it: after a start (with the engine's business key) or after a replay of
/// an idempotent start (with the caller's idempotency key, from which an
/// engine such as Temporal derives its own id).
///
/// ```
/// use process_webhook::{EnvironmentId, InstanceId, InstanceRef, ProcessUuid};
///
/// let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let instance = InstanceRef::new(InstanceId::new("run-1"), process, EnvironmentId::new("production"))
///     .with_business_key("webhook-1")
///     .with_idempotency_key("order-1");
/// assert_eq!(instance.id().as_str(), "run-1");
/// assert_eq!(instance.business_key(), Some("webhook-1"));
/// assert_eq!(instance.idempotency_key(), Some("order-1"));
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InstanceRef {
    id: InstanceId,
    process: ProcessUuid,
    environment: EnvironmentId,
    business_key: Option<String>,
    idempotency_key: Option<String>,
}

impl InstanceRef {
    /// The instance `id` of `process`, started in `environment`.
    pub fn new(id: InstanceId, process: ProcessUuid, environment: EnvironmentId) -> Self {
        Self {
            id,
            process,
            environment,
            business_key: None,
            idempotency_key: None,
        }
    }

    /// Records the business key the engine gave the instance.
    pub fn with_business_key(mut self, key: impl Into<String>) -> Self {
        self.business_key = Some(key.into());
        self
    }

    /// Records the caller's idempotency key of the start.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The engine's id of the instance.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// The process it is an instance of.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The environment it was started in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The engine's business key, when the start reported one (a replay
    /// knows only the idempotency key).
    pub fn business_key(&self) -> Option<&str> {
        self.business_key.as_deref()
    }

    /// The caller's idempotency key, when the start had one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
}

/// How a waited-for instance stands at the end of the wait.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Completion {
    /// It completed, with the engine's result: Temporal's workflow result,
    /// Camunda's variables.
    Completed(Value),
    /// It failed (or timed out in the engine); the engine's message, which
    /// a caller sees only when the host opts in.
    Failed(Option<String>),
    /// It was terminated.
    Terminated,
    /// It was cancelled.
    Cancelled,
    /// It is still running at the end of the wait.
    Running,
}

impl Completion {
    /// Its `status` in an answer: `completed`, `failed`, `terminated`,
    /// `cancelled` or `running`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Completed(_) => "completed",
            Self::Failed(_) => "failed",
            Self::Terminated => "terminated",
            Self::Cancelled => "cancelled",
            Self::Running => "running",
        }
    }
}
