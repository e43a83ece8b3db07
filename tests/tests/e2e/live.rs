//! Live changes through the processor function: queued messages re-read from the simulator and applied
//! to the catalog server, with the SQS partial-batch and FIFO rules.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use shared::queue::memory::MemoryQueue;
use shared::queue::message::{Change, ChangeMessage};
use shared::sync::Applied;
use shared::webhook::{WebhookSettings, accept};

use crate::helpers::{Setup, TestOrg, failed_ids, kind, message_of, set_message, sqs_event};

const UPDATED: &str = include_str!("../../../events/processor/work-item-updated.json");
const DELETED: &str = include_str!("../../../events/processor/work-item-deleted.json");
const POISON: &str = include_str!("../../../events/processor/batch-with-poison.json");
const SAME_GROUP: &str = include_str!("../../../events/processor/same-group.json");
const WORKITEM_DELIVERY: &str = include_str!("../../../events/ado/workitem.updated.json");

/// The first project of `OrgSpec::small()`: the samples' `projectId` (its work items are 1..=40).
const PROJECT: &str = "d62500d5-4fe9-4aa4-8a90-dd4f31d222d9";
/// The third project, tagged `archived` (work items 66..=125).
const ARCHIVED_PROJECT: &str = "43bc48ea-5db6-4d43-bffe-640ceb280836";

const SELECTIVE: &str = r#"
resources:
  - kind: work-item
    selector:
      query: '.fields."System.State" != "Closed"'
    port:
      entity:
        mappings:
          identifier: .__project.id + "/" + (.id | tostring)
          title: .fields."System.Title"
          blueprint: '"workItem"'
          properties:
            state: .fields."System.State"
"#;

async fn start() -> TestOrg {
    let org = Setup::default().start().await;
    assert_eq!(
        org.sim.ado.project_ids()[0],
        PROJECT,
        "the samples in events/processor name the small org's first project"
    );
    org
}

fn fields(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

fn work_item_key(id: u64) -> String {
    format!("{PROJECT}/{id}")
}

fn title(org: &TestOrg, id: u64) -> Option<Value> {
    org.catalog_entity("workItem", &work_item_key(id))
        .and_then(|e| e.title)
}

/// The sample update message, for another work item.
fn update_of(id: u64) -> shared::queue::message::ChangeMessage {
    let mut m = message_of(&sqs_event(UPDATED).records[0]);
    m.change = Change::WorkItem {
        id,
        deleted: false,
        snapshot: None,
    };
    m
}

#[tokio::test]
async fn a_work_item_update_through_the_processor_reaches_the_catalog() {
    let org = start().await;
    org.sim.ado.update_work_item(
        7,
        fields(&[
            ("System.Title", "Renamed live"),
            ("System.State", "Resolved"),
        ]),
    );

    let response = org.process(sqs_event(UPDATED)).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let entity = org.catalog_entity("workItem", &work_item_key(7)).unwrap();
    assert_eq!(entity.title, Some(json!("Renamed live")));
    let properties = entity.properties.unwrap();
    assert_eq!(properties["state"], json!("Resolved"));
    assert_eq!(
        properties["project"].as_str().map(str::is_empty),
        Some(false),
        "enriched with __project like the resync"
    );
}

#[tokio::test]
async fn the_same_message_applied_twice_changes_the_catalog_once() {
    let org = start().await;
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.Title", "Once")]));
    let message = message_of(&sqs_event(UPDATED).records[0]);

    let first = org.runtime.apply(&message).await.unwrap();
    let after_first = org.catalog_entity("workItem", &work_item_key(7));
    let second = org.runtime.apply(&message).await.unwrap();
    let after_second = org.catalog_entity("workItem", &work_item_key(7));

    assert_eq!(
        first,
        Applied {
            kinds: vec!["work-item".into()],
            upserted: 1,
            deleted: 0,
            skipped: 0
        }
    );
    assert_eq!(second, first);
    assert_eq!(after_second, after_first);
    assert_eq!(org.catalog_ids("workItem").len(), 1);
}

#[tokio::test]
async fn updates_applied_out_of_order_leave_the_catalog_equal_to_the_simulator() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.Title", "rev 2")]));
    let mut rev2 = update_of(7);
    rev2.event_id = "rev-2".into();
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.Title", "rev 3")]));
    let mut rev3 = update_of(7);
    rev3.event_id = "rev-3".into();

    org.runtime.apply(&rev3).await.unwrap();
    org.runtime.apply(&rev2).await.unwrap();

    assert_eq!(title(&org, 7), Some(json!("rev 3")));
    // The live write is exactly what a resync writes: the next pass finds nothing to change.
    let report = org.resync().await.expect("second pass");
    let work_items = kind(&report, "work-item");
    assert_eq!(work_items["upserted"], 0, "{work_items}");
}

#[tokio::test]
async fn a_deleted_work_item_is_removed_under_the_identifier_the_resync_wrote() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let before = org.catalog_ids("workItem");
    assert!(before.contains(&work_item_key(12)));
    assert!(org.sim.ado.remove_work_item(12));

    let response = org.process(sqs_event(DELETED)).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let mut expected = before.clone();
    expected.remove(&work_item_key(12));
    assert_eq!(org.catalog_ids("workItem"), expected);
}

#[tokio::test]
async fn a_delete_without_a_snapshot_still_finds_the_entity() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    assert!(org.sim.ado.remove_work_item(13));
    let mut message = message_of(&sqs_event(DELETED).records[0]);
    message.change = Change::WorkItem {
        id: 13,
        deleted: true,
        snapshot: None,
    };

    let applied = org.runtime.apply(&message).await.unwrap();

    assert_eq!(applied.deleted, 1, "{applied:?}");
    assert!(org.catalog_entity("workItem", &work_item_key(13)).is_none());
}

#[tokio::test]
async fn a_delete_message_for_an_item_that_still_exists_keeps_it() {
    let org = start().await;
    org.sim
        .ado
        .update_work_item(12, fields(&[("System.Title", "restored")]));

    // Never trust the payload: the item was restored after the delete was queued.
    let response = org.process(sqs_event(DELETED)).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(title(&org, 12), Some(json!("restored")));
}

#[tokio::test]
async fn an_update_that_no_longer_passes_the_selector_deletes_the_entity() {
    let org = Setup {
        mapping: SELECTIVE,
        ..Default::default()
    }
    .start()
    .await;
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.State", "Active")]));
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    assert!(org.catalog_entity("workItem", &work_item_key(7)).is_some());
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.State", "Closed")]));

    let applied = org.runtime.apply(&update_of(7)).await.unwrap();

    assert_eq!(applied.upserted, 0);
    assert_eq!(applied.deleted, 1);
    assert!(org.catalog_entity("workItem", &work_item_key(7)).is_none());
}

#[tokio::test]
async fn a_catalog_outage_fails_the_record_until_it_is_redelivered() {
    let org = start().await;
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.Title", "after the outage")]));
    org.sim.catalog.fail_requests("/v1/blueprints", 503, None);
    let mut event = sqs_event(UPDATED);
    let message_id = event.records[0].message_id.clone().unwrap();

    let response = org.process(event.clone()).await;
    assert_eq!(failed_ids(&response), [message_id]);
    assert_eq!(title(&org, 7), None);

    org.sim.catalog.clear_faults();
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    let response = org.process(event).await;
    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(title(&org, 7), Some(json!("after the outage")));
}

#[tokio::test]
async fn a_poison_record_fails_alone_while_the_rest_of_the_batch_applies() {
    let org = start().await;
    let event = sqs_event(POISON);
    let poison = event.records[1].message_id.clone().unwrap();

    let response = org.process(event).await;

    assert_eq!(failed_ids(&response), [poison]);
    assert!(title(&org, 3).is_some());
    assert!(title(&org, 4).is_some());
}

#[tokio::test]
async fn records_of_one_group_apply_in_order() {
    let org = start().await;
    org.sim
        .ado
        .update_work_item(7, fields(&[("System.Title", "grouped")]));

    let response = org.process(sqs_event(SAME_GROUP)).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    assert_eq!(title(&org, 7), Some(json!("grouped")));
}

#[tokio::test]
async fn a_failed_record_fails_its_later_group_mates_but_not_other_groups() {
    let org = start().await;
    let mut event = sqs_event(SAME_GROUP);
    // A message this build cannot read fails permanently; its group mate must wait behind it.
    let mut first = message_of(&event.records[0]);
    first.version = 99;
    set_message(&mut event.records[0], &first);
    let other_group = sqs_event(POISON).records[0].clone();
    event.records.push(other_group);
    let ids: Vec<String> = event
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();

    let response = org.process(event).await;

    assert_eq!(failed_ids(&response), [ids[0].clone(), ids[1].clone()]);
    assert_eq!(
        title(&org, 7),
        None,
        "the later record of the failed group was not applied"
    );
    assert!(title(&org, 3).is_some(), "the other group proceeded");
}

#[tokio::test]
async fn a_change_in_a_project_with_an_excluded_tag_does_nothing() {
    let org = Setup {
        env: vec![("ADO_EXCLUDED_TAGS", "archived".into())],
        ..Default::default()
    }
    .start()
    .await;
    let mut message = update_of(70);
    message.project_id = Some(ARCHIVED_PROJECT.parse().unwrap());

    let applied = org.runtime.apply(&message).await.unwrap();

    assert_eq!(applied, Applied::default());
    assert!(org.catalog_ids("workItem").is_empty());
}

#[tokio::test]
async fn a_removed_repository_is_deleted_and_a_push_refreshes_a_live_one() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let repos = org.sim.ado.repository_ids(PROJECT);
    let mut message = update_of(1);

    message.event_type = "git.repo.deleted".into();
    message.change = Change::Repository {
        repository_id: repos[0].parse().unwrap(),
        deleted: true,
    };
    assert!(org.sim.ado.remove_repository(&repos[0]));
    let gone = org.runtime.apply(&message).await.unwrap();

    message.event_type = "git.push".into();
    message.change = Change::Push {
        repository_id: repos[1].parse().unwrap(),
        ref_updates: vec![],
    };
    let pushed = org.runtime.apply(&message).await.unwrap();

    assert_eq!(gone.deleted, 1, "{gone:?}");
    assert!(!org.catalog_ids("repository").contains(&repos[0]));
    assert_eq!(pushed.upserted, 1, "{pushed:?}");
    assert!(org.catalog_ids("repository").contains(&repos[1]));
}

#[tokio::test]
async fn a_completed_build_refreshes_its_pipeline() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let key = org
        .catalog_ids("pipeline")
        .into_iter()
        .find(|k| k.starts_with(PROJECT))
        .unwrap();
    let before = org.catalog_entity("pipeline", &key);
    let pipeline_id: u64 = key.rsplit('/').next().unwrap().parse().unwrap();
    let mut message = update_of(1);
    message.event_type = "build.complete".into();
    message.change = Change::Build {
        build_id: 500,
        definition_id: Some(pipeline_id),
    };

    let applied = org.runtime.apply(&message).await.unwrap();

    assert_eq!(applied.kinds, ["pipeline"]);
    assert_eq!(applied.upserted, 1);
    assert_eq!(org.catalog_entity("pipeline", &key), before);
}

/// The second project of the small org: its name has a space, so a lookup by name must escape it.
const SECOND_PROJECT_NAME: &str = "Mobile App";

/// A work item of the second project, and that project's id.
fn second_project_item(org: &TestOrg) -> (String, u64) {
    let project = org.sim.ado.project_ids()[1].clone();
    let id = org.sim.ado.work_item_ids(&project)[2];
    (project, id)
}

fn without_project(mut m: ChangeMessage) -> ChangeMessage {
    m.project_id = None;
    m
}

/// The ADO routes requested since the last call, as `"METHOD route-template"`.
fn routes_since(org: &TestOrg, before: &BTreeMap<String, u64>) -> BTreeSet<String> {
    org.sim
        .ado
        .request_counts()
        .into_iter()
        .filter(|(route, n)| before.get(route) != Some(n))
        .map(|(route, _)| route)
        .collect()
}

#[tokio::test]
async fn a_work_item_event_without_a_project_is_applied_under_the_project_the_item_names() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let (project, id) = second_project_item(&org);
    org.sim
        .ado
        .update_work_item(id, fields(&[("System.Title", "moved on")]));
    let before = org.sim.ado.request_counts();

    let mut event = sqs_event(UPDATED);
    set_message(&mut event.records[0], &without_project(update_of(id)));
    let response = org.process(event).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let key = format!("{project}/{id}");
    let entity = org.catalog_entity("workItem", &key).unwrap();
    assert_eq!(entity.title, Some(json!("moved on")));
    // Read once organisation-wide (no project in the path), its project found by the name it gives.
    let routes = routes_since(&org, &before);
    assert!(
        routes.contains("GET /_apis/wit/workitems/{id}"),
        "{routes:?}"
    );
    assert!(
        routes.contains("GET /_apis/projects/{projectId}"),
        "{routes:?}"
    );
    assert!(
        !routes.contains("GET /{project}/_apis/wit/workitems/{id}"),
        "the organisation-wide read is not repeated: {routes:?}"
    );
    // Exactly what the resync writes: the next pass changes nothing.
    let report = org.resync().await.expect("second pass");
    assert_eq!(kind(&report, "work-item")["upserted"], 0, "{report}");
}

#[tokio::test]
async fn a_deleted_work_item_without_a_project_is_removed_through_its_snapshot_s_project_name() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let (project, id) = second_project_item(&org);
    let key = format!("{project}/{id}");
    assert!(org.catalog_ids("workItem").contains(&key));
    assert!(org.sim.ado.remove_work_item(id));
    let mut message = without_project(message_of(&sqs_event(DELETED).records[0]));
    message.change = Change::WorkItem {
        id,
        deleted: true,
        snapshot: Some(json!({
            "id": id,
            "fields": {"System.TeamProject": SECOND_PROJECT_NAME, "System.Title": "gone"}
        })),
    };

    let applied = org.runtime.apply(&message).await.unwrap();

    assert_eq!(applied.deleted, 1, "{applied:?}");
    assert!(!org.catalog_ids("workItem").contains(&key));
}

#[tokio::test]
async fn a_vanished_work_item_that_names_no_project_is_left_to_the_resync() {
    let org = start().await;
    org.resync()
        .await
        .expect("the first pass fills the catalog");
    let (project, id) = second_project_item(&org);
    assert!(org.sim.ado.remove_work_item(id));
    let before = org.catalog_ids("workItem");

    // A message queued before the webhook required a project, for an item deleted since.
    let applied = org
        .runtime
        .apply(&without_project(update_of(id)))
        .await
        .unwrap();

    assert_eq!(applied, Applied::default());
    assert_eq!(
        org.catalog_ids("workItem"),
        before,
        "nothing is deleted on a guess"
    );
    assert!(before.contains(&format!("{project}/{id}")));
}

/// Values that would move a request elsewhere on the Azure DevOps host, or are not ids at all.
const HOSTILE: &[&str] = &[
    "../../_apis/projects?",
    "../../../_apis/hooks/subscriptions#",
    "d62500d5-4fe9-4aa4-8a90-dd4f31d222d9/../../x",
    "d62500d5-4fe9-4aa4-8a90-dd4f31d222d9%2F..%2F",
    "d62500d5 4fe9 4aa4 8a90 dd4f31d222d9",
    "d62500d5-4fe9-4aa4-8a90-dd4f31d222dé",
    "7?$expand=all",
    "7#",
    "٧",
];

#[tokio::test]
async fn queued_messages_with_hostile_ids_fail_before_any_request_to_azure_devops() {
    let org = start().await;
    let good = message_of(&sqs_event(UPDATED).records[0]);
    let good_body: Value = serde_json::to_value(&good).unwrap();
    let mut event = sqs_event(UPDATED);
    let template = event.records[0].clone();
    event.records.clear();
    let mut n = 0;
    let mut push = |body: Value| {
        let mut record = template.clone();
        n += 1;
        record.message_id = Some(format!("hostile-{n}"));
        record.body = Some(body.to_string());
        record
            .attributes
            .insert("MessageGroupId".into(), format!("g-{n}"));
        record
    };
    for bad in HOSTILE {
        let mut project = good_body.clone();
        project["projectId"] = json!(bad);
        event.records.push(push(project));
        let mut item = good_body.clone();
        item["change"]["id"] = json!(bad);
        event.records.push(push(item));
        let mut repo = good_body.clone();
        repo["change"] = json!({"type": "repository", "repository_id": bad, "deleted": false});
        event.records.push(push(repo));
        let mut alert = good_body.clone();
        alert["change"] = json!({"type": "security-alert", "repository_id": bad, "alert_id": 1});
        event.records.push(push(alert));
        let mut stage = good_body.clone();
        stage["change"] =
            json!({"type": "pipeline-run", "pipeline_id": 1, "run_id": 1, "stage_id": bad});
        event.records.push(push(stage));
    }
    let hostile = event.records.len();

    let response = org.process(event).await;

    assert_eq!(failed_ids(&response).len(), hostile);
    assert_eq!(
        org.sim.ado.request_counts(),
        BTreeMap::new(),
        "no request was sent for a message with a bad id"
    );
}

#[tokio::test]
async fn hostile_deliveries_are_refused_by_the_webhook_and_only_the_valid_one_reaches_azure_devops()
{
    let org = start().await;
    let queue = MemoryQueue::new();
    let settings = WebhookSettings::from_lookup(|k| match k {
        "WEBHOOK_USERNAME" => Some("ado".into()),
        "WEBHOOK_SECRET" => Some("webhook-secret".into()),
        _ => None,
    })
    .unwrap();
    let mut headers = HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode("ado:webhook-secret");
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
    );
    let mut valid: Value = serde_json::from_str(WORKITEM_DELIVERY).unwrap();
    valid["resourceContainers"]["project"]["id"] = json!(PROJECT);
    valid["resource"]["workItemId"] = json!(7);
    let mut deliveries = vec![valid.clone()];
    for bad in HOSTILE {
        for pointer in [
            "/resourceContainers/project/id",
            "/resource/workItemId",
            "/resource/revision/id",
        ] {
            let mut d = valid.clone();
            *d.pointer_mut(pointer).unwrap() = json!(bad);
            if pointer == "/resource/revision/id" {
                d["resource"]["workItemId"] = json!(0);
            }
            deliveries.push(d);
        }
    }

    let mut ignored = 0;
    for d in &deliveries {
        let out = accept(&settings, &queue, &headers, &serde_json::to_vec(d).unwrap()).await;
        assert_eq!(out.status().as_u16(), 202, "{}", out.body());
        if out.body()["status"] == "ignored" {
            assert_eq!(
                out.body()["reason"],
                "invalid-resource-id",
                "{}",
                out.body()
            );
            ignored += 1;
        }
    }
    assert_eq!(ignored, deliveries.len() - 1);
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    let mut event = sqs_event(UPDATED);
    set_message(&mut event.records[0], &sent[0]);
    let response = org.process(event).await;

    assert!(failed_ids(&response).is_empty(), "{response:?}");
    let routes: BTreeSet<String> = org.sim.ado.request_counts().into_keys().collect();
    assert_eq!(
        routes,
        BTreeSet::from([
            "GET /_apis/projects/{projectId}".to_owned(),
            "GET /{project}/_apis/wit/workitems/{id}".to_owned(),
        ])
    );
    assert!(title(&org, 7).is_some());
}
