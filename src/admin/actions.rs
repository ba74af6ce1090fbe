//! What an operator does to a delivery, the same from the API and the
//! console: retry a dead one, discard a queued or dead one, retry every
//! dead one a filter takes. The inbox decides; the log records it.

use std::time::SystemTime;

use std::sync::Arc;

use super::error::AdminError;
use crate::delivery_log::DeliveryLog;
use crate::delivery_log::{Attempt, LogQuery, LoggedDelivery, LoggedOutcome};
use crate::id::DeliveryId;
use crate::inbox::Inbox;
use crate::inbox::{DeliveryStatus, InboxQuery};

/// What an operator does to deliveries, without the admin API's HTTP: read
/// them from the delivery log, retry and discard kept starts in the inbox
/// (each recorded in the log). [`Admin`](crate::Admin) serves it over
/// HTTP; `webhook_server admin deliveries` runs it from a shell.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let operator = Operator::new(Arc::new(InMemoryDeliveryLog::new())).with_inbox(Arc::new(InMemoryInbox::new()));
/// let unknown = DeliveryId::new_random();
/// assert_eq!(operator.retry(&unknown).await.unwrap_err().code(), "delivery_not_found");
/// # });
/// ```
#[derive(Clone)]
pub struct Operator {
    pub(crate) log: Arc<dyn DeliveryLog>,
    pub(crate) inbox: Option<Arc<dyn Inbox>>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("inbox", &self.inbox.is_some())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// An operator of the deliveries in `log` (without an inbox, every
    /// retry and discard is refused).
    pub fn new(log: Arc<dyn DeliveryLog>) -> Self {
        Self { log, inbox: None }
    }

    /// Retries and discards the kept starts of `inbox`.
    pub fn with_inbox(mut self, inbox: Arc<dyn Inbox>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// The delivery log's records `query` asks for.
    ///
    /// # Errors
    ///
    /// [`AdminError::Unavailable`] when the log cannot answer.
    pub async fn page(&self, query: &LogQuery) -> Result<crate::delivery_log::LogPage, AdminError> {
        Ok(self.log.page(query).await?)
    }

    /// The record of `id` (text, as a URL has it), or `404`.
    pub(crate) async fn delivery_at(&self, id: &str) -> Result<LoggedDelivery, AdminError> {
        let id: DeliveryId = id.parse().map_err(|_| AdminError::NotFound)?;
        self.delivery(&id).await
    }

    /// The delivery log's record of `id`.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] when the log does not hold it;
    /// [`AdminError::Unavailable`] when the log cannot answer.
    pub async fn delivery(&self, id: &DeliveryId) -> Result<LoggedDelivery, AdminError> {
        self.log.read(id).await?.ok_or(AdminError::NotFound)
    }

    /// Makes the dead delivery `id` queued again (the dispatcher starts
    /// it), and records that in the log.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotRetryable`] for a delivery that is not dead (or
    /// without an inbox), [`AdminError::NotFound`], [`AdminError::Unavailable`].
    pub async fn retry(&self, id: &DeliveryId) -> Result<LoggedDelivery, AdminError> {
        let record = self.delivery(id).await?;
        let refused = || AdminError::NotRetryable {
            outcome: record.outcome.as_str().to_owned(),
        };
        let inbox = self.inbox.as_ref().ok_or_else(refused)?;
        if !inbox.retry(&record.id).await? {
            return Err(refused());
        }
        Ok(self
            .note(record, LoggedOutcome::Queued, "retried by an operator")
            .await)
    }

    /// Discards the queued or dead delivery `id`, and records that in the
    /// log.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotDiscardable`] for a delivery that is neither queued
    /// nor dead (or without an inbox), [`AdminError::NotFound`],
    /// [`AdminError::Unavailable`].
    pub async fn discard(&self, id: &DeliveryId) -> Result<LoggedDelivery, AdminError> {
        let record = self.delivery(id).await?;
        let refused = || AdminError::NotDiscardable {
            outcome: record.outcome.as_str().to_owned(),
        };
        let inbox = self.inbox.as_ref().ok_or_else(refused)?;
        if !inbox.discard(&record.id).await? {
            return Err(refused());
        }
        Ok(self
            .note(record, LoggedOutcome::Discarded, "discarded by an operator")
            .await)
    }

    /// Retries every dead kept start `query` takes (its environment,
    /// source, process and time filters; its status, page and limit aside):
    /// how many were retried.
    ///
    /// # Errors
    ///
    /// [`AdminError::Unavailable`] when the inbox cannot answer.
    pub async fn retry_dead(&self, query: &LogQuery) -> Result<u64, AdminError> {
        let Some(inbox) = &self.inbox else { return Ok(0) };
        let mut dead = InboxQuery::default().with_status(DeliveryStatus::Dead);
        dead.environment = query.environment.clone();
        dead.source = query.source.clone();
        let mut retried = 0;
        for delivery in inbox.list(&dead).await? {
            let taken = query.process.is_none_or(|p| p == delivery.process)
                && query.since.is_none_or(|t| delivery.kept_at >= t)
                && query.until.is_none_or(|t| delivery.kept_at < t);
            if taken && inbox.retry(&delivery.id).await? {
                retried += 1;
                if let Ok(Some(record)) = self.log.read(&delivery.id).await {
                    self.note(record, LoggedOutcome::Queued, "retried by an operator")
                        .await;
                }
            }
        }
        Ok(retried)
    }

    pub(crate) async fn retry_at(&self, id: &str) -> Result<LoggedDelivery, AdminError> {
        self.retry(&id.parse().map_err(|_| AdminError::NotFound)?).await
    }

    pub(crate) async fn discard_at(&self, id: &str) -> Result<LoggedDelivery, AdminError> {
        self.discard(&id.parse().map_err(|_| AdminError::NotFound)?).await
    }

    /// Records what an operator did to `record` (a log that fails to
    /// record it is logged: the inbox already did it).
    async fn note(&self, mut record: LoggedDelivery, outcome: LoggedOutcome, what: &str) -> LoggedDelivery {
        let now = SystemTime::now();
        let mut change = LoggedDelivery::new(
            record.id,
            record.received_at,
            record.environment.clone(),
            record.process,
            outcome,
        );
        change.updated_at = now.max(record.updated_at);
        change
            .attempts
            .push(Attempt::new(now, outcome, Some(what.to_owned())));
        if let Err(error) = self.log.append(std::slice::from_ref(&change)).await {
            tracing::warn!(target: "process_webhook", delivery = %record.id, error = %crate::observe::chain(&error), "the delivery log could not record an operator's action");
        }
        record.merge(change);
        record
    }
}
