//! A sender's payload mapped into the start form: JSONPath queries over
//! `{"body", "headers", "query"}`, conditions that ignore a delivery, a
//! delivery id read from the payload, and a dry run that shows the mapped
//! variables. Deliveries are GitHub's own examples (npm
//! `@octokit/webhooks-examples`) signed by `@octokit/webhooks-methods`,
//! and Stripe's and Slack's documented event shapes signed by `stripe` and
//! `slack_sdk`.
#![cfg(feature = "mapping")]

use crate::common;
use crate::sources::{Host, ORDERS, json_of, now, pairs};

use common::senders::Senders;
use process_webhook::*;
use serde_json::{Map, Value, json};

const SECRET: &str = "It's a Secret to Everybody";

fn q(query: &str) -> JsonQuery {
    query.parse().unwrap()
}

/// The headers GitHub sends with a delivery of `event`, signed.
fn github_headers(event: &str, delivery: &str, signature: &str) -> Vec<(String, String)> {
    pairs(&[
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", signature),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
    ])
}

/// The pull request process: its form, and a GitHub source mapping into it.
fn pull_request_host() -> (Host, WebhookSource) {
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("author", FieldKind::Text),
        FieldSpec::mandatory("repository", FieldKind::Text),
        FieldSpec::mandatory("title", FieldKind::Text),
        FieldSpec::mandatory("number", FieldKind::Integer),
        FieldSpec::optional("event", FieldKind::Text),
        FieldSpec::optional("priority", FieldKind::Text).with_default(json!("normal")),
    ]));
    let mapping = PayloadMapping::new()
        .with_field("author", q("$.body.pull_request.user.login"))
        .and_then(|m| m.with_field("repository", q("$.body.repository.full_name")))
        .and_then(|m| m.with_field("title", q("$.body.pull_request.title")))
        .and_then(|m| m.with_field("number", q("$.body.number")))
        .and_then(|m| m.with_field("event", q("$.headers['x-github-event']")))
        .unwrap();
    let opened = Condition::new(q("$.body.action"), ["opened", "reopened"]).unwrap();
    let source = host
        .add("github-prs", SourceScheme::Github, &[SECRET])
        .with_events(["pull_request"])
        .unwrap()
        .with_mapping(mapping)
        .with_conditions([opened]);
    host.sources.put_source(source.clone());
    (host, source)
}

/// The first example of `event` whose action is `action`, signed.
fn example<'a>(examples: &'a [Value], event: &str, action: &str) -> &'a Value {
    examples
        .iter()
        .find(|e| e["event"] == event && e["action"] == action)
        .unwrap_or_else(|| panic!("an example of {event} {action}"))
}

#[tokio::test]
async fn a_pull_request_opened_maps_exactly_and_a_closed_one_is_ignored_by_its_condition() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    let (host, _) = pull_request_host();

    let opened = example(&examples, "pull_request", "opened");
    let body = opened["body"].as_str().unwrap();
    assert!(
        body.len() > 20_000,
        "a real pull_request delivery: {} bytes",
        body.len()
    );
    let headers = github_headers(
        "pull_request",
        "pr-opened-1",
        opened["signature"].as_str().unwrap(),
    );
    let reply = host.post("github-prs", &headers, body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let sent: Value = serde_json::from_str(body).unwrap();
    let started = host.engine.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        Value::Object(started[0].command.variables.clone()),
        json!({
            "author": sent["pull_request"]["user"]["login"],
            "repository": sent["repository"]["full_name"],
            "title": sent["pull_request"]["title"],
            "number": sent["number"],
            "event": "pull_request",
            "priority": "normal",
        }),
        "exactly the mapped fields and the form's default"
    );
    assert_eq!(started[0].command.idempotency_key.as_deref(), Some("pr-opened-1"));

    // GitHub's redelivery of it replays the first start.
    let again = host.post("github-prs", &headers, body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(host.started(), 1);

    // A closed pull request meets no condition: ignored, nothing started.
    let closed = example(&examples, "pull_request", "closed");
    let headers = github_headers(
        "pull_request",
        "pr-closed-1",
        closed["signature"].as_str().unwrap(),
    );
    let reply = host
        .post("github-prs", &headers, closed["body"].as_str().unwrap())
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        json_of(&reply),
        json!({"status": "ignored", "event": "pull_request"})
    );
    assert_eq!(host.started(), 1);
}

#[tokio::test]
async fn every_github_example_through_a_mapped_source_starts_or_is_refused_but_never_fails() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    assert!(examples.len() >= 300, "{} examples", examples.len());
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("sender", FieldKind::Text),
        FieldSpec::optional("repository", FieldKind::Text),
        FieldSpec::optional("action", FieldKind::Text),
        FieldSpec::optional("title", FieldKind::Text),
    ]));
    let mapping = PayloadMapping::new()
        .with_field("sender", q("$.body.sender.login"))
        .and_then(|m| m.with_field("repository", q("$.body.repository.full_name")))
        .and_then(|m| m.with_field("action", q("$.body.action")))
        .and_then(|m| m.with_field("title", q("$.body.pull_request.title")))
        .unwrap();
    let source = host
        .add("github", SourceScheme::Github, &[SECRET])
        .with_mapping(mapping);
    host.sources.put_source(source);

    let (mut started, mut refused, mut pings) = (0, 0, 0);
    for (i, example) in examples.iter().enumerate() {
        let event = example["event"].as_str().unwrap();
        let body = example["body"].as_str().unwrap();
        let headers = github_headers(
            event,
            &format!("example-{i}"),
            example["signature"].as_str().unwrap(),
        );
        let reply = host.post("github", &headers, body).await;
        let answer = json_of(&reply);
        let sent: Value = serde_json::from_str(body).unwrap();
        // What the mapping should make, read with serde_json's own pointers.
        let mut expected = Map::new();
        for (field, pointer) in [
            ("sender", "/sender/login"),
            ("repository", "/repository/full_name"),
            ("action", "/action"),
            ("title", "/pull_request/title"),
        ] {
            if let Some(value) = sent.pointer(pointer) {
                expected.insert(field.to_owned(), value.clone());
            }
        }
        if event == "ping" {
            assert_eq!(
                (reply.status(), &answer),
                (200, &json!({"status": "ignored", "event": "ping"}))
            );
            pings += 1;
        } else if expected.get("sender").is_some_and(Value::is_string) {
            assert_eq!(reply.status(), 202, "{event} #{i}: {answer}");
            let last = host.engine.started().pop().unwrap();
            assert_eq!(last.command.variables, expected, "{event} #{i}");
            started += 1;
        } else {
            assert_eq!(
                (reply.status(), answer["code"].as_str()),
                (422, Some("invalid_payload")),
                "{event} #{i}"
            );
            assert_eq!(answer["violations"][0]["field"], "sender", "{event} #{i}");
            assert_eq!(answer["violations"][0]["query"], "$.body.sender.login");
            refused += 1;
        }
    }
    assert_eq!(started + refused + pings, examples.len());
    assert_eq!(host.started(), started);
    assert!(started > 250, "{started} started, {refused} refused");
}

#[tokio::test]
async fn a_mandatory_field_whose_query_selects_nothing_is_422_naming_field_and_query() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    let (host, _) = pull_request_host();
    // A pull_request example stripped of its title, signed anew by octokit.
    let opened = example(&examples, "pull_request", "opened");
    let mut sent: Value = serde_json::from_str(opened["body"].as_str().unwrap()).unwrap();
    sent["pull_request"].as_object_mut().unwrap().remove("title");
    sent["number"] = json!("7");
    let body = sent.to_string();
    let signed = senders.sign(json!({"scheme": "github", "secret": SECRET, "body": body}));
    let mut headers = github_headers("pull_request", "pr-untitled", "");
    headers.retain(|(n, _)| n != "X-Hub-Signature-256");
    headers.extend(signed);
    let reply = host.post("github-prs", &headers, &body).await;
    assert_eq!(reply.status(), 422);
    let answer = json_of(&reply);
    assert_eq!(answer["code"], "invalid_payload");
    assert_eq!(
        answer["violations"],
        json!([
            {
                "field": "title",
                "problem": "missing",
                "message": "mandatory field `title` is missing (mapped from `$.body.pull_request.title`)",
                "query": "$.body.pull_request.title",
            },
            {
                "field": "number",
                "problem": "wrong_type",
                "message": "field `number` must be integer (mapped from `$.body.number`)",
                "query": "$.body.number",
            },
        ]),
        "a JSON string keeps its type: \"7\" is not an integer"
    );
    assert_eq!(host.started(), 0);
}

#[tokio::test]
async fn a_dry_run_of_a_delivery_answers_the_mapped_variables_and_starts_nothing() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    let (host, _) = pull_request_host();
    let opened = example(&examples, "pull_request", "opened");
    let body = opened["body"].as_str().unwrap();
    let mut headers = github_headers("pull_request", "pr-dry", opened["signature"].as_str().unwrap());
    headers.push(("Prefer".to_owned(), "dry-run".to_owned()));
    let reply = host.post("github-prs", &headers, body).await;
    assert_eq!(reply.status(), 200, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(reply.header("preference-applied"), Some("dry-run"));
    let answer = json_of(&reply);
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        answer["variables"]["author"],
        sent["pull_request"]["user"]["login"]
    );
    assert_eq!(answer["variables"]["priority"], "normal");
    assert_eq!(answer["variables"].as_object().unwrap().len(), 6, "{answer}");
    assert_eq!(host.started(), 0);
}

/// A `payment_intent.succeeded` event in the shape of Stripe's API
/// reference (https://docs.stripe.com/api/events/object).
fn stripe_event(id: &str, currency: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1_680_064_028,
        "type": "payment_intent.succeeded",
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": "req_wn4YsO2vB2DN7b", "idempotency_key": null},
        "data": {"object": {
            "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
            "object": "payment_intent",
            "amount": 2000,
            "amount_received": 2000,
            "currency": currency,
            "customer": "cus_NffrFeUfNV2Hib",
            "status": "succeeded",
            "metadata": {"order": "123456"},
        }},
    })
    .to_string()
}

#[tokio::test]
async fn a_stripe_event_maps_its_amount_and_order_and_another_currency_is_ignored() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("amount", FieldKind::Integer),
        FieldSpec::mandatory("customer", FieldKind::Text),
    ]));
    let secret = "whsec_stripe_mapping_secret";
    let mapping = PayloadMapping::new()
        .with_field("orderNumber", q("$.body.data.object.metadata.order"))
        .and_then(|m| m.with_field("amount", q("$.body.data.object.amount")))
        .and_then(|m| m.with_field("customer", q("$.body.data.object.customer")))
        .unwrap();
    let source = host
        .add("stripe", SourceScheme::Stripe, &[secret])
        .with_mapping(mapping)
        .with_conditions([Condition::new(q("$.body.data.object.currency"), ["usd", "eur"]).unwrap()]);
    host.sources.put_source(source);
    let deliver = |body: String| {
        let mut headers = pairs(&[("Content-Type", "application/json; charset=utf-8")]);
        headers.extend(
            senders.sign(json!({"scheme": "stripe", "secret": secret, "body": body, "timestamp": now()})),
        );
        (headers, body)
    };
    let (headers, body) = deliver(stripe_event("evt_1MtwBx", "usd"));
    let reply = host.post("stripe", &headers, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let started = host.engine.started();
    let command = &started[0].command;
    assert_eq!(
        Value::Object(command.variables.clone()),
        json!({"orderNumber": "123456", "amount": 2000, "customer": "cus_NffrFeUfNV2Hib"})
    );
    assert_eq!(command.idempotency_key.as_deref(), Some("evt_1MtwBx"));

    let (headers, body) = deliver(stripe_event("evt_2", "jpy"));
    let reply = host.post("stripe", &headers, &body).await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        json_of(&reply),
        json!({"status": "ignored", "event": "payment_intent.succeeded"})
    );
    assert_eq!(host.started(), 1);
}

#[tokio::test]
async fn a_slack_event_callback_maps_its_inner_event_and_a_retry_is_started_once() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("user", FieldKind::Text),
        FieldSpec::mandatory("text", FieldKind::Text),
        FieldSpec::mandatory("channel", FieldKind::Text),
    ]));
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let mapping = PayloadMapping::new()
        .with_field("user", q("$.body.event.user"))
        .and_then(|m| m.with_field("text", q("$.body.event.text")))
        .and_then(|m| m.with_field("channel", q("$.body.event.channel")))
        .unwrap();
    let source = host
        .add("slack", SourceScheme::Slack, &[secret])
        .with_events(["app_mention"])
        .unwrap()
        .with_mapping(mapping);
    host.sources.put_source(source);
    // The `app_mention` event_callback of Slack's Events API reference
    // (https://api.slack.com/events/app_mention).
    let body = json!({
        "token": "ZZZZZZWSxiZZZ2yIvs3peJ",
        "team_id": "T123ABC456",
        "api_app_id": "A123ABC456",
        "event": {
            "type": "app_mention",
            "user": "U123ABC456",
            "text": "What is the hour of the pearl, <@U0LAN0Z89>?",
            "ts": "1515449522.000016",
            "channel": "C123ABC456",
            "event_ts": "1515449522000016"
        },
        "type": "event_callback",
        "event_id": "Ev123ABC456",
        "event_time": 1_515_449_522_000_016_u64,
        "authed_users": ["U0LAN0Z89"]
    })
    .to_string();
    for retry in [None, Some("1")] {
        let mut headers = pairs(&[("Content-Type", "application/json")]);
        if let Some(n) = retry {
            headers.extend(pairs(&[
                ("X-Slack-Retry-Num", n),
                ("X-Slack-Retry-Reason", "http_timeout"),
            ]));
        }
        headers.extend(senders.slack(secret, now(), &body));
        let reply = host.post("slack", &headers, &body).await;
        assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    }
    let started = host.engine.started();
    assert_eq!(started.len(), 1, "Slack's retry replays the first start");
    assert_eq!(
        Value::Object(started[0].command.variables.clone()),
        json!({"user": "U123ABC456", "text": "What is the hour of the pearl, <@U0LAN0Z89>?", "channel": "C123ABC456"})
    );
    assert_eq!(started[0].command.idempotency_key.as_deref(), Some("Ev123ABC456"));
}

/// The headers GitHub sends with a delivery of `event` in its default
/// content type: a form whose field `payload` holds the JSON.
fn github_form_headers(event: &str, delivery: &str, signature: &str) -> Vec<(String, String)> {
    let mut headers = github_headers(event, delivery, signature);
    headers[0].1 = "application/x-www-form-urlencoded".to_owned();
    headers
}

#[tokio::test]
async fn every_github_example_in_form_mode_starts_with_the_variables_of_its_json_delivery() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    let host = |mode: &str| {
        let host = Host::new(StartForm::new([
            FieldSpec::mandatory("sender", FieldKind::Text),
            FieldSpec::optional("repository", FieldKind::Text),
            FieldSpec::optional("action", FieldKind::Text),
            FieldSpec::optional("number", FieldKind::Integer),
        ]));
        let mapping = PayloadMapping::new()
            .with_field("sender", q("$.body.sender.login"))
            .and_then(|m| m.with_field("repository", q("$.body.repository.full_name")))
            .and_then(|m| m.with_field("action", q("$.body.action")))
            .and_then(|m| m.with_field("number", q("$.body.number")))
            .unwrap();
        let source = host
            .add(&format!("github-{mode}"), SourceScheme::Github, &[SECRET])
            .with_mapping(mapping);
        host.sources.put_source(source);
        host
    };
    let (json_host, form_host) = (host("json"), host("form"));
    let mut started = 0;
    for (i, example) in examples.iter().enumerate() {
        let event = example["event"].as_str().unwrap();
        let delivery = format!("example-{i}");
        let json = json_host
            .post(
                "github-json",
                &github_headers(event, &delivery, example["signature"].as_str().unwrap()),
                example["body"].as_str().unwrap(),
            )
            .await;
        let form = example["form"].as_str().unwrap();
        assert!(form.starts_with("payload=%7B"), "{form:.40}");
        let headers = github_form_headers(event, &delivery, example["formSignature"].as_str().unwrap());
        let reply = form_host.post("github-form", &headers, form).await;
        // The same answer, and the same start, as the JSON delivery.
        assert_eq!(reply.status(), json.status(), "{event} #{i}: {}", json_of(&reply));
        let (mut a, mut b) = (json_of(&json), json_of(&reply));
        for answer in [&mut a, &mut b] {
            if let Some(answer) = answer.as_object_mut() {
                answer.remove("instanceId");
            }
        }
        assert_eq!(a, b, "{event} #{i}");
        if reply.status() == 202 {
            let (by_json, by_form) = (
                json_host.engine.started().pop().unwrap(),
                form_host.engine.started().pop().unwrap(),
            );
            assert_eq!(
                by_form.command.variables, by_json.command.variables,
                "{event} #{i}"
            );
            assert_eq!(
                by_form.command.idempotency_key.as_deref(),
                Some(delivery.as_str())
            );
            started += 1;
        }
    }
    assert_eq!(form_host.started(), started);
    assert!(started > 250, "{started} started");

    // A redelivery of a form delivery replays it; the same form signed
    // over other bytes (its JSON) is refused and starts nothing.
    let opened = example(&examples, "pull_request", "opened");
    let headers = github_form_headers(
        "pull_request",
        "example-redelivered",
        opened["formSignature"].as_str().unwrap(),
    );
    let first = form_host
        .post("github-form", &headers, opened["form"].as_str().unwrap())
        .await;
    let again = form_host
        .post("github-form", &headers, opened["form"].as_str().unwrap())
        .await;
    assert_eq!((first.status(), again.status()), (202, 202));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(json_of(&again)["instanceId"], json_of(&first)["instanceId"]);
    let before = form_host.started();
    let forged = github_form_headers(
        "pull_request",
        "example-forged",
        opened["signature"].as_str().unwrap(),
    );
    let refused = form_host
        .post("github-form", &forged, opened["form"].as_str().unwrap())
        .await;
    assert_eq!(
        (refused.status(), json_of(&refused)["code"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert_eq!(form_host.started(), before);
}

#[tokio::test]
async fn a_form_with_payload_beside_other_fields_is_a_form_not_a_json_delivery() {
    let Some(senders) = Senders::find() else { return };
    let examples = senders.github_examples(SECRET);
    let (host, _) = pull_request_host();
    let opened = example(&examples, "pull_request", "opened");
    // GitHub posts `payload` alone; with another field it is some other
    // form, read as one: the mapping finds no pull request in it.
    let form = format!("{}&other=1", opened["form"].as_str().unwrap());
    let signed = senders.sign(json!({"scheme": "github", "secret": SECRET, "body": form}));
    let mut headers = github_form_headers("pull_request", "two-fields-1", "");
    headers.retain(|(name, _)| name != "X-Hub-Signature-256");
    headers.extend(signed);
    let reply = host.post("github-prs", &headers, &form).await;
    assert_eq!(
        (reply.status(), json_of(&reply)),
        (200, json!({"status": "ignored", "event": "pull_request"})),
        "its condition on the action reads the form, which has none"
    );
    assert_eq!(host.started(), 0);
}

#[tokio::test]
async fn a_github_form_whose_payload_is_not_json_is_400_and_starts_nothing() {
    let Some(senders) = Senders::find() else { return };
    let (host, _) = pull_request_host();
    let form = "payload=not+json";
    let headers = senders.sign(json!({"scheme": "github", "secret": SECRET, "body": form}));
    let mut sent = github_form_headers("pull_request", "bad-form-1", "");
    sent.retain(|(name, _)| name != "X-Hub-Signature-256");
    sent.extend(headers);
    let reply = host.post("github-prs", &sent, form).await;
    assert_eq!(
        (reply.status(), json_of(&reply)["code"].as_str()),
        (400, Some("malformed_payload"))
    );
    assert_eq!(host.started(), 0);
}

#[tokio::test]
async fn a_slack_interactive_payload_in_a_form_starts_as_its_json_would() {
    let Some(senders) = Senders::find() else { return };
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("user", FieldKind::Text),
        FieldSpec::mandatory("action", FieldKind::Text),
        FieldSpec::optional("kind", FieldKind::Text),
    ]));
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let mapping = PayloadMapping::new()
        .with_field("user", q("$.body.user.id"))
        .and_then(|m| m.with_field("action", q("$.body.actions[0].action_id")))
        .and_then(|m| m.with_field("kind", q("$.body.type")))
        .unwrap();
    let source = host
        .add("slack", SourceScheme::Slack, &[secret])
        .with_events(["block_actions"])
        .unwrap()
        .with_mapping(mapping);
    host.sources.put_source(source);
    // A `block_actions` payload as Slack's interactivity reference shows
    // it (https://api.slack.com/reference/interaction-payloads/block-actions),
    // posted as Slack posts it: `payload=` and the JSON, form-encoded.
    let interaction = json!({
        "type": "block_actions",
        "user": {"id": "U123ABC456", "username": "jdoe", "team_id": "T123ABC456"},
        "api_app_id": "A123ABC456",
        "token": "9s8d9as89d8as9d8as989",
        "trigger_id": "12466734323.1395872398.6a9d1b4ee7e0cb5cf0a0f1cb2fc6b9b1",
        "team": {"id": "T123ABC456", "domain": "example"},
        "channel": {"id": "C123ABC456", "name": "orders"},
        "actions": [{"action_id": "approve_order", "block_id": "b1", "type": "button", "value": "123456", "action_ts": "1548426417.840180"}]
    });
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &interaction.to_string())
        .finish();
    let mut headers = pairs(&[("Content-Type", "application/x-www-form-urlencoded")]);
    headers.extend(senders.slack(secret, now(), &body));
    let reply = host.post("slack", &headers, &body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let started = host.engine.started();
    assert_eq!(
        Value::Object(started[0].command.variables.clone()),
        json!({"user": "U123ABC456", "action": "approve_order", "kind": "block_actions"})
    );
    // A `view_submission` is another event: ignored, nothing started.
    let mut other = interaction.clone();
    other["type"] = json!("view_submission");
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &other.to_string())
        .finish();
    let mut headers = pairs(&[("Content-Type", "application/x-www-form-urlencoded")]);
    headers.extend(senders.slack(secret, now(), &body));
    let reply = host.post("slack", &headers, &body).await;
    assert_eq!(
        (reply.status(), json_of(&reply)),
        (200, json!({"status": "ignored", "event": "view_submission"}))
    );
    assert_eq!(host.started(), 1);
}

/// A generic HMAC sender without a delivery header, its source mapping
/// `count` from a header, `priority` from the query and `order` from the body.
fn hmac_host() -> Host {
    let host = Host::new(StartForm::new([
        FieldSpec::mandatory("order", FieldKind::Text),
        FieldSpec::mandatory("count", FieldKind::Integer),
        FieldSpec::optional("priority", FieldKind::Integer),
        FieldSpec::optional("express", FieldKind::Boolean),
    ]));
    let mapping = PayloadMapping::new()
        .with_field("order", q("$.body.order.id"))
        .and_then(|m| m.with_field("count", q("$.headers['x-count']")))
        .and_then(|m| m.with_field("priority", q("$.query.priority")))
        .and_then(|m| m.with_field("express", q("$.body.express")))
        .and_then(|m| m.with_body_variable("raw"))
        .unwrap();
    let source = host
        .add(
            "shop",
            SourceScheme::hmac(HmacScheme::new("X-Signature").unwrap()),
            &["hmac-secret"],
        )
        .with_mapping(mapping)
        .with_delivery_query(q("$.body.delivery"));
    host.sources.put_source(source);
    host
}

async fn post_hmac(
    host: &Host,
    senders: &Senders,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let mut sent = pairs(headers);
    sent.extend(senders.sign(json!({
        "scheme": "hmac", "secret": "hmac-secret", "body": body,
        "header": "X-Signature", "algorithm": "sha256", "encoding": "hex",
    })));
    let target = format!("/webhook/send?uid={ORDERS}&source=shop{query}");
    let headers = sent.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    host.starter.handle(&target, headers, body.as_bytes()).await
}

#[tokio::test]
async fn text_from_headers_the_query_and_forms_is_read_by_kind_and_the_delivery_id_comes_from_the_body() {
    let Some(senders) = Senders::find() else { return };
    let host = hmac_host();
    let body = r#"{"order": {"id": "A-1"}, "express": true, "delivery": 991}"#;
    let json_type = [("Content-Type", "application/json"), ("X-Count", "3")];
    let reply = post_hmac(&host, &senders, "&priority=2", &json_type, body).await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    let started = host.engine.started();
    let command = &started[0].command;
    assert_eq!(
        Value::Object(command.variables.clone()),
        json!({
            "order": "A-1", "count": 3, "priority": 2, "express": true,
            "raw": serde_json::from_str::<Value>(body).unwrap(),
        })
    );
    assert_eq!(
        command.idempotency_key.as_deref(),
        Some("991"),
        "a number as written"
    );
    // The same delivery again is a replay.
    let again = post_hmac(&host, &senders, "&priority=2", &json_type, body).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(host.started(), 1);

    // A form body's strings are text too.
    let form = "order%5Bid%5D=ignored&express=true&delivery=form-1";
    let form_type = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Count", "4"),
    ];
    let reply = post_hmac(&host, &senders, "", &form_type, form).await;
    // `$.body.order.id` selects nothing in a flat form: `order` is missing.
    assert_eq!(reply.status(), 422);
    assert_eq!(json_of(&reply)["violations"][0]["query"], "$.body.order.id");
    assert_eq!(host.started(), 1);

    // A header that does not read as an integer is the wrong type, named
    // with its query; a delivery id that is an object is not a key.
    let wrong = [("Content-Type", "application/json"), ("X-Count", "three")];
    let reply = post_hmac(
        &host,
        &senders,
        "",
        &wrong,
        r#"{"order": {"id": "A-2"}, "delivery": "d-2"}"#,
    )
    .await;
    assert_eq!(reply.status(), 422);
    assert_eq!(json_of(&reply)["violations"][0]["query"], "$.headers['x-count']");
    let reply = post_hmac(
        &host,
        &senders,
        "",
        &json_type,
        r#"{"order": {"id": "A-3"}, "delivery": {"id": 1}}"#,
    )
    .await;
    assert_eq!(
        (reply.status(), json_of(&reply)["code"].clone()),
        (400, json!("invalid_idempotency_key"))
    );
    assert_eq!(host.started(), 1);
}

#[tokio::test]
async fn no_mapping_can_read_a_credential_header() {
    let host = Host::new(StartForm::new([FieldSpec::optional("auth", FieldKind::Text)]));
    let mapping = PayloadMapping::new()
        .with_field("auth", q("$.headers.authorization"))
        .unwrap();
    let source = host
        .add("zapier", SourceScheme::basic("zapier"), &["zapier-password"])
        .with_mapping(mapping);
    host.sources.put_source(source);
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("zapier:zapier-password")
    );
    let headers = pairs(&[("Content-Type", "application/json"), ("Authorization", &basic)]);
    let reply = host.post("zapier", &headers, "{}").await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert!(host.engine.started()[0].command.variables.is_empty());
}

#[tokio::test]
async fn only_github_and_slack_forms_of_one_payload_field_are_read_as_the_json_they_hold() {
    let Some(senders) = Senders::find() else { return };
    // An HMAC sender's form whose one field is `payload` is a form like
    // any other: the start gets the field as text.
    let host = Host::new(StartForm::default());
    host.sources.put_source(host.add(
        "shop",
        SourceScheme::hmac(HmacScheme::new("X-Signature").unwrap()),
        &["hmac-secret"],
    ));
    let body = "payload=%7B%22orderNumber%22%3A%221%22%7D";
    let reply = post_hmac(
        &host,
        &senders,
        "",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body,
    )
    .await;
    assert_eq!(reply.status(), 202, "{}", String::from_utf8_lossy(reply.body()));
    assert_eq!(
        Value::Object(host.engine.started()[0].command.variables.clone()),
        json!({"payload": "{\"orderNumber\":\"1\"}"})
    );
}
