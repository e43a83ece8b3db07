//! The pull model: pending action runs of this installation are claimed from the catalog, acknowledged
//! and queued as [`ActionJob`]s, in a short loop within one scheduled invocation (the peer polls every
//! ten seconds; the schedule starts a claimer every minute). The same pass fails the runs whose
//! pipeline never completed ([`time_out`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::{Acked, ActionJob, ActionRun, ActionRuns, Invocation, TRIGGER_PIPELINE};
use crate::catalog::CatalogError;
use crate::queue::Queue;

/// Runs claimed per request; a full batch is followed by another claim at once.
pub const CLAIM_LIMIT: usize = 10;
/// How long claimed runs stay hidden from other claimers (the peer's value).
pub const VISIBILITY: Duration = Duration::from_secs(30);
/// The pause between claims that found nothing (the peer's poll interval).
pub const POLL: Duration = Duration::from_secs(10);

/// What one claimer invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClaimReport {
    pub claims: usize,
    pub queued: usize,
    /// Acknowledged by another claimer first.
    pub taken_elsewhere: usize,
    pub timed_out: usize,
    pub errors: Vec<String>,
}

impl ClaimReport {
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Claims until `window` has passed (one claim when it is zero), then times out stale runs.
pub async fn claim(
    runs: &dyn ActionRuns,
    queue: &dyn Queue,
    installation_id: &str,
    window: Duration,
    run_timeout: Duration,
) -> ClaimReport {
    let mut report = ClaimReport::default();
    let deadline = Instant::now() + window;
    loop {
        report.claims += 1;
        let batch = match runs
            .claim_pending(installation_id, CLAIM_LIMIT, VISIBILITY)
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                report.errors.push(format!("claiming pending runs: {e}"));
                break;
            }
        };
        let full = batch.len() >= CLAIM_LIMIT;
        for raw in &batch {
            take(runs, queue, raw, &mut report).await;
        }
        if full {
            continue;
        }
        if Instant::now() + POLL > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    match time_out(runs, run_timeout, Utc::now()).await {
        Ok(n) => report.timed_out = n,
        Err(e) => report.errors.push(e.to_string()),
    }
    tracing::info!(
        claims = report.claims,
        queued = report.queued,
        taken_elsewhere = report.taken_elsewhere,
        timed_out = report.timed_out,
        errors = report.errors.len(),
        "action claimer done"
    );
    report
}

/// Acknowledges one claimed run and queues it; a run that cannot be queued is failed with the reason,
/// since an acknowledged run is offered to nobody else.
async fn take(
    runs: &dyn ActionRuns,
    queue: &dyn Queue,
    raw: &serde_json::Value,
    report: &mut ClaimReport,
) {
    let Some(run) = ActionRun::from_json(raw) else {
        report
            .errors
            .push("a claimed run has no usable id; left to its visibility timeout".into());
        return;
    };
    match runs.ack(&run.id).await {
        Ok(Acked::Taken) => {}
        Ok(Acked::AlreadyTaken) => {
            report.taken_elsewhere += 1;
            return;
        }
        Err(e) => {
            report.errors.push(format!("acknowledging {}: {e}", run.id));
            return;
        }
    }
    let job = ActionJob {
        run_id: run.id.clone(),
        action_type: run
            .action_type
            .clone()
            .unwrap_or_else(|| TRIGGER_PIPELINE.to_owned()),
        inputs: run.inputs.clone(),
        via: Invocation::Claimed,
    };
    match queue.send(&job.into_message()).await {
        Ok(_) => report.queued += 1,
        Err(e) => {
            let reason = format!("The run could not be queued for execution: {e}");
            report.errors.push(match runs.fail(&run.id, &reason).await {
                Ok(()) => format!("queueing {}: {e}", run.id),
                Err(f) => format!("queueing {}: {e}; reporting it failed too: {f}", run.id),
            });
        }
    }
}

/// Fails the in-progress runs whose pipeline started more than `timeout` ago and never completed.
/// Only runs with one of our external ids: others are not ours to end.
pub async fn time_out(
    runs: &dyn ActionRuns,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<usize, CatalogError> {
    let active = runs
        .in_progress()
        .await
        .map_err(|e| e.context("listing runs in progress"))?;
    let limit = chrono::TimeDelta::from_std(timeout).unwrap_or(chrono::TimeDelta::MAX);
    let mut ended = 0;
    for run in active {
        let ours = run
            .external_run_id
            .as_deref()
            .is_some_and(|id| id.starts_with("ado_"));
        let stale = run.created_at.is_some_and(|t| now - t > limit);
        if !(ours && run.in_progress() && stale) {
            continue;
        }
        let reason = format!(
            "The pipeline run did not complete within {} hours; the action run is ended as failed.",
            timeout.as_secs_f64() / 3600.0
        );
        runs.fail(&run.id, &reason)
            .await
            .map_err(|e| e.context(format!("timing out {}", run.id)))?;
        ended += 1;
    }
    Ok(ended)
}
