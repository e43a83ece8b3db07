//! Kinds of agile planning, identities, wikis and repository content, against the simulator: paging
//! past one page, each selector option, and the enrichment fields the peer's mappings read.

use std::collections::BTreeSet;

use serde_json::Value;
use shared::ado::AdoError;
use sim::ado::OrgSpec;

use crate::kinds_proof::{context, fetch};

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

async fn list(sim: &sim::RunningSim, kind: &str, options: &str) -> Vec<Value> {
    fetch(&context(sim), kind, options)
        .await
        .expect("listing succeeds")
}

fn requests(sim: &sim::RunningSim, route: &str) -> u64 {
    sim.ado
        .request_counts()
        .iter()
        .filter(|(k, _)| k.ends_with(route))
        .map(|(_, v)| v)
        .sum()
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[tokio::test]
async fn teams_past_one_page_are_all_listed_with_area_paths_and_iterations() {
    let sim = start(OrgSpec {
        projects: 1,
        teams_per_project: 120,
        ..OrgSpec::small()
    })
    .await;
    let teams = list(&sim, "team", "      includeAreaPaths: true\n").await;
    assert_eq!(teams.len(), 120);
    assert_eq!(
        requests(&sim, "/_apis/projects/{projectId}/teams"),
        2,
        "100 + 20"
    );
    let ids: BTreeSet<&str> = teams.iter().map(|t| str_of(t, "/id")).collect();
    assert_eq!(ids.len(), 120);
    assert!(teams.iter().all(|t| t.get("__members").is_none()));
    assert_eq!(
        str_of(&teams[0], "/__areaPaths/field/referenceName"),
        "System.AreaPath"
    );
    assert_eq!(
        str_of(&teams[1], "/__areaPaths/defaultValue"),
        "Platform\\Frontend"
    );

    // The default team follows all 12 sprints, the others 6: every team's iterations, none dropped.
    let iterations = list(&sim, "iteration", "").await;
    assert_eq!(iterations.len(), 12 + 119 * 6);
    assert!(
        iterations
            .iter()
            .all(|i| i["__team"]["projectId"] == i["__project"]["id"])
    );
    let current: Vec<&Value> = iterations
        .iter()
        .filter(|i| i["attributes"]["timeFrame"] == "current")
        .collect();
    assert_eq!(current.len(), 120);
    assert!(current.iter().all(|i| i["path"] == "Platform\\Sprint 10"));
}

#[tokio::test]
async fn members_page_past_one_page_per_team_and_carry_their_team() {
    let sim = start(OrgSpec {
        projects: 2,
        teams_per_project: 1,
        users: 250,
        ..OrgSpec::small()
    })
    .await;
    let members = list(&sim, "member", "").await;
    assert_eq!(members.len(), 2 * 250);
    let teams: BTreeSet<&str> = members.iter().map(|m| str_of(m, "/__teamId")).collect();
    assert_eq!(teams.len(), 2);
    assert!(
        members
            .iter()
            .all(|m| str_of(m, "/identity/uniqueName").ends_with("@simorg.example"))
    );
    assert_eq!(
        requests(&sim, "/teams/{teamId}/members"),
        2 * 3,
        "100 + 100 + 50 per team"
    );

    let teams = list(&sim, "team", "      includeMembers: true\n").await;
    assert!(
        teams
            .iter()
            .all(|t| t["__members"].as_array().unwrap().len() == 250)
    );
    assert!(teams.iter().all(|t| t.get("__areaPaths").is_none()));
}

#[tokio::test]
async fn boards_are_read_once_per_pass_and_columns_come_from_them() {
    let sim = start(OrgSpec::small()).await;
    let ctx = context(&sim);
    let boards = fetch(&ctx, "board", "").await.unwrap();
    // 2 teams per project; Agile projects have 3 boards, the Basic one 2.
    assert_eq!(boards.len(), 2 * (3 + 3 + 2));
    assert!(boards.iter().all(|b| b["__project"]["id"].is_string()
        && b["__team"]["id"].is_string()
        && b["columns"].as_array().is_some_and(|c| !c.is_empty())));
    let detail_reads = requests(&sim, "/_apis/work/boards/{board}");
    assert_eq!(detail_reads, boards.len() as u64);

    let columns = fetch(&ctx, "column", "").await.unwrap();
    assert_eq!(
        requests(&sim, "/_apis/work/boards/{board}"),
        detail_reads,
        "the column kind reuses the boards"
    );
    // Agile: Epics 4 + Features 4 + Stories 4 × 2 types; Basic: 3 + 3; per team.
    assert_eq!(columns.len(), 2 * (16 + 16 + 6));
    let bug_new = columns
        .iter()
        .find(|c| c["__stateType"] == "Bug" && c["name"] == "New")
        .expect("a Bug column");
    assert_eq!(bug_new["__stateName"], "New");
    assert_eq!(bug_new["__board"]["name"], "Stories");
    assert!(bug_new["__board"]["__project"]["id"].is_string());
}

#[tokio::test]
async fn area_paths_follow_the_depth_option() {
    let sim = start(OrgSpec::small()).await;
    let root_only = list(&sim, "area-path", "").await;
    assert_eq!(root_only.len(), 3);
    let one = list(&sim, "area-path", "      depth: 1\n").await;
    assert_eq!(one.len(), 3 * 4);
    let all = list(&sim, "area-path", "      depth: 5\n").await;
    assert_eq!(all.len(), 3 * 7);
    let web = all
        .iter()
        .find(|a| a["__normalizedPath"] == "Platform\\Frontend\\Web")
        .expect("a nested area");
    let frontend = all
        .iter()
        .find(|a| a["__normalizedPath"] == "Platform\\Frontend")
        .unwrap();
    assert_eq!(web["__parentIdentifier"], frontend["identifier"]);
    assert!(
        all.iter()
            .all(|a| a.get("children").is_none() && a["__project"]["id"].is_string())
    );
    let root = all
        .iter()
        .find(|a| a["__normalizedPath"] == "Platform")
        .unwrap();
    assert_eq!(root["__parentIdentifier"], Value::Null);
}

#[tokio::test]
async fn users_come_from_entitlements_or_the_graph_with_every_page() {
    let sim = start(OrgSpec {
        users: 250,
        ..OrgSpec::small()
    })
    .await;
    let entitled = list(&sim, "user", "").await;
    assert_eq!(entitled.len(), 250);
    assert_eq!(
        requests(&sim, "/_apis/userentitlements"),
        3,
        "body-token pages of 100"
    );
    assert!(
        entitled
            .iter()
            .all(|u| u["accessLevel"]["licenseDisplayName"].is_string()
                && u["user"]["descriptor"].is_string())
    );

    let licences = list(&sim, "user", "      includeFields: [license]\n").await;
    assert!(
        licences
            .iter()
            .all(|u| u.get("accessLevel").is_some() && u.get("projectEntitlements").is_none())
    );

    let legacy = list(&sim, "user", "      apiVersion: '6.0-preview.3'\n").await;
    assert_eq!(legacy.len(), 250, "top/skip paging for releases before 7.0");

    let graph = list(&sim, "user", "      source: graph\n").await;
    assert_eq!(graph.len(), 250);
    assert!(
        graph
            .iter()
            .all(|u| u["subjectKind"] == "user" && u.get("__groups").is_none())
    );
    let msa = list(
        &sim,
        "user",
        "      source: graph\n      subjectTypes: [msa]\n",
    )
    .await;
    assert_eq!(msa.len(), 25);
    assert!(msa.iter().all(|u| u["origin"] == "msa"));

    let with_groups = list(
        &sim,
        "user",
        "      source: graph\n      subjectTypes: [aad]\n      includeGroupMemberships: true\n",
    )
    .await;
    let ada = with_groups
        .iter()
        .find(|u| u["displayName"] == "Ada Lovelace")
        .unwrap();
    let groups: BTreeSet<&str> = ada["__groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| str_of(g, "/principalName"))
        .collect();
    assert!(groups.contains("[Platform]\\Contributors"), "{groups:?}");
    assert!(groups.contains("[simorg]\\Project Collection Administrators"));
    assert_eq!(
        ada["__projects"],
        serde_json::json!(["Legacy Tools", "Mobile App", "Platform"]),
        "collection groups name no project"
    );
}

#[tokio::test]
async fn group_members_are_resolved_in_lookups_of_at_most_500() {
    let sim = start(OrgSpec {
        users: 600,
        ..OrgSpec::small()
    })
    .await;
    let groups = list(&sim, "group", "").await;
    assert_eq!(groups.len(), 3 * 4 + 1);
    let members = list(&sim, "group-member", "").await;
    let contributors = members
        .iter()
        .filter(|m| m["__group"]["principalName"] == "[Platform]\\Contributors")
        .count();
    assert_eq!(contributors, 600);
    assert!(
        members
            .iter()
            .all(|m| m["subjectKind"] == "user" && m["__group"]["descriptor"].is_string())
    );
    // Per project: admins 1, contributors 2 (600 > 500), readers 1, team 1; plus the collection admins.
    assert_eq!(requests(&sim, "/_apis/graph/subjectlookup"), 3 * 5 + 1);
}

#[tokio::test]
async fn on_services_a_404_from_graph_is_an_error_not_a_missing_service() {
    // The simulator says `hosted` in connectionData: Graph exists there (Server is in server.rs).
    let sim = start(OrgSpec::small()).await;
    sim.ado.fail_requests("/_apis/graph/users", 404, None);
    let err = fetch(&context(&sim), "user", "      source: graph\n")
        .await
        .unwrap_err();
    assert!(matches!(err, AdoError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn wiki_pages_follow_the_header_token_type_filter_and_content_option() {
    let sim = start(OrgSpec {
        wiki_pages: 130,
        ..OrgSpec::small()
    })
    .await;
    let pages = list(&sim, "wiki", "").await;
    assert_eq!(
        pages.len(),
        3 * 130 + 3,
        "project wikis past one batch, plus the code wiki"
    );
    assert_eq!(requests(&sim, "/pagesbatch"), 3 * 2 + 1);
    assert!(pages.iter().all(|p| p["__project"]["id"].is_string()
        && p["__wiki"]["__project"]["id"] == p["__project"]["id"]
        && p.get("content").is_none()));

    let project_only = list(&sim, "wiki", "      wikiType: projectWiki\n").await;
    assert_eq!(project_only.len(), 3 * 130);
    let code = list(
        &sim,
        "wiki",
        "      wikiType: codeWiki\n      includeContent: true\n",
    )
    .await;
    assert_eq!(code.len(), 3);
    assert!(code.iter().all(|p| p["__wiki"]["type"] == "codeWiki"
        && p["content"].as_str().is_some_and(|c| c.starts_with("# "))));
}

#[tokio::test]
async fn repositories_carry_included_files_from_their_default_branch() {
    let sim = start(OrgSpec::small()).await;
    let repos = list(
        &sim,
        "repository",
        "      includedFiles: [README.md, CODEOWNERS]\n",
    )
    .await;
    assert_eq!(repos.len(), 9);
    for r in &repos {
        let files = &r["__includedFiles"];
        let readme = files["README.md"].as_str().unwrap();
        let readable = r["defaultBranch"].is_string() && r["isDisabled"] == false;
        assert_eq!(readme.starts_with("# "), readable, "{}", r["name"]);
        assert!(files["CODEOWNERS"].is_string(), "missing files are \"\"");
    }
    let with_owners = repos
        .iter()
        .filter(|r| {
            !r["__includedFiles"]["CODEOWNERS"]
                .as_str()
                .unwrap()
                .is_empty()
        })
        .count();
    assert!(with_owners > 0 && with_owners < repos.len());
}

#[tokio::test]
async fn files_match_paths_and_globs_parse_content_and_skip_oversized_ones() {
    let sim = start(OrgSpec::small()).await;
    let files = list(
        &sim,
        "file",
        "      files:\n        path: [package.json, 'services/*/port.yml', 'config/*.{yaml,json}', 'assets/**']\n      includedFiles: [README.md]\n",
    )
    .await;
    let paths: BTreeSet<&str> = files.iter().map(|f| str_of(f, "/file/path")).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "package.json",
            "services/api/port.yml",
            "services/worker/port.yml",
            "config/app.yaml",
            "config/settings.json",
        ]),
        "the 1.2 MiB assets/big.json is skipped; develop-only folders are not on the default branch"
    );
    // 3 projects × 3 repos, minus the disabled one and the empty one.
    assert_eq!(files.len(), 7 * 5);
    let pkg = files
        .iter()
        .find(|f| f["file"]["path"] == "package.json")
        .unwrap();
    assert_eq!(pkg["file"]["content"]["parsed"]["private"], true);
    assert_eq!(pkg["file"]["extension"], "json");
    assert_eq!(
        pkg["__includedFiles"]["README.md"]
            .as_str()
            .unwrap()
            .lines()
            .next(),
        Some(format!("# {}", pkg["repo"]["name"].as_str().unwrap())).as_deref()
    );
    let app = files
        .iter()
        .find(|f| f["file"]["path"] == "config/app.yaml")
        .unwrap();
    assert_eq!(
        app["file"]["content"]["parsed"].as_array().map(Vec::len),
        Some(2),
        "two YAML documents"
    );
    let port = files
        .iter()
        .find(|f| f["file"]["path"] == "services/api/port.yml")
        .unwrap();
    assert_eq!(port["file"]["content"]["parsed"]["title"], "api");
    assert_eq!(
        port["__includedFiles"]["README.md"], "# api\n",
        "relative to the file's folder"
    );

    let one_repo = list(
        &sim,
        "file",
        "      files:\n        path: '**/README.md'\n        repos: [Platform]\n",
    )
    .await;
    let paths: BTreeSet<&str> = one_repo.iter().map(|f| str_of(f, "/file/path")).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "README.md",
            "services/api/README.md",
            "services/worker/README.md"
        ])
    );
    assert!(one_repo.iter().all(|f| f["repo"]["name"] == "Platform"));
}

#[tokio::test]
async fn folders_are_listed_on_the_configured_branch() {
    let sim = start(OrgSpec::small()).await;
    let folders = list(
        &sim,
        "folder",
        "      project_name: Platform\n      folders:\n        - path: services/*\n          repos:\n            - name: api-gateway\n              branch: develop\n        - path: services/*\n      includedFiles: [package.json]\n",
    )
    .await;
    let on = |repo: &str| -> BTreeSet<(String, String)> {
        folders
            .iter()
            .filter(|f| f["__repository"]["name"] == repo)
            .map(|f| {
                (
                    str_of(f, "/path").to_owned(),
                    str_of(f, "/__branch").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        on("api-gateway"),
        ["api", "worker", "beta"]
            .iter()
            .map(|s| (format!("/services/{s}"), "develop".to_owned()))
            .collect(),
        "the develop branch has a beta service"
    );
    let platform = on("Platform");
    assert_eq!(platform.len(), 2, "{platform:?}");
    assert!(platform.iter().all(|(_, b)| b == "main" || b == "master"));
    assert!(folders.iter().all(|f| {
        f["__pattern"] == "services/*"
            && f["__repository"]["project"]["name"] == "Platform"
            && f["__includedFiles"]["package.json"]
                .as_str()
                .is_some_and(|c| c.contains("\"private\""))
    }));
    assert!(
        requests(
            &sim,
            "/{project}/_apis/git/repositories/{repositoryId}/items"
        ) > 0
    );
}
