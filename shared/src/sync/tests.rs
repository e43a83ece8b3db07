//! Unit tests without Azure DevOps: the parts of [`apply`] that decide before any read, and the write
//! phase against the embedded catalog. Simulator-backed flows live in `tests/tests/e2e/live.rs`.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::catalog::embedded::EmbeddedCatalog;
use crate::catalog::{Catalog, Entity, datasource};
use crate::config::Settings;
use crate::mapping::source::MappingSource;
use crate::runtime::compile_mapping;

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

fn runtime(mapping: &str, catalog: Arc<dyn Catalog>) -> SyncRuntime {
    // Nothing listens on port 9: a test that reached Azure DevOps would fail loudly.
    let settings = Settings::from_lookup(|k| match k {
        "ADO_ORG_URL" => Some("http://127.0.0.1:9/org".into()),
        "ADO_PAT" => Some("pat".into()),
        "CATALOG_DB" => Some("unused.db".into()),
        "ADO_MAX_RETRIES" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let ado = AdoClient::from_settings(&settings.ado).unwrap();
    SyncRuntime::from_parts(
        settings,
        ado,
        catalog,
        None,
        MappingSource::fixed(compile_mapping(mapping, "unit", false).unwrap()),
    )
}

fn guid(s: &str) -> Guid {
    Guid::parse(s).unwrap()
}

const REPO: &str = "278d5cd2-584d-4b63-824a-2ba458937249";

fn message(change: Change) -> ChangeMessage {
    ChangeMessage {
        version: MESSAGE_VERSION,
        event_id: "e1".into(),
        event_type: "test".into(),
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

#[tokio::test]
async fn a_message_of_an_unknown_version_is_permanent() {
    let rt = runtime(REPOS_ONLY, catalog());
    let mut m = message(Change::Repository {
        repository_id: guid(REPO),
        deleted: false,
    });
    m.version = MESSAGE_VERSION + 1;
    let err = apply(&rt, &m).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[tokio::test]
async fn a_change_to_a_kind_this_build_does_not_follow_does_nothing() {
    let rt = runtime(REPOS_ONLY, catalog());
    let m = message(Change::Release {
        release_id: 1,
        definition_id: None,
    });
    assert_eq!(apply(&rt, &m).await.unwrap(), Applied::default());
}

#[tokio::test]
async fn a_change_to_a_kind_missing_from_the_mapping_does_nothing() {
    let rt = runtime(REPOS_ONLY, catalog());
    let m = message(Change::WorkItem {
        id: 1,
        deleted: false,
        snapshot: None,
    });
    assert_eq!(apply(&rt, &m).await.unwrap(), Applied::default());
}

#[tokio::test]
async fn an_unreachable_azure_devops_is_transient() {
    let rt = runtime(REPOS_ONLY, catalog());
    let m = message(Change::Repository {
        repository_id: guid(REPO),
        deleted: false,
    });
    let err = apply(&rt, &m).await.unwrap_err();
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
    let rt = runtime(REPOS_ONLY, cat.clone());

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
    let applied = write(&rt, rt.mapping().await.as_ref(), plan).await.unwrap();

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
    let rt = runtime(REPOS_ONLY, catalog());
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
    let err = write(&rt, rt.mapping().await.as_ref(), plan)
        .await
        .unwrap_err();
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
fn every_change_names_the_kind_it_refreshes() {
    let kind = |c| target_kind(&c);
    assert_eq!(
        kind(Change::Push {
            repository_id: guid(REPO),
            ref_updates: vec![]
        }),
        Some("repository")
    );
    assert_eq!(
        kind(Change::Build {
            build_id: 1,
            definition_id: Some(2)
        }),
        Some("pipeline")
    );
    assert_eq!(
        kind(Change::SecurityAlert {
            repository_id: guid(REPO),
            alert_id: 1
        }),
        None
    );
}
