//! The integration tests: one binary, a module per behaviour.
//!
//! Tests that need a process of their own (a global allocator, the
//! `webhook_server` binary) are separate binaries beside this folder.

#[path = "../common/mod.rs"]
mod common;

mod admin_api;
mod axum_server;
mod bad_inputs;
mod camunda7;
mod camunda7_engine;
mod camunda8;
mod conformance;
mod delivery_log;
mod dry_run;
mod engine_away;
mod envelope;
mod faults;
mod forms;
mod hardening;
mod http_details;
mod http_edge;
mod idempotency;
mod inbox;
mod limits;
mod logs;
mod mapping;
mod multipart;
mod one_order;
mod openapi;
mod operations;
mod postgres;
mod properties;
mod rate_limits;
mod redis;
mod schema;
mod secrets;
mod serde_shapes;
mod signatures;
mod sources;
mod sqlite;
mod start_rules;
mod takeover;
mod temporal;
mod wait;
