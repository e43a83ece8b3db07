//! The request gate every org request passes: counting, latency, PAT check (203 sign-in page), Entra
//! bearer-token check (401), injected faults, the api-version rule, and the rate-limit headers ADO
//! attaches. Also ADO's error body shape, and the fault rules both simulators share ([`Fault`]).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdoSim;
use super::entra::{Caller, bad_bearer};
use super::org::mix;

/// An injected fault: which requests it hits and what it does to them. `A` is the side's action
/// ([`FaultAction`] for Azure DevOps, [`crate::catalog::FaultAction`] for the catalog). Over
/// `/_sim` it is the JSON `{"path_contains", "method"?, "action", "after"?, "times"?}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault<A> {
    /// A substring of the request path (on the Azure DevOps side, path and query).
    pub path_contains: String,
    /// Only requests with this method (any case); `None` for every method.
    #[serde(default)]
    pub method: Option<String>,
    pub action: A,
    /// Matching requests let through before the fault starts, to hit a pass part way.
    #[serde(default)]
    pub after: u32,
    /// Matching requests it hits; `None` until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl<A> Fault<A> {
    /// Every matching request, until cleared.
    pub fn new(path_contains: impl Into<String>, action: A) -> Self {
        Self {
            path_contains: path_contains.into(),
            method: None,
            action,
            after: 0,
            times: None,
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_owned());
        self
    }

    pub fn after(mut self, requests: u32) -> Self {
        self.after = requests;
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        path.contains(&self.path_contains)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// What a fault does to an Azure DevOps request. JSON: `{"status": 503}`, `"reset"`, `{"slow": ms}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// ADO's error answer with this status; a 429 carries `retry-after: 1`.
    Status(u16),
    /// The connection is dropped without an answer (see [`severed`]).
    Reset,
    /// The real answer, after this delay: longer than a client's timeout, it is a hung server.
    Slow(#[serde(with = "millis")] Duration),
}

/// Durations as whole milliseconds on the wire.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

struct LiveFault<A> {
    fault: Fault<A>,
    /// Matching requests let through so far (up to `after`).
    passed: u32,
}

/// The faults injected on one side, in the order they were added.
pub(crate) struct FaultRules<A> {
    rules: Mutex<Vec<LiveFault<A>>>,
}

impl<A> Default for FaultRules<A> {
    fn default() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
        }
    }
}

impl<A: Clone> FaultRules<A> {
    pub fn add(&self, fault: Fault<A>) {
        if fault.times == Some(0) {
            return;
        }
        self.lock().push(LiveFault { fault, passed: 0 });
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The action of the first rule that fires on this request, using up one of its hits. Only rules
    /// whose action `applies` here are considered (or counted): the catalog rejects an entity in the
    /// bulk handler, where the body is known, and everything else in its gate.
    pub fn take(&self, method: &str, path: &str, applies: impl Fn(&A) -> bool) -> Option<A> {
        let mut rules = self.lock();
        let mut fired = None;
        for (i, rule) in rules.iter_mut().enumerate() {
            if !rule.fault.matches(method, path) || !applies(&rule.fault.action) {
                continue;
            }
            if rule.passed < rule.fault.after {
                rule.passed += 1;
                continue;
            }
            fired = Some(i);
            break;
        }
        let i = fired?;
        let action = rules[i].fault.action.clone();
        if let Some(n) = rules[i].fault.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                rules.remove(i);
            }
        }
        Some(action)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LiveFault<A>>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An answer that is never sent: its body fails on the first read, and hyper then closes the
/// connection. Hyper writes the head only together with the first body bytes, so the client sees the
/// connection closed before any status line (an "incomplete message" / connection reset), not a
/// broken body; `sim/tests` checks this on a raw socket.
pub(crate) fn severed() -> Response {
    let body = futures::stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset injected by the simulator",
        ))
    });
    Response::new(Body::from_stream(body))
}

/// A TSTU-like budget: 200 units per 5-minute window, each request costing a little, which is how
/// ADO's global limit is expressed. Only the headers report it; throttling is the fault injector's job.
#[derive(Default)]
pub(crate) struct RateWindow {
    start: i64,
    used_milli: u64,
}

/// The budget's window, in seconds (fixed windows here; ADO's is sliding).
pub const WINDOW_SECS: i64 = 300;
pub const LIMIT_TSTU: u64 = 200;
/// 0.02 TSTU per request: 10,000 requests exhaust a window, so headers move visibly in benchmarks.
const COST_MILLI: u64 = 20;
/// Requests one window allows before `x-ratelimit-remaining` reaches 0.
pub const REQUESTS_PER_WINDOW: u64 = LIMIT_TSTU * 1000 / COST_MILLI;

/// ADO's JSON error body: `{"$id":"1","innerException":null,"message":…,"typeName":…,"typeKey":…}`.
#[derive(Debug)]
pub(crate) struct AdoError {
    pub status: StatusCode,
    pub type_key: &'static str,
    pub message: String,
}

impl AdoError {
    pub fn new(status: StatusCode, type_key: &'static str, message: impl Into<String>) -> Self {
        AdoError {
            status,
            type_key,
            message: message.into(),
        }
    }
    pub fn bad_request(type_key: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, type_key, message)
    }
    pub fn not_found(type_key: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, type_key, message)
    }
}

impl IntoResponse for AdoError {
    fn into_response(self) -> Response {
        let body = json!({
            "$id": "1",
            "innerException": null,
            "message": self.message,
            "typeName": format!("Microsoft.VisualStudio.Services.WebApi.{}, Microsoft.VisualStudio.Services.WebApi", self.type_key),
            "typeKey": self.type_key,
            "errorCode": 0,
            "eventId": 3000,
        });
        (self.status, Json(body)).into_response()
    }
}

/// What ADO serves a GET or POST with a bad or missing PAT: not a 401 but a 203 with an HTML page.
const SIGN_IN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en-US\">\n<head><meta charset=\"utf-8\"><title>Azure DevOps Services | Sign In</title></head>\n<body>\n<div id=\"signin\">\n<h1>Sign in to Azure DevOps</h1>\n<p>You need to sign in to access this organization.</p>\n<a href=\"https://app.vssps.visualstudio.com/_signin\">Sign in</a>\n</div>\n</body>\n</html>\n";

/// The PAT of a Basic `Authorization` header (bearer tokens are Entra's, checked apart).
fn pat_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    // The user part is ignored by ADO; the PAT is everything after the first colon.
    text.split_once(':').map(|(_, pat)| pat.to_string())
}

fn has_api_version(req: &Request) -> bool {
    let in_query = req.uri().query().is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k.eq_ignore_ascii_case("api-version") && !v.is_empty()
        })
    });
    in_query
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("api-version="))
}

/// The version a GET without `api-version` is served with. Azure DevOps serves such a GET with the
/// newest version of the resource, preview ones included (the Python peer relies on it for projects,
/// repositories, policies, environments and more); only other methods must name a version.
pub const UNVERSIONED_GET_VERSION: &str = "7.2-preview";

/// The same request with `api-version` added to its query.
fn with_version(uri: &Uri, version: &str) -> Option<Uri> {
    let path_and_query = match uri.query().filter(|q| !q.is_empty()) {
        Some(q) => format!("{}?{q}&api-version={version}", uri.path()),
        None => format!("{}?api-version={version}", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

impl AdoSim {
    /// Adds a fault; the first one added that matches a request decides its fate.
    pub fn inject(&self, fault: Fault<FaultAction>) {
        self.faults.add(fault);
    }

    /// Requests that came without an `api-version` (query or `Accept`), per `"METHOD route-template"`.
    /// Azure DevOps serves such GETs; this is how tests check that a client names its version anyway.
    pub fn requests_without_api_version(&self) -> BTreeMap<String, u64> {
        self.unversioned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn count_unversioned(&self, key: &str) {
        *self
            .unversioned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_default() += 1;
    }

    /// Picks the fault for this request, if any: test rules first, then the random share.
    fn fault_for(&self, method: &str, path: &str) -> Option<FaultAction> {
        if let Some(action) = self.faults.take(method, path, |_| true) {
            return Some(action);
        }
        if self.opts.fault_rate <= 0.0 {
            return None;
        }
        // A seeded sequence: the n-th request's fate depends only on (seed, n).
        let n = self.fault_seq.fetch_add(1, Ordering::Relaxed);
        let r = mix(self.org.seed ^ mix(n));
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        (unit < self.opts.fault_rate).then_some(FaultAction::Status(if r.is_multiple_of(3) {
            503
        } else {
            429
        }))
    }

    fn rate_headers(&self, headers: &mut HeaderMap) {
        let now = chrono::Utc::now().timestamp();
        let (remaining, reset) = {
            let mut w = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            if now - w.start >= WINDOW_SECS {
                w.start = now;
                w.used_milli = 0;
            }
            w.used_milli += COST_MILLI;
            (
                (LIMIT_TSTU * 1000).saturating_sub(w.used_milli) / 1000,
                w.start + WINDOW_SECS,
            )
        };
        let mut put = |k: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(k, v);
            }
        };
        put("x-ratelimit-resource", "Core".into());
        put("x-ratelimit-limit", LIMIT_TSTU.to_string());
        put("x-ratelimit-remaining", remaining.to_string());
        put("x-ratelimit-reset", reset.to_string());
    }
}

pub(crate) fn fault_response(status: u16) -> Response {
    match status {
        429 => {
            let mut r = AdoError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RequestBlockedException",
                "TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'Core' in namespace 'User'.",
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r.headers_mut()
                .insert("x-ratelimit-delay", HeaderValue::from_static("1.000"));
            r
        }
        503 => AdoError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "VS800049: The service is temporarily unavailable. Please try again later.",
        )
        .into_response(),
        other => {
            let status = StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            AdoError::new(
                status,
                "VssServiceException",
                format!(
                    "Injected failure: {}",
                    status.canonical_reason().unwrap_or("error")
                ),
            )
            .into_response()
        }
    }
}

/// The middleware in front of every org route and the 404 fallback.
pub(crate) async fn gate(State(sim): State<Arc<AdoSim>>, mut req: Request, next: Next) -> Response {
    let prefix = format!("/{}", sim.org.name);
    let route = req.extensions().get::<MatchedPath>().map(|m| {
        m.as_str()
            .strip_prefix(&prefix)
            .unwrap_or(m.as_str())
            .to_string()
    });
    let key = format!(
        "{} {}",
        req.method(),
        route.as_deref().unwrap_or("<unmatched>")
    );
    let versioned = has_api_version(&req);
    if !versioned {
        sim.count_unversioned(&key);
    }
    sim.count(key);
    if !sim.opts.latency.is_zero() {
        tokio::time::sleep(sim.opts.latency).await;
    }
    let caller = sim.caller(req.headers());
    let signed_in = match caller {
        Caller::Bearer => true,
        Caller::BadBearer => false,
        Caller::Other => sim
            .opts
            .pat
            .as_ref()
            .is_none_or(|want| pat_of(req.headers()).as_deref() == Some(want.as_str())),
    };
    let fault = if signed_in {
        sim.fault_for(
            req.method().as_str(),
            req.uri()
                .path_and_query()
                .map_or(req.uri().path(), |p| p.as_str()),
        )
    } else {
        None
    };
    let mut resp = if matches!(caller, Caller::BadBearer) {
        bad_bearer(&sim)
    } else if !signed_in {
        (
            StatusCode::NON_AUTHORITATIVE_INFORMATION,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            SIGN_IN_PAGE,
        )
            .into_response()
    } else if let Some(FaultAction::Status(status)) = fault {
        fault_response(status)
    } else if let Some(FaultAction::Reset) = fault {
        return severed();
    } else if route.is_some() && !versioned && !matches!(*req.method(), Method::GET | Method::HEAD)
    {
        AdoError::bad_request(
            "VssVersionNotSpecifiedException",
            format!(
                "No api-version was supplied for the \"{}\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. '?api-version=1.0').",
                req.method()
            ),
        )
        .into_response()
    } else {
        if let Some(FaultAction::Slow(delay)) = fault {
            tokio::time::sleep(delay).await;
        }
        if !versioned && let Some(uri) = with_version(req.uri(), UNVERSIONED_GET_VERSION) {
            *req.uri_mut() = uri;
        }
        next.run(req).await
    };
    if !sim.opts.unmetered {
        sim.rate_headers(resp.headers_mut());
    }
    resp
}
