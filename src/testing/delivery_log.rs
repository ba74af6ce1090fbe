//! The conformance suite of the delivery log port.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::delivery_log::{Attempt, DeliveryLog, LogQuery, LoggedDelivery, LoggedOutcome};
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::source::SourceId;

/// Checks a [`DeliveryLog`] against its contract: records kept and read
/// back whole, records of one id merged (the later outcome winning, in
/// either order, within one batch and across batches, attempts appended),
/// the newest-first list with each filter and a cursor over several pages,
/// the summary per source and process, and the purge by age. It writes
/// records in the environment `log-conformance-{random}`, received in 1970
/// (so that its purge removes only its own); a log that keeps fewer than 50
/// records fails it.
pub async fn check_delivery_log<L: DeliveryLog + ?Sized>(log: &L) {
    let environment = EnvironmentId::new(format!("log-conformance-{}", DeliveryId::new_random()));
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let other: ProcessUuid = "0f6d1c2a-1b9e-4e0e-9a57-1c1e2f3a4b5c".parse().unwrap();
    let github = SourceId::new("github-orders").unwrap();
    let base = UNIX_EPOCH + Duration::from_secs(1_000 + u64::from(rand_u16()));
    let at = |n: u64| base + Duration::from_millis(n);
    let scope = LogQuery::newest(100).with_environment(environment.clone());

    // A call's record, read back whole.
    let mut refused = LoggedDelivery::new(
        DeliveryId::new_random(),
        at(1),
        environment.clone(),
        process,
        LoggedOutcome::Refused,
    );
    refused.version = Some(3);
    refused.source = Some(github.clone());
    refused.sender_id = Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into());
    refused.event = Some("push".into());
    refused.status = Some(422);
    refused.code = Some("missing_mandatory_fields".into());
    refused.problem = Some(
        serde_json::json!({"code": "missing_mandatory_fields", "violations": [{"field": "orderNumber"}]}),
    );
    refused.duration = Some(Duration::from_micros(1_234));
    refused.headers = Some(crate::delivery_log::LoggedHeaders::from_pairs([(
        "x-github-event",
        "push",
    )]));
    refused.payload = Some("{\"zen\": \"<script>alert(1)</script>\"}".into());
    log.append(std::slice::from_ref(&refused)).await.unwrap();
    assert_eq!(
        log.read(&refused.id).await.unwrap().as_ref(),
        Some(&refused),
        "a record reads back whole"
    );
    assert_eq!(
        log.read(&DeliveryId::new_random()).await.unwrap(),
        None,
        "an unknown id is Ok(None)"
    );

    // A kept start: the dispatch's record arrives before the call's, in one batch.
    let kept = DeliveryId::new_random();
    let mut call = LoggedDelivery::new(kept, at(2), environment.clone(), process, LoggedOutcome::Queued);
    call.status = Some(202);
    call.payload = Some("{}".into());
    let mut started = LoggedDelivery::new(kept, at(2), environment.clone(), process, LoggedOutcome::Started);
    started.updated_at = at(10);
    started.instance = Some(InstanceId::new("instance-1"));
    started
        .attempts
        .push(Attempt::new(at(10), LoggedOutcome::Started, None));
    log.append(&[started.clone(), call.clone()]).await.unwrap();
    let read = log.read(&kept).await.unwrap().unwrap();
    assert_eq!(
        read.outcome,
        LoggedOutcome::Started,
        "the later outcome wins within a batch"
    );
    assert_eq!(read.instance, Some(InstanceId::new("instance-1")));
    assert_eq!(
        (read.status, read.payload.as_deref()),
        (Some(202), Some("{}")),
        "the call's side is kept"
    );
    // Across batches: a failed attempt, then a later start.
    let dead = DeliveryId::new_random();
    let mut queued = LoggedDelivery::new(dead, at(3), environment.clone(), other, LoggedOutcome::Queued);
    queued.status = Some(202);
    log.append(&[queued]).await.unwrap();
    let mut buried = LoggedDelivery::new(dead, at(3), environment.clone(), other, LoggedOutcome::Dead);
    buried.updated_at = at(20);
    buried.attempts.push(Attempt::new(
        at(20),
        LoggedOutcome::Dead,
        Some("refused: no such definition".into()),
    ));
    log.append(&[buried]).await.unwrap();
    let mut retried = LoggedDelivery::new(dead, at(3), environment.clone(), other, LoggedOutcome::Started);
    retried.updated_at = at(30);
    retried.instance = Some(InstanceId::new("instance-2"));
    retried
        .attempts
        .push(Attempt::new(at(30), LoggedOutcome::Started, None));
    log.append(&[retried]).await.unwrap();
    let read = log.read(&dead).await.unwrap().unwrap();
    assert_eq!(read.outcome, LoggedOutcome::Started);
    assert_eq!(
        read.attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [LoggedOutcome::Dead, LoggedOutcome::Started],
        "attempts are appended, oldest first"
    );
    assert_eq!(
        read.attempts[0].error.as_deref(),
        Some("refused: no such definition")
    );
    assert_eq!(read.status, Some(202), "an attempt keeps the call's status");

    // 40 more, then the list: newest first, filters, pages.
    let more: Vec<LoggedDelivery> = (0..40)
        .map(|n| {
            let outcome = if n % 4 == 0 {
                LoggedOutcome::Ignored
            } else {
                LoggedOutcome::Started
            };
            let mut r = LoggedDelivery::new(
                DeliveryId::new_random(),
                at(100 + n),
                environment.clone(),
                process,
                outcome,
            );
            r.source = Some(github.clone());
            r
        })
        .collect();
    log.append(&more).await.unwrap();
    let all = log.page(&scope).await.unwrap();
    assert_eq!(all.deliveries.len(), 43);
    assert_eq!(all.next, None);
    assert!(
        all.deliveries
            .windows(2)
            .all(|w| w[0].received_at >= w[1].received_at),
        "newest first"
    );
    assert_eq!(all.deliveries[0].received_at, at(139));
    let mut seen = Vec::new();
    let mut query = LogQuery {
        limit: 7,
        ..scope.clone()
    };
    loop {
        let page = log.page(&query).await.unwrap();
        assert!(page.deliveries.len() <= 7);
        seen.extend(page.deliveries.iter().map(|r| r.id));
        match page.next {
            Some(cursor) => query = query.clone().after(cursor),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.deliveries.iter().map(|r| r.id).collect::<Vec<_>>(),
        "the pages hold each record once, in order"
    );
    let count = |q: LogQuery| async move { log.page(&q).await.unwrap().deliveries.len() };
    assert_eq!(
        count(scope.clone().with_outcome(LoggedOutcome::Ignored)).await,
        10
    );
    assert_eq!(count(scope.clone().with_outcome(LoggedOutcome::Refused)).await, 1);
    assert_eq!(count(scope.clone().with_source(github.clone())).await, 41);
    assert_eq!(count(scope.clone().with_process(other)).await, 1);
    assert_eq!(
        count(scope.clone().received(Some(at(100)), Some(at(110)))).await,
        10
    );
    assert_eq!(count(scope.clone().received(None, Some(at(100)))).await, 3);
    assert_eq!(
        count(LogQuery::newest(100).with_environment(EnvironmentId::new("no-such-environment-here"))).await,
        0
    );

    // The summary per source and process.
    let summaries = log.summarize(base).await.unwrap();
    let ours = summaries
        .iter()
        .find(|s| s.source.as_ref() == Some(&github) && s.process == process)
        .expect("a summary of the source and process");
    assert!(
        ours.counts
            .get(&LoggedOutcome::Ignored)
            .copied()
            .unwrap_or_default()
            >= 10
    );
    assert!(ours.last_received_at >= at(139));
    let failure = ours.last_failure.as_ref().expect("the last failure");
    assert!(failure.received_at >= at(1));
    assert!(matches!(
        failure.outcome,
        LoggedOutcome::Refused | LoggedOutcome::Dead
    ));

    // The purge by age, in batches.
    let before = at(105);
    let mut removed = 0;
    loop {
        let n = log.purge(before, 2).await.unwrap();
        assert!(n <= 2, "a purge removes at most its batch");
        if n == 0 {
            break;
        }
        removed += n;
    }
    assert!(
        removed >= 8,
        "the 8 records before the bound are purged ({removed})"
    );
    assert_eq!(count(scope.clone()).await, 35);
    assert_eq!(log.read(&refused.id).await.unwrap(), None);
    let _ = SystemTime::now();
}

/// A small random number: each run of the suite writes at its own times.
fn rand_u16() -> u16 {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).unwrap_or_default();
    u16::from_le_bytes(bytes)
}
