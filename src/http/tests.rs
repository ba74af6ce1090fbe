//! Property tests of reading a call and writing its answer.

use super::*;
use crate::error::WebhookError;
use crate::http::target::decode_hyphenated;
use crate::outcome::StartOutcome;
use crate::trace::TraceContext;
use proptest::prelude::*;
use serde_json::Value;

/// The straightforward reading: decode every pair with form_urlencoded.
fn reference(target: &str) -> Result<ProcessUuid, WebhookError> {
    let without_fragment = target.split_once('#').map_or(target, |(t, _)| t);
    let query = without_fragment.split_once('?').map_or("", |(_, q)| q);
    let uids: Vec<_> = form_urlencoded::parse(query.as_bytes())
        .filter(|(n, _)| n == "uid")
        .collect();
    let sources = form_urlencoded::parse(query.as_bytes())
        .filter(|(n, _)| n == "source")
        .count();
    let process = match uids.as_slice() {
        [] => Err(WebhookError::MissingUid),
        [(_, v)] if v.trim().is_empty() => Err(WebhookError::MissingUid),
        [(_, v)] => v.trim().parse().map_err(|_| WebhookError::InvalidUid),
        _ => Err(WebhookError::InvalidUid),
    }?;
    if sources > 1 {
        return Err(WebhookError::UnknownSource);
    }
    Ok(process)
}

proptest! {
    #[test]
    fn the_fast_uid_reader_agrees_with_form_urlencoded(
        parts in prop::collection::vec(
            prop_oneof![
                Just("uid=dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                Just("u%69d=dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                Just("uid=dd9759e0%2Dcc94-11ed-938f-13cf60270555".to_owned()),
                Just("uid=+dd9759e0-cc94-11ed-938f-13cf60270555+".to_owned()),
                // A value may hold `=`: the name ends at the first.
                Just("uid=dd9759e0-cc94-11ed-938f-13cf60270555=1".to_owned()),
                Just("uid==dd9759e0-cc94-11ed-938f-13cf60270555".to_owned()),
                Just("uid".to_owned()),
                Just("uid=".to_owned()),
                Just("=x".to_owned()),
                Just("source=github".to_owned()),
                Just("sourc%65=git+hub".to_owned()),
                "[a-z%+=0-9-]{0,12}",
            ],
            0..4,
        ),
        fragment in prop::option::of("[a-z=&]{0,6}"),
    ) {
        let mut target = format!("/webhook/send?{}", parts.join("&"));
        if let Some(f) = fragment {
            target.push('#');
            target.push_str(&f);
        }
        let ours = process_from_target(&target).map_err(|e| e.code());
        let theirs = reference(&target).map_err(|e| e.code());
        prop_assert_eq!(ours, theirs, "{}", target);
    }

    #[test]
    fn the_uid_decoder_agrees_with_the_uuid_crate(
        // The bytes next to the digits in ASCII ('/', ':', '@', 'G', '`',
        // 'g') in either digit of a pair.
        text in "[0-9a-fA-F-]{36}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F/:@G`g]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    ) {
        let ours = decode_hyphenated(text.as_bytes()).map(uuid::Uuid::from_bytes);
        // The uuid crate also reads 36 characters as hyphenated only.
        let theirs = uuid::Uuid::try_parse(&text).ok();
        prop_assert_eq!(ours, theirs, "{}", text);
    }

    #[test]
    fn the_started_answer_is_what_serde_json_writes(
        // Plain ids, and ids with what JSON escapes (quotes, backslashes,
        // control characters) and what it does not (DEL, non-ASCII).
        instance in "[a-z0-9-]{1,40}|[a-z\"\\\\\u{0}-\u{1f}\u{7f}é]{0,8}|.{0,12}",
        environment in "[a-z]{1,12}|[a-z\"\\\\\u{0}-\u{1f}\u{7f}é]{0,8}",
        process in any::<u128>(),
        version in any::<u32>(),
        replayed in any::<bool>(),
    ) {
        let outcome = StartOutcome::from_parts(
            crate::InstanceId::new(instance),
            ProcessUuid::from(uuid::Uuid::from_u128(process)),
            version,
            crate::EnvironmentId::new(environment),
            crate::DeploymentId::from(uuid::Uuid::from_u128(process ^ 1)),
        );
        let outcome = if replayed { outcome.into_replay() } else { outcome };
        let ours = String::from_utf8(outcome_json(&outcome)).unwrap();
        // The answer is the outcome's fields after `"status":"started"`.
        let fields = serde_json::to_string(&outcome).unwrap();
        let theirs = format!("{{\"status\":\"started\",{}", &fields[1..]);
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn the_value_count_is_exact(value in json_value(), pretty in any::<bool>()) {
        fn values(value: &Value) -> usize {
            1 + match value {
                Value::Array(items) => items.iter().map(values).sum(),
                Value::Object(members) => members.values().map(values).sum(),
                _ => 0,
            }
        }
        let body = if pretty {
            serde_json::to_vec_pretty(&value).unwrap()
        } else {
            serde_json::to_vec(&value).unwrap()
        };
        let count = values(&value);
        for limit in count.saturating_sub(1).max(1)..=count + 1 {
            prop_assert_eq!(json_values_exceed(&body, limit), count > limit, "limit {} for {}", limit, value);
        }
    }

    #[test]
    fn a_body_no_longer_than_the_bound_never_exceeds_it(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        prop_assert!(!json_values_exceed(&body, body.len()));
    }
}

/// Any JSON value, nested up to four levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z,:\\[\\]{}\"\\\\]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z,\"\\\\]{0,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn only_tracestate_lines_make_the_tracestate() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let head =
        RequestHead::parse_headers([("traceparent", traceparent), ("user-agent", "curl/8.5")]).unwrap();
    assert_eq!(head.trace.as_ref().map(TraceContext::tracestate), Some(None));
    let head = RequestHead::parse_headers([
        ("traceparent", traceparent),
        ("tracestate", "a=1"),
        ("user-agent", "curl/8.5"),
        ("tracestate", "b=2"),
    ])
    .unwrap();
    assert_eq!(
        head.trace.as_ref().and_then(TraceContext::tracestate),
        Some("a=1,b=2")
    );
}

#[test]
fn uids_in_each_accepted_spelling_decode_to_the_same_process() {
    let expected: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    for uid in [
        "dd9759e0-cc94-11ed-938f-13cf60270555",
        "DD9759E0-CC94-11ED-938F-13CF60270555",
        "urn:uuid:dd9759e0-cc94-11ed-938f-13cf60270555",
        " dd9759e0-cc94-11ed-938f-13cf60270555\t",
    ] {
        assert_eq!(parse_uid(uid).unwrap(), expected, "{uid}");
    }
    assert_eq!(
        process_from_target("/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555=1")
            .unwrap_err()
            .code(),
        "invalid_uid"
    );
    for uid in [
        "dd9759e0cc9411ed938f13cf60270555",
        "{dd9759e0-cc94-11ed-938f-13cf60270555}",
        "dd9759e0-cc94-11ed-938f-13cf6027055g",
        "dd9759e0-cc94-11ed-938f_13cf60270555",
        "dd9759e0-cc94-11ed-938f-13cf602705555",
    ] {
        assert_eq!(parse_uid(uid).unwrap_err().code(), "invalid_uid", "{uid}");
    }
}
