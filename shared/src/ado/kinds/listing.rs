//! Listing helpers the kinds share: per-project paged listings with enrichment, the healthy
//! repositories a few at a time, and the `__` enrichment fields (`__projectId`, `__project`, any one
//! `__key`), plus comma-joining a selector list as ADO's filters take it.

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{
    FetchContext, PROJECT_CONCURRENCY, PageSink, REPO_CONCURRENCY, is_healthy_repo, str_field,
};
use crate::ado::{AdoError, Request};

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
