//! Runs - Run Pipeline (`POST /{project}/_apis/pipelines/{pipelineId}/runs`): runs started by a client,
//! kept in the overlay with ids above every generated build, served by the Runs Get and List routes, and
//! announced with `ms.vss-pipelines.run-state-changed-event` when they start and when they complete.
//!
//! Every simulated pipeline declares the same two template parameters:
//! - `environment`: a string (default `dev`, any value);
//! - `dryRun`: a boolean (default `false`; `true`, `false` or their strings).
//!
//! Any other `templateParameters` key is refused with ADO's "Unexpected parameter 'x'".
//!
//! A started run is `inProgress`; after [`super::AdoSimOptions::pipeline_run_duration`] it completes with
//! [`super::AdoSimOptions::pipeline_run_result`], or whenever a test calls [`AdoSim::complete_run`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::AdoSim;
use super::builds::{pipeline_index, sha};
use super::faults::AdoError;
use super::org::{Org, fmt_time};
use super::routes::{base, project};

type Sim = State<Arc<AdoSim>>;
type Result<T> = std::result::Result<T, AdoError>;

/// The template parameters every simulated pipeline declares (see the module documentation).
pub const PIPELINE_TEMPLATE_PARAMETERS: &[&str] = &["environment", "dryRun"];

/// The results a run can complete with.
pub const RUN_RESULTS: &[&str] = &["succeeded", "failed", "canceled"];

const EVENT: &str = "ms.vss-pipelines.run-state-changed-event";

/// A run a client started.
pub(crate) struct StartedRun {
    pub id: u64,
    pub project: usize,
    /// Pipeline index within the project.
    pub k: usize,
    pub pipeline_id: u64,
    pub name: String,
    /// `resources` as the run answers it (the self repository's ref and commit).
    pub resources: Value,
    /// As received, values as strings (the API binds them to a string dictionary).
    pub template_parameters: Map<String, Value>,
    /// `{name: {value, isSecret}}` as received, normalised.
    pub variables: Map<String, Value>,
    pub created: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub result: Option<&'static str>,
    /// What [`AdoSim::started_runs`] reports.
    pub request: Value,
}

impl StartedRun {
    /// The Runs API's view; `full` adds what only the single GET (and the create answer) carry.
    fn json(&self, org: &Org, base: &str, full: bool) -> Value {
        let p = &org.projects[self.project];
        let pipeline = org.pipeline_ref(base, p, self.k);
        let url = format!(
            "{base}/{}/_apis/pipelines/{}/runs/{}",
            p.id, self.pipeline_id, self.id
        );
        let mut v = json!({
            "_links": {
                "self": {"href": url},
                "web": {"href": format!("{base}/{}/_build/results?buildId={}", p.id, self.id)},
                "pipeline.web": {"href": format!("{base}/{}/_build/definition?definitionId={}", p.id, self.pipeline_id)},
                "pipeline": {"href": pipeline["url"]},
            },
            "pipeline": pipeline,
            "state": if self.result.is_some() { "completed" } else { "inProgress" },
            "createdDate": fmt_time(self.created),
            "url": url,
            "id": self.id,
            "name": self.name,
        });
        if let (Some(f), Some(r)) = (self.finished, self.result) {
            v["finishedDate"] = json!(fmt_time(f));
            v["result"] = json!(r);
        }
        if full {
            v["resources"] = self.resources.clone();
            v["templateParameters"] = Value::Object(self.template_parameters.clone());
            // Secret values are never returned.
            v["variables"] = Value::Object(
                self.variables
                    .iter()
                    .map(|(k, var)| {
                        let shown = if var["isSecret"] == json!(true) {
                            json!({"isSecret": true})
                        } else {
                            json!({"value": var["value"]})
                        };
                        (k.clone(), shown)
                    })
                    .collect(),
            );
        }
        v
    }
}

impl Org {
    /// The first id a started run gets: above every generated build (= run) id of the org.
    fn first_started_run_id(&self) -> u64 {
        let pipelines = self
            .projects
            .iter()
            .map(|p| p.pipeline_first + p.pipelines as u64)
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        pipelines * self.cicd.builds_per_pipeline as u64 + 1
    }
}

// ---------------------------------------------------------------- public controls

impl AdoSim {
    /// Completes a started run now with `result` (`succeeded`, `failed` or `canceled`) and publishes
    /// `ms.vss-pipelines.run-state-changed-event`. `false` when the run is unknown, already completed,
    /// or the result is not one of those.
    pub fn complete_run(&self, run_id: u64, result: &str) -> bool {
        let Some(result) = RUN_RESULTS
            .iter()
            .copied()
            .find(|r| r.eq_ignore_ascii_case(result))
        else {
            return false;
        };
        let event = {
            let mut ov = self.write_overlay();
            let Some(run) = ov
                .started_runs
                .iter_mut()
                .find(|r| r.id == run_id && r.result.is_none())
            else {
                return false;
            };
            run.finished = Some(Utc::now());
            run.result = Some(result);
            self.run_event(run)
        };
        self.publish_run_event(event);
        true
    }

    /// Every run started through Runs - Run Pipeline, oldest first:
    /// `{"projectId", "pipelineId", "runId", "body"}` with the request body as received.
    pub fn started_runs(&self) -> Vec<Value> {
        self.read_overlay()
            .started_runs
            .iter()
            .map(|r| r.request.clone())
            .collect()
    }

    /// The event for a run's current state, when anybody listens: (project id, resource, text).
    fn run_event(&self, run: &StartedRun) -> Option<(String, Value, String)> {
        if !self.hooks.has_subscribers() {
            return None;
        }
        let base = self.hooks_base();
        let mut r = run.json(&self.org, &base, false);
        // The event's run links to itself and its web page only, as the sample delivery does.
        if let Some(links) = r["_links"].as_object_mut() {
            links.remove("pipeline.web");
            links.remove("pipeline");
        }
        let pipeline = r["pipeline"].clone();
        let text = match run.result {
            Some(result) => format!("Run {} {result}.", run.name),
            None => format!("Run {} started.", run.name),
        };
        let project = self.org.projects[run.project].id.clone();
        Some((project, json!({"run": r, "pipeline": pipeline}), text))
    }

    fn publish_run_event(&self, event: Option<(String, Value, String)>) {
        if let Some((project, resource, text)) = event {
            self.publish("pipelines", EVENT, &project, resource, &text);
        }
    }
}

// ---------------------------------------------------------------- Runs - Run Pipeline

/// What ADO answers when the body does not bind to `RunPipelineParameters`: the action sees no body.
fn unbound() -> AdoError {
    AdoError::bad_request(
        "ArgumentNullException",
        "Value cannot be null.\r\nParameter name: runParameters",
    )
}

fn invalid(message: String) -> AdoError {
    AdoError::bad_request("PipelineValidationException", message)
}

/// An optional member of the body: absent and `null` are the same.
fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|m| !m.is_null())
}

/// An optional object member; anything but an object does not bind.
fn object<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Map<String, Value>>> {
    member(v, key)
        .map(|m| m.as_object().ok_or_else(unbound))
        .transpose()
}

/// A template parameter's value as the API binds it (a string), or `None` for what does not bind.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks the body the way the service does: first that it binds, then the ref, then the parameters.
struct Parsed {
    ref_name: Option<String>,
    template_parameters: Map<String, Value>,
    variables: Map<String, Value>,
    preview: bool,
}

fn parse(body: &Value) -> Result<Parsed> {
    if !body.is_object() {
        return Err(unbound());
    }
    let preview = match member(body, "previewRun") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(unbound()),
    };
    if let Some(stages) = member(body, "stagesToSkip")
        && !stages
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(unbound());
    }
    if member(body, "yamlOverride").is_some_and(|y| !y.is_string()) {
        return Err(unbound());
    }
    let mut ref_name = None;
    if let Some(resources) = object(body, "resources")?
        && let Some(repos) = resources.get("repositories").filter(|r| !r.is_null())
    {
        let repos = repos.as_object().ok_or_else(unbound)?;
        for (name, repo) in repos {
            if !repo.is_object() {
                return Err(unbound());
            }
            let r = match member(repo, "refName") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(unbound()),
            };
            if name == "self" {
                ref_name = r;
            }
        }
    }
    let mut template_parameters = Map::new();
    for (k, v) in object(body, "templateParameters")?.into_iter().flatten() {
        template_parameters.insert(k.clone(), json!(scalar(v).ok_or_else(unbound)?));
    }
    let mut variables = Map::new();
    for (k, v) in object(body, "variables")?.into_iter().flatten() {
        // `Variable` is `{value, isSecret}`: a bare value does not bind.
        let value = v.get("value").ok_or_else(unbound)?;
        let value = if value.is_null() {
            Value::Null
        } else {
            json!(scalar(value).ok_or_else(unbound)?)
        };
        let secret = match member(v, "isSecret") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(unbound()),
        };
        variables.insert(k.clone(), json!({"value": value, "isSecret": secret}));
    }
    Ok(Parsed {
        ref_name,
        template_parameters,
        variables,
        preview,
    })
}

fn check_parameters(params: &Map<String, Value>) -> Result<()> {
    for (k, v) in params {
        if !PIPELINE_TEMPLATE_PARAMETERS.contains(&k.as_str()) {
            return Err(invalid(format!("Unexpected parameter '{k}'")));
        }
        let text = v.as_str().unwrap_or_default();
        if k == "dryRun" && !["true", "false"].contains(&text.to_ascii_lowercase().as_str()) {
            return Err(invalid(format!(
                "The '{k}' parameter value '{text}' is not a valid value."
            )));
        }
    }
    Ok(())
}

/// `POST /{project}/_apis/pipelines/{pipelineId}/runs`: starts a run (or, with `previewRun`, answers
/// the final YAML and starts nothing).
pub(crate) async fn run_pipeline(
    State(sim): Sim,
    headers: HeaderMap,
    Path((key, pid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>> {
    let p = project(&sim, &key)?;
    let k = pipeline_index(p, &pid)?;
    let received: Value = serde_json::from_slice(&body).map_err(|_| unbound())?;
    let parsed = parse(&received)?;

    // The self repository is the one the pipeline builds; the ref must name one of its branches or a tag.
    let repo = sim.org.build_repo(p, k);
    let ref_name = match (&parsed.ref_name, repo) {
        (None, Some(r)) => r.default_branch.unwrap_or("refs/heads/main").to_owned(),
        (Some(name), Some(r))
            if name.starts_with("refs/tags/") && name.len() > "refs/tags/".len()
                || sim.org.branches(r).iter().any(|b| b == name) =>
        {
            name.clone()
        }
        (None, None) => String::new(),
        (Some(name), _) => {
            return Err(invalid(format!(
                "Unable to resolve the reference '{name}' to a specific version. Verify the reference exists in the source repository."
            )));
        }
    };
    check_parameters(&parsed.template_parameters)?;

    if parsed.preview {
        let params: Vec<String> = PIPELINE_TEMPLATE_PARAMETERS
            .iter()
            .map(|name| {
                let value = parsed
                    .template_parameters
                    .get(*name)
                    .and_then(Value::as_str)
                    .unwrap_or(if *name == "dryRun" { "false" } else { "dev" });
                format!("# {name}: {value}")
            })
            .collect();
        let yaml = member(&received, "yamlOverride")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "{}\nstages:\n- stage: Build\n  jobs:\n  - job: Build\n    steps:\n    - script: echo build\n",
                    params.join("\n")
                )
            });
        return Ok(Json(json!({"finalYaml": yaml})));
    }

    let base = base(&sim, &headers);
    let pi = sim
        .org
        .projects
        .iter()
        .position(|x| x.id == p.id)
        .unwrap_or_default();
    let pipeline_id = p.pipeline_first + k as u64;
    let now = Utc::now();
    let (answer, event, id) = {
        let mut ov = sim.write_overlay();
        let id = sim.org.first_started_run_id() + ov.started_runs.len() as u64;
        let today = now.format("%Y%m%d").to_string();
        let same_day = ov
            .started_runs
            .iter()
            .filter(|r| r.pipeline_id == pipeline_id && r.name.starts_with(&today))
            .count();
        let resources = match repo {
            Some(r) => json!({"repositories": {"self": {
                "repository": {"id": r.id, "type": "azureReposGit"},
                "refName": ref_name,
                "version": sha(sim.org.seed, id, 0),
            }}}),
            None => json!({"repositories": {}}),
        };
        let run = StartedRun {
            id,
            project: pi,
            k,
            pipeline_id,
            name: format!("{today}.{}", same_day + 1),
            resources,
            template_parameters: parsed.template_parameters,
            variables: parsed.variables,
            created: now,
            finished: None,
            result: None,
            request: json!({
                "projectId": p.id,
                "pipelineId": pipeline_id,
                "runId": id,
                "body": received,
            }),
        };
        let answer = run.json(&sim.org, &base, true);
        let event = sim.run_event(&run);
        ov.started_runs.push(run);
        (answer, event, id)
    };
    sim.publish_run_event(event);
    if let (Some(after), Ok(rt)) = (
        sim.opts.pipeline_run_duration,
        tokio::runtime::Handle::try_current(),
    ) {
        let weak = Arc::downgrade(&sim);
        let result = sim.opts.pipeline_run_result.clone();
        rt.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(sim) = weak.upgrade() {
                sim.complete_run(id, &result);
            }
        });
    }
    Ok(Json(answer))
}

/// Started runs of pipeline `k` of project `p`, newest first, as the Runs List shows them.
pub(crate) fn started_runs_of(sim: &AdoSim, base: &str, pi: usize, k: usize) -> Vec<Value> {
    sim.read_overlay()
        .started_runs
        .iter()
        .rev()
        .filter(|r| r.project == pi && r.k == k)
        .map(|r| r.json(&sim.org, base, false))
        .collect()
}

/// One started run of pipeline `k` of project `p`, as the Runs Get shows it.
pub(crate) fn started_run(sim: &AdoSim, base: &str, pi: usize, k: usize, id: u64) -> Option<Value> {
    sim.read_overlay()
        .started_runs
        .iter()
        .find(|r| r.id == id && r.project == pi && r.k == k)
        .map(|r| r.json(&sim.org, base, true))
}

// ---------------------------------------------------------------- control endpoints

/// `GET /_sim/pipelines/runs` (the started runs) and `POST /_sim/pipelines/runs/{runId}/complete`.
pub(crate) fn control_routes() -> Router<Arc<AdoSim>> {
    Router::new()
        .route("/_sim/pipelines/runs", get(started_json))
        .route("/_sim/pipelines/runs/{runId}/complete", post(complete_json))
}

async fn started_json(State(sim): Sim) -> Json<Value> {
    let value = sim.started_runs();
    Json(json!({"count": value.len(), "value": value}))
}

/// Body `{"result": "failed"}` (optional: the configured result when absent). 204; 404 for an unknown
/// or already completed run; 400 for a result that is not `succeeded`, `failed` or `canceled`.
async fn complete_json(State(sim): Sim, Path(id): Path<u64>, body: Bytes) -> StatusCode {
    let result = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("result").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| sim.opts.pipeline_run_result.clone());
    if !RUN_RESULTS.iter().any(|r| r.eq_ignore_ascii_case(&result)) {
        return StatusCode::BAD_REQUEST;
    }
    if sim.complete_run(id, &result) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
