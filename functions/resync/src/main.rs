use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::ado::hooks::SubscriptionSettings;
use shared::config::Settings;
use shared::runtime::SyncRuntime;

// One invocation at a time, one task per pass: a single thread is enough and keeps memory down.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?),
        )
        .without_time()
        .init();
    let settings = Settings::from_env()?;
    // Live events are optional: without WEBHOOK_URL the schedule only resyncs.
    let subscriptions = SubscriptionSettings::from_lookup_if_set(|k| {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    })?;
    let runtime = SyncRuntime::new(settings)?;
    let (runtime, subscriptions) = (&runtime, subscriptions.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        resync_function::handle_with(runtime, subscriptions, event).await
    }))
    .await
}
