//! The CI/CD and per-repository kinds against the simulator: paging past one page, every selector option,
//! and the peer's enrichment fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sim::ado::{CicdSpec, OrgSpec};

use crate::kinds::{list, try_list};

async fn start(spec: OrgSpec) -> sim::RunningSim {
    sim::start(
        "127.0.0.1:0".parse().unwrap(),
        spec,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap()
}

/// One project, three pipelines, `builds` builds each.
fn one_project(cicd: CicdSpec) -> OrgSpec {
    OrgSpec {
        projects: 1,
        repos_per_project: 3,
        work_items_per_project: vec![1],
        cicd,
        ..OrgSpec::small()
    }
}

fn requests(sim: &sim::RunningSim, route_ends_with: &str) -> u64 {
    sim.ado
        .request_counts()
        .iter()
        .filter(|(k, _)| k.ends_with(route_ends_with))
        .map(|(_, v)| v)
        .sum()
}

const Q: &str = "      query: 'true'";

#[tokio::test]
async fn builds_page_past_one_page_and_carry_their_first_commit() {
    let sim = start(one_project(CicdSpec {
        builds_per_pipeline: 40,
        ..CicdSpec::small()
    }))
    .await;
    let (builds, _) = list(&sim, "build", Q).await;
    assert_eq!(builds.len(), 120);
    assert_eq!(
        requests(&sim, "/_apis/build/builds"),
        2,
        "100 + 20 per page"
    );
    let project = &sim.ado.project_ids()[0];
    assert!(
        builds
            .iter()
            .all(|b| b["__projectId"] == project.as_str()
                && b["__project"]["id"] == project.as_str())
    );
    assert!(builds.iter().all(|b| b.get("__firstCommit").is_none()));

    let (enriched, _) = list(
        &sim,
        "build",
        &format!("{Q}\n      enrichWithFirstCommit: true"),
    )
    .await;
    assert_eq!(enriched.len(), 120);
    for b in &enriched {
        let first = &b["__firstCommit"];
        let id = b["id"].as_u64().unwrap();
        if id % 4 == 0 {
            // No changes: the build's source commit stands in for them.
            assert_eq!(first["__commitCount"], 1, "{b}");
            assert_eq!(first["__sha"], b["sourceVersion"]);
            assert_eq!(first["__timestamp"], first["committer"]["date"]);
        } else {
            let count = first["__commitCount"].as_u64().unwrap();
            assert!((1..=4).contains(&count), "{first}");
            assert_eq!(first["__sha"], first["id"]);
            assert_eq!(first["__timestamp"], first["timestamp"]);
        }
    }
    assert!(requests(&sim, "/changes") >= 120);
    assert_eq!(requests(&sim, "/commits/{commitId}"), 30);
}

#[tokio::test]
async fn pipeline_stages_and_runs_cover_every_build() {
    let sim = start(OrgSpec::small()).await;
    let (stages, _) = list(&sim, "pipeline-stage", Q).await;
    let (runs, _) = list(&sim, "pipeline-run", Q).await;
    let (builds, _) = list(&sim, "build", Q).await;
    // 3 projects x 3 pipelines x 3 builds; even pipelines have Build, Test and Deploy, odd ones two.
    assert_eq!(builds.len(), 27);
    assert_eq!(runs.len(), 27);
    assert_eq!(stages.len(), 3 * 3 * (3 + 2 + 3));
    assert!(stages.iter().all(|s| s["type"] == "Stage"
        && s["__build"]["id"].is_u64()
        && s["__project"]["id"] == s["__build"]["project"]["id"]));
    let build_ids: BTreeSet<u64> = builds.iter().map(|b| b["id"].as_u64().unwrap()).collect();
    let run_ids: BTreeSet<u64> = runs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(build_ids, run_ids, "a run is a build");
    assert!(runs.iter().all(
        |r| r["__pipeline"]["id"] == r["pipeline"]["id"] && r["__project"]["name"].is_string()
    ));
}

#[tokio::test]
async fn environments_and_their_deployment_records_page_with_top() {
    let sim = start(one_project(CicdSpec {
        builds_per_pipeline: 60,
        ..CicdSpec::small()
    }))
    .await;
    let (envs, _) = list(&sim, "environment", Q).await;
    assert_eq!(envs.len(), 2);
    assert!(envs.iter().all(|e| e["project"]["id"].is_string()));
    let (records, _) = list(&sim, "pipeline-deployment", Q).await;
    // Environment 0 takes the deploying pipelines 0 and 2 (120 records, two pages); environment 1 none.
    assert_eq!(records.len(), 120);
    assert_eq!(
        requests(&sim, "/environmentdeploymentrecords"),
        3,
        "two pages for environment 0, one empty answer for environment 1"
    );
    let project = &sim.ado.project_ids()[0];
    assert!(
        records
            .iter()
            .all(|r| r["__project"]["id"] == project.as_str()
                && r["__project"]["name"] == "Platform")
    );
    let ids: BTreeSet<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 120, "no record twice");
}

#[tokio::test]
async fn releases_follow_their_filters_and_page_by_token() {
    let sim = start(OrgSpec::small()).await;
    let (all, _) = list(&sim, "release", Q).await;
    assert_eq!(all.len(), 3 * 8);
    assert!(all.iter().all(|r| r.get("environments").is_none()));
    let (abandoned, _) = list(
        &sim,
        "release",
        &format!("{Q}\n      statusFilter: abandoned"),
    )
    .await;
    assert_eq!(abandoned.len(), 3);
    assert!(abandoned.iter().all(|r| r["status"] == "abandoned"));
    let (tagged, _) = list(
        &sim,
        "release",
        &format!("{Q}\n      tagFilter: [hotfix, nightly]"),
    )
    .await;
    assert!(tagged.iter().all(|r| r["id"].as_u64().unwrap() % 6 == 0));
    assert_eq!(tagged.len(), 3);
    let (expanded, _) = list(
        &sim,
        "release",
        &format!("{Q}\n      expand: environments\n      sourceBranchFilter: refs/heads/main"),
    )
    .await;
    assert_eq!(expanded.len(), 3 * 6, "ids 4 and 8 build release/1.0");
    assert!(
        expanded
            .iter()
            .all(|r| r["environments"].as_array().unwrap().len() == 2)
    );

    let (defs, _) = list(&sim, "release-definition", Q).await;
    assert_eq!(defs.len(), 3 * 2);
    assert!(
        defs.iter()
            .all(|d| d["environments"].is_array() && d["__project"]["id"].is_string())
    );
    let (backend, _) = list(
        &sim,
        "release-definition",
        &format!("{Q}\n      tagFilter: backend\n      expand: lastRelease"),
    )
    .await;
    assert_eq!(backend.len(), 3);
    assert!(
        backend
            .iter()
            .all(|d| d.get("environments").is_none() && d["lastRelease"]["id"].is_u64())
    );

    let (deployments, _) = list(&sim, "release-deployment", Q).await;
    // Drafts (id 5) never deploy; every other release deploys to Dev and Prod.
    assert_eq!(deployments.len(), 3 * 7 * 2);

    let big = start(one_project(CicdSpec {
        releases_per_project: 230,
        ..CicdSpec::small()
    }))
    .await;
    let (releases, _) = list(&big, "release", Q).await;
    let ids: BTreeSet<u64> = releases.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 230);
    assert_eq!(requests(&big, "/_apis/release/releases"), 3);
}

#[tokio::test]
async fn test_runs_carry_every_result_and_coverage_when_asked() {
    let sim = start(OrgSpec {
        pipelines_per_project: 1,
        cicd: CicdSpec {
            builds_per_pipeline: 2,
            test_results_per_run: 1_500,
            ..CicdSpec::small()
        },
        ..one_project(CicdSpec::small())
    })
    .await;
    let (runs, _) = list(&sim, "test-run", Q).await;
    // Two builds (the newest of pipeline 0 completes) and the manual run.
    assert_eq!(runs.len(), 3);
    for run in &runs {
        let results = run["__testResults"].as_array().unwrap();
        assert_eq!(
            results.len() as u64,
            run["totalTests"].as_u64().unwrap(),
            "{}",
            run["id"]
        );
        assert_eq!(run["__codeCoverage"], serde_json::json!({}));
    }
    let with_build: Vec<&Value> = runs.iter().filter(|r| r.get("build").is_some()).collect();
    assert!(
        with_build
            .iter()
            .all(|r| r["__testResults"].as_array().unwrap().len() == 1_500)
    );
    assert_eq!(
        requests(&sim, "/results"),
        2 * 2 + 1,
        "1,000 + 500 per build run"
    );

    let (bare, _) = list(
        &sim,
        "test-run",
        &format!("{Q}\n      includeResults: false\n      codeCoverage:\n        flags: 7"),
    )
    .await;
    for run in &bare {
        assert_eq!(run["__testResults"], serde_json::json!([]));
        if run.get("build").is_some() {
            assert!(
                run["__codeCoverage"]["coverageData"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
            );
        } else {
            assert_eq!(run["__codeCoverage"], serde_json::json!({}));
        }
    }
    let counts = sim.ado.request_counts();
    assert_eq!(requests(&sim, "/_apis/test/codecoverage"), 2, "{counts:?}");
}

#[tokio::test]
async fn test_runs_page_by_top_and_skip() {
    let sim = start(OrgSpec {
        pipelines_per_project: 2,
        cicd: CicdSpec {
            builds_per_pipeline: 60,
            test_results_per_run: 1,
            ..CicdSpec::small()
        },
        ..one_project(CicdSpec::small())
    })
    .await;
    let (runs, _) = list(
        &sim,
        "test-run",
        &format!("{Q}\n      includeResults: false"),
    )
    .await;
    assert_eq!(runs.len(), 121);
    assert_eq!(requests(&sim, "/_apis/test/runs"), 2);
}

#[tokio::test]
async fn policies_and_branches_of_healthy_repositories_name_their_repository() {
    let sim = start(OrgSpec::small()).await;
    let (policies, _) = list(&sim, "repository-policy", Q).await;
    assert!(!policies.is_empty());
    let types: BTreeSet<&str> = policies
        .iter()
        .map(|p| p["type"]["displayName"].as_str().unwrap())
        .collect();
    assert!(types.contains("Minimum number of reviewers") && types.contains("Work item linking"));
    for p in &policies {
        assert_eq!(
            p["settings"]["scope"][0]["repositoryId"],
            p["__repository"]["id"]
        );
        assert_eq!(
            p["settings"]["scope"][0]["refName"],
            p["__repository"]["defaultBranch"]
        );
    }
    // 8 healthy repositories, one of them empty: 7 carry policies.
    let repos: BTreeSet<&str> = policies
        .iter()
        .map(|p| p["__repository"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(repos.len(), 7);

    let (branches, _) = list(&sim, "branch", Q).await;
    let mut per_repo: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for b in &branches {
        assert_eq!(
            b["refName"].as_str().unwrap(),
            format!("refs/heads/{}", b["name"].as_str().unwrap())
        );
        assert_eq!(b["objectId"].as_str().unwrap().len(), 40);
        per_repo
            .entry(b["__repository"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(b);
    }
    assert_eq!(per_repo.len(), 7);
    for bs in per_repo.values() {
        let default = bs[0]["__repository"]["defaultBranch"].as_str().unwrap();
        assert!(bs.iter().any(|b| b["refName"] == default));
    }
}

#[tokio::test]
async fn security_alerts_follow_the_criteria_and_skip_repositories_without_advanced_security() {
    let sim = start(OrgSpec::small()).await;
    let (alerts, _) = list(&sim, "advanced-security-alert", Q).await;
    let repos: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["__repositoryId"].as_str().unwrap())
        .collect();
    assert!(
        !repos.is_empty() && repos.len() < 7,
        "some repos are not onboarded"
    );
    assert_eq!(alerts.len(), repos.len() * 3);
    assert!(
        alerts
            .iter()
            .all(|a| a["__projectId"].is_string() && a["alertId"].is_u64())
    );

    let (narrow, _) = list(
        &sim,
        "advanced-security-alert",
        &format!("{Q}\n      criteria:\n        states: [active]\n        severity: [high, critical]\n        alertType: secret"),
    )
    .await;
    assert!(narrow.len() < alerts.len());
    let expected = alerts
        .iter()
        .filter(|a| {
            a["state"] == "active"
                && (a["severity"] == "high" || a["severity"] == "critical")
                && a["alertType"] == "secret"
        })
        .count();
    assert_eq!(narrow.len(), expected);
}

#[tokio::test]
async fn on_services_a_404_from_advanced_security_is_an_error_not_a_missing_service() {
    // The simulator says `hosted` in connectionData: the API exists there, so a 404 under a repository
    // that still exists proves nothing and fails the kind (Server is in server.rs).
    let sim = start(OrgSpec::small()).await;
    sim.ado.fail_requests("/_apis/alert/", 404, None);
    let (result, items, _) = try_list(&sim, "advanced-security-alert", Q).await;
    let e = result.unwrap_err();
    assert!(!matches!(e, shared::ado::AdoError::NotAvailable(_)), "{e}");
    assert!(e.to_string().contains("404"), "{e}");
    assert!(items.is_empty());
    // A criteria value the API does not know is refused when the mapping is compiled, not mid-pass.
    let bad = shared::tenant::compile_mapping(
        &format!(
            "resources:\n  - kind: advanced-security-alert\n    selector:\n{Q}\n      criteria: {{states: [open]}}\n    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"x\"'\n"
        ),
        "test",
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("resources[0].selector.criteria") && bad.contains("\"open\""),
        "{bad}"
    );
}

#[tokio::test]
async fn pipelines_include_their_repository_when_asked() {
    let sim = start(OrgSpec::small()).await;
    let (plain, _) = list(&sim, "pipeline", Q).await;
    assert!(plain.iter().all(|p| p.get("__repository").is_none()));
    let (with_repo, _) = list(&sim, "pipeline", &format!("{Q}\n      includeRepo: true")).await;
    assert_eq!(with_repo.len(), plain.len());
    for p in &with_repo {
        assert_eq!(p["__repository"]["type"], "TfsGit", "{p}");
        assert_eq!(p["__repository"]["project"]["id"], p["__projectId"]);
    }
}
