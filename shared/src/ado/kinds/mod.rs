//! One module per resource kind. A kind is a small uniform unit: it reads its selector options, lists its
//! items page by page through the shared client, adds the enrichment fields the peer adds (so existing
//! mappings keep working), and sends each page to a [`PageSink`]. Adding a kind = one file + one line in
//! [`ALL`].

mod builds;
mod common;
mod environments;
mod git_extras;
mod pipeline;
mod project;
mod pull_request;
mod releases;
mod repository;
mod test_run;
mod work_item;

pub(crate) use pipeline::{enrich_pipeline, include_repo_option, with_repositories};
mod board;
mod files;
mod glob;
mod identity;
mod org_lists;
mod team;
mod wiki;

pub(crate) use files::{
    FileOptions, FolderOptions, default_branch, enrich_repositories, included_option, repo_files,
    repo_folders,
};
pub(crate) use work_item::{enrich_work_item, expand_option as work_item_expand};

pub(crate) use builds::{enrich_builds, enrich_run, first_commit_option, stages_of};
pub(crate) use environments::environments_request;
pub(crate) use git_extras::{ADVSEC_VERSION, Criteria, branch_item, enrich_alert};
pub(crate) use releases::{enrich_definition, release_as_listed};
pub(crate) use test_run::{Options, enrich_runs, runs_request};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::{OnceCell, mpsc};

use super::{AdoClient, AdoError, ApiVersion, Request};
use crate::mapping::Selector;

/// Where a kind delivers its pages. Either a bounded channel of raw pages (tests, previews) or a
/// [`PageHandler`] that takes each page as soon as it is listed. Kinds should send from inside their
/// concurrent request futures, so a page is handed over the moment it arrives instead of waiting, raw,
/// behind slower requests.
#[derive(Clone)]
pub struct PageSink {
    target: SinkTarget,
}

#[derive(Clone)]
enum SinkTarget {
    Channel(mpsc::Sender<Vec<Value>>),
    Handler(Arc<dyn PageHandler>),
}

/// Takes pages where they are listed. The resync maps each page here, so only the mapped entities, a
/// fraction of the raw JSON, wait for the catalog writes: memory stays at a few pages of entities
/// whatever the organisation's size and however many requests are in flight.
#[async_trait]
pub trait PageHandler: Send + Sync {
    async fn accept(&self, page: Vec<Value>) -> Result<(), AdoError>;
}

impl PageSink {
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Vec<Value>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                target: SinkTarget::Channel(tx),
            },
            rx,
        )
    }

    pub fn handler(handler: Arc<dyn PageHandler>) -> Self {
        Self {
            target: SinkTarget::Handler(handler),
        }
    }

    pub async fn send(&self, page: Vec<Value>) -> Result<(), AdoError> {
        if page.is_empty() {
            return Ok(());
        }
        match &self.target {
            SinkTarget::Channel(tx) => tx.send(page).await.map_err(|_| AdoError::Cancelled),
            SinkTarget::Handler(h) => h.accept(page).await,
        }
    }
}

/// What every kind of one pass shares: the client, the global filters, and the upstream lists that
/// several kinds need (fetched once per pass, on first use).
pub struct FetchContext {
    pub client: AdoClient,
    pub excluded_tags: Vec<String>,
    pub now: DateTime<Utc>,
    projects: Shared<Vec<Value>>,
    repositories: Shared<Vec<Value>>,
    environments: Shared<Vec<Value>>,
    lists: org_lists::OrgLists,
}

/// A list several kinds of one pass share, fetched once on first use. A failure is kept as well: every
/// kind that needs the list gets the same error at once, instead of each asking again and waiting out
/// its own retries (a refused PAT or an outage would otherwise cost one full retry cycle per kind).
pub(crate) struct Shared<T>(OnceCell<Result<Arc<T>, AdoError>>);

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self(OnceCell::new())
    }
}

impl<T> Shared<T> {
    pub(crate) async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<Arc<T>, AdoError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, AdoError>>,
    {
        self.0
            .get_or_init(|| async { fetch().await.map(Arc::new) })
            .await
            .clone()
    }
}

/// How many projects (or repositories) a kind works on at once; requests are bounded by the client anyway,
/// this only bounds how many per-project streams are open.
pub(crate) const PROJECT_CONCURRENCY: usize = 4;
#[allow(dead_code)] // for the per-repository kinds
pub(crate) const REPO_CONCURRENCY: usize = 8;
/// Page size for the list APIs that accept one. ADO caps most lists at 100 or more per page.
pub(crate) const PAGE_SIZE: u32 = 100;

const TAG_PREFIX: &str = "Microsoft.TeamFoundation.Project.Tag.";

impl FetchContext {
    pub fn new(client: AdoClient, excluded_tags: Vec<String>) -> Self {
        Self {
            client,
            excluded_tags,
            now: Utc::now(),
            projects: Shared::default(),
            repositories: Shared::default(),
            environments: Shared::default(),
            lists: Default::default(),
        }
    }

    /// The organisation's projects, minus those carrying an excluded tag. Every per-project kind uses this
    /// list, so a tagged project is skipped everywhere.
    pub async fn projects(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.projects
            .get_or_fetch(|| async {
                let pages: Vec<Vec<Value>> = self
                    .client
                    .token_pages(Request::get("/_apis/projects"), Some(PAGE_SIZE), "value")
                    .try_collect()
                    .await?;
                let all: Vec<Value> = pages.into_iter().flatten().collect();
                Ok(if self.excluded_tags.is_empty() {
                    all
                } else {
                    self.without_excluded(all).await
                })
            })
            .await
    }

    async fn without_excluded(&self, projects: Vec<Value>) -> Vec<Value> {
        let checks = futures::stream::iter(projects)
            .map(|p| async move {
                let id = str_field(&p, "id").to_owned();
                match carries_excluded_tag(&self.client, &id, &self.excluded_tags).await {
                    Ok(tagged) => {
                        if tagged {
                            tracing::info!(project = %str_field(&p, "name"), "project skipped: it carries an excluded tag");
                        }
                        (!tagged).then_some(p)
                    }
                    Err(e) => {
                        // Same choice as the peer: if the tags cannot be read, keep the project rather than
                        // hide it (hiding it would delete its entities).
                        tracing::warn!(project = %id, error = %e, "could not read project tags; keeping the project");
                        Some(p)
                    }
                }
            })
            .buffered(PROJECT_CONCURRENCY);
        checks.filter_map(|p| async move { p }).collect().await
    }

    /// Every repository of the (filtered) projects, fetched once per pass.
    pub async fn repositories(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.repositories
            .get_or_fetch(|| async {
                let projects = self.projects().await?;
                let per_project: Vec<Vec<Value>> = futures::stream::iter(projects.iter().cloned())
                    .map(|p| async move {
                        let id = str_field(&p, "id");
                        let reply = self
                            .client
                            .send(&Request::get(format!("/{id}/_apis/git/repositories")))
                            .await?;
                        Ok::<_, AdoError>(super::paging::take_items(reply.body, "value"))
                    })
                    .buffered(PROJECT_CONCURRENCY)
                    .try_collect()
                    .await?;
                Ok(per_project.into_iter().flatten().collect())
            })
            .await
    }
}

impl FetchContext {
    /// Every environment of the (filtered) projects, fetched once per pass: `environment` and
    /// `pipeline-deployment` both need it. A few per project, so holding it is cheap.
    pub async fn environments(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.environments
            .get_or_fetch(|| environments::list_all(self))
            .await
    }
}

/// Whether a project carries one of `excluded_tags` (ADO stores tags as project properties named
/// `Microsoft.TeamFoundation.Project.Tag.<tag>`). Shared by the listing and the live events, so a tagged
/// project is skipped by both.
pub(crate) async fn carries_excluded_tag(
    client: &AdoClient,
    project_id: &str,
    excluded_tags: &[String],
) -> Result<bool, AdoError> {
    let req = Request::get(format!("/_apis/projects/{project_id}/properties"))
        .query("keys", format!("{TAG_PREFIX}*"))
        .version(ApiVersion::Preview(1));
    let reply = client.send(&req).await?;
    Ok(super::paging::take_items(reply.body, "value")
        .iter()
        .any(|prop| {
            prop.get("name")
                .and_then(Value::as_str)
                .and_then(|n| n.strip_prefix(TAG_PREFIX))
                .is_some_and(|tag| excluded_tags.iter().any(|t| t == tag))
        }))
}

/// A resource kind.
#[async_trait]
pub trait KindSource: Send + Sync {
    /// The kind name used in `port-app-config` (`project`, `work-item`, …).
    fn name(&self) -> &'static str;

    /// Checks the selector's kind-specific options, so a bad option fails the pass before any call.
    fn check(&self, _selector: &Selector) -> Result<(), String> {
        Ok(())
    }

    /// Lists every item, page by page, into `sink`.
    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError>;
}

/// Every kind this build serves.
pub static ALL: &[&dyn KindSource] = &[
    &project::Project,
    &repository::Repository,
    &pull_request::PullRequest,
    &pipeline::Pipeline,
    &work_item::WorkItem,
    &git_extras::RepositoryPolicy,
    &git_extras::Branch,
    &builds::Build,
    &builds::PipelineRun,
    &builds::PipelineStage,
    &environments::PipelineDeployment,
    &environments::Environment,
    &releases::Release,
    &releases::ReleaseDefinition,
    &releases::ReleaseDeployment,
    &test_run::TestRun,
    &git_extras::AdvancedSecurityAlert,
    &team::Team,
    &team::Member,
    &identity::User,
    &identity::Group,
    &identity::GroupMember,
    &board::Board,
    &board::Column,
    &board::Iteration,
    &board::AreaPath,
    &wiki::Wiki,
    &files::File,
    &files::Folder,
];

pub fn find(name: &str) -> Option<&'static dyn KindSource> {
    ALL.iter().copied().find(|k| k.name() == name)
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A selector option error, reported as an invalid request before any call is made.
pub(crate) fn option_error(kind: &str, e: impl std::fmt::Display) -> AdoError {
    AdoError::Invalid(format!("{kind} selector: {e}"))
}

/// "Healthy" repositories are the ones whose project is live and which are not disabled: the per-repo APIs
/// fail on the others.
pub(crate) fn is_healthy_repo(repo: &Value) -> bool {
    let project_state = repo
        .pointer("/project/state")
        .and_then(Value::as_str)
        .unwrap_or("wellFormed");
    let disabled = repo
        .get("isDisabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    !disabled
        && !matches!(
            project_state,
            "deleted" | "deleting" | "new" | "createPending"
        )
}
