//! `ado-sync dlq list` and `dlq replay` on the local queue `serve` keeps.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use shared::queue::local::{LocalQueue, LocalQueueOptions};
use shared::queue::{ChangeMessage, Queue, QueueConsumer};

use super::BIN;

/// A sample delivery as the webhook queues it.
fn message(event_type: &str) -> ChangeMessage {
    let path = format!(
        "{}/../events/ado/{event_type}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let delivery: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    shared::webhook::classify(&delivery).unwrap()
}

/// A queue file holding the samples of `event_types` as dead letters, in that order, and one
/// message that is still queued.
async fn queue_with_dead_letters(path: &Path, event_types: &[&str]) {
    let queue = LocalQueue::open(
        path,
        LocalQueueOptions {
            max_receives: 1,
            ..Default::default()
        },
    )
    .unwrap();
    for event_type in event_types {
        queue.send(&message(event_type)).await.unwrap();
        let got = queue.receive(1, std::time::Duration::ZERO).await.unwrap();
        queue
            .release(&got[0].receipt, std::time::Duration::ZERO)
            .await
            .unwrap();
    }
    queue.send(&message("git.push")).await.unwrap();
}

fn dlq(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("dlq")
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn listed(db: &str) -> Vec<Value> {
    let out = dlq(&["list", "--queue-db", db, "--json"]);
    serde_json::from_str::<Value>(&stdout(&out))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn dlq_list_shows_the_local_dead_letters_and_replay_moves_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let db = path.to_str().unwrap();
    queue_with_dead_letters(&path, &["workitem.updated", "git.repo.created"]).await;

    let dead = listed(db);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0]["eventType"], "workitem.updated");
    assert_eq!(dead[0]["eventId"], "3ba1c96e-7e0f-4c59-9a2b-5d1e8f4a6c07");
    assert_eq!(dead[0]["groupId"], "wi:5");
    assert_eq!(dead[0]["receiveCount"], 1);
    assert!(
        dead[0]["messageId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let died = dead[0]["diedAt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(died).is_ok(), "{died}");
    assert_eq!(dead[1]["eventType"], "git.repo.created");

    let text = stdout(&dlq(&["list", "--queue-db", db]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, d) in lines.iter().zip(&dead) {
        for field in ["messageId", "eventType", "eventId"] {
            assert!(line.contains(d[field].as_str().unwrap()), "{line}");
        }
        assert!(line.contains("receives=1"), "{line}");
    }

    let moved = stdout(&dlq(&["replay", "--queue-db", db, "--max", "1"]));
    assert_eq!(moved.trim(), "moved 1 messages");
    let left = listed(db);
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0]["eventType"], "git.repo.created",
        "the oldest went first"
    );

    let moved = stdout(&dlq(&["replay", "--queue-db", db]));
    assert_eq!(moved.trim(), "moved 1 messages");
    assert!(listed(db).is_empty());

    let queue = LocalQueue::open(&path, LocalQueueOptions::default()).unwrap();
    let back: Vec<String> = queue
        .receive(10, std::time::Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_str::<ChangeMessage>(&r.body)
                .unwrap()
                .event_type
        })
        .collect();
    // Replayed at the end of the queue, behind what was queued meanwhile.
    assert_eq!(back, ["git.push", "workitem.updated", "git.repo.created"]);
}

#[test]
fn dlq_commands_refuse_a_missing_queue_file_without_creating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-queue.db");
    for command in ["list", "replay"] {
        let out = dlq(&[command, "--queue-db", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no-such-queue.db"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!path.exists(), "{command} created the file");
    }
}

#[test]
fn dlq_commands_refuse_a_local_queue_and_an_sqs_url_together() {
    let out = dlq(&[
        "list",
        "--queue-db",
        "q.db",
        "--dlq-url",
        "https://sqs.eu-west-1.amazonaws.com/1/dlq.fifo",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--queue-db"));
}

/// An SQS client for moto with static test credentials (nothing read from the machine).
fn moto_sqs() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version_latest()
        .endpoint_url(sim::moto::endpoint())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn dlq_on_moto(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("dlq")
        .args(args)
        .env_clear()
        .env("AWS_ENDPOINT_URL", sim::moto::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap()
}

#[tokio::test]
async fn dlq_list_shows_sqs_dead_letters_and_leaves_them_for_replay() {
    let client = moto_sqs();
    let name = format!(
        "cli-dlq-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (main_url, dlq_url) =
        shared::queue::sqs::create_fifo_pair(&client, &name, 3, std::time::Duration::from_secs(60))
            .await
            .unwrap();
    let dead = shared::queue::sqs::SqsQueue::new(client.clone(), dlq_url.clone());
    dead.send(&message("workitem.updated")).await.unwrap();
    dead.send(&message("git.push")).await.unwrap();

    let out = dlq_on_moto(&["list", "--dlq-url", &dlq_url, "--json"]);
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut events: Vec<(&str, &str)> = listed
        .iter()
        .map(|d| {
            (
                d["eventType"].as_str().unwrap(),
                d["groupId"].as_str().unwrap(),
            )
        })
        .collect();
    events.sort_unstable();
    assert_eq!(
        events,
        [
            ("git.push", "repo:278d5cd2-584d-4b63-824a-2ba458937249"),
            ("workitem.updated", "wi:5")
        ]
    );

    // Listed, not taken: a replay right after finds both.
    let out = dlq_on_moto(&["replay", "--dlq-url", &dlq_url, "--queue-url", &main_url]);
    assert_eq!(stdout(&out).trim(), "moved 2 messages");
    let out = dlq_on_moto(&["list", "--dlq-url", &dlq_url, "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}
