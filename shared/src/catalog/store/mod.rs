//! The catalog storage engine with Port's semantics: upsert with merge or replace, search identifiers
//! and relations resolved by query, `$datasource` ownership, `updatedAt` on every write. Shared by the
//! embedded catalog adapter and the simulator's catalog server, so both behave like Port.
//!
//! SQLite through rusqlite, synchronous. One connection behind a mutex: every call is one short
//! transaction, and SQLite serialises writers anyway. The schema is meant to be read with `sqlite3`:
//! JSON columns hold the entity's properties and relations as Port returns them.

mod query;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde_json::{Map, Value, json};

pub use query::{Op, Query, is_query};

use super::{Entity, EntityKey};

/// Errors of one store call or of one entity of a batch. Each entity-level variant knows the Port
/// status code and error code a catalog server answers with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The entity or query is malformed (Port: 422).
    #[error("{message}")]
    Invalid { identifier: String, message: String },
    /// A search-query identifier matched no entity or several; Port reports the identifier as `unknown`.
    #[error("the search identifier matched {matches} entities, not exactly one")]
    IdentifierNotResolved { matches: usize },
    /// A relation target does not exist and missing related entities may not be created (Port: 404
    /// `not_found`, which Ocean reads as "retry in dependency order").
    #[error(
        "relation {relation:?} of {identifier:?} points at {target_blueprint}/{target}, which does not exist"
    )]
    RelatedNotFound {
        identifier: String,
        relation: String,
        target_blueprint: String,
        target: String,
    },
    /// The blueprint is not defined (only where the caller asks for defined blueprints).
    #[error("blueprint {blueprint:?} does not exist")]
    UnknownBlueprint {
        identifier: String,
        blueprint: String,
    },
    #[error("catalog database failed: {0}")]
    Database(#[from] rusqlite::Error),
    /// A row that does not parse back: the database was edited by hand or is damaged.
    #[error("catalog database holds an unreadable row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn invalid(identifier: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            identifier: identifier.into(),
            message: message.into(),
        }
    }

    /// The HTTP status a Port-compatible server answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            StoreError::Invalid { .. } => 422,
            StoreError::IdentifierNotResolved { matches: 0 } => 404,
            StoreError::IdentifierNotResolved { .. } => 422,
            StoreError::RelatedNotFound { .. } | StoreError::UnknownBlueprint { .. } => 404,
            StoreError::Database(_) | StoreError::Corrupt(_) => 500,
        }
    }

    /// Port's machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Invalid { .. } => "invalid_request",
            StoreError::IdentifierNotResolved { matches: 0 } => "not_found",
            StoreError::IdentifierNotResolved { .. } => "multiple_entities_found",
            StoreError::RelatedNotFound { .. } | StoreError::UnknownBlueprint { .. } => "not_found",
            StoreError::Database(_) | StoreError::Corrupt(_) => "internal_error",
        }
    }

    /// The identifier a per-entity error names; `unknown` when a search identifier did not resolve,
    /// as Port does (Ocean drops such errors).
    pub fn identifier(&self) -> Option<&str> {
        match self {
            StoreError::Invalid { identifier, .. }
            | StoreError::RelatedNotFound { identifier, .. }
            | StoreError::UnknownBlueprint { identifier, .. } => Some(identifier),
            StoreError::IdentifierNotResolved { .. } => Some("unknown"),
            StoreError::Database(_) | StoreError::Corrupt(_) => None,
        }
    }
}

/// The result of one successful upsert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUpsert {
    /// The final identifier (a search identifier resolved).
    pub identifier: String,
    pub created: bool,
}

/// An entity as stored. Nulls are not kept in `properties` and `relations`: writing `null` clears the key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    pub blueprint: String,
    pub identifier: String,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub team: Vec<String>,
    pub properties: Map<String, Value>,
    pub relations: Map<String, Value>,
    pub datasource: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredEntity {
    pub fn key(&self) -> EntityKey {
        EntityKey {
            blueprint: self.blueprint.clone(),
            identifier: self.identifier.clone(),
        }
    }

    /// The entity in the shape the catalog port uses; every field present, as a Port search that
    /// includes them answers.
    pub fn to_entity(&self) -> Entity {
        Entity {
            identifier: Value::String(self.identifier.clone()),
            blueprint: self.blueprint.clone(),
            title: Some(opt_string(&self.title)),
            icon: Some(opt_string(&self.icon)),
            team: Some(Value::Array(
                self.team.iter().cloned().map(Value::String).collect(),
            )),
            properties: Some(self.properties.clone()),
            relations: Some(self.relations.clone()),
        }
    }

    /// The entity as Port's API returns it, plus `$datasource` for inspection.
    pub fn to_json(&self) -> Value {
        json!({
            "identifier": self.identifier,
            "blueprint": self.blueprint,
            "title": self.title,
            "icon": self.icon,
            "team": self.team,
            "properties": self.properties,
            "relations": self.relations,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
            "$datasource": self.datasource,
        })
    }
}

fn opt_string(s: &Option<String>) -> Value {
    s.clone().map(Value::String).unwrap_or(Value::Null)
}

/// Fixed-width UTC timestamps, so text comparison in SQL is time comparison.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entities (
    blueprint   TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    title       TEXT,
    icon        TEXT,
    team        TEXT NOT NULL DEFAULT '[]',   -- JSON list of team names
    properties  TEXT NOT NULL DEFAULT '{}',   -- JSON object
    relations   TEXT NOT NULL DEFAULT '{}',   -- JSON object: name -> identifier or list of identifiers
    datasource  TEXT NOT NULL,                -- the writer's User-Agent: ownership
    created_at  TEXT NOT NULL,                -- RFC 3339, UTC, microseconds: sorts as text
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
) WITHOUT ROWID;
-- Lookups by identifier alone (a query that pins identifiers but not the blueprint).
CREATE INDEX IF NOT EXISTS entities_by_identifier ON entities (identifier);
-- One row per relation value, so dependents of a deleted entity are found without a scan.
CREATE TABLE IF NOT EXISTS entity_relations (
    blueprint        TEXT NOT NULL,
    identifier       TEXT NOT NULL,
    relation         TEXT NOT NULL,
    target_blueprint TEXT,                    -- NULL when the blueprint is not defined here
    target           TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier, relation, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_relations_by_target ON entity_relations (target);
CREATE TABLE IF NOT EXISTS blueprints (
    identifier TEXT PRIMARY KEY,
    body       TEXT NOT NULL                  -- the blueprint JSON as Port returns it
);
CREATE TABLE IF NOT EXISTS integrations (
    identifier TEXT PRIMARY KEY,
    body       TEXT NOT NULL                  -- the integration JSON as Port returns it
);
";

const ENTITY_COLUMNS: &str = "blueprint, identifier, title, icon, team, properties, relations, datasource, created_at, updated_at";

/// What a blueprint says about one relation.
#[derive(Debug, Clone)]
struct RelationDef {
    target: String,
    many: bool,
}

/// The SQLite-backed store. `Send + Sync`; cheap calls, one transaction each.
pub struct CatalogStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for CatalogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogStore").finish_non_exhaustive()
    }
}

impl CatalogStore {
    /// Opens (creating if missing) a database file in WAL mode, so a reader such as `sqlite3` does not
    /// block the writer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
        // last transactions, which a resync rewrites anyway.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")?;
        Self::init(conn)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction, which rolled back: the connection
        // is still consistent, so poisoning is not a reason to fail every later call.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Upserts one entity; see [`CatalogStore::upsert_many`].
    pub fn upsert(
        &self,
        entity: &Entity,
        datasource: &str,
        merge: bool,
        create_missing_related: bool,
        now: DateTime<Utc>,
    ) -> Result<StoreUpsert, StoreError> {
        self.upsert_many(
            std::slice::from_ref(entity),
            datasource,
            merge,
            create_missing_related,
            now,
        )?
        .pop()
        .expect("one result per entity")
    }

    /// Upserts entities in one transaction with Port's semantics and returns one result per entity, in
    /// order. `merge` updates only the supplied fields (properties and relations key by key; title,
    /// icon and team when present); otherwise the entity is replaced and absent fields are cleared.
    /// `datasource` becomes the entity's owner and `updated_at` is `now` on every write. The outer
    /// `Err` is a database failure, after which nothing was written.
    pub fn upsert_many(
        &self,
        entities: &[Entity],
        datasource: &str,
        merge: bool,
        create_missing_related: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<StoreUpsert, StoreError>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut defs: HashMap<String, Option<HashMap<String, RelationDef>>> = HashMap::new();
        let mut results = Vec::with_capacity(entities.len());
        for entity in entities {
            match upsert_one(
                &tx,
                &mut defs,
                entity,
                datasource,
                merge,
                create_missing_related,
                now,
            ) {
                Err(e @ (StoreError::Database(_) | StoreError::Corrupt(_))) => return Err(e),
                other => results.push(other),
            }
        }
        tx.commit()?;
        Ok(results)
    }

    pub fn get(
        &self,
        blueprint: &str,
        identifier: &str,
    ) -> Result<Option<StoredEntity>, StoreError> {
        get(&self.conn(), blueprint, identifier)
    }

    /// Evaluates a Port query tree. When its top level pins `$identifier` (`=` or `in`) or
    /// `$blueprint`, candidates come from the primary key; the whole tree is then checked on each.
    pub fn search(&self, query: &Value) -> Result<Vec<StoredEntity>, StoreError> {
        let query = Query::parse(query)?;
        search(&self.conn(), &query)
    }

    /// One page of entities whose datasource starts with `prefix` and ends with `suffix` and whose
    /// `updated_at` is not after `before`, ordered by (blueprint, identifier). `from` is the opaque
    /// cursor of the previous page; the answer's cursor is `None` on the last page. Keyset paging, so
    /// writes between pages neither repeat nor skip the entities not written.
    pub fn owned(
        &self,
        prefix: &str,
        suffix: &str,
        before: Option<DateTime<Utc>>,
        limit: usize,
        from: Option<&str>,
    ) -> Result<(Vec<StoredEntity>, Option<String>), StoreError> {
        let after = from.map(decode_cursor).transpose()?;
        let (after_bp, after_id) = after.unzip();
        let limit = limit.max(1);
        let conn = self.conn();
        // Prefix and suffix by substr, not LIKE: identifiers may contain `%` and `_`.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ENTITY_COLUMNS} FROM entities
             WHERE substr(datasource, 1, length(?1)) = ?1
               AND (?2 = '' OR substr(datasource, length(datasource) - length(?2) + 1) = ?2)
               AND (?3 IS NULL OR updated_at <= ?3)
               AND (?4 IS NULL OR (blueprint, identifier) > (?4, ?5))
             ORDER BY blueprint, identifier
             LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                prefix,
                suffix,
                before.map(timestamp),
                after_bp,
                after_id,
                (limit + 1) as i64
            ],
            read_row,
        )?;
        let mut page = rows.collect::<Result<Result<Vec<_>, _>, _>>()??;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|e| encode_cursor(&e.blueprint, &e.identifier))
        } else {
            None
        };
        Ok((page, next))
    }

    /// Deletes entities of one blueprint and returns the identifiers that existed. With
    /// `delete_dependents`, entities whose relations point at a deleted one are deleted too; one level
    /// only (dependents of dependents stay), which is what the resync's reconciliation needs. Relations
    /// of surviving entities that pointed at a deleted entity are left as they were.
    pub fn delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut deleted = Vec::new();
        for id in identifiers {
            if delete_row(&tx, blueprint, id)? {
                deleted.push(id.clone());
            }
        }
        if delete_dependents {
            for id in &deleted {
                let dependents: Vec<(String, String)> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT DISTINCT blueprint, identifier FROM entity_relations
                         WHERE target = ?1 AND (target_blueprint IS NULL OR target_blueprint = ?2)",
                    )?;
                    stmt.query_map(params![id, blueprint], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<_, _>>()?
                };
                for (bp, dep) in dependents {
                    delete_row(&tx, &bp, &dep)?;
                }
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Deletes every entity of a blueprint; returns how many.
    pub fn delete_all(&self, blueprint: &str) -> Result<usize, StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM entity_relations WHERE blueprint = ?1",
            [blueprint],
        )?;
        Ok(conn.execute("DELETE FROM entities WHERE blueprint = ?1", [blueprint])?)
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM entities", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// All entities of a blueprint, or of every blueprint, ordered by key.
    pub fn list(&self, blueprint: Option<&str>) -> Result<Vec<StoredEntity>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE ?1 IS NULL OR blueprint = ?1
             ORDER BY blueprint, identifier"
        ))?;
        let rows = stmt.query_map([blueprint], read_row)?;
        rows.collect::<Result<Result<Vec<_>, _>, _>>()?
    }

    // Blueprint records.

    pub fn blueprint(&self, identifier: &str) -> Result<Option<Value>, StoreError> {
        record(&self.conn(), "blueprints", identifier)
    }

    pub fn blueprints(&self) -> Result<Vec<Value>, StoreError> {
        records(&self.conn(), "blueprints")
    }

    /// Stores a blueprint under its `identifier` field, replacing any previous body.
    pub fn put_blueprint(&self, body: &Value) -> Result<(), StoreError> {
        let id = body
            .get("identifier")
            .and_then(Value::as_str)
            .ok_or_else(|| StoreError::invalid("unknown", "a blueprint needs an identifier"))?;
        put_record(&self.conn(), "blueprints", id, body)
    }

    /// Replaces the top-level fields the patch names, as Port's blueprint PATCH does. `None` when the
    /// blueprint does not exist.
    pub fn patch_blueprint(
        &self,
        identifier: &str,
        patch: &Value,
    ) -> Result<Option<Value>, StoreError> {
        patch_record(&self.conn(), "blueprints", identifier, patch)
    }

    pub fn delete_blueprint(&self, identifier: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM blueprints WHERE identifier = ?1", [identifier])?
            > 0)
    }

    // Integration records.

    pub fn integration(&self, identifier: &str) -> Result<Option<Value>, StoreError> {
        record(&self.conn(), "integrations", identifier)
    }

    pub fn put_integration(&self, identifier: &str, body: &Value) -> Result<(), StoreError> {
        put_record(&self.conn(), "integrations", identifier, body)
    }

    /// Replaces the top-level fields the patch names. `None` when the integration does not exist.
    pub fn patch_integration(
        &self,
        identifier: &str,
        patch: &Value,
    ) -> Result<Option<Value>, StoreError> {
        patch_record(&self.conn(), "integrations", identifier, patch)
    }
}

// Entity writes.

fn upsert_one(
    tx: &Transaction<'_>,
    defs: &mut HashMap<String, Option<HashMap<String, RelationDef>>>,
    entity: &Entity,
    datasource: &str,
    merge: bool,
    create_missing_related: bool,
    now: DateTime<Utc>,
) -> Result<StoreUpsert, StoreError> {
    let blueprint = entity.blueprint.as_str();
    let shown_id = super::identifier_string(&entity.identifier);
    if blueprint.is_empty() {
        return Err(StoreError::invalid(shown_id, "the entity has no blueprint"));
    }
    let title = text_field(&entity.title, "title", &shown_id)?;
    let icon = text_field(&entity.icon, "icon", &shown_id)?;
    let team = team_field(&entity.team, &shown_id)?;

    let identifier = match &entity.identifier {
        v if is_query(v) => {
            let q = Query::parse(v)?.and("$blueprint", Op::Eq, Value::String(blueprint.to_owned()));
            let found = search(tx, &q)?;
            match found.as_slice() {
                [one] => one.identifier.clone(),
                _ => {
                    return Err(StoreError::IdentifierNotResolved {
                        matches: found.len(),
                    });
                }
            }
        }
        v => match query::scalar_string(v) {
            Some(s) if !s.is_empty() => s,
            _ => {
                return Err(StoreError::invalid(
                    shown_id,
                    "the identifier must be a non-empty string",
                ));
            }
        },
    };

    let rel_defs = relation_defs(tx, defs, blueprint)?;
    // Relations as supplied, search queries resolved; `None` clears the relation.
    let mut relations: Vec<(String, Option<Value>)> = Vec::new();
    // Targets whose existence was not established by a query, to check or create.
    let mut targets: Vec<(String, String, String)> = Vec::new(); // (relation, target blueprint, target)
    for (name, value) in entity.relations.iter().flatten() {
        let def = rel_defs.as_ref().and_then(|d| d.get(name));
        let resolved = match value {
            Value::Null => None,
            v if is_query(v) => Some(resolve_relation_query(tx, &identifier, name, def, v)?),
            Value::Array(items) => {
                let mut ids = Vec::with_capacity(items.len());
                for item in items {
                    if is_query(item) {
                        ids.push(resolve_relation_query(tx, &identifier, name, None, item)?);
                    } else if let Some(s) = query::scalar_string(item) {
                        if let Some(def) = def {
                            targets.push((name.clone(), def.target.clone(), s.clone()));
                        }
                        ids.push(Value::String(s));
                    } else if !item.is_null() {
                        return Err(StoreError::invalid(
                            &identifier,
                            format!("relation {name:?} holds {item}"),
                        ));
                    }
                }
                Some(Value::Array(ids))
            }
            v => match query::scalar_string(v) {
                Some(s) => {
                    if let Some(def) = def {
                        targets.push((name.clone(), def.target.clone(), s.clone()));
                    }
                    Some(Value::String(s))
                }
                None => {
                    return Err(StoreError::invalid(
                        &identifier,
                        format!("relation {name:?} holds {v}"),
                    ));
                }
            },
        };
        relations.push((name.clone(), resolved));
    }

    let mut stubs = Vec::new();
    for (relation, target_bp, target) in &targets {
        if target_bp == blueprint && *target == identifier {
            continue; // a self-relation is satisfied by this very write
        }
        if get(tx, target_bp, target)?.is_none() {
            if !create_missing_related {
                return Err(StoreError::RelatedNotFound {
                    identifier: identifier.clone(),
                    relation: relation.clone(),
                    target_blueprint: target_bp.clone(),
                    target: target.clone(),
                });
            }
            stubs.push((target_bp.clone(), target.clone()));
        }
    }

    let existing = get(tx, blueprint, &identifier)?;
    let created = existing.is_none();
    let mut stored = match existing {
        Some(old) if merge => old,
        old => StoredEntity {
            blueprint: blueprint.to_owned(),
            identifier: identifier.clone(),
            title: None,
            icon: None,
            team: Vec::new(),
            properties: Map::new(),
            relations: Map::new(),
            datasource: String::new(),
            created_at: old.map(|o| o.created_at).unwrap_or(now),
            updated_at: now,
        },
    };
    if let Some(t) = title {
        stored.title = t;
    }
    if let Some(i) = icon {
        stored.icon = i;
    }
    if let Some(t) = team {
        stored.team = t;
    }
    for (k, v) in entity.properties.iter().flatten() {
        if v.is_null() {
            stored.properties.remove(k);
        } else {
            stored.properties.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in relations {
        match v {
            Some(v) => stored.relations.insert(k, v),
            None => stored.relations.remove(&k),
        };
    }
    stored.datasource = datasource.to_owned();
    stored.updated_at = now;

    write_row(tx, &stored)?;
    write_edges(tx, &stored, rel_defs.as_ref())?;
    for (bp, id) in stubs {
        // Port creates a bare entity for a missing relation target. It is left unowned (empty
        // datasource) so reconciliation never deletes it; the real writer takes it over later.
        tx.execute(
            "INSERT OR IGNORE INTO entities (blueprint, identifier, datasource, created_at, updated_at)
             VALUES (?1, ?2, '', ?3, ?3)",
            params![bp, id, timestamp(now)],
        )?;
    }
    Ok(StoreUpsert {
        identifier,
        created,
    })
}

/// `None`: not supplied; `Some(None)`: supplied as null.
fn text_field(
    v: &Option<Value>,
    name: &str,
    id: &str,
) -> Result<Option<Option<String>>, StoreError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(StoreError::invalid(
            id,
            format!("{name} must be a string, not {other}"),
        )),
    }
}

fn team_field(v: &Option<Value>, id: &str) -> Result<Option<Vec<String>>, StoreError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                query::scalar_string(i)
                    .ok_or_else(|| StoreError::invalid(id, "team names must be strings"))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(StoreError::invalid(
            id,
            "team search queries are not supported by the local catalog",
        )),
    }
}

fn resolve_relation_query(
    tx: &Transaction<'_>,
    identifier: &str,
    relation: &str,
    def: Option<&RelationDef>,
    q: &Value,
) -> Result<Value, StoreError> {
    let mut query = Query::parse(q)?;
    if let Some(def) = def {
        query = query.and("$blueprint", Op::Eq, Value::String(def.target.clone()));
    }
    let found = search(tx, &query)?;
    let target_blueprint = def.map(|d| d.target.clone()).unwrap_or_default();
    match found.as_slice() {
        [] => Err(StoreError::RelatedNotFound {
            identifier: identifier.to_owned(),
            relation: relation.to_owned(),
            target_blueprint,
            target: q.to_string(),
        }),
        _ if def.is_some_and(|d| d.many) => Ok(Value::Array(
            found
                .into_iter()
                .map(|e| Value::String(e.identifier))
                .collect(),
        )),
        [one] => Ok(Value::String(one.identifier.clone())),
        _ => Err(StoreError::invalid(
            identifier,
            format!(
                "relation {relation:?} search matched {} entities, not exactly one",
                found.len()
            ),
        )),
    }
}

/// The relation definitions of a blueprint, `None` when the blueprint is not defined here (then no
/// relation is checked). Cached per transaction.
fn relation_defs(
    tx: &Transaction<'_>,
    cache: &mut HashMap<String, Option<HashMap<String, RelationDef>>>,
    blueprint: &str,
) -> Result<Option<HashMap<String, RelationDef>>, StoreError> {
    if let Some(defs) = cache.get(blueprint) {
        return Ok(defs.clone());
    }
    let defs = record(tx, "blueprints", blueprint)?.map(|body| {
        body.get("relations")
            .and_then(Value::as_object)
            .map(|rels| {
                rels.iter()
                    .filter_map(|(name, r)| {
                        let target = r.get("target")?.as_str()?.to_owned();
                        let many = r.get("many").and_then(Value::as_bool).unwrap_or(false);
                        Some((name.clone(), RelationDef { target, many }))
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    cache.insert(blueprint.to_owned(), defs.clone());
    Ok(defs)
}

fn write_row(tx: &Transaction<'_>, e: &StoredEntity) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (blueprint, identifier) DO UPDATE SET
           title = excluded.title, icon = excluded.icon, team = excluded.team,
           properties = excluded.properties, relations = excluded.relations,
           datasource = excluded.datasource, updated_at = excluded.updated_at"
    ))?
    .execute(params![
        e.blueprint,
        e.identifier,
        e.title,
        e.icon,
        Value::from(e.team.clone()).to_string(),
        Value::Object(e.properties.clone()).to_string(),
        Value::Object(e.relations.clone()).to_string(),
        e.datasource,
        timestamp(e.created_at),
        timestamp(e.updated_at),
    ])?;
    Ok(())
}

fn write_edges(
    tx: &Transaction<'_>,
    e: &StoredEntity,
    defs: Option<&HashMap<String, RelationDef>>,
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM entity_relations WHERE blueprint = ?1 AND identifier = ?2")?
        .execute(params![e.blueprint, e.identifier])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO entity_relations (blueprint, identifier, relation, target_blueprint, target)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (name, value) in &e.relations {
        let target_bp = defs.and_then(|d| d.get(name)).map(|d| d.target.as_str());
        let targets: Vec<&str> = match value {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for t in targets {
            insert.execute(params![e.blueprint, e.identifier, name, target_bp, t])?;
        }
    }
    Ok(())
}

fn delete_row(tx: &Transaction<'_>, blueprint: &str, identifier: &str) -> Result<bool, StoreError> {
    tx.prepare_cached("DELETE FROM entity_relations WHERE blueprint = ?1 AND identifier = ?2")?
        .execute(params![blueprint, identifier])?;
    let n = tx
        .prepare_cached("DELETE FROM entities WHERE blueprint = ?1 AND identifier = ?2")?
        .execute(params![blueprint, identifier])?;
    Ok(n > 0)
}

// Entity reads.

fn read_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredEntity, StoreError>> {
    let blueprint: String = r.get(0)?;
    let identifier: String = r.get(1)?;
    let title: Option<String> = r.get(2)?;
    let icon: Option<String> = r.get(3)?;
    let team: String = r.get(4)?;
    let properties: String = r.get(5)?;
    let relations: String = r.get(6)?;
    let datasource: String = r.get(7)?;
    let created_at: String = r.get(8)?;
    let updated_at: String = r.get(9)?;
    Ok((|| {
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("{blueprint}/{identifier} {what}: {e}"))
        };
        Ok(StoredEntity {
            team: serde_json::from_str(&team).map_err(|e| corrupt("team", e))?,
            properties: serde_json::from_str(&properties).map_err(|e| corrupt("properties", e))?,
            relations: serde_json::from_str(&relations).map_err(|e| corrupt("relations", e))?,
            created_at: parse_timestamp(&created_at)?,
            updated_at: parse_timestamp(&updated_at)?,
            blueprint,
            identifier,
            title,
            icon,
            datasource,
        })
    })())
}

fn get(
    conn: &Connection,
    blueprint: &str,
    identifier: &str,
) -> Result<Option<StoredEntity>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE blueprint = ?1 AND identifier = ?2"
    ))?
    .query_row(params![blueprint, identifier], read_row)
    .optional()?
    .transpose()
}

fn search(conn: &Connection, q: &Query) -> Result<Vec<StoredEntity>, StoreError> {
    let hints = q.hints();
    let mut candidates = Vec::new();
    match (&hints.identifiers, &hints.blueprint) {
        (Some(ids), Some(bp)) => {
            for id in ids {
                candidates.extend(get(conn, bp, id)?);
            }
        }
        (Some(ids), None) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTITY_COLUMNS} FROM entities WHERE identifier = ?1 ORDER BY blueprint"
            ))?;
            for id in ids {
                for row in stmt.query_map([id], read_row)? {
                    candidates.push(row??);
                }
            }
        }
        (None, bp) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENTITY_COLUMNS} FROM entities WHERE ?1 IS NULL OR blueprint = ?1
                 ORDER BY blueprint, identifier"
            ))?;
            for row in stmt.query_map([bp], read_row)? {
                let e = row??;
                if q.matches(&e) {
                    candidates.push(e);
                }
            }
            return Ok(candidates);
        }
    }
    // `in` lists may repeat an identifier.
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|e| q.matches(e) && seen.insert((e.blueprint.clone(), e.identifier.clone())));
    Ok(candidates)
}

// Blueprint and integration records.

fn record(conn: &Connection, table: &str, id: &str) -> Result<Option<Value>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached(&format!("SELECT body FROM {table} WHERE identifier = ?1"))?
        .query_row([id], |r| r.get(0))
        .optional()?;
    body.map(|b| {
        serde_json::from_str(&b).map_err(|e| StoreError::Corrupt(format!("{table}/{id}: {e}")))
    })
    .transpose()
}

fn records(conn: &Connection, table: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT identifier, body FROM {table} ORDER BY identifier"
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (id, body) = row?;
        serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("{table}/{id}: {e}")))
    })
    .collect()
}

fn put_record(conn: &Connection, table: &str, id: &str, body: &Value) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (identifier, body) VALUES (?1, ?2)
         ON CONFLICT (identifier) DO UPDATE SET body = excluded.body"
    ))?
    .execute(params![id, body.to_string()])?;
    Ok(())
}

fn patch_record(
    conn: &Connection,
    table: &str,
    id: &str,
    patch: &Value,
) -> Result<Option<Value>, StoreError> {
    let Some(mut body) = record(conn, table, id)? else {
        return Ok(None);
    };
    if let (Some(target), Some(fields)) = (body.as_object_mut(), patch.as_object()) {
        for (k, v) in fields {
            target.insert(k.clone(), v.clone());
        }
    }
    put_record(conn, table, id, &body)?;
    Ok(Some(body))
}

// Cursors.

fn encode_cursor(blueprint: &str, identifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!([blueprint, identifier]).to_string())
}

fn decode_cursor(cursor: &str) -> Result<(String, String), StoreError> {
    let bad = || {
        StoreError::invalid(
            "unknown",
            "the paging cursor is not one this catalog issued",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests;
