//! The queue between the webhook and the processor: the compact message ([`message`]), the port, and
//! its adapters (SQS FIFO, and a durable local queue for the self-hosted mode).

pub mod batch;
#[cfg(feature = "embedded")]
pub mod local;
pub mod memory;
pub mod message;
pub mod sqs;
pub mod sqs_json;

use async_trait::async_trait;

pub use message::{Change, ChangeMessage, RefUpdate};

use crate::failure::Failure;

/// Errors typed by what the caller must do. Each carries the [`Failure`]: the operation, the status,
/// the service's error code and message, and the underlying error.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueError {
    /// The queue could not take or give the message now (throttling, network, a 5xx): retry later.
    /// The webhook answers 503 on this, so Azure DevOps redelivers.
    Transient(Failure),
    /// The message or the configuration is wrong (too large, no such queue, bad credentials).
    Invalid(Failure),
}

impl QueueError {
    pub fn failure(&self) -> &Failure {
        match self {
            QueueError::Transient(f) | QueueError::Invalid(f) => f,
        }
    }

    /// Described in words: may succeed later.
    pub fn transient(detail: impl Into<String>) -> Self {
        QueueError::Transient(Failure::new(detail))
    }

    /// Described in words: needs a fix first.
    pub fn invalid(detail: impl Into<String>) -> Self {
        QueueError::Invalid(Failure::new(detail))
    }

    /// The same kind of error with what was being done in front.
    pub fn context(self, context: impl Into<String>) -> Self {
        match self {
            QueueError::Transient(f) => QueueError::Transient(f.with_context(context)),
            QueueError::Invalid(f) => QueueError::Invalid(f.with_context(context)),
        }
    }
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::Transient(x) => write!(f, "queue unavailable: {x}"),
            QueueError::Invalid(x) => write!(f, "queue rejected the request: {x}"),
        }
    }
}

/// The source is the failure's cause; the failure itself is part of the message.
impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure().cause().map(|c| c as _)
    }
}

/// Where the webhook puts accepted events.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues one message. FIFO adapters use [`ChangeMessage::group_id`] and
    /// [`ChangeMessage::dedup_id`]; returns the queue's message id.
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError>;
}

/// A message taken from a queue, to be acknowledged (deleted) once applied.
#[derive(Debug, Clone)]
pub struct Received {
    /// The handle to acknowledge or release it with.
    pub receipt: String,
    pub message_id: String,
    /// The FIFO message group it was sent with.
    pub group_id: Option<String>,
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// The consuming side, for the self-hosted mode and the tests (in Lambda, the event source mapping
/// receives and deletes for us).
#[async_trait]
pub trait QueueConsumer: Send + Sync {
    /// Up to `max` messages, waiting up to `wait` for the first.
    async fn receive(
        &self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<Received>, QueueError>;
    /// Done with it: remove it from the queue.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;
    /// Not done: make it visible again after `delay` (a retry), or move it to the dead letters once it
    /// was received too often.
    async fn release(&self, receipt: &str, delay: std::time::Duration) -> Result<(), QueueError>;
}
