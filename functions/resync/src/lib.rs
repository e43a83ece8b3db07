//! The scheduled resync function: one full pass per invocation (an EventBridge Scheduler or rule event;
//! the payload itself carries nothing we need).

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use shared::ado::hooks::{SubscriptionSettings, sync_subscriptions};
use shared::ado::kinds::FetchContext;
use shared::metrics::{self, Metrics};
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
    report_metrics(&report).emit();
    if report.succeeded() {
        Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
    } else {
        Err(ResyncFailed(report))
    }
}

/// The pass in the `AdoSync` metrics the template's alarms watch.
fn report_metrics(report: &RunReport) -> Metrics {
    let totals = report.totals();
    Metrics::for_function("resync")
        .milliseconds(
            metrics::RESYNC_DURATION_MS,
            report.duration.as_millis() as u64,
        )
        .count(metrics::RESYNC_FAILURES, u64::from(!report.succeeded()))
        .count(metrics::RESYNC_ERRORS, totals.errors)
        .count(metrics::ENTITIES_UPSERTED, totals.upserted)
        .count(metrics::ENTITIES_DELETED, totals.deleted)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::resync::{DeletionOutcome, KindReport, RunReport};

    use super::report_metrics;

    fn report(errors: u64) -> RunReport {
        let kind = |kind: &str, upserted, deleted| KindReport {
            kind: kind.into(),
            upserted,
            deleted,
            errors,
            ..Default::default()
        };
        RunReport {
            resync_id: "r".into(),
            started_at: chrono::Utc::now(),
            duration: Duration::from_millis(65_432),
            kinds: vec![kind("project", 2, 0), kind("repository", 5, 1)],
            deletion: DeletionOutcome::NothingStale { owned: 7 },
            ado_requests: 9,
        }
    }

    #[test]
    fn a_clean_pass_reports_its_duration_and_totals_and_no_failure() {
        let doc = report_metrics(&report(0)).to_emf(0);
        assert_eq!(doc["ResyncDurationMs"], 65_432.0);
        assert_eq!(doc["ResyncFailures"], 0.0);
        assert_eq!(doc["EntitiesUpserted"], 7.0);
        assert_eq!(doc["EntitiesDeleted"], 1.0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
    }

    #[test]
    fn a_pass_with_errors_counts_as_a_failure() {
        let doc = report_metrics(&report(1)).to_emf(0);
        assert_eq!(doc["ResyncFailures"], 1.0);
        assert_eq!(doc["ResyncErrors"], 2.0);
    }
}
