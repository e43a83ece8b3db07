//! The request gate every org request passes: counting, latency, PAT check (203 sign-in page),
//! injected faults (429/503 or test-chosen statuses), the api-version requirement, and the
//! rate-limit headers ADO attaches. Also ADO's error body shape.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::AdoSim;
use super::org::mix;

pub(crate) struct FaultRule {
    pub path_contains: String,
    pub status: u16,
    pub remaining: Option<u32>,
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

fn pat_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        // The user part is ignored by ADO; the PAT is everything after the first colon.
        text.split_once(':').map(|(_, pat)| pat.to_string())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_string())
    } else {
        None
    }
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

impl AdoSim {
    /// Picks the fault for this request, if any: test rules first, then the random share.
    fn fault_for(&self, path: &str) -> Option<u16> {
        {
            let mut rules = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = rules
                .iter()
                .position(|r| path.contains(&r.path_contains) && r.remaining != Some(0))
            {
                let status = rules[i].status;
                if let Some(n) = rules[i].remaining.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        rules.remove(i);
                    }
                }
                return Some(status);
            }
        }
        if self.opts.fault_rate <= 0.0 {
            return None;
        }
        // A seeded sequence: the n-th request's fate depends only on (seed, n).
        let n = self.fault_seq.fetch_add(1, Ordering::Relaxed);
        let r = mix(self.org.seed ^ mix(n));
        let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
        (unit < self.opts.fault_rate).then_some(if r.is_multiple_of(3) { 503 } else { 429 })
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

fn fault_response(status: u16) -> Response {
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
pub(crate) async fn gate(State(sim): State<Arc<AdoSim>>, req: Request, next: Next) -> Response {
    let prefix = format!("/{}", sim.org.name);
    let route = req.extensions().get::<MatchedPath>().map(|m| {
        m.as_str()
            .strip_prefix(&prefix)
            .unwrap_or(m.as_str())
            .to_string()
    });
    sim.count(format!(
        "{} {}",
        req.method(),
        route.as_deref().unwrap_or("<unmatched>")
    ));
    if !sim.opts.latency.is_zero() {
        tokio::time::sleep(sim.opts.latency).await;
    }
    let mut resp = if sim
        .opts
        .pat
        .as_ref()
        .is_some_and(|want| pat_of(req.headers()).as_deref() != Some(want.as_str()))
    {
        (
            StatusCode::NON_AUTHORITATIVE_INFORMATION,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            SIGN_IN_PAGE,
        )
            .into_response()
    } else if let Some(status) = sim.fault_for(
        req.uri()
            .path_and_query()
            .map_or(req.uri().path(), |p| p.as_str()),
    ) {
        fault_response(status)
    } else if route.is_some() && !has_api_version(&req) {
        AdoError::bad_request(
            "VssVersionNotSpecifiedException",
            format!(
                "No api-version was supplied for the \"{}\" request. The version must be supplied either as part of the Accept header (e.g. \"application/json; api-version=1.0\") or as a query parameter (e.g. '?api-version=1.0').",
                req.method()
            ),
        )
        .into_response()
    } else {
        next.run(req).await
    };
    if !sim.opts.unmetered {
        sim.rate_headers(resp.headers_mut());
    }
    resp
}
