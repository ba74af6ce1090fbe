//! The `WEBHOOK_CONFIG` file: what it declares (environments, processes
//! and their deployments: [`declared`]), its webhook sources ([`sources`]),
//! and the start forms of both ([`forms`]). A table the server cannot use
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

mod declared;
mod forms;
mod sources;

use std::ops::Range;

use process_webhook::{Deployment, Environment, ProcessUuid, StartForm, VersionTag, WebhookSource};
use serde::Deserialize;
use toml::Spanned;

pub(crate) use declared::Declared;
pub(crate) use forms::read_form;

use declared::{EnvironmentTable, ProcessTable, declared_of};
use sources::{SourceTable, source_of};

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

/// The file: what it declares (`None`: no `[[environment]]` and no
/// `[[process]]`, so the documented example is served) and its sources.
pub(crate) struct Config {
    pub(crate) declared: Option<Declared>,
    pub(crate) sources: Vec<WebhookSource>,
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

/// `version 4` or `draft`.
pub(crate) fn shown(version: VersionTag) -> String {
    match version {
        VersionTag::Released(n) => format!("version {n}"),
        _ => "draft".to_owned(),
    }
}

#[cfg(test)]
mod tests;
