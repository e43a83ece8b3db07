//! `pull-request`: every active pull request of the healthy repositories, plus the completed and
//! abandoned ones closed within `minTimeInDays` (each status capped at `maxResults` per repository).
//!
//! Listed per project (Get Pull Requests By Project), not per repository as the peer does: three lists
//! per project instead of three per repository, about 40x fewer requests on an organisation of 1,200
//! repositories where most repositories have few or no pull requests. The per-repository cap and the
//! healthy-repository filter are applied here, so the result is the peer's.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{Duration, SecondsFormat};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PageSink, SelectorOptions, is_healthy_repo,
    str_field,
};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

pub struct PullRequest;

fn changed(r: &Value) -> Result<Change, live::Unnamed> {
    Ok(Change::PullRequest {
        repository_id: live::repository_id(r, &[&["repository", "id"], &["repositoryId"]])?,
        pull_request_id: live::required_number(r, &[&["pullRequestId"]], "pull request id")?,
    })
}

static CREATED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.pullrequest.created"),
    name: changed,
};
static UPDATED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.pullrequest.updated"),
    name: changed,
};
/// "Merge commit created": not the only completion signal (`updated` with `status` is).
static MERGED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("git.pullrequest.merged"),
    name: changed,
};
static EVENTS: [&LiveEvent; 3] = [&CREATED, &UPDATED, &MERGED];

/// Project lists read at once (three per project); the client's own bound caps the requests.
const LISTS_AT_ONCE: usize = 16;

/// How far back closed pull requests go, and how many per repository and status.
pub struct Options {
    pub(crate) min_time_in_days: i64,
    pub(crate) max_results: usize,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["minTimeInDays", "maxResults"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let at_least_one = |key: &str, default: i64| -> Result<i64, OptionError> {
            match selector.int_option(key, Some(default))?.unwrap_or(default) {
                n if n < 1 => Err(OptionError::new(
                    key,
                    format!("must be at least 1, got {n}"),
                )),
                n => Ok(n),
            }
        };
        let min_time_in_days = at_least_one("minTimeInDays", 7)?;
        let max_results = at_least_one("maxResults", 100)?;
        Ok(Self {
            min_time_in_days,
            max_results: max_results as usize,
        })
    }
}

#[async_trait]
impl Kind for PullRequest {
    type Options = Options;

    fn name(&self) -> &'static str {
        "pull-request"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        // Strict ISO-8601 (the peer sends Python's `str()` form with a space).
        let min_time = (ctx.now - Duration::days(opts.min_time_in_days))
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        let repos = ctx.repositories().await?;
        // Disabled repositories and those of unhealthy projects are left out, as the peer does.
        let mut healthy: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for repo in repos.iter().filter(|r| is_healthy_repo(r)) {
            let project = repo
                .pointer("/project/id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            healthy
                .entry(project)
                .or_default()
                .insert(str_field(repo, "id"));
        }
        let lists = healthy.iter().flat_map(|(project, repos)| {
            [("active", false), ("completed", true), ("abandoned", true)]
                .map(|(status, closed)| Ok((*project, repos, status, closed)))
        });
        futures::stream::iter(lists)
            .try_for_each_concurrent(LISTS_AT_ONCE, |(project, repos, status, closed)| {
                let min_time = &min_time;
                async move {
                    let mut req = Request::get(format!("/{project}/_apis/git/pullrequests"))
                        .query("searchCriteria.status", status);
                    if closed {
                        req = req
                            .query("searchCriteria.queryTimeRangeType", "closed")
                            .query("searchCriteria.minTime", min_time);
                    }
                    let mut per_repo: HashMap<String, usize> = HashMap::new();
                    let mut pages = ctx.client.top_skip_pages(req, PAGE_SIZE, None).boxed();
                    while let Some(page) = pages.try_next().await? {
                        let kept: Vec<Value> = page
                            .into_iter()
                            .filter(|pr| {
                                let repo = pr
                                    .pointer("/repository/id")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default();
                                if !repos.contains(repo) {
                                    return false;
                                }
                                if !closed {
                                    return true;
                                }
                                // ADO lists newest first, so the cap keeps each repository's latest, as
                                // the per-repository `$top` of the peer does.
                                let n = per_repo.entry(repo.to_owned()).or_default();
                                *n += 1;
                                *n <= opts.max_results
                            })
                            .collect();
                        sink.send(kept).await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Change::PullRequest {
            pull_request_id, ..
        } = &message.change
        else {
            return Ok(None);
        };
        let project_id = message.project_id.as_ref();
        let path = live::scoped(
            project_id,
            &format!("/_apis/git/pullrequests/{pull_request_id}"),
        );
        let Some(pr) = cx
            .get(Request::get(path))
            .await
            .map_err(LiveError::ado(format_args!(
                "pull request {pull_request_id}"
            )))?
        else {
            // Pull requests are never deleted on their own (only with their repository, which the
            // resync cleans up), and a gone one cannot be identified from the message.
            tracing::info!(
                pull_request = pull_request_id,
                "pull request not found; nothing to do"
            );
            return Ok(None);
        };
        let project = project_id
            .copied()
            .or_else(|| live::answered_guid(&pr, "/repository/project/id"));
        if cx.excluded(project.as_ref()).await? {
            return Ok(None);
        }
        Ok(Some(live::each(blocks, RawItem::Current(pr))))
    }
}
