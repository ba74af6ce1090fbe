//! The bounded channel between starts and the delivery log: a start hands
//! its record over without waiting, and one writer keeps them in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::{DeliveryLog, LoggedDelivery, LoggedOutcome};
use crate::observe::{self, chain};

/// Which payloads the delivery log keeps (`WEBHOOK_KEEP_PAYLOADS` in
/// `webhook_server`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum KeepPayloads {
    /// The payloads of refused, queued and dead deliveries: what an
    /// operator needs to debug and retry (the default).
    #[default]
    Failed,
    /// Every delivery's payload.
    All,
    /// None.
    None,
}

impl KeepPayloads {
    /// Whether a delivery with `outcome` keeps its payload.
    pub fn keeps(self, outcome: LoggedOutcome) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Failed => matches!(
                outcome,
                LoggedOutcome::Refused | LoggedOutcome::Queued | LoggedOutcome::Dead
            ),
        }
    }
}

/// A value that is not `failed`, `all` or `none`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("the payloads kept are `failed`, `all` or `none`")]
pub struct UnknownKeepPayloads;

impl std::str::FromStr for KeepPayloads {
    type Err = UnknownKeepPayloads;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "failed" => Ok(Self::Failed),
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            _ => Err(UnknownKeepPayloads),
        }
    }
}

/// The sending end of the delivery log's channel: clones share it. A
/// record that finds the channel full (or the writer gone) is dropped and
/// counted ([`dropped`](Self::dropped), and the metric
/// `process_webhook_delivery_log_dropped_total`), never waited for.
#[derive(Clone, Debug)]
pub struct LogSink {
    sender: mpsc::Sender<LoggedDelivery>,
    dropped: Arc<AtomicU64>,
    payloads: KeepPayloads,
}

impl LogSink {
    /// Hands `record` to the writer without waiting: `false` (and counted)
    /// when it was dropped.
    pub fn record(&self, record: LoggedDelivery) -> bool {
        match self.sender.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                observe::log_dropped(1);
                false
            }
        }
    }

    /// How many records were dropped: the channel full, or the log failing
    /// to write them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Which payloads are kept.
    pub fn payloads(&self) -> KeepPayloads {
        self.payloads
    }
}

/// The receiving end: writes the records to a [`DeliveryLog`] in batches
/// of up to 256 (a short batch waits [`GATHER`](Self::GATHER) for more),
/// until every [`LogSink`] is dropped. Spawn
/// [`run`](Self::run) on the host's runtime.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use process_webhook::*;
///
/// # tokio_test::block_on(async {
/// let log = InMemoryDeliveryLog::new();
/// let (sink, writer) = LogWriter::new(Arc::new(log.clone()), LogWriter::DEFAULT_CAPACITY, KeepPayloads::Failed);
/// let writing = tokio::spawn(writer.run());
/// # let (models, tokens) = (Arc::new(InMemoryModelStore::new()), Arc::new(InMemoryTokenStore::new()));
/// let starter = WebhookStarter::new(models, tokens, Arc::new(InMemoryEngine::new()))
///     .with_delivery_log(sink);
/// // … the starter's calls are logged; when it is dropped, the writer ends.
/// drop(starter);
/// writing.await.unwrap();
/// # });
/// ```
pub struct LogWriter {
    receiver: mpsc::Receiver<LoggedDelivery>,
    log: Arc<dyn DeliveryLog>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("waiting", &self.receiver.len())
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// The default bound on records waiting to be written: 10,000.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// The most records written at once.
    pub const BATCH: usize = 256;

    /// How long a short batch waits for more records before it is
    /// written: 20 ms (a record reaches the log within about this).
    pub const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

    /// A channel of `capacity` records (at least one) into `log`, keeping
    /// payloads as `payloads` says: the sink for the starter, the writer to
    /// spawn.
    pub fn new(log: Arc<dyn DeliveryLog>, capacity: usize, payloads: KeepPayloads) -> (LogSink, LogWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            LogSink {
                sender,
                dropped: dropped.clone(),
                payloads,
            },
            LogWriter {
                receiver,
                log,
                dropped,
            },
        )
    }

    /// The pauses before a failed batch is written again: a write that
    /// failed for a moment (a lock another process held, a connection
    /// dropped) is not a record lost.
    pub const RETRIES: [std::time::Duration; 3] = [
        std::time::Duration::from_millis(100),
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(2),
    ];

    /// Writes records as they come, until every sink is dropped and the
    /// channel is empty. A batch the log fails to write is written again
    /// after each of [`RETRIES`](Self::RETRIES)' pauses (records keep
    /// gathering in the channel meanwhile); one that still fails is logged
    /// and counted as dropped: the log is for the operator, never a reason
    /// to stop. While the log keeps failing, each next batch is tried once,
    /// until one is written: a log that is down costs no more waits.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(Self::BATCH);
        let mut failing = false;
        while self.receiver.recv_many(&mut batch, Self::BATCH).await > 0 {
            if batch.len() < Self::BATCH && !self.receiver.is_closed() {
                // A short batch: let more records gather before the next
                // write, so that the writer wakes (and the log writes) a few
                // dozen times a second under load, not once per record.
                tokio::time::sleep(Self::GATHER).await;
                while batch.len() < Self::BATCH {
                    match self.receiver.try_recv() {
                        Ok(record) => batch.push(record),
                        Err(_) => break,
                    }
                }
            }
            let mut written = self.log.append(&batch).await;
            let retries = if failing { &[][..] } else { &Self::RETRIES[..] };
            for pause in retries {
                if written.is_ok() {
                    break;
                }
                tokio::time::sleep(*pause).await;
                written = self.log.append(&batch).await;
            }
            failing = written.is_err();
            if let Err(error) = written {
                self.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                observe::log_dropped(batch.len() as u64);
                tracing::warn!(
                    target: "process_webhook",
                    records = batch.len(),
                    error = %chain(&error),
                    "the delivery log could not write its records: they are dropped"
                );
            }
            batch.clear();
        }
    }
}
