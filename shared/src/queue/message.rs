//! The compact message the webhook enqueues: what the processor needs to re-read the changed resource
//! from Azure DevOps, not the delivery's whole payload (so late or reordered deliveries still end in the
//! true state, and messages stay far below SQS's size limit).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema version of [`ChangeMessage`]; bump when a change is not backwards compatible.
pub const MESSAGE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeMessage {
    pub version: u8,
    /// The delivery's event id (`id`): the same event redelivered has the same id.
    pub event_id: String,
    pub event_type: String,
    pub publisher_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    /// `resourceContainers.project.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// `resourceContainers.account.baseUrl` (or `collection.baseUrl`): the organisation it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    pub change: Change,
}

/// What changed, classified from the event type and the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Change {
    /// workitem.created / updated / commented / restored / deleted. `id` is the work item's id (for
    /// `workitem.updated` that is `resource.workItemId`, not `resource.id`, which is the update number).
    /// `snapshot` is the deleted item as the event carried it (id, rev, fields), kept only for deletes
    /// so the delete maps to the same identifier the resync produced.
    WorkItem {
        id: u64,
        deleted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Value>,
    },
    /// git.pullrequest.created / updated / merged.
    PullRequest {
        repository_id: String,
        pull_request_id: u64,
    },
    /// git.repo.created / renamed / statuschanged / deleted.
    Repository {
        repository_id: String,
        deleted: bool,
    },
    /// git.push: the repository and its ref updates (branches created, moved, deleted).
    Push {
        repository_id: String,
        ref_updates: Vec<RefUpdate>,
    },
    /// build.complete.
    Build {
        build_id: u64,
        definition_id: Option<u64>,
    },
    /// ms.vss-pipelines.* run / stage / job state changes, and pipeline checks and approvals.
    PipelineRun {
        pipeline_id: Option<u64>,
        run_id: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage_id: Option<String>,
    },
    /// ms.vss-release.release-created / abandoned.
    Release {
        release_id: u64,
        definition_id: Option<u64>,
    },
    /// ms.vss-release.deployment-started / completed.
    ReleaseDeployment {
        release_id: u64,
        definition_environment_id: Option<u64>,
        deployment_id: Option<u64>,
    },
    /// ms.vss-alerts.* (advanced security).
    SecurityAlert {
        repository_id: String,
        alert_id: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefUpdate {
    pub name: String,
    pub old_object_id: String,
    pub new_object_id: String,
}

impl ChangeMessage {
    /// The FIFO group: changes to one resource apply in order; different resources run in parallel.
    /// SQS allows 128 characters of `[A-Za-z0-9!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~]`.
    pub fn group_id(&self) -> String {
        let project = self.project_id.as_deref().unwrap_or("-");
        let g = match &self.change {
            Change::WorkItem { id, .. } => format!("wi:{id}"),
            Change::PullRequest {
                repository_id,
                pull_request_id,
            } => format!("pr:{repository_id}:{pull_request_id}"),
            Change::Repository { repository_id, .. } | Change::Push { repository_id, .. } => {
                format!("repo:{repository_id}")
            }
            Change::Build { build_id, .. } => format!("build:{project}:{build_id}"),
            Change::PipelineRun {
                pipeline_id,
                run_id,
                ..
            } => {
                format!(
                    "run:{project}:{}:{}",
                    pipeline_id.unwrap_or(0),
                    run_id.unwrap_or(0)
                )
            }
            Change::Release { release_id, .. } | Change::ReleaseDeployment { release_id, .. } => {
                format!("rel:{project}:{release_id}")
            }
            Change::SecurityAlert {
                repository_id,
                alert_id,
            } => format!("alert:{repository_id}:{alert_id}"),
        };
        sqs_safe(&g, 128)
    }

    /// The FIFO deduplication id: the event id, so redeliveries of one event collapse.
    pub fn dedup_id(&self) -> String {
        sqs_safe(&self.event_id, 128)
    }
}

fn sqs_safe(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_round_trip_as_compact_json() {
        let m = ChangeMessage {
            version: MESSAGE_VERSION,
            event_id: "e1".into(),
            event_type: "workitem.updated".into(),
            publisher_id: "tfs".into(),
            subscription_id: None,
            created_date: None,
            project_id: Some("p".into()),
            base_url: None,
            change: Change::WorkItem {
                id: 7,
                deleted: false,
                snapshot: None,
            },
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ChangeMessage>(&text).unwrap(), m);
        assert!(
            text.contains(r#""change":{"type":"work-item","id":7,"deleted":false}"#),
            "{text}"
        );
        assert_eq!(m.group_id(), "wi:7");
        assert_eq!(m.dedup_id(), "e1");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["projectId"], json!("p"));
    }

    #[test]
    fn group_and_dedup_ids_fit_sqs_rules() {
        let m = ChangeMessage {
            version: MESSAGE_VERSION,
            event_id: "x".repeat(300),
            event_type: "git.push".into(),
            publisher_id: "tfs".into(),
            subscription_id: None,
            created_date: None,
            project_id: None,
            base_url: None,
            change: Change::Push {
                repository_id: "r é".repeat(100),
                ref_updates: vec![],
            },
        };
        assert!(m.group_id().len() <= 128 && m.group_id().chars().all(|c| c.is_ascii_graphic()));
        assert_eq!(m.dedup_id().len(), 128);
    }
}
