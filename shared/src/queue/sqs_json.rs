//! Sending to the SQS FIFO queue without the AWS SDK: one signed `AmazonSQS.SendMessage` request
//! through [`AwsAccess`]. The resync function queues action jobs this way (its claimer), so its
//! binary stays free of the SDK's runtime, as for the secret reads. The webhook and `serve` keep the
//! SDK adapter ([`super::sqs::SqsQueue`]), which also receives and deletes.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{ChangeMessage, Queue, QueueError};
use crate::aws::{AwsAccess, SQS};
use crate::failure::{Failure, Route};

#[derive(Debug, Clone)]
pub struct SqsSender {
    aws: AwsAccess,
    queue_url: String,
}

impl SqsSender {
    pub fn new(aws: AwsAccess, queue_url: String) -> Self {
        Self { aws, queue_url }
    }
}

#[async_trait]
impl Queue for SqsSender {
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError> {
        let body = super::sqs::body_of(message)?;
        let input = json!({
            "QueueUrl": self.queue_url,
            "MessageBody": body,
            "MessageGroupId": message.group_id(),
            "MessageDeduplicationId": message.dedup_id(),
        });
        // Retried on throttling and 5xx inside `call`: the deduplication id makes a repeat one message.
        match self.aws.call(SQS, "SendMessage", &input).await {
            Ok(answer) => Ok(answer
                .get("MessageId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()),
            Err(e) => {
                let failure =
                    Failure::request(Route::new("SQS", "SendMessage")).with_detail(e.to_string());
                // The service's refusals name themselves (no such queue, access denied, a bad
                // parameter); what failed to reach it may work later.
                Err(if e.code.is_some() {
                    QueueError::Invalid(failure)
                } else {
                    QueueError::Transient(failure)
                })
            }
        }
    }
}
