//! The filters of the deliveries list, read from a query string (the API's
//! and the console's alike), and a record as the API answers it.

use std::time::SystemTime;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::AdminError;
#[cfg(test)]
use crate::delivery_log::LoggedOutcome;
use crate::delivery_log::{Cursor, LogQuery, LoggedDelivery};
use crate::source::SourceId;

/// The most records one page answers; the default is 50.
pub(crate) const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// The filters of `query` (a URL's query string, without `?`): `status`,
/// `source`, `process`, `environment`, `since`, `until` (RFC 3339),
/// `limit` (1 to 500) and `cursor`. An empty value is no filter.
pub(crate) fn read_query(query: &str) -> Result<LogQuery, AdminError> {
    let mut read = LogQuery::newest(DEFAULT_LIMIT);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match name.as_ref() {
            "status" => {
                read.outcome = Some(value.parse().map_err(|_| invalid("status", STATUSES))?);
            }
            "source" => {
                read.source =
                    Some(SourceId::new(value).map_err(|_| invalid("source", "a webhook source's id"))?);
            }
            "process" => {
                read.process = Some(value.parse().map_err(|_| invalid("process", "a process UUID"))?);
            }
            "environment" => read.environment = Some(crate::id::EnvironmentId::new(value)),
            "since" => read.since = Some(time_of(value).map_err(|_| invalid("since", RFC3339))?),
            "until" => read.until = Some(time_of(value).map_err(|_| invalid("until", RFC3339))?),
            "limit" => {
                read.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| invalid("limit", "a number from 1 to 500"))?;
            }
            "cursor" => {
                read.after = Some(
                    value
                        .parse::<Cursor>()
                        .map_err(|_| invalid("cursor", "the cursor a page of deliveries gave"))?,
                );
            }
            _ => {}
        }
    }
    Ok(read)
}

const STATUSES: &str = "started, replayed, ignored, challenge, refused, queued, dead or discarded";
const RFC3339: &str = "an RFC 3339 time such as 2026-12-07T14:00:00Z";

fn invalid(name: &'static str, expected: &'static str) -> AdminError {
    AdminError::InvalidFilter { name, expected }
}

fn time_of(text: &str) -> Result<SystemTime, time::error::Parse> {
    OffsetDateTime::parse(text, &Rfc3339).map(SystemTime::from)
}

/// A time as RFC 3339, in UTC.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time).format(&Rfc3339).unwrap_or_default()
}

/// A record as the API answers it: times as RFC 3339, the payload as sent
/// (text), headers as `[name, value]` pairs.
pub(crate) fn record_json(record: &LoggedDelivery, whole: bool) -> Value {
    let mut doc = json!({
        "id": record.id.to_string(),
        "receivedAt": rfc3339(record.received_at),
        "updatedAt": rfc3339(record.updated_at),
        "environment": record.environment.as_str(),
        "process": record.process.to_string(),
        "version": record.version,
        "source": record.source.as_ref().map(SourceId::as_str),
        "senderId": record.sender_id,
        "event": record.event,
        "outcome": record.outcome.as_str(),
        "status": record.status,
        "code": record.code,
        "instance": record.instance.as_ref().map(|i| i.as_str()),
        "attempts": record.attempts.len(),
        "durationMs": record.duration.map(|d| d.as_secs_f64() * 1_000.0),
    });
    if whole {
        doc["problem"] = record.problem.clone().unwrap_or(Value::Null);
        doc["attempts"] = record
            .attempts
            .iter()
            .map(|a| json!({"at": rfc3339(a.at), "outcome": a.outcome.as_str(), "error": a.error}))
            .collect();
        doc["headers"] = json!(record.headers);
        doc["payload"] = json!(record.payload);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_is_read_and_a_bad_one_is_named() {
        let q = read_query(
            "status=dead&source=github-orders&process=dd9759e0-cc94-11ed-938f-13cf60270555&environment=production\
             &since=2026-12-01T00:00:00Z&until=2026-12-08T00:00:00Z&limit=20&unknown=1&event=",
        )
        .unwrap();
        assert_eq!(q.outcome, Some(LoggedOutcome::Dead));
        assert_eq!(q.source.as_ref().map(SourceId::as_str), Some("github-orders"));
        assert_eq!(q.limit, 20);
        assert_eq!(
            q.environment.as_ref().map(crate::id::EnvironmentId::as_str),
            Some("production")
        );
        assert_eq!(
            q.process.map(|p| p.to_string()).as_deref(),
            Some("dd9759e0-cc94-11ed-938f-13cf60270555")
        );
        assert!(q.since.unwrap() < q.until.unwrap());
        assert_eq!(read_query("").unwrap().limit, DEFAULT_LIMIT);
        for (bad, name) in [
            ("status=lost", "status"),
            ("process=nope", "process"),
            ("since=yesterday", "since"),
            ("until=2026-13-01", "until"),
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("cursor=zzz", "cursor"),
            ("source=Not%20An%20Id", "source"),
        ] {
            match read_query(bad) {
                Err(AdminError::InvalidFilter { name: got, .. }) => assert_eq!(got, name, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
