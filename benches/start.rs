//! Issue 5's targets, each measured against its floor in the same group so
//! that the ratio is read from one run:
//!
//! - `start_vs_parse/{75B,4KiB,64KiB}`: `from_parts` + `start_via_webhook`
//!   (in-memory stores, no-op engine) against `serde_json::from_slice` of the
//!   same body alone.
//! - `store_size`: the same start with 10 tokens and models stored, and with
//!   100,000 tokens and 10,000 models.
//! - `cores`: 20,000 starts on the multi-threaded runtime with 1 and with 2
//!   worker threads.
//!
//! Run with `cargo bench --bench start`. The HTTP and memory targets are in
//! `benches/http.rs` and `benches/memory.rs`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};

mod common;
use common::{block_on, body, fixture, spread_starts, start};

fn start_vs_parse(c: &mut Criterion) {
    let f = fixture(0, 0);
    let mut group = c.benchmark_group("start_vs_parse");
    for (label, size) in [("75B", 75), ("4KiB", 4096), ("64KiB", 65536)] {
        let body = body(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_only", label), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<Map<String, Value>>(black_box(body)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("whole_start", label), &body, |b, body| {
            b.iter(|| block_on(start(&f, black_box(body))))
        });
    }
    group.finish();
}

fn store_size(c: &mut Criterion) {
    let small = fixture(10, 10);
    let large = fixture(10_000, 100_000);
    let body = body(75);
    let mut group = c.benchmark_group("store_size");
    group.bench_function("10_models_10_tokens", |b| {
        b.iter(|| block_on(start(&small, black_box(&body))))
    });
    group.bench_function("10k_models_100k_tokens", |b| {
        b.iter(|| block_on(start(&large, black_box(&body))))
    });
    group.finish();
}

fn cores(c: &mut Criterion) {
    const STARTS: usize = 20_000;
    let f = Arc::new(fixture(0, 0));
    let body: Arc<[u8]> = body(75).into();
    let mut group = c.benchmark_group("cores");
    group.sample_size(20);
    group.throughput(Throughput::Elements(STARTS as u64));
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("starts", format!("{workers}_workers")), |b| {
            b.iter(|| spread_starts(&runtime, &f, &body, STARTS, false))
        });
    }
    group.finish();
}

criterion_group!(benches, start_vs_parse, store_size, cores);
criterion_main!(benches);
