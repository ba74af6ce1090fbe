//! [`serve`]: the server loop of the `axum` feature, with the connection
//! limits a public endpoint needs and a bounded graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service as _;

use crate::error::WebhookError;
use crate::observe;

/// The default time a client has to send a request's head once it has
/// started: 10 seconds.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time a connection may sit idle between requests: 60 seconds.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default bound on connections held at once: 10,000.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default time calls in flight get to finish at shutdown: 10 seconds.
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How [`serve`] treats connections.
///
/// | option | default | past it |
/// |---|---|---|
/// | [`header_read_timeout`](Self::header_read_timeout) | 10 s | the connection is closed |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s | the connection is closed |
/// | [`max_connections`](Self::max_connections) | 10,000 | a new connection gets `503 too_many_connections` and is closed |
/// | [`shutdown_grace`](Self::shutdown_grace) | 10 s | calls still running are cut off |
///
/// The body's own limits (size, time, bytes in flight) are the
/// [`WebhookStarter`](crate::WebhookStarter)'s.
///
/// ```
/// use std::time::Duration;
/// use process_webhook::ServeOptions;
///
/// let options = ServeOptions::default()
///     .with_header_read_timeout(Duration::from_secs(5))
///     .with_max_connections(2_000);
/// assert_eq!(options.max_connections(), 2_000);
/// ```
#[derive(Clone, Debug)]
pub struct ServeOptions {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl ServeOptions {
    /// The default time a client has to send a request's head once it has
    /// started: 10 seconds.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = DEFAULT_HEADER_READ_TIMEOUT;

    /// The default time a connection may sit idle between requests: 60 seconds.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = DEFAULT_IDLE_TIMEOUT;

    /// The default bound on connections held at once: 10,000.
    pub const DEFAULT_MAX_CONNECTIONS: usize = DEFAULT_MAX_CONNECTIONS;

    /// The default time calls in flight get to finish at shutdown: 10 seconds.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = DEFAULT_SHUTDOWN_GRACE;
}

impl ServeOptions {
    /// Sets how long a client may take to send a request's head (request
    /// line and headers), counted from its first byte. A slow sender
    /// (slowloris) is closed then.
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets how long a connection may wait for its first request, or for
    /// the next one on a kept-alive connection, without sending a byte.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how many connections are held at once (at least 1).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets how long calls in flight may take to finish once shutdown
    /// begins.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The header read timeout.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The connection bound.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The shutdown grace.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }
}

/// Serves `app` (e.g. a [`router`](crate::router)) on `listener` over
/// HTTP/1.1 until `shutdown` completes, with the limits of `options`.
///
/// - Each connection gets the client's address as
///   `ConnectInfo<SocketAddr>` (the router logs failed authentications with
///   it).
/// - A client that starts a request has the header read timeout to finish
///   its head; a connection with nothing to do is closed after the idle
///   timeout. A request being handled is bounded by the body timeout and
///   the engine's own, not by these.
/// - At most `max_connections` are held; a connection over the bound is
///   answered `503 too_many_connections` with `Retry-After: 1` and closed at
///   once, so that a flood of idle connections cannot lock every client out
///   (keep the bound under the process's open-file limit).
/// - When `shutdown` completes, no new connection is accepted, idle ones
///   are closed, and calls in flight get up to the shutdown grace to finish;
///   then it returns.
///
/// Refusals for too many connections and timeouts are logged at `warn`
/// (target `process_webhook`), one event each.
///
/// # Errors
///
/// None in practice: failed accepts (such as running out of file
/// descriptors) are logged and retried after a short pause.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(target: "process_webhook", error = %error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (app, options, stopped) = (app.clone(), options.clone(), stopped.clone());
                connections.spawn(async move {
                    serve_connection(stream, peer, app, &options, stopped).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tracing::warn!(
                    target: "process_webhook",
                    client = %peer.ip(),
                    max_connections = options.max_connections,
                    "connection refused: too many connections"
                );
                observe::refused_connection("too_many_connections");
                connections.spawn(refuse(stream));
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(options.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            target: "process_webhook",
            connections = connections.len(),
            "shutdown grace ended with calls in flight"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Answers a connection over the bound and closes it.
async fn refuse(mut stream: TcpStream) {
    let error = WebhookError::TooManyConnections;
    let body = error.to_problem_json().to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    options: &ServeOptions,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    // Only reads are watched; writes go straight to the socket.
    let (read, write) = stream.into_split();
    let io = TokioIo::new(tokio::io::join(
        Watched {
            inner: read,
            activity: activity.clone(),
        },
        write,
    ));
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let call = CallGuard::begin(service_activity.clone());
        let response = app.clone().call(request.map(Body::new));
        async move {
            let response = response.await;
            drop(call);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head and idle timeouts are this loop's (hyper's header timer would
    // also run while a kept-alive connection is idle).
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = *stopped.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = activity.deadline(options);
        let due = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = stopped.changed(), if !stopping => {
                if changed.is_err() || *stopped.borrow() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = activity.moved.notified() => {}
            () = due => {
                // A call may have begun since: look again.
                if let Some((at, reason)) = activity.deadline(options)
                    && at <= Instant::now()
                {
                    tracing::warn!(target: "process_webhook", client = %peer.ip(), reason, "connection closed");
                    observe::refused_connection(reason);
                    return;
                }
            }
        }
    }
}

/// What a connection did last, for its head and idle timeouts. Times are
/// milliseconds since `base`; `NONE` is "not now".
#[derive(Debug)]
struct Activity {
    base: Instant,
    /// The end of the last request, or the connection's start.
    idle_since: AtomicU64,
    /// The first byte read while no request was being handled.
    head_started: AtomicU64,
    calls: AtomicUsize,
    /// Wakes the connection's loop when its deadline moves.
    moved: Notify,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            calls: AtomicUsize::new(0),
            moved: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.base + Duration::from_millis(millis)
    }

    /// Bytes arrived.
    fn read(&self) {
        if self.calls.load(Ordering::Acquire) == 0 {
            let now = self.now();
            let started = self
                .head_started
                .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
            if started.is_ok() {
                self.moved.notify_one();
            }
        }
    }

    /// When the connection is closed if nothing happens first, and why:
    /// none while a call is being handled (its end moves the deadline).
    fn deadline(&self, options: &ServeOptions) -> Option<(Instant, &'static str)> {
        if self.calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match self.head_started.load(Ordering::Acquire) {
            NONE => (
                self.at(self.idle_since.load(Ordering::Acquire)) + options.idle_timeout,
                "idle_timeout",
            ),
            started => (self.at(started) + options.header_read_timeout, "header_timeout"),
        })
    }
}

/// A request being handled on a connection.
struct CallGuard(Arc<Activity>);

impl CallGuard {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.calls.fetch_add(1, Ordering::AcqRel);
        activity.head_started.store(NONE, Ordering::Release);
        Self(activity)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Release);
        activity.calls.fetch_sub(1, Ordering::AcqRel);
        activity.moved.notify_one();
    }
}

/// A socket's reading half that tells its [`Activity`] when bytes arrive.
struct Watched {
    inner: OwnedReadHalf,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}
