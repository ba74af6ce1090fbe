//! The published start contract: `StartForm::json_schema` accepts exactly
//! the payloads a start accepts, checked by a real JSON Schema validator
//! over generated payloads.

use crate::common;

use common::*;
use process_webhook::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn validator(form: &StartForm) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&form.json_schema())
        .expect("a valid schema")
}

/// Candidate values for each field of `typed_form`: valid, invalid, and edge
/// cases; `None` leaves the field out.
fn pool(field: &str) -> Vec<Option<Value>> {
    let common = vec![
        None,
        Some(json!(null)),
        Some(json!("")),
        Some(json!("  \t")),
        Some(json!(0)),
        Some(json!({})),
        Some(json!([])),
    ];
    let specific = match field {
        "name" | "note" => vec![json!("John"), json!(" x "), json!("\u{a0}"), json!(true)],
        "amount" => vec![json!(1.5), json!(-3), json!("1.5"), json!(1e300)],
        "quantity" => vec![
            json!(3),
            json!(-7),
            json!(2.0),
            json!(2.5),
            json!(u64::MAX),
            json!(1e3),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(i64::MAX as u64 + 1),
            json!(1e19),
            json!(-1e19),
            json!("3"),
        ],
        "express" => vec![json!(true), json!(false), json!("true"), json!(1)],
        "deliveryDate" => vec![
            json!("2024-02-29"),
            json!("2023-02-29"),
            json!("2024-13-01"),
            json!("2024-04-31"),
            json!("2024-1-01"),
            json!("20240101"),
            json!("2024-01-01T00:00:00Z"),
            json!("0001-01-01"),
        ],
        "orderedAt" => vec![
            json!("2024-02-20T10:00:00Z"),
            json!("2024-02-20T10:00:00.123+01:00"),
            json!("2024-02-20T10:00:00"),
            json!("2024-02-20 10:00:00Z"),
            json!("2024-02-30T10:00:00Z"),
            json!("2024-02-20T25:00:00Z"),
            json!("2024-02-20T10:00:00+24:00"),
            json!("2024-02-20"),
            json!("2024-02-20t10:00:00z"),
            json!("2024-02-20T10:00:00.123456789012Z"),
            json!("2024-02-20T10:00:00-00:00"),
            json!("2024-02-20T10:00Z"),
            json!("2016-12-31T23:59:60Z"),
            json!("2024-02-20T10:00:60Z"),
        ],
        "size" | "priority" => vec![
            json!("S"),
            json!("M"),
            json!("low"),
            json!("high"),
            json!("XL"),
            json!("s"),
        ],
        "address" => vec![json!({"city": "Berlin"}), json!("Berlin")],
        "items" => vec![json!(["a"]), json!("a")],
        "extra" => vec![json!("x"), json!(false), json!([1])],
        _ => vec![],
    };
    common.into_iter().chain(specific.into_iter().map(Some)).collect()
}

/// Every field of `typed_form`: the mandatory ones, then the optional.
fn fields() -> Vec<&'static str> {
    TYPED_MANDATORY
        .iter()
        .copied()
        .chain(["priority", "note"])
        .collect()
}

fn arb_payload() -> impl Strategy<Value = Map<String, Value>> {
    let per_field: Vec<_> = fields()
        .into_iter()
        .map(|f| prop::sample::select(pool(f)))
        .collect();
    (per_field, prop::option::of(".{0,8}")).prop_map(|(values, unknown)| {
        let mut payload = Map::new();
        for (field, value) in fields().into_iter().zip(values) {
            if let Some(value) = value {
                payload.insert(field.to_owned(), value);
            }
        }
        if let Some(v) = unknown {
            payload.insert("unknownField".into(), json!(v));
        }
        payload
    })
}

/// Mostly-valid payloads, so that acceptance is exercised as much as refusal.
fn arb_nearly_valid() -> impl Strategy<Value = Map<String, Value>> {
    (arb_payload(), prop::sample::select(fields())).prop_map(|(noise, field)| {
        let mut payload = typed_payload();
        match noise.get(field) {
            Some(v) => payload.insert(field.to_owned(), v.clone()),
            None => payload.remove(field),
        };
        payload
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_schema_accepts_exactly_what_validation_accepts(payload in prop_oneof![arb_payload(), arb_nearly_valid()]) {
        let form = typed_form();
        let by_schema = validator(&form).is_valid(&Value::Object(payload.clone()));
        let by_form = form.validate(payload.clone()).is_ok();
        prop_assert_eq!(by_schema, by_form, "{}", Value::Object(payload));
    }
}

#[test]
fn the_schema_has_types_required_enums_formats_and_defaults() {
    let schema = typed_form().json_schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(TYPED_MANDATORY));
    let p = &schema["properties"];
    assert_eq!(p["quantity"]["type"], "integer");
    assert_eq!(p["deliveryDate"]["format"], "date");
    assert_eq!(p["orderedAt"]["format"], "date-time");
    assert_eq!(p["size"]["enum"], json!(["S", "M", "L"]));
    assert_eq!(p["priority"]["enum"], json!(["low", "high", null]));
    assert_eq!(p["priority"]["default"], "low");
    assert_eq!(p["note"]["type"], json!(["string", "null"]));
}

#[test]
fn the_documented_payload_satisfies_the_order_schema() {
    let form = order_form();
    assert!(validator(&form).is_valid(&Value::Object(order_payload())));
    assert!(!validator(&form).is_valid(&json!({"customerName": "John Doe"})));
}

#[tokio::test]
async fn the_starter_serves_the_schema_of_the_deployment_the_token_would_start() {
    let world = World::new();
    let starter = world.starter();
    let schema = starter
        .schema(&uuid(ORDER_INTAKE), Some(&world.token))
        .await
        .unwrap();
    assert_eq!(schema, order_form().json_schema());
    let err = starter
        .schema(&uuid(DRAFT_ONLY), Some(&world.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "draft_version");
    let err = starter
        .schema(&uuid(FOREIGN), Some(&world.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_process");
    let err = starter.schema(&uuid(ORDER_INTAKE), None).await.unwrap_err();
    assert_eq!(err.code(), "missing_token");

    let reply = starter
        .handle_method(
            "GET",
            &webhook_url("/webhook/send", &uuid(ORDER_INTAKE)),
            [("authorization", world.bearer())],
            b"",
        )
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.content_type(), "application/schema+json");
    assert_eq!(
        serde_json::from_slice::<Value>(reply.body()).unwrap(),
        order_form().json_schema()
    );
    assert_eq!(world.started(), 0);
}
