//! A started instance's variables are moved, not copied, from the parsed
//! body to the engine: the bytes a whole start allocates beyond parsing its
//! body do not grow with the body. Counted with a counting allocator (this
//! binary holds only this test, so no other thread allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use process_webhook::*;
use serde_json::{Map, Value, json};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size.saturating_sub(layout.size()), Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct NoopEngine;

#[async_trait]
impl Engine for NoopEngine {
    async fn start(&self, command: &StartCommand) -> Result<ProcessInstance, EngineError> {
        std::hint::black_box(command);
        Ok(ProcessInstance::new(InstanceId::new("i")))
    }
}

fn allocated_by<T>(f: impl FnOnce() -> T) -> usize {
    let before = ALLOCATED.load(Ordering::SeqCst);
    drop(std::hint::black_box(f()));
    ALLOCATED.load(Ordering::SeqCst) - before
}

/// Polls a future that never waits (no runtime, whose own allocations would
/// blur the count).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("the in-memory path never waits"),
    }
}

fn body(items: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..items)
        .map(|i| json!({"sku": format!("SKU-{i:06}"), "note": "gift wrap"}))
        .collect();
    serde_json::to_vec(&json!({"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123", "items": items}))
        .unwrap()
}

#[test]
fn a_start_allocates_the_same_beyond_parsing_whatever_the_body_size() {
    let process: ProcessUuid = "dd9759e0-cc94-11ed-938f-13cf60270555".parse().unwrap();
    let (acme, prod) = (OrganizationId::new("acme"), EnvironmentId::new("production"));
    let models = InMemoryModelStore::new();
    models.insert_model(ProcessModel::new(process, acme.clone(), "Order intake"));
    let form = StartForm::new([
        FieldSpec::mandatory("customerName", FieldKind::Text),
        FieldSpec::mandatory("items", FieldKind::Array),
    ]);
    models.deploy(Deployment::new(
        process,
        VersionTag::Released(1),
        prod.clone(),
        form,
    ));
    let tokens = InMemoryTokenStore::new();
    let token = EnvironmentToken::generate();
    tokens.insert(&token, Environment::new(prod, acme));
    let auth = format!("Bearer {}", token.expose_secret());
    let target = webhook_url("/webhook/send", &process);

    let mut extra = Vec::new();
    // The first round warms up what is initialised once per process.
    for items in [1, 1, 2_000] {
        let body = body(items);
        let parse = allocated_by(|| serde_json::from_slice::<Map<String, Value>>(&body).unwrap());
        let start = allocated_by(|| {
            let request =
                WebhookStartRequest::from_parts(&target, [("authorization", auth.as_str())], &body).unwrap();
            block_on(start_via_webhook(request, &models, &tokens, &NoopEngine)).unwrap()
        });
        assert!(start >= parse, "a start parses its body");
        extra.push((body.len(), start - parse));
    }
    let (small, large) = (extra[1], extra[2]);
    assert!(large.0 > 64 * 1024, "the large body is {} bytes", large.0);
    // Copying the variables would add at least the parsed size again
    // (hundreds of KiB here); moving them adds nothing that grows.
    assert_eq!(
        small.1, large.1,
        "bytes allocated beyond parsing: {small:?} vs {large:?}"
    );
}
