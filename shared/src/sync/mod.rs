//! Applying one queued live change to the catalog: re-read the changed resource from Azure DevOps (the
//! message says *what* changed, never *how*, so late, repeated or reordered deliveries all end in the
//! true state), map it with every resource block of its kind, upsert what passes and delete, if owned,
//! what no longer passes or no longer exists.

mod cicd;
mod content;
pub mod plan;

pub use cicd::follow_on_kinds;

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use crate::ado::resources;
use crate::ado::{AdoClient, AdoError, Guid};
use crate::catalog::{CatalogError, UpsertOutcome, WriteOptions, WriteReason};
use crate::mapping::{CompiledConfig, CompiledResource};
use crate::queue::message::{Change, ChangeMessage, MESSAGE_VERSION};
use crate::runtime::SyncRuntime;
use plan::{LivePlan, RawItem};

/// What applying one change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The mapping kinds the change was applied to; empty when there was nothing to do.
    pub kinds: Vec<String>,
    pub upserted: usize,
    pub deleted: usize,
    /// Mapped entities that were not written: delete candidates the catalog does not hold (or that
    /// another integration owns), items dropped by the mapping.
    pub skipped: usize,
}

impl Applied {
    fn nothing() -> Self {
        Self::default()
    }

    fn add(&mut self, kind: &str, other: Applied) {
        tracing::info!(
            kind,
            upserted = other.upserted,
            deleted = other.deleted,
            skipped = other.skipped,
            "change applied"
        );
        self.kinds.push(kind.to_owned());
        self.upserted += other.upserted;
        self.deleted += other.deleted;
        self.skipped += other.skipped;
    }
}

/// What went wrong underneath a [`SyncError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Ado(#[from] AdoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Other(String),
}

/// Errors typed by what the queue must do with the message.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Azure DevOps or the catalog is throttling, timing out or unavailable: the same message may succeed
    /// on a later receive.
    #[error("{context}: {source}")]
    Transient {
        context: String,
        #[source]
        source: Cause,
    },
    /// The message can never be applied as it is (an unknown schema version, a mapping or payload the
    /// catalog rejects): it belongs in the dead-letter queue, where someone can look at it.
    #[error("{context}: {source}")]
    Permanent {
        context: String,
        #[source]
        source: Cause,
    },
}

impl SyncError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Transient { .. })
    }

    fn permanent(context: impl Into<String>, why: impl Into<String>) -> Self {
        SyncError::Permanent {
            context: context.into(),
            source: Cause::Other(why.into()),
        }
    }

    /// Refused credentials count as transient: a rotated PAT or client secret makes the same message
    /// succeed, and the redrive policy bounds the retries anyway.
    fn ado(context: impl Into<String>, e: AdoError) -> Self {
        let context = context.into();
        match e {
            AdoError::Transient(_)
            | AdoError::Unauthorized(_)
            | AdoError::Forbidden(_)
            | AdoError::Cancelled => SyncError::Transient {
                context,
                source: e.into(),
            },
            AdoError::NotFound(_)
            | AdoError::Invalid(_)
            | AdoError::Permanent(_)
            | AdoError::NotAvailable(_) => SyncError::Permanent {
                context,
                source: e.into(),
            },
        }
    }

    fn catalog(context: impl Into<String>, e: CatalogError) -> Self {
        let context = context.into();
        match e {
            CatalogError::Transient(_) | CatalogError::Unauthorized(_) => SyncError::Transient {
                context,
                source: e.into(),
            },
            CatalogError::Invalid(_) | CatalogError::Permanent(_) => SyncError::Permanent {
                context,
                source: e.into(),
            },
        }
    }
}

/// The mapping kind a change refreshes, if this build follows it live.
pub fn target_kind(change: &Change) -> Option<&'static str> {
    match change {
        Change::WorkItem { .. } => Some("work-item"),
        Change::PullRequest { .. } => Some("pull-request"),
        // A push moves branches (a later kind); refreshing the repository is cheap and keeps its
        // default branch and size current.
        Change::Repository { .. } | Change::Push { .. } => Some("repository"),
        Change::Build { .. } | Change::PipelineRun { .. } => Some("pipeline"),
        Change::Release { .. }
        | Change::ReleaseDeployment { .. }
        | Change::SecurityAlert { .. } => None,
    }
}

/// Applies one change. Safe to repeat: every write is derived from Azure DevOps' current state.
/// The mapping is read once per change, under its lifetime rule ([`SyncRuntime::mapping`]).
pub async fn apply(runtime: &SyncRuntime, message: &ChangeMessage) -> Result<Applied, SyncError> {
    let mapping = runtime.mapping().await;
    let mut applied = apply_target(runtime, &mapping, message).await?;
    applied.absorb(content::apply_push(runtime, &mapping, message).await?);
    Ok(applied)
}

/// The change's own kind (see [`target_kind`]).
async fn apply_target(
    runtime: &SyncRuntime,
    mapping: &CompiledConfig,
    message: &ChangeMessage,
) -> Result<Applied, SyncError> {
    if message.version != MESSAGE_VERSION {
        return Err(SyncError::permanent(
            format!("message {}", message.event_id),
            format!(
                "message version {} is not supported (this build reads version {MESSAGE_VERSION})",
                message.version
            ),
        ));
    }
    let reader = Reader {
        ado: &runtime.ado,
        excluded_tags: &runtime.settings.excluded_tags,
    };
    let mut applied = Applied::nothing();
    if let Some(kind) = target_kind(&message.change) {
        let blocks: Vec<&CompiledResource> = mapping.resources_of(kind).collect();
        if blocks.is_empty() {
            tracing::info!(
                kind,
                "the mapping has no resource of this kind; nothing to do"
            );
        } else if let Some(items) = reader.read(message, &blocks).await? {
            applied.add(kind, write(runtime, mapping, plan::plan(items)).await?);
        }
    }
    // The kinds the same change also moves (a build's runs, stages and tests; a push's branches; ...).
    for (kind, items) in cicd::read(&reader, mapping, message).await? {
        applied.add(kind, write(runtime, mapping, plan::plan(items)).await?);
    }
    if applied.kinds.is_empty() {
        tracing::info!(event_type = %message.event_type, "no kind of the mapping follows this change; nothing to do");
    }
    Ok(applied)
}

/// Reads the current state of what a change touched, once per distinct request.
struct Reader<'a> {
    ado: &'a AdoClient,
    excluded_tags: &'a [String],
}

/// One raw item per resource block (a block may need its own read, e.g. its own `$expand`).
type BlockItems<'a> = Vec<(&'a CompiledResource, RawItem)>;

/// A work item already read with one `$expand` (`None` inside: it is gone).
type FirstRead = Option<(&'static str, Option<Value>)>;

/// The project a work-item change belongs to.
enum WorkItemProject {
    /// It carries an excluded tag: nothing to do.
    Excluded,
    /// As Azure DevOps renders it.
    Found(Value),
    /// Deleted with its work items: only its id is known, and it still identifies them.
    Gone(Value),
}

/// A GUID from an Azure DevOps answer; one that is not a GUID counts as absent.
fn answered_guid(v: &Value, pointer: &str) -> Option<Guid> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|s| Guid::parse(s).ok())
}

impl Reader<'_> {
    /// `None`: the change is for an excluded project, or names nothing this build can read.
    async fn read<'b>(
        &self,
        message: &ChangeMessage,
        blocks: &[&'b CompiledResource],
    ) -> Result<Option<BlockItems<'b>>, SyncError> {
        let project_id = message.project_id.as_ref();
        match &message.change {
            Change::WorkItem { id, snapshot, .. } => {
                let found = match project_id {
                    Some(p) => Some((self.project_of_work_item(p, *id).await?, None)),
                    None => {
                        self.find_project_of_work_item(*id, snapshot.as_ref(), blocks)
                            .await?
                    }
                };
                let Some((project, first_read)) = found else {
                    return Ok(None);
                };
                self.work_item(project, first_read, *id, snapshot.as_ref(), blocks)
                    .await
            }
            Change::PullRequest {
                pull_request_id, ..
            } => {
                let context = format!("pull request {pull_request_id}");
                let pr = resources::pull_request(self.ado, project_id, *pull_request_id)
                    .await
                    .map_err(|e| SyncError::ado(&context, e))?;
                let Some(pr) = pr else {
                    // Pull requests are never deleted on their own (only with their repository, which the
                    // resync cleans up), and a gone one cannot be identified from the message.
                    tracing::info!(
                        pull_request = pull_request_id,
                        "pull request not found; nothing to do"
                    );
                    return Ok(None);
                };
                let project = project_id
                    .copied()
                    .or_else(|| answered_guid(&pr, "/repository/project/id"));
                if self.excluded(project.as_ref()).await? {
                    return Ok(None);
                }
                Ok(Some(each(blocks, RawItem::Current(pr))))
            }
            Change::Repository { repository_id, .. } | Change::Push { repository_id, .. } => {
                let context = format!("repository {repository_id}");
                let repo = resources::repository(self.ado, project_id, repository_id)
                    .await
                    .map_err(|e| SyncError::ado(&context, e))?;
                let project = project_id
                    .copied()
                    .or_else(|| repo.as_ref().and_then(|r| answered_guid(r, "/project/id")));
                if self.excluded(project.as_ref()).await? {
                    return Ok(None);
                }
                let raw = match repo {
                    Some(repo) => RawItem::Current(repo),
                    None => {
                        // The listing's repositories carry `project`; a mapping keyed on it must still
                        // find the entity.
                        let mut gone = json!({ "id": repository_id });
                        if let Some(p) = &project {
                            gone["project"] = self.project_or_id(p).await?;
                        }
                        RawItem::Gone(gone)
                    }
                };
                Ok(Some(content::repository_items(self, blocks, raw).await?))
            }
            Change::Build { definition_id, .. } => {
                self.pipeline(project_id, *definition_id, blocks).await
            }
            Change::PipelineRun { pipeline_id, .. } => {
                self.pipeline(project_id, *pipeline_id, blocks).await
            }
            Change::Release { .. }
            | Change::ReleaseDeployment { .. }
            | Change::SecurityAlert { .. } => Ok(None),
        }
    }

    /// The project of a work item whose message names it, as Azure DevOps renders it; a vanished
    /// project takes its work items with it, and its id still identifies them.
    async fn project_of_work_item(
        &self,
        project_id: &Guid,
        id: u64,
    ) -> Result<WorkItemProject, SyncError> {
        if self.excluded(Some(project_id)).await? {
            return Ok(WorkItemProject::Excluded);
        }
        let project = resources::project(self.ado, project_id)
            .await
            .map_err(|e| SyncError::ado(format!("work item {id}"), e))?;
        Ok(match project {
            Some(p) => WorkItemProject::Found(p),
            None => WorkItemProject::Gone(json!({ "id": project_id })),
        })
    }

    /// A work-item event without a project (an older subscription, or a message queued before the
    /// webhook required one): the item is read organisation-wide and names its project, or, once
    /// deleted, its snapshot does. That first read is handed on so it is not repeated.
    async fn find_project_of_work_item(
        &self,
        id: u64,
        snapshot: Option<&Value>,
        blocks: &[&CompiledResource],
    ) -> Result<Option<(WorkItemProject, FirstRead)>, SyncError> {
        let context = format!("work item {id}");
        let Some(first) = blocks.first() else {
            return Ok(None);
        };
        let expand = resources::work_item_expand(first.selector()).map_err(|e| {
            SyncError::permanent(format!("work-item resource {}", first.index()), e)
        })?;
        let item = resources::work_item_anywhere(self.ado, id, expand)
            .await
            .map_err(|e| SyncError::ado(&context, e))?;
        let named_by = item.as_ref().or(snapshot);
        let name = match named_by.map(resources::work_item_project_name) {
            Some(Ok(Some(name))) => name,
            Some(Err(e)) => {
                return Err(SyncError::permanent(
                    &context,
                    format!("the work item's project: {e}"),
                ));
            }
            None | Some(Ok(None)) => {
                // Nothing identifies its entity; deleting on a guess is not an option.
                tracing::info!(
                    work_item = id,
                    found = item.is_some(),
                    "the work item names no project (or is gone without a snapshot naming one); the next resync brings its entity in line"
                );
                return Ok(None);
            }
        };
        let Some(project) = resources::project_named(self.ado, &name)
            .await
            .map_err(|e| SyncError::ado(&context, e))?
        else {
            tracing::info!(work_item = id, project = %name, "the work item's project is gone; the next resync brings its entity in line");
            return Ok(None);
        };
        let project_id =
            resources::project_id_of(&project).map_err(|e| SyncError::ado(&context, e))?;
        if self.excluded(Some(&project_id)).await? {
            return Ok(Some((WorkItemProject::Excluded, None)));
        }
        let first_read = item.map(|item| resources::enriched_work_item(item, &project));
        Ok(Some((
            WorkItemProject::Found(project),
            Some((expand, first_read)),
        )))
    }

    async fn work_item<'b>(
        &self,
        project: WorkItemProject,
        first_read: FirstRead,
        id: u64,
        snapshot: Option<&Value>,
        blocks: &[&'b CompiledResource],
    ) -> Result<Option<BlockItems<'b>>, SyncError> {
        let (project, project_gone) = match project {
            WorkItemProject::Excluded => return Ok(None),
            WorkItemProject::Found(p) => (p, false),
            WorkItemProject::Gone(p) => (p, true),
        };
        let context = format!("work item {id}");
        let mut reads: HashMap<&'static str, Option<Value>> = first_read.into_iter().collect();
        let mut out = Vec::with_capacity(blocks.len());
        for &block in blocks {
            let expand = resources::work_item_expand(block.selector()).map_err(|e| {
                SyncError::permanent(format!("work-item resource {}", block.index()), e)
            })?;
            let current = match reads.get(expand) {
                Some(read) => read.clone(),
                None => {
                    let read = if project_gone {
                        None
                    } else {
                        resources::work_item(self.ado, &project, id, expand)
                            .await
                            .map_err(|e| SyncError::ado(&context, e))?
                    };
                    reads.insert(expand, read.clone());
                    read
                }
            };
            // ADO's answer wins over the message's `deleted` flag: a delete followed by a restore, or
            // delivered after it, must leave the item in the catalog.
            let raw = match current {
                Some(item) => RawItem::Current(item),
                None => RawItem::Gone(resources::deleted_work_item(snapshot, id, &project)),
            };
            out.push((block, raw));
        }
        Ok(Some(out))
    }

    async fn pipeline<'b>(
        &self,
        project_id: Option<&Guid>,
        pipeline_id: Option<u64>,
        blocks: &[&'b CompiledResource],
    ) -> Result<Option<BlockItems<'b>>, SyncError> {
        let (Some(project_id), Some(id)) = (project_id, pipeline_id) else {
            tracing::info!(
                project = project_id.map(tracing::field::display),
                pipeline = pipeline_id,
                "the change does not name a project and a pipeline; nothing to do"
            );
            return Ok(None);
        };
        if self.excluded(Some(project_id)).await? {
            return Ok(None);
        }
        let context = format!("pipeline {id}");
        let project = resources::project(self.ado, project_id)
            .await
            .map_err(|e| SyncError::ado(&context, e))?;
        let current = match &project {
            Some(p) => resources::pipeline(self.ado, p, id)
                .await
                .map_err(|e| SyncError::ado(&context, e))?,
            None => None,
        };
        let raw = match current {
            Some(item) => RawItem::Current(item),
            None => {
                let project = project.unwrap_or_else(|| json!({ "id": project_id }));
                RawItem::Gone(resources::deleted_pipeline(id, &project))
            }
        };
        // Blocks with `includeRepo` get `__repository`, as their listing does (read once for all of them).
        let mut with_repo: Option<RawItem> = None;
        let mut out = Vec::with_capacity(blocks.len());
        for &block in blocks {
            let wants_repo =
                crate::ado::kinds::include_repo_option(block.selector()).map_err(|e| {
                    SyncError::permanent(format!("pipeline resource {}", block.index()), e)
                })?;
            let item = match (&raw, wants_repo) {
                (RawItem::Current(item), true) => match &with_repo {
                    Some(done) => done.clone(),
                    None => {
                        let enriched =
                            crate::ado::kinds::with_repositories(self.ado, vec![item.clone()])
                                .await
                                .map_err(|e| SyncError::ado(&context, e))?
                                .pop()
                                .map_or_else(|| raw.clone(), RawItem::Current);
                        with_repo = Some(enriched.clone());
                        enriched
                    }
                },
                _ => raw.clone(),
            };
            out.push((block, item));
        }
        Ok(Some(out))
    }

    /// The project reference, or just its id when the project is gone.
    async fn project_or_id(&self, project_id: &Guid) -> Result<Value, SyncError> {
        Ok(resources::project(self.ado, project_id)
            .await
            .map_err(|e| SyncError::ado(format!("project {project_id}"), e))?
            .unwrap_or_else(|| json!({ "id": project_id })))
    }

    async fn excluded(&self, project_id: Option<&Guid>) -> Result<bool, SyncError> {
        let Some(project_id) = project_id else {
            return Ok(false);
        };
        match resources::project_is_excluded(self.ado, project_id, self.excluded_tags).await {
            Ok(true) => {
                tracing::info!(
                    project = %project_id,
                    "the project carries an excluded tag; nothing to do"
                );
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) if e.is_transient() => Err(SyncError::ado(
                format!("reading the tags of project {project_id}"),
                e,
            )),
            Err(e) => {
                // The listing's choice: unreadable tags keep the project.
                tracing::warn!(project = %project_id, error = %e, "could not read project tags; keeping the project");
                Ok(false)
            }
        }
    }
}

fn each<'b>(blocks: &[&'b CompiledResource], raw: RawItem) -> BlockItems<'b> {
    blocks.iter().map(|&b| (b, raw.clone())).collect()
}

/// Upserts, then deletes what this integration owns. Live writes are few, so there is no diff: an
/// unchanged entity is simply written again with the same content.
async fn write(
    runtime: &SyncRuntime,
    mapping: &CompiledConfig,
    plan: LivePlan,
) -> Result<Applied, SyncError> {
    let cfg = mapping.config();
    let opts = WriteOptions {
        merge: cfg.enable_merge_entity,
        create_missing_related_entities: cfg.create_missing_related_entities,
        reason: WriteReason::LiveEvent,
        resync_id: None,
    };
    let catalog = runtime.catalog.as_ref();
    let mut applied = Applied {
        skipped: plan.skipped,
        ..Applied::default()
    };
    let mut rejected: Option<RejectedUpsert> = None;
    for (blueprint, entities) in &plan.upserts {
        let outcomes = catalog
            .upsert(blueprint, entities, &opts)
            .await
            .map_err(|e| SyncError::catalog(format!("upserting {blueprint} entities"), e))?;
        for (entity, outcome) in entities.iter().zip(outcomes) {
            match outcome {
                UpsertOutcome::Upserted {
                    identifier,
                    created,
                } => {
                    applied.upserted += 1;
                    tracing::info!(blueprint = %blueprint, identifier = %identifier, created, "entity upserted");
                }
                UpsertOutcome::Failed {
                    status,
                    error,
                    message,
                } => {
                    let identifier = entity.key().identifier;
                    tracing::warn!(blueprint = %blueprint, identifier = %identifier, status, error = %error, message = %message, "the catalog refused an entity");
                    rejected.get_or_insert(RejectedUpsert {
                        blueprint: blueprint.clone(),
                        identifier,
                        status,
                        error,
                        message,
                    });
                }
            }
        }
    }
    // Deletes still run after a refused upsert: they do not depend on it, and the redelivery repeats
    // both idempotently.
    for (blueprint, identifiers) in &plan.deletes {
        let ids: Vec<String> = identifiers.iter().cloned().collect();
        let owned: Vec<String> = catalog
            .find(blueprint, &ids)
            .await
            .map_err(|e| SyncError::catalog(format!("looking up {blueprint} entities"), e))?
            .iter()
            .map(|e| e.key().identifier)
            .filter(|id| identifiers.contains(id))
            .collect();
        applied.skipped += ids.len() - owned.len();
        if owned.is_empty() {
            tracing::info!(blueprint = %blueprint, candidates = ids.len(), "nothing owned to delete");
            continue;
        }
        let gone = catalog
            .delete(blueprint, &owned, cfg.delete_dependent_entities, &opts)
            .await
            .map_err(|e| SyncError::catalog(format!("deleting {blueprint} entities"), e))?;
        applied.deleted += gone.len();
        for identifier in &gone {
            tracing::info!(blueprint = %blueprint, identifier = %identifier, "entity deleted");
        }
    }
    match rejected {
        None => Ok(applied),
        Some(r) => {
            let context = format!("upserting {}/{}", r.blueprint, r.identifier);
            let source = Cause::Other(r.to_string());
            // A 4xx is this entity's fault (a property the blueprint refuses): the same write fails again.
            if (400..500).contains(&r.status) && r.status != 408 && r.status != 429 {
                Err(SyncError::Permanent { context, source })
            } else {
                Err(SyncError::Transient { context, source })
            }
        }
    }
}

struct RejectedUpsert {
    blueprint: String,
    identifier: String,
    status: u16,
    error: String,
    message: String,
}

impl fmt::Display for RejectedUpsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the catalog answered {} {}: {}",
            self.status, self.error, self.message
        )
    }
}

#[cfg(test)]
mod tests;
