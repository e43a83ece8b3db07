//! `pipeline`: per project, every pipeline (continuation-token paging), with `__projectId` and `__project`;
//! with `includeRepo`, `__repository` from the pipeline's build definition.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::common::{pipeline_request, unless_parent_gone};
use super::{
    FetchContext, KindSource, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, option_error,
    str_field,
};
use crate::ado::{AdoClient, AdoError, Request};
use crate::mapping::Selector;

pub struct Pipeline;

#[async_trait]
impl KindSource for Pipeline {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    fn options(&self) -> &'static [&'static str] {
        &["includeRepo"]
    }

    fn check(&self, selector: &Selector) -> Result<(), OptionError> {
        selector.bool_option("includeRepo", false)?;
        Ok(())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let include_repo =
            include_repo_option(selector).map_err(|e| option_error("pipeline", e))?;
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| async move {
                let id = str_field(project, "id");
                let req = Request::get(format!("/{id}/_apis/pipelines"));
                let mut pages = ctx
                    .client
                    .token_pages(req, Some(PAGE_SIZE), "value")
                    .boxed();
                while let Some(mut page) = pages.try_next().await? {
                    for item in &mut page {
                        enrich_pipeline(item, project);
                    }
                    if include_repo {
                        page = with_repositories(&ctx.client, page).await?;
                    }
                    sink.send(page).await?;
                }
                Ok(())
            })
            .await
    }
}

/// `__projectId` and `__project`, as the peer adds them; shared with the live single read.
pub(crate) fn enrich_pipeline(item: &mut Value, project: &Value) {
    if let Value::Object(map) = item {
        map.insert(
            "__projectId".into(),
            Value::String(str_field(project, "id").to_owned()),
        );
        map.insert("__project".into(), project.clone());
    }
}

pub(crate) fn include_repo_option(selector: &Selector) -> Result<bool, String> {
    selector
        .bool_option("includeRepo", false)
        .map_err(|e| e.to_string())
}

/// Pipelines whose build definition is read concurrently.
const DEFINITION_CONCURRENCY: usize = 8;

/// Adds `__repository` (the build definition's `repository` plus its `project`) to each pipeline. Each
/// pipeline keeps its own answer (the peer zips answers after dropping 404s, which shifts every later
/// pipeline onto the wrong repo). A pipeline is its build definition, so the definition answers 404
/// only when the pipeline is gone; then it is kept without the field (the next pass no longer lists
/// it). A 404 while the pipeline still answers fails the kind rather than write it without its
/// repository.
pub(crate) async fn with_repositories(
    client: &AdoClient,
    page: Vec<Value>,
) -> Result<Vec<Value>, AdoError> {
    futures::stream::iter(page)
        .map(|mut pipeline| async move {
            let req = Request::get(format!(
                "/{}/_apis/build/definitions/{}",
                str_field(&pipeline, "__projectId"),
                pipeline["id"]
            ));
            match client.send(&req).await {
                Ok(reply) => {
                    let def = reply.body;
                    if let Some(mut repo) = def.get("repository").cloned() {
                        if let (Value::Object(map), Some(project)) = (&mut repo, def.get("project"))
                        {
                            map.insert("project".into(), project.clone());
                        }
                        if let Value::Object(map) = &mut pipeline {
                            map.insert("__repository".into(), repo);
                        }
                    }
                }
                Err(e) => {
                    let parent =
                        pipeline_request(str_field(&pipeline, "__projectId"), &pipeline["id"]);
                    unless_parent_gone(client, e, &parent).await?;
                }
            }
            Ok(pipeline)
        })
        .buffered(DEFINITION_CONCURRENCY)
        .try_collect()
        .await
}
