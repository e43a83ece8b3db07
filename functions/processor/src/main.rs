use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::config::Settings;
use shared::runtime::SyncRuntime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?),
        )
        .without_time()
        .init();
    let settings = Settings::from_env()?;
    let runtime = SyncRuntime::new(settings)?;
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(processor_function::handle(runtime, event).await)
    }))
    .await
}
