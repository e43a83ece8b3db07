//! `ado-sync serve`: the self-hosted real-time mode. One process plays the three Lambda functions: an
//! HTTP webhook that queues service-hook deliveries, a consumer that applies them to the catalog, and a
//! periodic full resync that repairs whatever the live path missed.
//!
//! The queue is the durable boundary: a delivery is answered 202 only once it is in the queue (the
//! SQLite file, or SQS when `QUEUE_URL` is set), so stopping or crashing after that loses nothing —
//! the next start picks the message up again.

mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use shared::aws::AwsIdentity;
use shared::config::{ConfigError, Env, QueueSettings, ResyncSchedule, Settings};
use shared::queue::batch::{QueuedRecord, RecordError, RecordOutcome, apply_batch, apply_change};
use shared::queue::local::{LocalQueue, LocalQueueOptions};
use shared::queue::sqs::SqsQueue;
use shared::queue::{ChangeMessage, Queue, QueueConsumer, Received};
use shared::tenant::Tenant;
use shared::webhook::{
    Rejection, RetryLater, WebhookOutcome, WebhookSettings, accept_admitted, admit, respond,
    too_large,
};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::progress::Progress;

/// Messages taken per receive, and how long a receive waits for the first one.
const RECEIVE_MAX: usize = 10;
const RECEIVE_WAIT: Duration = Duration::from_secs(5);
/// Retry delays for transient failures grow from the first to the cap with each receive.
const BACKOFF_FIRST: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How long to wait before receiving again after the queue itself failed.
const QUEUE_ERROR_PAUSE: Duration = Duration::from_secs(5);
/// How long a delivery may wait for the queue to take it before it is answered 503 (Azure DevOps
/// retries that). The local queue answers within its 5 s busy timeout; this bounds an SQS call that
/// hangs on the network.
const QUEUE_SEND_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct ServeArgs {
    pub listen: SocketAddr,
    /// `None`: `RESYNC_INTERVAL_SECS`, else an hour.
    pub resync_interval_secs: Option<u64>,
    pub queue_db: PathBuf,
    pub limits: ConnectionLimits,
}

/// How long a client may take, and how many are served at once (`serve --help` has the defaults).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Both sides of a queue: the webhook sends, the consumer receives.
trait ServeQueue: Queue + QueueConsumer {}
impl<T: Queue + QueueConsumer> ServeQueue for T {}

struct AppState {
    webhook: WebhookSettings,
    queue: Arc<dyn ServeQueue>,
    body_timeout: Duration,
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    // Every setting is read before anything starts, so a misconfiguration fails at once with the
    // variables' names instead of on the first delivery.
    let explicit_interval = args.resync_interval_secs;
    let setup = Env::load_and(AwsIdentity::DEFAULT_CHAIN, |env| {
        let interval = match explicit_interval {
            Some(secs) => Ok(secs),
            None => ResyncSchedule::from_env(env).map(|s| s.secs()),
        };
        let (webhook, (settings, interval)) = ConfigError::both(
            WebhookSettings::from_env(env),
            ConfigError::both(Settings::from_env(env), interval),
        )?;
        Ok((
            webhook,
            settings,
            interval,
            QueueSettings::from_env(env).queue_url,
        ))
    })
    .await;
    let (webhook, settings, resync_interval_secs, queue_url) = match setup {
        Ok(s) => s,
        Err(e) => return setup_error(e),
    };
    let runtime = match Tenant::start(settings).await {
        Ok(r) => Arc::new(r),
        Err(e) => return setup_error(e),
    };
    let queue = match open_queue(queue_url, &args.queue_db).await {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    // Registered before anything is served: a SIGTERM from then on is a graceful stop, never the
    // default kill.
    #[cfg(unix)]
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        let terminated = async {
            match sigterm.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
        info!("stopping: no new deliveries; finishing the message in hand");
        let _ = stop_tx.send(true);
    });

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local_addr = listener.local_addr().unwrap_or(args.listen);
    info!(listen = %local_addr, "serving the webhook");
    eprintln!("listening on {local_addr}");

    let limits = args.limits;
    let app = Router::new()
        .route("/webhook", post(webhook_handler))
        .route(shared::webhook::ACTIONS_PATH, post(actions_handler))
        .route("/health", get(|| async { StatusCode::OK }))
        .with_state(Arc::new(AppState {
            webhook,
            queue: queue.clone(),
            body_timeout: limits.body_timeout,
        }));
    let server_limits = server::Limits {
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        // A request in hand when the stop came needs at most its body and its queue send.
        drain_timeout: limits.body_timeout + QUEUE_SEND_TIMEOUT,
        max_connections: limits.max_connections,
    };

    let resync_interval = Duration::from_secs(resync_interval_secs);
    tokio::join!(
        server::serve(listener, app, server_limits, stop_rx.clone()),
        consume(queue.as_ref(), stop_rx.clone(), async |message| {
            apply_change(&runtime, message).await
        }),
        claim_loop(runtime.as_ref(), queue.as_ref(), stop_rx.clone()),
        resync_loop(runtime.as_ref(), resync_interval, stop_rx),
    );
    ExitCode::SUCCESS
}

fn setup_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// SQS when `QUEUE_URL` is set (several `serve` processes can then share one queue), otherwise the
/// durable local SQLite queue.
async fn open_queue(queue_url: Option<String>, db: &Path) -> Result<Arc<dyn ServeQueue>, String> {
    if let Some(url) = queue_url {
        let q = SqsQueue::from_env(url)
            .await
            .map_err(|e| format!("QUEUE_URL: {e}"))?;
        return Ok(Arc::new(q));
    }
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("--queue-db: cannot create {}: {e}", parent.display()))?;
    }
    let q = LocalQueue::open(db, LocalQueueOptions::default())
        .map_err(|e| format!("--queue-db: {e}"))?;
    // This process is the file's consumer: what a killed predecessor held is ours to finish now.
    match q.recover_in_flight().await {
        Ok(0) => {}
        Ok(n) => info!(
            messages = n,
            "messages left unfinished by the previous run are queued again"
        ),
        Err(e) => {
            warn!(error = %e, "cannot take back the previous run's messages in flight; they return after their visibility timeout")
        }
    }
    Ok(Arc::new(q))
}

/// Credentials and size come from the headers before a byte of the body is read, so a stranger (or an
/// oversized delivery) costs no memory; the body is then read up to the size limit and within the
/// body timeout.
async fn webhook_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let admitted = match admit(&state.webhook, &headers) {
        Ok(a) => a,
        Err(refused) => return unread_body(answer(&refused)),
    };
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let queue: &dyn Queue = state.queue.as_ref();
    let queued = tokio::time::timeout(
        QUEUE_SEND_TIMEOUT,
        accept_admitted(&state.webhook, queue, admitted, &body),
    )
    .await;
    let outcome = queued.unwrap_or_else(|_| {
        // If the send went through after all, the redelivery is dropped by its dedup id.
        warn!(
            timeout_secs = QUEUE_SEND_TIMEOUT.as_secs(),
            "the queue did not take the delivery in time; asking Azure DevOps to retry"
        );
        WebhookOutcome::RetryLater(RetryLater::QueueUnavailable)
    });
    answer(&outcome)
}

/// The body, up to the size limit and within the body timeout; else the answer that refuses it.
async fn read_body(state: &AppState, body: Body) -> Result<axum::body::Bytes, Response> {
    let limit = state.webhook.max_body_bytes;
    // A `Content-Length` over the limit; a chunked body counts 0 here and is cut while it is read.
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(unread_body(answer(&too_large(&state.webhook, announced))));
    }
    let read = tokio::time::timeout(state.body_timeout, Limited::new(body, limit).collect()).await;
    match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(unread_body(answer(&too_large(
            &state.webhook,
            limit as u64 + 1,
        )))),
        Ok(Err(e)) => {
            debug!(error = %e, "the client broke off its delivery's body");
            Err(unread_body(answer(&WebhookOutcome::Rejected(
                Rejection::IncompleteBody,
            ))))
        }
        Err(_) => {
            warn!(
                timeout_secs = state.body_timeout.as_secs(),
                "webhook delivery body not received in time"
            );
            Err(unread_body(answer(&WebhookOutcome::RetryLater(
                RetryLater::BodyTimeout,
            ))))
        }
    }
}

/// A webhook action invocation (`POST /actions`): its signature covers the body, so the body is read
/// first (bounded as a delivery's), then checked and queued ([`shared::actions::push`]).
async fn actions_handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.webhook.actions.is_none() {
        return unread_body(answer(&WebhookOutcome::Rejected(Rejection::NotFound)));
    }
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let queue: &dyn Queue = state.queue.as_ref();
    let now = chrono::Utc::now().timestamp();
    let verifier = state.webhook.actions.as_deref();
    let queued = tokio::time::timeout(
        QUEUE_SEND_TIMEOUT,
        shared::actions::push::accept(verifier, queue, &headers, &body, now),
    )
    .await;
    answer(&queued.unwrap_or(WebhookOutcome::RetryLater(RetryLater::QueueUnavailable)))
}

/// With `ACTIONS_ENABLED`, claims the catalog's pending action runs every ten seconds (the peer's
/// poll) into the queue the consumer applies, until a stop is asked for.
async fn claim_loop(runtime: &Tenant, queue: &dyn ServeQueue, mut stop: watch::Receiver<bool>) {
    let actions = &runtime.settings.actions;
    let Some(runs) = runtime.action_runs().filter(|_| actions.enabled) else {
        return;
    };
    let queue: &dyn Queue = queue;
    loop {
        let round = shared::actions::claim::claim(
            runs,
            queue,
            &runtime.settings.integration_identifier,
            Duration::ZERO,
            actions.run_timeout,
        );
        tokio::select! {
            report = round => {
                for e in &report.errors {
                    warn!(error = %e, "action claimer");
                }
            }
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(shared::actions::claim::POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The outcome's answer, as the webhook function gives it ([`respond`]).
fn answer(outcome: &WebhookOutcome) -> Response {
    respond(outcome).map(Body::from)
}

/// The rest of the body stays unread, so the connection cannot carry another request: say so.
fn unread_body(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Receives and applies until a stop is asked for. The message in hand is always finished (applied
/// and acknowledged, or released) before returning.
async fn consume<T, E: RecordError>(
    queue: &dyn ServeQueue,
    mut stop: watch::Receiver<bool>,
    apply: impl AsyncFn(&ChangeMessage) -> Result<T, E>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Cutting a receive short is safe: anything it took is only hidden for the visibility
        // timeout, and is delivered again after it (to us on the next start).
        let batch = tokio::select! {
            r = queue.receive(RECEIVE_MAX, RECEIVE_WAIT) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match batch {
            Ok(batch) => consume_batch(queue, &batch, &apply, &stop).await,
            Err(e) => {
                warn!(error = %e, "cannot receive from the queue; trying again shortly");
                tokio::select! {
                    _ = tokio::time::sleep(QUEUE_ERROR_PAUSE) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// Applies one received batch through the shared flow (a failed message holds back the rest of its
/// group), then settles each message with the queue.
async fn consume_batch<T, E: RecordError>(
    queue: &dyn ServeQueue,
    batch: &[Received],
    apply: &impl AsyncFn(&ChangeMessage) -> Result<T, E>,
    stop: &watch::Receiver<bool>,
) {
    let records: Vec<QueuedRecord<'_>> = batch
        .iter()
        .map(|r| QueuedRecord {
            message_id: &r.message_id,
            group_id: r.group_id.as_deref(),
            body: &r.body,
            receive_count: r.receive_count,
        })
        .collect();
    let outcomes = apply_batch(&records, apply, || !*stop.borrow()).await;
    for (received, outcome) in batch.iter().zip(outcomes) {
        settle(queue, received, outcome).await;
    }
}

/// Acknowledges an applied message; releases any other, with a delay for a transient failure only.
async fn settle<T, E: RecordError>(
    queue: &dyn ServeQueue,
    received: &Received,
    outcome: RecordOutcome<T, E>,
) {
    let delay = match outcome {
        RecordOutcome::Applied(_) => {
            if let Err(e) = queue.ack(&received.receipt).await {
                // Applying again is harmless (apply re-reads the true state), so this only costs work.
                warn!(error = %e, message_id = %received.message_id, "cannot acknowledge an applied change; it will be applied again");
            }
            return;
        }
        RecordOutcome::Failed(e) if e.is_transient() => {
            let delay = backoff(received.receive_count);
            debug!(
                message_id = %received.message_id,
                retry_in_secs = delay.as_secs(),
                "the change is released for a retry"
            );
            delay
        }
        // It fails the same way every time: no delay, so it reaches the dead letters, where someone
        // can look at it, within seconds instead of after a long backoff.
        RecordOutcome::Failed(_) | RecordOutcome::Unreadable(_) => Duration::ZERO,
        // The queue holds the group back while its failed message waits for its retry, so these
        // come back after it, in order.
        RecordOutcome::Blocked => Duration::ZERO,
        // Stopping with part of a batch untouched: hand it back now rather than leaving it hidden
        // for the visibility timeout, so the next start does not wait for it.
        RecordOutcome::NotReached => Duration::ZERO,
    };
    if let Err(e) = queue.release(&received.receipt, delay).await {
        warn!(error = %e, message_id = %received.message_id, "cannot release a message; it returns after the visibility timeout");
    }
}

/// Doubles from [`BACKOFF_FIRST`] with each receive, up to [`BACKOFF_CAP`].
fn backoff(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP)
}

/// A full resync every `interval`, the first one interval after the start (a fresh start should not
/// hit Azure DevOps with a full pass; run `ado-sync resync` for that). Passes run one after another in
/// this one task, so two never overlap; a pass that overruns delays the next.
async fn resync_loop(runtime: &Tenant, interval: Duration, mut stop: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        info!("periodic resync started");
        // A stop abandons a pass in progress: a pass is idempotent, and the next one redoes it.
        let progress = Progress::new();
        let report = tokio::select! {
            r = runtime.resync(&progress) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if report.succeeded() {
            info!("periodic resync done");
        } else {
            error!(
                "periodic resync finished with failures:\n{}",
                report.render()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;
    use shared::queue::Change;

    use super::*;

    #[derive(Debug)]
    struct Unavailable;

    impl std::fmt::Display for Unavailable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the test's Azure DevOps is unavailable")
        }
    }

    impl std::error::Error for Unavailable {}

    impl RecordError for Unavailable {
        fn is_transient(&self) -> bool {
            true
        }
    }

    /// A change to work item `id` (message group `wi:{id}`) from the event `event_id`.
    fn change(event_id: &str, id: u64) -> ChangeMessage {
        serde_json::from_value(json!({
            "version": 1, "eventId": event_id, "eventType": "workitem.updated", "publisherId": "tfs",
            "change": {"type": "work-item", "id": id, "deleted": false}
        }))
        .unwrap()
    }

    /// Receives until a batch comes (a released message waits out its delay), at most `within`.
    async fn receive_some(queue: &dyn ServeQueue, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let batch = queue
                .receive(RECEIVE_MAX, Duration::from_secs(1))
                .await
                .unwrap();
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return batch;
            }
        }
    }

    /// The batch's event ids, in order.
    fn events(batch: &[Received]) -> Vec<String> {
        batch
            .iter()
            .map(|r| {
                serde_json::from_str::<ChangeMessage>(&r.body)
                    .unwrap()
                    .event_id
            })
            .collect()
    }

    /// An earlier message of a group fails (transiently) in a batch: the later message of that group
    /// is not applied in the batch, another group's is; the group then applies in order.
    async fn a_failed_message_holds_back_the_rest_of_its_group(queue: &dyn ServeQueue) {
        for (event_id, work_item) in [("a1", 1), ("a2", 1), ("b1", 2)] {
            queue.send(&change(event_id, work_item)).await.unwrap();
        }
        let (_stop_tx, stop) = watch::channel(false);
        let applied = Mutex::new(Vec::new());
        let failing = Mutex::new(vec!["a1".to_owned()]);
        let apply = async |m: &ChangeMessage| {
            if failing.lock().unwrap().contains(&m.event_id) {
                return Err(Unavailable);
            }
            assert!(matches!(m.change, Change::WorkItem { .. }));
            applied.lock().unwrap().push(m.event_id.clone());
            Ok(())
        };

        let batch = receive_some(queue, Duration::from_secs(5)).await;
        assert_eq!(events(&batch), ["a1", "a2", "b1"], "one batch");
        consume_batch(queue, &batch, &apply, &stop).await;
        assert_eq!(*applied.lock().unwrap(), ["b1"]);

        // The failed message waits out its backoff, and its group with it.
        let early = queue
            .receive(RECEIVE_MAX, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            events(&early),
            Vec::<String>::new(),
            "the group is held back"
        );

        failing.lock().unwrap().clear();
        let batch = receive_some(queue, BACKOFF_FIRST * 3).await;
        assert_eq!(
            events(&batch),
            ["a1", "a2"],
            "the group comes back in order"
        );
        consume_batch(queue, &batch, &apply, &stop).await;
        assert_eq!(*applied.lock().unwrap(), ["b1", "a1", "a2"]);
        let rest = queue
            .receive(RECEIVE_MAX, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(rest.is_empty(), "every message was acknowledged");
    }

    #[tokio::test]
    async fn serve_keeps_a_groups_order_after_a_failure_on_the_local_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            LocalQueue::open(&dir.path().join("queue.db"), LocalQueueOptions::default()).unwrap();
        a_failed_message_holds_back_the_rest_of_its_group(&queue).await;
    }

    #[tokio::test]
    async fn serve_keeps_a_groups_order_after_a_failure_on_sqs() {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version_latest()
            .endpoint_url(sim::moto::endpoint())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .build();
        let client = aws_sdk_sqs::Client::from_conf(config);
        let name = format!(
            "serve-fifo-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let (url, _dlq) =
            shared::queue::sqs::create_fifo_pair(&client, &name, 5, Duration::from_secs(60))
                .await
                .unwrap();
        a_failed_message_holds_back_the_rest_of_its_group(&SqsQueue::new(client, url)).await;
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(10), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }
}
