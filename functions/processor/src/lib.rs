//! The SQS-triggered processor: applies each queued change on its own and reports the records that must
//! come back as partial batch failures, so one bad message never fails the batch.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::metrics::{self, Metrics};
use shared::queue::message::ChangeMessage;
use shared::runtime::SyncRuntime;
use shared::sync::{self, SyncError};
use tracing::Instrument;

/// What became of one record.
enum Outcome {
    Applied {
        upserted: usize,
        deleted: usize,
    },
    /// Comes back after the visibility timeout; the redrive policy moves it to the dead-letter queue once
    /// its receive count reaches the queue's `maxReceiveCount`.
    Failed,
}

/// Applies every record of a batch, in order, and lists the ones that must be received again.
pub async fn handle(runtime: &SyncRuntime, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let records = event.payload.records;
    tracing::info!(request_id = %event.context.request_id, records = records.len(), "batch received");
    // FIFO: a record that fails blocks the rest of its message group in this batch, so a group never
    // applies out of order (the failed record comes back first on the next receive).
    let mut blocked_groups: HashSet<String> = HashSet::new();
    let mut response = SqsBatchResponse::default();
    let (mut applied, mut upserted, mut deleted) = (0_u64, 0_u64, 0_u64);
    for record in &records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(1);
        let span = tracing::info_span!(
            "record",
            message_id = %message_id,
            group = group.as_deref().unwrap_or("-"),
            receive_count,
            event_type = tracing::field::Empty,
            event_id = tracing::field::Empty,
        );
        let blocked = group.as_ref().is_some_and(|g| blocked_groups.contains(g));
        let outcome = async {
            if blocked {
                tracing::warn!("an earlier record of this message group failed; not processed, to keep the group in order");
                return Outcome::Failed;
            }
            process(runtime, record, receive_count).await
        }
        .instrument(span)
        .await;
        match outcome {
            Outcome::Applied {
                upserted: u,
                deleted: d,
            } => {
                applied += 1;
                upserted += u as u64;
                deleted += d as u64;
            }
            Outcome::Failed => {
                if let Some(g) = group {
                    blocked_groups.insert(g);
                }
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    Metrics::for_function("processor")
        .count(metrics::RECORDS_APPLIED, applied)
        .count(
            metrics::RECORDS_FAILED,
            response.batch_item_failures.len() as u64,
        )
        .count(metrics::ENTITIES_UPSERTED, upserted)
        .count(metrics::ENTITIES_DELETED, deleted)
        .emit();
    tracing::info!(
        records = records.len(),
        failed = response.batch_item_failures.len(),
        "batch done"
    );
    response
}

async fn process(runtime: &SyncRuntime, record: &SqsMessage, receive_count: u32) -> Outcome {
    let body = record.body.as_deref().unwrap_or_default();
    let message: ChangeMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(
                error = %e,
                receive_count,
                body_bytes = body.len(),
                "the record is not a valid change message (malformed, or an id Azure DevOps does not issue); nothing was requested, and it will reach the dead-letter queue once its receive count reaches the queue's maxReceiveCount"
            );
            tracing::debug!(body, "unparseable record body");
            return Outcome::Failed;
        }
    };
    let span = tracing::Span::current();
    span.record("event_type", message.event_type.as_str());
    span.record("event_id", message.event_id.as_str());
    match sync::apply(runtime, &message).await {
        Ok(applied) => {
            tracing::info!(
                kinds = ?applied.kinds,
                upserted = applied.upserted,
                deleted = applied.deleted,
                skipped = applied.skipped,
                "record applied"
            );
            Outcome::Applied {
                upserted: applied.upserted,
                deleted: applied.deleted,
            }
        }
        Err(e @ SyncError::Transient { .. }) => {
            tracing::warn!(error = %e, receive_count, "transient failure; the record will be retried");
            Outcome::Failed
        }
        Err(e @ SyncError::Permanent { .. }) => {
            tracing::error!(
                error = %e,
                receive_count,
                "the change cannot be applied; it will reach the dead-letter queue once its receive count reaches the queue's maxReceiveCount"
            );
            Outcome::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::json;
    use shared::ado::AdoClient;
    use shared::catalog::embedded::EmbeddedCatalog;
    use shared::config::Settings;
    use shared::mapping::source::MappingSource;
    use shared::runtime::{SyncRuntime, compile_mapping};

    use super::handle;

    /// A runtime that can reach nothing: these tests only use records decided before any call.
    fn offline_runtime() -> SyncRuntime {
        let settings = Settings::from_lookup(|k| match k {
            "ADO_ORG_URL" => Some("http://127.0.0.1:9/org".into()),
            "ADO_PAT" => Some("pat".into()),
            "CATALOG_DB" => Some("unused.db".into()),
            _ => None,
        })
        .unwrap();
        let ado = AdoClient::from_settings(&settings.ado).unwrap();
        SyncRuntime::from_parts(
            settings,
            ado,
            Arc::new(EmbeddedCatalog::in_memory("unit".into()).unwrap()),
            None,
            MappingSource::fixed(compile_mapping("resources: []", "unit", false).unwrap()),
        )
    }

    /// A release change: this build does not follow releases, so it succeeds without any call.
    fn release(version: u8) -> String {
        release_in(version, "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c")
    }

    fn release_in(version: u8, project: &str) -> String {
        json!({
            "version": version, "eventId": "e", "eventType": "ms.vss-release.release-created-event",
            "publisherId": "rm", "projectId": project,
            "change": {"type": "release", "release_id": 1, "definition_id": null}
        })
        .to_string()
    }

    fn record(id: &str, group: &str, body: &str) -> serde_json::Value {
        json!({
            "messageId": id, "receiptHandle": "h", "body": body, "md5OfBody": "",
            "attributes": {"ApproximateReceiveCount": "3", "MessageGroupId": group},
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:changes.fifo", "awsRegion": "eu-west-1"
        })
    }

    #[tokio::test]
    async fn failed_records_are_reported_and_block_only_their_own_group() {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            record("poison", "g1", "not json"),
            record("old-version", "g2", &release(99)),
            record("fine", "g3", &release(1)),
            record("behind-poison", "g1", &release(1)),
            record("hostile-id", "g4", &release_in(1, "../../_apis/projects?")),
        ]}))
        .unwrap();

        let response = handle(
            &offline_runtime(),
            LambdaEvent::new(event, Context::default()),
        )
        .await;

        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            failed,
            ["poison", "old-version", "behind-poison", "hostile-id"]
        );
    }
}
