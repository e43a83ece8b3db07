//! `build` (optionally with `__firstCommit`), `pipeline-stage` (the Stage records of every build's
//! timeline) and `pipeline-run` (every run of every pipeline). Builds are streamed per project, never held
//! for the whole organisation.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::DateTime;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::listing::{put, with_project};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem, Unnamed};
use super::parent::{Recheck, build_request, pipeline_request, recheck_parent, unless_parent_gone};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink,
    SelectorOptions, str_field,
};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoClient, AdoError, Guid, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

/// A classic or YAML build finished.
pub(crate) static BUILD_COMPLETE: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("build.complete"),
    name: |r| {
        Ok(Change::Build {
            build_id: live::required_number(r, &[&["id"]], "build id")?,
            definition_id: live::first_number(r, &[&["definition", "id"]], "definition id")?,
        })
    },
};

const RUN_ID: &[&[&str]] = &[&["run", "id"], &["runId"], &["buildId"]];
const PIPELINE_ID: &[&[&str]] = &[
    &["pipeline", "id"],
    &["run", "pipeline", "id"],
    &["pipelineId"],
];

fn stage_id(r: &Value) -> Result<Option<Guid>, Unnamed> {
    live::first_guid([live::at(r, &["stage", "id"])], "stage id")
}

/// A run, stage or job state change: the run is named.
fn run_changed(r: &Value) -> Result<Change, Unnamed> {
    Ok(Change::PipelineRun {
        pipeline_id: live::first_number(r, PIPELINE_ID, "pipeline id")?,
        run_id: Some(live::required_number(r, RUN_ID, "run id")?),
        stage_id: stage_id(r)?,
        completed: false,
    })
}

/// A run's own state change; a completed run is marked so the processor reports it to an action run
/// waiting for it (the result is read back from Azure DevOps, not taken from the delivery).
fn run_state_changed(r: &Value) -> Result<Change, Unnamed> {
    let completed = live::at(r, &["run", "state"]).and_then(Value::as_str) == Some("completed");
    match run_changed(r)? {
        Change::PipelineRun {
            pipeline_id,
            run_id,
            stage_id,
            ..
        } => Ok(Change::PipelineRun {
            pipeline_id,
            run_id,
            stage_id,
            completed,
        }),
        other => Ok(other),
    }
}

/// Approvals and checks name the run only on some payload versions; the documented sample has
/// `run: null` and `pipeline: null`. Take what is there, but with neither id there is nothing for the
/// processor to re-read.
fn check_changed(r: &Value) -> Result<Change, Unnamed> {
    let pipeline_id = live::first_number(r, PIPELINE_ID, "pipeline id")?;
    let run_id = live::first_number(r, RUN_ID, "run id")?;
    if pipeline_id.is_none() && run_id.is_none() {
        return Err(Unnamed::Missing("run or pipeline id"));
    }
    Ok(Change::PipelineRun {
        pipeline_id,
        run_id,
        stage_id: stage_id(r)?,
        completed: false,
    })
}

static RUN_STATE: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelines.run-state-changed-event", false),
    name: run_state_changed,
};
static STAGE_STATE: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelines.stage-state-changed-event", false),
    name: run_changed,
};
static JOB_STATE: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelines.job-state-changed-event", true),
    name: run_changed,
};
static APPROVAL_PENDING: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelinechecks-events.approval-pending", false),
    name: check_changed,
};
static APPROVAL_COMPLETED: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelinechecks-events.approval-completed", false),
    name: check_changed,
};
static CHECK_UPDATED: LiveEvent = LiveEvent {
    spec: EventSpec::pipelines("ms.vss-pipelinechecks-events.check-updated-event", true),
    name: check_changed,
};

/// A finished build and every state change of a run (a run *is* a build): what refreshes a pipeline,
/// its builds, runs and stages, and the deployment records a build writes.
pub(crate) static BUILD_AND_RUN_EVENTS: [&LiveEvent; 7] = [
    &BUILD_COMPLETE,
    &RUN_STATE,
    &STAGE_STATE,
    &JOB_STATE,
    &APPROVAL_PENDING,
    &APPROVAL_COMPLETED,
    &CHECK_UPDATED,
];

/// The build (= run) a build or run event names, with its project; what it reads is read once per
/// message for every kind it refreshes.
pub(crate) struct ChangedBuild {
    pub project: Value,
    pub project_id: Guid,
    pub build_id: u64,
    /// From the event, else the build's definition.
    pub pipeline_id: Option<u64>,
    pub stage_id: Option<Guid>,
    /// As the build list renders it; `None`: it is gone.
    pub build: Option<Value>,
}

impl ChangedBuild {
    pub(crate) fn context(&self) -> String {
        format!("build {}", self.build_id)
    }

    /// `None` (logged): not a build or run change, or one whose project cannot be read.
    pub(crate) async fn read(
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
    ) -> Result<Option<Self>, LiveError> {
        let (build_id, pipeline_id, stage_id) = match &message.change {
            Change::Build {
                build_id,
                definition_id,
            } => (*build_id, *definition_id, None),
            Change::PipelineRun {
                pipeline_id,
                run_id: Some(run_id),
                stage_id,
                ..
            } => (*run_id, *pipeline_id, *stage_id),
            _ => return Ok(None),
        };
        let Some(project) = cx.project_of(message).await? else {
            return Ok(None);
        };
        let context = format!("build {build_id}");
        let project_id = live::project_id_of(&project).map_err(LiveError::ado(&context))?;
        let build = cx
            .get(Request::get(format!(
                "/{project_id}/_apis/build/builds/{build_id}"
            )))
            .await
            .map_err(LiveError::ado(&context))?;
        let pipeline_id = pipeline_id.or_else(|| {
            build
                .as_ref()
                .and_then(|b| b.pointer("/definition/id"))
                .and_then(Value::as_u64)
        });
        Ok(Some(Self {
            project,
            project_id,
            build_id,
            pipeline_id,
            stage_id,
            build,
        }))
    }
}

/// Per-build reads (changes, timelines, runs) in flight for one page.
const PER_BUILD_CONCURRENCY: usize = 8;
/// The Runs List API answers at most this many runs of a pipeline, newest first, and has no paging.
pub(crate) const RUNS_LIST_CAP: usize = 10_000;

/// The newest builds first, as the peer lists them.
fn builds_request(project_id: &str) -> Request {
    Request::get(format!("/{project_id}/_apis/build/builds"))
        .query("queryOrder", "queueTimeDescending")
}

/// Streams every project's builds, a page at a time, into `each(project, page)`.
async fn each_build_page<F, Fut>(ctx: &FetchContext, each: F) -> Result<(), AdoError>
where
    F: Fn(Value, Vec<Value>) -> Fut + Sync,
    Fut: std::future::Future<Output = Result<(), AdoError>> + Send,
{
    let projects = ctx.projects().await?;
    futures::stream::iter(projects.iter().cloned().map(Ok))
        .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| {
            let each = &each;
            async move {
                let req = builds_request(str_field(&project, "id"));
                let mut pages = ctx
                    .client
                    .token_pages(req, Some(PAGE_SIZE), "value")
                    .boxed();
                while let Some(page) = pages.try_next().await? {
                    each(project.clone(), page).await?;
                }
                Ok(())
            }
        })
        .await
}

pub struct Build;

/// `enrichWithFirstCommit`: add `__firstCommit`, the first commit of the build's branch.
pub struct BuildOptions {
    first_commit: bool,
}

impl SelectorOptions for BuildOptions {
    const NAMES: &'static [&'static str] = &["enrichWithFirstCommit"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            first_commit: selector.bool_option("enrichWithFirstCommit", false)?,
        })
    }
}

#[async_trait]
impl Kind for Build {
    type Options = BuildOptions;

    fn name(&self) -> &'static str {
        "build"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &BuildOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let first_commit = options.first_commit;
        each_build_page(ctx, |project, page| async move {
            let page = enrich_builds(&ctx.client, &project, page, first_commit).await?;
            sink.send(page).await
        })
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &BUILD_AND_RUN_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, BuildOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedBuild::read(cx, message).await? else {
            return Ok(None);
        };
        let mut items = Vec::with_capacity(blocks.len());
        for block in blocks {
            let raw = match &changed.build {
                Some(build) => {
                    let first = block.options.first_commit;
                    let mut page =
                        enrich_builds(cx.ado, &changed.project, vec![build.clone()], first)
                            .await
                            .map_err(LiveError::ado(changed.context()))?;
                    RawItem::Current(page.pop().unwrap_or(Value::Null))
                }
                None => {
                    // What the listing would have produced for a build that is gone.
                    let mut gone = json!({ "id": changed.build_id });
                    with_project(&mut gone, &changed.project);
                    RawItem::Gone(gone)
                }
            };
            items.push((block.resource, raw));
        }
        Ok(Some(items))
    }
}

/// `__projectId`, `__project` and, when asked, `__firstCommit`; shared with the live read.
pub(crate) async fn enrich_builds(
    client: &AdoClient,
    project: &Value,
    page: Vec<Value>,
    first_commit: bool,
) -> Result<Vec<Value>, AdoError> {
    futures::stream::iter(page)
        .map(|mut build| async move {
            with_project(&mut build, project);
            // A failing read fails the kind: a pass that silently drops the field would rewrite every
            // entity without it. The few answers that mean "no first commit" are `Ok(None)`.
            if first_commit && let Some(commit) = first_commit_of(client, project, &build).await? {
                put(&mut build, "__firstCommit", commit);
            }
            Ok(build)
        })
        .buffered(PER_BUILD_CONCURRENCY)
        .try_collect()
        .await
}

/// The build's earliest change, with `__sha`, `__timestamp` and `__commitCount`; when no change has a
/// timestamp (a manual run of an old commit), the source commit itself.
async fn first_commit_of(
    client: &AdoClient,
    project: &Value,
    build: &Value,
) -> Result<Option<Value>, AdoError> {
    let project_id = str_field(project, "id");
    let req = Request::get(format!(
        "/{project_id}/_apis/build/builds/{}/changes",
        build["id"]
    ));
    let pages: Vec<Vec<Value>> = match client
        .token_pages(req, Some(PAGE_SIZE), "value")
        .try_collect()
        .await
    {
        Ok(pages) => pages,
        // A build deleted since the list was read keeps no field (the next pass drops it).
        Err(e) => {
            unless_parent_gone(client, e, &build_request(project_id, &build["id"])).await?;
            return Ok(None);
        }
    };
    let changes: Vec<Value> = pages.into_iter().flatten().collect();
    let count = changes.len();
    let earliest = changes
        .into_iter()
        .filter_map(|c| {
            let at = c
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?;
            Some((at, c))
        })
        .min_by_key(|(at, _)| *at);
    if let Some((_, mut change)) = earliest {
        let sha = change.get("id").cloned().unwrap_or(Value::Null);
        let at = change.get("timestamp").cloned().unwrap_or(Value::Null);
        put(&mut change, "__sha", sha);
        put(&mut change, "__timestamp", at);
        put(&mut change, "__commitCount", json!(count));
        return Ok(Some(change));
    }
    let (Some(repo), Some(version)) = (
        build.pointer("/repository/id").and_then(Value::as_str),
        build.get("sourceVersion").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    // Only an Azure Repos repository has its commits here (a GitHub or Bitbucket one does not).
    if build
        .pointer("/repository/type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.eq_ignore_ascii_case("TfsGit"))
    {
        return Ok(None);
    }
    let req = Request::get(format!(
        "/{project_id}/_apis/git/repositories/{repo}/commits/{version}"
    ));
    // The commit is content of one build, not a listing: a commit that no longer exists (a
    // force-push, a deleted repository) or a repository this server does not host leaves the build
    // without the field, as the peer does.
    let mut commit = match client.send(&req).await {
        Ok(reply) => reply.body,
        Err(e @ (AdoError::NotFound(_) | AdoError::Invalid(_))) => {
            tracing::warn!(build = %build["id"], error = %e, "source commit not found; the build is kept without __firstCommit");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let sha = commit
        .get("commitId")
        .cloned()
        .unwrap_or_else(|| json!(version));
    let at = commit
        .pointer("/committer/date")
        .cloned()
        .unwrap_or(Value::Null);
    put(&mut commit, "__sha", sha);
    put(&mut commit, "__timestamp", at);
    put(&mut commit, "__commitCount", json!(1));
    Ok(Some(commit))
}

pub struct PipelineStage;

#[async_trait]
impl Kind for PipelineStage {
    type Options = ();

    fn name(&self) -> &'static str {
        "pipeline-stage"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        each_build_page(ctx, |project, builds| async move {
            // Every stage carries its whole build: stages are handed on a few builds at a time, not a
            // page of builds at a time, so memory stays small.
            for chunk in builds.chunks(PER_BUILD_CONCURRENCY) {
                let stages = futures::future::try_join_all(
                    chunk
                        .iter()
                        .map(|build| stages_of(&ctx.client, &project, build, None)),
                )
                .await?;
                sink.send(stages.into_iter().flatten().collect()).await?;
            }
            Ok(())
        })
        .await
    }

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
        let Some(build) = &changed.build else {
            return Ok(None);
        };
        let stage_id = changed.stage_id.map(|g| g.to_string());
        let stages = stages_of(cx.ado, &changed.project, build, stage_id.as_deref())
            .await
            .map_err(LiveError::ado(changed.context()))?;
        Ok(Some(
            blocks
                .iter()
                .flat_map(|b| {
                    stages
                        .iter()
                        .map(move |s| (b.resource, RawItem::Current(s.clone())))
                })
                .collect(),
        ))
    }
}

/// The Stage records of a build's timeline (only `stage_id` when given), with `__project` and `__build`.
/// No stages for a build that is gone, or that has not started (a queued build may have no timeline
/// yet); a 404 on the timeline of any other build fails the kind.
pub(crate) async fn stages_of(
    client: &AdoClient,
    project: &Value,
    build: &Value,
    stage_id: Option<&str>,
) -> Result<Vec<Value>, AdoError> {
    let project_id = str_field(project, "id");
    let req = Request::get(format!(
        "/{project_id}/_apis/build/builds/{}/timeline",
        build["id"]
    ));
    let timeline = match client.send(&req).await {
        Ok(reply) => reply.body,
        Err(e) => {
            let parent = build_request(project_id, &build["id"]);
            return match recheck_parent(client, e, &parent).await? {
                Recheck::ParentGone => Ok(Vec::new()),
                Recheck::ParentPresent { parent, .. }
                    if str_field(&parent, "status") == "notStarted" =>
                {
                    Ok(Vec::new())
                }
                Recheck::ParentPresent { error, .. } => Err(error),
            };
        }
    };
    Ok(super::super::paging::take_items(timeline, "records")
        .into_iter()
        .filter(|r| r.get("type").and_then(Value::as_str) == Some("Stage"))
        .filter(|r| stage_id.is_none_or(|id| str_field(r, "id").eq_ignore_ascii_case(id)))
        .map(|mut r| {
            put(&mut r, "__project", project.clone());
            put(&mut r, "__build", build.clone());
            r
        })
        .collect())
}

pub struct PipelineRun;

#[async_trait]
impl Kind for PipelineRun {
    type Options = ();

    fn name(&self) -> &'static str {
        "pipeline-run"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| async move {
                let id = str_field(project, "id");
                let mut pipelines = ctx
                    .client
                    .token_pages(
                        Request::get(format!("/{id}/_apis/pipelines")),
                        Some(PAGE_SIZE),
                        "value",
                    )
                    .boxed();
                while let Some(page) = pipelines.try_next().await? {
                    let mut runs =
                        futures::stream::iter(page)
                            .map(|pipeline| async move {
                                runs_of(&ctx.client, project, &pipeline).await
                            })
                            .buffered(PER_BUILD_CONCURRENCY);
                    while let Some(runs) = runs.try_next().await? {
                        for chunk in runs.chunks(PAGE_SIZE as usize) {
                            sink.send(chunk.to_vec()).await?;
                        }
                    }
                }
                Ok(())
            })
            .await
    }

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
        let Some(pipeline_id) = changed.pipeline_id else {
            return Ok(None);
        };
        let err = LiveError::ado(changed.context());
        let run = run_as_listed(cx, &changed, pipeline_id)
            .await
            .map_err(err)?;
        Ok(Some(live::each(
            blocks,
            match run {
                Some(run) => RawItem::Current(run),
                None => {
                    let mut gone = json!({ "id": changed.build_id });
                    enrich_run(&mut gone, &changed.project, &json!({ "id": pipeline_id }));
                    RawItem::Gone(gone)
                }
            },
        )))
    }
}

/// Every run of a pipeline. The Runs List stops at 10,000 runs; past that, the older runs come from the
/// builds of the same definition (a run *is* a build), paged to the end and shaped like runs.
async fn runs_of(
    client: &AdoClient,
    project: &Value,
    pipeline: &Value,
) -> Result<Vec<Value>, AdoError> {
    let project_id = str_field(project, "id");
    let pipeline_id = &pipeline["id"];
    let req = Request::get(format!("/{project_id}/_apis/pipelines/{pipeline_id}/runs"));
    let mut runs = match client.send(&req).await {
        Ok(reply) => super::super::paging::take_items(reply.body, "value"),
        // None only for a pipeline deleted between the two listings.
        Err(e) => {
            unless_parent_gone(client, e, &pipeline_request(project_id, pipeline_id)).await?;
            return Ok(Vec::new());
        }
    };
    if runs.len() >= RUNS_LIST_CAP {
        let seen: HashSet<u64> = runs.iter().filter_map(|r| r["id"].as_u64()).collect();
        let req = builds_request(project_id).query("definitions", pipeline_id);
        let mut pages = client.token_pages(req, Some(PAGE_SIZE), "value").boxed();
        while let Some(page) = pages.try_next().await? {
            runs.extend(
                page.iter()
                    .filter(|b| b["id"].as_u64().is_some_and(|id| !seen.contains(&id)))
                    .map(|b| run_from_build(b, pipeline)),
            );
        }
    }
    for run in &mut runs {
        enrich_run(run, project, pipeline);
    }
    Ok(runs)
}

/// A pipeline run with `__project` and `__pipeline`. The single GET adds fields the Runs List leaves out
/// (`resources`, `templateParameters`, …); they are dropped so the entity matches the listed one.
async fn run_as_listed(
    cx: &LiveContext<'_>,
    changed: &ChangedBuild,
    pipeline_id: u64,
) -> Result<Option<Value>, AdoError> {
    let project_id = &changed.project_id;
    let pipeline = cx
        .get(Request::get(format!(
            "/{project_id}/_apis/pipelines/{pipeline_id}"
        )))
        .await?
        .unwrap_or_else(|| json!({ "id": pipeline_id }));
    let run = cx
        .get(Request::get(format!(
            "/{project_id}/_apis/pipelines/{pipeline_id}/runs/{}",
            changed.build_id
        )))
        .await?;
    Ok(run.map(|mut run| {
        if let Value::Object(map) = &mut run {
            for key in [
                "resources",
                "templateParameters",
                "variables",
                "finalYaml",
                "yamlDetails",
            ] {
                map.remove(key);
            }
        }
        enrich_run(&mut run, &changed.project, &pipeline);
        run
    }))
}

/// `__project` and `__pipeline`, as the peer adds them.
pub(crate) fn enrich_run(run: &mut Value, project: &Value, pipeline: &Value) {
    put(run, "__project", project.clone());
    put(run, "__pipeline", pipeline.clone());
}

/// A build in the Runs API's shape (the fields Runs List returns).
fn run_from_build(build: &Value, pipeline: &Value) -> Value {
    let state = match build["status"].as_str() {
        Some("completed") => "completed",
        Some("inProgress") => "inProgress",
        Some("cancelling") => "canceling",
        _ => "unknown",
    };
    let mut run = json!({
        "_links": {"web": build.pointer("/_links/web").cloned().unwrap_or(Value::Null)},
        "pipeline": {
            "url": pipeline["url"], "id": pipeline["id"], "revision": pipeline["revision"],
            "name": pipeline["name"], "folder": pipeline["folder"],
        },
        "state": state,
        "createdDate": build["queueTime"],
        "url": pipeline["url"].as_str().map(|u| {
            format!("{}/runs/{}", u.split('?').next().unwrap_or(u), build["id"])
        }),
        "id": build["id"],
        "name": build["buildNumber"],
    });
    if let Some(finished) = build.get("finishTime") {
        run["finishedDate"] = finished.clone();
        run["result"] = json!(match build["result"].as_str() {
            Some("partiallySucceeded") | Some("succeeded") => "succeeded",
            Some("failed") => "failed",
            Some("canceled") => "canceled",
            _ => "unknown",
        });
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_past_the_runs_cap_takes_the_runs_shape() {
        let pipeline = json!({"id": 7, "revision": 2, "name": "ci", "folder": "\\", "url": "https://x/p/_apis/pipelines/7?revision=2"});
        let build = json!({"id": 42, "buildNumber": "20240101.1", "status": "completed", "result": "partiallySucceeded",
            "queueTime": "2024-01-01T00:00:00Z", "finishTime": "2024-01-01T00:05:00Z"});
        let run = run_from_build(&build, &pipeline);
        assert_eq!(run["id"], 42);
        assert_eq!(run["name"], "20240101.1");
        assert_eq!(run["state"], "completed");
        assert_eq!(run["result"], "succeeded");
        assert_eq!(run["pipeline"]["id"], 7);
        assert_eq!(run["url"], "https://x/p/_apis/pipelines/7/runs/42");
        let running = run_from_build(&json!({"id": 43, "status": "inProgress"}), &pipeline);
        assert_eq!(running["state"], "inProgress");
        assert!(running.get("result").is_none());
    }
}
