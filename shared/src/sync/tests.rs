//! Unit tests without Azure DevOps: the parts of [`apply`] that decide before any read, and the write
//! phase against the embedded catalog. Simulator-backed flows live in `tests/tests/e2e/live.rs`.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::ado::{AdoClientConfig, Guid, OrgUrl};
use crate::catalog::embedded::EmbeddedCatalog;
use crate::catalog::{Catalog, Entity, datasource};
use crate::queue::Change;
use crate::tenant::compile_mapping;

const REPOS_ONLY: &str = r#"
resources:
  - kind: repository
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"repository"'
"#;

fn ours() -> String {
    datasource("azure-devops", "0.1.0", "unit")
}

/// The ports of one test: a catalog, a mapping, and an Azure DevOps client that reaches nothing (port 9
/// does not listen, and it never retries): a test that reads Azure DevOps fails loudly.
struct Ports {
    ado: AdoClient,
    catalog: Arc<dyn Catalog>,
    mapping: CompiledConfig,
}

impl Ports {
    fn new(mapping: &str, catalog: Arc<dyn Catalog>) -> Self {
        let mut cfg = AdoClientConfig::new(
            OrgUrl::parse("http://127.0.0.1:9/org").unwrap(),
            "pat".to_owned().into(),
        );
        cfg.max_retries = 0;
        Self {
            ado: AdoClient::new(cfg).unwrap(),
            catalog,
            mapping: compile_mapping(mapping, "unit", false).unwrap(),
        }
    }

    fn live(&self) -> LivePorts<'_> {
        LivePorts {
            ado: &self.ado,
            catalog: self.catalog.as_ref(),
            mapping: &self.mapping,
            excluded_tags: &[],
        }
    }
}

fn guid(s: &str) -> Guid {
    Guid::parse(s).unwrap()
}

const REPO: &str = "278d5cd2-584d-4b63-824a-2ba458937249";

fn message(event_type: &str, change: Change) -> ChangeMessage {
    ChangeMessage {
        version: MESSAGE_VERSION,
        event_id: "e1".into(),
        event_type: event_type.into(),
        publisher_id: "tfs".into(),
        subscription_id: None,
        created_date: None,
        project_id: Some(guid("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c")),
        base_url: None,
        change,
    }
}

fn repo_entity(id: &str) -> Entity {
    Entity {
        identifier: json!(id),
        blueprint: "repository".into(),
        title: Some(json!(id)),
        icon: None,
        team: None,
        properties: None,
        relations: None,
    }
}

fn catalog() -> Arc<EmbeddedCatalog> {
    Arc::new(EmbeddedCatalog::in_memory(ours()).unwrap())
}

fn repo_changed() -> Change {
    Change::Repository {
        repository_id: guid(REPO),
        deleted: false,
    }
}

#[tokio::test]
async fn a_message_of_an_unknown_version_is_permanent() {
    let ports = Ports::new(REPOS_ONLY, catalog());
    let mut m = message("git.repo.created", repo_changed());
    m.version = MESSAGE_VERSION + 1;
    let err = apply(ports.live(), &m).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[tokio::test]
async fn an_event_type_no_kind_follows_does_nothing() {
    let ports = Ports::new(REPOS_ONLY, catalog());
    let m = message("tfvc.checkin", repo_changed());
    assert_eq!(apply(ports.live(), &m).await.unwrap(), Applied::default());
}

#[tokio::test]
async fn a_change_to_kinds_missing_from_the_mapping_does_nothing() {
    let ports = Ports::new(REPOS_ONLY, catalog());
    let m = message(
        "workitem.updated",
        Change::WorkItem {
            id: 1,
            deleted: false,
            snapshot: None,
        },
    );
    assert_eq!(apply(ports.live(), &m).await.unwrap(), Applied::default());
    let m = message(
        "ms.vss-release.release-created-event",
        Change::Release {
            release_id: 1,
            definition_id: None,
        },
    );
    assert_eq!(apply(ports.live(), &m).await.unwrap(), Applied::default());
}

#[tokio::test]
async fn an_unreachable_azure_devops_is_transient() {
    let ports = Ports::new(REPOS_ONLY, catalog());
    let m = message("git.repo.created", repo_changed());
    let err = apply(ports.live(), &m).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn writes_upsert_then_delete_only_what_this_integration_owns() {
    let cat = catalog();
    let theirs = EmbeddedCatalog::with_store(
        cat.shared_store(),
        datasource("azure-devops", "0.1.0", "other"),
    );
    let opts = WriteOptions {
        merge: true,
        create_missing_related_entities: true,
        reason: WriteReason::Resync,
        resync_id: None,
    };
    cat.upsert("repository", &[repo_entity("mine")], &opts)
        .await
        .unwrap();
    theirs
        .upsert("repository", &[repo_entity("theirs")], &opts)
        .await
        .unwrap();
    let ports = Ports::new(REPOS_ONLY, cat.clone());

    let mut plan = LivePlan::default();
    plan.upserts
        .insert("repository".into(), vec![repo_entity("new")]);
    plan.deletes.insert(
        "repository".into(),
        ["mine", "theirs", "absent"]
            .map(String::from)
            .into_iter()
            .collect(),
    );
    let applied = write(&ports.live(), plan).await.unwrap();

    assert_eq!(applied.upserted, 1);
    assert_eq!(applied.deleted, 1);
    assert_eq!(applied.skipped, 2, "not owned and absent");
    let left: Vec<String> = cat
        .store()
        .list(Some("repository"))
        .unwrap()
        .into_iter()
        .map(|e| e.identifier)
        .collect();
    assert_eq!(left, ["new", "theirs"]);
}

#[tokio::test]
async fn an_entity_the_catalog_refuses_makes_the_message_permanent() {
    let ports = Ports::new(REPOS_ONLY, catalog());
    let mut plan = LivePlan::default();
    // The embedded catalog refuses an entity of another blueprint in a bulk call with a 422, as Port does.
    plan.upserts.insert(
        "repository".into(),
        vec![repo_entity("ok"), {
            let mut e = repo_entity("odd");
            e.blueprint = "other".into();
            e
        }],
    );
    let err = write(&ports.live(), plan).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("422"), "{err}");
}

#[test]
fn errors_are_classified_by_what_the_queue_must_do() {
    assert!(SyncError::ado("x", AdoError::Transient("429".into())).is_transient());
    assert!(SyncError::ado("x", AdoError::Unauthorized("401".into())).is_transient());
    assert!(!SyncError::ado("x", AdoError::Invalid("400".into())).is_transient());
    assert!(SyncError::catalog("x", CatalogError::Transient("503".into())).is_transient());
    assert!(!SyncError::catalog("x", CatalogError::Invalid("413".into())).is_transient());
    let e = SyncError::ado(
        "reading work item 7",
        AdoError::Transient("HTTP 503".into()),
    );
    assert!(std::error::Error::source(&e).is_some());
    assert!(e.to_string().starts_with("reading work item 7: "), "{e}");
}

#[test]
fn a_change_refreshes_every_kind_that_follows_its_event_in_registry_order() {
    let kinds = |event_type: &str| refreshed_kinds(&message(event_type, repo_changed()));
    assert_eq!(
        kinds("git.push"),
        ["repository", "branch", "file", "folder"]
    );
    assert_eq!(
        kinds("build.complete"),
        [
            "pipeline",
            "build",
            "pipeline-run",
            "pipeline-stage",
            "pipeline-deployment",
            "test-run"
        ]
    );
    assert_eq!(
        kinds("ms.vss-pipelines.stage-state-changed-event"),
        [
            "pipeline",
            "build",
            "pipeline-run",
            "pipeline-stage",
            "pipeline-deployment"
        ]
    );
    assert_eq!(
        kinds("ms.vss-release.deployment-completed-event"),
        ["release", "release-deployment"]
    );
    assert_eq!(
        kinds("ms.vss-release.release-created-event"),
        ["release", "release-definition"]
    );
    assert_eq!(
        kinds("ms.vss-alerts.alert-updated-event"),
        ["advanced-security-alert"]
    );
    assert_eq!(kinds("workitem.deleted"), ["work-item"]);
    assert_eq!(kinds("git.repo.statuschanged"), ["repository"]);
    assert!(kinds("tfvc.checkin").is_empty());
}
