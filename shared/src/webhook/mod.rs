//! The webhook: authenticates, validates and classifies Azure DevOps service-hook deliveries, and
//! queues the compact change for the processor. The only I/O is [`Queue::send`]. The result is a typed
//! [`WebhookOutcome`]; its HTTP answer and metrics are derived in one place ([`outcome`]).
//!
//! Only a bad credential and an impossible body are refused; everything authenticated that we cannot
//! use is acknowledged and logged, and a queue outage asks Azure DevOps to retry.

mod auth;
mod classify;
pub mod outcome;
mod settings;

use reqwest::header::HeaderMap;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::queue::{Queue, QueueError};

pub use auth::{AuthError, authenticate};
pub use classify::{
    EVENT_TYPES, Envelope, SNAPSHOT_MAX_BYTES, Unqueueable, classify, parse_delivery,
};
pub use outcome::{Rejection, RetryLater, WebhookOutcome, respond};
pub use settings::{DEFAULT_MAX_BODY_BYTES, WebhookSettings};

/// How much of an unqueueable body goes to the debug log.
const DEBUG_BODY_BYTES: usize = 4096;

/// Handles one delivery: credentials first (nothing is parsed for a stranger), then size, envelope
/// and classification, then the queue.
pub async fn accept(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookOutcome {
    match admit(settings, headers) {
        Ok(admitted) => accept_admitted(settings, queue, admitted, body).await,
        Err(refused) => refused,
    }
}

/// The path of webhook action invocations, beside the service-hook deliveries at any other path.
pub const ACTIONS_PATH: &str = "/actions";

/// Whether a request path is the action invocations' (the Function URL passes the path as it came).
pub fn is_actions_path(path: &str) -> bool {
    path.trim_end_matches('/') == ACTIONS_PATH
}

/// One request to the webhook: an action invocation at [`ACTIONS_PATH`] (signature checked,
/// [`crate::actions::push`]), a service-hook delivery anywhere else ([`accept`]).
pub async fn accept_at(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookOutcome {
    if !is_actions_path(path) {
        return accept(settings, queue, headers, body).await;
    }
    if body.len() > settings.max_body_bytes {
        return too_large(settings, body.len() as u64);
    }
    let now = chrono::Utc::now().timestamp();
    crate::actions::push::accept(settings.actions.as_deref(), queue, headers, body, now).await
}

/// Proof that a delivery's credentials passed [`admit`].
#[derive(Debug)]
pub struct Admitted(());

/// The credential check of [`accept`], on the headers alone: a server that reads the body itself runs
/// it before reading a byte of the body, so a stranger cannot make it buffer anything. `Err` is the
/// refusal [`accept`] gives.
pub fn admit(settings: &WebhookSettings, headers: &HeaderMap) -> Result<Admitted, WebhookOutcome> {
    match authenticate(settings, headers) {
        Ok(()) => Ok(Admitted(())),
        Err(e) => {
            warn!(reason = e.reason(), "webhook delivery refused: {e}");
            Err(WebhookOutcome::Rejected(Rejection::Unauthorized {
                challenge: settings.basic.is_some(),
            }))
        }
    }
}

/// The refusal [`accept`] gives to a body over `settings.max_body_bytes`; `bytes` is what is known
/// of its size (a `Content-Length`, or how much was read before the limit cut it).
pub fn too_large(settings: &WebhookSettings, bytes: u64) -> WebhookOutcome {
    warn!(
        bytes,
        limit = settings.max_body_bytes,
        "webhook delivery too large"
    );
    WebhookOutcome::Rejected(Rejection::TooLarge)
}

/// [`accept`] after [`admit`]: size, envelope and classification, then the queue.
pub async fn accept_admitted(
    settings: &WebhookSettings,
    queue: &dyn Queue,
    _admitted: Admitted,
    body: &[u8],
) -> WebhookOutcome {
    // A 4xx puts the subscription on probation, but Azure DevOps can never deliver this body
    // successfully anyway (Lambda answers 413 itself above 6 MiB), and unlike a 2xx the refusal
    // shows in the subscription's history instead of losing the event silently.
    if body.len() > settings.max_body_bytes {
        return too_large(settings, body.len() as u64);
    }

    let value: Value = match parse_delivery(body) {
        Ok(v) => v,
        Err(_) => return unqueueable(&Value::Null, body, Unqueueable::MalformedJson),
    };
    let message = match classify(&value) {
        Ok(m) => m,
        Err(e) => return unqueueable(&value, body, e),
    };

    match queue.send(&message).await {
        Ok(message_id) => {
            info!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                project_id = message.project_id.map(tracing::field::display),
                message_id = %message_id,
                "webhook delivery queued"
            );
            WebhookOutcome::Accepted {
                event_id: message.event_id,
                message_id,
            }
        }
        // Azure DevOps retries within minutes (up to 8 times), so a short outage loses nothing.
        Err(e @ QueueError::Transient(_)) => {
            warn!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                error = %e,
                "queue unavailable; asking Azure DevOps to retry"
            );
            WebhookOutcome::RetryLater(RetryLater::QueueUnavailable)
        }
        // A misconfigured queue fails every delivery alike; the answer makes that visible in the
        // subscription's history and in our error alarm.
        Err(e @ QueueError::Invalid(_)) => {
            tracing::error!(
                event_id = %message.event_id,
                event_type = %message.event_type,
                error = %e,
                "queue rejected the message"
            );
            WebhookOutcome::RetryLater(RetryLater::QueueRejected)
        }
    }
}

/// Acknowledged, recorded, not queued: refusing it would put the subscription on probation for an
/// event that will never become valid.
fn unqueueable(value: &Value, body: &[u8], why: Unqueueable) -> WebhookOutcome {
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
    let event_id = text("/id");
    warn!(
        event_id = event_id.unwrap_or("-"),
        event_type = text("/eventType").unwrap_or("-"),
        project_id = text("/resourceContainers/project/id").unwrap_or("-"),
        reason = why.reason(),
        "webhook delivery acknowledged but not queued: {why}"
    );
    debug!(
        body = %String::from_utf8_lossy(&body[..body.len().min(DEBUG_BODY_BYTES)]),
        "unqueued delivery"
    );
    WebhookOutcome::Ignored {
        event_id: event_id.map(str::to_owned),
        reason: why,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use base64::Engine;
    use reqwest::header::HeaderValue;
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::queue::memory::MemoryQueue;
    use crate::queue::{Change, ChangeMessage, RefUpdate};

    const PROJECT: &str = "be9b3917-87e6-42a4-a549-2bc06a7a878f";
    const REPO: &str = "278d5cd2-584d-4b63-824a-2ba458937249";
    const ORG: &str = "https://dev.azure.com/fabrikam/";

    fn settings() -> WebhookSettings {
        WebhookSettings {
            basic: Some(("ado".into(), SecretString::from("webhook-secret"))),
            header: None,
            allow_unauthenticated: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            actions: None,
        }
    }

    fn authorized() -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode("ado:webhook-secret");
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        h
    }

    fn sample(event_type: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../events/ado")
            .join(format!("{event_type}.json"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn classify_sample(event_type: &str) -> ChangeMessage {
        let value: Value = serde_json::from_slice(&sample(event_type)).unwrap();
        classify(&value).unwrap_or_else(|e| panic!("{event_type}: {e}"))
    }

    fn guid(s: &str) -> crate::ado::Guid {
        crate::ado::Guid::parse(s).unwrap()
    }

    fn pipeline_run(stage: Option<&str>) -> Change {
        Change::PipelineRun {
            pipeline_id: Some(1),
            run_id: Some(11),
            stage_id: stage.map(guid),
            completed: false,
        }
    }

    #[test]
    fn every_sample_delivery_classifies_to_the_expected_change() {
        let pr = Change::PullRequest {
            repository_id: guid(REPO),
            pull_request_id: 1,
        };
        let repo = |deleted| Change::Repository {
            repository_id: guid(REPO),
            deleted,
        };
        let item = Change::WorkItem {
            id: 5,
            deleted: false,
            snapshot: None,
        };
        let alert = Change::SecurityAlert {
            repository_id: guid(REPO),
            alert_id: 42,
        };
        let release = Change::Release {
            release_id: 4,
            definition_id: Some(1),
        };
        let deploy_stage = Some("2b3f5e6a-1c4d-5e8f-9a0b-3c4d5e6f7a8b");
        let build_stage = Some("6884a131-87da-5381-61f3-d7acc3b91d76");
        let table: Vec<(&str, Change)> = vec![
            (
                "git.push",
                Change::Push {
                    repository_id: guid(REPO),
                    ref_updates: vec![
                        RefUpdate {
                            name: "refs/heads/main".into(),
                            old_object_id: "aad331d8d3b131fa9ae03cf5e53965b51942618a".into(),
                            new_object_id: "33b55f7cb7e7e245323987634f960cf4a6e6bc74".into(),
                        },
                        RefUpdate {
                            name: "refs/heads/old-topic".into(),
                            old_object_id: "53d54ac915144006c2c9e90d2c7d3880920db49c".into(),
                            new_object_id: "0000000000000000000000000000000000000000".into(),
                        },
                    ],
                },
            ),
            ("git.pullrequest.created", pr.clone()),
            ("git.pullrequest.updated", pr.clone()),
            ("git.pullrequest.merged", pr),
            ("git.repo.created", repo(false)),
            ("git.repo.renamed", repo(false)),
            ("git.repo.statuschanged", repo(false)),
            ("git.repo.deleted", repo(true)),
            ("workitem.created", item.clone()),
            ("workitem.updated", item.clone()),
            ("workitem.commented", item.clone()),
            ("workitem.restored", item),
            (
                "build.complete",
                Change::Build {
                    build_id: 11,
                    definition_id: Some(1),
                },
            ),
            (
                "ms.vss-pipelines.run-state-changed-event",
                // The sample's run has completed: an action run waiting for it is told.
                Change::PipelineRun {
                    pipeline_id: Some(1),
                    run_id: Some(11),
                    stage_id: None,
                    completed: true,
                },
            ),
            (
                "ms.vss-pipelines.stage-state-changed-event",
                pipeline_run(build_stage),
            ),
            (
                "ms.vss-pipelines.job-state-changed-event",
                pipeline_run(build_stage),
            ),
            (
                "ms.vss-pipelinechecks-events.approval-pending",
                pipeline_run(deploy_stage),
            ),
            (
                "ms.vss-pipelinechecks-events.approval-completed",
                pipeline_run(deploy_stage),
            ),
            (
                "ms.vss-pipelinechecks-events.check-updated-event",
                pipeline_run(deploy_stage),
            ),
            ("ms.vss-release.release-created-event", release.clone()),
            ("ms.vss-release.release-abandoned-event", release),
            (
                "ms.vss-release.deployment-started-event",
                Change::ReleaseDeployment {
                    release_id: 4,
                    definition_environment_id: Some(1),
                    deployment_id: None,
                },
            ),
            (
                "ms.vss-release.deployment-completed-event",
                Change::ReleaseDeployment {
                    release_id: 4,
                    definition_environment_id: Some(1),
                    deployment_id: Some(21),
                },
            ),
            ("ms.vss-alerts.alert-created-event", alert.clone()),
            ("ms.vss-alerts.alert-state-changed-event", alert.clone()),
            ("ms.vss-alerts.alert-updated-event", alert),
        ];
        for (event_type, expected) in &table {
            let m = classify_sample(event_type);
            assert_eq!(&m.change, expected, "{event_type}");
            assert_eq!(m.event_type, *event_type);
            assert_eq!(m.project_id, Some(guid(PROJECT)), "{event_type}");
            assert_eq!(m.base_url.as_deref(), Some(ORG), "{event_type}");
            assert!(m.subscription_id.is_some() && m.created_date.is_some());
        }
        // Every handled type has a sample and a row, deleted work items aside (their own test).
        let mut covered: Vec<&str> = table.iter().map(|(t, _)| *t).collect();
        covered.push("workitem.deleted");
        covered.sort_unstable();
        let mut handled = EVENT_TYPES.to_vec();
        handled.sort_unstable();
        assert_eq!(covered, handled);
    }

    #[test]
    fn the_deleted_work_item_sample_keeps_its_snapshot() {
        let m = classify_sample("workitem.deleted");
        let Change::WorkItem {
            id: 5,
            deleted: true,
            snapshot: Some(snap),
        } = m.change
        else {
            panic!("{:?}", m.change);
        };
        assert_eq!(snap["id"], 5);
        assert_eq!(snap["rev"], 5);
        assert_eq!(snap["fields"]["System.TeamProject"], "Fabrikam-Fiber-Git");
        assert!(snap.get("_links").is_none());
    }

    #[test]
    fn the_work_item_update_sample_uses_work_item_id_not_the_update_number() {
        let value: Value = serde_json::from_slice(&sample("workitem.updated")).unwrap();
        assert_eq!(value["resource"]["id"], 2);
        assert!(matches!(
            classify(&value).unwrap().change,
            Change::WorkItem { id: 5, .. }
        ));
    }

    #[tokio::test]
    async fn an_authenticated_delivery_is_queued_with_a_202() {
        let queue = MemoryQueue::new();
        let out = accept(&settings(), &queue, &authorized(), &sample("git.push")).await;
        assert_eq!(
            out,
            WebhookOutcome::Accepted {
                event_id: "03c164c2-8912-4d5e-8009-3707d5f83734".into(),
                message_id: "mem-1".into()
            }
        );
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].group_id(), format!("repo:{REPO}"));
    }

    #[tokio::test]
    async fn bad_credentials_get_401_before_anything_is_parsed_or_queued() {
        let queue = MemoryQueue::new();
        let mut forged = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode("ado:forged");
        forged.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        for headers in [forged, HeaderMap::new()] {
            // Even an oversized, malformed body from a stranger gets only the 401.
            let mut s = settings();
            s.max_body_bytes = 1024;
            let out = accept(&s, &queue, &headers, &[b'{'; 4096]).await;
            assert_eq!(
                out,
                WebhookOutcome::Rejected(Rejection::Unauthorized { challenge: true })
            );
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn admit_answers_from_the_headers_alone_exactly_as_accept_does() {
        let queue = MemoryQueue::new();
        let refused = admit(&settings(), &HeaderMap::new()).unwrap_err();
        assert_eq!(
            refused,
            accept(&settings(), &queue, &HeaderMap::new(), b"").await
        );
        let admitted = admit(&settings(), &authorized()).expect("the right credentials pass");
        let out = accept_admitted(&settings(), &queue, admitted, &sample("git.push")).await;
        let other = MemoryQueue::new();
        assert_eq!(
            out,
            accept(&settings(), &other, &authorized(), &sample("git.push")).await
        );
        assert_eq!(queue.sent(), other.sent());
    }

    #[tokio::test]
    async fn unusable_authenticated_deliveries_are_acknowledged_and_not_queued() {
        let queue = MemoryQueue::new();
        let mut no_type: Value = serde_json::from_slice(&sample("workitem.updated")).unwrap();
        no_type.as_object_mut().unwrap().remove("eventType");
        let mut unknown = no_type.clone();
        unknown["eventType"] = json!("tfvc.checkin");
        let mut no_id: Value = serde_json::from_slice(&sample("workitem.updated")).unwrap();
        no_id["resource"] = json!({"id": 2});
        let cases = [
            (b"{not json".to_vec(), "malformed-json"),
            (b"[]".to_vec(), "not-an-object"),
            (
                serde_json::to_vec(&no_type).unwrap(),
                "missing-envelope-field",
            ),
            (
                serde_json::to_vec(&unknown).unwrap(),
                "unsupported-event-type",
            ),
            (serde_json::to_vec(&no_id).unwrap(), "missing-resource-id"),
        ];
        for (body, reason) in cases {
            let out = accept(&settings(), &queue, &authorized(), &body).await;
            let WebhookOutcome::Ignored { reason: why, .. } = out else {
                panic!("{reason}: {out:?}");
            };
            assert_eq!(why.reason(), reason);
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn an_oversized_body_gets_413() {
        let queue = MemoryQueue::new();
        let mut s = settings();
        s.max_body_bytes = 1024;
        let out = accept(&s, &queue, &authorized(), &sample("git.push")).await;
        assert_eq!(out, WebhookOutcome::Rejected(Rejection::TooLarge));
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn queue_failures_map_to_retryable_503_or_visible_500() {
        let queue = MemoryQueue::new();
        queue.fail(true);
        let out = accept(&settings(), &queue, &authorized(), &sample("git.push")).await;
        assert_eq!(
            out,
            WebhookOutcome::RetryLater(RetryLater::QueueUnavailable)
        );
        queue.fail(false);
        let out = accept(&settings(), &queue, &authorized(), &sample("git.push")).await;
        assert_eq!(out, WebhookOutcome::RetryLater(RetryLater::QueueRejected));
        queue.recover();
        let out = accept(&settings(), &queue, &authorized(), &sample("git.push")).await;
        assert!(matches!(out, WebhookOutcome::Accepted { .. }), "{out:?}");
    }

    #[tokio::test]
    async fn a_redelivered_event_has_the_same_dedup_id() {
        let queue = MemoryQueue::new();
        let body = sample("workitem.updated");
        let mut again: Value = serde_json::from_slice(&body).unwrap();
        // A redelivery bumps the notification counter; the event id stays.
        again["notificationId"] = json!(2);
        accept(&settings(), &queue, &authorized(), &body).await;
        accept(
            &settings(),
            &queue,
            &authorized(),
            &serde_json::to_vec(&again).unwrap(),
        )
        .await;
        let sent = queue.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].dedup_id(), sent[1].dedup_id());
        assert_eq!(sent[0].group_id(), "wi:5");
        assert_eq!(sent[0].event_id, "3ba1c96e-7e0f-4c59-9a2b-5d1e8f4a6c07");
    }

    #[tokio::test]
    async fn events_whose_ids_differ_only_in_characters_sqs_refuses_keep_distinct_dedup_ids() {
        let queue = MemoryQueue::new();
        for event_id in ["a b", "ab", "évènement", "événement"] {
            let mut body: Value = serde_json::from_slice(&sample("workitem.updated")).unwrap();
            body["id"] = json!(event_id);
            let out = accept(
                &settings(),
                &queue,
                &authorized(),
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
            assert!(
                matches!(out, WebhookOutcome::Accepted { .. }),
                "{event_id}: {out:?}"
            );
        }
        let dedup: std::collections::HashSet<String> =
            queue.sent().iter().map(ChangeMessage::dedup_id).collect();
        assert_eq!(dedup.len(), 4);
    }

    #[tokio::test]
    async fn a_delivery_with_a_hostile_id_is_acknowledged_and_not_queued() {
        let queue = MemoryQueue::new();
        let hostile = [
            ("/resourceContainers/project/id", "../../_apis/projects?"),
            (
                "/resource/repository/id",
                "278d5cd2-584d-4b63-824a-2ba458937249%2F..",
            ),
            ("/resource/pullRequestId", "1#x"),
        ];
        for (pointer, bad) in hostile {
            let mut body: Value =
                serde_json::from_slice(&sample("git.pullrequest.updated")).unwrap();
            *body.pointer_mut(pointer).unwrap() = json!(bad);
            let out = accept(
                &settings(),
                &queue,
                &authorized(),
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
            let WebhookOutcome::Ignored { reason, .. } = &out else {
                panic!("{pointer}: {out:?}");
            };
            assert_eq!(reason.reason(), "invalid-resource-id", "{pointer}");
            let detail = out.body()["detail"].as_str().unwrap().to_owned();
            assert!(!detail.contains(bad), "{detail}");
        }
        assert!(queue.sent().is_empty());
    }

    #[tokio::test]
    async fn a_build_without_a_project_is_acknowledged_and_not_queued() {
        let queue = MemoryQueue::new();
        let mut body: Value = serde_json::from_slice(&sample("build.complete")).unwrap();
        body["resourceContainers"]
            .as_object_mut()
            .unwrap()
            .remove("project");
        let out = accept(
            &settings(),
            &queue,
            &authorized(),
            &serde_json::to_vec(&body).unwrap(),
        )
        .await;
        let WebhookOutcome::Ignored { event_id, reason } = &out else {
            panic!("{out:?}");
        };
        assert_eq!(
            event_id.as_deref(),
            Some("4a5d99d6-1c75-4e53-91b9-ee80057d4ce3")
        );
        assert_eq!(reason.reason(), "missing-resource-id");
        assert_eq!(
            out.body()["detail"],
            "the resource has no usable project id"
        );
        assert!(queue.sent().is_empty());
    }
}
