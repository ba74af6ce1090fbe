//! Process models, their deployments, and the environments they are deployed to.

use std::fmt;
use std::sync::Arc;

use smol_str::SmolStr;

use serde::{Deserialize, Serialize};

use crate::error::WebhookError;
use crate::form::StartForm;
use crate::id::{DeploymentId, EnvironmentId, OrganizationId, ProcessUuid};
use crate::signature::SigningSecret;

/// An environment of an organization (development, production, …), the scope
/// of one [`EnvironmentToken`](crate::EnvironmentToken).
///
/// # Example
///
/// ```
/// use process_webhook::{Environment, EnvironmentId, OrganizationId};
///
/// let env = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
/// assert_eq!(env.id().as_str(), "production");
/// assert_eq!(env.organization().as_str(), "acme");
/// ```
///
/// # Serialized form
///
/// `{"id": "production", "organization": "acme"}`. Signing secrets are
/// secrets: they are never serialized (a deserialized environment has none);
/// keep them where you keep secrets and add them with
/// [`with_signing_secret`](Self::with_signing_secret).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Environment {
    id: EnvironmentId,
    organization: OrganizationId,
    // `None` rather than an empty slice: cloning an environment that needs
    // no signatures (most do not, and every start clones one) then touches
    // no shared reference count.
    #[serde(skip)]
    signing_secrets: Option<Arc<[SigningSecret]>>,
}

impl Environment {
    /// The environment `id` of `organization`.
    pub fn new(id: EnvironmentId, organization: OrganizationId) -> Self {
        Self {
            id,
            organization,
            signing_secrets: None,
        }
    }

    /// Requires signed webhooks (Standard Webhooks) for this environment, and
    /// accepts signatures made with `secret`. Call it again to accept more than
    /// one secret at a time, e.g. while rotating.
    pub fn with_signing_secret(mut self, secret: SigningSecret) -> Self {
        let mut secrets = self.signing_secrets().to_vec();
        secrets.push(secret);
        self.signing_secrets = Some(secrets.into());
        self
    }

    /// The environment's id.
    pub fn id(&self) -> &EnvironmentId {
        &self.id
    }

    /// The organization the environment belongs to.
    pub fn organization(&self) -> &OrganizationId {
        &self.organization
    }

    /// The secrets a signed webhook may be signed with; empty when the
    /// environment does not require signatures.
    pub fn signing_secrets(&self) -> &[SigningSecret] {
        self.signing_secrets.as_deref().unwrap_or_default()
    }
}

/// A process model as designed in the studio: a UUID, an owner and a name.
///
/// # Example
///
/// ```
/// use process_webhook::{OrganizationId, ProcessModel, ProcessUuid};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let model = ProcessModel::new(uuid, OrganizationId::new("acme"), "Order intake");
/// assert_eq!(model.name(), "Order intake");
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
///
/// # Serialized form
///
/// `{"uuid": "dd9759e0-…", "organization": "acme", "name": "Order intake"}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProcessModel {
    uuid: ProcessUuid,
    organization: OrganizationId,
    name: SmolStr,
}

impl ProcessModel {
    /// A model with this UUID, owned by `organization`.
    pub fn new(uuid: ProcessUuid, organization: OrganizationId, name: impl Into<String>) -> Self {
        Self {
            uuid,
            organization,
            name: SmolStr::from(name.into()),
        }
    }

    /// The model's UUID.
    pub fn uuid(&self) -> &ProcessUuid {
        &self.uuid
    }

    /// The organization that owns the model.
    pub fn organization(&self) -> &OrganizationId {
        &self.organization
    }

    /// The model's human-readable name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Which version of a model a deployment carries.
///
/// A `Draft` can be deployed (e.g. to try it in the studio) but can never be
/// started by webhook. Serialized as `"draft"` or the version number.
///
/// ```
/// use process_webhook::VersionTag;
/// assert_eq!(VersionTag::Released(3).to_string(), "v3");
/// assert_eq!(VersionTag::Draft.to_string(), "draft");
/// assert!(VersionTag::Draft.is_draft());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VersionTag {
    /// A version still being edited.
    Draft,
    /// A released version, numbered from 1.
    Released(u32),
}

impl VersionTag {
    /// Whether this is a draft.
    pub fn is_draft(&self) -> bool {
        matches!(self, Self::Draft)
    }

    /// The released version number, or `None` for a draft.
    pub fn number(&self) -> Option<u32> {
        match self {
            Self::Draft => None,
            Self::Released(n) => Some(*n),
        }
    }
}

impl fmt::Display for VersionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Draft => f.write_str("draft"),
            Self::Released(n) => write!(f, "v{n}"),
        }
    }
}

/// A version of a process model deployed to one environment, with the start
/// form that a webhook payload is checked against.
///
/// # Example
///
/// ```
/// use process_webhook::{Deployment, EnvironmentId, FieldKind, FieldSpec, ProcessUuid, StartForm, VersionTag};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let form = StartForm::new([FieldSpec::mandatory("customerName", FieldKind::Text)]);
/// let deployment = Deployment::new(uuid, VersionTag::Released(2), EnvironmentId::new("production"), form)
///     .with_definition_key("order-intake");
/// assert_eq!(deployment.definition_key(), "order-intake");
/// assert_eq!(deployment.version(), VersionTag::Released(2));
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
///
/// # Its id
///
/// [`Deployment::new`] gives the deployment a **random** id
/// ([`DeploymentId`]), which start outcomes report. A store must keep that id
/// with the deployment (or give it one with [`with_id`](Self::with_id) when
/// it reads the deployment back), so that the same deployment has the same
/// id every time it is read.
///
/// # Serialized form
///
/// `{"id": "…", "process": "dd9759e0-…", "version": {"released": 1}` (or
/// `"draft"`)`, "environment": "production", "startForm": {"fields": […]},
/// "definitionKey": "order-intake"}`: the id is kept.
///
/// A deployment is one shared value: a clone (what a store hands each
/// start) costs one reference count, whatever its form holds.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Deployment(Arc<DeploymentData>);

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentData {
    id: DeploymentId,
    process: ProcessUuid,
    version: VersionTag,
    environment: EnvironmentId,
    start_form: StartForm,
    definition_key: String,
}

impl fmt::Debug for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = &*self.0;
        f.debug_struct("Deployment")
            .field("id", &data.id)
            .field("process", &data.process)
            .field("version", &data.version)
            .field("environment", &data.environment)
            .field("start_form", &data.start_form)
            .field("definition_key", &data.definition_key)
            .finish()
    }
}

impl Deployment {
    /// A deployment of `version` of `process` to `environment`, with a fresh
    /// random [`DeploymentId`] and the process UUID's text as the engine's
    /// definition key.
    pub fn new(
        process: ProcessUuid,
        version: VersionTag,
        environment: EnvironmentId,
        start_form: StartForm,
    ) -> Self {
        Self(Arc::new(DeploymentData {
            id: DeploymentId::new_random(),
            process,
            version,
            environment,
            start_form,
            definition_key: process.to_string(),
        }))
    }

    /// Sets the engine's key for the deployed definition (e.g. Camunda's
    /// process definition key).
    pub fn with_definition_key(mut self, key: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.0).definition_key = key.into();
        self
    }

    /// Sets the id, for a host that loads deployments it stored earlier.
    pub fn with_id(mut self, id: DeploymentId) -> Self {
        Arc::make_mut(&mut self.0).id = id;
        self
    }

    /// The deployment's id.
    pub fn id(&self) -> DeploymentId {
        self.0.id
    }

    /// The deployed process.
    pub fn process(&self) -> &ProcessUuid {
        &self.0.process
    }

    /// The deployed version.
    pub fn version(&self) -> VersionTag {
        self.0.version
    }

    /// The version a webhook may start: the released version's number.
    /// The draft rule has its one home here: **a draft is never started by
    /// webhook**, and its schema is never answered either.
    ///
    /// # Errors
    ///
    /// [`WebhookError::DraftVersion`] (`409 draft_version`) for a draft.
    ///
    /// # Example
    ///
    /// ```
    /// use process_webhook::*;
    ///
    /// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    /// let production = EnvironmentId::new("production");
    /// let released = Deployment::new(uuid, VersionTag::Released(2), production.clone(), StartForm::default());
    /// assert_eq!(released.startable_version().unwrap(), 2);
    /// let draft = Deployment::new(uuid, VersionTag::Draft, production, StartForm::default());
    /// assert_eq!(draft.startable_version().unwrap_err().code(), "draft_version");
    /// ```
    pub fn startable_version(&self) -> Result<u32, WebhookError> {
        match self.0.version {
            VersionTag::Released(n) => Ok(n),
            VersionTag::Draft => Err(WebhookError::DraftVersion {
                process: self.0.process,
                environment: self.0.environment.clone(),
            }),
        }
    }

    /// The environment deployed to.
    pub fn environment(&self) -> &EnvironmentId {
        &self.0.environment
    }

    /// The start form a webhook payload must satisfy.
    pub fn start_form(&self) -> &StartForm {
        &self.0.start_form
    }

    /// The engine's key for the deployed definition.
    pub fn definition_key(&self) -> &str {
        &self.0.definition_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::{FieldKind, FieldSpec};

    #[test]
    fn a_version_is_a_draft_or_a_numbered_release() {
        assert!(VersionTag::Draft.is_draft());
        assert_eq!(VersionTag::Draft.number(), None);
        assert_eq!(VersionTag::Draft.to_string(), "draft");
        for n in [1, 2, 7, u32::MAX] {
            let released = VersionTag::Released(n);
            assert!(!released.is_draft());
            assert_eq!(released.number(), Some(n));
            assert_eq!(released.to_string(), format!("v{n}"));
        }
    }

    #[test]
    fn a_model_and_an_environment_give_back_what_they_were_made_with() {
        let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
        let model = ProcessModel::new(process, OrganizationId::new("acme"), "Order intake");
        assert_eq!(
            (model.uuid(), model.organization().as_str(), model.name()),
            (&process, "acme", "Order intake")
        );

        let plain = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
        assert!(plain.signing_secrets().is_empty());
        let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
        let signed = plain
            .clone()
            .with_signing_secret(old.clone())
            .with_signing_secret(new.clone());
        assert_eq!(
            (signed.id(), signed.organization()),
            (plain.id(), plain.organization())
        );
        let signatures: Vec<String> = signed
            .signing_secrets()
            .iter()
            .map(|secret| secret.sign("msg_1", 1, b"{}"))
            .collect();
        assert_eq!(
            signatures,
            [old.sign("msg_1", 1, b"{}"), new.sign("msg_1", 1, b"{}")],
            "both secrets, in the order they were added"
        );
    }

    #[test]
    fn debug_of_a_deployment_shows_its_fields() {
        let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
        let deployment = Deployment::new(
            process,
            VersionTag::Released(3),
            EnvironmentId::new("production"),
            StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]),
        )
        .with_definition_key("order-intake");
        let shown = format!("{deployment:?}");
        for part in [
            "Deployment {",
            &deployment.id().to_string(),
            "dd9759e0-cc94-11ed-938f-13cf60270555",
            "Released(3)",
            "production",
            "orderNumber",
            "\"order-intake\"",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
    }
}
