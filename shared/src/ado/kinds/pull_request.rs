//! `pull-request`: per healthy repository, every active pull request, plus the completed and abandoned
//! ones closed within `minTimeInDays` (each status capped at `maxResults` per repository).

use async_trait::async_trait;
use chrono::{Duration, SecondsFormat};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{
    FetchContext, KindSource, PAGE_SIZE, PageSink, REPO_CONCURRENCY, is_healthy_repo, option_error,
    str_field,
};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct PullRequest;

struct Options {
    min_time_in_days: i64,
    max_results: usize,
}

impl Options {
    fn read(selector: &Selector) -> Result<Self, String> {
        let min_time_in_days = selector
            .int_option("minTimeInDays", Some(7))
            .map_err(|e| e.to_string())?
            .unwrap_or(7);
        let max_results = selector
            .int_option("maxResults", Some(100))
            .map_err(|e| e.to_string())?
            .unwrap_or(100);
        if min_time_in_days < 1 {
            return Err(format!(
                "minTimeInDays must be at least 1, got {min_time_in_days}"
            ));
        }
        if max_results < 1 {
            return Err(format!("maxResults must be at least 1, got {max_results}"));
        }
        Ok(Self {
            min_time_in_days,
            max_results: max_results as usize,
        })
    }
}

#[async_trait]
impl KindSource for PullRequest {
    fn name(&self) -> &'static str {
        "pull-request"
    }

    fn check(&self, selector: &Selector) -> Result<(), String> {
        Options::read(selector).map(|_| ())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let opts = Options::read(selector).map_err(|e| option_error("pull-request", e))?;
        // Strict ISO-8601 (the peer sends Python's `str()` form with a space).
        let min_time = (ctx.now - Duration::days(opts.min_time_in_days))
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        let repos = ctx.repositories().await?;
        futures::stream::iter(repos.iter().filter(|r| is_healthy_repo(r)).cloned().map(Ok))
            .try_for_each_concurrent(REPO_CONCURRENCY, |repo| {
                let min_time = min_time.clone();
                async move {
                    let repo = &repo;
                    let project = repo
                        .pointer("/project/id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let path = format!(
                        "/{project}/_apis/git/repositories/{}/pullrequests",
                        str_field(repo, "id")
                    );
                    let active = Request::get(&path).query("searchCriteria.status", "active");
                    let mut pages = ctx.client.top_skip_pages(active, PAGE_SIZE, None).boxed();
                    while let Some(page) = pages.try_next().await? {
                        sink.send(page).await?;
                    }
                    for status in ["completed", "abandoned"] {
                        let closed = Request::get(&path)
                            .query("searchCriteria.status", status)
                            .query("searchCriteria.queryTimeRangeType", "closed")
                            .query("searchCriteria.minTime", &min_time);
                        let mut pages = ctx
                            .client
                            .top_skip_pages(closed, PAGE_SIZE, Some(opts.max_results))
                            .boxed();
                        while let Some(page) = pages.try_next().await? {
                            sink.send(page).await?;
                        }
                    }
                    Ok(())
                }
            })
            .await
    }
}
