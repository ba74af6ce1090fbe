//! The idempotency keys' writes on [`SqliteStore`](super::SqliteStore),
//! in groups: every start writes twice (its reservation, then its
//! outcome), SQLite has one writer, and a statement per write (each a trip
//! to the connection's thread) made the writer the bottleneck. One task,
//! on a thread of its own, takes the writes waiting at once (up to
//! [`GROUP`]) and runs each kind of them as one statement on the writing
//! connection; it answers each write only after its statement is
//! committed: nothing is answered that a crash could take back.

use std::time::Duration;

use sqlx::Row as _;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use tokio::sync::{mpsc, oneshot};

use super::now;
use crate::idempotency::{IdempotencyKey, PayloadFingerprint};
use crate::store::StoreError;

/// The most writes one group carries.
const GROUP: usize = 128;

/// One write to the keys' table.
pub(super) enum KeyWrite {
    /// Inserts the key, or takes over an expired or abandoned one (or, with
    /// `held_for`, one in progress for the same fingerprint that long);
    /// answers the row that stopped it, if one did.
    Reserve {
        key: IdempotencyKey,
        fingerprint: PayloadFingerprint,
        held_for: Option<Duration>,
        rules: Rules,
        reply: oneshot::Sender<Result<Option<Option<SqliteRow>>, sqlx::Error>>,
    },
    /// Records the outcome of a reserved key; answers the rows changed.
    Complete {
        key: IdempotencyKey,
        outcome: serde_json::Value,
        reply: oneshot::Sender<Result<u64, sqlx::Error>>,
    },
    /// Deletes a key still in progress.
    Release {
        key: IdempotencyKey,
        reply: oneshot::Sender<Result<u64, sqlx::Error>>,
    },
}

/// The rules a reservation follows: how long keys live and when an
/// unfinished reservation counts as abandoned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Rules {
    pub(super) ttl: Duration,
    pub(super) lease: Duration,
}

/// Starts the writer: it runs until every sender is dropped, on a thread
/// of its own (its own single-threaded runtime), so that a group is not
/// queued behind the host's tasks between its statements.
pub(super) fn spawn(write: SqlitePool) -> mpsc::Sender<KeyWrite> {
    let (sender, mut receiver) = mpsc::channel::<KeyWrite>(4 * GROUP);
    let writer = async move {
        let mut group = Vec::with_capacity(GROUP);
        while receiver.recv_many(&mut group, GROUP).await > 0 {
            run_group(&write, std::mem::take(&mut group)).await;
            group.reserve(GROUP);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let spawned = runtime.map(|runtime| {
        std::thread::Builder::new()
            .name("process-webhook-sqlite-keys".to_owned())
            .spawn(move || runtime.block_on(writer))
    });
    if let Err(error) | Ok(Err(error)) = spawned.as_ref().map(|s| s.as_ref().map(drop)) {
        // Without the thread every write answers that the writer stopped.
        tracing::error!(target: "process_webhook", error = %error, "could not start the SQLite keys' writer");
    }
    sender
}

/// A key as a map finds it among a group's rows.
type Scope = (String, uuid::Uuid, String);

fn scope(key: &IdempotencyKey) -> Scope {
    (
        key.environment().as_str().to_owned(),
        *key.process().as_uuid(),
        key.key().to_owned(),
    )
}

fn scope_of(row: &SqliteRow) -> Result<Scope, sqlx::Error> {
    Ok((
        row.try_get("environment")?,
        row.try_get("process")?,
        row.try_get("key")?,
    ))
}

/// What a reservation found: `None` when it reserved the key, else the row
/// that stopped it.
type Found = Option<Option<SqliteRow>>;

/// A group's writes, each answered once its statement is committed: the
/// outcomes first (one `UPDATE … FROM (VALUES …)`), then the releases (one
/// `DELETE`), then the reservations (one multi-row upsert, and one
/// `SELECT` of the rows that stopped some). Writes of one group were in
/// flight together, so any order of them is one their callers could have
/// seen. A takeover, a second reservation of a key in the same group, and
/// a reservation under other rules than the group's first run alone after
/// the rest.
async fn run_group(write: &SqlitePool, group: Vec<KeyWrite>) {
    let mut completes = Vec::new();
    let mut releases = Vec::new();
    let mut reserves: Reserves = Vec::new();
    let mut alone = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for write in group {
        match write {
            KeyWrite::Complete { key, outcome, reply } => completes.push((key, outcome, reply)),
            KeyWrite::Release { key, reply } => releases.push((key, reply)),
            KeyWrite::Reserve {
                key,
                fingerprint,
                held_for: None,
                rules,
                reply,
            } if reserves
                .first()
                .is_none_or(|first: &(_, _, Rules, _)| first.2 == rules)
                && seen.insert(scope(&key)) =>
            {
                reserves.push((key, fingerprint, rules, reply))
            }
            other => alone.push(other),
        }
    }
    let mut connection = match write.acquire().await {
        Ok(connection) => connection,
        Err(error) => return fail_all(completes, releases, reserves, alone, &error),
    };
    // Each kind is one statement, committed by itself (WAL: no sync), and
    // its writes are answered as soon as it is.
    match complete_all(&mut connection, &completes).await {
        Ok(completed) => {
            for (key, _, reply) in completes {
                let _ = reply.send(Ok(u64::from(completed.contains(&scope(&key)))));
            }
        }
        Err(error) => fail_all(completes, Vec::new(), Vec::new(), Vec::new(), &error),
    }
    match release_all(&mut connection, &releases).await {
        Ok(released) => {
            for (key, reply) in releases {
                let _ = reply.send(Ok(u64::from(released.contains(&scope(&key)))));
            }
        }
        Err(error) => fail_all(Vec::new(), releases, Vec::new(), Vec::new(), &error),
    }
    match reserve_all(&mut connection, &reserves).await {
        Ok(mut reserved) => {
            for (key, _, _, reply) in reserves {
                let _ = reply.send(Ok(reserved.remove(&scope(&key)).unwrap_or(Some(None))));
            }
        }
        Err(error) => fail_all(Vec::new(), Vec::new(), reserves, Vec::new(), &error),
    }
    for write in alone {
        if let KeyWrite::Reserve {
            key,
            fingerprint,
            held_for,
            rules,
            reply,
        } = write
        {
            let _ = reply.send(reserve(&mut connection, rules, &key, fingerprint, held_for).await);
        }
    }
}

type Completes = Vec<(
    IdempotencyKey,
    serde_json::Value,
    oneshot::Sender<Result<u64, sqlx::Error>>,
)>;
type Releases = Vec<(IdempotencyKey, oneshot::Sender<Result<u64, sqlx::Error>>)>;
type Reserves = Vec<(
    IdempotencyKey,
    PayloadFingerprint,
    Rules,
    oneshot::Sender<Result<Found, sqlx::Error>>,
)>;

/// Writes whose statement failed did not happen: each gets the error
/// (`sqlx::Error` is not `Clone`: its words).
fn fail_all(
    completes: Completes,
    releases: Releases,
    reserves: Reserves,
    alone: Vec<KeyWrite>,
    error: &sqlx::Error,
) {
    let copy = || sqlx::Error::Protocol(format!("the write did not commit: {error}"));
    for (_, _, reply) in completes {
        let _ = reply.send(Err(copy()));
    }
    for (_, reply) in releases {
        let _ = reply.send(Err(copy()));
    }
    for (_, _, _, reply) in reserves {
        let _ = reply.send(Err(copy()));
    }
    for write in alone {
        match write {
            KeyWrite::Reserve { reply, .. } => drop(reply.send(Err(copy()))),
            KeyWrite::Complete { reply, .. } | KeyWrite::Release { reply, .. } => {
                drop(reply.send(Err(copy())))
            }
        }
    }
}

/// The outcomes of `completes`, in one statement; the keys it completed.
async fn complete_all(
    connection: &mut SqliteConnection,
    completes: &Completes,
) -> Result<std::collections::HashSet<Scope>, sqlx::Error> {
    if completes.is_empty() {
        return Ok(Default::default());
    }
    let mut update =
        sqlx::QueryBuilder::<Sqlite>::new("UPDATE idempotency_keys SET outcome = v.column4 FROM (");
    update.push_values(completes, |mut row, (key, outcome, _)| {
        row.push_bind(key.environment().as_str().to_owned())
            .push_bind(*key.process().as_uuid())
            .push_bind(key.key().to_owned())
            .push_bind(outcome.clone());
    });
    update.push(
        ") AS v WHERE idempotency_keys.environment = v.column1 AND idempotency_keys.process = v.column2 \
         AND idempotency_keys.key = v.column3 AND idempotency_keys.outcome IS NULL \
         RETURNING idempotency_keys.environment, idempotency_keys.process, idempotency_keys.key",
    );
    let rows = update.build().fetch_all(&mut *connection).await?;
    rows.iter().map(scope_of).collect()
}

/// `releases` in one statement; the keys it deleted.
async fn release_all(
    connection: &mut SqliteConnection,
    releases: &Releases,
) -> Result<std::collections::HashSet<Scope>, sqlx::Error> {
    if releases.is_empty() {
        return Ok(Default::default());
    }
    let mut delete = sqlx::QueryBuilder::<Sqlite>::new(
        "DELETE FROM idempotency_keys WHERE outcome IS NULL AND (environment, process, key) IN (",
    );
    delete.push_values(releases, |mut row, (key, _)| {
        row.push_bind(key.environment().as_str().to_owned())
            .push_bind(*key.process().as_uuid())
            .push_bind(key.key().to_owned());
    });
    delete.push(") RETURNING environment, process, key");
    let rows = delete.build().fetch_all(&mut *connection).await?;
    rows.iter().map(scope_of).collect()
}

/// `reserves` (each key once) in one upsert, and the rows that stopped
/// some read in one `SELECT`: by key, what each found.
async fn reserve_all(
    connection: &mut SqliteConnection,
    reserves: &Reserves,
) -> Result<std::collections::HashMap<Scope, Found>, sqlx::Error> {
    let mut found = std::collections::HashMap::with_capacity(reserves.len());
    let Some((_, _, rules, _)) = reserves.first() else {
        return Ok(found);
    };
    let now = now();
    let mut upsert = sqlx::QueryBuilder::<Sqlite>::new(
        "INSERT INTO idempotency_keys AS k (environment, process, key, fingerprint, outcome, reserved_at) ",
    );
    upsert.push_values(reserves, |mut row, (key, fingerprint, _, _)| {
        row.push_bind(key.environment().as_str().to_owned())
            .push_bind(*key.process().as_uuid())
            .push_bind(key.key().to_owned())
            .push_bind(fingerprint.as_bytes().to_vec())
            .push("NULL")
            .push_bind(now);
    });
    // One set of rules for the statement: reservations under others (a
    // clone of the store with another lifetime) run alone.
    upsert
        .push(
            " ON CONFLICT (environment, process, key) DO UPDATE \
             SET fingerprint = excluded.fingerprint, outcome = NULL, reserved_at = excluded.reserved_at \
             WHERE k.reserved_at <= ",
        )
        .push_bind(now - rules.ttl.as_secs_f64())
        .push(" OR (k.outcome IS NULL AND k.reserved_at <= ")
        .push_bind(now - rules.lease.as_secs_f64())
        .push(") RETURNING environment, process, key");
    let taken = upsert.build().fetch_all(&mut *connection).await?;
    for row in &taken {
        found.insert(scope_of(row)?, None);
    }
    let stopped: Vec<_> = reserves
        .iter()
        .filter(|(key, ..)| !found.contains_key(&scope(key)))
        .collect();
    if stopped.is_empty() {
        return Ok(found);
    }
    let mut select = sqlx::QueryBuilder::<Sqlite>::new(
        "SELECT environment, process, key, fingerprint, outcome FROM idempotency_keys \
         WHERE (environment, process, key) IN (",
    );
    select.push_values(stopped, |mut row, (key, ..)| {
        row.push_bind(key.environment().as_str().to_owned())
            .push_bind(*key.process().as_uuid())
            .push_bind(key.key().to_owned());
    });
    select.push(")");
    for row in select.build().fetch_all(&mut *connection).await? {
        found.insert(scope_of(&row)?, Some(Some(row)));
    }
    Ok(found)
}

/// `None` when the key was reserved; else the row that stopped it (`None`
/// inside only if it vanished, which one writer rules out).
async fn reserve(
    connection: &mut SqliteConnection,
    rules: Rules,
    key: &IdempotencyKey,
    fingerprint: PayloadFingerprint,
    held_for: Option<Duration>,
) -> Result<Option<Option<SqliteRow>>, sqlx::Error> {
    let now = now();
    let taken = sqlx::query(
        "INSERT INTO idempotency_keys AS k (environment, process, key, fingerprint, outcome, reserved_at) \
         VALUES ($1, $2, $3, $4, NULL, $5) \
         ON CONFLICT (environment, process, key) DO UPDATE \
           SET fingerprint = excluded.fingerprint, outcome = NULL, reserved_at = excluded.reserved_at \
           WHERE k.reserved_at <= $6 \
              OR (k.outcome IS NULL AND k.reserved_at <= $7) \
              OR (k.outcome IS NULL AND k.fingerprint = excluded.fingerprint AND k.reserved_at <= $8) \
         RETURNING 1",
    )
    .bind(key.environment().as_str())
    .bind(*key.process().as_uuid())
    .bind(key.key())
    .bind(&fingerprint.as_bytes()[..])
    .bind(now)
    .bind(now - rules.ttl.as_secs_f64())
    .bind(now - rules.lease.as_secs_f64())
    .bind(held_for.map(|held_for| now - held_for.as_secs_f64()))
    .fetch_optional(&mut *connection)
    .await?;
    if taken.is_some() {
        return Ok(None);
    }
    sqlx::query(
        "SELECT fingerprint, outcome FROM idempotency_keys \
         WHERE environment = $1 AND process = $2 AND key = $3",
    )
    .bind(key.environment().as_str())
    .bind(*key.process().as_uuid())
    .bind(key.key())
    .fetch_optional(&mut *connection)
    .await
    .map(Some)
}

/// The writer has stopped (its store is being dropped).
pub(super) fn gone() -> StoreError {
    StoreError::new("sqlite: the idempotency keys' writer has stopped")
}
