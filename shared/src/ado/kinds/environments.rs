//! `environment` (per project) and `pipeline-deployment` (every deployment record of every environment).
//! The environment list is shared through [`FetchContext::environments`], so both kinds list it once.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::builds::{BUILD_AND_RUN_EVENTS, ChangedBuild};
use super::listing::put;
use super::live::{Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::parent::{environment_request, unless_parent_gone};
use super::{Block, FetchContext, Kind, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, str_field};
use crate::ado::{AdoError, ApiVersion, Request};
use crate::queue::message::ChangeMessage;

/// The environments API exists only as a preview (7.1-preview.1; 7.0-preview.1 on Server 2022).
fn environments_request(project_id: &str) -> Request {
    Request::get(format!("/{project_id}/_apis/distributedtask/environments"))
        .version(ApiVersion::Preview(1))
}

pub struct Environment;

#[async_trait]
impl Kind for Environment {
    type Options = ();

    fn name(&self) -> &'static str {
        "environment"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let envs = ctx.environments().await?;
        for chunk in envs.chunks(PAGE_SIZE as usize) {
            sink.send(chunk.to_vec()).await?;
        }
        Ok(())
    }
}

pub struct PipelineDeployment;

#[async_trait]
impl Kind for PipelineDeployment {
    type Options = ();

    fn name(&self) -> &'static str {
        "pipeline-deployment"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let envs = ctx.environments().await?;
        let projects = ctx.projects().await?;
        futures::stream::iter(envs.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |env| {
                let projects = projects.clone();
                async move {
                    let project_id = env
                        .pointer("/project/id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    // The environment names its project by id only (its `name` is null); the listed project
                    // is the richer `__project`.
                    let project = projects
                        .iter()
                        .find(|p| str_field(p, "id") == project_id)
                        .cloned()
                        .unwrap_or_else(|| env["project"].clone());
                    // This API pages with `top` (no `$`) and a continuation token.
                    let req = Request::get(format!(
                        "/{project_id}/_apis/distributedtask/environments/{}/environmentdeploymentrecords",
                        env["id"]
                    ))
                    .version(ApiVersion::Preview(1))
                    .query("top", PAGE_SIZE);
                    let mut pages = ctx.client.token_pages(req, None, "value").boxed();
                    loop {
                        match pages.try_next().await {
                            Ok(Some(mut page)) => {
                                for record in &mut page {
                                    put(record, "__project", project.clone());
                                }
                                sink.send(page).await?;
                            }
                            Ok(None) => return Ok(()),
                            Err(e) => {
                                let parent = environment_request(project_id, &env["id"]);
                                return unless_parent_gone(&ctx.client, e, &parent).await;
                            }
                        }
                    }
                }
            })
            .await
    }

    /// The peer never updates deployment records live; a build that ran is when they appear.
    fn events(&self) -> &'static [&'static LiveEvent] {
        &BUILD_AND_RUN_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, ()>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedBuild::read(cx, message).await? else {
            return Ok(None);
        };
        let records = records_of_build(cx, &changed)
            .await
            .map_err(LiveError::ado(changed.context()))?;
        Ok(Some(
            blocks
                .iter()
                .flat_map(|&b| {
                    records
                        .iter()
                        .map(move |r| (b.resource, RawItem::Current(r.clone())))
                })
                .collect(),
        ))
    }
}

/// Every environment of the (filtered) projects.
pub(crate) async fn list_all(ctx: &FetchContext) -> Result<Vec<Value>, AdoError> {
    let projects = ctx.projects().await?;
    let per_project: Vec<Vec<Value>> = futures::stream::iter(projects.iter().cloned())
        .map(|p| async move {
            let pages: Vec<Vec<Value>> = ctx
                .client
                .token_pages(
                    environments_request(str_field(&p, "id")),
                    Some(PAGE_SIZE),
                    "value",
                )
                .try_collect()
                .await?;
            Ok::<_, AdoError>(pages.into_iter().flatten().collect::<Vec<_>>())
        })
        .buffered(PROJECT_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(per_project.into_iter().flatten().collect())
}

/// The deployment records a build wrote to the project's environments, as `pipeline-deployment` lists
/// them. Records come newest first, so the first page of each environment holds a build that just
/// finished: one call per environment, not a full listing.
async fn records_of_build(
    cx: &LiveContext<'_>,
    changed: &ChangedBuild,
) -> Result<Vec<Value>, AdoError> {
    let project_id = &changed.project_id;
    let envs: Vec<Vec<Value>> = cx
        .ado
        .token_pages(
            environments_request(&project_id.to_string()),
            Some(PAGE_SIZE),
            "value",
        )
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for env in envs.into_iter().flatten() {
        // Environment ids are integers; one that is not is skipped rather than put into a path.
        let Some(env_id) = env["id"].as_u64() else {
            tracing::warn!(environment = %env["id"], "environment without an integer id skipped");
            continue;
        };
        let req = Request::get(format!(
            "/{project_id}/_apis/distributedtask/environments/{env_id}/environmentdeploymentrecords"
        ))
        .version(ApiVersion::Preview(1))
        .query("top", PAGE_SIZE);
        let Some(page) = cx.get(req).await? else {
            continue;
        };
        out.extend(
            crate::ado::paging::take_items(page, "value")
                .into_iter()
                .filter(|r| {
                    r.pointer("/owner/id").and_then(Value::as_u64) == Some(changed.build_id)
                })
                .map(|mut r| {
                    put(&mut r, "__project", changed.project.clone());
                    r
                }),
        );
    }
    Ok(out)
}
