//! `ado-sync dlq replay`: moves dead letters back to the main queue (the logic is
//! `shared::queue::sqs::replay`; this only wires it to the command line).

use std::process::ExitCode;

use clap::Subcommand;
use shared::queue::sqs::{SqsQueue, replay};

#[derive(Subcommand)]
pub(crate) enum DlqCommand {
    /// Re-send the dead-letter queue's messages to the main queue, each with its message group and a
    /// fresh deduplication id, deleting each from the dead-letter queue once sent. AWS settings come
    /// from the environment (AWS_REGION, credentials, AWS_ENDPOINT_URL for an emulator).
    Replay {
        /// The dead-letter queue's URL.
        #[arg(long, env = "DLQ_URL")]
        dlq_url: String,
        /// The queue to move the messages to.
        #[arg(long, env = "QUEUE_URL")]
        queue_url: String,
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<usize>,
    },
}

pub(crate) async fn run(command: DlqCommand) -> ExitCode {
    match command {
        DlqCommand::Replay {
            dlq_url,
            queue_url,
            max,
        } => run_replay(dlq_url, queue_url, max).await,
    }
}

async fn run_replay(dlq_url: String, queue_url: String, max: Option<usize>) -> ExitCode {
    let dlq = match SqsQueue::from_env(dlq_url).await {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
