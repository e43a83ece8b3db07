//! The SQS FIFO adapter of the queue port, the dead-letter replay, and the queue-pair setup used by the
//! tests and tools.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use super::{ChangeMessage, Queue, QueueConsumer, QueueError, Received};
use crate::failure::{Failure, Route};

/// SQS accepts at most 10 entries per batch call and 10 messages per receive.
pub const MAX_BATCH: usize = 10;
/// The longest long poll SQS allows.
const MAX_WAIT_SECS: u64 = 20;
/// The longest visibility timeout SQS allows (12 hours).
const MAX_VISIBILITY_SECS: u64 = 43_200;
/// The largest message SQS takes (1 MiB since 2026; queues must raise `MaximumMessageSize` to it).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// One SQS queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// A client from the default AWS configuration chain (environment, profile, Lambda role). It honours
    /// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SQS`, which is how a local SQS emulator is reached.
    pub async fn from_env(queue_url: String) -> Result<Self, QueueError> {
        if queue_url.trim().is_empty() {
            return Err(QueueError::Invalid("the queue URL is empty".into()));
        }
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Self::new(Client::new(&config), queue_url))
    }

    pub fn url(&self) -> &str {
        &self.queue_url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends up to [`MAX_BATCH`] messages per call; returns the message ids in order. A rejected entry
    /// fails the whole call (after the others were sent) with the first entry's error: retrying is safe,
    /// the dedup ids collapse what already went through.
    pub async fn send_batch(&self, messages: &[ChangeMessage]) -> Result<Vec<String>, QueueError> {
        let mut ids = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(MAX_BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body_of(m)?)
                    .message_group_id(m.group_id())
                    .message_deduplication_id(m.dedup_id())
                    .build()
                    .map_err(|e| QueueError::invalid(format!("batch entry: {e}")))?;
                entries.push(entry);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SendMessageBatch", e))?;
            if let Some(f) = out.failed().first() {
                let what = Failure::request(Route::new("SQS", "SendMessageBatch"))
                    .with_detail(format!("entry {}: {}", f.id(), f.code()))
                    .with_body(f.message().unwrap_or_default());
                return Err(if f.sender_fault() {
                    QueueError::Invalid(what)
                } else {
                    QueueError::Transient(what)
                });
            }
            let mut sent: Vec<(usize, String)> = out
                .successful()
                .iter()
                .filter_map(|s| Some((s.id().parse().ok()?, s.message_id().to_owned())))
                .collect();
            sent.sort();
            ids.extend(sent.into_iter().map(|(_, id)| id));
        }
        Ok(ids)
    }

    /// Sends a body as it is, with explicit FIFO ids (the replay keeps a message's group).
    async fn send_raw(
        &self,
        body: &str,
        group_id: &str,
        dedup_id: &str,
    ) -> Result<String, QueueError> {
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::invalid(format!(
                "message of {} bytes exceeds the SQS limit of {MAX_MESSAGE_BYTES}",
                body.len()
            )));
        }
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(group_id)
            .message_deduplication_id(dedup_id)
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Receives with the FIFO attributes the replay needs; `visibility` overrides the queue's default.
    async fn receive_messages(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_SECS) as i32)
            .set_visibility_timeout(visibility.map(|v| v.as_secs().min(MAX_VISIBILITY_SECS) as i32))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::MessageDeduplicationId)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
    }
}

/// The message as the body SQS takes, refused when over the queue's limit.
pub(crate) fn body_of(message: &ChangeMessage) -> Result<String, QueueError> {
    let body = serde_json::to_string(message)
        .map_err(|e| QueueError::invalid(format!("message does not serialise: {e}")))?;
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(QueueError::invalid(format!(
            "message of {} bytes exceeds the SQS limit of {MAX_MESSAGE_BYTES}",
            body.len()
        )));
    }
    Ok(body)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError> {
        let body = body_of(message)?;
        self.send_raw(&body, &message.group_id(), &message.dedup_id())
            .await
    }
}

#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let messages = self.receive_messages(max, wait, None).await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let receive_count =
                    system_attribute(&m, MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1);
                let group_id = system_attribute(&m, MessageSystemAttributeName::MessageGroupId)
                    .map(str::to_owned);
                Some(Received {
                    receipt: m.receipt_handle?,
                    group_id,
                    message_id: m.message_id.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessage", e))?;
        Ok(())
    }

    /// Makes the message visible again after `delay`. Moving it to the dead letters is the redrive
    /// policy's job: SQS does it on the receive after `maxReceiveCount`.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(delay.as_secs().min(MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map_err(|e| sdk_error("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

fn system_attribute(
    m: &aws_sdk_sqs::types::Message,
    name: MessageSystemAttributeName,
) -> Option<&str> {
    m.attributes()?.get(&name).map(String::as_str)
}

/// Maps an SDK error by what the caller must do.
fn sdk_error<E>(operation: &str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = Failure::request(Route::new("SQS", operation));
    let what = match &err {
        SdkError::ServiceError(s) => failure
            .with_status(s.raw().status().as_u16())
            .with_detail(s.err().code().unwrap_or("unknown error"))
            .with_body(s.err().message().unwrap_or_default()),
        // The source chain (the failure renders it), without DisplayErrorContext's debug dump of the
        // raw response.
        _ => failure,
    };
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        // A user error here is a bad endpoint or client setup: retrying won't fix it.
        SdkError::DispatchFailure(d) => !d.is_user(),
        SdkError::ServiceError(s) => {
            is_transient_service_error(s.err().code(), Some(s.raw().status().as_u16()))
        }
        // Construction failures (a missing required field, no credentials) and future variants.
        _ => false,
    };
    let what = match err {
        SdkError::ServiceError(_) => what,
        other => what.with_source(other),
    };
    if transient {
        QueueError::Transient(what)
    } else {
        QueueError::Invalid(what)
    }
}

/// Throttling, server-side faults and the in-flight limit clear by themselves; every other service
/// error (no such queue, invalid parameter, too large, access denied) needs a fix first.
fn is_transient_service_error(code: Option<&str>, status: Option<u16>) -> bool {
    const TRANSIENT_CODES: &[&str] = &[
        "RequestThrottled",
        "ThrottlingException",
        "Throttling",
        "KmsThrottled",
        "KMS.ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        // Too many in-flight messages (120,000 standard / 20,000 FIFO): they drain as they are deleted.
        "OverLimit",
        "AWS.SimpleQueueService.OverLimit",
    ];
    if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return true;
    }
    status.is_some_and(|s| s == 429 || s >= 500)
}

/// Creates `{name}.fifo` and its dead-letter queue `{name}-dlq.fifo` (explicit dedup ids, 1 MiB
/// messages), with a redrive policy moving a message after `max_receives` receives. Returns both URLs.
/// Creating an existing queue with the same attributes is a no-op in SQS, so this is safe to re-run.
pub async fn create_fifo_pair(
    client: &Client,
    name: &str,
    max_receives: u32,
    visibility_timeout: Duration,
) -> Result<(String, String), QueueError> {
    let dlq_url = create_fifo(
        client,
        &format!("{name}-dlq.fifo"),
        visibility_timeout,
        None,
    )
    .await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueAttributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| QueueError::invalid(format!("no QueueArn for {dlq_url}")))?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receives.to_string(),
    })
    .to_string();
    let url = create_fifo(
        client,
        &format!("{name}.fifo"),
        visibility_timeout,
        Some(redrive),
    )
    .await?;
    Ok((url, dlq_url))
}

async fn create_fifo(
    client: &Client,
    name: &str,
    visibility_timeout: Duration,
    redrive_policy: Option<String>,
) -> Result<String, QueueError> {
    let mut req = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        // The webhook sets the event id as the dedup id: the body differs between redeliveries.
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(
            QueueAttributeName::MaximumMessageSize,
            MAX_MESSAGE_BYTES.to_string(),
        )
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout
                .as_secs()
                .min(MAX_VISIBILITY_SECS)
                .to_string(),
        );
    if let Some(p) = redrive_policy {
        req = req.attributes(QueueAttributeName::RedrivePolicy, p);
    }
    let out = req.send().await.map_err(|e| sdk_error("CreateQueue", e))?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| QueueError::invalid(format!("CreateQueue {name} returned no URL")))
}

/// What a dead-letter replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Messages sent to the main queue and deleted from the dead-letter queue.
    pub moved: usize,
    /// Messages left in the dead-letter queue because the send (or the delete after it) failed.
    pub failed: Vec<ReplayFailure>,
}

#[derive(Debug)]
pub struct ReplayFailure {
    pub message_id: String,
    pub error: QueueError,
}

/// How long a message received for replay stays hidden: long enough that a message whose send failed
/// is not received again within the same run (the run stops when nothing is visible any more).
const REPLAY_VISIBILITY: Duration = Duration::from_secs(60);

/// Moves messages from a dead-letter queue back to the main queue, up to `max` (all when `None`), until
/// the dead-letter queue has nothing visible. Each keeps its body and `MessageGroupId` and gets a fresh
/// `MessageDeduplicationId`: SQS would drop the original id for 5 minutes after the first delivery, and
/// a message that failed again should be replayable again. It is deleted from the dead-letter queue only
/// after the send succeeded, so a crash in between duplicates a message (harmless: the processor re-reads
/// the resource) rather than losing one. `StartMessageMoveTask` would do this server-side, but it can't
/// set the dedup ids and local emulators lack it.
pub async fn replay(
    dlq: &SqsQueue,
    main: &SqsQueue,
    max: Option<usize>,
) -> Result<ReplayReport, QueueError> {
    let mut report = ReplayReport::default();
    let mut failed_ids = HashSet::new();
    loop {
        let want = match max {
            Some(m) if report.moved >= m => break,
            Some(m) => (m - report.moved).min(MAX_BATCH),
            None => MAX_BATCH,
        };
        let batch = dlq
            .receive_messages(want, Duration::from_secs(1), Some(REPLAY_VISIBILITY))
            .await?;
        // Nothing new: empty, or only messages that already failed in this run (the run took longer
        // than their visibility timeout).
        if batch
            .iter()
            .all(|m| failed_ids.contains(m.message_id().unwrap_or_default()))
        {
            break;
        }
        for m in batch {
            let message_id = m.message_id().unwrap_or_default().to_owned();
            if failed_ids.contains(&message_id) {
                continue;
            }
            match replay_one(dlq, main, &m).await {
                Ok(()) => report.moved += 1,
                Err(error) => {
                    tracing::warn!(message_id, error = %error, "dead letter not replayed");
                    failed_ids.insert(message_id.clone());
                    report.failed.push(ReplayFailure { message_id, error });
                }
            }
        }
    }
    Ok(report)
}

async fn replay_one(
    dlq: &SqsQueue,
    main: &SqsQueue,
    m: &aws_sdk_sqs::types::Message,
) -> Result<(), QueueError> {
    let body = m.body().unwrap_or_default();
    let receipt = m
        .receipt_handle()
        .ok_or_else(|| QueueError::Invalid("received message without a receipt handle".into()))?;
    let group = match system_attribute(m, MessageSystemAttributeName::MessageGroupId) {
        Some(g) => g.to_owned(),
        // A standard dead-letter queue does not keep the group: derive it as the webhook did.
        None => serde_json::from_str::<ChangeMessage>(body)
            .map_err(|e| {
                QueueError::invalid(format!("no MessageGroupId and not a change message: {e}"))
            })?
            .group_id(),
    };
    let old_dedup =
        system_attribute(m, MessageSystemAttributeName::MessageDeduplicationId).unwrap_or("dlq");
    main.send_raw(body, &group, &fresh_dedup_id(old_dedup))
        .await?;
    // Sent but not deleted: it will be replayed again next time (a duplicate the processor absorbs).
    dlq.ack(receipt)
        .await
        .map_err(|e| e.context("sent, but still in the DLQ"))
}

/// The old id (for tracing in logs) plus a random suffix, within SQS's 128 characters.
fn fresh_dedup_id(old: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let keep: String = old.chars().take(128 - 8 - suffix.len()).collect();
    format!("{keep}:replay:{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_faults_are_transient() {
        assert!(is_transient_service_error(
            Some("RequestThrottled"),
            Some(400)
        ));
        assert!(is_transient_service_error(
            Some("ThrottlingException"),
            Some(400)
        ));
        assert!(is_transient_service_error(Some("OverLimit"), Some(403)));
        assert!(is_transient_service_error(None, Some(503)));
        assert!(is_transient_service_error(Some("Whatever"), Some(500)));
        assert!(is_transient_service_error(None, Some(429)));
    }

    #[test]
    fn missing_queues_bad_parameters_and_denials_are_invalid() {
        for (code, status) in [
            ("AWS.SimpleQueueService.NonExistentQueue", 400),
            ("QueueDoesNotExist", 400),
            ("InvalidParameterValue", 400),
            ("MissingParameter", 400),
            ("AccessDenied", 403),
            ("InvalidClientTokenId", 403),
        ] {
            assert!(
                !is_transient_service_error(Some(code), Some(status)),
                "{code}"
            );
        }
    }

    #[test]
    fn replayed_dedup_ids_are_fresh_and_fit_sqs() {
        let a = fresh_dedup_id("evt-1");
        let b = fresh_dedup_id("evt-1");
        assert_ne!(a, b);
        assert!(a.starts_with("evt-1:replay:"), "{a}");
        let long = fresh_dedup_id(&"x".repeat(128));
        assert_eq!(long.len(), 128);
        assert!(long.chars().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn oversized_messages_are_rejected_before_sending() {
        let m = ChangeMessage {
            version: 1,
            event_id: "e".into(),
            event_type: "workitem.deleted".into(),
            publisher_id: "tfs".into(),
            subscription_id: None,
            created_date: None,
            project_id: None,
            base_url: None,
            change: super::super::Change::WorkItem {
                id: 1,
                deleted: true,
                snapshot: Some(serde_json::json!({ "blob": "x".repeat(MAX_MESSAGE_BYTES) })),
            },
        };
        assert!(matches!(body_of(&m), Err(QueueError::Invalid(_))));
    }
}
