//! Pure planning, no I/O: how the raw items one change produced become catalog writes, with the semantics
//! of Port's live events (catalog-and-mapping §5.4): passed entities are upserted, entities that fail the
//! selector and entities of gone items are delete candidates, minus any key upserted by the same change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::catalog::{Entity, EntityKey};
use crate::mapping::{CompiledResource, ItemOutcome};

pub use crate::ado::kinds::RawItem;

/// The writes one change needs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LivePlan {
    /// Per blueprint, in mapping order; a key produced twice keeps the last.
    pub upserts: BTreeMap<String, Vec<Entity>>,
    /// Per blueprint, identifiers to delete if this integration owns them.
    pub deletes: BTreeMap<String, BTreeSet<String>>,
    /// Items that produced no write: dropped by a falsy identifier, a selector error, itemsToParse.
    pub skipped: usize,
}

impl LivePlan {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Maps every (resource block, raw item) pair and plans the writes.
pub fn plan<'a>(items: impl IntoIterator<Item = (&'a CompiledResource, RawItem)>) -> LivePlan {
    let mut out = LivePlan::default();
    let mut positions: HashMap<EntityKey, usize> = HashMap::new();
    let mut candidates: Vec<Entity> = Vec::new();
    for (resource, raw) in items {
        let (value, gone) = match &raw {
            RawItem::Current(v) => (v, false),
            RawItem::Gone(v) => (v, true),
        };
        // keep_filtered: an item that no longer passes the selector must still map, to be deleted.
        for outcome in resource.map_item(value, true) {
            match outcome {
                ItemOutcome::Mapped { entity, .. } if !gone => {
                    let key = entity.key();
                    let group = out.upserts.entry(entity.blueprint.clone()).or_default();
                    match positions.get(&key) {
                        Some(&i) if !entity.uses_search() => group[i] = entity,
                        _ => {
                            positions.insert(key, group.len());
                            group.push(entity);
                        }
                    }
                }
                // A gone item's entity is deleted whether or not it passed: its last state in the catalog
                // may have passed even if the snapshot does not; the ownership check guards the rest.
                ItemOutcome::Mapped { entity, .. }
                | ItemOutcome::Filtered {
                    entity: Some(entity),
                } => candidates.push(entity),
                ItemOutcome::Filtered { entity: None } => out.skipped += 1,
                ItemOutcome::Dropped { .. } => out.skipped += 1,
                ItemOutcome::SelectorError { message } | ItemOutcome::ParentSkipped { message } => {
                    tracing::warn!(kind = %resource.kind(), index = resource.index(), reason = %message, "live item skipped");
                    out.skipped += 1;
                }
            }
        }
    }
    for entity in candidates {
        // A search identifier cannot be owned or deleted by key.
        if entity.uses_search() {
            out.skipped += 1;
            continue;
        }
        let key = entity.key();
        if positions.contains_key(&key) {
            continue;
        }
        out.deletes
            .entry(key.blueprint)
            .or_default()
            .insert(key.identifier);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::CompiledConfig;
    use crate::tenant::compile_mapping;
    use serde_json::{Value, json};

    const TWO_BLOCKS: &str = r#"
resources:
  - kind: work-item
    selector:
      query: '.fields."System.State" != "Closed"'
    port:
      entity:
        mappings:
          identifier: .__project.id + "/" + (.id | tostring)
          title: .fields."System.Title"
          blueprint: '"workItem"'
  - kind: work-item
    selector:
      query: '.fields."System.WorkItemType" == "Bug"'
    port:
      entity:
        mappings:
          identifier: .__project.id + "/" + (.id | tostring)
          blueprint: '"workItem"'
          properties:
            bug: 'true'
"#;

    fn mapping(text: &str) -> CompiledConfig {
        compile_mapping(text, "test", false).unwrap()
    }

    fn item(id: u64, state: &str, kind: &str) -> Value {
        json!({
            "id": id,
            "fields": {"System.State": state, "System.Title": format!("item {id}"), "System.WorkItemType": kind},
            "__projectId": "p1",
            "__project": {"id": "p1", "name": "Alpha"},
        })
    }

    fn ids(plan: &LivePlan, blueprint: &str) -> Vec<String> {
        plan.deletes
            .get(blueprint)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_item_that_passes_is_upserted_and_nothing_is_deleted() {
        let m = mapping(TWO_BLOCKS);
        let first = &*m.resources()[0];
        let plan = plan([(first, RawItem::Current(item(7, "Active", "Task")))]);
        assert_eq!(plan.upserts["workItem"].len(), 1);
        assert_eq!(plan.upserts["workItem"][0].identifier, json!("p1/7"));
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn an_item_that_leaves_the_selector_becomes_a_delete() {
        let m = mapping(TWO_BLOCKS);
        let first = &*m.resources()[0];
        let plan = plan([(first, RawItem::Current(item(7, "Closed", "Task")))]);
        assert!(plan.upserts.is_empty());
        assert_eq!(ids(&plan, "workItem"), ["p1/7"]);
    }

    #[test]
    fn a_key_another_block_upserts_is_not_deleted() {
        let m = mapping(TWO_BLOCKS);
        let raw = item(7, "Closed", "Bug");
        let plan = plan(
            m.resources()
                .iter()
                .map(|r| (&**r, RawItem::Current(raw.clone()))),
        );
        assert_eq!(plan.upserts["workItem"].len(), 1, "{plan:?}");
        assert!(plan.deletes.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_gone_item_is_deleted_whether_or_not_its_snapshot_passes() {
        let m = mapping(TWO_BLOCKS);
        let first = &*m.resources()[0];
        let plan = plan([
            (first, RawItem::Gone(item(7, "Active", "Task"))),
            (first, RawItem::Gone(item(8, "Closed", "Task"))),
        ]);
        assert!(plan.upserts.is_empty());
        assert_eq!(ids(&plan, "workItem"), ["p1/7", "p1/8"]);
    }

    #[test]
    fn the_same_key_from_two_blocks_is_upserted_once_with_the_last_mapping() {
        let m = mapping(TWO_BLOCKS);
        let raw = item(7, "Active", "Bug");
        let plan = plan(
            m.resources()
                .iter()
                .map(|r| (&**r, RawItem::Current(raw.clone()))),
        );
        let written = &plan.upserts["workItem"];
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].properties.as_ref().unwrap()["bug"], json!(true));
    }

    #[test]
    fn entities_with_a_search_identifier_are_never_delete_candidates() {
        let m = mapping(
            r#"
resources:
  - kind: repository
    selector:
      query: 'false'
    port:
      entity:
        mappings:
          identifier:
            combinator: '"and"'
            rules:
              - property: '"name"'
                operator: '"="'
                value: .name
          blueprint: '"repository"'
"#,
        );
        let plan = plan([(
            &*m.resources()[0],
            RawItem::Current(json!({"id": "r", "name": "repo"})),
        )]);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.skipped, 1);
    }

    #[test]
    fn an_item_whose_identifier_is_empty_is_skipped() {
        let m = mapping(
            r#"
resources:
  - kind: repository
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"repository"'
"#,
        );
        let plan = plan([(
            &*m.resources()[0],
            RawItem::Current(json!({"name": "no id"})),
        )]);
        assert!(plan.is_empty());
        assert_eq!(plan.skipped, 1);
    }
}
