//! The `[[source]]` tables: webhook sources of the processes served, with
//! their secrets from the environment and their mapping rules.

use std::ops::Range;

use process_webhook::{
    Condition, FieldSpec, JsonQuery, PayloadMapping, ProcessUuid, SourceScheme, SourceSecret, WebhookSource,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{BadConfig, Place, SecretEnv, Served};

/// One `[[source]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceTable {
    pub(super) id: Spanned<String>,
    pub(super) process: Spanned<String>,
    pub(super) environment: Spanned<String>,
    pub(super) scheme: Spanned<String>,
    pub(super) secret_env: Spanned<SecretEnv>,
    pub(super) events: Option<Spanned<Vec<String>>>,
    pub(super) header: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) algorithm: Option<String>,
    pub(super) encoding: Option<String>,
    pub(super) timestamp_header: Option<String>,
    pub(super) delivery_header: Option<String>,
    pub(super) public_origin: Option<String>,
    pub(super) user: Option<String>,
    pub(super) body_variable: Option<Spanned<String>>,
    pub(super) map: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    pub(super) when: Option<Vec<Spanned<WhenTable>>>,
    pub(super) delivery: Option<Spanned<String>>,
}

/// One of `when`: a query and the values it may select.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WhenTable {
    pub(super) path: Spanned<String>,
    pub(super) equals: Spanned<Vec<toml::Value>>,
}

pub(super) fn source_of(
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
pub(super) fn check_map_keys(
    place: &Place<'_>,
    table: &SourceTable,
    target: &Served,
) -> Result<(), BadConfig> {
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
pub(super) fn query_of(
    place: &Place<'_>,
    key: &str,
    query: &Spanned<String>,
) -> Result<JsonQuery, BadConfig> {
    query
        .get_ref()
        .parse()
        .map_err(|e| place.error(query.span(), key, e))
}

/// The source with the table's mapping, conditions and delivery query.
pub(super) fn rules_of(
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
pub(super) fn scheme_of(table: &SourceTable) -> Result<SourceScheme, String> {
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
