use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::ado::hooks::SubscriptionSettings;
use shared::aws::AwsIdentity;
use shared::config::{ConfigError, Env, Settings};
use shared::tenant::{Catalogs, Tenant};

// One invocation at a time, one task per pass: a single thread is enough and keeps memory down.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    // Settings (secrets included) and the mapping are resolved before the first event.
    let (runtime, subscriptions) = match start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e);
        }
    };
    let (runtime, subscriptions) = (&runtime, subscriptions.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        resync_function::handle_with(runtime, subscriptions, event).await
    }))
    .await
}

async fn start() -> Result<(Tenant, Option<SubscriptionSettings>), Error> {
    // Live events are optional: without WEBHOOK_URL the schedule only resyncs.
    let (settings, subscriptions) = Env::load_and(AwsIdentity::ENVIRONMENT, |env| {
        ConfigError::both(
            Settings::from_env(env),
            SubscriptionSettings::from_env_if_set(env),
        )
    })
    .await?;
    // Only the catalog API: a function never links the embedded (SQLite) catalog.
    Ok((
        Tenant::start_with(settings, Catalogs::API_ONLY).await?,
        subscriptions,
    ))
}
