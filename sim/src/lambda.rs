//! A Lambda Runtime API server: lets tests run a function binary through its real runtime loop
//! (`lambda_runtime` polling `/runtime/invocation/next`), the way Lambda itself drives it, without
//! cargo-lambda or Docker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned this payload.
    Response(Value),
    /// The handler failed; the runtime's error body (`errorType`, `errorMessage`).
    Error(Value),
    /// The runtime reported an initialisation error (bad configuration at cold start).
    InitError(Value),
}

type Pending = (String, Value, oneshot::Sender<Outcome>);

struct Inner {
    queue: Mutex<mpsc::Receiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<oneshot::Sender<Outcome>>>,
    /// When a function first asked for an event: the end of its init phase (its cold start).
    first_poll: std::sync::Mutex<Option<Instant>>,
    polled: tokio::sync::Notify,
}

/// A running Runtime API endpoint.
pub struct RuntimeApi {
    addr: SocketAddr,
    tx: mpsc::Sender<Pending>,
    inner: Arc<Inner>,
    next_id: std::sync::atomic::AtomicU64,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(16);
        let inner = Arc::new(Inner {
            queue: Mutex::new(rx),
            waiting: Mutex::default(),
            init_error: Mutex::default(),
            first_poll: std::sync::Mutex::default(),
            polled: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            tx,
            inner,
            next_id: Default::default(),
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// A command that runs `binary` the way Lambda starts a function: a clean environment holding the
    /// variables Lambda sets, pointed at this endpoint. Callers add the function's own settings.
    pub fn function_command(&self, binary: &str, name: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(binary);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", self.endpoint())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }

    /// Waits up to `timeout` for the function's first `next` poll, the moment Lambda counts its init
    /// phase as over, and returns when it came. A function that fails at init never polls.
    pub async fn first_poll(&self, timeout: Duration) -> Option<Instant> {
        let wait = async {
            loop {
                let notified = self.inner.polled.notified();
                if let Some(at) = *self
                    .inner
                    .first_poll
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                {
                    return at;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Hands `event` to the function and waits for its answer (or an init error) up to `timeout`.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Option<Outcome> {
        let n = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let (done_tx, done_rx) = oneshot::channel();
        let (init_tx, init_rx) = oneshot::channel();
        *self.inner.init_error.lock().await = Some(init_tx);
        self.tx.send((id, event, done_tx)).await.ok()?;
        tokio::select! {
            r = done_rx => r.ok(),
            r = init_rx => r.ok(),
            _ = tokio::time::sleep(timeout) => None,
        }
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    {
        let mut first = inner.first_poll.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(Instant::now());
            inner.polled.notify_waiters();
        }
    }
    let Some((id, event, done)) = inner.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    inner.waiting.lock().await.insert(id.clone(), done);
    let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
    let mut headers = HeaderMap::new();
    let h = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("-"));
    headers.insert("lambda-runtime-aws-request-id", h(&id));
    headers.insert("lambda-runtime-deadline-ms", h(&deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        h("arn:aws:lambda:eu-west-1:123456789012:function:test"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        h("Root=1-00000000-000000000000000000000000;Sampled=0"),
    );
    headers.insert("content-type", h("application/json"));
    (headers, event.to_string()).into_response()
}

async fn finish(inner: &Inner, id: &str, outcome: Outcome) -> StatusCode {
    match inner.waiting.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&inner, &id, Outcome::Response(json(&body))).await
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&inner, &id, Outcome::Error(json(&body))).await
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    if let Some(tx) = inner.init_error.lock().await.take() {
        let _ = tx.send(Outcome::InitError(json(&body)));
    }
    StatusCode::ACCEPTED
}
