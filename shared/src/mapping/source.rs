//! The mapping's one lifetime rule, for the resync and the live path alike: the mapping in use is the
//! last one resolved, and it is resolved again (every source, in the same order) at most once a
//! minute. A warm function follows a mapping edited in the catalog within a minute, and a burst of
//! live events costs at most one read of the integration record per minute.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::CompiledConfig;

/// How long a resolved mapping is used before its sources are read again.
pub const MAPPING_TTL: Duration = Duration::from_secs(60);

/// The time, injectable so the rule can be tested without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why the mapping could not be resolved again: the source's error, kept as the cause.
#[derive(Debug, thiserror::Error)]
#[error("reading the mapping failed: {source}")]
pub struct MappingUnavailable {
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads every source in order and compiles the mapping found first (the composition root knows the
/// sources: the catalog's integration record, then `MAPPING_FILE`/`MAPPING`/the default).
#[async_trait]
pub trait ResolveMapping: Send + Sync {
    async fn resolve(&self) -> Result<CompiledConfig, MappingUnavailable>;
}

struct Resolved {
    mapping: Arc<CompiledConfig>,
    /// When the sources were last read, successfully or not.
    read_at: Instant,
}

/// The mapping under its lifetime rule. Fixed (never read again) when it has no resolver.
pub struct MappingSource {
    resolver: Option<Box<dyn ResolveMapping>>,
    clock: Arc<dyn Clock>,
    state: Mutex<Resolved>,
    /// One read at a time: callers arriving while it runs wait and take its result.
    reading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MappingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingSource")
            .field("resolves", &self.resolver.is_some())
            .finish_non_exhaustive()
    }
}

impl MappingSource {
    /// A mapping that never changes (given by the caller, or read from local settings only).
    pub fn fixed(mapping: CompiledConfig) -> Self {
        Self::build(mapping, None, Arc::new(SystemClock))
    }

    /// `initial` was just resolved by `resolver`; it is read again once [`MAPPING_TTL`] has passed on
    /// `clock`.
    pub fn resolving(
        initial: CompiledConfig,
        resolver: Box<dyn ResolveMapping>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::build(initial, Some(resolver), clock)
    }

    fn build(
        mapping: CompiledConfig,
        resolver: Option<Box<dyn ResolveMapping>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let read_at = clock.now();
        Self {
            resolver,
            clock,
            state: Mutex::new(Resolved {
                mapping: Arc::new(mapping),
                read_at,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The last mapping resolved, without reading anything.
    pub fn last(&self) -> Arc<CompiledConfig> {
        self.lock().mapping.clone()
    }

    /// The mapping to use now: the last one resolved, read again first when that was [`MAPPING_TTL`]
    /// or longer ago. A failed read is an error for this caller (a pass must not run, nor delete, with
    /// a mapping it could not read); it counts as a read, so callers within the next minute get the
    /// last good mapping instead of reading again.
    pub async fn current(&self) -> Result<Arc<CompiledConfig>, MappingUnavailable> {
        let Some(resolver) = &self.resolver else {
            return Ok(self.last());
        };
        if !self.due() {
            return Ok(self.last());
        }
        let _reading = self.reading.lock().await;
        // Another caller may have read while this one waited.
        if !self.due() {
            return Ok(self.last());
        }
        let result = resolver.resolve().await;
        let mut state = self.lock();
        state.read_at = self.clock.now();
        let mapping = Arc::new(result?);
        state.mapping = mapping.clone();
        Ok(mapping)
    }

    fn due(&self) -> bool {
        let read_at = self.lock().read_at;
        self.clock.now().saturating_duration_since(read_at) >= MAPPING_TTL
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Resolved> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn compiled(kinds: &[&str]) -> CompiledConfig {
        let resources: Vec<String> = kinds
            .iter()
            .map(|k| {
                format!(
                    r#"{{"kind": "{k}", "selector": {{"query": "true"}}, "port": {{"entity": {{"mappings": {{"identifier": ".id", "blueprint": "\"b\""}}}}}}}}"#
                )
            })
            .collect();
        let text = format!(r#"{{"resources": [{}]}}"#, resources.join(","));
        crate::tenant::compile_mapping(&text, "test", false).unwrap()
    }

    /// Answers with the next scripted outcome (the last one repeats), counting the reads.
    struct Scripted {
        reads: Arc<AtomicUsize>,
        outcomes: Vec<Option<&'static [&'static str]>>,
    }

    #[async_trait]
    impl ResolveMapping for Scripted {
        async fn resolve(&self) -> Result<CompiledConfig, MappingUnavailable> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            match self.outcomes[n.min(self.outcomes.len() - 1)] {
                Some(kinds) => Ok(compiled(kinds)),
                None => Err(MappingUnavailable {
                    source: "the catalog is down".into(),
                }),
            }
        }
    }

    fn source(
        outcomes: Vec<Option<&'static [&'static str]>>,
    ) -> (MappingSource, Arc<ManualClock>, Arc<AtomicUsize>) {
        let clock = Arc::new(ManualClock::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let source = MappingSource::resolving(
            compiled(&["project"]),
            Box::new(Scripted {
                reads: reads.clone(),
                outcomes,
            }),
            clock.clone(),
        );
        (source, clock, reads)
    }

    fn kinds(mapping: &CompiledConfig) -> Vec<String> {
        mapping
            .resources()
            .iter()
            .map(|r| r.kind().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn the_sources_are_read_again_at_most_once_a_minute() {
        let (source, clock, reads) = source(vec![Some(&["project", "repository"])]);
        for _ in 0..5 {
            assert_eq!(kinds(&source.current().await.unwrap()), ["project"]);
        }
        clock.advance(Duration::from_secs(59));
        assert_eq!(kinds(&source.current().await.unwrap()), ["project"]);
        assert_eq!(reads.load(Ordering::SeqCst), 0, "within the minute");

        clock.advance(Duration::from_secs(1));
        assert_eq!(
            kinds(&source.current().await.unwrap()),
            ["project", "repository"]
        );
        assert_eq!(kinds(&source.last()), ["project", "repository"]);
        for _ in 0..5 {
            source.current().await.unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "once at the minute");

        clock.advance(MAPPING_TTL);
        source.current().await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_fails_its_caller_keeps_the_last_mapping_and_counts_as_a_read() {
        let (source, clock, reads) = source(vec![None, Some(&["team"])]);
        clock.advance(MAPPING_TTL);
        let e = source.current().await.unwrap_err();
        assert!(e.to_string().contains("the catalog is down"), "{e}");
        assert_eq!(kinds(&source.last()), ["project"]);
        // Within the minute after the failure: the last good mapping, no new read.
        clock.advance(Duration::from_secs(30));
        assert_eq!(kinds(&source.current().await.unwrap()), ["project"]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(30));
        assert_eq!(kinds(&source.current().await.unwrap()), ["team"]);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_read() {
        let (source, clock, reads) = source(vec![Some(&["team"])]);
        clock.advance(MAPPING_TTL);
        let all = futures::future::join_all((0..8).map(|_| source.current())).await;
        assert!(all.iter().all(|m| kinds(m.as_ref().unwrap()) == ["team"]));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_fixed_mapping_is_never_read_again() {
        let source = MappingSource::fixed(compiled(&["project"]));
        assert_eq!(kinds(&source.current().await.unwrap()), ["project"]);
    }
}
