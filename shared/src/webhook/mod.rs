//! The webhook: authenticates, validates and classifies Azure DevOps service-hook deliveries, and
//! queues the compact change for the processor. The only I/O is [`Queue::send`].
//!
//! Status codes follow Azure DevOps' delivery rules: 408/502/503/504 are retried within minutes, any
//! other non-2xx puts the whole subscription on probation (and eventually disables it), 410 disables
//! it at once. So only a bad credential (401) and an impossible body (413) are refused; everything
//! authenticated that we cannot use is acknowledged and logged, and a queue outage answers 503.

mod auth;
mod classify;
mod settings;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::queue::{Queue, QueueError};

pub use auth::{AuthError, authenticate};
pub use classify::{EVENT_TYPES, Envelope, SNAPSHOT_MAX_BYTES, Unqueueable, classify};
pub use settings::{DEFAULT_MAX_BODY_BYTES, WebhookSettings};

/// How much of an unqueueable body goes to the debug log.
const DEBUG_BODY_BYTES: usize = 4096;

/// The HTTP answer to one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOutcome {
    pub status: u16,
    /// A small JSON object; never echoes the payload or a credential.
    pub body: Value,
    /// Send `WWW-Authenticate: Basic` with a 401, as RFC 9110 asks.
    pub basic_challenge: bool,
}

impl WebhookOutcome {
    fn new(status: u16, body: Value) -> Self {
        Self {
            status,
            body,
            basic_challenge: false,
        }
    }
}

/// Handles one delivery: credentials first (nothing is parsed for a stranger), then size, envelope
/// and classification, then the queue.
pub async fn accept(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookOutcome {
    if let Err(e) = authenticate(settings, headers) {
        warn!(reason = e.reason(), "webhook delivery refused: {e}");
        return WebhookOutcome {
            basic_challenge: settings.basic.is_some(),
            ..WebhookOutcome::new(401, json!({"error": "unauthorized"}))
        };
    }

    // A 4xx puts the subscription on probation, but Azure DevOps can never deliver this body
    // successfully anyway (Lambda answers 413 itself above 6 MiB), and unlike a 2xx the refusal
    // shows in the subscription's history instead of losing the event silently.
    if body.len() > settings.max_body_bytes {
        warn!(
            bytes = body.len(),
            limit = settings.max_body_bytes,
            "webhook delivery too large"
        );
        return WebhookOutcome::new(413, json!({"error": "payload too large"}));
    }

    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return unqueueable(&Value::Null, body, &Unqueueable::MalformedJson),
    };
    let message = match classify(&value) {
        Ok(m) => m,
        Err(e) => return unqueueable(&value, body, &e),
    };

    match queue.send(&message).await {
        Ok(message_id) => {
            info!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                project_id = message.project_id.as_deref().unwrap_or("-"),
                message_id = %message_id,
                "webhook delivery queued"
            );
            WebhookOutcome::new(
                202,
                json!({"status": "queued", "eventId": message.event_id, "messageId": message_id}),
            )
        }
        // Azure DevOps retries a 503 within minutes (up to 8 times), so a short outage loses nothing.
        Err(e @ QueueError::Transient(_)) => {
            warn!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                error = %e,
                "queue unavailable; asking Azure DevOps to retry"
            );
            WebhookOutcome::new(503, json!({"error": "queue unavailable"}))
        }
        // A misconfigured queue fails every delivery alike; a 500 makes that visible in the
        // subscription's history and in our error alarm.
        Err(e @ QueueError::Invalid(_)) => {
            tracing::error!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                error = %e,
                "queue rejected the message"
            );
            WebhookOutcome::new(500, json!({"error": "queue rejected the message"}))
        }
    }
}

/// Acknowledged, recorded, not queued: refusing it would put the subscription on probation for an
/// event that will never become valid.
fn unqueueable(value: &Value, body: &[u8], why: &Unqueueable) -> WebhookOutcome {
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    let event_id = text("/id");
    warn!(
        event_id = event_id.unwrap_or("-"),
        event_type = text("/eventType").unwrap_or("-"),
        project_id = text("/resourceContainers/project/id").unwrap_or("-"),
        reason = why.reason(),
        "webhook delivery acknowledged but not queued: {why}"
    );
    debug!(
        body = %String::from_utf8_lossy(&body[..body.len().min(DEBUG_BODY_BYTES)]),
        "unqueued delivery"
    );
    WebhookOutcome::new(
        202,
        json!({"status": "ignored", "reason": why.reason(), "eventId": event_id}),
    )
}
