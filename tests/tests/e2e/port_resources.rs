//! `INITIALIZE_PORT_RESOURCES` and the mapping source order, against the catalog server.

use std::collections::BTreeMap;

use std::sync::Arc;

use serde_json::{Value, json};
use shared::mapping::source::{MAPPING_TTL, ManualClock};
use shared::tenant::{DEFAULT_BLUEPRINTS, Tenant, default_integration_record};
use sim::RunningSim;

use crate::helpers::settings_for;

async fn start_sim() -> RunningSim {
    sim::start(
        "127.0.0.1:0".parse().unwrap(),
        sim::ado::OrgSpec::small(),
        Default::default(),
        Default::default(),
    )
    .await
    .expect("simulator starts")
}

fn init_on() -> Vec<(&'static str, String)> {
    vec![("INITIALIZE_PORT_RESOURCES", "true".into())]
}

fn default_blueprints() -> Vec<Value> {
    serde_json::from_str(DEFAULT_BLUEPRINTS).unwrap()
}

/// Requests that change something, by route.
/// The catalog requests that change something, but the sync's own state report (every pass sends it).
fn writes(sim: &RunningSim) -> BTreeMap<String, u64> {
    sim.catalog
        .request_counts()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("GET ") && !k.ends_with("/resync-state"))
        .collect()
}

#[tokio::test]
async fn an_empty_catalog_gets_the_default_blueprints_and_integration_and_a_second_run_writes_nothing()
 {
    let sim = start_sim().await;
    let runtime = Tenant::start(settings_for(&sim, &init_on()))
        .await
        .expect("runtime");
    let report = runtime
        .initialize()
        .await
        .expect("on")
        .expect("initialized");
    assert_eq!(report.created_blueprints.len(), default_blueprints().len());
    assert!(report.integration_created);
    let store = sim.catalog.store();
    for bp in default_blueprints() {
        let id = bp["identifier"].as_str().unwrap();
        let stored = store.blueprint(id).unwrap().expect(id);
        assert_eq!(stored["relations"], bp["relations"], "{id}");
        assert_eq!(stored["schema"], bp["schema"], "{id}");
        assert_eq!(stored["mirrorProperties"], bp["mirrorProperties"], "{id}");
    }
    let record = store
        .integration("e2e")
        .unwrap()
        .expect("the integration record");
    assert_eq!(
        record["config"],
        default_integration_record().unwrap()["config"]
    );
    assert_eq!(record["installationAppType"], "azure-devops");

    let before = writes(&sim);
    let again = runtime
        .initialize()
        .await
        .expect("on")
        .expect("initialized");
    assert!(again.created_blueprints.is_empty() && !again.integration_created);
    assert_eq!(writes(&sim), before, "the second run only reads");

    // The next cold start takes its mapping from the record.
    let runtime = Tenant::start(settings_for(&sim, &init_on()))
        .await
        .expect("runtime");
    let default = default_integration_record().unwrap();
    assert_eq!(
        runtime.mapping_source.last().resources().len(),
        default["config"]["resources"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn a_users_blueprint_and_mapping_are_left_alone_and_the_mapping_is_used() {
    let sim = start_sim().await;
    let store = sim.catalog.store();
    let mine = json!({"identifier": "azureDevopsProject", "title": "Our projects", "schema": {"properties": {}}});
    store.put_blueprint(&mine).unwrap();
    let config = json!({"resources": [{
        "kind": "project",
        "selector": {"query": "true"},
        "port": {"entity": {"mappings": {
            "identifier": ".id", "title": ".name", "blueprint": "\"azureDevopsProject\""
        }}}
    }]});
    store
        .put_integration("e2e", &json!({"identifier": "e2e", "config": config}))
        .unwrap();

    let runtime = Tenant::start(settings_for(&sim, &init_on()))
        .await
        .expect("runtime");
    assert_eq!(
        runtime.mapping_source.last().resources().len(),
        1,
        "the record's mapping"
    );
    let report = runtime
        .initialize()
        .await
        .expect("on")
        .expect("initialized");
    assert_eq!(report.existing_blueprints, vec!["azureDevopsProject"]);
    assert_eq!(
        report.created_blueprints.len(),
        default_blueprints().len() - 1
    );
    assert!(!report.integration_created);
    assert_eq!(store.blueprint("azureDevopsProject").unwrap(), Some(mine));
    assert_eq!(store.integration("e2e").unwrap().unwrap()["config"], config);
}

#[tokio::test]
async fn with_a_mapping_file_or_initialization_off_no_record_is_created() {
    let sim = start_sim().await;
    let mut vars = init_on();
    vars.push(("MAPPING", "resources: []".into()));
    let runtime = Tenant::start(settings_for(&sim, &vars))
        .await
        .expect("runtime");
    let report = runtime
        .initialize()
        .await
        .expect("on")
        .expect("initialized");
    assert!(!report.integration_created);
    assert!(sim.catalog.store().integration("e2e").unwrap().is_none());

    let off = Tenant::start(settings_for(&sim, &[]))
        .await
        .expect("runtime");
    assert!(off.initialize().await.is_none());
}

fn project_block() -> Value {
    json!({
        "kind": "project",
        "selector": {"query": "true"},
        "port": {"entity": {"mappings": {
            "identifier": ".id", "title": ".name", "blueprint": "\"azureDevopsProject\""
        }}}
    })
}

#[tokio::test]
async fn a_warm_runtime_takes_a_mapping_edited_in_the_catalog_once_it_is_a_minute_old() {
    let sim = start_sim().await;
    let store = sim.catalog.store();
    let record =
        |resources: Value| json!({"identifier": "e2e", "config": {"resources": resources}});
    store
        .put_integration("e2e", &record(json!([project_block()])))
        .unwrap();
    let clock = Arc::new(ManualClock::default());
    let runtime = Tenant::start_with_clock(settings_for(&sim, &init_on()), clock.clone())
        .await
        .expect("runtime");
    let quiet = shared::resync::Quiet;
    let first = runtime.resync(&quiet).await;
    assert!(first.succeeded(), "{}", first.render());
    assert_eq!(first.kinds.len(), 1);
    let count = |bp: &str| store.list(Some(bp)).unwrap().len();
    let projects = count("azureDevopsProject");
    assert!(projects > 0);
    assert_eq!(count("azureDevopsRepository"), 0);

    // Edited in the catalog: the same warm runtime uses it once its mapping is a minute old, for the
    // resync and the live path alike; not before.
    let repositories = json!({
        "kind": "repository",
        "selector": {"query": "true"},
        "port": {"entity": {"mappings": {
            "identifier": ".id", "title": ".name", "blueprint": "\"azureDevopsRepository\""
        }}}
    });
    store
        .put_integration("e2e", &record(json!([project_block(), repositories])))
        .unwrap();
    let reads = || {
        sim.catalog
            .request_counts()
            .into_iter()
            .filter(|(k, _)| k.starts_with("GET ") && k.contains("integration"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let early = runtime.resync(&quiet).await;
    assert_eq!(
        early.kinds.len(),
        1,
        "within the minute: the mapping read at start"
    );
    let before = reads();
    for _ in 0..3 {
        assert_eq!(runtime.mapping().await.resources().len(), 1);
    }
    assert_eq!(reads(), before, "no read of the record within the minute");
    clock.advance(MAPPING_TTL);
    for _ in 0..3 {
        assert_eq!(
            runtime.mapping().await.resources().len(),
            2,
            "the live path"
        );
    }
    assert_eq!(reads(), before + 1, "one read at the minute");
    let second = runtime.resync(&quiet).await;
    assert!(second.succeeded(), "{}", second.render());
    assert_eq!(second.kinds.len(), 2);
    assert!(count("azureDevopsRepository") > 0);

    // A mapping that no longer compiles fails the pass before anything is written or deleted.
    let broken = json!([{
        "kind": "project",
        "selector": {"query": ".a |"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"azureDevopsProject\""}}}
    }]);
    store.put_integration("e2e", &record(broken)).unwrap();
    let before = writes(&sim);
    clock.advance(MAPPING_TTL);
    let third = runtime.resync(&quiet).await;
    assert!(!third.succeeded());
    assert!(third.kinds.is_empty());
    let said = third.render();
    assert!(said.contains("reading the mapping failed"), "{said}");
    assert!(said.contains("selector.query"), "{said}");
    assert_eq!(writes(&sim), before, "nothing written or deleted");
    assert_eq!(count("azureDevopsProject"), projects);
    let state = store.integration("e2e").unwrap().expect("the record")["resyncState"].clone();
    assert_eq!(state["status"], "failed", "{state}");
}
