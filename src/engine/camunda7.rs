//! [`Camunda7Engine`]: starts process instances through Camunda 7's REST API
//! (feature `camunda7`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::engine::http::{poll_until_ended, probe, retry_after, status_and_json, transport_error};
use crate::engine::{
    Completion, DEFAULT_TRACE_VARIABLE, Engine, EngineError, InstanceRef, ProcessInstance, Recovery,
    StartCommand, trace_variable_of,
};
use crate::form::FieldKind;
use crate::id::InstanceId;

/// Path segments keep only RFC 3986 unreserved characters unescaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest text Camunda 7 stores as a `String` variable.
const CAMUNDA_STRING_LIMIT: usize = 4000;

/// The default timeout of one start request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`Engine`] that starts instances on a Camunda 7 engine through its REST
/// API: `POST {base}/process-definition/key/{key}/start` (or
/// `…/key/{key}/tenant-id/{tenant}/start` with a tenant).
///
/// # Variables
///
/// Each variable is sent as `{"value": …, "type": …}`:
///
/// | JSON | Camunda type |
/// |---|---|
/// | string (up to 4,000 characters) | `String` |
/// | string over 4,000 characters | `Json`, its value the JSON text of the string (Camunda's `String` stops at 4,000) |
/// | `true` / `false` | `Boolean` |
/// | integer within `i32` | `Integer` |
/// | other integer within `i64` | `Long` |
/// | integer beyond `i64` | `Json`, the number's text (a `Double` would lose digits) |
/// | other number | `Double` |
/// | `null` | `Null` |
/// | object, array | `Json`, the value's serialized text |
///
/// A start form's `Date` and `DateTime` fields are sent as `Date` in Camunda's
/// format `yyyy-MM-dd'T'HH:mm:ss.SSSZ` (a `Date` at midnight UTC). The engine
/// reads the form from the command ([`StartCommand::start_form`]), which
/// carries the deployment the start resolved. The `Json` type needs Camunda's Spin plugin,
/// which the standard distributions include.
///
/// The business key is the command's idempotency key, where there is one.
///
/// # After a replica's crash
///
/// Its [`recovery`](Engine::recovery) is
/// [`Recovery::FindsByBusinessKey`](crate::Recovery::FindsByBusinessKey)
/// with the engine's timeout: a key whose start was cut off is taken over
/// by its next delivery once the start's call has surely ended, and
/// [`find_started`](Engine::find_started) looks for the instance with
/// `GET {base}/process-instance?businessKey={key}&processDefinitionKey={definition}`
/// (running instances) and then
/// `GET {base}/history/process-instance?processInstanceBusinessKey={key}&processDefinitionKey={definition}`
/// (ended ones; Camunda's history levels `activity`, `audit` and `full`
/// keep them), with `tenantIdIn` for a tenant's engine. The instance found
/// completes the key; only when neither query finds one is it started.
///
/// # Waiting
///
/// [`wait`](Engine::wait) (`Prefer: wait`) polls
/// `GET {base}/history/process-instance/{id}` (every 100 ms, then up to
/// every second) until its `state` is `COMPLETED` (the answer's `result`
/// is the instance's variables, read from
/// `GET {base}/history/variable-instance?processInstanceId={id}&deserializeValues=false`,
/// `Json` variables as the JSON they hold, `Date`s as Camunda's text),
/// `EXTERNALLY_TERMINATED` or `INTERNALLY_TERMINATED` (terminated), or the
/// time runs out (running). It needs a history level above `none`.
///
/// # Errors
///
/// - Camunda's 404 (no definition with that key) and other 4xx answers are
///   [`EngineErrorKind::Refused`](crate::EngineErrorKind::Refused), not
///   retryable; the error's source is a [`Camunda7Problem`] with Camunda's
///   `type`, `message` and `code`.
/// - 429 is `Overloaded` and 503 `Unavailable` (each with `Retry-After` when
///   Camunda sends one), and so is a connection that could not be made
///   (refused, unresolvable, a connect timeout: nothing was sent); other
///   5xx answers, timeouts and other failures are `Failed` and retryable. Among them is Camunda's answer to a start
///   of a suspended definition (`500`, `ENGINE-03043`): it succeeds once
///   the definition is active again.
///
/// The webhook caller never sees any of it beyond its status and code.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use process_webhook::Camunda7Engine;
///
/// let engine = Camunda7Engine::new("http://localhost:8080/engine-rest")
///     .with_basic_auth("demo", "demo")
///     .with_tenant_id("acme")
///     .with_timeout(Duration::from_secs(5));
/// assert_eq!(engine.start_url("order-intake"),
///     "http://localhost:8080/engine-rest/process-definition/key/order-intake/tenant-id/acme/start");
/// ```
#[derive(Clone)]
pub struct Camunda7Engine {
    base: String,
    client: reqwest::Client,
    auth: Option<(String, String)>,
    tenant: Option<String>,
    timeout: Duration,
    trace_variable: Option<String>,
}

impl fmt::Debug for Camunda7Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Camunda7Engine")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|(user, _)| (user, "[redacted]")))
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("trace_variable", &self.trace_variable)
            .finish_non_exhaustive()
    }
}

impl Camunda7Engine {
    /// An engine at `base_url`, the REST API's root (e.g.
    /// `http://localhost:8080/engine-rest`), with a default client, no
    /// authentication, no tenant and a 10 s timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_owned();
        Self {
            base,
            client: reqwest::Client::new(),
            auth: None,
            tenant: None,
            timeout: DEFAULT_TIMEOUT,
            trace_variable: Some(DEFAULT_TRACE_VARIABLE.to_owned()),
        }
    }

    /// Names the `String` variable that carries the caller's `traceparent`
    /// into the instance (default `traceparent`,
    /// [`DEFAULT_TRACE_VARIABLE`](crate::DEFAULT_TRACE_VARIABLE)). A payload
    /// variable of the same name is never overwritten.
    pub fn with_trace_variable(mut self, name: impl Into<String>) -> Self {
        self.trace_variable = Some(name.into());
        self
    }

    /// Sends no trace variable.
    pub fn without_trace_variable(mut self) -> Self {
        self.trace_variable = None;
        self
    }

    /// Authenticates with HTTP basic auth.
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Starts the definitions of this tenant.
    pub fn with_tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the timeout of one start request (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this client (e.g. with a proxy, or shared with the host).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// The URL a start of `definition_key` is sent to.
    pub fn start_url(&self, definition_key: &str) -> String {
        let key = utf8_percent_encode(definition_key, SEGMENT);
        match &self.tenant {
            None => format!("{}/process-definition/key/{key}/start", self.base),
            Some(tenant) => format!(
                "{}/process-definition/key/{key}/tenant-id/{}/start",
                self.base,
                utf8_percent_encode(tenant, SEGMENT)
            ),
        }
    }
}

/// The body of a start request: Camunda's typed variables and the business key.
fn start_body(command: &StartCommand, trace_variable: Option<&str>) -> Value {
    let form = command.start_form();
    let mut variables = Map::new();
    for (name, value) in &command.variables {
        let kind = form.fields().iter().find(|s| s.name() == name).map(|s| s.kind());
        variables.insert(name.clone(), typed_variable(value, kind));
    }
    if let Some((name, traceparent)) = trace_variable_of(command, trace_variable) {
        variables.insert(name.to_owned(), json!({"value": traceparent, "type": "String"}));
    }
    let mut body = json!({ "variables": variables });
    if let Some(key) = &command.idempotency_key {
        body["businessKey"] = Value::String(key.clone());
    }
    body
}

/// One variable as Camunda expects it.
fn typed_variable(value: &Value, kind: Option<&FieldKind>) -> Value {
    if let (Some(FieldKind::Date | FieldKind::DateTime), Value::String(s)) = (kind, value) {
        if let Some(date) = camunda_date(s) {
            return json!({"value": date, "type": "Date"});
        }
    }
    let as_json = |v: &Value| json!({"value": v.to_string(), "type": "Json"});
    match value {
        Value::Null => json!({"value": null, "type": "Null"}),
        Value::Bool(b) => json!({"value": b, "type": "Boolean"}),
        Value::String(s) if s.chars().count() > CAMUNDA_STRING_LIMIT => as_json(value),
        Value::String(s) => json!({"value": s, "type": "String"}),
        Value::Number(n) => match (n.as_i64(), n.is_u64()) {
            (Some(i), _) if i32::try_from(i).is_ok() => json!({"value": i, "type": "Integer"}),
            (Some(i), _) => json!({"value": i, "type": "Long"}),
            (None, true) => as_json(value),
            (None, false) => json!({"value": n, "type": "Double"}),
        },
        Value::Array(_) | Value::Object(_) => as_json(value),
    }
}

/// A `YYYY-MM-DD` or RFC 3339 text in Camunda's `yyyy-MM-dd'T'HH:mm:ss.SSSZ`.
fn camunda_date(text: &str) -> Option<String> {
    let format = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
    );
    let moment = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(moment) => moment,
        Err(_) => time::Date::parse(text, format_description!("[year]-[month]-[day]"))
            .ok()?
            .midnight()
            .assume_utc(),
    };
    moment.format(format).ok()
}

/// Camunda's error body: `{"type": "…", "message": "…", "code": …}`.
#[derive(Debug, Clone, Default, Deserialize)]
struct ProblemBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<Value>,
}

/// What Camunda answered to a start it did not carry out: the source of the
/// [`EngineError`], for the host's logs.
#[derive(Debug, Clone)]
pub struct Camunda7Problem {
    status: u16,
    body: ProblemBody,
}

impl Camunda7Problem {
    /// The HTTP status Camunda answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Camunda's exception type (e.g. `RestException`,
    /// `InvalidRequestException`), empty when it sent none.
    pub fn kind(&self) -> &str {
        &self.body.kind
    }

    /// Camunda's message.
    pub fn message(&self) -> &str {
        &self.body.message
    }

    /// Camunda's error code, when it sent one.
    pub fn code(&self) -> Option<&Value> {
        self.body.code.as_ref()
    }
}

impl fmt::Display for Camunda7Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "camunda answered {}", self.status)?;
        if !self.body.kind.is_empty() {
            write!(f, " {}", self.body.kind)?;
        }
        if !self.body.message.is_empty() {
            write!(f, ": {}", self.body.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Camunda7Problem {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartedBody {
    id: String,
    #[serde(default)]
    definition_id: Option<String>,
    #[serde(default)]
    business_key: Option<String>,
}

/// An instance as Camunda's runtime (`definitionId`) and history
/// (`processDefinitionId`) queries list it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FoundInstance {
    id: String,
    #[serde(default)]
    definition_id: Option<String>,
    #[serde(default)]
    process_definition_id: Option<String>,
}

impl Camunda7Engine {
    /// `GET {base}/{path}` with `query`: the status and the JSON body
    /// (`null` when there is none).
    async fn get(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(u16, Value), EngineError> {
        let mut request = self
            .client
            .get(format!("{}/{path}", self.base))
            .query(query)
            .timeout(timeout);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| transport_error("camunda", e))?;
        status_and_json("camunda", response).await
    }

    /// The variables of an ended instance, from the history: each value as
    /// JSON (a `Json` variable's text parsed).
    async fn ended_variables(&self, id: &str) -> Result<Value, EngineError> {
        let (status, body) = self
            .get(
                "history/variable-instance",
                &[("processInstanceId", id), ("deserializeValues", "false")],
                self.timeout,
            )
            .await?;
        let Value::Array(items) = body else {
            return Err(read_failed(
                "could not read the instance's variables",
                status,
                body,
            ));
        };
        let mut variables = Map::new();
        for item in items {
            let Some(name) = item["name"].as_str() else {
                continue;
            };
            let value = match (item["type"].as_str(), &item["value"]) {
                (Some("Json"), Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
                (_, value) => value.clone(),
            };
            variables.insert(name.to_owned(), value);
        }
        Ok(Value::Object(variables))
    }
}

/// A read Camunda did not answer as expected: retryable, with Camunda's
/// problem as its source.
fn read_failed(what: &str, status: u16, body: Value) -> EngineError {
    let problem = Camunda7Problem {
        status,
        body: serde_json::from_value(body).unwrap_or_default(),
    };
    EngineError::new(format!("camunda {what}: {problem}"))
        .with_retryable(true)
        .with_source(problem)
}

#[async_trait]
impl Engine for Camunda7Engine {
    async fn wait(
        &self,
        instance: &InstanceRef,
        within: Duration,
    ) -> Result<Option<Completion>, EngineError> {
        let id = instance.id().as_str();
        let path = format!("history/process-instance/{}", utf8_percent_encode(id, SEGMENT));
        poll_until_ended(within, |remaining| {
            let path = &path;
            async move {
                let (status, body) = self.get(path, &[], remaining.min(self.timeout)).await?;
                match (status, body["state"].as_str()) {
                    (200, Some("COMPLETED")) => self
                        .ended_variables(id)
                        .await
                        .map(|v| Some(Completion::Completed(v))),
                    (200, Some("EXTERNALLY_TERMINATED" | "INTERNALLY_TERMINATED")) => {
                        Ok(Some(Completion::Terminated))
                    }
                    // Running (or suspended), or not yet in the history.
                    (200, _) | (404, _) => Ok(None),
                    _ => Err(read_failed("could not read the instance", status, body)),
                }
            }
        })
        .await
    }

    /// `GET {base}/version`.
    async fn ready(&self) -> Result<(), EngineError> {
        let mut request = self
            .client
            .get(format!("{}/version", self.base))
            .timeout(self.timeout);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        probe("camunda", request).await
    }

    fn name(&self) -> &'static str {
        "camunda7"
    }

    fn recovery(&self) -> Recovery {
        Recovery::FindsByBusinessKey {
            call_deadline: self.timeout,
        }
    }

    async fn find_started(&self, command: &StartCommand) -> Result<Option<ProcessInstance>, EngineError> {
        let Some(key) = command.idempotency_key.as_deref() else {
            return Err(EngineError::refused(
                "a start without a key has no business key to find",
            ));
        };
        for (path, key_parameter) in [
            ("process-instance", "businessKey"),
            ("history/process-instance", "processInstanceBusinessKey"),
        ] {
            let mut query = vec![
                (key_parameter, key),
                ("processDefinitionKey", command.definition_key.as_str()),
            ];
            if let Some(tenant) = &self.tenant {
                query.push(("tenantIdIn", tenant));
            }
            let (status, body) = self.get(path, &query, self.timeout).await?;
            if !(200..300).contains(&status) {
                return Err(read_failed("could not look up a start", status, body));
            }
            let found: Vec<FoundInstance> = serde_json::from_value(body).map_err(|e| {
                EngineError::new("camunda's answer to an instance query is not a list of instances")
                    .with_retryable(true)
                    .with_source(e)
            })?;
            if let Some(found) = found.into_iter().next() {
                let mut instance = ProcessInstance::new(InstanceId::new(found.id)).with_business_key(key);
                if let Some(id) = found.definition_id.or(found.process_definition_id) {
                    instance = instance.with_definition_id(id);
                }
                return Ok(Some(instance));
            }
        }
        Ok(None)
    }

    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let body = start_body(command, self.trace_variable.as_deref());
        let mut request = self
            .client
            .post(self.start_url(&command.definition_key))
            .timeout(self.timeout)
            .json(&body);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| transport_error("camunda", e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error("camunda", e))?;
        if (200..300).contains(&status) {
            let started: StartedBody = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::new("camunda's answer to a start has no instance id").with_source(e)
            })?;
            let mut instance = ProcessInstance::new(InstanceId::new(started.id));
            if let Some(id) = started.definition_id {
                instance = instance.with_definition_id(id);
            }
            if let Some(key) = started.business_key {
                instance = instance.with_business_key(key);
            }
            return Ok(instance);
        }
        let problem = Camunda7Problem {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or_default(),
        };
        let message = format!("camunda did not start {}: {problem}", command.definition_key);
        let mut error = match status {
            429 => EngineError::overloaded(message),
            503 => EngineError::unavailable(message),
            400..=499 => EngineError::refused(message),
            _ => EngineError::new(message).with_retryable(true),
        };
        if let Some(after) = retry_after {
            error = error.with_retry_after(after);
        }
        Err(error.with_source(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_typed_as_camunda_expects() {
        let cases = [
            (json!("x"), json!({"value": "x", "type": "String"})),
            (json!(true), json!({"value": true, "type": "Boolean"})),
            (json!(2147483647), json!({"value": 2147483647, "type": "Integer"})),
            (
                json!(-2147483648i64),
                json!({"value": -2147483648i64, "type": "Integer"}),
            ),
            (
                json!(2147483648i64),
                json!({"value": 2147483648i64, "type": "Long"}),
            ),
            (
                json!(u64::MAX),
                json!({"value": "18446744073709551615", "type": "Json"}),
            ),
            (json!(1.5), json!({"value": 1.5, "type": "Double"})),
            (json!(null), json!({"value": null, "type": "Null"})),
            (json!({"a": [1]}), json!({"value": "{\"a\":[1]}", "type": "Json"})),
            (json!([1, "b"]), json!({"value": "[1,\"b\"]", "type": "Json"})),
        ];
        for (value, expected) in cases {
            assert_eq!(typed_variable(&value, None), expected, "{value}");
        }
    }

    #[test]
    fn long_strings_become_json_text() {
        let long = "é".repeat(4001);
        let typed = typed_variable(&json!(long), None);
        assert_eq!(typed["type"], "Json");
        assert_eq!(
            serde_json::from_str::<String>(typed["value"].as_str().unwrap()).unwrap(),
            long
        );
        assert_eq!(typed_variable(&json!("é".repeat(4000)), None)["type"], "String");
    }

    #[test]
    fn dates_use_camunda_format() {
        assert_eq!(
            typed_variable(&json!("2024-03-01"), Some(&FieldKind::Date)),
            json!({"value": "2024-03-01T00:00:00.000+0000", "type": "Date"})
        );
        assert_eq!(
            typed_variable(&json!("2024-03-01T10:20:30.5+02:00"), Some(&FieldKind::DateTime)),
            json!({"value": "2024-03-01T10:20:30.500+0200", "type": "Date"})
        );
        assert_eq!(
            typed_variable(&json!("2024-03-01"), Some(&FieldKind::Text)),
            json!({"value": "2024-03-01", "type": "String"})
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let engine = Camunda7Engine::new("http://h/engine-rest/").with_tenant_id("a b/c");
        assert_eq!(
            engine.start_url("order intake/ü"),
            "http://h/engine-rest/process-definition/key/order%20intake%2F%C3%BC/tenant-id/a%20b%2Fc/start"
        );
    }
}
