//! Webhook throughput: authenticated, validated deliveries per second through the webhook function's
//! handler in-process (Function URL envelope parsed, every event type in `events/ado/`, queue stubbed),
//! then end to end through a local SQS server (moto) with every message received back.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use futures::StreamExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::Value;
use shared::queue::sqs::{SqsQueue, create_fifo_pair};
use shared::queue::{ChangeMessage, Queue, QueueConsumer, QueueError};
use shared::webhook::WebhookSettings;

use crate::events_dir;
use crate::figures::figure;

/// Counts what the handler enqueues and keeps nothing.
#[derive(Default)]
struct CountingQueue(AtomicU64);

#[async_trait]
impl Queue for CountingQueue {
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError> {
        std::hint::black_box(message);
        Ok(self.0.fetch_add(1, Ordering::Relaxed).to_string())
    }
}

pub fn run(rt: &tokio::runtime::Runtime, events: usize, sqs_events: usize) -> anyhow::Result<()> {
    let settings = WebhookSettings::from_lookup(|k| match k {
        "WEBHOOK_USERNAME" => Some("ado".into()),
        "WEBHOOK_SECRET" => Some("webhook-secret".into()),
        _ => None,
    })?;
    let bodies = delivery_bodies()?;
    let template = envelope_template()?;
    let envelopes: Vec<String> = bodies
        .iter()
        .map(|b| envelope(&template, b, None))
        .collect();

    // One thread: the figure is per core.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let queue = CountingQueue::default();
    let (accepted, took) = single.block_on(async {
        let clock = Instant::now();
        let mut accepted = 0u64;
        for text in envelopes.iter().cycle().take(events) {
            // As the function's runtime loop does: the event read straight into its type.
            let event: ApiGatewayV2httpRequest = serde_json::from_str(text)?;
            let response = webhook_function::handle_event(&settings, &queue, event).await;
            if (200..300).contains(&response.status_code) {
                accepted += 1;
            }
        }
        anyhow::Ok((accepted, clock.elapsed()))
    })?;
    figure(
        "webhook.in_process",
        format!("{:.0}", events as f64 / took.as_secs_f64()),
        "events/s",
        Some(">= 50000 per core"),
        &format!(
            "{events} deliveries of {} event types, {accepted} accepted, {} enqueued, one thread",
            bodies.len(),
            queue.0.load(Ordering::Relaxed)
        ),
    );

    match rt.block_on(through_sqs(&settings, &template, &bodies, sqs_events)) {
        Ok(()) => {}
        Err(e) => figure("webhook.sqs", "skipped", "", None, &e.to_string()),
    }
    Ok(())
}

/// Sends `n` distinct deliveries through the handler into a FIFO queue on moto, then receives them all.
async fn through_sqs(
    settings: &WebhookSettings,
    template: &Value,
    bodies: &[Value],
    n: usize,
) -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .load()
        .await;
    let client = aws_sdk_sqs::Client::new(&config);
    let name = format!("bench-{}", std::process::id());
    let (url, _dlq) = create_fifo_pair(&client, &name, 5, Duration::from_secs(60)).await?;
    let queue = SqsQueue::new(client, url);

    // Distinct event ids: the FIFO dedup id is the event id, so each delivery is its own message.
    let envelopes: Vec<String> = (0..n)
        .map(|i| envelope(template, &bodies[i % bodies.len()], Some(i)))
        .collect();
    let clock = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(envelopes.iter())
        .map(|text| {
            let queue = &queue;
            async move {
                match serde_json::from_str::<ApiGatewayV2httpRequest>(text) {
                    Ok(event) => {
                        webhook_function::handle_event(settings, queue, event)
                            .await
                            .status_code as u16
                    }
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = clock.elapsed();
    let refused = statuses.iter().filter(|s| !(200..300).contains(*s)).count();

    let mut seen = HashSet::new();
    let mut empty = 0;
    while seen.len() < n && empty < 5 {
        let got = queue.receive(10, Duration::from_secs(1)).await?;
        if got.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in got {
            if let Ok(msg) = serde_json::from_str::<ChangeMessage>(&m.body) {
                seen.insert(msg.event_id);
            }
            queue.ack(&m.receipt).await?;
        }
    }
    figure(
        "webhook.through_sqs",
        format!("{:.0}", n as f64 / took.as_secs_f64()),
        "events/s",
        None,
        &format!(
            "{n} deliveries, 16 at a time, into a FIFO queue on moto (local SQS); {refused} refused"
        ),
    );
    figure(
        "webhook.through_sqs.lost",
        n.saturating_sub(seen.len()),
        "events",
        Some("0"),
        &format!("{} distinct events received back", seen.len()),
    );
    Ok(())
}

/// Every Azure DevOps delivery body in `events/ado/`.
fn delivery_bodies() -> anyhow::Result<Vec<Value>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(events_dir().join("ado"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?))
        .collect()
}

/// The Function URL envelope of an authenticated delivery (`events/webhook/workitem-updated.json`).
fn envelope_template() -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(
        events_dir().join("webhook/workitem-updated.json"),
    )?)?)
}

/// The template carrying `body` (with its event id made unique by `n`, if given).
fn envelope(template: &Value, body: &Value, n: Option<usize>) -> String {
    let mut body = body.clone();
    if let Some(n) = n {
        body["id"] = Value::String(format!("bench-{n:08}-{}", std::process::id()));
    }
    let text = body.to_string();
    let mut env = template.clone();
    env["body"] = Value::String(text.clone());
    env["isBase64Encoded"] = Value::Bool(false);
    env["headers"]["content-length"] = Value::String(text.len().to_string());
    env.to_string()
}

/// A moto server: `MOTO_ENDPOINT` if set, else one started from the project's `.venv`.
struct Moto {
    url: String,
    child: Option<Child>,
}

impl Moto {
    fn start() -> anyhow::Result<Self> {
        if let Some(url) = std::env::var("MOTO_ENDPOINT")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Ok(Self { url, child: None });
        }
        let server = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        anyhow::ensure!(
            server.exists(),
            "moto is not installed: run scripts/moto.sh install"
        );
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
