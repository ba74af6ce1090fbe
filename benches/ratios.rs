//! The ratios of a start to its floors, measured interleaved: each round times the
//! subject and its floor back to back, and the report is the median of the
//! per-round ratios, so that the machine's drifting load (these machines
//! are noisy) cancels instead of landing on one side. The criterion groups
//! in `start.rs` measure the same pairs the usual way.
//!
//! Run with `cargo bench --bench ratios`.

use std::hint::black_box;
use std::sync::Arc;

use serde_json::{Map, Value};

mod common;
use common::{block_on, body, fixture, ratio, show, spread_starts, start};

fn main() {
    println!("{:<34} {:>7}", "target", "ratio");
    let f = fixture(0, 0);
    for (label, size, iters) in [("75B", 75, 2_000), ("4KiB", 4096, 100), ("64KiB", 65536, 8)] {
        let body = body(size);
        let r = ratio(
            iters,
            || {
                drop(black_box(
                    serde_json::from_slice::<Map<String, Value>>(black_box(&body)).unwrap(),
                ))
            },
            || drop(black_box(block_on(start(&f, black_box(&body))))),
        );
        show(&format!("whole start / parse, {label}"), "parse", r, "us");
    }

    let small = fixture(10, 10);
    let large = fixture(10_000, 100_000);
    let body = body(75);
    let r = ratio(
        2_000,
        || drop(black_box(block_on(start(&small, black_box(&body))))),
        || drop(black_box(block_on(start(&large, black_box(&body))))),
    );
    show("100k tokens+10k models / 10 each", "small", r, "us");

    let f = Arc::new(fixture(0, 0));
    let body: Arc<[u8]> = body.into();
    let one = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let two = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for (label, parse_only) in [("parse only (control)", true), ("whole start", false)] {
        // Throughput ratio: time with 1 worker / time with 2 workers.
        let r = ratio(
            1,
            || spread_starts(&two, &f, &body, 8_192, parse_only),
            || spread_starts(&one, &f, &body, 8_192, parse_only),
        );
        show(&format!("2 workers / 1 worker, {label}"), "2 workers", r, "us");
    }
}
