//! Service hooks in the simulator: the Subscriptions REST API (`/{org}/_apis/hooks/subscriptions`, every
//! publisher on the one host, as on Azure DevOps Server), and real-shaped event deliveries POSTed to the
//! subscribers when the org changes, with ADO's retry on 408/502/503/504 (shortened) and its probation and
//! disable rules.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::faults::AdoError;
use super::org::{fmt_time, guid};
use super::{AdoSim, Overlay};

type Sim = State<Arc<AdoSim>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_SUBSCRIPTION: u64 = 101;
const TAG_EVENT: u64 = 102;
const TAG_CONTAINER: u64 = 103;
const TAG_PUSH: u64 = 104;

/// What ADO shows instead of a secret consumer input.
pub const MASK: &str = "********";

/// The event types each publisher knows (from the service-hook event reference). Anything else is a 400.
const EVENTS: &[(&str, &[&str])] = &[
    (
        "tfs",
        &[
            "build.complete",
            "git.push",
            "git.pullrequest.created",
            "git.pullrequest.updated",
            "git.pullrequest.merged",
            "ms.vss-code.git-pullrequest-comment-event",
            "git.repo.created",
            "git.repo.deleted",
            "git.repo.renamed",
            "git.repo.statuschanged",
            "tfvc.checkin",
            "workitem.created",
            "workitem.updated",
            "workitem.deleted",
            "workitem.restored",
            "workitem.commented",
        ],
    ),
    (
        "pipelines",
        &[
            "ms.vss-pipelines.run-state-changed-event",
            "ms.vss-pipelines.stage-state-changed-event",
            "ms.vss-pipelines.job-state-changed-event",
            "ms.vss-pipelinechecks-events.approval-pending",
            "ms.vss-pipelinechecks-events.approval-completed",
            "ms.vss-pipelinechecks-events.check-updated-event",
        ],
    ),
    (
        "rm",
        &[
            "ms.vss-release.release-created-event",
            "ms.vss-release.release-abandoned-event",
            "ms.vss-release.deployment-approval-pending-event",
            "ms.vss-release.deployment-approval-completed-event",
            "ms.vss-release.deployment-started-event",
            "ms.vss-release.deployment-completed-event",
        ],
    ),
    (
        "advsec",
        &[
            "ms.vss-alerts.alert-created-event",
            "ms.vss-alerts.alert-state-changed-event",
            "ms.vss-alerts.alert-updated-event",
        ],
    ),
];

/// The resource version ADO picks when a subscription leaves it out ("latest released").
fn latest_version(publisher: &str) -> &'static str {
    match publisher {
        "pipelines" => "5.1-preview.1",
        "rm" => "3.0-preview.1",
        _ => "1.0",
    }
}

const STATUSES: &[&str] = &[
    "enabled",
    "onProbation",
    "disabledByUser",
    "disabledBySystem",
    "disabledByInactiveIdentity",
];

/// Delivery retries: ADO makes up to 8 on 408/502/503/504 over ~3 minutes; the sim makes 3 tries at
/// 100 ms × attempt so tests stay fast.
const MAX_TRIES: u32 = 3;
const RETRY_STEP: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct Subscription {
    id: String,
    publisher_id: String,
    event_type: String,
    resource_version: String,
    consumer_id: String,
    consumer_action_id: String,
    publisher_inputs: Map<String, Value>,
    /// As sent, secrets included; masked whenever rendered.
    consumer_inputs: Map<String, Value>,
    status: String,
    created: DateTime<Utc>,
    modified: DateTime<Utc>,
    notifications: u64,
}

/// One finished delivery of an event to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscription_id: String,
    pub event_type: String,
    /// The event's id (`id` in the envelope): the same for every subscription the event went to.
    pub event_id: String,
    pub notification_id: u64,
    /// The subscriber's last HTTP status; `None` when it could not be reached.
    pub status: Option<u16>,
    pub attempts: u32,
}

/// Subscriptions and the delivery log, shared with the delivery tasks.
pub(crate) struct Hooks {
    subs: Arc<Mutex<Vec<Subscription>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// Lets tests wait for deliveries without polling.
    delivered: Arc<tokio::sync::Notify>,
    http: reqwest::Client,
    base_url: RwLock<Option<String>>,
    unfiltered_lists: AtomicU64,
    seq: AtomicU64,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            subs: Arc::default(),
            deliveries: Arc::default(),
            delivered: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base_url: RwLock::new(None),
            unfiltered_lists: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hooks {
    pub(crate) fn has_subscribers(&self) -> bool {
        !lock(&self.subs).is_empty()
    }
}

// ---------------------------------------------------------------- public controls

impl AdoSim {
    /// The URL deliveries name in links and `resourceContainers` (no request carries a Host header then).
    /// [`crate::start`] sets it to the served address.
    pub fn set_public_base_url(&self, org_url: &str) {
        *self
            .hooks
            .base_url
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(org_url.trim_end_matches('/').to_owned());
    }

    /// Finished deliveries, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.hooks.deliveries).clone()
    }

    /// Waits until at least `n` deliveries have finished (or `timeout` passed) and returns them all.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.hooks.delivered.notified();
            let now = self.deliveries();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.deliveries();
            }
        }
    }

    /// How many subscription lists were asked for without a publisher or event-type filter: on a large
    /// org ADO answers those with 12+ MB after a minute, when it answers at all.
    pub fn unfiltered_subscription_lists(&self) -> u64 {
        self.hooks.unfiltered_lists.load(Ordering::Relaxed)
    }

    /// Sets a subscription's status, as ADO does after failed deliveries or a person does in the UI.
    pub fn set_subscription_status(&self, id: &str, status: &str) -> bool {
        let mut subs = lock(&self.hooks.subs);
        match subs.iter_mut().find(|s| s.id.eq_ignore_ascii_case(id)) {
            Some(s) => {
                s.status = status.to_owned();
                true
            }
            None => false,
        }
    }

    /// A push of one new commit to `branch` (`main` or `refs/heads/main`): publishes `git.push`.
    /// The simulated repository content does not change.
    pub fn push(&self, repo_id: &str, branch: &str) -> bool {
        let Some(repo) = self.org.repo_by_id(repo_id) else {
            return false;
        };
        if self.read_overlay().removed_repos.contains(&repo.id) {
            return false;
        }
        if !self.hooks.has_subscribers() {
            return true;
        }
        let base = self.hooks_base();
        let n = self.hooks.seq.fetch_add(1, Ordering::Relaxed);
        let commit = |k: u64| {
            guid(self.org.seed, TAG_PUSH, n, k)
                .replace('-', "")
                .chars()
                .chain("00000000".chars())
                .take(40)
                .collect::<String>()
        };
        let (old, new) = (commit(0), commit(1));
        let ref_name = if branch.starts_with("refs/") {
            branch.to_owned()
        } else {
            format!("refs/heads/{branch}")
        };
        let repo_json = self.org.repo_json(&base, repo);
        let pusher = self.org.identity_ref(&base, n);
        let push_id = 1000 + n;
        let project = &self.org.projects[repo.project];
        let resource = json!({
            "commits": [{
                "commitId": new,
                "author": {"name": pusher["displayName"], "email": pusher["uniqueName"], "date": fmt_time(Utc::now())},
                "committer": {"name": pusher["displayName"], "email": pusher["uniqueName"], "date": fmt_time(Utc::now())},
                "comment": "Simulated change",
                "url": format!("{base}/{}/_apis/git/repositories/{}/commits/{new}", project.id, repo.id),
            }],
            "refUpdates": [{"name": ref_name, "oldObjectId": old, "newObjectId": new}],
            "repository": repo_json,
            "pushedBy": pusher,
            "pushId": push_id,
            "date": fmt_time(Utc::now()),
            "url": format!("{base}/{}/_apis/git/repositories/{}/pushes/{push_id}", project.id, repo.id),
        });
        let text = format!(
            "{} pushed updates to {}:{}.",
            pusher["displayName"].as_str().unwrap_or_default(),
            repo.name,
            ref_name.trim_start_matches("refs/heads/")
        );
        self.publish("tfs", "git.push", &project.id, resource, &text);
        true
    }

    pub(crate) fn hooks_base(&self) -> String {
        self.hooks
            .base_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| format!("http://localhost/{}", self.org.name))
    }

    /// The full fields and rev of a live work item, for the event payloads; `None` when nobody listens.
    pub(crate) fn work_item_snapshot(&self, ov: &Overlay, id: u64) -> Option<WorkItemSnapshot> {
        if !self.hooks.has_subscribers() || ov.removed_items.contains(&id) {
            return None;
        }
        let core = self.org.work_item_core(id)?;
        let base = self.hooks_base();
        let over = ov.item_overrides.get(&id);
        let mut fields = self.org.work_item_fields(&base, &core);
        if let Some(o) = over {
            fields.extend(o.fields.clone());
        }
        let rev = core.rev + over.map_or(0, |o| o.rev_bump);
        fields.insert("System.Id".into(), json!(id));
        fields.insert("System.Rev".into(), json!(rev));
        Some(WorkItemSnapshot {
            id,
            rev,
            project_id: self.org.projects[core.project].id.clone(),
            fields,
        })
    }

    /// Publishes `workitem.updated`: field deltas (old and new values) plus the full new revision.
    pub(crate) fn work_item_updated(
        &self,
        before: Option<WorkItemSnapshot>,
        after: Option<WorkItemSnapshot>,
    ) {
        let (Some(before), Some(after)) = (before, after) else {
            return;
        };
        let base = self.hooks_base();
        let id = after.id;
        let mut deltas = Map::new();
        for (k, new) in &after.fields {
            match before.fields.get(k) {
                Some(old) if old == new => {}
                Some(old) => {
                    deltas.insert(k.clone(), json!({"oldValue": old, "newValue": new}));
                }
                None => {
                    deltas.insert(k.clone(), json!({"newValue": new}));
                }
            }
        }
        let by = after
            .fields
            .get("System.ChangedBy")
            .cloned()
            .unwrap_or(Value::Null);
        let title = after
            .fields
            .get("System.Title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let wtype = after
            .fields
            .get("System.WorkItemType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_url = format!("{base}/_apis/wit/workItems/{id}");
        let resource = json!({
            // The update number: update n produced revision n.
            "id": after.rev,
            "workItemId": id,
            "rev": after.rev,
            "revisedBy": by,
            "revisedDate": after.fields.get("System.ChangedDate").cloned().unwrap_or(Value::Null),
            "fields": deltas,
            "_links": {
                "self": {"href": format!("{item_url}/updates/{}", after.rev)},
                "workItemUpdates": {"href": format!("{item_url}/updates")},
                "parent": {"href": item_url},
            },
            "url": format!("{item_url}/updates/{}", after.rev),
            "revision": {
                "id": id,
                "rev": after.rev,
                "fields": after.fields,
                "url": format!("{item_url}/revisions/{}", after.rev),
            },
        });
        let text = format!("{wtype} #{id} ({title}) updated");
        self.publish(
            "tfs",
            "workitem.updated",
            &after.project_id,
            resource,
            &text,
        );
    }

    /// Publishes `workitem.deleted` with the item as it was; its URL points at the recycle bin.
    pub(crate) fn work_item_deleted(&self, before: Option<WorkItemSnapshot>) {
        let Some(before) = before else { return };
        let base = self.hooks_base();
        let id = before.id;
        let title = before
            .fields
            .get("System.Title")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let wtype = before
            .fields
            .get("System.WorkItemType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let resource = json!({
            "id": id,
            "rev": before.rev,
            "fields": before.fields,
            "url": format!("{base}/_apis/wit/recyclebin/{id}"),
        });
        let text = format!("{wtype} #{id} ({title}) deleted");
        self.publish(
            "tfs",
            "workitem.deleted",
            &before.project_id,
            resource,
            &text,
        );
    }

    /// Publishes `git.repo.deleted` for a repository that was just removed.
    pub(crate) fn repository_deleted(&self, repo_id: &str) {
        if !self.hooks.has_subscribers() {
            return;
        }
        let Some(repo) = self.org.repo_by_id(repo_id) else {
            return;
        };
        let base = self.hooks_base();
        let project = &self.org.projects[repo.project];
        let resource = json!({
            "projectId": project.id,
            "repositoryId": repo.id,
            "repositoryName": repo.name,
            "isHardDelete": false,
            "repository": self.org.repo_json(&base, repo),
            "initiatedBy": self.org.identity_ref(&base, 0),
            "utcTimestamp": fmt_time(Utc::now()),
        });
        let text = format!(
            "Repository {} was deleted from {}.",
            repo.name, project.name
        );
        self.publish("tfs", "git.repo.deleted", &project.id, resource, &text);
    }

    /// Sends one event to every enabled subscription that matches it. Delivery runs on spawned tasks:
    /// mutations never wait for subscribers. Outside a Tokio runtime nothing is delivered.
    pub(crate) fn publish(
        &self,
        publisher_id: &str,
        event_type: &str,
        project_id: &str,
        resource: Value,
        text: &str,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(event_type, "no runtime: event not delivered");
            return;
        };
        let base = self.hooks_base();
        let n = self.hooks.seq.fetch_add(1, Ordering::Relaxed);
        let event_id = guid(self.org.seed, TAG_EVENT, n, 0);
        let now = fmt_time(Utc::now());
        let container = |tag: u64| guid(self.org.seed, TAG_CONTAINER, tag, 0);
        let containers = json!({
            "collection": {"id": container(1), "baseUrl": format!("{base}/")},
            "account": {"id": container(2), "baseUrl": format!("{base}/")},
            "project": {"id": project_id, "baseUrl": format!("{base}/")},
        });
        let targets: Vec<(Subscription, u64)> = {
            let mut subs = lock(&self.hooks.subs);
            subs.iter_mut()
                .filter(|s| {
                    s.publisher_id.eq_ignore_ascii_case(publisher_id)
                        && s.event_type.eq_ignore_ascii_case(event_type)
                        && matches!(s.status.as_str(), "enabled" | "onProbation")
                        // Only the project filter is applied; the sim's events carry no other filter data.
                        && s.publisher_inputs
                            .get("projectId")
                            .and_then(Value::as_str)
                            .filter(|p| !p.is_empty())
                            .is_none_or(|p| p.eq_ignore_ascii_case(project_id))
                })
                .map(|s| {
                    s.notifications += 1;
                    (s.clone(), s.notifications)
                })
                .collect()
        };
        for (sub, notification_id) in targets {
            let input = |k: &str| {
                sub.consumer_inputs
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let message = json!({"text": text, "html": text, "markdown": text});
            let mut envelope = json!({
                "subscriptionId": sub.id,
                "notificationId": notification_id,
                "id": event_id,
                "eventType": event_type,
                "publisherId": publisher_id,
                "resourceVersion": sub.resource_version,
                "resourceContainers": containers,
                "createdDate": now,
            });
            if input("messagesToSend") != "none" {
                envelope["message"] = message.clone();
            }
            if input("detailedMessagesToSend") != "none" {
                envelope["detailedMessage"] = message;
            }
            match input("resourceDetailsToSend").as_str() {
                "none" => {}
                "minimal" => {
                    envelope["resource"] =
                        json!({"id": resource.get("id"), "url": resource.get("url")});
                }
                _ => envelope["resource"] = resource.clone(),
            }
            let headers: Vec<(String, String)> = input("httpHeaders")
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
            let user = input("basicAuthUsername");
            let password = input("basicAuthPassword");
            let job = DeliveryJob {
                http: self.hooks.http.clone(),
                url: input("url"),
                auth: (!user.is_empty() || !password.is_empty()).then_some((user, password)),
                headers,
                body: envelope,
                record: Delivery {
                    subscription_id: sub.id.clone(),
                    event_type: event_type.to_owned(),
                    event_id: event_id.clone(),
                    notification_id,
                    status: None,
                    attempts: 0,
                },
                subs: self.hooks.subs.clone(),
                log: self.hooks.deliveries.clone(),
                delivered: self.hooks.delivered.clone(),
            };
            rt.spawn(job.run());
        }
    }
}

/// What a work item looked like, for event payloads.
pub(crate) struct WorkItemSnapshot {
    id: u64,
    rev: u64,
    project_id: String,
    fields: Map<String, Value>,
}

struct DeliveryJob {
    http: reqwest::Client,
    url: String,
    auth: Option<(String, String)>,
    headers: Vec<(String, String)>,
    body: Value,
    record: Delivery,
    subs: Arc<Mutex<Vec<Subscription>>>,
    log: Arc<Mutex<Vec<Delivery>>>,
    delivered: Arc<tokio::sync::Notify>,
}

impl DeliveryJob {
    async fn run(mut self) {
        let mut status = None;
        for attempt in 1..=MAX_TRIES {
            self.record.attempts = attempt;
            let mut req = self.http.post(&self.url).json(&self.body);
            if let Some((u, p)) = &self.auth {
                req = req.basic_auth(u, Some(p));
            }
            for (k, v) in &self.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            status = req.send().await.ok().map(|r| r.status().as_u16());
            let transient = status.is_none_or(|s| matches!(s, 408 | 502 | 503 | 504));
            if !transient || attempt == MAX_TRIES {
                break;
            }
            tokio::time::sleep(RETRY_STEP * attempt).await;
        }
        self.record.status = status;
        // ADO's rules: 410 disables at once; any other failure puts the subscription on probation; a
        // success restores it.
        let next = match status {
            Some(s) if (200..300).contains(&s) => "enabled",
            Some(410) => "disabledBySystem",
            _ => "onProbation",
        };
        if let Some(s) = lock(&self.subs)
            .iter_mut()
            .find(|s| s.id == self.record.subscription_id)
            && matches!(s.status.as_str(), "enabled" | "onProbation")
        {
            s.status = next.to_owned();
        }
        tracing::debug!(subscription = %self.record.subscription_id, event_type = %self.record.event_type, status = ?status, attempts = self.record.attempts, "event delivered");
        lock(&self.log).push(self.record);
        self.delivered.notify_waiters();
    }
}

// ---------------------------------------------------------------- control endpoints

/// `/_sim` endpoints for out-of-process tests and the demo: the delivery log and a push.
pub(crate) fn control_routes() -> Router<Arc<AdoSim>> {
    Router::new()
        .route("/_sim/deliveries", get(deliveries_json))
        .route(
            "/_sim/repositories/{id}/push",
            axum::routing::post(push_json),
        )
}

async fn deliveries_json(State(sim): Sim) -> Json {
    let value: Vec<Value> = sim
        .deliveries()
        .into_iter()
        .map(|d| {
            json!({
                "subscriptionId": d.subscription_id,
                "eventType": d.event_type,
                "eventId": d.event_id,
                "notificationId": d.notification_id,
                "status": d.status,
                "attempts": d.attempts,
            })
        })
        .collect();
    axum::Json(json!({"count": value.len(), "value": value}))
}

#[derive(serde::Deserialize)]
struct PushBody {
    branch: Option<String>,
}

/// Body `{"branch": "main"}` (optional; `main` when absent).
async fn push_json(
    State(sim): Sim,
    Path(id): Path<String>,
    body: Option<axum::Json<PushBody>>,
) -> StatusCode {
    let branch = body
        .and_then(|b| b.0.branch)
        .unwrap_or_else(|| "main".to_owned());
    if sim.push(&id, &branch) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

// ---------------------------------------------------------------- the Subscriptions API

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/_apis/hooks/subscriptions"),
            get(list).post(create),
        )
        .route(
            &format!("{o}/_apis/hooks/subscriptions/{{subscriptionId}}"),
            get(get_one).put(replace).delete(remove),
        )
}

fn base(sim: &AdoSim, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/{}", sim.org.name)
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn masked(inputs: &Map<String, Value>) -> Map<String, Value> {
    inputs
        .iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v.as_str()) {
                ("basicAuthPassword", Some(s)) if !s.is_empty() => json!(MASK),
                // Header values may be secrets too (a shared-key header): treated like the password.
                ("httpHeaders", Some(s)) => json!(
                    s.lines()
                        .map(|l| match l.split_once(':') {
                            Some((name, _)) => format!("{name}:{MASK}"),
                            None => l.to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn render(sim: &AdoSim, base: &str, s: &Subscription) -> Value {
    let mut publisher_inputs = s.publisher_inputs.clone();
    // ADO adds these on create; clients must not mistake them for filters.
    if s.publisher_id == "tfs" {
        publisher_inputs
            .entry("tfsSubscriptionId")
            .or_insert_with(|| {
                json!(guid(
                    sim.org.seed,
                    TAG_SUBSCRIPTION,
                    9,
                    s.created.timestamp_millis() as u64
                ))
            });
    }
    publisher_inputs
        .entry("hostId")
        .or_insert_with(|| json!(guid(sim.org.seed, TAG_CONTAINER, 2, 0)));
    let who = sim.org.identity_ref(base, 0);
    json!({
        "id": s.id,
        "url": format!("{base}/_apis/hooks/subscriptions/{}", s.id),
        "status": s.status,
        "publisherId": s.publisher_id,
        "eventType": s.event_type,
        "subscriber": null,
        "resourceVersion": s.resource_version,
        "eventDescription": "",
        "consumerId": s.consumer_id,
        "consumerActionId": s.consumer_action_id,
        "actionDescription": format!("To host {}", url_host(&s.consumer_inputs)),
        "probationRetries": 0,
        "createdBy": who,
        "createdDate": fmt_time(s.created),
        "modifiedBy": who,
        "modifiedDate": fmt_time(s.modified),
        "publisherInputs": publisher_inputs,
        "consumerInputs": masked(&s.consumer_inputs),
        "_links": {
            "self": {"href": format!("{base}/_apis/hooks/subscriptions/{}", s.id)},
        },
    })
}

fn url_host(inputs: &Map<String, Value>) -> String {
    inputs
        .get("url")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

fn invalid(message: impl Into<String>) -> AdoError {
    AdoError::bad_request("ServiceHookException", message)
}

fn not_found(id: &str) -> AdoError {
    AdoError::not_found(
        "SubscriptionNotFoundException",
        format!("VS1020100: Subscription {id} was not found."),
    )
}

/// Parses and checks a Create/Replace body the way ADO does: required ids, known publisher and event,
/// the web-hook consumer with a URL, and a project that exists.
fn parse_body(sim: &AdoSim, body: &[u8]) -> Result<Subscription> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| invalid("The subscription is required and must be a JSON object."))?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let publisher_id =
        text("publisherId").ok_or_else(|| invalid("The publisherId is required."))?;
    let event_type = text("eventType").ok_or_else(|| invalid("The eventType is required."))?;
    let known = EVENTS
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(publisher_id))
        .ok_or_else(|| {
            invalid(format!(
                "VS1020101: Publisher '{publisher_id}' was not found."
            ))
        })?;
    if !known.1.iter().any(|e| e.eq_ignore_ascii_case(event_type)) {
        return Err(invalid(format!(
            "VS1020102: Event type '{event_type}' is not supported by publisher '{publisher_id}'."
        )));
    }
    let consumer_id = text("consumerId").ok_or_else(|| invalid("The consumerId is required."))?;
    let consumer_action_id =
        text("consumerActionId").ok_or_else(|| invalid("The consumerActionId is required."))?;
    // The simulator serves the Web Hooks consumer only.
    if consumer_id != "webHooks" || consumer_action_id != "httpRequest" {
        return Err(invalid(format!(
            "VS1020103: Consumer action '{consumer_id}/{consumer_action_id}' was not found."
        )));
    }
    let obj = |k: &str| -> Result<Map<String, Value>> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(invalid(format!("{k} must be an object."))),
        }
    };
    let publisher_inputs = obj("publisherInputs")?;
    let consumer_inputs = obj("consumerInputs")?;
    if let Some(p) = publisher_inputs
        .get("projectId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        && sim.org.project_by_key(p).is_none()
    {
        return Err(invalid(format!(
            "VS1020104: The value '{p}' for publisher input 'projectId' is not valid: the project does not exist."
        )));
    }
    let url = consumer_inputs
        .get("url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| invalid("VS1020105: The consumer input 'url' is required."))?;
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            return Err(invalid(format!(
                "VS1020106: The value '{url}' for consumer input 'url' is not a valid absolute URI."
            )));
        }
    }
    for key in [
        "resourceDetailsToSend",
        "messagesToSend",
        "detailedMessagesToSend",
    ] {
        if let Some(val) = consumer_inputs.get(key).and_then(Value::as_str)
            && !["all", "minimal", "none", ""].contains(&val)
        {
            return Err(invalid(format!(
                "The value '{val}' for consumer input '{key}' is not valid."
            )));
        }
    }
    let status = match text("status") {
        None => "enabled",
        Some(s) => STATUSES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(s))
            .ok_or_else(|| invalid(format!("The status '{s}' is not valid.")))?,
    };
    let now = Utc::now();
    Ok(Subscription {
        id: String::new(),
        publisher_id: known.0.to_owned(),
        event_type: event_type.to_owned(),
        resource_version: text("resourceVersion")
            .unwrap_or_else(|| latest_version(known.0))
            .to_owned(),
        consumer_id: consumer_id.to_owned(),
        consumer_action_id: consumer_action_id.to_owned(),
        publisher_inputs,
        consumer_inputs,
        status: status.to_owned(),
        created: now,
        modified: now,
        notifications: 0,
    })
}

async fn list(State(sim): Sim, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Json {
    let (publisher, event, consumer, action) = (
        param(&q, "publisherId"),
        param(&q, "eventType"),
        param(&q, "consumerId"),
        param(&q, "consumerActionId"),
    );
    if publisher.is_none() && event.is_none() {
        sim.hooks.unfiltered_lists.fetch_add(1, Ordering::Relaxed);
    }
    let matches =
        |want: Option<&str>, have: &str| want.is_none_or(|w| w.eq_ignore_ascii_case(have));
    let base = base(&sim, &headers);
    let value: Vec<Value> = lock(&sim.hooks.subs)
        .iter()
        .filter(|s| {
            matches(publisher, &s.publisher_id)
                && matches(event, &s.event_type)
                && matches(consumer, &s.consumer_id)
                && matches(action, &s.consumer_action_id)
        })
        .map(|s| render(&sim, &base, s))
        .collect();
    axum::Json(json!({"count": value.len(), "value": value}))
}

type Json = axum::Json<Value>;

async fn create(State(sim): Sim, headers: HeaderMap, body: Bytes) -> Result<Json> {
    let mut sub = parse_body(&sim, &body)?;
    let n = sim.hooks.seq.fetch_add(1, Ordering::Relaxed);
    sub.id = guid(sim.org.seed, TAG_SUBSCRIPTION, n, 0);
    let rendered = render(&sim, &base(&sim, &headers), &sub);
    lock(&sim.hooks.subs).push(sub);
    Ok(axum::Json(rendered))
}

async fn get_one(State(sim): Sim, headers: HeaderMap, Path(id): Path<String>) -> Result<Json> {
    let subs = lock(&sim.hooks.subs);
    let s = subs
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| not_found(&id))?;
    Ok(axum::Json(render(&sim, &base(&sim, &headers), s)))
}

async fn replace(
    State(sim): Sim,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json> {
    let mut new = parse_body(&sim, &body)?;
    let mut subs = lock(&sim.hooks.subs);
    let s = subs
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(&id))
        .ok_or_else(|| not_found(&id))?;
    // A client that sends back what it read sends the masks: those keep the stored secrets.
    if new
        .consumer_inputs
        .get("basicAuthPassword")
        .and_then(Value::as_str)
        == Some(MASK)
        && let Some(old) = s.consumer_inputs.get("basicAuthPassword")
    {
        new.consumer_inputs
            .insert("basicAuthPassword".into(), old.clone());
    }
    if new
        .consumer_inputs
        .get("httpHeaders")
        .and_then(Value::as_str)
        .is_some_and(|h| h.contains(MASK))
        && let Some(old) = s.consumer_inputs.get("httpHeaders")
    {
        new.consumer_inputs
            .insert("httpHeaders".into(), old.clone());
    }
    new.id = s.id.clone();
    new.created = s.created;
    new.notifications = s.notifications;
    *s = new;
    Ok(axum::Json(render(&sim, &base(&sim, &headers), s)))
}

async fn remove(State(sim): Sim, Path(id): Path<String>) -> Result<Response> {
    let mut subs = lock(&sim.hooks.subs);
    let before = subs.len();
    subs.retain(|s| !s.id.eq_ignore_ascii_case(&id));
    if subs.len() == before {
        return Err(not_found(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
