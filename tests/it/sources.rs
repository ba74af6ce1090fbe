//! Webhook sources: GitHub, Stripe, Slack, Shopify, Twilio, GitLab, Standard
//! Webhooks, a generic HMAC and Basic credentials start a process, each
//! delivery signed by the sender's own library (npm `@octokit/webhooks-methods`,
//! `stripe`, `twilio`, `standardwebhooks`; PyPI `slack_sdk`) or, for the
//! senders without one, by their documented recipe; never by this crate.
//!
//! The libraries are in `tests/senders` (`SENDER_LIBRARIES`, which
//! `scripts/test` installs and sets), Slack's in the Python of
//! `SLACK_PYTHON`.

use crate::common;

use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::senders::Senders;
use common::*;
use process_webhook::*;
use serde_json::{Value, json};

pub(crate) const ORDERS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const REFUNDS: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

pub(crate) fn json_of(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap_or(Value::Null)
}

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A host serving sources of the order process (and of a refund process).
pub(crate) struct Host {
    pub(crate) starter: WebhookStarter,
    pub(crate) engine: Arc<InMemoryEngine>,
    pub(crate) sources: Arc<InMemorySourceStore>,
    pub(crate) production: Environment,
}

impl Host {
    pub(crate) fn new(form: StartForm) -> Self {
        let acme = OrganizationId::new("acme");
        let production = Environment::new(EnvironmentId::new("production"), acme.clone());
        let models = Arc::new(InMemoryModelStore::new());
        for (process, name) in [(ORDERS, "Order intake"), (REFUNDS, "Refund")] {
            models.insert_model(ProcessModel::new(uuid(process), acme.clone(), name));
            models.deploy(Deployment::new(
                uuid(process),
                VersionTag::Released(3),
                production.id().clone(),
                form.clone(),
            ));
        }
        let engine = Arc::new(InMemoryEngine::new());
        let sources = Arc::new(InMemorySourceStore::new());
        let starter = WebhookStarter::new(models, Arc::new(InMemoryTokenStore::new()), engine.clone())
            .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()))
            .with_sources(sources.clone());
        Self {
            starter,
            engine,
            sources,
            production,
        }
    }

    pub(crate) fn add(&self, id: &str, scheme: SourceScheme, secrets: &[&str]) -> WebhookSource {
        let source = WebhookSource::new(
            id.parse().unwrap(),
            self.production.clone(),
            uuid(ORDERS),
            scheme,
            secrets.iter().map(|s| SourceSecret::new(s).unwrap()),
        )
        .unwrap();
        self.sources.put_source(source.clone());
        source
    }

    pub(crate) async fn post(&self, source: &str, headers: &[(String, String)], body: &str) -> HttpReply {
        self.post_to(ORDERS, source, headers, body).await
    }

    pub(crate) async fn post_to(
        &self,
        process: &str,
        source: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> HttpReply {
        let target = format!("/webhook/send?uid={process}&source={source}");
        let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        self.starter.handle(&target, headers, body.as_bytes()).await
    }

    pub(crate) fn started(&self) -> usize {
        self.engine.started().len()
    }
}

/// One sender: how its deliveries are signed, and what else they carry.
struct Sender {
    name: &'static str,
    scheme: SourceScheme,
    /// A delivery's body, given its delivery id.
    body: fn(&str) -> String,
    /// Headers the sender sends besides the signature (content type,
    /// delivery id, event), given the delivery id.
    extra: fn(&str) -> Vec<(String, String)>,
    /// Whether the sender signs a timestamp.
    timestamped: bool,
    /// Whether deliveries carry an id (and so are started exactly once).
    delivered_once: bool,
}

pub(crate) fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

impl Sender {
    /// The signature headers of `body`, signed with `secret` at `timestamp`
    /// by the sender's library.
    fn sign(
        &self,
        senders: &Senders,
        secret: &str,
        body: &str,
        timestamp: i64,
        delivery: &str,
    ) -> Vec<(String, String)> {
        let target = format!("/webhook/send?uid={ORDERS}&source={}", self.name);
        match self.name {
            "slack" => senders.slack(secret, timestamp, body),
            "twilio" => {
                let params: serde_json::Map<String, Value> = form_urlencoded::parse(body.as_bytes())
                    .map(|(n, v)| (n.into_owned(), Value::String(v.into_owned())))
                    .collect();
                senders.sign(json!({
                    "scheme": "twilio", "secret": secret,
                    "url": format!("https://hooks.example.com{target}"), "params": params,
                }))
            }
            "hmac" => senders.sign(json!({
                "scheme": "hmac", "secret": secret, "body": body, "timestamp": timestamp,
                "algorithm": "sha512", "encoding": "base64", "header": "X-Acme-Signature", "prefix": "v1=",
            })),
            "basic" => {
                use base64::Engine as _;
                let credentials =
                    base64::engine::general_purpose::STANDARD.encode(format!("zapier:{secret}"));
                pairs(&[("Authorization", &format!("Basic {credentials}"))])
            }
            scheme => senders.sign(json!({
                "scheme": scheme, "secret": secret, "body": body, "timestamp": timestamp, "id": delivery,
            })),
        }
    }

    fn all() -> Vec<Sender> {
        vec![
            Sender {
                name: "github",
                scheme: SourceScheme::Github,
                body: |_| json!({"ref": "refs/heads/main", "after": "6113728f"}).to_string(),
                extra: |id| {
                    pairs(&[
                        ("Content-Type", "application/json"),
                        ("X-GitHub-Event", "push"),
                        ("X-GitHub-Delivery", id),
                    ])
                },
                timestamped: false,
                delivered_once: true,
            },
            Sender {
                name: "stripe",
                scheme: SourceScheme::Stripe,
                body: |id| {
                    json!({"id": id, "object": "event", "type": "checkout.session.completed"}).to_string()
                },
                extra: |_| pairs(&[("Content-Type", "application/json; charset=utf-8")]),
                timestamped: true,
                delivered_once: true,
            },
            Sender {
                name: "slack",
                scheme: SourceScheme::Slack,
                body: |id| {
                    json!({"type": "event_callback", "event_id": id, "event": {"type": "app_mention"}})
                        .to_string()
                },
                extra: |_| pairs(&[("Content-Type", "application/json")]),
                timestamped: true,
                delivered_once: true,
            },
            Sender {
                name: "shopify",
                scheme: SourceScheme::Shopify,
                body: |_| json!({"id": 820982911946154508_u64, "email": "jon@example.com"}).to_string(),
                extra: |id| {
                    pairs(&[
                        ("Content-Type", "application/json"),
                        ("X-Shopify-Topic", "orders/create"),
                        ("X-Shopify-Webhook-Id", id),
                    ])
                },
                timestamped: false,
                delivered_once: true,
            },
            Sender {
                name: "twilio",
                scheme: SourceScheme::twilio("https://hooks.example.com".parse().unwrap()),
                body: |_| "Body=Hello+there&From=%2B15005550006&NumMedia=2".to_owned(),
                extra: |id| {
                    pairs(&[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("I-Twilio-Idempotency-Token", id),
                    ])
                },
                timestamped: false,
                delivered_once: true,
            },
            Sender {
                name: "gitlab",
                scheme: SourceScheme::Gitlab,
                body: |_| json!({"object_kind": "push", "ref": "refs/heads/main"}).to_string(),
                extra: |id| {
                    pairs(&[
                        ("Content-Type", "application/json"),
                        ("X-Gitlab-Event", "Push Hook"),
                        ("X-Gitlab-Event-UUID", id),
                    ])
                },
                timestamped: false,
                delivered_once: true,
            },
            Sender {
                name: "standard-webhooks",
                scheme: SourceScheme::StandardWebhooks,
                body: |_| json!({"type": "invoice.paid"}).to_string(),
                extra: |_| pairs(&[("Content-Type", "application/json")]),
                timestamped: true,
                delivered_once: true,
            },
            Sender {
                name: "hmac",
                scheme: SourceScheme::hmac(
                    HmacScheme::new("X-Acme-Signature")
                        .unwrap()
                        .with_prefix("v1=")
                        .with_algorithm(HmacAlgorithm::Sha512)
                        .with_encoding(HmacEncoding::Base64)
                        .with_timestamp_header("X-Acme-Timestamp")
                        .unwrap()
                        .with_delivery_header("X-Acme-Delivery")
                        .unwrap(),
                ),
                body: |_| json!({"order": 42}).to_string(),
                extra: |id| pairs(&[("Content-Type", "application/json"), ("X-Acme-Delivery", id)]),
                timestamped: true,
                delivered_once: true,
            },
            Sender {
                name: "basic",
                scheme: SourceScheme::basic("zapier"),
                body: |_| json!({"order": 42}).to_string(),
                extra: |_| pairs(&[("Content-Type", "application/json")]),
                timestamped: false,
                delivered_once: false,
            },
        ]
    }

    /// The headers of a delivery: the extra ones, and the signature (with
    /// the timestamp header of the generic HMAC).
    fn delivery(
        &self,
        senders: &Senders,
        secret: &str,
        body: &str,
        timestamp: i64,
        id: &str,
    ) -> Vec<(String, String)> {
        let mut headers = (self.extra)(id);
        headers.extend(self.sign(senders, secret, body, timestamp, id));
        if self.name == "hmac" {
            headers.push(("X-Acme-Timestamp".to_owned(), timestamp.to_string()));
        }
        headers
    }

    /// A secret of the sender's own shape.
    fn secret(&self, n: u8) -> String {
        match self.name {
            // Standard Webhooks secrets are `whsec_` and base64.
            "standard-webhooks" => {
                use base64::Engine as _;
                format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode([n; 24])
                )
            }
            "stripe" => format!("whsec_stripe_test_secret_{n}"),
            name => format!("{name}-secret-{n}"),
        }
    }
}

/// A form that every sender's test delivery satisfies.
fn open_form() -> StartForm {
    StartForm::new([FieldSpec::optional("NumMedia", FieldKind::Integer)])
}

#[tokio::test]
async fn every_sender_s_signed_delivery_starts_the_process_once_and_a_bad_one_nothing() {
    let Some(senders) = Senders::find() else { return };
    for sender in Sender::all() {
        let host = Host::new(open_form());
        let name = sender.name;
        let (secret, other) = (sender.secret(1), sender.secret(2));
        host.add(name, sender.scheme.clone(), &[&secret]);
        let id = format!("delivery-{name}-1");
        let body = (sender.body)(&id);
        let headers = sender.delivery(&senders, &secret, &body, now(), &id);

        // A good delivery starts the process once.
        let reply = host.post(name, &headers, &body).await;
        assert_eq!(
            reply.status(),
            202,
            "{name}: {}",
            String::from_utf8_lossy(reply.body())
        );
        assert_eq!(host.started(), 1, "{name}");
        let started = &host.engine.started()[0].command;
        assert_eq!(started.process, uuid(ORDERS), "{name}");
        assert_eq!(started.environment, *host.production.id(), "{name}");

        // A redelivery replays the first answer and starts nothing.
        let again = host.post(name, &headers, &body).await;
        if sender.delivered_once {
            assert_eq!(again.status(), 202, "{name}");
            assert_eq!(again.header("idempotent-replayed"), Some("true"), "{name}");
            assert_eq!(
                json_of(&again)["instanceId"],
                json_of(&reply)["instanceId"],
                "{name}"
            );
            assert_eq!(host.started(), 1, "{name}: a redelivery started again");
        } else {
            assert_eq!(
                host.started(),
                2,
                "{name}: without a delivery id each call starts"
            );
        }
        let before = host.started();

        // A tampered body, another secret, no signature: refused.
        let tampered = body.replacen('e', "E", 1);
        assert_ne!(tampered, body, "{name}");
        // (GitLab and Basic send a secret, not a signature of the body.)
        if name != "gitlab" && name != "basic" {
            assert_reply(
                &host.post(name, &headers, &tampered).await,
                401,
                "invalid_signature",
            );
        }
        let forged = sender.delivery(&senders, &other, &body, now(), "delivery-forged");
        let refused = host.post(name, &forged, &body).await;
        assert_reply(&refused, 401, "invalid_signature");
        // The challenge is one the sender can answer: Basic credentials,
        // or none for a sender that signs (never a Bearer token).
        let challenge = if name == "basic" {
            Some("Basic realm=\"process-webhook\"")
        } else {
            None
        };
        assert_eq!(refused.header("www-authenticate"), challenge, "{name}");
        let unsigned = (sender.extra)("delivery-unsigned");
        assert_reply(&host.post(name, &unsigned, &body).await, 401, "missing_signature");

        // A timestamp signed more than 5 minutes ago is stale.
        if sender.timestamped {
            let old = sender.delivery(&senders, &secret, &body, now() - 400, "delivery-stale");
            assert_reply(&host.post(name, &old, &body).await, 401, "stale_timestamp");
        }
        assert_eq!(host.started(), before, "{name}: a refused delivery started");
    }
}

#[tokio::test]
async fn during_a_rotation_the_old_and_the_new_secret_both_verify() {
    let Some(senders) = Senders::find() else { return };
    for sender in Sender::all() {
        let host = Host::new(open_form());
        let name = sender.name;
        let (new, old) = (sender.secret(3), sender.secret(4));
        host.add(name, sender.scheme.clone(), &[&new, &old]);
        for (n, secret) in [&new, &old].into_iter().enumerate() {
            let id = format!("delivery-{name}-rotation-{n}");
            let body = (sender.body)(&id);
            let headers = sender.delivery(&senders, secret, &body, now(), &id);
            let reply = host.post(name, &headers, &body).await;
            assert_eq!(reply.status(), 202, "{name} with secret {n}");
        }
        assert_eq!(host.started(), 2, "{name}");
        // Once the old secret is dropped, it no longer verifies.
        host.add(name, sender.scheme.clone(), &[&new]);
        let body = (sender.body)("delivery-after");
        let headers = sender.delivery(&senders, &old, &body, now(), "delivery-after");
        assert_reply(&host.post(name, &headers, &body).await, 401, "invalid_signature");
        assert_eq!(host.started(), 2, "{name}");
    }
}

#[tokio::test]
async fn a_real_github_push_starts_and_github_s_ping_is_answered_without_a_start() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("ref", FieldKind::Text),
        FieldSpec::mandatory("repository", FieldKind::Object),
    ]));
    let secret = "It's a Secret to Everybody";
    let source = host
        .add("github", SourceScheme::Github, &[secret])
        .with_events(["push"])
        .unwrap();
    host.sources.put_source(source);
    let github = |event: &str, body: &str, delivery: &str| {
        let mut headers = pairs(&[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("User-Agent", "GitHub-Hookshot/044aadd"),
        ]);
        headers.extend(senders.sign(json!({"scheme": "github", "secret": secret, "body": body})));
        headers
    };

    let ping = senders.github_example("ping");
    let reply = host.post("github", &github("ping", &ping, "ping-1"), &ping).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(json_of(&reply), json!({"status": "ignored", "event": "ping"}));

    let issues = senders.github_example("issues");
    let reply = host
        .post("github", &github("issues", &issues, "issues-1"), &issues)
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(json_of(&reply), json!({"status": "ignored", "event": "issues"}));
    assert_eq!(host.started(), 0);

    let push = senders.github_example("push");
    assert!(
        push.len() > 6_000,
        "the example is a real push: {} bytes",
        push.len()
    );
    let reply = host
        .post(
            "github",
            &github("push", &push, "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            &push,
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let started = &host.engine.started()[0].command;
    let sent: Value = serde_json::from_str(&push).unwrap();
    assert_eq!(started.variables["ref"], sent["ref"]);
    assert_eq!(started.variables["repository"], sent["repository"]);
    assert_eq!(
        started.idempotency_key.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
}

#[tokio::test]
async fn slack_s_url_verification_is_answered_with_its_challenge_and_starts_nothing() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(open_form());
    host.add(
        "slack",
        SourceScheme::Slack,
        &["8f742231b10e8888abcd99yyyzzz85a5"],
    );
    let body = json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    })
    .to_string();
    let mut headers = pairs(&[("Content-Type", "application/json")]);
    headers.extend(senders.slack("8f742231b10e8888abcd99yyyzzz85a5", now(), &body));
    let reply = host.post("slack", &headers, &body).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        json_of(&reply),
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert_eq!(host.started(), 0);
    // Unsigned, it is refused like any other call.
    let unsigned = pairs(&[("Content-Type", "application/json")]);
    assert_reply(
        &host.post("slack", &unsigned, &body).await,
        401,
        "missing_signature",
    );
}

#[tokio::test]
async fn a_twilio_form_is_read_as_the_start_form_s_kinds_and_a_json_body_by_its_hash() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("Body", FieldKind::Text),
        FieldSpec::mandatory("NumMedia", FieldKind::Integer),
        FieldSpec::optional("From", FieldKind::Text),
    ]));
    let origin = "https://hooks.example.com";
    host.add(
        "twilio",
        SourceScheme::twilio(origin.parse().unwrap()),
        &["twilio-auth-token"],
    );
    let body = "Body=Hello+there&From=%2B15005550006&NumMedia=2";
    let target = format!("/webhook/send?uid={ORDERS}&source=twilio");
    let mut headers = pairs(&[("Content-Type", "application/x-www-form-urlencoded")]);
    headers.extend(senders.sign(json!({
        "scheme": "twilio", "secret": "twilio-auth-token", "url": format!("{origin}{target}"),
        "params": {"Body": "Hello there", "From": "+15005550006", "NumMedia": "2"},
    })));
    // The server sees the call at its own address, behind the proxy.
    let reply = host
        .starter
        .handle(
            &format!("http://10.0.0.7:8080{target}"),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            body.as_bytes(),
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let variables = &host.engine.started()[0].command.variables;
    assert_eq!(
        Value::Object(variables.clone()),
        json!({"Body": "Hello there", "From": "+15005550006", "NumMedia": 2})
    );

    // A JSON body: Twilio signs the URL with the body's SHA-256 in it.
    let json_body = json!({"Body": "Hi", "NumMedia": 0}).to_string();
    let hash = {
        let output = Command::new("node")
            .args(["-e", "process.stdout.write(require('twilio/lib/webhooks/webhooks').getExpectedBodyHash(process.argv[1]))"])
            .arg(&json_body)
            .current_dir(&senders.dir)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let target = format!("/webhook/send?uid={ORDERS}&source=twilio&bodySHA256={hash}");
    let mut headers = pairs(&[("Content-Type", "application/json")]);
    headers.extend(senders.sign(json!({
        "scheme": "twilio", "secret": "twilio-auth-token", "url": format!("{origin}{target}"), "params": null,
    })));
    let send = |body: String| {
        let (target, headers) = (target.clone(), headers.clone());
        let starter = host.starter.clone();
        async move {
            starter
                .handle(
                    &target,
                    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    body.as_bytes(),
                )
                .await
        }
    };
    assert_eq!(send(json_body.clone()).await.status(), 202);
    assert_reply(
        &send(json_body.replace("Hi", "Ho")).await,
        401,
        "invalid_signature",
    );
    assert_eq!(host.started(), 2);
}

#[tokio::test]
async fn an_unknown_source_and_a_source_of_another_process_are_404() {
    let host = Host::new(open_form());
    host.add("gitlab", SourceScheme::Gitlab, &["gitlab-secret"]);
    let headers = pairs(&[("X-Gitlab-Token", "gitlab-secret")]);
    assert_eq!(host.post("gitlab", &headers, "{}").await.status(), 202);
    for (process, source) in [
        (ORDERS, "gitlab2"),
        (REFUNDS, "gitlab"),
        (ORDERS, "not%20an%20id"),
        (ORDERS, ""),
    ] {
        let reply = host.post_to(process, source, &headers, "{}").await;
        assert_reply(&reply, 404, "unknown_source");
    }
    let twice = format!("/webhook/send?uid={ORDERS}&source=gitlab&source=gitlab");
    let reply = host
        .starter
        .handle(&twice, [("X-Gitlab-Token", "gitlab-secret")], b"{}")
        .await;
    assert_reply(&reply, 404, "unknown_source");
    assert_eq!(host.started(), 1);

    // A starter without sources knows none.
    let bare = WebhookStarter::new(
        Arc::new(InMemoryModelStore::new()),
        Arc::new(InMemoryTokenStore::new()),
        Arc::new(InMemoryEngine::new()),
    );
    let target = format!("/webhook/send?uid={ORDERS}&source=gitlab");
    let reply = bare
        .handle(&target, [("X-Gitlab-Token", "gitlab-secret")], b"{}")
        .await;
    assert_reply(&reply, 404, "unknown_source");
}

#[tokio::test]
async fn a_source_call_keeps_every_other_rule() {
    let host = Host::new(StartForm::new([FieldSpec::mandatory(
        "orderNumber",
        FieldKind::Text,
    )]));
    host.add("gitlab", SourceScheme::Gitlab, &["gitlab-secret"]);
    let headers = pairs(&[
        ("X-Gitlab-Token", "gitlab-secret"),
        ("Content-Type", "application/json"),
    ]);
    // The start form.
    let reply = host.post("gitlab", &headers, "{}").await;
    assert_reply(&reply, 422, "invalid_payload");
    // A dry run.
    let mut dry = headers.clone();
    dry.push(("Prefer".into(), "dry-run".into()));
    let reply = host.post("gitlab", &dry, r#"{"orderNumber": "1"}"#).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.header("preference-applied"), Some("dry-run"));
    // The schema, for the source's credentials.
    let target = format!("/webhook/send?uid={ORDERS}&source=gitlab");
    let schema = host
        .starter
        .handle_method("GET", &target, [("X-Gitlab-Token", "gitlab-secret")], b"")
        .await;
    assert_eq!(schema.status(), 200);
    assert_eq!(json_of(&schema)["required"], json!(["orderNumber"]));
    // The media types.
    let xml = pairs(&[("X-Gitlab-Token", "gitlab-secret"), ("Content-Type", "text/xml")]);
    assert_reply(
        &host.post("gitlab", &xml, "<a/>").await,
        415,
        "unsupported_media_type",
    );
    assert_eq!(host.started(), 0);
    // An `Idempotency-Key` the call sends wins over the delivery id.
    let mut keyed = headers.clone();
    keyed.push(("X-Gitlab-Event-UUID".into(), "uuid-1".into()));
    keyed.push(("Idempotency-Key".into(), "order-1".into()));
    let reply = host.post("gitlab", &keyed, r#"{"orderNumber": "1"}"#).await;
    assert_eq!(reply.status(), 202);
    let started = &host.engine.started()[0].command;
    assert_eq!(started.idempotency_key.as_deref(), Some("order-1"));
    // A draft is never started, through a source either.
    let drafts = Arc::new(InMemoryModelStore::new());
    drafts.insert_model(ProcessModel::new(
        uuid(ORDERS),
        OrganizationId::new("acme"),
        "Order intake",
    ));
    drafts.deploy(Deployment::new(
        uuid(ORDERS),
        VersionTag::Draft,
        host.production.id().clone(),
        StartForm::default(),
    ));
    let engine = Arc::new(InMemoryEngine::new());
    let draft_host = WebhookStarter::new(drafts, Arc::new(InMemoryTokenStore::new()), engine.clone())
        .with_sources(host.sources.clone());
    let reply = draft_host
        .handle(
            &target,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            b"{}",
        )
        .await;
    assert_reply(&reply, 409, "draft_version");
    assert!(engine.started().is_empty());
}

#[tokio::test]
async fn a_source_s_secret_is_never_in_its_debug_an_answer_or_the_logs() {
    let host = Host::new(open_form());
    let secret = "gitlab-very-secret-token";
    let source = host.add("gitlab", SourceScheme::Gitlab, &[secret]);
    assert!(!format!("{source:?}").contains(secret));
    assert!(!format!("{:?}", source.secrets()).contains(secret));
    let (captured, _guard) = crate::logs::capture_logs();
    for (token, status) in [(secret, 202), ("gitlab-very-secret-tokem", 401)] {
        let headers = pairs(&[("X-Gitlab-Token", token)]);
        let reply = host.post("gitlab", &headers, "{}").await;
        assert_eq!(reply.status(), status);
        assert!(!String::from_utf8_lossy(reply.body()).contains("gitlab-very"));
    }
    let logs = captured.text();
    assert_eq!(logs.lines().count(), 2, "one event per call:\n{logs}");
    assert!(logs.contains("invalid_signature"), "{logs}");
    assert!(!logs.contains("gitlab-very"), "{logs}");
}

#[tokio::test]
async fn a_slack_slash_command_posts_a_form_signed_by_slack_and_starts_with_its_strings() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("command", FieldKind::Text),
        FieldSpec::mandatory("text", FieldKind::Text),
    ]));
    host.add("slack", SourceScheme::Slack, &["slack-signing-secret"]);
    let body = "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&command=%2Forder&text=123456+ABC123&trigger_id=13345224609.738474920.8088930838d88f008e0";
    let mut headers = pairs(&[("Content-Type", "application/x-www-form-urlencoded")]);
    headers.extend(senders.slack("slack-signing-secret", now(), body));
    let reply = host.post("slack", &headers, body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let variables = &host.engine.started()[0].command.variables;
    assert_eq!(
        (variables["command"].as_str(), variables["text"].as_str()),
        (Some("/order"), Some("123456 ABC123"))
    );
}

#[tokio::test]
async fn a_source_s_calls_count_against_its_environment_s_rate_limit() {
    let host = Host::new(open_form());
    host.add("gitlab", SourceScheme::Gitlab, &["gitlab-secret"]);
    let starter = host.starter.clone().with_rate_limit(
        Arc::new(InMemoryRateLimiter::new()),
        RateLimitPolicy::default().with_per_environment(Quota::per_minute(1)),
    );
    let target = format!("/webhook/send?uid={ORDERS}&source=gitlab");
    let call = || starter.handle(&target, [("X-Gitlab-Token", "gitlab-secret")], b"{}");
    assert_eq!(call().await.status(), 202);
    let reply = call().await;
    assert_reply(&reply, 429, "rate_limited");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(host.started(), 1);
}

#[tokio::test]
async fn a_delivery_of_an_event_the_source_does_not_list_is_ignored_naming_its_event() {
    let Some(senders) = Senders::find() else { return };
    let expected = [
        ("github", "push"),
        ("stripe", "checkout.session.completed"),
        ("slack", "app_mention"),
        ("shopify", "orders/create"),
        ("gitlab", "Push Hook"),
    ];
    for sender in Sender::all().into_iter().filter(|s| s.scheme.has_events()) {
        let host = Host::new(open_form());
        let name = sender.name;
        let secret = sender.secret(1);
        let source = host
            .add(name, sender.scheme.clone(), &[&secret])
            .with_events(["another-event"])
            .unwrap();
        host.sources.put_source(source);
        let body = (sender.body)("delivery-1");
        let headers = sender.delivery(&senders, &secret, &body, now(), "delivery-1");
        let reply = host.post(name, &headers, &body).await;
        assert_eq!(reply.status(), 200, "{name}");
        let event = expected.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(
            json_of(&reply),
            json!({"status": "ignored", "event": event}),
            "{name}"
        );
        assert_eq!(host.started(), 0, "{name}");
    }
}

#[tokio::test]
async fn a_basic_source_wants_basic_credentials() {
    let host = Host::new(open_form());
    host.add("zapier", SourceScheme::basic("zapier"), &["a-password"]);
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let host = &host;
    let call = |authorization: String| async move {
        let headers = pairs(&[("Authorization", &authorization)]);
        host.post("zapier", &headers, "{}").await
    };
    // A bearer token of the right base64 is no Basic credential.
    let bearer = call(format!("Bearer {}", encode("zapier:a-password"))).await;
    assert_reply(&bearer, 401, "missing_signature");
    assert_eq!(
        bearer.header("www-authenticate"),
        Some("Basic realm=\"process-webhook\"")
    );
    assert_reply(
        &call(format!("Basic {}", encode("zapier:wrong"))).await,
        401,
        "invalid_signature",
    );
    assert_reply(
        &call(format!("Basic {}", encode("other:a-password"))).await,
        401,
        "invalid_signature",
    );
    assert_reply(
        &call(format!("Basic {}", encode("no colon"))).await,
        401,
        "invalid_signature",
    );
    assert_reply(&call("Basic !!!".to_owned()).await, 401, "invalid_signature");
    assert_eq!(host.started(), 0);
    assert_eq!(
        call(format!("basic {}", encode("zapier:a-password")))
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn a_sources_json_strings_are_not_read_as_a_forms_text_and_its_form_fields_are() {
    let host = Host::new(StartForm::new([FieldSpec::mandatory(
        "quantity",
        FieldKind::Integer,
    )]));
    host.add(
        "zapier-orders",
        SourceScheme::basic("zapier"),
        &["a-basic-password-of-some-length"],
    );
    let basic = format!("Basic {}", base64_of(b"zapier:a-basic-password-of-some-length"));
    let json = [
        ("authorization".to_owned(), basic.clone()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let reply = host.post("zapier-orders", &json, r#"{"quantity": "3"}"#).await;
    let doc = assert_reply(&reply, 422, "invalid_payload");
    assert_eq!(doc["violations"][0]["field"], "quantity");
    assert_eq!(host.started(), 0);
    let form = [
        ("authorization".to_owned(), basic),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    let reply = host.post("zapier-orders", &form, "quantity=3").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(host.engine.started()[0].command.variables["quantity"], json!(3));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
