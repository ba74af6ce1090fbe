//! What a source does with a delivery's document before the start form
//! sees it: its conditions, the delivery id it reads, and the mapping of
//! the sender's payload into the start form's fields.

use serde_json::{Map, Value};

use super::query::{JsonQuery, Origin};
use super::{InvalidSource, SourceCall};
use crate::form::insert_repeated;

/// How a sender's payload becomes the start form's fields: for each field,
/// a [`JsonQuery`] over the delivery's document
/// (`{"body": …, "headers": {…}, "query": {…}}`), and optionally the whole
/// body under one variable.
///
/// With a mapping, the variables are exactly the mapped fields (plus the
/// form's defaults, and the body variable): a query that selects nothing
/// leaves its field absent (a mandatory one is then `422 invalid_payload`,
/// its violation naming the field and its query). Values keep their JSON
/// type; strings from headers, the query string and form bodies are read
/// by the field's kind, as form bodies are (`"42"` for an integer field).
///
/// # Example
///
/// ```
/// use process_webhook::{JsonQuery, PayloadMapping};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mapping = PayloadMapping::new()
///     .with_field("author", "$.body.pull_request.user.login".parse()?)?
///     .with_field("title", "$.body.pull_request.title".parse()?)?
///     .with_field("event", "$.headers['x-github-event']".parse()?)?
///     .with_body_variable("delivery")?;
/// assert_eq!(mapping.query("author").map(JsonQuery::as_str), Some("$.body.pull_request.user.login"));
/// assert!(PayloadMapping::new()
///     .with_field("author", "$.body.a".parse()?)?
///     .with_field("author", "$.body.b".parse()?)
///     .is_err());
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayloadMapping {
    fields: Vec<(String, JsonQuery)>,
    body_variable: Option<String>,
}

impl PayloadMapping {
    /// A mapping of no field yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `field` from the value `query` selects.
    ///
    /// # Errors
    ///
    /// [`InvalidSource::DuplicateField`] when `field` is mapped already or
    /// is the body variable.
    pub fn with_field(mut self, field: impl Into<String>, query: JsonQuery) -> Result<Self, InvalidSource> {
        let field = field.into();
        if self.names(&field) {
            return Err(InvalidSource::DuplicateField { field });
        }
        self.fields.push((field, query));
        Ok(self)
    }

    /// Hands the whole body to the engine as the variable `name` too.
    ///
    /// # Errors
    ///
    /// [`InvalidSource::DuplicateField`] when `name` is a mapped field.
    pub fn with_body_variable(mut self, name: impl Into<String>) -> Result<Self, InvalidSource> {
        let name = name.into();
        if self.fields.iter().any(|(field, _)| *field == name) {
            return Err(InvalidSource::DuplicateField { field: name });
        }
        self.body_variable = Some(name);
        Ok(self)
    }

    /// The mapped fields and their queries, in the order they were added.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &JsonQuery)> {
        self.fields.iter().map(|(field, query)| (field.as_str(), query))
    }

    /// The query of `field`, if it is mapped.
    pub fn query(&self, field: &str) -> Option<&JsonQuery> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, q)| q)
    }

    /// The variable that holds the whole body, if any.
    pub fn body_variable(&self) -> Option<&str> {
        self.body_variable.as_deref()
    }

    fn names(&self, name: &str) -> bool {
        self.body_variable.as_deref() == Some(name) || self.fields.iter().any(|(f, _)| f == name)
    }

    /// The variables of `document`, and the mapped fields whose values are
    /// text to be read by their kinds (from headers, the query, or a form
    /// body). Takes the body out of the document for the body variable.
    fn apply(&self, document: &mut Value, form_body: bool) -> (Map<String, Value>, Vec<String>) {
        let mut variables = Map::new();
        let mut text = Vec::new();
        for (field, query) in &self.fields {
            if let Some((value, origin)) = query.select_with_origin(document) {
                if value.is_string() && (origin == Origin::Text || form_body) {
                    text.push(field.clone());
                }
                variables.insert(field.clone(), value.clone());
            }
        }
        if let Some(name) = &self.body_variable {
            variables.insert(name.clone(), document["body"].take());
        }
        (variables, text)
    }
}

/// A condition a delivery must meet to start the process: the value a
/// [`JsonQuery`] selects equals one of the listed values (JSON values;
/// numbers equal by value, so `1` is `1.0`). A query that selects nothing
/// meets no condition.
///
/// # Example
///
/// ```
/// use process_webhook::Condition;
/// use serde_json::json;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let opened = Condition::new("$.body.action".parse()?, ["opened", "reopened"])?;
/// assert_eq!(opened.equals(), &[json!("opened"), json!("reopened")][..]);
/// assert!(opened.holds(&json!({"body": {"action": "reopened"}})));
/// assert!(!opened.holds(&json!({"body": {"action": "closed"}})));
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    query: JsonQuery,
    equals: Vec<Value>,
}

impl Condition {
    /// Holds when `query` selects one of `equals`.
    ///
    /// # Errors
    ///
    /// [`InvalidSource::NoValues`] when `equals` is empty (no delivery
    /// could meet it).
    pub fn new<V: Into<Value>>(
        query: JsonQuery,
        equals: impl IntoIterator<Item = V>,
    ) -> Result<Self, InvalidSource> {
        let equals: Vec<Value> = equals.into_iter().map(Into::into).collect();
        if equals.is_empty() {
            return Err(InvalidSource::NoValues {
                query: query.as_str().to_owned(),
            });
        }
        Ok(Self { query, equals })
    }

    /// The query.
    pub fn query(&self) -> &JsonQuery {
        &self.query
    }

    /// The values it may equal.
    pub fn equals(&self) -> &[Value] {
        &self.equals
    }

    /// Whether `document` meets it.
    pub fn holds(&self, document: &Value) -> bool {
        self.query
            .select(document)
            .is_some_and(|value| self.equals.iter().any(|wanted| same_value(value, wanted)))
    }
}

/// JSON equality, but numbers by value.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // An integer and a float: by value.
        (Value::Number(x), Value::Number(y)) => {
            x == y || (x.is_f64() != y.is_f64() && x.as_f64() == y.as_f64())
        }
        _ => a == b,
    }
}

/// A source's rules over a delivery's document: conditions, a delivery id
/// query, a mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Rules {
    pub(crate) mapping: Option<PayloadMapping>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) delivery: Option<JsonQuery>,
}

/// How rules are stored (a store's JSON column): `{"map": [{"field":
/// …, "query": …}, …], "body_variable": …, "when": [{"path": …,
/// "equals": […]}, …], "delivery": …}`, every member optional.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RulesShape {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    map: Option<Vec<FieldShape>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body_variable: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    when: Vec<ConditionShape>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<JsonQuery>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldShape {
    field: String,
    query: JsonQuery,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionShape {
    path: JsonQuery,
    equals: Vec<Value>,
}

impl serde::Serialize for Rules {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RulesShape {
            map: self.mapping.as_ref().map(|m| {
                m.fields
                    .iter()
                    .map(|(field, query)| FieldShape {
                        field: field.clone(),
                        query: query.clone(),
                    })
                    .collect()
            }),
            body_variable: self.mapping.as_ref().and_then(|m| m.body_variable.clone()),
            when: self
                .conditions
                .iter()
                .map(|c| ConditionShape {
                    path: c.query.clone(),
                    equals: c.equals.clone(),
                })
                .collect(),
            delivery: self.delivery.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Rules {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let shape = RulesShape::deserialize(deserializer)?;
        let mapping = match (shape.map, shape.body_variable) {
            (None, None) => None,
            (fields, body_variable) => {
                let mut mapping = PayloadMapping::new();
                for FieldShape { field, query } in fields.unwrap_or_default() {
                    mapping = mapping.with_field(field, query).map_err(D::Error::custom)?;
                }
                if let Some(name) = body_variable {
                    mapping = mapping.with_body_variable(name).map_err(D::Error::custom)?;
                }
                Some(mapping)
            }
        };
        let conditions = shape
            .when
            .into_iter()
            .map(|c| Condition::new(c.path, c.equals))
            .collect::<Result<_, _>>()
            .map_err(D::Error::custom)?;
        Ok(Self {
            mapping,
            conditions,
            delivery: shape.delivery,
        })
    }
}

/// A delivery once the rules ran.
pub(crate) enum Ruled {
    /// A condition does not hold: nothing starts.
    Ignored,
    /// The variables, the delivery id the payload names (if the rules read
    /// one), and the mapped fields whose text is to be read by kind (with
    /// a mapping).
    Start {
        payload: Map<String, Value>,
        delivery: Option<String>,
        mapped: Option<Mapped>,
    },
}

/// Variables a mapping made: what the rest of the call needs of it.
#[derive(Debug)]
pub(crate) struct Mapped {
    mapping: PayloadMapping,
    text: Vec<String>,
}

impl Mapped {
    /// Reads the mapped fields that came as text by the form's kinds.
    pub(crate) fn read_text(&self, form: &crate::StartForm, payload: &mut Map<String, Value>) {
        if !self.text.is_empty() {
            form.read_strings_of(payload, |field| self.text.iter().any(|t| t == field));
        }
    }

    /// `error`, its violations of mapped fields naming their queries.
    pub(crate) fn annotate(&self, error: crate::WebhookError) -> crate::WebhookError {
        match error {
            crate::WebhookError::InvalidPayload { violations } => crate::WebhookError::InvalidPayload {
                violations: violations
                    .into_iter()
                    .map(|v| match self.mapping.query(v.field()) {
                        Some(query) => v.with_query(query.as_str()),
                        None => v,
                    })
                    .collect(),
            },
            other => other,
        }
    }
}

impl Rules {
    /// Whether there is no rule at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.mapping.is_none() && self.conditions.is_empty() && self.delivery.is_none()
    }

    /// Runs the rules over the document of `call` with `payload` as its
    /// body.
    ///
    /// # Errors
    ///
    /// `400 invalid_idempotency_key` when the delivery query selects a
    /// value that is not a string or a number (or not a valid key).
    pub(crate) fn apply(
        self,
        call: &SourceCall<'_>,
        payload: Map<String, Value>,
        form_body: bool,
    ) -> Result<Ruled, crate::WebhookError> {
        let mut document = document(call, payload);
        if !self.conditions.iter().all(|c| c.holds(&document)) {
            return Ok(Ruled::Ignored);
        }
        let delivery = match self.delivery.as_ref().and_then(|q| q.select(&document)) {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Number(id)) => Some(id.to_string()),
            Some(_) => return Err(crate::WebhookError::InvalidIdempotencyKey),
        };
        let (payload, mapped) = match self.mapping {
            Some(mapping) => {
                let (variables, text) = mapping.apply(&mut document, form_body);
                (variables, Some(Mapped { mapping, text }))
            }
            None => match document["body"].take() {
                Value::Object(body) => (body, None),
                _ => (Map::new(), None),
            },
        };
        Ok(Ruled::Start {
            payload,
            delivery,
            mapped,
        })
    }
}

/// Headers the document leaves out: they carry a secret itself (GitLab's
/// token is the secret; Basic credentials hold the password).
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "proxy-authorization", "cookie", "x-gitlab-token"];

/// The one document a source's queries run over:
/// `{"body": …, "headers": {name: value}, "query": {name: value}}`.
/// Header names are lower case; a header sent twice is its values joined
/// by `", "` (RFC 9110, section 5.3); a query parameter sent twice is an
/// array of its values. Headers that carry credentials are left out, so
/// that no mapping can hand a secret to the engine.
pub(crate) fn document(call: &SourceCall<'_>, body: Map<String, Value>) -> Value {
    let mut headers = Map::new();
    for (name, value) in call.headers {
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            continue;
        }
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    let mut query = Map::new();
    if let Some((_, q)) = call.target.split_once('?') {
        for (name, value) in form_urlencoded::parse(q.as_bytes()) {
            insert_repeated(&mut query, name, Value::String(value.into_owned()));
        }
    }
    let mut document = Map::new();
    document.insert("body".to_owned(), Value::Object(body));
    document.insert("headers".to_owned(), Value::Object(headers));
    document.insert("query".to_owned(), Value::Object(query));
    Value::Object(document)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> JsonQuery {
        text.parse().unwrap()
    }

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn run(rules: Rules, headers: &[(String, String)], target: &str, payload: Value, form: bool) -> Ruled {
        let call = SourceCall {
            headers,
            body: b"",
            target,
        };
        rules.apply(&call, body(payload), form).unwrap()
    }

    #[test]
    fn the_document_has_the_body_the_headers_without_credentials_and_the_query() {
        let headers = headers(&[
            ("x-event", "push"),
            ("accept", "a"),
            ("accept", "b"),
            ("authorization", "Basic dTpzZWNyZXQ="),
            ("proxy-authorization", "Basic dTpzZWNyZXQ="),
            ("cookie", "session=secret"),
            ("x-gitlab-token", "secret"),
        ]);
        let call = SourceCall {
            headers: &headers,
            body: b"",
            target: "/webhook/send?uid=u&tag=a&tag=b&tag=c&n=%C3%A9+1",
        };
        assert_eq!(
            document(&call, body(json!({"a": 1}))),
            json!({
                "body": {"a": 1},
                "headers": {"x-event": "push", "accept": "a, b"},
                "query": {"uid": "u", "tag": ["a", "b", "c"], "n": "é 1"},
            })
        );
        let bare = SourceCall {
            headers: &[],
            body: b"",
            target: "/hook",
        };
        assert_eq!(
            document(&bare, Map::new()),
            json!({"body": {}, "headers": {}, "query": {}})
        );
    }

    #[test]
    fn a_condition_holds_when_its_query_selects_one_of_its_values() {
        let document = json!({"body": {"action": "opened", "n": 1, "f": 2.5, "flag": true}});
        let holds =
            |query: &str, equals: Vec<Value>| Condition::new(q(query), equals).unwrap().holds(&document);
        assert!(holds("$.body.action", vec![json!("closed"), json!("opened")]));
        assert!(!holds("$.body.action", vec![json!("closed")]));
        assert!(!holds("$.body.absent", vec![json!("opened"), Value::Null]));
        // Numbers by value: an integer equals the same float, and floats
        // compare as floats.
        assert!(holds("$.body.n", vec![json!(1.0)]));
        assert!(holds("$.body.n", vec![json!(1)]));
        assert!(!holds("$.body.n", vec![json!(1.5), json!("1")]));
        assert!(holds("$.body.f", vec![json!(2.5)]));
        assert!(!holds("$.body.f", vec![json!(2)]));
        assert!(holds("$.body.flag", vec![json!(true)]));
        assert_eq!(
            Condition::new(q("$.body.action"), Vec::<Value>::new()),
            Err(InvalidSource::NoValues {
                query: "$.body.action".to_owned()
            })
        );
    }

    #[test]
    fn a_delivery_that_meets_no_condition_is_ignored_and_one_that_meets_all_starts() {
        let rules = |equals: &str| Rules {
            conditions: vec![
                Condition::new(q("$.body.action"), ["opened"]).unwrap(),
                Condition::new(q("$.headers['x-event']"), [equals]).unwrap(),
            ],
            ..Rules::default()
        };
        let headers = headers(&[("x-event", "pull_request")]);
        let payload = json!({"action": "opened", "number": 7});
        assert!(matches!(
            run(rules("push"), &headers, "/", payload.clone(), false),
            Ruled::Ignored
        ));
        let Ruled::Start {
            payload: started,
            delivery,
            mapped,
        } = run(rules("pull_request"), &headers, "/", payload.clone(), false)
        else {
            panic!("the delivery meets both conditions");
        };
        // Without a mapping, the body is the payload.
        assert_eq!(Value::Object(started), payload);
        assert!(delivery.is_none() && mapped.is_none());
    }

    #[test]
    fn the_delivery_id_is_a_string_or_a_number_as_written_and_nothing_else() {
        let rules = || Rules {
            delivery: Some(q("$.body.id")),
            ..Rules::default()
        };
        let id = |payload: Value| match rules().apply(
            &SourceCall {
                headers: &[],
                body: b"",
                target: "/",
            },
            body(payload),
            false,
        ) {
            Ok(Ruled::Start { delivery, .. }) => Ok(delivery),
            Ok(Ruled::Ignored) => panic!("no condition"),
            Err(e) => Err(e.code()),
        };
        assert_eq!(id(json!({"id": "evt_1"})), Ok(Some("evt_1".to_owned())));
        assert_eq!(
            id(json!({"id": 12345678901_u64})),
            Ok(Some("12345678901".to_owned()))
        );
        assert_eq!(id(json!({"id": null})), Ok(None));
        assert_eq!(id(json!({})), Ok(None));
        for wrong in [json!({"id": {"a": 1}}), json!({"id": [1]}), json!({"id": true})] {
            assert_eq!(id(wrong), Err("invalid_idempotency_key"));
        }
    }

    #[test]
    fn a_mapping_makes_exactly_its_fields_and_the_body_variable() {
        let mapping = PayloadMapping::new()
            .with_field("login", q("$.body.user.login"))
            .unwrap()
            .with_field("count", q("$.body.count"))
            .unwrap()
            .with_field("event", q("$.headers['x-event']"))
            .unwrap()
            .with_field("tag", q("$.query.tag"))
            .unwrap()
            .with_field("absent", q("$.body.nothing"))
            .unwrap()
            .with_body_variable("raw")
            .unwrap();
        let rules = Rules {
            mapping: Some(mapping),
            ..Rules::default()
        };
        let headers = headers(&[("x-event", "push")]);
        let payload = json!({"user": {"login": "octocat"}, "count": "3", "other": 1});
        let Ruled::Start {
            payload: variables,
            mapped: Some(mapped),
            ..
        } = run(rules.clone(), &headers, "/?tag=42", payload.clone(), false)
        else {
            panic!("a mapped start");
        };
        assert_eq!(
            Value::Object(variables),
            json!({"login": "octocat", "count": "3", "event": "push", "tag": "42", "raw": payload})
        );
        // Text from headers and the query is read by kind; a JSON body's
        // string stays a string.
        assert_eq!(mapped.text, ["event", "tag"]);
        // From a form body, every string is text.
        let Ruled::Start {
            mapped: Some(mapped), ..
        } = run(rules, &headers, "/?tag=42", payload, true)
        else {
            panic!("a mapped start");
        };
        assert_eq!(mapped.text, ["login", "count", "event", "tag"]);
    }

    #[test]
    fn a_field_is_mapped_once_and_never_as_the_body_variable_too() {
        let duplicate = |field: &str| InvalidSource::DuplicateField {
            field: field.to_owned(),
        };
        let one = PayloadMapping::new().with_field("a", q("$.body.a")).unwrap();
        assert_eq!(one.clone().with_field("a", q("$.body.b")), Err(duplicate("a")));
        assert_eq!(one.clone().with_body_variable("a"), Err(duplicate("a")));
        let with_body = one.with_body_variable("raw").unwrap();
        assert_eq!(
            with_body.clone().with_field("raw", q("$.body.b")),
            Err(duplicate("raw"))
        );
        assert_eq!(with_body.body_variable(), Some("raw"));
        assert_eq!(
            with_body
                .fields()
                .map(|(f, q)| (f, q.as_str()))
                .collect::<Vec<_>>(),
            [("a", "$.body.a")]
        );
        assert_eq!(with_body.query("raw"), None);
    }

    #[test]
    fn rules_are_empty_only_without_a_mapping_a_condition_and_a_delivery_query() {
        assert!(Rules::default().is_empty());
        let mapping = Rules {
            mapping: Some(PayloadMapping::new()),
            ..Rules::default()
        };
        let condition = Rules {
            conditions: vec![Condition::new(q("$.body.a"), [1]).unwrap()],
            ..Rules::default()
        };
        let delivery = Rules {
            delivery: Some(q("$.body.id")),
            ..Rules::default()
        };
        for rules in [mapping, condition, delivery] {
            assert!(!rules.is_empty(), "{rules:?}");
        }
    }

    #[test]
    fn only_the_fields_that_came_as_text_are_read_by_their_kinds() {
        use crate::{FieldKind, FieldSpec, StartForm};
        let form = StartForm::new([
            FieldSpec::optional("count", FieldKind::Integer),
            FieldSpec::optional("body_count", FieldKind::Integer),
        ]);
        let mapped = |text: &[&str]| Mapped {
            mapping: PayloadMapping::new(),
            text: text.iter().map(|t| (*t).to_owned()).collect(),
        };
        let mut payload = body(json!({"count": "3", "body_count": "4"}));
        mapped(&["count"]).read_text(&form, &mut payload);
        assert_eq!(Value::Object(payload), json!({"count": 3, "body_count": "4"}));
        let mut untouched = body(json!({"count": "3"}));
        mapped(&[]).read_text(&form, &mut untouched);
        assert_eq!(Value::Object(untouched), json!({"count": "3"}));
        let condition = Condition::new(q("$.body.a"), [json!(1), json!("b")]).unwrap();
        assert_eq!(condition.equals(), &[json!(1), json!("b")][..]);
        assert_eq!(condition.query().as_str(), "$.body.a");
    }

    #[test]
    fn violations_of_mapped_fields_name_their_queries() {
        use crate::{FieldViolation, Violation, WebhookError};
        let mapped = Mapped {
            mapping: PayloadMapping::new()
                .with_field("login", q("$.body.user.login"))
                .unwrap(),
            text: Vec::new(),
        };
        let error = mapped.annotate(WebhookError::InvalidPayload {
            violations: vec![
                FieldViolation::new("login", Violation::Missing),
                FieldViolation::new("other", Violation::Missing),
            ],
        });
        let violations = error.violations();
        assert_eq!(violations[0].query(), Some("$.body.user.login"));
        assert_eq!(
            violations[0].to_string(),
            "mandatory field `login` is missing (mapped from `$.body.user.login`)"
        );
        assert_eq!(violations[1].query(), None);
        assert_eq!(
            mapped.annotate(WebhookError::MissingToken).code(),
            "missing_token"
        );
    }

    #[test]
    fn rules_are_stored_as_json_and_read_back_through_the_same_checks() {
        let rules = Rules {
            mapping: Some(
                PayloadMapping::new()
                    .with_field("b", q("$.body.b"))
                    .unwrap()
                    .with_field("a", q("$.body.a"))
                    .unwrap()
                    .with_body_variable("raw")
                    .unwrap(),
            ),
            conditions: vec![Condition::new(q("$.body.action"), [json!("opened"), json!(1)]).unwrap()],
            delivery: Some(q("$.body.id")),
        };
        let stored = serde_json::to_value(&rules).unwrap();
        assert_eq!(
            stored,
            json!({
                "map": [{"field": "b", "query": "$.body.b"}, {"field": "a", "query": "$.body.a"}],
                "body_variable": "raw",
                "when": [{"path": "$.body.action", "equals": ["opened", 1]}],
                "delivery": "$.body.id",
            })
        );
        assert_eq!(serde_json::from_value::<Rules>(stored).unwrap(), rules);
        assert_eq!(serde_json::to_value(Rules::default()).unwrap(), json!({}));
        let only_body = serde_json::from_value::<Rules>(json!({"body_variable": "raw"})).unwrap();
        assert_eq!(only_body.mapping.unwrap().body_variable(), Some("raw"));
        for refused in [
            json!({"map": [{"field": "a", "query": "$.a"}, {"field": "a", "query": "$.b"}]}),
            json!({"map": [{"field": "a", "query": "$.a"}], "body_variable": "a"}),
            json!({"when": [{"path": "$.a", "equals": []}]}),
            json!({"delivery": "$..id"}),
            json!({"mapping": {}}),
        ] {
            assert!(
                serde_json::from_value::<Rules>(refused.clone()).is_err(),
                "{refused}"
            );
        }
    }
}
