//! Start forms: the fields a deployed version needs to start, and the
//! validation of a webhook payload against them.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// The kind of value a start field holds.
///
/// | kind | accepted JSON |
/// |---|---|
/// | `Text` | a string |
/// | `Number` | any number |
/// | `Integer` | a number with no fractional part between `i64::MIN` and `i64::MAX` (`2`, and also `2.0` or `2e3`, as JSON Schema counts integers; such a value reaches the engine as the integer `2` / `2000`) |
/// | `Boolean` | `true` or `false` |
/// | `Date` | a string `YYYY-MM-DD` that is a real calendar date |
/// | `DateTime` | an RFC 3339 date-time string, with offset |
/// | `Choice(options)` | a string equal to one of the options |
/// | `Object` | an object |
/// | `Array` | an array |
/// | `Any` | anything |
///
/// Serialized as `{"type": "text"}`, `{"type": "dateTime"}`, …, and
/// `{"type": "choice", "options": ["S", "M"]}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "options", rename_all = "camelCase")]
#[non_exhaustive]
pub enum FieldKind {
    /// A JSON string.
    Text,
    /// Any JSON number.
    Number,
    /// A JSON integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A calendar date `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 date-time.
    DateTime,
    /// One string of a fixed list.
    Choice(Vec<String>),
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Any JSON value.
    Any,
}

impl FieldKind {
    /// A short English name of the kind, as used in violation messages
    /// (`"text"`, `"integer"`, `"date (YYYY-MM-DD)"`, …).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Date => "date (YYYY-MM-DD)",
            Self::DateTime => "date-time (RFC 3339)",
            Self::Choice(_) => "one of the options",
            Self::Object => "object",
            Self::Array => "array",
            Self::Any => "any value",
        }
    }

    /// Whether `value` is of this kind.
    pub fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Any, _) => true,
            (Self::Text, Value::String(_)) => true,
            (Self::Number, Value::Number(_)) => true,
            (Self::Integer, Value::Number(n)) => {
                // Every i64 and u64 is also an integral f64 here: one test
                // covers them and `2.0` or `1e3`.
                n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            (Self::Boolean, Value::Bool(_)) => true,
            (Self::Date, Value::String(s)) => is_date(s),
            (Self::DateTime, Value::String(s)) => is_date_time(s),
            (Self::Choice(options), Value::String(s)) => options.iter().any(|o| o == s),
            (Self::Object, Value::Object(_)) => true,
            (Self::Array, Value::Array(_)) => true,
            _ => false,
        }
    }
}

/// An RFC 3339 date-time with `T` (or `t`) between date and time, as JSON
/// Schema's `date-time` format has it (RFC 3339 also allows a space there).
fn is_date_time(s: &str) -> bool {
    matches!(s.as_bytes().get(10), Some(b'T' | b't')) && OffsetDateTime::parse(s, &Rfc3339).is_ok()
}

/// `YYYY-MM-DD` with a four-digit year, and a date that exists.
fn is_date(s: &str) -> bool {
    s.len() == 10 && time::Date::parse(s, format_description!("[year]-[month]-[day]")).is_ok()
}

/// The value of an `Integer` field as the engine gets it: an `i64`, or
/// `None` when the integer is beyond `i64`.
fn as_engine_integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None; // beyond i64::MAX
    }
    // A float with no fraction (`2.0`, `1e3`): within i64 when in
    // [-2^63, 2^63); the bounds are exact in f64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    n.as_f64()
        .filter(|f| *f >= -TWO_63 && *f < TWO_63)
        .map(|f| f as i64)
}

/// A JSON Schema `pattern` that a blank string fails.
const NOT_BLANK: &str = "\\S";

/// One field of a [`StartForm`].
///
/// # Example
///
/// ```
/// use process_webhook::{FieldKind, FieldSpec};
/// use serde_json::json;
///
/// let priority = FieldSpec::optional("priority", FieldKind::Choice(vec!["low".into(), "high".into()]))
///     .with_default(json!("low"));
/// assert!(!priority.is_mandatory());
/// assert_eq!(priority.default_value(), Some(&json!("low")));
/// ```
///
/// Serialized as `{"name": "priority", "kind": {"type": "text"},
/// "mandatory": false, "default": "low"}` (`default` only when there is one).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FieldSpec {
    name: String,
    kind: FieldKind,
    mandatory: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<Value>,
}

impl FieldSpec {
    /// A field every start must carry (not absent, not `null`, not a blank
    /// string).
    pub fn mandatory(name: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            name: name.into(),
            kind,
            mandatory: true,
            default: None,
        }
    }

    /// A field a start may carry.
    pub fn optional(name: impl Into<String>, kind: FieldKind) -> Self {
        Self {
            mandatory: false,
            ..Self::mandatory(name, kind)
        }
    }

    /// The value an optional field gets when the payload does not carry it.
    /// A mandatory field stays mandatory: its default is not used.
    pub fn with_default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// The field's name (the payload's key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field's kind.
    pub fn kind(&self) -> &FieldKind {
        &self.kind
    }

    /// Whether the field is mandatory.
    pub fn is_mandatory(&self) -> bool {
        self.mandatory
    }

    /// The default of an optional field.
    pub fn default_value(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// The JSON Schema of this field's value.
    fn json_schema(&self) -> Value {
        let (types, extra): (&[&str], Value) = match &self.kind {
            FieldKind::Text => (&["string"], json!({})),
            FieldKind::Number => (&["number"], json!({})),
            FieldKind::Integer => (&["integer"], json!({"minimum": i64::MIN, "maximum": i64::MAX})),
            FieldKind::Boolean => (&["boolean"], json!({})),
            FieldKind::Date => (&["string"], json!({"format": "date"})),
            FieldKind::DateTime => (&["string"], json!({"format": "date-time"})),
            FieldKind::Choice(options) => {
                let mut options: Vec<Value> = options.iter().cloned().map(Value::String).collect();
                if !self.mandatory {
                    options.push(Value::Null);
                }
                (&["string"], json!({"enum": options}))
            }
            FieldKind::Object => (&["object"], json!({})),
            FieldKind::Array => (&["array"], json!({})),
            FieldKind::Any => (&[], json!({})),
        };
        let mut schema = match extra {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if self.mandatory {
            // Absent, null and blank strings are all "missing": `pattern`
            // only where a string is allowed.
            if types.is_empty() || types.contains(&"string") {
                schema.insert("pattern".into(), json!(NOT_BLANK));
            }
            if types.is_empty() {
                schema.insert("not".into(), json!({"type": "null"}));
            }
        }
        let mut types: Vec<Value> = types.iter().map(|t| json!(t)).collect();
        if !self.mandatory && !types.is_empty() {
            types.push(json!("null"));
        }
        match types.len() {
            0 => {}
            1 => {
                schema.insert("type".into(), types.remove(0));
            }
            _ => {
                schema.insert("type".into(), Value::Array(types));
            }
        }
        if let Some(default) = &self.default {
            schema.insert("default".into(), default.clone());
        }
        Value::Object(schema)
    }
}

/// Adds `value` under `name` to fields read from a form or a query: the
/// first value of a name as it is, the later ones with it in an array (in
/// the order sent).
pub(crate) fn insert_repeated<N>(fields: &mut Map<String, Value>, name: N, value: Value)
where
    N: AsRef<str> + Into<String>,
{
    match fields.get_mut(name.as_ref()) {
        None => {
            fields.insert(name.into(), value);
        }
        Some(Value::Array(values)) => values.push(value),
        Some(first) => *first = Value::Array(vec![first.take(), value]),
    }
}

/// The fields a deployed version needs to start.
///
/// # Example
///
/// ```
/// use process_webhook::{FieldKind, FieldSpec, StartForm};
/// use serde_json::json;
///
/// let form = StartForm::new([
///     FieldSpec::mandatory("customerName", FieldKind::Text),
///     FieldSpec::mandatory("quantity", FieldKind::Integer),
/// ]);
/// let payload = json!({"customerName": "John Doe", "quantity": "two"});
/// let violations = form.validate(payload.as_object().unwrap().clone()).unwrap_err();
/// assert_eq!(violations.len(), 1);
/// assert_eq!(violations[0].field(), "quantity");
/// ```
///
/// Serialized as `{"fields": [FieldSpec, …]}`; reading it back applies
/// [`new`](Self::new)'s rule (of two fields with one name, the later wins).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(from = "StartFormFields")]
pub struct StartForm {
    fields: Vec<FieldSpec>,
}

/// The serialized form of a [`StartForm`], read through [`StartForm::new`].
#[derive(Deserialize)]
struct StartFormFields {
    fields: Vec<FieldSpec>,
}

impl From<StartFormFields> for StartForm {
    fn from(form: StartFormFields) -> Self {
        Self::new(form.fields)
    }
}

impl StartForm {
    /// A form of these fields. When two share a name, the later one wins.
    pub fn new(fields: impl IntoIterator<Item = FieldSpec>) -> Self {
        let mut out: Vec<FieldSpec> = Vec::new();
        for field in fields {
            match out.iter_mut().find(|f| f.name == field.name) {
                Some(existing) => *existing = field,
                None => out.push(field),
            }
        }
        Self { fields: out }
    }

    /// The fields, in the order given.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The JSON Schema (draft 2020-12) of the payloads this form accepts: a
    /// payload the schema accepts (with format assertion on, for `date` and
    /// `date-time`) is exactly one [`validate`](Self::validate) accepts.
    ///
    /// Each field has its `type`, `enum` for choices, `format: date` or
    /// `date-time`, and `default`; mandatory fields are `required`, not
    /// `null`, and (where a string is allowed) not blank; optional fields
    /// also accept `null`. Other properties are allowed.
    ///
    /// ```
    /// use process_webhook::{FieldKind, FieldSpec, StartForm};
    /// use serde_json::json;
    ///
    /// let form = StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]);
    /// let schema = form.json_schema();
    /// assert_eq!(schema["required"], json!(["orderNumber"]));
    /// assert_eq!(schema["properties"]["orderNumber"]["type"], "string");
    /// ```
    pub fn json_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for field in &self.fields {
            properties.insert(field.name.clone(), field.json_schema());
            if field.mandatory {
                required.push(Value::String(field.name.clone()));
            }
        }
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": required,
        })
    }

    /// Checks `payload` against the form and returns the variables to hand to
    /// the engine: the payload, with the defaults of absent optional fields
    /// added. Fields the form does not name pass through unchanged.
    ///
    /// # Errors
    ///
    /// Every problem at once, in the form's field order: a mandatory field
    /// that is absent, `null` or a blank string is
    /// [`Violation::Missing`]; a value of the wrong kind is
    /// [`Violation::WrongType`]. An optional field that is `null` is accepted
    /// as `null`.
    pub fn validate(
        &self,
        mut payload: Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        for field in &self.fields {
            match payload.get(&field.name) {
                None | Some(Value::Null) if field.mandatory => {
                    violations.push(FieldViolation::new(&field.name, Violation::Missing));
                }
                // Blank: nothing but white space (what `trim` removes),
                // decided at the first other character.
                Some(Value::String(s)) if field.mandatory && s.chars().all(char::is_whitespace) => {
                    violations.push(FieldViolation::new(&field.name, Violation::Missing));
                }
                None => {
                    if let Some(default) = &field.default {
                        payload.insert(field.name.clone(), default.clone());
                    }
                }
                Some(Value::Null) => {}
                Some(value) if !field.kind.accepts(value) => {
                    violations.push(FieldViolation::new(
                        &field.name,
                        Violation::WrongType {
                            expected: field.kind.clone(),
                        },
                    ));
                }
                Some(Value::Number(n)) if field.kind == FieldKind::Integer => match as_engine_integer(n) {
                    // `2.0` or `1e3`: the engine gets the integer.
                    Some(i) if !n.is_i64() => {
                        payload.insert(field.name.clone(), Value::from(i));
                    }
                    Some(_) => {}
                    None => violations.push(FieldViolation::new(&field.name, Violation::OutOfRange)),
                },
                Some(_) => {}
            }
        }
        if violations.is_empty() {
            Ok(payload)
        } else {
            Err(violations)
        }
    }
}

impl StartForm {
    /// Reads the strings of a form body as the form's kinds ask: for an
    /// `Integer` field, `"42"` is `42`; for a `Number`, `"1.5"` is `1.5` (as
    /// written: any JSON number); for a `Boolean`, `"true"` and `"false"`.
    /// Text, dates, choices and fields the form does not name stay strings;
    /// a string that does not read as its kind stays a string, and
    /// [`validate`](Self::validate) then reports it as the wrong type.
    pub(crate) fn read_form_strings(&self, payload: &mut Map<String, Value>) {
        self.read_strings_of(payload, |_| true);
    }

    /// [`read_form_strings`](Self::read_form_strings) for the fields `only`
    /// takes: a mapping's fields whose values came as text.
    pub(crate) fn read_strings_of(&self, payload: &mut Map<String, Value>, only: impl Fn(&str) -> bool) {
        for field in self.fields.iter().filter(|f| only(&f.name)) {
            let Some(Value::String(text)) = payload.get(&field.name) else {
                continue;
            };
            let read = match field.kind {
                FieldKind::Integer | FieldKind::Number => {
                    let text = text.trim_ascii();
                    // Only JSON's own number syntax: no `+1`, `0x1`, `inf`.
                    serde_json::from_str::<serde_json::Number>(text)
                        .ok()
                        .filter(|_| !text.is_empty())
                        .map(Value::Number)
                }
                FieldKind::Boolean => match text.trim_ascii() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => None,
                },
                _ => None,
            };
            if let Some(value) = read {
                payload.insert(field.name.clone(), value);
            }
        }
    }
}

/// What is wrong with one field of a payload.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Violation {
    /// A mandatory field is absent, `null` or a blank string.
    Missing,
    /// The value is not of the field's kind.
    #[non_exhaustive]
    WrongType {
        /// The kind the form asks for.
        expected: FieldKind,
    },
    /// An `Integer` field's value is an integer beyond `i64` (what engines
    /// store as a long).
    OutOfRange,
}

impl Violation {
    /// A stable machine-readable name: `missing`, `wrong_type` or
    /// `out_of_range`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::WrongType { .. } => "wrong_type",
            Self::OutOfRange => "out_of_range",
        }
    }
}

/// One problem with one field of a payload, as reported by
/// [`WebhookError::violations`](crate::WebhookError::violations).
///
/// Serialized as `{"field": "orderNumber", "problem": "missing", "message": "…"}`,
/// with `"query": "$.body.order.number"` too for a field a source's mapping
/// fills.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FieldViolation {
    field: String,
    violation: Violation,
    query: Option<String>,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, violation: Violation) -> Self {
        Self {
            field: field.into(),
            violation,
            query: None,
        }
    }

    /// The violation of a field a source's mapping fills from `query`
    /// (the query is then named in the message and the problem document).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The query of a mapped field.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The field's name.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong.
    pub fn violation(&self) -> &Violation {
        &self.violation
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f)?;
        match &self.query {
            Some(query) => write!(f, " (mapped from `{query}`)"),
            None => Ok(()),
        }
    }
}

impl FieldViolation {
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.violation {
            Violation::Missing => write!(f, "mandatory field `{}` is missing", self.field),
            Violation::WrongType {
                expected: FieldKind::Choice(options),
            } => write!(f, "field `{}` must be one of {:?}", self.field, options),
            Violation::WrongType { expected } => {
                write!(f, "field `{}` must be {}", self.field, expected.describe())
            }
            Violation::OutOfRange => write!(
                f,
                "field `{}` must be an integer from {} to {}",
                self.field,
                i64::MIN,
                i64::MAX
            ),
        }
    }
}

impl Serialize for FieldViolation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("FieldViolation", 3 + usize::from(self.query.is_some()))?;
        s.serialize_field("field", &self.field)?;
        s.serialize_field("problem", self.violation.code())?;
        s.serialize_field("message", &self.to_string())?;
        if let Some(query) = &self.query {
            s.serialize_field("query", query)?;
        }
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: FieldKind, value: Value) -> bool {
        kind.accepts(&value)
    }

    #[test]
    fn a_blank_mandatory_string_is_missing_and_any_other_character_is_not() {
        let form = StartForm::new([FieldSpec::mandatory("name", FieldKind::Text)]);
        let payload = |text: &str| json!({ "name": text }).as_object().cloned().unwrap_or_default();
        // ASCII and Unicode white space (no-break, ideographic, line separator).
        for blank in ["", " ", "\t\n\r", "\u{a0}", "\u{3000}\u{2028}"] {
            let violations = form.validate(payload(blank)).unwrap_err();
            assert_eq!(violations[0].violation(), &Violation::Missing, "{blank:?}");
        }
        // A zero-width space is not white space; neither is one letter among it.
        for text in ["\u{200b}", " x ", "\u{3000}y"] {
            assert!(form.validate(payload(text)).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn kinds_accept_exactly_their_json() {
        assert!(check(FieldKind::Integer, json!(12)));
        assert!(check(FieldKind::Integer, json!(u64::MAX)));
        assert!(!check(FieldKind::Integer, json!(1.5)));
        assert!(check(FieldKind::Integer, json!(2.0)));
        assert!(!check(FieldKind::Integer, json!("12")));
        assert!(check(FieldKind::Number, json!(1.5)));
        assert!(!check(FieldKind::Number, json!("1.5")));
        assert!(check(FieldKind::Boolean, json!(false)));
        assert!(!check(FieldKind::Boolean, json!("false")));
        assert!(check(FieldKind::Date, json!("2024-02-29")));
        assert!(!check(FieldKind::Date, json!("2023-02-29")));
        assert!(!check(FieldKind::Date, json!("2024-13-01")));
        assert!(!check(FieldKind::Date, json!("2024-1-01")));
        assert!(!check(FieldKind::Date, json!("+2024-01-01")));
        assert!(!check(FieldKind::Date, json!("2024-01-01T00:00:00Z")));
        assert!(check(FieldKind::DateTime, json!("2024-01-01T10:00:00Z")));
        assert!(check(FieldKind::DateTime, json!("2024-01-01T10:00:00.5+02:00")));
        assert!(!check(FieldKind::DateTime, json!("2024-01-01T10:00:00")));
        assert!(!check(FieldKind::DateTime, json!("2024-01-01")));
        assert!(!check(FieldKind::DateTime, json!("2024-01-01 10:00:00Z")));
        let choice = FieldKind::Choice(vec!["a".into(), "b".into()]);
        assert!(check(choice.clone(), json!("a")));
        assert!(!check(choice, json!("c")));
        assert!(check(FieldKind::Object, json!({})));
        assert!(!check(FieldKind::Object, json!([])));
        assert!(check(FieldKind::Array, json!([])));
        assert!(check(FieldKind::Any, json!(null)));
    }

    #[test]
    fn later_field_with_the_same_name_replaces_the_earlier() {
        let form = StartForm::new([
            FieldSpec::mandatory("a", FieldKind::Text),
            FieldSpec::optional("a", FieldKind::Integer),
        ]);
        assert_eq!(form.fields().len(), 1);
        assert!(!form.fields()[0].is_mandatory());
        let form = StartForm::new([
            FieldSpec::optional("a", FieldKind::Integer),
            FieldSpec::mandatory("a", FieldKind::Text),
        ]);
        assert!(form.fields()[0].is_mandatory());
        assert_eq!(form.fields()[0].kind(), &FieldKind::Text);
    }

    #[test]
    fn violation_serializes_with_field_problem_and_message() {
        let v = FieldViolation::new(
            "qty",
            Violation::WrongType {
                expected: FieldKind::Integer,
            },
        );
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({"field": "qty", "problem": "wrong_type", "message": "field `qty` must be integer"})
        );
    }

    #[test]
    fn a_form_s_strings_are_read_as_the_kinds_ask() {
        let form = StartForm::new([
            FieldSpec::mandatory("quantity", FieldKind::Integer),
            FieldSpec::mandatory("price", FieldKind::Number),
            FieldSpec::mandatory("gift", FieldKind::Boolean),
            FieldSpec::mandatory("on", FieldKind::Date),
            FieldSpec::mandatory("code", FieldKind::Text),
            FieldSpec::optional("bad", FieldKind::Integer),
            FieldSpec::optional("yes", FieldKind::Boolean),
        ]);
        let mut payload = json!({
            "quantity": "42", "price": " 1.5e2 ", "gift": "false", "on": "2024-02-29",
            "code": "007", "bad": "+1", "yes": "True", "extra": "3",
        })
        .as_object()
        .unwrap()
        .clone();
        form.read_form_strings(&mut payload);
        assert_eq!(
            Value::Object(payload.clone()),
            json!({
                "quantity": 42, "price": 150.0, "gift": false, "on": "2024-02-29",
                "code": "007", "bad": "+1", "yes": "True", "extra": "3",
            })
        );
        let violations = form.validate(payload).unwrap_err();
        let wrong: Vec<&str> = violations.iter().map(FieldViolation::field).collect();
        assert_eq!(wrong, ["bad", "yes"]);
    }
}
