//! `Camunda7Engine` against a real Camunda 7 (or Operaton) engine: the one
//! `scripts/camunda start` builds from Maven Central and runs (`CAMUNDA_URL`),
//! with the processes of `tests/camunda7/src/main/resources/processes`:
//! `order-intake` ends at once, `order-review` waits in a user task,
//! `suspended-intake` is suspended by a test. Every start is keyed by a
//! key of its own, so that the tests share the engine without meeting.
#![cfg(feature = "camunda7")]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use process_webhook::*;
use serde_json::{Map, Value, json};

/// The engine's REST API, as the tests read it back.
struct Camunda {
    base: String,
    client: reqwest::Client,
}

impl Camunda {
    fn find() -> Option<Self> {
        let base = server_setting("CAMUNDA_URL", "scripts/camunda start prints it")?;
        Some(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        })
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// The instance in the history (running or ended).
    async fn history(&self, id: &str) -> Value {
        self.get(&format!("history/process-instance/{id}")).await
    }

    /// Its variables by name, as Camunda stores them: `{type, value}`.
    async fn variables(&self, id: &str) -> Map<String, Value> {
        let items = self
            .get(&format!(
                "history/variable-instance?processInstanceId={id}&deserializeValues=false"
            ))
            .await;
        items
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_owned(),
                    json!({"type": v["type"], "value": v["value"]}),
                )
            })
            .collect()
    }

    /// Deploys one BPMN file (`POST /deployment/create`, multipart).
    async fn deploy(&self, name: &str, bpmn: String, tenant: Option<&str>) {
        let mut form = reqwest::multipart::Form::new()
            .text("deployment-name", name.to_owned())
            .part(
                "data",
                reqwest::multipart::Part::text(bpmn).file_name(format!("{name}.bpmn")),
            );
        if let Some(tenant) = tenant {
            form = form.text("tenant-id", tenant.to_owned());
        }
        let response = self
            .client
            .post(format!("{}/deployment/create", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "deploy {name}: {}",
            response.text().await.unwrap()
        );
    }
}

/// A fresh key, so that tests sharing the engine never meet.
fn key(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

/// A process whose deployment starts `definition` with `form`, served by a
/// starter over `engine` with idempotency keys.
struct Host {
    starter: WebhookStarter,
    token: EnvironmentToken,
    uuid: ProcessUuid,
}

impl Host {
    fn new(engine: Camunda7Engine, definition: &str, form: StartForm) -> Self {
        let uuid: ProcessUuid = uuid::Uuid::new_v4().into();
        let (acme, production) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
        let models = Arc::new(InMemoryModelStore::new());
        models.insert_model(ProcessModel::new(uuid, acme.clone(), "Camunda process"));
        models.deploy(
            Deployment::new(uuid, VersionTag::Released(1), production.clone(), form)
                .with_definition_key(definition),
        );
        let tokens = Arc::new(InMemoryTokenStore::new());
        let token = EnvironmentToken::generate();
        tokens.insert(&token, Environment::new(production, acme));
        let starter = WebhookStarter::new(models, tokens, Arc::new(engine))
            .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
        Self { starter, token, uuid }
    }

    async fn post(&self, payload: &Value, headers: &[(&str, &str)]) -> HttpReply {
        let auth = format!("Bearer {}", self.token.expose_secret());
        let mut all = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        all.extend_from_slice(headers);
        let body = payload.to_string();
        self.starter
            .handle(&webhook_url("/webhook/send", &self.uuid), all, body.as_bytes())
            .await
    }
}

fn reply_json(reply: &HttpReply) -> Value {
    serde_json::from_slice(reply.body()).unwrap()
}

#[tokio::test]
async fn a_webhook_start_is_camundas_instance_with_the_key_as_business_key_and_each_kind_typed() {
    let Some(camunda) = Camunda::find() else { return };
    let host = Host::new(Camunda7Engine::new(&camunda.base), "order-intake", typed_form());
    let idempotency = key("typed");
    let mut payload = Value::Object(typed_payload());
    payload["note"] = json!("é".repeat(4001)); // past Camunda's String limit
    let reply = host
        .post(
            &payload,
            &[("idempotency-key", &idempotency), ("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", reply_json(&reply));
    let instance = reply_json(&reply)["instanceId"].as_str().unwrap().to_owned();

    // Camunda's own instance, ended, with the key as its business key.
    let history = camunda.history(&instance).await;
    assert_eq!(history["processDefinitionKey"], "order-intake");
    assert_eq!(history["businessKey"], idempotency.as_str());
    assert_eq!(history["state"], "COMPLETED");

    // Each kind with the type the engines guide promises.
    let variables = camunda.variables(&instance).await;
    let typed = |name: &str| (variables[name]["type"].clone(), variables[name]["value"].clone());
    assert_eq!(typed("name"), (json!("String"), json!("John Doe")));
    assert_eq!(typed("amount"), (json!("Double"), json!(12.5)));
    assert_eq!(typed("quantity"), (json!("Integer"), json!(3)));
    assert_eq!(typed("express"), (json!("Boolean"), json!(true)));
    assert_eq!(
        typed("deliveryDate"),
        (json!("Date"), json!("2024-02-29T00:00:00.000+0000"))
    );
    // 10:00 at +01:00, as Camunda keeps a Date (the same instant).
    let (kind, ordered) = typed("orderedAt");
    assert_eq!(kind, "Date");
    let ordered = time::OffsetDateTime::parse(
        ordered.as_str().unwrap(),
        &time::format_description::parse(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ordered.unix_timestamp(), 1_708_419_600);
    assert_eq!(typed("size"), (json!("String"), json!("M")));
    assert_eq!(
        typed("priority"),
        (json!("String"), json!("low")),
        "the form's default"
    );
    for (name, value) in [
        ("address", json!({"city": "Berlin"})),
        ("items", json!(["ABC123"])),
    ] {
        let (kind, text) = typed(name);
        assert_eq!(kind, "Json", "{name}");
        assert_eq!(
            serde_json::from_str::<Value>(text.as_str().unwrap()).unwrap(),
            value
        );
    }
    assert_eq!(typed("extra"), (json!("Integer"), json!(0)));
    let (kind, text) = typed("note");
    assert_eq!(kind, "Json");
    assert_eq!(
        serde_json::from_str::<String>(text.as_str().unwrap()).unwrap(),
        "é".repeat(4001)
    );
    assert_eq!(typed("traceparent"), (json!("String"), json!(TRACEPARENT)));

    // The same key again replays the start: one instance in Camunda.
    let again = host.post(&payload, &[("idempotency-key", &idempotency)]).await;
    assert_eq!(reply_json(&again)["instanceId"], instance.as_str());
    let found = camunda
        .get(&format!(
            "history/process-instance?processInstanceBusinessKey={idempotency}"
        ))
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn an_unknown_definition_is_refused_and_a_suspended_one_fails_retryably() {
    let Some(camunda) = Camunda::find() else { return };
    let engine = Camunda7Engine::new(&camunda.base);
    let unknown = Host::new(engine.clone(), &key("no-such-definition"), StartForm::default());
    let reply = unknown.post(&json!({}), &[]).await;
    assert_reply(&reply, 502, "engine_failed");
    let direct = engine
        .start(&StartCommand::new(
            &order_deployment(1).with_definition_key("no-such-definition"),
            1,
            Map::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(direct.kind(), EngineErrorKind::Refused);
    assert!(!direct.is_retryable());
    assert!(
        direct
            .to_string()
            .contains("No matching process definition with key: no-such-definition"),
        "{direct}"
    );

    // Camunda answers a start of a suspended definition with 500
    // (ENGINE-03043): a retryable failure, which succeeds once the
    // definition is active again.
    let suspend = |on: bool| {
        camunda
            .client
            .put(format!(
                "{}/process-definition/key/suspended-intake/suspended",
                camunda.base
            ))
            .json(&json!({"suspended": on, "includeProcessInstances": false}))
            .send()
    };
    assert_eq!(suspend(true).await.unwrap().status(), 204);
    let host = Host::new(engine.clone(), "suspended-intake", StartForm::default());
    let idempotency = key("suspended");
    let reply = host.post(&json!({}), &[("idempotency-key", &idempotency)]).await;
    assert_reply(&reply, 502, "engine_failed");
    let none = camunda
        .get(&format!(
            "history/process-instance?processInstanceBusinessKey={idempotency}"
        ))
        .await;
    assert_eq!(none, json!([]), "nothing was started");
    let direct = engine
        .start(&StartCommand::new(
            &order_deployment(1).with_definition_key("suspended-intake"),
            1,
            Map::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (direct.kind(), direct.is_retryable()),
        (EngineErrorKind::Failed, true)
    );
    assert!(direct.to_string().contains("is suspended"), "{direct}");
    assert_eq!(suspend(false).await.unwrap().status(), 204);
    let retried = host.post(&json!({}), &[("idempotency-key", &idempotency)]).await;
    assert_eq!(retried.status(), 202, "{}", reply_json(&retried));
}

#[tokio::test]
async fn a_tenants_definition_is_started_as_the_tenants() {
    let Some(camunda) = Camunda::find() else { return };
    let definition = key("tenant-intake");
    let tenant = key("tenant");
    camunda
        .deploy(
            &definition,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" targetNamespace="https://process-webhook.test/tenant">
  <process id="{definition}" isExecutable="true">
    <startEvent id="start"/><endEvent id="end"/>
    <sequenceFlow id="f" sourceRef="start" targetRef="end"/>
  </process>
</definitions>"#
            ),
            Some(&tenant),
        )
        .await;
    let engine = Camunda7Engine::new(&camunda.base).with_tenant_id(&tenant);
    let host = Host::new(engine, &definition, StartForm::default());
    let reply = host
        .post(
            &json!({"orderNumber": "1"}),
            &[("idempotency-key", &key("tenant"))],
        )
        .await;
    assert_eq!(reply.status(), 202, "{}", reply_json(&reply));
    let history = camunda
        .history(reply_json(&reply)["instanceId"].as_str().unwrap())
        .await;
    assert_eq!(history["tenantId"], tenant.as_str());
    // Without the tenant the definition is not found.
    let untenanted = Host::new(
        Camunda7Engine::new(&camunda.base),
        &definition,
        StartForm::default(),
    );
    assert_reply(&untenanted.post(&json!({}), &[]).await, 502, "engine_failed");
}

#[tokio::test]
async fn a_cut_off_start_is_found_by_business_key_running_or_ended_and_a_missing_one_is_not() {
    let Some(camunda) = Camunda::find() else { return };
    let engine = Camunda7Engine::new(&camunda.base);
    for definition in ["order-review", "order-intake"] {
        let business_key = key(definition);
        let command = StartCommand::new(
            &order_deployment(1).with_definition_key(definition),
            1,
            Map::new(),
        )
        .with_idempotency_key(&business_key);
        assert!(
            engine.find_started(&command).await.unwrap().is_none(),
            "{definition}: none yet"
        );
        let started = engine.start(&command.clone()).await.unwrap();
        let found = engine.find_started(&command).await.unwrap().expect("found");
        assert_eq!(found.id(), started.id(), "{definition}");
        assert_eq!(found.business_key(), Some(business_key.as_str()));
        let state = camunda.history(started.id().as_str()).await["state"].clone();
        // The user task keeps one running; the other has ended, and only
        // the history knows it.
        let expected = if definition == "order-review" {
            "ACTIVE"
        } else {
            "COMPLETED"
        };
        assert_eq!(state, expected, "{definition}");
    }

    // Through the starter: a key reserved by a replica that died before it
    // started anything is taken over and started once.
    let keys = Arc::new(InMemoryIdempotencyStore::new());
    let host = Host::new(
        Camunda7Engine::new(&camunda.base).with_timeout(Duration::from_millis(200)),
        "order-intake",
        StartForm::default(),
    );
    let starter = host
        .starter
        .clone()
        .with_idempotency(keys.clone())
        .with_takeover_margin(Duration::ZERO);
    let idempotency = key("cut-off");
    let payload = json!({"orderNumber": "7"});
    let host = Host { starter, ..host };
    let fingerprint = PayloadFingerprint::of(payload.as_object().unwrap());
    let scoped = IdempotencyKey::new(EnvironmentId::new("production"), host.uuid, &idempotency);
    assert_eq!(
        keys.reserve(&scoped, fingerprint).await.unwrap(),
        Reservation::Reserved
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = host.post(&payload, &[("idempotency-key", &idempotency)]).await;
    assert_eq!(reply.status(), 202, "{}", reply_json(&reply));
    let found = camunda
        .get(&format!(
            "history/process-instance?processInstanceBusinessKey={idempotency}"
        ))
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], reply_json(&reply)["instanceId"]);
}

#[tokio::test]
async fn prefer_wait_answers_an_ended_instance_with_its_variables_and_a_waiting_one_as_running() {
    let Some(camunda) = Camunda::find() else { return };
    let form = StartForm::new([
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::optional("address", FieldKind::Object),
    ]);
    let ended = Host::new(Camunda7Engine::new(&camunda.base), "order-intake", form.clone());
    let payload = json!({"orderNumber": "123456", "address": {"city": "Berlin"}});
    let reply = ended.post(&payload, &[("prefer", "wait=10")]).await;
    assert_eq!(reply.status(), 200, "{}", reply_json(&reply));
    assert_eq!(reply.header("preference-applied"), Some("wait=10"));
    let answer = reply_json(&reply);
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["result"]["orderNumber"], "123456");
    assert_eq!(answer["result"]["address"], json!({"city": "Berlin"}));

    let waiting = Host::new(Camunda7Engine::new(&camunda.base), "order-review", form);
    let started = std::time::Instant::now();
    let reply = waiting.post(&payload, &[("prefer", "wait=1")]).await;
    assert_eq!(reply.status(), 202, "{}", reply_json(&reply));
    assert_eq!(reply_json(&reply)["status"], "running");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let id = reply_json(&reply)["instanceId"].as_str().unwrap().to_owned();
    assert_eq!(camunda.history(&id).await["state"], "ACTIVE");
}

#[tokio::test]
async fn a_wait_on_an_instance_deleted_in_camunda_answers_terminated() {
    let Some(camunda) = Camunda::find() else { return };
    let engine = Camunda7Engine::new(&camunda.base);
    let command = StartCommand::new(
        &order_deployment(1).with_definition_key("order-review"),
        1,
        Map::new(),
    );
    let started = engine.start(&command).await.unwrap();
    let id = started.id().as_str();
    // An operator cancels it in Camunda (it waits in its user task).
    let deleted = camunda
        .client
        .delete(format!("{}/process-instance/{id}", camunda.base))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let instance = InstanceRef::new(
        started.id().clone(),
        uuid(ORDER_INTAKE),
        EnvironmentId::new("production"),
    );
    let waited = engine.wait(&instance, Duration::from_secs(5)).await.unwrap();
    assert_eq!(waited, Some(Completion::Terminated));
    assert_eq!(camunda.history(id).await["state"], "EXTERNALLY_TERMINATED");
}
