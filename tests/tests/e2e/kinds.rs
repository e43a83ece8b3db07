//! Kind-level listing against the simulator: paging limits that only show at size.

use std::collections::BTreeSet;

use futures::FutureExt;
use secrecy::SecretString;
use shared::ado::kinds::{self, FetchContext, PageSink};
use shared::ado::{AdoClient, AdoClientConfig, OrgUrl};
use sim::ado::OrgSpec;

pub(crate) async fn list(
    sim: &sim::RunningSim,
    kind: &str,
    selector_yaml: &str,
) -> (Vec<serde_json::Value>, AdoClient) {
    let (r, all, client) = try_list(sim, kind, selector_yaml).await;
    r.expect("listing succeeds");
    (all, client)
}

/// Lists a kind, returning the listing's own result next to what it delivered.
pub(crate) async fn try_list(
    sim: &sim::RunningSim,
    kind: &str,
    selector_yaml: &str,
) -> (
    Result<(), shared::ado::AdoError>,
    Vec<serde_json::Value>,
    AdoClient,
) {
    let cfg = AdoClientConfig::new(
        OrgUrl::parse(&sim.ado_org_url()).unwrap(),
        SecretString::from("pat".to_owned()),
    );
    let client = AdoClient::new(cfg).unwrap();
    let mapping = format!(
        "resources:\n  - kind: {kind}\n    selector:\n{selector_yaml}\n    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"x\"'\n"
    );
    let config = shared::tenant::compile_mapping(&mapping, "test", false).unwrap();
    let resource = config.resources()[0].clone();
    let ctx = FetchContext::new(client.clone(), Vec::new());
    let (sink, mut rx) = PageSink::channel(4);
    let source = kinds::find(kind).unwrap();
    let fetch = async move {
        let r = source.fetch(&ctx, &resource, &sink).await;
        drop(sink);
        r
    };
    let collect = async {
        let mut all = Vec::new();
        while let Some(page) = rx.recv().await {
            assert!(page.len() <= 200, "pages stay small");
            all.extend(page);
        }
        all
    };
    let (r, all) = tokio::join!(fetch.boxed(), collect);
    (r, all, client)
}

#[tokio::test]
async fn work_items_past_the_wiql_cap_are_all_listed_by_id_range() {
    let spec = OrgSpec {
        projects: 1,
        work_items_per_project: vec![20_500],
        repos_per_project: 1,
        ..OrgSpec::small()
    };
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        spec,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let (items, _) = list(&sim, "work-item", "      query: 'true'\n      expand: None").await;
    let ids: BTreeSet<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    let project = &sim.ado.project_ids()[0];
    assert_eq!(ids.len(), 20_500);
    assert_eq!(ids, sim.ado.work_item_ids(project).into_iter().collect());
    assert!(
        items
            .iter()
            .all(|i| i["__projectId"] == project.as_str()
                && i["__project"]["id"] == project.as_str())
    );
    let counts = sim.ado.request_counts();
    let wiql: u64 = counts
        .iter()
        .filter(|(k, _)| k.contains("wiql"))
        .map(|(_, v)| v)
        .sum();
    let batches: u64 = counts
        .iter()
        .filter(|(k, _)| k.contains("wit/workitems"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(wiql, 2, "two id-range pages: {counts:?}");
    assert_eq!(
        batches,
        20_500u64.div_ceil(200),
        "batches of 200: {counts:?}"
    );
}

#[tokio::test]
async fn the_user_wiql_filter_narrows_work_items() {
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        OrgSpec::small(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let (all, _) = list(&sim, "work-item", "      query: 'true'").await;
    let (active, _) = list(
        &sim,
        "work-item",
        "      query: 'true'\n      wiql: \"[System.State] = 'Active'\"",
    )
    .await;
    assert!(!active.is_empty() && active.len() < all.len());
    assert!(
        active
            .iter()
            .all(|i| i["fields"]["System.State"] == "Active")
    );
}

#[tokio::test]
async fn pull_requests_cover_active_and_recently_closed_capped_per_status() {
    let spec = OrgSpec {
        prs_per_repo: 30,
        ..OrgSpec::small()
    };
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        spec,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let (wide, _) = list(
        &sim,
        "pull-request",
        "      query: 'true'\n      minTimeInDays: 60",
    )
    .await;
    let (narrow, _) = list(
        &sim,
        "pull-request",
        "      query: 'true'\n      minTimeInDays: 1",
    )
    .await;
    let (capped, _) = list(
        &sim,
        "pull-request",
        "      query: 'true'\n      minTimeInDays: 60\n      maxResults: 1",
    )
    .await;
    let count =
        |items: &[serde_json::Value], s: &str| items.iter().filter(|p| p["status"] == s).count();
    assert_eq!(
        count(&wide, "active"),
        count(&narrow, "active"),
        "active ones ignore the time window"
    );
    assert!(count(&wide, "completed") > count(&narrow, "completed"));
    // Healthy repositories only: 3 projects × 3 repos, minus the disabled one.
    let healthy_repos = 8;
    assert!(
        count(&capped, "completed") <= healthy_repos
            && count(&capped, "abandoned") <= healthy_repos
    );
    assert_eq!(count(&capped, "active"), count(&wide, "active"));
}

#[tokio::test]
async fn projects_page_through_continuation_tokens_and_pipelines_are_enriched() {
    let spec = OrgSpec {
        projects: 230,
        repos_per_project: 1,
        work_items_per_project: vec![1],
        ..OrgSpec::small()
    };
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        spec,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    let (projects, _) = list(&sim, "project", "      query: 'true'").await;
    assert_eq!(projects.len(), 230);
    let listing: u64 = sim
        .ado
        .request_counts()
        .iter()
        .filter(|(k, _)| k.as_str() == "GET /_apis/projects")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(listing, 3, "100 + 100 + 30");
    let (pipelines, _) = list(&sim, "pipeline", "      query: 'true'").await;
    assert_eq!(pipelines.len(), 230 * 3);
    assert!(
        pipelines
            .iter()
            .all(|p| p["__projectId"].is_string() && p["__project"]["name"].is_string())
    );
}
