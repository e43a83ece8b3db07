//! Helpers the CI/CD and per-repository kinds share: per-project and per-repository paged listings
//! with enrichment, and reading an optional nested selector object.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{
    FetchContext, PROJECT_CONCURRENCY, PageSink, REPO_CONCURRENCY, is_healthy_repo, str_field,
};
use crate::ado::{AdoClient, AdoError, ApiVersion, Request};

/// What a second look at the parent of a missing listing found.
pub(crate) enum Recheck {
    /// The parent's own GET answers 404: its children are gone with it.
    ParentGone,
    /// The parent is still there, so the 404 proves nothing about its children. `error` says so, for
    /// the kind to fail with; `parent` is the parent as read now, for the few callers that know a
    /// state in which a parent legitimately has nothing to list.
    ParentPresent { parent: Value, error: AdoError },
}

/// The one rule for a listing under a parent the pass has just listed (a repository's refs, a team's
/// iterations, a build's timeline): a 404 there is not "no items". An unknown route, a proxy or a
/// half-deployed service answer 404 too, and taking that as an empty listing deletes every entity of
/// the kind. Only the parent's own GET answering 404 proves its children are gone. Any other error, on
/// the listing or on the second look, is returned as it is (with what was being checked).
pub(crate) async fn recheck_parent(
    client: &AdoClient,
    error: AdoError,
    parent: &Request,
) -> Result<Recheck, AdoError> {
    if !matches!(error, AdoError::NotFound(_)) {
        return Err(error);
    }
    match client.send(parent).await {
        Ok(reply) => Ok(Recheck::ParentPresent {
            parent: reply.body,
            error: AdoError::permanent(format!(
                "{error}; yet {} still exists, so the listing's 404 does not prove its items are \
                 gone, and none are deleted",
                parent.path
            )),
        }),
        Err(AdoError::NotFound(_)) => {
            tracing::info!(parent = %parent.path, "gone since it was listed: it has nothing left to list");
            Ok(Recheck::ParentGone)
        }
        Err(other) => Err(with_context(
            other,
            &format!("after {error}, reading {} again failed", parent.path),
        )),
    }
}

/// [`recheck_parent`] for the usual case: `Ok` (nothing to list) only when the parent is gone.
pub(crate) async fn unless_parent_gone(
    client: &AdoClient,
    error: AdoError,
    parent: &Request,
) -> Result<(), AdoError> {
    match recheck_parent(client, error, parent).await? {
        Recheck::ParentGone => Ok(()),
        Recheck::ParentPresent { error, .. } => Err(error),
    }
}

/// The same kind of error, with what was being done in front: callers act on the kind (a refused
/// credential stops the pass), people on the text.
fn with_context(e: AdoError, context: &str) -> AdoError {
    e.context(context)
}

/// A repository as its own GET reads it: the parent of every per-repository listing.
pub(crate) fn repository_request(repo: &Value) -> Request {
    Request::get(format!(
        "/{}/_apis/git/repositories/{}",
        repo_project(repo),
        str_field(repo, "id")
    ))
}

/// A team as its own GET reads it: the parent of its boards, iterations and settings.
pub(crate) fn team_request(project_id: &str, team_id: &str) -> Request {
    Request::get(format!("/_apis/projects/{project_id}/teams/{team_id}"))
}

/// A project as its own GET reads it.
pub(crate) fn project_request(project_id: &str) -> Request {
    Request::get(format!("/_apis/projects/{project_id}"))
}

/// A build as its own GET reads it: the parent of its timeline and changes.
pub(crate) fn build_request(project_id: &str, build_id: &Value) -> Request {
    Request::get(format!("/{project_id}/_apis/build/builds/{build_id}"))
}

/// A pipeline as its own GET reads it: the parent of its runs and its build definition.
pub(crate) fn pipeline_request(project_id: &str, pipeline_id: &Value) -> Request {
    Request::get(format!("/{project_id}/_apis/pipelines/{pipeline_id}"))
}

/// An environment as its own GET reads it (a preview API, like the list).
pub(crate) fn environment_request(project_id: &str, environment_id: &Value) -> Request {
    Request::get(format!(
        "/{project_id}/_apis/distributedtask/environments/{environment_id}"
    ))
    .version(ApiVersion::Preview(1))
}

/// For each (filtered) project, every page of `request(project)` (continuation-token paging), each item
/// passed through `enrich(item, project)`.
pub(super) async fn project_pages<R, E>(
    ctx: &FetchContext,
    sink: &PageSink,
    page_size: Option<u32>,
    request: R,
    enrich: E,
) -> Result<(), AdoError>
where
    R: Fn(&Value) -> Request + Sync,
    E: Fn(&mut Value, &Value) + Sync,
{
    let projects = ctx.projects().await?;
    futures::stream::iter(projects.iter().map(Ok))
        .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| {
            let (request, enrich) = (&request, &enrich);
            async move {
                let mut pages = ctx
                    .client
                    .token_pages(request(project), page_size, "value")
                    .boxed();
                while let Some(mut page) = pages.try_next().await? {
                    for item in &mut page {
                        enrich(item, project);
                    }
                    sink.send(page).await?;
                }
                Ok(())
            }
        })
        .await
}

/// Runs `each(repo)` for every healthy repository (the per-repository git APIs refuse disabled ones and
/// those of projects being created or deleted), a few at a time.
pub(super) async fn healthy_repos<F, Fut>(ctx: &FetchContext, each: F) -> Result<(), AdoError>
where
    F: Fn(Value) -> Fut + Sync,
    Fut: std::future::Future<Output = Result<(), AdoError>> + Send,
{
    let repos = ctx.repositories().await?;
    futures::stream::iter(repos.iter().filter(|r| is_healthy_repo(r)).cloned().map(Ok))
        .try_for_each_concurrent(REPO_CONCURRENCY, each)
        .await
}

/// [`healthy_repos`], with the first repository asked alone before the others: for the per-repository
/// APIs a server may not have at all, where the first answer says so for every repository.
pub(super) async fn healthy_repos_first_alone<F, Fut>(
    ctx: &FetchContext,
    each: F,
) -> Result<(), AdoError>
where
    F: Fn(Value) -> Fut + Sync,
    Fut: std::future::Future<Output = Result<(), AdoError>> + Send,
{
    let repos = ctx.repositories().await?;
    let mut healthy = repos.iter().filter(|r| is_healthy_repo(r)).cloned();
    let Some(first) = healthy.next() else {
        return Ok(());
    };
    each(first).await?;
    futures::stream::iter(healthy.map(Ok))
        .try_for_each_concurrent(REPO_CONCURRENCY, each)
        .await
}

/// The project id of a repository (`repo.project.id`).
pub(super) fn repo_project(repo: &Value) -> &str {
    repo.pointer("/project/id")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Adds `__projectId` and `__project`.
pub(super) fn with_project(item: &mut Value, project: &Value) {
    if let Value::Object(map) = item {
        map.insert(
            "__projectId".into(),
            Value::String(str_field(project, "id").to_owned()),
        );
        map.insert("__project".into(), project.clone());
    }
}

/// Adds one `__key` field.
pub(super) fn put(item: &mut Value, key: &str, value: Value) {
    if let Value::Object(map) = item {
        map.insert(key.to_owned(), value);
    }
}

/// A selector list option joined with commas, as ADO's list filters take them.
pub(super) fn joined(list: Vec<String>) -> Option<String> {
    let parts: Vec<String> = list
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}
