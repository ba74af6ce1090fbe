//! The admin API as an operator's script uses it: every filter, a cursor
//! over several pages, retry and discard of each outcome (and `409` where
//! they make no sense), authentication (missing, wrong, rate-limited), its
//! OpenAPI document, and never a credential in an answer.
#![cfg(feature = "console")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use process_webhook::*;
use serde_json::Value;
use tower::ServiceExt as _;

const TOKEN: &str = "an-admin-token-of-at-least-32-characters";
const ORDERS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const REFUNDS: &str = "0f6d1c2a-1b9e-4e0e-9a57-1c1e2f3a4b5c";

struct Desk {
    log: InMemoryDeliveryLog,
    inbox: Arc<InMemoryInbox>,
    router: axum::Router,
}

fn desk() -> Desk {
    let log = InMemoryDeliveryLog::new();
    let inbox = Arc::new(InMemoryInbox::new());
    let admin = Admin::new(TOKEN.parse().unwrap(), Arc::new(log.clone())).with_inbox(inbox.clone());
    Desk {
        log,
        inbox,
        router: admin.router(),
    }
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Value, axum::http::HeaderMap) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, value, parts.headers)
}

async fn get(desk: &Desk, uri: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(&desk.router, "GET", uri, Some(TOKEN)).await;
    (status, body)
}

async fn post(desk: &Desk, uri: &str) -> (StatusCode, Value) {
    let (status, body, _) = call(&desk.router, "POST", uri, Some(TOKEN)).await;
    (status, body)
}

fn at(seconds: u64) -> SystemTime {
    // 2026-12-01T00:00:00Z plus `seconds`.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200 + seconds)
}

fn record(outcome: LoggedOutcome, seconds: u64, process: &str, source: Option<&str>) -> LoggedDelivery {
    let mut r = LoggedDelivery::new(
        DeliveryId::new_random(),
        at(seconds),
        EnvironmentId::new(if (seconds / 60) % 2 == 0 {
            "production"
        } else {
            "staging"
        }),
        process.parse().unwrap(),
        outcome,
    );
    r.source = source.map(|s| s.parse().unwrap());
    r.status = Some(202);
    r
}

/// A kept start in the inbox and its record in the log, with `outcome`.
async fn kept(desk: &Desk, outcome: LoggedOutcome) -> DeliveryId {
    let deployment = Deployment::new(
        ORDERS.parse().unwrap(),
        VersionTag::Released(1),
        EnvironmentId::new("production"),
        StartForm::default(),
    );
    let id = DeliveryId::new_random();
    let start = KeptStart::new(id, StartCommand::new(&deployment, 1, Default::default()), None);
    assert_eq!(desk.inbox.keep(start, 100).await.unwrap(), Keeping::Kept);
    if outcome == LoggedOutcome::Dead {
        let claimed = desk
            .inbox
            .claim(SystemTime::now(), Duration::from_secs(60), 100)
            .await
            .unwrap();
        let mine = claimed.iter().find(|c| c.start.id == id).unwrap();
        assert!(desk.inbox.bury(mine, "refused").await.unwrap());
    }
    let mut r = LoggedDelivery::new(
        id,
        SystemTime::now(),
        EnvironmentId::new("production"),
        ORDERS.parse().unwrap(),
        outcome,
    );
    r.status = Some(202);
    desk.log.append(&[r]).await.unwrap();
    id
}

#[tokio::test]
async fn every_filter_narrows_the_list_and_a_cursor_walks_every_page_once() {
    let desk = desk();
    let mut records = Vec::new();
    for n in 0..30 {
        let outcome = [
            LoggedOutcome::Started,
            LoggedOutcome::Refused,
            LoggedOutcome::Ignored,
        ][n % 3];
        let process = if n < 20 { ORDERS } else { REFUNDS };
        let source = if n % 5 == 0 { None } else { Some("github-orders") };
        records.push(record(outcome, n as u64 * 60, process, source));
    }
    desk.log.append(&records).await.unwrap();

    let count = |uri: String| {
        let desk = &desk;
        async move {
            let (status, body) = get(desk, &uri).await;
            assert_eq!(status, 200, "{uri}: {body}");
            body["deliveries"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("/api/v1/deliveries?limit=500".into()).await, 30);
    assert_eq!(
        count("/api/v1/deliveries?status=refused&limit=500".into()).await,
        10
    );
    assert_eq!(
        count("/api/v1/deliveries?source=github-orders&limit=500".into()).await,
        24
    );
    assert_eq!(
        count(format!("/api/v1/deliveries?process={REFUNDS}&limit=500")).await,
        10
    );
    assert_eq!(
        count("/api/v1/deliveries?environment=staging&limit=500".into()).await,
        15
    );
    assert_eq!(
        count("/api/v1/deliveries?since=2026-12-01T00:10:00Z&limit=500".into()).await,
        20
    );
    assert_eq!(
        count("/api/v1/deliveries?until=2026-12-01T00:10:00Z&limit=500".into()).await,
        10
    );
    assert_eq!(
        count("/api/v1/deliveries?status=started&source=github-orders&since=2026-12-01T00:05:00Z&until=2026-12-01T00:20:00Z".into()).await,
        4
    );

    // Newest first, seven at a time, each once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/deliveries?limit=7".to_owned();
    loop {
        let (status, body) = get(&desk, &uri).await;
        assert_eq!(status, 200);
        seen.extend(
            body["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        match body["cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/deliveries?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = records.iter().rev().map(|r| r.id.to_string()).collect();
    assert_eq!(seen, newest_first);

    for bad in [
        "status=lost",
        "since=yesterday",
        "limit=0",
        "cursor=nope",
        "process=42",
    ] {
        let (status, body) = get(&desk, &format!("/api/v1/deliveries?{bad}")).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (400, Some("invalid_filter")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_delivery_is_shown_whole_and_retry_and_discard_answer_for_each_outcome() {
    let desk = desk();
    let dead = kept(&desk, LoggedOutcome::Dead).await;
    let queued = kept(&desk, LoggedOutcome::Queued).await;
    let mut started = record(LoggedOutcome::Started, 0, ORDERS, Some("github-orders"));
    started.headers = Some(LoggedHeaders::from_pairs([("x-github-event", "push")]));
    started.payload = Some("{\"ref\": \"refs/heads/main\"}".into());
    let refused = record(LoggedOutcome::Refused, 1, ORDERS, None);
    desk.log
        .append(&[started.clone(), refused.clone()])
        .await
        .unwrap();

    let (status, shown) = get(&desk, &format!("/api/v1/deliveries/{}", started.id)).await;
    assert_eq!(status, 200);
    assert_eq!(shown["headers"], serde_json::json!([["x-github-event", "push"]]));
    assert_eq!(shown["payload"], "{\"ref\": \"refs/heads/main\"}");
    assert_eq!(shown["receivedAt"], "2026-12-01T00:00:00Z");
    let (status, missing) = get(&desk, &format!("/api/v1/deliveries/{}", DeliveryId::new_random())).await;
    assert_eq!(
        (status.as_u16(), missing["code"].as_str()),
        (404, Some("delivery_not_found"))
    );
    assert_eq!(get(&desk, "/api/v1/deliveries/not-an-id").await.0, 404);

    // Retry: only a dead delivery.
    for (id, outcome) in [
        (started.id, "started"),
        (refused.id, "refused"),
        (queued, "queued"),
    ] {
        let (status, body) = post(&desk, &format!("/api/v1/deliveries/{id}/retry")).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (409, Some("not_retryable")),
            "{outcome}"
        );
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .ends_with(&format!("this one is {outcome}"))
        );
    }
    let (status, body) = post(&desk, &format!("/api/v1/deliveries/{dead}/retry")).await;
    assert_eq!((status.as_u16(), body["outcome"].as_str()), (202, Some("queued")));
    assert_eq!(
        desk.inbox.get(&dead).await.unwrap().unwrap().status,
        DeliveryStatus::Queued
    );

    // Discard: a queued or dead one.
    for (id, outcome) in [(started.id, "started"), (refused.id, "refused")] {
        let (status, body) = post(&desk, &format!("/api/v1/deliveries/{id}/discard")).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (409, Some("not_discardable")),
            "{outcome}"
        );
    }
    let (status, body) = post(&desk, &format!("/api/v1/deliveries/{queued}/discard")).await;
    assert_eq!(
        (status.as_u16(), body["outcome"].as_str()),
        (200, Some("discarded"))
    );
    let (status, body) = post(&desk, &format!("/api/v1/deliveries/{queued}/discard")).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (409, Some("not_discardable")),
        "discarded twice"
    );
    let (status, body) = post(&desk, &format!("/api/v1/deliveries/{queued}/retry")).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (409, Some("not_retryable")),
        "a discarded one"
    );
    assert_eq!(
        desk.inbox.get(&queued).await.unwrap().unwrap().status,
        DeliveryStatus::Discarded
    );
    let (_, listed) = get(&desk, "/api/v1/deliveries?status=discarded").await;
    assert_eq!(listed["deliveries"][0]["id"], queued.to_string());
}

#[tokio::test]
async fn every_dead_delivery_a_filter_takes_is_retried_at_once() {
    let desk = desk();
    let first = kept(&desk, LoggedOutcome::Dead).await;
    let second = kept(&desk, LoggedOutcome::Dead).await;
    let (status, body) = post(&desk, "/api/v1/deliveries/retry?environment=staging").await;
    assert_eq!((status.as_u16(), body["retried"].as_u64()), (202, Some(0)));
    let (status, body) = post(&desk, "/api/v1/deliveries/retry?environment=production").await;
    assert_eq!((status.as_u16(), body["retried"].as_u64()), (202, Some(2)));
    for id in [first, second] {
        assert_eq!(
            desk.inbox.get(&id).await.unwrap().unwrap().status,
            DeliveryStatus::Queued
        );
    }
    let (_, listed) = get(&desk, "/api/v1/deliveries?status=queued").await;
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn without_an_inbox_nothing_is_retried_or_discarded() {
    let log = InMemoryDeliveryLog::new();
    let router = Admin::new(TOKEN.parse().unwrap(), Arc::new(log.clone())).router();
    let dead = record(LoggedOutcome::Dead, 0, ORDERS, None);
    log.append(std::slice::from_ref(&dead)).await.unwrap();
    let (status, body, _) = call(
        &router,
        "POST",
        &format!("/api/v1/deliveries/{}/retry", dead.id),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (409, Some("not_retryable"))
    );
}

#[tokio::test]
async fn the_api_is_refused_without_the_token_and_rate_limits_a_guesser() {
    let desk = desk();
    let (status, body, headers) = call(&desk.router, "GET", "/api/v1/deliveries", None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (401, Some("missing_admin_token"))
    );
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"process-webhook admin\""
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    // A token differing in its first or its last character alike.
    let first = format!("b{}", &TOKEN[1..]);
    let last = format!("{}t", &TOKEN[..TOKEN.len() - 1]);
    for wrong in [first.as_str(), last.as_str(), "", "short"] {
        let (status, body, _) = call(&desk.router, "GET", "/api/v1/sources", Some(wrong)).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (401, Some("invalid_admin_token")),
            "{wrong}"
        );
        assert!(!body.to_string().contains(TOKEN));
    }
    for _ in 4..Admin::FAILURES_PER_MINUTE {
        assert_eq!(
            call(&desk.router, "POST", "/api/v1/deliveries/retry", Some("guess"))
                .await
                .0,
            401
        );
    }
    let (status, body, headers) = call(&desk.router, "GET", "/api/v1/deliveries", Some(TOKEN)).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (429, Some("too_many_failures"))
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=61).contains(&wait));
    // The document describing the API needs no token.
    let (status, document, _) = call(&desk.router, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let codes = document["components"]["schemas"]["Problem"]["properties"]["code"]["enum"].clone();
    let table: Vec<&str> = AdminError::TABLE.iter().map(|row| row.0).collect();
    assert_eq!(codes, serde_json::json!(table));
    for path in [
        "/api/v1/deliveries",
        "/api/v1/deliveries/{id}",
        "/api/v1/deliveries/{id}/retry",
        "/api/v1/deliveries/{id}/discard",
        "/api/v1/deliveries/retry",
        "/api/v1/sources",
    ] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn the_sources_overview_counts_the_last_day_per_source_and_process() {
    let desk = desk();
    let now = SystemTime::now();
    let mut records = Vec::new();
    for (n, outcome) in [
        LoggedOutcome::Started,
        LoggedOutcome::Started,
        LoggedOutcome::Refused,
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = LoggedDelivery::new(
            DeliveryId::new_random(),
            now - Duration::from_secs(60 * (n as u64 + 1)),
            EnvironmentId::new("production"),
            ORDERS.parse().unwrap(),
            outcome,
        );
        r.source = Some("github-orders".parse().unwrap());
        r.code = (outcome == LoggedOutcome::Refused).then(|| "invalid_payload".to_owned());
        records.push(r);
    }
    // Two days old: not counted.
    let mut old = LoggedDelivery::new(
        DeliveryId::new_random(),
        now - Duration::from_secs(2 * 86_400),
        EnvironmentId::new("production"),
        ORDERS.parse().unwrap(),
        LoggedOutcome::Refused,
    );
    old.source = Some("github-orders".parse().unwrap());
    records.push(old);
    desk.log.append(&records).await.unwrap();
    let (status, body) = get(&desk, "/api/v1/sources").await;
    assert_eq!(status, 200);
    let sources = body["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{body}");
    assert_eq!(sources[0]["source"], "github-orders");
    assert_eq!(
        sources[0]["counts"],
        serde_json::json!({"refused": 1, "started": 2})
    );
    assert_eq!(sources[0]["lastFailure"]["id"], records[2].id.to_string());
    assert_eq!(sources[0]["lastFailure"]["code"], "invalid_payload");
}

#[tokio::test]
async fn the_admin_apis_document_is_valid_openapi_3_1_by_openapi_spec_validator() {
    let Some(python) = crate::common::server_setting(
        "OPENAPI_PYTHON",
        "OPENAPI_PYTHON=target/tools/openapi-venv/bin/python",
    ) else {
        return;
    };
    let (status, document, _) = call(&desk().router, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    crate::openapi::assert_valid_openapi(&python, &document);
}
