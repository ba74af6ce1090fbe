//! The whole HTTP exchange over a [`WebhookStarter`], without any web
//! framework: a call's head admitted before its body is read, the rest once
//! it is, and the answer with its one log event.

use std::net::IpAddr;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::delivery_log::LoggedHeaders;
use crate::error::WebhookError;
use crate::http::answer::Success;
use crate::http::delivery::{SourceAdmitted, note_delivery};
use crate::http::target::parse_target;
use crate::http::{
    HttpReply, RequestHead, check_body_size, is_envelope, open_envelope, parse_body, parse_payload,
};
use crate::id::ProcessUuid;
use crate::model::{Deployment, Environment};
use crate::observe::{Observed, call_span, catch_panic, in_span};
use crate::signature::SignatureHeaders;
use crate::source::SourceId;
use crate::start::{Call, Context as _, Done, Mode, authenticate, identify, run, verify_signed};
use crate::starter::WebhookStarter;
use crate::starter::deliveries::Captured;

/// What a call's method, target and headers established, before its body is
/// read.
#[derive(Debug)]
pub(crate) struct Admitted {
    method: Method,
    process: ProcessUuid,
    head: RequestHead,
    /// The environment of the token on the request (or of the source);
    /// `None` for a `POST` without a token, whose token can only be inside
    /// an envelope body.
    environment: Option<Environment>,
    /// For a call of a webhook source: the source and the raw parts its
    /// scheme checks once the body is read. Boxed: most calls have none.
    source: Option<Box<SourceAdmitted>>,
}

impl Admitted {
    /// Whether the token on the request was checked (else the body is read
    /// before the call is authenticated).
    #[cfg(feature = "axum")]
    pub(crate) fn is_authenticated(&self) -> bool {
        self.environment.is_some()
    }
}

/// The methods the webhook URL serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Method {
    Post,
    Get,
    Head,
    Options,
}

impl Method {
    fn parse(method: &str) -> Result<Self, WebhookError> {
        [
            ("POST", Self::Post),
            ("GET", Self::Get),
            ("HEAD", Self::Head),
            ("OPTIONS", Self::Options),
        ]
        .into_iter()
        // Methods are case-sensitive (RFC 9110, section 9.1): `post` is not `POST`.
        .find(|(name, _)| method == *name)
        .map(|(_, m)| m)
        .ok_or_else(|| WebhookError::MethodNotAllowed {
            method: method.chars().take(32).collect(),
        })
    }
}

impl WebhookStarter {
    /// The whole HTTP exchange of a `POST`, without any web framework: reads
    /// the call (its headers as
    /// [`WebhookStartRequest::from_parts`](crate::WebhookStartRequest::from_parts)
    /// reads them, with this starter's limits; besides, an envelope body and
    /// a webhook source's delivery), starts it, and answers:
    ///
    /// - `202` with the [`StartOutcome`](crate::StartOutcome) as `application/json` (a replay also
    ///   has `idempotent-replayed: true`);
    /// - for a dry run (`Prefer: dry-run`), `200` with the [`DryRun`](crate::DryRun);
    /// - for every error, its
    ///   [`to_problem_json`](WebhookError::to_problem_json) as
    ///   `application/problem+json` with its status (and `Retry-After` where
    ///   it has one).
    ///
    /// The order of checks: target (`missing_uid`, `invalid_uid`), body size
    /// (`413`), headers (`duplicate_header`, `invalid_idempotency_key`), the
    /// token on the request (`401`), the environment's rate limit (`429`),
    /// the signature over the raw body, the body (`413` for too many JSON
    /// values, `malformed_payload`), and the start goes on as
    /// [`start`](Self::start) does: the one order of the rules guide.
    ///
    /// A `POST` with `Prefer: wait=N` waits for its instance to end (the
    /// waiting guide, [`guide::waiting`](crate::guide::waiting)); a body of
    /// exactly `{"headers": {…}, "payload": {…}}` is read as the product's
    /// documented envelope (the rules guide's "Envelope bodies",
    /// [`guide::rules`](crate::guide::rules)).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use process_webhook::*;
    ///
    /// # tokio_test::block_on(async {
    /// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    /// let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    /// let models = Arc::new(InMemoryModelStore::new());
    /// models.insert_model(ProcessModel::new(uuid, acme.clone(), "Order intake"));
    /// models.deploy(Deployment::new(uuid, VersionTag::Released(1), production.clone(),
    ///     StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)])));
    /// let tokens = Arc::new(InMemoryTokenStore::new());
    /// let token = EnvironmentToken::generate();
    /// tokens.insert(&token, Environment::new(production, acme));
    /// let engine = Arc::new(InMemoryEngine::new());
    /// let starter = WebhookStarter::new(models, tokens, engine.clone());
    ///
    /// // The documented call, as one JSON document in the body.
    /// let body = serde_json::json!({
    ///     "headers": {"authorization": token.expose_secret()},
    ///     "payload": {"orderNumber": "123456"},
    /// });
    /// let target = webhook_url("/webhook/send", &uuid);
    /// let no_headers: [(&str, &str); 0] = [];
    /// let reply = starter.handle(&target, no_headers, body.to_string().as_bytes()).await;
    /// assert_eq!(reply.status(), 202);
    /// let started = &engine.started()[0].command.variables;
    /// assert_eq!(serde_json::Value::Object(started.clone()), serde_json::json!({"orderNumber": "123456"}));
    /// # });
    /// ```
    pub async fn handle<K, V>(
        &self,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        self.handle_method_from(None, "POST", target, headers, body).await
    }

    /// [`handle`](Self::handle) for any method: `POST` starts, `GET` answers
    /// the payload's JSON Schema ([`schema`](Self::schema)) as
    /// `application/schema+json`, `HEAD` answers as `GET` without the body
    /// (RFC 9110 §9.3.2), `OPTIONS` answers `204` with
    /// `Allow: GET, HEAD, OPTIONS, POST` (no token needed), and anything else
    /// is `405 method_not_allowed` with that `Allow`.
    ///
    /// A `POST` whose `Content-Type` is present and not JSON
    /// (`application/json` or a `+json` type, any parameters) is
    /// `415 unsupported_media_type` with `Accept-Post: application/json`; a
    /// missing `Content-Type` is accepted, since senders often omit it. Every
    /// `401` carries `WWW-Authenticate: Bearer realm="process-webhook"` (with
    /// `error="invalid_token"` for a token no environment has), and a dry
    /// run's answer `Preference-Applied: dry-run`.
    pub async fn handle_method<K, V>(
        &self,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        self.handle_method_from(None, method, target, headers, body).await
    }

    /// [`handle_method`](Self::handle_method) for a call from the client
    /// address `peer`. Failed authentications are then logged at `warn` with
    /// that address, at most one event a second per address with the number
    /// of failures since the last (so that a guessing run is seen without
    /// flooding the log).
    pub async fn handle_method_from<K, V>(
        &self,
        peer: Option<IpAddr>,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: &[u8],
    ) -> HttpReply
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let call = async {
            let mut observed = Observed::from_peer(peer);
            let started = Instant::now();
            let result = catch_panic(async {
                let admitted = self
                    .admit(method, target, headers, Some(body.len()), &mut observed)
                    .await?;
                self.finish(admitted, body, &mut observed).await
            })
            .await;
            self.settle(result, &mut observed, started, body).await
        };
        in_span(&call_span(), std::pin::pin!(call)).await
    }

    /// The answer to a call's result, after counting a failed
    /// authentication against its client.
    pub(crate) async fn settle(
        &self,
        result: Result<Success, WebhookError>,
        observed: &mut Observed,
        started: Instant,
        body: &[u8],
    ) -> HttpReply {
        if matches!(&result, Err(error) if error.status() == 401) {
            self.note_failed_auth(observed.peer).await;
        }
        self.reply(result, observed, started, body)
    }

    /// The part of a call that needs no body: method, target, size, headers,
    /// and the token on the request. `body_len` is the body's size where it
    /// is known.
    pub(crate) async fn admit<K, V>(
        &self,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body_len: Option<usize>,
        observed: &mut Observed,
    ) -> Result<Admitted, WebhookError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let method = Method::parse(method)?;
        if method == Method::Options {
            return Ok(Admitted {
                method,
                process: ProcessUuid::from(uuid::Uuid::nil()),
                head: RequestHead::default(),
                environment: None,
                source: None,
            });
        }
        let parsed = parse_target(target)?;
        let process = parsed.process;
        observed.process = Some(process);
        if let Some(len) = body_len {
            check_body_size(len, self.settings.body_limit)?;
        }
        if let Some(source) = parsed.source {
            // The scheme needs headers the head does not keep: they are
            // collected (only for a source's call).
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .map(|(n, v)| {
                    (
                        n.as_ref().trim_ascii().to_ascii_lowercase(),
                        v.as_ref().to_owned(),
                    )
                })
                .collect();
            let head = RequestHead::parse_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
            check_head(method, &head)?;
            let id = SourceId::new(&source).map_err(|_| WebhookError::UnknownSource)?;
            let source = Box::pin(self.admit_source(process, &id, observed)).await?;
            if self.logs_deliveries() {
                // Every credential, and the source's own signature header
                // whatever its name.
                let signature = match source.scheme() {
                    crate::source::SourceScheme::Hmac(hmac) => Some(hmac.header()),
                    _ => None,
                };
                let kept = headers
                    .iter()
                    .filter(|(n, _)| signature.is_none_or(|s| !n.eq_ignore_ascii_case(s)))
                    .map(|(n, v)| (n.as_str(), v.as_str()));
                observed.captured = Some(Box::new(Captured {
                    headers: LoggedHeaders::from_pairs(kept),
                    ..Captured::default()
                }));
            }
            return Ok(Admitted {
                method,
                process,
                head,
                environment: Some(source.environment().clone()),
                source: Some(Box::new(SourceAdmitted {
                    source,
                    headers,
                    target: path_and_query(target).to_owned(),
                })),
            });
        }
        let mut head = if self.logs_deliveries() {
            // The log keeps the headers: read once, kept less credentials.
            let headers: Vec<(K, V)> = headers.into_iter().collect();
            observed.captured = Some(Box::new(Captured {
                headers: LoggedHeaders::from_pairs(headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))),
                ..Captured::default()
            }));
            RequestHead::parse_headers(headers)?
        } else {
            RequestHead::parse_headers(headers)?
        };
        check_head(method, &head)?;
        if head.openapi.is_some() {
            // The document names the webhook's path.
            let path = path_and_query(target);
            head.openapi = Some(path[..path.find('?').unwrap_or(path.len())].into());
        }
        self.check_client(observed).await?;
        let environment = if head.token.is_none() && method == Method::Post && self.settings.envelopes {
            None
        } else {
            let environment = identify(self, head.token.as_ref()).await?;
            self.limit(&environment, observed).await?;
            Some(environment)
        };
        Ok(Admitted {
            method,
            process,
            head,
            environment,
            source: None,
        })
    }

    /// The rest of a call, once its body is read: step 4 (the signature,
    /// then the body parsed), and steps 5 to 8 through the pipeline's
    /// [`run`].
    ///
    /// What only some calls do (a `GET`'s schema, a token read from an
    /// envelope body, a wait) runs in boxed futures of its own, so that the
    /// future of every `POST` holds no room for them.
    pub(crate) async fn finish(
        &self,
        admitted: Admitted,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        let Admitted {
            method,
            process,
            head,
            environment,
            source,
        } = admitted;
        match (method, source, environment) {
            (Method::Options, ..) => Ok(Success::Options),
            // Not boxed: a boxed future of a kilobyte, the source and the raw
            // parts among its arguments, made glibc's allocator consolidate
            // its free lists on every call (a third of a start of a 7 KB push).
            (_, Some(source), _) => {
                self.finish_delivery(method, process, head, *source, body, observed)
                    .await
            }
            // `admit` looked the token up for every GET and HEAD.
            (Method::Get | Method::Head, None, environment) => {
                let environment = environment.ok_or(WebhookError::MissingToken)?;
                Box::pin(self.finish_schema(method, process, &head, environment, body, observed)).await
            }
            (Method::Post, None, Some(environment)) => {
                // The signature is checked over the raw body, before it is parsed.
                self.verify_body(&environment, head.signature.as_ref(), body)?;
                observed.authenticated = true;
                let payload = self.parse_body(&head, body)?;
                self.finish_post(process, head, environment, payload, false, observed)
                    .await
            }
            (Method::Post, None, None) => {
                let (head, environment, payload) =
                    Box::pin(self.open_token_envelope(head, body, observed)).await?;
                self.finish_post(process, head, environment, payload, true, observed)
                    .await
            }
        }
    }

    /// Steps 5 to 8 of an authenticated `POST` with a token: an envelope
    /// body is opened once the deployment says its bodies may be envelopes.
    async fn finish_post(
        &self,
        process: ProcessUuid,
        mut head: RequestHead,
        environment: Environment,
        payload: Map<String, Value>,
        from_envelope: bool,
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        if let Some(key) = head.idempotency_key.as_ref().or(head.signature_key.as_ref()) {
            note_delivery(observed, key);
        }
        let envelopes = self.settings.envelopes;
        let mut wait = None;
        let read = |deployment: &Deployment| {
            let envelopes_here = envelopes && !names_envelope_fields(deployment);
            if from_envelope && !envelopes_here {
                // The deployment takes its bodies as plain payloads: the
                // token read from the body does not count.
                return Err(WebhookError::MissingToken);
            }
            let mut payload = payload;
            if !from_envelope && envelopes_here && !head.form && is_envelope(&payload) {
                let (inner, inner_payload) = open_envelope(payload)?;
                head.merge_envelope(inner)?;
                payload = inner_payload;
            }
            wait = head.wait;
            Ok(head.call(process, payload))
        };
        let done = run(self, process, &environment, observed, read).await;
        self.answer(done, wait, observed).await
    }

    /// The answer to a `POST`'s end: the outcome (after the wait it may ask
    /// for), or the dry run.
    pub(crate) async fn answer(
        &self,
        done: Result<Done, WebhookError>,
        wait: Option<u32>,
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        match done? {
            Done::Started(outcome) => match wait {
                Some(seconds) => Ok(Box::pin(self.wait_for(outcome, seconds, observed)).await),
                None => Ok(Success::Started(outcome)),
            },
            // A kept start has no instance to wait for yet.
            Done::Queued(queued) => Ok(Success::Queued(queued)),
            Done::DryRun(dry_run) => Ok(Success::DryRun(dry_run)),
            // A `POST` is a start or a dry run.
            Done::Described(_) => Err(WebhookError::Internal),
        }
    }

    /// A call's body as start fields: a form, or JSON.
    pub(crate) fn parse_body(
        &self,
        head: &RequestHead,
        body: &[u8],
    ) -> Result<Map<String, Value>, WebhookError> {
        parse_body(
            head,
            body,
            self.settings.max_json_values,
            self.settings.body_limit,
        )
    }

    /// The signature `environment` may require, over the raw `body`.
    pub(crate) fn verify_body(
        &self,
        environment: &Environment,
        signature: Option<&SignatureHeaders>,
        body: &[u8],
    ) -> Result<(), WebhookError> {
        verify_signed(
            environment,
            signature.map(|s| (s, body)),
            self.settings.signature_tolerance,
        )
    }

    /// A `GET` or `HEAD`: the schema of the payload (or the OpenAPI
    /// document), once the signature over the (empty) body holds.
    async fn finish_schema(
        &self,
        method: Method,
        process: ProcessUuid,
        head: &RequestHead,
        environment: Environment,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        self.verify_body(&environment, head.signature.as_ref(), body)?;
        let Some(path) = &head.openapi else {
            return self.schema_answer(method, process, &environment, observed).await;
        };
        let call = Call::describing(process, Mode::Document);
        let Done::Described(deployment) = run(self, process, &environment, observed, |_| Ok(call)).await?
        else {
            return Err(WebhookError::Internal);
        };
        let document = self.document_of(&deployment, &environment, path);
        Ok(Success::OpenApi(document, method == Method::Head))
    }

    /// The answer to an authenticated `GET` or `HEAD`: the payload's schema.
    pub(crate) async fn schema_answer(
        &self,
        method: Method,
        process: ProcessUuid,
        environment: &Environment,
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        let call = Call::describing(process, Mode::Schema);
        let Done::Described(deployment) = run(self, process, environment, observed, |_| Ok(call)).await?
        else {
            return Err(WebhookError::Internal);
        };
        let schema = deployment.start_form().json_schema();
        Ok(if method == Method::Head {
            Success::SchemaHead(schema)
        } else {
            Success::Schema(schema)
        })
    }

    /// A `POST` without a token on the request: only an envelope body can
    /// carry one. Its environment (looked up, limited, and its signature
    /// checked against the request's own signature headers), the head with
    /// the envelope's headers merged in, and the envelope's payload.
    async fn open_token_envelope(
        &self,
        mut head: RequestHead,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<(RequestHead, Environment, Map<String, Value>), WebhookError> {
        let payload = match parse_payload(body, self.settings.max_json_values) {
            Ok(payload) if is_envelope(&payload) => payload,
            _ => return Err(WebhookError::MissingToken),
        };
        // Signature headers inside an envelope do not count: the request's
        // own are kept aside before the envelope's are merged.
        let signature = head.signature.clone();
        let (inner, payload) = open_envelope(payload)?;
        head.merge_envelope(inner)?;
        let signed = signature.as_ref().map(|s| (s, body));
        let environment = authenticate(self, head.token.as_ref(), signed, observed).await?;
        observed.authenticated = true;
        Ok((head, environment, payload))
    }
}

/// What a call's head alone decides: its trace id recorded, and a `POST`
/// of a media type other than JSON or a form refused.
fn check_head(method: Method, head: &RequestHead) -> Result<(), WebhookError> {
    if let Some(trace) = &head.trace {
        tracing::Span::current().record("trace_id", trace.trace_id());
    }
    if method == Method::Post && head.not_json {
        return Err(WebhookError::UnsupportedMediaType);
    }
    Ok(())
}

/// The path and query of a target given as a full URL (`https://host/p?q`
/// is `/p?q`); a path with query as it is.
fn path_and_query(target: &str) -> &str {
    let Some(at) = target.find("://") else {
        return target;
    };
    let rest = &target[at + 3..];
    match rest.find(['/', '?']) {
        Some(start) => &rest[start..],
        None => "/",
    }
}

/// Whether a deployment's start form names a field `headers` or `payload`:
/// its bodies are then never read as envelopes.
pub(super) fn names_envelope_fields(deployment: &Deployment) -> bool {
    deployment
        .start_form()
        .fields()
        .iter()
        .any(|f| matches!(f.name(), "headers" | "payload"))
}
