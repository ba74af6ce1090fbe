//! Instructions of one whole start from raw parts (the `ratios` bench's
//! subject) against parsing the same body alone (its floor), for callgrind,
//! which counts the same on a busy machine:
//!
//! ```sh
//! cargo build --release --example start_cost
//! for mode in parse start; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$mode ./target/release/examples/start_cost $mode 20000
//! done
//! ```
//!
//! Each run does 1,000 warm-up calls then `N` measured ones; subtract a run
//! with `N = 0` and divide by `N` (`callgrind_annotate` prints the totals).

use std::hint::black_box;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{block_on, body, fixture, start};

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "start".into());
    let calls: usize = args.next().map_or(20_000, |n| n.parse().expect("a number"));
    let f = fixture(0, 0);
    let body = body(75);
    for _ in 0..1_000 + calls {
        match mode.as_str() {
            "parse" => drop(black_box(
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(black_box(&body))
                    .unwrap(),
            )),
            "start" => drop(black_box(block_on(start(&f, black_box(&body))))),
            other => panic!("mode is parse or start, not {other}"),
        }
    }
}
