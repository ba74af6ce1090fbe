//! GitLab: `X-Gitlab-Token: <the secret itself>`, compared as digests in
//! constant time; the delivery id in `X-Gitlab-Event-UUID`, the event in
//! `X-Gitlab-Event`.

use crate::error::WebhookError;
use crate::source::call::{Delivery, Keys, SourceCall};

pub(crate) fn verify(call: &SourceCall<'_>, keys: &Keys<'_>) -> Result<(), WebhookError> {
    let sent = call.required("x-gitlab-token")?;
    if keys.any_secret(sent.as_bytes()) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

pub(crate) fn delivery(call: &SourceCall<'_>) -> Delivery {
    Delivery::from_headers(call, Some("x-gitlab-event-uuid"), Some("x-gitlab-event"))
}
