//! `initializePortResources`: creates the shipped default blueprints that are missing and the
//! integration record when there is none, never touching what exists (a user's blueprint or mapping).
//! Blueprints are created in the peer's three stages, because the catalog refuses a relation (or a
//! mirror property) whose target blueprint does not exist yet: every missing blueprint bare first, then
//! its relations and ownership, then the rest. A failure undoes the blueprints this run created.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{CatalogAdmin, CatalogError};

/// Stage 2: what may point at other blueprints.
const LINK_KEYS: [&str; 2] = ["relations", "ownership"];
/// Stage 3: what may read through relations.
const DERIVED_KEYS: [&str; 4] = [
    "teamInheritance",
    "calculationProperties",
    "mirrorProperties",
    "aggregationProperties",
];
/// Blueprint reads in flight at once.
const READ_CONCURRENCY: usize = 4;

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct InitReport {
    /// Blueprints created by this run, in creation order.
    pub created_blueprints: Vec<String>,
    /// Default blueprints that already existed and were left alone.
    pub existing_blueprints: Vec<String>,
    pub integration_created: bool,
}

/// The three request bodies of one blueprint (`None` when there is nothing to send in that stage).
#[derive(Debug, PartialEq)]
struct Stages {
    bare: Value,
    links: Option<Value>,
    derived: Option<Value>,
}

fn stages(blueprint: &Map<String, Value>) -> Stages {
    let pick = |keys: &[&str]| {
        let part: Map<String, Value> = keys
            .iter()
            .filter_map(|k| blueprint.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .filter(|(_, v)| !is_empty(v))
            .collect();
        (!part.is_empty()).then_some(Value::Object(part))
    };
    // Empty ones (`"relations": {}`) point at nothing, so they go with the bare blueprint.
    let later = |k: &str| LINK_KEYS.contains(&k) || DERIVED_KEYS.contains(&k);
    let bare: Map<String, Value> = blueprint
        .iter()
        .filter(|(k, v)| !later(k) || is_empty(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Stages {
        bare: Value::Object(bare),
        links: pick(&LINK_KEYS),
        derived: pick(&DERIVED_KEYS),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn identifier(blueprint: &Value) -> Result<&str, CatalogError> {
    blueprint
        .get("identifier")
        .and_then(Value::as_str)
        .ok_or_else(|| CatalogError::Invalid("a default blueprint has no identifier".into()))
}

/// Creates what is missing. `integration` is the record to create when none exists (`None`: leave the
/// record alone). A second run with the same inputs only reads.
pub async fn initialize(
    admin: &dyn CatalogAdmin,
    blueprints: &[Value],
    integration: Option<Value>,
) -> Result<InitReport, CatalogError> {
    let mut report = InitReport::default();
    let found: Vec<Option<Value>> = stream::iter(blueprints.iter().map(identifier))
        .map(|id| async move { admin.blueprint(id?).await })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut missing = Vec::new();
    for (blueprint, found) in blueprints.iter().zip(found) {
        let id = identifier(blueprint)?.to_owned();
        match (found, blueprint.as_object()) {
            (Some(_), _) => report.existing_blueprints.push(id),
            (None, Some(obj)) => missing.push((id, stages(obj))),
            (None, None) => {
                return Err(CatalogError::invalid(format!(
                    "default blueprint {id:?} is not an object"
                )));
            }
        }
    }
    if let Err(e) = create_blueprints(admin, &missing, &mut report.created_blueprints).await {
        // Undo in reverse so a blueprint goes before the ones it points at.
        for id in report.created_blueprints.iter().rev() {
            if let Err(undo) = admin.delete_blueprint(id).await {
                tracing::warn!(blueprint = %id, error = %undo, "could not undo a blueprint creation");
            }
        }
        return Err(e);
    }
    for id in &report.created_blueprints {
        tracing::info!(blueprint = %id, "default blueprint created");
    }

    if let Some(body) = integration
        && admin.integration().await?.is_none()
    {
        admin.create_integration(body).await?;
        report.integration_created = true;
        tracing::info!("integration record created with the default mapping");
    }
    Ok(report)
}

async fn create_blueprints(
    admin: &dyn CatalogAdmin,
    missing: &[(String, Stages)],
    created: &mut Vec<String>,
) -> Result<(), CatalogError> {
    for (id, stages) in missing {
        admin.create_blueprint(&stages.bare).await?;
        created.push(id.clone());
    }
    for (id, stages) in missing {
        if let Some(links) = &stages.links {
            admin.patch_blueprint(id, links).await?;
        }
    }
    for (id, stages) in missing {
        if let Some(derived) = &stages.derived {
            admin.patch_blueprint(id, derived).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;

    /// A catalog that, like Port, refuses links to blueprints that do not exist.
    #[derive(Default)]
    struct FakeAdmin {
        blueprints: Mutex<BTreeMap<String, Value>>,
        integration: Mutex<Option<Value>>,
        writes: Mutex<Vec<String>>,
        fail_create: Option<&'static str>,
    }

    impl FakeAdmin {
        fn check_targets(&self, id: &str, body: &Value) -> Result<(), CatalogError> {
            let bps = self.blueprints.lock().unwrap();
            for rel in body
                .get("relations")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.values())
            {
                let target = rel["target"].as_str().unwrap_or_default();
                if target != id && !bps.contains_key(target) {
                    return Err(CatalogError::invalid(format!("no target {target}")));
                }
            }
            Ok(())
        }
    }

    #[async_trait]
    impl CatalogAdmin for FakeAdmin {
        async fn integration(&self) -> Result<Option<Value>, CatalogError> {
            Ok(self.integration.lock().unwrap().clone())
        }
        async fn create_integration(&self, body: Value) -> Result<(), CatalogError> {
            self.writes.lock().unwrap().push("POST integration".into());
            *self.integration.lock().unwrap() = Some(body);
            Ok(())
        }
        async fn blueprint(&self, id: &str) -> Result<Option<Value>, CatalogError> {
            Ok(self.blueprints.lock().unwrap().get(id).cloned())
        }
        async fn create_blueprint(&self, body: &Value) -> Result<(), CatalogError> {
            let id = body["identifier"].as_str().unwrap().to_owned();
            self.writes.lock().unwrap().push(format!("POST {id}"));
            if self.fail_create == Some(id.as_str()) {
                return Err(CatalogError::Invalid("refused".into()));
            }
            self.check_targets(&id, body)?;
            self.blueprints.lock().unwrap().insert(id, body.clone());
            Ok(())
        }
        async fn patch_blueprint(&self, id: &str, patch: &Value) -> Result<(), CatalogError> {
            self.writes.lock().unwrap().push(format!("PATCH {id}"));
            self.check_targets(id, patch)?;
            let mut bps = self.blueprints.lock().unwrap();
            let bp = bps.get_mut(id).unwrap().as_object_mut().unwrap();
            for (k, v) in patch.as_object().unwrap() {
                bp.insert(k.clone(), v.clone());
            }
            Ok(())
        }
        async fn delete_blueprint(&self, id: &str) -> Result<(), CatalogError> {
            self.writes.lock().unwrap().push(format!("DELETE {id}"));
            self.blueprints.lock().unwrap().remove(id);
            Ok(())
        }
        async fn patch_resync_state(&self, state: &Value) -> Result<(), CatalogError> {
            self.writes
                .lock()
                .unwrap()
                .push(format!("PATCH resync-state {}", state["status"]));
            Ok(())
        }
    }

    fn defaults() -> Vec<Value> {
        serde_json::from_str(crate::tenant::DEFAULT_BLUEPRINTS).unwrap()
    }

    #[tokio::test]
    async fn an_empty_catalog_gets_every_blueprint_with_its_relations_and_the_record() {
        let admin = FakeAdmin::default();
        let report = initialize(&admin, &defaults(), Some(json!({"config": {}})))
            .await
            .unwrap();
        assert_eq!(report.created_blueprints.len(), defaults().len());
        assert!(report.integration_created);
        for bp in defaults() {
            let stored = admin.blueprint(identifier(&bp).unwrap()).await.unwrap();
            let stored = stored.unwrap();
            assert_eq!(stored["relations"], bp["relations"], "{}", bp["identifier"]);
            assert_eq!(stored["schema"], bp["schema"]);
        }
        let writes = admin.writes.lock().unwrap().len();
        let again = initialize(&admin, &defaults(), Some(json!({"config": {}})))
            .await
            .unwrap();
        assert!(again.created_blueprints.is_empty() && !again.integration_created);
        assert_eq!(
            admin.writes.lock().unwrap().len(),
            writes,
            "no write the second time"
        );
    }

    #[tokio::test]
    async fn existing_blueprints_and_records_are_left_alone() {
        let admin = FakeAdmin::default();
        let mine = json!({"identifier": "azureDevopsProject", "title": "Mine", "schema": {}});
        admin
            .blueprints
            .lock()
            .unwrap()
            .insert("azureDevopsProject".into(), mine.clone());
        *admin.integration.lock().unwrap() = Some(json!({"config": {"resources": []}}));
        let report = initialize(&admin, &defaults(), Some(json!({"config": {}})))
            .await
            .unwrap();
        assert_eq!(report.existing_blueprints, vec!["azureDevopsProject"]);
        assert!(!report.integration_created);
        assert_eq!(
            admin.blueprint("azureDevopsProject").await.unwrap(),
            Some(mine)
        );
        assert_eq!(
            admin.integration().await.unwrap(),
            Some(json!({"config": {"resources": []}}))
        );
    }

    #[tokio::test]
    async fn a_failed_creation_undoes_this_runs_blueprints_only() {
        let admin = FakeAdmin {
            fail_create: Some("azureDevopsPipeline"),
            ..Default::default()
        };
        admin.blueprints.lock().unwrap().insert(
            "azureDevopsUser".into(),
            json!({"identifier": "azureDevopsUser"}),
        );
        let e = initialize(&admin, &defaults(), None).await.unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        let left: Vec<String> = admin.blueprints.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, vec!["azureDevopsUser"]);
    }

    #[test]
    fn the_bare_stage_carries_no_links() {
        let bp = json!({"identifier": "a", "schema": {"properties": {}}, "relations": {"p": {"target": "b"}},
                        "mirrorProperties": {}, "calculationProperties": {"c": {}}});
        let Stages {
            bare,
            links,
            derived,
        } = stages(bp.as_object().unwrap());
        assert_eq!(
            bare,
            json!({"identifier": "a", "schema": {"properties": {}}, "mirrorProperties": {}})
        );
        assert_eq!(links, Some(json!({"relations": {"p": {"target": "b"}}})));
        assert_eq!(derived, Some(json!({"calculationProperties": {"c": {}}})));
    }
}
