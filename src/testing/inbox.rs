//! The conformance suite of the inbox port.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::engine::StartCommand;
use crate::form::{FieldKind, FieldSpec, StartForm};
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::inbox::{DeliveryStatus, Inbox, InboxQuery, Keeping, KeptStart};
use crate::model::{Deployment, VersionTag};
use crate::store::IdempotencyKey;

/// Checks an [`Inbox`] against its contract: keeping (and refusing past
/// the limit), claiming with a lease (one claimer at a time, again once the
/// lease ends), completing, rescheduling and burying only with the newest
/// lease, retrying and discarding, and the look-ups. Run it on an empty
/// inbox (or one no other test uses): it keeps starts in the environment
/// `inbox-conformance-{random}`.
pub async fn check_inbox<I: Inbox + ?Sized>(inbox: &I) {
    use std::time::SystemTime;
    let environment = EnvironmentId::new(format!("inbox-conformance-{}", DeliveryId::new_random()));
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let deployment = Deployment::new(
        process,
        VersionTag::Released(2),
        environment.clone(),
        StartForm::new([FieldSpec::mandatory("orderNumber", FieldKind::Text)]),
    );
    let command = |n: u32| {
        let mut variables = Map::new();
        variables.insert("orderNumber".into(), Value::from(n.to_string()));
        StartCommand::new(&deployment, 2, variables)
    };
    let key = IdempotencyKey::new(environment.clone(), process, "order-1");
    let lease = Duration::from_secs(30);
    let second = Duration::from_secs(1);
    // Far enough from now that no other start of a shared inbox is due.
    let now = SystemTime::now() + Duration::from_secs(3_600);

    let first = DeliveryId::new_random();
    let kept = KeptStart::new(first, command(1), Some(key.clone()));
    assert_eq!(
        inbox.keep(kept, 2).await.unwrap(),
        Keeping::Kept,
        "a start is kept"
    );
    let got = inbox
        .get(&first)
        .await
        .unwrap()
        .expect("a kept start is found by its id");
    assert_eq!(got.status, DeliveryStatus::Queued, "a kept start is queued");
    assert_eq!((got.process, got.version, got.attempts), (process, 2, 0));
    assert_eq!(got.environment, environment);
    assert_eq!(
        got.caller_key.as_deref(),
        Some("order-1"),
        "the caller's key is kept"
    );
    assert_eq!(
        got.command.variables,
        command(1).variables,
        "the variables are kept"
    );
    assert_eq!(got.command.deployment, deployment.id(), "the deployment is kept");
    assert_eq!(
        inbox.find_by_key(&key).await.unwrap().map(|d| d.id),
        Some(first),
        "a kept start is found by its caller key"
    );
    let other_key = IdempotencyKey::new(environment.clone(), process, "order-2");
    assert!(
        inbox.find_by_key(&other_key).await.unwrap().is_none(),
        "another key finds nothing"
    );
    assert!(
        inbox.get(&DeliveryId::new_random()).await.unwrap().is_none(),
        "an unknown id is Ok(None)"
    );

    let second_id = DeliveryId::new_random();
    assert_eq!(
        inbox
            .keep(KeptStart::new(second_id, command(2), None), 2)
            .await
            .unwrap(),
        Keeping::Kept
    );
    let third = KeptStart::new(DeliveryId::new_random(), command(3), None);
    assert_eq!(
        inbox.keep(third, 2).await.unwrap(),
        Keeping::Full,
        "the limit counts an environment's kept starts"
    );
    let listed = inbox
        .list(&InboxQuery::default().with_environment(environment.clone()))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [second_id, first],
        "newest first, the full one not kept"
    );

    let counts = inbox.counts().await.unwrap();
    assert!(counts.queued >= 2, "both kept starts are counted queued");
    let first_kept = inbox.get(&first).await.unwrap().unwrap().kept_at;
    assert!(
        counts.oldest_queued.is_some_and(|oldest| oldest <= first_kept),
        "the oldest queued start is no younger than the first kept"
    );
    let (queued_before, dead_before) = (counts.queued, counts.dead);

    // Claims lease: one claimer at a time, again once the lease ends.
    let claimed = inbox.claim(now, lease, 10).await.unwrap();
    let mine: Vec<_> = claimed
        .iter()
        .filter(|c| c.start.command.environment == environment)
        .collect();
    assert_eq!(mine.len(), 2, "both due starts are claimed");
    assert!(
        mine.iter().all(|c| c.attempts == 0),
        "a first claim counts no earlier attempt"
    );
    let again = inbox.claim(now + second, lease, 10).await.unwrap();
    assert!(
        again.iter().all(|c| c.start.command.environment != environment),
        "a leased start is not claimed again"
    );
    let taken = inbox.claim(now + lease + second, lease, 10).await.unwrap();
    let taken: Vec<_> = taken
        .into_iter()
        .filter(|c| c.start.command.environment == environment)
        .collect();
    assert_eq!(taken.len(), 2, "a start whose lease ended is claimed again");
    assert!(
        taken.iter().all(|c| c.attempts == 1),
        "a second claim counts the first attempt"
    );
    let stale = mine.iter().find(|c| c.start.id == first).unwrap();
    assert!(
        !inbox.complete(stale, &InstanceId::new("stale")).await.unwrap(),
        "an old lease cannot complete a start claimed again"
    );
    let fresh_first = taken.iter().find(|c| c.start.id == first).unwrap();
    let fresh_second = taken.iter().find(|c| c.start.id == second_id).unwrap();

    // Rescheduled: due again later, with its error.
    let later = now + Duration::from_secs(600);
    assert!(
        inbox
            .reschedule(fresh_second, later, "engine away")
            .await
            .unwrap()
    );
    let got = inbox.get(&second_id).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.last_error.as_deref()),
        (DeliveryStatus::Queued, Some("engine away"))
    );
    assert!(
        !inbox.reschedule(fresh_second, later, "twice").await.unwrap(),
        "a rescheduled start's lease is over"
    );
    // Completed: started, with its instance, and no longer claimed.
    assert!(
        inbox
            .complete(fresh_first, &InstanceId::new("instance-1"))
            .await
            .unwrap()
    );
    let got = inbox.get(&first).await.unwrap().unwrap();
    assert_eq!(
        got.status,
        DeliveryStatus::Started,
        "a completed start is started"
    );
    assert_eq!(got.instance, Some(InstanceId::new("instance-1")));
    assert!(
        !inbox
            .complete(fresh_first, &InstanceId::new("twice"))
            .await
            .unwrap(),
        "a started start is not completed twice"
    );
    assert!(
        !inbox.retry(&first).await.unwrap(),
        "a started start is not retried"
    );
    assert!(
        !inbox.discard(&first).await.unwrap(),
        "a started start is not discarded"
    );

    let early = inbox.claim(later - second, lease, 10).await.unwrap();
    assert!(
        early.iter().all(|c| c.start.id != second_id),
        "a rescheduled start is not due before its time"
    );

    // Buried: dead until retried.
    let due = inbox.claim(later, lease, 10).await.unwrap();
    let due = due
        .iter()
        .find(|c| c.start.id == second_id)
        .expect("due at its time");
    assert_eq!(due.attempts, 2);
    assert!(inbox.bury(due, "refused: no such definition").await.unwrap());
    let got = inbox.get(&second_id).await.unwrap().unwrap();
    assert_eq!(got.status, DeliveryStatus::Dead, "a buried start is dead");
    assert_eq!(got.last_error.as_deref(), Some("refused: no such definition"));
    let dead = inbox
        .list(
            &InboxQuery::default()
                .with_environment(environment.clone())
                .with_status(DeliveryStatus::Dead),
        )
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|d| d.id).collect::<Vec<_>>(),
        [second_id],
        "the status filters"
    );
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.dead),
        (queued_before - 2, dead_before + 1),
        "one started, one dead: counted so"
    );
    let after = inbox.claim(later + lease * 3, lease, 10).await.unwrap();
    assert!(
        after.iter().all(|c| c.start.id != second_id),
        "a dead start is not claimed"
    );
    assert!(inbox.retry(&second_id).await.unwrap(), "a dead start is retried");
    assert!(
        !inbox.retry(&second_id).await.unwrap(),
        "a queued start is not retried"
    );
    assert_eq!(
        inbox.get(&second_id).await.unwrap().unwrap().status,
        DeliveryStatus::Queued
    );
    let retried = inbox.claim(SystemTime::now() + second, lease, 10).await.unwrap();
    assert!(
        retried.iter().any(|c| c.start.id == second_id),
        "a retried start is due at once"
    );

    // Discarded: no longer held, so the limit has room again.
    assert!(
        inbox.discard(&second_id).await.unwrap(),
        "a queued start is discarded"
    );
    assert_eq!(
        inbox.get(&second_id).await.unwrap().unwrap().status,
        DeliveryStatus::Discarded
    );
    assert!(
        !inbox.discard(&second_id).await.unwrap(),
        "a discarded start is not discarded twice"
    );
    assert!(
        !inbox.retry(&DeliveryId::new_random()).await.unwrap(),
        "an unknown start is not retried"
    );
    let room = KeptStart::new(DeliveryId::new_random(), command(4), None);
    assert_eq!(
        inbox.keep(room, 2).await.unwrap(),
        Keeping::Kept,
        "finished starts free the limit"
    );
    let limited = inbox
        .list(&InboxQuery::default().with_environment(environment).with_limit(1))
        .await
        .unwrap();
    assert_eq!(limited.len(), 1, "the limit of a list holds");
}
