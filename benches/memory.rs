//! Peak memory with 10,000 starts in flight: every start is parsed,
//! checked and handed to an engine that holds it until all 10,000 have
//! arrived, against the floor of 10,000 parsed bodies held at once. A
//! counting allocator measures the peak of live heap bytes. Prints a table
//! (not criterion: this is a one-shot measurement of bytes, not time).
//!
//! Run with `cargo bench --bench memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use process_webhook::*;
use serde_json::{Map, Value};

mod common;
use common::{body, fixture};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const IN_FLIGHT: usize = 10_000;

/// Holds every command until `IN_FLIGHT` are held, like a slow engine.
#[derive(Default)]
struct HoldingEngine {
    held: Mutex<Vec<StartCommand>>,
    all_in: tokio::sync::Notify,
}

#[async_trait]
impl Engine for HoldingEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        let notified = self.all_in.notified();
        let full = {
            let mut held = self.held.lock().unwrap();
            held.push(command.clone());
            held.len() == IN_FLIGHT
        };
        if full {
            self.all_in.notify_waiters();
        } else {
            notified.await;
        }
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }
}

/// Starts at once, then holds every wait until `IN_FLIGHT` calls wait.
#[derive(Default)]
struct WaitingEngine {
    waiting: Mutex<usize>,
    all_in: tokio::sync::Notify,
}

#[async_trait]
impl Engine for WaitingEngine {
    async fn start(&self, _: &StartCommand) -> Result<ProcessInstance, EngineError> {
        Ok(ProcessInstance::new(InstanceId::new("instance")))
    }

    async fn wait(&self, _: &InstanceRef, _: std::time::Duration) -> Result<Option<Completion>, EngineError> {
        let notified = self.all_in.notified();
        let full = {
            let mut waiting = self.waiting.lock().unwrap();
            *waiting += 1;
            *waiting == IN_FLIGHT
        };
        if full {
            self.all_in.notify_waiters();
        } else {
            notified.await;
        }
        Ok(Some(Completion::Running))
    }
}

fn measure(f: impl FnOnce()) -> usize {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst) - base
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<8} {:>16} {:>16} {:>7}",
        "body", "floor peak", "starts peak", "ratio"
    );
    for (label, size) in [("75B", 75), ("4KiB", 4096)] {
        let f = Arc::new(fixture(0, 0));
        let body: Arc<[u8]> = body(size).into();
        let floor = measure(|| {
            let held: Vec<Map<String, Value>> = (0..IN_FLIGHT)
                .map(|_| serde_json::from_slice(&body).unwrap())
                .collect();
            drop(std::hint::black_box(held));
        });
        let engine = Arc::new(HoldingEngine::default());
        let starter = WebhookStarter::new(
            Arc::new(f.models.clone()),
            Arc::new(f.tokens.clone()),
            engine.clone(),
        );
        let starts = measure(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..IN_FLIGHT)
                    .map(|_| {
                        let (starter, f, body) = (starter.clone(), f.clone(), body.clone());
                        tokio::spawn(async move {
                            let request = WebhookStartRequest::from_parts(
                                &f.target,
                                [("authorization", f.auth.as_str())],
                                &body,
                            )
                            .unwrap();
                            starter.start(request).await.unwrap()
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            engine.held.lock().unwrap().clear();
        });
        println!(
            "{label:<8} {:>13} KiB {:>13} KiB {:>6.2}x",
            floor / 1024,
            starts / 1024,
            starts as f64 / floor as f64
        );
    }

    // Calls with `Prefer: wait=30` through `handle`, all waiting at once:
    // what one waiting call holds (its task, the call's future, its place
    // among the waiting calls), the engine's own wait state aside.
    let f = Arc::new(fixture(0, 0));
    let body: Arc<[u8]> = body(75).into();
    let engine = Arc::new(WaitingEngine::default());
    let starter = WebhookStarter::new(
        Arc::new(f.models.clone()),
        Arc::new(f.tokens.clone()),
        engine.clone(),
    )
    .with_max_waiting_calls(IN_FLIGHT);
    let waiting = measure(|| {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    let (starter, f, body) = (starter.clone(), f.clone(), body.clone());
                    tokio::spawn(async move {
                        let headers = [("authorization", f.auth.as_str()), ("prefer", "wait=30")];
                        starter.handle(&f.target, headers, &body).await.status()
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), 202);
            }
        });
    });
    println!(
        "waiting calls: {IN_FLIGHT} at once, peak {} KiB, {} B per waiting call",
        waiting / 1024,
        waiting / IN_FLIGHT
    );

    // Keys an in-memory idempotency store holds: the keyed starts of a
    // GitHub-like sender (a 36-character delivery id each), completed, and
    // the heap they keep (what sizes `InMemoryIdempotencyStore`'s default
    // capacity).
    const KEYS: usize = 100_000;
    let f = Arc::new(fixture(0, 0));
    let order: Arc<[u8]> = common::body(75).into();
    let store = InMemoryIdempotencyStore::new().with_capacity(KEYS);
    let starter = WebhookStarter::new(
        Arc::new(f.models.clone()),
        Arc::new(f.tokens.clone()),
        Arc::new(common::NoopEngine),
    )
    .with_idempotency(Arc::new(store.clone()));
    let before = LIVE.load(Ordering::SeqCst);
    runtime.block_on(async {
        for n in 0..KEYS {
            let key = format!("{:08x}-cc78-11e3-81ab-4c9367dc0958", n);
            let headers = [
                ("authorization", f.auth.as_str()),
                ("idempotency-key", key.as_str()),
            ];
            assert_eq!(starter.handle(&f.target, headers, &order).await.status(), 202);
        }
    });
    let held = LIVE.load(Ordering::SeqCst) - before;
    assert_eq!(store.len(), KEYS);
    println!(
        "idempotency keys: {KEYS} completed keyed starts held in memory, {} KiB, {} B per key",
        held / 1024,
        held / KEYS
    );
}
