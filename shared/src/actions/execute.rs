//! Executes one queued [`ActionJob`]: runs the Azure DevOps pipeline and records the pipeline run on
//! the catalog's action run (link, external id, a log line).
//!
//! Idempotent under redelivery. The action run is the ledger: a run that already names its pipeline
//! run, or already finished, is left alone. Before the start the run is labelled
//! [`STARTING_LABEL`]; if a job finds that label without a pipeline run, an earlier attempt died
//! between asking Azure DevOps and recording the answer, so it may have started the pipeline: it is
//! reported as a FAILURE saying so instead of risking a second run. The start itself is never repeated
//! after an uncertain outcome (a timeout, a 5xx) for the same reason.
//!
//! Azure DevOps refusing the request (project or pipeline not found, bad parameters, no permission)
//! ends the action run as a FAILURE with Azure DevOps' own message in its log; only a passing fault
//! (throttling, the catalog unreachable) is an error, so the queue delivers the job again.

use serde_json::Value;

use super::{
    ActionJob, ActionRun, ActionRuns, ProjectRef, RunPatch, STARTING_LABEL, TRIGGER_PIPELINE,
    TriggerPipeline, external_id,
};
use crate::ado::ids::segment;
use crate::ado::{AdoClient, AdoError, Guid, Request};
use crate::sync::SyncError;

/// What executing needs: the organisation and the catalog's action runs.
#[derive(Clone, Copy)]
pub struct ActionPorts<'a> {
    pub ado: &'a AdoClient,
    pub runs: &'a dyn ActionRuns,
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executed {
    /// The pipeline run was started and recorded on the action run.
    Started {
        pipeline_run: u64,
        external_id: String,
    },
    /// Nothing to do: the reason says why (already started, finished, unknown run).
    Skipped(&'static str),
    /// The action run was ended as a FAILURE with this reason.
    Failed(String),
}

pub async fn execute(ports: ActionPorts<'_>, job: &ActionJob) -> Result<Executed, SyncError> {
    let runs = ports.runs;
    let Some(run) = runs
        .run(&job.run_id)
        .await
        .map_err(|e| SyncError::catalog("reading the action run", e))?
    else {
        return Ok(Executed::Skipped(
            "the catalog does not know this action run",
        ));
    };
    if !run.in_progress() {
        return Ok(Executed::Skipped("the action run has already finished"));
    }
    if run.external_run_id.is_some() {
        return Ok(Executed::Skipped("its pipeline run was already started"));
    }
    if run.status_label.as_deref() == Some(STARTING_LABEL) {
        return fail(
            runs,
            &run,
            "An earlier attempt to start the pipeline ended before Azure DevOps confirmed it; the \
             pipeline may have started. Not starting it a second time: check the pipeline's runs in \
             Azure DevOps.",
        )
        .await;
    }
    if job.action_type != TRIGGER_PIPELINE {
        return fail(
            runs,
            &run,
            &format!(
                "Unknown action type {:?}: this integration runs {TRIGGER_PIPELINE:?}.",
                job.action_type
            ),
        )
        .await;
    }
    let inputs = match TriggerPipeline::parse(&job.inputs) {
        Ok(inputs) => inputs,
        Err(reason) => return fail(runs, &run, &format!("Invalid inputs: {reason}.")).await,
    };

    let project = match project_id(ports.ado, &inputs.project).await {
        Ok(id) => id,
        Err(AdoError::NotFound(_)) => {
            let reason = format!("Project {} was not found in Azure DevOps.", inputs.project);
            return fail(runs, &run, &reason).await;
        }
        Err(e) if e.is_transient() => return Err(SyncError::ado("looking up the project", e)),
        Err(e) => {
            let reason = format!(
                "Azure DevOps refused the project lookup: {}",
                ado_reason(&e)
            );
            return fail(runs, &run, &reason).await;
        }
    };

    mark(runs, &run, Some(STARTING_LABEL.to_owned())).await?;
    let path = format!("/{project}/_apis/pipelines/{}/runs", inputs.pipeline_id);
    let started = ports
        .ado
        .send(&Request::post_once(path, inputs.run_body()))
        .await;
    let reply = match started {
        Ok(reply) => reply,
        Err(e) if e.may_have_been_carried_out() => {
            let reason = format!(
                "Azure DevOps did not confirm the start of pipeline {} ({}); it may have started. Not \
                 starting it a second time: check the pipeline's runs in Azure DevOps.",
                inputs.pipeline_id,
                ado_reason(&e)
            );
            return fail(runs, &run, &reason).await;
        }
        Err(e) => {
            // Surely not started: the label goes, so a later attempt may start it.
            mark(runs, &run, None).await?;
            if e.is_transient() {
                return Err(SyncError::ado("starting the pipeline", e));
            }
            let reason = match &e {
                AdoError::NotFound(_) => format!(
                    "Pipeline {} was not found in project {}: {}",
                    inputs.pipeline_id,
                    inputs.project,
                    ado_reason(&e)
                ),
                AdoError::Unauthorized(_) | AdoError::Forbidden(_) => format!(
                    "Azure DevOps refused to run pipeline {} (check the credential's Build: Read & \
                     execute scope): {}",
                    inputs.pipeline_id,
                    ado_reason(&e)
                ),
                _ => format!(
                    "Azure DevOps refused to run pipeline {}: {}",
                    inputs.pipeline_id,
                    ado_reason(&e)
                ),
            };
            return fail(runs, &run, &reason).await;
        }
    };

    let Some(pipeline_run) = reply.body.get("id").and_then(Value::as_u64) else {
        let reason = "Azure DevOps started the pipeline but its answer named no run id.";
        return fail(runs, &run, reason).await;
    };
    let link = reply
        .body
        .pointer("/_links/web/href")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let external = external_id(project, inputs.pipeline_id, pipeline_run);
    let line = match &link {
        Some(link) => format!("Pipeline run {pipeline_run} started: {link}"),
        None => format!("Pipeline run {pipeline_run} started."),
    };
    runs.log(&run.id, &line)
        .await
        .map_err(|e| SyncError::catalog("logging the start", e))?;
    let mut patch = RunPatch {
        link,
        external_run_id: Some(external.clone()),
        status_label: Some(None),
        ..RunPatch::default()
    };
    if !inputs.report_status {
        // Nobody will report an outcome: the action (starting the pipeline) is what succeeded.
        patch.status = Some(super::SUCCESS);
        patch.summary = Some(format!(
            "Pipeline run {pipeline_run} started; its outcome is not reported (reportPipelineStatus is false)."
        ));
    }
    runs.patch(&run.id, &patch)
        .await
        .map_err(|e| SyncError::catalog("recording the pipeline run", e))?;
    tracing::info!(action_run = %run.id, pipeline_run, external_id = %external, "pipeline run started");
    Ok(Executed::Started {
        pipeline_run,
        external_id: external,
    })
}

/// The project's id: a GUID as it is, a name through the project GET (which takes both).
async fn project_id(ado: &AdoClient, project: &ProjectRef) -> Result<Guid, AdoError> {
    let key = match project {
        ProjectRef::Id(id) => id.to_string(),
        ProjectRef::Name(name) => segment(name.as_str()),
    };
    let reply = ado
        .send(&Request::get(format!("/_apis/projects/{key}")))
        .await?;
    reply
        .body
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| Guid::parse(id).ok())
        .ok_or_else(|| {
            AdoError::Permanent(crate::failure::Failure::new(
                "the project answer names no id",
            ))
        })
}

/// Azure DevOps' own message (from its error body), else the failure as we describe it.
pub(crate) fn ado_reason(e: &AdoError) -> String {
    e.failure()
        .and_then(|f| f.body().filter(|b| !b.is_empty()).map(str::to_owned))
        .unwrap_or_else(|| e.to_string())
}

async fn mark(
    runs: &dyn ActionRuns,
    run: &ActionRun,
    label: Option<String>,
) -> Result<(), SyncError> {
    let patch = RunPatch {
        status_label: Some(label),
        ..RunPatch::default()
    };
    runs.patch(&run.id, &patch)
        .await
        .map_err(|e| SyncError::catalog("labelling the action run", e))
}

/// Ends the run as a FAILURE: the reason in its log and its summary.
async fn fail(runs: &dyn ActionRuns, run: &ActionRun, reason: &str) -> Result<Executed, SyncError> {
    tracing::warn!(action_run = %run.id, reason, "action run failed");
    runs.log(&run.id, reason)
        .await
        .map_err(|e| SyncError::catalog("logging the failure", e))?;
    let mut patch = RunPatch::finished(false, reason);
    patch.status_label = Some(None);
    runs.patch(&run.id, &patch)
        .await
        .map_err(|e| SyncError::catalog("reporting the failure", e))?;
    Ok(Executed::Failed(reason.to_owned()))
}
