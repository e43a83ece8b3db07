//! The SQS-triggered processor: applies the batch through the shared per-message flow
//! ([`shared::queue::batch`]) and reports the records that must come back as partial batch failures,
//! so one bad message never fails the batch.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::metrics::{self, Metrics};
use shared::queue::batch::{QueuedRecord, RecordOutcome, apply_queued};
use shared::tenant::Tenant;

/// Applies every record of a batch, in order, and lists the ones that must be received again: a
/// failed record, and the records of its message group behind it (the shared FIFO rule). They come
/// back after the visibility timeout; the redrive policy moves a record to the dead-letter queue once
/// its receive count reaches the queue's `maxReceiveCount`.
pub async fn handle(runtime: &Tenant, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let records = event.payload.records;
    tracing::info!(request_id = %event.context.request_id, records = records.len(), "batch received");
    let queued: Vec<QueuedRecord<'_>> = records.iter().map(queued).collect();
    let outcomes = apply_queued(runtime, &queued, || true).await;

    let mut response = SqsBatchResponse::default();
    let (mut applied, mut upserted, mut deleted) = (0_u64, 0_u64, 0_u64);
    for (record, outcome) in queued.iter().zip(&outcomes) {
        if let RecordOutcome::Applied(a) = outcome {
            applied += 1;
            upserted += a.upserted as u64;
            deleted += a.deleted as u64;
        } else {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.to_owned();
            response.batch_item_failures.push(failure);
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

fn queued(record: &SqsMessage) -> QueuedRecord<'_> {
    QueuedRecord {
        message_id: record.message_id.as_deref().unwrap_or_default(),
        group_id: record.attributes.get("MessageGroupId").map(String::as_str),
        body: record.body.as_deref().unwrap_or_default(),
        receive_count: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(1),
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
    use shared::tenant::{Tenant, compile_mapping};

    use super::handle;

    /// A runtime that can reach nothing: these tests only use records decided before any call.
    fn offline_runtime() -> Tenant {
        let settings = Settings::from_lookup(|k| match k {
            "ADO_ORG_URL" => Some("http://127.0.0.1:9/org".into()),
            "ADO_PAT" => Some("pat".into()),
            "CATALOG_DB" => Some("unused.db".into()),
            _ => None,
        })
        .unwrap();
        let ado = AdoClient::from_settings(&settings.ado).unwrap();
        Tenant::from_parts(
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
