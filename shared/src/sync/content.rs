//! Live updates for repository content, which Azure DevOps has no event of its own for: a push to a
//! branch that a `file` block (the default branch) or a `folder` block (its configured branch) reads
//! re-lists that kind for the pushed repository only, and upserts what is there now. Pushes to other
//! branches cost nothing. Also `__includedFiles` on live repository reads, so a repository event does
//! not blank what the resync wrote.

use super::plan::{self, RawItem};
use super::{Applied, BlockItems, Reader, SyncError, write};
use crate::ado::kinds::{
    FileOptions, FolderOptions, enrich_repositories, included_option, repo_files, repo_folders,
};
use crate::ado::resources;
use crate::mapping::{CompiledConfig, CompiledResource};
use crate::queue::message::{Change, ChangeMessage};
use crate::runtime::SyncRuntime;

/// A ref update's new object id when the branch was deleted.
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The file and folder entities a push implies; nothing for any other change.
pub(super) async fn apply_push(
    runtime: &SyncRuntime,
    mapping: &CompiledConfig,
    message: &ChangeMessage,
) -> Result<Applied, SyncError> {
    let Change::Push {
        repository_id,
        ref_updates,
    } = &message.change
    else {
        return Ok(Applied::default());
    };
    let files: Vec<&CompiledResource> = mapping.resources_of("file").collect();
    let folders: Vec<&CompiledResource> = mapping.resources_of("folder").collect();
    // Branches that still exist after the push; a deleted branch's entities go with the next resync.
    let pushed: Vec<&str> = ref_updates
        .iter()
        .filter(|u| u.new_object_id != ZERO_SHA)
        .filter_map(|u| u.name.strip_prefix("refs/heads/"))
        .collect();
    if (files.is_empty() && folders.is_empty()) || pushed.is_empty() {
        return Ok(Applied::default());
    }
    let context = format!("repository {repository_id}");
    let Some(repo) =
        resources::repository(&runtime.ado, message.project_id.as_ref(), repository_id)
            .await
            .map_err(|e| SyncError::ado(&context, e))?
    else {
        return Ok(Applied::default());
    };
    let reader = Reader {
        ado: &runtime.ado,
        excluded_tags: &runtime.settings.excluded_tags,
    };
    let project = super::answered_guid(&repo, "/project/id");
    if reader.excluded(project.as_ref()).await? {
        return Ok(Applied::default());
    }
    let invalid = |b: &CompiledResource, e: String| {
        SyncError::permanent(format!("{} resource {}", b.kind(), b.index()), e)
    };
    let default = crate::ado::kinds::default_branch(&repo);
    let mut items: BlockItems = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    for &block in &files {
        let opts = FileOptions::read(block.selector()).map_err(|e| invalid(block, e))?;
        let on_default = default.as_deref().is_some_and(|d| pushed.contains(&d));
        if !on_default || !opts.wants_repo(&repo) {
            continue;
        }
        let found = repo_files(&runtime.ado, &repo, &opts)
            .await
            .map_err(|e| SyncError::ado(&context, e))?;
        items.extend(found.into_iter().map(|f| (block, RawItem::Current(f))));
        kinds.push("file".into());
    }
    for &block in &folders {
        let opts = FolderOptions::read(block.selector()).map_err(|e| invalid(block, e))?;
        for (pattern, branch) in opts.for_repo(&repo) {
            let Some(branch) = branch.filter(|b| pushed.contains(&b.as_str())) else {
                continue;
            };
            let found = repo_folders(&runtime.ado, &repo, &branch, pattern, &opts.included)
                .await
                .map_err(|e| SyncError::ado(&context, e))?;
            items.extend(found.into_iter().map(|f| (block, RawItem::Current(f))));
            kinds.push("folder".into());
        }
    }
    if kinds.is_empty() {
        return Ok(Applied::default());
    }
    kinds.dedup();
    let mut applied = write(runtime, mapping, plan::plan(items)).await?;
    applied.kinds = kinds;
    tracing::info!(repository = %repository_id, upserted = applied.upserted, "content refreshed after a push");
    Ok(applied)
}

/// One raw repository per block, each with the `__includedFiles` its block asks for.
pub(super) async fn repository_items<'b>(
    reader: &Reader<'_>,
    blocks: &[&'b CompiledResource],
    raw: RawItem,
) -> Result<BlockItems<'b>, SyncError> {
    let mut out = Vec::with_capacity(blocks.len());
    for &block in blocks {
        let paths = included_option(block.selector()).map_err(|e| {
            SyncError::permanent(format!("repository resource {}", block.index()), e)
        })?;
        let item = match &raw {
            RawItem::Current(repo) if !paths.is_empty() => {
                let mut one = [repo.clone()];
                enrich_repositories(reader.ado, &mut one, &paths)
                    .await
                    .map_err(|e| SyncError::ado("reading included files", e))?;
                let [repo] = one;
                RawItem::Current(repo)
            }
            other => other.clone(),
        };
        out.push((block, item));
    }
    Ok(out)
}

impl Applied {
    /// Adds what another part of the same change did.
    pub(super) fn absorb(&mut self, other: Applied) {
        self.kinds.extend(other.kinds);
        self.upserted += other.upserted;
        self.deleted += other.deleted;
        self.skipped += other.skipped;
    }
}
