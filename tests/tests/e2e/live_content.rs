//! Live updates for repository content: a push re-reads the file and folder entities of the pushed
//! branch, and repository events keep `__includedFiles`.

use serde_json::json;
use shared::queue::message::{Change, RefUpdate};

use crate::helpers::{Setup, TestOrg, message_of, sqs_event};

const UPDATED: &str = include_str!("../../../events/processor/work-item-updated.json");

const CONTENT: &str = r#"
resources:
  - kind: repository
    selector:
      query: 'true'
      includedFiles: [README.md]
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"repository"'
          properties:
            readme: .__includedFiles["README.md"]
  - kind: file
    selector:
      query: 'true'
      files:
        path: package.json
    port:
      entity:
        mappings:
          identifier: .repo.id + "/" + .file.path
          title: .file.path
          blueprint: '"file"'
          properties:
            version: .file.content.parsed.version
  - kind: folder
    selector:
      query: 'true'
      folders:
        - path: services/*
          repos:
            - name: api-gateway
              branch: develop
    port:
      entity:
        mappings:
          identifier: .__repository.id + "@" + .__branch + ":" + .path
          title: .path
          blueprint: '"folder"'
"#;

fn push(org: &TestOrg, repo_id: &str, branch: &str) -> shared::queue::message::ChangeMessage {
    let mut m = message_of(&sqs_event(UPDATED).records[0]);
    m.event_type = "git.push".into();
    m.project_id = Some(org.sim.ado.project_ids()[0].parse().unwrap());
    m.change = Change::Push {
        repository_id: repo_id.parse().unwrap(),
        ref_updates: vec![RefUpdate {
            name: format!("refs/heads/{branch}"),
            old_object_id: "1".repeat(40),
            new_object_id: "2".repeat(40),
        }],
    };
    m
}

#[tokio::test]
async fn a_push_to_the_default_branch_refreshes_files_and_one_to_a_folder_branch_its_folders() {
    let org = Setup {
        mapping: CONTENT,
        ..Setup::default()
    }
    .start()
    .await;
    let project = org.sim.ado.project_ids()[0].clone();
    let repos = org.sim.ado.repository_ids(&project);
    // The small org's first project: the repository named after it, then api-gateway.
    let (platform, gateway) = (&repos[0], &repos[1]);
    let default = if org.sim.ado.file_paths(platform, "main").is_empty() {
        "master"
    } else {
        "main"
    };
    org.sim.ado.write_file(
        platform,
        default,
        "package.json",
        "{\"version\": \"9.9.9\"}",
    );

    let applied = org
        .runtime
        .apply(&push(&org, platform, default))
        .await
        .unwrap();
    assert_eq!(applied.kinds, ["repository", "file"]);
    let file = org
        .catalog_entity("file", &format!("{platform}/package.json"))
        .expect("the file entity is written live");
    assert_eq!(file.properties.unwrap()["version"], json!("9.9.9"));
    let repo = org.catalog_entity("repository", platform).unwrap();
    assert!(
        repo.properties.unwrap()["readme"]
            .as_str()
            .is_some_and(|r| r.starts_with("# Platform")),
        "a live repository read keeps __includedFiles"
    );

    // A branch no file or folder block reads: only the repository is refreshed.
    let other = org
        .runtime
        .apply(&push(&org, platform, "develop"))
        .await
        .unwrap();
    assert_eq!(other.kinds, ["repository"]);

    let folders = org
        .runtime
        .apply(&push(&org, gateway, "develop"))
        .await
        .unwrap();
    assert_eq!(folders.kinds, ["repository", "folder"]);
    for s in ["api", "worker", "beta"] {
        assert!(
            org.catalog_entity("folder", &format!("{gateway}@develop:/services/{s}"))
                .is_some(),
            "{s}"
        );
    }
}
