//! The simulated Azure DevOps organisation: a deterministic generated org served over the real ADO
//! REST wire protocol (URL shapes, JSON shapes, paging, limits, auth quirks, throttling), with
//! mutation and fault-injection controls for tests, the demo and benchmarks.

mod builds;
mod entra;
pub(crate) mod faults;
mod git_policy;
mod hooks;
mod org;
mod releases;
mod routes;
mod runs;
mod wiql;

mod content;
mod people;
mod planning;
mod server;
mod wiki;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use builds::CicdSpec;
pub use entra::{
    ADO_RESOURCE_ID, ADO_SCOPE, ADO_SCOPE_URI, DEFAULT_TOKEN_TTL, EntraApp, TOKEN_ROUTE,
};
pub use faults::{Fault, FaultAction, REQUESTS_PER_WINDOW, UNVERSIONED_GET_VERSION, WINDOW_SECS};
pub use hooks::Delivery;
pub use runs::{PIPELINE_TEMPLATE_PARAMETERS, RUN_RESULTS};
pub use server::Flavour;

use faults::{FaultRules, RateWindow};
use org::Org;

/// The size and shape of the generated organisation. Everything is derived from `seed`.
#[derive(Clone, Debug)]
pub struct OrgSpec {
    /// Organisation (collection) name: the first URL path segment, e.g. `simorg`.
    pub name: String,
    pub seed: u64,
    pub projects: usize,
    pub repos_per_project: usize,
    pub prs_per_repo: usize,
    pub pipelines_per_project: usize,
    /// Entry `i` is the work-item count of project `i`; projects past the end reuse the last entry.
    pub work_items_per_project: Vec<usize>,
    /// Entry `i` holds project `i`'s tags (served as project properties); missing entries: none.
    pub project_tags: Vec<Vec<String>>,
    /// The instant generated dates are relative to. `None`: the start of the current UTC hour, so
    /// "closed in the last 7 days" is meaningful against the real clock.
    pub anchor: Option<DateTime<Utc>>,
    /// Builds, runs, environments, tests, releases, policies, branches and alerts.
    pub cicd: CicdSpec,
    /// Teams per project (the first is the project's default team).
    pub teams_per_project: usize,
    /// People in the organisation (users, entitlements, team and group members).
    pub users: usize,
    /// Pages of each project wiki.
    pub wiki_pages: usize,
}

impl OrgSpec {
    /// Demo size: 3 projects (one named with a space, one tagged `archived`), 3 repos each (one
    /// disabled, one empty), a few PRs and pipelines, 25–60 work items per project.
    pub fn small() -> Self {
        OrgSpec {
            name: "simorg".into(),
            seed: 42,
            projects: 3,
            repos_per_project: 3,
            prs_per_repo: 4,
            pipelines_per_project: 3,
            work_items_per_project: vec![40, 25, 60],
            project_tags: vec![
                vec![],
                vec!["mobile".into()],
                vec!["archived".into(), "legacy".into()],
            ],
            anchor: None,
            cicd: CicdSpec::small(),
            teams_per_project: 2,
            users: 12,
            wiki_pages: 6,
        }
    }

    /// Benchmark size: 20 projects × 60 repos (1,200), 120,000 work items with 25,000 in the first
    /// project, so WIQL paging has to work around the 20,000-result cap.
    pub fn large() -> Self {
        let mut work_items = vec![25_000];
        work_items.extend(std::iter::repeat_n(5_000, 19));
        OrgSpec {
            name: "simorg".into(),
            seed: 7,
            projects: 20,
            repos_per_project: 60,
            prs_per_repo: 3,
            pipelines_per_project: 10,
            work_items_per_project: work_items,
            project_tags: vec![vec![], vec![], vec!["archived".into()]],
            anchor: None,
            cicd: CicdSpec::large(),
            teams_per_project: 4,
            users: 300,
            wiki_pages: 30,
        }
    }
}

/// How the simulator behaves on the wire.
#[derive(Clone, Debug)]
pub struct AdoSimOptions {
    /// Added to every response (async sleep), to model network and service time.
    pub latency: Duration,
    /// Share of requests (0..1) answered 429 (with `retry-after`) or 503, in a deterministic sequence.
    pub fault_rate: f64,
    /// When set, any other PAT (or none) gets ADO's 203 HTML sign-in page. A bearer token is checked
    /// apart from this: it must be one the Entra token endpoint issued and still in date.
    pub pat: Option<String>,
    /// The service principal the Entra token endpoint (`POST /{tenantId}/oauth2/v2.0/token`) knows.
    /// `None` (default): any client id and secret get a token, in any tenant named by a GUID or domain.
    pub entra: Option<EntraApp>,
    /// How long a token the Entra endpoint issues works. Default [`DEFAULT_TOKEN_TTL`] (3599 s).
    pub entra_token_ttl: Duration,
    /// No TSTU budget headers (`x-ratelimit-*`): a client never learns it should slow down. For
    /// benchmarks that measure how well a client uses its concurrency, apart from the budget.
    pub unmetered: bool,
    /// Azure DevOps Services (default) or Server (no Graph, entitlements or Advanced Security).
    pub flavour: Flavour,
    /// How long a run started with Runs - Run Pipeline stays `inProgress` before it completes by
    /// itself. `None`: only [`AdoSim::complete_run`] (or its `/_sim` route) completes it. Default 300 ms.
    pub pipeline_run_duration: Option<Duration>,
    /// The result such a run completes with by itself: `succeeded` (default), `failed` or `canceled`.
    pub pipeline_run_result: String,
}

impl Default for AdoSimOptions {
    fn default() -> Self {
        AdoSimOptions {
            latency: Duration::ZERO,
            fault_rate: 0.0,
            pat: None,
            entra: None,
            entra_token_ttl: DEFAULT_TOKEN_TTL,
            unmetered: false,
            flavour: Flavour::default(),
            pipeline_run_duration: Some(Duration::from_millis(300)),
            pipeline_run_result: "succeeded".into(),
        }
    }
}

/// Field values a test has written over a generated work item.
#[derive(Default)]
pub(crate) struct ItemOverride {
    pub fields: Map<String, Value>,
    pub rev_bump: u64,
}

/// Mutations over the generated org: the generated data never changes, this records the difference.
#[derive(Default)]
pub(crate) struct Overlay {
    pub removed_items: HashSet<u64>,
    pub item_overrides: HashMap<u64, ItemOverride>,
    pub removed_repos: HashSet<String>,
    /// Runs started with Runs - Run Pipeline, oldest first.
    pub started_runs: Vec<runs::StartedRun>,
}

/// The simulator. Build with [`AdoSim::new`], serve [`AdoSim::router`] (and optionally
/// [`AdoSim::control_router`]) from one axum server.
pub struct AdoSim {
    pub(crate) org: Org,
    pub(crate) opts: AdoSimOptions,
    pub(crate) overlay: RwLock<Overlay>,
    counts: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    pub(crate) faults: FaultRules<FaultAction>,
    /// Requests that came without an `api-version`, per route, like `counts`.
    unversioned: Mutex<BTreeMap<String, u64>>,
    pub(crate) fault_seq: AtomicU64,
    pub(crate) rate: Mutex<RateWindow>,
    pub(crate) hooks: hooks::Hooks,
    pub(crate) content: content::ContentOverlay,
    /// Tokens the Entra token endpoint has issued.
    pub(crate) entra: entra::EntraTokens,
}

impl AdoSim {
    pub fn new(spec: OrgSpec, opts: AdoSimOptions) -> Arc<Self> {
        Arc::new(AdoSim {
            org: Org::generate(&spec),
            opts,
            overlay: RwLock::new(Overlay::default()),
            counts: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            faults: FaultRules::default(),
            unversioned: Mutex::new(BTreeMap::new()),
            fault_seq: AtomicU64::new(0),
            rate: Mutex::new(RateWindow::default()),
            hooks: hooks::Hooks::default(),
            content: Default::default(),
            entra: Default::default(),
        })
    }

    /// Serves the org under `/{org}/…` and the Entra token endpoint at `/{tenantId}/oauth2/v2.0/token`
    /// (so the server root is the authority URL); unknown paths get an ADO-style 404. It carries the only
    /// fallback, so it merges cleanly with [`AdoSim::control_router`] and other fallback-free routers.
    pub fn router(self: &Arc<Self>) -> Router {
        routes::router(self)
    }

    /// `/_sim/…` endpoints for out-of-process tests: stats, faults, mutations and Entra tokens.
    pub fn control_router(self: &Arc<Self>) -> Router {
        routes::control_router(self)
    }

    pub fn org_name(&self) -> &str {
        &self.org.name
    }

    pub fn project_ids(&self) -> Vec<String> {
        self.org.projects.iter().map(|p| p.id.clone()).collect()
    }

    /// Live work-item ids of a project (by id or name), ascending.
    pub fn work_item_ids(&self, project_id: &str) -> Vec<u64> {
        let Some(p) = self.org.project_by_key(project_id) else {
            return vec![];
        };
        if p.wi_count == 0 {
            return vec![];
        }
        let ov = self.read_overlay();
        p.wi_range()
            .filter(|id| !ov.removed_items.contains(id))
            .collect()
    }

    pub fn repository_ids(&self, project_id: &str) -> Vec<String> {
        let Some(p) = self.org.project_by_key(project_id) else {
            return vec![];
        };
        let ov = self.read_overlay();
        p.repos
            .iter()
            .filter(|r| !ov.removed_repos.contains(&r.id))
            .map(|r| r.id.clone())
            .collect()
    }

    /// Deletes a work item: WIQL stops returning it and GET answers 404 (TF401232).
    pub fn remove_work_item(&self, id: u64) -> bool {
        if self.org.project_of_work_item(id).is_none() {
            return false;
        }
        let mut ov = self.write_overlay();
        let before = self.work_item_snapshot(&ov, id);
        ov.item_overrides.remove(&id);
        let removed = ov.removed_items.insert(id);
        drop(ov);
        if removed {
            self.work_item_deleted(before);
        }
        removed
    }

    pub fn remove_repository(&self, repo_id: &str) -> bool {
        let known = self
            .org
            .projects
            .iter()
            .flat_map(|p| &p.repos)
            .any(|r| r.id == repo_id);
        let removed = known
            && self
                .write_overlay()
                .removed_repos
                .insert(repo_id.to_string());
        if removed {
            self.repository_deleted(repo_id);
        }
        removed
    }

    /// Merges `fields` into the item, bumps `rev`, and sets `System.ChangedDate` to now unless the
    /// caller supplies it (tests that need a specific date can). `System.TeamProject` and `System.Id`
    /// cannot be moved: work-item ranges per project are fixed.
    pub fn update_work_item(&self, id: u64, mut fields: Map<String, Value>) -> bool {
        if self.org.project_of_work_item(id).is_none() {
            return false;
        }
        let mut ov = self.write_overlay();
        if ov.removed_items.contains(&id) {
            return false;
        }
        let before = self.work_item_snapshot(&ov, id);
        fields.remove("System.TeamProject");
        fields.remove("System.Id");
        fields
            .entry("System.ChangedDate")
            .or_insert_with(|| Value::String(org::fmt_time(Utc::now())));
        let o = ov.item_overrides.entry(id).or_default();
        o.fields.extend(fields);
        o.rev_bump += 1;
        let after = self.work_item_snapshot(&ov, id);
        drop(ov);
        self.work_item_updated(before, after);
        true
    }

    /// From now on, requests whose path (and query) contains `path_contains` get HTTP `status`,
    /// `times` times (`None`: until [`AdoSim::clear_faults`]).
    pub fn fail_requests(&self, path_contains: &str, status: u16, times: Option<u32>) {
        self.inject(Fault {
            times,
            ..Fault::new(path_contains, FaultAction::Status(status))
        });
    }

    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// Requests seen per `"METHOD route-template"`, e.g. `"POST /{project}/_apis/wit/wiql"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, key: String) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    pub(crate) fn read_overlay(&self) -> std::sync::RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_overlay(&self) -> std::sync::RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|e| e.into_inner())
    }
}
