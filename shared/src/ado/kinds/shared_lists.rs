//! Upstream lists that several kinds of one pass share (teams: team, member, board, column, iteration;
//! boards: board, column; groups: group, group-member), fetched once per pass on first use. They are
//! small next to repositories or work items (a few per project), so holding them is cheaper than
//! listing them again for each kind.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::parent::{team_request, unless_parent_gone};
use super::{FetchContext, PAGE_SIZE, PROJECT_CONCURRENCY, Shared, str_field};
use crate::ado::{AdoError, ApiVersion, Request, Service};

#[derive(Default)]
pub(crate) struct SharedLists {
    teams: Shared<Vec<Value>>,
    boards: Shared<Vec<Board>>,
    groups: Shared<Vec<Value>>,
}

/// A board with the team and project it belongs to (boards are per team).
#[derive(Debug, Clone)]
pub(crate) struct Board {
    pub board: Value,
    pub project: Value,
    pub team: Value,
}

/// Teams asked for at once: ADO's team APIs are cheap, but one project can hold hundreds of teams.
const TEAM_CONCURRENCY: usize = 5;

impl FetchContext {
    /// Every team of every (filtered) project, paged with `$top`/`$skip` (the peer's iteration kind
    /// stopped at ADO's default page of 100 teams).
    pub async fn teams(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.lists
            .teams
            .get_or_fetch(|| async {
                let projects = self.projects().await?;
                let per_project: Vec<Vec<Value>> = futures::stream::iter(projects.iter().cloned())
                    .map(|p| async move {
                        let req =
                            Request::get(format!("/_apis/projects/{}/teams", str_field(&p, "id")));
                        let pages: Vec<Vec<Value>> = self
                            .client
                            .top_skip_pages(req, PAGE_SIZE, None)
                            .try_collect()
                            .await?;
                        Ok::<_, AdoError>(pages.into_iter().flatten().collect())
                    })
                    .buffered(PROJECT_CONCURRENCY)
                    .try_collect()
                    .await?;
                Ok(per_project.into_iter().flatten().collect())
            })
            .await
    }

    /// The project a team belongs to, as the project list renders it.
    pub(crate) async fn project_of_team(&self, team: &Value) -> Result<Value, AdoError> {
        let id = str_field(team, "projectId");
        let projects = self.projects().await?;
        Ok(projects
            .iter()
            .find(|p| str_field(p, "id") == id)
            .cloned()
            .unwrap_or_else(
                || serde_json::json!({"id": id, "name": str_field(team, "projectName")}),
            ))
    }

    /// Every board of every team, each read in full (the list gives only id, name and url; columns and
    /// their state mappings come with the single GET).
    pub(crate) async fn boards(&self) -> Result<Arc<Vec<Board>>, AdoError> {
        self.lists
            .boards
            .get_or_fetch(|| async {
                let teams = self.teams().await?;
                let per_team: Vec<Vec<Board>> = futures::stream::iter(teams.iter().cloned())
                    .map(|team| async move { self.team_boards(&team).await })
                    .buffered(TEAM_CONCURRENCY)
                    .try_collect()
                    .await?;
                Ok(per_team.into_iter().flatten().collect())
            })
            .await
    }

    async fn team_boards(&self, team: &Value) -> Result<Vec<Board>, AdoError> {
        let project = self.project_of_team(team).await?;
        let (pid, tid) = (str_field(&project, "id"), str_field(team, "id"));
        // A team deleted since the team list was read has no boards left; any other 404 fails the kind.
        let list = match self
            .client
            .send(&Request::get(format!("/{pid}/{tid}/_apis/work/boards")))
            .await
        {
            Ok(list) => list,
            Err(e) => {
                unless_parent_gone(&self.client, e, &team_request(pid, tid)).await?;
                return Ok(Vec::new());
            }
        };
        let mut out = Vec::new();
        for reference in crate::ado::paging::take_items(list.body, "value") {
            let detail = self
                .client
                .send(&Request::get(format!(
                    "/{pid}/{tid}/_apis/work/boards/{}",
                    str_field(&reference, "id")
                )))
                .await;
            let board = match detail {
                Ok(reply) => merge(reference, reply.body),
                // A board is not deleted on its own (it belongs to a backlog level of the team), so
                // a listed board whose GET answers 404 is gone only with its team.
                Err(e) => {
                    unless_parent_gone(&self.client, e, &team_request(pid, tid)).await?;
                    return Ok(Vec::new());
                }
            };
            out.push(Board {
                board,
                project: project.clone(),
                team: team.clone(),
            });
        }
        Ok(out)
    }

    /// Every security group of the organisation (Graph API, continuation-token paging).
    pub(crate) async fn groups(&self) -> Result<Arc<Vec<Value>>, AdoError> {
        self.lists
            .groups
            .get_or_fetch(|| async {
                let req = Request::get("/_apis/graph/groups")
                    .service(Service::Identity)
                    .version(ApiVersion::Preview(1));
                let pages: Result<Vec<Vec<Value>>, _> = self
                    .client
                    .token_pages(req, None, "value")
                    .try_collect()
                    .await;
                let pages = self.services_only(pages, "group", "Graph").await?;
                Ok(pages.into_iter().flatten().collect())
            })
            .await
    }
}

/// The list item with the detail's fields laid over it.
fn merge(mut base: Value, detail: Value) -> Value {
    if let (Value::Object(b), Value::Object(d)) = (&mut base, detail) {
        b.extend(d);
    }
    base
}
