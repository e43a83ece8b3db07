//! The Port REST API adapter: the [`Catalog`] port over `api.getport.io` (or any server speaking the
//! same contract). It owns the token, the ownership tag (`User-Agent`, which Port records as
//! `$datasource`), the bulk limits (≤20 entities and ≤1 MiB per request) and the retry policy.

mod actions;

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::{
    Catalog, CatalogError, Entity, EntityKey, Failure, OwnedPage, Route, UpsertOutcome,
    WriteOptions, datasource, ownership_filter, user_agent,
};
use crate::retry::{Backoff, server_wait};

pub use crate::config::{PORT_EU_BASE_URL, PORT_US_BASE_URL};

/// Port's documented bulk limits.
const MAX_BULK_ENTITIES: usize = 20;
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// `{"entities":[` + `]}`.
const BULK_ENVELOPE_BYTES: usize = 15;
/// Chunks of one call in flight at once: enough to hide latency, few enough to stay far from Port's
/// burst limits when several calls run side by side.
const CHUNK_CONCURRENCY: usize = 4;
/// Identifiers per diff search, as Ocean sends them.
const FIND_CHUNK: usize = 50;
/// Identifiers per bulk delete, as Ocean sends them.
const DELETE_CHUNK: usize = 100;
/// Keys per ownership page.
const OWNED_PAGE: usize = 5000;
/// Our own waits between retries when Port names none: 0.2–0.4 s for the first, doubling, never more
/// than 10 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
/// The longest wait we take from `Retry-After` / `x-ratelimit-reset`; a longer ask is cut to this. Port's
/// rate-limit window is 5 minutes, so a longer wait is better answered by failing transiently and
/// letting the caller's schedule come back.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(60);

/// What Port's own client retries: rate limiting, request timeouts and gateway failures. A 500 is not
/// retried: it is usually this request's fault, and Ocean does not retry it either.
fn retries_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 502 | 503 | 504)
}

/// The wait before a retry: what Port asked for, up to [`MAX_SERVER_WAIT`], else `ours` (the backoff).
fn retry_delay(asked: Option<Duration>, ours: Duration) -> Duration {
    asked.map_or(ours, |asked| asked.min(MAX_SERVER_WAIT))
}

#[derive(Clone)]
pub struct PortConfig {
    /// For example [`PORT_EU_BASE_URL`] or [`PORT_US_BASE_URL`]; a path prefix is kept.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub integration_identifier: String,
    /// `azure-devops`.
    pub integration_type: String,
    pub version: String,
    /// Per request, including reading the answer.
    pub timeout: Duration,
    /// Retries after the first attempt for throttling, timeouts and gateway errors.
    pub max_retries: u32,
}

impl PortConfig {
    /// A configuration with the defaults: EU API, type `azure-devops`, 60 s timeout (as Ocean), 5 retries.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        integration_identifier: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            base_url: Url::parse(PORT_EU_BASE_URL).expect("constant URL"),
            client_id: client_id.into(),
            client_secret,
            integration_identifier: integration_identifier.into(),
            integration_type: "azure-devops".to_owned(),
            version: version.into(),
            timeout: Duration::from_secs(60),
            max_retries: 5,
        }
    }
}

impl fmt::Debug for PortConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortConfig")
            .field("base_url", &self.base_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("integration_identifier", &self.integration_identifier)
            .field("integration_type", &self.integration_type)
            .field("version", &self.version)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// A cached access token, already in header form (`<tokenType> <accessToken>`).
struct Token {
    header: SecretString,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Default)]
struct TokenState {
    current: Option<Token>,
    issued: u64,
}

/// Which User-Agent a call carries: entity calls are tagged with the ownership `/exporter` feature.
#[derive(Clone, Copy)]
enum Agent {
    Exporter,
    Plain,
}

/// A finished HTTP exchange with a status the caller has to interpret.
struct Answer {
    route: Route,
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    /// The failure of this exchange, named once: what we were doing, the request and the status.
    fn failure(&self, what: &str) -> Failure {
        Failure::request(self.route.clone())
            .with_context(what)
            .with_status(self.status.as_u16())
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T, CatalogError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CatalogError::Permanent(
                self.failure(what)
                    .with_detail("unreadable answer")
                    .with_source(e),
            )
        })
    }

    /// Port's `{error, message}` body, or the start of whatever came back.
    fn error(&self) -> (String, String) {
        #[derive(Deserialize)]
        struct PortError {
            error: Option<String>,
            message: Option<String>,
        }
        match serde_json::from_slice::<PortError>(&self.body) {
            Ok(PortError { error, message }) if error.is_some() || message.is_some() => (
                error.unwrap_or_else(|| format!("http_{}", self.status.as_u16())),
                message.unwrap_or_default(),
            ),
            _ => {
                let text = String::from_utf8_lossy(&self.body);
                let text: String = text.chars().take(300).collect();
                (format!("http_{}", self.status.as_u16()), text)
            }
        }
    }

    fn failed(&self) -> UpsertOutcome {
        let (error, message) = self.error();
        UpsertOutcome::Failed {
            status: self.status.as_u16(),
            error,
            message,
        }
    }

    /// The error a non-write call returns for an answer it cannot use.
    fn into_error(self, what: &str) -> CatalogError {
        let (error, message) = self.error();
        let failure = self.failure(what).with_detail(error).with_body(message);
        match self.status.as_u16() {
            401 | 403 => CatalogError::Unauthorized(failure),
            400..=499 => CatalogError::Invalid(failure),
            _ => CatalogError::Permanent(failure),
        }
    }
}

/// The Port API client. Build it once and share it; it caches the token and reuses connections.
pub struct PortClient {
    http: reqwest::Client,
    cfg: PortConfig,
    datasource: String,
    agent: String,
    owned_prefix: String,
    owned_suffix: String,
    token: tokio::sync::Mutex<TokenState>,
}

impl fmt::Debug for PortClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortClient")
            .field("config", &self.cfg)
            .field("datasource", &self.datasource)
            .finish_non_exhaustive()
    }
}

impl PortClient {
    pub fn new(cfg: PortConfig) -> Result<Self, CatalogError> {
        if cfg.base_url.cannot_be_a_base() || !matches!(cfg.base_url.scheme(), "http" | "https") {
            return Err(CatalogError::invalid(format!(
                "catalog base URL {} is not an http(s) URL",
                cfg.base_url
            )));
        }
        if cfg.integration_identifier.is_empty() || cfg.integration_identifier.contains('/') {
            return Err(CatalogError::Invalid(
                "the integration identifier must be non-empty and free of '/' (it is part of the ownership tag)"
                    .into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                CatalogError::Permanent(Failure::new("building the HTTP client").with_source(e))
            })?;
        let datasource = datasource(
            &cfg.integration_type,
            &cfg.version,
            &cfg.integration_identifier,
        );
        let agent = user_agent(
            &cfg.integration_type,
            &cfg.version,
            &cfg.integration_identifier,
        );
        let (owned_prefix, owned_suffix) = ownership_filter(&datasource);
        Ok(Self {
            http,
            cfg,
            datasource,
            agent,
            owned_prefix,
            owned_suffix,
            token: tokio::sync::Mutex::new(TokenState::default()),
        })
    }

    /// The ownership tag this client writes with.
    pub fn datasource(&self) -> &str {
        &self.datasource
    }

    /// The integration record (`GET /v1/integration/{id}`), `None` when it does not exist.
    pub async fn integration(&self) -> Result<Option<Value>, CatalogError> {
        let url = self.url(&["v1", "integration", &self.cfg.integration_identifier]);
        let answer = self
            .call(
                Method::GET,
                url,
                Agent::Plain,
                None,
                true,
                "reading the integration",
            )
            .await?;
        match answer.status.as_u16() {
            200..=299 => {
                let mut body: Value = answer.json("reading the integration")?;
                Ok(Some(
                    body.get_mut("integration").map(Value::take).unwrap_or(body),
                ))
            }
            404 => Ok(None),
            _ => Err(answer.into_error("reading the integration")),
        }
    }

    /// Reports the resync state (`PATCH /v1/integration/{id}/resync-state`). Failures are logged and
    /// swallowed: the state is informational and must not fail a resync. Not retried, like Ocean's
    /// PATCH calls: the next state report supersedes this one.
    pub async fn patch_resync_state(&self, state: Value) -> Result<(), CatalogError> {
        let url = self.url(&[
            "v1",
            "integration",
            &self.cfg.integration_identifier,
            "resync-state",
        ]);
        let body = Bytes::from(state.to_string());
        match self
            .call(
                Method::PATCH,
                url,
                Agent::Plain,
                Some(body),
                false,
                "reporting the resync state",
            )
            .await
        {
            Ok(answer) if answer.status.is_success() => {}
            Ok(answer) => {
                let (error, _) = answer.error();
                tracing::warn!(
                    status = answer.status.as_u16(),
                    error,
                    "resync state not recorded"
                );
            }
            Err(e) => tracing::warn!(error = %e, "resync state not recorded"),
        }
        Ok(())
    }

    /// One blueprint (`GET /v1/blueprints/{id}`), `None` when it does not exist.
    pub async fn blueprint(&self, identifier: &str) -> Result<Option<Value>, CatalogError> {
        let what = "reading a blueprint";
        let url = self.url(&["v1", "blueprints", identifier]);
        let answer = self
            .call(Method::GET, url, Agent::Plain, None, true, what)
            .await?;
        match answer.status.as_u16() {
            200..=299 => {
                let mut body: Value = answer.json(what)?;
                Ok(Some(
                    body.get_mut("blueprint").map(Value::take).unwrap_or(body),
                ))
            }
            404 => Ok(None),
            _ => Err(answer.into_error(what)),
        }
    }

    /// A write that is not an entity write (blueprints, the integration record). Not retried, as Ocean
    /// does not retry them: a create whose answer was lost would fail as a duplicate.
    async fn admin_write(
        &self,
        method: Method,
        segments: &[&str],
        body: &Value,
        what: &str,
    ) -> Result<(), CatalogError> {
        let url = self.url(segments);
        let body = Bytes::from(body.to_string());
        let answer = self
            .call(method, url, Agent::Plain, Some(body), false, what)
            .await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.into_error(what))
        }
    }

    /// Creates a blueprint (`POST /v1/blueprints`).
    pub async fn create_blueprint(&self, blueprint: &Value) -> Result<(), CatalogError> {
        self.admin_write(
            Method::POST,
            &["v1", "blueprints"],
            blueprint,
            "creating a blueprint",
        )
        .await
    }

    /// Replaces the top-level fields the body names (`PATCH /v1/blueprints/{id}`).
    pub async fn patch_blueprint(
        &self,
        identifier: &str,
        patch: &Value,
    ) -> Result<(), CatalogError> {
        self.admin_write(
            Method::PATCH,
            &["v1", "blueprints", identifier],
            patch,
            "updating a blueprint",
        )
        .await
    }

    /// Deletes a blueprint (`DELETE /v1/blueprints/{id}`); only used to undo a failed creation.
    pub async fn delete_blueprint(&self, identifier: &str) -> Result<(), CatalogError> {
        let what = "deleting a blueprint";
        let url = self.url(&["v1", "blueprints", identifier]);
        let answer = self
            .call(Method::DELETE, url, Agent::Plain, None, false, what)
            .await?;
        match answer.status.as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(answer.into_error(what)),
        }
    }

    /// Creates the integration record (`POST /v1/integration`). The body's `installationId` is set to
    /// this client's integration identifier.
    pub async fn create_integration(&self, mut body: Value) -> Result<(), CatalogError> {
        if let Some(obj) = body.as_object_mut() {
            obj.insert(
                "installationId".into(),
                Value::String(self.cfg.integration_identifier.clone()),
            );
        }
        self.admin_write(
            Method::POST,
            &["v1", "integration"],
            &body,
            "creating the integration",
        )
        .await
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.cfg.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn write_query(&self, url: &mut Url, opts: &WriteOptions) {
        let mut q = url.query_pairs_mut();
        q.append_pair("ocean_info_event_type", opts.reason.as_str());
        if let Some(id) = &opts.resync_id {
            q.append_pair("ocean_info_resync_id", id);
        }
    }

    fn upsert_url(&self, blueprint: &str, bulk: bool, opts: &WriteOptions) -> Url {
        let mut url = if bulk {
            self.url(&["v1", "blueprints", blueprint, "entities", "bulk"])
        } else {
            self.url(&["v1", "blueprints", blueprint, "entities"])
        };
        url.query_pairs_mut()
            .append_pair("upsert", "true")
            .append_pair("merge", bool_str(opts.merge))
            .append_pair(
                "create_missing_related_entities",
                bool_str(opts.create_missing_related_entities),
            )
            .append_pair("validation_only", "false");
        self.write_query(&mut url, opts);
        url
    }

    // Token.

    /// The cached token, fetched when missing or about to expire. The lock is held across the fetch so
    /// concurrent chunks wait for one token request instead of each sending their own.
    async fn token(&self) -> Result<(SecretString, u64), CatalogError> {
        let mut state = self.token.lock().await;
        if let Some(t) = &state.current
            && Instant::now() < t.refresh_at
        {
            return Ok((t.header.clone(), t.generation));
        }
        let (header, lifetime) = self.fetch_token().await?;
        // Refresh a little early so a call never leaves with a token that expires in flight. Port hands
        // out the same token until it expires, so an early request may return the old one; the 401
        // retry in `call` covers that window.
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        state.issued += 1;
        let generation = state.issued;
        state.current = Some(Token {
            header: header.clone(),
            refresh_at: Instant::now() + lifetime - margin,
            generation,
        });
        Ok((header, generation))
    }

    /// Drops the token a call was refused with, unless another call already replaced it.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.token.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            state.current = None;
        }
    }

    async fn fetch_token(&self) -> Result<(SecretString, Duration), CatalogError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct TokenAnswer {
            access_token: String,
            expires_in: Option<f64>,
            token_type: Option<String>,
        }
        let url = self.url(&["v1", "auth", "access_token"]);
        let body = Bytes::from(
            json!({"clientId": self.cfg.client_id, "clientSecret": self.cfg.client_secret.expose_secret()})
                .to_string(),
        );
        let answer = self
            .send(
                || self.request(Method::POST, url.clone(), Agent::Plain, Some(body.clone())),
                true,
                "fetching a token",
            )
            .await?;
        match answer.status.as_u16() {
            200..=299 => {
                let t: TokenAnswer = answer.json("fetching a token")?;
                let kind = t.token_type.unwrap_or_else(|| "Bearer".to_owned());
                // Port documents 3 hours; assume that when the answer does not say.
                let lifetime =
                    Duration::from_secs_f64(t.expires_in.filter(|s| *s > 0.0).unwrap_or(10_800.0));
                let header = SecretString::from(format!("{kind} {}", t.access_token));
                Ok((header, lifetime))
            }
            401 | 403 => Err(CatalogError::Unauthorized(
                answer.failure("fetching a token").with_detail(format!(
                    "the catalog refused client id {:?}",
                    self.cfg.client_id
                )),
            )),
            _ => Err(answer.into_error("fetching a token")),
        }
    }

    // Transport.

    fn request(
        &self,
        method: Method,
        url: Url,
        agent: Agent,
        body: Option<Bytes>,
    ) -> reqwest::RequestBuilder {
        let ua = match agent {
            Agent::Exporter => &self.datasource,
            Agent::Plain => &self.agent,
        };
        let mut req = self.http.request(method, url).header(USER_AGENT, ua);
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        req
    }

    /// An authenticated call. A 401 drops the token and retries once with a fresh one (Port tokens
    /// expire after 3 hours, possibly mid-resync); a second 401 means the credentials are refused.
    async fn call(
        &self,
        method: Method,
        url: Url,
        agent: Agent,
        body: Option<Bytes>,
        retryable: bool,
        what: &str,
    ) -> Result<Answer, CatalogError> {
        let mut refused = None;
        for refreshed in [false, true] {
            let (auth, generation) = self.token().await?;
            let answer = self
                .send(
                    || {
                        self.request(method.clone(), url.clone(), agent, body.clone())
                            .header(AUTHORIZATION, auth.expose_secret())
                    },
                    retryable,
                    what,
                )
                .await?;
            if answer.status != StatusCode::UNAUTHORIZED {
                return Ok(answer);
            }
            if !refreshed {
                self.invalidate(generation).await;
            }
            refused = Some(answer);
        }
        let failure = match refused {
            Some(answer) => answer.failure(what),
            None => Failure::default().with_context(what),
        };
        Err(CatalogError::Unauthorized(
            failure.with_detail("the catalog refused a freshly issued token"),
        ))
    }

    /// Sends a request under the retry policy. Every POST this client makes is idempotent (upserts,
    /// deletes by id, searches, token), so retrying after a lost answer is safe. Answers that are not
    /// retried come back to the caller to interpret.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        retryable: bool,
        what: &str,
    ) -> Result<Answer, CatalogError> {
        let mut attempt = 0u32;
        let mut backoff = BACKOFF.waits();
        loop {
            let (client, request) = build().build_split();
            let request = request.map_err(|e| {
                CatalogError::Invalid(
                    Failure::new("building the request")
                        .with_context(what)
                        .with_source(e.without_url()),
                )
            })?;
            // Named by method and path only: the query may hold search filters or cursors.
            let route = Route::new(request.method(), request.url().path());
            let failure = Failure::request(route.clone()).with_context(what);
            let failure = match client.execute(request).await {
                Ok(resp) => {
                    let status = resp.status();
                    if retryable && retries_status(status.as_u16()) {
                        let wait = server_wait(resp.headers(), Utc::now());
                        let body = resp.bytes().await.unwrap_or_default();
                        failure
                            .with_status(status.as_u16())
                            .with_retry_after(wait)
                            .with_body(String::from_utf8_lossy(&body))
                    } else {
                        match resp.bytes().await {
                            Ok(body) => {
                                return Ok(Answer {
                                    route,
                                    status,
                                    body,
                                });
                            }
                            Err(e) => failure
                                .with_status(status.as_u16())
                                .with_detail("reading the answer")
                                .with_source(e.without_url()),
                        }
                    }
                }
                Err(e) => failure.with_source(e.without_url()),
            };
            if !retryable || attempt >= self.cfg.max_retries {
                return Err(CatalogError::Transient(
                    failure.with_detail(format!("after {} attempt(s)", attempt + 1)),
                ));
            }
            // Drawn on every retry, so our step grows with the attempts even while Port
            // names the waits.
            let delay = retry_delay(failure.retry_after(), backoff.next_wait());
            tracing::warn!(
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                failure = %failure,
                "catalog call retried"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    // Upserts.

    async fn upsert_chunk(
        &self,
        blueprint: &str,
        chunk: Chunk,
        opts: &WriteOptions,
    ) -> Result<Vec<Placed>, CatalogError> {
        #[derive(Deserialize)]
        struct BulkAnswer {
            #[serde(default)]
            entities: Vec<BulkDone>,
            #[serde(default)]
            errors: Vec<BulkError>,
        }
        #[derive(Deserialize)]
        struct BulkDone {
            index: usize,
            identifier: Value,
            #[serde(default)]
            created: bool,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct BulkError {
            index: usize,
            status_code: Option<u16>,
            error: Option<String>,
            message: Option<String>,
        }

        let url = self.upsert_url(blueprint, true, opts);
        let answer = self
            .call(
                Method::POST,
                url,
                Agent::Exporter,
                Some(chunk.body()),
                true,
                "bulk upsert",
            )
            .await?;
        let status = answer.status.as_u16();
        if status == 413 {
            // Port measured the body differently than we did: one request per entity instead.
            let mut out = Vec::with_capacity(chunk.indices.len());
            for (&index, body) in chunk.indices.iter().zip(chunk.bodies) {
                out.push((index, self.upsert_single(blueprint, body, opts).await?));
            }
            return Ok(out);
        }
        if !matches!(status, 200 | 201 | 207) {
            let failed = answer.failed();
            return Ok(chunk.indices.iter().map(|&i| (i, failed.clone())).collect());
        }
        let parsed: BulkAnswer = answer.json("bulk upsert")?;
        let mut slots: Vec<Option<UpsertOutcome>> = vec![None; chunk.indices.len()];
        for done in parsed.entities {
            if let Some(slot) = slots.get_mut(done.index) {
                *slot = Some(UpsertOutcome::Upserted {
                    identifier: super::identifier_string(&done.identifier),
                    created: done.created,
                });
            }
        }
        for err in parsed.errors {
            if let Some(slot) = slots.get_mut(err.index) {
                *slot = Some(UpsertOutcome::Failed {
                    status: err.status_code.unwrap_or(status),
                    error: err.error.unwrap_or_else(|| "unknown_error".to_owned()),
                    message: err.message.unwrap_or_default(),
                });
            }
        }
        Ok(chunk
            .indices
            .iter()
            .zip(slots)
            .map(|(&i, slot)| {
                let outcome = slot.unwrap_or_else(|| UpsertOutcome::Failed {
                    status,
                    error: "missing_result".to_owned(),
                    message: "the catalog answered without a result for this entity".to_owned(),
                });
                (i, outcome)
            })
            .collect())
    }

    async fn upsert_single(
        &self,
        blueprint: &str,
        body: Bytes,
        opts: &WriteOptions,
    ) -> Result<UpsertOutcome, CatalogError> {
        #[derive(Deserialize)]
        struct SingleAnswer {
            entity: Option<SingleEntity>,
        }
        #[derive(Deserialize)]
        struct SingleEntity {
            identifier: Value,
        }
        let url = self.upsert_url(blueprint, false, opts);
        let answer = self
            .call(
                Method::POST,
                url,
                Agent::Exporter,
                Some(body),
                true,
                "upsert",
            )
            .await?;
        match answer.status.as_u16() {
            200 | 201 => {
                let parsed: SingleAnswer = answer.json("upsert")?;
                let identifier = parsed
                    .entity
                    .map(|e| super::identifier_string(&e.identifier))
                    .ok_or_else(|| {
                        CatalogError::Permanent(
                            answer
                                .failure("upsert")
                                .with_detail("the answer has no entity"),
                        )
                    })?;
                Ok(UpsertOutcome::Upserted {
                    identifier,
                    created: answer.status == StatusCode::CREATED,
                })
            }
            _ => Ok(answer.failed()),
        }
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// An outcome and the input index of its entity.
type Placed = (usize, UpsertOutcome);

/// Entities of one bulk request, pre-serialized so sizing and retries reuse the bytes.
#[derive(Default)]
struct Chunk {
    indices: Vec<usize>,
    bodies: Vec<Bytes>,
    size: usize,
}

impl Chunk {
    fn body(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.size);
        out.extend_from_slice(b"{\"entities\":[");
        for (i, b) in self.bodies.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b);
        }
        out.extend_from_slice(b"]}");
        Bytes::from(out)
    }

    /// The body size with one more entity.
    fn size_with(&self, entity: usize) -> usize {
        // n + 1 entities need n separators.
        BULK_ENVELOPE_BYTES
            + self.bodies.iter().map(Bytes::len).sum::<usize>()
            + self.bodies.len()
            + entity
    }
}

/// Splits entities into bulk chunks of at most 20 entities and 1 MiB of body. An entity that alone
/// exceeds the limit cannot be sent at all: it is failed here with Port's 413.
fn chunk_entities(entities: &[Entity]) -> Result<(Vec<Chunk>, Vec<Placed>), CatalogError> {
    let mut chunks = Vec::new();
    let mut too_big = Vec::new();
    let mut current = Chunk::default();
    for (index, entity) in entities.iter().enumerate() {
        let body = Bytes::from(serde_json::to_vec(entity).map_err(|e| {
            CatalogError::Permanent(Failure::new("serializing an entity").with_source(e))
        })?);
        if BULK_ENVELOPE_BYTES + body.len() > MAX_BODY_BYTES {
            too_big.push((
                index,
                UpsertOutcome::Failed {
                    status: 413,
                    error: "payload_too_large".to_owned(),
                    message: format!(
                        "the entity is {} bytes; the catalog accepts at most {MAX_BODY_BYTES}",
                        body.len()
                    ),
                },
            ));
            continue;
        }
        if current.indices.len() == MAX_BULK_ENTITIES
            || current.size_with(body.len()) > MAX_BODY_BYTES
        {
            chunks.push(std::mem::take(&mut current));
        }
        current.size = current.size_with(body.len());
        current.indices.push(index);
        current.bodies.push(body);
    }
    if !current.indices.is_empty() {
        chunks.push(current);
    }
    Ok((chunks, too_big))
}

#[async_trait]
impl Catalog for PortClient {
    async fn upsert(
        &self,
        blueprint: &str,
        entities: &[Entity],
        opts: &WriteOptions,
    ) -> Result<Vec<UpsertOutcome>, CatalogError> {
        let (chunks, too_big) = chunk_entities(entities)?;
        let mut outcomes: Vec<Option<UpsertOutcome>> = vec![None; entities.len()];
        for (i, o) in too_big {
            outcomes[i] = Some(o);
        }
        let results: Vec<Vec<Placed>> = stream::iter(chunks)
            .map(|chunk| self.upsert_chunk(blueprint, chunk, opts))
            .buffer_unordered(CHUNK_CONCURRENCY)
            .try_collect()
            .await?;
        for (i, o) in results.into_iter().flatten() {
            outcomes[i] = Some(o);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every entity is in a chunk or failed"))
            .collect())
    }

    async fn find(
        &self,
        blueprint: &str,
        identifiers: &[String],
    ) -> Result<Vec<Entity>, CatalogError> {
        #[derive(Deserialize)]
        struct SearchAnswer {
            entities: Vec<Entity>,
        }
        let mut url = self.url(&["v1", "entities", "search"]);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("exclude_calculated_properties", "true");
            for field in [
                "blueprint",
                "identifier",
                "title",
                "icon",
                "team",
                "properties",
                "relations",
            ] {
                q.append_pair("include", field);
            }
        }
        let found: Vec<Vec<Entity>> = stream::iter(
            identifiers.chunks(FIND_CHUNK).map(<[String]>::to_vec),
        )
        .map(|ids: Vec<String>| {
            let url = url.clone();
            async move {
                let body = json!({"combinator": "and", "rules": [
                    {"property": "$identifier", "operator": "in", "value": ids},
                    {"property": "$blueprint", "operator": "=", "value": blueprint},
                    {"property": "$datasource", "operator": "contains", "value": self.owned_prefix},
                    {"property": "$datasource", "operator": "contains", "value": self.owned_suffix},
                ]});
                let answer = self
                    .call(
                        Method::POST,
                        url,
                        Agent::Exporter,
                        Some(Bytes::from(body.to_string())),
                        true,
                        "search",
                    )
                    .await?;
                if !answer.status.is_success() {
                    return Err(answer.into_error("search"));
                }
                Ok(answer.json::<SearchAnswer>("search")?.entities)
            }
        })
        .buffer_unordered(CHUNK_CONCURRENCY)
        .try_collect()
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn owned(
        &self,
        before: DateTime<Utc>,
        cursor: Option<String>,
    ) -> Result<OwnedPage, CatalogError> {
        /// Only the key of each entity is kept; serde skips the rest while parsing.
        #[derive(Deserialize)]
        struct Key {
            identifier: Value,
            blueprint: String,
        }
        #[derive(Deserialize)]
        struct OwnedAnswer {
            entities: Vec<Key>,
            next: Option<String>,
        }
        let url = self.url(&["v1", "blueprints", "entities", "datasource-entities"]);
        let mut body = json!({
            "datasource_prefix": self.owned_prefix,
            "datasource_suffix": self.owned_suffix,
            "limit": OWNED_PAGE,
            // Truncating to milliseconds moves the cutoff earlier, never later: at worst an entity written in
            // the same millisecond as the resync start is kept rather than considered for deletion.
            "before": before.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        if let Some(c) = cursor {
            body["from"] = Value::String(c);
        }
        let answer = self
            .call(
                Method::POST,
                url,
                Agent::Exporter,
                Some(Bytes::from(body.to_string())),
                true,
                "ownership listing",
            )
            .await?;
        if !answer.status.is_success() {
            return Err(answer.into_error("ownership listing"));
        }
        let parsed: OwnedAnswer = answer.json("ownership listing")?;
        Ok(OwnedPage {
            entities: parsed
                .entities
                .iter()
                .map(|k| EntityKey::new(&k.blueprint, &k.identifier))
                .collect(),
            next: parsed.next.filter(|n| !n.is_empty()),
        })
    }

    async fn delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, CatalogError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct DeleteAnswer {
            #[serde(default)]
            deleted_entities: Vec<Value>,
        }
        let mut url = self.url(&["v1", "blueprints", blueprint, "bulk", "entities", "delete"]);
        url.query_pairs_mut()
            .append_pair("delete_dependents", bool_str(delete_dependents));
        self.write_query(&mut url, opts);
        let deleted: Vec<Vec<String>> =
            stream::iter(identifiers.chunks(DELETE_CHUNK).map(<[String]>::to_vec))
                .map(|ids: Vec<String>| {
                    let url = url.clone();
                    async move {
                        let body = Bytes::from(json!({"entities": ids}).to_string());
                        let answer = self
                            .call(
                                Method::POST,
                                url,
                                Agent::Exporter,
                                Some(body),
                                true,
                                "bulk delete",
                            )
                            .await?;
                        if !answer.status.is_success() {
                            return Err(answer.into_error("bulk delete"));
                        }
                        let parsed: DeleteAnswer = answer.json("bulk delete")?;
                        Ok(parsed
                            .deleted_entities
                            .iter()
                            .map(super::identifier_string)
                            .collect())
                    }
                })
                .buffer_unordered(CHUNK_CONCURRENCY)
                .try_collect()
                .await?;
        Ok(deleted.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(id: usize, filler: usize) -> Entity {
        serde_json::from_value(json!({
            "identifier": format!("e{id}"), "blueprint": "repo",
            "properties": {"blob": "x".repeat(filler)}
        }))
        .unwrap()
    }

    #[test]
    fn chunks_hold_at_most_twenty_entities() {
        let entities: Vec<_> = (0..45).map(|i| entity(i, 10)).collect();
        let (chunks, too_big) = chunk_entities(&entities).unwrap();
        assert!(too_big.is_empty());
        assert_eq!(
            chunks.iter().map(|c| c.indices.len()).collect::<Vec<_>>(),
            vec![20, 20, 5]
        );
    }

    #[test]
    fn chunks_stay_under_one_mebibyte_and_the_size_estimate_is_exact() {
        let entities: Vec<_> = (0..7).map(|i| entity(i, 300_000)).collect();
        let (chunks, _) = chunk_entities(&entities).unwrap();
        assert_eq!(
            chunks.iter().map(|c| c.indices.len()).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        for c in &chunks {
            let body = c.body();
            assert_eq!(body.len(), c.size);
            assert!(body.len() <= MAX_BODY_BYTES);
            serde_json::from_slice::<Value>(&body).unwrap();
        }
    }

    #[test]
    fn an_entity_over_the_limit_alone_fails_without_being_sent() {
        let entities = vec![entity(0, 10), entity(1, MAX_BODY_BYTES), entity(2, 10)];
        let (chunks, too_big) = chunk_entities(&entities).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].indices, vec![0, 2]);
        assert!(matches!(
            too_big.as_slice(),
            [(1, UpsertOutcome::Failed { status: 413, .. })]
        ));
    }

    #[test]
    fn only_throttling_timeouts_and_gateway_errors_are_retried() {
        for s in [408, 429, 502, 503, 504] {
            assert!(retries_status(s), "{s}");
        }
        for s in [400, 401, 404, 413, 422, 500] {
            assert!(!retries_status(s), "{s}");
        }
    }

    #[test]
    fn a_server_wait_replaces_our_backoff_up_to_a_minute() {
        let ours = Duration::from_millis(300);
        assert_eq!(retry_delay(None, ours), ours);
        assert_eq!(
            retry_delay(Some(Duration::from_secs(2)), ours),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(Some(Duration::from_secs(600)), ours),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn our_backoff_starts_at_two_hundred_milliseconds_doubles_and_is_capped() {
        let mut waits = BACKOFF.waits();
        for n in 0..3 {
            let step = 200.0 * 2f64.powi(n);
            let ms = waits.next_wait().as_secs_f64() * 1000.0;
            assert!(
                ms >= step - 0.01 && ms < 2.0 * step + 0.01,
                "retry {}: {ms} ms",
                n + 1
            );
        }
        for _ in 0..30 {
            assert!(waits.next_wait() <= Duration::from_secs(10));
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let cfg = PortConfig::new("id", SecretString::from("hunter2-secret"), "ado", "0.1.0");
        let client = PortClient::new(cfg.clone()).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let mut cfg = PortConfig::new("id", SecretString::from("s"), "ado", "0.1.0");
        cfg.base_url = Url::parse("http://127.0.0.1:9/catalog").unwrap();
        let client = PortClient::new(cfg).unwrap();
        let opts = WriteOptions {
            merge: true,
            create_missing_related_entities: false,
            reason: super::super::WriteReason::Resync,
            resync_id: Some("abc".into()),
        };
        assert_eq!(
            client.upsert_url("my bp", true, &opts).as_str(),
            "http://127.0.0.1:9/catalog/v1/blueprints/my%20bp/entities/bulk?upsert=true&merge=true\
             &create_missing_related_entities=false&validation_only=false&ocean_info_event_type=resync\
             &ocean_info_resync_id=abc"
        );
    }
}
