//! Start forms: the `fields` of a `[[process.deployment]]` table, and the
//! form files of `admin deploy`.

use process_webhook::StartForm;
use process_webhook::{FieldKind, FieldSpec};
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{BadConfig, Place};

/// One field of a deployment's start form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FieldTable {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<String>,
    #[serde(default)]
    pub(super) mandatory: bool,
    pub(super) default: Option<Spanned<toml::Value>>,
    pub(super) options: Option<Spanned<Vec<String>>>,
}

/// A start form's file, for `admin deploy`: TOML (`fields = [{ name, kind,
/// mandatory, default, options }, …]`) or, for a name ending in `.json`,
/// JSON (`{"fields": […]}` or the array alone), each field as in a
/// `[[process.deployment]]` table.
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

/// A field of a start form: its kind by the crate's serde shape of a kind
/// (`{"type": kind, "options": [...]}`), its default checked against it.
pub(super) fn field_of(place: &Place<'_>, table: &FieldTable) -> Result<FieldSpec, BadConfig> {
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
