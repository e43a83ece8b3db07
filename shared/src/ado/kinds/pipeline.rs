//! `pipeline`: per project, every pipeline (continuation-token paging), with `__projectId` and `__project`.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{FetchContext, KindSource, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, str_field};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct Pipeline;

#[async_trait]
impl KindSource for Pipeline {
    fn name(&self) -> &'static str {
        "pipeline"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
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
