//! A call's target: the process named by the `uid` query parameter, and
//! the webhook source named by `source`, if any.

use std::borrow::Cow;

use crate::error::WebhookError;
use crate::id::ProcessUuid;

/// The `uid` query parameter of a full URL or a path with query.
///
/// Pairs without `%` or `+` are compared as they are; the others are
/// decoded by `form_urlencoded` (this keeps the common case free of
/// allocation and UTF-8 re-validation, which profiling showed to cost more
/// than parsing the documented payload).
pub(crate) fn process_from_target(target: &str) -> Result<ProcessUuid, WebhookError> {
    parse_target(target).map(|target| target.process)
}

/// What a call's target names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target<'a> {
    pub(crate) process: ProcessUuid,
    /// The `source` query parameter, as sent (decoded), when there is one.
    pub(crate) source: Option<Cow<'a, str>>,
}

/// The `uid` and `source` query parameters of a full URL or a path with
/// query. A `source` given twice names no source (`404 unknown_source`).
pub(crate) fn parse_target(target: &str) -> Result<Target<'_>, WebhookError> {
    // The separators are ASCII and found with `memchr`: a target is read in
    // a few vector steps rather than byte by byte.
    let bytes = target.as_bytes();
    let query = match memchr::memchr2(b'?', b'#', bytes) {
        Some(at) if bytes[at] == b'?' => {
            let query = &target[at + 1..];
            match memchr::memchr(b'#', query.as_bytes()) {
                Some(fragment) => &query[..fragment],
                None => query,
            }
        }
        _ => return Err(WebhookError::MissingUid),
    };
    let mut uid: Option<Cow<'_, str>> = None;
    let mut source: Found<'_> = Found::None;
    let mut rest = query;
    loop {
        let (pair, next) = match memchr::memchr(b'&', rest.as_bytes()) {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        if memchr::memchr2(b'%', b'+', pair.as_bytes()).is_some() {
            if let Some((name, value)) = form_urlencoded::parse(pair.as_bytes()).next() {
                take(&name, value, &mut uid, &mut source)?;
            }
        } else {
            let (name, value) = match memchr::memchr(b'=', pair.as_bytes()) {
                Some(equals) => (&pair[..equals], &pair[equals + 1..]),
                None => (pair, ""),
            };
            take(name, value.into(), &mut uid, &mut source)?;
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    let uid = uid.ok_or(WebhookError::MissingUid)?;
    let process = parse_uid(&uid)?;
    let source = match source {
        Found::None => None,
        Found::Once(source) => Some(source),
        // A source given twice names no source.
        Found::Repeated => return Err(WebhookError::UnknownSource),
    };
    Ok(Target { process, source })
}

/// The `source` parameter as the query gives it.
enum Found<'a> {
    None,
    Once(Cow<'a, str>),
    Repeated,
}

/// Keeps a query pair's value where its name is `uid` or `source`.
#[inline(always)]
fn take<'a>(
    name: &str,
    value: Cow<'a, str>,
    uid: &mut Option<Cow<'a, str>>,
    source: &mut Found<'a>,
) -> Result<(), WebhookError> {
    match name {
        "uid" if uid.is_some() => return Err(WebhookError::RepeatedUid),
        "uid" => *uid = Some(value),
        "source" => {
            *source = match source {
                Found::None => Found::Once(value),
                _ => Found::Repeated,
            }
        }
        _ => {}
    }
    Ok(())
}

/// The `uid` of a webhook URL: a UUID in the hyphenated form (any case) or
/// its `urn:uuid:` form (the two RFC 9562 names), with ASCII white space
/// around it trimmed. Braces, the form without hyphens and other white
/// space are refused, so that one process has one spelling (give or take
/// case) in URLs.
pub(crate) fn parse_uid(uid: &str) -> Result<ProcessUuid, WebhookError> {
    let uid = uid.trim_ascii();
    if uid.is_empty() {
        return Err(WebhookError::MissingUid);
    }
    const URN: &str = "urn:uuid:";
    let hyphenated = match uid.get(..URN.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(URN) => &uid[URN.len()..],
        _ => uid,
    };
    decode_hyphenated(hyphenated.as_bytes())
        .map(|bytes| ProcessUuid::from(uuid::Uuid::from_bytes(bytes)))
        .ok_or(WebhookError::InvalidUid)
}

/// The 16 bytes of a hyphenated UUID (`8-4-4-4-12` hex digits, any case),
/// or `None` for any other text. One pass over the 36 bytes: the shape
/// check and the decoding are the same loop.
pub(super) fn decode_hyphenated(text: &[u8]) -> Option<[u8; 16]> {
    let text: &[u8; 36] = text.try_into().ok()?;
    if [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    // Byte `k` of the UUID is the two digits at DIGIT_AT[k] and the next.
    const DIGIT_AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, &at) in out.iter_mut().zip(DIGIT_AT.iter()) {
        let (high, low) = (HEX[usize::from(text[at])], HEX[usize::from(text[at + 1])]);
        if high > 0x0f || low > 0x0f {
            return None;
        }
        *byte = (high << 4) | low;
    }
    Some(out)
}

/// The value of each hex digit (either case); 0xff for every other byte.
const HEX: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    table
};
