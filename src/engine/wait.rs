//! Waiting for a started instance to end: what an engine is asked
//! ([`InstanceRef`]) and what it answers ([`Completion`]).

use serde_json::Value;

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
