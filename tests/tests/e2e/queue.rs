//! The SQS FIFO adapter and the dead-letter replay over the real SQS wire protocol, against moto.
//! moto forgets a dedup id once its message is deleted (SQS keeps it 5 minutes), so no test relies on
//! the dedup window after a delete.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use shared::queue::message::MESSAGE_VERSION;
use shared::queue::sqs::{SqsQueue, replay};
use shared::queue::{Change, ChangeMessage, Queue, QueueConsumer, QueueError, Received};

use crate::moto::{FifoPair, endpoint, fifo_pair, sqs_client};

const SHORT: Duration = Duration::from_secs(1);

fn work_item_update(event_id: &str, work_item: u64) -> ChangeMessage {
    ChangeMessage {
        version: MESSAGE_VERSION,
        event_id: event_id.into(),
        event_type: "workitem.updated".into(),
        publisher_id: "tfs".into(),
        subscription_id: Some("sub-1".into()),
        created_date: Some("2026-05-01T10:00:00Z".into()),
        project_id: Some("6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c".parse().unwrap()),
        base_url: Some("https://dev.azure.com/fabrikam/".into()),
        change: Change::WorkItem {
            id: work_item,
            deleted: false,
            snapshot: None,
        },
    }
}

fn parsed(r: &Received) -> ChangeMessage {
    serde_json::from_str(&r.body).expect("the body is a change message")
}

fn event_ids(rs: &[Received]) -> Vec<String> {
    rs.iter().map(|r| parsed(r).event_id).collect()
}

/// Receives until `n` messages came or a receive is empty (FIFO receives may return fewer than asked).
async fn receive_n(q: &SqsQueue, n: usize) -> Vec<Received> {
    let mut all = Vec::new();
    while all.len() < n {
        let got = q.receive(n - all.len(), SHORT).await.expect("receive");
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    all
}

async fn queue_count(pair: &FifoPair, url: &str, attribute: QueueAttributeName) -> u64 {
    pair.client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(attribute.clone())
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&attribute))
        .and_then(|v| v.parse().ok())
        .expect("a count")
}

#[tokio::test]
async fn a_change_message_goes_through_sqs_and_is_gone_after_ack() {
    let pair = fifo_pair(3).await;
    let sent = work_item_update("evt-1", 42);
    let id = pair.main.send(&sent).await.expect("send");

    let got = pair.main.receive(10, SHORT).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(parsed(&got[0]), sent);

    pair.main.ack(&got[0].receipt).await.expect("ack");
    assert_eq!(
        queue_count(
            &pair,
            &pair.main_url,
            QueueAttributeName::ApproximateNumberOfMessages
        )
        .await
            + queue_count(
                &pair,
                &pair.main_url,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible
            )
            .await,
        0
    );
}

#[tokio::test]
async fn a_redelivered_event_is_delivered_once_while_the_first_is_queued() {
    let pair = fifo_pair(3).await;
    pair.main.send(&work_item_update("evt-1", 1)).await.unwrap();
    // Azure DevOps retries a delivery with the same event id: SQS accepts and drops it.
    pair.main.send(&work_item_update("evt-1", 1)).await.unwrap();
    pair.main.send(&work_item_update("evt-2", 1)).await.unwrap();

    let got = receive_n(&pair.main, 10).await;
    assert_eq!(event_ids(&got), ["evt-1", "evt-2"]);
}

#[tokio::test]
async fn a_group_delivers_in_order_and_waits_for_its_message_in_flight_while_others_flow() {
    let pair = fifo_pair(3).await;
    // Work item 1 is one group, work item 2 another.
    for (e, wi) in [("a1", 1), ("a2", 1), ("a3", 1), ("b1", 2)] {
        pair.main.send(&work_item_update(e, wi)).await.unwrap();
    }

    let first = pair.main.receive(1, SHORT).await.unwrap();
    assert_eq!(event_ids(&first), ["a1"]);
    // a2 is next in line, but its group has a1 in flight: only the other group flows.
    let others = receive_n(&pair.main, 10).await;
    assert_eq!(event_ids(&others), ["b1"]);

    pair.main.ack(&first[0].receipt).await.unwrap();
    let rest = receive_n(&pair.main, 10).await;
    assert_eq!(event_ids(&rest), ["a2", "a3"], "in send order");
}

#[tokio::test]
async fn a_message_released_max_receive_count_times_lands_in_the_dead_letter_queue() {
    let pair = fifo_pair(2).await;
    pair.main
        .send(&work_item_update("poison", 7))
        .await
        .unwrap();
    for attempt in 1..=2 {
        let got = pair.main.receive(1, SHORT).await.unwrap();
        assert_eq!(event_ids(&got), ["poison"]);
        assert_eq!(got[0].receive_count, attempt);
        pair.main
            .release(&got[0].receipt, Duration::ZERO)
            .await
            .unwrap();
    }
    // The third receive attempt moves it instead of delivering it.
    assert!(pair.main.receive(1, SHORT).await.unwrap().is_empty());

    let dead = pair.dlq.receive(10, SHORT).await.unwrap();
    assert_eq!(event_ids(&dead), ["poison"]);
}

#[tokio::test]
async fn replay_moves_dead_letters_back_in_group_order_and_empties_the_dlq() {
    let pair = fifo_pair(3).await;
    for (e, wi) in [("a1", 1), ("b1", 2), ("a2", 1)] {
        pair.dlq.send(&work_item_update(e, wi)).await.unwrap();
    }

    let report = replay(&pair.dlq, &pair.main, None).await.expect("replay");
    assert_eq!(report.moved, 3);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    assert!(pair.dlq.receive(10, SHORT).await.unwrap().is_empty());
    assert_eq!(
        queue_count(
            &pair,
            &pair.dlq_url,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible
        )
        .await,
        0,
        "deleted, not just hidden"
    );
    let back = receive_n(&pair.main, 10).await;
    let mut ids = event_ids(&back);
    let a_order: Vec<_> = ids.iter().filter(|e| e.starts_with('a')).cloned().collect();
    assert_eq!(a_order, ["a1", "a2"], "the group keeps its order");
    ids.sort();
    assert_eq!(ids, ["a1", "a2", "b1"]);
}

#[tokio::test]
async fn replay_stops_after_max_messages() {
    let pair = fifo_pair(3).await;
    for (e, wi) in [("a1", 1), ("b1", 2), ("c1", 3)] {
        pair.dlq.send(&work_item_update(e, wi)).await.unwrap();
    }
    let report = replay(&pair.dlq, &pair.main, Some(2)).await.unwrap();
    assert_eq!(report.moved, 2);
    assert_eq!(receive_n(&pair.main, 10).await.len(), 2);
    assert_eq!(
        queue_count(
            &pair,
            &pair.dlq_url,
            QueueAttributeName::ApproximateNumberOfMessages
        )
        .await,
        1
    );
}

#[tokio::test]
async fn replay_keeps_dead_letters_whose_send_failed() {
    let pair = fifo_pair(3).await;
    pair.dlq.send(&work_item_update("a1", 1)).await.unwrap();
    pair.dlq.send(&work_item_update("b1", 2)).await.unwrap();
    let missing = SqsQueue::new(
        pair.client.clone(),
        format!("{}/123456789012/no-such-queue.fifo", endpoint()),
    );

    let report = replay(&pair.dlq, &missing, None)
        .await
        .expect("the DLQ was read");
    assert_eq!(report.moved, 0);
    assert_eq!(report.failed.len(), 2);
    assert!(matches!(report.failed[0].error, QueueError::Invalid(_)));
    // Still in the dead-letter queue (hidden for the replay's visibility timeout), not deleted.
    assert_eq!(
        queue_count(
            &pair,
            &pair.dlq_url,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible
        )
        .await,
        2
    );
}

#[tokio::test]
async fn a_batch_of_more_than_ten_is_sent_in_chunks_and_keeps_its_order() {
    let pair = fifo_pair(3).await;
    let messages: Vec<_> = (0..12)
        .map(|i| work_item_update(&format!("e{i:02}"), 5))
        .collect();
    let ids = pair.main.send_batch(&messages).await.expect("send_batch");
    assert_eq!(ids.len(), 12);

    let mut got = Vec::new();
    while got.len() < 12 {
        let batch = receive_n(&pair.main, 10).await;
        assert!(!batch.is_empty(), "only {} of 12 came", got.len());
        for r in &batch {
            pair.main.ack(&r.receipt).await.unwrap();
        }
        got.extend(batch);
    }
    let expected: Vec<_> = (0..12).map(|i| format!("e{i:02}")).collect();
    assert_eq!(event_ids(&got), expected);
}

#[tokio::test]
async fn the_queue_pair_takes_1_mib_messages_explicit_dedup_ids_and_redrives_to_its_dlq() {
    let pair = fifo_pair(4).await;
    let attributes = pair
        .client
        .get_queue_attributes()
        .queue_url(&pair.main_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes()
        .cloned()
        .unwrap_or_default();
    let attr = |n: QueueAttributeName| attributes.get(&n).cloned().unwrap_or_default();
    assert_eq!(attr(QueueAttributeName::FifoQueue), "true");
    assert_eq!(attr(QueueAttributeName::ContentBasedDeduplication), "false");
    assert_eq!(attr(QueueAttributeName::MaximumMessageSize), "1048576");
    assert_eq!(attr(QueueAttributeName::VisibilityTimeout), "60");
    let redrive: serde_json::Value =
        serde_json::from_str(&attr(QueueAttributeName::RedrivePolicy)).unwrap();
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .is_some_and(|arn| pair.dlq_url.ends_with(arn.rsplit(':').next().unwrap())),
        "{redrive}"
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "4"
    );

    // A deleted work item's snapshot can be large; it travels whole.
    let mut big = work_item_update("evt-big", 9);
    big.change = Change::WorkItem {
        id: 9,
        deleted: true,
        snapshot: Some(
            serde_json::json!({ "fields": { "System.Description": "x".repeat(600_000) } }),
        ),
    };
    pair.main.send(&big).await.expect("a 600 kB message fits");
    let got = pair.main.receive(1, SHORT).await.unwrap();
    assert_eq!(parsed(&got[0]), big);
}

#[tokio::test]
async fn a_missing_queue_is_an_invalid_request_not_a_transient_one() {
    let client = sqs_client().await;
    let q = SqsQueue::new(
        client,
        format!("{}/123456789012/no-such-queue.fifo", endpoint()),
    );
    let send = q.send(&work_item_update("evt-1", 1)).await;
    assert!(matches!(send, Err(QueueError::Invalid(_))), "{send:?}");
    let receive = q.receive(1, Duration::ZERO).await;
    assert!(
        matches!(receive, Err(QueueError::Invalid(_))),
        "{receive:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = aws_config::defaults(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let q = SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        format!("http://127.0.0.1:{port}/123456789012/q.fifo"),
    );
    let send = q.send(&work_item_update("evt-1", 1)).await;
    assert!(matches!(send, Err(QueueError::Transient(_))), "{send:?}");
}
