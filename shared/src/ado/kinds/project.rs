//! `project`: the organisation's projects; with `defaultTeam`, each is re-read because the list API
//! leaves `defaultTeam` out.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{
    FetchContext, KindSource, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, option_error, str_field,
};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct Project;

#[async_trait]
impl KindSource for Project {
    fn name(&self) -> &'static str {
        "project"
    }

    fn check(&self, selector: &Selector) -> Result<(), String> {
        selector
            .bool_option("defaultTeam", false)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let default_team = selector
            .bool_option("defaultTeam", false)
            .map_err(|e| option_error("project", e))?;
        let projects = ctx.projects().await?;
        for chunk in projects.chunks(PAGE_SIZE as usize) {
            if !default_team {
                sink.send(chunk.to_vec()).await?;
                continue;
            }
            let detailed: Vec<Option<Value>> = futures::stream::iter(chunk.to_vec())
                .map(|p| async move {
                    let req = Request::get(format!("/_apis/projects/{}", str_field(&p, "id")))
                        .query("includeCapabilities", "true");
                    match ctx.client.send(&req).await {
                        Ok(reply) => Ok(Some(reply.body)),
                        // Deleted between the list and the read: it is gone, not an error.
                        Err(AdoError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .buffered(PROJECT_CONCURRENCY)
                .try_collect()
                .await?;
            sink.send(detailed.into_iter().flatten().collect()).await?;
        }
        Ok(())
    }
}
