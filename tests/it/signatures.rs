//! Signed webhooks (Standard Webhooks): the specification's test vector,
//! tampering, staleness and rotation.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use process_webhook::*;

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const TS: &str = "1649367553";
const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn at(ts: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ts)
}

fn verify(
    secrets: &[SigningSecret],
    id: &str,
    ts: &str,
    sig: &str,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    SignatureVerifier::new(secrets.iter().cloned()).verify_at(
        body,
        &SignatureHeaders::new(id, ts, sig),
        at(now),
    )
}

fn secret() -> SigningSecret {
    SECRET.parse().unwrap()
}

#[test]
fn the_specification_test_vector_verifies() {
    assert_eq!(secret().sign(ID, 1649367553, BODY), SIG);
    verify(&[secret()], ID, TS, SIG, BODY, 1649367553).unwrap();
    verify(
        &[secret()],
        ID,
        TS,
        &format!("v1,bm9wZQ== {SIG} v2,xyz"),
        BODY,
        1649367553,
    )
    .unwrap();
}

#[test]
fn tampered_bodies_ids_timestamps_and_signatures_are_invalid_signature() {
    let now = 1649367553;
    let tampered_body = br#"{"email":"test@example.com","username":"test_user2"}"#;
    for (id, ts, sig, body) in [
        (ID, TS, SIG, &tampered_body[..]),
        (ID, TS, SIG, &BODY[..BODY.len() - 1]),
        ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpK", TS, SIG, BODY),
        (ID, "1649367554", SIG, BODY),
        (ID, TS, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkx=", BODY),
        (ID, TS, "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", BODY),
        (ID, TS, "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=", BODY),
        (ID, TS, "", BODY),
        ("", TS, SIG, BODY),
        (ID, "soon", SIG, BODY),
    ] {
        let err = verify(&[secret()], id, ts, sig, body, now).unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (401, "invalid_signature"),
            "{id} {ts} {sig}"
        );
    }
    let other: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
    assert_eq!(
        verify(&[other], ID, TS, SIG, BODY, now).unwrap_err().code(),
        "invalid_signature"
    );
}

#[test]
fn timestamps_outside_five_minutes_either_way_are_stale() {
    let ts = 1649367553;
    verify(&[secret()], ID, TS, SIG, BODY, ts + 300).unwrap();
    verify(&[secret()], ID, TS, SIG, BODY, ts - 300).unwrap();
    for now in [ts + 301, ts - 301, ts + 86_400] {
        let err = verify(&[secret()], ID, TS, SIG, BODY, now).unwrap_err();
        assert_eq!((err.status(), err.code()), (401, "stale_timestamp"));
    }
}

#[test]
fn a_signature_made_over_an_empty_webhook_id_is_refused() {
    let now = 1649367553;
    let over_empty_id = secret().sign("", now as i64, BODY);
    let err = verify(&[secret()], "", TS, &over_empty_id, BODY, now).unwrap_err();
    assert_eq!((err.status(), err.code()), (401, "invalid_signature"));
    let err = verify(&[], ID, TS, SIG, BODY, now).unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (401, "invalid_signature"),
        "no secret"
    );
}

#[test]
fn a_clock_set_before_1970_counts_seconds_before_it() {
    let before = UNIX_EPOCH - Duration::from_secs(1_000);
    let check = |ts: i64| {
        let signed = secret().sign(ID, ts, BODY);
        SignatureVerifier::new([secret()]).verify_at(
            BODY,
            &SignatureHeaders::new(ID, ts.to_string(), signed),
            before,
        )
    };
    check(-1_000).unwrap();
    check(-1_300).unwrap();
    for ts in [1_000, -1_301, -700 + 1] {
        let err = check(ts).unwrap_err();
        assert_eq!((err.status(), err.code()), (401, "stale_timestamp"), "{ts}");
    }
}

#[test]
fn while_rotating_either_secret_verifies() {
    let new = SigningSecret::generate();
    let both = [new.clone(), secret()];
    verify(&both, ID, TS, SIG, BODY, 1649367553).unwrap();
    let signed_with_new = new.sign(ID, 1649367553, BODY);
    verify(&both, ID, TS, &signed_with_new, BODY, 1649367553).unwrap();
    assert!(verify(&[secret()], ID, TS, &signed_with_new, BODY, 1649367553).is_err());
}

#[test]
fn malformed_secrets_are_refused() {
    for text in ["whsec_", "whsec_!!!", "not base64 at all"] {
        assert_eq!(text.parse::<SigningSecret>(), Err(InvalidSigningSecret), "{text}");
    }
    let round: SigningSecret = secret().expose_secret().parse().unwrap();
    assert_eq!(round, secret());
}

/// A world whose production environment requires signatures.
fn signed_world(secrets: &[SigningSecret]) -> World {
    let world = World::new();
    let mut env = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    for s in secrets {
        env = env.with_signing_secret(s.clone());
    }
    world.tokens.insert(&world.token, env);
    world
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn signed_headers(
    world: &World,
    secret: &SigningSecret,
    id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", world.bearer()),
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", secret.sign(id, ts, body)),
    ]
}

#[tokio::test]
async fn an_environment_with_a_secret_starts_only_signed_calls() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let starter = world.starter();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();

    let unsigned = starter
        .handle(&target, [("authorization", world.bearer())], &body)
        .await;
    assert_reply(&unsigned, 401, "invalid_signature");

    let mut tampered = body.clone();
    tampered[5] ^= 1;
    let reply = starter
        .handle(
            &target,
            signed_headers(&world, &key, "msg_1", now(), &body),
            &tampered,
        )
        .await;
    assert_reply(&reply, 401, "invalid_signature");

    let stale = now() - 600;
    let reply = starter
        .handle(
            &target,
            signed_headers(&world, &key, "msg_1", stale, &body),
            &body,
        )
        .await;
    assert_reply(&reply, 401, "stale_timestamp");

    assert_eq!(world.started(), 0);
    let reply = starter
        .handle(
            &target,
            signed_headers(&world, &key, "msg_1", now(), &body),
            &body,
        )
        .await;
    assert_eq!(reply.status(), 202);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn the_signature_is_checked_before_the_body_is_parsed() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let garbage = b"not json at all";
    let forged = signed_headers(&world, &SigningSecret::generate(), "msg_1", now(), garbage);
    let reply = world.starter().handle(&target, forged, garbage).await;
    assert_reply(&reply, 401, "invalid_signature");
}

#[tokio::test]
async fn from_parts_and_start_verify_signatures_too() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let good = WebhookStartRequest::from_parts(
        &target,
        signed_headers(&world, &key, "msg_9", now(), &body),
        &body,
    )
    .unwrap();
    assert_eq!(
        good.idempotency_key(),
        Some("msg_9"),
        "webhook-id is the idempotency key"
    );
    world.start(good).await.unwrap();
    let forged = signed_headers(&world, &SigningSecret::generate(), "msg_9", now(), &body);
    let bad = WebhookStartRequest::from_parts(&target, forged, &body).unwrap();
    assert_refused(world.start(bad).await, 401, "invalid_signature");
    assert_refused(
        world.start(world.request(ORDER_INTAKE, order_payload())).await,
        401,
        "invalid_signature",
    );
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn webhook_id_serves_as_the_idempotency_key() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let first = starter
        .handle(
            &target,
            signed_headers(&world, &key, "msg_redelivered", now(), &body),
            &body,
        )
        .await;
    // A redelivery is signed anew, with a new timestamp, and the same id.
    let again = starter
        .handle(
            &target,
            signed_headers(&world, &key, "msg_redelivered", now() + 1, &body),
            &body,
        )
        .await;
    assert_eq!((first.status(), again.status()), (202, 202));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(world.started(), 1);
    assert_eq!(
        world.engine.started()[0].command.idempotency_key.as_deref(),
        Some("msg_redelivered")
    );
}

#[tokio::test]
async fn rotated_secrets_are_both_accepted_by_the_starter() {
    let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
    let world = signed_world(&[old.clone(), new.clone()]);
    let starter = world.starter();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    for (i, key) in [old, new].iter().enumerate() {
        let reply = starter
            .handle(
                &target,
                signed_headers(&world, key, &format!("msg_{i}"), now(), &body),
                &body,
            )
            .await;
        assert_eq!(reply.status(), 202);
    }
    assert_eq!(world.started(), 2);
}

#[tokio::test]
async fn a_signed_environment_serves_its_schema_only_to_a_signed_get() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let starter = world.starter();
    let err = starter
        .schema(&uuid(ORDER_INTAKE), Some(&world.token))
        .await
        .unwrap_err();
    assert_eq!((err.status(), err.code()), (401, "invalid_signature"));
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let reply = starter
        .handle_method(
            "GET",
            &target,
            signed_headers(&world, &key, "msg_get", now(), b""),
            b"",
        )
        .await;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.content_type(), "application/schema+json");
    let unsigned = starter
        .handle_method("GET", &target, [("authorization", world.bearer())], b"")
        .await;
    assert_reply(&unsigned, 401, "invalid_signature");
}

#[tokio::test]
async fn signatures_may_come_in_several_header_lines() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let starter = world.starter();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let ts = now();
    let stale_secret = SigningSecret::generate();
    let headers = vec![
        ("authorization", world.bearer()),
        ("webhook-id", "msg_1".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        // One line with a signature by a retired secret, one with the
        // current one: either line may hold the valid signature.
        ("webhook-signature", stale_secret.sign("msg_1", ts, &body)),
        ("webhook-signature", key.sign("msg_1", ts, &body)),
    ];
    let reply = starter.handle(&target, headers, &body).await;
    assert_eq!(reply.status(), 202);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_webhook_id_alone_is_the_idempotency_key_of_an_unsigned_environment() {
    let world = World::new();
    let starter = world
        .starter()
        .with_idempotency(Arc::new(InMemoryIdempotencyStore::new()));
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let headers = || {
        vec![
            ("authorization", world.bearer()),
            ("webhook-id", "msg_7".to_owned()),
        ]
    };
    let first = starter.handle(&target, headers(), &body).await;
    let again = starter.handle(&target, headers(), &body).await;
    assert_eq!((first.status(), again.status()), (202, 202));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(world.started(), 1);
    assert_eq!(
        world.engine.started()[0].command.idempotency_key.as_deref(),
        Some("msg_7")
    );
}

#[test]
fn signature_headers_read_back_what_was_sent() {
    let headers = SignatureHeaders::new(ID, TS, SIG);
    assert_eq!(
        (headers.id(), headers.timestamp(), headers.signatures()),
        (ID, TS, SIG)
    );
    assert_eq!(headers, SignatureHeaders::new(ID, TS, SIG));
    assert_ne!(headers, SignatureHeaders::new(ID, "1649367554", SIG));
}

#[test]
fn a_verifier_checks_against_the_clock_within_its_tolerance() {
    let verifier = SignatureVerifier::new([secret()]);
    assert_eq!(verifier.tolerance(), SignatureVerifier::DEFAULT_TOLERANCE);
    assert!(!format!("{verifier:?}").contains("C2FVsBQ"), "no secret in Debug");
    let ten_minutes_late = at(1649367553 + 600);
    let headers = SignatureHeaders::new(ID, TS, SIG);
    let err = verifier.verify_at(BODY, &headers, ten_minutes_late).unwrap_err();
    assert_eq!((err.status(), err.code()), (401, "stale_timestamp"));
    let lenient = verifier.clone().with_tolerance(Duration::from_secs(15 * 60));
    assert_eq!(lenient.tolerance(), Duration::from_secs(15 * 60));
    lenient.verify_at(BODY, &headers, ten_minutes_late).unwrap();

    // `verify` reads the system clock: a signature made now verifies, and
    // the specification's 2022 vector is long stale.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let fresh = SignatureHeaders::new(ID, now.to_string(), secret().sign(ID, now, BODY));
    verifier.verify(BODY, &fresh).unwrap();
    let err = verifier.verify(BODY, &headers).unwrap_err();
    assert_eq!(err.code(), "stale_timestamp");
    let err = verifier.verify(b"{}", &fresh).unwrap_err();
    assert_eq!((err.status(), err.code()), (401, "invalid_signature"));
}

#[test]
fn a_signing_secret_shows_no_key_in_debug() {
    let shown = format!("{:?} {:#?}", secret(), secret());
    assert_eq!(format!("{:?}", secret()), "SigningSecret([redacted])");
    assert!(!shown.contains("C2FVsBQ"), "{shown}");
}

#[test]
fn a_verifiers_error_is_the_webhook_error_a_call_gets() {
    // The small error of the verifier converts into the error a call is
    // answered with: the same status and code, from the one table.
    for (error, code) in [
        (SignatureError::Invalid, "invalid_signature"),
        (SignatureError::Stale, "stale_timestamp"),
    ] {
        let webhook = WebhookError::from(error);
        assert_eq!((error.status(), error.code()), (401, code));
        assert_eq!((webhook.status(), webhook.code()), (401, code));
    }
    let key = "".parse::<CallerKey>().unwrap_err();
    assert_eq!(key, InvalidIdempotencyKey);
    let webhook = WebhookError::from(key);
    assert_eq!(
        (webhook.status(), webhook.code()),
        (400, "invalid_idempotency_key")
    );
    assert_eq!((key.status(), key.code()), (400, "invalid_idempotency_key"));
}

#[tokio::test]
async fn the_free_function_allows_a_signature_a_minute_old_as_the_default_tolerance_says() {
    let key = SigningSecret::generate();
    let world = signed_world(std::slice::from_ref(&key));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let target = webhook_url("/webhook/send", &uuid(ORDER_INTAKE));
    let minute_old = signed_headers(&world, &key, "msg_free", now() - 60, &body);
    let request = WebhookStartRequest::from_parts(&target, minute_old, &body).unwrap();
    start_via_webhook(request, &*world.models, &*world.tokens, &*world.engine)
        .await
        .expect("within the default tolerance of 5 minutes");
    let stale = signed_headers(&world, &key, "msg_stale", now() - 301, &body);
    let request = WebhookStartRequest::from_parts(&target, stale, &body).unwrap();
    let refused = start_via_webhook(request, &*world.models, &*world.tokens, &*world.engine).await;
    assert_refused(refused, 401, "stale_timestamp");
    assert_eq!(world.started(), 1);
}
