//! Reports a pipeline run's outcome to the action run that started it, once: on the
//! `run-state-changed` delivery of a completed run, the action run is found by its external id and,
//! while still in progress and unless its inputs said `reportPipelineStatus: false`, ends as SUCCESS
//! (the run succeeded) or FAILURE (failed, canceled, anything else), with a log line saying which. The
//! result is read back from Azure DevOps, never taken from the delivery.

use serde_json::Value;

use super::execute::ActionPorts;
use super::{RunPatch, external_id};
use crate::ado::{Guid, Request};
use crate::sync::SyncError;

/// What a completed pipeline run meant for the action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completed {
    /// No action run started this pipeline run.
    NotAnActionRun,
    /// The action run had already finished (reported before, failed, timed out): reported once only.
    AlreadyFinished,
    /// Its inputs asked not to report the outcome.
    NotReported,
    /// Azure DevOps does not show the run completed (yet): a later delivery reports it.
    StillRunning,
    /// The outcome was reported; `success` is the status given.
    Reported { success: bool },
}

pub async fn complete(
    ports: ActionPorts<'_>,
    project: Guid,
    pipeline_id: u64,
    run_id: u64,
) -> Result<Completed, SyncError> {
    let external = external_id(project, pipeline_id, run_id);
    let Some(action) = ports
        .runs
        .find_by_external_id(&external)
        .await
        .map_err(|e| SyncError::catalog("finding the action run", e))?
    else {
        return Ok(Completed::NotAnActionRun);
    };
    if !action.in_progress() {
        return Ok(Completed::AlreadyFinished);
    }
    if !action.reports_status() {
        return Ok(Completed::NotReported);
    }
    let path = format!("/{project}/_apis/pipelines/{pipeline_id}/runs/{run_id}");
    let run = ports
        .ado
        .send(&Request::get(path))
        .await
        .map_err(|e| SyncError::ado("reading the pipeline run", e))?
        .body;
    if run.get("state").and_then(Value::as_str) != Some("completed") {
        return Ok(Completed::StillRunning);
    }
    let result = run
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let success = result == "succeeded";
    let line = match result {
        "succeeded" => format!("Pipeline run {run_id} succeeded."),
        "failed" => format!("Pipeline run {run_id} failed."),
        "canceled" => format!("Pipeline run {run_id} was canceled before it finished."),
        other => format!("Pipeline run {run_id} completed with result {other:?}."),
    };
    ports
        .runs
        .log(&action.id, &line)
        .await
        .map_err(|e| SyncError::catalog("logging the outcome", e))?;
    ports
        .runs
        .patch(&action.id, &RunPatch::finished(success, &line))
        .await
        .map_err(|e| SyncError::catalog("reporting the outcome", e))?;
    tracing::info!(action_run = %action.id, external_id = %external, result, "pipeline outcome reported");
    Ok(Completed::Reported { success })
}
