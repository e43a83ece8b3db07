//! The full pass: every resource block of the mapping, page by page (each page mapped and written while
//! the next is being listed), then reconciliation, blueprint by blueprint.
//!
//! Blocks run concurrently (a few at a time, all sharing the client's request limit), because one kind
//! alone rarely keeps that many requests in flight. Where order can matter it is kept: a block waits for
//! every earlier block that may write the same blueprint (so the later block's write wins, as in a
//! sequential pass), and with `createMissingRelatedEntities: false` every block waits for all earlier ones
//! (a relation's target must exist first).
//!
//! A pass always ends, with its report: every stage watches one stop signal, raised by the deadline,
//! by Azure DevOps refusing the credentials, or by the catalog failing as a whole. A stopped pass deletes
//! nothing. Otherwise a blueprint is reconciled only when every block that may write it listed its kind to
//! the end without an error; the others keep all their entities.

pub mod plan;
pub mod preview;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use report::{
    BlueprintDeletion, Decision, DeletionOutcome, KindReport, RunError, RunReport, StopReason,
};

use crate::ado::kinds::{self, FetchContext, PageHandler, PageSink};
use crate::ado::{AdoClient, AdoError};
use crate::catalog::{
    Catalog, CatalogError, Entity, EntityKey, UpsertOutcome, WriteOptions, WriteReason,
};
use crate::mapping::source::MappingSource;
use crate::mapping::{CompiledConfig, CompiledResource, FieldWarning, ItemOutcome};
use plan::{BlockFeed, DeletionPlan, SeenKeys};

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

/// What a pass depends on, and nothing more: the runtime supplies these; a test builds them by hand.
pub struct ResyncPorts<'a> {
    pub ado: &'a AdoClient,
    pub catalog: &'a dyn Catalog,
    /// Read once at the start of the pass, under the mapping's lifetime rule.
    pub mapping: &'a MappingSource,
    /// Projects carrying any of these tags are skipped by every kind.
    pub excluded_tags: &'a [String],
}

/// One pass with the mapping of the moment. A mapping that cannot be read (or no longer compiles)
/// fails the pass before anything is listed, written or deleted. At `deadline` the pass stops, reports
/// itself incomplete and deletes nothing.
pub async fn run(
    ports: ResyncPorts<'_>,
    observer: &dyn Observer,
    deadline: Option<Instant>,
) -> RunReport {
    let mapping = match ports.mapping.current().await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "the mapping could not be read: nothing synced, nothing deleted");
            return RunReport::not_started(e.to_string());
        }
    };
    Resync {
        ado: ports.ado,
        catalog: ports.catalog,
        mapping: &mapping,
        excluded_tags: ports.excluded_tags.to_vec(),
        observer,
        deadline,
    }
    .run()
    .await
}

/// One pass over every resource block of the mapping.
pub struct Resync<'a> {
    pub ado: &'a AdoClient,
    pub catalog: &'a dyn Catalog,
    pub mapping: &'a CompiledConfig,
    pub excluded_tags: Vec<String>,
    pub observer: &'a dyn Observer,
    /// When the pass must stop: the Lambda's remaining time minus a margin, or `--max-seconds`. Past it
    /// the pass stops listing, reports itself incomplete and deletes nothing.
    pub deadline: Option<Instant>,
}

/// The pass's one stop signal. The first reason wins; every wait of the pass watches the token, so a
/// stop ends the pass within one scheduling round, whatever requests are in flight.
#[derive(Default)]
struct Stop {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Stop {
    fn stop(&self, reason: StopReason) {
        {
            let mut current = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if current.is_none() {
                tracing::warn!(reason = %reason.describe(), "resync stopping");
                *current = Some(reason);
            }
        }
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Keys of the entities a pass rewrote that this integration already owned: they are part of the
/// blueprint's count before the pass (the threshold's denominator), but the ownership listing, which
/// only returns entities untouched since the pass started, no longer includes them.
#[derive(Debug, Default)]
struct Rewritten(HashMap<String, SeenKeys>);

impl Rewritten {
    fn insert(&mut self, blueprint: &str, identifier: &str) {
        self.0
            .entry(blueprint.to_owned())
            .or_default()
            .insert(blueprint, identifier);
    }

    fn absorb(&mut self, other: Rewritten) {
        for (blueprint, keys) in other.0 {
            self.0.entry(blueprint).or_default().absorb(keys);
        }
    }

    fn count(&self, blueprint: &str) -> usize {
        self.0.get(blueprint).map_or(0, SeenKeys::len)
    }
}

/// What one block gathers while it runs, for its report and for reconciliation.
#[derive(Default)]
struct Block {
    report: KindReport,
    seen: SeenKeys,
    rewritten: Rewritten,
    /// Blueprints this block wrote, with its index (the kind a deletion is counted against).
    owner: HashMap<String, usize>,
    warnings: BTreeMap<String, (u64, String)>,
}

impl Block {
    fn new(resource: &CompiledResource) -> Self {
        Self {
            report: KindReport {
                index: resource.index(),
                kind: resource.kind().to_owned(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
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
        let stop = Stop::default();
        tracing::info!(resync_id = %resync_id, resources = self.mapping.resources().len(), "resync started");

        let resources = self.mapping.resources();
        let blueprints: Vec<Option<String>> = cfg
            .resources
            .iter()
            .map(|r| literal_blueprint(&r.port.entity.blueprint))
            .collect();
        let waits = order_constraints(&blueprints, cfg.create_missing_related_entities);
        let done: Vec<_> = resources.iter().map(|_| watch::channel(false)).collect();
        let (ctx, write, stop_ref) = (&ctx, &write, &stop);
        let pass = async {
            if !resources.is_empty() {
                self.preflight(ctx, stop_ref).await;
            }
            stream::iter(resources.iter().enumerate())
                .map(|(i, resource)| {
                    let before: Vec<_> = waits[i].iter().map(|&j| done[j].1.clone()).collect();
                    let finished = &done[i].0;
                    async move {
                        let block = self.run_block(resource, before, ctx, write, stop_ref).await;
                        // Waiters also watch the stop; this wakes those that wait for a finished block.
                        let _ = finished.send(true);
                        block
                    }
                })
                // Started in order, so every block a block waits for has started before it: no deadlock.
                .buffer_unordered(BLOCKS_AT_ONCE)
                .collect::<Vec<Block>>()
                .await
        };
        let mut blocks = match self.deadline {
            Some(deadline) => {
                tokio::pin!(pass);
                tokio::select! {
                    blocks = &mut pass => blocks,
                    () = tokio::time::sleep_until(deadline) => {
                        stop.stop(StopReason::Deadline);
                        // Every block watches the stop: they end at once with what they have.
                        pass.await
                    }
                }
            }
            None => pass.await,
        };
        blocks.sort_by_key(|b| b.report.index);

        let mut seen = SeenKeys::default();
        let mut rewritten = Rewritten::default();
        let mut blueprint_owner: HashMap<String, usize> = HashMap::new();
        let mut kinds = Vec::with_capacity(blocks.len());
        let mut feeds = Vec::with_capacity(blocks.len());
        for block in blocks {
            seen.absorb(block.seen);
            rewritten.absorb(block.rewritten);
            for (blueprint, index) in block.owner {
                // The first block (in config order) that wrote a blueprint owns it, as in a sequential pass.
                let slot = blueprint_owner.entry(blueprint).or_insert(index);
                *slot = (*slot).min(index);
            }
            feeds.push(BlockFeed {
                label: block.report.label(),
                blueprint: blueprints.get(block.report.index).cloned().flatten(),
                completed: block.report.completed(),
            });
            kinds.push(block.report);
        }

        let deletion = if stop.reason().is_some() {
            tracing::warn!(resync_id = %resync_id, "the pass stopped early: nothing is deleted");
            DeletionOutcome::SkippedIncomplete
        } else {
            let sets = Reconciliation {
                started_at,
                seen: &seen,
                rewritten: &rewritten,
                feeds: &feeds,
                owners: &blueprint_owner,
            };
            self.reconcile(sets, &mut kinds, write, &stop).await
        };
        let report = RunReport {
            resync_id,
            started_at,
            duration: clock.elapsed(),
            kinds,
            stopped: stop.reason(),
            deletion,
            ado_requests: self.ado.requests_made() - ado_before,
        };
        tracing::info!(resync_id = %report.resync_id, succeeded = report.succeeded(), deletion = %report.deletion.describe(), secs = report.duration.as_secs_f64(), "resync finished");
        report
    }

    /// Reads the project list before any block starts. Nearly every kind needs it, so a refused PAT
    /// becomes one clear stop here instead of one error per kind; any other failure is kept by the
    /// context and handed to each kind that needs the list, without asking again.
    async fn preflight(&self, ctx: &FetchContext, stop: &Stop) {
        if let Some(Err(error @ AdoError::Unauthorized(_))) =
            stop.token.run_until_cancelled(ctx.projects()).await
        {
            stop.stop(StopReason::AdoCredentials { error });
        }
    }

    async fn run_block(
        &self,
        resource: &Arc<CompiledResource>,
        before: Vec<watch::Receiver<bool>>,
        ctx: &FetchContext,
        write: &WriteOptions,
        stop: &Stop,
    ) -> Block {
        let waited = stop
            .token
            .run_until_cancelled(async {
                for mut rx in before {
                    // A sender is only dropped when the pass ends; an error cannot happen.
                    let _ = rx.wait_for(|d| *d).await;
                }
            })
            .await;
        if waited.is_none() || stop.token.is_cancelled() {
            let mut block = Block::new(resource);
            block.report.stopped = true;
            return block;
        }
        self.observer
            .kind_started(resource.index(), resource.kind());
        let block = self.run_resource(resource, ctx, write, stop).await;
        let r = &block.report;
        tracing::info!(
            kind = %r.kind, index = r.index, read = r.items_read, upserted = r.upserted,
            unchanged = r.unchanged, duplicates = r.duplicates, failed = r.failed, errors = r.errors,
            stopped = r.stopped, not_available = r.not_available.is_some(),
            ado_requests = r.ado_requests, secs = r.duration.as_secs_f64(), "kind synced"
        );
        self.observer.kind_finished(r);
        block
    }

    async fn run_resource(
        &self,
        resource: &Arc<CompiledResource>,
        ctx: &FetchContext,
        write: &WriteOptions,
        stop: &Stop,
    ) -> Block {
        let clock = Instant::now();
        let mut block = Block::new(resource);
        let Some(kind) = kinds::find(resource.kind()) else {
            block.report.error(RunError::UnsupportedKind {
                kind: resource.kind().to_owned(),
            });
            return block;
        };
        let (tx, pages) = mpsc::channel(PAGES_AHEAD);
        let sink = PageSink::handler(Arc::new(MapOnArrival {
            resource: Arc::clone(resource),
            tx,
        }));
        // Counted per block: blocks run concurrently on one client, so the client's total cannot say
        // which block sent what.
        let requests = Arc::new(AtomicU64::new(0));
        let producer = AdoClient::counting(Arc::clone(&requests), async move {
            let result = kind.fetch(ctx, resource, &sink).await;
            drop(sink);
            result
        });
        let consumer = async {
            // The consumer owns the receiver: when it stops early, the receiver goes with it, and the
            // lister's next page ends its listing instead of waiting for room forever.
            let mut pages = pages;
            while let Some(mut page) = pages.recv().await {
                // Small pages that are already waiting go out together: one catalog search and fuller
                // bulk writes instead of one round trip per small page.
                while page.len() < COALESCE_UP_TO {
                    match pages.try_recv() {
                        Ok(next) => page.absorb(next),
                        Err(_) => break,
                    }
                }
                let written = self
                    .write_page(resource.index(), page, write, &mut block)
                    .await;
                self.observer.page_done(&block.report);
                if let Err(error) = written {
                    // The catalog is failing as a whole: every other block would fail the same way.
                    block.report.error(error.clone());
                    stop.stop(StopReason::CatalogUnavailable { error });
                    break;
                }
            }
        };
        let listed = stop
            .token
            .run_until_cancelled(async { tokio::join!(producer, consumer).0 })
            .await;
        match listed {
            None | Some(Err(AdoError::Cancelled)) => block.report.stopped = true,
            Some(Ok(())) => {}
            Some(Err(AdoError::NotAvailable(why))) => {
                tracing::info!(kind = %block.report.kind, index = block.report.index, reason = %why, "kind not available on this server");
                block.report.not_available = Some(why.to_string());
            }
            Some(Err(e)) => {
                block.report.error(RunError::Listing(e.clone()));
                if let AdoError::Unauthorized(_) = e {
                    stop.stop(StopReason::AdoCredentials { error: e });
                }
            }
        }
        // A block cut short by another block's stop has not seen its whole kind either.
        if stop.token.is_cancelled() {
            block.report.stopped = true;
        }
        for (field, (count, message)) in std::mem::take(&mut block.warnings) {
            tracing::warn!(kind = %block.report.kind, index = block.report.index, field = %field, count, example = %message, "mapping field evaluated to null");
        }
        block.report.ado_requests = requests.load(Ordering::Relaxed);
        block.report.duration = clock.elapsed();
        block
    }

    /// Writes one mapped page. An error means the catalog failed as a whole.
    async fn write_page(
        &self,
        index: usize,
        page: MappedPage,
        write: &WriteOptions,
        block: &mut Block,
    ) -> Result<(), RunError> {
        block.report.items_read += page.items_read;
        block.report.skipped += page.skipped;
        block.report.duplicates += page.duplicates;
        for message in page.errors {
            block.report.error(RunError::Selector { message });
        }
        note_warnings(&mut block.report, &mut block.warnings, page.warnings);
        for (blueprint, entities) in page.groups {
            block.owner.entry(blueprint.clone()).or_insert(index);
            let count = entities.len();
            if let Err(source) = self.write_group(&blueprint, entities, write, block).await {
                return Err(RunError::WriteFailed {
                    count,
                    blueprint,
                    source,
                });
            }
        }
        Ok(())
    }

    /// Skips entities the catalog already holds unchanged, upserts the rest, and records every key.
    async fn write_group(
        &self,
        blueprint: &str,
        mut entities: Vec<Entity>,
        write: &WriteOptions,
        block: &mut Block,
    ) -> Result<(), CatalogError> {
        let Block {
            report,
            seen,
            rewritten,
            ..
        } = block;
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
        // The stored copies of this integration's entities; `None` when the search failed.
        let stored: Option<HashMap<String, Entity>> = if keyed.is_empty() {
            Some(HashMap::new())
        } else {
            match self.catalog.find(blueprint, &keyed).await {
                Ok(found) => Some(found.into_iter().map(|e| (e.key().identifier, e)).collect()),
                Err(e) => {
                    // Without the stored copies we cannot skip anything; writing everything is still correct.
                    tracing::warn!(blueprint, error = %e, "catalog search failed; upserting the whole page");
                    None
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
                .as_ref()
                .and_then(|s| s.get(&key.identifier))
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
        let outcomes = match self.catalog.upsert(blueprint, &to_write, write).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                report.failed += to_write.len() as u64;
                // A failed write must not make the entity look stale.
                for entity in to_write.iter().filter(|e| !e.uses_search()) {
                    let key = entity.key();
                    seen.insert(&key.blueprint, &key.identifier);
                }
                return Err(e);
            }
        };
        for (entity, outcome) in to_write.iter().zip(outcomes) {
            match outcome {
                UpsertOutcome::Upserted {
                    identifier,
                    created,
                } => {
                    report.upserted += 1;
                    // A search identifier is resolved by the catalog: the returned one is the real key.
                    seen.insert(blueprint, &identifier);
                    // Whether this integration owned it before the pass: the search says so exactly for
                    // a keyed entity; otherwise the catalog's own `created` flag.
                    let owned_before = match &stored {
                        Some(stored) if !entity.uses_search() => stored.contains_key(&identifier),
                        _ => !created,
                    };
                    if owned_before {
                        rewritten.insert(blueprint, &identifier);
                    }
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
                    report.error(RunError::EntityRejected {
                        blueprint: blueprint.to_owned(),
                        identifier: entity.key().identifier,
                        status,
                        error,
                        message,
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes, blueprint by blueprint, the owned entities the pass did not see: only in blueprints whose
    /// every feeding block completed, and only within the threshold of what the blueprint held.
    async fn reconcile(
        &self,
        sets: Reconciliation<'_>,
        kinds: &mut [KindReport],
        write: &WriteOptions,
        stop: &Stop,
    ) -> DeletionOutcome {
        // Only entities last written before the pass started: a live event that wrote one during the pass
        // must not make it a candidate.
        let mut untouched: BTreeMap<String, usize> = BTreeMap::new();
        let mut stale: HashMap<String, Vec<String>> = HashMap::new();
        let mut cursor = None;
        loop {
            match self.catalog.owned(sets.started_at, cursor.take()).await {
                Ok(page) => {
                    for key in page.entities {
                        *untouched.entry(key.blueprint.clone()).or_default() += 1;
                        if !sets.seen.contains(&key) {
                            stale.entry(key.blueprint).or_default().push(key.identifier);
                        }
                    }
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => {
                    return DeletionOutcome::Failed {
                        error: RunError::OwnedListing(e),
                    };
                }
            }
        }
        let threshold = self.mapping.config().entity_deletion_threshold;
        let dependents = self.mapping.config().delete_dependent_entities;
        let mut blueprints = Vec::with_capacity(untouched.len());
        for (blueprint, untouched) in untouched {
            let owned = untouched + sets.rewritten.count(&blueprint);
            let ids = stale.remove(&blueprint).unwrap_or_default();
            let mut outcome = BlueprintDeletion {
                stale: ids.len(),
                owned,
                deleted: 0,
                decision: Decision::NothingStale,
                blueprint,
            };
            if ids.is_empty() {
                blueprints.push(outcome);
                continue;
            }
            let incomplete = plan::incomplete_feeders(&outcome.blueprint, sets.feeds);
            outcome.decision = if !incomplete.is_empty() {
                Decision::KeptIncomplete { blocks: incomplete }
            } else if let DeletionPlan::OverThreshold { rate } =
                plan::plan_deletions(ids.len(), owned, threshold)
            {
                Decision::KeptOverThreshold { rate, threshold }
            } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
                // Deleting is bounded too: what is left waits for the next pass, which finds it again.
                stop.stop(StopReason::Deadline);
                Decision::KeptIncomplete {
                    blocks: vec!["the deadline".to_owned()],
                }
            } else {
                match self
                    .catalog
                    .delete(&outcome.blueprint, &ids, dependents, write)
                    .await
                {
                    Ok(gone) => {
                        outcome.deleted = gone.len();
                        let owner = sets.owners.get(&outcome.blueprint).copied();
                        if let Some(k) = kinds.iter_mut().find(|k| Some(k.index) == owner) {
                            k.deleted += gone.len() as u64;
                        }
                        Decision::Deleted
                    }
                    Err(e) => Decision::Failed {
                        error: RunError::Delete(e),
                    },
                }
            };
            match &outcome.decision {
                Decision::Deleted => {
                    tracing::info!(blueprint = %outcome.blueprint, deleted = outcome.deleted, "stale entities deleted")
                }
                _ => {
                    tracing::warn!(blueprint = %outcome.blueprint, stale = outcome.stale, owned, why = %outcome.describe(), "stale entities kept")
                }
            }
            blueprints.push(outcome);
        }
        DeletionOutcome::Reconciled { blueprints }
    }
}

/// What reconciliation needs from the blocks of a finished pass.
struct Reconciliation<'a> {
    started_at: chrono::DateTime<Utc>,
    seen: &'a SeenKeys,
    rewritten: &'a Rewritten,
    feeds: &'a [BlockFeed],
    owners: &'a HashMap<String, usize>,
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
    /// Selector errors, as the mapping engine words them.
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
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::catalog::embedded::EmbeddedCatalog;
    use crate::config::AdoSettings;
    use crate::mapping::source::{MAPPING_TTL, ManualClock, MappingUnavailable, ResolveMapping};
    use crate::tenant::compile_mapping;

    /// Nothing listens on port 9: a pass that reached Azure DevOps fails, and counts the request.
    fn unreachable_ado() -> AdoClient {
        AdoClient::from_settings(
            &AdoSettings::from_lookup(|k| match k {
                "ADO_ORG_URL" => Some("http://127.0.0.1:9/org".into()),
                "ADO_PAT" => Some("pat".into()),
                "ADO_MAX_RETRIES" => Some("0".into()),
                _ => None,
            })
            .unwrap(),
        )
        .unwrap()
    }

    const PROJECTS: &str = r#"{"resources": [{"kind": "project", "selector": {"query": "true"},
        "port": {"entity": {"mappings": {"identifier": ".id", "blueprint": "\"p\""}}}}]}"#;

    /// The mapping's sources: the project block, or a failure.
    struct Sources(bool);

    #[async_trait]
    impl ResolveMapping for Sources {
        async fn resolve(&self) -> Result<CompiledConfig, MappingUnavailable> {
            if self.0 {
                Ok(compile_mapping(PROJECTS, "unit", false).unwrap())
            } else {
                Err(MappingUnavailable {
                    source: "the catalog answered 503".into(),
                })
            }
        }
    }

    /// A mapping without blocks when read at start; `sources` once a minute has passed.
    fn mapping_a_minute_later(sources: Sources) -> MappingSource {
        let clock = Arc::new(ManualClock::default());
        let source = MappingSource::resolving(
            compile_mapping("resources: []", "unit", false).unwrap(),
            Box::new(sources),
            clock.clone(),
        );
        clock.advance(MAPPING_TTL + Duration::from_secs(1));
        source
    }

    #[tokio::test]
    async fn a_pass_whose_mapping_cannot_be_read_again_lists_writes_and_deletes_nothing() {
        let ado = unreachable_ado();
        let catalog = EmbeddedCatalog::in_memory("unit".into()).unwrap();
        let mapping = mapping_a_minute_later(Sources(false));
        let ports = ResyncPorts {
            ado: &ado,
            catalog: &catalog,
            mapping: &mapping,
            excluded_tags: &[],
        };
        let report = run(ports, &Quiet, None).await;
        assert!(!report.succeeded());
        assert!(report.kinds.is_empty());
        let said = report.render();
        assert!(said.contains("reading the mapping failed"), "{said}");
        assert!(said.contains("503"), "{said}");
        assert_eq!(ado.requests_made(), 0);
    }

    #[tokio::test]
    async fn a_pass_runs_the_mapping_of_the_moment() {
        let ado = unreachable_ado();
        let catalog = EmbeddedCatalog::in_memory("unit".into()).unwrap();
        let mapping = mapping_a_minute_later(Sources(true));
        let ports = ResyncPorts {
            ado: &ado,
            catalog: &catalog,
            mapping: &mapping,
            excluded_tags: &[],
        };
        let report = run(ports, &Quiet, None).await;
        let kinds: Vec<&str> = report.kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["project"], "{}", report.render());
        assert!(!report.succeeded(), "Azure DevOps is unreachable");
        assert!(ado.requests_made() > 0);
    }

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
