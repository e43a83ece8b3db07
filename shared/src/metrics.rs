//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per invocation, which CloudWatch
//! Logs turns into metrics of the `AdoSync` namespace. No PutMetricData call, so no IAM permission, no
//! added latency and nothing to fail; the alarms in `template.yaml` watch these names.

use std::io::Write as _;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "AdoSync";
/// The one dimension: the Lambda function's name, so two stacks in one account never mix.
pub const DIMENSION: &str = "FunctionName";

/// Webhook: deliveries queued.
pub const EVENTS_ACCEPTED: &str = "EventsAccepted";
/// Webhook: deliveries acknowledged but not queued (unknown event type, malformed body).
pub const EVENTS_IGNORED: &str = "EventsIgnored";
/// Webhook: deliveries refused (bad or missing credentials, too large, not a POST).
pub const EVENTS_REJECTED: &str = "EventsRejected";
/// Webhook: deliveries the queue did not take (Azure DevOps retries a 503).
pub const QUEUE_FAILURES: &str = "QueueFailures";
/// Processor and resync: entities written to the catalog.
pub const ENTITIES_UPSERTED: &str = "EntitiesUpserted";
/// Processor and resync: entities deleted from the catalog.
pub const ENTITIES_DELETED: &str = "EntitiesDeleted";
/// Processor: records applied.
pub const RECORDS_APPLIED: &str = "RecordsApplied";
/// Processor: records reported as batch item failures (they come back, then reach the DLQ).
pub const RECORDS_FAILED: &str = "RecordsFailed";
/// Resync: wall time of a pass.
pub const RESYNC_DURATION_MS: &str = "ResyncDurationMs";
/// Resync: passes with any error (nothing was deleted).
pub const RESYNC_FAILURES: &str = "ResyncFailures";
/// Resync: errors over all kinds of a pass.
pub const RESYNC_ERRORS: &str = "ResyncErrors";

/// Every metric name this crate emits, for checks against the template's alarms.
pub const ALL: &[&str] = &[
    EVENTS_ACCEPTED,
    EVENTS_IGNORED,
    EVENTS_REJECTED,
    QUEUE_FAILURES,
    ENTITIES_UPSERTED,
    ENTITIES_DELETED,
    RECORDS_APPLIED,
    RECORDS_FAILED,
    RESYNC_DURATION_MS,
    RESYNC_FAILURES,
    RESYNC_ERRORS,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The metrics of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    function_name: String,
    values: Vec<(&'static str, f64, Unit)>,
    /// Outside Lambda (tests, benchmarks) nothing reads stdout for metrics.
    enabled: bool,
}

impl Metrics {
    pub fn new(function_name: impl Into<String>) -> Self {
        Self {
            function_name: function_name.into(),
            values: Vec::new(),
            enabled: true,
        }
    }

    /// Named after the running Lambda function (`AWS_LAMBDA_FUNCTION_NAME`, also set by
    /// `cargo lambda watch`). Without it the process is not a Lambda function and [`Self::emit`]
    /// writes nothing; the document is still built under `fallback`.
    pub fn for_function(fallback: &str) -> Self {
        match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            Ok(name) if !name.is_empty() => Self::new(name),
            _ => Self {
                enabled: false,
                ..Self::new(fallback)
            },
        }
    }

    /// Sets a counter; zero values are emitted too, so alarms see data rather than a gap.
    pub fn count(mut self, name: &'static str, n: u64) -> Self {
        self.values.push((name, n as f64, Unit::Count));
        self
    }

    pub fn milliseconds(mut self, name: &'static str, ms: u64) -> Self {
        self.values.push((name, ms as f64, Unit::Milliseconds));
        self
    }

    /// The EMF document, stamped with `timestamp_ms` (milliseconds since the epoch).
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        doc.insert(DIMENSION.into(), Value::from(self.function_name.clone()));
        for (name, value, _) in &self.values {
            doc.insert((*name).into(), json!(value));
        }
        Value::Object(doc)
    }

    /// Writes the document as one line on stdout, where the Lambda log agent picks it up. A write
    /// failure is ignored: losing a data point must never fail an invocation.
    pub fn emit(&self) {
        if !self.enabled {
            return;
        }
        let line = self
            .to_emf(chrono::Utc::now().timestamp_millis())
            .to_string();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_declares_every_value_under_the_namespace_and_function_dimension() {
        let doc = Metrics::new("stack-ProcessorFunction-abc")
            .count(ENTITIES_UPSERTED, 3)
            .count(RECORDS_FAILED, 0)
            .milliseconds(RESYNC_DURATION_MS, 1500)
            .to_emf(1_764_000_000_000);

        assert_eq!(doc["_aws"]["Timestamp"], 1_764_000_000_000_i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "AdoSync");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "EntitiesUpserted", "Unit": "Count"},
                {"Name": "RecordsFailed", "Unit": "Count"},
                {"Name": "ResyncDurationMs", "Unit": "Milliseconds"},
            ])
        );
        // EMF reads each value and dimension from a top-level member of the same name.
        assert_eq!(doc["FunctionName"], "stack-ProcessorFunction-abc");
        assert_eq!(doc["EntitiesUpserted"], 3.0);
        assert_eq!(doc["RecordsFailed"], 0.0);
        assert_eq!(doc["ResyncDurationMs"], 1500.0);
        assert_eq!(doc.as_object().unwrap().len(), 5);
    }

    #[test]
    fn the_document_is_a_single_line() {
        let line = Metrics::new("f")
            .count(EVENTS_ACCEPTED, 1)
            .to_emf(0)
            .to_string();
        assert!(!line.contains('\n'));
    }

    #[test]
    fn metric_names_are_unique() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
