//! The engine the server starts processes on, chosen by the variables set,
//! and one printed line per start.

use std::sync::Arc;

use async_trait::async_trait;
use process_webhook::*;

/// An engine that prints one line for each start.
pub(crate) struct PrintingEngine<E>(E);

#[async_trait]
impl<E: Engine> Engine for PrintingEngine<E> {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let (process, environment) = (command.process, command.environment.clone());
        let instance = self.0.start(command).await?;
        println!("started instance {} of {process} in {environment}", instance.id());
        Ok(instance)
    }

    async fn ready(&self) -> Result<(), EngineError> {
        self.0.ready().await
    }

    async fn wait(
        &self,
        instance: &InstanceRef,
        within: std::time::Duration,
    ) -> Result<Option<Completion>, EngineError> {
        self.0.wait(instance, within).await
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn recovery(&self) -> Recovery {
        self.0.recovery()
    }

    async fn find_started(&self, command: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
        self.0.find_started(command).await
    }
}

/// The engine the variables set (and the features built) choose:
/// Camunda 7 for `CAMUNDA_URL`, else Temporal for `TEMPORAL_URL`, else the
/// in-memory engine.
pub(crate) enum EngineChoice {
    Memory,
    #[cfg(feature = "camunda7")]
    Camunda7(String),
    #[cfg(feature = "temporal")]
    Temporal(String),
}

impl EngineChoice {
    pub(crate) fn from_env() -> Self {
        #[cfg(feature = "camunda7")]
        if let Ok(url) = std::env::var("CAMUNDA_URL") {
            return Self::Camunda7(url);
        }
        #[cfg(feature = "temporal")]
        if let Ok(url) = std::env::var("TEMPORAL_URL") {
            return Self::Temporal(url);
        }
        Self::Memory
    }

    /// The engine, where it starts definitions by key (every one but
    /// memory), as a config file's messages name it.
    pub(crate) fn keyed(&self) -> Option<&'static str> {
        match self {
            Self::Memory => None,
            #[cfg(feature = "camunda7")]
            Self::Camunda7(_) => Some("Camunda 7 (CAMUNDA_URL)"),
            #[cfg(feature = "temporal")]
            Self::Temporal(_) => Some("Temporal (TEMPORAL_URL)"),
        }
    }

    /// The engine itself, printing one line per start.
    pub(crate) fn engine(self) -> Arc<dyn Engine> {
        match self {
            #[cfg(feature = "camunda7")]
            Self::Camunda7(url) => {
                let mut engine = Camunda7Engine::new(&url);
                if let (Ok(user), Ok(password)) =
                    (std::env::var("CAMUNDA_USER"), std::env::var("CAMUNDA_PASSWORD"))
                {
                    engine = engine.with_basic_auth(user, password);
                }
                println!("engine: Camunda 7 at {url}");
                Arc::new(PrintingEngine(engine))
            }
            #[cfg(feature = "temporal")]
            Self::Temporal(url) => {
                let namespace = std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
                let queue =
                    std::env::var("TEMPORAL_TASK_QUEUE").unwrap_or_else(|_| "process-webhook".to_owned());
                let mut engine = TemporalEngine::new(&url, namespace.clone(), queue.clone());
                if let Ok(key) = std::env::var("TEMPORAL_API_KEY") {
                    engine = engine.with_api_key(key);
                }
                println!("engine: Temporal at {url} (namespace {namespace}, task queue {queue})");
                Arc::new(PrintingEngine(engine))
            }
            Self::Memory => {
                println!("engine: in memory");
                Arc::new(PrintingEngine(InMemoryEngine::new()))
            }
        }
    }
}
