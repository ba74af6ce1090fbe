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
    Condition, Environment, JsonQuery, PayloadMapping, ProcessUuid, SourceScheme, SourceSecret, WebhookSource,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

/// The file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    source: Vec<Spanned<SourceTable>>,
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

/// `secret_env`: one variable's name, or several during a rotation.
#[derive(Deserialize)]
#[serde(untagged)]
enum SecretEnv {
    One(String),
    Many(Vec<String>),
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
}

impl Place<'_> {
    /// `path:line:column: key: problem`.
    fn error(&self, span: Range<usize>, key: &str, problem: impl std::fmt::Display) -> BadConfig {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
        BadConfig(format!("{}:{line}:{column}: {key}: {problem}", self.path))
    }
}

/// The sources of the file at `path`, for the processes and environments
/// the server serves; each secret read from the environment variable its
/// table names (through `env`, so that tests need not set any).
pub(crate) fn read_sources(
    path: &str,
    served: &[(ProcessUuid, Environment)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<WebhookSource>, BadConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadConfig(format!("WEBHOOK_CONFIG={path}: cannot read the file: {e}")))?;
    parse_sources(path, &text, served, env)
}

/// [`read_sources`] over the file's text.
pub(crate) fn parse_sources(
    path: &str,
    text: &str,
    served: &[(ProcessUuid, Environment)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<WebhookSource>, BadConfig> {
    let place = Place { path, text };
    let file: File = toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => place.error(span, "syntax", e.message()),
        None => BadConfig(format!("{path}: {}", e.message())),
    })?;
    let mut sources: Vec<WebhookSource> = Vec::new();
    for table in file.source {
        let span = table.span();
        let table = table.into_inner();
        let source = source_of(&place, span.clone(), table, served, &env)?;
        if sources.iter().any(|s| s.id() == source.id()) {
            return Err(place.error(span, "id", format!("two sources are named {}", source.id())));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn source_of(
    place: &Place<'_>,
    span: Range<usize>,
    table: SourceTable,
    served: &[(ProcessUuid, Environment)],
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
    let environment = served
        .iter()
        .find(|(p, e)| *p == process && e.id().as_str() == table.environment.get_ref())
        .map(|(_, e)| e.clone())
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
    let scheme = scheme_of(&table).map_err(|e| place.error(table.scheme.span(), "scheme", e))?;
    let names = match table.secret_env.get_ref() {
        SecretEnv::One(name) => vec![name.clone()],
        SecretEnv::Many(names) => names.clone(),
    };
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
    use process_webhook::{EnvironmentId, OrganizationId};

    const ORDERS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

    fn served() -> Vec<(ProcessUuid, Environment)> {
        let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
        vec![(ORDERS.parse().unwrap(), production)]
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
                "sources.toml:7:1: syntax: unknown field `secret`",
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
}
