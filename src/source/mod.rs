//! Webhook sources: one sender (GitHub, Stripe, Slack, Shopify, Twilio,
//! GitLab, any Standard Webhooks or HMAC sender, or one that can only send
//! Basic credentials) connected to one process in one environment, and
//! authenticated by the sender's own scheme instead of an environment
//! token.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::id::ProcessUuid;
use crate::model::Environment;

pub(crate) mod call;
mod id;
#[cfg(feature = "mapping")]
pub(crate) mod mapping;
#[cfg(feature = "mapping")]
mod query;
mod scheme;
mod secret;
mod senders;

pub use id::{InvalidSourceId, MAX_SOURCE_ID_LEN, SourceId};
#[cfg(feature = "mapping")]
pub use mapping::{Condition, PayloadMapping};
#[cfg(feature = "mapping")]
pub use query::{InvalidQuery, JsonQuery};
pub use scheme::{HmacAlgorithm, HmacEncoding, HmacScheme, InvalidScheme, PublicOrigin, SourceScheme};
pub use secret::{EmptySourceSecret, SourceSecret};

pub(crate) use call::{Delivery, Reaction, SourceCall};

/// One sender connected to one process in one environment: its
/// [`SourceId`] (in the URL, `…/webhook/send?uid={process}&source={id}`),
/// the [`Environment`] it starts in, the process, the sender's
/// [`SourceScheme`], its secrets (several at once while a secret is
/// rotated; any of them verifies) and, optionally, the events that start
/// the process.
///
/// A call with `source=` is authenticated by its source instead of an
/// environment token; every other rule applies unchanged. Its `Debug`
/// shows no secret.
///
/// # Example
///
/// ```
/// use process_webhook::*;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
/// let source = WebhookSource::new(
///     "github-orders".parse()?,
///     production,
///     uuid,
///     SourceScheme::Github,
///     [SourceSecret::new("It's a Secret to Everybody")?],
/// )?
/// .with_events(["push", "release"])?;
/// assert!(source.starts_on(Some("push")) && !source.starts_on(Some("issues")));
/// assert!(!format!("{source:?}").contains("Secret to Everybody"));
/// assert_eq!(
///     source_webhook_url("https://hooks.example.com/webhook/send", &uuid, source.id()),
///     "https://hooks.example.com/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555&source=github-orders"
/// );
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSource {
    id: SourceId,
    environment: Environment,
    process: ProcessUuid,
    scheme: SourceScheme,
    secrets: Vec<SourceSecret>,
    events: Option<Vec<String>>,
    #[cfg(feature = "mapping")]
    rules: mapping::Rules,
}

impl WebhookSource {
    /// A source of `process` in `environment`, whose sender signs with any
    /// of `secrets` in `scheme`. Every event starts the process.
    ///
    /// # Errors
    ///
    /// [`InvalidSource::NoSecret`] without a secret;
    /// [`InvalidSource::StandardWebhooksSecret`] for a `standard-webhooks`
    /// secret that is not `whsec_` and base64.
    pub fn new(
        id: SourceId,
        environment: Environment,
        process: ProcessUuid,
        scheme: SourceScheme,
        secrets: impl IntoIterator<Item = SourceSecret>,
    ) -> Result<Self, InvalidSource> {
        let secrets: Vec<SourceSecret> = secrets.into_iter().collect();
        if secrets.is_empty() {
            return Err(InvalidSource::NoSecret);
        }
        if scheme == SourceScheme::StandardWebhooks {
            let standard = |s: &SourceSecret| {
                std::str::from_utf8(s.expose_secret())
                    .ok()
                    .and_then(|s| s.parse::<crate::SigningSecret>().ok())
                    .is_some()
            };
            if !secrets.iter().all(standard) {
                return Err(InvalidSource::StandardWebhooksSecret);
            }
        }
        Ok(Self {
            id,
            environment,
            process,
            scheme,
            secrets,
            events: None,
            #[cfg(feature = "mapping")]
            rules: mapping::Rules::default(),
        })
    }

    /// Limits the process's starts to deliveries of these `events`
    /// (GitHub's `X-GitHub-Event`, Stripe's `type`, …, as the sender names
    /// them); a delivery of another event is answered `200` with
    /// `{"status":"ignored","event":"…"}` and starts nothing.
    ///
    /// # Errors
    ///
    /// [`InvalidSource::NoEvents`] when the scheme's senders name no events
    /// ([`SourceScheme::has_events`]) or `events` is empty.
    pub fn with_events<S: Into<String>>(
        mut self,
        events: impl IntoIterator<Item = S>,
    ) -> Result<Self, InvalidSource> {
        let events: Vec<String> = events.into_iter().map(Into::into).collect();
        if events.is_empty() || !self.scheme.has_events() {
            return Err(InvalidSource::NoEvents {
                scheme: self.scheme.name(),
            });
        }
        self.events = Some(events);
        Ok(self)
    }

    /// Maps the sender's payload into the start form's fields (see
    /// [`PayloadMapping`]): the variables are then exactly the mapped
    /// fields, the form's defaults and the body variable.
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn with_mapping(mut self, mapping: PayloadMapping) -> Self {
        self.rules.mapping = Some(mapping);
        self
    }

    /// Starts the process only for deliveries that meet every one of
    /// `conditions`; another is answered `200` with
    /// `{"status":"ignored"}`, nothing reserved, nothing started (as an
    /// event the source does not list).
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn with_conditions(mut self, conditions: impl IntoIterator<Item = Condition>) -> Self {
        self.rules.conditions = conditions.into_iter().collect();
        self
    }

    /// Reads the delivery id from the value `query` selects (a string, or
    /// a number as written), for senders without a delivery header: it is
    /// the idempotency key, as a scheme's delivery id is, unless the call
    /// sends `Idempotency-Key`. When it selects nothing (or `null`), the
    /// scheme's delivery id, if any, stays; another value is
    /// `400 invalid_idempotency_key`.
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn with_delivery_query(mut self, query: JsonQuery) -> Self {
        self.rules.delivery = Some(query);
        self
    }

    /// The mapping of the sender's payload, if any.
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn mapping(&self) -> Option<&PayloadMapping> {
        self.rules.mapping.as_ref()
    }

    /// The conditions a delivery must meet to start.
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn conditions(&self) -> &[Condition] {
        &self.rules.conditions
    }

    /// The query that reads the delivery id, if any.
    #[cfg(feature = "mapping")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mapping")))]
    pub fn delivery_query(&self) -> Option<&JsonQuery> {
        self.rules.delivery.as_ref()
    }

    /// The source's id.
    pub fn id(&self) -> &SourceId {
        &self.id
    }

    /// The environment it starts in.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    /// The process it starts.
    pub fn process(&self) -> &ProcessUuid {
        &self.process
    }

    /// The sender's scheme.
    pub fn scheme(&self) -> &SourceScheme {
        &self.scheme
    }

    /// Its secrets, the newest first by convention.
    pub fn secrets(&self) -> &[SourceSecret] {
        &self.secrets
    }

    /// The events that start the process; `None`: every delivery does.
    pub fn events(&self) -> Option<&[String]> {
        self.events.as_deref()
    }

    /// Whether a delivery of `event` starts the process: always without an
    /// event list; with one, only a listed event.
    pub fn starts_on(&self, event: Option<&str>) -> bool {
        match (&self.events, event) {
            (None, _) => true,
            (Some(events), Some(event)) => events.iter().any(|e| e == event),
            (Some(_), None) => false,
        }
    }

    /// Its rules, as a store keeps them (`None`: none).
    #[cfg(all(feature = "mapping", any(feature = "postgres", feature = "sqlite")))]
    pub(crate) fn rules(&self) -> Option<&mapping::Rules> {
        (!self.rules.is_empty()).then_some(&self.rules)
    }

    /// The source with `rules`, as a store read them.
    #[cfg(all(feature = "mapping", any(feature = "postgres", feature = "sqlite")))]
    pub(crate) fn with_rules(mut self, rules: mapping::Rules) -> Self {
        self.rules = rules;
        self
    }

    /// The rules it runs over a delivery's document, taken out of it.
    #[cfg(feature = "mapping")]
    pub(crate) fn into_rules(self) -> Option<mapping::Rules> {
        (!self.rules.is_empty()).then_some(self.rules)
    }

    /// Checks a delivery's signature (or credentials) over its raw body.
    pub(crate) fn verify(
        &self,
        call: &SourceCall<'_>,
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), WebhookError> {
        let keys = call::Keys {
            secrets: &self.secrets,
            now,
            tolerance,
        };
        match &self.scheme {
            SourceScheme::Github => senders::github::verify(call, &keys),
            SourceScheme::Stripe => senders::stripe::verify(call, &keys),
            SourceScheme::Slack => senders::slack::verify(call, &keys),
            SourceScheme::Shopify => senders::shopify::verify(call, &keys),
            SourceScheme::Twilio(origin) => senders::twilio::verify(origin, call, &keys),
            SourceScheme::Gitlab => senders::gitlab::verify(call, &keys),
            SourceScheme::StandardWebhooks => senders::standard::verify(call, &keys),
            SourceScheme::Hmac(scheme) => senders::hmac::verify(scheme, call, &keys),
            SourceScheme::Basic(user) => senders::basic::verify(user, call, &keys),
        }
    }

    /// What a verified delivery says: its id, its event, and whether it is
    /// the sender's own check of the endpoint.
    pub(crate) fn delivery(&self, call: &SourceCall<'_>, payload: &Map<String, Value>) -> Delivery {
        match &self.scheme {
            SourceScheme::Github => senders::github::delivery(call),
            SourceScheme::Stripe => senders::stripe::delivery(payload),
            SourceScheme::Slack => senders::slack::delivery(payload),
            SourceScheme::Shopify => senders::shopify::delivery(call),
            SourceScheme::Twilio(_) => senders::twilio::delivery(call),
            SourceScheme::Gitlab => senders::gitlab::delivery(call),
            SourceScheme::StandardWebhooks => senders::standard::delivery(call),
            SourceScheme::Hmac(scheme) => senders::hmac::delivery(scheme, call),
            SourceScheme::Basic(_) => Delivery::default(),
        }
    }
}

impl fmt::Debug for WebhookSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("WebhookSource");
        f.field("id", &self.id)
            .field("environment", &self.environment)
            .field("process", &self.process)
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .field("events", &self.events);
        #[cfg(feature = "mapping")]
        f.field("mapping", &self.rules.mapping)
            .field("conditions", &self.rules.conditions)
            .field("delivery_query", &self.rules.delivery);
        f.finish()
    }
}

/// A [`WebhookSource`] cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidSource {
    /// A source needs at least one secret.
    #[error("a source needs at least one secret")]
    NoSecret,
    /// A `standard-webhooks` secret must be `whsec_` and base64.
    #[error("a standard-webhooks secret must be `whsec_` followed by base64")]
    StandardWebhooksSecret,
    /// The scheme's senders name no events, or the list is empty.
    #[error("a `{scheme}` source cannot list events: its sender names none, or the list is empty")]
    NoEvents {
        /// The scheme's name.
        scheme: &'static str,
    },
    /// A mapping names a field twice (or a mapped field is its body
    /// variable too).
    #[error("the mapping names field `{field}` twice")]
    DuplicateField {
        /// The field.
        field: String,
    },
    /// A condition lists no value to equal.
    #[error("the condition on `{query}` lists no value: no delivery could meet it")]
    NoValues {
        /// The condition's query.
        query: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{EnvironmentId, OrganizationId};

    fn source(scheme: SourceScheme, secret: &str) -> Result<WebhookSource, InvalidSource> {
        WebhookSource::new(
            SourceId::new("s").unwrap(),
            Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme")),
            uuid::Uuid::nil().into(),
            scheme,
            [SourceSecret::new(secret).unwrap()],
        )
    }

    #[test]
    fn events_are_listed_only_for_senders_that_name_them_and_never_as_an_empty_list() {
        let github = source(SourceScheme::Github, "x").unwrap();
        let none: [&str; 0] = [];
        assert_eq!(
            github.clone().with_events(none),
            Err(InvalidSource::NoEvents { scheme: "github" })
        );
        assert!(github.with_events(["push"]).is_ok());
        let basic = source(SourceScheme::basic("u"), "x").unwrap();
        assert_eq!(
            basic.with_events(["push"]),
            Err(InvalidSource::NoEvents { scheme: "basic" })
        );
    }

    #[test]
    fn a_source_needs_a_secret_and_a_standard_webhooks_one_must_be_whsec() {
        let no_secret = WebhookSource::new(
            SourceId::new("s").unwrap(),
            Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme")),
            uuid::Uuid::nil().into(),
            SourceScheme::Github,
            [],
        );
        assert_eq!(no_secret, Err(InvalidSource::NoSecret));
        assert_eq!(
            source(SourceScheme::StandardWebhooks, "not-whsec"),
            Err(InvalidSource::StandardWebhooksSecret)
        );
        assert!(source(SourceScheme::StandardWebhooks, "whsec_c2VjcmV0").is_ok());
        // Any scheme but standard-webhooks takes any secret.
        assert!(source(SourceScheme::Stripe, "not-whsec").is_ok());
    }

    #[test]
    fn debug_names_the_source_and_counts_its_secrets_without_showing_them() {
        let source = source(SourceScheme::Github, "It's a Secret to Everybody").unwrap();
        let debug = format!("{source:?}");
        assert!(
            debug.starts_with("WebhookSource { id: SourceId(s), environment: "),
            "{debug}"
        );
        assert!(
            debug.contains("scheme: Github, secrets: 1, events: None"),
            "{debug}"
        );
        assert!(!debug.contains("Secret to"), "{debug}");
    }

    #[test]
    fn without_an_event_list_every_delivery_starts_and_with_one_only_a_listed_event() {
        let github = source(SourceScheme::Github, "x").unwrap();
        assert!(github.starts_on(None) && github.starts_on(Some("issues")));
        let push = github.with_events(["push"]).unwrap();
        assert!(push.starts_on(Some("push")));
        assert!(!push.starts_on(Some("issues")) && !push.starts_on(None));
        assert_eq!(push.events(), Some(&["push".to_owned()][..]));
    }
}
