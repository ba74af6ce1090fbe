//! The HTTP edge without a web framework: the webhook URL, reading a raw
//! call (its head, target, body and envelope) into a
//! [`WebhookStartRequest`](crate::WebhookStartRequest), the exchange, waits,
//! and [`HttpReply`]; with the `axum` feature, a router and a server loop.

mod answer;
#[cfg(feature = "axum")]
mod axum;
mod body;
mod delivery;
mod envelope;
mod exchange;
mod head;
#[cfg(feature = "multipart")]
mod multipart;
mod openapi;
mod reply;
#[cfg(feature = "axum")]
mod serve;

mod target;
mod wait;

#[cfg(feature = "axum")]
pub use self::axum::{health_router, router};
pub use openapi::{OPENAPI_MEDIA_TYPE, OpenApiOptions, openapi_document_for};
#[cfg(feature = "axum")]
pub use serve::{ServeOptions, serve};

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
