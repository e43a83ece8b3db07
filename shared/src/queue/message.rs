//! The compact message the webhook enqueues: what the processor needs to re-read the changed resource
//! from Azure DevOps, not the delivery's whole payload (so late or reordered deliveries still end in the
//! true state, and messages stay far below SQS's size limit).
//!
//! Ids are typed ([`Guid`], integers): a message whose ids are not what Azure DevOps issues does not
//! deserialize, so it fails (and reaches the dead-letter queue) before any request is built from it.
//! The JSON is what it was before the ids were typed, so messages already queued are still read.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::actions::ActionJob;
use crate::ado::Guid;

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
    pub project_id: Option<Guid>,
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
        repository_id: Guid,
        pull_request_id: u64,
    },
    /// git.repo.created / renamed / statuschanged / deleted.
    Repository { repository_id: Guid, deleted: bool },
    /// git.push: the repository and its ref updates (branches created, moved, deleted).
    Push {
        repository_id: Guid,
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
        stage_id: Option<Guid>,
        /// A `run-state-changed` delivery whose run had completed: what an action run waits for.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        completed: bool,
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
    SecurityAlert { repository_id: Guid, alert_id: u64 },
    /// Not an Azure DevOps change: a catalog action run to execute (`actions`).
    Action(ActionJob),
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
    /// SQS allows 128 characters of `[A-Za-z0-9!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~]`: built from a prefix,
    /// GUIDs and integers only, the longest (`run:`, two GUID-free integers and a GUID) is 82.
    pub fn group_id(&self) -> String {
        let project = or_dash(self.project_id);
        match &self.change {
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
            } => format!(
                "run:{project}:{}:{}",
                or_dash(*pipeline_id),
                or_dash(*run_id)
            ),
            Change::Release { release_id, .. } | Change::ReleaseDeployment { release_id, .. } => {
                format!("rel:{project}:{release_id}")
            }
            Change::SecurityAlert {
                repository_id,
                alert_id,
            } => format!("alert:{repository_id}:{alert_id}"),
            // Run ids are letters, digits, `_` and `-` (at most 64): within SQS's alphabet and length.
            Change::Action(job) => format!("action:{}", job.run_id),
        }
    }

    /// The FIFO deduplication id: the SHA-256 of the event id, in hex (64 characters). Redeliveries of
    /// one event collapse; distinct events never share one, whatever characters or length their ids
    /// have (SQS accepts a send whose deduplication id it has seen within 5 minutes as a success, and
    /// drops the message).
    pub fn dedup_id(&self) -> String {
        Sha256::digest(self.event_id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROJECT: &str = "be9b3917-87e6-42a4-a549-2bc06a7a878f";
    const REPO: &str = "278d5cd2-584d-4b63-824a-2ba458937249";

    fn guid(s: &str) -> Guid {
        Guid::parse(s).unwrap()
    }

    fn message(event_id: &str, change: Change) -> ChangeMessage {
        ChangeMessage {
            version: MESSAGE_VERSION,
            event_id: event_id.into(),
            event_type: "workitem.updated".into(),
            publisher_id: "tfs".into(),
            subscription_id: None,
            created_date: None,
            project_id: Some(guid(PROJECT)),
            base_url: None,
            change,
        }
    }

    fn work_item(id: u64) -> Change {
        Change::WorkItem {
            id,
            deleted: false,
            snapshot: None,
        }
    }

    #[test]
    fn messages_round_trip_as_compact_json() {
        let m = message("e1", work_item(7));
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ChangeMessage>(&text).unwrap(), m);
        assert!(
            text.contains(r#""change":{"type":"work-item","id":7,"deleted":false}"#),
            "{text}"
        );
        assert_eq!(m.group_id(), "wi:7");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["projectId"], json!(PROJECT));
    }

    #[test]
    fn a_message_queued_before_ids_were_typed_is_still_read() {
        // Verbatim bodies as the previous build queued them.
        let pushed = r#"{"version":1,"eventId":"03c164c2-8912-4d5e-8009-3707d5f83734","eventType":"git.push","publisherId":"tfs","projectId":"BE9B3917-87E6-42A4-A549-2BC06A7A878F","change":{"type":"push","repository_id":"278d5cd2-584d-4b63-824a-2ba458937249","ref_updates":[{"name":"refs/heads/main","oldObjectId":"aad331d8d3b131fa9ae03cf5e53965b51942618a","newObjectId":"33b55f7cb7e7e245323987634f960cf4a6e6bc74"}]}}"#;
        let m: ChangeMessage = serde_json::from_str(pushed).unwrap();
        assert_eq!(m.project_id, Some(guid(PROJECT)));
        assert!(
            matches!(&m.change, Change::Push { repository_id, ref_updates }
            if *repository_id == guid(REPO) && ref_updates.len() == 1)
        );
        let staged = r#"{"version":1,"eventId":"e","eventType":"ms.vss-pipelines.stage-state-changed-event","publisherId":"pipelines","change":{"type":"pipeline-run","pipeline_id":1,"run_id":11,"stage_id":"6884a131-87da-5381-61f3-d7acc3b91d76"}}"#;
        let m: ChangeMessage = serde_json::from_str(staged).unwrap();
        assert_eq!(m.project_id, None);
        assert_eq!(m.group_id(), "run:-:1:11");
    }

    #[test]
    fn a_queued_message_with_a_hostile_id_is_refused_with_the_reason() {
        for (field, body) in [
            (
                "projectId",
                json!({"version": 1, "eventId": "e", "eventType": "workitem.updated", "publisherId": "tfs",
                       "projectId": "../../_apis/projects?", "change": {"type": "work-item", "id": 5, "deleted": false}}),
            ),
            (
                "repository_id",
                json!({"version": 1, "eventId": "e", "eventType": "git.repo.created", "publisherId": "tfs",
                       "change": {"type": "repository", "repository_id": "r%2F..%2Fx", "deleted": false}}),
            ),
            (
                "stage_id",
                json!({"version": 1, "eventId": "e", "eventType": "x", "publisherId": "pipelines",
                       "change": {"type": "pipeline-run", "pipeline_id": 1, "run_id": 2, "stage_id": "s#1"}}),
            ),
            (
                "id",
                json!({"version": 1, "eventId": "e", "eventType": "workitem.updated", "publisherId": "tfs",
                       "change": {"type": "work-item", "id": "5/../6", "deleted": false}}),
            ),
        ] {
            let e = serde_json::from_value::<ChangeMessage>(body)
                .unwrap_err()
                .to_string();
            assert!(!e.is_empty(), "{field}");
            if field != "id" {
                assert!(e.contains("is not a GUID"), "{field}: {e}");
            }
        }
    }

    #[test]
    fn distinct_event_ids_get_distinct_dedup_ids_and_one_event_always_the_same() {
        let dedup = |id: &str| message(id, work_item(1)).dedup_id();
        let long = "x".repeat(300);
        let longer = "x".repeat(301);
        let ids = [
            "a b",
            "ab",
            "a\tb",
            "é",
            "e\u{301}",
            "日本",
            "日本語",
            "",
            " ",
            &long,
            &longer,
        ];
        let all: std::collections::HashSet<String> = ids.iter().map(|id| dedup(id)).collect();
        assert_eq!(all.len(), ids.len());
        for id in ids {
            let d = dedup(id);
            assert_eq!(d, dedup(id));
            assert_eq!(d.len(), 64);
            assert!(
                d.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{d}"
            );
        }
        // The known SHA-256 of "abc", so the id is stable across builds.
        assert_eq!(
            dedup("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn group_ids_fit_sqs_rules_at_their_longest() {
        let repo = guid(REPO);
        let max = u64::MAX;
        let changes = [
            work_item(max),
            Change::PullRequest {
                repository_id: repo,
                pull_request_id: max,
            },
            Change::Push {
                repository_id: repo,
                ref_updates: vec![],
            },
            Change::Build {
                build_id: max,
                definition_id: Some(max),
            },
            Change::PipelineRun {
                pipeline_id: Some(max),
                run_id: Some(max),
                stage_id: Some(repo),
                completed: true,
            },
            Change::Release {
                release_id: max,
                definition_id: None,
            },
            Change::SecurityAlert {
                repository_id: repo,
                alert_id: max,
            },
        ];
        for change in changes {
            let g = message("e", change).group_id();
            assert!(g.len() <= 128, "{g}");
            assert!(g.chars().all(|c| c.is_ascii_graphic()), "{g}");
        }
    }

    #[test]
    fn group_ids_separate_resources() {
        let run = |p, r| {
            message(
                "e",
                Change::PipelineRun {
                    pipeline_id: p,
                    run_id: r,
                    stage_id: None,
                    completed: false,
                },
            )
            .group_id()
        };
        assert_ne!(run(Some(1), None), run(None, Some(1)));
        assert_ne!(run(Some(1), Some(12)), run(Some(11), Some(2)));
        let mut other = message(
            "e",
            Change::Build {
                build_id: 1,
                definition_id: None,
            },
        );
        let first = other.group_id();
        other.project_id = Some(guid(REPO));
        assert_ne!(other.group_id(), first);
    }
}
