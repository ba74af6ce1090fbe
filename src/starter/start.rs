//! The starts of a [`WebhookStarter`] outside HTTP: [`start`](WebhookStarter::start),
//! [`dry_run`](WebhookStarter::dry_run) and [`schema`](WebhookStarter::schema),
//! each the pipeline's steps with the starter's rate limit, guards and log.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt as _;
use futures_util::future::Either;
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::engine::{ProcessInstance, StartCommand};
use crate::error::WebhookError;
use crate::id::{DeploymentId, EnvironmentId, ProcessUuid};
use crate::model::Environment;
#[cfg(feature = "metrics")]
use crate::observe;
use crate::observe::{Observed, call_span, catch_panic};
use crate::outcome::StartOutcome;
use crate::request::WebhookStartRequest;
use crate::start::{
    Checked, EngineCalls, authenticate, authenticate_request, check, engine_result, request_key, resolve,
    start_checked,
};
use crate::starter::WebhookStarter;
use crate::token::EnvironmentToken;

/// The answer to a dry run: what a start would hand the engine.
///
/// Serialized as `{"dryRun": true, "processUuid", "version", "environment",
/// "deploymentId", "definitionKey", "variables"}`, the body of the `200`
/// answer.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    dry_run: bool,
    process_uuid: ProcessUuid,
    version: u32,
    environment: EnvironmentId,
    deployment_id: DeploymentId,
    definition_key: String,
    variables: Map<String, Value>,
}

impl DryRun {
    /// The process that would start.
    pub fn process(&self) -> &ProcessUuid {
        &self.process_uuid
    }

    /// The version that would start.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The environment it would start in.
    pub fn environment(&self) -> &EnvironmentId {
        &self.environment
    }

    /// The deployment that would start.
    pub fn deployment_id(&self) -> DeploymentId {
        self.deployment_id
    }

    /// The engine's key for the definition.
    pub fn definition_key(&self) -> &str {
        &self.definition_key
    }

    /// The exact variables the engine would get.
    pub fn variables(&self) -> &Map<String, Value> {
        &self.variables
    }
}

impl WebhookStarter {
    /// Starts the process of `request`: [`start_via_webhook`](crate::start_via_webhook)'s
    /// checks, then, with idempotency on, the key's rules. A panic in a
    /// store or the engine is caught and answered `500 internal_error`.
    /// Emits one `tracing` event.
    ///
    /// # Errors
    ///
    /// A [`WebhookError`]; nothing was started (a replay is `Ok`).
    pub fn start(
        &self,
        request: WebhookStartRequest,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
        // Not an `async fn`: the future of a start in flight holds the
        // request once (an `async fn` keeps its argument beside every future
        // it hands it to; measured with `-Zprint-type-sizes`).
        let span = call_span();
        if let Some(trace) = &request.trace {
            span.record("trace_id", trace.trace_id());
        }
        let process = request.process;
        let started = Instant::now();
        AssertUnwindSafe(self.checked_start(request))
            .catch_unwind()
            .map(move |caught| {
                let (result, observed) = caught.unwrap_or_else(|_| {
                    let observed = Observed {
                        process: Some(process),
                        ..Observed::default()
                    };
                    (Err(WebhookError::Internal), observed)
                });
                let outcome = match &result {
                    Ok(outcome) if outcome.is_replayed() => "replayed",
                    _ => "started",
                };
                self.log_call(&observed, result.as_ref().map(|_| 202), outcome, started);
                result
            })
            .instrument(span)
    }

    /// The checks and the start of [`start`](Self::start), with what the
    /// call's log event reports.
    // Not an `async fn`: that would keep the request twice (its argument
    // and the local it moves into).
    #[allow(clippy::manual_async_fn)]
    fn checked_start(
        &self,
        mut request: WebhookStartRequest,
    ) -> impl Future<Output = (Result<StartOutcome, WebhookError>, Observed)> + Send + '_ {
        async move {
            let mut observed = Observed {
                process: Some(request.process),
                ..Observed::default()
            };
            // A labelled block rather than an inner `async` block with `?`,
            // which would hold a second copy of the request.
            let result = 'start: {
                if request.dry_run {
                    break 'start Err(WebhookError::DryRunNotStarted);
                }
                let environment = match self.authenticate_request(&request).await {
                    Ok(environment) => environment,
                    Err(error) => break 'start Err(error),
                };
                observed.environment = Some(environment.id().clone());
                if let Err(error) = self.limit_environment(&environment, &mut observed).await {
                    break 'start Err(error);
                }
                let key = match request_key(&mut request) {
                    Ok(key) => key,
                    Err(error) => break 'start Err(error),
                };
                let deployment = match resolve(&request.process, &environment, &*self.settings.models).await {
                    Ok(deployment) => deployment,
                    Err(error) => break 'start Err(error),
                };
                observed.deployed = true;
                match check(request, key, deployment) {
                    Ok(checked) => self.start_checked(checked).await,
                    Err(error) => Err(error),
                }
            };
            (result, observed)
        }
    }

    /// Runs every check of a start (token, signature, deployment, draft
    /// rule, validation) and returns what the engine would get, without
    /// calling it or touching the idempotency store.
    ///
    /// # Errors
    ///
    /// The [`WebhookError`] the start would fail with (before the engine).
    pub async fn dry_run(&self, request: WebhookStartRequest) -> Result<DryRun, WebhookError> {
        let environment = self.authenticate_request(&request).await?;
        self.limit_environment(&environment, &mut Observed::default())
            .await?;
        self.dry_run_authenticated(request, &environment).await
    }

    /// The JSON Schema of the payload that `token` may start `process` with:
    /// that of the deployment its environment would start.
    ///
    /// An environment that requires signed webhooks also requires a signed
    /// `GET` (over an empty body): this method has no signature to check, so
    /// it answers `401 invalid_signature` there; serve such environments
    /// through [`handle_method`](Self::handle_method).
    ///
    /// # Errors
    ///
    /// As a start would fail before validation: `401`, `404 unknown_process`,
    /// `409 not_deployed`, `409 draft_version`, `503 store_unavailable`.
    pub async fn schema(
        &self,
        process: &ProcessUuid,
        token: Option<&EnvironmentToken>,
    ) -> Result<Value, WebhookError> {
        let environment = self.unsigned_environment(token).await?;
        self.schema_authenticated(process, &environment).await
    }

    /// The environment of `token`, for a call without a body or signature
    /// (refused where the environment requires signed calls), limited as
    /// every call is.
    pub(crate) async fn unsigned_environment(
        &self,
        token: Option<&EnvironmentToken>,
    ) -> Result<Environment, WebhookError> {
        let environment = authenticate(
            token,
            None,
            &*self.settings.tokens,
            self.settings.signature_tolerance,
        )
        .await?;
        self.limit_environment(&environment, &mut Observed::default())
            .await?;
        Ok(environment)
    }

    pub(crate) async fn authenticate_request(
        &self,
        request: &WebhookStartRequest,
    ) -> Result<Environment, WebhookError> {
        authenticate_request(request, &*self.settings.tokens, self.settings.signature_tolerance).await
    }

    async fn dry_run_authenticated(
        &self,
        mut request: WebhookStartRequest,
        environment: &Environment,
    ) -> Result<DryRun, WebhookError> {
        let key = request_key(&mut request)?;
        let deployment = resolve(&request.process, environment, &*self.settings.models).await?;
        Ok(DryRun::from(check(request, key, deployment)?))
    }

    pub(crate) async fn schema_authenticated(
        &self,
        process: &ProcessUuid,
        environment: &Environment,
    ) -> Result<Value, WebhookError> {
        let deployment = resolve(process, environment, &*self.settings.models).await?;
        deployment.startable_version()?;
        Ok(deployment.start_form().json_schema())
    }

    /// A checked call, started through the pipeline's idempotent steps
    /// (when this starter has an idempotency store) and this starter's
    /// engine call.
    pub(crate) fn start_checked(
        &self,
        checked: Checked,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
        let engine = &*self.settings.engine;
        let calls = EngineCalls {
            start: |command| self.call_engine(command),
            find: move |command: StartCommand| {
                catch_panic(async move { engine.find_started(&command).await.map_err(WebhookError::from) })
            },
            recovery: engine.recovery(),
            margin: self.settings.takeover_margin,
        };
        start_checked(checked, self.settings.idempotency.as_deref(), calls)
    }

    /// The engine's start of a command, a panic (while the engine builds
    /// its future or while it runs) answered `500 internal_error`, timed
    /// when the metrics are compiled in.
    fn call_engine(
        &self,
        command: StartCommand,
    ) -> impl Future<Output = Result<ProcessInstance, WebhookError>> + Send + '_ {
        // Timed only when the metrics are compiled in: two clock reads are a
        // measurable part of a start.
        #[cfg(feature = "metrics")]
        let began = Instant::now();
        let engine = &*self.settings.engine;
        let started = match std::panic::catch_unwind(AssertUnwindSafe(|| engine.start(command))) {
            Ok(future) => Either::Left(catch_panic(future.map(engine_result))),
            Err(_) => Either::Right(std::future::ready(Err(WebhookError::Internal))),
        };
        started.map(move |result| {
            #[cfg(feature = "metrics")]
            observe::engine_call(engine.name(), result.is_ok(), began.elapsed());
            result
        })
    }
}

impl From<Checked> for DryRun {
    fn from(checked: Checked) -> Self {
        Self {
            dry_run: true,
            process_uuid: *checked.deployment.process(),
            version: checked.version,
            environment: checked.deployment.environment().clone(),
            deployment_id: checked.deployment.id(),
            definition_key: checked.deployment.definition_key().to_owned(),
            variables: checked.variables,
        }
    }
}
