//! One HTTP client per organisation: PAT auth, an explicit api-version on every call, bounded
//! concurrency, and retries that honour Azure DevOps' throttling headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::entra::TokenSource;
use super::{AdoError, Failure, OrgUrl, Route, Service};
use crate::config::{AdoCredential, AdoSettings};
use crate::retry::{Backoff, server_wait};

/// Our own waits between retries when Azure DevOps names none: 0.5–1 s for the first, doubling, never
/// more than 30 s (under the default `max_retry_wait`, so our own backoff never ends a request).
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

tokio::task_local! {
    static REQUEST_COUNTER: Arc<AtomicU64>;
}

/// Settings of one organisation's client.
#[derive(Clone)]
pub struct AdoClientConfig {
    pub org_url: OrgUrl,
    pub credential: AdoCredential,
    /// Sent as `api-version` on every call (ADO picks "latest" when it is missing, and the shapes drift).
    /// 7.1 on Services; Azure DevOps Server 2022 supports 7.0 at most.
    pub api_version: String,
    /// In-flight requests across every task of a pass: ADO's TSTU budget is per identity, so the bound is
    /// per client, not per kind.
    pub max_concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
    /// The longest single wait we accept for a `Retry-After` or a reset time before giving up.
    pub max_retry_wait: Duration,
    /// Extra outbound headers (an access proxy in front of an on-prem server). Values may be secrets.
    pub extra_headers: Vec<(String, SecretString)>,
    /// Stop retrying when a wait would cross this instant (a Lambda's remaining time).
    pub deadline: Option<Instant>,
}

impl AdoClientConfig {
    /// A client signing in with a personal access token.
    pub fn new(org_url: OrgUrl, pat: SecretString) -> Self {
        Self::signing_in(org_url, AdoCredential::Pat(pat))
    }

    pub fn signing_in(org_url: OrgUrl, credential: AdoCredential) -> Self {
        Self {
            org_url,
            credential,
            api_version: "7.1".to_owned(),
            max_concurrency: 16,
            timeout: Duration::from_secs(30),
            max_retries: 6,
            max_retry_wait: Duration::from_secs(60),
            extra_headers: Vec::new(),
            deadline: None,
        }
    }
}

impl AdoClientConfig {
    /// The client of the `ADO_*` settings: the organisation URL in its Azure DevOps form, unset limits
    /// at their defaults, and the API version the product serves when none is set (Azure DevOps Server
    /// 2022 serves 7.0 at most; Services serves 7.1).
    pub fn from_settings(settings: &AdoSettings) -> Result<Self, AdoError> {
        let org_url = OrgUrl::parse(settings.org_url.as_str())?;
        let mut cfg = Self::signing_in(org_url, settings.credential.clone());
        cfg.api_version = match &settings.api_version {
            Some(v) => v.clone(),
            None if cfg.org_url.is_cloud() => "7.1".into(),
            None => "7.0".into(),
        };
        if let Some(n) = settings.max_concurrency {
            cfg.max_concurrency = n;
        }
        if let Some(t) = settings.timeout {
            cfg.timeout = t;
        }
        if let Some(n) = settings.max_retries {
            cfg.max_retries = n;
        }
        cfg.extra_headers = settings.extra_headers.clone();
        Ok(cfg)
    }
}

impl std::fmt::Debug for AdoClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoClientConfig")
            .field("org_url", &self.org_url.to_string())
            .field("credential", &self.credential)
            .field("api_version", &self.api_version)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field(
                "extra_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The note on the failure of a request that was not repeated after an uncertain outcome.
pub(crate) const NOT_REPEATED: &str = "not repeated: Azure DevOps may have carried it out";

/// Which api-version a call sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiVersion {
    /// The client's configured version.
    Default,
    /// `{configured}-preview.{n}`: for APIs that only exist as previews (project properties, graph).
    Preview(u8),
    /// A fixed version, for APIs whose shape differs by version.
    Exact(String),
}

/// One request; paths start with `/` and are appended to the service's base URL.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub service: Service,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub api_version: ApiVersion,
    pub body: Option<Value>,
    /// Whether repeating the request after an uncertain outcome is harmless. Only the run of a
    /// pipeline is not: it is repeated only when Azure DevOps surely did not carry it out (a 429, a
    /// refused connection).
    pub repeatable: bool,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            service: Service::Core,
            path: path.into(),
            query: Vec::new(),
            api_version: ApiVersion::Default,
            body: None,
            repeatable: true,
        }
    }

    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::POST,
            body: Some(body),
            ..Self::get(path)
        }
    }

    /// A POST that creates something each time it is carried out (a pipeline run): never repeated
    /// after a timeout or a server error, when Azure DevOps may have carried it out already.
    pub fn post_once(path: impl Into<String>, body: Value) -> Self {
        Self {
            repeatable: false,
            ..Self::post(path, body)
        }
    }

    /// A replace. Retried like every other call: a PUT of the same body is idempotent.
    pub fn put(path: impl Into<String>, body: Value) -> Self {
        Self {
            method: Method::PUT,
            body: Some(body),
            ..Self::get(path)
        }
    }

    /// A removal. Retried like every other call: a repeated DELETE at worst answers 404.
    pub fn delete(path: impl Into<String>) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(path)
        }
    }

    pub fn service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn version(mut self, v: ApiVersion) -> Self {
        self.api_version = v;
        self
    }

    /// Method and path, as errors and logs name the request (never the query).
    pub fn route(&self) -> Route {
        Route::new(&self.method, &self.path)
    }
}

/// A successful answer: the JSON body and the continuation token from the header, if any.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Value,
    pub continuation: Option<String>,
}

/// The Azure DevOps client. Cheap to clone; clones share the concurrency bound and the throttle.
#[derive(Clone)]
pub struct AdoClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: AdoClientConfig,
    auth: Auth,
    extra: HeaderMap,
    permits: Semaphore,
    /// When ADO says to slow down (429, or `Retry-After` on a success), every request waits until then:
    /// the budget is shared, so one task's throttle is everyone's.
    paused_until: Mutex<Option<Instant>>,
    requests: AtomicU64,
}

/// Where a request's `Authorization` comes from.
enum Auth {
    /// `Basic` of the PAT, fixed.
    Fixed(SecretString),
    /// Entra ID Bearer tokens, refreshed before they expire.
    Entra(Arc<TokenSource>),
}

impl std::fmt::Debug for AdoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoClient")
            .field("cfg", &self.inner.cfg)
            .finish()
    }
}

enum Attempt {
    Done(Reply),
    /// `why` names the request; giving up turns it into the error as it is, with a note added.
    Retry {
        /// The request surely had no effect (throttled, or the connection was refused), so even a
        /// request that is not repeatable may go again.
        unsent: bool,
        wait: Option<Duration>,
        why: Failure,
    },
    Fail(AdoError),
}

impl AdoClient {
    /// The client of the `ADO_*` settings ([`AdoClientConfig::from_settings`]).
    pub fn from_settings(settings: &AdoSettings) -> Result<Self, AdoError> {
        Self::new(AdoClientConfig::from_settings(settings)?)
    }

    pub fn new(cfg: AdoClientConfig) -> Result<Self, AdoError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("ado-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AdoError::Invalid(Failure::new("cannot build the HTTP client").with_source(e))
            })?;
        let auth = match &cfg.credential {
            AdoCredential::Pat(pat) => {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!(":{}", pat.expose_secret()));
                Auth::Fixed(SecretString::from(format!("Basic {token}")))
            }
            AdoCredential::ServicePrincipal(p) => {
                Auth::Entra(Arc::new(TokenSource::new(p.clone())?))
            }
        };
        let mut extra = HeaderMap::new();
        for (name, value) in &cfg.extra_headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                AdoError::invalid(format!(
                    "extra header name {name:?} is not a valid header name"
                ))
            })?;
            let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                AdoError::invalid(format!(
                    "extra header {name} has a value that is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            extra.insert(name, value);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                permits: Semaphore::new(cfg.max_concurrency.max(1)),
                auth,
                extra,
                cfg,
                paused_until: Mutex::new(None),
                requests: AtomicU64::new(0),
            }),
        })
    }

    pub fn org_url(&self) -> &OrgUrl {
        &self.inner.cfg.org_url
    }

    pub fn api_version(&self) -> &str {
        &self.inner.cfg.api_version
    }

    pub fn max_concurrency(&self) -> usize {
        self.inner.cfg.max_concurrency.max(1)
    }

    /// Runs `fut` with its own request counter: every request `fut` sends (retries included, and the
    /// shared lists it initialises) adds to `counter`, whatever else runs concurrently on this client.
    pub async fn counting<F: std::future::Future>(counter: Arc<AtomicU64>, fut: F) -> F::Output {
        REQUEST_COUNTER.scope(counter, fut).await
    }

    /// Requests sent so far (each retry counts).
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    pub async fn get(&self, path: impl Into<String>) -> Result<Reply, AdoError> {
        self.send(&Request::get(path)).await
    }

    /// Sends a request, retrying throttling, timeouts and 500/502/503/504 with backoff. Reads (WIQL is a POST
    /// with no side effect), PUT and DELETE are safe to retry. The one creating POST (a service-hook
    /// subscription) may leave a duplicate when ADO stored it before the timeout; the subscription reconcile
    /// removes duplicates on its next run.
    pub async fn send(&self, req: &Request) -> Result<Reply, AdoError> {
        let mut attempt: u32 = 0;
        let mut backoff = BACKOFF.waits();
        let mut token_refreshed = false;
        loop {
            self.wait_for_throttle().await;
            let (authorization, generation) = self.authorization().await?;
            let outcome = {
                let _permit = self
                    .inner
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore is never closed");
                self.inner.requests.fetch_add(1, Ordering::Relaxed);
                // Attributes the request to the work that is counting (a resource block of a resync).
                let _ = REQUEST_COUNTER.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
                self.attempt(req, &authorization).await
            };
            match outcome {
                Attempt::Done(reply) => return Ok(reply),
                // An Entra token can be revoked or lapse early: one fresh token is tried before the
                // refusal counts (a refused request had no effect, so even a run start may go again).
                Attempt::Fail(AdoError::Unauthorized(_))
                    if !token_refreshed && matches!(self.inner.auth, Auth::Entra(_)) =>
                {
                    token_refreshed = true;
                    if let Auth::Entra(source) = &self.inner.auth {
                        source.invalidate(generation).await;
                    }
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { unsent, wait, why } => {
                    if !unsent && !req.repeatable {
                        return Err(AdoError::Transient(why.with_detail(NOT_REPEATED)));
                    }
                    attempt += 1;
                    if attempt > self.inner.cfg.max_retries {
                        return Err(AdoError::Transient(
                            why.with_detail(format!("gave up after {} retries", attempt - 1)),
                        ));
                    }
                    // Drawn on every retry, so our step grows with the attempts even while ADO
                    // names the waits.
                    let ours = backoff.next_wait();
                    let wait = wait.unwrap_or(ours);
                    if wait > self.inner.cfg.max_retry_wait {
                        return Err(AdoError::Transient(why.with_detail(format!(
                            "asked to wait {}s, more than the {}s allowed",
                            wait.as_secs(),
                            self.inner.cfg.max_retry_wait.as_secs()
                        ))));
                    }
                    if let Some(deadline) = self.inner.cfg.deadline
                        && Instant::now() + wait >= deadline
                    {
                        return Err(AdoError::Transient(
                            why.with_detail("no time left before the deadline"),
                        ));
                    }
                    tracing::warn!(request = %req.route(), attempt, wait_ms = wait.as_millis() as u64, reason = %why, "retrying Azure DevOps request");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn wait_for_throttle(&self) {
        let until = *self.inner.paused_until.lock().await;
        if let Some(until) = until
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Holds every request of this client back for `wait` (Azure DevOps' throttling budget is shared),
    /// said once per pause with its reason and when it ends.
    async fn pause(&self, wait: Duration, reason: &str) {
        let until = Instant::now() + wait;
        let mut guard = self.inner.paused_until.lock().await;
        // A new throttle can only lengthen the current one.
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                resumes_at = %(chrono::Utc::now() + chrono::TimeDelta::from_std(wait).unwrap_or_default()),
                reason,
                "Azure DevOps is throttling: requests paused"
            );
        }
    }

    fn url(&self, req: &Request) -> String {
        format!(
            "{}{}",
            self.inner.cfg.org_url.service_base(req.service),
            req.path
        )
    }

    fn version(&self, v: &ApiVersion) -> String {
        match v {
            ApiVersion::Default => self.inner.cfg.api_version.clone(),
            ApiVersion::Preview(n) => format!("{}-preview.{n}", self.inner.cfg.api_version),
            ApiVersion::Exact(s) => s.clone(),
        }
    }

    /// The `Authorization` value for the next request and, for Entra tokens, its generation.
    async fn authorization(&self) -> Result<(SecretString, u64), AdoError> {
        match &self.inner.auth {
            Auth::Fixed(header) => Ok((header.clone(), 0)),
            Auth::Entra(source) => source.header().await,
        }
    }

    async fn attempt(&self, req: &Request, authorization: &SecretString) -> Attempt {
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), self.url(req))
            .query(&req.query)
            .query(&[("api-version", self.version(&req.api_version))])
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::AUTHORIZATION,
                authorization.expose_secret(),
            )
            .headers(self.inner.extra.clone());
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let failure = || Failure::request(req.route());
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() || e.is_connect() || e.is_request() => {
                return Attempt::Retry {
                    unsent: e.is_connect(),
                    wait: None,
                    why: failure()
                        .with_detail("transport error")
                        .with_source(e.without_url()),
                };
            }
            Err(e) => {
                return Attempt::Fail(AdoError::Permanent(failure().with_source(e.without_url())));
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let retry_after = server_wait(&headers, chrono::Utc::now());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    unsent: false,
                    wait: None,
                    why: failure()
                        .with_status(status.as_u16())
                        .with_detail("reading the body failed")
                        .with_source(e.without_url()),
                };
            }
        };

        // ADO answers a bad or expired PAT on GET/POST with 203 and an HTML sign-in page, not 401.
        if status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
            return Attempt::Fail(AdoError::Unauthorized(
                failure().with_status(203).with_detail(
                    "Azure DevOps answered with a sign-in page: the PAT is invalid or expired",
                ),
            ));
        }
        if status.is_success() {
            if let Some(wait) = retry_after {
                // Retry-After on a success means ADO has started delaying us: slow everyone down now.
                self.pause(
                    wait.min(self.inner.cfg.max_retry_wait),
                    "the answer asked to wait (Retry-After, or no rate-limit budget left)",
                )
                .await;
            }
            let body: Value = if body.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(_) if looks_like_html(&body) => {
                        return Attempt::Fail(AdoError::Unauthorized(
                            failure().with_status(status.as_u16()).with_detail(
                                "Azure DevOps answered with an HTML page instead of JSON: the PAT is invalid or expired",
                            ),
                        ));
                    }
                    Err(e) => {
                        return Attempt::Fail(AdoError::Permanent(
                            failure()
                                .with_status(status.as_u16())
                                .with_detail("the answer is not JSON")
                                .with_source(e),
                        ));
                    }
                }
            };
            let continuation = headers
                .get("x-ms-continuationtoken")
                .and_then(|v| v.to_str().ok())
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            return Attempt::Done(Reply { body, continuation });
        }

        let message = failure()
            .with_status(status.as_u16())
            .with_retry_after(retry_after)
            .with_body(error_message(&body));
        match status.as_u16() {
            429 => {
                let wait = retry_after.unwrap_or_else(|| Duration::from_secs(5));
                self.pause(
                    wait.min(self.inner.cfg.max_retry_wait),
                    "429 Too Many Requests",
                )
                .await;
                // Throttled requests are refused before they are carried out.
                Attempt::Retry {
                    unsent: true,
                    wait: Some(wait),
                    why: message,
                }
            }
            // A 500 from Azure DevOps is most often a passing server fault (a database timeout, a
            // deployment): every request here is safe to repeat, so it is retried like a 503, and one
            // that persists ends as a transient failure of the kind.
            408 | 500 | 502 | 503 | 504 => Attempt::Retry {
                unsent: false,
                wait: retry_after,
                why: message,
            },
            401 => Attempt::Fail(AdoError::Unauthorized(message)),
            403 => Attempt::Fail(AdoError::Forbidden(message)),
            // 410: a resource Azure DevOps removed for good; for the caller the same as 404.
            404 | 410 => Attempt::Fail(AdoError::NotFound(message)),
            400..=499 => Attempt::Fail(AdoError::Invalid(message)),
            _ => Attempt::Fail(AdoError::Permanent(message)),
        }
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<html")
}

/// ADO error bodies carry `message`; anything else is kept as it is ([`Failure::with_body`] shortens it).
/// reqwest errors are stored `without_url`: the route already names the request, once.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(m) = v.get("message").and_then(Value::as_str)
    {
        return m.to_owned();
    }
    String::from_utf8_lossy(&body[..body.len().min(4 * crate::failure::BODY_EXCERPT_CHARS)])
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_settings(vars: &[(&str, &str)]) -> Result<AdoClientConfig, AdoError> {
        let map: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        let settings = AdoSettings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap();
        AdoClientConfig::from_settings(&settings)
    }

    #[test]
    fn the_settings_api_version_defaults_by_product_and_limits_apply() {
        let cloud = from_settings(&[
            ("ADO_ORG_URL", "https://dev.azure.com/contoso"),
            ("ADO_PAT", "p"),
            ("ADO_MAX_CONCURRENCY", "3"),
        ])
        .unwrap();
        assert_eq!(cloud.api_version, "7.1");
        assert_eq!(cloud.max_concurrency, 3);
        assert_eq!(cloud.timeout, Duration::from_secs(30), "the default");
        let server = from_settings(&[
            ("ADO_ORG_URL", "https://tfs.local/tfs/Col"),
            ("ADO_PAT", "p"),
        ])
        .unwrap();
        assert_eq!(server.api_version, "7.0");
        let pinned = from_settings(&[
            ("ADO_ORG_URL", "https://tfs.local/tfs/Col"),
            ("ADO_PAT", "p"),
            ("ADO_API_VERSION", "6.0"),
        ])
        .unwrap();
        assert_eq!(pinned.api_version, "6.0");
    }

    #[test]
    fn an_org_url_without_organisation_or_collection_is_refused_when_the_client_is_built() {
        for url in ["https://dev.azure.com/", "https://tfs.local/"] {
            let e = from_settings(&[("ADO_ORG_URL", url), ("ADO_PAT", "p")]).unwrap_err();
            assert!(e.to_string().contains("organisation URL"), "{url}: {e}");
        }
    }

    #[test]
    fn our_backoff_starts_at_half_a_second_grows_and_stays_under_the_longest_wait() {
        let longest = AdoClientConfig::new(
            OrgUrl::parse("https://dev.azure.com/contoso").unwrap(),
            SecretString::from("p"),
        )
        .max_retry_wait;
        let mut waits = BACKOFF.waits();
        let first = waits.next_wait();
        assert!(
            first >= Duration::from_millis(499) && first < Duration::from_millis(1001),
            "{first:?}"
        );
        waits.next_wait();
        waits.next_wait();
        let fourth = waits.next_wait();
        assert!(fourth >= Duration::from_millis(3999), "{fourth:?}");
        for _ in 0..30 {
            let wait = waits.next_wait();
            assert!(wait <= Duration::from_secs(30), "{wait:?}");
            assert!(wait < longest, "{wait:?}");
        }
    }

    #[test]
    fn the_pat_never_appears_in_debug_output() {
        let cfg = AdoClientConfig::new(
            OrgUrl::parse("https://dev.azure.com/contoso").unwrap(),
            SecretString::from("super-secret-pat".to_owned()),
        );
        let client = AdoClient::new(cfg).unwrap();
        let dbg = format!("{client:?}");
        assert!(!dbg.contains("super-secret-pat"), "{dbg}");
        assert!(
            !dbg.contains(&base64::engine::general_purpose::STANDARD.encode(":super-secret-pat"))
        );
    }

    /// An Azure DevOps stand-in that answers every request with `status` and an ADO error body.
    async fn answering(status: u16, retry_after: &'static str) -> AdoClient {
        use axum::http::{HeaderMap as Headers, StatusCode as Code};
        let app = axum::Router::new().fallback(move || async move {
            let mut headers = Headers::new();
            headers.insert("retry-after", HeaderValue::from_static(retry_after));
            (
                Code::from_u16(status).unwrap(),
                headers,
                axum::Json(serde_json::json!({"message": "TF400733: slow down", "typeKey": "X"})),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut cfg = AdoClientConfig::new(
            OrgUrl::parse(&format!("http://{addr}/org")).unwrap(),
            SecretString::from("pat".to_owned()),
        );
        cfg.max_retries = 2;
        AdoClient::new(cfg).unwrap()
    }

    #[tokio::test]
    async fn an_error_from_a_throttled_request_names_the_request_once() {
        let client = answering(429, "0").await;
        let req =
            Request::get("/proj/_apis/git/repositories").query("continuationToken", "secret-ish");
        let err = client.send(&req).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text.matches("GET /proj/_apis/git/repositories").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("HTTP 429").count(), 1, "{text}");
        assert!(!text.contains("continuationToken"), "{text}");
        assert!(text.contains("gave up after 2 retries"), "{text}");
        assert!(err.is_transient(), "{err:?}");
        assert_eq!(err.status(), Some(429));
        assert_eq!(err.retry_after(), Some(Duration::ZERO));
        assert_eq!(err.route().unwrap().path, "/proj/_apis/git/repositories");
        assert_eq!(err.failure().unwrap().body(), Some("TF400733: slow down"));
        // With what the caller was doing in front, the request is still named once.
        let text = err.context("listing repositories").to_string();
        assert_eq!(text.matches("GET /proj").count(), 1, "{text}");
        assert!(
            text.starts_with("Azure DevOps is unavailable: listing repositories: GET /proj"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_pipeline_start_is_never_repeated_after_a_server_error_but_is_after_throttling() {
        let run = || Request::post_once("/p/_apis/pipelines/1/runs", serde_json::json!({}));
        let failing = answering(503, "0").await;
        let err = failing.send(&run()).await.unwrap_err();
        assert_eq!(failing.requests_made(), 1, "sent once");
        assert!(err.may_have_been_carried_out(), "{err}");
        // The same answer to a repeatable request is retried.
        let reads = answering(503, "0").await;
        let err = reads
            .send(&Request::get("/p/_apis/pipelines"))
            .await
            .unwrap_err();
        assert_eq!(reads.requests_made(), 3);
        assert!(!err.may_have_been_carried_out());
        // A 429 is refused before anything runs: the start may go again.
        let throttled = answering(429, "0").await;
        let err = throttled.send(&run()).await.unwrap_err();
        assert_eq!(throttled.requests_made(), 3);
        assert!(!err.may_have_been_carried_out(), "{err}");
    }

    /// A tenant's token endpoint and an Azure DevOps that accepts only the latest token it issued.
    async fn entra_stand_in() -> (AdoClient, Arc<AtomicU64>) {
        use axum::http::{HeaderMap as Headers, StatusCode as Code};
        let issued = Arc::new(AtomicU64::new(0));
        let (mint, check) = (issued.clone(), issued.clone());
        let app = axum::Router::new()
            .route(
                "/tenant-1/oauth2/v2.0/token",
                axum::routing::post(move || {
                    let n = mint.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        axum::Json(serde_json::json!({
                            "token_type": "Bearer", "expires_in": 3599, "access_token": format!("t{n}")
                        }))
                    }
                }),
            )
            .fallback(move |headers: Headers| {
                let latest = format!("Bearer t{}", check.load(Ordering::SeqCst));
                async move {
                    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if given == Some(latest.as_str()) {
                        (Code::OK, axum::Json(serde_json::json!({"count": 0, "value": []})))
                    } else {
                        (Code::UNAUTHORIZED, axum::Json(serde_json::json!({"message": "expired"})))
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let principal = crate::config::ServicePrincipal {
            tenant_id: "tenant-1".into(),
            client_id: "app".into(),
            client_secret: SecretString::from("s".to_owned()),
            authority: url::Url::parse(&format!("http://{addr}")).unwrap(),
        };
        let cfg = AdoClientConfig::signing_in(
            OrgUrl::parse(&format!("http://{addr}/org")).unwrap(),
            AdoCredential::ServicePrincipal(principal),
        );
        (AdoClient::new(cfg).unwrap(), issued)
    }

    #[tokio::test]
    async fn a_service_principal_s_token_is_reused_and_fetched_again_once_when_refused() {
        let (client, issued) = entra_stand_in().await;
        for _ in 0..3 {
            client.get("/_apis/projects").await.unwrap();
        }
        assert_eq!(
            issued.load(Ordering::SeqCst),
            1,
            "one token for every request"
        );
        // The service revokes it (a newer one exists): the next request refetches once and succeeds.
        issued.fetch_add(1, Ordering::SeqCst);
        client.get("/_apis/projects").await.unwrap();
        assert_eq!(issued.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_request_keeps_its_status_route_and_body() {
        let client = answering(404, "0").await;
        let err = client.get("/proj/_apis/wit/workitems/7").await.unwrap_err();
        assert!(matches!(err, AdoError::NotFound(_)), "{err:?}");
        assert_eq!(err.status(), Some(404));
        assert_eq!(
            err.to_string(),
            "Azure DevOps has no such resource: GET /proj/_apis/wit/workitems/7: HTTP 404: TF400733: slow down"
        );
    }

    #[tokio::test]
    async fn a_transport_failure_keeps_its_cause() {
        // Nothing listens on a port just released.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = AdoClientConfig::new(
            OrgUrl::parse(&format!("http://127.0.0.1:{port}/org")).unwrap(),
            SecretString::from("pat".to_owned()),
        );
        cfg.max_retries = 0;
        let err = AdoClient::new(cfg)
            .unwrap()
            .get("/_apis/projects")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert_eq!(err.status(), None);
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        let text = err.to_string();
        assert_eq!(text.matches("/_apis/projects").count(), 1, "{text}");
    }

    #[test]
    fn html_bodies_are_recognised() {
        assert!(looks_like_html(
            b"\n<!DOCTYPE html><html><head><title>Sign In</title>"
        ));
        assert!(!looks_like_html(b"{\"value\":[]}"));
    }
}
