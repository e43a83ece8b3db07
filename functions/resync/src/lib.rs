//! The scheduled resync function: one full pass per invocation (an EventBridge Scheduler or rule event;
//! the payload itself carries nothing we need).

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use shared::ado::hooks::{SubscriptionSettings, sync_subscriptions};
use shared::ado::kinds::FetchContext;
use shared::resync::{Quiet, RunReport};
use shared::runtime::SyncRuntime;

/// A pass that ran but had errors. Reported as a function error so the schedule's retry policy and
/// the error alarm see it; the report travels in the message.
#[derive(Debug)]
pub struct ResyncFailed(pub RunReport);

impl From<ResyncFailed> for Diagnostic {
    fn from(e: ResyncFailed) -> Self {
        Diagnostic {
            error_type: "ResyncFailed".into(),
            error_message: format!(
                "resync {} had errors; deletion: {}",
                e.0.resync_id,
                e.0.deletion.describe()
            ),
        }
    }
}

/// Runs one pass and returns its report.
pub async fn handle(
    runtime: &SyncRuntime,
    event: LambdaEvent<Value>,
) -> Result<Value, ResyncFailed> {
    handle_with(runtime, None, event).await
}

/// Like [`handle`], and first brings the service-hook subscriptions in line when live events are
/// configured (`WEBHOOK_URL`): the schedule then also repairs subscriptions ADO disabled, rotated
/// secrets and vanished projects. A subscription failure is logged; it does not fail the resync.
pub async fn handle_with(
    runtime: &SyncRuntime,
    subscriptions: Option<&SubscriptionSettings>,
    event: LambdaEvent<Value>,
) -> Result<Value, ResyncFailed> {
    if let Some(settings) = subscriptions {
        let ctx = FetchContext::new(runtime.ado.clone(), runtime.settings.excluded_tags.clone());
        let report = sync_subscriptions(&ctx, settings).await;
        if report.succeeded() {
            tracing::info!(summary = %report.render(), "subscriptions in sync");
        } else {
            tracing::error!(summary = %report.render(), "some subscriptions could not be synced");
        }
    }
    let source = event
        .payload
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("-");
    tracing::info!(request_id = %event.context.request_id, source, "scheduled resync");
    let report = runtime.resync(&Quiet).await;
    if report.succeeded() {
        Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
    } else {
        Err(ResyncFailed(report))
    }
}
