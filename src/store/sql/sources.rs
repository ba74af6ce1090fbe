//! A webhook source as a row of either SQL store holds it: its secrets
//! sealed (`sealing`), its scheme and rules as JSON.

use serde_json::Value;

use super::Columns;
use super::sealing::{Keys, Sealed};
use crate::id::{EnvironmentId, OrganizationId};
use crate::model::Environment;
use crate::source::{SourceId, SourceScheme, WebhookSource};
use crate::store::StoreError;

/// What a row of `sources` holds besides the id, ready to bind.
pub(crate) struct SourceRow {
    pub(crate) scheme: Value,
    pub(crate) secrets: Value,
    pub(crate) rules: Option<Value>,
}

impl SourceRow {
    /// `source` to store, its secrets sealed under `keys`' sealing key and
    /// bound to its id.
    pub(crate) fn of(source: &WebhookSource, keys: &Keys) -> Result<Self, StoreError> {
        let id = source.id().as_str();
        let sealed = source
            .secrets()
            .iter()
            .map(|secret| keys.seal(secret, id))
            .collect::<Result<Vec<Sealed>, StoreError>>()?;
        let secrets = serde_json::to_value(&sealed)
            .map_err(|e| StoreError::new("sealed secrets could not be stored").with_source(e))?;
        let scheme = serde_json::to_value(source.scheme())
            .map_err(|e| StoreError::new("a source's scheme could not be stored").with_source(e))?;
        Ok(Self {
            scheme,
            secrets,
            rules: stored_rules(source)?,
        })
    }
}

/// The source `id` from its row (`organization`, `environment`, `process`,
/// `scheme`, `secrets`, `rules`) and its event list, its secrets opened
/// with `keys`.
pub(crate) fn source_from<R: Columns>(
    row: &R,
    id: &SourceId,
    keys: &Keys,
    events: Option<Vec<String>>,
) -> Result<WebhookSource, StoreError> {
    let invalid = |what: &str| StoreError::new(format!("stored source {id} has an invalid {what}"));
    let environment = Environment::new(
        EnvironmentId::new(row.text("environment")?),
        OrganizationId::new(row.text("organization")?),
    );
    let process = row.uuid("process")?;
    let scheme: SourceScheme =
        serde_json::from_value(row.json("scheme")?).map_err(|e| invalid("scheme").with_source(e))?;
    let sealed: Vec<Sealed> =
        serde_json::from_value(row.json("secrets")?).map_err(|e| invalid("secret list").with_source(e))?;
    let secrets = sealed
        .iter()
        .map(|s| keys.open(s, id.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let source = WebhookSource::new(id.clone(), environment, process.into(), scheme, secrets)
        .map_err(|e| invalid("definition").with_source(e))?;
    let source = read_rules(source, row.opt_json("rules")?)?;
    match events {
        Some(events) => source
            .with_events(events)
            .map_err(|e| invalid("event list").with_source(e)),
        None => Ok(source),
    }
}

/// A source's rules as the `rules` column keeps them (`NULL`: none).
#[cfg(feature = "mapping")]
fn stored_rules(source: &WebhookSource) -> Result<Option<Value>, StoreError> {
    let Some(rules) = source.rules() else {
        return Ok(None);
    };
    serde_json::to_value(rules)
        .map(Some)
        .map_err(|e| StoreError::new("a source's rules could not be stored").with_source(e))
}

/// Without the `mapping` feature a source has no rules.
#[cfg(not(feature = "mapping"))]
fn stored_rules(_: &WebhookSource) -> Result<Option<Value>, StoreError> {
    Ok(None)
}

/// `source` with the rules of its row.
#[cfg(feature = "mapping")]
fn read_rules(source: WebhookSource, rules: Option<Value>) -> Result<WebhookSource, StoreError> {
    match rules {
        None => Ok(source),
        Some(rules) => {
            let rules = serde_json::from_value(rules).map_err(|e| {
                StoreError::new(format!("stored source {} has invalid rules", source.id())).with_source(e)
            })?;
            Ok(source.with_rules(rules))
        }
    }
}

/// Without the `mapping` feature, a source stored with rules is refused:
/// starting it without them would hand the engine other variables.
#[cfg(not(feature = "mapping"))]
fn read_rules(source: WebhookSource, rules: Option<Value>) -> Result<WebhookSource, StoreError> {
    match rules {
        None => Ok(source),
        Some(_) => Err(StoreError::new(format!(
            "stored source {} maps its payload: this build lacks the `mapping` feature",
            source.id()
        ))),
    }
}
