//! [`TemporalEngine`] (feature `temporal`): starts a workflow per start
//! through the Temporal frontend's HTTP API.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::http::{probe, retry_after, transport_error};
use crate::engine::{Completion, Engine, EngineError, InstanceRef, ProcessInstance, Recovery, StartCommand};
use crate::id::{EnvironmentId, InstanceId, ProcessUuid};
use crate::idempotency::PayloadFingerprint;

/// The default timeout of one call to Temporal: 10 seconds.
pub(crate) const DEFAULT_TEMPORAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts instances as Temporal workflows, over the frontend's HTTP API
/// (`temporal server start-dev` serves it on `--http-port`, 7243 here).
///
/// A start is
/// `POST {base}/api/v1/namespaces/{namespace}/workflows/{workflowId}` with:
///
/// - `workflowType.name`: the deployment's definition key;
/// - `taskQueue.name`: the engine's task queue;
/// - `input`: the variables as the workflow's single argument, a `json/plain`
///   payload;
/// - `memo`: `processUuid`, `version`, `environment`, `deploymentId`, and
///   the caller's `traceparent` and `tracestate` when it sent a valid one;
/// - `requestId`, and the workflow id reuse policy `REJECT_DUPLICATE`.
///
/// # Exactly once in Temporal
///
/// With an idempotency key, the workflow id is
/// `webhook-{process}-{h}`, where `h` is the first 32 hex digits of
/// SHA-256(`"{environment}\n{process}\n{key}"`): URL-safe, 77 characters,
/// the same on every replica. The request id is the SHA-256 of that
/// workflow id and the variables' canonical fingerprint. So a repeated start
/// (a retry after a lost answer, or a second replica without a shared
/// idempotency store) gets the **same run** back and never starts a second
/// one; the same key with other variables is refused by Temporal
/// (`WorkflowExecutionAlreadyStarted`) and answered
/// `422 idempotency_key_reused`, never silently replayed, even after the
/// workflow closed. Without a key, each start gets a fresh workflow id
/// `webhook-{process}-{random UUID}`.
///
/// The [`ProcessInstance`]'s id is the run id and its business key the
/// workflow id.
///
/// # Errors
///
/// Temporal answers errors as a JSON status with a gRPC `code` (kept in the
/// [`TemporalProblem`] source, never shown to the caller):
///
/// | Temporal | [`EngineError`] | caller sees |
/// |---|---|---|
/// | HTTP 429, `RESOURCE_EXHAUSTED` (8) | overloaded | `429` + `Retry-After` |
/// | HTTP 503, `UNAVAILABLE` (14); a connection that could not be made (nothing sent) | unavailable | `503` + `Retry-After` |
/// | `ALREADY_EXISTS` (6) for a keyed start | key reused | `422 idempotency_key_reused` |
/// | `INVALID_ARGUMENT` (3), `NOT_FOUND` (5, e.g. the namespace), `PERMISSION_DENIED` (7), `UNAUTHENTICATED` (16), other 4xx | refused | `502` |
/// | other 5xx, timeouts, other transport failures | failed, retryable | `502` |
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use process_webhook::TemporalEngine;
///
/// let engine = TemporalEngine::new("http://127.0.0.1:7243", "default", "process-webhook")
///     .with_timeout(Duration::from_secs(5));
/// ```
#[derive(Clone)]
pub struct TemporalEngine {
    base: String,
    namespace: String,
    task_queue: String,
    api_key: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl fmt::Debug for TemporalEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporalEngine")
            .field("base", &self.base)
            .field("namespace", &self.namespace)
            .field("task_queue", &self.task_queue)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TemporalEngine {
    /// The default timeout of one call to Temporal: 10 seconds.
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_TEMPORAL_TIMEOUT;
}

impl TemporalEngine {
    /// An engine on the HTTP API at `base_url` (e.g.
    /// `http://127.0.0.1:7243`), starting workflows in `namespace` on
    /// `task_queue`.
    pub fn new(base_url: &str, namespace: impl Into<String>, task_queue: impl Into<String>) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            namespace: namespace.into(),
            task_queue: task_queue.into(),
            api_key: None,
            timeout: DEFAULT_TEMPORAL_TIMEOUT,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `Authorization: Bearer {key}` (Temporal Cloud's API keys).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Sets the timeout of one call (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this HTTP client (for its TLS, proxy and pool settings).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// The workflow id a start of `process` in `environment` with
    /// idempotency key `key` gets: how a host finds that start's workflow in
    /// Temporal.
    ///
    /// ```
    /// use process_webhook::{EnvironmentId, ProcessUuid, TemporalEngine};
    ///
    /// let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    /// let id = TemporalEngine::workflow_id_for(&EnvironmentId::new("production"), &process, "order-1");
    /// assert!(id.starts_with("webhook-dd9759e0-cc94-11ed-938f-13cf60270555-"));
    /// assert_eq!(id.len(), 77);
    /// ```
    pub fn workflow_id_for(environment: &EnvironmentId, process: &ProcessUuid, key: &str) -> String {
        let scope = format!("{environment}\n{process}\n{key}");
        let digest = Sha256::digest(scope.as_bytes());
        format!("webhook-{process}-{}", hex(&digest[..16]))
    }

    /// The workflow id and request id of a start (see the type's docs).
    fn ids(command: &StartCommand) -> (String, String) {
        match &command.idempotency_key {
            Some(key) => {
                let workflow_id = Self::workflow_id_for(&command.environment, &command.process, key);
                // The fingerprint the start took of the caller's payload; a
                // host's own command without one gets its variables'.
                let fingerprint = command
                    .fingerprint
                    .unwrap_or_else(|| PayloadFingerprint::of(&command.variables));
                let mut request = Sha256::new();
                request.update(workflow_id.as_bytes());
                request.update(fingerprint.as_bytes());
                (workflow_id, hex(&request.finalize()[..16]))
            }
            None => {
                let run = uuid::Uuid::new_v4();
                (
                    format!("webhook-{}-{run}", command.process),
                    uuid::Uuid::new_v4().to_string(),
                )
            }
        }
    }

    fn start_url(&self, workflow_id: &str) -> String {
        format!(
            "{}/api/v1/namespaces/{}/workflows/{}",
            self.base,
            utf8_percent_encode(&self.namespace, NON_ALPHANUMERIC),
            utf8_percent_encode(workflow_id, NON_ALPHANUMERIC),
        )
    }
}

/// `value` as a Temporal `json/plain` payload (serialized where it is,
/// not copied).
fn payload(value: &impl serde::Serialize) -> Value {
    // Serializing a JSON value or map cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    json!({
        "metadata": {"encoding": STANDARD.encode("json/plain")},
        "data": STANDARD.encode(bytes),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What Temporal answered to a start it did not carry out: the source of
/// the [`EngineError`], for the host's logs.
#[derive(Debug, Clone)]
pub struct TemporalProblem {
    status: u16,
    code: Option<i64>,
    message: String,
}

impl TemporalProblem {
    /// The HTTP status Temporal answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The gRPC status code, when Temporal sent one (e.g. 5 for not found).
    pub fn code(&self) -> Option<i64> {
        self.code
    }

    /// Temporal's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TemporalProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "temporal answered {}", self.status)?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for TemporalProblem {}

#[derive(Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HistoryPage {
    #[serde(default)]
    history: Events,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct Events {
    #[serde(default)]
    events: Vec<Value>,
}

/// How a close event ended a run.
enum Close {
    Ended(Completion),
    /// Continued as new: the new run's id.
    ContinuedAsNew(String),
}

/// The close event's meaning, for a close event.
fn close_of(event: &Value) -> Option<Close> {
    let attributes = |name: &str| &event[name];
    let failure = |name: &str| attributes(name)["failure"]["message"].as_str().map(str::to_owned);
    Some(Close::Ended(match event["eventType"].as_str()? {
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED" => Completion::Completed(result_of(
            &attributes("workflowExecutionCompletedEventAttributes")["result"],
        )),
        "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED" => {
            Completion::Failed(failure("workflowExecutionFailedEventAttributes"))
        }
        "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT" => {
            Completion::Failed(Some("the workflow timed out".to_owned()))
        }
        "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED" => Completion::Terminated,
        "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED" => Completion::Cancelled,
        "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" => {
            let next =
                attributes("workflowExecutionContinuedAsNewEventAttributes")["newExecutionRunId"].as_str()?;
            return Some(Close::ContinuedAsNew(next.to_owned()));
        }
        _ => return None,
    }))
}

/// A workflow's result as JSON: the HTTP API shows `json/plain` payloads as
/// the JSON they hold (a list, one per payload) and others as
/// `{"metadata", "data"}` (base64), decoded here when they hold JSON.
fn result_of(result: &Value) -> Value {
    let first = match result {
        Value::Array(payloads) => payloads.first().cloned().unwrap_or(Value::Null),
        Value::Object(payloads) if payloads.contains_key("payloads") => {
            payloads["payloads"].get(0).cloned().unwrap_or(Value::Null)
        }
        other => other.clone(),
    };
    match &first {
        Value::Object(payload) if payload.len() == 2 && payload.contains_key("metadata") => payload
            .get("data")
            .and_then(Value::as_str)
            .and_then(|data| STANDARD.decode(data).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(first),
        _ => first,
    }
}

/// The error for a start Temporal refused with `status` and gRPC `code`
/// (the table in [`TemporalEngine`]'s docs).
fn start_error(status: u16, code: Option<i64>, keyed: bool, message: String) -> EngineError {
    match (status, code) {
        (429, _) | (_, Some(8)) => EngineError::overloaded(message),
        (503, _) | (_, Some(14)) => EngineError::unavailable(message),
        (_, Some(6)) if keyed => EngineError::key_reused(message),
        (_, Some(3 | 5 | 6 | 7 | 16)) | (400..=499, _) => EngineError::refused(message),
        _ => EngineError::new(message).with_retryable(true),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartedBody {
    run_id: String,
}

#[async_trait]
impl Engine for TemporalEngine {
    /// `GET {base}/api/v1/namespaces/{namespace}`: the frontend answers and
    /// the namespace exists.
    async fn ready(&self) -> Result<(), EngineError> {
        let url = format!(
            "{}/api/v1/namespaces/{}",
            self.base,
            utf8_percent_encode(&self.namespace, NON_ALPHANUMERIC)
        );
        let mut request = self.client.get(url).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        probe("temporal", request).await
    }

    fn name(&self) -> &'static str {
        "temporal"
    }

    /// A keyed start is deduplicated by Temporal itself (the workflow id
    /// follows the key, the request id the key and the variables): a
    /// reservation cut off by a crash is taken over at once.
    fn recovery(&self) -> Recovery {
        Recovery::Deduplicates
    }

    /// Long-polls the workflow's history for its close event
    /// (`GET …/workflows/{workflowId}/history?execution.runId=…&waitNewEvent=true&historyEventFilterType=HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT`)
    /// until `within` runs out. The workflow id is the instance's business
    /// key, or, after a replay, [`workflow_id_for`](Self::workflow_id_for)
    /// its idempotency key; a run continued as new is followed to its new
    /// run. The result is the workflow's (first) result payload as JSON.
    async fn wait(
        &self,
        instance: &InstanceRef,
        within: Duration,
    ) -> Result<Option<Completion>, EngineError> {
        let workflow_id = match (instance.business_key(), instance.idempotency_key()) {
            (Some(id), _) => id.to_owned(),
            (None, Some(key)) => Self::workflow_id_for(instance.environment(), instance.process(), key),
            (None, None) => return Ok(None),
        };
        let deadline = std::time::Instant::now() + within;
        let mut run_id = instance.id().as_str().to_owned();
        let mut page: Option<String> = None;
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            if remaining.is_zero() {
                return Ok(Some(Completion::Running));
            }
            let mut query = vec![
                ("execution.runId", run_id.as_str()),
                ("waitNewEvent", "true"),
                ("historyEventFilterType", "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT"),
            ];
            if let Some(token) = &page {
                query.push(("nextPageToken", token));
            }
            let mut request = self
                .client
                .get(format!("{}/history", self.start_url(&workflow_id)))
                .query(&query)
                .timeout(remaining);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) if error.is_timeout() => return Ok(Some(Completion::Running)),
                Err(error) => return Err(transport_error("temporal", error)),
            };
            let status = response.status().as_u16();
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(error) if error.is_timeout() => return Ok(Some(Completion::Running)),
                Err(error) => return Err(transport_error("temporal", error)),
            };
            if status != 200 {
                let problem: StatusBody = serde_json::from_slice(&bytes).unwrap_or_default();
                return Err(
                    EngineError::new("temporal: could not read the workflow's history").with_source(
                        TemporalProblem {
                            status,
                            code: problem.code,
                            message: problem.message,
                        },
                    ),
                );
            }
            let history: HistoryPage = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::new("temporal: an unreadable history").with_source(e))?;
            match history.history.events.iter().find_map(close_of) {
                Some(Close::Ended(completion)) => return Ok(Some(completion)),
                Some(Close::ContinuedAsNew(next)) => {
                    run_id = next;
                    page = None;
                }
                None => page = history.next_page_token.filter(|t| !t.is_empty()),
            }
        }
    }

    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let (workflow_id, request_id) = Self::ids(command);
        let mut memo = json!({
            "processUuid": payload(&json!(command.process.to_string())),
            "version": payload(&json!(command.version)),
            "environment": payload(&json!(command.environment.as_str())),
            "deploymentId": payload(&json!(command.deployment.to_string())),
        });
        if let Some(trace) = &command.trace {
            memo["traceparent"] = payload(&json!(trace.traceparent()));
            if let Some(state) = trace.tracestate() {
                memo["tracestate"] = payload(&json!(state));
            }
        }
        let keyed = command.idempotency_key.is_some();
        let body = json!({
            "workflowType": {"name": command.definition_key},
            "taskQueue": {"name": self.task_queue},
            "input": {"payloads": [payload(&command.variables)]},
            "memo": {"fields": memo},
            "requestId": request_id,
            "workflowIdReusePolicy": "WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE",
        });
        let mut request = self
            .client
            .post(self.start_url(&workflow_id))
            .timeout(self.timeout)
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| transport_error("temporal", e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error("temporal", e))?;
        if (200..300).contains(&status) {
            let started: StartedBody = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::new("temporal's answer to a start has no run id").with_source(e))?;
            return Ok(ProcessInstance::new(InstanceId::new(started.run_id)).with_business_key(workflow_id));
        }
        let answer: StatusBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let problem = TemporalProblem {
            status,
            code: answer.code,
            message: answer.message,
        };
        let message = format!("temporal did not start {}: {problem}", command.definition_key);
        let mut error = start_error(status, problem.code, keyed, message);
        if let Some(after) = retry_after {
            error = error.with_retry_after(after);
        }
        Err(error.with_source(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Deployment, VersionTag};

    fn command(key: Option<&str>, order: &str) -> StartCommand {
        let mut variables = serde_json::Map::new();
        variables.insert("orderNumber".into(), json!(order));
        let deployment = Deployment::new(
            ProcessUuid::from(uuid::Uuid::nil()),
            VersionTag::Released(1),
            EnvironmentId::new("production"),
            Default::default(),
        );
        let command = StartCommand::new(&deployment, 1, variables);
        match key {
            Some(key) => command.with_idempotency_key(key),
            None => command,
        }
    }

    #[test]
    fn keyed_ids_are_stable_url_safe_and_bounded_and_the_request_id_follows_the_variables() {
        let (workflow, request) = TemporalEngine::ids(&command(Some("order 1/2?"), "1"));
        assert_eq!(
            TemporalEngine::ids(&command(Some("order 1/2?"), "1")),
            (workflow.clone(), request.clone())
        );
        assert_eq!(workflow.len(), 77);
        assert!(workflow.starts_with("webhook-00000000-0000-0000-0000-000000000000-"));
        assert!(workflow.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let (same_key, other_request) = TemporalEngine::ids(&command(Some("order 1/2?"), "2"));
        assert_eq!(same_key, workflow, "the workflow id depends on the key alone");
        assert_ne!(other_request, request, "other variables, another request id");
        let (other_workflow, _) = TemporalEngine::ids(&command(Some("order 3"), "1"));
        assert_ne!(other_workflow, workflow);
        let (a, _) = TemporalEngine::ids(&command(None, "1"));
        let (b, _) = TemporalEngine::ids(&command(None, "1"));
        assert_ne!(a, b, "without a key, a fresh workflow id each time");
    }

    #[test]
    fn the_request_id_follows_the_fingerprint_the_start_took_when_there_is_one() {
        let mut other = serde_json::Map::new();
        other.insert("orderNumber".into(), json!("other"));
        let taken = PayloadFingerprint::of(&other);
        let (workflow, plain) = TemporalEngine::ids(&command(Some("k"), "1"));
        let (same_workflow, carried) = TemporalEngine::ids(&command(Some("k"), "1").with_fingerprint(taken));
        assert_eq!(same_workflow, workflow);
        assert_ne!(carried, plain, "the carried fingerprint, not the variables'");
        assert_eq!(
            TemporalEngine::ids(&command(Some("k"), "2").with_fingerprint(taken)).1,
            carried,
            "the variables are not fingerprinted again"
        );
    }

    #[test]
    fn payloads_are_json_plain() {
        let p = payload(&json!({"a": 1}));
        assert_eq!(p["metadata"]["encoding"], STANDARD.encode("json/plain"));
        assert_eq!(
            STANDARD.decode(p["data"].as_str().unwrap()).unwrap(),
            br#"{"a":1}"#
        );
    }

    #[test]
    fn refusals_map_as_the_table_in_the_docs_says() {
        use crate::EngineErrorKind::*;
        let cases = [
            (429, None, false, Overloaded, true),
            (400, Some(8), false, Overloaded, true),
            (503, None, false, Unavailable, true),
            (500, Some(14), false, Unavailable, true),
            (409, Some(6), true, KeyReused, false),
            (409, Some(6), false, Refused, false),
            (500, Some(3), false, Refused, false),
            (500, Some(5), false, Refused, false),
            (500, Some(7), false, Refused, false),
            (500, Some(16), false, Refused, false),
            (404, None, false, Refused, false),
            (499, Some(2), false, Refused, false),
            (500, Some(13), false, Failed, true),
            (502, None, false, Failed, true),
        ];
        for (status, code, keyed, kind, retryable) in cases {
            let error = start_error(status, code, keyed, "m".into());
            assert_eq!(
                (error.kind(), error.is_retryable()),
                (kind, retryable),
                "{status} {code:?} keyed: {keyed}"
            );
        }
    }

    fn event(kind: &str, attributes: Value) -> Value {
        let mut event = json!({"eventId": "9", "eventType": kind});
        if let Value::Object(map) = attributes {
            event.as_object_mut().unwrap().extend(map);
        }
        event
    }

    #[test]
    fn every_close_event_has_its_meaning() {
        let completed = event(
            "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
            json!({"workflowExecutionCompletedEventAttributes": {"result": [{"ok": true}]}}),
        );
        let failed = event(
            "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
            json!({"workflowExecutionFailedEventAttributes": {"failure": {"message": "boom"}}}),
        );
        let continued = event(
            "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
            json!({"workflowExecutionContinuedAsNewEventAttributes": {"newExecutionRunId": "run-2"}}),
        );
        let ended = |e: &Value| match close_of(e) {
            Some(Close::Ended(completion)) => Some(completion),
            _ => None,
        };
        assert_eq!(
            ended(&completed),
            Some(Completion::Completed(json!({"ok": true})))
        );
        assert_eq!(ended(&failed), Some(Completion::Failed(Some("boom".into()))));
        assert_eq!(
            ended(&event("EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT", json!({}))),
            Some(Completion::Failed(Some("the workflow timed out".into())))
        );
        assert_eq!(
            ended(&event("EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED", json!({}))),
            Some(Completion::Terminated)
        );
        assert_eq!(
            ended(&event("EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED", json!({}))),
            Some(Completion::Cancelled)
        );
        assert!(matches!(close_of(&continued), Some(Close::ContinuedAsNew(run)) if run == "run-2"));
        let without_run = event("EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW", json!({}));
        assert!(close_of(&without_run).is_none());
        assert!(close_of(&event("EVENT_TYPE_WORKFLOW_TASK_COMPLETED", json!({}))).is_none());
        assert!(close_of(&json!({"eventId": "1"})).is_none());
    }

    #[test]
    fn a_result_is_read_from_each_form_the_http_api_shows() {
        let encoded =
            |doc: &str| json!({"metadata": {"encoding": "YmluYXJ5L3BsYWlu"}, "data": STANDARD.encode(doc)});
        // json/plain payloads, shown as the JSON they hold.
        assert_eq!(result_of(&json!([{"total": 1}, "second"])), json!({"total": 1}));
        assert_eq!(result_of(&json!([])), Value::Null);
        assert_eq!(
            result_of(&json!({"payloads": [{"total": 2}]})),
            json!({"total": 2})
        );
        assert_eq!(result_of(&json!({"payloads": []})), Value::Null);
        // Others as metadata and base64 data, decoded when they hold JSON.
        assert_eq!(
            result_of(&json!([encoded(r#"{"total":3}"#)])),
            json!({"total": 3})
        );
        assert_eq!(result_of(&json!({"payloads": [encoded("[4]")]})), json!([4]));
        let not_json = encoded("\u{1}binary");
        assert_eq!(result_of(&json!([not_json.clone()])), not_json);
        // An object that only looks like a payload is the result itself.
        let three = json!({"metadata": 1, "data": STANDARD.encode("5"), "more": true});
        assert_eq!(result_of(&json!([three.clone()])), three);
        let no_metadata = json!({"meta": 1, "data": STANDARD.encode("6")});
        assert_eq!(result_of(&json!([no_metadata.clone()])), no_metadata);
        // A bare value is the result.
        assert_eq!(result_of(&json!({"total": 7})), json!({"total": 7}));
        assert_eq!(result_of(&json!(8)), json!(8));
    }

    #[test]
    fn the_debug_form_hides_the_api_key() {
        let engine = TemporalEngine::new("http://t", "default", "q").with_api_key("secret-key");
        assert!(!format!("{engine:?}").contains("secret-key"));
    }
}
