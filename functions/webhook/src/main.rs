use std::convert::Infallible;

use lambda_http::{Error, Request, service_fn};
use shared::queue::sqs::SqsQueue;
use shared::webhook::WebhookSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?),
        )
        .without_time()
        .init();
    let settings = WebhookSettings::from_env()?;
    if settings.is_open() {
        tracing::warn!(
            "WEBHOOK_ALLOW_UNAUTHENTICATED is set: deliveries are accepted without credentials"
        );
    }
    let queue_url = std::env::var("QUEUE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or("missing setting QUEUE_URL: the URL of the SQS FIFO queue to send changes to")?;
    let queue = SqsQueue::from_env(queue_url).await?;
    let (settings, queue) = (&settings, &queue);
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(webhook_function::handle(settings, queue, request).await)
    }))
    .await
}
