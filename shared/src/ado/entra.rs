//! Signing in to Azure DevOps as a Microsoft Entra ID service principal: the OAuth 2.0 client-credentials
//! flow against `{authority}/{tenantId}/oauth2/v2.0/token` for the Azure DevOps resource
//! (`499b84ac-1321-427f-aa17-267ca6975798/.default`), the token cached and refreshed before it expires.
//! One [`TokenSource`] serves every request of a client (and may be shared by several clients of the same
//! principal); concurrent requests wait for one token request instead of each sending their own.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::AdoError;
pub use crate::config::ServicePrincipal;
use crate::failure::{Failure, Route};
use crate::retry::Backoff;

/// The Azure DevOps resource's application id: its `.default` scope asks for the principal's access.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";

/// Token requests that fail on the way (5xx, throttling, the network) are tried this many more times.
const RETRIES: u32 = 2;
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
const TIMEOUT: Duration = Duration::from_secs(15);

struct Cached {
    header: SecretString,
    refresh_at: Instant,
    generation: u64,
}

/// Issues `Authorization` values for one service principal.
pub struct TokenSource {
    principal: ServicePrincipal,
    http: reqwest::Client,
    cached: Mutex<(Option<Cached>, u64)>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    pub fn new(principal: ServicePrincipal) -> Result<Self, AdoError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("ado-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AdoError::Invalid(Failure::new("building the HTTP client").with_source(e))
            })?;
        Ok(Self {
            principal,
            http,
            cached: Mutex::new((None, 0)),
        })
    }

    /// The `Authorization` value and its generation (for [`TokenSource::invalidate`]): the cached
    /// token while it has time left, else a new one.
    pub async fn header(&self) -> Result<(SecretString, u64), AdoError> {
        let mut guard = self.cached.lock().await;
        if let Some(c) = &guard.0
            && Instant::now() < c.refresh_at
        {
            return Ok((c.header.clone(), c.generation));
        }
        let (header, lifetime) = self.fetch().await?;
        // Refreshed ahead of expiry, so no request leaves with a token that lapses in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        guard.1 += 1;
        let generation = guard.1;
        guard.0 = Some(Cached {
            header: header.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
            generation,
        });
        Ok((header, generation))
    }

    /// Drops the token Azure DevOps refused, unless a newer one already replaced it.
    pub async fn invalidate(&self, generation: u64) {
        let mut guard = self.cached.lock().await;
        if guard.0.as_ref().is_some_and(|c| c.generation == generation) {
            guard.0 = None;
        }
    }

    fn token_url(&self) -> Result<Url, AdoError> {
        let mut url = self.principal.authority.clone();
        url.path_segments_mut()
            .map_err(|_| AdoError::invalid("the authority URL cannot take a path"))?
            .pop_if_empty()
            .extend([self.principal.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        Ok(url)
    }

    async fn fetch(&self) -> Result<(SecretString, Duration), AdoError> {
        let url = self.token_url()?;
        let route = Route::new("POST", url.path());
        // Built here, not kept: the secret stays in the `SecretString` between requests.
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.principal.client_id)
            .append_pair(
                "client_secret",
                self.principal.client_secret.expose_secret(),
            )
            .append_pair("scope", AZURE_DEVOPS_SCOPE)
            .finish();
        let mut waits = BACKOFF.waits();
        let mut attempt = 0;
        loop {
            let failure = Failure::request(route.clone()).with_context("signing in to Entra ID");
            let outcome = self
                .http
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.clone())
                .send()
                .await;
            let failure = match outcome {
                Ok(answer) => {
                    let status = answer.status();
                    let body = answer.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
                            AdoError::Permanent(
                                failure
                                    .with_status(status.as_u16())
                                    .with_detail("the token answer is unreadable")
                                    .with_source(e),
                            )
                        })?;
                        let kind = t.token_type.unwrap_or_else(|| "Bearer".to_owned());
                        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3599).max(60));
                        return Ok((
                            SecretString::from(format!("{kind} {}", t.access_token)),
                            lifetime,
                        ));
                    }
                    // Entra's error code and description (AADSTS…) name the problem, never the secret.
                    let detail = serde_json::from_slice::<TokenError>(&body)
                        .ok()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.error.unwrap_or_default(),
                                e.error_description
                                    .unwrap_or_default()
                                    .lines()
                                    .next()
                                    .unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                    let failure = failure.with_status(status.as_u16()).with_body(detail);
                    match status.as_u16() {
                        429 | 500..=599 => failure,
                        400 | 401 | 403 => {
                            return Err(AdoError::Unauthorized(failure.with_detail(format!(
                                "Entra ID refused the service principal {:?}",
                                self.principal.client_id
                            ))));
                        }
                        _ => return Err(AdoError::Permanent(failure)),
                    }
                }
                Err(e) => failure
                    .with_detail("transport error")
                    .with_source(e.without_url()),
            };
            if attempt >= RETRIES {
                return Err(AdoError::Transient(
                    failure.with_detail(format!("after {} attempt(s)", attempt + 1)),
                ));
            }
            attempt += 1;
            tokio::time::sleep(waits.next_wait()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn principal(authority: &str) -> ServicePrincipal {
        ServicePrincipal {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "app-id".into(),
            client_secret: SecretString::from("very-secret-value".to_owned()),
            authority: Url::parse(authority).unwrap(),
        }
    }

    /// A token endpoint: answers `status` with `body`, counting the requests and keeping the last form.
    async fn endpoint(
        status: u16,
        body: &'static str,
    ) -> (String, Arc<AtomicU32>, Arc<std::sync::Mutex<String>>) {
        let count = Arc::new(AtomicU32::new(0));
        let form = Arc::new(std::sync::Mutex::new(String::new()));
        let (c, f) = (count.clone(), form.clone());
        let app = axum::Router::new().route(
            "/{tenant}/oauth2/v2.0/token",
            axum::routing::post(move |text: String| {
                let (c, f) = (c.clone(), f.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    *f.lock().unwrap() = text;
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), count, form)
    }

    #[tokio::test]
    async fn one_token_serves_until_near_its_expiry_and_a_refused_one_is_fetched_again() {
        let (url, count, form) = endpoint(
            200,
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-1"}"#,
        )
        .await;
        let source = TokenSource::new(principal(&url)).unwrap();
        let (first, generation) = source.header().await.unwrap();
        let (again, _) = source.header().await.unwrap();
        assert_eq!(first.expose_secret(), "Bearer tok-1");
        assert_eq!(again.expose_secret(), "Bearer tok-1");
        assert_eq!(count.load(Ordering::SeqCst), 1, "cached");
        let sent = form.lock().unwrap().clone();
        for part in [
            "grant_type=client_credentials",
            "client_id=app-id",
            "scope=499b84ac-1321-427f-aa17-267ca6975798%2F.default",
        ] {
            assert!(sent.contains(part), "{sent}");
        }
        source.invalidate(generation).await;
        source.header().await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
        // An old generation does not drop the newer token.
        source.invalidate(generation).await;
        source.header().await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_secret_is_unauthorized_with_entra_s_code_and_never_the_secret() {
        let (url, count, _) = endpoint(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]}"#,
        )
        .await;
        let source = TokenSource::new(principal(&url)).unwrap();
        let e = source.header().await.unwrap_err();
        assert!(matches!(e, AdoError::Unauthorized(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("AADSTS7000215"), "{text}");
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(!format!("{source:?}").contains("very-secret-value"));
        assert_eq!(count.load(Ordering::SeqCst), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn an_unavailable_endpoint_is_retried_then_transient() {
        let (url, count, _) = endpoint(503, "{}").await;
        let source = TokenSource::new(principal(&url)).unwrap();
        let e = source.header().await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(count.load(Ordering::SeqCst), RETRIES + 1);
    }
}
