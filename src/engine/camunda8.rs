//! [`Camunda8Engine`] (feature `camunda8`): starts process instances through
//! Camunda 8's Orchestration Cluster REST API.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::http::{poll_until_ended, probe, retry_after, status_and_json, transport_error};
use crate::engine::{
    Completion, DEFAULT_TRACE_VARIABLE, Engine, EngineError, InstanceRef, ProcessInstance, StartCommand,
    trace_variable_of,
};
use crate::id::InstanceId;

/// The default timeout of one call to Camunda 8: 10 seconds.
pub(crate) const DEFAULT_CAMUNDA8_TIMEOUT: Duration = Duration::from_secs(10);

/// How long before it expires a cached OAuth access token is renewed.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

/// How [`Camunda8Engine`] authenticates.
#[derive(Clone)]
#[non_exhaustive]
pub enum Camunda8Auth {
    /// No authentication (a local cluster).
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A static bearer token.
    Bearer(String),
    /// OAuth 2.0 client credentials: an access token is fetched from
    /// `token_url`, cached until shortly before it expires, and fetched anew
    /// once when a call is answered `401`.
    ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The audience (e.g. `orchestration-api`), if the issuer wants one.
        audience: Option<String>,
    },
}

impl fmt::Debug for Camunda8Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"[redacted]")
                .finish(),
            Self::Bearer(_) => f.write_str("Bearer([redacted])"),
            Self::ClientCredentials {
                token_url,
                client_id,
                audience,
                ..
            } => f
                .debug_struct("ClientCredentials")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .field("audience", audience)
                .finish(),
        }
    }
}

/// Starts instances on Camunda 8 through its Orchestration Cluster REST API.
///
/// A start is `POST {base}/v2/process-instances` with `processDefinitionId`
/// = the deployment's definition key (the BPMN process id), the variables as
/// they are, `tenantId` when one is configured, and the idempotency key as
/// `businessId`.
///
/// The [`ProcessInstance`]'s id is `processInstanceKey` (a string: it exceeds
/// JavaScript's safe integers), its definition id `processDefinitionKey`,
/// and its business key the idempotency key.
///
/// # Duplicates
///
/// With Camunda's business-id uniqueness control on, a second start with a
/// key while an instance with that business id is active is answered `409`.
/// The create endpoint does not name the existing instance, so this engine
/// answers a **refusal** (`502 engine_failed`) whose message names the
/// conflict, rather than guessing an instance; pair it with an idempotency
/// store ([`WebhookStarter::with_idempotency`](crate::WebhookStarter::with_idempotency))
/// so that retries are replays before they reach Camunda.
///
/// # Errors
///
/// Camunda 8 answers RFC 9457 problem documents; their title and detail stay
/// in the [`Camunda8Problem`] source, never shown to the caller:
///
/// | Camunda | [`EngineError`] | caller sees |
/// |---|---|---|
/// | `503` whose title says `RESOURCE_EXHAUSTED` (backpressure), `429` | overloaded | `429` + `Retry-After` |
/// | other `503`; a connection that could not be made (nothing sent) | unavailable | `503` + `Retry-After` |
/// | `400`, `404`, `409`, `401`/`403` (after one token refresh) | refused | `502` |
/// | other `5xx` (`504` included), timeouts, other transport failures | failed, retryable | `502` |
///
/// # Example
///
/// ```no_run
/// use process_webhook::{Camunda8Auth, Camunda8Engine};
///
/// let engine = Camunda8Engine::new("https://cluster.example/v2-api-base")
///     .with_auth(Camunda8Auth::ClientCredentials {
///         token_url: "https://login.example/oauth/token".into(),
///         client_id: "webhooks".into(),
///         client_secret: std::env::var("CAMUNDA_CLIENT_SECRET").unwrap_or_default(),
///         audience: Some("orchestration-api".into()),
///     })
///     .with_tenant_id("acme");
/// ```
#[derive(Clone)]
pub struct Camunda8Engine {
    base: String,
    auth: Camunda8Auth,
    tenant: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
    token: Arc<Mutex<Option<(String, Instant)>>>,
    trace_variable: Option<String>,
}

impl fmt::Debug for Camunda8Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Camunda8Engine")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("trace_variable", &self.trace_variable)
            .finish_non_exhaustive()
    }
}

impl Camunda8Engine {
    /// The default timeout of one call to Camunda 8: 10 seconds.
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_CAMUNDA8_TIMEOUT;
}

impl Camunda8Engine {
    /// An engine on the REST API at `base_url` (the part before `/v2`, e.g.
    /// `http://localhost:8080`), without authentication.
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            auth: Camunda8Auth::None,
            tenant: None,
            timeout: DEFAULT_CAMUNDA8_TIMEOUT,
            client: reqwest::Client::new(),
            token: Arc::default(),
            trace_variable: Some(DEFAULT_TRACE_VARIABLE.to_owned()),
        }
    }

    /// Names the variable that carries the caller's `traceparent` into the
    /// instance (default `traceparent`,
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

    /// Sets how it authenticates.
    pub fn with_auth(mut self, auth: Camunda8Auth) -> Self {
        self.auth = auth;
        self.token = Arc::default();
        self
    }

    /// Starts instances of this tenant's definitions.
    pub fn with_tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
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

    /// The OAuth access token: the cached one, or a new one when it is
    /// missing, about to expire, or `stale`.
    async fn access_token(&self, stale: bool) -> Result<Option<String>, EngineError> {
        let Camunda8Auth::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            audience,
        } = &self.auth
        else {
            return Ok(None);
        };
        if !stale {
            let cached = self.token.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((token, expires)) = cached.as_ref() {
                if Instant::now() + TOKEN_MARGIN < *expires {
                    return Ok(Some(token.clone()));
                }
            }
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(audience) = audience {
            form.push(("audience", audience.as_str()));
        }
        let response = self
            .client
            .post(token_url)
            .timeout(self.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error("the token endpoint", e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(EngineError::refused(format!(
                "the OAuth token endpoint answered {status}"
            )));
        }
        #[derive(Deserialize)]
        struct Issued {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let issued: Issued = response
            .json()
            .await
            .map_err(|e| EngineError::new("the OAuth token endpoint sent no access token").with_source(e))?;
        let expires = Instant::now() + Duration::from_secs(issued.expires_in.unwrap_or(300));
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((issued.access_token.clone(), expires));
        Ok(Some(issued.access_token))
    }

    async fn send(&self, body: &Value, stale_token: bool) -> Result<reqwest::Response, EngineError> {
        let request = self
            .client
            .post(format!("{}/v2/process-instances", self.base))
            .timeout(self.timeout)
            .json(body);
        let request = self.authorized(request, stale_token).await?;
        request.send().await.map_err(|e| transport_error("camunda", e))
    }

    /// Sends `request` with the configured authentication: the status and
    /// the body as JSON (`Null` when it is not JSON).
    async fn fetch(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), EngineError> {
        let response = self
            .authorized(request, false)
            .await?
            .send()
            .await
            .map_err(|e| transport_error("camunda", e))?;
        status_and_json("camunda", response).await
    }

    /// The root-scope variables of instance `key`, as one JSON object.
    async fn variables_of(&self, key: &str) -> Result<Value, EngineError> {
        let search = json!({
            "filter": {"processInstanceKey": key, "scopeKey": key},
            "page": {"limit": 1000},
        });
        let request = self
            .client
            .post(format!("{}/v2/variables/search", self.base))
            .timeout(self.timeout)
            .json(&search);
        let (status, body) = self.fetch(request).await?;
        if status != 200 {
            return Err(read_failed(
                "camunda 8: could not read the instance's variables",
                status,
                body,
            ));
        }
        let mut variables = serde_json::Map::new();
        for item in body["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(name) = item["name"].as_str() else {
                continue;
            };
            let mut text = item["value"].as_str().unwrap_or("null").to_owned();
            if item["isTruncated"].as_bool() == Some(true) {
                if let Some(variable) = item["variableKey"].as_str() {
                    let request = self
                        .client
                        .get(format!(
                            "{}/v2/variables/{}",
                            self.base,
                            utf8_percent_encode(variable, NON_ALPHANUMERIC)
                        ))
                        .timeout(self.timeout);
                    let (_, whole) = self.fetch(request).await?;
                    if let Some(value) = whole["value"].as_str() {
                        text = value.to_owned();
                    }
                }
            }
            // Camunda keeps each value as JSON text.
            variables.insert(
                name.to_owned(),
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            );
        }
        Ok(Value::Object(variables))
    }

    /// `request` with the configured authentication.
    async fn authorized(
        &self,
        mut request: reqwest::RequestBuilder,
        stale_token: bool,
    ) -> Result<reqwest::RequestBuilder, EngineError> {
        match &self.auth {
            Camunda8Auth::None => {}
            Camunda8Auth::Basic { user, password } => request = request.basic_auth(user, Some(password)),
            Camunda8Auth::Bearer(token) => request = request.bearer_auth(token),
            Camunda8Auth::ClientCredentials { .. } => {
                if let Some(token) = self.access_token(stale_token).await? {
                    request = request.bearer_auth(token);
                }
            }
        }
        Ok(request)
    }
}

/// What Camunda 8 answered to a start it did not carry out (its RFC 9457
/// problem document): the source of the [`EngineError`], for the host's
/// logs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Camunda8Problem {
    #[serde(skip)]
    status: u16,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

impl Camunda8Problem {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The problem's title (e.g. `RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The problem's detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for Camunda8Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "camunda 8 answered {}", self.status)?;
        if !self.title.is_empty() {
            write!(f, " {}", self.title)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Camunda8Problem {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    process_instance_key: Value,
    #[serde(default)]
    process_definition_key: Option<Value>,
}

/// A key as Camunda sends it: a string (or, from older versions, a number).
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Engine for Camunda8Engine {
    /// `GET {base}/v2/topology`.
    async fn ready(&self) -> Result<(), EngineError> {
        let request = self
            .client
            .get(format!("{}/v2/topology", self.base))
            .timeout(self.timeout);
        probe("camunda", self.authorized(request, false).await?).await
    }

    fn name(&self) -> &'static str {
        "camunda8"
    }

    /// Polls the instance (`GET /v2/process-instances/{key}`, every 100 ms
    /// at first, then up to every second) until its `state` is `COMPLETED`
    /// or `TERMINATED` or `within` runs out; a completed instance's result
    /// is its root-scope variables (`POST /v2/variables/search`, truncated
    /// values read whole). An instance with an incident stays `ACTIVE`, so
    /// it is `running`. A `404` at first is the secondary storage catching
    /// up, and polled again.
    ///
    /// Why not `awaitCompletion` on the create call: its `504` on timeout
    /// does not name the instance it created, so the answer could not carry
    /// the instance id, the idempotency store could not record the start,
    /// and a replay could not wait on the same instance.
    async fn wait(
        &self,
        instance: &InstanceRef,
        within: Duration,
    ) -> Result<Option<Completion>, EngineError> {
        let key = instance.id().as_str();
        let url = format!(
            "{}/v2/process-instances/{}",
            self.base,
            utf8_percent_encode(key, NON_ALPHANUMERIC)
        );
        poll_until_ended(within, |remaining| {
            let request = self.client.get(&url).timeout(remaining.min(self.timeout));
            async move {
                let (status, body) = self.fetch(request).await?;
                match (status, body["state"].as_str()) {
                    (200, Some("COMPLETED")) => self
                        .variables_of(key)
                        .await
                        .map(|v| Some(Completion::Completed(v))),
                    (200, Some("TERMINATED")) => Ok(Some(Completion::Terminated)),
                    (200, _) | (404, _) => Ok(None),
                    _ => Err(read_failed(
                        "camunda 8: could not read the instance",
                        status,
                        body,
                    )),
                }
            }
        })
        .await
    }

    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let trace = trace_variable_of(command, self.trace_variable.as_deref())
            .map(|(name, traceparent)| (name.to_owned(), json!(traceparent)));
        let mut variables = command.variables.clone();
        variables.extend(trace);
        let mut body = json!({
            "processDefinitionId": command.definition_key,
            "variables": Value::Object(variables),
        });
        if let Some(tenant) = &self.tenant {
            body["tenantId"] = json!(tenant);
        }
        if let Some(key) = &command.idempotency_key {
            body["businessId"] = json!(key);
        }
        let mut response = self.send(&body, false).await?;
        if response.status().as_u16() == 401 && matches!(self.auth, Camunda8Auth::ClientCredentials { .. }) {
            // The token may have been revoked or expired early: once more.
            response = self.send(&body, true).await?;
        }
        let status = response.status().as_u16();
        let retry_after = retry_after(&response);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error("camunda", e))?;
        if (200..300).contains(&status) {
            let created: Created = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::new("camunda 8's answer has no processInstanceKey").with_source(e)
            })?;
            let id = key_text(&created.process_instance_key)
                .ok_or_else(|| EngineError::new("camunda 8's processInstanceKey is not a key"))?;
            let mut instance = ProcessInstance::new(InstanceId::new(id));
            if let Some(definition) = created.process_definition_key.as_ref().and_then(key_text) {
                instance = instance.with_definition_id(definition);
            }
            if let Some(key) = &command.idempotency_key {
                instance = instance.with_business_key(key.clone());
            }
            return Ok(instance);
        }
        let mut problem: Camunda8Problem = serde_json::from_slice(&bytes).unwrap_or_default();
        problem.status = status;
        let message = match status {
            409 => format!(
                "camunda 8 did not start {}: an active instance with business id {:?} exists ({problem})",
                command.definition_key,
                command.idempotency_key.as_deref().unwrap_or_default()
            ),
            _ => format!("camunda 8 did not start {}: {problem}", command.definition_key),
        };
        let mut error = match status {
            503 if problem.title.contains("RESOURCE_EXHAUSTED") => EngineError::overloaded(message),
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

/// A read (of an instance or its variables) that Camunda answered with
/// `status` and problem document `body`: not retryable, the problem kept as
/// the source.
fn read_failed(what: &'static str, status: u16, body: Value) -> EngineError {
    let mut problem: Camunda8Problem = serde_json::from_value(body).unwrap_or_default();
    problem.status = status;
    EngineError::new(what).with_source(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let engine = Camunda8Engine::new("http://c").with_auth(Camunda8Auth::ClientCredentials {
            token_url: "http://t".into(),
            client_id: "id".into(),
            client_secret: "s3cr3t-client".into(),
            audience: None,
        });
        assert!(!format!("{engine:?}").contains("s3cr3t-client"));
        let basic = Camunda8Auth::Basic {
            user: "demo".into(),
            password: "pa55word".into(),
        };
        assert!(!format!("{basic:?}").contains("pa55word"));
        assert!(!format!("{:?}", Camunda8Auth::Bearer("tok-123".into())).contains("tok-123"));
    }

    #[test]
    fn keys_are_read_as_text_whether_strings_or_numbers() {
        assert_eq!(
            key_text(&json!("2251799813686019")).as_deref(),
            Some("2251799813686019")
        );
        assert_eq!(
            key_text(&json!(2251799813686019u64)).as_deref(),
            Some("2251799813686019")
        );
        assert_eq!(key_text(&json!(null)), None);
    }
}
