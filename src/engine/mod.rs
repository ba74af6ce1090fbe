//! The process engine a start hands its variables to.

use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "camunda7")]
mod camunda7;
#[cfg(feature = "camunda8")]
mod camunda8;
#[cfg(any(feature = "camunda7", feature = "camunda8", feature = "temporal"))]
mod http;
mod memory;
#[cfg(feature = "temporal")]
mod temporal;
mod wait;

#[cfg(feature = "camunda7")]
pub use camunda7::{Camunda7Engine, Camunda7Problem};
#[cfg(feature = "camunda8")]
pub use camunda8::{Camunda8Auth, Camunda8Engine, Camunda8Problem};
pub use memory::{InMemoryEngine, StartedInstance};
use serde_json::{Map, Value};
#[cfg(feature = "temporal")]
pub use temporal::{TemporalEngine, TemporalProblem};
pub use wait::Completion;

pub use crate::outcome::InstanceRef;

pub use crate::port_error::{EngineError, EngineErrorKind};

use crate::form::StartForm;
use crate::id::{DeploymentId, EnvironmentId, InstanceId, ProcessUuid};
use crate::idempotency::PayloadFingerprint;
use crate::model::Deployment;
use crate::trace::TraceContext;

/// A process engine that starts instances of deployed definitions.
///
/// # Contract
///
/// - `start` starts one instance and returns it, or fails without starting
///   one. An engine that cannot tell (a timeout after sending) says so with a
///   retryable [`EngineError`]; the `idempotency_key` of the command, when
///   there is one, lets it recognise a repeated start.
/// - It must not block the executor: do I/O asynchronously.
///
/// # Methods, as you write them
///
/// With [`#[async_trait]`](crate::async_trait) (re-exported here):
///
/// ```text
/// async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError>;
/// ```
///
/// The crate docs have a complete implementation.
///
/// # Wrappers
///
/// An engine that wraps another forwards [`ready`](Self::ready),
/// [`wait`](Self::wait), [`name`](Self::name),
/// [`recovery`](Self::recovery) and [`find_started`](Self::find_started)
/// too: their defaults would hide the inner engine's. `Arc<E>` does.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Starts an instance.
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError>;

    /// Whether the engine can take starts now: a cheap round trip that
    /// starts nothing (Camunda 7's `GET /version`, Camunda 8's
    /// `GET /v2/topology`, Temporal's namespace description), used by
    /// [`WebhookStarter::ready`](crate::WebhookStarter::ready). The default
    /// says yes.
    async fn ready(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// Waits at most `within` for `instance` to end, and says how it stands
    /// then ([`Completion::Running`] when the time ran out), or `Ok(None)`
    /// when this engine cannot wait (the default). An implementation must
    /// return by `within` (plus a request's round trip), hold no thread
    /// while it waits, and never touch the instance: a caller that hangs up
    /// drops this future and the instance runs on.
    ///
    /// [`WebhookStarter`](crate::WebhookStarter) calls it for a call with
    /// `Prefer: wait=N`.
    async fn wait(
        &self,
        instance: &InstanceRef,
        within: Duration,
    ) -> Result<Option<Completion>, EngineError> {
        let _ = (instance, within);
        Ok(None)
    }

    /// A short, fixed name for the engine's kind (`memory`, `camunda7`,
    /// `camunda8`, `temporal`), the `engine` label of the engine-call
    /// metric. The default is `custom`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// What this engine can do for a keyed start that may or may not have
    /// happened (its replica died mid-start): the idempotency store's
    /// reservation of the key is then taken over by the key's next delivery
    /// instead of holding the key until its lease ends. The default is
    /// [`Recovery::None`]: the lease holds, as it must for an engine that
    /// can neither deduplicate nor find a start.
    fn recovery(&self) -> Recovery {
        Recovery::None
    }

    /// The instance a start of `command` (which has an idempotency key)
    /// started, if one did: called only by an engine whose
    /// [`recovery`](Self::recovery) is [`Recovery::FindsByBusinessKey`],
    /// once every call that may have started it has ended. `Ok(None)` must
    /// mean that none was started: the start then happens. The default
    /// refuses (an engine that does not find starts never says none was
    /// started).
    async fn find_started(&self, command: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
        let _ = command;
        Err(EngineError::refused(
            "this engine cannot find a start by its business key",
        ))
    }
}

/// What an [`Engine`] can do for a keyed start that may or may not have
/// happened, as [`Engine::recovery`] says; the idempotency store's
/// reservation of a key whose start was cut off is taken over accordingly.
///
/// ```
/// use std::time::Duration;
/// use process_webhook::{Engine, InMemoryEngine, Recovery, TAKEOVER_MARGIN};
///
/// assert_eq!(InMemoryEngine::new().recovery(), Recovery::None);
/// let camunda = Recovery::FindsByBusinessKey { call_deadline: Duration::from_secs(10) };
/// assert_eq!(camunda.takeover_after(TAKEOVER_MARGIN), Some(Duration::from_secs(15)));
/// assert_eq!(Recovery::Deduplicates.takeover_after(TAKEOVER_MARGIN), Some(Duration::ZERO));
/// assert_eq!(Recovery::None.takeover_after(TAKEOVER_MARGIN), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Recovery {
    /// Nothing: a reservation holds its key until the store's lease ends
    /// (`409 start_in_progress` until then).
    None,
    /// A repeated start of the same command returns the same instance
    /// (Temporal: the workflow id and request id follow the key and the
    /// variables). The key's next delivery takes the reservation over at
    /// once and starts again.
    Deduplicates,
    /// [`Engine::find_started`] finds a start by its business key (Camunda
    /// 7). The key's next delivery takes the reservation over once it is
    /// older than `call_deadline` plus a margin ([`TAKEOVER_MARGIN`] unless
    /// the starter sets another): every call that may have started the
    /// instance has ended by then. It starts only if no instance is found.
    FindsByBusinessKey {
        /// The longest one start call of the engine takes (its timeout).
        call_deadline: Duration,
    },
}

/// What [`Recovery::FindsByBusinessKey`] adds to the engine's call
/// deadline before a reservation is taken over, by default: 5 seconds, for
/// the holder's own store calls after its engine call ended
/// ([`WebhookStarter::with_takeover_margin`](crate::WebhookStarter::with_takeover_margin)
/// sets another).
pub const TAKEOVER_MARGIN: Duration = Duration::from_secs(5);

impl Recovery {
    /// How old a reservation must be before the key's next delivery takes
    /// it over: zero for an engine that deduplicates, the call deadline
    /// plus `margin` for one that finds starts, never (`None`) for one that
    /// can do neither.
    pub fn takeover_after(self, margin: Duration) -> Option<Duration> {
        match self {
            Self::None => None,
            Self::Deduplicates => Some(Duration::ZERO),
            Self::FindsByBusinessKey { call_deadline } => Some(call_deadline.saturating_add(margin)),
        }
    }
}

#[async_trait]
impl<T: Engine + ?Sized> Engine for std::sync::Arc<T> {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        (**self).start(command).await
    }

    async fn ready(&self) -> Result<(), EngineError> {
        (**self).ready().await
    }

    async fn wait(
        &self,
        instance: &InstanceRef,
        within: Duration,
    ) -> Result<Option<Completion>, EngineError> {
        (**self).wait(instance, within).await
    }

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn recovery(&self) -> Recovery {
        (**self).recovery()
    }

    async fn find_started(&self, command: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
        (**self).find_started(command).await
    }
}

/// Everything an engine needs to start one instance.
///
/// The start builds it from the deployment it resolved and the variables
/// it validated; it carries what engines need so that none reads a store
/// again: the deployment's start form ([`start_form`](Self::start_form),
/// e.g. for the kinds of its fields) and the fingerprint of the caller's
/// payload when the start has an idempotency key.
///
/// A host's tests build one with [`new`](Self::new) and the `with_*`
/// methods: more fields may come, so it cannot be built as a literal.
///
/// # Example
///
/// ```
/// use process_webhook::*;
/// use serde_json::json;
///
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
/// let form = StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]);
/// let deployment = Deployment::new(uuid, VersionTag::Released(3), EnvironmentId::new("production"), form);
/// let variables = json!({"orderNumber": "123456"}).as_object().unwrap().clone();
/// let command = StartCommand::new(&deployment, 3, variables).with_idempotency_key("order-1");
/// assert_eq!(command.process, uuid);
/// assert_eq!(command.deployment, deployment.id());
/// assert_eq!(command.idempotency_key.as_deref(), Some("order-1"));
/// assert_eq!(command.start_form().fields().len(), 1);
/// ```
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub struct StartCommand {
    /// The process started.
    pub process: ProcessUuid,
    /// The deployment whose version starts.
    pub deployment: DeploymentId,
    /// The engine's key for the deployed definition.
    pub definition_key: String,
    /// The released version number.
    pub version: u32,
    /// The environment the start happens in.
    pub environment: EnvironmentId,
    /// The validated payload, defaults filled in.
    pub variables: Map<String, Value>,
    /// The caller's idempotency key, when there is one.
    pub idempotency_key: Option<String>,
    /// The fingerprint of the caller's payload (before defaults were filled
    /// in), when the start has an idempotency key: the one the idempotency
    /// store compares, from which an engine may derive a request id.
    pub fingerprint: Option<PayloadFingerprint>,
    /// The caller's W3C trace context, when it sent a valid `traceparent`:
    /// an engine passes it on so that the instance joins the caller's trace.
    pub trace: Option<TraceContext>,
    /// The deployment itself (shared, not copied), for its start form.
    resolved: Deployment,
}

impl StartCommand {
    /// The command that starts `deployment`, released as `version`, with
    /// these variables (validated by the caller), and no idempotency key,
    /// fingerprint or trace context.
    pub fn new(deployment: &Deployment, version: u32, variables: Map<String, Value>) -> Self {
        Self {
            process: *deployment.process(),
            deployment: deployment.id(),
            definition_key: deployment.definition_key().to_owned(),
            version,
            environment: deployment.environment().clone(),
            variables,
            idempotency_key: None,
            fingerprint: None,
            trace: None,
            resolved: deployment.clone(),
        }
    }

    /// Sets the caller's idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the fingerprint of the caller's payload.
    pub fn with_fingerprint(mut self, fingerprint: PayloadFingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Sets the caller's trace context.
    pub fn with_trace_context(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The start form of the deployment that starts, which the variables
    /// satisfy: an engine reads the kinds of its fields from it (Camunda 7
    /// sends `date` and `dateTime` fields as Camunda `Date`s).
    pub fn start_form(&self) -> &StartForm {
        self.resolved.start_form()
    }

    /// The deployment that starts (a store keeping the command keeps it).
    #[cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]
    pub(crate) fn resolved(&self) -> &Deployment {
        &self.resolved
    }
}

/// The default name of the variable that carries the caller's
/// `traceparent` into a Camunda instance.
#[cfg(any(feature = "camunda7", feature = "camunda8"))]
pub const DEFAULT_TRACE_VARIABLE: &str = "traceparent";

/// The trace variable's name and value for `command`, when it has a trace
/// context, a name is configured, and the payload has no variable of that
/// name (a payload's own variable is never overwritten).
#[cfg(any(feature = "camunda7", feature = "camunda8"))]
fn trace_variable_of<'a>(command: &'a StartCommand, name: Option<&'a str>) -> Option<(&'a str, &'a str)> {
    let (trace, name) = (command.trace.as_ref()?, name?);
    (!command.variables.contains_key(name)).then(|| (name, trace.traceparent()))
}

/// A process instance an engine started.
///
/// ```
/// use process_webhook::{InstanceId, ProcessInstance};
/// let instance = ProcessInstance::new(InstanceId::new("42")).with_business_key("order-123456");
/// assert_eq!(instance.id().as_str(), "42");
/// assert_eq!(instance.business_key(), Some("order-123456"));
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProcessInstance {
    id: InstanceId,
    definition_id: Option<String>,
    business_key: Option<String>,
}

impl ProcessInstance {
    /// An instance with this id.
    pub fn new(id: InstanceId) -> Self {
        Self {
            id,
            definition_id: None,
            business_key: None,
        }
    }

    /// Records the engine's id of the exact definition started.
    pub fn with_definition_id(mut self, id: impl Into<String>) -> Self {
        self.definition_id = Some(id.into());
        self
    }

    /// Records the business key the engine stored with the instance.
    pub fn with_business_key(mut self, key: impl Into<String>) -> Self {
        self.business_key = Some(key.into());
        self
    }

    /// The instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// The engine's id of the exact definition started, when it said.
    pub fn definition_id(&self) -> Option<&str> {
        self.definition_id.as_deref()
    }

    /// The business key, when there is one.
    pub fn business_key(&self) -> Option<&str> {
        self.business_key.as_deref()
    }
}
