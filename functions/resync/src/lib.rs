//! The scheduled resync function: one full pass per invocation (an EventBridge Scheduler or rule event;
//! the payload itself carries nothing we need), or, for the event `{"job": "claim-actions"}` of the
//! actions schedule, one round of the self-service action claimer ([`claim`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use shared::actions::claim;
use shared::ado::hooks::{SubscriptionSettings, sync_subscriptions};
use shared::ado::kinds::FetchContext;
use shared::metrics::{self, Metrics};
use shared::queue::Queue;
use shared::resync::{Quiet, RunReport};
use shared::tenant::Tenant;
use tokio::time::Instant;

/// A pass that ran but had errors. Reported as a function error so the schedule's retry policy and
/// the error alarm see it; the report travels in the message. The runtime logs a failed invocation's
/// error with `Debug`: it reads as the summary, not as a dump of the report (which is logged once,
/// structured, as `resync report`).
pub struct ResyncFailed(pub RunReport);

impl ResyncFailed {
    fn summary(&self) -> String {
        let r = &self.0;
        let totals = r.totals();
        let first = r
            .kinds
            .iter()
            .flat_map(|k| k.messages.iter().map(move |m| format!("{}: {m}", k.kind)))
            .next();
        let what = match &r.stopped {
            Some(stop) => stop.describe(),
            None => format!("had {} errors", totals.errors),
        };
        let mut text = format!(
            "resync {} {what}; deletion: {}",
            r.resync_id,
            r.deletion.describe()
        );
        if let Some(first) = first {
            text.push_str(&format!("; first error: {first}"));
        }
        text
    }
}

impl std::fmt::Debug for ResyncFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl From<ResyncFailed> for Diagnostic {
    fn from(e: ResyncFailed) -> Self {
        Diagnostic {
            error_type: "ResyncFailed".into(),
            error_message: e.summary(),
        }
    }
}

/// Runs one pass and returns its report.
pub async fn handle(runtime: &Tenant, event: LambdaEvent<Value>) -> Result<Value, ResyncFailed> {
    handle_with(runtime, None, event).await
}

/// Like [`handle`], and first brings the service-hook subscriptions in line when live events are
/// configured (`WEBHOOK_URL`): the schedule then also repairs subscriptions ADO disabled, rotated
/// secrets and vanished projects. A subscription failure is logged; it does not fail the resync.
pub async fn handle_with(
    runtime: &Tenant,
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
    let deadline = pass_deadline(event.context.deadline, SystemTime::now());
    let report = runtime.resync_until(&Quiet, deadline).await;
    log_report(&report);
    report_metrics(&report).emit();
    if report.succeeded() {
        Ok(serde_json::to_value(&report).unwrap_or(Value::Null))
    } else {
        Err(ResyncFailed(report))
    }
}

/// The actions schedule's event asks for the claimer instead of a pass.
pub fn is_claim(payload: &Value) -> bool {
    payload.get("job").and_then(Value::as_str) == Some("claim-actions")
}

/// A claimer round with errors: reported as a function error so the error alarm sees it.
#[derive(Debug)]
pub struct ClaimFailed(pub String);

impl From<ClaimFailed> for Diagnostic {
    fn from(e: ClaimFailed) -> Self {
        Diagnostic {
            error_type: "ClaimFailed".into(),
            error_message: e.0,
        }
    }
}

/// Claims pending action runs for the claim window (`ACTIONS_CLAIM_SECS`, bounded by the invocation's
/// deadline), queues them for the processor, and fails runs whose pipeline never completed.
pub async fn claim(
    runtime: &Tenant,
    queue: Option<&dyn Queue>,
    event: LambdaEvent<Value>,
) -> Result<Value, ClaimFailed> {
    let actions = &runtime.settings.actions;
    let (true, Some(runs), Some(queue)) = (actions.enabled, runtime.action_runs(), queue) else {
        return Err(ClaimFailed(
            "the claimer needs ACTIONS_ENABLED=true, the catalog API and QUEUE_URL".into(),
        ));
    };
    let mut window = actions.claim_window;
    if let Some(deadline) = pass_deadline(event.context.deadline, SystemTime::now()) {
        window = window.min(deadline.saturating_duration_since(Instant::now()));
    }
    let report = claim::claim(
        runs,
        queue,
        &runtime.settings.integration_identifier,
        window,
        actions.run_timeout,
    )
    .await;
    let value = serde_json::to_value(&report).unwrap_or(Value::Null);
    if report.succeeded() {
        Ok(value)
    } else {
        Err(ClaimFailed(format!(
            "claimer: {} queued, {} errors; first: {}",
            report.queued,
            report.errors.len(),
            report.errors[0]
        )))
    }
}

/// Time kept back from the invocation's timeout for what follows a stopped pass (the report, the metrics)
/// and for the deletions that run after the listing, each blueprint's bounded by the client timeouts.
const DEADLINE_MARGIN: Duration = Duration::from_secs(60);

/// When the pass must stop: the invocation's deadline (epoch milliseconds, from the runtime API) minus a
/// margin, or half the remaining time when that is short. `None` when the runtime gave no deadline.
fn pass_deadline(deadline_ms: u64, now: SystemTime) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let margin = DEADLINE_MARGIN.min(remaining / 2);
    Some(Instant::now() + (remaining - margin))
}

/// The report as one structured log event: its totals as top-level fields (for Logs Insights), the
/// whole report as JSON in `report`. At error level when the pass failed.
fn log_report(report: &RunReport) {
    let totals = report.totals();
    let json = serde_json::to_string(report).unwrap_or_default();
    let stopped = report
        .stopped
        .as_ref()
        .map(|s| s.describe())
        .unwrap_or_default();
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                $level,
                resync_id = %report.resync_id,
                succeeded = report.succeeded(),
                duration_s = report.duration.as_secs_f64(),
                items_read = totals.items_read,
                upserted = totals.upserted,
                unchanged = totals.unchanged,
                deleted = totals.deleted,
                errors = totals.errors,
                ado_requests = report.ado_requests,
                stopped = %stopped,
                deletion = %report.deletion.describe(),
                report = %json,
                "resync report"
            )
        };
    }
    if report.succeeded() {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::ERROR);
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
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use tokio::time::Instant;

    use shared::resync::{DeletionOutcome, KindReport, RunReport};

    use super::{pass_deadline, report_metrics};

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
            stopped: None,
            deletion: DeletionOutcome::Reconciled { blueprints: vec![] },
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

    #[tokio::test]
    async fn the_pass_stops_a_margin_before_the_invocation_deadline() {
        let now = SystemTime::now();
        let in_ms = |secs: u64| {
            (now + Duration::from_secs(secs))
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let start = Instant::now();
        let left = |d: Option<Instant>| d.unwrap().saturating_duration_since(start);
        // 15 minutes left: the pass gets all but the margin.
        let d = left(pass_deadline(in_ms(900), now));
        assert!(
            d < Duration::from_secs(841) && d > Duration::from_secs(835),
            "{d:?}"
        );
        // A short invocation keeps half of what is left.
        let d = left(pass_deadline(in_ms(60), now));
        assert!(
            d < Duration::from_secs(31) && d > Duration::from_secs(25),
            "{d:?}"
        );
        // A deadline already past stops the pass at once; none given, none set.
        assert!(left(pass_deadline(in_ms(0) - 5_000, now)) < Duration::from_secs(1));
        assert!(pass_deadline(0, now).is_none());
    }

    #[test]
    fn a_failed_pass_reads_as_a_summary_where_the_runtime_logs_it() {
        let mut failed = report(1);
        failed.kinds[1]
            .messages
            .push(shared::resync::RunError::NotStarted {
                message: "the listing broke".into(),
            });
        let text = format!("{:?}", super::ResyncFailed(failed));
        assert_eq!(
            text,
            "resync r had 2 errors; deletion: nothing stale (0 owned entities all seen); first error: repository: the listing broke"
        );
    }

    #[test]
    fn a_pass_with_errors_counts_as_a_failure() {
        let doc = report_metrics(&report(1)).to_emf(0);
        assert_eq!(doc["ResyncFailures"], 1.0);
        assert_eq!(doc["ResyncErrors"], 2.0);
    }
}
