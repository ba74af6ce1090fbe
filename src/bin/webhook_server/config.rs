//! The `WEBHOOK_CONFIG` file: its `[[source]]` tables, each a webhook
//! source of a process the server serves. A table the server cannot use
//! stops it, with the file, the line and the key named.
//!
//! ```toml
//! [[source]]
//! id = "github-orders"
//! process = "dd9759e0-cc94-11ed-938f-13cf60270555"
//! environment = "production"
//! scheme = "github"
//! secret_env = "GITHUB_WEBHOOK_SECRET"   # or a list, during a rotation
//! events = ["push"]                      # optional
//! ```
//!
//! `hmac` takes `header`, `prefix`, `algorithm` (`sha256`, `sha512`,
//! `sha1`), `encoding` (`hex`, `base64`), `timestamp_header` and
//! `delivery_header`; `twilio` takes `public_origin`; `basic` takes `user`.
//! Secrets are never in the file: `secret_env` names the environment
//! variables that hold them.
//!
//! A source may map the sender's payload into the start form, with RFC
//! 9535 JSONPath queries over `{"body", "headers", "query"}`:
//!
//! ```toml
//! body_variable = "delivery"                 # optional: the whole body
//! when = [{ path = "$.body.action", equals = ["opened", "reopened"] }]
//! delivery = "$.body.id"                     # optional: the delivery id
//!
//! [source.map]
//! author = "$.body.pull_request.user.login"
//! title = "$.body.pull_request.title"
//! ```

use std::ops::Range;

use process_webhook::{
    Condition, Deployment, DeploymentId, Environment, EnvironmentId, EnvironmentToken, FieldKind, FieldSpec,
    JsonQuery, OrganizationId, PayloadMapping, ProcessModel, ProcessUuid, SourceScheme, SourceSecret,
    StartForm, TokenDigest, VersionTag, WebhookSource,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

/// The file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    environment: Vec<Spanned<EnvironmentTable>>,
    #[serde(default)]
    process: Vec<Spanned<ProcessTable>>,
    #[serde(default)]
    source: Vec<Spanned<SourceTable>>,
}

/// One `[[environment]]` table: an environment and its tokens, each named
/// by the variable that holds it or given as its SHA-256 digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentTable {
    id: Spanned<String>,
    organization: Spanned<String>,
    token_env: Option<Spanned<OneOrMany>>,
    token_sha256: Option<Spanned<OneOrMany>>,
}

/// One `[[process]]` table: a process model and its deployments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessTable {
    uuid: Spanned<String>,
    organization: Spanned<String>,
    name: Spanned<String>,
    definition_key: Option<Spanned<String>>,
    #[serde(default)]
    deployment: Vec<Spanned<DeploymentTable>>,
}

/// One `[[process.deployment]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentTable {
    environment: Spanned<String>,
    version: Option<Spanned<u32>>,
    draft: Option<Spanned<bool>>,
    #[serde(default)]
    fields: Vec<Spanned<FieldTable>>,
}

/// One field of a deployment's start form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    mandatory: bool,
    default: Option<Spanned<toml::Value>>,
    options: Option<Spanned<Vec<String>>>,
}

/// What a file declares besides sources: environments with their token
/// digests, process models and their deployments.
pub(crate) struct Declared {
    pub(crate) environments: Vec<Environment>,
    pub(crate) tokens: Vec<(TokenDigest, Environment)>,
    pub(crate) models: Vec<ProcessModel>,
    pub(crate) deployments: Vec<Deployment>,
}

/// The file: what it declares (`None`: no `[[environment]]` and no
/// `[[process]]`, so the documented example is served) and its sources.
pub(crate) struct Config {
    pub(crate) declared: Option<Declared>,
    pub(crate) sources: Vec<WebhookSource>,
}

/// One `[[source]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceTable {
    id: Spanned<String>,
    process: Spanned<String>,
    environment: Spanned<String>,
    scheme: Spanned<String>,
    secret_env: Spanned<SecretEnv>,
    events: Option<Spanned<Vec<String>>>,
    header: Option<String>,
    prefix: Option<String>,
    algorithm: Option<String>,
    encoding: Option<String>,
    timestamp_header: Option<String>,
    delivery_header: Option<String>,
    public_origin: Option<String>,
    user: Option<String>,
    body_variable: Option<Spanned<String>>,
    map: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    when: Option<Vec<Spanned<WhenTable>>>,
    delivery: Option<Spanned<String>>,
}

/// One of `when`: a query and the values it may select.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenTable {
    path: Spanned<String>,
    equals: Spanned<Vec<toml::Value>>,
}

/// `secret_env`, `token_env`, `token_sha256`: one value, or several (a
/// rotation, several tokens).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one.clone()],
            Self::Many(many) => many.clone(),
        }
    }
}

type SecretEnv = OneOrMany;

/// A process the server serves in an environment, and the start form of
/// its deployment there (what a source's map must name).
#[derive(Clone)]
pub(crate) struct Served {
    pub(crate) process: ProcessUuid,
    pub(crate) environment: Environment,
    pub(crate) form: StartForm,
}

/// A problem with the file: where, which key, and what is wrong.
#[derive(Debug)]
pub(crate) struct BadConfig(String);

impl std::fmt::Display for BadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadConfig {}

/// The file's text and name, for messages that point into it.
struct Place<'a> {
    path: &'a str,
    text: &'a str,
    /// Whether the spans are the file's own (a JSON form is read as the
    /// TOML it converts to: its spans point nowhere in the file).
    positions: bool,
}

impl Place<'_> {
    /// `path:line:column` of `span` (`path` without positions).
    fn at(&self, span: Range<usize>) -> String {
        if !self.positions {
            return self.path.to_owned();
        }
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        format!("{}:{line}:{column}", self.path)
    }

    /// `path:line:column: key: problem` (`path: key: problem` without
    /// positions).
    fn error(&self, span: Range<usize>, key: &str, problem: impl std::fmt::Display) -> BadConfig {
        BadConfig(format!("{}: {key}: {problem}", self.at(span)))
    }

    /// What TOML (or serde reading it) found wrong, where: an unknown key
    /// names the closest known one.
    fn toml_error(&self, error: &toml::de::Error) -> BadConfig {
        let problem = unknown_key(error.message()).unwrap_or_else(|| format!("syntax: {}", error.message()));
        let at = error
            .span()
            .map_or_else(|| self.path.to_owned(), |span| self.at(span));
        BadConfig(format!("{at}: {problem}"))
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" as `unknown key
/// 'x' (did you mean 'a'?)`, or with the keys listed when none is close.
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    // A key within a few edits of the typed one, or one that begins with
    // it (`secret` for `secret_env`).
    let closest = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(distance, k)| *distance <= 2.max(k.len() / 3) || k.starts_with(key))
        .min_by_key(|(distance, _)| *distance);
    Some(match closest {
        Some((_, k)) => format!("unknown key '{key}' (did you mean '{k}'?)"),
        None if known.is_empty() => format!("unknown key '{key}' (this table takes no keys)"),
        None => format!("unknown key '{key}' (the keys here: {})", known.join(", ")),
    })
}

/// The file at `path`: what it declares, and its sources for the
/// processes and environments served (the file's own, or those of
/// `example` when it declares none); each secret and token read from the
/// environment variable its table names (through `env`, so that tests
/// need not set any).
pub(crate) fn read_config(
    path: &str,
    example: &[Served],
    engine: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, BadConfig> {
    let text =
        std::fs::read_to_string(path).map_err(|e| BadConfig(format!("{path}: cannot read the file: {e}")))?;
    parse_config(path, &text, example, engine, env)
}

/// The processes `deployments` start, each in its environment among
/// `environments`, with the deployment's start form.
pub(crate) fn served(deployments: &[Deployment], environments: &[Environment]) -> Vec<Served> {
    deployments
        .iter()
        .filter_map(|d| {
            let environment = environments.iter().find(|e| e.id() == d.environment())?;
            Some(Served {
                process: *d.process(),
                environment: environment.clone(),
                form: d.start_form().clone(),
            })
        })
        .collect()
}

/// [`read_config`] over the file's text. `engine` names the engine the
/// processes are served to when it is not the in-memory one: each of the
/// file's processes then needs its `definition_key`.
pub(crate) fn parse_config(
    path: &str,
    text: &str,
    example: &[Served],
    engine: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, BadConfig> {
    let place = Place {
        path,
        text,
        positions: true,
    };
    let file: File = toml::from_str(text).map_err(|e| place.toml_error(&e))?;
    let declared = if file.environment.is_empty() && file.process.is_empty() {
        None
    } else {
        Some(declared_of(&place, &file, engine, &env)?)
    };
    let served: Vec<Served> = match &declared {
        Some(declared) => served(&declared.deployments, &declared.environments),
        None => example.to_vec(),
    };
    let mut sources: Vec<WebhookSource> = Vec::new();
    for table in file.source {
        let span = table.span();
        let table = table.into_inner();
        let source = source_of(&place, span.clone(), table, &served, &env)?;
        if sources.iter().any(|s| s.id() == source.id()) {
            return Err(place.error(span, "id", format!("two sources are named {}", source.id())));
        }
        sources.push(source);
    }
    Ok(Config { declared, sources })
}

/// The sources of a file that declares nothing else (the documented
/// example's processes served): [`parse_config`]'s sources.
#[cfg(test)]
pub(crate) fn parse_sources(
    path: &str,
    text: &str,
    served: &[Served],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<WebhookSource>, BadConfig> {
    parse_config(path, text, served, None, env).map(|config| config.sources)
}

/// A start form's file, for `admin deploy`: TOML (`fields = [{ name, kind,
/// mandatory, default, options }, …]`) or, for a name ending in `.json`,
/// JSON (`{"fields": […]}` or the array alone), each field as in a
/// `[[process.deployment]]` table.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn read_form(path: &str) -> Result<StartForm, BadConfig> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FormFile {
        #[serde(default)]
        fields: Vec<Spanned<FieldTable>>,
    }
    let cannot = |e: &dyn std::fmt::Display| BadConfig(format!("{path}: {e}"));
    let mut text =
        std::fs::read_to_string(path).map_err(|e| cannot(&format!("cannot read the file: {e}")))?;
    let json = path.ends_with(".json");
    if json {
        let value: Value = serde_json::from_str(&text).map_err(|e| cannot(&e))?;
        let fields = match value {
            Value::Object(mut form) => form.remove("fields").unwrap_or(Value::Array(Vec::new())),
            fields => fields,
        };
        let mut table = toml::Table::new();
        table.insert(
            "fields".to_owned(),
            toml::Value::try_from(fields).map_err(|e| cannot(&e))?,
        );
        text = toml::to_string(&table).map_err(|e| cannot(&e))?;
    }
    let place = Place {
        path,
        text: &text,
        positions: !json,
    };
    let file: FormFile = toml::from_str(&text).map_err(|e| place.toml_error(&e))?;
    let mut fields: Vec<FieldSpec> = Vec::new();
    for field in &file.fields {
        let spec = field_of(&place, field.get_ref())?;
        if fields.iter().any(|f| f.name() == spec.name()) {
            return Err(place.error(
                field.get_ref().name.span(),
                "fields.name",
                format!("two fields are named `{}`", spec.name()),
            ));
        }
        fields.push(spec);
    }
    Ok(StartForm::new(fields))
}

/// The environments, tokens, models and deployments of the file.
fn declared_of(
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

/// A field of a start form: its kind by the crate's serde shape of a kind
/// (`{"type": kind, "options": [...]}`), its default checked against it.
fn field_of(place: &Place<'_>, table: &FieldTable) -> Result<FieldSpec, BadConfig> {
    let mut shape = Map::new();
    shape.insert("type".into(), Value::String(table.kind.get_ref().clone()));
    if let Some(options) = &table.options {
        if table.kind.get_ref() != "choice" {
            return Err(place.error(
                options.span(),
                "fields.options",
                "only a `choice` field has options",
            ));
        }
        shape.insert("options".into(), Value::from(options.get_ref().clone()));
    }
    let kind: FieldKind = serde_json::from_value(Value::Object(shape)).map_err(|_| {
        let problem = if table.kind.get_ref() == "choice" {
            "a `choice` field needs its `options`".to_owned()
        } else {
            format!(
                "unknown kind `{}` (one of text, number, integer, boolean, date, dateTime, choice, object, array, any)",
                table.kind.get_ref()
            )
        };
        place.error(table.kind.span(), "fields.kind", problem)
    })?;
    let name = table.name.get_ref().clone();
    let mut spec = if table.mandatory {
        FieldSpec::mandatory(name, kind.clone())
    } else {
        FieldSpec::optional(name, kind.clone())
    };
    if let Some(default) = &table.default {
        let value = serde_json::to_value(default.get_ref())
            .map_err(|e| place.error(default.span(), "fields.default", e))?;
        if !kind.accepts(&value) {
            return Err(place.error(
                default.span(),
                "fields.default",
                format!("the default is not {}", kind.describe()),
            ));
        }
        spec = spec.with_default(value);
    }
    Ok(spec)
}

/// A deployment's id, the same for the same process, environment and
/// version at every start of every replica: applying the file to a
/// database again adds nothing.
pub(crate) fn deployment_id(
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

/// `version 4` or `draft`.
pub(crate) fn shown(version: VersionTag) -> String {
    match version {
        VersionTag::Released(n) => format!("version {n}"),
        _ => "draft".to_owned(),
    }
}

fn source_of(
    place: &Place<'_>,
    span: Range<usize>,
    table: SourceTable,
    served: &[Served],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<WebhookSource, BadConfig> {
    let id = table
        .id
        .get_ref()
        .parse()
        .map_err(|e| place.error(table.id.span(), "id", e))?;
    let process: ProcessUuid = table
        .process
        .get_ref()
        .parse()
        .map_err(|_| place.error(table.process.span(), "process", "not a UUID"))?;
    let target = served
        .iter()
        .find(|s| s.process == process && s.environment.id().as_str() == table.environment.get_ref())
        .ok_or_else(|| {
            place.error(
                table.environment.span(),
                "environment",
                format!(
                    "process {process} is not deployed to environment `{}` on this server",
                    table.environment.get_ref()
                ),
            )
        })?;
    let environment = target.environment.clone();
    check_map_keys(place, &table, target)?;
    let scheme = scheme_of(&table).map_err(|e| place.error(table.scheme.span(), "scheme", e))?;
    let names = table.secret_env.get_ref().to_vec();
    if names.is_empty() {
        return Err(place.error(table.secret_env.span(), "secret_env", "names no variable"));
    }
    let mut secrets = Vec::new();
    for name in &names {
        let value = env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            place.error(
                table.secret_env.span(),
                "secret_env",
                format!("the environment variable {name} is not set (it holds the source's secret)"),
            )
        })?;
        secrets.push(
            SourceSecret::new(value).map_err(|e| place.error(table.secret_env.span(), "secret_env", e))?,
        );
    }
    let source = WebhookSource::new(id, environment, process, scheme, secrets)
        .map_err(|e| place.error(span.clone(), "secret_env", e))?;
    let source = match &table.events {
        Some(events) => source
            .with_events(events.get_ref().clone())
            .map_err(|e| place.error(events.span(), "events", e))?,
        None => source,
    };
    rules_of(place, table, source)
}

/// Each `map` key must be a field of the start form the source starts
/// (a form that names no field takes any variables).
fn check_map_keys(place: &Place<'_>, table: &SourceTable, target: &Served) -> Result<(), BadConfig> {
    let fields: Vec<&str> = target.form.fields().iter().map(FieldSpec::name).collect();
    if fields.is_empty() {
        return Ok(());
    }
    for (key, query) in table.map.iter().flatten() {
        if !fields.contains(&key.as_str()) {
            return Err(place.error(
                query.span(),
                &format!("map.{key}"),
                format!(
                    "`{key}` is no field of the start form of process {} in `{}` (its fields: {})",
                    target.process,
                    target.environment.id(),
                    fields.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A query of the file: a bad one is named with its key, and the message
/// says where in the query it goes wrong.
fn query_of(place: &Place<'_>, key: &str, query: &Spanned<String>) -> Result<JsonQuery, BadConfig> {
    query
        .get_ref()
        .parse()
        .map_err(|e| place.error(query.span(), key, e))
}

/// The source with the table's mapping, conditions and delivery query.
fn rules_of(
    place: &Place<'_>,
    table: SourceTable,
    mut source: WebhookSource,
) -> Result<WebhookSource, BadConfig> {
    if table.map.is_some() || table.body_variable.is_some() {
        let mut mapping = PayloadMapping::new();
        for (field, query) in table.map.iter().flatten() {
            let key = format!("map.{field}");
            let query = query_of(place, &key, query)?;
            mapping = mapping
                .with_field(field.clone(), query)
                .map_err(|e| place.error(0..0, &key, e))?;
        }
        if let Some(name) = &table.body_variable {
            mapping = mapping
                .with_body_variable(name.get_ref().clone())
                .map_err(|e| place.error(name.span(), "body_variable", e))?;
        }
        source = source.with_mapping(mapping);
    }
    if let Some(when) = &table.when {
        let mut conditions = Vec::new();
        for condition in when {
            let condition = condition.get_ref();
            let query = query_of(place, "when.path", &condition.path)?;
            let equals = condition
                .equals
                .get_ref()
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<Value>, _>>()
                .map_err(|e| place.error(condition.equals.span(), "when.equals", e))?;
            conditions.push(
                Condition::new(query, equals)
                    .map_err(|e| place.error(condition.equals.span(), "when.equals", e))?,
            );
        }
        source = source.with_conditions(conditions);
    }
    if let Some(delivery) = &table.delivery {
        source = source.with_delivery_query(query_of(place, "delivery", delivery)?);
    }
    Ok(source)
}

/// The scheme of a table: its name and the settings beside it, read as
/// the crate's serde shape of a scheme.
fn scheme_of(table: &SourceTable) -> Result<SourceScheme, String> {
    let mut shape = Map::new();
    shape.insert("scheme".into(), Value::String(table.scheme.get_ref().clone()));
    let settings = [
        ("header", &table.header),
        ("prefix", &table.prefix),
        ("algorithm", &table.algorithm),
        ("encoding", &table.encoding),
        ("timestamp_header", &table.timestamp_header),
        ("delivery_header", &table.delivery_header),
        ("public_origin", &table.public_origin),
        ("user", &table.user),
    ];
    for (key, value) in settings {
        if let Some(value) = value {
            shape.insert(key.into(), Value::String(value.clone()));
        }
    }
    serde_json::from_value(Value::Object(shape)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

    /// A process in production whose form names no field (so that it
    /// takes any mapped variable).
    fn served() -> Vec<Served> {
        served_with(StartForm::default())
    }

    fn served_with(form: StartForm) -> Vec<Served> {
        let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
        vec![Served {
            process: ORDERS.parse().unwrap(),
            environment: production,
            form,
        }]
    }

    #[test]
    fn a_map_key_that_is_no_field_of_the_form_is_refused_with_the_fields_it_has() {
        let form = StartForm::new([
            FieldSpec::mandatory("repoId", FieldKind::Text),
            FieldSpec::optional("branch", FieldKind::Text),
        ]);
        let text = |key: &str| {
            format!(
                "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
                 scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n\n[source.map]\n\
                 branch = \"$.body.ref\"\n{key} = \"$.body.repository.id\"\n"
            )
        };
        let error = parse_sources("sources.toml", &text("repoIdd"), &served_with(form.clone()), env)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            format!(
                "sources.toml:10:11: map.repoIdd: `repoIdd` is no field of the start form of process \
                 {ORDERS} in `production` (its fields: repoId, branch)"
            )
        );
        let sources = parse_sources("sources.toml", &text("repoId"), &served_with(form), env).unwrap();
        assert_eq!(sources[0].mapping().unwrap().fields().count(), 2);
    }

    #[test]
    fn an_unknown_key_names_the_closest_known_one() {
        let table = |key: &str| {
            format!(
                "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
                 scheme = \"github\"\n{key} = \"GITHUB_SECRET\"\n"
            )
        };
        assert_eq!(
            parse(&table("secret_evn")).unwrap_err(),
            "sources.toml:6:1: unknown key 'secret_evn' (did you mean 'secret_env'?)"
        );
        let far = parse(&table("colour")).unwrap_err();
        assert!(
            far.starts_with(
                "sources.toml:6:1: unknown key 'colour' (the keys here: id, process, environment,"
            ),
            "{far}"
        );
    }

    #[test]
    fn a_process_served_to_an_engine_by_key_needs_its_definition_key() {
        let without = OWN.replace("definition_key = \"refund\"\n", "");
        assert_ne!(without, OWN, "the fixture names a definition key");
        let error = parse_config(
            "own.toml",
            &without,
            &served(),
            Some("Temporal (TEMPORAL_URL)"),
            own_env,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "definition_key: process `Refund` (1b4e28ba-2fa1-11d2-883f-0016d3cca427) has no definition_key: \
                 Temporal (TEMPORAL_URL) starts the process definition (workflow type) it names"
            ),
            "{error}"
        );
        // The in-memory engine needs none; with the key, any engine takes it.
        assert!(parse_config("own.toml", &without, &served(), None, own_env).is_ok());
        let keyed = OWN.replace(
            "name = \"Exchange\"\n",
            "name = \"Exchange\"\ndefinition_key = \"exchange\"\n",
        );
        assert!(
            parse_config(
                "own.toml",
                &keyed,
                &served(),
                Some("Temporal (TEMPORAL_URL)"),
                own_env
            )
            .is_ok()
        );
    }

    fn env(name: &str) -> Option<String> {
        matches!(name, "GITHUB_SECRET" | "OLD_SECRET").then(|| format!("{name}-value"))
    }

    fn parse(text: &str) -> Result<Vec<WebhookSource>, String> {
        parse_sources("sources.toml", text, &served(), env).map_err(|e| e.to_string())
    }

    #[test]
    fn a_table_becomes_a_source_with_its_secrets_from_the_environment() {
        let sources = parse(&format!(
            "[[source]]\nid = \"github\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"github\"\nsecret_env = [\"GITHUB_SECRET\", \"OLD_SECRET\"]\nevents = [\"push\"]\n\n\
             [[source]]\nid = \"acme\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"hmac\"\nheader = \"X-Sig\"\nprefix = \"sha256=\"\nalgorithm = \"sha512\"\n\
             encoding = \"base64\"\nsecret_env = \"GITHUB_SECRET\"\n"
        ))
        .unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].secrets().len(), 2);
        assert_eq!(sources[0].secrets()[1].expose_secret(), b"OLD_SECRET-value");
        assert_eq!(sources[0].events(), Some(&["push".to_owned()][..]));
        assert_eq!(sources[1].scheme().name(), "hmac");
        assert_eq!(parse("").unwrap().len(), 0);
    }

    #[test]
    fn a_table_it_cannot_use_is_named_by_file_line_and_key() {
        let table = |body: &str| format!("# sources\n[[source]]\n{body}");
        let cases = [
            (
                table(&format!(
                    "id = \"g h\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n"
                )),
                "sources.toml:3:6: id: a source id must be",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"gitbub\"\nsecret_env = \"GITHUB_SECRET\"\n"
                )),
                "sources.toml:6:10: scheme: unknown scheme `gitbub`",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"staging\"\nscheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n"
                )),
                "sources.toml:5:15: environment: process dd9759e0-cc94-11ed-938f-13cf60270555 is not deployed to environment `staging`",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret_env = \"NOPE\"\n"
                )),
                "sources.toml:7:14: secret_env: the environment variable NOPE is not set",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"hmac\"\nsecret_env = \"GITHUB_SECRET\"\n"
                )),
                "sources.toml:6:10: scheme: the `hmac` scheme needs its settings",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"basic\"\nuser = \"u\"\nsecret_env = \"GITHUB_SECRET\"\nevents = [\"push\"]\n"
                )),
                "sources.toml:9:10: events: a `basic` source cannot list events",
            ),
            (
                table(&format!(
                    "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret = \"inline\"\n"
                )),
                "sources.toml:7:1: unknown key 'secret' (did you mean 'secret_env'?)",
            ),
            (
                table("id = \"g\"\nprocess = 42\n"),
                "sources.toml:4:11: syntax: invalid type",
            ),
            (
                table("id = \"g\n"),
                "sources.toml:3:8: syntax: invalid basic string",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
            assert!(!error.contains("-value"), "no secret in {error}");
        }
    }

    #[test]
    fn two_sources_of_one_id_are_refused() {
        let one = format!(
            "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"gitlab\"\nsecret_env = \"GITHUB_SECRET\"\n"
        );
        let error = parse(&format!("{one}{one}")).unwrap_err();
        assert!(
            error.starts_with("sources.toml:7:1: id: two sources are named g"),
            "{error}"
        );
    }

    #[test]
    fn a_table_may_map_the_payload_with_conditions_and_a_delivery_query() {
        let sources = parse(&format!(
            "[[source]]\nid = \"prs\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\nbody_variable = \"delivery\"\n\
             when = [{{ path = \"$.body.action\", equals = [\"opened\", 7, true] }}]\n\
             delivery = \"$.body.id\"\n\n[source.map]\nauthor = \"$.body.pull_request.user.login\"\n\
             event = \"$.headers['x-github-event']\"\n"
        ))
        .unwrap();
        let mapping = sources[0].mapping().unwrap();
        assert_eq!(
            mapping.fields().map(|(f, q)| (f, q.as_str())).collect::<Vec<_>>(),
            [
                ("author", "$.body.pull_request.user.login"),
                ("event", "$.headers['x-github-event']")
            ]
        );
        assert_eq!(mapping.body_variable(), Some("delivery"));
        let condition = &sources[0].conditions()[0];
        assert_eq!(condition.query().as_str(), "$.body.action");
        assert_eq!(
            condition.equals(),
            &[Value::from("opened"), Value::from(7), Value::from(true)][..]
        );
        assert_eq!(
            sources[0].delivery_query().map(JsonQuery::as_str),
            Some("$.body.id")
        );
        // A table without them has none.
        let plain = parse(&format!(
            "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"gitlab\"\nsecret_env = \"GITHUB_SECRET\"\n"
        ))
        .unwrap();
        assert!(plain[0].mapping().is_none() && plain[0].conditions().is_empty());
        assert!(plain[0].delivery_query().is_none());
    }

    #[test]
    fn a_bad_query_stops_the_server_with_its_line_and_the_position_in_it() {
        let table = |extra: &str| {
            format!(
                "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
                 scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n{extra}"
            )
        };
        let cases = [
            (
                table("\n[source.map]\nauthor = \"$.body.commits[*].author\"\n"),
                "sources.toml:9:10: map.author: JSONPath query `$.body.commits[*].author` at position 14: not singular",
            ),
            (
                table("delivery = \"body.id\"\n"),
                "sources.toml:7:12: delivery: JSONPath query `body.id` at position 0:",
            ),
            (
                table("when = [{ path = \"$.body..action\", equals = [\"opened\"] }]\n"),
                "sources.toml:7:18: when.path: JSONPath query `$.body..action` at position 6: not singular",
            ),
            (
                table("when = [{ path = \"$.body.action\", equals = [] }]\n"),
                "sources.toml:7:44: when.equals: the condition on `$.body.action` lists no value",
            ),
            (
                table("body_variable = \"author\"\n[source.map]\nauthor = \"$.body.a\"\n"),
                "sources.toml:7:17: body_variable: the mapping names field `author` twice",
            ),
            (
                table("when = [{ path = \"$.body.action\" }]\n"),
                "sources.toml:7:9: syntax: missing field `equals`",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).unwrap_err();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }

    const OWN: &str = r#"
[[environment]]
id = "live"
organization = "shop"
token_env = "SHOP_TOKEN"
token_sha256 = ["5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8"]

[[process]]
uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
organization = "shop"
name = "Refund"
definition_key = "refund"

[[process.deployment]]
environment = "live"
version = 4
fields = [
  { name = "orderNumber", kind = "text", mandatory = true },
  { name = "amount", kind = "number", mandatory = true },
  { name = "reason", kind = "choice", options = ["damaged", "late"], default = "damaged" },
  { name = "express", kind = "boolean", default = false },
]

[[process]]
uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
organization = "shop"
name = "Exchange"

[[process.deployment]]
environment = "live"
draft = true
"#;

    fn own_env(name: &str) -> Option<String> {
        (name == "SHOP_TOKEN").then(|| "a-shop-token-of-at-least-thirty-two-chars".to_owned())
    }

    fn config(text: &str) -> Result<Config, String> {
        parse_config("own.toml", text, &served(), None, own_env).map_err(|e| e.to_string())
    }

    #[test]
    fn environments_and_processes_are_declared_with_their_tokens_and_typed_forms() {
        let declared = config(OWN).unwrap().declared.unwrap();
        let live = Environment::new(EnvironmentId::new("live"), OrganizationId::new("shop"));
        assert_eq!(declared.environments, std::slice::from_ref(&live));
        assert_eq!(
            declared.tokens,
            [
                (
                    EnvironmentToken::new("a-shop-token-of-at-least-thirty-two-chars").digest(),
                    live.clone()
                ),
                // sha256("password"), given in upper case.
                (EnvironmentToken::new("password").digest(), live.clone()),
            ]
        );
        assert_eq!(declared.models.len(), 2);
        let refund = &declared.deployments[0];
        assert_eq!(refund.version(), VersionTag::Released(4));
        assert_eq!(refund.definition_key(), "refund");
        let fields = refund.start_form().fields();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[1].kind(), &FieldKind::Number);
        assert!(fields[1].is_mandatory());
        assert_eq!(
            fields[2].kind(),
            &FieldKind::Choice(vec!["damaged".to_owned(), "late".to_owned()])
        );
        assert_eq!(fields[3].default_value(), Some(&Value::Bool(false)));
        assert_eq!(declared.deployments[1].version(), VersionTag::Draft);
        // The same file gives the same deployment ids, so that applying it
        // again adds nothing; another version, another id.
        let again = config(OWN).unwrap().declared.unwrap();
        assert_eq!(again.deployments[0].id(), refund.id());
        assert_ne!(declared.deployments[1].id(), refund.id());
        // A file of sources only declares nothing: the example is served.
        assert!(config("").unwrap().declared.is_none());
    }

    #[test]
    fn a_declaration_it_cannot_use_is_named_by_line_and_key() {
        let cases = [
            (
                OWN.replace("kind = \"number\"", "kind = \"money\""),
                "own.toml:19:29: fields.kind: unknown kind `money`",
            ),
            (
                OWN.replace(
                    "environment = \"live\"\nversion",
                    "environment = \"test\"\nversion",
                ),
                "own.toml:15:15: environment: no [[environment]] is named `test`",
            ),
            (
                OWN.replace("default = false", "default = \"no\""),
                "own.toml:21:51: fields.default: the default is not boolean",
            ),
            (
                OWN.replace("default = \"damaged\"", "default = \"lost\""),
                "own.toml:20:80: fields.default: the default is not one of the options",
            ),
            (
                OWN.replace(
                    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                    "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                ),
                "own.toml:25:8: uuid: two processes have uuid 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            ),
            (
                OWN.replace("token_env = \"SHOP_TOKEN\"", "token_env = \"NOPE\""),
                "own.toml:5:13: token_env: the environment variable NOPE is not set",
            ),
            (
                OWN.replace("5E88", "ZZ88"),
                "own.toml:6:16: token_sha256: a token's SHA-256 is 64 hex digits",
            ),
            (
                OWN.replace("version = 4", "version = 4\ndraft = true"),
                "own.toml:16:11: version: a draft has no version number",
            ),
            (
                OWN.replace("draft = true", ""),
                "own.toml:30:15: version: a deployment needs `version = N` or `draft = true`",
            ),
            (
                OWN.replace(
                    "organization = \"shop\"\nname = \"Refund\"",
                    "organization = \"other\"\nname = \"Refund\"",
                ),
                "own.toml:15:15: environment: environment `live` belongs to organization `shop`, the process to `other`",
            ),
            (
                OWN.replace("kind = \"choice\", ", "kind = \"text\", "),
                "own.toml:20:47: fields.options: only a `choice` field has options",
            ),
            (
                OWN.replace(
                    "uuid = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"",
                    "uuid = \"nope\"",
                ),
                "own.toml:25:8: uuid: not a UUID",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, expected) in cases {
            let error = config(&text).map(|_| ()).unwrap_err();
            if !error.starts_with(expected) {
                wrong.push(format!("{error}\n  expected: {expected}"));
            }
            assert!(!error.contains("thirty-two"), "no token in {error}");
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn sources_of_a_declaring_file_start_its_own_processes() {
        let with_source = format!(
            "{OWN}\n[[source]]\nid = \"refunds\"\nprocess = \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"\n\
             environment = \"live\"\nscheme = \"gitlab\"\nsecret_env = \"SHOP_TOKEN\"\n"
        );
        let config = config(&with_source).unwrap();
        assert_eq!(config.sources[0].environment().organization().as_str(), "shop");
        // The example's process is not served by such a file.
        let error = parse_config(
            "own.toml",
            &with_source.replace(
                "process = \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"",
                &format!("process = \"{ORDERS}\""),
            ),
            &served(),
            None,
            own_env,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(error.contains("is not deployed to environment `live`"), "{error}");
    }

    #[test]
    fn a_form_file_is_toml_or_json_of_the_same_fields() {
        let dir = std::env::temp_dir().join(format!("forms-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let toml = write(
            "form.toml",
            "fields = [{ name = \"n\", kind = \"integer\", mandatory = true }, { name = \"c\", kind = \"choice\", options = [\"a\"] }]\n",
        );
        let json = write(
            "form.json",
            r#"{"fields": [{"name": "n", "kind": "integer", "mandatory": true}, {"name": "c", "kind": "choice", "options": ["a"]}]}"#,
        );
        let bare = write(
            "bare.json",
            r#"[{"name": "n", "kind": "integer", "mandatory": true}, {"name": "c", "kind": "choice", "options": ["a"]}]"#,
        );
        let form = read_form(&toml).unwrap();
        assert_eq!(form.fields().len(), 2);
        assert_eq!(read_form(&json).unwrap(), form);
        assert_eq!(read_form(&bare).unwrap(), form);
        let bad = write("bad.json", r#"[{"name": "n", "kind": "money"}]"#);
        let error = read_form(&bad).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{bad}: fields.kind: unknown kind `money`")),
            "{error}"
        );
        let twice = write(
            "twice.toml",
            "fields = [{ name = \"n\", kind = \"text\" }, { name = \"n\", kind = \"text\" }]\n",
        );
        let error = read_form(&twice).unwrap_err().to_string();
        assert!(
            error.contains(":1:51: fields.name: two fields are named `n`"),
            "{error}"
        );
        assert!(read_form(&write("broken.json", "{")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
