//! [`StartOutcome`]: what a start answers, and what a later wait for the
//! instance needs.

use serde::Serialize as DeriveSerialize;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{Map, Value};

use crate::id::{DeliveryId, DeploymentId, EnvironmentId, InstanceId, ProcessUuid};
use crate::model::Deployment;

/// A started (or, with idempotency, replayed) instance.
///
/// Serialized as `{"instanceId", "processUuid", "version", "environment",
/// "replayed"}`; the body of the `202` answer is those fields after
/// `"status": "started"`. It also keeps the instance as
/// an engine knows it ([`instance`](Self::instance): the business key the
/// engine gave it, the caller's idempotency key), which a wait for the
/// instance hands to [`Engine::wait`](crate::Engine::wait).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StartOutcome {
    instance: InstanceRef,
    version: u32,
    deployment_id: DeploymentId,
    replayed: bool,
}

impl Serialize for StartOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut outcome = serializer.serialize_struct("StartOutcome", 5)?;
        outcome.serialize_field("instanceId", self.instance.id())?;
        outcome.serialize_field("processUuid", self.instance.process())?;
        outcome.serialize_field("version", &self.version)?;
        outcome.serialize_field("environment", self.instance.environment())?;
        outcome.serialize_field("replayed", &self.replayed)?;
        outcome.end()
    }
}

impl StartOutcome {
    /// The outcome of a start of `deployment` (released as `version`) that
    /// the engine answered with `instance_id`.
    pub(crate) fn new(instance_id: InstanceId, deployment: &Deployment, version: u32) -> Self {
        Self {
            instance: InstanceRef::new(
                instance_id,
                *deployment.process(),
                deployment.environment().clone(),
            ),
            version,
            deployment_id: deployment.id(),
            replayed: false,
        }
    }

    /// An outcome from its stored parts (a store reading one back).
    #[cfg_attr(not(any(feature = "postgres", feature = "redis")), allow(dead_code))]
    pub(crate) fn from_parts(
        instance_id: InstanceId,
        process: ProcessUuid,
        version: u32,
        environment: EnvironmentId,
        deployment_id: DeploymentId,
    ) -> Self {
        Self {
            instance: InstanceRef::new(instance_id, process, environment),
            version,
            deployment_id,
            replayed: false,
        }
    }

    /// The same outcome, with the business key the engine gave the instance.
    pub(crate) fn with_business_key(mut self, key: Option<&str>) -> Self {
        if let Some(key) = key {
            self.instance = self.instance.with_business_key(key);
        }
        self
    }

    /// The same outcome, with the caller's idempotency key of the start.
    pub(crate) fn with_idempotency_key(mut self, key: Option<impl Into<String>>) -> Self {
        if let Some(key) = key {
            self.instance = self.instance.with_idempotency_key(key);
        }
        self
    }

    /// The same outcome, marked as a replay of an earlier start.
    pub(crate) fn into_replay(mut self) -> Self {
        self.replayed = true;
        self
    }

    /// The new instance's id.
    pub fn instance_id(&self) -> &InstanceId {
        self.instance.id()
    }

    /// The instance as an engine knows it: its id, process and environment,
    /// the engine's business key (after a start that reported one) and the
    /// caller's idempotency key (when the start had one).
    pub fn instance(&self) -> &InstanceRef {
        &self.instance
    }

    /// The process started.
    pub fn process(&self) -> &ProcessUuid {
        self.instance.process()
    }

    /// The version started.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it started in.
    pub fn environment(&self) -> &EnvironmentId {
        self.instance.environment()
    }

    /// The deployment that started.
    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// Whether this answers a repeated call with the outcome of the first
    /// (idempotency), rather than a new start.
    pub fn is_replayed(&self) -> bool {
        self.replayed
    }
}

/// An outcome of a released deployment of the nil process in `production`,
/// for the idempotency stores' unit tests and the conformance suite.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn sample_outcome(id: InstanceId) -> StartOutcome {
    let deployment = Deployment::new(
        ProcessUuid::from(uuid::Uuid::nil()),
        crate::model::VersionTag::Released(1),
        EnvironmentId::new("production"),
        Default::default(),
    );
    StartOutcome::new(id, &deployment, 1)
}

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

/// The answer to a dry run: what a start would hand the engine.
///
/// Serialized as `{"dryRun": true, "processUuid", "version", "environment",
/// "deploymentId", "definitionKey", "variables"}`, the body of the `200`
/// answer.
#[derive(Clone, PartialEq, Debug, DeriveSerialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    dry_run: bool,
    process_uuid: ProcessUuid,
    version: u32,
    environment: EnvironmentId,
    deployment_id: DeploymentId,
    definition_key: String,
    variables: Map<String, Value>,
}

impl DryRun {
    /// What a start of `deployment` (released as `version`) would hand the
    /// engine.
    pub(crate) fn new(deployment: &Deployment, version: u32, variables: Map<String, Value>) -> Self {
        Self {
            dry_run: true,
            process_uuid: *deployment.process(),
            version,
            environment: deployment.environment().clone(),
            deployment_id: deployment.id(),
            definition_key: deployment.definition_key().to_owned(),
            variables,
        }
    }

    /// The process that would start.
    pub fn process(&self) -> &ProcessUuid {
        &self.process_uuid
    }

    /// The version that would start.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it would start in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The deployment that would start.
    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// The engine's key for the definition.
    pub fn definition_key(&self) -> &str {
        &self.definition_key
    }

    /// The exact variables the engine would get.
    pub fn variables(&self) -> &Map<String, Value> {
        &self.variables
    }
}

/// A start that passed every check and was kept in the starter's inbox, to
/// be started by a dispatcher (the engine was away, or the starter keeps
/// every start).
///
/// Serialized as `{"status": "queued", "deliveryId", "processUuid",
/// "version", "environment", "replayed"}`: the body of its `202` answer.
#[derive(Clone, PartialEq, Eq, Debug, DeriveSerialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedStart {
    status: &'static str,
    delivery_id: DeliveryId,
    process_uuid: ProcessUuid,
    version: u32,
    environment: EnvironmentId,
    replayed: bool,
}

impl QueuedStart {
    /// The start kept as `delivery_id`, of `process` released as `version`
    /// in `environment`.
    pub(crate) fn new(
        delivery_id: DeliveryId,
        process: ProcessUuid,
        version: u32,
        environment: EnvironmentId,
    ) -> Self {
        Self {
            status: "queued",
            delivery_id,
            process_uuid: process,
            version,
            environment,
            replayed: false,
        }
    }

    /// The same answer, to a repeated call of the same key.
    pub(crate) fn into_replay(mut self) -> Self {
        self.replayed = true;
        self
    }

    /// The kept start's id.
    pub fn delivery_id(&self) -> DeliveryId {
        self.delivery_id
    }

    /// The process it will start.
    pub fn process(&self) -> &ProcessUuid {
        &self.process_uuid
    }

    /// The version it will start.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it will start in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// Whether this answers a repeated call of a key whose start is kept.
    pub fn is_replayed(&self) -> bool {
        self.replayed
    }
}

/// What a start accepted answers: started now, or kept to start later.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Accepted {
    /// The engine started the instance (or, replayed, had started it).
    Started(StartOutcome),
    /// The start is kept in the inbox; a dispatcher starts it.
    Queued(QueuedStart),
}

impl Accepted {
    /// Whether this answers a repeated call of a key.
    pub fn is_replayed(&self) -> bool {
        match self {
            Self::Started(outcome) => outcome.is_replayed(),
            Self::Queued(queued) => queued.is_replayed(),
        }
    }
}
