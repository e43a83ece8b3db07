//! `repository`: every repository of every (filtered) project, disabled ones included (as the peer does);
//! with `includedFiles`, `__includedFiles` from each repository's default branch.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::files::{enrich_repositories, included_option};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem, Unnamed};
use super::{Block, FetchContext, Kind, OptionError, PageSink, SelectorOptions};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoClient, AdoError, Guid, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage, RefUpdate};

/// Where Git events put the repository's id.
const REPOSITORY_ID: &[&[&str]] = &[&["repository", "id"], &["repositoryId"]];

/// A push: the repository and its ref updates (branches created, moved, deleted). It refreshes the
/// repository (cheap, and keeps its default branch and size current), its branches and its content.
pub(crate) static PUSH: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.push"),
    name: |r| {
        Ok(Change::Push {
            repository_id: live::repository_id(r, REPOSITORY_ID)?,
            ref_updates: ref_updates(r),
        })
    },
};

fn changed(r: &Value) -> Result<Change, Unnamed> {
    Ok(Change::Repository {
        repository_id: live::repository_id(r, REPOSITORY_ID)?,
        deleted: false,
    })
}

static CREATED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.repo.created"),
    name: changed,
};
static RENAMED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.repo.renamed"),
    name: changed,
};
/// Enabled or disabled (`isDisabled`), which the repository entity carries.
static STATUS_CHANGED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.repo.statuschanged"),
    name: changed,
};
static DELETED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.repo.deleted"),
    name: |r| {
        Ok(Change::Repository {
            repository_id: live::repository_id(r, REPOSITORY_ID)?,
            deleted: true,
        })
    },
};

static EVENTS: [&LiveEvent; 5] = [&PUSH, &CREATED, &DELETED, &RENAMED, &STATUS_CHANGED];

fn ref_updates(r: &Value) -> Vec<RefUpdate> {
    live::at(r, &["refUpdates"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let s = |k| u.get(k).and_then(Value::as_str).map(str::to_owned);
            Some(RefUpdate {
                name: s("name")?,
                old_object_id: s("oldObjectId")?,
                new_object_id: s("newObjectId")?,
            })
        })
        .collect()
}

/// A repository (removed ones are 404: ADO keeps them in a recycle bin the GET does not see).
pub(crate) async fn read_one(
    cx: &LiveContext<'_>,
    project: Option<&Guid>,
    id: &Guid,
) -> Result<Option<Value>, AdoError> {
    cx.get(Request::get(live::scoped(
        project,
        &format!("/_apis/git/repositories/{id}"),
    )))
    .await
}

/// One raw repository per block, each with the `__includedFiles` its block asks for, so a repository
/// event does not blank what the resync wrote.
async fn with_included_files<'b>(
    ado: &AdoClient,
    blocks: &[Block<'b, Options>],
    raw: RawItem,
) -> Result<Changed<'b>, LiveError> {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let paths = &block.options.included;
        let item = match &raw {
            RawItem::Current(repo) if !paths.is_empty() => {
                let mut one = [repo.clone()];
                enrich_repositories(ado, &mut one, paths)
                    .await
                    .map_err(LiveError::ado("reading included files"))?;
                let [repo] = one;
                RawItem::Current(repo)
            }
            other => other.clone(),
        };
        out.push((block.resource, item));
    }
    Ok(out)
}

pub struct Repository;

/// `includedFiles`: files of the default branch's root to add as `__includedFiles`.
pub struct Options {
    included: Vec<String>,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["includedFiles"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            included: included_option(selector)?,
        })
    }
}

#[async_trait]
impl Kind for Repository {
    type Options = Options;

    fn name(&self) -> &'static str {
        "repository"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let included = &options.included;
        let repos = ctx.repositories().await?;
        // One page per project keeps pages the size ADO itself returned.
        let mut page: Vec<Value> = Vec::new();
        let mut current: Option<&str> = None;
        for repo in repos.iter() {
            let project = repo.pointer("/project/id").and_then(Value::as_str);
            if current.is_some() && project != current {
                let mut full = std::mem::take(&mut page);
                enrich_repositories(&ctx.client, &mut full, included).await?;
                sink.send(full).await?;
            }
            current = project;
            page.push(repo.clone());
        }
        enrich_repositories(&ctx.client, &mut page, included).await?;
        sink.send(page).await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let (Change::Repository { repository_id, .. } | Change::Push { repository_id, .. }) =
            &message.change
        else {
            return Ok(None);
        };
        let project_id = message.project_id.as_ref();
        let repo = read_one(cx, project_id, repository_id)
            .await
            .map_err(LiveError::ado(format_args!("repository {repository_id}")))?;
        let project = project_id.copied().or_else(|| {
            repo.as_ref()
                .and_then(|r| live::answered_guid(r, "/project/id"))
        });
        if cx.excluded(project.as_ref()).await? {
            return Ok(None);
        }
        let raw = match repo {
            Some(repo) => RawItem::Current(repo),
            None => {
                // The listing's repositories carry `project`; a mapping keyed on it must still find the
                // entity.
                let mut gone = json!({ "id": repository_id });
                if let Some(p) = &project {
                    gone["project"] = cx.project_or_id(p).await?;
                }
                RawItem::Gone(gone)
            }
        };
        Ok(Some(with_included_files(cx.ado, blocks, raw).await?))
    }
}
