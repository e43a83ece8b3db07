//! Live events end to end on real parts: a delivery through the webhook's use case into a FIFO queue on
//! the local SQS server (moto), received like the event source mapping does, through the processor
//! function's handler, into the catalog server.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use shared::queue::QueueConsumer;
use shared::webhook::{WebhookSettings, accept};

use crate::helpers::{Setup, TestOrg, as_sqs_record, failed_ids};
use crate::moto::{FifoPair, fifo_pair};

const UPDATED: &str = include_str!("../../../events/ado/workitem.updated.json");
const DELETED: &str = include_str!("../../../events/ado/workitem.deleted.json");

fn settings() -> WebhookSettings {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("WEBHOOK_USERNAME", "ado"),
        ("WEBHOOK_SECRET", "webhook-secret"),
    ]);
    WebhookSettings::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap()
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
    );
    h
}

/// The sample delivery, pointed at a work item of the simulated organisation.
fn delivery(sample: &str, event_id: &str, project: &str, work_item: u64) -> Vec<u8> {
    let mut d: Value = serde_json::from_str(sample).unwrap();
    d["id"] = json!(event_id);
    d["resourceContainers"]["project"]["id"] = json!(project);
    let r = &mut d["resource"];
    if r.get("workItemId").is_some() {
        r["workItemId"] = json!(work_item);
        r["revision"]["id"] = json!(work_item);
    } else {
        r["id"] = json!(work_item);
    }
    serde_json::to_vec(&d).unwrap()
}

/// One poll of the event source mapping: receive a batch, invoke the processor, delete what succeeded and
/// make the failures visible again (as Lambda does for reported batch item failures).
async fn pump(org: &TestOrg, pair: &FifoPair) -> (usize, usize) {
    let batch = pair.main.receive(10, Duration::from_secs(1)).await.unwrap();
    if batch.is_empty() {
        return (0, 0);
    }
    let mut event = SqsEvent::default();
    event.records = batch.iter().map(as_sqs_record).collect();
    let failed = failed_ids(&org.process(event).await);
    for m in &batch {
        if failed.contains(&m.message_id) {
            pair.main.release(&m.receipt, Duration::ZERO).await.unwrap();
        } else {
            pair.main.ack(&m.receipt).await.unwrap();
        }
    }
    (batch.len(), failed.len())
}

async fn queued(pair: &FifoPair, url: &str) -> u64 {
    let attrs = pair
        .client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_forged_or_credential_less_delivery_is_rejected_and_nothing_is_enqueued() {
    let org = Setup::default().start().await;
    let pair = fifo_pair(3).await;
    let project = org.sim.ado.project_ids()[0].clone();
    let id = org.sim.ado.work_item_ids(&project)[0];
    let body = delivery(UPDATED, "evt-forged", &project, id);
    let forged = accept(&settings(), &pair.main, &basic("ado", "guess"), &body).await;
    let bare = accept(&settings(), &pair.main, &HeaderMap::new(), &body).await;
    let wrong_user = accept(
        &settings(),
        &pair.main,
        &basic("someone", "webhook-secret"),
        &body,
    )
    .await;
    assert_eq!(
        (
            forged.status().as_u16(),
            bare.status().as_u16(),
            wrong_user.status().as_u16()
        ),
        (401, 401, 401)
    );
    assert_eq!(queued(&pair, &pair.main_url).await, 0);
}

#[tokio::test]
async fn a_work_item_change_flows_from_webhook_through_sqs_to_the_catalog_once_even_when_delivered_twice()
 {
    let org = Setup::default().start().await;
    org.resync().await.expect("initial pass");
    let pair = fifo_pair(3).await;
    let project = org.sim.ado.project_ids()[0].clone();
    let id = org.sim.ado.work_item_ids(&project)[0];
    let mut fields = serde_json::Map::new();
    fields.insert("System.Title".into(), json!("Changed live"));
    assert!(org.sim.ado.update_work_item(id, fields));

    let body = delivery(UPDATED, "evt-dup", &project, id);
    let first = accept(
        &settings(),
        &pair.main,
        &basic("ado", "webhook-secret"),
        &body,
    )
    .await;
    let again = accept(
        &settings(),
        &pair.main,
        &basic("ado", "webhook-secret"),
        &body,
    )
    .await;
    assert_eq!(
        (first.status().as_u16(), again.status().as_u16()),
        (202, 202),
        "{} {}",
        first.body(),
        again.body()
    );
    let writes_before = org.catalog_requests("bulk");

    let (received, failed) = pump(&org, &pair).await;
    assert_eq!(
        (received, failed),
        (1, 0),
        "the redelivery collapsed into one message"
    );
    assert_eq!(pump(&org, &pair).await, (0, 0));
    let entity = org
        .catalog_entity("workItem", &format!("{project}/{id}"))
        .unwrap();
    assert_eq!(entity.title, Some(json!("Changed live")));
    assert_eq!(
        org.catalog_requests("bulk") - writes_before,
        1,
        "one catalog write"
    );
}

#[tokio::test]
async fn a_deleted_work_item_is_removed_from_the_catalog_through_the_queue() {
    let org = Setup::default().start().await;
    org.resync().await.expect("initial pass");
    let pair = fifo_pair(3).await;
    let project = org.sim.ado.project_ids()[1].clone();
    let id = org.sim.ado.work_item_ids(&project)[3];
    let key = format!("{project}/{id}");
    assert!(org.catalog_ids("workItem").contains(&key));
    org.sim.ado.remove_work_item(id);
    let out = accept(
        &settings(),
        &pair.main,
        &basic("ado", "webhook-secret"),
        &delivery(DELETED, "evt-del", &project, id),
    )
    .await;
    assert_eq!(out.status().as_u16(), 202, "{}", out.body());
    assert_eq!(pump(&org, &pair).await, (1, 0));
    assert!(!org.catalog_ids("workItem").contains(&key));
}

#[tokio::test]
async fn a_catalog_outage_fails_records_transiently_and_they_succeed_on_redelivery() {
    let org = Setup::default().start().await;
    let pair = fifo_pair(5).await;
    let project = org.sim.ado.project_ids()[0].clone();
    let id = org.sim.ado.work_item_ids(&project)[1];
    let out = accept(
        &settings(),
        &pair.main,
        &basic("ado", "webhook-secret"),
        &delivery(UPDATED, "evt-outage", &project, id),
    )
    .await;
    assert_eq!(out.status().as_u16(), 202);
    org.sim.catalog.fail_requests("/v1/", 503, None);
    assert_eq!(pump(&org, &pair).await, (1, 1));
    org.sim.catalog.clear_faults();
    assert_eq!(pump(&org, &pair).await, (1, 0));
    assert!(
        org.catalog_ids("workItem")
            .contains(&format!("{project}/{id}"))
    );
}

#[tokio::test]
async fn a_poison_record_lands_in_the_dead_letter_queue_after_the_configured_receives() {
    let org = Setup::default().start().await;
    let pair = fifo_pair(2).await;
    pair.client
        .send_message()
        .queue_url(&pair.main_url)
        .message_body("{not a change message")
        .message_group_id("poison")
        .message_deduplication_id("poison-1")
        .send()
        .await
        .unwrap();
    // Each receive fails it; on the receive after maxReceiveCount SQS moves it to the dead letters.
    let mut failures = 0;
    for _ in 0..4 {
        let (_, failed) = pump(&org, &pair).await;
        failures += failed;
    }
    assert_eq!(failures, 2);
    assert_eq!(queued(&pair, &pair.main_url).await, 0);
    assert_eq!(queued(&pair, &pair.dlq_url).await, 1);
}

/// Receives until the queue is empty: (received, failed).
async fn drain(org: &TestOrg, pair: &FifoPair) -> (usize, usize) {
    let mut total = (0, 0);
    // Bounded: each round takes at least one message, and the tests queue a handful.
    for _ in 0..20 {
        match pump(org, pair).await {
            (0, _) => return total,
            (r, f) => total = (total.0 + r, total.1 + f),
        }
    }
    panic!("the queue did not drain: {total:?}");
}

#[tokio::test]
async fn events_whose_ids_differ_only_in_spaces_or_accents_are_all_delivered() {
    let org = Setup::default().start().await;
    let pair = fifo_pair(3).await;
    let project = org.sim.ado.project_ids()[0].clone();
    let items = org.sim.ado.work_item_ids(&project);
    // Each pair collapsed into one deduplication id when it was the event id minus what SQS refuses.
    let event_ids = ["a b", "ab", "é-1", "è-1"];
    for (event_id, id) in event_ids.iter().zip(&items) {
        let mut fields = serde_json::Map::new();
        fields.insert("System.Title".into(), json!(format!("event {event_id}")));
        assert!(org.sim.ado.update_work_item(*id, fields));
        let out = accept(
            &settings(),
            &pair.main,
            &basic("ado", "webhook-secret"),
            &delivery(UPDATED, event_id, &project, *id),
        )
        .await;
        assert_eq!(out.body()["status"], "queued", "{event_id}: {}", out.body());
    }

    assert_eq!(drain(&org, &pair).await, (event_ids.len(), 0));
    for (event_id, id) in event_ids.iter().zip(&items) {
        let entity = org
            .catalog_entity("workItem", &format!("{project}/{id}"))
            .unwrap_or_else(|| panic!("the change of event {event_id:?} was dropped"));
        assert_eq!(entity.title, Some(json!(format!("event {event_id}"))));
    }
}

#[tokio::test]
async fn a_work_item_delivery_without_a_project_reaches_the_entity_of_the_item_s_project() {
    let org = Setup::default().start().await;
    let pair = fifo_pair(3).await;
    let project = org.sim.ado.project_ids()[1].clone();
    let id = org.sim.ado.work_item_ids(&project)[0];
    let mut fields = serde_json::Map::new();
    fields.insert("System.Title".into(), json!("no project in the event"));
    assert!(org.sim.ado.update_work_item(id, fields));
    let mut body: Value =
        serde_json::from_slice(&delivery(UPDATED, "evt-no-project", &project, id)).unwrap();
    body["resourceContainers"]
        .as_object_mut()
        .unwrap()
        .remove("project");

    let out = accept(
        &settings(),
        &pair.main,
        &basic("ado", "webhook-secret"),
        &serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(out.body()["status"], "queued", "{}", out.body());
    assert_eq!(drain(&org, &pair).await, (1, 0));

    let entity = org
        .catalog_entity("workItem", &format!("{project}/{id}"))
        .expect("written under the item's own project");
    assert_eq!(entity.title, Some(json!("no project in the event")));
    assert_eq!(queued(&pair, &pair.dlq_url).await, 0);
}
