//! Classic release management (the vsrm host in the cloud, the collection on Server): release
//! definitions, releases and their deployments, derived on demand. Ids are per project, as in ADO.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Project, fmt_time, h};
use super::routes::{base, int_param, list_body, param, project, with_continuation};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_RELEASE: u64 = 311;
const PAGE: usize = 50;
const ENVS: &[&str] = &["Dev", "Prod"];

/// One generated release.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Release {
    pub id: u64,
    pub definition: u64,
    pub status: &'static str,
    pub created: DateTime<Utc>,
    pub hash: u64,
}

impl Release {
    fn tags(&self) -> Vec<&'static str> {
        let mut t = Vec::new();
        if self.id.is_multiple_of(3) {
            t.push("hotfix");
        }
        if self.id.is_multiple_of(2) {
            t.push("nightly");
        }
        t
    }
    fn branch(&self) -> &'static str {
        if self.id.is_multiple_of(4) {
            "refs/heads/release/1.0"
        } else {
            "refs/heads/main"
        }
    }
}

/// One deployment: a release to one of its environments.
struct Deployment {
    id: u64,
    release: Release,
    env: usize,
    status: &'static str,
}

impl Org {
    fn project_index(&self, p: &Project) -> usize {
        self.projects
            .iter()
            .position(|q| q.id == p.id)
            .unwrap_or_default()
    }

    pub(crate) fn releases(&self, p: &Project) -> Vec<Release> {
        let pi = self.project_index(p) as u64;
        let n = self.cicd.releases_per_project as u64;
        let defs = self.cicd.release_definitions_per_project.max(1) as u64;
        if self.cicd.release_definitions_per_project == 0 {
            return vec![];
        }
        (1..=n)
            .rev()
            .map(|id| {
                let hr = h(self.seed, TAG_RELEASE, pi, id);
                Release {
                    id,
                    definition: (id - 1) % defs + 1,
                    status: match id % 7 {
                        0 => "abandoned",
                        5 => "draft",
                        _ => "active",
                    },
                    created: self.anchor
                        - Duration::days((n - id) as i64)
                        - Duration::minutes((hr % 600) as i64),
                    hash: hr,
                }
            })
            .collect()
    }

    fn def_env_id(def: u64, e: usize) -> u64 {
        def * 10 + e as u64 + 1
    }

    fn deployments(&self, p: &Project) -> Vec<Deployment> {
        let mut out: Vec<Deployment> = self
            .releases(p)
            .into_iter()
            .filter(|r| r.status != "draft")
            .flat_map(|r| {
                (0..ENVS.len()).map(move |e| Deployment {
                    id: r.id * 10 + e as u64 + 1,
                    release: r,
                    env: e,
                    status: match (r.hash >> (e * 3)) % 6 {
                        0 => "failed",
                        1 if e == 1 => "notDeployed",
                        _ => "succeeded",
                    },
                })
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.id));
        out
    }

    fn definition_ref(&self, base: &str, p: &Project, def: u64) -> Value {
        let vsrm = base;
        json!({
            "id": def,
            "name": format!("{}-cd-{def}", p.name.to_lowercase().replace(' ', "-")),
            "path": "\\",
            "projectReference": null,
            "url": format!("{vsrm}/{}/_apis/Release/definitions/{def}", p.id),
            "_links": {
                "self": {"href": format!("{vsrm}/{}/_apis/Release/definitions/{def}", p.id)},
                "web": {"href": format!("{base}/{}/_release?definitionId={def}", p.id)},
            },
        })
    }

    pub(crate) fn release_definition_json(
        &self,
        base: &str,
        p: &Project,
        def: u64,
        expand: &[String],
    ) -> Value {
        let hd = h(
            self.seed,
            TAG_RELEASE,
            self.project_index(p) as u64,
            10_000 + def,
        );
        let created = self.anchor - Duration::days(200 + (hd % 100) as i64);
        let mut v = self.definition_ref(base, p, def);
        let extra = json!({
            "source": "userInterface",
            "revision": 1 + hd % 12,
            "description": format!("Deploys {} to Dev and Prod.", p.name),
            "createdBy": self.identity_ref(base, hd >> 3),
            "createdOn": fmt_time(created),
            "modifiedBy": self.identity_ref(base, hd >> 5),
            "modifiedOn": fmt_time(created + Duration::days((hd % 90) as i64)),
            "isDeleted": false,
            "variableGroups": [],
            "releaseNameFormat": "Release-$(rev:r)",
            "properties": {"DefinitionCreationSource": {"$type": "System.String", "$value": "ReleaseNew"}},
            "tags": if def.is_multiple_of(2) { json!(["backend"]) } else { json!([]) },
        });
        for (k, val) in extra.as_object().into_iter().flatten() {
            v[k] = val.clone();
        }
        if expand.iter().any(|e| e == "environments") {
            v["environments"] = ENVS
                .iter()
                .enumerate()
                .map(|(e, name)| {
                    json!({"id": Self::def_env_id(def, e), "name": name, "rank": e + 1, "owner": self.identity_ref(base, hd >> 7), "conditions": [], "variables": {}})
                })
                .collect();
        }
        if expand.iter().any(|e| e == "lastrelease") {
            v["lastRelease"] = self
                .releases(p)
                .into_iter()
                .find(|r| r.definition == def)
                .map_or(
                    Value::Null,
                    |r| json!({"id": r.id, "name": format!("Release-{}", r.id)}),
                );
        }
        v
    }

    fn release_environment(&self, base: &str, p: &Project, r: &Release, e: usize) -> Value {
        let status = self
            .deployments_of(r)
            .into_iter()
            .find(|(env, _)| *env == e)
            .map_or("notStarted", |(_, s)| s);
        json!({
            "id": r.id * 10 + e as u64 + 1,
            "releaseId": r.id,
            "name": ENVS[e],
            "status": status,
            "rank": e + 1,
            "definitionEnvironmentId": Self::def_env_id(r.definition, e),
            "owner": self.identity_ref(base, r.hash >> 9),
            "release": {"id": r.id, "name": format!("Release-{}", r.id), "url": format!("{base}/{}/_apis/Release/releases/{}", p.id, r.id)},
        })
    }

    fn deployments_of(&self, r: &Release) -> Vec<(usize, &'static str)> {
        if r.status == "draft" {
            return vec![];
        }
        (0..ENVS.len())
            .map(|e| {
                (
                    e,
                    match (r.hash >> (e * 3)) % 6 {
                        0 => "failed",
                        1 if e == 1 => "notDeployed",
                        _ => "succeeded",
                    },
                )
            })
            .collect()
    }

    pub(crate) fn release_json(
        &self,
        base: &str,
        p: &Project,
        r: &Release,
        expand: &[String],
        full: bool,
    ) -> Value {
        let creator = self.identity_ref(base, r.hash >> 4);
        let mut v = json!({
            "id": r.id,
            "name": format!("Release-{}", r.id),
            "status": r.status,
            "createdOn": fmt_time(r.created),
            "modifiedOn": fmt_time(r.created + Duration::minutes(30)),
            "modifiedBy": creator,
            "createdBy": creator,
            "createdFor": creator,
            "variables": {},
            "variableGroups": [],
            "releaseDefinition": self.definition_ref(base, p, r.definition),
            "releaseDefinitionRevision": 1 + r.hash % 5,
            "description": if r.status == "abandoned" { "Superseded" } else { "" },
            "reason": if r.id.is_multiple_of(2) { "continuousIntegration" } else { "manual" },
            "releaseNameFormat": "Release-$(rev:r)",
            "keepForever": false,
            "definitionSnapshotRevision": 1,
            "logsContainerUrl": format!("{base}/{}/_apis/release/releases/{}/logs", p.id, r.id),
            "url": format!("{base}/{}/_apis/Release/releases/{}", p.id, r.id),
            "_links": {
                "self": {"href": format!("{base}/{}/_apis/Release/releases/{}", p.id, r.id)},
                "web": {"href": format!("{base}/{}/_release?releaseId={}&_a=release-summary", p.id, r.id)},
            },
            "tags": r.tags(),
            "triggeringArtifactAlias": "_build",
            "projectReference": {"id": p.id, "name": p.name},
            "properties": {},
        });
        if full || expand.iter().any(|e| e == "environments") {
            v["environments"] = (0..ENVS.len())
                .map(|e| self.release_environment(base, p, r, e))
                .collect();
        }
        if full || expand.iter().any(|e| e == "artifacts") {
            v["artifacts"] = json!([{
                "sourceId": format!("{}:{}", p.id, p.pipeline_first),
                "type": "Build",
                "alias": "_build",
                "definitionReference": {
                    "branch": {"id": r.branch(), "name": r.branch()},
                    "definition": {"id": p.pipeline_first.to_string(), "name": "ci"},
                    "project": {"id": p.id, "name": p.name},
                    "version": {"id": r.id.to_string(), "name": format!("{}.{}", r.created.format("%Y%m%d"), r.id)},
                },
                "isPrimary": true,
                "isRetained": false,
            }]);
        }
        v
    }

    fn deployment_json(&self, base: &str, p: &Project, d: &Deployment) -> Value {
        let r = &d.release;
        let who = self.identity_ref(base, r.hash >> 6);
        let queued = r.created + Duration::minutes(5 + d.env as i64 * 20);
        json!({
            "id": d.id,
            "release": {"id": r.id, "name": format!("Release-{}", r.id), "url": format!("{base}/{}/_apis/Release/releases/{}", p.id, r.id),
                "_links": {"web": {"href": format!("{base}/{}/_release?releaseId={}", p.id, r.id)}}},
            "releaseDefinition": self.definition_ref(base, p, r.definition),
            "releaseEnvironment": {"id": r.id * 10 + d.env as u64 + 1, "name": ENVS[d.env]},
            "projectReference": {"id": p.id, "name": p.name},
            "definitionEnvironmentId": Self::def_env_id(r.definition, d.env),
            "attempt": 1,
            "reason": if d.env == 0 { "automated" } else { "manual" },
            "deploymentStatus": d.status,
            "operationStatus": if d.status == "succeeded" { "Approved" } else { "Rejected" },
            "requestedBy": who,
            "requestedFor": who,
            "queuedOn": fmt_time(queued),
            "startedOn": fmt_time(queued + Duration::seconds(30)),
            "completedOn": fmt_time(queued + Duration::minutes(6)),
            "lastModifiedOn": fmt_time(queued + Duration::minutes(6)),
            "lastModifiedBy": who,
            "conditions": [],
            "preDeployApprovals": [],
            "postDeployApprovals": [],
            "_links": {},
        })
    }
}

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/{{project}}/_apis/release/releases"),
            get(list_releases),
        )
        .route(
            &format!("{o}/{{project}}/_apis/release/releases/{{releaseId}}"),
            get(get_release),
        )
        .route(
            &format!("{o}/{{project}}/_apis/release/definitions"),
            get(list_definitions),
        )
        .route(
            &format!("{o}/{{project}}/_apis/release/definitions/{{definitionId}}"),
            get(get_definition),
        )
        .route(
            &format!("{o}/{{project}}/_apis/release/deployments"),
            get(list_deployments),
        )
}

fn expand(q: &[(String, String)]) -> Vec<String> {
    param(q, "$expand")
        .map(|e| {
            e.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

/// Release lists page by id: the token is the id the next page starts at.
fn id_token(q: &[(String, String)]) -> Result<Option<u64>> {
    param(q, "continuationToken")
        .map(|t| {
            t.parse().map_err(|_| {
                AdoError::bad_request(
                    "InvalidContinuationTokenException",
                    format!("The continuation token '{t}' is not valid."),
                )
            })
        })
        .transpose()
}

fn time(q: &[(String, String)], key: &str) -> Result<Option<DateTime<Utc>>> {
    param(q, key)
        .map(|v| {
            super::wiql::parse_datetime(v)
                .map(|(t, _)| t)
                .ok_or_else(|| {
                    AdoError::bad_request(
                        "ArgumentException",
                        format!("The value '{v}' is not a valid date for {key}."),
                    )
                })
        })
        .transpose()
}

/// One page, ids descending, starting at the token's id.
fn page_by_id(
    items: Vec<(u64, Value)>,
    q: &[(String, String)],
    descending: bool,
) -> Result<Response> {
    let top = int_param(q, "$top")?.unwrap_or(PAGE).max(1);
    let from = id_token(q)?;
    let mut rest: Vec<(u64, Value)> = items
        .into_iter()
        .filter(|(id, _)| from.is_none_or(|f| if descending { *id <= f } else { *id >= f }))
        .collect();
    let next = rest.get(top).map(|(id, _)| id.to_string());
    rest.truncate(top);
    Ok(with_continuation(
        list_body(rest.into_iter().map(|(_, v)| v).collect()),
        next,
    ))
}

async fn list_releases(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let expand = expand(&q);
    let status = param(&q, "statusFilter").map(str::to_ascii_lowercase);
    if let Some(s) = &status
        && !["abandoned", "active", "draft", "undefined"].contains(&s.as_str())
    {
        return Err(AdoError::bad_request(
            "InvalidRequestException",
            format!("The status filter '{s}' is not valid."),
        ));
    }
    let tags: Vec<String> = param(&q, "tagFilter")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let branch = param(&q, "sourceBranchFilter").map(str::to_owned);
    let definition: Option<u64> = int_param(&q, "definitionId")?.map(|d| d as u64);
    let (min, max) = (time(&q, "minCreatedTime")?, time(&q, "maxCreatedTime")?);
    let items = sim
        .org
        .releases(p)
        .into_iter()
        .filter(|r| {
            status
                .as_deref()
                .is_none_or(|s| s == "undefined" || r.status == s)
        })
        .filter(|r| tags.iter().all(|t| r.tags().contains(&t.as_str())))
        .filter(|r| branch.as_deref().is_none_or(|b| r.branch() == b))
        .filter(|r| definition.is_none_or(|d| r.definition == d))
        .filter(|r| min.is_none_or(|m| r.created >= m) && max.is_none_or(|m| r.created < m))
        .map(|r| (r.id, sim.org.release_json(&base, p, &r, &expand, false)))
        .collect();
    page_by_id(items, &q, true)
}

async fn get_release(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let r = id
        .parse::<u64>()
        .ok()
        .and_then(|id| sim.org.releases(p).into_iter().find(|r| r.id == id))
        .ok_or_else(|| {
            AdoError::not_found(
                "ReleaseNotFoundException",
                format!("VS402856: Release with id {id} does not exist."),
            )
        })?;
    Ok(Json(sim.org.release_json(
        &base(&sim, &headers),
        p,
        &r,
        &[],
        true,
    )))
}

async fn list_definitions(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let expand = expand(&q);
    let tags: Vec<String> = param(&q, "tagFilter")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let items = (1..=sim.org.cicd.release_definitions_per_project as u64)
        .map(|d| (d, sim.org.release_definition_json(&base, p, d, &expand)))
        .filter(|(_, v)| {
            tags.iter().all(|t| {
                v["tags"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|x| x == t.as_str()))
            })
        })
        .collect();
    page_by_id(items, &q, false)
}

async fn get_definition(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let def = id
        .parse::<u64>()
        .ok()
        .filter(|d| (1..=sim.org.cicd.release_definitions_per_project as u64).contains(d))
        .ok_or_else(|| {
            AdoError::not_found(
                "ReleaseDefinitionNotFoundException",
                format!("VS402855: Release definition with id {id} does not exist."),
            )
        })?;
    Ok(Json(sim.org.release_definition_json(
        &base(&sim, &headers),
        p,
        def,
        &["environments".into()],
    )))
}

/// Deployments: newest first by default; filters by definition, definition environment and status.
async fn list_deployments(
    State(sim): Sim,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Params,
) -> Result<Response> {
    let p = project(&sim, &key)?;
    let base = base(&sim, &headers);
    let definition = int_param(&q, "definitionId")?.map(|d| d as u64);
    let def_env = int_param(&q, "definitionEnvironmentId")?.map(|d| d as u64);
    let status = param(&q, "deploymentStatus").map(str::to_ascii_lowercase);
    let ascending = param(&q, "queryOrder").is_some_and(|o| o.eq_ignore_ascii_case("ascending"));
    let mut items: Vec<(u64, Value)> = sim
        .org
        .deployments(p)
        .into_iter()
        .filter(|d| definition.is_none_or(|x| d.release.definition == x))
        .filter(|d| def_env.is_none_or(|x| Org::def_env_id(d.release.definition, d.env) == x))
        .filter(|d| {
            status
                .as_deref()
                .is_none_or(|s| s == "all" || s == d.status.to_ascii_lowercase())
        })
        .map(|d| (d.id, sim.org.deployment_json(&base, p, &d)))
        .collect();
    if ascending {
        items.reverse();
    }
    page_by_id(items, &q, !ascending)
}
