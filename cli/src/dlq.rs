//! `ado-sync dlq list` and `ado-sync dlq replay`: the dead letters of `serve`'s local queue (the
//! default) or of an SQS dead-letter queue. The queue logic is `shared::queue`'s; this wires it to
//! the command line and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use shared::queue::local::{LocalQueue, LocalQueueOptions};
use shared::queue::sqs::{SqsQueue, replay};

use crate::DEFAULT_QUEUE_DB;

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Print the dead letters, oldest first: message id, group, event type and event id (from the
    /// message), receive count, and when it died (SQS: its SentTimestamp). Nothing is moved.
    List {
        #[command(flatten)]
        queue: QueueArgs,
        /// Print a JSON array instead of one line per dead letter.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the queue, oldest first, each with a fresh receive count (SQS: with
    /// its message group and a fresh deduplication id, deleted from the dead-letter queue once
    /// sent). A running `serve` picks them up.
    Replay {
        #[command(flatten)]
        queue: QueueArgs,
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<usize>,
    },
}

/// Which queue: `serve`'s local SQLite file unless an SQS URL is given. AWS settings come from the
/// environment (AWS_REGION, credentials, AWS_ENDPOINT_URL for an emulator).
#[derive(Args)]
pub(crate) struct QueueArgs {
    /// The local queue's SQLite file, as given to `serve --queue-db` [default: .ado-sync/queue.db]
    #[arg(long)]
    queue_db: Option<PathBuf>,
    /// SQS: the dead-letter queue's URL.
    #[arg(long, env = "DLQ_URL")]
    dlq_url: Option<String>,
    /// SQS: the queue the dead letters came from (replay moves them there).
    #[arg(long, env = "QUEUE_URL")]
    queue_url: Option<String>,
}

enum Target {
    Local(PathBuf),
    Sqs {
        dlq_url: String,
        queue_url: Option<String>,
    },
}

impl QueueArgs {
    fn target(self) -> Result<Target, String> {
        let blank_is_unset = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let dlq_url = blank_is_unset(self.dlq_url);
        let queue_url = blank_is_unset(self.queue_url);
        let sqs = dlq_url.is_some() || queue_url.is_some();
        match (self.queue_db, dlq_url) {
            (db, _) if !sqs => Ok(Target::Local(
                db.unwrap_or_else(|| PathBuf::from(DEFAULT_QUEUE_DB)),
            )),
            (Some(_), _) => Err(
                "--queue-db selects the local queue, but --dlq-url/--queue-url (or DLQ_URL/QUEUE_URL) \
                 select SQS: give one or the other"
                    .into(),
            ),
            (None, Some(dlq_url)) => Ok(Target::Sqs { dlq_url, queue_url }),
            (None, None) => Err(
                "SQS dead letters need the dead-letter queue's URL: --dlq-url (or DLQ_URL)".into(),
            ),
        }
    }
}

pub(crate) async fn run(command: DlqCommand) -> ExitCode {
    let (queue, action) = match command {
        DlqCommand::List { queue, json } => (queue, Action::List { json }),
        DlqCommand::Replay { queue, max } => (queue, Action::Replay { max }),
    };
    let target = match queue.target() {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    match (target, action) {
        (Target::Local(db), Action::List { json }) => list_local(&db, json).await,
        (Target::Local(db), Action::Replay { max }) => replay_local(&db, max).await,
        (Target::Sqs { dlq_url, .. }, Action::List { json }) => list_sqs(dlq_url, json).await,
        (Target::Sqs { dlq_url, queue_url }, Action::Replay { max }) => match queue_url {
            Some(queue_url) => replay_sqs(dlq_url, queue_url, max).await,
            None => usage_error(
                "replaying SQS dead letters needs the queue to move them to: --queue-url (or QUEUE_URL)",
            ),
        },
    }
}

enum Action {
    List { json: bool },
    Replay { max: Option<usize> },
}

fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// One dead letter as printed.
struct Listed {
    message_id: String,
    group_id: Option<String>,
    body: String,
    receive_count: Option<u32>,
    /// Unix milliseconds.
    died_at: Option<i64>,
}

impl Listed {
    /// The event's type and id as the message carries them; a body that is not a change message (one
    /// way to become a dead letter) has neither.
    fn event(&self) -> (Option<String>, Option<String>) {
        let value: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        (text("eventType"), text("eventId"))
    }

    fn died_at(&self) -> Option<String> {
        self.died_at
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }

    fn to_json(&self) -> Value {
        let (event_type, event_id) = self.event();
        json!({
            "messageId": self.message_id,
            "groupId": self.group_id,
            "eventType": event_type,
            "eventId": event_id,
            "receiveCount": self.receive_count,
            "diedAt": self.died_at(),
        })
    }

    fn to_line(&self) -> String {
        let (event_type, event_id) = self.event();
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        format!(
            "{}  {}  group={}  {}  event={}  receives={}",
            or_dash(self.died_at()),
            self.message_id,
            or_dash(self.group_id.clone()),
            or_dash(event_type),
            or_dash(event_id),
            or_dash(self.receive_count.map(|c| c.to_string())),
        )
    }
}

fn print_list(listed: &[Listed], json: bool) {
    if json {
        let all: Vec<Value> = listed.iter().map(Listed::to_json).collect();
        println!("{}", Value::Array(all));
    } else {
        for l in listed {
            println!("{}", l.to_line());
        }
        eprintln!("{} dead letters", listed.len());
    }
}

fn open_local(db: &Path) -> Result<LocalQueue, ExitCode> {
    LocalQueue::open_existing(db, LocalQueueOptions::default()).map_err(|e| {
        eprintln!("error: --queue-db: {e} (`serve` creates it)");
        ExitCode::from(2)
    })
}

async fn list_local(db: &Path, json: bool) -> ExitCode {
    let queue = match open_local(db) {
        Ok(q) => q,
        Err(code) => return code,
    };
    match queue.dead_letters().await {
        Ok(dead) => {
            let listed: Vec<Listed> = dead
                .into_iter()
                .map(|d| Listed {
                    message_id: d.message_id,
                    group_id: Some(d.group_id),
                    body: d.body,
                    receive_count: Some(d.receive_count),
                    died_at: Some(d.died_at),
                })
                .collect();
            print_list(&listed, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: reading the dead letters: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn replay_local(db: &Path, max: Option<usize>) -> ExitCode {
    let queue = match open_local(db) {
        Ok(q) => q,
        Err(code) => return code,
    };
    match queue.replay_dead_letters(max).await {
        Ok(n) => {
            println!("moved {n} messages");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: moving the dead letters (none was moved): {e}");
            ExitCode::FAILURE
        }
    }
}

/// SQS cannot look at messages without receiving them. The listing receives them with a visibility
/// timeout long enough to see each once, then makes them visible again at once. While it runs
/// (seconds) a replay would not see them, and each listing adds one to their receive count.
const LIST_VISIBILITY: Duration = Duration::from_secs(60);
/// The most messages one SQS call takes or changes.
const SQS_BATCH: usize = 10;

async fn list_sqs(dlq_url: String, json: bool) -> ExitCode {
    let dlq = match SqsQueue::from_env(dlq_url).await {
        Ok(q) => q,
        Err(e) => return usage_error(e),
    };
    let mut listed = Vec::new();
    let mut receipts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let outcome = loop {
        let received = dlq
            .client()
            .receive_message()
            .queue_url(dlq.url())
            .max_number_of_messages(SQS_BATCH as i32)
            .wait_time_seconds(1)
            .visibility_timeout(LIST_VISIBILITY.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                break Err(format!(
                    "ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ));
            }
        };
        // Empty, or only messages seen already (the listing outlasted their visibility timeout).
        if messages
            .iter()
            .all(|m| seen.contains(m.message_id().unwrap_or_default()))
        {
            break Ok(());
        }
        for m in messages {
            let message_id = m.message_id().unwrap_or_default().to_owned();
            if let Some(r) = m.receipt_handle() {
                receipts.push(r.to_owned());
            }
            if !seen.insert(message_id.clone()) {
                continue;
            }
            let attribute = |name: MessageSystemAttributeName| {
                m.attributes().and_then(|a| a.get(&name)).cloned()
            };
            listed.push(Listed {
                group_id: attribute(MessageSystemAttributeName::MessageGroupId),
                receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|c| c.parse().ok()),
                died_at: attribute(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|t| t.parse().ok()),
                body: m.body().unwrap_or_default().to_owned(),
                message_id,
            });
        }
    };
    let released = release_all(&dlq, &receipts).await;
    match outcome {
        Ok(()) => {
            print_list(&listed, json);
            if released {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: reading the dead-letter queue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Makes the listed messages visible again now; one that fails reappears after the listing's
/// visibility timeout anyway. False when any failed.
async fn release_all(dlq: &SqsQueue, receipts: &[String]) -> bool {
    let mut all = true;
    for chunk in receipts.chunks(SQS_BATCH) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        let changed = dlq
            .client()
            .change_message_visibility_batch()
            .queue_url(dlq.url())
            .set_entries(Some(entries))
            .send()
            .await;
        let failed = match changed {
            Ok(out) => out.failed.len(),
            Err(e) => {
                eprintln!("warning: {}", aws_sdk_sqs::error::DisplayErrorContext(e));
                chunk.len()
            }
        };
        if failed > 0 {
            eprintln!(
                "warning: {failed} listed messages stay hidden for {} s before they can be replayed",
                LIST_VISIBILITY.as_secs()
            );
            all = false;
        }
    }
    all
}

async fn replay_sqs(dlq_url: String, queue_url: String, max: Option<usize>) -> ExitCode {
    let dlq = match SqsQueue::from_env(dlq_url).await {
        Ok(q) => q,
        Err(e) => return usage_error(e),
    };
    let main = SqsQueue::new(dlq.client().clone(), queue_url);
    match replay(&dlq, &main, max).await {
        Ok(report) => {
            println!("moved {} messages", report.moved);
            for f in &report.failed {
                eprintln!(
                    "error: message {} stays in the dead-letter queue: {}",
                    f.message_id, f.error
                );
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: reading the dead-letter queue: {e}");
            ExitCode::FAILURE
        }
    }
}
