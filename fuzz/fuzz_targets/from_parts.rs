//! Fuzzes the raw HTTP entry point: arbitrary targets, headers and bodies
//! into `WebhookStartRequest::from_parts` and `from_envelope_json`. Any
//! panic is a bug; every refusal must be a 4xx.
#![no_main]

use libfuzzer_sys::fuzz_target;
use process_webhook::WebhookStartRequest;

fuzz_target!(|data: &[u8]| {
    // Layout: target \0 header-name \0 header-value \0 body
    let mut parts = data.splitn(4, |&b| b == 0);
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let value = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    match WebhookStartRequest::from_parts(&target, [(name.as_ref(), value.as_ref())], body) {
        Ok(request) => {
            let _ = format!("{request:?}");
        }
        Err(err) => assert!((400..500).contains(&err.status()), "{err:?}"),
    }
    if let Ok(request) = WebhookStartRequest::from_parts(
        "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555",
        [("a", "b")],
        b"",
    ) {
        if let Err(err) = WebhookStartRequest::from_envelope_json(*request.process(), data) {
            assert!((400..500).contains(&err.status()), "{err:?}");
        }
    }
});
