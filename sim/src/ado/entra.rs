//! Microsoft Entra ID's client-credentials flow, so a client can sign in to the simulated
//! organisation as a service principal: the v2.0 token endpoint (`POST /{tenant}/oauth2/v2.0/token`,
//! served at the simulator root so the simulator root is the authority URL), the tokens it has issued,
//! and the check the request gate makes of an `Authorization: Bearer` header.
//!
//! Error answers follow the Microsoft identity platform: a JSON body
//! `{"error", "error_description": "AADSTSnnn: …\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …",
//! "error_codes": [n], "timestamp", "trace_id", "correlation_id", "error_uri"}`, 400 except a failed
//! client authentication (`invalid_client`, 401).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::{FaultAction, fault_response, severed};
use super::org::guid;

/// The application id of Azure DevOps, the resource a token for it is requested for.
pub const ADO_RESOURCE_ID: &str = "499b84ac-1321-427f-aa17-267ca6975798";
/// The scope a client-credentials request for Azure DevOps names.
pub const ADO_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// The same resource by its application id URI, which the token endpoint also accepts.
pub const ADO_SCOPE_URI: &str = "https://app.vssps.visualstudio.com/.default";
/// The route of the token endpoint (also its key in [`AdoSim::request_counts`], after `POST `).
pub const TOKEN_ROUTE: &str = "/{tenantId}/oauth2/v2.0/token";
/// How long an issued token lives unless [`super::AdoSimOptions::entra_token_ttl`] says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3599);

const TAG_TENANT: u64 = 0x5f;

/// The one service principal (app registration) the token endpoint knows, when the simulator is
/// given one; without one it issues a token for any client id and secret in any GUID tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct EntraApp {
    /// The directory (tenant) id; a GUID or a domain such as `contoso.onmicrosoft.com`.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret's value.
    pub client_secret: String,
}

impl fmt::Debug for EntraApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraApp")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// The tokens the endpoint has issued, each with the instant it stops working.
#[derive(Default)]
pub(crate) struct EntraTokens {
    issued: AtomicU64,
    live: Mutex<HashMap<String, Instant>>,
}

impl EntraTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an `Authorization` header amounts to on an org route.
pub(crate) enum Caller {
    /// A bearer token this simulator issued, still in date.
    Bearer,
    /// A bearer token that is unknown or has expired: Azure DevOps answers 401.
    BadBearer,
    /// Basic (or no) credentials: the PAT rule decides.
    Other,
}

impl AdoSim {
    /// How many tokens the Entra token endpoint has issued (a client that caches its token asks once).
    pub fn entra_tokens_issued(&self) -> u64 {
        self.entra.issued.load(Ordering::Relaxed)
    }

    /// Every token issued so far stops working, as when they expire; new ones can be requested.
    pub fn expire_entra_tokens(&self) {
        let now = Instant::now();
        for expiry in self.entra.lock().values_mut() {
            *expiry = (*expiry).min(now);
        }
    }

    /// Whether `token` was issued here and has not expired.
    pub(crate) fn entra_token_valid(&self, token: &str) -> bool {
        self.entra
            .lock()
            .get(token)
            .is_some_and(|expiry| Instant::now() < *expiry)
    }

    /// Classifies a request's `Authorization` header.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Caller {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Caller::Other;
        };
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                if self.entra_token_valid(token.trim()) {
                    Caller::Bearer
                } else {
                    Caller::BadBearer
                }
            }
            _ => Caller::Other,
        }
    }

    /// The tenant the organisation is connected to: the configured app's, or one derived from the seed.
    pub(crate) fn entra_tenant(&self) -> String {
        match &self.opts.entra {
            Some(app) => app.tenant_id.clone(),
            None => guid(self.org.seed, TAG_TENANT, 0, 0),
        }
    }

    fn issue_token(&self, tenant: &str, client_id: &str) -> (String, Duration) {
        let ttl = self.opts.entra_token_ttl;
        let now = Utc::now().timestamp();
        let exp = now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // Shaped like the JWT Entra issues (clients must treat it as opaque); the signature is random.
        let head = b64.encode(json!({"typ": "JWT", "alg": "RS256", "kid": "sim"}).to_string());
        let claims = json!({
            "aud": ADO_RESOURCE_ID,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "appid": client_id,
            "idtyp": "app",
            "tid": tenant,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "ver": "1.0",
        });
        let sig = b64.encode(
            [
                *uuid::Uuid::new_v4().as_bytes(),
                *uuid::Uuid::new_v4().as_bytes(),
            ]
            .concat(),
        );
        let token = format!("{head}.{}.{sig}", b64.encode(claims.to_string()));
        self.entra
            .lock()
            .insert(token.clone(), Instant::now() + ttl);
        self.entra.issued.fetch_add(1, Ordering::Relaxed);
        (token, ttl)
    }
}

/// The token endpoint, with its own light gate (counted, delayed, injected faults; no `api-version`,
/// no Azure DevOps sign-in, no random faults and no rate-limit headers).
pub(crate) fn routes(sim: &Arc<AdoSim>) -> Router {
    Router::new()
        .route(TOKEN_ROUTE, post(token))
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim.clone())
}

/// `/_sim/entra/…`: token counts and expiry.
pub(crate) fn control_routes() -> Router<Arc<AdoSim>> {
    Router::new()
        .route("/_sim/entra/stats", get(stats))
        .route("/_sim/entra/expire", post(expire))
}

async fn stats(State(sim): State<Arc<AdoSim>>) -> Json<Value> {
    Json(json!({"issued": sim.entra_tokens_issued()}))
}

async fn expire(State(sim): State<Arc<AdoSim>>) -> StatusCode {
    sim.expire_entra_tokens();
    StatusCode::NO_CONTENT
}

async fn gate(State(sim): State<Arc<AdoSim>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(TOKEN_ROUTE, |m| m.as_str());
    sim.count(format!("{} {route}", req.method()));
    if !sim.opts.latency.is_zero() {
        tokio::time::sleep(sim.opts.latency).await;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path(), |p| p.as_str())
        .to_owned();
    match sim.faults.take(req.method().as_str(), &path, |_| true) {
        Some(FaultAction::Status(status)) => fault_response(status),
        Some(FaultAction::Reset) => severed(),
        Some(FaultAction::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

/// An answer of the Microsoft identity platform's token endpoint that refuses the request.
struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
    correlation_id: String,
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {}\r\nTimestamp: {timestamp}",
            self.code, self.message, self.correlation_id
        );
        let body = json!({
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": self.correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        with_no_store((self.status, Json(body)).into_response())
    }
}

fn with_no_store(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

/// A domain name a tenant may be addressed by, e.g. `contoso.onmicrosoft.com`.
fn is_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn scope_ok(scope: &str) -> bool {
    let scope = scope.trim();
    scope.eq_ignore_ascii_case(ADO_SCOPE) || scope.eq_ignore_ascii_case(ADO_SCOPE_URI)
}

/// `POST /{tenantId}/oauth2/v2.0/token` with a form body: `grant_type=client_credentials`,
/// `client_id`, `client_secret`, `scope`. Checked in the order: tenant, grant type, client id, scope
/// present, client secret, scope value.
async fn token(
    State(sim): State<Arc<AdoSim>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Entra echoes a client's `client-request-id` as the correlation id.
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_guid(v))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let fail = |status: StatusCode, error: &'static str, code: u32, message: String| {
        EntraError {
            status,
            error,
            code,
            message,
            correlation_id: correlation_id.clone(),
        }
        .into_response()
    };
    let missing = |name: &str| {
        fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    };

    let known_tenant = match &sim.opts.entra {
        Some(app) => tenant.eq_ignore_ascii_case(&app.tenant_id),
        None => is_guid(&tenant) || is_domain(&tenant),
    };
    if !known_tenant {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        );
    }

    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());

    let Some(grant_type) = param("grant_type") else {
        return missing("grant_type");
    };
    if grant_type != "client_credentials" {
        return fail(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = param("client_id") else {
        return missing("client_id");
    };
    if let Some(app) = &sim.opts.entra
        && !client_id.eq_ignore_ascii_case(&app.client_id)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }
    let Some(scope) = param("scope") else {
        return missing("scope");
    };
    let Some(secret) = param("client_secret") else {
        return fail(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into(),
        );
    };
    if let Some(app) = &sim.opts.entra
        && secret != app.client_secret
    {
        return fail(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    if !scope_ok(scope) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        );
    }

    let (access_token, ttl) = sim.issue_token(&tenant, client_id);
    let secs = ttl.as_secs();
    with_no_store(
        Json(json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": access_token,
        }))
        .into_response(),
    )
}

/// What Azure DevOps answers a request whose bearer token is unknown or expired: 401, pointing the
/// client at the organisation's Entra tenant, with its `UnauthorizedRequestException` body.
pub(crate) fn bad_bearer(sim: &AdoSim) -> Response {
    let tenant = sim.entra_tenant();
    let body = json!({
        "$id": "1",
        "innerException": null,
        "message": "TF400813: The user '' is not authorized to access this resource.",
        "typeName": "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
        "typeKey": "UnauthorizedRequestException",
        "errorCode": 0,
        "eventId": 3000,
    });
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    let headers = resp.headers_mut();
    for value in [
        format!("Bearer authorization_uri=https://login.microsoftonline.com/{tenant}"),
        "Basic realm=\"https://app.vssps.visualstudio.com/\"".to_owned(),
        "TFS-Federated".to_owned(),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&tenant) {
        headers.insert("x-vss-resourcetenant", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_guids_or_domains() {
        assert!(is_guid("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(!is_guid("72f988bf86f141af91ab2d7cd011db47"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("common"));
        assert!(!is_domain("simorg"));
        assert!(!is_domain("a..b"));
    }

    #[test]
    fn only_the_azure_devops_default_scope_is_accepted() {
        assert!(scope_ok(ADO_SCOPE));
        assert!(scope_ok(&ADO_SCOPE.to_uppercase()));
        assert!(scope_ok(ADO_SCOPE_URI));
        assert!(!scope_ok(ADO_RESOURCE_ID));
        assert!(!scope_ok("https://graph.microsoft.com/.default"));
        assert!(!scope_ok(&format!("{ADO_SCOPE} offline_access")));
    }

    #[test]
    fn the_secret_is_not_debug_printed() {
        let app = EntraApp {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "hunter2".into(),
        };
        assert!(!format!("{app:?}").contains("hunter2"));
    }
}
