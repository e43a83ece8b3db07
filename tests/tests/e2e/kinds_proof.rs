//! Deletion only on proof: a 404 on a listing under a parent the pass has just listed (a repository's
//! refs, a team's iterations, a build's timeline) fails the kind, so nothing of it is deleted; only when
//! the parent's own GET answers 404 are its children gone.

use futures::FutureExt;
use secrecy::SecretString;
use serde_json::Value;
use shared::ado::kinds::{self, FetchContext, PageSink};
use shared::ado::{AdoClient, AdoClientConfig, AdoError, OrgUrl};
use sim::ado::OrgSpec;

pub(crate) async fn start(spec: OrgSpec, opts: sim::ado::AdoSimOptions) -> sim::RunningSim {
    sim::start(
        "127.0.0.1:0".parse().unwrap(),
        spec,
        opts,
        Default::default(),
    )
    .await
    .unwrap()
}

async fn small() -> sim::RunningSim {
    start(OrgSpec::small(), Default::default()).await
}

pub(crate) fn context(sim: &sim::RunningSim) -> FetchContext {
    let mut cfg = AdoClientConfig::new(
        OrgUrl::parse(&sim.ado_org_url()).unwrap(),
        SecretString::from("pat".to_owned()),
    );
    cfg.max_retries = 0;
    FetchContext::new(AdoClient::new(cfg).unwrap(), Vec::new())
}

/// Lists one kind with the given selector options (YAML lines under `selector:`).
pub(crate) async fn fetch(
    ctx: &FetchContext,
    kind: &str,
    options: &str,
) -> Result<Vec<Value>, AdoError> {
    let mapping = format!(
        "resources:\n  - kind: {kind}\n    selector:\n      query: 'true'\n{options}    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"x\"'\n"
    );
    let config =
        shared::tenant::compile_mapping(&mapping, "test", false).expect("the selector is valid");
    let resource = config.resources()[0].clone();
    let source = kinds::find(kind).unwrap();
    let (sink, mut rx) = PageSink::channel(4);
    let run = async move {
        let r = source.fetch(ctx, &resource, &sink).await;
        drop(sink);
        r
    };
    let collect = async {
        let mut all = Vec::new();
        while let Some(page) = rx.recv().await {
            all.extend(page);
        }
        all
    };
    let (r, all) = tokio::join!(run.boxed(), collect);
    r.map(|_| all)
}

/// The kind's error when every request whose path contains `path_contains` answers 404.
async fn error_under_404(path_contains: &str, kind: &str, options: &str) -> AdoError {
    let sim = small().await;
    sim.ado.fail_requests(path_contains, 404, None);
    match fetch(&context(&sim), kind, options).await {
        Err(e) => e,
        Ok(items) => panic!(
            "{kind} succeeded with {} items under a 404 on {path_contains}: the pass would delete the rest",
            items.len()
        ),
    }
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_persistent_404_on_every_repositorys_refs_fails_the_branch_kind() {
    let e = error_under_404("/refs", "branch", "").await;
    assert!(e.to_string().contains("still exists"), "{e}");
}

#[tokio::test]
async fn branches_of_a_repository_deleted_after_the_listing_are_gone_and_the_others_are_listed() {
    let sim = small().await;
    let ctx = context(&sim);
    let before = fetch(&ctx, "branch", "").await.unwrap();
    let gone = str_of(&before[0], "/__repository/id").to_owned();
    // The pass has listed the repositories; the repository is deleted before its refs are read.
    let ctx = context(&sim);
    ctx.repositories().await.unwrap();
    assert!(sim.ado.remove_repository(&gone));
    let after = fetch(&ctx, "branch", "")
        .await
        .expect("a gone repository has no branches");
    assert!(after.iter().all(|b| str_of(b, "/__repository/id") != gone));
    let others = before
        .iter()
        .filter(|b| str_of(b, "/__repository/id") != gone)
        .count();
    assert_eq!(after.len(), others);
}

#[tokio::test]
async fn an_empty_repository_lists_no_branches_and_fails_nothing() {
    let sim = small().await;
    let ctx = context(&sim);
    let repos = ctx.repositories().await.unwrap();
    let empty: Vec<&str> = repos
        .iter()
        .filter(|r| r.get("defaultBranch").is_none() && r["isDisabled"] == false)
        .map(|r| str_of(r, "/id"))
        .collect();
    assert!(!empty.is_empty(), "the small org has an empty repository");
    let branches = fetch(&ctx, "branch", "").await.unwrap();
    assert!(!branches.is_empty());
    assert!(
        branches
            .iter()
            .all(|b| !empty.contains(&str_of(b, "/__repository/id")))
    );
    let refs: u64 = sim
        .ado
        .request_counts()
        .iter()
        .filter(|(k, _)| k.ends_with("/refs"))
        .map(|(_, n)| n)
        .sum();
    let healthy = repos.iter().filter(|r| r["isDisabled"] == false).count() as u64;
    assert_eq!(
        refs, healthy,
        "the empty repository is asked (and answers no refs)"
    );
}

#[tokio::test]
async fn a_persistent_404_on_deployment_records_fails_the_pipeline_deployment_kind() {
    error_under_404("environmentdeploymentrecords", "pipeline-deployment", "").await;
}

#[tokio::test]
async fn deployment_records_of_an_environment_deleted_after_the_listing_are_gone() {
    let sim = small().await;
    let all = fetch(&context(&sim), "pipeline-deployment", "")
        .await
        .unwrap();
    let envs = fetch(&context(&sim), "environment", "").await.unwrap();
    let env = &envs[0];
    let (project, id) = (str_of(env, "/project/id"), env["id"].to_string());
    // The environment's own GET and its records answer 404: it is gone.
    sim.ado
        .fail_requests(&format!("/environments/{id}?"), 404, None);
    sim.ado.fail_requests(
        &format!("/environments/{id}/environmentdeploymentrecords"),
        404,
        None,
    );
    let after = fetch(&context(&sim), "pipeline-deployment", "")
        .await
        .expect("a gone environment has no records");
    let of_env = |r: &&Value| {
        r.pointer("/environmentId").map(Value::to_string) == Some(id.clone())
            && str_of(r, "/__project/id") == project
    };
    assert!(
        all.iter().any(|r| of_env(&r)),
        "the environment had records"
    );
    assert!(!after.iter().any(|r| of_env(&r)));
    assert_eq!(after.len(), all.iter().filter(|r| !of_env(r)).count());
}

#[tokio::test]
async fn a_listed_project_whose_detail_answers_404_fails_the_project_kind() {
    error_under_404(
        "includeCapabilities",
        "project",
        "      defaultTeam: true\n",
    )
    .await;
}

#[tokio::test]
async fn a_persistent_404_on_group_memberships_fails_the_group_member_kind() {
    error_under_404("direction=down", "group-member", "").await;
}

#[tokio::test]
async fn a_persistent_404_on_user_memberships_fails_the_graph_user_kind() {
    error_under_404(
        "direction=up",
        "user",
        "      source: graph\n      includeGroupMemberships: true\n",
    )
    .await;
}

#[tokio::test]
async fn a_persistent_404_on_build_definitions_fails_pipelines_with_their_repository() {
    error_under_404(
        "/build/definitions/",
        "pipeline",
        "      includeRepo: true\n",
    )
    .await;
}

#[tokio::test]
async fn a_persistent_404_on_team_iterations_fails_the_iteration_kind() {
    error_under_404("teamsettings/iterations", "iteration", "").await;
}

#[tokio::test]
async fn iterations_of_a_team_deleted_after_the_listing_are_gone_and_the_others_are_listed() {
    let sim = small().await;
    let before = fetch(&context(&sim), "iteration", "").await.unwrap();
    let team = str_of(&before[0], "/__team/id").to_owned();
    sim.ado.fail_requests(&format!("/teams/{team}?"), 404, None);
    sim.ado.fail_requests(
        &format!("{team}/_apis/work/teamsettings/iterations"),
        404,
        None,
    );
    let after = fetch(&context(&sim), "iteration", "")
        .await
        .expect("a gone team has no iterations");
    assert!(after.iter().all(|i| str_of(i, "/__team/id") != team));
    let others = before
        .iter()
        .filter(|i| str_of(i, "/__team/id") != team)
        .count();
    assert_eq!(after.len(), others);
}

#[tokio::test]
async fn a_persistent_404_on_board_lists_or_details_fails_the_board_kind() {
    error_under_404("/_apis/work/boards?", "board", "").await;
    error_under_404("/_apis/work/boards/", "board", "").await;
    error_under_404("/_apis/work/boards/", "column", "").await;
}

#[tokio::test]
async fn a_persistent_404_on_team_field_values_fails_teams_with_area_paths() {
    error_under_404("teamfieldvalues", "team", "      includeAreaPaths: true\n").await;
}

#[tokio::test]
async fn a_persistent_404_on_wiki_listings_or_pages_fails_the_wiki_kind() {
    error_under_404("/_apis/wiki/wikis?", "wiki", "").await;
    error_under_404("/pages/", "wiki", "      includeContent: true\n").await;
}

#[tokio::test]
async fn a_persistent_404_on_build_timelines_fails_the_pipeline_stage_kind() {
    error_under_404("/timeline", "pipeline-stage", "").await;
}

#[tokio::test]
async fn a_persistent_404_on_pipeline_runs_fails_the_pipeline_run_kind() {
    error_under_404("/runs?", "pipeline-run", "").await;
}

#[tokio::test]
async fn a_persistent_404_on_build_changes_fails_builds_with_their_first_commit() {
    error_under_404("/changes", "build", "      enrichWithFirstCommit: true\n").await;
}

#[tokio::test]
async fn a_bare_404_on_repository_content_fails_file_folder_and_included_files() {
    let files = "      files: {path: ['*.json', README.md]}\n";
    error_under_404("/itemsbatch", "file", files).await;
    error_under_404("scopePath", "folder", "      folders: [{path: 'src/*'}]\n").await;
    error_under_404(
        "/items?",
        "repository",
        "      includedFiles: [README.md]\n",
    )
    .await;
}

#[tokio::test]
async fn paths_a_repository_does_not_have_are_definite_answers() {
    let sim = small().await;
    let ctx = context(&sim);
    // The repository answers TF401174 for a path it does not have: no file, and `""` in
    // `__includedFiles`, which is content of the item rather than a listing.
    let files = fetch(&ctx, "file", "      files: {path: [no/such/file.json]}\n")
        .await
        .unwrap();
    assert!(files.is_empty());
    let repos = fetch(
        &ctx,
        "repository",
        "      includedFiles: [NO-SUCH-FILE.md]\n",
    )
    .await
    .unwrap();
    assert!(!repos.is_empty());
    assert!(
        repos
            .iter()
            .all(|r| r["__includedFiles"]["NO-SUCH-FILE.md"] == "")
    );
    let folders = fetch(&ctx, "folder", "      folders: [{path: 'no-such-dir/*'}]\n")
        .await
        .unwrap();
    assert!(folders.is_empty());
}

#[tokio::test]
async fn files_of_a_repository_deleted_after_the_listing_are_gone_and_the_others_are_listed() {
    let sim = small().await;
    let options = "      files: {path: ['**/*.json']}\n";
    let before = fetch(&context(&sim), "file", options).await.unwrap();
    let gone = str_of(&before[0], "/repo/id").to_owned();
    let ctx = context(&sim);
    ctx.repositories().await.unwrap();
    assert!(sim.ado.remove_repository(&gone));
    let after = fetch(&ctx, "file", options)
        .await
        .expect("a gone repository has no files");
    assert!(after.iter().all(|f| str_of(f, "/repo/id") != gone));
    let others = before
        .iter()
        .filter(|f| str_of(f, "/repo/id") != gone)
        .count();
    assert_eq!(after.len(), others);
}
