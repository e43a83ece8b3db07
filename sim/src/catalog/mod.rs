//! The simulated catalog API: a local server that speaks the Port catalog contract Ocean-style clients
//! use (token, integration record, blueprints, entity upsert/search/delete, ownership listing), backed
//! by the shared [`CatalogStore`] so it has Port's entity semantics. For tests, the demo and benchmarks;
//! it can host this project's client and the Python peer side by side.
//!
//! It records each request's `User-Agent` as the written entities' `$datasource`, as Port does, and
//! offers fault injection and request counts for tests (in process, or over `/_sim/catalog/…`).
//!
//! It also runs Port's self-service actions (`actions.rs`): runs an integration claims and reports on
//! (pull model), and signed webhook invocations it sends as Port (push model).

mod actions;
mod control;
mod handlers;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::catalog::store::CatalogStore;

pub use crate::ado::Fault;
use crate::ado::faults::{FaultRules, millis, severed};
pub use actions::{NewActionRun, sign_webhook};

pub struct CatalogSimOptions {
    /// Expected credentials; `None` accepts any.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// How long an access token lives (Port: 3 hours).
    pub token_ttl: Duration,
    /// An entity of an undefined blueprint fails (per entity) instead of being stored.
    pub strict_blueprints: bool,
    /// A database file to keep the catalog in; `None` keeps it in memory.
    pub db_path: Option<PathBuf>,
}

impl Default for CatalogSimOptions {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            token_ttl: Duration::from_secs(3 * 3600),
            strict_blueprints: false,
            db_path: None,
        }
    }
}

impl std::fmt::Debug for CatalogSimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSimOptions")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("token_ttl", &self.token_ttl)
            .field("strict_blueprints", &self.strict_blueprints)
            .field("db_path", &self.db_path)
            .finish()
    }
}

/// What a fault does to a catalog request. JSON: `{"status": 503}`, `"reset"`, `{"slow": ms}`,
/// `"expire_tokens"`, `{"reject_entity": "id"}` or `{"reject_entity": null}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Port's error answer `{ok: false, error, message}` with this status; a 429 carries
    /// `retry-after: 1`.
    Status(u16),
    /// The connection is dropped without an answer.
    Reset,
    /// The real answer, after this delay.
    Slow(#[serde(with = "millis")] Duration),
    /// Every token issued so far stops working at once, as when they expire: this request and every
    /// later one carrying an old token get 401 until the client fetches a new token.
    ExpireTokens,
    /// An entity upsert: the entity with this identifier (the request's first when `None`) is refused
    /// with 422, inside a 207 for a bulk request, as Port refuses an entity its blueprint does not
    /// accept; the others are stored. Requests without that entity neither trigger nor count.
    RejectEntity(Option<String>),
}

/// An injected action and the extra headers of its answer (the older API's `retry-after`).
type Injected = (FaultAction, Vec<(HeaderName, HeaderValue)>);

/// Request counts by what the requests do.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CatalogStats {
    pub total: u64,
    /// Entity upserts and deletes.
    pub writes: u64,
    /// Entity reads: searches, the ownership listing, single gets.
    pub searches: u64,
    /// Everything else: tokens, blueprints, the integration record.
    pub other: u64,
    /// Per `"METHOD /v1/route-template"`, faulted and refused requests included.
    pub requests: BTreeMap<String, u64>,
}

/// Routes that change entities, by their count key.
const WRITE_ROUTES: &[&str] = &[
    "POST /v1/blueprints/{bp}/entities",
    "POST /v1/blueprints/{bp}/entities/bulk",
    "POST /v1/blueprints/{bp}/bulk/entities/delete",
    "DELETE /v1/blueprints/{bp}/entities/{id}",
    "DELETE /v1/blueprints/{bp}/all-entities",
];
/// Routes that read entities.
const SEARCH_ROUTES: &[&str] = &[
    "POST /v1/entities/search",
    "POST /v1/blueprints/entities/datasource-entities",
    "GET /v1/blueprints/{bp}/entities/{id}",
];

#[derive(Default)]
struct Tokens {
    /// token -> expiry
    live: HashMap<String, Instant>,
    /// client id -> its current token: Port hands out the same token until it expires.
    by_client: HashMap<String, String>,
}

pub struct CatalogSim {
    opts: CatalogSimOptions,
    store: CatalogStore,
    tokens: Mutex<Tokens>,
    faults: FaultRules<Injected>,
    counts: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    /// Self-service action runs, in memory only (test fixtures, not catalog data).
    actions: actions::ActionRuns,
}

impl std::fmt::Debug for CatalogSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSim")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CatalogSim {
    pub fn new(opts: CatalogSimOptions) -> anyhow::Result<Arc<Self>> {
        let store = match &opts.db_path {
            Some(path) => CatalogStore::open(path)?,
            None => CatalogStore::in_memory()?,
        };
        Ok(Arc::new(Self {
            opts,
            store,
            tokens: Mutex::default(),
            faults: FaultRules::default(),
            counts: Mutex::default(),
            total: AtomicU64::new(0),
            actions: actions::ActionRuns::default(),
        }))
    }

    /// The API under `/v1/...`, ingest endpoints under `/ingest/...` and a debug dump at
    /// `/_catalog/entities`. Nest it anywhere; the nest prefix is the catalog base URL.
    pub fn router(self: &Arc<Self>) -> Router {
        handlers::routes()
            .merge(actions::routes())
            .route_layer(middleware::from_fn_with_state(self.clone(), gate))
            // Bodies over Port's 1 MiB limit must reach the handlers, which answer Port's 413.
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(self.clone())
    }

    /// `/_sim/catalog/…` controls for out-of-process tests: `GET stats`, `POST`/`DELETE faults` (a
    /// [`Fault`] as JSON), `POST tokens/expire`, `POST actions/runs` (a [`NewActionRun`] as JSON) and
    /// `GET actions/runs`. Merge it at the root, beside the ADO side's `/_sim`.
    pub fn control_router(self: &Arc<Self>) -> Router {
        control::routes(self)
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    /// Answers requests whose path contains `path_contains` with `status`, `times` times (or until
    /// [`CatalogSim::clear_faults`]).
    pub fn fail_requests(&self, path_contains: &str, status: u16, times: Option<u32>) {
        self.fail_requests_with_headers(path_contains, status, times, &[]);
    }

    /// As [`CatalogSim::fail_requests`], with headers on the failure (for example `retry-after`).
    pub fn fail_requests_with_headers(
        &self,
        path_contains: &str,
        status: u16,
        times: Option<u32>,
        headers: &[(&str, &str)],
    ) {
        let headers = headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::try_from(*k).ok()?,
                    HeaderValue::try_from(*v).ok()?,
                ))
            })
            .collect();
        self.faults.add(Fault {
            times,
            ..Fault::new(path_contains, (FaultAction::Status(status), headers))
        });
    }

    /// Adds a fault; the first one added that matches a request decides its fate.
    pub fn inject(&self, fault: Fault<FaultAction>) {
        self.faults.add(Fault {
            path_contains: fault.path_contains,
            method: fault.method,
            action: (fault.action, Vec::new()),
            after: fault.after,
            times: fault.times,
        });
    }

    pub fn clear_faults(&self) {
        self.faults.clear();
    }

    /// Every token issued so far stops working; the next request with one gets 401.
    pub fn expire_tokens(&self) {
        let mut tokens = lock(&self.tokens);
        tokens.live.clear();
        tokens.by_client.clear();
    }

    /// Requests per `"METHOD /v1/route-template"`, faulted and refused ones included.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }

    pub fn request_count(&self, key: &str) -> u64 {
        lock(&self.counts).get(key).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The request counts, and their sums by what the requests do.
    pub fn stats(&self) -> CatalogStats {
        let requests = self.request_counts();
        let mut stats = CatalogStats {
            total: self.total_requests(),
            ..Default::default()
        };
        for (key, n) in &requests {
            if WRITE_ROUTES.contains(&key.as_str()) {
                stats.writes += n;
            } else if SEARCH_ROUTES.contains(&key.as_str()) {
                stats.searches += n;
            } else {
                stats.other += n;
            }
        }
        stats.requests = requests;
        stats
    }

    /// The index of the entity an upsert to `path` must refuse, if a [`FaultAction::RejectEntity`]
    /// fires on it; `identifiers` are the request's, in order.
    fn rejected_entity(&self, path: &str, identifiers: &[String]) -> Option<usize> {
        let applies = |(action, _): &Injected| match action {
            FaultAction::RejectEntity(None) => !identifiers.is_empty(),
            FaultAction::RejectEntity(Some(id)) => identifiers.contains(id),
            _ => false,
        };
        match self.faults.take("POST", path, applies)?.0 {
            FaultAction::RejectEntity(Some(id)) => identifiers.iter().position(|i| *i == id),
            _ => Some(0),
        }
    }

    /// Issues (or re-issues, while it lives) the token of a credential set; `None` when refused.
    fn issue_token(&self, client_id: &str, client_secret: &str) -> Option<String> {
        let id_ok = self
            .opts
            .client_id
            .as_deref()
            .is_none_or(|want| want == client_id);
        let secret_ok = self
            .opts
            .client_secret
            .as_deref()
            .is_none_or(|want| want == client_secret);
        if !id_ok || !secret_ok {
            return None;
        }
        let mut tokens = lock(&self.tokens);
        let now = Instant::now();
        tokens.live.retain(|_, expiry| *expiry > now);
        if let Some(t) = tokens.by_client.get(client_id)
            && tokens.live.contains_key(t)
        {
            return Some(t.clone());
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        tokens.live.insert(token.clone(), now + self.opts.token_ttl);
        tokens.by_client.insert(client_id.to_owned(), token.clone());
        Some(token)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim()))
        else {
            return false;
        };
        lock(&self.tokens)
            .live
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }
}

/// Port's error answer for an injected status.
fn fault_response(status: u16, headers: &[(HeaderName, HeaderValue)]) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = match status.as_u16() {
        401 => "unauthorized",
        404 => "not_found",
        413 => "payload_too_large",
        422 => "invalid_request",
        429 => "too_many_requests",
        503 => "service_unavailable",
        _ => "injected_fault",
    };
    let mut resp =
        handlers::ApiError::new(status, error, "failure injected by the simulator").into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    for (k, v) in headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// The route template without the nest prefix: `/catalog/v1/x/{id}` → `/v1/x/{id}`.
fn route_key(template: &str) -> &str {
    ["/v1/", "/_catalog", "/ingest"]
        .iter()
        .filter_map(|p| template.find(p))
        .min()
        .map_or(template, |i| &template[i..])
}

/// Counting, fault injection and authentication, in that order, for every routed request.
async fn gate(State(sim): State<Arc<CatalogSim>>, req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let route = route_key(&template).to_owned();
    sim.total.fetch_add(1, Ordering::Relaxed);
    *lock(&sim.counts)
        .entry(format!("{} {route}", req.method()))
        .or_default() += 1;

    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map(|o| o.0.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let injected = sim
        .faults
        .take(req.method().as_str(), &path, |(action, _)| {
            !matches!(action, FaultAction::RejectEntity(_))
        });
    match injected {
        Some((FaultAction::Status(status), headers)) => return fault_response(status, &headers),
        Some((FaultAction::Reset, _)) => return severed(),
        Some((FaultAction::Slow(delay), _)) => tokio::time::sleep(delay).await,
        Some((FaultAction::ExpireTokens, _)) => sim.expire_tokens(),
        Some((FaultAction::RejectEntity(_), _)) | None => {}
    }
    let open = route == "/v1/auth/access_token" || !route.starts_with("/v1/");
    if !open && !sim.authorized(req.headers()) {
        return handlers::ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, unknown or expired token",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests;
