//! The full pass through the resync function, on the simulator and the catalog server.

use serde_json::Value;
use sim::ado::AdoSimOptions;

use shared::resync::{Decision, DeletionOutcome, StopReason};

use crate::helpers::{Setup, TestOrg, kind};

/// The simulated organisation with the shipped default mapping (all 29 kinds).
async fn shipped_mapping_org() -> TestOrg {
    Setup {
        mapping: shared::tenant::DEFAULT_MAPPING,
        ..Default::default()
    }
    .start()
    .await
}

/// What reconciliation did with one blueprint, from a report as JSON.
fn blueprint_deletion(report: &Value, blueprint: &str) -> Value {
    report["deletion"]["blueprints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["blueprint"] == blueprint)
        .unwrap_or_else(|| panic!("no {blueprint} in {}", report["deletion"]))
        .clone()
}

/// Catalog requests that write entities: the bulk routes and single-entity upserts.
fn catalog_writes(org: &TestOrg) -> u64 {
    org.catalog_requests("bulk") + org.catalog_requests("POST /v1/blueprints/{")
}

#[tokio::test]
async fn a_full_resync_through_the_function_fills_the_catalog_with_every_kind() {
    let org = Setup::default().start().await;
    let report = org.resync().await.expect("the pass succeeds");

    assert_eq!(
        org.catalog_ids("project"),
        org.sim.ado.project_ids().into_iter().collect()
    );
    assert_eq!(org.catalog_ids("repository"), org.expected_repositories());
    assert_eq!(org.catalog_ids("workItem"), org.expected_work_items());
    assert_eq!(
        org.catalog_ids("pipeline").len(),
        9,
        "3 pipelines in each of 3 projects"
    );
    assert!(!org.catalog_ids("pullRequest").is_empty());
    for k in [
        "project",
        "repository",
        "pull-request",
        "pipeline",
        "work-item",
    ] {
        let r = kind(&report, k);
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["upserted"].as_u64().unwrap() > 0, "{r}");
        assert!(r["ado_requests"].as_u64().unwrap() > 0, "{r}");
    }
    // defaultTeam: the project was re-read, so the team name is there.
    let project = org.sim.ado.project_ids()[0].clone();
    let entity = org.catalog_entity("project", &project).unwrap();
    assert!(
        entity.properties.unwrap()["defaultTeam"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    // Work items carry the enrichment the mappings rely on.
    let wi = org
        .catalog_entity("workItem", org.expected_work_items().first().unwrap())
        .unwrap();
    assert!(wi.properties.unwrap()["project"].is_string());
}

#[tokio::test]
async fn a_second_pass_over_an_unchanged_org_writes_nothing() {
    let org = Setup::default().start().await;
    org.resync().await.expect("first pass");
    let writes_before = catalog_writes(&org);
    let report = org.resync().await.expect("second pass");
    let writes_after = catalog_writes(&org);

    let total: u64 = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["upserted"].as_u64().unwrap())
        .sum();
    let unchanged: u64 = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["unchanged"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 0, "{report}");
    assert!(unchanged > 100);
    assert_eq!(
        writes_after, writes_before,
        "no upsert or delete request in the second pass"
    );
}

#[tokio::test]
async fn items_removed_from_the_org_are_deleted_and_nothing_else() {
    let org = Setup::default().start().await;
    org.resync().await.expect("first pass");
    let projects = org.sim.ado.project_ids();
    let gone_items: Vec<u64> = org
        .sim
        .ado
        .work_item_ids(&projects[0])
        .into_iter()
        .take(2)
        .collect();
    for id in &gone_items {
        assert!(org.sim.ado.remove_work_item(*id));
    }
    let gone_repo = org.sim.ado.repository_ids(&projects[1])[0].clone();
    assert!(org.sim.ado.remove_repository(&gone_repo));
    let prs_before = org.catalog_ids("pullRequest");
    let items_before = org.catalog_ids("workItem");

    let report = org.resync().await.expect("second pass");

    let expected: std::collections::BTreeSet<String> = items_before
        .iter()
        .filter(|i| {
            !gone_items
                .iter()
                .any(|g| **i == format!("{}/{g}", projects[0]))
        })
        .cloned()
        .collect();
    assert_eq!(org.catalog_ids("workItem"), expected);
    assert_eq!(org.catalog_ids("workItem"), org.expected_work_items());
    assert_eq!(org.catalog_ids("repository"), org.expected_repositories());
    assert!(!org.catalog_ids("repository").contains(&gone_repo));
    // The removed repository's pull requests went with it; the others stayed.
    let prs_after = org.catalog_ids("pullRequest");
    assert!(prs_after.is_subset(&prs_before));
    assert_eq!(kind(&report, "work-item")["deleted"], 2);
    assert_eq!(kind(&report, "repository")["deleted"], 1);
    assert_eq!(report["deletion"]["outcome"], "reconciled");
    let deleted: u64 = report["deletion"]["blueprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["deleted"].as_u64().unwrap())
        .sum();
    assert_eq!(
        deleted as usize,
        3 + (prs_before.len() - prs_after.len()),
        "{}",
        report["deletion"]
    );
    assert_eq!(org.catalog_ids("project").len(), projects.len());
}

#[tokio::test]
async fn an_ado_failure_mid_pass_keeps_that_kinds_entities_and_reconciles_the_others() {
    let org = Setup::default().start().await;
    org.resync().await.expect("first pass");
    let projects = org.sim.ado.project_ids();
    let gone = org.sim.ado.work_item_ids(&projects[0])[0];
    org.sim.ado.remove_work_item(gone);
    let gone_repo = org.sim.ado.repository_ids(&projects[0])[0].clone();
    org.sim.ado.remove_repository(&gone_repo);
    // Work items of one project fail for good, after the earlier kinds listed fine.
    org.sim
        .ado
        .fail_requests(&format!("{}/_apis/wit/workitems", projects[1]), 500, None);
    let before_items = org.catalog_ids("workItem");

    let failed = org.resync().await.expect_err("the pass reports failure");
    let report = &failed.0;
    assert!(!report.succeeded());
    assert!(report.stopped.is_none(), "{:?}", report.stopped);
    let wi = report.kinds.iter().find(|k| k.kind == "work-item").unwrap();
    assert!(
        wi.errors > 0
            && wi
                .messages
                .iter()
                .any(|m| m.ado().and_then(|e| e.status()) == Some(500)),
        "{wi:?}"
    );
    let DeletionOutcome::Reconciled { blueprints } = &report.deletion else {
        panic!("{:?}", report.deletion);
    };
    let decision = |bp: &str| {
        blueprints
            .iter()
            .find(|b| b.blueprint == bp)
            .unwrap_or_else(|| panic!("{bp}: {blueprints:?}"))
            .decision
            .clone()
    };
    // The failed kind's blueprint keeps every entity, the stale work item included.
    assert_eq!(
        decision("workItem"),
        Decision::KeptIncomplete {
            blocks: vec![wi.label()]
        }
    );
    assert_eq!(org.catalog_ids("workItem"), before_items);
    // The repository kind listed everything: its stale entity went.
    assert_eq!(decision("repository"), Decision::Deleted);
    assert!(!org.catalog_ids("repository").contains(&gone_repo));
    assert_eq!(org.catalog_ids("repository"), org.expected_repositories());
}

#[tokio::test]
async fn deletion_over_the_threshold_is_skipped_and_said() {
    let mapping = crate::helpers::ALL_KINDS.replace(
        "entityDeletionThreshold: 0.9",
        "entityDeletionThreshold: 0.01",
    );
    let org = Setup {
        mapping: &mapping,
        ..Default::default()
    }
    .start()
    .await;
    org.resync().await.expect("first pass");
    let projects = org.sim.ado.project_ids();
    for id in org.sim.ado.work_item_ids(&projects[2]).into_iter().take(20) {
        org.sim.ado.remove_work_item(id);
    }
    let before = org.catalog_ids("workItem");
    let report = org.resync().await.expect("the listing itself succeeded");
    let work_items = blueprint_deletion(&report, "workItem");
    assert_eq!(
        work_items["decision"]["decision"], "kept_over_threshold",
        "{work_items}"
    );
    assert_eq!(work_items["stale"], 20);
    assert_eq!(work_items["owned"], before.len());
    assert_eq!(org.catalog_ids("workItem"), before);
}

#[tokio::test]
async fn a_bad_pat_fails_the_pass_with_a_credentials_error_and_deletes_nothing() {
    let ado = AdoSimOptions {
        pat: Some("the-right-pat".into()),
        ..Default::default()
    };
    let org = Setup {
        ado,
        ..Default::default()
    }
    .start()
    .await;
    let failed = org.resync().await.expect_err("a wrong PAT fails");
    let report = &failed.0;
    // One clear stop, before any kind starts listing, instead of one error per kind.
    let Some(StopReason::AdoCredentials { error }) = &report.stopped else {
        panic!("{:?}", report.stopped);
    };
    // The sign-in page answer, kept as its status and the request it answered.
    assert_eq!(error.status(), Some(203), "{error}");
    assert!(
        error
            .route()
            .is_some_and(|r| r.path.ends_with("/_apis/projects")),
        "{error:?}"
    );
    assert!(report.kinds.iter().all(|k| k.stopped && k.errors == 0));
    assert_eq!(
        org.sim.ado.total_requests(),
        1,
        "only the project list was asked for: {:?}",
        org.sim.ado.request_counts()
    );
    assert!(org.catalog_ids("project").is_empty());
    assert_eq!(report.deletion, DeletionOutcome::SkippedIncomplete);
}

#[tokio::test]
async fn throttled_requests_are_retried_and_the_pass_completes() {
    let org = Setup::default().start().await;
    org.sim.ado.fail_requests("/_apis/pipelines", 429, Some(2));
    let report = org.resync().await.expect("the pass succeeds after waiting");
    assert_eq!(org.catalog_ids("pipeline").len(), 9);
    let counts = org.sim.ado.request_counts();
    let pipeline_calls: u64 = counts
        .iter()
        .filter(|(k, _)| k.contains("/_apis/pipelines"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        pipeline_calls,
        3 + 2,
        "one call per project plus the two throttled ones: {counts:?}"
    );
    assert_eq!(kind(&report, "pipeline")["errors"], 0);
}

#[tokio::test]
async fn excluded_tags_drop_a_project_from_every_kind() {
    let org = Setup {
        env: vec![("ADO_EXCLUDED_TAGS", "archived".into())],
        ..Default::default()
    }
    .start()
    .await;
    org.resync().await.expect("pass");
    let projects = org.sim.ado.project_ids();
    assert_eq!(org.catalog_ids("project").len(), projects.len() - 1);
    let kept: Vec<String> = org.catalog_ids("project").into_iter().collect();
    let excluded = projects.iter().find(|p| !kept.contains(p)).unwrap();
    assert!(
        org.catalog_ids("workItem")
            .iter()
            .all(|id| !id.starts_with(excluded.as_str()))
    );
    assert!(
        org.catalog_ids("pipeline")
            .iter()
            .all(|id| !id.starts_with(excluded.as_str()))
    );
}

#[tokio::test]
async fn the_shipped_default_mapping_syncs_all_29_kinds_into_every_shipped_blueprint() {
    let org = shipped_mapping_org().await;
    let report: Value = org.resync().await.expect("pass");
    let kinds = report["kinds"].as_array().expect("kinds");
    let names: std::collections::BTreeSet<&str> =
        kinds.iter().filter_map(|k| k["kind"].as_str()).collect();
    assert_eq!(names.len(), 29, "{names:?}");
    for k in kinds {
        assert_eq!(k["errors"], 0, "{k}");
        assert_eq!(k["field_warnings"], 0, "{k}");
        assert!(k["upserted"].as_u64().unwrap_or(0) > 0, "{k}");
    }
    let blueprints: Vec<Value> =
        serde_json::from_str(shared::tenant::DEFAULT_BLUEPRINTS).expect("blueprints.json");
    assert_eq!(blueprints.len(), 29);
    for bp in &blueprints {
        let id = bp["identifier"].as_str().unwrap();
        assert!(!org.catalog_ids(id).is_empty(), "{id} is empty");
    }
    assert_eq!(kind(&report, "project")["field_warnings"], 0, "{report}");
    // Blocks run concurrently; each still reports only the requests it sent, so they add up.
    let per_kind: u64 = kinds
        .iter()
        .filter_map(|k| k["ado_requests"].as_u64())
        .sum();
    assert!(per_kind > 0);
    // Plus the project list, read once before the blocks start (one page in this organisation).
    assert_eq!(
        Some(per_kind + 1),
        report["ado_requests"].as_u64(),
        "{report}"
    );
}

#[tokio::test]
async fn a_second_pass_of_the_shipped_mapping_writes_nothing_even_where_identifiers_repeat() {
    let org = shipped_mapping_org().await;
    let first: Value = org.resync().await.expect("first pass");
    // The peer's column identifier (type/name/project) is the same on every team's board of a project,
    // and a team's iterations repeat per team: such items come on different pages of one block.
    for k in ["column", "iteration"] {
        let r = kind(&first, k);
        assert!(r["duplicates"].as_u64().unwrap() > 0, "{k}: {r}");
        assert!(r["upserted"].as_u64().unwrap() > 0, "{k}: {r}");
    }
    let writes_before = catalog_writes(&org);
    let second: Value = org.resync().await.expect("second pass");
    let writes_after = catalog_writes(&org);
    for k in second["kinds"].as_array().unwrap() {
        assert_eq!(k["upserted"], 0, "{k}");
        assert_eq!(k["errors"], 0, "{k}");
    }
    assert_eq!(
        writes_after, writes_before,
        "no write request in the second pass"
    );
    // The kept entity is the first item of the pass, both times: the second pass found it unchanged.
    assert_eq!(
        kind(&second, "column")["duplicates"],
        kind(&first, "column")["duplicates"]
    );
}

#[tokio::test]
async fn the_shipped_default_mapping_syncs_planning_identity_wiki_and_content_kinds() {
    let org = shipped_mapping_org().await;
    let report: Value = org.resync().await.expect("pass");
    for (k, bp) in [
        ("team", "azureDevopsTeam"),
        ("member", "azureDevopsMember"),
        ("user", "azureDevopsUser"),
        ("group", "azureDevopsGroup"),
        ("group-member", "azureDevopsGroupMember"),
        ("board", "azureDevopsBoard"),
        ("column", "azureDevopsColumn"),
        ("iteration", "azureDevopsIteration"),
        ("area-path", "azureDevopsAreaPath"),
        ("wiki", "azureDevopsWikiPage"),
        ("file", "azureDevopsFile"),
        ("folder", "azureDevopsFolder"),
    ] {
        assert_eq!(kind(&report, k)["errors"], 0, "{k}: {report}");
        assert_eq!(kind(&report, k)["field_warnings"], 0, "{k}: {report}");
        assert!(!org.catalog_ids(bp).is_empty(), "{bp}");
    }
    let repo = org
        .catalog_ids("azureDevopsRepository")
        .into_iter()
        .filter_map(|id| org.catalog_entity("azureDevopsRepository", &id))
        .find(|e| e.title.as_ref().is_some_and(|t| t == "Platform"))
        .expect("the Platform repository");
    assert!(
        repo.properties.unwrap()["readme"]
            .as_str()
            .is_some_and(|r| r.starts_with("# Platform")),
        "README from includedFiles"
    );
}

#[tokio::test]
async fn with_a_webhook_url_the_resync_function_also_creates_the_subscriptions() {
    let org = Setup::default().start().await;
    let vars = std::collections::HashMap::from([
        ("WEBHOOK_URL", "https://hooks.example.test/webhook"),
        ("WEBHOOK_SECRET", "s3cret"),
        ("INTEGRATION_IDENTIFIER", "e2e"),
    ]);
    let subs = shared::ado::hooks::SubscriptionSettings::from_lookup_if_set(|k| {
        vars.get(k).map(|v| v.to_string())
    })
    .unwrap()
    .expect("live events configured");
    let event = lambda_runtime::LambdaEvent::new(
        serde_json::from_str(crate::helpers::SCHEDULED_EVENT).unwrap(),
        lambda_runtime::Context::default(),
    );
    resync_function::handle_with(&org.runtime, Some(&subs), event)
        .await
        .expect("pass");
    let created: u64 = org
        .sim
        .ado
        .request_counts()
        .iter()
        .filter(|(k, _)| k.starts_with("POST") && k.contains("hooks/subscriptions"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        created >= 20,
        "one subscription per supported event: {created}"
    );
    assert!(
        !org.catalog_ids("workItem").is_empty(),
        "and the resync ran"
    );
}

/// A hang guard far beyond what any of these passes needs: a pass that does not end within it is the bug.
const PASS_BOUND: std::time::Duration = std::time::Duration::from_secs(180);

#[tokio::test]
async fn a_catalog_outage_mid_pass_ends_the_pass_with_its_report_and_deletes_nothing() {
    // Enough work items that the lister is many pages ahead when the first write fails: it used to wait
    // for room in the page queue forever once the writer had given up.
    let mut spec = sim::ado::OrgSpec::small();
    spec.work_items_per_project = vec![3000, 10];
    let org = Setup {
        spec,
        ..Default::default()
    }
    .start()
    .await;
    org.sim.catalog.fail_requests("/bulk", 503, None);

    let failed = tokio::time::timeout(PASS_BOUND, org.resync())
        .await
        .expect("the pass ends")
        .expect_err("the pass reports failure");
    let report = &failed.0;
    let Some(StopReason::CatalogUnavailable { error }) = &report.stopped else {
        panic!("{:?}", report.stopped);
    };
    let cause = error.catalog().expect("a catalog error");
    assert_eq!(cause.status(), Some(503), "{error}");
    assert!(cause.is_transient(), "{error:?}");
    assert!(!report.succeeded() && !report.incomplete());
    assert_eq!(report.deletion, DeletionOutcome::SkippedIncomplete);
    let wi = report.kinds.iter().find(|k| k.kind == "work-item").unwrap();
    assert!(wi.stopped, "{wi:?}");
    assert!(
        wi.items_read < 9010,
        "the listing stopped with the writes: {wi:?}"
    );
    assert!(
        failed.0.render().contains("the catalog is unavailable"),
        "{}",
        failed.0.render()
    );
}

#[tokio::test]
async fn at_the_deadline_the_pass_stops_reports_itself_incomplete_and_deletes_nothing() {
    let org = Setup {
        ado: AdoSimOptions {
            // Every pass needs at least three requests one after another (the project list, a project's
            // WIQL, its work items): with this latency no pass can finish before the deadline below.
            latency: std::time::Duration::from_millis(250),
            ..Default::default()
        },
        ..Default::default()
    }
    .start()
    .await;
    org.resync().await.expect("first pass");
    let projects = org.sim.ado.project_ids();
    let gone_repo = org.sim.ado.repository_ids(&projects[0])[0].clone();
    org.sim.ado.remove_repository(&gone_repo);

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(400);
    let report = tokio::time::timeout(
        PASS_BOUND,
        org.runtime
            .resync_until(&shared::resync::Quiet, Some(deadline)),
    )
    .await
    .expect("the pass ends");
    assert_eq!(
        report.stopped,
        Some(StopReason::Deadline),
        "{}",
        report.render()
    );
    assert!(
        report.incomplete() && !report.succeeded(),
        "{}",
        report.render()
    );
    assert_eq!(report.deletion, DeletionOutcome::SkippedIncomplete);
    assert!(report.kinds.iter().any(|k| k.stopped));
    assert!(
        org.catalog_ids("repository").contains(&gone_repo),
        "an incomplete pass deletes nothing"
    );
    assert!(
        report.render().contains("incomplete"),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn entities_the_pass_rewrites_count_in_the_deletion_threshold() {
    // A search relation cannot be compared with the stored copy, so every repository is written again on
    // every pass. The threshold must still measure the one stale repository against all of them. (The
    // catalog resolves a search relation when it writes, so projects must be written first.)
    let mapping = crate::helpers::ALL_KINDS
        .replace(
            "entityDeletionThreshold: 0.9",
            "entityDeletionThreshold: 0.9\ncreateMissingRelatedEntities: false",
        )
        .replace(
        "            project: .project.id",
        "            project:\n              combinator: '\"and\"'\n              rules:\n                - property: '\"$identifier\"'\n                  operator: '\"=\"'\n                  value: .project.id",
    );
    assert_ne!(mapping, crate::helpers::ALL_KINDS);
    let org = Setup {
        mapping: &mapping,
        ..Default::default()
    }
    .start()
    .await;
    org.resync().await.expect("first pass");
    let projects = org.sim.ado.project_ids();
    let gone_repo = org.sim.ado.repository_ids(&projects[0])[0].clone();
    org.sim.ado.remove_repository(&gone_repo);
    let owned_before = org.catalog_ids("repository").len();

    let report = org.resync().await.expect("second pass");
    let repositories = blueprint_deletion(&report, "repository");
    assert_eq!(repositories["owned"], owned_before, "{repositories}");
    assert_eq!(repositories["stale"], 1, "{repositories}");
    assert_eq!(repositories["decision"]["decision"], "deleted");
    assert!(!org.catalog_ids("repository").contains(&gone_repo));
}

/// Every stored entity with its last update: equal before and after means nothing was written.
fn catalog_state(org: &TestOrg) -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = org
        .sim
        .catalog
        .store()
        .list(None)
        .unwrap()
        .into_iter()
        .map(|e| (e.blueprint, e.identifier, e.updated_at.to_rfc3339()))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_predicts_exactly_what_the_next_pass_does() {
    use shared::resync::preview::PreviewCatalog;
    use shared::resync::{self, Quiet, ResyncPorts};

    let org = Setup::default().start().await;
    org.resync().await.expect("first pass");
    // Something to change, to delete and to create.
    let projects = org.sim.ado.project_ids();
    let items = org.sim.ado.work_item_ids(&projects[0]);
    let fields = serde_json::json!({ "System.Title": "Renamed by the test" });
    assert!(
        org.sim
            .ado
            .update_work_item(items[0], fields.as_object().unwrap().clone())
    );
    assert!(org.sim.ado.remove_work_item(items[1]));
    let gone_repo = org.sim.ado.repository_ids(&projects[1])[0].clone();
    assert!(org.sim.ado.remove_repository(&gone_repo));
    let recreated = org.sim.ado.repository_ids(&projects[0])[0].clone();
    let removed = org
        .sim
        .catalog
        .store()
        .delete("repository", std::slice::from_ref(&recreated), false)
        .unwrap();
    assert_eq!(removed, std::slice::from_ref(&recreated));
    let before = catalog_state(&org);
    let writes_before = catalog_writes(&org);

    let (report, preview) = org.runtime.preview_until(&Quiet, None).await;

    assert!(report.succeeded(), "{}", report.render());
    assert_eq!(catalog_state(&org), before, "a dry run writes nothing");
    assert_eq!(catalog_writes(&org), writes_before);
    let work_items = &preview.blueprints["workItem"];
    assert_eq!(
        (work_items.change, work_items.delete),
        (1, 1),
        "{preview:?}"
    );
    let renamed = format!("{}/{}", projects[0], items[0]);
    assert!(
        work_items.examples.change[&renamed]
            .iter()
            .any(|f| f.after == "Renamed by the test"),
        "{preview:?}"
    );
    let repositories = &preview.blueprints["repository"];
    assert_eq!(repositories.examples.create, [recreated]);
    assert_eq!(repositories.examples.delete, [gone_repo]);

    // The real pass, recorded the same way while it writes: the preview said exactly this.
    let recording = PreviewCatalog::recording(std::sync::Arc::clone(&org.runtime.catalog));
    let ports = ResyncPorts {
        catalog: &recording,
        ..org.runtime.resync_ports()
    };
    let real = resync::run(ports, &Quiet, None).await;
    assert!(real.succeeded(), "{}", real.render());
    assert_eq!(recording.preview(), preview);
    assert_ne!(catalog_state(&org), before);

    let (_, after) = org.runtime.preview_until(&Quiet, None).await;
    assert!(!after.changes_anything(), "{}", after.render());
}

#[tokio::test]
async fn the_integration_record_shows_the_sync_state_running_then_completed_or_failed() {
    let org = Setup {
        mapping: shared::tenant::DEFAULT_MAPPING,
        env: vec![("INITIALIZE_PORT_RESOURCES", "true".into())],
        ..Default::default()
    }
    .start()
    .await;
    let state = |org: &TestOrg| -> Value {
        org.sim
            .catalog
            .store()
            .integration("e2e")
            .unwrap()
            .expect("the record")["resyncState"]
            .clone()
    };
    org.resync().await.expect("a clean pass");
    let done = state(&org);
    assert_eq!(done["status"], "completed", "{done}");
    let (start, end) = (
        done["lastResyncStart"].as_str().unwrap(),
        done["lastResyncEnd"].as_str().unwrap(),
    );
    assert!(start <= end, "{done}");
    assert_eq!(
        org.catalog_requests("resync-state"),
        2,
        "running, then completed"
    );

    org.sim.ado.fail_requests("/_apis/projects", 401, None);
    org.resync()
        .await
        .expect_err("refused credentials fail the pass");
    let failed = state(&org);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["lastResyncStart"].as_str().unwrap() > start);
}
