//! Property tests: no input panics the parser, the payload is what
//! serde_json reads from the body, valid payloads always start, and a
//! missing mandatory field is always reported by name.

use crate::common;

use common::*;
use process_webhook::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid value for each field of `typed_form`.
fn arb_typed_payload() -> impl Strategy<Value = Map<String, Value>> {
    (
        "[a-zA-Z][a-zA-Z ]{0,20}",
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        any::<i64>(),
        any::<bool>(),
        (1i32..=9999, 1u8..=12, 1u8..=28),
        (1970i32..=2100, 0u8..24, 0u8..60, -12i8..=12),
        prop::sample::select(vec!["S", "M", "L"]),
        arb_json(),
        prop::option::of(prop::sample::select(vec!["low", "high"])),
    )
        .prop_map(
            |(name, amount, quantity, express, (y, m, d), (yy, hh, mm, off), size, extra, priority)| {
                let extra = match extra {
                    Value::Null => json!(0),
                    Value::String(s) if s.trim().is_empty() => json!("x"),
                    other => other,
                };
                let mut payload = object(json!({
                    "name": name,
                    "amount": amount,
                    "quantity": quantity,
                    "express": express,
                    "deliveryDate": format!("{y:04}-{m:02}-{d:02}"),
                    "orderedAt": format!("{yy:04}-01-31T{hh:02}:{mm:02}:00{off:+03}:00"),
                    "size": size,
                    "address": {"city": "Berlin"},
                    "items": [],
                    "extra": extra,
                }));
                if let Some(p) = priority {
                    payload.insert("priority".into(), json!(p));
                }
                payload
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(
        target in prop::collection::vec(any::<u8>(), 0..200),
        name in ".{0,20}",
        value in ".{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let target = String::from_utf8_lossy(&target).into_owned();
        let result = WebhookStartRequest::from_parts(&target, [(name.as_str(), value.as_str())], &body);
        if let Err(err) = result {
            prop_assert!(matches!(err.status(), 400 | 413), "{err:?}");
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_parser(value in arb_json(), uid in prop::option::of(any::<u128>())) {
        let target = match uid {
            Some(n) => webhook_url("/webhook/send", &uuid::Uuid::from_u128(n).into()),
            None => "/webhook/send".to_owned(),
        };
        let body = serde_json::to_vec(&value).unwrap();
        let result = WebhookStartRequest::from_parts(&target, [("authorization", "t")], &body);
        match (&value, uid, result) {
            (Value::Object(map), Some(_), Ok(request)) => prop_assert_eq!(request.payload(), map),
            (_, None, Err(err)) => prop_assert_eq!(err.code(), "missing_uid"),
            (Value::Object(_), Some(_), Err(err)) => prop_assert!(false, "an object was refused: {err:?}"),
            (_, Some(_), Err(err)) => prop_assert_eq!(err.code(), "malformed_payload"),
            (_, _, Ok(_)) => prop_assert!(false, "a non-object was accepted"),
        }
    }

    #[test]
    fn the_payload_is_what_serde_json_reads_from_the_bytes(
        value in arb_json(),
        at in any::<prop::sample::Index>(),
        noise in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        // A JSON text with a few arbitrary bytes spliced in: valid objects,
        // other values, broken JSON and bytes that are not UTF-8.
        let mut body = serde_json::to_vec(&value).unwrap();
        let at = at.index(body.len() + 1);
        body.splice(at..at, noise);
        prop_assume!(!body.iter().all(u8::is_ascii_whitespace), "a blank body is an empty payload");
        let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
        let read = WebhookStartRequest::from_parts(&target, [("authorization", "t")], &body);
        match (serde_json::from_slice::<Map<String, Value>>(&body), read) {
            (Ok(map), Ok(request)) => prop_assert_eq!(request.payload(), &map),
            (Err(expected), Err(err)) => {
                prop_assert_eq!(err.code(), "malformed_payload");
                let source = std::error::Error::source(&err).map(ToString::to_string);
                prop_assert_eq!(source, Some(expected.to_string()), "the same line, column and reason");
            }
            (expected, read) => prop_assert!(false, "serde_json: {:?}, from_parts: {:?}", expected, read),
        }
    }

    #[test]
    fn arbitrary_envelopes_never_panic(value in arb_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        let _ = WebhookStartRequest::from_envelope_json(uuid(ORDER_INTAKE), &body);
    }

    #[test]
    fn valid_payloads_always_start(payload in arb_typed_payload()) {
        let world = World::new();
        let outcome = tokio_test::block_on(world.start(world.request(TYPED, payload.clone())));
        prop_assert!(outcome.is_ok(), "{:?} for {}", outcome, Value::Object(payload.clone()));
        let started = world.engine.started();
        prop_assert_eq!(started.len(), 1);
        for (name, value) in &payload {
            prop_assert_eq!(&started[0].command.variables[name], value);
        }
    }

    #[test]
    fn removing_any_mandatory_field_is_reported_by_name(
        payload in arb_typed_payload(),
        removed in prop::sample::subsequence(
            TYPED_MANDATORY.to_vec(),
            1..=10,
        ),
    ) {
        let world = World::new();
        let mut payload = payload;
        for field in &removed {
            payload.remove(*field);
        }
        let err = tokio_test::block_on(world.start(world.request(TYPED, payload))).unwrap_err();
        prop_assert_eq!(err.code(), "invalid_payload");
        let reported: Vec<&str> = err.violations().iter().map(FieldViolation::field).collect();
        prop_assert_eq!(reported, removed);
        prop_assert!(err.violations().iter().all(|v| v.violation() == &Violation::Missing));
        prop_assert_eq!(world.started(), 0);
    }
}

/// One segment of a singular query: a name (short, so that it often names
/// a member of the document) or an index, negative too.
#[cfg(feature = "mapping")]
#[derive(Debug, Clone)]
enum Step {
    Name(String),
    Index(i64),
}

#[cfg(feature = "mapping")]
fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        "[a-c]{0,2}".prop_map(Step::Name),
        (-3i64..4).prop_map(Step::Index),
    ];
    prop::collection::vec(step, 0..5)
}

/// The query of `steps`, in bracket notation (names quoted as JSON
/// strings, which RFC 9535's string literals accept).
#[cfg(feature = "mapping")]
fn query_text(steps: &[Step]) -> String {
    let mut text = "$".to_owned();
    for step in steps {
        match step {
            Step::Name(name) => text.push_str(&format!("[{}]", Value::String(name.clone()))),
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// What RFC 9535 says `steps` select in `document`: a member by name, an
/// element by index (negative from the end), nothing otherwise.
#[cfg(feature = "mapping")]
fn walk<'a>(document: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(document, |node, step| match (step, node) {
        (Step::Name(name), Value::Object(members)) => members.get(name),
        (Step::Index(i), Value::Array(items)) => {
            let at = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(at).ok().and_then(|at| items.get(at))
        }
        _ => None,
    })
}

#[cfg(feature = "mapping")]
fn arb_document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-c ]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{0,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[cfg(feature = "mapping")]
proptest! {
    #[test]
    fn any_text_parses_as_a_query_or_is_refused_with_a_position_inside_it(text in ".{0,40}") {
        match text.parse::<JsonQuery>() {
            Ok(query) => prop_assert_eq!(query.as_str(), text.as_str()),
            Err(error) => prop_assert!(error.position() <= text.len(), "{}", error),
        }
    }

    #[test]
    fn a_singular_query_selects_what_rfc_9535_says_the_same_every_time(
        document in arb_document(),
        steps in arb_steps(),
    ) {
        let text = query_text(&steps);
        let query: JsonQuery = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let first = query.select(&document);
        prop_assert_eq!(first, query.select(&document), "deterministic");
        prop_assert_eq!(first, walk(&document, &steps), "{}", text);
    }

    #[test]
    fn a_condition_holds_exactly_when_its_query_selects_a_listed_value(
        document in arb_document(),
        steps in arb_steps(),
        equals in prop::collection::vec(arb_document(), 1..3),
    ) {
        let query: JsonQuery = query_text(&steps).parse().unwrap();
        let condition = Condition::new(query, equals.clone()).unwrap();
        let selected = walk(&document, &steps);
        prop_assert_eq!(condition.holds(&document), selected.is_some_and(|v| equals.contains(v)));
    }
}
