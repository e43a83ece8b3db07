use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::ado::hooks::SubscriptionSettings;
use shared::aws::AwsIdentity;
use shared::config::{ConfigError, Env, QueueSettings, Settings};
use shared::queue::Queue;
use shared::queue::sqs_json::SqsSender;
use shared::tenant::{Catalogs, Tenant};

// One invocation at a time, one task per pass: a single thread is enough and keeps memory down.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    // Settings (secrets included) and the mapping are resolved before the first event.
    let (runtime, subscriptions, queue) = match start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e);
        }
    };
    let (runtime, subscriptions) = (&runtime, subscriptions.as_ref());
    let queue = queue.as_ref().map(|q| q as &dyn Queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if resync_function::is_claim(&event.payload) {
            resync_function::claim(runtime, queue, event)
                .await
                .map_err(Diagnostic::from)
        } else {
            resync_function::handle_with(runtime, subscriptions, event)
                .await
                .map_err(Diagnostic::from)
        }
    }))
    .await
}

async fn start() -> Result<(Tenant, Option<SubscriptionSettings>, Option<SqsSender>), Error> {
    // Live events are optional: without WEBHOOK_URL the schedule only resyncs.
    let (settings, subscriptions, queue_url) = Env::load_and(AwsIdentity::ENVIRONMENT, |env| {
        let (settings, subscriptions) = ConfigError::both(
            Settings::from_env(env),
            SubscriptionSettings::from_env_if_set(env),
        )?;
        Ok((
            settings,
            subscriptions,
            QueueSettings::from_env(env).queue_url,
        ))
    })
    .await?;
    // The action claimer's queue (`QUEUE_URL`), sent to without the AWS SDK.
    let queue = match queue_url.filter(|_| settings.actions.enabled) {
        Some(url) => Some(SqsSender::new(
            AwsIdentity::ENVIRONMENT.resolve().await?,
            url,
        )),
        None => None,
    };
    // Only the catalog API: a function never links the embedded (SQLite) catalog.
    Ok((
        Tenant::start_with(settings, Catalogs::API_ONLY).await?,
        subscriptions,
        queue,
    ))
}
