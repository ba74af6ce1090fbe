//! A webhook source's delivery over HTTP: the source the URL names
//! (identified and limited before the body is read), its scheme's check
//! over the raw body, what the delivery asks for (a start, a ping, a
//! challenge, an ignored event), and its start through the pipeline.

use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::http::answer::Success;
use crate::http::exchange::Method;
use crate::http::{RequestHead, parse_payload};
use crate::id::ProcessUuid;
use crate::idempotency::CallerKey;
use crate::model::{Deployment, Environment};
use crate::observe::Observed;
use crate::source::{Reaction, SourceCall, SourceId, WebhookSource};
use crate::start::{Call, Mode, run};
use crate::starter::WebhookStarter;

/// What a call of a webhook source keeps for its check: the source, the
/// headers (names in lower case) and the target's path and query.
#[derive(Debug)]
pub(crate) struct SourceAdmitted {
    pub(crate) source: WebhookSource,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) target: String,
}

/// What a source's delivery asks for, once checked.
enum Delivered {
    Answer(Success),
    Schema(Environment),
    Start {
        environment: Environment,
        payload: Map<String, Value>,
        /// Whether the payload's values are a form's text.
        form: bool,
        delivery: Option<String>,
        mapped: Option<Mapped>,
    },
}

/// What a source's mapping made of a delivery (nothing, without the
/// `mapping` feature).
#[cfg(feature = "mapping")]
use crate::source::mapping::Mapped;
#[cfg(not(feature = "mapping"))]
type Mapped = std::convert::Infallible;

impl WebhookStarter {
    /// The source a call names: it must exist and start the call's
    /// process, else `404 unknown_source`; its environment is limited as a
    /// token's would be.
    pub(crate) async fn admit_source(
        &self,
        process: ProcessUuid,
        id: &SourceId,
        observed: &mut Observed,
    ) -> Result<WebhookSource, WebhookError> {
        self.check_client(observed).await?;
        let sources = self
            .settings
            .sources
            .as_ref()
            .ok_or(WebhookError::UnknownSource)?;
        let source = sources
            .source(id)
            .await?
            .filter(|source| *source.process() == process)
            .ok_or(WebhookError::UnknownSource)?;
        observed.environment = Some(source.environment().id().clone());
        observed.source = Some(id.clone());
        observed.scheme = Some(source.scheme().name());
        self.limit_environment(source.environment(), observed).await?;
        Ok(source)
    }

    /// A source's delivery, once the body is read: the scheme's check, then
    /// an answer of its own (a ping, a challenge, an ignored event), a
    /// schema, or steps 5 to 8 with the delivery id as the key.
    pub(crate) async fn finish_delivery(
        &self,
        method: Method,
        process: ProcessUuid,
        head: RequestHead,
        source: SourceAdmitted,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Success, WebhookError> {
        let (environment, payload, form, delivery, mapped) =
            match self.check_delivery(method, &head, source, body, observed)? {
                Delivered::Answer(success) => return Ok(success),
                Delivered::Schema(environment) => {
                    return Box::pin(self.schema_answer(method, process, &environment, observed)).await;
                }
                Delivered::Start {
                    environment,
                    payload,
                    form,
                    delivery,
                    mapped,
                } => (environment, payload, form, delivery, mapped),
            };
        // The source authenticated the call: no token or Standard Webhooks
        // headers of the request count. The delivery id is the key, where
        // the call sent none.
        let key = match head.idempotency_key {
            Some(key) => Some(key),
            None => delivery.map(CallerKey::new).transpose()?,
        };
        if let Some(key) = &key {
            note_delivery(observed, key);
        }
        let wait = head.wait;
        let source_id = observed.source.clone();
        let read = |_deployment: &Deployment| {
            #[cfg_attr(not(feature = "mapping"), allow(unused_mut))]
            let mut payload = payload;
            #[cfg(feature = "mapping")]
            if let Some(mapped) = &mapped {
                mapped.read_text(_deployment.start_form(), &mut payload);
            }
            Ok(Call {
                process,
                payload,
                // The mapping's text fields are read above, by name.
                form: form && mapped.is_none(),
                key,
                trace: head.trace.map(Box::new),
                mode: if head.dry_run { Mode::DryRun } else { Mode::Accept },
                source: source_id,
            })
        };
        let done = run(self, process, &environment, observed, read).await;
        let done = match &mapped {
            #[cfg(feature = "mapping")]
            Some(mapped) => done.map_err(|e| mapped.annotate(e)),
            _ => done,
        };
        self.answer(done, wait, observed).await
    }

    /// The scheme's check of a source's call over the raw body, then what
    /// the delivery says: an answer (the sender's own check, an event the
    /// source does not list), a schema to answer, or the start fields and
    /// the delivery id.
    fn check_delivery(
        &self,
        method: Method,
        head: &RequestHead,
        admitted: SourceAdmitted,
        body: &[u8],
        observed: &mut Observed,
    ) -> Result<Delivered, WebhookError> {
        let SourceAdmitted {
            source,
            headers,
            target,
        } = admitted;
        let call = SourceCall {
            headers: &headers,
            body,
            target: &target,
        };
        source.verify(&call, SystemTime::now(), self.settings.signature_tolerance)?;
        observed.authenticated = true;
        if method != Method::Post {
            return Ok(Delivered::Schema(source.environment().clone()));
        }
        let mut payload = self.parse_body(head, body)?;
        let mut form = head.form;
        if form && source.scheme().posts_json_in_form() {
            // `payload=<the JSON delivery>`: read as the JSON body it holds
            // (the signature was checked over the raw form bytes).
            if let Some(json) = json_in_form(&payload) {
                payload = parse_payload(json.as_bytes(), self.settings.max_json_values)?;
                form = false;
            }
        }
        let delivery = source.delivery(&call, &payload);
        if let Some(captured) = observed.captured.as_mut() {
            captured.event.clone_from(&delivery.event);
        }
        match delivery.reaction {
            Reaction::Challenge(challenge) => return Ok(Delivered::Answer(Success::Challenge(challenge))),
            Reaction::Ping => return Ok(Delivered::Answer(Success::Ignored(delivery.event))),
            Reaction::Start if !source.starts_on(delivery.event.as_deref()) => {
                return Ok(Delivered::Answer(Success::Ignored(delivery.event)));
            }
            Reaction::Start => {}
        }
        let environment = source.environment().clone();
        #[cfg(feature = "mapping")]
        if let Some(rules) = source.into_rules() {
            use crate::source::mapping::Ruled;
            return Ok(match rules.apply(&call, payload, form)? {
                Ruled::Ignored => Delivered::Answer(Success::Ignored(delivery.event)),
                Ruled::Start {
                    payload,
                    delivery: from_payload,
                    mapped,
                } => Delivered::Start {
                    environment,
                    payload,
                    form,
                    delivery: from_payload.or(delivery.id),
                    mapped,
                },
            });
        }
        Ok(Delivered::Start {
            environment,
            payload,
            form,
            delivery: delivery.id,
            mapped: None,
        })
    }
}

/// The JSON a form of one field `payload` holds, as GitHub and Slack post
/// it: `None` for any other form.
fn json_in_form(form: &Map<String, Value>) -> Option<&str> {
    match form.get("payload") {
        Some(Value::String(json)) if form.len() == 1 => Some(json),
        _ => None,
    }
}

/// Records the delivery id or key of a call for its log event, where the
/// event is enabled (a copy of the key otherwise costs every call).
pub(crate) fn note_delivery(observed: &mut Observed, key: &CallerKey) {
    if let Some(captured) = observed.captured.as_mut() {
        captured.key = Some(key.as_str().to_owned());
    }
    if tracing::enabled!(target: "process_webhook", tracing::Level::INFO) {
        observed.delivery = Some(key.as_str().into());
    }
}
