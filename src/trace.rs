//! [`TraceContext`]: the caller's W3C trace context, carried to the engine.

use serde::Serialize;

/// The longest `tracestate` kept, in bytes (W3C Trace Context: a vendor
/// propagates at least 512 characters).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The most list members a `tracestate` may have (W3C Trace Context).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The W3C Trace Context of a call (`traceparent`, and `tracestate` when it
/// came with one): which distributed trace the started instance belongs to.
///
/// Built only from a valid `traceparent` ([W3C Trace Context] §3.2): a
/// malformed one is ignored, never an error, so a caller's broken tracing
/// never refuses its start. A higher version than `00` is read by its first
/// four fields and carried as version `00`, as the recommendation says. A
/// `tracestate` is kept with a valid `traceparent` when it has at most 32
/// members, at most 512 bytes and only printable ASCII; otherwise it alone
/// is dropped.
///
/// Engines pass it on: Camunda 7 and 8 as a process variable (default name
/// `traceparent`), Temporal in the workflow's memo. It serializes as
/// `{"traceparent": "…", "tracestate": "…"}` (`tracestate` only when present).
///
/// [W3C Trace Context]: https://www.w3.org/TR/trace-context/
///
/// ```
/// use process_webhook::TraceContext;
///
/// let trace = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("congo=t61rcWkgMzE"))
///     .unwrap();
/// assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(trace.parent_id(), "00f067aa0ba902b7");
/// assert!(trace.sampled());
/// assert_eq!(trace.tracestate(), Some("congo=t61rcWkgMzE"));
///
/// // Malformed: ignored.
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
/// assert!(TraceContext::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None).is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct TraceContext {
    traceparent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
}

impl TraceContext {
    /// The trace context of a `traceparent` value and, optionally, a
    /// `tracestate` value; `None` when `traceparent` is not valid.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let traceparent = normalized_traceparent(traceparent.trim_ascii())?;
        let tracestate = tracestate.map(str::trim_ascii).filter(|s| valid_tracestate(s));
        Some(Self {
            traceparent,
            tracestate: tracestate.map(str::to_owned),
        })
    }

    /// The `traceparent` value, version `00`.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` value, when one came with the call and was valid.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id: 32 lowercase hexadecimal digits.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }

    /// The caller's span id (the `parent-id` field): 16 lowercase
    /// hexadecimal digits.
    pub fn parent_id(&self) -> &str {
        &self.traceparent[36..52]
    }

    /// Whether the caller sampled the trace (flag `01`).
    pub fn sampled(&self) -> bool {
        self.traceparent.as_bytes()[54] & 1 == 1
    }
}

/// The version-`00` form of a valid `traceparent`, else `None`.
fn normalized_traceparent(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    if bytes.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = &value[0..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    // Version 00 is exactly 55 characters; a later version may add fields
    // after a dash.
    if version == "00" && bytes.len() != 55 || bytes.len() > 55 && bytes[55] != b'-' {
        return None;
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let valid = [trace_id, parent_id, flags]
        .iter()
        .all(|field| is_lower_hex(field))
        && !is_all_zeros(trace_id)
        && !is_all_zeros(parent_id);
    valid.then(|| format!("00-{trace_id}-{parent_id}-{flags}"))
}

fn is_lower_hex(field: &str) -> bool {
    field.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_all_zeros(field: &str) -> bool {
    field.bytes().all(|b| b == b'0')
}

/// Whether a `tracestate` value is one this crate passes on: printable
/// ASCII, at most 512 bytes, at most 32 members each of the form `key=value`.
fn valid_tracestate(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TRACESTATE_LEN
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.split(',').filter(|m| !m.trim_ascii().is_empty()).count() <= MAX_TRACESTATE_MEMBERS
        && value
            .split(',')
            .map(str::trim_ascii)
            .filter(|m| !m.is_empty())
            .all(|member| matches!(member.split_once('='), Some((k, v)) if !k.is_empty() && !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_kept_as_sent() {
        let trace = TraceContext::parse(VALID, None).unwrap();
        assert_eq!(trace.traceparent(), VALID);
        assert_eq!(trace.tracestate(), None);
        assert!(trace.sampled());
        let unsampled =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", None).unwrap();
        assert!(!unsampled.sampled());
        // Surrounding whitespace is a header's, not the value's.
        assert_eq!(
            TraceContext::parse(&format!(" {VALID}\t"), None)
                .unwrap()
                .traceparent(),
            VALID
        );
    }

    #[test]
    fn the_ids_and_the_sampled_flag_are_read_from_their_fields() {
        let trace =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None).unwrap();
        assert_eq!(trace.trace_id(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(trace.parent_id(), "b7ad6b7169203331");
        assert!(trace.sampled());
        // Only the lowest flag bit means sampled.
        let other_flags =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02", None).unwrap();
        assert!(!other_flags.sampled());
        let both =
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03", None).unwrap();
        assert!(both.sampled());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            // Too short, too long for version 00.
            &VALID[..54],
            &format!("{VALID}-"),
            &format!("{VALID}0"),
            // Version ff is forbidden; versions are hex.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Uppercase or non-hex digits, in each field.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            // Wrong separators.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            // Not ASCII (and no panic on a char boundary).
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, Some("a=b")), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields_and_carried_as_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert_eq!(TraceContext::parse(later, None).unwrap().traceparent(), VALID);
        let exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(exact, None).unwrap().traceparent(), VALID);
        // A later version must still separate further fields with a dash.
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceContext::parse(glued, None), None);
    }

    #[test]
    fn an_invalid_tracestate_alone_is_dropped() {
        let state = |s: &str| {
            TraceContext::parse(VALID, Some(s))
                .unwrap()
                .tracestate()
                .map(str::to_owned)
        };
        assert_eq!(
            state("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(state(""), None);
        assert_eq!(state("novalue"), None);
        assert_eq!(state("=v"), None);
        assert_eq!(state("k="), None);
        assert_eq!(state("k=v\u{7f}"), None);
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(state(&members.join(",")).is_some());
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(state(&too_many.join(",")), None);
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN - 2));
        assert!(state(&long).is_some());
        assert_eq!(state(&format!("{long}v")), None);
    }

    #[test]
    fn it_serializes_as_the_two_header_values() {
        let trace = TraceContext::parse(VALID, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(
            serde_json::to_value(&trace).unwrap(),
            serde_json::json!({"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE"})
        );
        let bare = TraceContext::parse(VALID, None).unwrap();
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"traceparent": VALID})
        );
        assert_eq!(
            format!("{bare:?}"),
            format!("TraceContext {{ traceparent: {VALID:?}, tracestate: None }}")
        );
    }
}
