//! A starter's delivery log: what a call hands it (one record per call
//! that passed authentication), and what the dispatcher hands it (one per
//! dispatch of a kept start). Without the `delivery-log` feature a starter
//! keeps no log, and what is here is never built upon.
#![cfg_attr(not(feature = "delivery-log"), allow(unused_imports, dead_code))]

use std::time::{Instant, SystemTime};

use crate::delivery_log::{Attempt, LoggedDelivery, LoggedHeaders, LoggedOutcome, redacted_payload};
use crate::error::WebhookError;
use crate::id::{DeliveryId, InstanceId};
use crate::inbox::KeptStart;
use crate::observe::Observed;
use crate::starter::WebhookStarter;

/// What the delivery log keeps of a call while it runs, gathered only when
/// the starter has a log.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    /// The request's headers, every credential left out.
    pub(crate) headers: LoggedHeaders,
    /// The sender's event.
    pub(crate) event: Option<String>,
    /// The deployed version the call was checked against.
    pub(crate) version: Option<u32>,
    /// The sender's delivery id or the caller's key.
    pub(crate) key: Option<String>,
}

impl WebhookStarter {
    /// Keeps a delivery log through `sink` (the sending end of a
    /// [`LogWriter`](crate::LogWriter)): one record for every call that
    /// passed authentication (its token, and the signature its environment
    /// or source requires), with its outcome, the request's headers less
    /// every credential ([`is_credential_header`](crate::is_credential_header)),
    /// and the payload as the sink's [`KeepPayloads`](crate::KeepPayloads)
    /// says; and one for every dispatch of a kept start. Calls refused
    /// before authentication are counted in the metrics, never logged.
    ///
    /// Writing never slows or fails a start: a record that finds the
    /// channel full is dropped and counted.
    #[cfg(feature = "delivery-log")]
    #[cfg_attr(docsrs, doc(cfg(feature = "delivery-log")))]
    pub fn with_delivery_log(mut self, sink: crate::delivery_log::LogSink) -> Self {
        std::sync::Arc::make_mut(&mut self.settings).log = Some(sink);
        self
    }

    /// The sink of this starter's delivery log, if it keeps one.
    #[cfg(feature = "delivery-log")]
    #[cfg_attr(docsrs, doc(cfg(feature = "delivery-log")))]
    pub fn delivery_log(&self) -> Option<&crate::delivery_log::LogSink> {
        self.settings.log.as_ref()
    }

    /// Whether this starter keeps a delivery log.
    pub(crate) fn logs_deliveries(&self) -> bool {
        #[cfg(feature = "delivery-log")]
        return self.settings.log.is_some();
        #[cfg(not(feature = "delivery-log"))]
        false
    }

    /// Hands the log the record of an answered call, if it passed
    /// authentication (a call refused before that is counted in the
    /// metrics, never logged, so that no one without a credential can fill
    /// the log).
    #[cfg_attr(not(feature = "delivery-log"), allow(unused_variables))]
    pub(crate) fn log_delivery(
        &self,
        observed: &mut Observed,
        answered: Answered<'_>,
        status: u16,
        started: Instant,
        body: &[u8],
    ) {
        #[cfg(feature = "delivery-log")]
        {
            let (Some(sink), Some(environment), Some(process), true) = (
                &self.settings.log,
                &observed.environment,
                observed.process,
                observed.authenticated,
            ) else {
                return;
            };
            // Moved, not copied: the call is answered.
            let Some(captured) = observed.captured.take() else {
                return;
            };
            let (id, outcome, instance) = match answered {
                Answered::Started { instance, replayed } => (
                    DeliveryId::new_random(),
                    if replayed {
                        LoggedOutcome::Replayed
                    } else {
                        LoggedOutcome::Started
                    },
                    Some(instance.clone()),
                ),
                Answered::Queued { id, replayed: false } => (id, LoggedOutcome::Queued, None),
                Answered::Queued { replayed: true, .. } => {
                    (DeliveryId::new_random(), LoggedOutcome::Replayed, None)
                }
                Answered::Ignored => (DeliveryId::new_random(), LoggedOutcome::Ignored, None),
                Answered::Challenge => (DeliveryId::new_random(), LoggedOutcome::Challenge, None),
                Answered::Refused(_) => (DeliveryId::new_random(), LoggedOutcome::Refused, None),
                Answered::NotADelivery => return,
            };
            let now = SystemTime::now();
            let elapsed = started.elapsed();
            let mut record = LoggedDelivery::new(id, now - elapsed, environment.clone(), process, outcome);
            record.version = captured.version;
            record.source = observed.source.clone();
            record.sender_id = captured.key;
            record.event = captured.event;
            record.status = Some(status);
            record.instance = instance;
            record.duration = Some(elapsed);
            record.headers = Some(captured.headers);
            if let Answered::Refused(error) = answered {
                record.code = Some(error.code().to_owned());
                record.problem = Some(error.to_problem_json());
            }
            if sink.payloads().keeps(outcome) && !body.is_empty() {
                record.payload = Some(redacted_payload(body));
            }
            sink.record(record);
        }
    }
}

/// The record of one attempt at a kept start (a dispatch, or an
/// operator's retry or discard).
#[cfg(feature = "delivery-log")]
pub(crate) fn attempt_record(
    start: &KeptStart,
    outcome: LoggedOutcome,
    instance: Option<&InstanceId>,
    error: Option<String>,
) -> LoggedDelivery {
    let now = SystemTime::now();
    let command = &start.command;
    let mut record = LoggedDelivery::new(
        start.id,
        start.kept_at,
        command.environment.clone(),
        command.process,
        outcome,
    );
    record.updated_at = now;
    record.version = Some(command.version);
    record.source = start.source.clone();
    record.instance = instance.cloned();
    record.attempts.push(Attempt::new(now, outcome, error));
    record
}

/// What a call's answer was, as the delivery log sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answered<'a> {
    /// An instance started, or a start's answer replayed.
    Started {
        instance: &'a InstanceId,
        replayed: bool,
    },
    /// A start kept (or a kept start's answer replayed).
    Queued { id: DeliveryId, replayed: bool },
    /// An event the source does not start on, or a ping.
    Ignored,
    /// The sender's own check answered.
    Challenge,
    /// An error.
    Refused(&'a WebhookError),
    /// No delivery: a schema, a document, a dry run, an `OPTIONS`.
    NotADelivery,
}
