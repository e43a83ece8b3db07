//! Applying one queued live change to the catalog: re-read the changed resource from Azure DevOps (the
//! message says *what* changed, never *how*, so late, repeated or reordered deliveries all end in the
//! true state), map it with every resource block of its kind, upsert what passes and delete, if owned,
//! what no longer passes or no longer exists.

pub mod plan;

use serde::Serialize;

use crate::ado::kinds::{self, LiveContext, LiveError};
use crate::ado::{AdoClient, AdoError};
use crate::catalog::{Catalog, CatalogError, UpsertOutcome, WriteOptions, WriteReason};
use crate::mapping::{CompiledConfig, CompiledResource};
use crate::queue::message::{ChangeMessage, MESSAGE_VERSION};
use plan::LivePlan;

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
    /// A kind could not use what the change or a block gives it (an id Azure DevOps does not issue, a
    /// block compiled without its options).
    #[error(transparent)]
    Live(LiveError),
    /// The catalog refused one entity of the write.
    #[error(transparent)]
    Rejected(RejectedUpsert),
    /// The message was written in a schema this build does not read.
    #[error(
        "message version {found} is not supported (this build reads version {MESSAGE_VERSION})"
    )]
    Version { found: u8 },
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

    /// Refused credentials count as transient: a rotated PAT or client secret makes the same message
    /// succeed, and the redrive policy bounds the retries anyway.
    pub(crate) fn ado(context: impl Into<String>, e: AdoError) -> Self {
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

    /// A kind's read: Azure DevOps errors by what they are; an option or id the kind cannot use fails
    /// again on every delivery.
    fn live(e: LiveError) -> Self {
        match e {
            LiveError::Ado { context, source } => Self::ado(context, source),
            other @ (LiveError::Option { .. } | LiveError::Id { .. }) => SyncError::Permanent {
                context: "reading the change".to_owned(),
                source: Cause::Live(other),
            },
        }
    }

    pub(crate) fn catalog(context: impl Into<String>, e: CatalogError) -> Self {
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

/// What applying a change needs: the ports, not the assembled runtime.
#[derive(Clone, Copy)]
pub struct LivePorts<'a> {
    /// Where changed resources are read back from.
    pub ado: &'a AdoClient,
    pub catalog: &'a dyn Catalog,
    pub mapping: &'a CompiledConfig,
    /// Projects carrying one of these tags are skipped, as the resync skips them.
    pub excluded_tags: &'a [String],
}

/// The kinds a change refreshes, in registry order: those that declare its event type.
pub fn refreshed_kinds(message: &ChangeMessage) -> Vec<&'static str> {
    kinds::refreshed_by(&message.event_type)
        .map(|k| k.name())
        .collect()
}

/// Applies one change: every kind that follows its event type and has resource blocks in the mapping
/// reads back what the change names and writes it. Safe to repeat: every write is derived from Azure
/// DevOps' current state. Takes the [`LivePorts`] ([`crate::tenant::Tenant::apply`] supplies them).
pub async fn apply(ports: LivePorts<'_>, message: &ChangeMessage) -> Result<Applied, SyncError> {
    if message.version != MESSAGE_VERSION {
        return Err(SyncError::Permanent {
            context: format!("message {}", message.event_id),
            source: Cause::Version {
                found: message.version,
            },
        });
    }
    let cx = LiveContext::new(ports.ado, ports.excluded_tags);
    let mut applied = Applied::nothing();
    for kind in kinds::refreshed_by(&message.event_type) {
        let blocks: Vec<&CompiledResource> = ports.mapping.resources_of(kind.name()).collect();
        if blocks.is_empty() {
            continue;
        }
        let read = kind
            .read_changed(&cx, message, &blocks)
            .await
            .map_err(SyncError::live)?;
        if let Some(items) = read {
            applied.add(kind.name(), write(&ports, plan::plan(items)).await?);
        }
    }
    if applied.kinds.is_empty() {
        tracing::info!(event_type = %message.event_type, "no kind of the mapping follows this change; nothing to do");
    }
    Ok(applied)
}

/// Upserts, then deletes what this integration owns. Live writes are few, so there is no diff: an
/// unchanged entity is simply written again with the same content.
async fn write(ports: &LivePorts<'_>, plan: LivePlan) -> Result<Applied, SyncError> {
    let cfg = ports.mapping.config();
    let opts = WriteOptions {
        merge: cfg.enable_merge_entity,
        create_missing_related_entities: cfg.create_missing_related_entities,
        reason: WriteReason::LiveEvent,
        resync_id: None,
    };
    let catalog = ports.catalog;
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
            // A 4xx is this entity's fault (a property the blueprint refuses): the same write fails again.
            let permanent = (400..500).contains(&r.status) && r.status != 408 && r.status != 429;
            let source = Cause::Rejected(r);
            if permanent {
                Err(SyncError::Permanent { context, source })
            } else {
                Err(SyncError::Transient { context, source })
            }
        }
    }
}

/// One entity the catalog refused, with its answer.
#[derive(Debug, thiserror::Error)]
#[error("the catalog answered {status} {error}: {message}")]
pub struct RejectedUpsert {
    pub blueprint: String,
    pub identifier: String,
    pub status: u16,
    pub error: String,
    pub message: String,
}

#[cfg(test)]
mod tests;
