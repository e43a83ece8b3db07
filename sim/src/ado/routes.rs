//! HTTP handlers: the ADO REST endpoints under `/{org}` and the `/_sim` control endpoints.

use std::borrow::Cow;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::faults::{AdoError, gate};
use super::org::{Project, Repo, WiCore, fmt_time, millis_to_time};
use super::wiql::{self, Context, Field, Row};
use super::{AdoSim, Fault, FaultAction, ItemOverride, Overlay};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

/// The most ids one work-items GET may ask for (VS403474).
const MAX_BATCH_IDS: usize = 200;
/// The most results one WIQL query may return (VS402337).
const WIQL_CAP: usize = 20_000;
const PROJECTS_PAGE: usize = 100;
const PIPELINES_PAGE: usize = 100;
/// ADO's default `$top` for the pull-request list.
const PRS_PAGE: usize = 101;

pub(crate) fn router(sim: &Arc<AdoSim>) -> Router {
    let o = format!("/{}", sim.org.name);
    Router::new()
        .route(
            &format!("{o}/_apis/connectionData"),
            get(super::server::connection_data),
        )
        .route(&format!("{o}/_apis/projects"), get(list_projects))
        .route(
            &format!("{o}/_apis/projects/{{projectId}}"),
            get(get_project),
        )
        .route(
            &format!("{o}/_apis/projects/{{projectId}}/properties"),
            get(project_properties),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories"),
            get(list_repositories),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}/pullrequests"),
            get(list_pull_requests),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/pullrequests"),
            get(list_project_pull_requests),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/repositories/{{repositoryId}}"),
            get(get_repository_project),
        )
        .route(
            &format!("{o}/_apis/git/repositories/{{repositoryId}}"),
            get(get_repository_org),
        )
        .route(
            &format!("{o}/{{project}}/_apis/git/pullrequests/{{pullRequestId}}"),
            get(get_pull_request_project),
        )
        .route(
            &format!("{o}/_apis/git/pullrequests/{{pullRequestId}}"),
            get(get_pull_request_org),
        )
        .route(
            &format!("{o}/{{project}}/_apis/pipelines"),
            get(list_pipelines),
        )
        .route(
            &format!("{o}/{{project}}/_apis/pipelines/{{pipelineId}}"),
            get(get_pipeline),
        )
        .route(
            &format!("{o}/{{project}}/_apis/wit/wiql"),
            post(wiql_project),
        )
        .route(&format!("{o}/_apis/wit/wiql"), post(wiql_org))
        .route(
            &format!("{o}/{{project}}/_apis/wit/workitems"),
            get(work_items_project),
        )
        .route(&format!("{o}/_apis/wit/workitems"), get(work_items_org))
        .route(
            &format!("{o}/{{project}}/_apis/wit/workitems/{{id}}"),
            get(work_item_project),
        )
        .route(
            &format!("{o}/_apis/wit/workitems/{{id}}"),
            get(work_item_org),
        )
        .merge(super::hooks::routes(&o))
        .merge(super::builds::routes(&o))
        .merge(super::releases::routes(&o))
        .merge(super::git_policy::routes(&o))
        .merge(super::people::routes(&o))
        .merge(super::planning::routes(&o))
        .merge(super::wiki::routes(&o))
        .merge(super::content::routes(&o))
        .fallback(not_found)
        // Inside the gate, so a route Server lacks is still counted, authenticated and faulted.
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            super::server::flavour,
        ))
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim.clone())
        // Outside the org gate: the token endpoint needs no `api-version` and no Azure DevOps sign-in.
        .merge(super::entra::routes(sim))
}

async fn not_found() -> AdoError {
    AdoError::not_found(
        "InvalidResourceException",
        "VS800060: The resource cannot be found. The requested URL or API area does not exist.",
    )
}

// ---------------------------------------------------------------- helpers

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn int_param(q: &[(String, String)], key: &str) -> Result<Option<usize>> {
    param(q, key)
        .map(|v| {
            v.trim().parse().map_err(|_| {
                AdoError::bad_request(
                    "ArgumentException",
                    format!("The value '{v}' is not valid for parameter {key}."),
                )
            })
        })
        .transpose()
}

/// The URL prefix links are rendered with: whatever host the client used, so links resolve.
pub(crate) fn base(sim: &AdoSim, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/{}", sim.org.name)
}

pub(crate) fn project<'a>(sim: &'a AdoSim, key: &str) -> Result<&'a Project> {
    sim.org.project_by_key(key).ok_or_else(|| {
        if uuid::Uuid::parse_str(key).is_ok() {
            AdoError::not_found(
                "ProjectDoesNotExistException",
                format!("VS800075: The project with id '{key}' does not exist, or you do not have permission to access it."),
            )
        } else {
            AdoError::not_found(
                "ProjectDoesNotExistWithNameException",
                format!("TF200016: The following project does not exist: {key}. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server."),
            )
        }
    })
}

pub(crate) fn list_body(value: Vec<Value>) -> Value {
    json!({"count": value.len(), "value": value})
}

pub(crate) fn with_continuation(body: Value, token: Option<String>) -> Response {
    let mut resp = Json(body).into_response();
    if let Some(t) = token.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert("x-ms-continuationtoken", t);
    }
    resp
}

// ---------------------------------------------------------------- projects

async fn list_projects(State(sim): Sim, headers: HeaderMap, Query(q): Params) -> Result<Response> {
    let top = int_param(&q, "$top")?.unwrap_or(PROJECTS_PAGE);
    // The projects list's continuation token is the number of projects already returned.
    let skip = match param(&q, "continuationToken") {
        Some(t) => t.parse().map_err(|_| {
            AdoError::bad_request(
                "InvalidContinuationTokenException",
                format!("The continuation token '{t}' is not valid."),
            )
        })?,
        None => int_param(&q, "$skip")?.unwrap_or(0),
    };
    // Every generated project is wellFormed; other state filters match nothing.
    let state_ok = param(&q, "stateFilter")
        .is_none_or(|s| s.eq_ignore_ascii_case("wellFormed") || s.eq_ignore_ascii_case("all"));
    let base = base(&sim, &headers);
    let all: &[Project] = if state_ok { &sim.org.projects } else { &[] };
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(top)
        .map(|p| sim.org.project_json(&base, p))
        .collect();
    let next = skip + page.len();
    let token = (top > 0 && next < all.len()).then(|| next.to_string());
    Ok(with_continuation(list_body(page), token))
}

async fn get_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let caps = param(&q, "includeCapabilities").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Json(sim.org.project_detail_json(
        &base(&sim, &headers),
        p,
        caps,
    )))
}

async fn project_properties(
    State(sim): Sim,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    // `keys` is a comma list; a trailing `*` matches any suffix, as the real endpoint allows.
    let keys: Option<Vec<String>> =
        param(&q, "keys").map(|k| k.split(',').map(|s| s.trim().to_lowercase()).collect());
    let wanted = |name: &str| {
        let name = name.to_lowercase();
        keys.as_ref().is_none_or(|ks| {
            ks.iter().any(|k| match k.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == *k,
            })
        })
    };
    let value = sim
        .org
        .project_properties(p)
        .into_iter()
        .filter(|(n, _)| wanted(n))
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    Ok(Json(list_body(value)))
}

// ---------------------------------------------------------------- git

pub(crate) fn repo_not_found(key: &str) -> AdoError {
    AdoError::not_found(
        "GitRepositoryNotFoundException",
        format!(
            "TF401019: The Git repository with name or identifier {key} does not exist or you do not have permissions for the operation you are attempting."
        ),
    )
}

async fn list_repositories(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let ov = sim.read_overlay();
    // Real ADO returns every repository of the project in one response: no paging.
    let value = p
        .repos
        .iter()
        .filter(|r| !ov.removed_repos.contains(&r.id))
        .map(|r| sim.org.repo_json(&base, r))
        .collect();
    Ok(Json(list_body(value)))
}

pub(crate) fn find_repo<'a>(sim: &AdoSim, p: &'a Project, key: &str) -> Result<&'a Repo> {
    let ov = sim.read_overlay();
    p.repos
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(key) || r.name.eq_ignore_ascii_case(key))
        // A disabled repository refuses git API calls, which is why clients skip them.
        .filter(|r| !ov.removed_repos.contains(&r.id) && !r.disabled)
        .ok_or_else(|| repo_not_found(key))
}

async fn list_pull_requests(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, rkey)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let repo = find_repo(&sim, p, &rkey)?;
    let criteria = PrCriteria::read(&q)?;
    let base = base(&sim, &headers);
    let value = sim
        .org
        .pull_requests(repo)
        .into_iter()
        .filter(|pr| criteria.matches(pr))
        .skip(criteria.skip)
        .take(criteria.top)
        .map(|pr| sim.org.pull_request_json(&base, repo, &pr))
        .collect();
    Ok(Json(list_body(value)))
}

/// Pull Requests - Get Pull Requests By Project: the same criteria across every repository of the
/// project, newest first. Disabled and removed repositories contribute nothing (their git APIs refuse).
async fn list_project_pull_requests(
    State(sim): Sim,
    headers: HeaderMap,
    Path(pkey): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let criteria = PrCriteria::read(&q)?;
    let base = base(&sim, &headers);
    let repos: Vec<&crate::ado::org::Repo> = {
        let ov = sim.read_overlay();
        p.repos
            .iter()
            .filter(|r| !ov.removed_repos.contains(&r.id) && !r.disabled)
            .collect()
    };
    let mut all: Vec<(&crate::ado::org::Repo, crate::ado::org::PullRequest)> = repos
        .into_iter()
        .flat_map(|r| sim.org.pull_requests(r).into_iter().map(move |pr| (r, pr)))
        .filter(|(_, pr)| criteria.matches(pr))
        .collect();
    all.sort_by(|a, b| b.1.created.cmp(&a.1.created).then(b.1.id.cmp(&a.1.id)));
    let value = all
        .into_iter()
        .skip(criteria.skip)
        .take(criteria.top)
        .map(|(r, pr)| sim.org.pull_request_json(&base, r, &pr))
        .collect();
    Ok(Json(list_body(value)))
}

/// `searchCriteria.*` and `$top/$skip` of the pull-request lists.
struct PrCriteria {
    status: String,
    by_closed: bool,
    min: Option<chrono::DateTime<Utc>>,
    max: Option<chrono::DateTime<Utc>>,
    top: usize,
    skip: usize,
}

impl PrCriteria {
    fn read(q: &[(String, String)]) -> Result<Self> {
        let status = param(q, "searchCriteria.status")
            .unwrap_or("active")
            .to_ascii_lowercase();
        if !["active", "abandoned", "completed", "all", "notset"].contains(&status.as_str()) {
            return Err(AdoError::bad_request(
                "ArgumentException",
                format!("The value '{status}' is not valid for searchCriteria.status."),
            ));
        }
        let by_closed = param(q, "searchCriteria.queryTimeRangeType")
            .is_some_and(|t| t.eq_ignore_ascii_case("closed"));
        let time = |key: &str| -> Result<Option<chrono::DateTime<Utc>>> {
            param(q, key)
                .map(|v| {
                    wiql::parse_datetime(v).map(|(t, _)| t).ok_or_else(|| {
                        AdoError::bad_request(
                            "ArgumentException",
                            format!("The value '{v}' is not a valid date for {key}."),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            status,
            by_closed,
            min: time("searchCriteria.minTime")?,
            max: time("searchCriteria.maxTime")?,
            top: int_param(q, "$top")?.unwrap_or(PRS_PAGE),
            skip: int_param(q, "$skip")?.unwrap_or(0),
        })
    }

    fn matches(&self, pr: &crate::ado::org::PullRequest) -> bool {
        let status = match self.status.as_str() {
            "all" => true,
            "notset" => pr.status == "active",
            s => pr.status == s,
        };
        let at = if self.by_closed {
            pr.closed
        } else {
            Some(pr.created)
        };
        status
            && match at {
                Some(t) => self.min.is_none_or(|m| t >= m) && self.max.is_none_or(|m| t <= m),
                None => self.min.is_none() && self.max.is_none(),
            }
    }
}

/// Single-repository GET (webhook re-fetch); removed repositories are gone, disabled ones are listed.
fn repository(sim: &AdoSim, headers: &HeaderMap, key: &str) -> Result<Json<Value>> {
    let ov = sim.read_overlay();
    sim.org
        .repo_by_id(key)
        .filter(|r| !ov.removed_repos.contains(&r.id))
        .map(|r| Json(sim.org.repo_json(&base(sim, headers), r)))
        .ok_or_else(|| repo_not_found(key))
}

async fn get_repository_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, rkey)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    // Within a project a repository may also be named.
    let id = p
        .repos
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(&rkey))
        .map_or(rkey.clone(), |r| r.id.clone());
    repository(&sim, &headers, &id)
}

async fn get_repository_org(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    repository(&sim, &headers, &key)
}

fn pull_request(sim: &AdoSim, headers: &HeaderMap, id: &str) -> Result<Json<Value>> {
    let missing = || {
        AdoError::not_found(
            "GitPullRequestNotFoundException",
            format!("TF401180: The requested pull request was not found. Pull request id: {id}."),
        )
    };
    let n: u64 = id.parse().map_err(|_| missing())?;
    let (repo, pr) = sim.org.pull_request_by_id(n).ok_or_else(missing)?;
    if sim.read_overlay().removed_repos.contains(&repo.id) {
        return Err(missing());
    }
    Ok(Json(sim.org.pull_request_json(
        &base(sim, headers),
        repo,
        &pr,
    )))
}

async fn get_pull_request_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    project(&sim, &pkey)?;
    pull_request(&sim, &headers, &id)
}

async fn get_pull_request_org(
    State(sim): Sim,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    pull_request(&sim, &headers, &id)
}

// ---------------------------------------------------------------- pipelines

fn pipeline_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("pipelines:{offset}"))
}

fn parse_pipeline_token(t: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("pipelines:")?
        .parse()
        .ok()
}

async fn list_pipelines(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let top = int_param(&q, "$top")?.unwrap_or(PIPELINES_PAGE);
    // Pipelines tokens are opaque on the real service; clients must echo them, not compute them.
    let skip = match param(&q, "continuationToken") {
        Some(t) => parse_pipeline_token(t).ok_or_else(|| {
            AdoError::bad_request(
                "InvalidContinuationTokenException",
                format!("The continuation token '{t}' is not valid."),
            )
        })?,
        None => 0,
    };
    let base = base(&sim, &headers);
    let end = (skip + top).min(p.pipelines);
    let page: Vec<Value> = (skip.min(end)..end)
        .map(|k| sim.org.pipeline_json(&base, p, k))
        .collect();
    let token = (top > 0 && end < p.pipelines).then(|| pipeline_token(end));
    Ok(with_continuation(list_body(page), token))
}

/// Single-pipeline GET (live refresh after a build or run event).
async fn get_pipeline(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    id.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_sub(p.pipeline_first))
        .filter(|&k| k < p.pipelines as u64)
        .map(|k| Json(sim.org.pipeline_json(&base(&sim, &headers), p, k as usize)))
        .ok_or_else(|| {
            AdoError::not_found(
                "PipelineNotFoundException",
                format!("Pipeline with id {id} not found."),
            )
        })
}

// ---------------------------------------------------------------- work items

/// A work item as queries see it: generated values, with a test's overrides on top.
struct WiRow<'a> {
    sim: &'a AdoSim,
    core: WiCore,
    ov: Option<&'a ItemOverride>,
}

impl WiRow<'_> {
    fn over(&self, f: Field) -> Option<&Value> {
        self.ov.and_then(|o| o.fields.get(f.reference_name()))
    }
}

impl Row for WiRow<'_> {
    fn int(&self, f: Field) -> i64 {
        if let Some(v) = self.over(f).and_then(Value::as_i64) {
            return v;
        }
        match f {
            Field::Priority => self.core.priority as i64,
            _ => self.core.id as i64,
        }
    }

    fn text(&self, f: Field) -> Cow<'_, str> {
        if let Some(v) = self.over(f) {
            return match v {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_string()),
            };
        }
        let org = &self.sim.org;
        match f {
            Field::TeamProject => Cow::Borrowed(org.projects[self.core.project].name.as_str()),
            Field::State => Cow::Borrowed(self.core.state),
            Field::WorkItemType => Cow::Borrowed(self.core.wtype),
            Field::AreaPath => Cow::Owned(org.area_path(&self.core)),
            Field::IterationPath => Cow::Owned(org.iteration_path(&self.core)),
            Field::Title => Cow::Owned(org.title(&self.core)),
            Field::Reason => Cow::Borrowed(super::org::reason(self.core.state)),
            Field::Id | Field::Priority => Cow::Owned(self.int(f).to_string()),
            Field::ChangedDate | Field::CreatedDate => {
                Cow::Owned(fmt_time(millis_to_time(self.date_ms(f))))
            }
        }
    }

    fn date_ms(&self, f: Field) -> i64 {
        if let Some((t, _)) = self
            .over(f)
            .and_then(Value::as_str)
            .and_then(wiql::parse_datetime)
        {
            return t.timestamp_millis();
        }
        match f {
            Field::CreatedDate => self.core.created_ms,
            _ => self.core.changed_ms,
        }
    }
}

#[derive(Deserialize)]
struct WiqlBody {
    query: Option<String>,
}

#[derive(Serialize)]
struct WiRef {
    id: u64,
    url: String,
}

async fn wiql_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    run_wiql(&sim, &headers, Some(p.name.as_str()), &q, &body)
}

async fn wiql_org(
    State(sim): Sim,
    headers: HeaderMap,
    Query(q): Params,
    body: Bytes,
) -> Result<Response> {
    run_wiql(&sim, &headers, None, &q, &body)
}

fn run_wiql(
    sim: &AdoSim,
    headers: &HeaderMap,
    project: Option<&str>,
    q: &[(String, String)],
    body: &[u8],
) -> Result<Response> {
    let text = serde_json::from_slice::<WiqlBody>(body)
        .ok()
        .and_then(|b| b.query)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            AdoError::bad_request(
                "VssPropertyValidationException",
                "TF401243: The query text is missing. Provide a WIQL query in the 'query' property.",
            )
        })?;
    let top = int_param(q, "$top")?;
    let now = Utc::now();
    let today_start_ms = now.timestamp_millis().div_euclid(86_400_000) * 86_400_000;
    let ctx = Context {
        project,
        today_start_ms,
        time_precision: param(q, "timePrecision").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    };
    let query =
        wiql::parse(&text, &ctx).map_err(|e| AdoError::bad_request(e.type_key, e.message))?;
    let ids = evaluate(sim, &query, top)?;
    let base = base(sim, headers);
    let column = |f: Field| {
        json!({
            "referenceName": f.reference_name(),
            "name": f.display_name(),
            "url": format!("{base}/_apis/wit/fields/{}", f.reference_name()),
        })
    };
    let mut out = json!({
        "queryType": "flat",
        "queryResultType": "workItem",
        "asOf": fmt_time(now),
        "columns": query.columns.iter().map(|f| column(*f)).collect::<Vec<_>>(),
    });
    if !query.order.is_empty() {
        out["sortColumns"] = query
            .order
            .iter()
            .map(|(f, desc)| json!({"field": column(*f), "descending": desc}))
            .collect();
    }
    let refs: Vec<WiRef> = ids
        .into_iter()
        .map(|id| WiRef {
            id,
            url: format!("{base}/_apis/wit/workItems/{id}"),
        })
        .collect();
    out["workItems"] = serde_json::to_value(refs).unwrap_or_default();
    Ok(Json(out).into_response())
}

fn cap_error() -> AdoError {
    AdoError::bad_request(
        "WorkItemTrackingQueryResultSizeLimitExceededException",
        "VS402337: The number of work items returned exceeds the size limit of 20000. Change the query to return fewer work items.",
    )
}

/// Runs a query over the id ranges its plan allows. In id order it streams and stops at the
/// limit, so the client's `Id > N ORDER BY Id` paging costs O(page), not O(project).
fn evaluate(sim: &AdoSim, query: &wiql::Query, top: Option<usize>) -> Result<Vec<u64>> {
    let plan = query.plan();
    let org = &sim.org;
    let ov: std::sync::RwLockReadGuard<'_, Overlay> = sim.read_overlay();
    let mut ranges: Vec<(u64, u64)> = org
        .projects
        .iter()
        .filter(|p| p.wi_count > 0)
        .filter(|p| {
            plan.projects
                .as_ref()
                .is_none_or(|names| names.contains(&p.name.to_lowercase()))
        })
        .map(|p| {
            (
                p.wi_first.max(plan.id_min),
                (p.wi_first + p.wi_count - 1).min(plan.id_max),
            )
        })
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    // `$top` above the cap does not lift it.
    let limit = top.filter(|t| *t <= WIQL_CAP);
    let row = |id: u64| {
        org.work_item_core(id).map(|core| WiRow {
            sim,
            core,
            ov: ov.item_overrides.get(&id),
        })
    };
    let live = |id: &u64| !ov.removed_items.contains(id);
    match query.order_is_id() {
        Some(desc) => {
            let stop = limit.unwrap_or(WIQL_CAP + 1);
            let mut out = Vec::new();
            if desc {
                ranges.reverse();
            }
            'outer: for (lo, hi) in ranges {
                let ids: Box<dyn Iterator<Item = u64>> = if desc {
                    Box::new((lo..=hi).rev())
                } else {
                    Box::new(lo..=hi)
                };
                for id in ids.filter(live) {
                    if out.len() >= stop {
                        break 'outer;
                    }
                    if row(id).is_some_and(|r| query.matches(&r)) {
                        out.push(id);
                    }
                }
            }
            if limit.is_none() && out.len() > WIQL_CAP {
                return Err(cap_error());
            }
            Ok(out)
        }
        None => {
            let mut hits: Vec<(Vec<wiql::SortKey>, u64)> = Vec::new();
            for (lo, hi) in ranges {
                for id in (lo..=hi).filter(live) {
                    if let Some(r) = row(id).filter(|r| query.matches(r)) {
                        hits.push((query.sort_key(&r), id));
                    }
                }
            }
            if limit.is_none() && hits.len() > WIQL_CAP {
                return Err(cap_error());
            }
            hits.sort_by(|a, b| query.cmp_keys(&a.0, &b.0).then(a.1.cmp(&b.1)));
            Ok(hits
                .into_iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|(_, id)| id)
                .collect())
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expand {
    None,
    Relations,
    Fields,
    Links,
    All,
}

fn expand_param(q: &[(String, String)]) -> Result<Expand> {
    Ok(
        match param(q, "$expand").map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => Expand::None,
            Some("relations") => Expand::Relations,
            Some("fields") => Expand::Fields,
            Some("links") => Expand::Links,
            Some("all") => Expand::All,
            Some(other) => {
                return Err(AdoError::bad_request(
                    "ArgumentException",
                    format!(
                        "The value '{other}' is not valid for $expand. Valid values: None, Relations, Fields, Links, All."
                    ),
                ));
            }
        },
    )
}

fn missing_item(id: u64) -> AdoError {
    AdoError::not_found(
        "WorkItemUnauthorizedAccessException",
        format!(
            "TF401232: Work item {id} does not exist, or you do not have permissions to read it."
        ),
    )
}

/// Renders one live work item, or `None` when it does not exist or was removed.
fn work_item_json(
    sim: &AdoSim,
    ov: &Overlay,
    base: &str,
    id: u64,
    expand: Expand,
    fields: Option<&[String]>,
) -> Option<Value> {
    if ov.removed_items.contains(&id) {
        return None;
    }
    let core = sim.org.work_item_core(id)?;
    let over = ov.item_overrides.get(&id);
    let mut f = sim.org.work_item_fields(base, &core);
    if let Some(o) = over {
        f.extend(o.fields.clone());
    }
    if let Some(wanted) = fields {
        let mut picked = Map::new();
        for w in wanted {
            if w.eq_ignore_ascii_case("System.Id") {
                picked.insert("System.Id".into(), json!(id));
            } else if let Some((k, v)) = f.iter().find(|(k, _)| k.eq_ignore_ascii_case(w)) {
                picked.insert(k.clone(), v.clone());
            }
        }
        f = picked;
    }
    let rev = core.rev + over.map_or(0, |o| o.rev_bump);
    let mut v = json!({"id": id, "rev": rev, "fields": f});
    if matches!(expand, Expand::Relations | Expand::All) {
        v["relations"] = Value::Array(sim.org.work_item_relations(base, &core));
    }
    if matches!(expand, Expand::Links | Expand::All) {
        v["_links"] = sim.org.work_item_links(base, &core);
    }
    v["url"] = json!(format!("{base}/_apis/wit/workItems/{id}"));
    Some(v)
}

async fn work_items_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    project(&sim, &key)?;
    work_items(&sim, &headers, &q)
}

async fn work_items_org(
    State(sim): Sim,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Json<Value>> {
    work_items(&sim, &headers, &q)
}

fn work_items(sim: &AdoSim, headers: &HeaderMap, q: &[(String, String)]) -> Result<Json<Value>> {
    let raw = param(q, "ids").unwrap_or("").trim();
    if raw.is_empty() {
        return Err(AdoError::bad_request(
            "ArgumentNullException",
            "Value cannot be null.\r\nParameter name: ids",
        ));
    }
    let ids = raw
        .split(',')
        .map(|s| s.trim().parse::<u64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            AdoError::bad_request(
                "ArgumentException",
                format!("The value '{raw}' is not valid for parameter ids."),
            )
        })?;
    if ids.len() > MAX_BATCH_IDS {
        return Err(AdoError::bad_request(
            "VssServiceException",
            format!(
                "VS403474: You requested {} work items which exceeds the limit of {MAX_BATCH_IDS}",
                ids.len()
            ),
        ));
    }
    let expand = expand_param(q)?;
    let fields: Option<Vec<String>> = param(q, "fields")
        .filter(|f| !f.trim().is_empty())
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect());
    if fields.is_some() && expand != Expand::None && param(q, "$expand").is_some() {
        return Err(AdoError::bad_request(
            "ConflictingParametersException",
            "The expand parameter can not be used with the fields parameter.",
        ));
    }
    let omit = param(q, "errorPolicy").is_some_and(|p| p.eq_ignore_ascii_case("omit"));
    let base = base(sim, headers);
    let ov = sim.read_overlay();
    let mut value = Vec::with_capacity(ids.len());
    for id in ids {
        match work_item_json(sim, &ov, &base, id, expand, fields.as_deref()) {
            Some(v) => value.push(v),
            None if omit => value.push(Value::Null),
            None => return Err(missing_item(id)),
        }
    }
    Ok(Json(list_body(value)))
}

async fn work_item_project(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    project(&sim, &key)?;
    work_item(&sim, &headers, &id, &q)
}

async fn work_item_org(
    State(sim): Sim,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    work_item(&sim, &headers, &id, &q)
}

fn work_item(
    sim: &AdoSim,
    headers: &HeaderMap,
    id: &str,
    q: &[(String, String)],
) -> Result<Json<Value>> {
    let id: u64 = id.parse().map_err(|_| {
        AdoError::bad_request(
            "ArgumentException",
            format!("The value '{id}' is not a valid work item id."),
        )
    })?;
    let expand = expand_param(q)?;
    let ov = sim.read_overlay();
    work_item_json(sim, &ov, &base(sim, headers), id, expand, None)
        .map(Json)
        .ok_or_else(|| missing_item(id))
}

// ---------------------------------------------------------------- control endpoints

/// `POST /_sim/faults`: a [`Fault`], or the older `{path_contains, status, times}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum FaultBody {
    Fault(Fault<FaultAction>),
    Status {
        path_contains: String,
        status: u16,
        times: Option<u32>,
    },
}

pub(crate) fn control_router(sim: &Arc<AdoSim>) -> Router {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/work-items/{id}/delete", post(delete_work_item))
        .route(
            "/_sim/work-items/{id}",
            axum::routing::patch(patch_work_item),
        )
        .route("/_sim/repositories/{id}/delete", post(delete_repository))
        .merge(super::hooks::control_routes())
        .merge(super::runs::control_routes())
        .merge(super::entra::control_routes())
        .with_state(sim.clone())
}

async fn stats(State(sim): Sim) -> Json<Value> {
    Json(json!({
        "total": sim.total_requests(),
        "requests": sim.request_counts(),
        "without_api_version": sim.requests_without_api_version(),
    }))
}

async fn add_fault(State(sim): Sim, Json(f): Json<FaultBody>) -> StatusCode {
    match f {
        FaultBody::Fault(fault) => sim.inject(fault),
        FaultBody::Status {
            path_contains,
            status,
            times,
        } => sim.fail_requests(&path_contains, status, times),
    }
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): Sim) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

fn done(ok: bool) -> StatusCode {
    if ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn delete_work_item(State(sim): Sim, Path(id): Path<u64>) -> StatusCode {
    done(sim.remove_work_item(id))
}

async fn delete_repository(State(sim): Sim, Path(id): Path<String>) -> StatusCode {
    done(sim.remove_repository(&id))
}

/// Accepts either the fields map itself or `{"fields": {…}}`.
async fn patch_work_item(
    State(sim): Sim,
    Path(id): Path<u64>,
    Json(mut body): Json<Map<String, Value>>,
) -> StatusCode {
    if body.len() == 1
        && let Some(Value::Object(inner)) = body.get("fields")
    {
        body = inner.clone();
    }
    done(sim.update_work_item(id, body))
}
