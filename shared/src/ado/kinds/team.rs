//! `team` and `member`: the teams of every (filtered) project, optionally with their members
//! (`__members`) and area-path settings (`__areaPaths`); and every team's members, one item per
//! (team, member) with `__teamId`.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::parent::{team_request, unless_parent_gone};
use super::{FetchContext, Kind, OptionError, PAGE_SIZE, PageSink, SelectorOptions, str_field};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct Team;
pub struct Member;

/// Teams enriched at once (each needs one or two extra calls).
const TEAMS_AT_ONCE: usize = 5;

/// `includeMembers` (`__members`) and `includeAreaPaths` (`__areaPaths`).
pub struct TeamOptions {
    members: bool,
    area_paths: bool,
}

impl SelectorOptions for TeamOptions {
    const NAMES: &'static [&'static str] = &["includeMembers", "includeAreaPaths"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            members: selector.bool_option("includeMembers", false)?,
            area_paths: selector.bool_option("includeAreaPaths", false)?,
        })
    }
}

#[async_trait]
impl Kind for Team {
    type Options = TeamOptions;

    fn name(&self) -> &'static str {
        "team"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &TeamOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let teams = ctx.teams().await?;
        for chunk in teams.chunks(PAGE_SIZE as usize) {
            let page: Vec<Value> = futures::stream::iter(chunk.iter().cloned())
                .map(|mut team| async move {
                    if opts.members {
                        let members = team_members(ctx, &team).await?;
                        team["__members"] = Value::Array(members);
                    }
                    if opts.area_paths {
                        team["__areaPaths"] = area_paths(ctx, &team).await?;
                    }
                    Ok::<_, AdoError>(team)
                })
                .buffered(TEAMS_AT_ONCE)
                .try_collect()
                .await?;
            sink.send(page).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Kind for Member {
    type Options = ();

    fn name(&self) -> &'static str {
        "member"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let teams = ctx.teams().await?;
        futures::stream::iter(teams.iter().map(Ok))
            .try_for_each_concurrent(TEAMS_AT_ONCE, |team| async move {
                let mut pages = ctx
                    .client
                    .top_skip_pages(members_request(team), PAGE_SIZE, None)
                    .boxed();
                while let Some(mut page) = pages.try_next().await? {
                    for member in &mut page {
                        member["__teamId"] = Value::String(str_field(team, "id").to_owned());
                    }
                    sink.send(page).await?;
                }
                Ok(())
            })
            .await
    }
}

fn members_request(team: &Value) -> Request {
    Request::get(format!(
        "/_apis/projects/{}/teams/{}/members",
        str_field(team, "projectId"),
        str_field(team, "id")
    ))
}

/// Every member of a team (`$top`/`$skip`: a team past one page keeps all its members).
async fn team_members(ctx: &FetchContext, team: &Value) -> Result<Vec<Value>, AdoError> {
    let pages: Vec<Vec<Value>> = ctx
        .client
        .top_skip_pages(members_request(team), PAGE_SIZE, None)
        .try_collect()
        .await?;
    Ok(pages.into_iter().flatten().collect())
}

/// The team's area-path settings (`teamfieldvalues`); null only for a team deleted since the team list
/// was read. Any other failure fails the kind (the peer writes null): null written over a real value
/// would be wrong until the next pass.
async fn area_paths(ctx: &FetchContext, team: &Value) -> Result<Value, AdoError> {
    let (pid, tid) = (str_field(team, "projectId"), str_field(team, "id"));
    let req = Request::get(format!(
        "/{pid}/{tid}/_apis/work/teamsettings/teamfieldvalues"
    ));
    match ctx.client.send(&req).await {
        Ok(reply) => Ok(reply.body),
        Err(e) => {
            unless_parent_gone(&ctx.client, e, &team_request(pid, tid)).await?;
            Ok(Value::Null)
        }
    }
}
