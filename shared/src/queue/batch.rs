//! One batch of queued changes, applied in order with the FIFO rule: a record that fails blocks the
//! rest of its message group in the batch, so a group never applies out of order (the failed record
//! comes back first on the next receive, and the queue holds its group back meanwhile). The processor
//! function and `serve` (local queue and SQS) both apply their batches here; each only maps the
//! outcomes to its queue (batch item failures, or ack/release).

use std::collections::HashSet;

use tracing::Instrument;

use super::ChangeMessage;
use crate::sync::{Applied, SyncError};
use crate::tenant::Tenant;

/// One received record, as the batch flow needs it.
#[derive(Debug, Clone, Copy)]
pub struct QueuedRecord<'a> {
    pub message_id: &'a str,
    /// The FIFO message group; a record without one blocks nothing and is blocked by nothing.
    pub group_id: Option<&'a str>,
    pub body: &'a str,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
}

/// What became of one record of a batch.
#[derive(Debug)]
pub enum RecordOutcome<T, E> {
    Applied(T),
    /// The body is not a change message (malformed, or an id Azure DevOps does not issue): it fails
    /// the same way on every receive, and nothing was requested.
    Unreadable(serde_json::Error),
    /// The change was read and applying it failed.
    Failed(E),
    /// An earlier record of its group failed in this batch: not attempted, so the group keeps its order.
    Blocked,
    /// The batch was cut short (a stop) before this record: not attempted.
    NotReached,
}

impl<T, E> RecordOutcome<T, E> {
    /// Whether the record must come back (everything but an applied one).
    pub fn must_return(&self) -> bool {
        !matches!(self, RecordOutcome::Applied(_))
    }
}

/// An error of the per-message call, told apart by whether a later receive may succeed.
pub trait RecordError: std::error::Error {
    fn is_transient(&self) -> bool;
}

impl RecordError for SyncError {
    fn is_transient(&self) -> bool {
        SyncError::is_transient(self)
    }
}

/// Applies `records` in order with `apply`, the FIFO rule on top, and returns one outcome per record,
/// in the records' order. `keep_going` is asked before each record; once it says no, the rest are
/// [`RecordOutcome::NotReached`]. Each record runs in its own span (message id, group, receive count,
/// and the event's type and id once read).
pub async fn apply_batch<T, E: RecordError>(
    records: &[QueuedRecord<'_>],
    apply: impl AsyncFn(&ChangeMessage) -> Result<T, E>,
    mut keep_going: impl FnMut() -> bool,
) -> Vec<RecordOutcome<T, E>> {
    let mut blocked_groups: HashSet<&str> = HashSet::new();
    let mut outcomes = Vec::with_capacity(records.len());
    let mut stopped = false;
    for record in records {
        stopped = stopped || !keep_going();
        if stopped {
            outcomes.push(RecordOutcome::NotReached);
            continue;
        }
        let span = tracing::info_span!(
            "record",
            message_id = %record.message_id,
            group = record.group_id.unwrap_or("-"),
            receive_count = record.receive_count,
            event_type = tracing::field::Empty,
            event_id = tracing::field::Empty,
        );
        let blocked = record.group_id.is_some_and(|g| blocked_groups.contains(g));
        let outcome = async {
            if blocked {
                tracing::warn!(
                    "an earlier record of this message group failed; not processed, to keep the group in order"
                );
                return RecordOutcome::Blocked;
            }
            apply_one(record, &apply).await
        }
        .instrument(span)
        .await;
        if outcome.must_return()
            && let Some(g) = record.group_id
        {
            blocked_groups.insert(g);
        }
        outcomes.push(outcome);
    }
    outcomes
}

async fn apply_one<T, E: RecordError>(
    record: &QueuedRecord<'_>,
    apply: &impl AsyncFn(&ChangeMessage) -> Result<T, E>,
) -> RecordOutcome<T, E> {
    let message: ChangeMessage = match serde_json::from_str(record.body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(
                error = %e,
                body_bytes = record.body.len(),
                "the record is not a valid change message (malformed, or an id Azure DevOps does not issue); nothing was requested, and it becomes a dead letter once its receive count reaches the queue's maximum"
            );
            tracing::debug!(body = record.body, "unparseable record body");
            return RecordOutcome::Unreadable(e);
        }
    };
    let span = tracing::Span::current();
    span.record("event_type", message.event_type.as_str());
    span.record("event_id", message.event_id.as_str());
    match apply(&message).await {
        Ok(applied) => RecordOutcome::Applied(applied),
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "transient failure; the record will be retried");
            RecordOutcome::Failed(e)
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                "the change cannot be applied; it becomes a dead letter once its receive count reaches the queue's maximum"
            );
            RecordOutcome::Failed(e)
        }
    }
}

/// [`apply_batch`] with [`sync::apply`] as the per-message call: what the processor and `serve` run.
pub async fn apply_queued(
    runtime: &Tenant,
    records: &[QueuedRecord<'_>],
    keep_going: impl FnMut() -> bool,
) -> Vec<RecordOutcome<Applied, SyncError>> {
    apply_batch(
        records,
        async |message| apply_change(runtime, message).await,
        keep_going,
    )
    .await
}

/// One change through [`sync::apply`], logged in the record's span.
pub async fn apply_change(runtime: &Tenant, message: &ChangeMessage) -> Result<Applied, SyncError> {
    let applied = runtime.apply(message).await?;
    tracing::info!(
        kinds = ?applied.kinds,
        upserted = applied.upserted,
        deleted = applied.deleted,
        skipped = applied.skipped,
        "record applied"
    );
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("test failure (transient: {0})")]
    struct Failure(bool);

    impl RecordError for Failure {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    /// A change message whose event id is `id`.
    fn body(id: &str) -> String {
        json!({
            "version": 1, "eventId": id, "eventType": "workitem.updated", "publisherId": "tfs",
            "change": {"type": "work-item", "id": 1, "deleted": false}
        })
        .to_string()
    }

    /// Records `(message id, group, body)`.
    fn records<'a>(rows: &'a [(&'a str, Option<&'a str>, String)]) -> Vec<QueuedRecord<'a>> {
        rows.iter()
            .map(|(id, group, body)| QueuedRecord {
                message_id: id,
                group_id: *group,
                body,
                receive_count: 1,
            })
            .collect()
    }

    /// The outcome's name, and the event id it applied.
    fn named(outcome: &RecordOutcome<String, Failure>) -> String {
        match outcome {
            RecordOutcome::Applied(id) => format!("applied {id}"),
            RecordOutcome::Unreadable(_) => "unreadable".into(),
            RecordOutcome::Failed(Failure(t)) => format!("failed (transient: {t})"),
            RecordOutcome::Blocked => "blocked".into(),
            RecordOutcome::NotReached => "not reached".into(),
        }
    }

    /// Applies every event id except those in `failing` (transient), recording the calls.
    async fn run(
        rows: &[(&str, Option<&str>, String)],
        failing: &[&str],
        keep_going: impl FnMut() -> bool,
    ) -> (Vec<String>, Vec<String>) {
        let calls = Mutex::new(Vec::new());
        let outcomes = apply_batch(
            &records(rows),
            async |m: &ChangeMessage| {
                calls.lock().unwrap().push(m.event_id.clone());
                if failing.contains(&m.event_id.as_str()) {
                    Err(Failure(true))
                } else {
                    Ok(m.event_id.clone())
                }
            },
            keep_going,
        )
        .await;
        (
            outcomes.iter().map(named).collect(),
            calls.into_inner().unwrap(),
        )
    }

    #[tokio::test]
    async fn a_failed_record_blocks_the_rest_of_its_group_and_no_other() {
        let rows = [
            ("1", Some("a"), body("a1")),
            ("2", Some("b"), body("b1")),
            ("3", Some("a"), body("a2")),
            ("4", Some("b"), body("b2")),
            ("5", Some("a"), body("a3")),
        ];
        let (outcomes, calls) = run(&rows, &["a1"], || true).await;
        assert_eq!(
            outcomes,
            [
                "failed (transient: true)",
                "applied b1",
                "blocked",
                "applied b2",
                "blocked"
            ]
        );
        assert_eq!(calls, ["a1", "b1", "b2"]);
    }

    #[tokio::test]
    async fn an_unreadable_record_blocks_its_group_without_a_call() {
        let rows = [
            ("1", Some("a"), "not json".to_owned()),
            ("2", Some("a"), body("a2")),
            ("3", Some("b"), body("b1")),
        ];
        let (outcomes, calls) = run(&rows, &[], || true).await;
        assert_eq!(outcomes, ["unreadable", "blocked", "applied b1"]);
        assert_eq!(calls, ["b1"]);
    }

    #[tokio::test]
    async fn a_group_applies_up_to_its_failure_and_records_without_a_group_block_nothing() {
        let rows = [
            ("1", Some("a"), body("a1")),
            ("2", None, body("x1")),
            ("3", Some("a"), body("a2")),
            ("4", None, body("x2")),
            ("5", Some("a"), body("a3")),
        ];
        let (outcomes, calls) = run(&rows, &["a2", "x1"], || true).await;
        assert_eq!(
            outcomes,
            [
                "applied a1",
                "failed (transient: true)",
                "failed (transient: true)",
                "applied x2",
                "blocked"
            ]
        );
        assert_eq!(calls, ["a1", "x1", "a2", "x2"]);
    }

    #[tokio::test]
    async fn a_stop_leaves_the_rest_of_the_batch_untouched() {
        let rows = [
            ("1", Some("a"), body("a1")),
            ("2", Some("b"), body("b1")),
            ("3", Some("c"), body("c1")),
        ];
        let mut asked = 0;
        let (outcomes, calls) = run(&rows, &[], || {
            asked += 1;
            asked <= 1
        })
        .await;
        assert_eq!(outcomes, ["applied a1", "not reached", "not reached"]);
        assert_eq!(calls, ["a1"]);
    }
}
