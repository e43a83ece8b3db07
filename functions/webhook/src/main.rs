use std::convert::Infallible;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Error, service_fn};
use shared::aws::AwsIdentity;
use shared::config::{ConfigError, Env, QueueSettings};
use shared::queue::sqs::SqsQueue;
use shared::webhook::WebhookSettings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    // Settings (secrets included) are resolved before the first request.
    let (settings, queue) = match start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e);
        }
    };
    let (settings, queue) = (&settings, &queue);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Infallible>(
                webhook_function::handle_event(settings, queue, event.payload).await,
            )
        },
    ))
    .await
}

async fn start() -> Result<(WebhookSettings, SqsQueue), Error> {
    let (settings, queue_url) = Env::load_and(AwsIdentity::ENVIRONMENT, |env| {
        let queue_url = QueueSettings::from_env(env).required_queue_url();
        ConfigError::both(WebhookSettings::from_env(env), queue_url)
    })
    .await?;
    if settings.is_open() {
        tracing::warn!(
            "WEBHOOK_ALLOW_UNAUTHENTICATED is set: deliveries are accepted without credentials"
        );
    }
    let queue = SqsQueue::from_env(queue_url).await?;
    Ok((settings, queue))
}
