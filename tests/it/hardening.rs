//! Hostile traffic against the ready server (`router` + `serve`) over real
//! loopback sockets: callers without a valid token cannot make it hold
//! memory, slow or idle connections are closed, the connection bound refuses
//! rather than locks everyone out, and shutdown lets calls in flight finish.
#![cfg(feature = "axum")]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process_webhook::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATH: &str = "/webhook/send?uid=dd9759e0-cc94-11ed-938f-13cf60270555";

async fn start_server(starter: WebhookStarter, options: ServeOptions) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router("/webhook/send", starter);
    tokio::spawn(serve(listener, app, options, std::future::pending()));
    addr
}

/// Sends a request head (with `content-length: declared`) and `body_part`,
/// and leaves the connection open.
async fn send_head(addr: SocketAddr, auth: Option<&str>, declared: usize, body_part: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: test\r\n{auth}content-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body_part).await.unwrap();
    stream
}

/// Reads one answer: its status and its body as JSON (if it has one).
async fn read_answer(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break text;
            }
        }
        assert!(n > 0, "the connection closed before a whole answer: {text}");
    };
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Whether the server closed the connection (within 5 s).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Waits up to a second for the bytes in flight to read `n` (the server
/// claims them as it reads); the caller asserts the reading.
async fn bytes_in_flight_reach(starter: &WebhookStarter, n: usize) {
    for _ in 0..100 {
        if starter.body_bytes_in_flight() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_unknown_token_is_refused_before_a_byte_of_the_body_is_read() {
    let world = World::new();
    let starter = world.starter();
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    // 1 MiB - 1 declared, nothing sent: the answer cannot wait for the body.
    let mut stream = send_head(addr, Some("Bearer guessed"), 1024 * 1024 - 1, b"").await;
    let (status, _, doc) = read_answer(&mut stream).await;
    assert_eq!((status, doc["code"].as_str()), (401, Some("invalid_token")));
    assert_eq!(starter.body_bytes_in_flight(), 0, "nothing was buffered");
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn without_envelopes_a_missing_token_is_refused_unread_too() {
    let world = World::new();
    let starter = world.starter().with_envelope_bodies(false);
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    let mut stream = send_head(addr, None, 1024 * 1024 - 1, b"{").await;
    let (status, _, doc) = read_answer(&mut stream).await;
    assert_eq!((status, doc["code"].as_str()), (401, Some("missing_token")));
    assert_eq!(starter.body_bytes_in_flight(), 0);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_and_its_bytes_are_given_back() {
    let world = World::new();
    let starter = world.starter().with_body_timeout(Duration::from_millis(200));
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    let mut stream = send_head(addr, Some(&world.bearer()), 100, br#"{"customerName""#).await;
    let (status, _, doc) = read_answer(&mut stream).await;
    assert_eq!((status, doc["code"].as_str()), (408, Some("body_timeout")));
    assert_eq!(starter.body_bytes_in_flight(), 0);
    assert_eq!(world.started(), 0);
}

#[tokio::test]
async fn bodies_in_flight_are_bounded_and_calls_over_the_bound_get_503() {
    let world = World::new();
    let starter = world.starter().with_max_body_bytes_in_flight(1_000);
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    // One authenticated caller holds 800 bytes and stalls.
    let mut staller = send_head(addr, Some(&world.bearer()), 800, b"{").await;
    bytes_in_flight_reach(&starter, 800).await;
    assert_eq!(starter.body_bytes_in_flight(), 800);
    // The next one would pass the bound.
    let mut second = send_head(addr, Some(&world.bearer()), 800, b"").await;
    let (status, head, doc) = read_answer(&mut second).await;
    assert_eq!((status, doc["code"].as_str()), (503, Some("server_busy")));
    assert!(head.contains("retry-after: 1"), "{head}");
    // A small call still fits.
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut small = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
    let (status, _, _) = read_answer(&mut small).await;
    assert_eq!(status, 202);
    // When the staller is gone, its bytes are given back.
    staller.shutdown().await.unwrap();
    drop(staller);
    bytes_in_flight_reach(&starter, 0).await;
    assert_eq!(starter.body_bytes_in_flight(), 0);
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_slow_head_is_closed_after_the_header_timeout() {
    let world = World::new();
    let options = ServeOptions::default().with_header_read_timeout(Duration::from_millis(200));
    let addr = start_server(world.starter(), options).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // One byte now and then, never a whole head (slowloris).
    stream.write_all(b"P").await.unwrap();
    let mut feeding = true;
    let mut ticks = 0;
    while feeding && ticks < 50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        feeding = stream.write_all(b"O").await.is_ok();
        ticks += 1;
    }
    assert!(
        !feeding || closed(&mut stream).await,
        "the slow sender was cut off"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let world = World::new();
    let options = ServeOptions::default()
        .with_idle_timeout(Duration::from_millis(200))
        .with_header_read_timeout(Duration::from_secs(30));
    let addr = start_server(world.starter(), options.clone()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed(&mut idle).await,
        "a connection that sends nothing is closed"
    );

    // After a complete request, the kept-alive connection idles out too.
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut kept = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
    let (status, _, _) = read_answer(&mut kept).await;
    assert_eq!(status, 202);
    assert!(closed(&mut kept).await);

    // A call that takes longer than the idle timeout is not idle: it gets
    // its answer.
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(700)));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let addr = start_server(starter, options).await;
    let mut busy = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
    let (status, _, _) = read_answer(&mut busy).await;
    assert_eq!(status, 202, "the slow start was answered");
    assert_eq!(engine.inner.started().len(), 1);
}

#[tokio::test]
async fn the_idle_timeout_counts_from_the_last_answer_not_from_the_connection() {
    let world = World::new();
    let options = ServeOptions::default()
        .with_idle_timeout(Duration::from_millis(500))
        .with_header_read_timeout(Duration::from_secs(30));
    let addr = start_server(world.starter(), options).await;
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Five calls 250 ms apart on one kept-alive connection: 1 s in all,
    // twice the idle timeout, but never 500 ms without a call.
    for call in 0..5 {
        let head = format!(
            "POST {PATH} HTTP/1.1\r\nhost: test\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            world.bearer(),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        let (status, _, _) = read_answer(&mut stream).await;
        assert_eq!(status, 202, "call {call} on the same connection");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(world.started(), 5);
}

#[tokio::test]
async fn the_header_timeout_counts_from_the_heads_first_byte_not_from_the_connection() {
    let world = World::new();
    let options = ServeOptions::default()
        .with_header_read_timeout(Duration::from_millis(400))
        .with_idle_timeout(Duration::from_secs(30));
    let addr = start_server(world.starter(), options).await;
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Quiet for longer than the header timeout, then a head in two parts.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream
        .write_all(format!("POST {PATH} HTTP/1.1\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest = format!(
        "host: test\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        world.bearer(),
        body.len()
    );
    stream.write_all(rest.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let (status, _, _) = read_answer(&mut stream).await;
    assert_eq!(status, 202);
}

#[test]
fn serve_options_keep_what_they_are_given() {
    assert_eq!(ServeOptions::default().max_connections(), 10_000);
    assert_eq!(ServeOptions::DEFAULT_MAX_CONNECTIONS, 10_000);
    assert_eq!(
        ServeOptions::default().with_max_connections(3).max_connections(),
        3
    );
    assert_eq!(
        ServeOptions::default().with_max_connections(0).max_connections(),
        1,
        "at least one"
    );
}

#[tokio::test]
async fn over_the_connection_bound_new_connections_are_refused_not_queued() {
    let world = World::new();
    let options = ServeOptions::default().with_max_connections(2);
    let addr = start_server(world.starter(), options).await;
    let held = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (status, head, doc) = read_answer(&mut third).await;
    assert_eq!(
        (status, doc["code"].as_str()),
        (503, Some("too_many_connections"))
    );
    assert!(head.contains("retry-after: 1"));
    assert!(closed(&mut third).await);
    // Once the held connections go, a caller is served again.
    drop(held);
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut call = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
        status = read_answer(&mut call).await.0;
        if status == 202 {
            break;
        }
    }
    assert_eq!(status, 202);
}

#[tokio::test]
async fn shutdown_lets_a_start_in_flight_finish_then_returns() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::slow(Duration::from_millis(300)));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router("/webhook/send", starter),
        ServeOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let mut call = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let (status, _, _) = read_answer(&mut call).await;
    assert_eq!(status, 202, "the start in flight finished");
    server.await.unwrap().unwrap();
    assert_eq!(engine.inner.started().len(), 1);
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let world = World::new();
    let engine = Arc::new(FlakyEngine::slow(Duration::from_secs(600)));
    let starter = WebhookStarter::new(world.models.clone(), world.tokens.clone(), engine.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        router("/webhook/send", starter),
        ServeOptions::default().with_shutdown_grace(Duration::from_millis(100)),
        async move {
            let _ = stopped.await;
        },
    ));
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let _call = send_head(addr, Some(&world.bearer()), body.len(), &body).await;
    let began = Instant::now();
    while engine.calls() == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the engine was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    // The grace is 100 ms; the default (10 s) would not fit in 5 s.
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after the grace period, not after the engine")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_call_without_a_token_on_it_may_hold_at_most_half_of_the_bytes_in_flight() {
    let world = World::new();
    let starter = world.starter().with_max_body_bytes_in_flight(100);
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    // Its token can only be in the body (an envelope): 60 of 100 is too much.
    let mut anonymous = send_head(addr, None, 60, b"").await;
    let (status, _, doc) = read_answer(&mut anonymous).await;
    assert_eq!((status, doc["code"].as_str()), (503, Some("server_busy")));
    assert_eq!(starter.body_bytes_in_flight(), 0);
    // With its token on the request, the same size fits.
    let mut known = send_head(addr, Some(&world.bearer()), 60, b"{").await;
    bytes_in_flight_reach(&starter, 60).await;
    assert_eq!(starter.body_bytes_in_flight(), 60);
    known.shutdown().await.unwrap();
    assert_eq!(world.started(), 0);
}

/// Sends `body` chunked, in parts of the given sizes, and reads the answer.
async fn send_chunked(addr: SocketAddr, bearer: &str, body: &[u8], sizes: &[usize]) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: test\r\nauthorization: {bearer}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut rest = body;
    for &size in sizes {
        let (part, after) = rest.split_at(size);
        rest = after;
        let chunk = [format!("{size:x}\r\n").as_bytes(), part, b"\r\n"].concat();
        if stream.write_all(&chunk).await.is_err() {
            break; // answered and closed early
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let (status, _, doc) = read_answer(&mut stream).await;
    (status, doc)
}

#[tokio::test]
async fn a_chunked_body_may_reach_the_body_limit_but_not_pass_it() {
    let world = World::new();
    let body = serde_json::to_vec(&order_payload()).unwrap();
    let n = body.len();
    let exact = start_server(world.starter().with_body_limit(n), ServeOptions::default()).await;
    let (status, doc) = send_chunked(exact, &world.bearer(), &body, &[n - 10, 10]).await;
    assert_eq!(status, 202, "exactly the limit: {doc}");
    // One byte over, in parts whose running total never equals the limit.
    let over = start_server(world.starter().with_body_limit(n - 1), ServeOptions::default()).await;
    let (status, doc) = send_chunked(over, &world.bearer(), &body, &[n - 10, 10]).await;
    assert_eq!((status, doc["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(world.started(), 1);
}

#[tokio::test]
async fn a_chunked_body_claims_only_the_bytes_it_has() {
    let world = World::new();
    // 100 bytes of budget; a 79-byte body in three chunks fits it exactly
    // once, however many chunks it comes in.
    let starter = world.starter().with_max_body_bytes_in_flight(100);
    let addr = start_server(starter.clone(), ServeOptions::default()).await;
    let body = serde_json::to_vec(&order_payload()).unwrap();
    assert!(body.len() <= 100);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: test\r\nauthorization: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        world.bearer()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    for part in body.chunks(body.len() / 3 + 1) {
        stream
            .write_all(format!("{:x}\r\n", part.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(part).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        stream.flush().await.unwrap();
        sent += part.len();
        bytes_in_flight_reach(&starter, sent).await;
        assert_eq!(starter.body_bytes_in_flight(), sent, "claimed as it arrives");
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let (status, _, doc) = read_answer(&mut stream).await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(starter.body_bytes_in_flight(), 0);
    assert_eq!(world.started(), 1);
}
