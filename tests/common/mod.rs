//! Shared fixtures: the documented example world, and stores and engines
//! that fail or panic on purpose.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub mod senders;

use async_trait::async_trait;
use process_webhook::*;
use serde_json::{Map, Value, json};

pub const ORDER_INTAKE: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
pub const DRAFT_ONLY: &str = "6f1d0c3a-2b4e-4c5d-8e9f-0a1b2c3d4e5f";
pub const UNDEPLOYED: &str = "0b7e4f1c-9d2a-4e3b-8c5d-6e7f8091a2b3";
pub const FOREIGN: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
pub const TYPED: &str = "9c8b7a6d-5e4f-4321-8fed-cba987654321";

pub fn uuid(text: &str) -> ProcessUuid {
    text.parse().unwrap()
}

pub fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("a JSON object")
}

/// A released deployment of Order intake in production, with its engine
/// definition key `order-intake` and an empty form: what an engine test
/// builds its commands from.
pub fn order_deployment(version: u32) -> Deployment {
    Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(version),
        EnvironmentId::new("production"),
        StartForm::default(),
    )
    .with_definition_key("order-intake")
}

/// The documented example payload.
pub fn order_payload() -> Map<String, Value> {
    object(json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}))
}

pub fn order_form() -> StartForm {
    StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("productCode", FieldKind::Text),
    ])
}

/// The mandatory fields of [`typed_form`], in its order.
pub const TYPED_MANDATORY: [&str; 10] = [
    "name",
    "amount",
    "quantity",
    "express",
    "deliveryDate",
    "orderedAt",
    "size",
    "address",
    "items",
    "extra",
];

/// A form with one field of every kind.
pub fn typed_form() -> StartForm {
    StartForm::new([
        FieldSpec::mandatory("name", FieldKind::Text),
        FieldSpec::mandatory("amount", FieldKind::Number),
        FieldSpec::mandatory("quantity", FieldKind::Integer),
        FieldSpec::mandatory("express", FieldKind::Boolean),
        FieldSpec::mandatory("deliveryDate", FieldKind::Date),
        FieldSpec::mandatory("orderedAt", FieldKind::DateTime),
        FieldSpec::mandatory(
            "size",
            FieldKind::Choice(vec!["S".into(), "M".into(), "L".into()]),
        ),
        FieldSpec::mandatory("address", FieldKind::Object),
        FieldSpec::mandatory("items", FieldKind::Array),
        FieldSpec::mandatory("extra", FieldKind::Any),
        FieldSpec::optional("priority", FieldKind::Choice(vec!["low".into(), "high".into()]))
            .with_default(json!("low")),
        FieldSpec::optional("note", FieldKind::Text),
    ])
}

pub fn typed_payload() -> Map<String, Value> {
    object(json!({
        "name": "John Doe",
        "amount": 12.5,
        "quantity": 3,
        "express": true,
        "deliveryDate": "2024-02-29",
        "orderedAt": "2024-02-20T10:00:00+01:00",
        "size": "M",
        "address": {"city": "Berlin"},
        "items": ["ABC123"],
        "extra": 0,
    }))
}

/// The example world: organization `acme` with `production` and
/// `development`, organization `globex` with its own `production`.
pub struct World {
    pub models: Arc<InMemoryModelStore>,
    pub tokens: Arc<InMemoryTokenStore>,
    pub engine: Arc<InMemoryEngine>,
    /// acme / production
    pub token: EnvironmentToken,
    /// acme / development
    pub dev_token: EnvironmentToken,
    /// globex / production
    pub globex_token: EnvironmentToken,
    pub order_deployment: DeploymentId,
}

impl World {
    pub fn new() -> Self {
        let acme = OrganizationId::new("acme");
        let globex = OrganizationId::new("globex");
        let prod = EnvironmentId::new("production");
        let dev = EnvironmentId::new("development");
        let models = InMemoryModelStore::new();
        models.insert_model(ProcessModel::new(
            uuid(ORDER_INTAKE),
            acme.clone(),
            "Order intake",
        ));
        models.insert_model(ProcessModel::new(
            uuid(DRAFT_ONLY),
            acme.clone(),
            "Returns (draft)",
        ));
        models.insert_model(ProcessModel::new(
            uuid(UNDEPLOYED),
            acme.clone(),
            "Never deployed",
        ));
        models.insert_model(ProcessModel::new(uuid(TYPED), acme.clone(), "Every kind"));
        models.insert_model(ProcessModel::new(
            uuid(FOREIGN),
            globex.clone(),
            "Globex onboarding",
        ));
        models.deploy(Deployment::new(
            uuid(ORDER_INTAKE),
            VersionTag::Released(1),
            prod.clone(),
            order_form(),
        ));
        let order = Deployment::new(
            uuid(ORDER_INTAKE),
            VersionTag::Released(2),
            prod.clone(),
            order_form(),
        )
        .with_definition_key("order-intake");
        let order_deployment = order.id();
        models.deploy(order);
        models.deploy(Deployment::new(
            uuid(ORDER_INTAKE),
            VersionTag::Draft,
            dev.clone(),
            order_form(),
        ));
        models.deploy(Deployment::new(
            uuid(DRAFT_ONLY),
            VersionTag::Draft,
            prod.clone(),
            order_form(),
        ));
        models.deploy(Deployment::new(
            uuid(TYPED),
            VersionTag::Released(1),
            prod.clone(),
            typed_form(),
        ));
        models.deploy(Deployment::new(
            uuid(FOREIGN),
            VersionTag::Released(4),
            prod.clone(),
            StartForm::default(),
        ));

        let tokens = InMemoryTokenStore::new();
        let token = EnvironmentToken::generate();
        let dev_token = EnvironmentToken::generate();
        let globex_token = EnvironmentToken::generate();
        tokens.insert(&token, Environment::new(prod.clone(), acme.clone()));
        tokens.insert(&dev_token, Environment::new(dev, acme));
        tokens.insert(&globex_token, Environment::new(prod, globex));
        Self {
            models: Arc::new(models),
            tokens: Arc::new(tokens),
            engine: Arc::new(InMemoryEngine::new()),
            token,
            dev_token,
            globex_token,
            order_deployment,
        }
    }

    pub fn request(&self, process: &str, payload: Map<String, Value>) -> WebhookStartRequest {
        WebhookStartRequest::new(uuid(process), Some(self.token.clone()), payload)
    }

    pub async fn start(&self, request: WebhookStartRequest) -> Result<StartOutcome, WebhookError> {
        start_via_webhook(request, &*self.models, &*self.tokens, &*self.engine).await
    }

    pub fn starter(&self) -> WebhookStarter {
        WebhookStarter::new(self.models.clone(), self.tokens.clone(), self.engine.clone())
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }

    pub fn started(&self) -> usize {
        self.engine.started().len()
    }
}

/// Asserts an error's status and code.
#[track_caller]
pub fn assert_refused(
    result: Result<impl std::fmt::Debug, WebhookError>,
    status: u16,
    code: &str,
) -> WebhookError {
    let err = result.expect_err("expected a refusal");
    assert_eq!((err.status(), err.code()), (status, code), "{err:?}");
    err
}

/// Asserts a reply's status and problem code.
#[track_caller]
pub fn assert_reply(reply: &HttpReply, status: u16, code: &str) -> Value {
    let doc: Value = serde_json::from_slice(reply.body()).expect("a JSON body");
    assert_eq!(reply.status(), status, "{doc}");
    assert_eq!(reply.content_type(), "application/problem+json");
    assert_eq!(doc["code"], code, "{doc}");
    assert_eq!(doc["status"], status);
    doc
}

/// A model and token store whose every look-up fails.
pub struct BrokenStore;

#[async_trait]
impl ModelStore for BrokenStore {
    async fn model(&self, _: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        Err(StoreError::new("connection pool exhausted: db-7.internal:5432"))
    }
    async fn deployment(&self, _: &ProcessUuid, _: &EnvironmentId) -> Result<Option<Deployment>, StoreError> {
        Err(StoreError::new("connection pool exhausted: db-7.internal:5432"))
    }
}

#[async_trait]
impl TokenStore for BrokenStore {
    async fn environment(&self, _: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        Err(StoreError::new("connection pool exhausted: db-7.internal:5432"))
    }
}

/// A store that panics on every look-up.
pub struct PanickingStore;

#[async_trait]
impl ModelStore for PanickingStore {
    async fn model(&self, _: &ProcessUuid) -> Result<Option<ProcessModel>, StoreError> {
        panic!("model store bug")
    }
    async fn deployment(&self, _: &ProcessUuid, _: &EnvironmentId) -> Result<Option<Deployment>, StoreError> {
        panic!("model store bug")
    }
}

#[async_trait]
impl TokenStore for PanickingStore {
    async fn environment(&self, _: &EnvironmentToken) -> Result<Option<Environment>, StoreError> {
        panic!("token store bug")
    }
}

/// An engine that fails a set number of times (with `error`), then starts
/// like [`InMemoryEngine`]; it counts every call.
pub struct FlakyEngine {
    pub inner: InMemoryEngine,
    pub failures_left: AtomicUsize,
    pub calls: AtomicUsize,
    pub error: fn() -> EngineError,
    pub delay: Duration,
    pub panic: bool,
}

impl FlakyEngine {
    pub fn failing(times: usize, error: fn() -> EngineError) -> Self {
        Self {
            inner: InMemoryEngine::new(),
            failures_left: AtomicUsize::new(times),
            calls: AtomicUsize::new(0),
            error,
            delay: Duration::ZERO,
            panic: false,
        }
    }

    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::failing(0, || EngineError::new("unused"))
        }
    }

    pub fn panicking() -> Self {
        Self {
            panic: true,
            ..Self::failing(0, || EngineError::new("unused"))
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Engine for FlakyEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.panic {
            panic!("engine bug");
        }
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err((self.error)());
        }
        self.inner.start(command).await
    }
}

/// The value of `variable`, which tells a test where a server it needs is
/// (`example` shows one): `None`, with a printed line, when it is not set
/// outside CI; in CI, where every test must run, a failure.
pub fn server_setting(variable: &str, example: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) => Some(value),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("{variable} is not set: in CI the tests that need it must run")
        }
        Err(_) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped: {variable} is not set ({example})");
            None
        }
    }
}

/// The Python worker of `tests/temporal_worker/worker.py` (Temporal's Python
/// SDK), polling `task_queue` until dropped.
pub struct PythonWorker(std::process::Child);

impl PythonWorker {
    /// Started with `TEMPORAL_PYTHON` (a Python with `temporalio`); `None`,
    /// with a printed line, when that is not set outside CI.
    pub fn start(task_queue: &str) -> Option<Self> {
        use std::io::BufRead;
        let python = server_setting("TEMPORAL_PYTHON", "a Python with the temporalio package")?;
        let address = std::env::var("TEMPORAL_ADDRESS").unwrap_or_else(|_| "127.0.0.1:7233".into());
        let mut child = std::process::Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/temporal_worker/worker.py"
            ))
            .args(["--address", &address, "--task-queue", task_queue])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the worker starts");
        let stdout = child.stdout.take().unwrap();
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == "worker ready");
        assert!(ready, "the worker did not start");
        Some(Self(child))
    }
}

impl Drop for PythonWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many workflows Temporal's visibility counts on `queue`, asked until
/// it says `expected` (visibility lags the starts) or 20 s have passed: the
/// last count it gave.
pub async fn workflows_on_queue(
    client: &reqwest::Client,
    temporal: &str,
    queue: &str,
    expected: usize,
) -> u64 {
    let base = temporal.trim_end_matches('/');
    let query = format!("TaskQueue=\"{queue}\"");
    let mut count = 0;
    for _ in 0..100 {
        let answer: Value = client
            .get(format!("{base}/api/v1/namespaces/default/workflow-count"))
            .query(&[("query", query.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The HTTP API writes an int64 as a string.
        count = match &answer["count"] {
            Value::String(text) => text.parse().unwrap_or(0),
            other => other.as_u64().unwrap_or(0),
        };
        if count == expected as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    count
}

/// What Temporal's HTTP API answers at `path` under the default namespace.
pub async fn temporal_get(client: &reqwest::Client, temporal: &str, path: &str) -> Value {
    let base = temporal.trim_end_matches('/');
    client
        .get(format!("{base}/api/v1/namespaces/default/{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The run id of workflow `workflow_id`'s current run.
pub async fn workflow_run(client: &reqwest::Client, temporal: &str, workflow_id: &str) -> Option<String> {
    let described = temporal_get(client, temporal, &format!("workflows/{workflow_id}")).await;
    described["workflowExecutionInfo"]["execution"]["runId"]
        .as_str()
        .map(str::to_owned)
}

/// `dispatcher` running on a task of its own until [`Running::stop`].
#[cfg(feature = "dispatcher")]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "dispatcher")]
impl Running {
    pub fn spawn(dispatcher: Dispatcher) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            dispatcher
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { stop, task }
    }

    /// Tells the dispatcher to stop and waits (at most 10 s) until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the dispatcher stops once its round ends")
            .unwrap();
    }
}
