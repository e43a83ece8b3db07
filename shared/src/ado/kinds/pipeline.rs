//! `pipeline`: per project, every pipeline (continuation-token paging), with `__projectId` and `__project`;
//! with `includeRepo`, `__repository` from the pipeline's build definition.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::live::{Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::parent::{pipeline_request, unless_parent_gone};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink,
    SelectorOptions, str_field,
};
use crate::ado::{AdoClient, AdoError, Guid, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

pub struct Pipeline;

/// A pipeline's runs change its entity (last run, state) as they start and finish.
static EVENTS: [&LiveEvent; 7] = super::builds::BUILD_AND_RUN_EVENTS;

/// `includeRepo`: add `__repository` from each pipeline's build definition.
pub struct Options {
    include_repo: bool,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["includeRepo"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            include_repo: selector.bool_option("includeRepo", false)?,
        })
    }
}

#[async_trait]
impl Kind for Pipeline {
    type Options = Options;

    fn name(&self) -> &'static str {
        "pipeline"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let include_repo = options.include_repo;
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

    fn events(&self) -> &'static [&'static LiveEvent] {
        &EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let pipeline_id = match &message.change {
            Change::Build { definition_id, .. } => *definition_id,
            Change::PipelineRun { pipeline_id, .. } => *pipeline_id,
            _ => return Ok(None),
        };
        read_changed(cx, message.project_id.as_ref(), pipeline_id, blocks).await
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

/// The pipeline a run or build names, as its listing produces it for each block (with `__repository`
/// for blocks with `includeRepo`, read once for all of them).
async fn read_changed<'b>(
    cx: &LiveContext<'_>,
    project_id: Option<&Guid>,
    pipeline_id: Option<u64>,
    blocks: &[Block<'b, Options>],
) -> Result<Option<Changed<'b>>, LiveError> {
    let (Some(project_id), Some(id)) = (project_id, pipeline_id) else {
        tracing::info!(
            project = project_id.map(tracing::field::display),
            pipeline = pipeline_id,
            "the change does not name a project and a pipeline; nothing to do"
        );
        return Ok(None);
    };
    if cx.excluded(Some(project_id)).await? {
        return Ok(None);
    }
    let context = format!("pipeline {id}");
    let project = cx
        .project(project_id)
        .await
        .map_err(LiveError::ado(&context))?;
    let current = match &project {
        Some(p) => cx
            .get(Request::get(format!("/{project_id}/_apis/pipelines/{id}")))
            .await
            .map_err(LiveError::ado(&context))?
            .map(|mut item| {
                enrich_pipeline(&mut item, p);
                item
            }),
        None => None,
    };
    let raw = match current {
        Some(item) => RawItem::Current(item),
        None => {
            // What the listing would have produced for a pipeline that is gone.
            let project = project.unwrap_or_else(|| serde_json::json!({ "id": project_id }));
            let mut gone = serde_json::json!({ "id": id });
            enrich_pipeline(&mut gone, &project);
            RawItem::Gone(gone)
        }
    };
    let mut with_repo: Option<RawItem> = None;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let item = match (&raw, block.options.include_repo) {
            (RawItem::Current(item), true) => match &with_repo {
                Some(done) => done.clone(),
                None => {
                    let enriched = with_repositories(cx.ado, vec![item.clone()])
                        .await
                        .map_err(LiveError::ado(&context))?
                        .pop()
                        .map_or_else(|| raw.clone(), RawItem::Current);
                    with_repo = Some(enriched.clone());
                    enriched
                }
            },
            _ => raw.clone(),
        };
        out.push((block.resource, item));
    }
    Ok(Some(out))
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
