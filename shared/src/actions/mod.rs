//! Self-service actions: the catalog asks us to run an Azure DevOps pipeline and we report its outcome
//! back to the catalog's action run. Both of the catalog's invocation models end in the same queued
//! [`ActionJob`]: a signed webhook invocation ([`push`], `POST /actions`) and pending runs claimed on a
//! schedule ([`claim`], the pull model the peer uses). The processor executes the job ([`execute`]);
//! the pipeline's `run-state-changed` service hook reports the outcome ([`complete`]), and the claimer
//! fails runs that never complete.
//!
//! The catalog's action run is the record of what was done: its `externalRunId`
//! (`ado_{projectId}_{pipelineId}_{runId}`, the peer's form) maps it to the pipeline run, so a job
//! delivered twice never starts a second run, and completion finds the action run by it.

pub mod claim;
pub mod complete;
pub mod execute;
pub mod push;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ado::{Guid, InvalidId, ProjectName};
use crate::catalog::CatalogError;
use crate::queue::message::MESSAGE_VERSION;
use crate::queue::{Change, ChangeMessage};

/// The one action type this integration executes (the peer's `integrationActionType`).
pub const TRIGGER_PIPELINE: &str = "trigger_pipeline";

/// The run statuses the catalog knows.
pub const IN_PROGRESS: &str = "IN_PROGRESS";
pub const SUCCESS: &str = "SUCCESS";
pub const FAILURE: &str = "FAILURE";

/// The `statusLabel` an action run carries while its pipeline start is in flight: a job that finds it
/// on redelivery cannot know whether the first attempt started the pipeline, so it does not start
/// another (see [`execute`]).
pub const STARTING_LABEL: &str = "Starting the Azure DevOps pipeline";

/// An action run id as the catalog issues them (`r_…`). It goes into catalog URLs and the FIFO group
/// id, so only letters, digits, `_` and `-` are taken.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an action run id (1 to 64 letters, digits, '_' or '-')")]
pub struct InvalidRunId(String);

impl RunId {
    pub fn parse(s: &str) -> Result<Self, InvalidRunId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidRunId(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidRunId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(r: RunId) -> Self {
        r.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

/// How a job reached the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invocation {
    /// A signed webhook invocation (`POST /actions`).
    Webhook,
    /// A pending run claimed from the catalog.
    Claimed,
}

/// One action run to execute: what both invocation models queue. The inputs are kept as the catalog
/// sent them and checked by the executor, so a bad input ends as a FAILURE on the run with its reason
/// instead of a message nobody reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionJob {
    pub run_id: RunId,
    /// `integrationActionType`.
    pub action_type: String,
    pub inputs: Value,
    pub via: Invocation,
}

impl ActionJob {
    /// The queue message: grouped by run (one run's jobs in order, other runs in parallel) and
    /// deduplicated by run, so the same invocation pushed or claimed twice within SQS's five-minute
    /// window is one message.
    pub fn into_message(self) -> ChangeMessage {
        ChangeMessage {
            version: MESSAGE_VERSION,
            event_id: format!("action-run:{}", self.run_id),
            event_type: "port.action-run".to_owned(),
            publisher_id: "port".to_owned(),
            subscription_id: None,
            created_date: Some(Utc::now().to_rfc3339()),
            project_id: None,
            base_url: None,
            change: Change::Action(self),
        }
    }
}

/// The external id the peer gives a pipeline run: `ado_{projectId}_{pipelineId}_{runId}`.
pub fn external_id(project: Guid, pipeline_id: u64, run_id: u64) -> String {
    format!("ado_{project}_{pipeline_id}_{run_id}")
}

/// The `trigger_pipeline` inputs, parsed: "parse, don't validate" before anything reaches Azure DevOps.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerPipeline {
    pub project: ProjectRef,
    pub pipeline_id: u64,
    /// `refs/heads/<name>` for a bare branch name.
    pub ref_name: Option<String>,
    pub report_status: bool,
    pub template_parameters: Option<Map<String, Value>>,
    /// Each value `{"value": v}` unless it already is an object with a `value` (so `isSecret` passes).
    pub variables: Option<Map<String, Value>>,
}

/// Why a `trigger_pipeline` input cannot be used; shown in the action run's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("the action's inputs are not an object")]
    NotAnObject,
    #[error("input {0} is required")]
    Missing(&'static str),
    #[error("input {input} must be {expected}")]
    Wrong {
        input: &'static str,
        expected: &'static str,
    },
    #[error("input project: {0} or a project id")]
    ProjectName(#[source] InvalidId),
}

/// A project named by id or by name (both work in the project GET).
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectRef {
    Id(Guid),
    Name(ProjectName),
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectRef::Id(g) => g.fmt(f),
            ProjectRef::Name(n) => n.fmt(f),
        }
    }
}

impl TriggerPipeline {
    /// Reads the inputs; the error's text is the sentence the run's log shows.
    pub fn parse(inputs: &Value) -> Result<Self, InvalidInput> {
        let obj = inputs.as_object().ok_or(InvalidInput::NotAnObject)?;
        let wrong = |input, expected| InvalidInput::Wrong { input, expected };
        let project = match obj.get("project") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let s = s.trim();
                match Guid::parse(s) {
                    Ok(g) => ProjectRef::Id(g),
                    Err(_) => {
                        ProjectRef::Name(ProjectName::parse(s).map_err(InvalidInput::ProjectName)?)
                    }
                }
            }
            Some(_) => return Err(wrong("project", "a project name or id")),
            None => return Err(InvalidInput::Missing("project")),
        };
        let pipeline_id = match obj.get("pipelineId") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            None => return Err(InvalidInput::Missing("pipelineId")),
            _ => None,
        }
        .filter(|id| *id > 0)
        .ok_or(wrong("pipelineId", "a positive whole number"))?;
        let ref_name = match obj.get("branch") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) if s.trim().starts_with("refs/") => Some(s.trim().to_owned()),
            Some(Value::String(s)) => Some(format!("refs/heads/{}", s.trim())),
            Some(_) => return Err(wrong("branch", "a branch name")),
        };
        let report_status = match obj.get("reportPipelineStatus") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(wrong("reportPipelineStatus", "true or false")),
        };
        let object = |name: &'static str| match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(wrong(name, "an object")),
        };
        let template_parameters = object("templateParameters")?;
        let variables = object("variables")?.map(|vars| {
            vars.into_iter()
                .map(|(k, v)| match v {
                    Value::Object(ref m) if m.contains_key("value") => (k, v),
                    v => (k, json!({ "value": v })),
                })
                .collect()
        });
        Ok(Self {
            project,
            pipeline_id,
            ref_name,
            report_status,
            template_parameters,
            variables,
        })
    }

    /// The Runs - Run Pipeline body.
    pub fn run_body(&self) -> Value {
        let mut body = Map::new();
        if let Some(r) = &self.ref_name {
            body.insert(
                "resources".into(),
                json!({"repositories": {"self": {"refName": r}}}),
            );
        }
        if let Some(p) = &self.template_parameters {
            body.insert("templateParameters".into(), Value::Object(p.clone()));
        }
        if let Some(v) = &self.variables {
            body.insert("variables".into(), Value::Object(v.clone()));
        }
        Value::Object(body)
    }
}

/// An action run as the catalog shows it: only what executing and reporting need.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRun {
    pub id: RunId,
    pub status: String,
    pub status_label: Option<String>,
    pub external_run_id: Option<String>,
    /// The integration action's execution properties, else the run's `properties` (the inputs).
    pub inputs: Value,
    pub action_type: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl ActionRun {
    /// Reads the catalog's run JSON; `None` when it has no usable id.
    pub fn from_json(run: &Value) -> Option<Self> {
        let text = |p: &str| run.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let inputs = run
            .pointer("/payload/integrationActionExecutionProperties")
            .or_else(|| run.get("properties"))
            .cloned()
            .unwrap_or(Value::Null);
        Some(Self {
            id: RunId::parse(run.get("id")?.as_str()?).ok()?,
            status: text("/status").unwrap_or_default(),
            status_label: text("/statusLabel"),
            external_run_id: text("/externalRunId"),
            inputs,
            action_type: text("/payload/integrationActionType"),
            created_at: text("/createdAt")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }

    pub fn in_progress(&self) -> bool {
        self.status == IN_PROGRESS
    }

    /// `reportPipelineStatus` from the run's own inputs (default true).
    pub fn reports_status(&self) -> bool {
        self.inputs
            .get("reportPipelineStatus")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
}

/// A change to an action run (`PATCH /v1/actions/runs/{id}`); unset fields are left alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// `Some(None)` clears it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_label: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl RunPatch {
    pub fn finished(success: bool, summary: impl Into<String>) -> Self {
        Self {
            status: Some(if success { SUCCESS } else { FAILURE }),
            summary: Some(summary.into()),
            ..Self::default()
        }
    }
}

/// What acknowledging a claimed run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// It is ours now.
    Taken,
    /// Another claimer acknowledged it first (409).
    AlreadyTaken,
}

/// The catalog's action-run API: the port the action use cases take; the Port API client implements
/// it.
#[async_trait]
pub trait ActionRuns: Send + Sync {
    /// Pending integration-action runs of this installation, hidden from other claimers for
    /// `visibility`.
    async fn claim_pending(
        &self,
        installation_id: &str,
        limit: usize,
        visibility: Duration,
    ) -> Result<Vec<Value>, CatalogError>;
    async fn ack(&self, run: &RunId) -> Result<Acked, CatalogError>;
    /// `None` when the catalog does not know it.
    async fn run(&self, run: &RunId) -> Result<Option<ActionRun>, CatalogError>;
    async fn find_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<ActionRun>, CatalogError>;
    /// Runs still in progress (for the timeout sweep).
    async fn in_progress(&self) -> Result<Vec<ActionRun>, CatalogError>;
    async fn log(&self, run: &RunId, message: &str) -> Result<(), CatalogError>;
    async fn patch(&self, run: &RunId, patch: &RunPatch) -> Result<(), CatalogError>;

    /// Ends the run as a FAILURE: the reason in its log and its summary, its label cleared.
    async fn fail(&self, run: &RunId, reason: &str) -> Result<(), CatalogError> {
        self.log(run, reason).await?;
        let mut patch = RunPatch::finished(false, reason);
        patch.status_label = Some(None);
        self.patch(run, &patch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_letters_digits_underscores_and_hyphens_only() {
        assert!(RunId::parse("r_QhYdX3lQ0b8kLr2A").is_ok());
        for bad in ["", "r/../x", "r?x=1", "r x", &"a".repeat(65)] {
            assert!(RunId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_value::<RunId>(json!("../admin")).is_err());
    }

    #[test]
    fn inputs_become_the_run_pipeline_body_the_peer_sends() {
        let t = TriggerPipeline::parse(&json!({
            "project": "Fabrikam Web",
            "pipelineId": "12",
            "branch": "release/1.0",
            "templateParameters": {"environment": "prod"},
            "variables": {"plain": "x", "secret": {"value": "y", "isSecret": true}, "n": 3}
        }))
        .unwrap();
        assert_eq!(
            t.project,
            ProjectRef::Name(ProjectName::parse("Fabrikam Web").unwrap())
        );
        assert_eq!(t.pipeline_id, 12);
        assert!(t.report_status);
        assert_eq!(
            t.run_body(),
            json!({
                "resources": {"repositories": {"self": {"refName": "refs/heads/release/1.0"}}},
                "templateParameters": {"environment": "prod"},
                "variables": {"plain": {"value": "x"}, "secret": {"value": "y", "isSecret": true}, "n": {"value": 3}}
            })
        );
        let t = TriggerPipeline::parse(&json!({
            "project": "be9b3917-87e6-42a4-a549-2bc06a7a878f", "pipelineId": 4,
            "branch": "refs/tags/v1", "reportPipelineStatus": false
        }))
        .unwrap();
        assert!(matches!(t.project, ProjectRef::Id(_)));
        assert!(!t.report_status);
        assert_eq!(
            t.run_body(),
            json!({"resources": {"repositories": {"self": {"refName": "refs/tags/v1"}}}})
        );
    }

    #[test]
    fn bad_inputs_are_refused_with_the_input_named() {
        for (inputs, named) in [
            (json!({"pipelineId": 1}), "project is required"),
            (json!({"project": "a/b", "pipelineId": 1}), "input project"),
            (json!({"project": "p"}), "pipelineId is required"),
            (json!({"project": "p", "pipelineId": "x"}), "pipelineId"),
            (json!({"project": "p", "pipelineId": 0}), "pipelineId"),
            (
                json!({"project": "p", "pipelineId": 1, "variables": [1]}),
                "variables",
            ),
            (
                json!({"project": "p", "pipelineId": 1, "reportPipelineStatus": "no"}),
                "reportPipelineStatus",
            ),
            (json!("p"), "not an object"),
        ] {
            let e = TriggerPipeline::parse(&inputs).unwrap_err().to_string();
            assert!(e.contains(named), "{inputs}: {e}");
        }
    }

    #[test]
    fn a_run_reads_its_inputs_from_the_integration_payload_first() {
        let run = ActionRun::from_json(&json!({
            "id": "r_1", "status": "IN_PROGRESS", "externalRunId": null,
            "properties": {"project": "ignored"},
            "payload": {"integrationActionType": "trigger_pipeline",
                        "integrationActionExecutionProperties": {"project": "p", "reportPipelineStatus": false}},
            "createdAt": "2026-12-05T10:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(run.inputs["project"], "p");
        assert!(!run.reports_status());
        assert!(run.in_progress());
        assert_eq!(run.action_type.as_deref(), Some(TRIGGER_PIPELINE));
        assert!(run.created_at.is_some());
        assert!(ActionRun::from_json(&json!({"id": "bad id"})).is_none());
    }

    #[test]
    fn a_job_is_one_message_per_run_grouped_and_deduplicated_by_run() {
        let job = ActionJob {
            run_id: RunId::parse("r_abc").unwrap(),
            action_type: TRIGGER_PIPELINE.into(),
            inputs: json!({"project": "p", "pipelineId": 1}),
            via: Invocation::Claimed,
        };
        let m = job.clone().into_message();
        let again = job.into_message();
        assert_eq!(m.group_id(), "action:r_abc");
        assert_eq!(m.dedup_id(), again.dedup_id());
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ChangeMessage>(&text).unwrap(), m);
    }
}
