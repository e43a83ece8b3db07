//! The routes of the simulated catalog API and their Port-shaped answers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use shared::catalog::Entity;
use shared::catalog::store::{StoreError, StoredEntity};

use super::CatalogSim;

type Sim = State<Arc<CatalogSim>>;
pub(super) type ApiResult = Result<Response, ApiError>;

/// Port's documented bulk limits.
const MAX_BULK_ENTITIES: usize = 20;
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(super) fn routes() -> Router<Arc<CatalogSim>> {
    Router::new()
        .route("/v1/auth/access_token", post(access_token))
        .route("/v1/organization", get(organization))
        .route("/v1/integration", post(create_integration))
        .route("/v1/integration/provision-enabled", get(provision_enabled))
        .route(
            "/v1/integration/{id}",
            get(integration).patch(patch_integration),
        )
        .route(
            "/v1/integration/{id}/config",
            patch(patch_integration_config),
        )
        .route(
            "/v1/integration/{id}/resync-state",
            patch(patch_resync_state),
        )
        .route("/v1/integration/{id}/kinds/{kind}/examples", post(accept))
        .route("/v1/blueprints", get(blueprints).post(create_blueprint))
        .route(
            "/v1/blueprints/{bp}",
            get(blueprint)
                .patch(patch_blueprint)
                .delete(delete_blueprint),
        )
        .route("/v1/blueprints/{bp}/entities", post(upsert_single))
        .route("/v1/blueprints/{bp}/entities/bulk", post(upsert_bulk))
        .route(
            "/v1/blueprints/{bp}/entities/{id}",
            get(entity).delete(delete_single),
        )
        .route(
            "/v1/blueprints/{bp}/bulk/entities/delete",
            post(delete_bulk),
        )
        .route(
            "/v1/blueprints/{bp}/all-entities",
            axum::routing::delete(delete_all),
        )
        .route(
            "/v1/blueprints/entities/datasource-entities",
            post(datasource_entities),
        )
        .route("/v1/migrations/{id}", get(migration))
        .route("/v1/entities/search", post(search))
        .route("/ingest/{*rest}", any(accept))
        .route("/_catalog/entities", get(dump))
}

/// An error answer in Port's shape: `{ok: false, error, message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: String,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: error.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"ok": false, "error": self.error, "message": self.message})),
        )
            .into_response()
    }
}

pub(super) fn ok(body: Value) -> ApiResult {
    Ok(Json(body).into_response())
}

pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid: {e}")))
}

/// The writer's `User-Agent`, which Port records as `$datasource`.
fn datasource(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// Auth, organization, integration.

async fn access_token(State(sim): Sim, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Credentials {
        client_id: String,
        client_secret: String,
    }
    let creds: Credentials = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "clientId and clientSecret are required",
        )
    })?;
    let token = sim
        .issue_token(&creds.client_id, &creds.client_secret)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "unknown client id or secret",
            )
        })?;
    ok(
        json!({"ok": true, "accessToken": token, "expiresIn": sim.opts.token_ttl.as_secs(), "tokenType": "Bearer"}),
    )
}

async fn organization() -> ApiResult {
    // No feature flags: with none, Ocean maps in-process instead of shipping raw data (DSP mode).
    ok(
        json!({"ok": true, "organization": {"id": "org_local", "name": "Local catalog", "featureFlags": []}}),
    )
}

async fn provision_enabled() -> ApiResult {
    ok(json!({"ok": true, "integrations": []}))
}

/// The integration as answered: ingest URLs (logs, metrics, lakehouse) point back at this server, so
/// a client posting there does not reach out anywhere.
fn integration_answer(
    mut body: Value,
    headers: &HeaderMap,
    original: &Uri,
    uri: &Uri,
) -> ApiResult {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let prefix = original.path().strip_suffix(uri.path()).unwrap_or("");
    if let Some(obj) = body.as_object_mut() {
        for (key, kind) in [
            ("logAttributes", "logs"),
            ("metricAttributes", "metrics"),
            ("ingestAttributes", "lake"),
        ] {
            let attrs = obj.entry(key).or_insert_with(|| json!({}));
            if attrs.get("ingestUrl").is_none()
                && let Some(a) = attrs.as_object_mut()
            {
                a.insert(
                    "ingestUrl".into(),
                    json!(format!("http://{host}{prefix}/ingest/{kind}")),
                );
            }
        }
    }
    ok(json!({"ok": true, "integration": body}))
}

async fn integration(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> ApiResult {
    let body = sim
        .store
        .integration(&id)?
        .ok_or_else(|| ApiError::not_found(format!("integration {id:?}")))?;
    integration_answer(body, &headers, &original, &uri)
}

async fn create_integration(
    State(sim): Sim,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let mut body: Map<String, Value> = parse_json(&body)?;
    let id = body
        .get("installationId")
        .or_else(|| body.get("identifier"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("installationId is required"))?
        .to_owned();
    body.insert("identifier".into(), json!(id));
    body.entry("installationType").or_insert(json!("OnPrem"));
    body.entry("config").or_insert(json!({}));
    body.entry("resyncState").or_insert(Value::Null);
    let body = Value::Object(body);
    sim.store.put_integration(&id, &body)?;
    integration_answer(body, &headers, &original, &uri)
}

async fn patch_integration(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let patch: Value = parse_json(&body)?;
    let body = sim
        .store
        .patch_integration(&id, &patch)?
        .ok_or_else(|| ApiError::not_found(format!("integration {id:?}")))?;
    integration_answer(body, &headers, &original, &uri)
}

async fn patch_integration_config(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let patch: Value = parse_json(&body)?;
    let config = patch.get("config").cloned().unwrap_or(Value::Null);
    let body = sim
        .store
        .patch_integration(&id, &json!({"config": config}))?
        .ok_or_else(|| ApiError::not_found(format!("integration {id:?}")))?;
    integration_answer(body, &headers, &original, &uri)
}

async fn patch_resync_state(
    State(sim): Sim,
    Path(id): Path<String>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let patch: Map<String, Value> = parse_json(&body)?;
    let current = sim
        .store
        .integration(&id)?
        .ok_or_else(|| ApiError::not_found(format!("integration {id:?}")))?;
    let mut state = current
        .get("resyncState")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    state.extend(patch);
    state.insert("updatedAt".into(), json!(Utc::now().to_rfc3339()));
    let body = sim
        .store
        .patch_integration(&id, &json!({"resyncState": state}))?
        .ok_or_else(|| ApiError::not_found(format!("integration {id:?}")))?;
    integration_answer(body, &headers, &original, &uri)
}

/// Examples, logs and metrics: accepted and dropped.
async fn accept() -> ApiResult {
    ok(json!({"ok": true}))
}

// Blueprints.

async fn blueprints(State(sim): Sim) -> ApiResult {
    ok(json!({"ok": true, "blueprints": sim.store.blueprints()?}))
}

async fn blueprint(State(sim): Sim, Path(bp): Path<String>) -> ApiResult {
    let body = sim
        .store
        .blueprint(&bp)?
        .ok_or_else(|| ApiError::not_found(format!("blueprint {bp:?}")))?;
    ok(json!({"ok": true, "blueprint": body}))
}

async fn create_blueprint(State(sim): Sim, body: Bytes) -> ApiResult {
    let body: Value = parse_json(&body)?;
    let id = body
        .get("identifier")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("a blueprint needs an identifier"))?;
    if sim.store.blueprint(id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "identifier_taken",
            format!("blueprint {id:?} exists"),
        ));
    }
    check_relation_targets(&sim, id, &body)?;
    sim.store.put_blueprint(&body)?;
    ok(json!({"ok": true, "blueprint": body}))
}

/// Port refuses a relation whose target blueprint does not exist, which is why Ocean creates default
/// blueprints bare first and adds relations afterwards. A blueprint may relate to itself.
fn check_relation_targets(sim: &CatalogSim, id: &str, body: &Value) -> Result<(), ApiError> {
    let relations = body.get("relations").and_then(Value::as_object);
    for (name, relation) in relations.into_iter().flatten() {
        let target = relation
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(format!("relation {name:?} has no target")))?;
        if target != id && sim.store.blueprint(target)?.is_none() {
            return Err(ApiError::not_found(format!(
                "relation {name:?} of blueprint {id:?}: target blueprint {target:?} does not exist"
            )));
        }
    }
    Ok(())
}

async fn patch_blueprint(State(sim): Sim, Path(bp): Path<String>, body: Bytes) -> ApiResult {
    let patch: Value = parse_json(&body)?;
    check_relation_targets(&sim, &bp, &patch)?;
    let body = sim
        .store
        .patch_blueprint(&bp, &patch)?
        .ok_or_else(|| ApiError::not_found(format!("blueprint {bp:?}")))?;
    ok(json!({"ok": true, "blueprint": body}))
}

async fn delete_blueprint(State(sim): Sim, Path(bp): Path<String>) -> ApiResult {
    if !sim.store.delete_blueprint(&bp)? {
        return Err(ApiError::not_found(format!("blueprint {bp:?}")));
    }
    ok(json!({"ok": true}))
}

// Entity writes.

#[derive(Deserialize)]
struct WriteParams {
    #[serde(default)]
    merge: bool,
    #[serde(default)]
    create_missing_related_entities: bool,
}

/// Parses one entity of a write to blueprint `bp`; a missing blueprint is taken from the path.
fn entity_for(sim: &CatalogSim, bp: &str, mut raw: Value) -> Result<Entity, ApiError> {
    let shown = raw
        .get("identifier")
        .map(shared::catalog::identifier_string)
        .unwrap_or_else(|| "unknown".into());
    if let Some(obj) = raw.as_object_mut() {
        obj.entry("blueprint").or_insert_with(|| json!(bp));
    }
    let entity: Entity = serde_json::from_value(raw)
        .map_err(|e| ApiError::invalid(format!("entity {shown:?} is not valid: {e}")))?;
    if entity.blueprint != bp {
        return Err(ApiError::invalid(format!(
            "entity {shown:?} is of blueprint {:?}, not {bp:?}",
            entity.blueprint
        )));
    }
    if sim.opts.strict_blueprints && sim.store.blueprint(bp)?.is_none() {
        return Err(ApiError::not_found(format!(
            "blueprint {bp:?} does not exist"
        )));
    }
    Ok(entity)
}

/// How an entity refused by an injected fault is answered (see `FaultAction::RejectEntity`).
fn rejected(identifier: &str) -> ApiError {
    ApiError::invalid(format!(
        "entity {identifier:?} does not match its blueprint (refused by an injected fault)"
    ))
}

fn shown_identifier(raw: &Value) -> String {
    raw.get("identifier")
        .map(shared::catalog::identifier_string)
        .unwrap_or_else(|| "unknown".into())
}

async fn upsert_single(
    State(sim): Sim,
    Path(bp): Path<String>,
    Query(params): Query<WriteParams>,
    OriginalUri(original): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body exceeds 1 MiB",
        ));
    }
    let raw: Value = parse_json(&body)?;
    let shown = shown_identifier(&raw);
    if sim
        .rejected_entity(original.path(), std::slice::from_ref(&shown))
        .is_some()
    {
        return Err(rejected(&shown));
    }
    let entity = entity_for(&sim, &bp, raw)?;
    let done = sim.store.upsert(
        &entity,
        &datasource(&headers),
        params.merge,
        params.create_missing_related_entities,
        Utc::now(),
    )?;
    let stored = sim
        .store
        .get(&bp, &done.identifier)?
        .ok_or_else(|| ApiError::not_found("entity vanished"))?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"ok": true, "entity": stored.to_json()})),
    )
        .into_response())
}

async fn upsert_bulk(
    State(sim): Sim,
    Path(bp): Path<String>,
    Query(params): Query<WriteParams>,
    OriginalUri(original): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    struct Bulk {
        entities: Vec<Value>,
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body exceeds 1 MiB",
        ));
    }
    let bulk: Bulk = parse_json(&body)?;
    if bulk.entities.is_empty() || bulk.entities.len() > MAX_BULK_ENTITIES {
        return Err(ApiError::invalid(format!(
            "a bulk upsert takes 1 to {MAX_BULK_ENTITIES} entities, not {}",
            bulk.entities.len()
        )));
    }

    let shown: Vec<String> = bulk.entities.iter().map(shown_identifier).collect();
    let refused = sim.rejected_entity(original.path(), &shown);
    let mut errors = Vec::new();
    let mut valid = Vec::new(); // (index, entity)
    for ((index, raw), shown) in bulk.entities.into_iter().enumerate().zip(shown) {
        let checked = if refused == Some(index) {
            Err(rejected(&shown))
        } else {
            entity_for(&sim, &bp, raw)
        };
        match checked {
            Ok(e) => valid.push((index, e)),
            Err(e) => errors.push(bulk_error(
                index,
                &shown,
                e.status.as_u16(),
                &e.error,
                &e.message,
            )),
        }
    }
    let batch: Vec<Entity> = valid.iter().map(|(_, e)| e.clone()).collect();
    let results = sim.store.upsert_many(
        &batch,
        &datasource(&headers),
        params.merge,
        params.create_missing_related_entities,
        Utc::now(),
    )?;
    let mut done = Vec::new();
    for ((index, entity), result) in valid.iter().zip(results) {
        match result {
            Ok(r) => {
                done.push(json!({"index": index, "identifier": r.identifier, "created": r.created}))
            }
            Err(e) => {
                let shown = shared::catalog::identifier_string(&entity.identifier);
                let id = e.identifier().unwrap_or(&shown).to_owned();
                errors.push(bulk_error(
                    *index,
                    &id,
                    e.status(),
                    e.code(),
                    &e.to_string(),
                ));
            }
        }
    }
    errors.sort_by_key(|e| e["index"].as_u64());
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(json!({"ok": true, "entities": done, "errors": errors})),
    )
        .into_response())
}

fn bulk_error(index: usize, identifier: &str, status: u16, error: &str, message: &str) -> Value {
    json!({"index": index, "identifier": identifier, "statusCode": status, "error": error, "message": message})
}

#[derive(Deserialize)]
struct DeleteParams {
    #[serde(default)]
    delete_dependents: bool,
}

async fn delete_bulk(
    State(sim): Sim,
    Path(bp): Path<String>,
    Query(params): Query<DeleteParams>,
    body: Bytes,
) -> ApiResult {
    #[derive(Deserialize)]
    struct Ids {
        entities: Vec<Value>,
    }
    let ids: Ids = parse_json(&body)?;
    let ids: Vec<String> = ids
        .entities
        .iter()
        .map(shared::catalog::identifier_string)
        .collect();
    let deleted = sim.store.delete(&bp, &ids, params.delete_dependents)?;
    ok(json!({"ok": true, "deletedEntities": deleted}))
}

async fn delete_single(
    State(sim): Sim,
    Path((bp, id)): Path<(String, String)>,
    Query(params): Query<DeleteParams>,
) -> ApiResult {
    if sim
        .store
        .delete(&bp, std::slice::from_ref(&id), params.delete_dependents)?
        .is_empty()
    {
        return Err(ApiError::not_found(format!("entity {bp}/{id}")));
    }
    ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct DeleteAllParams {
    #[serde(default)]
    delete_blueprint: bool,
}

/// Port runs this as a migration; here it is done at once and the migration is always complete.
async fn delete_all(
    State(sim): Sim,
    Path(bp): Path<String>,
    Query(params): Query<DeleteAllParams>,
) -> ApiResult {
    sim.store.delete_all(&bp)?;
    if params.delete_blueprint {
        sim.store.delete_blueprint(&bp)?;
    }
    ok(json!({"ok": true, "migrationId": uuid::Uuid::new_v4().to_string()}))
}

async fn migration(Path(id): Path<String>) -> ApiResult {
    ok(json!({"ok": true, "migration": {"id": id, "status": "COMPLETED"}}))
}

// Entity reads.

async fn entity(State(sim): Sim, Path((bp, id)): Path<(String, String)>) -> ApiResult {
    let e = sim
        .store
        .get(&bp, &id)?
        .ok_or_else(|| ApiError::not_found(format!("entity {bp}/{id}")))?;
    ok(json!({"ok": true, "entity": e.to_json()}))
}

async fn search(State(sim): Sim, RawQuery(query): RawQuery, body: Bytes) -> ApiResult {
    let includes: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "include")
        .map(|(_, v)| v.into_owned())
        .collect();
    let q: Value = parse_json(&body)?;
    let found = sim.store.search(&q)?;
    let entities: Vec<Value> = found.iter().map(|e| project(e, &includes)).collect();
    ok(json!({"ok": true, "entities": entities}))
}

/// Port's `include` projection: top-level fields, or single properties and relations as
/// `properties.<name>` / `relations.<name>`. No includes means the whole entity.
fn project(e: &StoredEntity, includes: &[String]) -> Value {
    let full = e.to_json();
    if includes.is_empty() {
        return full;
    }
    let mut out = Map::new();
    for inc in includes {
        match inc.split_once('.') {
            Some((group @ ("properties" | "relations"), name)) => {
                let source = if group == "properties" {
                    &e.properties
                } else {
                    &e.relations
                };
                let target = out.entry(group).or_insert_with(|| json!({}));
                if let (Some(v), Some(t)) = (source.get(name), target.as_object_mut()) {
                    t.insert(name.to_owned(), v.clone());
                }
            }
            _ => {
                if let Some(v) = full.get(inc.as_str()) {
                    out.insert(inc.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

async fn datasource_entities(State(sim): Sim, body: Bytes) -> ApiResult {
    #[derive(Deserialize)]
    struct Listing {
        datasource_prefix: String,
        #[serde(default)]
        datasource_suffix: String,
        limit: Option<usize>,
        before: Option<String>,
        from: Option<String>,
    }
    let req: Listing = parse_json(&body)?;
    let before = req
        .before
        .as_deref()
        .map(|b| {
            DateTime::parse_from_rfc3339(b)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::invalid(format!("before {b:?} is not an ISO-8601 time: {e}"))
                })
        })
        .transpose()?;
    let limit = req.limit.unwrap_or(5000).clamp(1, 10_000);
    let (page, next) = sim.store.owned(
        &req.datasource_prefix,
        &req.datasource_suffix,
        before,
        limit,
        req.from.as_deref(),
    )?;
    // Keys only: that is what reconciliation diffs, and pages of whole entities would be large.
    let entities: Vec<Value> = page
        .iter()
        .map(|e| json!({"identifier": e.identifier, "blueprint": e.blueprint}))
        .collect();
    ok(json!({"ok": true, "entities": entities, "next": next}))
}

#[derive(Deserialize)]
struct DumpParams {
    blueprint: Option<String>,
}

/// Every entity with its `$datasource` and timestamps, for debugging. Not part of Port's API.
async fn dump(State(sim): Sim, Query(params): Query<DumpParams>) -> ApiResult {
    let entities = sim.store.list(params.blueprint.as_deref())?;
    ok(
        json!({"count": entities.len(), "entities": entities.iter().map(StoredEntity::to_json).collect::<Vec<_>>()}),
    )
}
