//! `test-run`: every test run of every project (`$top`/`$skip`), with `__testResults` (every result,
//! paged to the end, not only the first page the peer reads) and `__codeCoverage` of the run's build.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::builds::{BUILD_COMPLETE, ChangedBuild};
use super::listing::put;
use super::live::{Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink,
    SelectorOptions, str_field,
};
use crate::ado::{AdoClient, AdoError, ApiVersion, Request};
use crate::mapping::Selector;
use crate::queue::message::ChangeMessage;

/// A build's test runs are complete when the build is.
static EVENTS: [&LiveEvent; 1] = [&BUILD_COMPLETE];

/// Results per page: the most the results API returns when no details are asked for.
const RESULTS_PAGE: u32 = 1_000;
/// Runs of one page enriched at once.
const RUN_CONCURRENCY: usize = 8;

/// `includeResults` (`__testResults`, on by default) and `codeCoverage` {flags}.
#[derive(Clone, Copy)]
pub struct Options {
    include_results: bool,
    coverage_flags: Option<i64>,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["includeResults", "codeCoverage"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let include_results = selector.bool_option("includeResults", true)?;
        let bad = |m: &str| OptionError::new("codeCoverage", m);
        let coverage_flags = match selector.options.get("codeCoverage") {
            None | Some(Value::Null) => None,
            Some(Value::Object(cc)) => {
                if let Some(k) = cc.keys().find(|k| k.as_str() != "flags") {
                    return Err(bad(&format!("has an unknown key {k:?} (only flags)")));
                }
                match cc.get("flags") {
                    None | Some(Value::Null) => Some(0),
                    Some(v) => Some(v.as_i64().ok_or_else(|| bad("flags must be an integer"))?),
                }
            }
            Some(_) => return Err(bad("must be an object such as {flags: 7}")),
        };
        Ok(Self {
            include_results,
            coverage_flags,
        })
    }
}

pub struct TestRun;

#[async_trait]
impl Kind for TestRun {
    type Options = Options;

    fn name(&self) -> &'static str {
        "test-run"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let opts = *options;
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| async move {
                let req = runs_request(str_field(project, "id"));
                let mut pages = ctx.client.top_skip_pages(req, PAGE_SIZE, None).boxed();
                while let Some(mut page) = pages.try_next().await? {
                    // A run carries all its results: a page of 100 enriched runs can be megabytes, so
                    // runs are enriched and handed on a few at a time.
                    while !page.is_empty() {
                        let rest = page.split_off(page.len().min(RUN_CONCURRENCY));
                        let runs = std::mem::replace(&mut page, rest);
                        sink.send(enrich_runs(&ctx.client, project, runs, opts).await?)
                            .await?;
                    }
                }
                Ok(())
            })
            .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &EVENTS
    }

    /// The test runs of the finished build, enriched as each block asks.
    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedBuild::read(cx, message).await? else {
            return Ok(None);
        };
        let req = runs_request(&changed.project_id.to_string()).query(
            "buildUri",
            format!("vstfs:///Build/Build/{}", changed.build_id),
        );
        let pages: Vec<Vec<Value>> = cx
            .ado
            .top_skip_pages(req, PAGE_SIZE, None)
            .try_collect()
            .await
            .map_err(LiveError::ado(changed.context()))?;
        let runs: Vec<Value> = pages.into_iter().flatten().collect();
        let mut items = Vec::new();
        for block in blocks {
            let enriched = enrich_runs(cx.ado, &changed.project, runs.clone(), *block.options)
                .await
                .map_err(LiveError::ado(changed.context()))?;
            items.extend(
                enriched
                    .into_iter()
                    .map(|r| (block.resource, RawItem::Current(r))),
            );
        }
        Ok(Some(items))
    }
}

fn runs_request(project_id: &str) -> Request {
    Request::get(format!("/{project_id}/_apis/test/runs")).query("includeRunDetails", "true")
}

/// Adds `__testResults` and `__codeCoverage` (`[]` and `{}` when not asked for or not applicable).
async fn enrich_runs(
    client: &AdoClient,
    project: &Value,
    runs: Vec<Value>,
    opts: Options,
) -> Result<Vec<Value>, AdoError> {
    let project_id = str_field(project, "id");
    futures::stream::iter(runs)
        .map(|mut run| async move {
            let results = if opts.include_results {
                let req = Request::get(format!(
                    "/{project_id}/_apis/test/Runs/{}/results",
                    run["id"]
                ));
                let pages: Vec<Vec<Value>> = client
                    .top_skip_pages(req, RESULTS_PAGE, None)
                    .try_collect()
                    .await?;
                pages.into_iter().flatten().collect()
            } else {
                Vec::new()
            };
            put(&mut run, "__testResults", Value::Array(results));
            let build_id = run.pointer("/build/id").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let coverage = match (opts.coverage_flags, build_id) {
                (Some(flags), Some(build)) => {
                    let mut req = Request::get(format!("/{project_id}/_apis/test/codecoverage"))
                        .query("buildId", build)
                        .version(ApiVersion::Preview(1));
                    if flags != 0 {
                        req = req.query("flags", flags);
                    }
                    client.send(&req).await?.body
                }
                _ => json!({}),
            };
            put(&mut run, "__codeCoverage", coverage);
            Ok::<_, AdoError>(run)
        })
        .buffered(RUN_CONCURRENCY)
        .try_collect()
        .await
}
