//! The webhook's HTTP/1 server, for a port open to the internet. `axum::serve` reads and answers
//! whatever comes for as long as it takes; this one drives hyper's connections itself so that every
//! connection is bounded in time and the number of them in memory: a request head must arrive within
//! the header timeout, a kept-alive connection may wait the idle timeout for its next request, and at
//! most `max_connections` are served at once. (The body timeout and size limit are the webhook
//! handler's: it is the one that decides whether to read a body at all.)

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, warn};

/// What one connection may cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From a connection's start, or from the first byte of a later request on it, to the end of
    /// the request's head.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long, at most, a stop waits for the requests in hand to be answered.
    pub drain_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// The most a request head may take in memory. Azure DevOps sends well under 2 KiB of headers, and
/// hyper's default (about 400 KiB) would let each slow connection hold that much; a larger head is
/// answered 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How long to wait before accepting again after `accept` failed (out of file descriptors, say), so
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` turns true, then stops accepting, cuts the connections
/// that have no request in hand, and waits up to the drain timeout for the others to be answered.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    // At the cap, connections wait in the kernel's listen backlog rather than being refused: each
    // connection we hold ends within its timeouts, so a slot frees up soon, and a delivery that
    // waits a moment is better than one refused (Azure DevOps would retry it only minutes later).
    // The backlog itself is bounded by the kernel, and costs us no memory.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stopped(stop.clone()) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(stop.clone()) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "connection accepted");
                connections.spawn(connection(
                    stream,
                    app.clone(),
                    limits,
                    stop.clone(),
                    permit,
                ));
            }
            Err(e) => {
                warn!(error = %e, "cannot accept a connection; trying again shortly");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    () = stopped(stop.clone()) => break,
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = connections.len(),
            "requests still in hand after the drain timeout; closing their connections"
        );
        connections.shutdown().await;
    }
}

/// Resolves once a stop was asked for (or the sender is gone, which only happens at exit).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let clock = Arc::new(Clock::new(limits));
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            clock.request_started();
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            let clock = clock.clone();
            async move {
                let response = answer.await;
                clock.request_finished();
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        })
    };
    let conn = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        // Our clock bounds the head and the wait between requests; hyper's own header timer would
        // also run during that wait, so a kept-alive connection could not idle longer than a head
        // may take to arrive.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = clock.expired() => {
                debug!(phase = ?clock.phase(), "connection cut off by its timeout");
                return;
            }
            () = stopped(stop.clone()), if !stopping => {
                // A head still arriving is no delivery yet: nothing is lost by cutting it.
                if clock.phase() == Phase::Head {
                    return;
                }
                // Answers the request in hand, then closes (an idle connection closes at once).
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request head is due: the connection is new, or the first byte of a request came.
    Head,
    /// The handler has the request; it bounds its own body read and queue send.
    Handling,
    /// Answered; kept alive for the next request.
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct State {
    phase: Phase,
    /// When the connection is cut off; none while the handler has a request.
    deadline: Option<Instant>,
}

/// One connection's phase and deadline, moved by its reads and its service, watched by its task.
struct Clock {
    state: watch::Sender<State>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Clock {
    fn new(limits: Limits) -> Self {
        Self {
            state: watch::Sender::new(State {
                phase: Phase::Head,
                deadline: Some(Instant::now() + limits.header_timeout),
            }),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }

    fn phase(&self) -> Phase {
        self.state.borrow().phase
    }

    /// Bytes came in: on an idle connection, a new request head has started.
    fn bytes_arrived(&self) {
        let header_timeout = self.header_timeout;
        self.state.send_if_modified(|s| {
            if s.phase != Phase::Idle {
                return false;
            }
            *s = State {
                phase: Phase::Head,
                deadline: Some(Instant::now() + header_timeout),
            };
            true
        });
    }

    fn request_started(&self) {
        self.state.send_replace(State {
            phase: Phase::Handling,
            deadline: None,
        });
    }

    fn request_finished(&self) {
        self.state.send_replace(State {
            phase: Phase::Idle,
            deadline: Some(Instant::now() + self.idle_timeout),
        });
    }

    /// Resolves once the current deadline passes; a deadline moved meanwhile is followed.
    async fn expired(&self) {
        let mut changes = self.state.subscribe();
        loop {
            let deadline = changes.borrow_and_update().deadline;
            match deadline {
                Some(at) if at <= Instant::now() => return,
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        _ = changes.changed() => {}
                    }
                }
                // `self` holds the sender, so `changed` waits for the next move, never errs.
                None => {
                    let _ = changes.changed().await;
                }
            }
        }
    }
}

/// The connection's socket, telling its clock when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
