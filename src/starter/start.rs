//! The starts of a [`WebhookStarter`] outside HTTP: [`start`](WebhookStarter::start),
//! [`dry_run`](WebhookStarter::dry_run) and [`schema`](WebhookStarter::schema),
//! each the pipeline's one sequence in this starter's context (its stores,
//! rate limit, guards and log).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::Either;
use serde_json::Value;
use tracing::Instrument as _;

use crate::engine::{ProcessInstance, StartCommand};
use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::model::{Deployment, Environment};
#[cfg(feature = "metrics")]
use crate::observe;
use crate::observe::{Observed, call_span, catch_panic, started_label};
use crate::outcome::{Accepted, DryRun, StartOutcome};
use crate::request::WebhookStartRequest;
use crate::start::{
    Checked, Context, Done, EngineCalls, Mode, describe, engine_result, run_request, start_checked,
};
use crate::starter::WebhookStarter;
use crate::store::{ModelStore, TokenStore};
use crate::token::EnvironmentToken;

impl WebhookStarter {
    /// Starts the process of `request`: [`start_via_webhook`](crate::start_via_webhook)'s
    /// checks, this starter's rate limit, then, with idempotency on, the
    /// key's rules. A panic in a store or the engine is caught and answered
    /// `500 internal_error`. Emits one `tracing` event.
    ///
    /// # Errors
    ///
    /// A [`WebhookError`]; nothing was started (a replay is `Ok`).
    pub fn start(
        &self,
        request: WebhookStartRequest,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
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
                let outcome = result.as_ref().map_or("", started_label);
                let instance = result.as_ref().ok().map(|o| o.instance_id().as_str());
                self.log_call(
                    &observed,
                    result.as_ref().map(|_| 202),
                    outcome,
                    instance,
                    started,
                );
                result
            })
            .instrument(span)
    }

    /// The sequence of [`start`](Self::start), with what the call's log
    /// event reports.
    async fn checked_start(
        &self,
        request: WebhookStartRequest,
    ) -> (Result<StartOutcome, WebhookError>, Observed) {
        let mut observed = Observed {
            process: Some(request.process),
            ..Observed::default()
        };
        let result = match run_request(self, request, Mode::Start, &mut observed).await {
            Ok(Done::Started(outcome)) => Ok(outcome),
            // `Mode::Start` ends started.
            Ok(Done::Queued(_) | Done::DryRun(_) | Done::Described(_)) => Err(WebhookError::Internal),
            Err(error) => Err(error),
        };
        (result, observed)
    }

    /// Starts the process of `request` as [`start`](Self::start) does, or,
    /// with an inbox ([`with_inbox`](Self::with_inbox)), keeps the start
    /// as the inbox policy says: what the HTTP exchange does with a `POST`.
    /// Emits one `tracing` event.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and `503 inbox_full`; nothing was started
    /// or kept.
    pub async fn accept(&self, request: WebhookStartRequest) -> Result<Accepted, WebhookError> {
        let started = Instant::now();
        let mut observed = Observed {
            process: Some(request.process),
            ..Observed::default()
        };
        let result = match catch_panic(run_request(self, request, Mode::Accept, &mut observed)).await {
            Ok(Done::Started(outcome)) => Ok(Accepted::Started(outcome)),
            Ok(Done::Queued(queued)) => Ok(Accepted::Queued(queued)),
            // `Mode::Accept` ends started or queued.
            Ok(Done::DryRun(_) | Done::Described(_)) => Err(WebhookError::Internal),
            Err(error) => Err(error),
        };
        let (outcome, kept) = match &result {
            Ok(Accepted::Started(outcome)) => (started_label(outcome), None),
            Ok(Accepted::Queued(queued)) => ("queued", Some(queued.delivery_id().to_string())),
            Err(_) => ("", None),
        };
        let instance = match &result {
            Ok(Accepted::Started(outcome)) => Some(outcome.instance_id().as_str()),
            _ => kept.as_deref(),
        };
        self.log_call(
            &observed,
            result.as_ref().map(|_| 202),
            outcome,
            instance,
            started,
        );
        result
    }

    /// Runs every check of a start (token, rate limit, signature,
    /// deployment, draft rule, validation) and returns what the engine would
    /// get, without calling it or touching the idempotency store.
    ///
    /// # Errors
    ///
    /// The [`WebhookError`] the start would fail with (before the engine).
    pub async fn dry_run(&self, request: WebhookStartRequest) -> Result<DryRun, WebhookError> {
        match run_request(self, request, Mode::DryRun, &mut Observed::default()).await? {
            Done::DryRun(dry_run) => Ok(dry_run),
            // `Mode::DryRun` ends with a dry run.
            Done::Started(_) | Done::Queued(_) | Done::Described(_) => Err(WebhookError::Internal),
        }
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
    /// As a start would fail before validation: `401`, `429 rate_limited`,
    /// `404 unknown_process`, `409 not_deployed`, `409 draft_version`,
    /// `503 store_unavailable`.
    pub async fn schema(
        &self,
        process: &ProcessUuid,
        token: Option<&EnvironmentToken>,
    ) -> Result<Value, WebhookError> {
        let (_, deployment) = describe(self, *process, token, Mode::Schema, &mut Observed::default()).await?;
        Ok(deployment.start_form().json_schema())
    }

    /// The deployment `token`'s environment has of `process`, a draft too,
    /// for a call without a body (refused where the environment requires
    /// signed calls).
    pub(crate) async fn described(
        &self,
        process: &ProcessUuid,
        token: Option<&EnvironmentToken>,
    ) -> Result<(Environment, Deployment), WebhookError> {
        describe(self, *process, token, Mode::Document, &mut Observed::default()).await
    }

    /// The engine's start of a command, a panic (while the engine builds
    /// its future or while it runs) answered `500 internal_error`, timed
    /// when the metrics are compiled in.
    pub(crate) fn call_engine<'a>(
        &'a self,
        command: &'a StartCommand,
    ) -> impl Future<Output = Result<ProcessInstance, WebhookError>> + Send + 'a {
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

impl Context for WebhookStarter {
    type Models = dyn ModelStore;
    type Tokens = dyn TokenStore;

    fn models(&self) -> &(dyn ModelStore + 'static) {
        &*self.settings.models
    }

    fn tokens(&self) -> &(dyn TokenStore + 'static) {
        &*self.settings.tokens
    }

    fn tolerance(&self) -> Duration {
        self.settings.signature_tolerance
    }

    fn limit(
        &self,
        environment: &Environment,
        observed: &mut Observed,
    ) -> impl Future<Output = Result<(), WebhookError>> + Send {
        observed.environment = Some(environment.id().clone());
        self.limit_environment(environment, observed)
    }

    /// A checked call, started through the pipeline's idempotent steps
    /// (when this starter has an idempotency store) and this starter's
    /// engine call.
    fn start(
        &self,
        checked: Checked,
    ) -> impl Future<Output = Result<StartOutcome, WebhookError>> + Send + '_ {
        let engine = &*self.settings.engine;
        let calls = EngineCalls {
            start: move |command: StartCommand| async move { self.call_engine(&command).await },
            find: move |command: StartCommand| {
                catch_panic(async move { engine.find_started(&command).await.map_err(WebhookError::from) })
            },
            recovery: engine.recovery(),
            margin: self.settings.takeover_margin,
        };
        start_checked(checked, self.settings.idempotency.as_deref(), calls)
    }

    /// The start, or, with an inbox, the start or the start kept (as the
    /// inbox policy says); boxed, so that a starter without an inbox holds
    /// no room for it.
    fn accept_checked(
        &self,
        checked: Checked,
    ) -> impl Future<Output = Result<Accepted, WebhookError>> + Send + '_ {
        match &self.settings.inbox {
            None => Either::Left(Context::start(self, checked).map(|started| started.map(Accepted::Started))),
            Some(kept) => Either::Right(Box::pin(self.start_or_keep(kept, checked))),
        }
    }
}
