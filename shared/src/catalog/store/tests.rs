use chrono::TimeZone;
use serde_json::json;

use super::*;

const OURS: &str = "port-ocean/azure-devops/0.1.0/ado/exporter";
const THEIRS: &str = "port-ocean/azure-devops/0.1.0/other/exporter";

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

fn entity(v: Value) -> Entity {
    serde_json::from_value(v).unwrap()
}

fn store_with_repo_blueprint() -> CatalogStore {
    let store = CatalogStore::in_memory().unwrap();
    store
        .put_blueprint(&json!({"identifier": "project", "schema": {"properties": {}}}))
        .unwrap();
    store
        .put_blueprint(&json!({
            "identifier": "repo",
            "schema": {"properties": {}},
            "relations": {
                "project": {"target": "project", "required": false, "many": false},
                "owners": {"target": "project", "required": false, "many": true}
            }
        }))
        .unwrap();
    store
}

#[test]
fn merge_updates_only_the_supplied_fields() {
    let store = CatalogStore::in_memory().unwrap();
    let first = entity(json!({
        "identifier": "r1", "blueprint": "repo", "title": "One", "team": ["a"],
        "properties": {"lang": "rust", "size": 3}, "relations": {"project": "p1"}
    }));
    assert!(
        store
            .upsert(&first, OURS, true, true, t(0))
            .unwrap()
            .created
    );

    let partial = entity(json!({
        "identifier": "r1", "blueprint": "repo", "properties": {"size": 4, "lang": null}
    }));
    let out = store.upsert(&partial, OURS, true, true, t(10)).unwrap();
    assert!(!out.created);

    let got = store.get("repo", "r1").unwrap().unwrap();
    assert_eq!(got.title.as_deref(), Some("One"));
    assert_eq!(got.team, vec!["a"]);
    assert_eq!(Value::Object(got.properties), json!({"size": 4}));
    assert_eq!(Value::Object(got.relations), json!({"project": "p1"}));
    assert_eq!(got.created_at, t(0));
    assert_eq!(got.updated_at, t(10));
}

#[test]
fn replace_clears_the_fields_that_are_absent() {
    let store = CatalogStore::in_memory().unwrap();
    let first = entity(json!({
        "identifier": "r1", "blueprint": "repo", "title": "One", "icon": "Git", "team": "a",
        "properties": {"lang": "rust", "size": 3}, "relations": {"project": "p1"}
    }));
    store.upsert(&first, OURS, true, true, t(0)).unwrap();
    let replacement =
        entity(json!({"identifier": "r1", "blueprint": "repo", "properties": {"size": 4}}));
    store.upsert(&replacement, OURS, false, true, t(5)).unwrap();

    let got = store.get("repo", "r1").unwrap().unwrap();
    assert_eq!(got.title, None);
    assert_eq!(got.icon, None);
    assert!(got.team.is_empty());
    assert_eq!(Value::Object(got.properties), json!({"size": 4}));
    assert!(got.relations.is_empty());
    assert_eq!(got.created_at, t(0), "replacing keeps the creation time");
}

#[test]
fn every_upsert_sets_updated_at_and_takes_over_the_datasource() {
    let store = CatalogStore::in_memory().unwrap();
    let e = entity(json!({"identifier": "r1", "blueprint": "repo", "title": "One"}));
    store.upsert(&e, THEIRS, true, true, t(0)).unwrap();
    store.upsert(&e, OURS, true, true, t(60)).unwrap();
    let got = store.get("repo", "r1").unwrap().unwrap();
    assert_eq!(got.datasource, OURS);
    assert_eq!(got.updated_at, t(60));
}

#[test]
fn malformed_fields_are_rejected_per_entity() {
    let store = CatalogStore::in_memory().unwrap();
    let results = store
        .upsert_many(
            &[
                entity(json!({"identifier": "", "blueprint": "repo"})),
                entity(json!({"identifier": "r1", "blueprint": "repo", "title": {"x": 1}})),
                entity(json!({"identifier": 42, "blueprint": "repo"})),
            ],
            OURS,
            true,
            true,
            t(0),
        )
        .unwrap();
    assert_eq!(results[0].as_ref().unwrap_err().status(), 422);
    assert_eq!(results[1].as_ref().unwrap_err().status(), 422);
    assert_eq!(
        results[2].as_ref().unwrap().identifier,
        "42",
        "numbers are stored as strings"
    );
}

#[test]
fn a_search_identifier_that_matches_one_entity_updates_it() {
    let store = CatalogStore::in_memory().unwrap();
    store
        .upsert(
            &entity(json!({"identifier": "r1", "blueprint": "repo", "properties": {"url": "u1"}})),
            OURS,
            true,
            true,
            t(0),
        )
        .unwrap();
    store
        .upsert(
            &entity(json!({"identifier": "r2", "blueprint": "repo", "properties": {"url": "u2"}})),
            OURS,
            true,
            true,
            t(0),
        )
        .unwrap();
    let by_query = entity(json!({
        "identifier": {"combinator": "and", "rules": [{"property": "url", "operator": "=", "value": "u2"}]},
        "blueprint": "repo",
        "title": "Found"
    }));
    let out = store.upsert(&by_query, OURS, true, true, t(1)).unwrap();
    assert_eq!(
        out,
        StoreUpsert {
            identifier: "r2".into(),
            created: false
        }
    );
    assert_eq!(
        store.get("repo", "r2").unwrap().unwrap().title.as_deref(),
        Some("Found")
    );
}

#[test]
fn a_search_identifier_that_matches_none_or_several_is_an_unknown_identifier_error() {
    let store = CatalogStore::in_memory().unwrap();
    for id in ["r1", "r2"] {
        store
            .upsert(
                &entity(
                    json!({"identifier": id, "blueprint": "repo", "properties": {"kind": "git"}}),
                ),
                OURS,
                true,
                true,
                t(0),
            )
            .unwrap();
    }
    let query = |value: &str| {
        entity(json!({
            "identifier": {"combinator": "and", "rules": [{"property": "kind", "operator": "=", "value": value}]},
            "blueprint": "repo"
        }))
    };
    let none = store
        .upsert(&query("svn"), OURS, true, true, t(1))
        .unwrap_err();
    assert!(matches!(
        none,
        StoreError::IdentifierNotResolved { matches: 0 }
    ));
    assert_eq!(none.identifier(), Some("unknown"));
    let several = store
        .upsert(&query("git"), OURS, true, true, t(1))
        .unwrap_err();
    assert!(matches!(
        several,
        StoreError::IdentifierNotResolved { matches: 2 }
    ));
    assert_eq!(several.identifier(), Some("unknown"));
    assert_eq!(store.count().unwrap(), 2, "nothing was created");
}

#[test]
fn a_missing_relation_target_is_not_found_when_related_entities_may_not_be_created() {
    let store = store_with_repo_blueprint();
    let e =
        entity(json!({"identifier": "r1", "blueprint": "repo", "relations": {"project": "p1"}}));
    let err = store.upsert(&e, OURS, true, false, t(0)).unwrap_err();
    assert_eq!((err.status(), err.code()), (404, "not_found"));
    assert!(matches!(err, StoreError::RelatedNotFound { ref target, .. } if target == "p1"));
    assert!(store.get("repo", "r1").unwrap().is_none());

    store
        .upsert(
            &entity(json!({"identifier": "p1", "blueprint": "project"})),
            OURS,
            true,
            false,
            t(0),
        )
        .unwrap();
    store.upsert(&e, OURS, true, false, t(1)).unwrap();
    assert!(store.get("repo", "r1").unwrap().is_some());
}

#[test]
fn a_missing_relation_target_becomes_an_unowned_stub_when_related_entities_may_be_created() {
    let store = store_with_repo_blueprint();
    let e = entity(
        json!({"identifier": "r1", "blueprint": "repo", "relations": {"owners": ["p1", "p2"]}}),
    );
    store.upsert(&e, OURS, true, true, t(0)).unwrap();
    let stub = store.get("project", "p2").unwrap().unwrap();
    assert_eq!(stub.datasource, "");
    let (owned, _) = store
        .owned("port-ocean/azure-devops/", "/ado/exporter", None, 100, None)
        .unwrap();
    assert_eq!(owned.len(), 1, "stubs are not owned by the writer");
}

#[test]
fn relations_of_an_undefined_blueprint_are_not_checked() {
    let store = CatalogStore::in_memory().unwrap();
    let e = entity(
        json!({"identifier": "r1", "blueprint": "repo", "relations": {"project": "p-missing"}}),
    );
    store.upsert(&e, OURS, true, false, t(0)).unwrap();
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn a_relation_given_as_a_search_query_is_stored_as_the_matched_identifier() {
    let store = store_with_repo_blueprint();
    store
        .upsert(&entity(json!({"identifier": "p1", "blueprint": "project", "properties": {"name": "Alpha"}})), OURS, true, false, t(0))
        .unwrap();
    let e = entity(json!({
        "identifier": "r1", "blueprint": "repo",
        "relations": {"project": {"combinator": "and", "rules": [{"property": "name", "operator": "=", "value": "Alpha"}]}}
    }));
    store.upsert(&e, OURS, true, false, t(1)).unwrap();
    assert_eq!(
        store.get("repo", "r1").unwrap().unwrap().relations["project"],
        json!("p1")
    );

    let missing = entity(json!({
        "identifier": "r2", "blueprint": "repo",
        "relations": {"project": {"combinator": "and", "rules": [{"property": "name", "operator": "=", "value": "Beta"}]}}
    }));
    assert_eq!(
        store
            .upsert(&missing, OURS, true, true, t(1))
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[test]
fn search_evaluates_nested_rules_and_ownership() {
    let store = CatalogStore::in_memory().unwrap();
    for (id, ds, lang) in [
        ("a", OURS, "rust"),
        ("b", OURS, "go"),
        ("c", THEIRS, "rust"),
    ] {
        store
            .upsert(&entity(json!({"identifier": id, "blueprint": "repo", "title": id.to_uppercase(), "properties": {"lang": lang}})), ds, true, true, t(0))
            .unwrap();
    }
    let ids = |q: Value| -> Vec<String> {
        store
            .search(&q)
            .unwrap()
            .into_iter()
            .map(|e| e.identifier)
            .collect()
    };

    assert_eq!(
        ids(json!({"combinator": "and", "rules": [
            {"property": "$identifier", "operator": "in", "value": ["a", "b", "c", "zz"]},
            {"property": "$blueprint", "operator": "=", "value": "repo"},
            {"property": "$datasource", "operator": "contains", "value": "port-ocean/azure-devops/"},
            {"property": "$datasource", "operator": "contains", "value": "/ado/exporter"}
        ]})),
        vec!["a", "b"]
    );
    assert_eq!(
        ids(json!({"combinator": "or", "rules": [
            {"property": "lang", "operator": "=", "value": "go"},
            {"combinator": "and", "rules": [
                {"property": "$title", "operator": "startsWith", "value": "C"},
                {"property": "$datasource", "operator": "!=", "value": OURS}
            ]}
        ]})),
        vec!["b", "c"]
    );
    assert!(store.search(&json!({"combinator": "and", "rules": [{"property": "x", "operator": "~~", "value": 1}]})).is_err());
}

#[test]
fn owned_filters_by_prefix_suffix_and_time_and_pages_with_a_cursor() {
    let store = CatalogStore::in_memory().unwrap();
    for i in 0..5 {
        let e = entity(json!({"identifier": format!("r{i}"), "blueprint": "repo"}));
        store.upsert(&e, OURS, true, true, t(i)).unwrap();
    }
    // Another version of the same integration still owns; another identifier does not.
    store
        .upsert(
            &entity(json!({"identifier": "old", "blueprint": "pipeline"})),
            "port-ocean/azure-devops/0.0.9/ado/exporter",
            true,
            true,
            t(0),
        )
        .unwrap();
    store
        .upsert(
            &entity(json!({"identifier": "x", "blueprint": "repo"})),
            THEIRS,
            true,
            true,
            t(0),
        )
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = store
            .owned(
                "port-ocean/azure-devops/",
                "/ado/exporter",
                Some(t(3)),
                2,
                cursor.as_deref(),
            )
            .unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|e| e.key().to_string()));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["pipeline/old", "repo/r0", "repo/r1", "repo/r2", "repo/r3"]
    );
    assert!(
        store
            .owned("p", "", None, 10, Some("not a cursor"))
            .is_err()
    );
}

#[test]
fn delete_reports_what_existed_and_removes_dependents_only_when_asked() {
    let store = store_with_repo_blueprint();
    for p in ["p1", "p2"] {
        store
            .upsert(
                &entity(json!({"identifier": p, "blueprint": "project"})),
                OURS,
                true,
                false,
                t(0),
            )
            .unwrap();
    }
    store
        .upsert(
            &entity(
                json!({"identifier": "r1", "blueprint": "repo", "relations": {"project": "p1"}}),
            ),
            OURS,
            true,
            false,
            t(0),
        )
        .unwrap();
    store
        .upsert(
            &entity(
                json!({"identifier": "r2", "blueprint": "repo", "relations": {"owners": ["p2"]}}),
            ),
            OURS,
            true,
            false,
            t(0),
        )
        .unwrap();

    let deleted = store
        .delete("project", &["p1".into(), "nope".into()], false)
        .unwrap();
    assert_eq!(deleted, vec!["p1"]);
    assert!(
        store.get("repo", "r1").unwrap().is_some(),
        "dependents stay without delete_dependents"
    );

    let deleted = store.delete("project", &["p2".into()], true).unwrap();
    assert_eq!(deleted, vec!["p2"]);
    assert!(
        store.get("repo", "r2").unwrap().is_none(),
        "the dependent went with it"
    );
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn blueprint_and_integration_records_round_trip_and_patch_top_level_fields() {
    let store = CatalogStore::in_memory().unwrap();
    store
        .put_blueprint(&json!({"identifier": "repo", "title": "Repo"}))
        .unwrap();
    let patched = store
        .patch_blueprint("repo", &json!({"title": "Repository"}))
        .unwrap()
        .unwrap();
    assert_eq!(
        patched,
        json!({"identifier": "repo", "title": "Repository"})
    );
    assert_eq!(store.patch_blueprint("nope", &json!({})).unwrap(), None);
    assert_eq!(store.blueprints().unwrap().len(), 1);
    assert!(store.delete_blueprint("repo").unwrap());

    store
        .put_integration("ado", &json!({"identifier": "ado", "config": {}}))
        .unwrap();
    store
        .patch_integration("ado", &json!({"version": "1"}))
        .unwrap();
    assert_eq!(store.integration("ado").unwrap().unwrap()["version"], "1");
}

#[test]
fn a_database_file_is_created_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    {
        let store = CatalogStore::open(&path).unwrap();
        store
            .upsert(
                &entity(json!({"identifier": "r1", "blueprint": "repo"})),
                OURS,
                true,
                true,
                t(0),
            )
            .unwrap();
    }
    let store = CatalogStore::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 1);
}
