//! The HTTP edge without a web framework: the webhook URL, reading a raw
//! call (its head, target, body and envelope) into a
//! [`WebhookStartRequest`](crate::WebhookStartRequest), the exchange, waits,
//! and [`HttpReply`]; with the `axum` feature, a router and a server loop.

#[cfg(feature = "axum")]
mod axum;
mod body;
mod envelope;
mod exchange;
mod head;
pub(crate) mod health;
#[cfg(feature = "multipart")]
mod multipart;
mod openapi;
pub(crate) mod protect;
mod reply;
#[cfg(feature = "axum")]
mod serve;
pub(crate) mod signal;
mod target;
pub(crate) mod wait;

#[cfg(feature = "axum")]
pub use self::axum::{health_router, router};
pub use health::{Component, DEFAULT_READY_TIMEOUT, NotReady};
pub use openapi::{OPENAPI_MEDIA_TYPE, OpenApiOptions, openapi_document_for};
pub use protect::{DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT};
#[cfg(feature = "axum")]
pub use serve::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_GRACE,
    ServeOptions, serve,
};
pub use wait::{DEFAULT_MAX_WAIT, DEFAULT_MAX_WAITING_CALLS};

pub use body::DEFAULT_MAX_JSON_VALUES;
#[cfg(test)]
use body::json_values_exceed;
pub(crate) use body::{check_body_size, parse_body, parse_payload};
pub(crate) use envelope::{is_envelope, open_envelope};
pub(crate) use head::RequestHead;
pub use reply::HttpReply;
#[cfg(test)]
use reply::outcome_json;
#[cfg(test)]
use target::parse_uid;
pub(crate) use target::process_from_target;

use crate::id::ProcessUuid;
use crate::source::SourceId;

/// The base of every process's webhook URL.
pub const DEFAULT_WEBHOOK_BASE: &str = "https://run.stackfl.com/webhook/send";

/// The methods the webhook URL serves, as its `Allow` header lists them.
pub(crate) const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS, POST";

/// The default limit on a webhook body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The webhook URL of `process` under `base`: `{base}?uid={process}`, or
/// `{base}&uid={process}` when `base` already has a query.
///
/// ```
/// use process_webhook::{webhook_url, DEFAULT_WEBHOOK_BASE, ProcessUuid};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse()?;
/// assert_eq!(
///     webhook_url(DEFAULT_WEBHOOK_BASE, &uuid),
///     "https://run.stackfl.com/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
/// );
/// assert_eq!(
///     webhook_url("http://localhost:8080/hook?tenant=a", &uuid),
///     "http://localhost:8080/hook?tenant=a&uid=dd9759e0-cc94-11ed-938f-13cf60270555",
/// );
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
pub fn webhook_url(base: &str, process: &ProcessUuid) -> String {
    let separator = match base.find('?') {
        None => '?',
        Some(i) if i + 1 == base.len() || base.ends_with('&') => return format!("{base}uid={process}"),
        Some(_) => '&',
    };
    format!("{base}{separator}uid={process}")
}

/// The webhook URL of a source: `base` (e.g.
/// `https://run.stackfl.com/webhook/send`) with `uid` and `source` in its
/// query, as [`webhook_url`] builds a token caller's.
pub fn source_webhook_url(base: &str, process: &ProcessUuid, source: &SourceId) -> String {
    // A source id is URL-safe: it needs no escaping.
    format!("{}&source={source}", webhook_url(base, process))
}

#[cfg(test)]
mod tests;
