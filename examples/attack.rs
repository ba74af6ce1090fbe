//! A bounded attack on a running `webhook_server`, over loopback only, that
//! reports what the server's memory and its legitimate callers go through.
//!
//! ```sh
//! ulimit -n 8192
//! export WEBHOOK_TOKEN=$(head -c 32 /dev/urandom | base64 | tr -d '/+=')
//! WEBHOOK_DATA=:memory: target/release/webhook_server &
//! cargo run --release --example attack -- --pid $! --token "$WEBHOOK_TOKEN"
//! ```
//!
//! Three rounds, each bounded in connections and time:
//!
//! 1. **Stalled bodies without a valid token**: 1,000 connections send a
//!    head with a wrong token and `content-length: 1048576`, then 1 MiB - 1
//!    bytes of body, and stall.
//! 2. **Stalled bodies without any token** (the envelope path, whose token
//!    is in the body): the same with no `authorization` header.
//! 3. **Slowloris**: 1,000 connections send one byte of a request head a
//!    second for 30 seconds.
//!
//! During each round it makes one normal start and reports its status and
//! time; after each it reports the server's resident memory (from
//! `/proc/PID/status`: now, and the peak) and how many attack connections
//! the server still held. Only loopback addresses are accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UID: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";
const CONNECTIONS: usize = 1_000;
const BODY: usize = 1024 * 1024;

struct Args {
    addr: SocketAddr,
    pid: u32,
    token: String,
}

fn args() -> Result<Args, String> {
    let mut addr: SocketAddr = "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?;
    let (mut pid, mut token) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--addr" => addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
            "--pid" => pid = Some(value.parse().map_err(|e| format!("--pid: {e}"))?),
            "--token" => token = Some(value),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !addr.ip().is_loopback() {
        return Err("only loopback addresses may be attacked".into());
    }
    Ok(Args {
        addr,
        pid: pid.ok_or("--pid is required")?,
        token: token.ok_or("--token is required")?,
    })
}

/// (resident now, resident peak) in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One normal start: its status and how long it took.
async fn normal_start(addr: SocketAddr, token: &str) -> (String, Duration) {
    let started = Instant::now();
    let body = r#"{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}"#;
    let request = format!(
        "POST /webhook/send?uid={UID} HTTP/1.1\r\nhost: attack\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        Ok::<_, std::io::Error>(text.lines().next().unwrap_or("no answer").to_owned())
    };
    let status = match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "no answer within 30 s".to_owned(),
    };
    (status, started.elapsed())
}

/// Round 1 and 2: connections that send a head and almost all of a 1 MiB
/// body, then hold the connection for `hold`. Returns how many were still
/// open at the end.
async fn stalled_bodies(args: &Args, auth: Option<&str>, hold: Duration) -> usize {
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (addr, open) = (args.addr, open.clone());
        let auth = auth
            .map(|a| format!("authorization: {a}\r\n"))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return;
            };
            open.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "POST /webhook/send?uid={UID} HTTP/1.1\r\nhost: attack\r\n{auth}content-type: application/json\r\ncontent-length: {BODY}\r\n\r\n"
            );
            let body = vec![b' '; BODY - 1];
            let deadline = Instant::now() + hold;
            let _ = tokio::time::timeout(hold, async {
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body).await
            })
            .await;
            // Stall: hold the connection until the server closes it or the
            // round ends.
            let mut buf = [0u8; 4096];
            loop {
                match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        open.fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                    Ok(Ok(_)) => continue,
                    Err(_) => return,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    open.load(Ordering::SeqCst)
}

/// Round 3: slowloris. Returns how many connections were still open after
/// `hold`.
async fn slowloris(args: &Args, hold: Duration) -> usize {
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let head = format!("POST /webhook/send?uid={UID} HTTP/1.1\r\nhost: attack\r\nx-padding: ");
    for _ in 0..CONNECTIONS {
        let (addr, open, head) = (args.addr, open.clone(), head.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return;
            };
            open.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + hold;
            for byte in head.bytes().cycle() {
                if Instant::now() >= deadline {
                    return; // still open at the end
                }
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break, // closed by the server
                    _ => {}
                }
            }
            open.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    open.load(Ordering::SeqCst)
}

async fn report_round(name: &str, args: &Args, attack: impl Future<Output = usize>) {
    let before = memory(args.pid);
    let token = args.token.clone();
    let addr = args.addr;
    let probe = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        normal_start(addr, &token).await
    });
    // The largest resident size seen while the round runs, sampled twice a
    // second.
    let (pid, largest) = (args.pid, Arc::new(std::sync::Mutex::new(0f64)));
    let seen = largest.clone();
    let sampler = tokio::spawn(async move {
        loop {
            let now = memory(pid).0;
            {
                let mut largest = seen.lock().unwrap();
                *largest = largest.max(now);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let still_open = attack.await;
    sampler.abort();
    let during = largest.lock().unwrap().max(memory(args.pid).0);
    let (status, took) = probe.await.unwrap_or(("probe failed".into(), Duration::ZERO));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = memory(args.pid);
    println!("## {name}");
    println!("resident memory before: {:.0} MiB", before.0);
    println!("resident memory, largest during the round: {during:.0} MiB");
    println!("resident memory after:  {:.0} MiB (2 s after the round)", after.0);
    println!("attack connections still open at the end: {still_open} of {CONNECTIONS}");
    println!(
        "a normal start during the round: {status} in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    println!();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let (status, took) = normal_start(args.addr, &args.token).await;
    println!(
        "a normal start before the attack: {status} in {:.1} ms\n",
        took.as_secs_f64() * 1e3
    );
    let hold = Duration::from_secs(30);
    report_round(
        "1,000 stalled 1 MiB bodies with a wrong token",
        &args,
        stalled_bodies(&args, Some("Bearer wrong-token"), hold),
    )
    .await;
    report_round(
        "1,000 stalled 1 MiB bodies with no token",
        &args,
        stalled_bodies(&args, None, hold),
    )
    .await;
    report_round(
        "1,000 slowloris connections for 30 s",
        &args,
        slowloris(&args, hold),
    )
    .await;
    Ok(())
}
