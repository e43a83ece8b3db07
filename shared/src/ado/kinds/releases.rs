//! Classic release management, on the release host (vsrm): `release`, `release-definition` and
//! `release-deployment`, each listed per project with continuation tokens. Selector filters are sent
//! exactly as given (lists comma-joined), as the peer does.

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::listing::{joined, project_pages, put};
use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem};
use super::{
    Block, FetchContext, Kind, OptionError, PAGE_SIZE, PageSink, SelectorOptions, str_field,
};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoError, Guid, Request, Service};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

fn release_changed(r: &Value) -> Result<Change, live::Unnamed> {
    Ok(Change::Release {
        release_id: live::required_number(r, &[&["release", "id"]], "release id")?,
        definition_id: live::first_number(
            r,
            &[&["release", "releaseDefinition", "id"]],
            "release definition id",
        )?,
    })
}

/// Deployment events carry either `deployment` or (older payloads) `environment`.
fn deployment_changed(r: &Value) -> Result<Change, live::Unnamed> {
    Ok(Change::ReleaseDeployment {
        release_id: live::required_number(
            r,
            &[
                &["deployment", "release", "id"],
                &["environment", "releaseId"],
                &["environment", "release", "id"],
                &["release", "id"],
            ],
            "release id",
        )?,
        definition_environment_id: live::first_number(
            r,
            &[
                &["deployment", "definitionEnvironmentId"],
                &["environment", "definitionEnvironmentId"],
            ],
            "definition environment id",
        )?,
        deployment_id: live::first_number(r, &[&["deployment", "id"]], "deployment id")?,
    })
}

static RELEASE_CREATED: LiveEvent = LiveEvent {
    spec: EventSpec::release("ms.vss-release.release-created-event"),
    name: release_changed,
};
static RELEASE_ABANDONED: LiveEvent = LiveEvent {
    spec: EventSpec::release("ms.vss-release.release-abandoned-event"),
    name: release_changed,
};
static DEPLOYMENT_STARTED: LiveEvent = LiveEvent {
    spec: EventSpec::release("ms.vss-release.deployment-started-event"),
    name: deployment_changed,
};
static DEPLOYMENT_COMPLETED: LiveEvent = LiveEvent {
    spec: EventSpec::release("ms.vss-release.deployment-completed-event"),
    name: deployment_changed,
};

static RELEASE_EVENTS: [&LiveEvent; 4] = [
    &RELEASE_CREATED,
    &RELEASE_ABANDONED,
    &DEPLOYMENT_STARTED,
    &DEPLOYMENT_COMPLETED,
];
static DEFINITION_EVENTS: [&LiveEvent; 2] = [&RELEASE_CREATED, &RELEASE_ABANDONED];
static DEPLOYMENT_EVENTS: [&LiveEvent; 2] = [&DEPLOYMENT_STARTED, &DEPLOYMENT_COMPLETED];

/// The release a release or deployment event names, with its project, read once per message for every
/// kind it refreshes.
struct ChangedRelease {
    project: Value,
    project_id: Guid,
    release_id: u64,
    /// From the event, else the release's definition.
    definition_id: Option<u64>,
    /// A deployment event's (definition environment, deployment).
    deployment: Option<(Option<u64>, Option<u64>)>,
    /// In full (the single GET always carries environments and artifacts); `None`: it is gone.
    release: Option<Value>,
}

impl ChangedRelease {
    fn context(&self) -> String {
        format!("release {}", self.release_id)
    }

    async fn read(
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
    ) -> Result<Option<Self>, LiveError> {
        let (release_id, definition_id, deployment) = match &message.change {
            Change::Release {
                release_id,
                definition_id,
            } => (*release_id, *definition_id, None),
            Change::ReleaseDeployment {
                release_id,
                definition_environment_id,
                deployment_id,
            } => (
                *release_id,
                None,
                Some((*definition_environment_id, *deployment_id)),
            ),
            _ => return Ok(None),
        };
        let Some(project) = cx.project_of(message).await? else {
            return Ok(None);
        };
        let context = format!("release {release_id}");
        let project_id = live::project_id_of(&project).map_err(LiveError::ado(&context))?;
        let release = cx
            .get(
                Request::get(format!("/{project_id}/_apis/release/releases/{release_id}"))
                    .service(Service::Release),
            )
            .await
            .map_err(LiveError::ado(&context))?;
        let definition_id = definition_id.or_else(|| {
            release
                .as_ref()
                .and_then(|r| r.pointer("/releaseDefinition/id"))
                .and_then(Value::as_u64)
        });
        Ok(Some(Self {
            project,
            project_id,
            release_id,
            definition_id,
            deployment,
            release,
        }))
    }
}

/// The deployment of one release to one environment. The deployments list has no release filter (the
/// peer's `releaseId` parameter is ignored by ADO, so it takes the newest deployment of *any* release);
/// this narrows by definition and environment and picks the release's own deployment.
async fn deployment_of(
    cx: &LiveContext<'_>,
    changed: &ChangedRelease,
    definition_id: u64,
    (definition_environment_id, deployment_id): (Option<u64>, Option<u64>),
) -> Result<Option<Value>, AdoError> {
    let mut req = Request::get(format!("/{}/_apis/release/deployments", changed.project_id))
        .service(Service::Release)
        .query("definitionId", definition_id)
        .query("queryOrder", "descending");
    if let Some(env) = definition_environment_id {
        req = req.query("definitionEnvironmentId", env);
    }
    let pages = cx.ado.token_pages(req, Some(PAGE_SIZE), "value");
    futures::pin_mut!(pages);
    while let Some(page) = pages.try_next().await? {
        if let Some(d) = page.into_iter().find(|d| {
            d.pointer("/release/id").and_then(Value::as_u64) == Some(changed.release_id)
                && deployment_id.is_none_or(|id| d["id"].as_u64() == Some(id))
        }) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

const STATUSES: &[&str] = &["abandoned", "active", "draft", "undefined"];

/// The release list's filters, sent as given; the live read applies `statusFilter`, `tagFilter` and
/// `expand` itself to a release it reads by id.
pub struct ReleaseOptions {
    query: Vec<(&'static str, String)>,
    status: Option<String>,
    tags: Vec<String>,
    expand: Option<String>,
}

impl SelectorOptions for ReleaseOptions {
    const NAMES: &'static [&'static str] = &[
        "expand",
        "statusFilter",
        "tagFilter",
        "sourceBranchFilter",
        "minCreatedTime",
        "maxCreatedTime",
    ];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let text = |k: &str| selector.str_option(k);
        let mut query = Vec::new();
        let expand = text("expand")?;
        if let Some(e) = &expand {
            query.push(("$expand", e.clone()));
        }
        let status = text("statusFilter")?;
        if let Some(s) = &status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(OptionError::new(
                    "statusFilter",
                    format!("must be one of {}; got {s:?}", STATUSES.join(", ")),
                ));
            }
            query.push(("statusFilter", s.clone()));
        }
        let tags = selector.str_list_option("tagFilter")?;
        if let Some(t) = joined(tags.clone()) {
            query.push(("tagFilter", t));
        }
        for key in ["sourceBranchFilter", "minCreatedTime", "maxCreatedTime"] {
            if let Some(v) = text(key)? {
                query.push((key, v));
            }
        }
        Ok(Self {
            query,
            status,
            tags,
            expand,
        })
    }
}

fn with_query(mut req: Request, query: &[(&'static str, String)]) -> Request {
    for (k, v) in query {
        req = req.query(k, v);
    }
    req
}

pub struct Release;

#[async_trait]
impl Kind for Release {
    type Options = ReleaseOptions;

    fn name(&self) -> &'static str {
        "release"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &ReleaseOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                with_query(
                    Request::get(format!("/{}/_apis/release/releases", str_field(p, "id")))
                        .service(Service::Release),
                    &opts.query,
                )
            },
            |_, _| {},
        )
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &RELEASE_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, ReleaseOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedRelease::read(cx, message).await? else {
            return Ok(None);
        };
        Ok(Some(
            blocks
                .iter()
                .map(|b| {
                    let raw = match &changed.release {
                        Some(r) => match release_as_listed(r, b.options) {
                            Some(listed) => RawItem::Current(listed),
                            None => RawItem::Gone(r.clone()),
                        },
                        None => RawItem::Gone(json!({
                            "id": changed.release_id,
                            "projectReference": { "id": changed.project_id }
                        })),
                    };
                    (b.resource, raw)
                })
                .collect(),
        ))
    }
}

/// `expand` (environments by default) and `tagFilter`.
pub struct DefinitionOptions {
    expand: String,
    tags: Option<String>,
}

impl SelectorOptions for DefinitionOptions {
    const NAMES: &'static [&'static str] = &["expand", "tagFilter"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        Ok(Self {
            expand: selector
                .str_option("expand")?
                .unwrap_or_else(|| "environments".to_owned()),
            tags: joined(selector.str_list_option("tagFilter")?),
        })
    }
}

pub struct ReleaseDefinition;

#[async_trait]
impl Kind for ReleaseDefinition {
    type Options = DefinitionOptions;

    fn name(&self) -> &'static str {
        "release-definition"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &DefinitionOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                let mut req =
                    Request::get(format!("/{}/_apis/release/definitions", str_field(p, "id")))
                        .service(Service::Release)
                        .query("$expand", &opts.expand);
                if let Some(t) = &opts.tags {
                    req = req.query("tagFilter", t);
                }
                req
            },
            enrich_definition,
        )
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &DEFINITION_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, DefinitionOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedRelease::read(cx, message).await? else {
            return Ok(None);
        };
        let Some(id) = changed.definition_id else {
            return Ok(None);
        };
        let req = Request::get(format!(
            "/{}/_apis/release/definitions/{id}",
            changed.project_id
        ))
        .service(Service::Release);
        let read = cx
            .get(req)
            .await
            .map_err(LiveError::ado(changed.context()))?;
        let (mut item, gone) = match read {
            Some(d) => (d, false),
            None => (json!({ "id": id }), true),
        };
        enrich_definition(&mut item, &changed.project);
        Ok(Some(live::each(
            blocks,
            if gone {
                RawItem::Gone(item)
            } else {
                RawItem::Current(item)
            },
        )))
    }
}

/// `__project`, as the peer adds it; shared with the live read.
fn enrich_definition(item: &mut Value, project: &Value) {
    put(item, "__project", project.clone());
}

pub struct ReleaseDeployment;

/// `includeRelease` is in the peer's example mappings but reads nothing there either (a deployment
/// carries its release); accepted so those mappings compile.
pub struct DeploymentOptions;

impl SelectorOptions for DeploymentOptions {
    const NAMES: &'static [&'static str] = &["includeRelease"];

    fn parse(_: &Selector) -> Result<Self, OptionError> {
        Ok(Self)
    }
}

#[async_trait]
impl Kind for ReleaseDeployment {
    type Options = DeploymentOptions;

    fn name(&self) -> &'static str {
        "release-deployment"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &DeploymentOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        project_pages(
            ctx,
            sink,
            Some(PAGE_SIZE),
            |p| {
                Request::get(format!("/{}/_apis/release/deployments", str_field(p, "id")))
                    .service(Service::Release)
            },
            |_, _| {},
        )
        .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &DEPLOYMENT_EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, DeploymentOptions>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Some(changed) = ChangedRelease::read(cx, message).await? else {
            return Ok(None);
        };
        let (Some(definition_id), Some(deployment)) = (changed.definition_id, changed.deployment)
        else {
            return Ok(None);
        };
        match deployment_of(cx, &changed, definition_id, deployment)
            .await
            .map_err(LiveError::ado(changed.context()))?
        {
            Some(d) => Ok(Some(live::each(blocks, RawItem::Current(d)))),
            // Not listed yet (the event can outrun the list): the next event or resync brings it.
            None => Ok(None),
        }
    }
}

/// A release read by id, shaped and filtered as the block's listing would have returned it: the single
/// GET always carries `environments` and `artifacts`, the list only when `expand` asks; a release outside
/// the block's `statusFilter` or `tagFilter` is `None` (the listing would not return it).
fn release_as_listed(release: &Value, opts: &ReleaseOptions) -> Option<Value> {
    if let Some(status) = &opts.status
        && status != "undefined"
        && release.get("status").and_then(Value::as_str) != Some(status.as_str())
    {
        return None;
    }
    let tags = &opts.tags;
    let has = |t: &String| {
        release
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t.trim())))
    };
    if !tags.iter().filter(|t| !t.trim().is_empty()).all(has) {
        return None;
    }
    let expand = opts
        .expand
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut listed = release.clone();
    if let Value::Object(map) = &mut listed {
        for key in ["environments", "artifacts"] {
            if !expand.split(',').any(|e| e.trim() == key) {
                map.remove(key);
            }
        }
    }
    Some(listed)
}
