//! The stored forms of the domain types: a host persisting models,
//! deployments, start forms and environments gets these exact JSON shapes,
//! and reads back what it wrote.

use crate::common;

use common::*;
use process_webhook::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> serde_json::Value {
    let json = serde_json::to_value(value).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, value, "{json}");
    json
}

#[test]
fn a_process_model_is_its_uuid_organization_and_name() {
    let model = ProcessModel::new(uuid(ORDER_INTAKE), OrganizationId::new("acme"), "Order intake");
    assert_eq!(
        round_trip(&model),
        json!({"uuid": ORDER_INTAKE, "organization": "acme", "name": "Order intake"})
    );
}

#[test]
fn a_deployment_keeps_its_id_and_its_whole_start_form() {
    let deployment = Deployment::new(
        uuid(ORDER_INTAKE),
        VersionTag::Released(2),
        EnvironmentId::new("production"),
        typed_form(),
    )
    .with_definition_key("order-intake");
    let json = round_trip(&deployment);
    assert_eq!(json["id"], deployment.id().to_string());
    assert_eq!(json["process"], ORDER_INTAKE);
    assert_eq!(json["version"], json!({"released": 2}));
    assert_eq!(json["environment"], "production");
    assert_eq!(json["definitionKey"], "order-intake");
    assert_eq!(
        json["startForm"]["fields"].as_array().unwrap().len(),
        typed_form().fields().len()
    );
    let draft = Deployment::new(
        uuid(DRAFT_ONLY),
        VersionTag::Draft,
        EnvironmentId::new("production"),
        StartForm::default(),
    );
    assert_eq!(round_trip(&draft)["version"], "draft");
}

#[test]
fn fields_and_kinds_are_tagged_names() {
    let form = StartForm::new([
        FieldSpec::mandatory("orderNumber", FieldKind::Text),
        FieldSpec::mandatory("orderedAt", FieldKind::DateTime),
        FieldSpec::optional("size", FieldKind::Choice(vec!["S".into(), "M".into()])).with_default(json!("M")),
    ]);
    assert_eq!(
        round_trip(&form),
        json!({"fields": [
            {"name": "orderNumber", "kind": {"type": "text"}, "mandatory": true},
            {"name": "orderedAt", "kind": {"type": "dateTime"}, "mandatory": true},
            {"name": "size", "kind": {"type": "choice", "options": ["S", "M"]}, "mandatory": false, "default": "M"},
        ]})
    );
    for kind in [
        FieldKind::Text,
        FieldKind::Number,
        FieldKind::Integer,
        FieldKind::Boolean,
        FieldKind::Date,
        FieldKind::DateTime,
        FieldKind::Choice(vec![]),
        FieldKind::Object,
        FieldKind::Array,
        FieldKind::Any,
    ] {
        round_trip(&kind);
    }
    // Read back, two fields of one name follow the form's rule: the later wins.
    let form: StartForm = serde_json::from_value(json!({"fields": [
        {"name": "a", "kind": {"type": "text"}, "mandatory": true},
        {"name": "a", "kind": {"type": "integer"}, "mandatory": false},
    ]}))
    .unwrap();
    assert_eq!(form.fields().len(), 1);
    assert_eq!(form.fields()[0].kind(), &FieldKind::Integer);
    assert_eq!(form.fields()[0].default_value(), None);
    let form: StartForm = serde_json::from_value(json!({"fields": [
        {"name": "size", "kind": {"type": "text"}, "mandatory": false, "default": "M"},
    ]}))
    .unwrap();
    assert_eq!(form.fields()[0].default_value(), Some(&json!("M")));
    // An unknown kind is an error, not a guess.
    assert!(serde_json::from_value::<FieldKind>(json!({"type": "money"})).is_err());
}

#[test]
fn an_environment_never_carries_its_signing_secrets() {
    let secret = SigningSecret::generate();
    let env = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"))
        .with_signing_secret(secret.clone());
    let json = serde_json::to_value(&env).unwrap();
    assert_eq!(json, json!({"id": "production", "organization": "acme"}));
    assert!(!json.to_string().contains(&secret.expose_secret()[6..]));
    let back: Environment = serde_json::from_value(json).unwrap();
    assert!(back.signing_secrets().is_empty());
    assert_eq!(back.id(), env.id());
}

#[test]
fn a_token_digest_is_stored_as_hex_and_the_token_never_is() {
    let token = EnvironmentToken::new("abc");
    let json = round_trip(&token.digest());
    // SHA-256("abc"), FIPS 180-2.
    assert_eq!(
        json,
        json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    let upper: TokenDigest = serde_json::from_value(json!(
        "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    ))
    .unwrap();
    assert_eq!(upper, token.digest());
    for bad in [
        json!("ba78"),
        json!("zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        json!(5),
    ] {
        assert!(
            serde_json::from_value::<TokenDigest>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
