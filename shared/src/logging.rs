//! Logging in the Lambda functions: one JSON object per line with an RFC 3339 `timestamp` and a
//! `level`, which is what Lambda's log-level filtering reads (without a valid timestamp Lambda files
//! every line as INFO), the event's fields at the top level for CloudWatch Logs Insights. The level is
//! the function's `ApplicationLogLevel` (`AWS_LAMBDA_LOG_LEVEL`), else `RUST_LOG`'s directives, else
//! `info`.

use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the functions' logging (once, at the start of `main`).
pub fn init_lambda() {
    let filter = lambda_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    tracing::subscriber::set_global_default(lambda_subscriber(filter, std::io::stdout))
        .expect("logging is installed once");
}

/// The filter for Lambda's level (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`) or, without it,
/// `RUST_LOG`'s directives; `info` when neither is set or usable.
pub fn lambda_filter(lambda_level: Option<String>, rust_log: Option<String>) -> Targets {
    let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let directives = match set(lambda_level) {
        Some(level) => match level.trim().to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        },
        None => set(rust_log).unwrap_or_else(|| "info".to_owned()),
    };
    directives
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
}

/// The JSON subscriber, writing to `writer`.
pub fn lambda_subscriber<W>(filter: Targets, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    // The builder's own filter (INFO unless told) is opened up: `filter` decides.
    tracing_subscriber::fmt()
        .with_max_level(tracing::level_filters::LevelFilter::TRACE)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer)
        .finish()
        .with(filter)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines logged at each level, under the filter the variables give.
    fn logged(lambda_level: Option<&str>, rust_log: Option<&str>) -> Vec<Value> {
        let lines = Lines::default();
        let out = lines.clone();
        let filter = lambda_filter(lambda_level.map(Into::into), rust_log.map(Into::into));
        let subscriber = lambda_subscriber(filter, move || out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("a debug line");
            tracing::info!(resync_id = "r1", upserted = 3, "an info line");
            tracing::warn!("a warn line");
            tracing::error!("an error line");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    fn levels(lines: &[Value]) -> Vec<&str> {
        lines.iter().map(|l| l["level"].as_str().unwrap()).collect()
    }

    #[test]
    fn the_functions_log_level_wins_over_rust_log() {
        let lines = logged(Some("WARN"), Some("debug"));
        assert_eq!(levels(&lines), ["WARN", "ERROR"]);
        assert_eq!(levels(&logged(Some("FATAL"), None)), ["ERROR"]);
    }

    #[test]
    fn rust_log_applies_without_a_function_level_and_info_without_either() {
        assert_eq!(
            levels(&logged(None, Some("debug"))),
            ["DEBUG", "INFO", "WARN", "ERROR"]
        );
        assert_eq!(levels(&logged(None, None)), ["INFO", "WARN", "ERROR"]);
        assert_eq!(levels(&logged(Some(" "), Some("error"))), ["ERROR"]);
        // Per-target directives: these lines' target is this module.
        assert_eq!(
            levels(&logged(None, Some("error,shared::logging=debug"))),
            ["DEBUG", "INFO", "WARN", "ERROR"]
        );
        assert_eq!(
            levels(&logged(None, Some("debug,shared=warn"))),
            ["WARN", "ERROR"]
        );
    }

    #[test]
    fn each_line_has_an_rfc_3339_timestamp_and_its_fields_at_the_top() {
        let lines = logged(None, None);
        let info = &lines[0];
        let at = info["timestamp"].as_str().expect("a timestamp");
        chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
        assert_eq!(info["message"], "an info line");
        assert_eq!(info["resync_id"], "r1");
        assert_eq!(info["upserted"], 3);
    }
}
