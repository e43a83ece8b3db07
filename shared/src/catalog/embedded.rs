//! The embedded (SQLite) catalog adapter: the [`Catalog`] port over [`CatalogStore`], for the demo,
//! dry runs and tests. It writes with the same `$datasource` the Port client sends as User-Agent, so a
//! database filled here has the ownership Port would record.
//!
//! Store calls run inline in the async functions rather than through `spawn_blocking`: each is one
//! short SQLite transaction on a local file (well under a millisecond per entity), and a thread hop
//! would cost a copy of every batch for no gain. A caller that needs the runtime free during long
//! writes can wrap the adapter's calls itself.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::store::{CatalogStore, StoreError};
use super::{
    Catalog, CatalogError, Entity, Failure, OwnedPage, UpsertOutcome, WriteOptions,
    ownership_filter,
};

/// How many keys one ownership page holds, as Ocean asks of Port.
const OWNED_PAGE_SIZE: usize = 5000;

pub struct EmbeddedCatalog {
    store: Arc<CatalogStore>,
    datasource: String,
    owned_prefix: String,
    owned_suffix: String,
}

impl std::fmt::Debug for EmbeddedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedCatalog")
            .field("datasource", &self.datasource)
            .finish_non_exhaustive()
    }
}

impl EmbeddedCatalog {
    /// Opens (or creates) the database file. `datasource` is this integration's ownership tag, built
    /// with [`super::datasource`].
    pub fn open(path: impl AsRef<Path>, datasource: String) -> Result<Self, CatalogError> {
        Ok(Self::with_store(
            Arc::new(CatalogStore::open(path).map_err(store_error)?),
            datasource,
        ))
    }

    pub fn in_memory(datasource: String) -> Result<Self, CatalogError> {
        Ok(Self::with_store(
            Arc::new(CatalogStore::in_memory().map_err(store_error)?),
            datasource,
        ))
    }

    /// An adapter over a store shared with others (for example several integrations in one demo).
    pub fn with_store(store: Arc<CatalogStore>, datasource: String) -> Self {
        let (owned_prefix, owned_suffix) = ownership_filter(&datasource);
        Self {
            store,
            datasource,
            owned_prefix,
            owned_suffix,
        }
    }

    pub fn store(&self) -> &CatalogStore {
        &self.store
    }

    pub fn shared_store(&self) -> Arc<CatalogStore> {
        self.store.clone()
    }

    pub fn datasource(&self) -> &str {
        &self.datasource
    }
}

fn store_error(e: StoreError) -> CatalogError {
    match e {
        StoreError::Database(_) | StoreError::Corrupt(_) => {
            CatalogError::Permanent(Failure::from_source(e))
        }
        other => CatalogError::Invalid(Failure::from_source(other)),
    }
}

#[async_trait]
impl Catalog for EmbeddedCatalog {
    async fn upsert(
        &self,
        blueprint: &str,
        entities: &[Entity],
        opts: &WriteOptions,
    ) -> Result<Vec<UpsertOutcome>, CatalogError> {
        // Port's bulk endpoint takes one blueprint per request; an entity of another one fails alone.
        let (same, other): (Vec<_>, Vec<_>) = entities
            .iter()
            .enumerate()
            .partition(|(_, e)| e.blueprint == blueprint);
        let batch: Vec<Entity> = same.iter().map(|(_, e)| (*e).clone()).collect();
        let results = self
            .store
            .upsert_many(
                &batch,
                &self.datasource,
                opts.merge,
                opts.create_missing_related_entities,
                Utc::now(),
            )
            .map_err(store_error)?;
        let mut outcomes: Vec<Option<UpsertOutcome>> = vec![None; entities.len()];
        for ((index, _), result) in same.iter().zip(results) {
            outcomes[*index] = Some(match result {
                Ok(done) => UpsertOutcome::Upserted {
                    identifier: done.identifier,
                    created: done.created,
                },
                Err(e) => UpsertOutcome::Failed {
                    status: e.status(),
                    error: e.code().to_owned(),
                    message: e.to_string(),
                },
            });
        }
        for (index, e) in other {
            outcomes[index] = Some(UpsertOutcome::Failed {
                status: 422,
                error: "invalid_request".to_owned(),
                message: format!(
                    "entity of blueprint {:?} in a write to {blueprint:?}",
                    e.blueprint
                ),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every index filled"))
            .collect())
    }

    async fn find(
        &self,
        blueprint: &str,
        identifiers: &[String],
    ) -> Result<Vec<Entity>, CatalogError> {
        if identifiers.is_empty() {
            return Ok(Vec::new());
        }
        // The same query the Port client sends, so both adapters see the same ownership.
        let query = json!({"combinator": "and", "rules": [
            {"property": "$identifier", "operator": "in", "value": identifiers},
            {"property": "$blueprint", "operator": "=", "value": blueprint},
            {"property": "$datasource", "operator": "contains", "value": self.owned_prefix},
            {"property": "$datasource", "operator": "contains", "value": self.owned_suffix},
        ]});
        let found = self.store.search(&query).map_err(store_error)?;
        Ok(found.iter().map(|e| e.to_entity()).collect())
    }

    async fn owned(
        &self,
        before: DateTime<Utc>,
        cursor: Option<String>,
    ) -> Result<OwnedPage, CatalogError> {
        let (page, next) = self
            .store
            .owned(
                &self.owned_prefix,
                &self.owned_suffix,
                Some(before),
                OWNED_PAGE_SIZE,
                cursor.as_deref(),
            )
            .map_err(store_error)?;
        Ok(OwnedPage {
            entities: page.iter().map(|e| e.key()).collect(),
            next,
        })
    }

    async fn delete(
        &self,
        blueprint: &str,
        identifiers: &[String],
        delete_dependents: bool,
        _opts: &WriteOptions,
    ) -> Result<Vec<String>, CatalogError> {
        self.store
            .delete(blueprint, identifiers, delete_dependents)
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{EntityKey, WriteReason, datasource};

    fn opts(merge: bool, create_missing_related_entities: bool) -> WriteOptions {
        WriteOptions {
            merge,
            create_missing_related_entities,
            reason: WriteReason::Resync,
            resync_id: Some("r-1".into()),
        }
    }

    fn repo(id: &str, title: &str) -> Entity {
        serde_json::from_value(json!({
            "identifier": id, "blueprint": "repo", "title": title,
            "properties": {"url": format!("https://dev.azure.com/{id}")}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_catalog_round_trip_upserts_finds_lists_and_deletes() {
        let catalog =
            EmbeddedCatalog::in_memory(datasource("azure-devops", "0.1.0", "ado")).unwrap();
        let start = Utc::now();
        let out = catalog
            .upsert("repo", &[repo("a", "A"), repo("b", "B")], &opts(true, true))
            .await
            .unwrap();
        assert_eq!(
            out[0],
            UpsertOutcome::Upserted {
                identifier: "a".into(),
                created: true
            }
        );
        let again = catalog
            .upsert("repo", &[repo("a", "A2")], &opts(true, true))
            .await
            .unwrap();
        assert_eq!(
            again[0],
            UpsertOutcome::Upserted {
                identifier: "a".into(),
                created: false
            }
        );

        let found = catalog
            .find("repo", &["a".into(), "zz".into()])
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].title, Some(json!("A2")));
        assert_eq!(
            found[0].properties.as_ref().unwrap()["url"],
            "https://dev.azure.com/a"
        );

        let page = catalog.owned(Utc::now(), None).await.unwrap();
        assert_eq!(
            page.entities,
            vec![
                EntityKey {
                    blueprint: "repo".into(),
                    identifier: "a".into()
                },
                EntityKey {
                    blueprint: "repo".into(),
                    identifier: "b".into()
                }
            ]
        );
        assert!(page.next.is_none());
        let before_writes = catalog
            .owned(start - chrono::Duration::seconds(1), None)
            .await
            .unwrap();
        assert!(
            before_writes.entities.is_empty(),
            "nothing was updated before the resync started"
        );

        let deleted = catalog
            .delete("repo", &["a".into(), "zz".into()], true, &opts(true, true))
            .await
            .unwrap();
        assert_eq!(deleted, vec!["a"]);
        assert_eq!(catalog.store().count().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_new_version_with_the_same_identifier_keeps_ownership_and_others_do_not_share_it() {
        let store = Arc::new(CatalogStore::in_memory().unwrap());
        let old =
            EmbeddedCatalog::with_store(store.clone(), datasource("azure-devops", "0.0.1", "ado"));
        let new =
            EmbeddedCatalog::with_store(store.clone(), datasource("azure-devops", "0.2.0", "ado"));
        let other =
            EmbeddedCatalog::with_store(store, datasource("azure-devops", "0.2.0", "other"));
        old.upsert("repo", &[repo("a", "A")], &opts(true, true))
            .await
            .unwrap();
        other
            .upsert("repo", &[repo("b", "B")], &opts(true, true))
            .await
            .unwrap();

        let mine = new.owned(Utc::now(), None).await.unwrap();
        assert_eq!(mine.entities.len(), 1);
        assert_eq!(mine.entities[0].identifier, "a");
        assert!(new.find("repo", &["b".into()]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn per_entity_failures_come_back_in_input_order() {
        let catalog =
            EmbeddedCatalog::in_memory(datasource("azure-devops", "0.1.0", "ado")).unwrap();
        let mut stray = repo("p", "P");
        stray.blueprint = "project".into();
        let bad_title: Entity =
            serde_json::from_value(json!({"identifier": "c", "blueprint": "repo", "title": ["x"]}))
                .unwrap();
        let out = catalog
            .upsert(
                "repo",
                &[repo("a", "A"), stray, bad_title],
                &opts(true, true),
            )
            .await
            .unwrap();
        assert!(matches!(out[0], UpsertOutcome::Upserted { .. }));
        assert!(matches!(out[1], UpsertOutcome::Failed { status: 422, .. }));
        assert!(matches!(out[2], UpsertOutcome::Failed { status: 422, .. }));
    }
}
