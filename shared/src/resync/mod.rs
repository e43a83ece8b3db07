//! The full resync pass: every resource block of the mapping, page by page (each page mapped and written
//! while the next is being listed), then the stale-entity plan, which runs only after an error-free pass.
//!
//! Blocks run concurrently (a few at a time, all sharing the client's request limit), because one kind
//! alone rarely keeps that many requests in flight. Where order can matter it is kept: a block waits for
//! every earlier block that may write the same blueprint (so the later block's write wins, as in a
//! sequential pass), and with `createMissingRelatedEntities: false` every block waits for all earlier ones
//! (a relation's target must exist first).

pub mod plan;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use futures::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use report::{DeletionOutcome, KindReport, RunReport};

use crate::ado::AdoClient;
use crate::ado::kinds::{self, FetchContext, PageHandler, PageSink};
use crate::catalog::{Catalog, Entity, EntityKey, UpsertOutcome, WriteOptions, WriteReason};
use crate::mapping::{CompiledConfig, CompiledResource, FieldWarning, ItemOutcome};
use plan::{DeletionPlan, SeenKeys};

/// Pages a kind may list ahead of the writes: enough to overlap listing and writing, small enough that
/// memory does not grow with the organisation.
const PAGES_AHEAD: usize = 4;
/// Waiting pages are written together up to this many entities (a work-item batch is 200).
const COALESCE_UP_TO: usize = 200;
/// Resource blocks running at once. Each keeps up to [`PAGES_AHEAD`] pages in memory; together they
/// share the client's request limit.
const BLOCKS_AT_ONCE: usize = 6;

/// Progress callbacks for terminals; every method has a no-op default.
pub trait Observer: Send + Sync {
    fn kind_started(&self, _index: usize, _kind: &str) {}
    fn page_done(&self, _progress: &KindReport) {}
    fn kind_finished(&self, _report: &KindReport) {}
}

/// Observes nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// One pass over every resource block of the mapping.
pub struct Resync<'a> {
    pub ado: &'a AdoClient,
    pub catalog: &'a dyn Catalog,
    pub mapping: &'a CompiledConfig,
    pub excluded_tags: Vec<String>,
    pub observer: &'a dyn Observer,
}

impl Resync<'_> {
    pub async fn run(&self) -> RunReport {
        let started_at = Utc::now();
        let clock = Instant::now();
        let resync_id = uuid::Uuid::new_v4().to_string();
        let cfg = self.mapping.config();
        let write = WriteOptions {
            merge: cfg.enable_merge_entity,
            create_missing_related_entities: cfg.create_missing_related_entities,
            reason: WriteReason::Resync,
            resync_id: Some(resync_id.clone()),
        };
        let ado_before = self.ado.requests_made();
        let ctx = FetchContext::new(self.ado.clone(), self.excluded_tags.clone());
        let mut seen = SeenKeys::default();
        let mut blueprint_owner: HashMap<String, usize> = HashMap::new();
        tracing::info!(resync_id = %resync_id, resources = self.mapping.resources().len(), "resync started");

        let resources = self.mapping.resources();
        let waits = order_constraints(
            &cfg.resources
                .iter()
                .map(|r| literal_blueprint(&r.port.entity.blueprint))
                .collect::<Vec<_>>(),
            cfg.create_missing_related_entities,
        );
        let done: Vec<_> = resources.iter().map(|_| watch::channel(false)).collect();
        let (ctx, write) = (&ctx, &write);
        let mut results: Vec<(KindReport, SeenKeys, HashMap<String, usize>)> =
            stream::iter(resources.iter().enumerate())
                .map(|(i, resource)| {
                    let before: Vec<_> = waits[i].iter().map(|&j| done[j].1.clone()).collect();
                    let finished = &done[i].0;
                    async move {
                        for mut rx in before {
                            // A sender is never dropped before the pass ends; an error cannot happen.
                            let _ = rx.wait_for(|d| *d).await;
                        }
                        self.observer
                            .kind_started(resource.index(), resource.kind());
                        let mut seen = SeenKeys::default();
                        let mut owner = HashMap::new();
                        let report = self
                            .run_resource(resource, ctx, write, &mut seen, &mut owner)
                            .await;
                        tracing::info!(
                            kind = %report.kind, index = report.index, read = report.items_read, upserted = report.upserted,
                            unchanged = report.unchanged, duplicates = report.duplicates, failed = report.failed, errors = report.errors,
                            ado_requests = report.ado_requests, secs = report.duration.as_secs_f64(), "kind synced"
                        );
                        self.observer.kind_finished(&report);
                        let _ = finished.send(true);
                        (report, seen, owner)
                    }
                })
                // Started in order, so every block a block waits for has started before it: no deadlock.
                .buffer_unordered(BLOCKS_AT_ONCE)
                .collect()
                .await;
        results.sort_by_key(|(report, _, _)| report.index);
        let mut kinds = Vec::with_capacity(results.len());
        for (report, keys, owner) in results {
            seen.absorb(keys);
            for (blueprint, index) in owner {
                // The first block (in config order) that wrote a blueprint owns it, as in a sequential pass.
                let slot = blueprint_owner.entry(blueprint).or_insert(index);
                *slot = (*slot).min(index);
            }
            kinds.push(report);
        }

        let deletion = if kinds.iter().any(|k| k.errors > 0) {
            tracing::warn!(resync_id = %resync_id, "the pass had errors: stale entities are kept until a clean pass");
            DeletionOutcome::SkippedAfterErrors
        } else {
            self.reconcile(started_at, &seen, &blueprint_owner, &mut kinds, write)
                .await
        };
        let report = RunReport {
            resync_id,
            started_at,
            duration: clock.elapsed(),
            kinds,
            deletion,
            ado_requests: self.ado.requests_made() - ado_before,
        };
        tracing::info!(resync_id = %report.resync_id, succeeded = report.succeeded(), deletion = %report.deletion.describe(), secs = report.duration.as_secs_f64(), "resync finished");
        report
    }

    async fn run_resource(
        &self,
        resource: &Arc<CompiledResource>,
        ctx: &FetchContext,
        write: &WriteOptions,
        seen: &mut SeenKeys,
        blueprint_owner: &mut HashMap<String, usize>,
    ) -> KindReport {
        let clock = Instant::now();
        let mut report = KindReport {
            index: resource.index(),
            kind: resource.kind().to_owned(),
            ..Default::default()
        };
        let Some(kind) = kinds::find(resource.kind()) else {
            report.error(format!(
                "kind {:?} is not supported by this version of ado-sync",
                resource.kind()
            ));
            return report;
        };
        if let Err(e) = kind.check(resource.selector()) {
            report.error(format!("invalid selector: {e}"));
            return report;
        }
        let (tx, mut pages) = mpsc::channel(PAGES_AHEAD);
        let sink = PageSink::handler(Arc::new(MapOnArrival {
            resource: Arc::clone(resource),
            tx,
        }));
        let mut warnings: BTreeMap<String, (u64, String)> = BTreeMap::new();
        // Counted per block: blocks run concurrently on one client, so the client's total cannot say
        // which block sent what.
        let requests = Arc::new(AtomicU64::new(0));
        let producer = AdoClient::counting(Arc::clone(&requests), async move {
            let result = kind.fetch(ctx, resource.selector(), &sink).await;
            drop(sink);
            result
        });
        let consumer = async {
            while let Some(mut page) = pages.recv().await {
                // Small pages that are already waiting go out together: one catalog search and fuller
                // bulk writes instead of one round trip per small page.
                while page.len() < COALESCE_UP_TO {
                    match pages.try_recv() {
                        Ok(next) => page.absorb(next),
                        Err(_) => break,
                    }
                }
                let done = self
                    .write_page(
                        resource.index(),
                        page,
                        write,
                        seen,
                        blueprint_owner,
                        &mut report,
                        &mut warnings,
                    )
                    .await;
                self.observer.page_done(&report);
                if !done {
                    // The catalog is failing as a whole: stop listing; dropping the receiver cancels the producer.
                    break;
                }
            }
        };
        let (listed, ()) = tokio::join!(producer, consumer);
        match listed {
            Ok(()) | Err(crate::ado::AdoError::Cancelled) => {}
            Err(e) => report.error(format!("listing failed: {e}")),
        }
        for (field, (count, message)) in warnings {
            tracing::warn!(kind = %report.kind, index = report.index, field = %field, count, example = %message, "mapping field evaluated to null");
        }
        report.ado_requests = requests.load(Ordering::Relaxed);
        report.duration = clock.elapsed();
        report
    }

    /// Writes one mapped page. Returns false when the catalog failed as a whole.
    #[allow(clippy::too_many_arguments)]
    async fn write_page(
        &self,
        index: usize,
        page: MappedPage,
        write: &WriteOptions,
        seen: &mut SeenKeys,
        blueprint_owner: &mut HashMap<String, usize>,
        report: &mut KindReport,
        warnings: &mut BTreeMap<String, (u64, String)>,
    ) -> bool {
        report.items_read += page.items_read;
        report.skipped += page.skipped;
        report.duplicates += page.duplicates;
        for message in page.errors {
            report.error(message);
        }
        note_warnings(report, warnings, page.warnings);
        for (blueprint, entities) in page.groups {
            blueprint_owner.entry(blueprint.clone()).or_insert(index);
            if let Err(message) = self
                .write_group(&blueprint, entities, write, seen, report)
                .await
            {
                report.error(message);
                return false;
            }
        }
        true
    }

    /// Skips entities the catalog already holds unchanged, upserts the rest, and records every key.
    async fn write_group(
        &self,
        blueprint: &str,
        mut entities: Vec<Entity>,
        write: &WriteOptions,
        seen: &mut SeenKeys,
        report: &mut KindReport,
    ) -> Result<(), String> {
        // `seen` holds this block's keys only: a key already there came from an earlier page of this
        // block. Writing the later item too would make every pass write both (each undoes the other).
        let before = entities.len();
        entities.retain(|e| e.uses_search() || !seen.contains(&e.key()));
        report.duplicates += (before - entities.len()) as u64;
        let keyed: Vec<String> = entities
            .iter()
            .filter(|e| !e.uses_search())
            .map(|e| e.key().identifier)
            .collect();
        let stored: HashMap<String, Entity> = if keyed.is_empty() {
            HashMap::new()
        } else {
            match self.catalog.find(blueprint, &keyed).await {
                Ok(found) => found.into_iter().map(|e| (e.key().identifier, e)).collect(),
                Err(e) => {
                    // Without the stored copies we cannot skip anything; writing everything is still correct.
                    tracing::warn!(blueprint, error = %e, "catalog search failed; upserting the whole page");
                    HashMap::new()
                }
            }
        };
        let mut to_write = Vec::with_capacity(entities.len());
        for entity in entities {
            if entity.uses_search() {
                to_write.push(entity);
                continue;
            }
            let key = entity.key();
            if stored
                .get(&key.identifier)
                .is_some_and(|s| plan::unchanged(&entity, s, write.merge))
            {
                report.unchanged += 1;
                seen.insert(&key.blueprint, &key.identifier);
            } else {
                to_write.push(entity);
            }
        }
        if to_write.is_empty() {
            return Ok(());
        }
        let outcomes = self
            .catalog
            .upsert(blueprint, &to_write, write)
            .await
            .map_err(|e| {
                report.failed += to_write.len() as u64;
                for entity in &to_write {
                    if !entity.uses_search() {
                        let key = entity.key();
                        seen.insert(&key.blueprint, &key.identifier);
                    }
                }
                format!(
                    "writing {} {blueprint} entities failed: {e}",
                    to_write.len()
                )
            })?;
        for (entity, outcome) in to_write.iter().zip(outcomes) {
            match outcome {
                UpsertOutcome::Upserted { identifier, .. } => {
                    report.upserted += 1;
                    // A search identifier is resolved by the catalog: the returned one is the real key.
                    seen.insert(blueprint, &identifier);
                }
                UpsertOutcome::Failed {
                    status,
                    error,
                    message,
                } => {
                    // A failed write must not make the entity look stale: keep its key.
                    if !entity.uses_search() {
                        seen.insert(blueprint, &entity.key().identifier);
                    }
                    report.failed += 1;
                    report.error(format!(
                        "upsert of {blueprint}/{} failed: {status} {error}: {message}",
                        entity.key().identifier
                    ));
                }
            }
        }
        Ok(())
    }

    async fn reconcile(
        &self,
        started_at: chrono::DateTime<Utc>,
        seen: &SeenKeys,
        blueprint_owner: &HashMap<String, usize>,
        kinds: &mut [KindReport],
        write: &WriteOptions,
    ) -> DeletionOutcome {
        // Only entities last written before the pass started: a live event that wrote one during the pass
        // must not make it a candidate.
        let mut candidates = Vec::new();
        let mut owned = 0usize;
        let mut cursor = None;
        loop {
            match self.catalog.owned(started_at, cursor.take()).await {
                Ok(page) => {
                    owned += page.entities.len();
                    candidates.extend(page.entities.into_iter().filter(|k| !seen.contains(k)));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => {
                    return DeletionOutcome::Failed {
                        message: format!("listing owned entities failed: {e}"),
                        deleted: 0,
                    };
                }
            }
        }
        let threshold = self.mapping.config().entity_deletion_threshold;
        let to_delete = match plan::plan_deletions(candidates, owned, threshold) {
            DeletionPlan::Nothing => return DeletionOutcome::NothingStale { owned },
            DeletionPlan::OverThreshold {
                candidates,
                owned,
                rate,
                threshold,
            } => {
                tracing::warn!(
                    candidates,
                    owned,
                    rate,
                    threshold,
                    "too many stale entities: nothing deleted"
                );
                return DeletionOutcome::SkippedOverThreshold {
                    candidates,
                    owned,
                    rate,
                    threshold,
                };
            }
            DeletionPlan::Delete(keys) => keys,
        };
        let total = to_delete.len();
        let mut by_blueprint: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in to_delete {
            by_blueprint
                .entry(key.blueprint)
                .or_default()
                .push(key.identifier);
        }
        let mut deleted = 0usize;
        let dependents = self.mapping.config().delete_dependent_entities;
        for (blueprint, ids) in by_blueprint {
            match self
                .catalog
                .delete(&blueprint, &ids, dependents, write)
                .await
            {
                Ok(gone) => {
                    deleted += gone.len();
                    tracing::info!(blueprint = %blueprint, deleted = gone.len(), "stale entities deleted");
                    let owner = blueprint_owner.get(&blueprint).copied();
                    if let Some(k) = kinds.iter_mut().find(|k| Some(k.index) == owner) {
                        k.deleted += gone.len() as u64;
                    }
                }
                Err(e) => {
                    return DeletionOutcome::Failed {
                        message: format!("deleting {blueprint} entities failed: {e}"),
                        deleted,
                    };
                }
            }
        }
        DeletionOutcome::Deleted {
            candidates: total,
            deleted,
            owned,
        }
    }
}

/// One page, mapped where it was listed: its entities grouped by blueprint (the bulk API takes one
/// blueprint per call), and what mapping it counted.
#[derive(Default)]
struct MappedPage {
    groups: BTreeMap<String, Vec<Entity>>,
    items_read: u64,
    skipped: u64,
    /// Items whose key an earlier item of the page already produced (not written).
    duplicates: u64,
    errors: Vec<String>,
    warnings: Vec<FieldWarning>,
}

impl MappedPage {
    fn len(&self) -> usize {
        self.groups.values().map(Vec::len).sum()
    }

    /// Adds a later page; a key both pages mapped keeps the earlier mapping, as within one page.
    fn absorb(&mut self, later: MappedPage) {
        self.items_read += later.items_read;
        self.skipped += later.skipped;
        self.duplicates += later.duplicates;
        self.errors.extend(later.errors);
        self.warnings.extend(later.warnings);
        for (blueprint, entities) in later.groups {
            let group = self.groups.entry(blueprint).or_default();
            let mut keys: HashSet<EntityKey> = group
                .iter()
                .filter(|e| !e.uses_search())
                .map(Entity::key)
                .collect();
            for entity in entities {
                if entity.uses_search() || keys.insert(entity.key()) {
                    group.push(entity);
                } else {
                    self.duplicates += 1;
                }
            }
        }
    }
}

/// Maps each page the moment a kind lists it, then waits for room in the writer's queue holding only the
/// entities: the raw JSON of a page never outlives its mapping.
struct MapOnArrival {
    resource: Arc<CompiledResource>,
    tx: mpsc::Sender<MappedPage>,
}

#[async_trait::async_trait]
impl PageHandler for MapOnArrival {
    async fn accept(&self, page: Vec<Value>) -> Result<(), crate::ado::AdoError> {
        let mapped = map_page(&self.resource, page);
        self.tx
            .send(mapped)
            .await
            .map_err(|_| crate::ado::AdoError::Cancelled)
    }
}

/// Maps a page without I/O. A key mapped twice in one page keeps the first mapping, as across pages
/// (see [`Resync::write_group`]), so which item wins does not depend on where pages break.
fn map_page(resource: &CompiledResource, page: Vec<Value>) -> MappedPage {
    let mut out = MappedPage::default();
    let mut keys: HashSet<EntityKey> = HashSet::new();
    for raw in page {
        out.items_read += 1;
        for outcome in resource.map_item(&raw, false) {
            match outcome {
                ItemOutcome::Mapped { entity, warnings } => {
                    out.warnings.extend(warnings);
                    let key = entity.key();
                    let group = out.groups.entry(entity.blueprint.clone()).or_default();
                    if entity.uses_search() || keys.insert(key) {
                        group.push(entity);
                    } else {
                        out.duplicates += 1;
                    }
                }
                ItemOutcome::Filtered { .. } => out.skipped += 1,
                ItemOutcome::Dropped { warnings } => {
                    out.skipped += 1;
                    out.warnings.extend(warnings);
                }
                ItemOutcome::SelectorError { message } => {
                    out.errors.push(format!("selector: {message}"))
                }
                ItemOutcome::ParentSkipped { message } => {
                    out.skipped += 1;
                    tracing::warn!(kind = %resource.kind(), index = resource.index(), reason = %message, "item skipped by itemsToParse");
                }
            }
        }
    }
    out
}

fn note_warnings(
    report: &mut KindReport,
    warnings: &mut BTreeMap<String, (u64, String)>,
    new: Vec<FieldWarning>,
) {
    for w in new {
        report.field_warnings += 1;
        let entry = warnings
            .entry(w.field)
            .or_insert_with(|| (0, format!("{}: {}", w.expression, w.message)));
        entry.0 += 1;
    }
}

/// The blueprint a block writes when its `blueprint` mapping is a string literal (`'"service"'`), else
/// `None` (an expression: it may write any blueprint).
fn literal_blueprint(jq: &str) -> Option<String> {
    match serde_json::from_str::<Value>(jq.trim()) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// For each block, the earlier blocks it must wait for: those that may write the same blueprint (an
/// expression blueprint may write any), or all earlier blocks when related entities must already exist.
fn order_constraints(
    blueprints: &[Option<String>],
    create_missing_related: bool,
) -> Vec<Vec<usize>> {
    (0..blueprints.len())
        .map(|i| {
            (0..i)
                .filter(|&j| {
                    !create_missing_related
                        || match (&blueprints[i], &blueprints[j]) {
                            (Some(a), Some(b)) => a == b,
                            _ => true,
                        }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::compile_mapping;

    #[test]
    fn blocks_wait_only_for_earlier_blocks_that_may_write_the_same_blueprint() {
        assert_eq!(
            literal_blueprint(r#" "service" "#).as_deref(),
            Some("service")
        );
        assert_eq!(literal_blueprint(r#"if .a then "x" else "y" end"#), None);
        let bps = [
            Some("project".to_owned()),
            Some("service".to_owned()),
            Some("project".to_owned()),
            None,
            Some("service".to_owned()),
        ];
        let waits = order_constraints(&bps, true);
        assert_eq!(waits[0], Vec::<usize>::new());
        assert_eq!(waits[1], Vec::<usize>::new());
        assert_eq!(waits[2], vec![0]);
        // An expression blueprint may write anything: it waits for all before it, and all after wait for it.
        assert_eq!(waits[3], vec![0, 1, 2]);
        assert_eq!(waits[4], vec![1, 3]);
        // Related entities must exist first: the peer's strict order.
        let strict = order_constraints(&bps, false);
        assert_eq!(strict[4], vec![0, 1, 2, 3]);
    }

    fn resource() -> Arc<CompiledResource> {
        let text = r#"
resources:
  - kind: repository
    selector:
      query: '.state != "hidden"'
    port:
      entity:
        mappings:
          identifier: .id
          title: .name
          blueprint: '"repo"'
"#;
        let config = compile_mapping(text, "test", false).unwrap();
        Arc::clone(&config.resources()[0])
    }

    fn titles(page: &MappedPage) -> Vec<(String, Value)> {
        page.groups["repo"]
            .iter()
            .map(|e| (e.key().identifier, e.title.clone().unwrap_or(Value::Null)))
            .collect()
    }

    #[test]
    fn a_page_is_mapped_counted_and_deduplicated_where_it_is_listed() {
        let page = map_page(
            &resource(),
            vec![
                json!({"id": "a", "name": "first"}),
                json!({"id": "b", "name": "b", "state": "hidden"}),
                json!({"id": "a", "name": "second"}),
            ],
        );
        assert_eq!(page.items_read, 3);
        assert_eq!(page.skipped, 1);
        assert_eq!(page.duplicates, 1);
        assert_eq!(titles(&page), [("a".to_owned(), json!("first"))]);
    }

    #[test]
    fn absorbing_a_later_page_sums_its_counts_and_keeps_the_earlier_mapping_of_a_shared_key() {
        let r = resource();
        let mut first = map_page(
            &r,
            vec![
                json!({"id": "a", "name": "old"}),
                json!({"id": "b", "name": "b"}),
            ],
        );
        let later = map_page(
            &r,
            vec![
                json!({"id": "a", "name": "new"}),
                json!({"id": "c", "name": "c", "state": "hidden"}),
            ],
        );
        first.absorb(later);
        assert_eq!((first.items_read, first.skipped, first.len()), (4, 1, 2));
        assert_eq!(first.duplicates, 1);
        assert_eq!(
            titles(&first),
            [("a".to_owned(), json!("old")), ("b".to_owned(), json!("b"))]
        );
    }
}
