//! The describer: the parts of the document (operations, parameters,
//! bodies, answers, schemas) made from a deployment, its environment and
//! the options.

use serde_json::{Map, Value, json};

use super::problems::{Op, Ops, PROBLEMS, When};
use super::{OPENAPI_MEDIA_TYPE, OpenApiOptions};
use crate::error::{Problem, RetryAfter};
use crate::http::ALLOWED_METHODS;
use crate::http::reply::ACCEPTED_MEDIA_TYPES;
use crate::model::Deployment;

/// What the document's parts are made from.
pub(super) struct Describer<'a> {
    pub(super) deployment: &'a Deployment,
    pub(super) signed: bool,
    pub(super) startable: bool,
    pub(super) options: &'a OpenApiOptions,
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
            When::Inbox => self.options.inbox && self.startable,
            When::Multipart => cfg!(feature = "multipart"),
        }
    }

    pub(super) fn operation(&self, op: Op) -> Value {
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
                let accepted = if self.options.inbox {
                    json!({"anyOf": [
                        {"$ref": "#/components/schemas/Started"},
                        {"$ref": "#/components/schemas/Queued"},
                    ]})
                } else {
                    json!({"$ref": "#/components/schemas/Started"})
                };
                responses.insert(
                    "202".into(),
                    self.success(
                        "Started (or the replay of the key's first start), or kept to start later",
                        accepted,
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

    pub(super) fn schemas(&self) -> Value {
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
            "Started": {
                "allOf": [{"$ref": "#/components/schemas/StartOutcome"}],
                "properties": {"status": {"const": "started"}},
                "required": ["status"],
            },
            "Queued": {
                "type": "object",
                "properties": {
                    "status": {"const": "queued"},
                    "deliveryId": {"type": "string", "format": "uuid"},
                    "processUuid": {"type": "string", "format": "uuid"},
                    "version": {"type": "integer", "minimum": 0},
                    "environment": {"type": "string"},
                    "replayed": {"type": "boolean"},
                },
                "required": ["status", "deliveryId", "processUuid", "version", "environment", "replayed"],
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
