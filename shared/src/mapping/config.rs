//! The `port-app-config` model: what users write in Port's UI or a YAML file, parsed and validated.
//!
//! Follows Ocean's pydantic-v1 model: defaults, loose coercion of flags, unknown keys tolerated (kept
//! here so integration-specific keys such as `useDefaultBranch` or `selector.wiql` reach their owners).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::MappingError;

/// The whole mapping configuration of one integration.
#[derive(Debug, Clone, PartialEq)]
pub struct PortAppConfig {
    pub enable_merge_entity: bool,
    pub delete_dependent_entities: bool,
    pub create_missing_related_entities: bool,
    /// The largest fraction of owned entities one reconciliation may delete, in `0..=1`.
    pub entity_deletion_threshold: f64,
    pub resources: Vec<ResourceConfig>,
    /// Top-level keys this model does not know, kept for the integration (e.g. `useDefaultBranch`).
    pub extra: Map<String, Value>,
}

impl Default for PortAppConfig {
    fn default() -> Self {
        Self {
            enable_merge_entity: true,
            delete_dependent_entities: true,
            create_missing_related_entities: true,
            entity_deletion_threshold: 0.9,
            resources: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// One entry of `resources`: a kind to fetch and how to map its items.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceConfig {
    pub kind: String,
    pub selector: Selector,
    pub port: PortResourceConfig,
}

/// `selector`: the jq filter deciding which items are kept, plus kind-specific options.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub query: String,
    /// Every other selector key (`defaultTeam`, `wiql`, `expand`, `includedFiles`, ...), untouched.
    pub options: Map<String, Value>,
}

/// `port`: the entity mapping and the optional array expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct PortResourceConfig {
    pub entity: EntityMappingConfig,
    pub items_to_parse: Option<String>,
    pub items_to_parse_name: String,
    pub items_to_parse_top_level_transform: bool,
}

/// `port.entity.mappings`. Every leaf string is jq. `None` means the key was absent, so the field is
/// neither evaluated nor sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityMappingConfig {
    pub identifier: MappingNode,
    pub blueprint: String,
    pub title: Option<String>,
    pub icon: Option<String>,
    pub team: Option<MappingNode>,
    pub properties: Option<BTreeMap<String, String>>,
    pub relations: Option<BTreeMap<String, MappingNode>>,
}

/// A mapped value: one jq expression, or a search query whose leaves are jq expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum MappingNode {
    Jq(String),
    Search(SearchQuery),
}

/// Port's ingest search query (`{combinator, rules}`), resolved by the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub combinator: String,
    pub rules: Vec<SearchRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchRule {
    Rule {
        property: String,
        operator: String,
        value: String,
    },
    Query(SearchQuery),
}

impl PortAppConfig {
    /// Parses YAML or JSON text (JSON is YAML, so one parser serves both).
    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| MappingError::Parse(Box::new(e)))?;
        Self::from_value(value)
    }

    /// Validates an already-parsed document, e.g. the catalog's `integration.config`.
    pub fn from_value(v: Value) -> Result<Self, MappingError> {
        let Value::Object(mut top) = v else {
            return Err(invalid(
                "(root)",
                format!("expected an object, got {}", type_name(&v)),
            ));
        };
        let defaults = Self::default();
        let mut flag = |key: &str, default: bool| -> Result<bool, MappingError> {
            match top.remove(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => coerce_bool(&v).ok_or_else(|| invalid(key, expected("a boolean", &v))),
            }
        };
        let enable_merge_entity = flag("enableMergeEntity", defaults.enable_merge_entity)?;
        let delete_dependent_entities = flag(
            "deleteDependentEntities",
            defaults.delete_dependent_entities,
        )?;
        let create_missing_related_entities = flag(
            "createMissingRelatedEntities",
            defaults.create_missing_related_entities,
        )?;

        let key = "entityDeletionThreshold";
        let entity_deletion_threshold = match top.remove(key) {
            None | Some(Value::Null) => defaults.entity_deletion_threshold,
            Some(v) => coerce_f64(&v).ok_or_else(|| invalid(key, expected("a number", &v)))?,
        };
        if !(0.0..=1.0).contains(&entity_deletion_threshold) {
            return Err(invalid(
                key,
                format!("must be between 0 and 1, got {entity_deletion_threshold}"),
            ));
        }

        let resources = match top.remove("resources") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| ResourceConfig::from_value(i, item))
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(invalid("resources", expected("a list", &v))),
        };

        Ok(Self {
            enable_merge_entity,
            delete_dependent_entities,
            create_missing_related_entities,
            entity_deletion_threshold,
            resources,
            extra: top,
        })
    }
}

impl ResourceConfig {
    fn from_value(index: usize, v: Value) -> Result<Self, MappingError> {
        let at = format!("resources[{index}]");
        let mut obj = into_object(v, &at)?;
        let kind = match obj.remove("kind") {
            Some(Value::String(s)) => s,
            Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
            None | Some(Value::Null) => return Err(invalid(format!("{at}.kind"), "is required")),
            Some(v) => return Err(invalid(format!("{at}.kind"), expected("a string", &v))),
        };
        let at = format!("{at} ({kind})");

        let mut selector = match obj.remove("selector") {
            None | Some(Value::Null) => {
                return Err(invalid(format!("{at}.selector"), "is required"));
            }
            Some(v) => into_object(v, &format!("{at}.selector"))?,
        };
        let query = match selector.remove("query") {
            None | Some(Value::Null) => {
                return Err(invalid(format!("{at}.selector.query"), "is required"));
            }
            Some(v) => jq_text(v, &format!("{at}.selector.query"))?,
        };
        let selector = Selector {
            query,
            options: selector,
        };

        let mut port = match obj.remove("port") {
            None | Some(Value::Null) => return Err(invalid(format!("{at}.port"), "is required")),
            Some(v) => into_object(v, &format!("{at}.port"))?,
        };
        let mut entity = match port.remove("entity") {
            None | Some(Value::Null) => {
                return Err(invalid(format!("{at}.port.entity"), "is required"));
            }
            Some(v) => into_object(v, &format!("{at}.port.entity"))?,
        };
        let mappings_at = format!("{at}.port.entity.mappings");
        let entity = match entity.remove("mappings") {
            None | Some(Value::Null) => return Err(invalid(mappings_at, "is required")),
            Some(v) => EntityMappingConfig::from_value(v, &mappings_at)?,
        };

        let items_to_parse = match port.remove("itemsToParse") {
            None | Some(Value::Null) => None,
            Some(v) => Some(jq_text(v, &format!("{at}.port.itemsToParse"))?),
        };
        let items_to_parse_name = match port.remove("itemsToParseName") {
            None | Some(Value::Null) => "item".to_owned(),
            Some(Value::String(s)) => s,
            Some(v) => {
                return Err(invalid(
                    format!("{at}.port.itemsToParseName"),
                    expected("a string", &v),
                ));
            }
        };
        let items_to_parse_top_level_transform = match port.remove("itemsToParseTopLevelTransform")
        {
            None | Some(Value::Null) => true,
            Some(v) => coerce_bool(&v).ok_or_else(|| {
                invalid(
                    format!("{at}.port.itemsToParseTopLevelTransform"),
                    expected("a boolean", &v),
                )
            })?,
        };

        Ok(Self {
            kind,
            selector,
            port: PortResourceConfig {
                entity,
                items_to_parse,
                items_to_parse_name,
                items_to_parse_top_level_transform,
            },
        })
    }
}

impl EntityMappingConfig {
    fn from_value(v: Value, at: &str) -> Result<Self, MappingError> {
        let mut obj = into_object(v, at)?;
        let mut required = |key: &str| match obj.remove(key) {
            None | Some(Value::Null) => Err(invalid(format!("{at}.{key}"), "is required")),
            Some(v) => Ok(v),
        };
        let identifier =
            MappingNode::from_value(required("identifier")?, &format!("{at}.identifier"))?;
        let blueprint = jq_text(required("blueprint")?, &format!("{at}.blueprint"))?;
        let mut optional_text = |key: &str| -> Result<Option<String>, MappingError> {
            match obj.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => jq_text(v, &format!("{at}.{key}")).map(Some),
            }
        };
        let title = optional_text("title")?;
        let icon = optional_text("icon")?;
        let team = match obj.remove("team") {
            None | Some(Value::Null) => None,
            Some(v) => Some(MappingNode::from_value(v, &format!("{at}.team"))?),
        };
        let properties = match obj.remove("properties") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let props_at = format!("{at}.properties");
                let map = into_object(v, &props_at)?;
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let text = jq_text(v, &format!("{props_at}.{k}"))?;
                    out.insert(k, text);
                }
                Some(out)
            }
        };
        let relations = match obj.remove("relations") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let rel_at = format!("{at}.relations");
                let map = into_object(v, &rel_at)?;
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let node = MappingNode::from_value(v, &format!("{rel_at}.{k}"))?;
                    out.insert(k, node);
                }
                Some(out)
            }
        };
        // Other keys (the peer's examples carry a stray `url`) are ignored, as pydantic does.
        Ok(Self {
            identifier,
            blueprint,
            title,
            icon,
            team,
            properties,
            relations,
        })
    }
}

impl MappingNode {
    fn from_value(v: Value, at: &str) -> Result<Self, MappingError> {
        match v {
            Value::Object(_) => SearchQuery::from_value(v, at).map(Self::Search),
            other => jq_text(other, at).map(Self::Jq),
        }
    }
}

impl SearchQuery {
    fn from_value(v: Value, at: &str) -> Result<Self, MappingError> {
        let mut obj = into_object(v, at)?;
        let combinator = match obj.remove("combinator") {
            None | Some(Value::Null) => {
                return Err(invalid(
                    format!("{at}.combinator"),
                    "is required in a search query",
                ));
            }
            Some(v) => jq_text(v, &format!("{at}.combinator"))?,
        };
        let rules = match obj.remove("rules") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, rule)| SearchRule::from_value(rule, &format!("{at}.rules[{i}]")))
                .collect::<Result<_, _>>()?,
            None | Some(Value::Null) => {
                return Err(invalid(
                    format!("{at}.rules"),
                    "is required in a search query",
                ));
            }
            Some(v) => return Err(invalid(format!("{at}.rules"), expected("a list", &v))),
        };
        Ok(Self { combinator, rules })
    }
}

impl SearchRule {
    fn from_value(v: Value, at: &str) -> Result<Self, MappingError> {
        let mut obj = into_object(v, at)?;
        if obj.contains_key("combinator") {
            return SearchQuery::from_value(Value::Object(obj), at).map(Self::Query);
        }
        let mut leaf = |key: &str| match obj.remove(key) {
            None | Some(Value::Null) => {
                Err(invalid(format!("{at}.{key}"), "is required in a rule"))
            }
            Some(v) => jq_text(v, &format!("{at}.{key}")),
        };
        Ok(Self::Rule {
            property: leaf("property")?,
            operator: leaf("operator")?,
            value: leaf("value")?,
        })
    }
}

impl Selector {
    /// A boolean option, coerced as pydantic v1 does (`"true"`, `"False"`, `1`, `"no"`, ...).
    pub fn bool_option(&self, key: &str, default: bool) -> Result<bool, MappingError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => coerce_bool(v)
                .ok_or_else(|| invalid(format!("selector.{key}"), expected("a boolean", v))),
        }
    }

    /// An integer option; numeric strings and integral floats are accepted.
    pub fn int_option(&self, key: &str, default: Option<i64>) -> Result<Option<i64>, MappingError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => coerce_i64(v)
                .map(Some)
                .ok_or_else(|| invalid(format!("selector.{key}"), expected("an integer", v))),
        }
    }

    /// A string option; numbers and booleans are taken as their text.
    pub fn str_option(&self, key: &str) -> Result<Option<String>, MappingError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(v) => Err(invalid(format!("selector.{key}"), expected("a string", v))),
        }
    }

    /// A list of strings; a single string counts as a list of one.
    pub fn str_list_option(&self, key: &str) -> Result<Vec<String>, MappingError> {
        let bad = |v: &Value| invalid(format!("selector.{key}"), expected("a list of strings", v));
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Ok(item.to_string()),
                    other => Err(bad(other)),
                })
                .collect(),
            Some(v) => Err(bad(v)),
        }
    }
}

/// Where jq text is expected, YAML scalars such as `true` or `1` are taken as their jq source text.
fn jq_text(v: Value, at: &str) -> Result<String, MappingError> {
    match v {
        Value::String(s) => Ok(s),
        Value::Bool(_) | Value::Number(_) => Ok(v.to_string()),
        other => Err(invalid(at, expected("a jq expression (string)", &other))),
    }
}

fn into_object(v: Value, at: &str) -> Result<Map<String, Value>, MappingError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(invalid(at, expected("an object", &other))),
    }
}

/// pydantic v1's boolean coercion.
fn coerce_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
            "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn coerce_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn coerce_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> MappingError {
    MappingError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", type_name(got))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PEER_DEFAULT: &str = include_str!("../../testdata/mapping/port-app-config.yaml");

    fn minimal(resource: Value) -> Value {
        json!({"resources": [resource]})
    }

    fn resource_with(selector: Value, mappings: Value) -> Value {
        json!({"kind": "project", "selector": selector, "port": {"entity": {"mappings": mappings}}})
    }

    #[test]
    fn the_peers_default_mapping_parses_with_extra_keys_kept() {
        let cfg = PortAppConfig::parse(PEER_DEFAULT).unwrap();
        assert_eq!(cfg.resources.len(), 8);
        assert_eq!(cfg.extra.get("useDefaultBranch"), Some(&json!(true)));
        let project = &cfg.resources[0];
        assert_eq!(project.kind, "project");
        assert_eq!(project.selector.query, "true");
        assert_eq!(
            project.selector.options.get("defaultTeam"),
            Some(&json!("true"))
        );
        assert_eq!(project.port.entity.blueprint, r#""azureDevopsProject""#);
        assert_eq!(project.port.entity.title.as_deref(), Some(".name"));
        assert!(project.port.entity.relations.is_none());
        let work_item = cfg
            .resources
            .iter()
            .find(|r| r.kind == "work-item")
            .unwrap();
        let column = &work_item.port.entity.relations.as_ref().unwrap()["column"];
        // YAML `>-` folds the two lines into one with a space.
        assert_eq!(
            column,
            &MappingNode::Jq(
                r#".fields."System.WorkItemType"+"-"+.fields."System.BoardColumn"+"-"+.__project.id | gsub(" "; "")"#
                    .to_owned()
            )
        );
    }

    #[test]
    fn flags_default_to_port_defaults() {
        let cfg = PortAppConfig::parse("resources: []").unwrap();
        assert!(cfg.enable_merge_entity);
        assert!(cfg.delete_dependent_entities);
        assert!(cfg.create_missing_related_entities);
        assert_eq!(cfg.entity_deletion_threshold, 0.9);
        assert!(cfg.resources.is_empty());
        assert_eq!(
            PortAppConfig::parse("{}").unwrap(),
            PortAppConfig::default()
        );
    }

    #[test]
    fn flags_accept_strings_like_pydantic() {
        let cfg = PortAppConfig::parse(
            "enableMergeEntity: 'false'\ndeleteDependentEntities: False\ncreateMissingRelatedEntities: 0\nentityDeletionThreshold: '0.5'",
        )
        .unwrap();
        assert!(!cfg.enable_merge_entity);
        assert!(!cfg.delete_dependent_entities);
        assert!(!cfg.create_missing_related_entities);
        assert_eq!(cfg.entity_deletion_threshold, 0.5);
    }

    #[test]
    fn a_non_boolean_flag_is_invalid() {
        let err = PortAppConfig::parse("enableMergeEntity: maybe").unwrap_err();
        assert!(err.to_string().contains("enableMergeEntity"), "{err}");
    }

    #[test]
    fn threshold_outside_zero_to_one_is_invalid() {
        for bad in ["1.5", "-0.1", "'lots'"] {
            let err = PortAppConfig::parse(&format!("entityDeletionThreshold: {bad}")).unwrap_err();
            assert!(
                matches!(&err, MappingError::Invalid { key, .. } if key == "entityDeletionThreshold"),
                "{bad}: {err}"
            );
        }
        for ok in ["0", "1", "0.25"] {
            assert!(PortAppConfig::parse(&format!("entityDeletionThreshold: {ok}")).is_ok());
        }
    }

    #[test]
    fn json_configs_parse_like_yaml() {
        let json_text = r#"{"deleteDependentEntities": false, "resources": [{"kind": "project",
            "selector": {"query": "true"}, "port": {"entity": {"mappings":
            {"identifier": ".id", "blueprint": "\"p\""}}}}]}"#;
        let cfg = PortAppConfig::parse(json_text).unwrap();
        assert!(!cfg.delete_dependent_entities);
        assert_eq!(
            cfg.resources[0].port.entity.identifier,
            MappingNode::Jq(".id".into())
        );
        assert_eq!(cfg.resources[0].port.items_to_parse_name, "item");
        assert!(cfg.resources[0].port.items_to_parse_top_level_transform);
    }

    #[test]
    fn scalars_where_jq_is_expected_become_jq_source_text() {
        let v = minimal(resource_with(
            json!({"query": true}),
            json!({"identifier": 123, "blueprint": "\"b\"", "properties": {"n": 1.5, "b": false}}),
        ));
        let cfg = PortAppConfig::from_value(v).unwrap();
        let r = &cfg.resources[0];
        assert_eq!(r.selector.query, "true");
        assert_eq!(r.port.entity.identifier, MappingNode::Jq("123".into()));
        let props = r.port.entity.properties.as_ref().unwrap();
        assert_eq!(props["n"], "1.5");
        assert_eq!(props["b"], "false");
    }

    #[test]
    fn missing_selector_or_query_names_the_resource() {
        let no_selector =
            json!({"resources": [{"kind": "board", "port": {"entity": {"mappings": {}}}}]});
        let err = PortAppConfig::from_value(no_selector).unwrap_err();
        assert!(
            err.to_string().contains("resources[0] (board).selector"),
            "{err}"
        );

        let no_query = minimal(resource_with(json!({"defaultTeam": true}), json!({})));
        let err = PortAppConfig::from_value(no_query).unwrap_err();
        assert!(
            err.to_string()
                .contains("resources[0] (project).selector.query"),
            "{err}"
        );
    }

    #[test]
    fn identifier_and_blueprint_are_required() {
        let v = minimal(resource_with(
            json!({"query": "true"}),
            json!({"identifier": ".id"}),
        ));
        let err = PortAppConfig::from_value(v).unwrap_err();
        assert!(err.to_string().contains("mappings.blueprint"), "{err}");
        let v = minimal(resource_with(
            json!({"query": "true"}),
            json!({"blueprint": "\"b\""}),
        ));
        let err = PortAppConfig::from_value(v).unwrap_err();
        assert!(err.to_string().contains("mappings.identifier"), "{err}");
    }

    #[test]
    fn search_queries_parse_into_rules_and_nested_queries() {
        let v = minimal(resource_with(
            json!({"query": "true"}),
            json!({
                "identifier": {"combinator": "'\"and\"'", "rules": [
                    {"property": "'\"$identifier\"'", "operator": "'\"=\"'", "value": ".id"},
                    {"combinator": "'\"or\"'", "rules": []}
                ]},
                "blueprint": "\"b\"",
                "relations": {"owner": {"combinator": "\"and\"", "rules": []}, "project": ".p"}
            }),
        ));
        let cfg = PortAppConfig::from_value(v).unwrap();
        let MappingNode::Search(q) = &cfg.resources[0].port.entity.identifier else {
            panic!("expected a search identifier");
        };
        assert_eq!(q.combinator, "'\"and\"'");
        assert!(matches!(&q.rules[0], SearchRule::Rule { value, .. } if value == ".id"));
        assert!(matches!(&q.rules[1], SearchRule::Query(inner) if inner.rules.is_empty()));
        let rels = cfg.resources[0].port.entity.relations.as_ref().unwrap();
        assert!(matches!(rels["owner"], MappingNode::Search(_)));
        assert_eq!(rels["project"], MappingNode::Jq(".p".into()));
    }

    #[test]
    fn a_rule_missing_its_value_is_invalid() {
        let v = minimal(resource_with(
            json!({"query": "true"}),
            json!({"identifier": {"combinator": "\"and\"", "rules": [{"property": "\"a\"", "operator": "\"=\""}]},
                   "blueprint": "\"b\""}),
        ));
        let err = PortAppConfig::from_value(v).unwrap_err();
        assert!(
            err.to_string().contains("identifier.rules[0].value"),
            "{err}"
        );
    }

    #[test]
    fn selector_options_are_coerced_like_pydantic() {
        let sel = Selector {
            query: "true".into(),
            options: json!({
                "defaultTeam": "TRUE", "off": "false", "flag": true, "days": "7", "n": 3,
                "wiql": "SELECT 1", "files": ["README.md", "CODEOWNERS"], "one": "README.md",
                "bad": {"x": 1}
            })
            .as_object()
            .unwrap()
            .clone(),
        };
        assert!(sel.bool_option("defaultTeam", false).unwrap());
        assert!(!sel.bool_option("off", true).unwrap());
        assert!(sel.bool_option("flag", false).unwrap());
        assert!(sel.bool_option("absent", true).unwrap());
        assert_eq!(sel.int_option("days", None).unwrap(), Some(7));
        assert_eq!(sel.int_option("n", None).unwrap(), Some(3));
        assert_eq!(sel.int_option("absent", Some(1)).unwrap(), Some(1));
        assert_eq!(sel.str_option("wiql").unwrap().as_deref(), Some("SELECT 1"));
        assert_eq!(sel.str_option("absent").unwrap(), None);
        assert_eq!(
            sel.str_list_option("files").unwrap(),
            ["README.md", "CODEOWNERS"]
        );
        assert_eq!(sel.str_list_option("one").unwrap(), ["README.md"]);
        assert!(sel.str_list_option("absent").unwrap().is_empty());

        let err = sel.bool_option("wiql", false).unwrap_err();
        assert!(
            matches!(&err, MappingError::Invalid { key, .. } if key == "selector.wiql"),
            "{err}"
        );
        assert!(sel.int_option("wiql", None).is_err());
        assert!(sel.str_option("bad").is_err());
        assert!(sel.str_list_option("bad").is_err());
    }

    #[test]
    fn unparseable_text_is_a_parse_error() {
        assert!(matches!(
            PortAppConfig::parse("resources: [").unwrap_err(),
            MappingError::Parse(_)
        ));
        assert!(matches!(
            PortAppConfig::parse("- a").unwrap_err(),
            MappingError::Invalid { .. }
        ));
    }
}
