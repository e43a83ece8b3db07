//! Parses a delivery's envelope and classifies it into the compact [`ChangeMessage`] the processor
//! re-reads Azure DevOps from. Pure: no I/O.
//!
//! Every id is parsed here as Azure DevOps issues it ([`Guid`] or a positive integer): the processor
//! builds request paths from them with its PAT. An id that is there but malformed refuses the delivery
//! (it never falls back to another field), and so does an event the processor could not use.

use serde_json::{Map, Value};

use std::sync::LazyLock;

use crate::ado::Guid;
use crate::ado::kinds::live::{self, Unnamed, at};
use crate::ado::kinds::{self, work_item_project_name};
use crate::queue::message::MESSAGE_VERSION;
use crate::queue::{Change, ChangeMessage};

pub use crate::ado::kinds::SNAPSHOT_MAX_BYTES;

/// Every event type the webhook queues: the events the kinds of the registry follow.
pub static EVENT_TYPES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    kinds::live_events()
        .iter()
        .map(|e| e.spec.event_type)
        .collect()
});

/// The envelope keys anything downstream reads ([`Envelope::parse`] and the logs). The rest of a
/// delivery (`message` and `detailedMessage` in three formats, `resourceVersion`, ...) is skipped while
/// parsing instead of being built into a tree nobody reads.
const ENVELOPE_KEYS: [&str; 7] = [
    "id",
    "eventType",
    "publisherId",
    "resource",
    "resourceContainers",
    "subscriptionId",
    "createdDate",
];

/// Parses a delivery body, keeping only the [`ENVELOPE_KEYS`] of a top-level object. A body that is
/// JSON but not an object parses whole (so [`classify`] says why it is refused); invalid JSON is an error.
pub fn parse_delivery(body: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice::<EnvelopeObject>(body) {
        Ok(EnvelopeObject(map)) => Ok(Value::Object(map)),
        Err(e) if e.is_data() => serde_json::from_slice(body),
        Err(e) => Err(e),
    }
}

struct EnvelopeObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for EnvelopeObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor).map(EnvelopeObject)
    }
}

struct EnvelopeVisitor;

impl<'de> serde::de::Visitor<'de> for EnvelopeVisitor {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if ENVELOPE_KEYS.contains(&key.as_str()) {
                // A repeated key keeps its last value, as a full parse would.
                out.insert(key, map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// Why an authenticated delivery is acknowledged without being queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unqueueable {
    #[error("the body is not JSON")]
    MalformedJson,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the envelope has no usable `{0}`")]
    MissingEnvelopeField(&'static str),
    #[error("event type is not one we handle")]
    UnsupportedEventType,
    /// The event lacks an id the processor needs; usually a subscription created with
    /// `resourceDetailsToSend` other than `all`.
    #[error("the resource has no usable {0}")]
    MissingResourceId(&'static str),
    /// An id is there but is not one Azure DevOps issues (a GUID or a positive integer): the delivery
    /// was not written by Azure DevOps, and its ids must not reach a request path.
    #[error("the {0} is not an id Azure DevOps issues")]
    InvalidResourceId(&'static str),
}

impl Unqueueable {
    /// A short stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed-json",
            Self::NotAnObject => "not-an-object",
            Self::MissingEnvelopeField(_) => "missing-envelope-field",
            Self::UnsupportedEventType => "unsupported-event-type",
            Self::MissingResourceId(_) => "missing-resource-id",
            Self::InvalidResourceId(_) => "invalid-resource-id",
        }
    }
}

/// The envelope fields every delivery must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub publisher_id: &'a str,
    /// A JSON object.
    pub resource: &'a Value,
    /// A JSON object.
    pub containers: &'a Value,
    pub subscription_id: Option<&'a str>,
    pub created_date: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    pub fn parse(body: &'a Value) -> Result<Self, Unqueueable> {
        let obj = body.as_object().ok_or(Unqueueable::NotAnObject)?;
        let text = |k: &'static str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or(Unqueueable::MissingEnvelopeField(k))
        };
        let object = |k: &'static str| {
            obj.get(k)
                .filter(|v| v.is_object())
                .ok_or(Unqueueable::MissingEnvelopeField(k))
        };
        Ok(Self {
            id: text("id")?,
            event_type: text("eventType")?,
            publisher_id: text("publisherId")?,
            resource: object("resource")?,
            containers: object("resourceContainers")?,
            subscription_id: text("subscriptionId").ok(),
            created_date: text("createdDate").ok(),
        })
    }

    /// `resourceContainers.project.id`; release and check events may carry it only in the resource.
    pub fn project_id(&self) -> Result<Option<Guid>, Unqueueable> {
        let r = self.resource;
        Ok(live::first_guid(
            [
                at(self.containers, &["project", "id"]),
                at(r, &["project", "id"]),
                at(r, &["projectId"]),
                at(r, &["repository", "project", "id"]),
            ],
            "project id",
        )?)
    }

    /// The organisation (or collection) the event came from.
    pub fn base_url(&self) -> Option<String> {
        ["account", "collection"].iter().find_map(|c| {
            at(self.containers, &[c, "baseUrl"])
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
    }
}

/// Classifies a parsed delivery body.
pub fn classify(body: &Value) -> Result<ChangeMessage, Unqueueable> {
    let envelope = Envelope::parse(body)?;
    let change = change(envelope.event_type, envelope.resource)?;
    let project_id = envelope.project_id()?;
    if project_id.is_none() {
        readable_without_project(&change)?;
    }
    Ok(ChangeMessage {
        version: MESSAGE_VERSION,
        event_id: envelope.id.to_owned(),
        event_type: envelope.event_type.to_owned(),
        publisher_id: envelope.publisher_id.to_owned(),
        subscription_id: envelope.subscription_id.map(str::to_owned),
        created_date: envelope.created_date.map(str::to_owned),
        project_id,
        base_url: envelope.base_url(),
        change,
    })
}

/// How the event's kind names the changed item.
fn change(event_type: &str, r: &Value) -> Result<Change, Unqueueable> {
    let event = kinds::live_event(event_type).ok_or(Unqueueable::UnsupportedEventType)?;
    Ok((event.name)(r)?)
}

impl From<Unnamed> for Unqueueable {
    fn from(e: Unnamed) -> Self {
        match e {
            Unnamed::Missing(what) => Self::MissingResourceId(what),
            Unnamed::Invalid(what) => Self::InvalidResourceId(what),
        }
    }
}

/// Whether the processor can use a change of no project. Work items are read by id organisation-wide
/// (the item names its project) and Git resources have organisation-level routes; builds, runs,
/// releases and alerts exist only under a project. A deleted work item cannot be read at all: only
/// its snapshot's project name identifies it.
fn readable_without_project(change: &Change) -> Result<(), Unqueueable> {
    match change {
        Change::WorkItem {
            deleted: true,
            snapshot,
            ..
        } => match snapshot.as_ref().map(work_item_project_name) {
            Some(Ok(Some(_))) => Ok(()),
            Some(Err(_)) => Err(Unqueueable::InvalidResourceId("project name")),
            None | Some(Ok(None)) => Err(Unqueueable::MissingResourceId("project id")),
        },
        Change::WorkItem { .. }
        | Change::PullRequest { .. }
        | Change::Repository { .. }
        | Change::Push { .. }
        // Never classified from a delivery; named for completeness.
        | Change::Action(_) => Ok(()),
        Change::Build { .. }
        | Change::PipelineRun { .. }
        | Change::Release { .. }
        | Change::ReleaseDeployment { .. }
        | Change::SecurityAlert { .. } => Err(Unqueueable::MissingResourceId("project id")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P1: &str = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c";
    const P2: &str = "be9b3917-87e6-42a4-a549-2bc06a7a878f";
    const REPO: &str = "278d5cd2-584d-4b63-824a-2ba458937249";

    fn guid(s: &str) -> Guid {
        Guid::parse(s).unwrap()
    }

    fn envelope(event_type: &str, resource: Value) -> Value {
        json!({
            "id": "e-1",
            "eventType": event_type,
            "publisherId": "tfs",
            "resource": resource,
            "resourceContainers": {
                "collection": {"id": "c", "baseUrl": "https://dev.azure.com/contoso/"},
                "project": {"id": P1}
            }
        })
    }

    #[test]
    fn the_lean_parse_classifies_every_sample_exactly_like_a_full_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/ado");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let full: Value = serde_json::from_slice(&body).unwrap();
            let lean = parse_delivery(&body).unwrap();
            assert!(lean.get("message").is_none(), "{}", path.display());
            assert_eq!(classify(&lean), classify(&full), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 27, "{seen} samples");
    }

    #[test]
    fn the_lean_parse_keeps_full_parse_answers_for_odd_bodies() {
        assert_eq!(parse_delivery(b"[1, 2]").unwrap(), json!([1, 2]));
        assert_eq!(
            classify(&parse_delivery(b"\"text\"").unwrap()),
            Err(Unqueueable::NotAnObject)
        );
        assert!(parse_delivery(b"{\"id\": ").is_err());
        assert!(parse_delivery(b"{\"message\": {\"text\": 1} ").is_err());
        let dup = parse_delivery(br#"{"id": "a", "message": "m", "id": "b"}"#).unwrap();
        assert_eq!(dup, json!({"id": "b"}));
    }

    #[test]
    fn the_envelope_needs_id_type_publisher_resource_and_containers() {
        let full = envelope("git.push", json!({}));
        for key in [
            "id",
            "eventType",
            "publisherId",
            "resource",
            "resourceContainers",
        ] {
            let mut body = full.clone();
            body.as_object_mut().unwrap().remove(key);
            let e = classify(&body).unwrap_err();
            assert!(
                matches!(e, Unqueueable::MissingEnvelopeField(k) if k == key),
                "{key}: {e:?}"
            );
        }
        assert_eq!(classify(&json!([1])), Err(Unqueueable::NotAnObject));
        let mut body = full.clone();
        body["resource"] = json!("not an object");
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingEnvelopeField("resource"))
        );
    }

    /// The samples in `events/ado/`, each a real delivery: (file stem, body).
    fn samples() -> Vec<(String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/ado");
        let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                (
                    stem,
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn every_classified_event_type_is_subscribed_and_every_subscribed_one_is_classified() {
        use crate::ado::hooks::CATALOGUE;
        let subscribed: Vec<(&str, &str)> = CATALOGUE
            .iter()
            .map(|e| (e.publisher_id, e.event_type))
            .collect();
        // Classified: every real delivery the webhook queues is of an event we subscribe to, from the
        // publisher we subscribe to it on.
        let mut classified = Vec::new();
        for (stem, body) in samples() {
            let m = classify(&body).unwrap_or_else(|e| panic!("{stem}: {e}"));
            assert_eq!(m.event_type, stem, "a sample is named after its event type");
            assert!(
                subscribed.contains(&(m.publisher_id.as_str(), m.event_type.as_str())),
                "{stem} is classified but never subscribed (publisher {})",
                m.publisher_id
            );
            classified.push(m.event_type);
        }
        // Subscribed: every event we subscribe to is classified, and has a sample delivery to show it.
        for (publisher, event_type) in &subscribed {
            assert!(
                classified.iter().any(|c| c == event_type),
                "{publisher}/{event_type} is subscribed but has no sample that classifies"
            );
            let body = envelope(event_type, json!({}));
            assert_ne!(
                classify(&body),
                Err(Unqueueable::UnsupportedEventType),
                "{event_type} is subscribed but not classified"
            );
        }
        assert_eq!(classified.len(), subscribed.len(), "one sample per event");
        let mut queued = EVENT_TYPES.clone();
        queued.sort_unstable();
        classified.sort_unstable();
        assert_eq!(queued, classified);
    }

    #[test]
    fn each_event_is_declared_once_and_shared_by_the_kinds_it_refreshes() {
        let events = crate::ado::kinds::live_events();
        for (i, e) in events.iter().enumerate() {
            assert!(
                events[i + 1..]
                    .iter()
                    .all(|o| o.spec.event_type != e.spec.event_type),
                "{} is declared by two statics: kinds that follow it must list the same one",
                e.spec.event_type
            );
            assert!(
                crate::ado::kinds::refreshed_by(e.spec.event_type)
                    .next()
                    .is_some()
            );
        }
    }

    #[test]
    fn an_unknown_event_type_is_unqueueable() {
        let body = envelope("tfvc.checkin", json!({"changesetId": 18}));
        assert_eq!(classify(&body), Err(Unqueueable::UnsupportedEventType));
    }

    #[test]
    fn workitem_updated_uses_work_item_id_then_revision_id_but_never_the_update_number() {
        let body = envelope(
            "workitem.updated",
            json!({"id": 3, "workItemId": 5, "revision": {"id": 5}}),
        );
        assert!(matches!(
            classify(&body).unwrap().change,
            Change::WorkItem {
                id: 5,
                deleted: false,
                snapshot: None
            }
        ));
        let body = envelope(
            "workitem.updated",
            json!({"id": 3, "workItemId": 0, "revision": {"id": 5}}),
        );
        assert!(matches!(
            classify(&body).unwrap().change,
            Change::WorkItem { id: 5, .. }
        ));
        let body = envelope("workitem.updated", json!({"id": 3}));
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingResourceId("work item id"))
        );
    }

    #[test]
    fn a_huge_deleted_item_keeps_a_compact_snapshot_with_its_identity() {
        let big = "x".repeat(SNAPSHOT_MAX_BYTES);
        let body = envelope(
            "workitem.deleted",
            json!({
                "id": 5, "rev": 2, "url": "https://example/recyclebin/5",
                "fields": {
                    "System.TeamProject": "Fabrikam",
                    "System.Title": "t",
                    "System.History": big,
                    "System.Description": big,
                    "Custom.Notes": big,
                },
                "_links": {"self": {"href": "x"}}
            }),
        );
        let Change::WorkItem {
            id: 5,
            deleted: true,
            snapshot: Some(snap),
        } = classify(&body).unwrap().change
        else {
            panic!("not a deleted work item");
        };
        assert!(serde_json::to_vec(&snap).unwrap().len() <= SNAPSHOT_MAX_BYTES);
        assert_eq!(snap["id"], json!(5));
        assert_eq!(snap["rev"], json!(2));
        assert_eq!(snap["fields"]["System.TeamProject"], json!("Fabrikam"));
        assert_eq!(snap["fields"]["System.Title"], json!("t"));
        assert!(snap.get("_links").is_none() && snap.get("url").is_none());
        assert!(snap["fields"].get("System.History").is_none());
    }

    #[test]
    fn a_small_deleted_item_keeps_its_history() {
        let body = envelope(
            "workitem.deleted",
            json!({"id": 5, "rev": 2, "fields": {"System.History": "short"}}),
        );
        let Change::WorkItem {
            snapshot: Some(snap),
            ..
        } = classify(&body).unwrap().change
        else {
            panic!("no snapshot");
        };
        assert_eq!(snap["fields"]["System.History"], json!("short"));
    }

    #[test]
    fn deployments_read_ids_from_deployment_or_environment() {
        let body = envelope(
            "ms.vss-release.deployment-completed-event",
            json!({"deployment": {"id": 9, "definitionEnvironmentId": 2, "release": {"id": 7}}}),
        );
        assert_eq!(
            classify(&body).unwrap().change,
            Change::ReleaseDeployment {
                release_id: 7,
                definition_environment_id: Some(2),
                deployment_id: Some(9),
            }
        );
        let body = envelope(
            "ms.vss-release.deployment-started-event",
            json!({"environment": {"releaseId": 0, "definitionEnvironmentId": 2, "release": {"id": 7}}}),
        );
        assert_eq!(
            classify(&body).unwrap().change,
            Change::ReleaseDeployment {
                release_id: 7,
                definition_environment_id: Some(2),
                deployment_id: None,
            }
        );
    }

    #[test]
    fn approvals_without_run_or_pipeline_are_unqueueable() {
        let body = envelope(
            "ms.vss-pipelinechecks-events.approval-pending",
            json!({"approval": {"id": "a"}, "run": null, "pipeline": null, "id": 0}),
        );
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingResourceId("run or pipeline id"))
        );
    }

    #[test]
    fn project_and_base_url_come_from_the_containers_with_resource_fallbacks() {
        let m = classify(&envelope("git.repo.deleted", json!({"repositoryId": REPO}))).unwrap();
        assert_eq!(m.project_id, Some(guid(P1)));
        assert_eq!(
            m.base_url.as_deref(),
            Some("https://dev.azure.com/contoso/")
        );
        assert_eq!(
            m.change,
            Change::Repository {
                repository_id: guid(REPO),
                deleted: true
            }
        );
        let mut body = envelope("ms.vss-release.release-created-event", json!({}));
        body["resourceContainers"] = json!({"account": {"id": "a", "baseUrl": "https://org/"}});
        body["resource"] = json!({
            "release": {"id": 4, "releaseDefinition": {"id": 1}},
            "project": {"id": P2.to_uppercase()}
        });
        let m = classify(&body).unwrap();
        assert_eq!(m.project_id, Some(guid(P2)));
        assert_eq!(m.base_url.as_deref(), Some("https://org/"));
        // The all-zero GUID is a placeholder: a release without a project cannot be read back.
        body["resource"]["project"]["id"] = json!("00000000-0000-0000-0000-000000000000");
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingResourceId("project id"))
        );
    }

    /// Ids that would steer a request elsewhere on the Azure DevOps host, or are not ids at all.
    const HOSTILE: &[&str] = &[
        "../../_apis/projects?",
        "..",
        "5?x=1",
        "5#frag",
        "5%2F..%2F6",
        "5 6",
        " 5/",
        "五",
        "278d5cd2-584d-4b63-824a-2ba458937249/../x",
        "278d5cd2-584d-4b63-824a-2ba45893724é",
        "-5",
        "+5",
        "5.0",
        "99999999999999999999999",
    ];

    fn refused_for(body: &Value) -> Unqueueable {
        classify(body).expect_err("a hostile id must refuse the delivery")
    }

    #[test]
    fn a_hostile_id_anywhere_refuses_the_delivery_instead_of_falling_back() {
        let samples: Vec<(&str, Value, &[&str])> = vec![
            (
                "git.push",
                json!({"repository": {"id": REPO}}),
                &["repository", "id"],
            ),
            (
                "git.pullrequest.updated",
                json!({"repository": {"id": REPO}, "pullRequestId": 1}),
                &["pullRequestId"],
            ),
            (
                "workitem.updated",
                json!({"workItemId": 5, "revision": {"id": 5}}),
                &["workItemId"],
            ),
            ("workitem.created", json!({"id": 5}), &["id"]),
            (
                "build.complete",
                json!({"id": 5, "definition": {"id": 1}}),
                &["definition", "id"],
            ),
            (
                "ms.vss-pipelines.stage-state-changed-event",
                json!({"run": {"id": 11}, "pipeline": {"id": 1}, "stage": {"id": REPO}}),
                &["stage", "id"],
            ),
            (
                "ms.vss-pipelines.run-state-changed-event",
                json!({"run": {"id": 11}, "pipeline": {"id": 1}}),
                &["pipeline", "id"],
            ),
            (
                "ms.vss-release.deployment-completed-event",
                json!({"deployment": {"id": 9, "definitionEnvironmentId": 2, "release": {"id": 7}}}),
                &["deployment", "id"],
            ),
            (
                "ms.vss-alerts.alert-updated-event",
                json!({"repositoryId": REPO, "alertId": 42}),
                &["repositoryId"],
            ),
            (
                "ms.vss-alerts.alert-updated-event",
                json!({"repositoryId": REPO, "alertId": 42}),
                &["alertId"],
            ),
        ];
        for (event_type, resource, path) in samples {
            let fine = envelope(event_type, resource);
            assert!(
                classify(&fine).is_ok(),
                "{event_type}: {:?}",
                classify(&fine)
            );
            for &bad in HOSTILE {
                // A GUID where an integer belongs is as wrong as the other way round.
                let mut body = fine.clone();
                let slot = path.iter().fold(&mut body["resource"], |v, k| &mut v[*k]);
                *slot = json!(bad);
                assert!(
                    matches!(refused_for(&body), Unqueueable::InvalidResourceId(_)),
                    "{event_type} {path:?} = {bad:?}"
                );
            }
            for odd in [
                json!(true),
                json!([5]),
                json!({"id": 5}),
                json!(-1),
                json!(2.5),
            ] {
                let mut body = fine.clone();
                let slot = path.iter().fold(&mut body["resource"], |v, k| &mut v[*k]);
                *slot = odd.clone();
                assert!(
                    matches!(refused_for(&body), Unqueueable::InvalidResourceId(_)),
                    "{event_type} {path:?} = {odd}"
                );
            }
        }
    }

    #[test]
    fn a_hostile_project_id_refuses_the_delivery() {
        for &bad in HOSTILE {
            let mut body = envelope("workitem.created", json!({"id": 5}));
            body["resourceContainers"]["project"]["id"] = json!(bad);
            assert_eq!(
                refused_for(&body),
                Unqueueable::InvalidResourceId("project id"),
                "{bad:?}"
            );
        }
        let mut body = envelope("workitem.created", json!({"id": 5}));
        body["resourceContainers"]["project"]["id"] = json!(5);
        assert_eq!(
            refused_for(&body),
            Unqueueable::InvalidResourceId("project id")
        );
    }

    #[test]
    fn the_unusable_reason_names_the_field_and_never_its_value() {
        let mut body = envelope("workitem.created", json!({"id": 5}));
        body["resourceContainers"]["project"]["id"] = json!("../secret-path");
        let e = refused_for(&body);
        assert_eq!(e.reason(), "invalid-resource-id");
        assert_eq!(
            e.to_string(),
            "the project id is not an id Azure DevOps issues"
        );
    }

    #[test]
    fn numeric_ids_may_come_as_strings_and_zero_means_not_set() {
        let body = envelope(
            "workitem.updated",
            json!({"workItemId": " 5 ", "revision": {"id": 6}}),
        );
        assert!(matches!(
            classify(&body).unwrap().change,
            Change::WorkItem { id: 5, .. }
        ));
        let body = envelope(
            "workitem.updated",
            json!({"workItemId": "0", "revision": {"id": 6}}),
        );
        assert!(matches!(
            classify(&body).unwrap().change,
            Change::WorkItem { id: 6, .. }
        ));
        let body = envelope(
            "workitem.updated",
            json!({"workItemId": null, "revision": {"id": ""}}),
        );
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingResourceId("work item id"))
        );
    }

    #[test]
    fn events_that_exist_only_under_a_project_are_refused_without_one() {
        let resources = [
            ("build.complete", json!({"id": 11})),
            (
                "ms.vss-pipelines.run-state-changed-event",
                json!({"run": {"id": 11}}),
            ),
            (
                "ms.vss-release.release-created-event",
                json!({"release": {"id": 4}}),
            ),
            (
                "ms.vss-release.deployment-started-event",
                json!({"environment": {"releaseId": 4}}),
            ),
            (
                "ms.vss-alerts.alert-created-event",
                json!({"repositoryId": REPO, "alertId": 42}),
            ),
        ];
        for (event_type, resource) in resources {
            let mut body = envelope(event_type, resource);
            body["resourceContainers"]
                .as_object_mut()
                .unwrap()
                .remove("project");
            assert_eq!(
                classify(&body),
                Err(Unqueueable::MissingResourceId("project id")),
                "{event_type}"
            );
        }
    }

    #[test]
    fn work_item_and_git_events_without_a_project_are_queued_for_the_processor_to_resolve() {
        let resources = [
            ("workitem.updated", json!({"workItemId": 5})),
            ("workitem.created", json!({"id": 5})),
            ("workitem.restored", json!({"id": 5})),
            ("git.push", json!({"repository": {"id": REPO}})),
            ("git.repo.deleted", json!({"repositoryId": REPO})),
            (
                "git.pullrequest.created",
                json!({"repository": {"id": REPO}, "pullRequestId": 1}),
            ),
            // A deleted item is no longer readable: its snapshot's project name identifies it.
            (
                "workitem.deleted",
                json!({"id": 5, "fields": {"System.TeamProject": "Mobile App"}}),
            ),
            (
                "workitem.deleted",
                json!({"id": 5, "fields": {"System.AreaPath": "Mobile App\\Frontend"}}),
            ),
        ];
        for (event_type, resource) in resources {
            let mut body = envelope(event_type, resource);
            body["resourceContainers"] = json!({"account": {"id": "a"}});
            let m = classify(&body).unwrap_or_else(|e| panic!("{event_type}: {e}"));
            assert_eq!(m.project_id, None);
        }
    }

    #[test]
    fn a_deleted_work_item_without_any_project_is_refused() {
        let mut body = envelope(
            "workitem.deleted",
            json!({"id": 5, "fields": {"System.Title": "t"}}),
        );
        body["resourceContainers"]["project"] = Value::Null;
        assert_eq!(
            classify(&body),
            Err(Unqueueable::MissingResourceId("project id"))
        );
        body["resource"]["fields"]["System.TeamProject"] = json!("../../_apis");
        assert_eq!(
            classify(&body),
            Err(Unqueueable::InvalidResourceId("project name"))
        );
    }
}
