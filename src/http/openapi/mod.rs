//! The webhook's own description: an OpenAPI 3.1 document of one process's
//! webhook, as one environment would start it (its `uid`, the headers a
//! caller may send, the start form's schema, and every answer with its
//! status, media type, schema and headers).

use serde_json::{Value, json};

mod describe;
mod problems;

use describe::Describer;
use problems::Op;

use crate::error::WebhookError;
use crate::http::exchange::names_envelope_fields;
use crate::id::ProcessUuid;
use crate::model::{Deployment, Environment};
use crate::starter::WebhookStarter;
use crate::token::EnvironmentToken;

/// The media type of an OpenAPI document in JSON: a `GET` of a webhook URL
/// whose `Accept` asks for it answers [`openapi_document_for`] instead of the
/// payload's JSON Schema.
pub const OPENAPI_MEDIA_TYPE: &str = "application/vnd.oai.openapi+json";

/// What an OpenAPI document of a webhook describes besides the deployment
/// and its environment: where the webhook is served and which of the
/// starter's optional behaviours are on.
///
/// [`WebhookStarter::openapi_document`](crate::WebhookStarter::openapi_document)
/// fills these in from the starter; the defaults are a starter's defaults
/// (envelope bodies and waits on, no idempotency store, no rate limit) at
/// `/webhook/send`.
///
/// ```
/// use process_webhook::OpenApiOptions;
///
/// let options = OpenApiOptions::new("/hooks/start")
///     .with_server("https://run.example.com")
///     .with_idempotency_keys(true);
/// assert_eq!(options.path(), "/hooks/start");
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OpenApiOptions {
    path: String,
    server: Option<String>,
    idempotency: bool,
    rate_limit: bool,
    waits: bool,
    envelopes: bool,
    inbox: bool,
}

impl Default for OpenApiOptions {
    fn default() -> Self {
        Self::new("/webhook/send")
    }
}

impl OpenApiOptions {
    /// A webhook served at `path` (the part of its URL before `?uid=`).
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            server: None,
            idempotency: false,
            rate_limit: false,
            waits: true,
            envelopes: true,
            inbox: false,
        }
    }

    /// The server's URL (`https://host`), listed under `servers`; without
    /// one the document's own location is the server, as OpenAPI says.
    pub fn with_server(mut self, url: impl Into<String>) -> Self {
        self.server = Some(url.into());
        self
    }

    /// Whether the starter has an idempotency store (`409
    /// start_in_progress` and `503 idempotency_store_full` are answers).
    pub fn with_idempotency_keys(mut self, on: bool) -> Self {
        self.idempotency = on;
        self
    }

    /// Whether the environment is rate limited (`429 rate_limited`, and the
    /// `RateLimit` and `RateLimit-Policy` headers on every answer).
    pub fn with_rate_limit(mut self, on: bool) -> Self {
        self.rate_limit = on;
        self
    }

    /// Whether a call may wait for its instance (`Prefer: wait=N`).
    pub fn with_waits(mut self, on: bool) -> Self {
        self.waits = on;
        self
    }

    /// Whether the starter keeps starts in an inbox (`202` may then be
    /// queued, and `503 inbox_full` an answer).
    pub fn with_inbox(mut self, on: bool) -> Self {
        self.inbox = on;
        self
    }

    /// Whether a `POST` body may be an envelope (`{"headers", "payload"}`).
    pub fn with_envelopes(mut self, on: bool) -> Self {
        self.envelopes = on;
        self
    }

    /// The path the webhook is served at.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// The OpenAPI 3.1 document of `deployment`'s webhook, as `environment`
/// would start it: the `uid` (its one value), the headers a caller may send
/// (`authorization`, `Idempotency-Key`, `Prefer` with `dry-run` and `wait`,
/// and the Standard Webhooks signature headers where `environment` has
/// signing secrets), the request body (the start form's JSON Schema, as a
/// JSON, form-urlencoded or, with the `multipart` feature, multipart body),
/// and every answer of `POST`, `GET`, `HEAD` and `OPTIONS` with its status,
/// media type, schema and headers: `202` with the outcome, `200` for dry
/// runs and waits, each problem document with its `code` values per status,
/// `Retry-After` and `RateLimit` where they occur.
///
/// A draft deployment is described as it is served: its `POST` and
/// (schema) `GET` answer `409 draft_version`.
///
/// Calls of a webhook source (`&source=…`) are not described: they are
/// authenticated by the sender's scheme and answer as its sender expects.
///
/// ```
/// use process_webhook::*;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let environment = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
/// let form = StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]);
/// let deployment = Deployment::new(uuid, VersionTag::Released(3), environment.id().clone(), form);
///
/// let document = openapi_document_for(&deployment, &environment, &OpenApiOptions::default());
/// assert_eq!(document["openapi"], "3.1.0");
/// let post = &document["paths"]["/webhook/send"]["post"];
/// assert_eq!(post["parameters"][0]["schema"]["enum"][0], uuid.to_string());
/// let payload = &document["components"]["schemas"]["StartPayload"];
/// assert_eq!(payload, &serde_json::json!({
///     "type": "object",
///     "properties": {"orderNumber": {"type": "string", "pattern": "\\S"}},
///     "required": ["orderNumber"],
/// }));
/// assert!(post["responses"]["202"].is_object());
/// assert_eq!(
///     post["responses"]["422"]["content"]["application/problem+json"]["schema"]["properties"]["code"]["enum"],
///     serde_json::json!(["invalid_payload", "idempotency_key_reused"]),
/// );
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
pub fn openapi_document_for(
    deployment: &Deployment,
    environment: &Environment,
    options: &OpenApiOptions,
) -> Value {
    let describer = Describer {
        deployment,
        signed: !environment.signing_secrets().is_empty(),
        startable: deployment.startable_version().is_ok(),
        options,
    };
    let version = match deployment.version().number() {
        Some(number) => number.to_string(),
        None => "draft".to_owned(),
    };
    let mut document = json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": format!("Webhook of process {}", deployment.process()),
            "version": version,
            "description": format!(
                "Starts process {} (version {version}) in environment `{}`.",
                deployment.process(),
                environment.id(),
            ),
        },
        "paths": {
            options.path.as_str(): {
                "post": describer.operation(Op::Post),
                "get": describer.operation(Op::Get),
                "head": describer.operation(Op::Head),
                "options": describer.operation(Op::Options),
            },
        },
        "components": {
            "securitySchemes": {
                "environmentToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "authorization",
                    "description": "The environment's token, alone or as `Bearer {token}`.",
                },
            },
            "schemas": describer.schemas(),
        },
        "security": [{"environmentToken": []}],
    });
    if let Some(server) = &options.server {
        document["servers"] = json!([{"url": server}]);
    }
    document
}

impl WebhookStarter {
    /// The OpenAPI 3.1 document ([`openapi_document_for`]) of `process`'s
    /// webhook at `path`, as `token`'s environment would start it: its
    /// deployment there (a draft too), and this starter's options
    /// (idempotency store, rate limit, waits, envelope bodies).
    ///
    /// As [`schema`](Self::schema), an environment that requires signed
    /// webhooks answers `401 invalid_signature` here; serve such
    /// environments through [`handle_method`](Self::handle_method) (a `GET`
    /// with `Accept: application/vnd.oai.openapi+json`).
    ///
    /// # Errors
    ///
    /// As [`schema`](Self::schema), except that a draft is described:
    /// `401`, `404 unknown_process`, `409 not_deployed`, `429
    /// rate_limited`, `503 store_unavailable`.
    pub async fn openapi_document(
        &self,
        process: &ProcessUuid,
        token: Option<&EnvironmentToken>,
        path: &str,
    ) -> Result<Value, WebhookError> {
        let (environment, deployment) = self.described(process, token).await?;
        Ok(self.document_of(&deployment, &environment, path))
    }

    /// The document of an authenticated call's deployment.
    pub(crate) fn document_of(
        &self,
        deployment: &Deployment,
        environment: &Environment,
        path: &str,
    ) -> Value {
        let options = OpenApiOptions::new(path)
            .with_idempotency_keys(self.settings.idempotency.is_some())
            .with_rate_limit(self.settings.limiter.is_some())
            .with_waits(!self.settings.waits.max.is_zero())
            .with_envelopes(self.settings.envelopes && !names_envelope_fields(deployment))
            .with_inbox(self.settings.inbox.is_some());
        openapi_document_for(deployment, environment, &options)
    }
}
