//! Port's self-service action runs, both ways an integration can execute them:
//!
//! - the pull model (an integration action): the integration claims the pending runs of its
//!   installation (`claim-pending`, which hides them for a visibility timeout as a queue would),
//!   acknowledges each (`ack`; a second ack is Port's 409, so two workers never both run one), then
//!   reports progress with logs and `PATCH`es (status, label, links, external run id);
//! - the push model (a webhook action): the simulator plays Port invoking the webhook, signed as
//!   Port signs it ([`sign_webhook`]), and the receiver reports back through the same `PATCH` and
//!   logs.
//!
//! Runs live in memory only: they are test fixtures, created in process
//! ([`CatalogSim::create_action_run`]) or over `/_sim/catalog/actions/runs`, where Port creates them
//! when a user presses the action's button.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::handlers::{ApiError, ApiResult, ok, parse_json};
use super::{CatalogSim, lock};

type Sim = State<Arc<CatalogSim>>;

/// What `claim-pending` hands out when the request does not say: Port's defaults.
const DEFAULT_CLAIM_LIMIT: usize = 10;
const MAX_CLAIM_LIMIT: usize = 100;
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// How many runs the listing answers when the request does not say.
const DEFAULT_LIST_LIMIT: usize = 100;

const IN_PROGRESS: &str = "IN_PROGRESS";
/// The statuses a run can end with (through a `PATCH` or a log's `terminationStatus`).
const TERMINAL: &[&str] = &["SUCCESS", "FAILURE"];

/// A run to create, as a user pressing an action's button would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewActionRun {
    /// The action's identifier.
    pub action: String,
    /// `Some`: an integration action of this installation, which claims it (pull model). `None`: a
    /// webhook action, which the simulator invokes ([`CatalogSim::invoke_action_webhook`]).
    #[serde(default)]
    pub installation_id: Option<String>,
    /// What the integration is asked to do, e.g. `trigger_pipeline`.
    pub integration_action_type: String,
    /// The user's inputs: a JSON object.
    #[serde(default = "empty_object")]
    pub properties: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// One log line of a run; a `terminationStatus` ended the run.
#[derive(Clone, Debug)]
struct RunLog {
    message: String,
    termination_status: Option<String>,
    status_label: Option<String>,
    created_at: DateTime<Utc>,
}

impl RunLog {
    fn to_json(&self, run_id: &str) -> Value {
        json!({
            "runId": run_id,
            "message": self.message,
            "terminationStatus": self.termination_status,
            "statusLabel": self.status_label,
            "createdAt": rfc3339(self.created_at),
        })
    }
}

#[derive(Clone, Debug)]
struct ActionRun {
    id: String,
    action: String,
    installation_id: Option<String>,
    integration_action_type: String,
    properties: Value,
    status: String,
    status_label: Option<String>,
    link: Vec<String>,
    external_run_id: Option<String>,
    summary: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    acked: bool,
    /// Claimed and not yet back in the queue: `claim-pending` skips the run until then.
    invisible_until: Option<Instant>,
    logs: Vec<RunLog>,
    /// Every status a client asked for (PATCH `status`, log `terminationStatus`), in order, repeats
    /// included: what tests check to see a result reported once.
    status_changes: Vec<String>,
}

impl ActionRun {
    /// The run as Port's API shows it.
    fn to_json(&self) -> Value {
        let payload = match &self.installation_id {
            Some(installation) => json!({
                "type": "INTEGRATION_ACTION",
                "installationId": installation,
                "integrationActionType": self.integration_action_type,
                "integrationActionExecutionProperties": self.properties,
            }),
            None => json!({"type": "WEBHOOK"}),
        };
        json!({
            "id": self.id,
            "status": self.status,
            "statusLabel": self.status_label,
            "link": self.link,
            "externalRunId": self.external_run_id,
            "summary": self.summary,
            "action": {"identifier": self.action},
            "properties": self.properties,
            "payload": payload,
            "source": "UI",
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
            "endedAt": self.ended_at.map(rfc3339),
        })
    }

    /// The run with its logs, for tests and the control route: `logs` holds the messages, `runLogs`
    /// the whole entries.
    fn to_json_with_logs(&self) -> Value {
        let mut run = self.to_json();
        run["logs"] = self.logs.iter().map(|l| json!(l.message)).collect();
        run["runLogs"] = self.logs.iter().map(|l| l.to_json(&self.id)).collect();
        run
    }

    fn claimable_by(&self, installation: &str, now: Instant) -> bool {
        self.installation_id.as_deref() == Some(installation)
            && self.status == IN_PROGRESS
            && !self.acked
            && self.invisible_until.is_none_or(|t| t <= now)
    }

    /// Applies a requested status: recorded whatever it is; a terminal one ends the run.
    fn set_status(&mut self, status: &str, now: DateTime<Utc>) {
        self.status_changes.push(status.to_owned());
        self.status = status.to_owned();
        if TERMINAL.contains(&status) {
            self.ended_at = Some(now);
        }
    }
}

/// The action runs, in creation order.
#[derive(Debug, Default)]
pub(super) struct ActionRuns(Mutex<Vec<ActionRun>>);

impl ActionRuns {
    /// Runs `f` on the run with this id; `None` when there is none.
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut ActionRun) -> R) -> Option<R> {
        lock(&self.0).iter_mut().find(|r| r.id == id).map(f)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Port's run ids: `r_` and 16 lowercase alphanumerics.
fn run_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("r_{}", &hex[..16])
}

/// Port's webhook signature: `v1,` and the base64 of HMAC-SHA256 over `{timestamp}.{body}` keyed with
/// the webhook's secret, as the receiver recomputes it from the `x-port-timestamp` header and the raw
/// body.
pub fn sign_webhook(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

impl CatalogSim {
    /// Creates a run, `IN_PROGRESS` as Port creates it when a user executes the action; answers its
    /// id.
    pub fn create_action_run(&self, new: NewActionRun) -> String {
        let now = Utc::now();
        let id = run_id();
        lock(&self.actions.0).push(ActionRun {
            id: id.clone(),
            action: new.action,
            installation_id: new.installation_id,
            integration_action_type: new.integration_action_type,
            properties: new.properties,
            status: IN_PROGRESS.into(),
            status_label: None,
            link: Vec::new(),
            external_run_id: None,
            summary: None,
            created_at: now,
            updated_at: now,
            ended_at: None,
            acked: false,
            invisible_until: None,
            logs: Vec::new(),
            status_changes: Vec::new(),
        });
        id
    }

    /// The run as the API shows it, plus `logs` (the messages, in order) and `runLogs` (the whole
    /// entries).
    pub fn action_run(&self, id: &str) -> Option<Value> {
        self.actions.with(id, |r| r.to_json_with_logs())
    }

    /// Every run as [`CatalogSim::action_run`] shows it, oldest first.
    pub fn action_runs(&self) -> Vec<Value> {
        lock(&self.actions.0)
            .iter()
            .map(ActionRun::to_json_with_logs)
            .collect()
    }

    /// The statuses clients asked this run to take (PATCH `status`, log `terminationStatus`), in
    /// order and repeats included; empty for an unknown run.
    pub fn action_run_status_changes(&self, id: &str) -> Vec<String> {
        self.actions
            .with(id, |r| r.status_changes.clone())
            .unwrap_or_default()
    }

    /// The body Port posts to a webhook action's URL for this run: the inputs (as `inputs` and
    /// `properties`), the run id (as `run.id` and `context.runId`) and, so one receiver can serve
    /// several actions, the integration action type. `None` for an unknown run.
    pub fn webhook_invocation(&self, run_id: &str) -> Option<Value> {
        self.actions.with(run_id, |r| {
            json!({
                "action": {"identifier": r.action},
                "run": {"id": r.id},
                "context": {"runId": r.id},
                "inputs": r.properties,
                "properties": r.properties,
                "payload": {
                    "integrationActionType": r.integration_action_type,
                    "integrationActionExecutionProperties": r.properties,
                },
                "trigger": {"by": {"userId": "sim"}, "at": rfc3339(r.created_at)},
            })
        })
    }

    /// Plays Port invoking a webhook action: POSTs [`CatalogSim::webhook_invocation`] to `url` with
    /// `x-port-timestamp` (Unix seconds, now) and `x-port-signature` ([`sign_webhook`] of the exact
    /// bytes sent). Answers the receiver's status and body; fails for an unknown run or when the
    /// request gets no answer.
    pub async fn invoke_action_webhook(
        &self,
        url: &str,
        secret: &str,
        run_id: &str,
    ) -> anyhow::Result<(u16, String)> {
        let body = self
            .webhook_invocation(run_id)
            .ok_or_else(|| anyhow::anyhow!("no action run {run_id:?}"))?;
        let body = serde_json::to_vec(&body)?;
        let timestamp = Utc::now().timestamp().to_string();
        let signature = sign_webhook(secret, &timestamp, &body);
        let resp = reqwest::Client::new()
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-port-timestamp", &timestamp)
            .header("x-port-signature", signature)
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }
}

/// The action-run routes under `/v1/actions/runs`. `claim-pending` and `ack` are static segments,
/// which axum prefers to the `{id}` beside them.
pub(super) fn routes() -> Router<Arc<CatalogSim>> {
    Router::new()
        .route("/v1/actions/runs", get(list_runs))
        .route("/v1/actions/runs/claim-pending", post(claim_pending))
        .route("/v1/actions/runs/ack", patch(ack))
        .route("/v1/actions/runs/{id}", get(get_run).patch(patch_run))
        .route("/v1/actions/runs/{id}/logs", post(add_log))
}

fn no_run(id: &str) -> ApiError {
    ApiError::not_found(format!("action run {id:?}"))
}

async fn claim_pending(State(sim): Sim, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Claim {
        installation_id: Option<String>,
        limit: Option<usize>,
        visibility_timeout_ms: Option<u64>,
    }
    let claim: Claim = parse_json(&body)?;
    let installation = claim
        .installation_id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::invalid("installationId is required"))?;
    let limit = claim
        .limit
        .unwrap_or(DEFAULT_CLAIM_LIMIT)
        .min(MAX_CLAIM_LIMIT);
    let visibility = claim
        .visibility_timeout_ms
        .map_or(DEFAULT_VISIBILITY, Duration::from_millis);
    let now = Instant::now();
    let mut runs = lock(&sim.actions.0);
    // Oldest first, as a queue hands them out.
    let claimed: Vec<Value> = runs
        .iter_mut()
        .filter(|r| r.claimable_by(&installation, now))
        .take(limit)
        .map(|r| {
            r.invisible_until = Some(now + visibility);
            r.to_json()
        })
        .collect();
    ok(json!({"ok": true, "runs": claimed}))
}

async fn ack(State(sim): Sim, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ack {
        run_id: Option<String>,
    }
    let id = parse_json::<Ack>(&body)?
        .run_id
        .ok_or_else(|| ApiError::invalid("runId is required"))?;
    let first = sim
        .actions
        .with(&id, |r| !std::mem::replace(&mut r.acked, true))
        .ok_or_else(|| no_run(&id))?;
    if !first {
        // What tells a second worker another one has the run (Ocean's RunAlreadyAcknowledgedError).
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_already_acknowledged",
            format!("action run {id:?} is already acknowledged"),
        ));
    }
    ok(json!({"ok": true}))
}

async fn get_run(State(sim): Sim, Path(id): Path<String>) -> ApiResult {
    let run = sim
        .actions
        .with(&id, |r| r.to_json())
        .ok_or_else(|| no_run(&id))?;
    ok(json!({"ok": true, "run": run}))
}

#[derive(Deserialize)]
struct ListParams {
    external_run_id: Option<String>,
    #[serde(default)]
    active: bool,
    limit: Option<usize>,
}

/// Newest first. Port wants `version=v2` here; it is accepted and not required.
async fn list_runs(State(sim): Sim, Query(params): Query<ListParams>) -> ApiResult {
    let runs: Vec<Value> = lock(&sim.actions.0)
        .iter()
        .rev()
        .filter(|r| {
            params
                .external_run_id
                .as_deref()
                .is_none_or(|x| r.external_run_id.as_deref() == Some(x))
        })
        .filter(|r| !params.active || r.status == IN_PROGRESS)
        .take(params.limit.unwrap_or(DEFAULT_LIST_LIMIT))
        .map(ActionRun::to_json)
        .collect();
    ok(json!({"ok": true, "runs": runs}))
}

/// A field a `PATCH` may set or clear: absent (`None`), `null` (`Some(None)`) or a string.
fn text_field(body: &Map<String, Value>, key: &str) -> Result<Option<Option<String>>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(ApiError::invalid(format!(
            "{key} must be a string, not {other}"
        ))),
    }
}

/// `link` as Port takes it: one URL or an array of them; stored as an array.
fn link_field(body: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let invalid = || ApiError::invalid("link must be a string or an array of strings");
    match body.get("link") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

async fn patch_run(State(sim): Sim, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body: Map<String, Value> = parse_json(&body)?;
    // Checked whole before anything changes: a refused PATCH leaves the run as it was.
    let status = match body.get("status") {
        None => None,
        Some(Value::String(s)) if s == IN_PROGRESS || TERMINAL.contains(&s.as_str()) => {
            Some(s.clone())
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status must be IN_PROGRESS, SUCCESS or FAILURE, not {other}"
            )));
        }
    };
    let status_label = text_field(&body, "statusLabel")?;
    let external_run_id = text_field(&body, "externalRunId")?;
    let summary = text_field(&body, "summary")?;
    let link = link_field(&body)?;
    let run = sim
        .actions
        .with(&id, |r| {
            let now = Utc::now();
            if let Some(s) = &status {
                r.set_status(s, now);
            }
            if let Some(v) = status_label {
                r.status_label = v;
            }
            if let Some(v) = external_run_id {
                r.external_run_id = v;
            }
            if let Some(v) = summary {
                r.summary = v;
            }
            if let Some(v) = link {
                r.link = v;
            }
            r.updated_at = now;
            r.to_json()
        })
        .ok_or_else(|| no_run(&id))?;
    ok(json!({"ok": true, "run": run}))
}

async fn add_log(State(sim): Sim, Path(id): Path<String>, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct NewLog {
        message: Option<String>,
        termination_status: Option<String>,
        status_label: Option<String>,
    }
    let log: NewLog = parse_json(&body)?;
    let message = log
        .message
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("message is required"))?;
    if let Some(t) = &log.termination_status
        && !TERMINAL.contains(&t.as_str())
    {
        return Err(ApiError::invalid(format!(
            "terminationStatus must be SUCCESS or FAILURE, not {t:?}"
        )));
    }
    let entry = sim
        .actions
        .with(&id, |r| {
            let now = Utc::now();
            let entry = RunLog {
                message,
                termination_status: log.termination_status,
                status_label: log.status_label,
                created_at: now,
            };
            if let Some(t) = &entry.termination_status {
                r.set_status(t, now);
            }
            if let Some(label) = &entry.status_label {
                r.status_label = Some(label.clone());
            }
            r.updated_at = now;
            let shown = entry.to_json(&r.id);
            r.logs.push(entry);
            shown
        })
        .ok_or_else(|| no_run(&id))?;
    ok(json!({"ok": true, "runLog": entry}))
}
