//! A kept start as a row of either SQL store holds it: its command as
//! JSON, its times as seconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Columns;
use crate::engine::StartCommand;
use crate::id::{DeliveryId, EnvironmentId, InstanceId, ProcessUuid};
use crate::idempotency::{IdempotencyKey, PayloadFingerprint};
use crate::inbox::{Claimed, Delivery, DeliveryStatus, KeptStart};
use crate::model::Deployment;
use crate::source::SourceId;
use crate::store::StoreError;
use crate::trace::TraceContext;

/// A command as the table keeps it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredCommand {
    deployment: Deployment,
    version: u32,
    variables: Map<String, Value>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

impl StoredCommand {
    pub(crate) fn of(command: &StartCommand) -> Self {
        Self {
            deployment: command.resolved().clone(),
            version: command.version,
            variables: command.variables.clone(),
            key: command.idempotency_key.clone(),
            fingerprint: command.fingerprint.map(|f| hex::encode(f.as_bytes())),
            traceparent: command.trace.as_ref().map(|t| t.traceparent().to_owned()),
            tracestate: command
                .trace
                .as_ref()
                .and_then(|t| t.tracestate().map(str::to_owned)),
        }
    }

    pub(crate) fn into_command(self) -> Result<StartCommand, StoreError> {
        let mut command = StartCommand::new(&self.deployment, self.version, self.variables);
        command.idempotency_key = self.key;
        if let Some(fingerprint) = self.fingerprint {
            let bytes = hex::decode(&fingerprint)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| StoreError::new("a kept start's fingerprint is not 32 bytes of hex"))?;
            command.fingerprint = Some(PayloadFingerprint::from_bytes(bytes));
        }
        if let Some(traceparent) = &self.traceparent {
            command.trace = TraceContext::parse(traceparent, self.tracestate.as_deref());
        }
        Ok(command)
    }
}

pub(crate) fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

pub(crate) fn time_of(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default()
}

/// A row of `deliveries` as a delivery, with its lease number.
pub(crate) fn delivery_from<R: Columns>(row: &R) -> Result<(Delivery, Option<i64>), StoreError> {
    let db = R::DATABASE;
    let stored: StoredCommand = serde_json::from_value(row.json("command")?)
        .map_err(|e| StoreError::new(format!("{db}: a kept start's command is malformed")).with_source(e))?;
    let status = row
        .text("status")?
        .parse::<DeliveryStatus>()
        .map_err(|e| StoreError::new(format!("{db}: a kept start's status is unknown")).with_source(e))?;
    let delivery = Delivery {
        id: DeliveryId::from(row.uuid("id")?),
        status,
        environment: EnvironmentId::new(row.text("environment")?),
        process: ProcessUuid::from(row.uuid("process")?),
        version: u32::try_from(row.int("version")?).unwrap_or_default(),
        caller_key: row.opt_text("caller_key")?,
        source: row
            .opt_text("source")?
            .map(|s| s.parse::<SourceId>())
            .transpose()
            .map_err(|e| {
                StoreError::new(format!("{db}: a kept start's source id is malformed")).with_source(e)
            })?,
        kept_at: time_of(row.real("kept_at")?),
        due_at: time_of(row.real("due_at")?),
        attempts: u32::try_from(row.int("attempts")?).unwrap_or_default(),
        last_error: row.opt_text("last_error")?,
        instance: row.opt_text("instance")?.map(InstanceId::new),
        command: stored.into_command()?,
    };
    Ok((delivery, row.opt_long("lease")?))
}

/// A claimed row (its `attempts` those before this claim) as a [`Claimed`].
pub(crate) fn claimed_from<R: Columns>(row: &R) -> Result<Claimed, StoreError> {
    let (delivery, lease) = delivery_from(row)?;
    let caller_key = delivery
        .caller_key
        .as_ref()
        .map(|key| IdempotencyKey::new(delivery.environment.clone(), delivery.process, key.as_str()));
    let mut start = KeptStart::new(delivery.id, delivery.command, caller_key);
    start.kept_at = delivery.kept_at;
    start.source = delivery.source;
    Ok(Claimed {
        start,
        attempts: delivery.attempts,
        lease: lease.map_or(0, |l| u64::try_from(l).unwrap_or_default()),
    })
}
