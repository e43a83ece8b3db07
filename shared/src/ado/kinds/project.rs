//! `project`: the organisation's projects; with `defaultTeam`, each is re-read because the list API
//! leaves `defaultTeam` out.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{
    FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, SelectorOptions,
    str_field,
};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct Project;

/// `defaultTeam`: re-read each project for its default team.
pub struct Options {
    default_team: bool,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["defaultTeam"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            default_team: selector.bool_option("defaultTeam", false)?,
        })
    }
}

#[async_trait]
impl Kind for Project {
    type Options = Options;

    fn name(&self) -> &'static str {
        "project"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let default_team = options.default_team;
        let projects = ctx.projects().await?;
        for chunk in projects.chunks(PAGE_SIZE as usize) {
            if !default_team {
                sink.send(chunk.to_vec()).await?;
                continue;
            }
            let detailed: Vec<Value> = futures::stream::iter(chunk.to_vec())
                .map(|p| async move {
                    let req = Request::get(format!("/_apis/projects/{}", str_field(&p, "id")))
                        .query("includeCapabilities", "true");
                    // A project just listed whose GET answers 404 fails the kind rather than being
                    // dropped: this GET is the only proof there is, and dropping on it would delete
                    // every project the day the route misbehaves. A project deleted mid-pass is left
                    // out of the next pass's listing, which deletes it then.
                    ctx.client.send(&req).await.map(|reply| reply.body)
                })
                .buffered(PROJECT_CONCURRENCY)
                .try_collect()
                .await?;
            sink.send(detailed).await?;
        }
        Ok(())
    }
}
