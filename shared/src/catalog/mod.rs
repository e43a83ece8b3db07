//! The catalog port: what a resync or a live event needs from a Port-compatible catalog, and its adapters.
//!
//! - [`port::PortClient`]: the Port REST API (token, bulk upsert with per-entity results, search,
//!   datasource-entities listing, bulk delete).
//! - [`embedded::EmbeddedCatalog`]: a local SQLite catalog with the same semantics, for the demo and dry runs.
//! - [`defaults`]: creates the shipped blueprints and the integration record when missing
//!   (`initializePortResources`), through the small [`CatalogAdmin`] port.
//! - [`store::CatalogStore`]: the storage engine with Port's upsert/merge/ownership semantics, shared by the
//!   embedded adapter and the simulator's catalog server.

pub mod defaults;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod port;
#[cfg(feature = "embedded")]
pub mod store;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// An entity in the catalog upsert body shape. `None` means "not mapped" (the key is not sent);
/// `Some(Value::Null)` means "mapped and evaluated to null" (sent as `null`), as Port's framework does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// A string, or a search query object that the catalog resolves.
    pub identifier: Value,
    pub blueprint: String,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub title: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub icon: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub team: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relations: Option<Map<String, Value>>,
}

/// Keeps a present `null` as `Some(Value::Null)` instead of serde's default `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Entity {
    /// The key reconciliation and diffing use: blueprint plus the identifier's string form.
    pub fn key(&self) -> EntityKey {
        EntityKey::new(&self.blueprint, &self.identifier)
    }

    /// True when the identifier, a relation or the team is a search query: such entities cannot be
    /// diffed or owned by key, so they are always upserted and never deleted by key.
    pub fn uses_search(&self) -> bool {
        self.identifier.is_object()
            || self.team.as_ref().is_some_and(Value::is_object)
            || self
                .relations
                .as_ref()
                .is_some_and(|r| r.values().any(Value::is_object))
    }
}

/// (blueprint, identifier string). Numbers and strings with the same text collide on purpose: the
/// catalog stores identifiers as strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    pub blueprint: String,
    pub identifier: String,
}

impl EntityKey {
    pub fn new(blueprint: &str, identifier: &Value) -> Self {
        Self {
            blueprint: blueprint.to_owned(),
            identifier: identifier_string(identifier),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.blueprint, self.identifier)
    }
}

/// The string form of an identifier: a string as is, anything else as compact JSON (object keys are
/// sorted because `serde_json::Map` is a BTreeMap here).
pub fn identifier_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why the catalog is being written: sent as `ocean_info_event_type` so the catalog's audit log can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReason {
    Resync,
    LiveEvent,
}

impl WriteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteReason::Resync => "resync",
            WriteReason::LiveEvent => "http_request",
        }
    }
}

/// Options of one write, taken from the mapping's top-level flags.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub merge: bool,
    pub create_missing_related_entities: bool,
    pub reason: WriteReason,
    /// Set for resync writes (`ocean_info_resync_id`).
    pub resync_id: Option<String>,
}

/// What happened to one entity of an upsert, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum UpsertOutcome {
    Upserted {
        identifier: String,
        created: bool,
    },
    Failed {
        status: u16,
        error: String,
        message: String,
    },
}

/// One page of this integration's entities, from the ownership listing.
#[derive(Debug, Clone, Default)]
pub struct OwnedPage {
    pub entities: Vec<EntityKey>,
    pub next: Option<String>,
}

pub use crate::failure::{Failure, Route};

/// Errors typed by what the caller must do. Each carries the [`Failure`]: the request, status,
/// `Retry-After`, an excerpt of the answer and the underlying error.
#[derive(Debug, Clone, PartialEq)]
pub enum CatalogError {
    /// Credentials were refused; retrying will not help until they change.
    Unauthorized(Failure),
    /// The request itself is wrong (for example a body over the size limit or an unknown blueprint
    /// in strict mode); retrying the same request will not help.
    Invalid(Failure),
    /// A timeout, a 429 or a 5xx that outlived the retries: the same request may succeed later.
    Transient(Failure),
    /// Anything else that will not go away by itself (a broken local store, an unparseable answer).
    Permanent(Failure),
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Transient(_))
    }

    pub fn failure(&self) -> &Failure {
        match self {
            CatalogError::Unauthorized(f)
            | CatalogError::Invalid(f)
            | CatalogError::Transient(f)
            | CatalogError::Permanent(f) => f,
        }
    }

    /// The HTTP status the catalog answered with, when a request got that far.
    pub fn status(&self) -> Option<u16> {
        self.failure().status()
    }

    /// The request that failed, when one did.
    pub fn route(&self) -> Option<&Route> {
        self.failure().route()
    }

    /// The wait the catalog asked for, when it asked.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.failure().retry_after()
    }

    /// The same kind of error with what was being done in front.
    pub fn context(self, context: impl Into<String>) -> Self {
        self.map_failure(|f| f.with_context(context))
    }

    /// The same kind of error with its failure changed.
    pub fn map_failure(self, f: impl FnOnce(Failure) -> Failure) -> Self {
        match self {
            CatalogError::Unauthorized(x) => CatalogError::Unauthorized(f(x)),
            CatalogError::Invalid(x) => CatalogError::Invalid(f(x)),
            CatalogError::Transient(x) => CatalogError::Transient(f(x)),
            CatalogError::Permanent(x) => CatalogError::Permanent(f(x)),
        }
    }

    /// A request or setting that is wrong, described in words.
    pub fn invalid(detail: impl Into<String>) -> Self {
        CatalogError::Invalid(Failure::new(detail))
    }

    /// A failure that will not go away by itself, described in words.
    pub fn permanent(detail: impl Into<String>) -> Self {
        CatalogError::Permanent(Failure::new(detail))
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            CatalogError::Unauthorized(_) => "catalog refused the credentials",
            CatalogError::Invalid(_) => "catalog rejected the request",
            CatalogError::Transient(_) => "catalog is unavailable",
            CatalogError::Permanent(_) => "catalog failed",
        };
        write!(f, "{what}: {}", self.failure())
    }
}

/// The source is the failure's cause; the failure itself is part of the message.
impl std::error::Error for CatalogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failure().cause().map(|c| c as _)
    }
}

/// The catalog port. Implementations chunk as their wire requires (Port: ≤20 entities and ≤1 MiB per
/// bulk request) and own the ownership tag (Port's `$datasource`), so callers never see either.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Upserts entities of one blueprint. Returns one outcome per entity, in input order. An `Err` means
    /// nothing can be said about any of them (for example the catalog was unreachable).
    async fn upsert(
        &self,
        blueprint: &str,
        entities: &[Entity],
        opts: &WriteOptions,
    ) -> Result<Vec<UpsertOutcome>, CatalogError>;

    /// The stored copies of the given identifiers of one blueprint that this integration owns, for
    /// skipping unchanged entities. Missing identifiers are simply absent from the answer.
    async fn find(
        &self,
        blueprint: &str,
        identifiers: &[String],
    ) -> Result<Vec<Entity>, CatalogError>;

    /// One page of the entities this integration owns whose last update is not after `before`.
    async fn owned(
        &self,
        before: DateTime<Utc>,
        cursor: Option<String>,
    ) -> Result<OwnedPage, CatalogError>;

    /// Deletes entities of one blueprint; returns the identifiers actually deleted.
    async fn delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, CatalogError>;
}

/// What start-up needs from the catalog beyond entities: the integration record (where the mapping
/// lives) and blueprints. Only the Port API has them; the embedded catalog does not.
#[async_trait]
pub trait CatalogAdmin: Send + Sync {
    /// The integration record, `None` when it does not exist.
    async fn integration(&self) -> Result<Option<Value>, CatalogError>;
    async fn create_integration(&self, body: Value) -> Result<(), CatalogError>;
    /// A blueprint by identifier, `None` when it does not exist.
    async fn blueprint(&self, identifier: &str) -> Result<Option<Value>, CatalogError>;
    async fn create_blueprint(&self, blueprint: &Value) -> Result<(), CatalogError>;
    /// Replaces the top-level fields the patch names.
    async fn patch_blueprint(&self, identifier: &str, patch: &Value) -> Result<(), CatalogError>;
    async fn delete_blueprint(&self, identifier: &str) -> Result<(), CatalogError>;
    /// Reports the sync's state on the integration record (`running`, `completed`, `failed`,
    /// `aborted`, with timestamps), where the catalog shows it.
    async fn patch_resync_state(&self, state: &Value) -> Result<(), CatalogError>;
    /// The catalog's action-run API (self-service actions), when it has one.
    fn action_runs(&self) -> Option<&dyn crate::actions::ActionRuns> {
        None
    }
}

#[async_trait]
impl CatalogAdmin for port::PortClient {
    async fn integration(&self) -> Result<Option<Value>, CatalogError> {
        port::PortClient::integration(self).await
    }
    async fn create_integration(&self, body: Value) -> Result<(), CatalogError> {
        port::PortClient::create_integration(self, body).await
    }
    async fn blueprint(&self, identifier: &str) -> Result<Option<Value>, CatalogError> {
        port::PortClient::blueprint(self, identifier).await
    }
    async fn create_blueprint(&self, blueprint: &Value) -> Result<(), CatalogError> {
        port::PortClient::create_blueprint(self, blueprint).await
    }
    async fn patch_blueprint(&self, identifier: &str, patch: &Value) -> Result<(), CatalogError> {
        port::PortClient::patch_blueprint(self, identifier, patch).await
    }
    async fn delete_blueprint(&self, identifier: &str) -> Result<(), CatalogError> {
        port::PortClient::delete_blueprint(self, identifier).await
    }
    async fn patch_resync_state(&self, state: &Value) -> Result<(), CatalogError> {
        port::PortClient::patch_resync_state(self, state.clone()).await
    }
    fn action_runs(&self) -> Option<&dyn crate::actions::ActionRuns> {
        Some(self)
    }
}

/// The ownership tag of this integration's entity writes, in the form Port's Ocean framework sends as
/// `User-Agent` and Port stores as `$datasource`: `port-ocean/{type}/{version}/{identifier}/exporter`.
/// Both adapters use it, so an embedded catalog and Port agree on who owns what.
pub fn datasource(integration_type: &str, version: &str, identifier: &str) -> String {
    format!(
        "{}/exporter",
        user_agent(integration_type, version, identifier)
    )
}

/// The `User-Agent` of calls that are not entity writes (integration, blueprints, organization).
pub fn user_agent(integration_type: &str, version: &str, identifier: &str) -> String {
    format!("port-ocean/{integration_type}/{version}/{identifier}")
}

/// The (prefix, suffix) pair that ownership listings match a datasource against. The version sits in
/// between, so a version upgrade, or the Python integration with the same identifier, keeps ownership.
/// A datasource that does not have the Ocean shape is matched exactly.
pub fn ownership_filter(datasource: &str) -> (String, String) {
    let parts: Vec<&str> = datasource.split('/').collect();
    if parts.len() >= 5 && parts[0] == "port-ocean" {
        let n = parts.len();
        (
            format!("{}/{}/", parts[0], parts[1]),
            format!("/{}/{}", parts[n - 2], parts[n - 1]),
        )
    } else {
        (datasource.to_owned(), String::new())
    }
}

#[cfg(test)]
mod datasource_tests {
    use super::*;

    #[test]
    fn datasource_has_the_ocean_user_agent_shape() {
        assert_eq!(
            datasource("azure-devops", "0.1.0", "ado-prod"),
            "port-ocean/azure-devops/0.1.0/ado-prod/exporter"
        );
        assert_eq!(
            user_agent("azure-devops", "0.1.0", "ado-prod"),
            "port-ocean/azure-devops/0.1.0/ado-prod"
        );
    }

    #[test]
    fn ownership_filter_leaves_the_version_out() {
        let (prefix, suffix) = ownership_filter("port-ocean/azure-devops/0.1.0/ado-prod/exporter");
        assert_eq!(prefix, "port-ocean/azure-devops/");
        assert_eq!(suffix, "/ado-prod/exporter");
        assert_eq!(
            ownership_filter("custom"),
            ("custom".to_owned(), String::new())
        );
    }
}
