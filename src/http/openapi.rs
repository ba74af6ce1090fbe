//! The webhook's own description: an OpenAPI 3.1 document of one process's
//! webhook, as one environment would start it (its `uid`, the headers a
//! caller may send, the start form's schema, and every answer with its
//! status, media type, schema and headers).

use serde_json::{Map, Value, json};

use crate::error::{Problem, RetryAfter, WebhookError};
use crate::http::ALLOWED_METHODS;
use crate::http::exchange::names_envelope_fields;
use crate::http::reply::ACCEPTED_MEDIA_TYPES;
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

/// When a problem code is a possible answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// To every call of the operation.
    Always,
    /// Where the environment requires signed calls.
    Signed,
    /// Where the starter has an idempotency store.
    Idempotency,
    /// Where the environment is rate limited.
    RateLimit,
    /// Where envelope bodies are read.
    Envelopes,
    /// Where the deployment is startable (not a draft): the engine's and
    /// the validation's answers.
    Startable,
    /// Where multipart bodies are read (the `multipart` feature).
    Multipart,
}

/// Which operations a problem code may answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ops {
    /// `POST` only.
    Post,
    /// `POST`, `GET` and `HEAD`.
    Calls,
    /// Every method, `OPTIONS` too: what the server's protection answers
    /// before a call is read.
    All,
}

/// Every problem a call of a token's webhook can answer: its code (its
/// status and `Retry-After` are the table of codes'), the operations it
/// answers, and when.
const PROBLEMS: &[(&str, Ops, When)] = &[
    ("missing_uid", Ops::Calls, When::Always),
    ("invalid_uid", Ops::Calls, When::Always),
    ("duplicate_header", Ops::Calls, When::Always),
    ("invalid_idempotency_key", Ops::Calls, When::Always),
    ("malformed_payload", Ops::Post, When::Always),
    ("conflicting_headers", Ops::Post, When::Envelopes),
    ("dry_run_not_started", Ops::Post, When::Always),
    ("missing_token", Ops::Calls, When::Always),
    ("invalid_token", Ops::Calls, When::Always),
    ("invalid_signature", Ops::Calls, When::Signed),
    ("missing_signature", Ops::Calls, When::Signed),
    ("stale_timestamp", Ops::Calls, When::Signed),
    ("unknown_process", Ops::Calls, When::Always),
    ("body_timeout", Ops::Calls, When::Always),
    ("not_deployed", Ops::Calls, When::Always),
    ("draft_version", Ops::Calls, When::Always),
    ("start_in_progress", Ops::Post, When::Idempotency),
    ("payload_too_large", Ops::Calls, When::Always),
    ("unsupported_media_type", Ops::Post, When::Always),
    ("file_part", Ops::Post, When::Multipart),
    ("invalid_payload", Ops::Post, When::Startable),
    ("idempotency_key_reused", Ops::Post, When::Startable),
    ("rate_limited", Ops::Calls, When::RateLimit),
    ("engine_overloaded", Ops::Post, When::Startable),
    ("internal_error", Ops::Calls, When::Always),
    ("engine_failed", Ops::Post, When::Startable),
    ("store_unavailable", Ops::Calls, When::Always),
    ("engine_unavailable", Ops::Post, When::Startable),
    ("idempotency_store_full", Ops::Post, When::Idempotency),
    ("server_busy", Ops::All, When::Always),
    ("too_many_connections", Ops::All, When::Always),
];

/// The operations of the document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Post,
    Get,
    Head,
    Options,
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

/// What the document's parts are made from.
struct Describer<'a> {
    deployment: &'a Deployment,
    signed: bool,
    startable: bool,
    options: &'a OpenApiOptions,
}

impl Describer<'_> {
    fn holds(&self, when: When) -> bool {
        match when {
            When::Always => true,
            When::Signed => self.signed,
            When::Idempotency => self.options.idempotency && self.startable,
            When::RateLimit => self.options.rate_limit,
            When::Envelopes => self.options.envelopes,
            When::Startable => self.startable,
            When::Multipart => cfg!(feature = "multipart"),
        }
    }

    fn operation(&self, op: Op) -> Value {
        let mut operation = Map::new();
        let (id, summary) = match op {
            Op::Post => ("start", "Starts the process with the payload's variables"),
            Op::Get => (
                "describe",
                "The payload's JSON Schema, or this document (`Accept: application/vnd.oai.openapi+json`)",
            ),
            Op::Head => ("describeHead", "The headers of the `GET` answer"),
            Op::Options => ("options", "The methods the webhook serves"),
        };
        operation.insert("operationId".into(), json!(id));
        operation.insert("summary".into(), json!(summary));
        if op == Op::Options {
            // Served without a token and before the `uid` is read.
            operation.insert("security".into(), json!([]));
        } else {
            operation.insert("parameters".into(), Value::Array(self.parameters(op)));
        }
        if op == Op::Post {
            operation.insert("requestBody".into(), self.request_body());
        }
        operation.insert("responses".into(), Value::Object(self.responses(op)));
        Value::Object(operation)
    }

    fn parameters(&self, op: Op) -> Vec<Value> {
        let mut parameters = vec![json!({
            "name": "uid",
            "in": "query",
            "required": true,
            "description": "The process's UUID.",
            "schema": {"type": "string", "enum": [self.deployment.process().to_string()]},
        })];
        parameters.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": if op == Op::Post {
                "1 to 255 printable ASCII characters. Repeats of a call with the same key and payload \
                 start once and answer the first outcome (`idempotent-replayed: true`); the same key \
                 with another payload is `422 idempotency_key_reused`."
            } else {
                "Checked as on `POST` (1 to 255 printable ASCII characters); a `GET` starts nothing."
            },
            "schema": {"type": "string", "pattern": "^[!-~]([ -~]{0,253}[!-~])?$"},
        }));
        if op == Op::Post {
            let mut preferences = "`dry-run`: every check, and the variables the engine would get (`200`), \
                                   without starting anything."
                .to_owned();
            if self.options.waits {
                preferences.push_str(
                    " `wait=N`: the answer waits up to N seconds (capped by the server) for the instance to \
                     end (`200` with its result; `202` while it still runs).",
                );
            }
            parameters.push(json!({
                "name": "Prefer",
                "in": "header",
                "required": false,
                "description": format!("Preferences (RFC 7240). {preferences}"),
                "schema": {"type": "string"},
            }));
        }
        if self.signed && op != Op::Options {
            for (name, description) in [
                (
                    "webhook-id",
                    "The message id (Standard Webhooks); without a key, it is the idempotency key.",
                ),
                (
                    "webhook-timestamp",
                    "Seconds since the Unix epoch when the call was signed.",
                ),
                (
                    "webhook-signature",
                    "`v1,{base64 HMAC-SHA256 of id.timestamp.body}` with one of the environment's secrets, \
                     space-separated for several.",
                ),
            ] {
                parameters.push(json!({
                    "name": name,
                    "in": "header",
                    "required": false,
                    "description": format!("{description} This environment requires signed calls."),
                    "schema": {"type": "string"},
                }));
            }
        }
        parameters
    }

    fn request_body(&self) -> Value {
        let payload = json!({"$ref": "#/components/schemas/StartPayload"});
        let json_body = if self.options.envelopes {
            json!({"anyOf": [payload, {"$ref": "#/components/schemas/Envelope"}]})
        } else {
            payload.clone()
        };
        let mut content = Map::new();
        content.insert("application/json".into(), json!({"schema": json_body}));
        content.insert(
            "application/x-www-form-urlencoded".into(),
            json!({"schema": {"$ref": "#/components/schemas/FormPayload"}}),
        );
        if cfg!(feature = "multipart") {
            content.insert(
                "multipart/form-data".into(),
                json!({"schema": {"$ref": "#/components/schemas/FormPayload"}}),
            );
        }
        json!({
            "required": false,
            "description": "The start fields. A form's values are text, read by each field's kind.",
            "content": content,
        })
    }

    fn responses(&self, op: Op) -> Map<String, Value> {
        let mut responses = Map::new();
        let bodies = matches!(op, Op::Post | Op::Get);
        match op {
            Op::Post if self.startable => {
                responses.insert(
                    "200".into(),
                    self.success(
                        "A dry run (`Prefer: dry-run`), or a start waited for to its end (`Prefer: wait`)",
                        json!({"anyOf": [
                            {"$ref": "#/components/schemas/DryRun"},
                            {"$ref": "#/components/schemas/Waited"},
                        ]}),
                    ),
                );
                responses.insert(
                    "202".into(),
                    self.success(
                        "Started (or the replay of the key's first start)",
                        json!({"$ref": "#/components/schemas/StartOutcome"}),
                    ),
                );
            }
            Op::Post => {}
            Op::Get | Op::Head => {
                let mut content = Map::new();
                if self.startable {
                    content.insert(
                        "application/schema+json".into(),
                        json!({"schema": {"$ref": "#/components/schemas/StartPayloadSchema"}}),
                    );
                }
                content.insert(OPENAPI_MEDIA_TYPE.into(), json!({"schema": {"type": "object"}}));
                let mut ok = json!({
                    "description": "The payload's JSON Schema, or this document",
                    "headers": self.common_headers(),
                });
                if bodies {
                    ok["content"] = Value::Object(content);
                }
                responses.insert("200".into(), ok);
            }
            Op::Options => {
                let mut headers = self.common_headers();
                headers.insert(
                    "Allow".into(),
                    json!({"required": true, "schema": {"type": "string", "const": ALLOWED_METHODS}}),
                );
                responses.insert(
                    "204".into(),
                    json!({"description": "The methods served", "headers": headers}),
                );
            }
        }
        let mut by_status: Vec<(u16, Vec<&str>)> = Vec::new();
        for &(code, ops, when) in PROBLEMS {
            let status = Problem::of(code).status;
            let serves = match ops {
                Ops::Post => op == Op::Post,
                Ops::Calls => op != Op::Options,
                Ops::All => true,
            };
            if !serves || !self.holds(when) {
                continue;
            }
            match by_status.iter_mut().find(|(s, _)| *s == status) {
                Some((_, codes)) => codes.push(code),
                None => by_status.push((status, vec![code])),
            }
        }
        for (status, codes) in by_status {
            responses.insert(status.to_string(), self.problem(status, &codes, bodies));
        }
        responses
    }

    /// A `2xx` answer of a start.
    fn success(&self, description: &str, schema: Value) -> Value {
        let mut headers = self.common_headers();
        headers.insert(
            "Preference-Applied".into(),
            json!({
                "description": "`dry-run`, or `wait={seconds}` when the call waited.",
                "schema": {"type": "string"},
            }),
        );
        if self.options.idempotency {
            headers.insert(
                "idempotent-replayed".into(),
                json!({
                    "description": "`true` on the replay of a key's first outcome.",
                    "schema": {"type": "string", "const": "true"},
                }),
            );
        }
        json!({
            "description": description,
            "headers": headers,
            "content": {"application/json": {"schema": schema}},
        })
    }

    /// A problem document's answer: its codes, and its headers.
    fn problem(&self, status: u16, codes: &[&str], body: bool) -> Value {
        let mut headers = self.common_headers();
        if codes
            .iter()
            .any(|code| Problem::of(code).retry_after != RetryAfter::Never)
        {
            headers.insert(
                "Retry-After".into(),
                json!({
                    "description": "Seconds to wait before calling again.",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }),
            );
        }
        match status {
            401 => {
                headers.insert(
                    "WWW-Authenticate".into(),
                    json!({"required": true, "schema": {"type": "string", "pattern": "^Bearer "}}),
                );
            }
            415 => {
                headers.insert(
                    "Accept-Post".into(),
                    json!({"required": true, "schema": {"type": "string", "const": ACCEPTED_MEDIA_TYPES}}),
                );
            }
            _ => {}
        }
        let mut answer = json!({
            "description": format!("`{}`", codes.join("`, `")),
            "headers": headers,
        });
        if body {
            answer["content"] = json!({
                "application/problem+json": {
                    "schema": {
                        "allOf": [{"$ref": "#/components/schemas/Problem"}],
                        "properties": {
                            "status": {"const": status},
                            "code": {"enum": codes},
                        },
                    },
                },
            });
        }
        answer
    }

    /// The headers every answer may have: the rate limit's.
    fn common_headers(&self) -> Map<String, Value> {
        let mut headers = Map::new();
        if self.options.rate_limit {
            headers.insert(
                "RateLimit".into(),
                json!({
                    "description": "`\"environment\";r={remaining};t={seconds to reset}`.",
                    "schema": {"type": "string"},
                }),
            );
            headers.insert(
                "RateLimit-Policy".into(),
                json!({
                    "description": "`\"environment\";q={calls};w={seconds}`.",
                    "schema": {"type": "string"},
                }),
            );
        }
        headers
    }

    fn schemas(&self) -> Value {
        let mut payload = self.deployment.start_form().json_schema();
        if let Some(schema) = payload.as_object_mut() {
            schema.remove("$schema");
        }
        // A form's values are all text: each field a string (or, repeated,
        // strings), the mandatory ones required.
        let mut form_properties = Map::new();
        for field in self.deployment.start_form().fields() {
            form_properties.insert(field.name().to_owned(), json!({"type": "string"}));
        }
        let form = json!({
            "type": "object",
            "properties": form_properties,
            "required": payload["required"].clone(),
        });
        let outcome_properties = json!({
            "instanceId": {"type": "string"},
            "processUuid": {"type": "string", "format": "uuid"},
            "version": {"type": "integer", "minimum": 0},
            "environment": {"type": "string"},
            "replayed": {"type": "boolean"},
        });
        json!({
            "StartPayload": payload,
            "StartPayloadSchema": {
                "description": "A JSON Schema (draft 2020-12) of the payload, as `StartPayload`.",
                "type": "object",
            },
            "FormPayload": form,
            "Envelope": {
                "description": "The call's headers and its payload in one body.",
                "type": "object",
                "properties": {
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "payload": {"$ref": "#/components/schemas/StartPayload"},
                },
                "required": ["headers", "payload"],
                "additionalProperties": false,
            },
            "StartOutcome": {
                "type": "object",
                "properties": outcome_properties,
                "required": ["instanceId", "processUuid", "version", "environment", "replayed"],
            },
            "Waited": {
                "allOf": [{"$ref": "#/components/schemas/StartOutcome"}],
                "properties": {
                    "status": {
                        "type": "string",
                        "enum": ["completed", "failed", "terminated", "cancelled", "running"],
                    },
                    "result": {},
                    "message": {"type": "string"},
                },
                "required": ["status"],
            },
            "DryRun": {
                "type": "object",
                "properties": {
                    "dryRun": {"const": true},
                    "processUuid": {"type": "string", "format": "uuid"},
                    "version": {"type": "integer", "minimum": 0},
                    "environment": {"type": "string"},
                    "deploymentId": {"type": "string", "format": "uuid"},
                    "definitionKey": {"type": "string"},
                    "variables": {"type": "object"},
                },
                "required": [
                    "dryRun", "processUuid", "version", "environment", "deploymentId", "definitionKey",
                    "variables",
                ],
            },
            "Problem": {
                "description": "A problem document (RFC 9457).",
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "code": {"type": "string"},
                    "violations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "problem": {"type": "string"},
                                "message": {"type": "string"},
                                "query": {"type": "string"},
                            },
                            "required": ["field", "problem", "message"],
                        },
                    },
                },
                "required": ["type", "title", "status", "detail", "code"],
            },
        })
    }
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
            .with_envelopes(self.settings.envelopes && !names_envelope_fields(deployment));
        openapi_document_for(deployment, environment, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_document_can_list_is_in_the_table_of_codes_once() {
        // The table's own test proves each of its codes is some error's.
        let mut seen = Vec::new();
        for &(code, _, _) in PROBLEMS {
            assert_eq!(Problem::of(code).code, code, "{code} is no code of the table");
            assert!(!seen.contains(&code), "{code} twice");
            seen.push(code);
        }
    }
}
