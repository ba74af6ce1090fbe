//! The `[[environment]]` and `[[process]]` tables: environments with their
//! token digests, process models and their deployments.

use process_webhook::{
    Deployment, DeploymentId, Environment, EnvironmentId, EnvironmentToken, FieldSpec, OrganizationId,
    ProcessModel, ProcessUuid, StartForm, TokenDigest, VersionTag,
};
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::forms::{FieldTable, field_of};
use super::{BadConfig, File, OneOrMany, Place};

/// One `[[environment]]` table: an environment and its tokens, each named
/// by the variable that holds it or given as its SHA-256 digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvironmentTable {
    pub(super) id: Spanned<String>,
    pub(super) organization: Spanned<String>,
    pub(super) token_env: Option<Spanned<OneOrMany>>,
    token_sha256: Option<Spanned<OneOrMany>>,
}

/// One `[[process]]` table: a process model and its deployments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProcessTable {
    pub(super) uuid: Spanned<String>,
    pub(super) organization: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) definition_key: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) deployment: Vec<Spanned<DeploymentTable>>,
}

/// One `[[process.deployment]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeploymentTable {
    pub(super) environment: Spanned<String>,
    pub(super) version: Option<Spanned<u32>>,
    pub(super) draft: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) fields: Vec<Spanned<FieldTable>>,
}

/// What a file declares besides sources: environments with their token
/// digests, process models and their deployments.
pub(crate) struct Declared {
    pub(crate) environments: Vec<Environment>,
    pub(crate) tokens: Vec<(TokenDigest, Environment)>,
    pub(crate) models: Vec<ProcessModel>,
    pub(crate) deployments: Vec<Deployment>,
}

/// The environments, tokens, models and deployments of the file.
pub(super) fn declared_of(
    place: &Place<'_>,
    file: &File,
    engine: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Declared, BadConfig> {
    let mut declared = Declared {
        environments: Vec::new(),
        tokens: Vec::new(),
        models: Vec::new(),
        deployments: Vec::new(),
    };
    for table in &file.environment {
        let table = table.get_ref();
        if table.id.get_ref().trim().is_empty() {
            return Err(place.error(table.id.span(), "id", "an environment needs an id"));
        }
        if declared
            .environments
            .iter()
            .any(|e| e.id().as_str() == table.id.get_ref())
        {
            return Err(place.error(
                table.id.span(),
                "id",
                format!("two environments are named `{}`", table.id.get_ref()),
            ));
        }
        let environment = Environment::new(
            EnvironmentId::new(table.id.get_ref().clone()),
            OrganizationId::new(table.organization.get_ref().clone()),
        );
        let mut tokens = 0;
        if let Some(names) = &table.token_env {
            for name in names.get_ref().to_vec() {
                let token = env(&name).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    place.error(
                        names.span(),
                        "token_env",
                        format!(
                            "the environment variable {name} is not set (it holds a token of the environment)"
                        ),
                    )
                })?;
                if token.trim().chars().count() < crate::MIN_TOKEN_CHARS {
                    return Err(place.error(
                        names.span(),
                        "token_env",
                        format!(
                            "the token in {name} is too short: a token must have at least {} characters",
                            crate::MIN_TOKEN_CHARS
                        ),
                    ));
                }
                declared
                    .tokens
                    .push((EnvironmentToken::new(token.trim()).digest(), environment.clone()));
                tokens += 1;
            }
        }
        if let Some(digests) = &table.token_sha256 {
            for digest in digests.get_ref().to_vec() {
                let digest: TokenDigest = serde_json::from_value(Value::String(digest.to_ascii_lowercase()))
                    .map_err(|_| {
                        place.error(
                            digests.span(),
                            "token_sha256",
                            "a token's SHA-256 is 64 hex digits",
                        )
                    })?;
                declared.tokens.push((digest, environment.clone()));
                tokens += 1;
            }
        }
        if tokens == 0 {
            return Err(place.error(
                table.id.span(),
                "token_env",
                "an environment needs a token: token_env (a variable that holds it) or token_sha256 (its digest)",
            ));
        }
        declared.environments.push(environment);
    }
    for spanned in &file.process {
        let table = spanned.get_ref();
        let uuid: ProcessUuid = table
            .uuid
            .get_ref()
            .parse()
            .map_err(|_| place.error(table.uuid.span(), "uuid", "not a UUID"))?;
        if let (Some(engine), None) = (engine, &table.definition_key) {
            // Without it the engine would be asked for a definition (a
            // workflow type) named by the UUID, which nothing deploys.
            return Err(place.error(
                spanned.span(),
                "definition_key",
                format!(
                    "process `{}` ({uuid}) has no definition_key: {engine} starts the process \
                     definition (workflow type) it names",
                    table.name.get_ref()
                ),
            ));
        }
        if declared.models.iter().any(|m| *m.uuid() == uuid) {
            return Err(place.error(
                table.uuid.span(),
                "uuid",
                format!("two processes have uuid {uuid}"),
            ));
        }
        let organization = OrganizationId::new(table.organization.get_ref().clone());
        declared.models.push(ProcessModel::new(
            uuid,
            organization.clone(),
            table.name.get_ref().clone(),
        ));
        for deployment in &table.deployment {
            let deployment = deployment.get_ref();
            let environment = declared
                .environments
                .iter()
                .find(|e| e.id().as_str() == deployment.environment.get_ref())
                .ok_or_else(|| {
                    place.error(
                        deployment.environment.span(),
                        "environment",
                        format!(
                            "no [[environment]] is named `{}`",
                            deployment.environment.get_ref()
                        ),
                    )
                })?;
            if *environment.organization() != organization {
                return Err(place.error(
                    deployment.environment.span(),
                    "environment",
                    format!(
                        "environment `{}` belongs to organization `{}`, the process to `{}`",
                        environment.id(),
                        environment.organization(),
                        organization
                    ),
                ));
            }
            let draft = deployment.draft.as_ref().is_some_and(|d| *d.get_ref());
            let version = match (&deployment.version, draft) {
                (Some(version), true) => {
                    return Err(place.error(version.span(), "version", "a draft has no version number"));
                }
                (Some(version), false) => VersionTag::Released(*version.get_ref()),
                (None, true) => VersionTag::Draft,
                (None, false) => {
                    return Err(place.error(
                        deployment.environment.span(),
                        "version",
                        "a deployment needs `version = N` or `draft = true`",
                    ));
                }
            };
            let mut fields = Vec::new();
            for field in &deployment.fields {
                let spec = field_of(place, field.get_ref())?;
                if fields.iter().any(|f: &FieldSpec| f.name() == spec.name()) {
                    return Err(place.error(
                        field.get_ref().name.span(),
                        "fields.name",
                        format!("two fields are named `{}`", spec.name()),
                    ));
                }
                fields.push(spec);
            }
            let id = deployment_id(&uuid, environment.id(), version);
            if declared
                .deployments
                .iter()
                .any(|d| d.process() == &uuid && d.environment() == environment.id())
            {
                return Err(place.error(
                    deployment.environment.span(),
                    "environment",
                    format!("process {uuid} is deployed to `{}` twice", environment.id()),
                ));
            }
            let mut deployed =
                Deployment::new(uuid, version, environment.id().clone(), StartForm::new(fields)).with_id(id);
            if let Some(key) = &table.definition_key {
                deployed = deployed.with_definition_key(key.get_ref().clone());
            }
            declared.deployments.push(deployed);
        }
    }
    Ok(declared)
}

/// A deployment's id, the same for the same process, environment and
/// version at every start of every replica: applying the file to a
/// database again adds nothing.
pub(super) fn deployment_id(
    process: &ProcessUuid,
    environment: &EnvironmentId,
    version: VersionTag,
) -> DeploymentId {
    use sha2::{Digest as _, Sha256};
    let version = match version {
        VersionTag::Released(n) => n.to_string(),
        _ => "draft".to_owned(),
    };
    let digest = Sha256::digest(format!("{process}\n{environment}\n{version}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().into()
}
