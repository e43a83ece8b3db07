//! A pass that writes nothing. [`PreviewCatalog`] stands in front of the real catalog: it reads through
//! it (the searches for stored copies, the ownership listing) and, instead of writing, records what the
//! pass would create, change and delete. `ado-sync resync --dry-run` runs an ordinary pass on it, so the
//! preview is the pass's own decisions: the same skipping of unchanged entities, the same per-blueprint
//! reconciliation and deletion threshold.
//!
//! [`PreviewCatalog::recording`] records the same way while writing through: what a real pass did, in
//! the preview's terms (the measure a preview is checked against).
//!
//! Limitation: an entity identified by a search query is resolved by the catalog only when written, so a
//! preview counts it (`by_search`) without knowing which entity it is.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::plan::{SeenKeys, unchanged};
use crate::catalog::{Catalog, CatalogError, Entity, OwnedPage, UpsertOutcome, WriteOptions};

/// Examples kept per blueprint and change: the first ones by identifier, so a preview does not depend
/// on the order pages were listed in.
pub const EXAMPLES: usize = 3;
/// Longest value shown in a field difference.
const SHOWN_CHARS: usize = 60;

/// What a pass would do (or did), per blueprint.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Preview {
    pub blueprints: BTreeMap<String, BlueprintPreview>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct BlueprintPreview {
    pub create: u64,
    pub change: u64,
    pub delete: u64,
    /// Entities identified by a search query: written, but which entity they are is the catalog's
    /// answer.
    pub by_search: u64,
    pub examples: Examples,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Examples {
    pub create: Vec<String>,
    /// Identifier → the fields that differ.
    pub change: BTreeMap<String, Vec<FieldChange>>,
    pub delete: Vec<String>,
}

/// One field of a changed entity: `title`, `icon`, `team`, `properties.<name>` or `relations.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

impl Preview {
    /// Whether the pass would write or delete anything.
    pub fn changes_anything(&self) -> bool {
        self.blueprints
            .values()
            .any(|b| b.create + b.change + b.delete + b.by_search > 0)
    }

    /// A table of counts per blueprint, then the examples.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.changes_anything() {
            out.push_str("Nothing would change.\n");
            return out;
        }
        let width = self
            .blueprints
            .keys()
            .map(String::len)
            .chain(["blueprint".len()])
            .max()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<width$}  {:>7}  {:>7}  {:>7}  {:>9}",
            "blueprint", "create", "change", "delete", "by search"
        );
        for (name, b) in &self.blueprints {
            let _ = writeln!(
                out,
                "{name:<width$}  {:>7}  {:>7}  {:>7}  {:>9}",
                b.create, b.change, b.delete, b.by_search
            );
        }
        for (name, b) in self
            .blueprints
            .iter()
            .filter(|(_, b)| b.create + b.change + b.delete > 0)
        {
            let _ = writeln!(out, "\n{name}");
            for id in &b.examples.create {
                let _ = writeln!(out, "  + {id}");
            }
            for (id, fields) in &b.examples.change {
                let _ = writeln!(out, "  ~ {id}");
                for f in fields {
                    let _ = writeln!(
                        out,
                        "      {}: {} -> {}",
                        f.field,
                        shown(&f.before),
                        shown(&f.after)
                    );
                }
            }
            for id in &b.examples.delete {
                let _ = writeln!(out, "  - {id}");
            }
            let more = (b.create + b.change + b.delete) as usize
                - (b.examples.create.len() + b.examples.change.len() + b.examples.delete.len());
            if more > 0 {
                let _ = writeln!(out, "  … and {more} more");
            }
        }
        out
    }

    fn blueprint(&mut self, name: &str) -> &mut BlueprintPreview {
        self.blueprints.entry(name.to_owned()).or_default()
    }
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let cut: String = text.chars().take(SHOWN_CHARS).collect();
    format!("{cut}…")
}

/// Keeps the `EXAMPLES` smallest identifiers.
fn keep_first(list: &mut Vec<String>, id: &str) {
    if list.len() == EXAMPLES && list.last().is_some_and(|last| id >= last.as_str()) {
        return;
    }
    let at = list.partition_point(|x| x.as_str() < id);
    list.insert(at, id.to_owned());
    list.truncate(EXAMPLES);
}

impl BlueprintPreview {
    fn created(&mut self, id: &str) {
        self.create += 1;
        keep_first(&mut self.examples.create, id);
    }

    fn changed(&mut self, id: &str, fields: impl FnOnce() -> Vec<FieldChange>) {
        self.change += 1;
        let changes = &mut self.examples.change;
        if changes.len() == EXAMPLES
            && changes
                .last_key_value()
                .is_some_and(|(k, _)| id >= k.as_str())
        {
            return;
        }
        changes.insert(id.to_owned(), fields());
        while changes.len() > EXAMPLES {
            changes.pop_last();
        }
    }

    fn deleted(&mut self, id: &str) {
        self.delete += 1;
        keep_first(&mut self.examples.delete, id);
    }
}

/// The fields of `new` that differ from `stored`; a field the mapping does not set is left out (with
/// `merge` the catalog keeps it; without, a stored value that is not null is shown going to null).
pub fn field_changes(new: &Entity, stored: &Entity, merge: bool) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut scalar = |field: &str, n: &Option<Value>, s: &Option<Value>| {
        let before = s.clone().unwrap_or(Value::Null);
        let after = match n {
            Some(v) => v.clone(),
            None if merge => return,
            None => Value::Null,
        };
        if before != after {
            out.push(FieldChange {
                field: field.to_owned(),
                before,
                after,
            });
        }
    };
    scalar("title", &new.title, &stored.title);
    scalar("icon", &new.icon, &stored.icon);
    scalar("team", &new.team, &stored.team);
    let maps = [
        ("properties", &new.properties, &stored.properties),
        ("relations", &new.relations, &stored.relations),
    ];
    for (name, n, s) in maps {
        let empty = Map::new();
        let s = s.as_ref().unwrap_or(&empty);
        let n = n.as_ref().unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> =
            n.keys().chain(s.keys().filter(|_| !merge)).collect();
        for key in keys {
            let before = s.get(key).cloned().unwrap_or(Value::Null);
            let after = n.get(key).cloned().unwrap_or(Value::Null);
            if before != after {
                out.push(FieldChange {
                    field: format!("{name}.{key}"),
                    before,
                    after,
                });
            }
        }
    }
    out
}

/// Records a pass's writes and deletions as a [`Preview`]; reads go to the real catalog.
pub struct PreviewCatalog {
    inner: Arc<dyn Catalog>,
    write_through: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    preview: Preview,
    /// In a dry run, the keys already counted: a real pass that writes an entity twice (two blocks
    /// mapping the same identifier) finds it written the second time and skips it, but a dry run reads
    /// the old copy again.
    counted: SeenKeys,
}

impl PreviewCatalog {
    /// Writes nothing: every write and deletion is recorded and answered as done.
    pub fn dry_run(inner: Arc<dyn Catalog>) -> Self {
        Self {
            inner,
            write_through: false,
            state: Mutex::default(),
        }
    }

    /// Writes through to `inner`, recording what was written and deleted.
    pub fn recording(inner: Arc<dyn Catalog>) -> Self {
        Self {
            write_through: true,
            ..Self::dry_run(inner)
        }
    }

    /// What was recorded so far.
    pub fn preview(&self) -> Preview {
        self.state().preview.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Catalog for PreviewCatalog {
    async fn upsert(
        &self,
        blueprint: &str,
        entities: &[Entity],
        opts: &WriteOptions,
    ) -> Result<Vec<UpsertOutcome>, CatalogError> {
        let keyed: Vec<String> = entities
            .iter()
            .filter(|e| !e.uses_search())
            .map(|e| e.key().identifier)
            .collect();
        let stored: HashMap<String, Entity> = if keyed.is_empty() {
            HashMap::new()
        } else {
            self.inner
                .find(blueprint, &keyed)
                .await?
                .into_iter()
                .map(|e| (e.key().identifier, e))
                .collect()
        };
        let outcomes = if self.write_through {
            self.inner.upsert(blueprint, entities, opts).await?
        } else {
            entities
                .iter()
                .map(|e| UpsertOutcome::Upserted {
                    identifier: e.key().identifier,
                    created: !stored.contains_key(&e.key().identifier),
                })
                .collect()
        };
        let mut state = self.state();
        let State { preview, counted } = &mut *state;
        let b = preview.blueprint(blueprint);
        for (entity, outcome) in entities.iter().zip(&outcomes) {
            if !matches!(outcome, UpsertOutcome::Upserted { .. }) {
                continue;
            }
            if entity.uses_search() {
                b.by_search += 1;
                continue;
            }
            let id = entity.key().identifier;
            if !self.write_through && !counted.insert(blueprint, &id) {
                continue;
            }
            match stored.get(&id) {
                None => b.created(&id),
                Some(s) if unchanged(entity, s, opts.merge) => {}
                Some(s) => b.changed(&id, || field_changes(entity, s, opts.merge)),
            }
        }
        Ok(outcomes)
    }

    async fn find(
        &self,
        blueprint: &str,
        identifiers: &[String],
    ) -> Result<Vec<Entity>, CatalogError> {
        self.inner.find(blueprint, identifiers).await
    }

    async fn owned(
        &self,
        before: DateTime<Utc>,
        cursor: Option<String>,
    ) -> Result<OwnedPage, CatalogError> {
        self.inner.owned(before, cursor).await
    }

    async fn delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
        opts: &WriteOptions,
    ) -> Result<Vec<String>, CatalogError> {
        let gone = if self.write_through {
            self.inner
                .delete(blueprint, identifiers, delete_dependents, opts)
                .await?
        } else {
            identifiers.to_vec()
        };
        let mut state = self.state();
        let b = state.preview.blueprint(blueprint);
        for id in &gone {
            b.deleted(id);
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entity(v: Value) -> Entity {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_changed_entity_lists_the_fields_that_differ() {
        let stored = entity(json!({
            "identifier": "a", "blueprint": "b", "title": "A",
            "properties": {"url": "u", "size": 1, "gone": "x"}, "relations": {"project": "p"}
        }));
        let new = entity(json!({
            "identifier": "a", "blueprint": "b", "title": "A2",
            "properties": {"url": "u", "size": 2}, "relations": {"project": "p"}
        }));
        let fields: Vec<String> = field_changes(&new, &stored, false)
            .into_iter()
            .map(|f| format!("{} {} {}", f.field, f.before, f.after))
            .collect();
        assert_eq!(
            fields,
            [
                "title \"A\" \"A2\"",
                "properties.gone \"x\" null",
                "properties.size 1 2"
            ]
        );
        // With merge, what the mapping leaves out stays as stored.
        let merged: Vec<String> = field_changes(&new, &stored, true)
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(merged, ["title", "properties.size"]);
    }

    #[test]
    fn examples_are_the_first_identifiers_whatever_the_order() {
        let mut a = BlueprintPreview::default();
        let mut b = BlueprintPreview::default();
        let ids = ["e", "b", "d", "a", "c"];
        for id in ids {
            a.created(id);
            a.deleted(id);
            a.changed(id, Vec::new);
        }
        for id in ids.iter().rev() {
            b.created(id);
            b.deleted(id);
            b.changed(id, Vec::new);
        }
        assert_eq!(a, b);
        assert_eq!(a.examples.create, ["a", "b", "c"]);
        assert_eq!(a.examples.delete, ["a", "b", "c"]);
        assert_eq!(
            a.examples.change.keys().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!((a.create, a.change, a.delete), (5, 5, 5));
    }
}
