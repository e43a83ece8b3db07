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
    runs.fail(&run.id, reason)
        .await
        .map_err(|e| SyncError::catalog("reporting the failure", e))?;
    Ok(Executed::Failed(reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::actions::{Acked, Invocation, RunId};
    use crate::ado::{AdoClientConfig, OrgUrl};
    use crate::catalog::CatalogError;

    /// One action run in memory, recording what the executor wrote to it.
    struct OneRun {
        run: ActionRun,
        logs: Mutex<Vec<String>>,
        patches: Mutex<Vec<RunPatch>>,
    }

    #[async_trait]
    impl ActionRuns for OneRun {
        async fn claim_pending(
            &self,
            _: &str,
            _: usize,
            _: Duration,
        ) -> Result<Vec<Value>, CatalogError> {
            Ok(Vec::new())
        }
        async fn ack(&self, _: &RunId) -> Result<Acked, CatalogError> {
            Ok(Acked::Taken)
        }
        async fn run(&self, id: &RunId) -> Result<Option<ActionRun>, CatalogError> {
            Ok((*id == self.run.id).then(|| self.run.clone()))
        }
        async fn find_by_external_id(&self, _: &str) -> Result<Option<ActionRun>, CatalogError> {
            Ok(None)
        }
        async fn in_progress(&self) -> Result<Vec<ActionRun>, CatalogError> {
            Ok(Vec::new())
        }
        async fn log(&self, _: &RunId, message: &str) -> Result<(), CatalogError> {
            self.logs.lock().unwrap().push(message.to_owned());
            Ok(())
        }
        async fn patch(&self, _: &RunId, patch: &RunPatch) -> Result<(), CatalogError> {
            self.patches.lock().unwrap().push(patch.clone());
            Ok(())
        }
    }

    fn run(status: &str, label: Option<&str>, external: Option<&str>) -> OneRun {
        OneRun {
            run: ActionRun {
                id: RunId::parse("r_1").unwrap(),
                status: status.into(),
                status_label: label.map(str::to_owned),
                external_run_id: external.map(str::to_owned),
                inputs: json!({}),
                action_type: None,
                created_at: None,
            },
            logs: Mutex::default(),
            patches: Mutex::default(),
        }
    }

    /// Nothing listens there: a test that reaches Azure DevOps fails.
    fn unreachable_ado() -> AdoClient {
        let mut cfg = AdoClientConfig::new(
            OrgUrl::parse("http://127.0.0.1:9/org").unwrap(),
            SecretString::from("pat".to_owned()),
        );
        cfg.max_retries = 0;
        AdoClient::new(cfg).unwrap()
    }

    fn job(action_type: &str) -> ActionJob {
        ActionJob {
            run_id: RunId::parse("r_1").unwrap(),
            action_type: action_type.into(),
            inputs: json!({"project": "p", "pipelineId": 1}),
            via: Invocation::Claimed,
        }
    }

    async fn execute_on(runs: &OneRun, job: &ActionJob) -> (Executed, u64) {
        let ado = unreachable_ado();
        let ports = ActionPorts { ado: &ado, runs };
        let executed = execute(ports, job).await.unwrap();
        (executed, ado.requests_made())
    }

    #[tokio::test]
    async fn a_run_already_started_or_finished_is_left_alone() {
        for runs in [
            run("IN_PROGRESS", None, Some("ado_x_1_2")),
            run("SUCCESS", None, None),
        ] {
            let (executed, requests) = execute_on(&runs, &job(TRIGGER_PIPELINE)).await;
            assert!(matches!(executed, Executed::Skipped(_)), "{executed:?}");
            assert_eq!(requests, 0);
            assert!(runs.patches.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_start_left_unconfirmed_is_reported_not_repeated() {
        let runs = run("IN_PROGRESS", Some(STARTING_LABEL), None);
        let (executed, requests) = execute_on(&runs, &job(TRIGGER_PIPELINE)).await;
        assert!(
            matches!(&executed, Executed::Failed(r) if r.contains("may have started")),
            "{executed:?}"
        );
        assert_eq!(requests, 0, "Azure DevOps is not asked again");
        let patches = runs.patches.lock().unwrap();
        assert_eq!(patches.last().unwrap().status, Some(super::super::FAILURE));
    }

    #[tokio::test]
    async fn an_unknown_action_type_fails_the_run_with_its_name() {
        let runs = run("IN_PROGRESS", None, None);
        let (executed, requests) = execute_on(&runs, &job("delete_everything")).await;
        assert!(matches!(&executed, Executed::Failed(r) if r.contains("delete_everything")));
        assert_eq!(requests, 0);
        assert!(runs.logs.lock().unwrap()[0].contains("delete_everything"));
    }
}
