use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::AwsIdentity;
use shared::config::{Env, Settings};
use shared::tenant::{Catalogs, Tenant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    // Settings (secrets included) and the mapping are resolved before the first event.
    let runtime = match start().await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e);
        }
    };
    let runtime = &runtime;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(processor_function::handle(runtime, event).await)
    }))
    .await
}

async fn start() -> Result<Tenant, Error> {
    let settings = Env::load_and(AwsIdentity::ENVIRONMENT, Settings::from_env).await?;
    // Only the catalog API: a function never links the embedded (SQLite) catalog.
    Ok(Tenant::start_with(settings, Catalogs::API_ONLY).await?)
}
