//! The shipped default mapping over the CI/CD and per-repository kinds, and their live updates through
//! `sync::apply`: a completed build, a stage change, release events, an alert and a push.

use serde_json::Value;
use shared::queue::message::{Change, ChangeMessage, MESSAGE_VERSION, RefUpdate};

use crate::helpers::{Setup, TestOrg, kind};

/// Blueprints of this family in the shipped default mapping, with their kinds.
const FAMILY: &[(&str, &str)] = &[
    ("repository-policy", "azureDevopsRepositoryPolicy"),
    ("branch", "azureDevopsBranch"),
    ("build", "azureDevopsBuild"),
    ("pipeline-run", "azureDevopsPipelineRun"),
    ("pipeline-stage", "azureDevopsPipelineStage"),
    ("environment", "azureDevopsEnvironment"),
    ("pipeline-deployment", "azureDevopsPipelineDeployment"),
    ("release-definition", "azureDevopsReleaseDefinition"),
    ("release", "azureDevopsRelease"),
    ("release-deployment", "azureDevopsReleaseDeployment"),
    ("test-run", "azureDevopsTestRun"),
    ("advanced-security-alert", "azureDevopsSecurityAlert"),
];

async fn default_org() -> TestOrg {
    Setup {
        mapping: shared::tenant::DEFAULT_MAPPING,
        ..Default::default()
    }
    .start()
    .await
}

fn message(org: &TestOrg, event_type: &str, change: Change) -> ChangeMessage {
    ChangeMessage {
        version: MESSAGE_VERSION,
        event_id: format!("e-{event_type}"),
        event_type: event_type.into(),
        publisher_id: "tfs".into(),
        subscription_id: None,
        created_date: None,
        project_id: Some(org.sim.ado.project_ids()[0].parse().unwrap()),
        base_url: None,
        change,
    }
}

fn prop<'a>(e: &'a shared::catalog::Entity, key: &str) -> &'a Value {
    &e.properties.as_ref().expect("properties")[key]
}

fn relation<'a>(e: &'a shared::catalog::Entity, key: &str) -> &'a Value {
    &e.relations.as_ref().expect("relations")[key]
}

#[tokio::test]
async fn the_default_mapping_fills_every_ci_cd_blueprint_of_the_small_org() {
    let org = default_org().await;
    let report: Value = org.resync().await.expect("the pass succeeds");
    for (k, bp) in FAMILY {
        assert_eq!(kind(&report, k)["errors"], 0, "{k}: {report}");
        assert!(!org.catalog_ids(bp).is_empty(), "{bp} is empty");
    }
    // Relations resolve to the entities the other kinds wrote.
    let builds = org.catalog_ids("azureDevopsBuild");
    let stage_id = org
        .catalog_ids("azureDevopsPipelineStage")
        .into_iter()
        .next()
        .unwrap();
    let stage = org
        .catalog_entity("azureDevopsPipelineStage", &stage_id)
        .unwrap();
    assert!(builds.contains(relation(&stage, "build").as_str().unwrap()));
    let any_build = builds.iter().next().unwrap();
    let build = org.catalog_entity("azureDevopsBuild", any_build).unwrap();
    assert!(
        prop(&build, "commitCount").as_u64().unwrap() >= 1,
        "{build:?}"
    );
}

#[tokio::test]
async fn a_completed_build_refreshes_its_build_run_stages_and_test_runs() {
    let org = default_org().await;
    let project = org.sim.ado.project_ids()[0].clone();
    // Pipeline 1 of the first project; its builds are 1..=3 (three builds per pipeline).
    let msg = message(
        &org,
        "build.complete",
        Change::Build {
            build_id: 2,
            definition_id: Some(1),
        },
    );
    let before = org.sim.ado.request_counts();
    let applied = org.runtime.apply(&msg).await.unwrap();
    for k in [
        "pipeline",
        "build",
        "pipeline-run",
        "pipeline-stage",
        "test-run",
    ] {
        assert!(applied.kinds.iter().any(|x| x == k), "{k}: {applied:?}");
    }
    // The six kinds one build refreshes share their reads: the project and the build once each.
    let after = org.sim.ado.request_counts();
    let made = |route: &str| after.get(route).unwrap_or(&0) - before.get(route).unwrap_or(&0);
    assert_eq!(made("GET /_apis/projects/{projectId}"), 1, "{after:?}");
    assert_eq!(
        made("GET /{project}/_apis/build/builds/{buildId}"),
        1,
        "{after:?}"
    );
    let key = format!("{project}/2");
    let build = org
        .catalog_entity("azureDevopsBuild", &key)
        .expect("build upserted");
    assert_eq!(prop(&build, "status"), "completed");
    assert!(prop(&build, "firstCommitTime").is_string());
    assert!(org.catalog_entity("azureDevopsPipelineRun", &key).is_some());
    let stages: Vec<String> = org
        .catalog_ids("azureDevopsPipelineStage")
        .into_iter()
        .filter(|s| s.starts_with(&format!("{key}/")))
        .collect();
    assert_eq!(stages.len(), 3, "Build, Test and Deploy");
    assert!(
        org.catalog_entity("azureDevopsTestRun", &format!("{project}/21"))
            .is_some()
    );
    // The resync writes the same entities: nothing changes on the next pass for them.
    org.resync().await.expect("pass");
    let again = org.catalog_entity("azureDevopsBuild", &key).unwrap();
    assert_eq!(again.properties, build.properties);

    // A stage event refreshes only that stage.
    let stage_id = stages[0].rsplit('/').next().unwrap().to_owned();
    let msg = message(
        &org,
        "ms.vss-pipelines.stage-state-changed-event",
        Change::PipelineRun {
            pipeline_id: Some(1),
            run_id: Some(2),
            stage_id: Some(stage_id.parse().unwrap()),
            completed: false,
        },
    );
    let applied = org.runtime.apply(&msg).await.unwrap();
    // pipeline, pipeline-run, one stage, build, the deployment record.
    assert_eq!(applied.upserted, 5, "{applied:?}");
}

#[tokio::test]
async fn release_events_refresh_the_release_its_definition_and_its_deployment() {
    let org = default_org().await;
    let project = org.sim.ado.project_ids()[0].clone();
    let created = message(
        &org,
        "ms.vss-release.release-created-event",
        Change::Release {
            release_id: 3,
            definition_id: None,
        },
    );
    let applied = org.runtime.apply(&created).await.unwrap();
    assert_eq!(applied.kinds, ["release", "release-definition"]);
    let release = org
        .catalog_entity("azureDevopsRelease", &format!("{project}/3"))
        .expect("release upserted");
    assert_eq!(
        relation(&release, "definition"),
        format!("{project}/1").as_str()
    );
    assert!(
        org.catalog_entity("azureDevopsReleaseDefinition", &format!("{project}/1"))
            .is_some()
    );

    let deployed = message(
        &org,
        "ms.vss-release.deployment-completed-event",
        Change::ReleaseDeployment {
            release_id: 3,
            definition_environment_id: Some(12),
            deployment_id: None,
        },
    );
    let applied = org.runtime.apply(&deployed).await.unwrap();
    assert_eq!(applied.kinds, ["release", "release-deployment"]);
    // Release 3's deployment to Prod (definition 1, environment 2).
    let d = org
        .catalog_entity("azureDevopsReleaseDeployment", &format!("{project}/32"))
        .expect("the release's own deployment, not another release's");
    assert_eq!(prop(&d, "environment"), "Prod");
}

#[tokio::test]
async fn an_alert_event_upserts_the_alert_and_one_outside_the_criteria_is_removed() {
    let org = default_org().await;
    org.resync().await.expect("pass");
    let some = org
        .catalog_ids("azureDevopsSecurityAlert")
        .into_iter()
        .next()
        .unwrap();
    let (repo, alert) = some.split_once('/').unwrap();
    let msg = message(
        &org,
        "ms.vss-alerts.alert-updated-event",
        Change::SecurityAlert {
            repository_id: repo.parse().unwrap(),
            alert_id: alert.parse().unwrap(),
        },
    );
    let mut msg = msg;
    // The alert's own project (alerts of every project are in the catalog).
    let owner = org
        .sim
        .ado
        .project_ids()
        .into_iter()
        .find(|p| org.sim.ado.repository_ids(p).iter().any(|r| r == repo));
    msg.project_id = owner.map(|p| p.parse().unwrap());
    let applied = org.runtime.apply(&msg).await.unwrap();
    assert_eq!(applied.kinds, ["advanced-security-alert"]);
    assert_eq!(applied.upserted, 1, "{applied:?}");

    // A mapping whose criteria leave the alert out deletes it.
    let narrow = shared::tenant::DEFAULT_MAPPING.replace(
        "states: [active, dismissed, fixed]",
        "states: [autoDismissed]",
    );
    let runtime = crate::helpers::runtime_for(&org.sim, &narrow, &[]);
    let applied = runtime.apply(&msg).await.unwrap();
    assert_eq!(applied.deleted, 1, "{applied:?}");
    assert!(!org.catalog_ids("azureDevopsSecurityAlert").contains(&some));
}

#[tokio::test]
async fn a_push_creates_moves_and_deletes_branches_and_still_refreshes_the_repository() {
    let org = default_org().await;
    let project = org.sim.ado.project_ids()[0].clone();
    let repo = org.sim.ado.repository_ids(&project)[0].clone();
    let sha = |c: char| std::iter::repeat_n(c, 40).collect::<String>();
    let msg = message(
        &org,
        "git.push",
        Change::Push {
            repository_id: repo.parse().unwrap(),
            ref_updates: vec![
                RefUpdate {
                    name: "refs/heads/feature/new".into(),
                    old_object_id: sha('0'),
                    new_object_id: sha('a'),
                },
                RefUpdate {
                    name: "refs/tags/v1".into(),
                    old_object_id: sha('0'),
                    new_object_id: sha('b'),
                },
            ],
        },
    );
    let applied = org.runtime.apply(&msg).await.unwrap();
    assert_eq!(applied.kinds, ["repository", "branch"]);
    assert_eq!(
        applied.upserted, 2,
        "the repository and one branch (tags are not branches)"
    );
    let key = format!("{repo}/feature/new");
    let branch = org.catalog_entity("azureDevopsBranch", &key).unwrap();
    assert_eq!(prop(&branch, "objectId"), sha('a').as_str());

    let mut gone = msg.clone();
    gone.event_id = "e-delete".into();
    gone.change = Change::Push {
        repository_id: repo.parse().unwrap(),
        ref_updates: vec![RefUpdate {
            name: "refs/heads/feature/new".into(),
            old_object_id: sha('a'),
            new_object_id: sha('0'),
        }],
    };
    let applied = org.runtime.apply(&gone).await.unwrap();
    assert_eq!(applied.deleted, 1, "{applied:?}");
    assert!(org.catalog_entity("azureDevopsBranch", &key).is_none());
}
