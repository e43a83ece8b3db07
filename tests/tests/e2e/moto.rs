//! moto's SQS server for the queue tests (`sim::moto`: the one `scripts/test.sh` started, or one this
//! test binary starts), and the queue pairs the tests use.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use shared::queue::sqs::{SqsQueue, create_fifo_pair};

pub use sim::moto::endpoint;

/// The AWS configuration of moto, with static test credentials (nothing read from the machine's AWS
/// configuration).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

/// Secret reads (`shared::aws`) pointed at moto, with the same static test credentials.
pub fn aws_access() -> shared::aws::AwsAccess {
    shared::aws::AwsAccess::new(
        "us-east-1".into(),
        Credentials::new("test", "test", None, None, "moto"),
        std::sync::Arc::new(|name: &str| (name == "AWS_ENDPOINT_URL").then(endpoint)),
    )
}

/// An SQS client pointed at moto, with static test credentials (nothing read from the machine's AWS
/// configuration).
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config().await)
}

/// A FIFO queue and its dead-letter queue, named uniquely so tests don't see each other's messages.
pub struct FifoPair {
    pub main: SqsQueue,
    pub dlq: SqsQueue,
    pub main_url: String,
    pub dlq_url: String,
    pub client: aws_sdk_sqs::Client,
}

/// Visibility timeout of the test queues: longer than any test, so a message is redelivered only when
/// a test releases it.
pub const VISIBILITY: Duration = Duration::from_secs(60);

pub async fn fifo_pair(max_receives: u32) -> FifoPair {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "e2e-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let client = sqs_client().await;
    let (main_url, dlq_url) = create_fifo_pair(&client, &name, max_receives, VISIBILITY)
        .await
        .expect("the FIFO queue pair is created");
    FifoPair {
        main: SqsQueue::new(client.clone(), main_url.clone()),
        dlq: SqsQueue::new(client.clone(), dlq_url.clone()),
        main_url,
        dlq_url,
        client,
    }
}
