//! Pure planning, no I/O: which mapped entities are unchanged in the catalog, and which owned entities
//! a finished pass may delete.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value};

use crate::catalog::{Entity, EntityKey};

/// The keys of every entity a pass produced, kept compact: a 64-bit hash per key instead of the strings,
/// so 100k work items cost ~2 MiB, not ~15. A collision can only make a stale entity look seen, which
/// keeps it (never deletes a live one).
#[derive(Debug, Default)]
pub struct SeenKeys {
    hashes: HashSet<u64>,
}

impl SeenKeys {
    /// Returns whether the key is new.
    pub fn insert(&mut self, blueprint: &str, identifier: &str) -> bool {
        self.hashes.insert(key_hash(blueprint, identifier))
    }

    pub fn contains(&self, key: &EntityKey) -> bool {
        self.hashes
            .contains(&key_hash(&key.blueprint, &key.identifier))
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Adds every key of `other` (the keys one block saw, merged after the pass).
    pub fn absorb(&mut self, other: SeenKeys) {
        self.hashes.extend(other.hashes);
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

fn key_hash(blueprint: &str, identifier: &str) -> u64 {
    let mut h = DefaultHasher::new();
    blueprint.hash(&mut h);
    identifier.hash(&mut h);
    h.finish()
}

/// True when upserting `new` would not change `stored`: so the write can be skipped. Only the keys the
/// mapping produced are compared; a mapped `null` for a key the catalog does not have is no change. With
/// `merge` off an upsert replaces the entity, so keys only the catalog has would be cleared: a change.
pub fn unchanged(new: &Entity, stored: &Entity, merge: bool) -> bool {
    if new.blueprint != stored.blueprint || new.identifier != stored.identifier {
        return false;
    }
    let same_scalar = |n: &Option<Value>, s: &Option<Value>| match n {
        None => merge || s.as_ref().is_none_or(Value::is_null),
        Some(v) => v == s.as_ref().unwrap_or(&Value::Null),
    };
    if !same_scalar(&new.title, &stored.title) || !same_scalar(&new.icon, &stored.icon) {
        return false;
    }
    // Catalogs store the team as a list: "a", ["a"] and null vs [] are the same team.
    let same_team = match &new.team {
        None => merge || team_list(stored.team.as_ref()).is_empty(),
        Some(n) => same_multiset(&team_list(Some(n)), &team_list(stored.team.as_ref())),
    };
    same_team
        && same_map(new.properties.as_ref(), stored.properties.as_ref(), merge)
        && same_map(new.relations.as_ref(), stored.relations.as_ref(), merge)
}

fn same_map(
    new: Option<&Map<String, Value>>,
    stored: Option<&Map<String, Value>>,
    merge: bool,
) -> bool {
    let empty = Map::new();
    let stored = stored.unwrap_or(&empty);
    let Some(new) = new else {
        return merge || stored.values().all(Value::is_null);
    };
    let new_matches = new.iter().all(|(k, v)| match stored.get(k) {
        Some(s) => s == v,
        None => v.is_null(),
    });
    new_matches
        && (merge
            || stored
                .iter()
                .all(|(k, v)| v.is_null() || new.contains_key(k)))
}

fn team_list(team: Option<&Value>) -> Vec<Value> {
    match team {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
    }
}

fn same_multiset(a: &[Value], b: &[Value]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut a: Vec<String> = a.iter().map(Value::to_string).collect();
    let mut b: Vec<String> = b.iter().map(Value::to_string).collect();
    a.sort();
    b.sort();
    a == b
}

/// What the threshold allows for one blueprint.
#[derive(Debug, Clone, PartialEq)]
pub enum DeletionPlan {
    /// Nothing owned is missing from the pass.
    Nothing,
    /// Delete every stale entity.
    Delete,
    /// The share to delete is above `entityDeletionThreshold`: delete nothing.
    OverThreshold { rate: f64 },
}

/// Decides the deletions of one blueprint whose blocks all completed: its `stale` entities go if their
/// share of the `owned` entities (all this integration owned in the blueprint before the pass, those the
/// pass rewrote included) is within the threshold (0 allows none, 1 allows all).
pub fn plan_deletions(stale: usize, owned: usize, threshold: f64) -> DeletionPlan {
    if stale == 0 || owned == 0 {
        return DeletionPlan::Nothing;
    }
    let rate = stale as f64 / owned as f64;
    if rate > threshold {
        return DeletionPlan::OverThreshold { rate };
    }
    DeletionPlan::Delete
}

/// One resource block as reconciliation sees it.
#[derive(Debug, Clone)]
pub struct BlockFeed {
    /// `kind[index]`.
    pub label: String,
    /// The blueprint the block writes when its `blueprint` mapping is a literal; `None` for an
    /// expression, which may write any blueprint.
    pub blueprint: Option<String>,
    /// Whether the block listed its kind to the end without an error.
    pub completed: bool,
}

/// The blocks that may write `blueprint` and did not complete: while there is one, the pass has not
/// seen the whole blueprint, so none of its entities may be deleted.
pub fn incomplete_feeders(blueprint: &str, blocks: &[BlockFeed]) -> Vec<String> {
    blocks
        .iter()
        .filter(|b| !b.completed && b.blueprint.as_deref().is_none_or(|bp| bp == blueprint))
        .map(|b| b.label.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_blueprint_is_incomplete_while_a_block_that_may_write_it_failed() {
        let block = |label: &str, blueprint: Option<&str>, completed| BlockFeed {
            label: label.into(),
            blueprint: blueprint.map(str::to_owned),
            completed,
        };
        let blocks = [
            block("repository[1]", Some("repo"), true),
            block("branch[2]", Some("branch"), false),
            block("work-item[3]", Some("workItem"), true),
        ];
        assert!(incomplete_feeders("repo", &blocks).is_empty());
        assert_eq!(incomplete_feeders("branch", &blocks), ["branch[2]"]);
        // A blueprint no block writes any more is complete: its entities are stale for certain.
        assert!(incomplete_feeders("gone", &blocks).is_empty());
        // An expression blueprint may write anything: when it failed, every blueprint is incomplete.
        let mut with_expression = blocks.to_vec();
        with_expression.push(block("file[4]", None, false));
        assert_eq!(incomplete_feeders("repo", &with_expression), ["file[4]"]);
        assert_eq!(
            incomplete_feeders("branch", &with_expression),
            ["branch[2]", "file[4]"]
        );
    }

    fn entity(v: Value) -> Entity {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn identical_entities_are_unchanged() {
        let e = entity(
            json!({"identifier":"a","blueprint":"bp","title":"A","properties":{"x":1},"relations":{"p":"q"}}),
        );
        assert!(unchanged(&e, &e.clone(), true));
        assert!(unchanged(&e, &e.clone(), false));
    }

    #[test]
    fn a_changed_title_property_or_relation_is_a_change() {
        let stored = entity(
            json!({"identifier":"a","blueprint":"bp","title":"A","properties":{"x":1},"relations":{"p":"q"}}),
        );
        for new in [
            json!({"identifier":"a","blueprint":"bp","title":"B","properties":{"x":1},"relations":{"p":"q"}}),
            json!({"identifier":"a","blueprint":"bp","title":"A","properties":{"x":2},"relations":{"p":"q"}}),
            json!({"identifier":"a","blueprint":"bp","title":"A","properties":{"x":1},"relations":{"p":"r"}}),
            json!({"identifier":"a","blueprint":"bp","title":"A","properties":{"x":1,"y":"new"},"relations":{"p":"q"}}),
        ] {
            assert!(!unchanged(&entity(new.clone()), &stored, true), "{new}");
        }
    }

    #[test]
    fn a_mapped_null_for_a_key_the_catalog_lacks_is_no_change() {
        let stored = entity(json!({"identifier":"a","blueprint":"bp","properties":{"x":1}}));
        let new =
            entity(json!({"identifier":"a","blueprint":"bp","properties":{"x":1,"gone":null}}));
        assert!(unchanged(&new, &stored, true));
    }

    #[test]
    fn without_merge_keys_only_the_catalog_has_are_a_change() {
        let stored =
            entity(json!({"identifier":"a","blueprint":"bp","properties":{"x":1,"extra":2}}));
        let new = entity(json!({"identifier":"a","blueprint":"bp","properties":{"x":1}}));
        assert!(unchanged(&new, &stored, true));
        assert!(!unchanged(&new, &stored, false));
    }

    #[test]
    fn teams_compare_as_multisets() {
        let stored = entity(json!({"identifier":"a","blueprint":"bp","team":["x","y"]}));
        assert!(unchanged(
            &entity(json!({"identifier":"a","blueprint":"bp","team":["y","x"]})),
            &stored,
            true
        ));
        assert!(!unchanged(
            &entity(json!({"identifier":"a","blueprint":"bp","team":["x"]})),
            &stored,
            true
        ));
        let stored = entity(json!({"identifier":"a","blueprint":"bp","team":["x"]}));
        assert!(unchanged(
            &entity(json!({"identifier":"a","blueprint":"bp","team":"x"})),
            &stored,
            true
        ));
        let stored = entity(json!({"identifier":"a","blueprint":"bp","team":[]}));
        assert!(unchanged(
            &entity(json!({"identifier":"a","blueprint":"bp","team":null})),
            &stored,
            true
        ));
    }

    #[test]
    fn deletions_respect_the_threshold() {
        assert_eq!(plan_deletions(0, 10, 0.9), DeletionPlan::Nothing);
        assert_eq!(plan_deletions(3, 10, 0.9), DeletionPlan::Delete);
        assert_eq!(
            plan_deletions(3, 3, 0.9),
            DeletionPlan::OverThreshold { rate: 1.0 }
        );
        assert!(matches!(
            plan_deletions(3, 10, 0.0),
            DeletionPlan::OverThreshold { .. }
        ));
        assert_eq!(plan_deletions(3, 3, 1.0), DeletionPlan::Delete);
    }

    #[test]
    fn seen_keys_match_by_blueprint_and_identifier() {
        let mut seen = SeenKeys::default();
        seen.insert("bp", "1");
        assert!(seen.contains(&EntityKey::new("bp", &json!("1"))));
        assert!(seen.contains(&EntityKey::new("bp", &json!(1))));
        assert!(!seen.contains(&EntityKey::new("other", &json!("1"))));
        assert!(!seen.contains(&EntityKey::new("bp", &json!("2"))));
    }
}
