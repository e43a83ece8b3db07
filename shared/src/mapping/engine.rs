//! The compiled configuration and the per-item mapping (Ocean's entity processor semantics).

use std::any::Any;
use std::cell::OnceCell;
use std::sync::Arc;

use jaq_json::{Map as ValMap, Val};
use serde_json::{Map, Value};

use super::config::{
    EntityMappingConfig, MappingNode, PortAppConfig, ResourceConfig, SearchQuery, SearchRule,
    Selector,
};
use super::items::ItemsToParse;
use super::jq::{JqOutput, JqProgram, env_object, from_val, to_val, truthy};
use super::projection::Projection;
use super::{FieldWarning, ItemOutcome, MappingError, MappingOptions};
use crate::catalog::Entity;

/// A [`PortAppConfig`] whose jq expressions are all compiled. `Send + Sync`: build it once per cold
/// start and share it.
#[derive(Debug)]
pub struct CompiledConfig {
    config: PortAppConfig,
    /// Shared so a resync can map pages where they are listed, away from the config's borrow.
    resources: Vec<Arc<CompiledResource>>,
}

/// One resource of the config, ready to map items of its kind.
#[derive(Debug)]
pub struct CompiledResource {
    index: usize,
    kind: String,
    selector: Selector,
    options: ParsedOptions,
    query: JqProgram,
    items: Option<ItemsToParse>,
    mappings: CompiledMappings,
    /// The environment `env`/`$ENV` see (empty unless allowed), shared by all resources.
    env: Arc<Value>,
    uses_env: bool,
}

#[derive(Debug)]
struct CompiledMappings {
    identifier: CompiledNode,
    blueprint: JqProgram,
    title: Option<JqProgram>,
    icon: Option<JqProgram>,
    team: Option<CompiledNode>,
    properties: Option<Vec<(String, JqProgram)>>,
    relations: Option<Vec<(String, CompiledNode)>>,
}

#[derive(Debug)]
enum CompiledNode {
    Jq(JqProgram),
    Search(CompiledSearch),
}

impl CompiledNode {
    fn add_paths(&self, p: &mut Projection) -> bool {
        match self {
            CompiledNode::Jq(q) => q.add_paths(p),
            CompiledNode::Search(search) => search.add_paths(p),
        }
    }
}

impl CompiledSearch {
    fn add_paths(&self, p: &mut Projection) -> bool {
        self.combinator.add_paths(p)
            && self.rules.iter().all(|rule| match rule {
                CompiledRule::Rule {
                    property,
                    operator,
                    value,
                } => property.add_paths(p) && operator.add_paths(p) && value.add_paths(p),
                CompiledRule::Query(inner) => inner.add_paths(p),
            })
    }
}

#[derive(Debug)]
struct CompiledSearch {
    combinator: JqProgram,
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
enum CompiledRule {
    Rule {
        property: JqProgram,
        operator: JqProgram,
        value: JqProgram,
    },
    Query(CompiledSearch),
}

/// A resource's selector options in its kind's own type, parsed once when the mapping is compiled, so
/// a bad option is refused before anything runs and nothing parses the selector again. The mapping
/// does not know the kinds: [`CompiledConfig::compile`] is given their parser ([`ParseOptions`]).
#[derive(Clone)]
pub struct ParsedOptions(Arc<dyn Any + Send + Sync>);

impl ParsedOptions {
    pub fn new<T: Any + Send + Sync>(options: T) -> Self {
        Self(Arc::new(options))
    }

    /// The options, if they are of type `T` (the kind that parsed them asks for its own type).
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl std::fmt::Debug for ParsedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedOptions(..)")
    }
}

/// Parses the selector options of the resource at an index of the config (see [`ParsedOptions`]).
pub type ParseOptions = dyn Fn(usize, &ResourceConfig) -> Result<ParsedOptions, MappingError>;

impl CompiledConfig {
    /// Compiles every jq expression once and parses each resource's selector options with `parse`. A
    /// failure names the resource index, kind and field path, e.g.
    /// `resources[1] (repository) properties.url: ...`.
    pub fn compile(
        config: PortAppConfig,
        opts: &MappingOptions,
        parse: &ParseOptions,
    ) -> Result<Self, MappingError> {
        let env = Arc::new(Value::Object(env_object(opts.allow_env)));
        let resources = config
            .resources
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let options = parse(index, r)?;
                let mut c = Compiler {
                    at: format!("resources[{index}] ({})", r.kind),
                    uses_env: false,
                };
                let query = c.jq("selector.query", &r.selector.query)?;
                let items = match &r.port.items_to_parse {
                    Some(src) => Some(ItemsToParse::new(
                        c.jq("port.itemsToParse", src)?,
                        r.port.items_to_parse_name.clone(),
                        r.port.items_to_parse_top_level_transform,
                    )),
                    None => None,
                };
                let mappings = c.mappings(&r.port.entity)?;
                Ok(Arc::new(CompiledResource {
                    index,
                    kind: r.kind.clone(),
                    selector: r.selector.clone(),
                    options,
                    query,
                    items,
                    mappings,
                    env: Arc::clone(&env),
                    uses_env: c.uses_env && opts.allow_env,
                }))
            })
            .collect::<Result<_, MappingError>>()?;
        Ok(Self { config, resources })
    }

    pub fn config(&self) -> &PortAppConfig {
        &self.config
    }

    pub fn resources(&self) -> &[Arc<CompiledResource>] {
        &self.resources
    }

    /// The resources of one kind, in config order (a kind may appear several times).
    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a CompiledResource> {
        self.resources
            .iter()
            .map(|r| &**r)
            .filter(move |r| r.kind == kind)
    }
}

struct Compiler {
    at: String,
    uses_env: bool,
}

impl Compiler {
    fn jq(&mut self, field: &str, src: &str) -> Result<JqProgram, MappingError> {
        let program = JqProgram::compile(src).map_err(|message| MappingError::Compile {
            path: format!("{} {field}", self.at),
            message,
        })?;
        self.uses_env |= program.uses_env();
        Ok(program)
    }

    fn mappings(&mut self, m: &EntityMappingConfig) -> Result<CompiledMappings, MappingError> {
        Ok(CompiledMappings {
            identifier: self.node("identifier", &m.identifier)?,
            blueprint: self.jq("blueprint", &m.blueprint)?,
            title: m
                .title
                .as_deref()
                .map(|t| self.jq("title", t))
                .transpose()?,
            icon: m.icon.as_deref().map(|t| self.jq("icon", t)).transpose()?,
            team: m.team.as_ref().map(|t| self.node("team", t)).transpose()?,
            properties: match &m.properties {
                Some(props) => Some(
                    props
                        .iter()
                        .map(|(k, src)| Ok((k.clone(), self.jq(&format!("properties.{k}"), src)?)))
                        .collect::<Result<_, MappingError>>()?,
                ),
                None => None,
            },
            relations: match &m.relations {
                Some(rels) => Some(
                    rels.iter()
                        .map(|(k, node)| {
                            Ok((k.clone(), self.node(&format!("relations.{k}"), node)?))
                        })
                        .collect::<Result<_, MappingError>>()?,
                ),
                None => None,
            },
        })
    }

    fn node(&mut self, field: &str, node: &MappingNode) -> Result<CompiledNode, MappingError> {
        Ok(match node {
            MappingNode::Jq(src) => CompiledNode::Jq(self.jq(field, src)?),
            MappingNode::Search(q) => CompiledNode::Search(self.search(field, q)?),
        })
    }

    fn search(&mut self, field: &str, q: &SearchQuery) -> Result<CompiledSearch, MappingError> {
        let combinator = self.jq(&format!("{field}.combinator"), &q.combinator)?;
        let rules = q
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let at = format!("{field}.rules[{i}]");
                Ok(match rule {
                    SearchRule::Rule {
                        property,
                        operator,
                        value,
                    } => CompiledRule::Rule {
                        property: self.jq(&format!("{at}.property"), property)?,
                        operator: self.jq(&format!("{at}.operator"), operator)?,
                        value: self.jq(&format!("{at}.value"), value)?,
                    },
                    SearchRule::Query(inner) => CompiledRule::Query(self.search(&at, inner)?),
                })
            })
            .collect::<Result<_, MappingError>>()?;
        Ok(CompiledSearch { combinator, rules })
    }
}

impl CompiledResource {
    /// Position in the config's `resources`.
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// The selector options as the resource's kind parsed them.
    pub fn options(&self) -> &ParsedOptions {
        &self.options
    }

    /// The entity fields one mapped item evaluates (identifier, blueprint, title, icon, team, each
    /// property and relation), not counting the selector: the unit of the mapping benchmark.
    pub fn field_count(&self) -> usize {
        let m = &self.mappings;
        2 + usize::from(m.title.is_some())
            + usize::from(m.icon.is_some())
            + usize::from(m.team.is_some())
            + m.properties.as_ref().map_or(0, Vec::len)
            + m.relations.as_ref().map_or(0, Vec::len)
    }

    /// The parts of a raw item this resource reads, when they are known: every program (selector,
    /// fields, search rules) is a plain path shape and there is no itemsToParse. Mapping an item
    /// parsed through it gives exactly what mapping the whole item does.
    pub fn projection(&self) -> Option<Projection> {
        if self.items.is_some() {
            return None;
        }
        let mut p = Projection::default();
        let m = &self.mappings;
        let all_known = self.query.add_paths(&mut p)
            && m.identifier.add_paths(&mut p)
            && m.blueprint.add_paths(&mut p)
            && m.title.iter().chain(&m.icon).all(|q| q.add_paths(&mut p))
            && m.team.iter().all(|n| n.add_paths(&mut p))
            && m.properties
                .iter()
                .flatten()
                .all(|(_, q)| q.add_paths(&mut p))
            && m.relations
                .iter()
                .flatten()
                .all(|(_, n)| n.add_paths(&mut p));
        all_known.then_some(p)
    }

    /// Expands itemsToParse (if set) and maps each resulting item. With `keep_filtered`, items the
    /// selector rejects are still mapped (live events delete them); without, they are not (resync).
    pub fn map_item(&self, raw: &Value, keep_filtered: bool) -> Vec<ItemOutcome> {
        let env = if self.uses_env {
            to_val(&self.env)
        } else {
            Val::obj(ValMap::default())
        };
        let Some(items) = &self.items else {
            let input = Input::Json(raw, OnceCell::new());
            return vec![self.map_one(&input, &env, keep_filtered)];
        };
        match items.expand(to_val(raw), &env) {
            Ok(expanded) => expanded
                .iter()
                .map(|i| self.map_one(&Input::Val(i), &env, keep_filtered))
                .collect(),
            Err(message) => {
                tracing::warn!(resource = self.index, kind = %self.kind, %message, "item skipped");
                vec![ItemOutcome::ParentSkipped { message }]
            }
        }
    }

    fn map_one(&self, item: &Input<'_>, env: &Val, keep_filtered: bool) -> ItemOutcome {
        let passed = match item.first(&self.query, env) {
            Field::Value(Value::Bool(b)) => b,
            Field::Value(other) => {
                let got = truncate(&other.to_string(), 200);
                return self.selector_error(format!(
                    "selector `{}` gave {got}, expected a boolean",
                    self.query.source()
                ));
            }
            Field::Empty => {
                return self
                    .selector_error(format!("selector `{}` gave no output", self.query.source()));
            }
            Field::Error(e) => {
                return self
                    .selector_error(format!("selector `{}` failed: {e}", self.query.source()));
            }
        };
        if !passed && !keep_filtered {
            return ItemOutcome::Filtered { entity: None };
        }
        let mut eval = Evaluator {
            item,
            env,
            warnings: Vec::new(),
            resource: self,
        };
        let entity = eval.entity(&self.mappings);
        match (passed, entity) {
            (true, Some(entity)) => ItemOutcome::Mapped {
                entity,
                warnings: eval.warnings,
            },
            (true, None) => ItemOutcome::Dropped {
                warnings: eval.warnings,
            },
            (false, entity) => ItemOutcome::Filtered { entity },
        }
    }

    fn selector_error(&self, message: String) -> ItemOutcome {
        tracing::warn!(resource = self.index, kind = %self.kind, %message, "selector error");
        ItemOutcome::SelectorError { message }
    }
}

/// An item being mapped. Raw JSON is converted to jaq values only when a field needs jaq: most fields
/// are plain paths and literals, evaluated on the JSON directly.
enum Input<'a> {
    Json(&'a Value, OnceCell<Val>),
    /// An item itemsToParse produced (already jaq values).
    Val(&'a Val),
}

/// One field's first output, as JSON.
enum Field {
    Value(Value),
    Empty,
    Error(String),
}

impl Input<'_> {
    fn val(&self) -> &Val {
        match self {
            Input::Json(raw, val) => val.get_or_init(|| to_val(raw)),
            Input::Val(val) => val,
        }
    }

    fn first(&self, p: &JqProgram, env: &Val) -> Field {
        if let Input::Json(raw, _) = self
            && let Some(v) = p.fast_json(raw)
        {
            return Field::Value(v);
        }
        match p.first(self.val(), env) {
            JqOutput::Value(v) => Field::Value(from_val(&v)),
            JqOutput::Empty => Field::Empty,
            JqOutput::Error(e) => Field::Error(e),
        }
    }
}

struct Evaluator<'a> {
    item: &'a Input<'a>,
    env: &'a Val,
    warnings: Vec<FieldWarning>,
    resource: &'a CompiledResource,
}

impl Evaluator<'_> {
    /// `None` when identifier or blueprint is falsy (or the blueprint is not a string).
    fn entity(&mut self, m: &CompiledMappings) -> Option<Entity> {
        let identifier = self.node(|| "identifier".to_owned(), &m.identifier);
        if !truthy(&identifier) {
            return None;
        }
        let blueprint = match self.jq("blueprint", &m.blueprint) {
            Value::String(s) if !s.is_empty() => s,
            other if !truthy(&other) => return None,
            other => {
                self.warn(
                    "blueprint",
                    &m.blueprint,
                    format!("must be a string, got {other}"),
                );
                return None;
            }
        };
        let title = m.title.as_ref().map(|p| self.jq("title", p));
        let icon = m.icon.as_ref().map(|p| self.icon(p));
        let team = m.team.as_ref().map(|n| self.node(|| "team".to_owned(), n));
        let properties = m.properties.as_ref().map(|props| {
            props
                .iter()
                .map(|(k, p)| (k.clone(), self.jq_at(|| format!("properties.{k}"), p)))
                .collect()
        });
        let relations = m.relations.as_ref().map(|rels| {
            rels.iter()
                .map(|(k, n)| (k.clone(), self.node(|| format!("relations.{k}"), n)))
                .collect()
        });
        Some(Entity {
            identifier,
            blueprint,
            title,
            icon,
            team,
            properties,
            relations,
        })
    }

    /// Ocean's Entity model types `icon` as an optional string: numbers and booleans become their
    /// Python text. A list or object aborts Ocean's whole batch; here only the field is nulled.
    fn icon(&mut self, p: &JqProgram) -> Value {
        match self.jq("icon", p) {
            v @ (Value::Null | Value::String(_)) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(if b { "True" } else { "False" }.to_owned()),
            other => {
                self.warn(
                    "icon",
                    p,
                    format!(
                        "must be a string, got {}",
                        truncate(&other.to_string(), 100)
                    ),
                );
                Value::Null
            }
        }
    }

    /// The field name is built only when needed (a warning, a search query), as in [`Self::jq_at`].
    fn node(&mut self, field: impl FnOnce() -> String, node: &CompiledNode) -> Value {
        match node {
            CompiledNode::Jq(p) => self.jq_at(field, p),
            CompiledNode::Search(q) => self.search(&field(), q),
        }
    }

    fn search(&mut self, field: &str, q: &CompiledSearch) -> Value {
        let combinator = self.jq_at(|| format!("{field}.combinator"), &q.combinator);
        let rules = q
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| match rule {
                CompiledRule::Rule {
                    property,
                    operator,
                    value,
                } => {
                    let mut obj = Map::new();
                    obj.insert(
                        "property".into(),
                        self.jq_at(|| format!("{field}.rules[{i}].property"), property),
                    );
                    obj.insert(
                        "operator".into(),
                        self.jq_at(|| format!("{field}.rules[{i}].operator"), operator),
                    );
                    obj.insert(
                        "value".into(),
                        self.jq_at(|| format!("{field}.rules[{i}].value"), value),
                    );
                    Value::Object(obj)
                }
                CompiledRule::Query(inner) => self.search(&format!("{field}.rules[{i}]"), inner),
            })
            .collect();
        let mut obj = Map::new();
        obj.insert("combinator".into(), combinator);
        obj.insert("rules".into(), Value::Array(rules));
        Value::Object(obj)
    }

    fn jq(&mut self, field: &str, p: &JqProgram) -> Value {
        self.jq_at(|| field.to_owned(), p)
    }

    /// First output; no output or an error gives null plus a warning. The field name is built only
    /// on failure, keeping the hot path free of allocations for it.
    fn jq_at(&mut self, field: impl FnOnce() -> String, p: &JqProgram) -> Value {
        match self.item.first(p, self.env) {
            Field::Value(v) => v,
            Field::Empty => {
                self.warn(&field(), p, "no output".to_owned());
                Value::Null
            }
            Field::Error(e) => {
                let first_line = e.lines().next().unwrap_or_default().to_owned();
                self.warn(&field(), p, first_line);
                Value::Null
            }
        }
    }

    fn warn(&mut self, field: &str, p: &JqProgram, message: String) {
        tracing::debug!(
            resource = self.resource.index,
            kind = %self.resource.kind,
            field,
            expression = p.source(),
            %message,
            "mapping field set to null"
        );
        self.warnings.push(FieldWarning {
            field: field.to_owned(),
            expression: p.source().to_owned(),
            message,
        });
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PEER_DEFAULT: &str = include_str!("../../testdata/mapping/port-app-config.yaml");
    const PROJECT: &str = include_str!("../../testdata/mapping/raw/project-a.json");
    const REPOSITORY: &str = include_str!("../../testdata/mapping/raw/repository-b.json");

    /// The kinds are not the engine's concern: its tests compile without options.
    fn no_options(_: usize, _: &ResourceConfig) -> Result<ParsedOptions, MappingError> {
        Ok(ParsedOptions::new(()))
    }

    /// One resource of kind `thing` with the given selector and mappings (YAML fragments).
    fn resource(selector: &str, mappings: &str) -> CompiledConfig {
        resource_with_port(selector, mappings, "")
    }

    fn resource_with_port(selector: &str, mappings: &str, port_extra: &str) -> CompiledConfig {
        let indent = |s: &str, n: usize| {
            s.lines()
                .map(|l| format!("{}{l}\n", " ".repeat(n)))
                .collect::<String>()
        };
        let yaml = format!(
            "resources:\n  - kind: thing\n    selector:\n{}    port:\n{}      entity:\n        mappings:\n{}",
            indent(selector, 6),
            indent(port_extra, 6),
            indent(mappings, 10)
        );
        let config = PortAppConfig::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap()
    }

    fn map(cfg: &CompiledConfig, raw: Value) -> Vec<ItemOutcome> {
        cfg.resources()[0].map_item(&raw, false)
    }

    fn one(cfg: &CompiledConfig, raw: Value) -> ItemOutcome {
        let mut out = map(cfg, raw);
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    fn mapped(outcome: ItemOutcome) -> (Entity, Vec<FieldWarning>) {
        match outcome {
            ItemOutcome::Mapped { entity, warnings } => (entity, warnings),
            other => panic!("expected Mapped, got {other:?}"),
        }
    }

    const BASIC: &str = "identifier: .id\nblueprint: '\"thing\"'";

    #[test]
    fn compiled_config_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CompiledConfig>();
    }

    #[test]
    fn the_peers_default_mapping_maps_real_project_and_repository_items() {
        let config = PortAppConfig::parse(PEER_DEFAULT).unwrap();
        let cfg = CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap();

        let project: Value = serde_json::from_str(PROJECT).unwrap();
        let res = cfg.resources_of("project").next().unwrap();
        let (entity, warnings) = mapped(res.map_item(&project, false).remove(0));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            entity.identifier,
            json!("31440986-0c26-4def-ae3d-feadd2d3498e")
        );
        assert_eq!(entity.blueprint, "azureDevopsProject");
        assert_eq!(entity.title, Some(json!("test-azure-sync-project")));
        assert_eq!(entity.icon, None);
        assert_eq!(entity.relations, None);
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({
                "state": "wellFormed",
                "revision": 11,
                "visibility": "private",
                "defaultTeam": "test-azure-sync-project Team",
                "link": "[REDACTED]/31440986-0c26-4def-ae3d-feadd2d3498e"
            })
        );

        let repo: Value = serde_json::from_str(REPOSITORY).unwrap();
        let res = cfg.resources_of("repository").next().unwrap();
        let (entity, warnings) = mapped(res.map_item(&repo, false).remove(0));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            entity.identifier,
            json!("a8d65272-0cb1-4b06-8687-ce96d9e7ac15")
        );
        assert_eq!(entity.blueprint, "azureDevopsRepository");
        assert_eq!(entity.title, Some(json!("authentication-service")));
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({
                "url": "https://eridotdev@dev.azure.com/eridotdev/test-azure-sync-project/_git/authentication-service",
                "readme": "# perf-test-repo-8b347cb6\nTest repository 23 for performance testing. UID: 8b347cb6\n",
                "codeowners": ""
            })
        );
        assert_eq!(
            Value::Object(entity.relations.unwrap()),
            json!({"project": "31440986-0c26-4def-ae3d-feadd2d3498e"})
        );
    }

    #[test]
    fn repository_policies_split_by_selector_like_the_peer() {
        let config = PortAppConfig::parse(PEER_DEFAULT).unwrap();
        let cfg = CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap();
        let policy = json!({
            "type": {"displayName": "Work item linking"}, "isEnabled": true, "isBlocking": true,
            "__repository": {"id": "r1"}
        });
        let outcomes: Vec<_> = cfg
            .resources_of("repository-policy")
            .map(|r| r.map_item(&policy, false).remove(0))
            .collect();
        assert_eq!(outcomes[0], ItemOutcome::Filtered { entity: None });
        let (entity, _) = mapped(outcomes[1].clone());
        assert_eq!(entity.identifier, json!("r1"));
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"workItemLinking": true})
        );
        assert_eq!(entity.title, None);
    }

    #[test]
    fn non_boolean_selectors_are_item_errors() {
        for query in [
            "'null'",
            "'1'",
            "'\"true\"'",
            "'.a.b'",
            "'empty'",
            "'error(\"boom\")'",
        ] {
            let cfg = resource(&format!("query: {query}"), BASIC);
            let out = one(&cfg, json!({"id": "x", "a": "str"}));
            assert!(
                matches!(out, ItemOutcome::SelectorError { .. }),
                "{query}: {out:?}"
            );
        }
        let cfg = resource("query: 'error(\"boom\")'", BASIC);
        let ItemOutcome::SelectorError { message } = one(&cfg, json!({})) else {
            unreachable!()
        };
        assert!(message.contains("boom"), "{message}");
    }

    #[test]
    fn a_false_selector_filters_the_item_without_mapping_it() {
        let cfg = resource("query: .keep", BASIC);
        assert_eq!(
            one(&cfg, json!({"id": "x", "keep": false})),
            ItemOutcome::Filtered { entity: None }
        );
        assert!(matches!(
            one(&cfg, json!({"id": "x", "keep": true})),
            ItemOutcome::Mapped { .. }
        ));
    }

    #[test]
    fn keep_filtered_maps_filtered_items_for_deletion() {
        let cfg = resource("query: .name != 'test-item'", BASIC);
        let out = cfg.resources()[0].map_item(&json!({"id": "x", "name": "test-item"}), true);
        let [
            ItemOutcome::Filtered {
                entity: Some(entity),
            },
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(entity.identifier, json!("x"));
        assert_eq!(entity.blueprint, "thing");
        let out = cfg.resources()[0].map_item(&json!({"name": "test-item"}), true);
        assert_eq!(out, [ItemOutcome::Filtered { entity: None }]);
    }

    #[test]
    fn fallbacks_fill_missing_fields() {
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nproperties:\n  effort: .effort // -1\n  description: .description // ''",
        );
        let (entity, warnings) = mapped(one(&cfg, json!({"id": "x"})));
        assert!(warnings.is_empty());
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"effort": -1, "description": ""})
        );
    }

    #[test]
    fn a_failing_property_is_null_with_a_warning_naming_it() {
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nproperties:\n  x: .n | gsub(\" \"; \"\")\n  gone: empty\n  plain: .missing",
        );
        let (entity, warnings) = mapped(one(&cfg, json!({"id": "x", "n": 42})));
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"x": null, "gone": null, "plain": null})
        );
        let fields: Vec<_> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["properties.gone", "properties.x"]);
        assert_eq!(warnings[1].expression, ".n | gsub(\" \"; \"\")");
        assert!(!warnings[1].message.is_empty());
        assert_eq!(warnings[0].message, "no output");
    }

    #[test]
    fn unmapped_keys_are_absent_and_mapped_nulls_are_present() {
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\ntitle: .title",
        );
        let (entity, _) = mapped(one(&cfg, json!({"id": "x"})));
        assert_eq!(entity.title, Some(Value::Null));
        assert_eq!(entity.icon, None);
        assert_eq!(entity.team, None);
        assert_eq!(entity.properties, None);
        assert_eq!(entity.relations, None);
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nproperties: {}",
        );
        let (entity, _) = mapped(one(&cfg, json!({"id": "x"})));
        assert_eq!(entity.properties, Some(Map::new()));
    }

    #[test]
    fn a_falsy_identifier_or_blueprint_drops_the_item() {
        let cfg = resource("query: 'true'", BASIC);
        for id in [
            json!(null),
            json!(""),
            json!(0),
            json!(false),
            json!([]),
            json!({}),
        ] {
            let out = one(&cfg, json!({"id": id}));
            assert_eq!(out, ItemOutcome::Dropped { warnings: vec![] }, "{id}");
        }
        let cfg = resource("query: 'true'", "identifier: .id\nblueprint: .bp");
        assert_eq!(
            one(&cfg, json!({"id": "x", "bp": ""})),
            ItemOutcome::Dropped { warnings: vec![] }
        );
        let cfg = resource(
            "query: 'true'",
            "identifier: .id | gsub(\"a\"; \"b\")\nblueprint: '\"thing\"'",
        );
        let ItemOutcome::Dropped { warnings } = one(&cfg, json!({"id": 7})) else {
            panic!()
        };
        assert_eq!(warnings[0].field, "identifier");
    }

    #[test]
    fn a_numeric_identifier_is_kept_as_a_number() {
        let cfg = resource("query: 'true'", BASIC);
        let (entity, _) = mapped(one(&cfg, json!({"id": 5})));
        assert_eq!(entity.identifier, json!(5));
    }

    #[test]
    fn a_non_string_blueprint_drops_the_item_with_a_warning() {
        let cfg = resource("query: 'true'", "identifier: .id\nblueprint: .bp");
        let ItemOutcome::Dropped { warnings } = one(&cfg, json!({"id": "x", "bp": 3})) else {
            panic!()
        };
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "blueprint");
        assert!(warnings[0].message.contains("string"));
    }

    #[test]
    fn search_identifier_and_relation_evaluate_every_leaf() {
        let mappings = r#"identifier:
  combinator: '"and"'
  rules:
    - property: '"$identifier"'
      operator: '"="'
      value: .slug
    - combinator: '"or"'
      rules:
        - property: '"name"'
          operator: '"="'
          value: .nope | gsub("a"; "b")
blueprint: '"thing"'
relations:
  owner:
    combinator: '"and"'
    rules:
      - property: '"email"'
        operator: '"="'
        value: .owner
  project: .project"#;
        let cfg = resource("query: 'true'", mappings);
        let (entity, warnings) = mapped(one(
            &cfg,
            json!({"slug": "s1", "owner": "a@b", "project": "p", "nope": 1}),
        ));
        assert_eq!(
            entity.identifier,
            json!({"combinator": "and", "rules": [
                {"property": "$identifier", "operator": "=", "value": "s1"},
                {"combinator": "or", "rules": [{"property": "name", "operator": "=", "value": null}]}
            ]})
        );
        assert_eq!(
            Value::Object(entity.relations.clone().unwrap()),
            json!({
                "owner": {"combinator": "and", "rules": [{"property": "email", "operator": "=", "value": "a@b"}]},
                "project": "p"
            })
        );
        assert!(entity.uses_search());
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].field, "identifier.rules[1].rules[0].value");
    }

    #[test]
    fn team_is_mapped_as_string_list_or_search() {
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nteam: .teams",
        );
        let (entity, _) = mapped(one(&cfg, json!({"id": "x", "teams": ["a", "b"]})));
        assert_eq!(entity.team, Some(json!(["a", "b"])));
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nteam:\n  combinator: '\"and\"'\n  rules:\n    - property: '\"$title\"'\n      operator: '\"=\"'\n      value: .t",
        );
        let (entity, _) = mapped(one(&cfg, json!({"id": "x", "t": "Team A"})));
        assert_eq!(
            entity.team,
            Some(
                json!({"combinator": "and", "rules": [{"property": "$title", "operator": "=", "value": "Team A"}]})
            )
        );
    }

    #[test]
    fn icon_is_coerced_to_a_string_or_nulled() {
        let cfg = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"thing\"'\nicon: .icon",
        );
        let icon_of = |v: Value| {
            let (entity, warnings) = mapped(one(&cfg, json!({"id": "x", "icon": v})));
            (entity.icon, warnings.len())
        };
        assert_eq!(icon_of(json!("Git")), (Some(json!("Git")), 0));
        assert_eq!(icon_of(json!(12)), (Some(json!("12")), 0));
        assert_eq!(icon_of(json!(null)), (Some(Value::Null), 0));
        assert_eq!(icon_of(json!(["a"])), (Some(Value::Null), 1));
        assert_eq!(icon_of(json!({"a": 1})), (Some(Value::Null), 1));
    }

    const ITEM_MAPPINGS: &str = "identifier: .item.id\nblueprint: '\"thing\"'\nproperties:\n  parent: .key\n  hasComments: .fields.comments != null";

    #[test]
    fn items_to_parse_expands_and_removes_the_array_from_each_item() {
        let cfg = resource_with_port(
            "query: 'true'",
            ITEM_MAPPINGS,
            "itemsToParse: .fields.comments",
        );
        let raw =
            json!({"key": "P", "fields": {"comments": [{"id": "c1"}, {"id": "c2"}], "other": 1}});
        let out = map(&cfg, raw);
        assert_eq!(out.len(), 2);
        let (first, _) = mapped(out[0].clone());
        assert_eq!(first.identifier, json!("c1"));
        assert_eq!(
            Value::Object(first.properties.unwrap()),
            json!({"parent": "P", "hasComments": false})
        );
        let (second, _) = mapped(out[1].clone());
        assert_eq!(second.identifier, json!("c2"));
    }

    #[test]
    fn items_to_parse_keeps_the_array_when_top_level_transform_is_off() {
        let cfg = resource_with_port(
            "query: 'true'",
            ITEM_MAPPINGS,
            "itemsToParse: '[.fields.comments[]]'\nitemsToParseTopLevelTransform: false",
        );
        let raw = json!({"key": "P", "fields": {"comments": [{"id": "c1"}]}});
        let (entity, _) = mapped(map(&cfg, raw).remove(0));
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"parent": "P", "hasComments": true})
        );
    }

    #[test]
    fn items_to_parse_with_an_unguessable_path_skips_the_parent() {
        let cfg = resource_with_port(
            "query: 'true'",
            ITEM_MAPPINGS,
            "itemsToParse: '[.fields.comments[]]'",
        );
        let out = map(&cfg, json!({"fields": {"comments": [{"id": "c1"}]}}));
        let [ItemOutcome::ParentSkipped { message }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            message.contains("itemsToParseTopLevelTransform: false"),
            "{message}"
        );
    }

    #[test]
    fn items_to_parse_name_overrides_an_existing_key() {
        let cfg = resource_with_port(
            "query: .row.ok",
            "identifier: .row.id\nblueprint: '\"thing\"'\ntitle: .name",
            "itemsToParse: .rows | map(select(.id))\nitemsToParseName: row",
        );
        let raw = json!({"name": "N", "row": "old", "rows": [{"id": "a", "ok": true}, {"id": "b", "ok": false}, {}]});
        let out = map(&cfg, raw);
        assert_eq!(out.len(), 2);
        let (entity, _) = mapped(out[0].clone());
        assert_eq!(entity.identifier, json!("a"));
        assert_eq!(entity.title, Some(json!("N")));
        assert_eq!(out[1], ItemOutcome::Filtered { entity: None });
    }

    #[test]
    fn items_to_parse_that_is_not_an_array_skips_the_parent() {
        let cfg = resource_with_port("query: 'true'", ITEM_MAPPINGS, "itemsToParse: .fields");
        let out = map(&cfg, json!({"fields": {"a": 1}}));
        assert!(
            matches!(out.as_slice(), [ItemOutcome::ParentSkipped { .. }]),
            "{out:?}"
        );
        let out = map(&cfg, json!({}));
        assert!(
            matches!(out.as_slice(), [ItemOutcome::ParentSkipped { .. }]),
            "{out:?}"
        );
        let out = map(&cfg, json!({"fields": []}));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn items_to_parse_trims_parenthesised_fallback_paths() {
        let cfg = resource_with_port(
            "query: 'true'",
            "identifier: .item\nblueprint: '\"thing\"'\nproperties:\n  rest: '[.x, .y]'",
            "itemsToParse: (.x // [])",
        );
        let (entity, _) = mapped(map(&cfg, json!({"x": ["a"], "y": 1})).remove(0));
        assert_eq!(entity.identifier, json!("a"));
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"rest": [null, 1]})
        );
    }

    /// Some variable of this process's environment, standing in for a secret. Tests cannot set one:
    /// `set_var` is unsafe in edition 2024 and the workspace forbids unsafe code.
    fn some_env_var() -> (String, String) {
        std::env::vars()
            .find(|(k, v)| !v.is_empty() && !k.contains('\'') && !k.contains('"'))
            .expect("the test process has an environment")
    }

    fn env_config(allow_env: bool, var: &str) -> CompiledConfig {
        let yaml = format!(
            "resources:\n  - kind: thing\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n          identifier: '\"x\"'\n          blueprint: '\"thing\"'\n          properties:\n            viaEnv: 'env[\"{var}\"]'\n            viaVar: '$ENV[\"{var}\"]'\n            whole: env | length"
        );
        let config = PortAppConfig::parse(&yaml).unwrap();
        CompiledConfig::compile(config, &MappingOptions { allow_env }, &no_options).unwrap()
    }

    #[test]
    fn env_is_empty_unless_allowed() {
        let (var, _) = some_env_var();
        assert!(!MappingOptions::default().allow_env);
        let cfg = env_config(false, &var);
        let (entity, warnings) = mapped(one(&cfg, json!({})));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            Value::Object(entity.properties.unwrap()),
            json!({"viaEnv": null, "viaVar": null, "whole": 0})
        );
    }

    #[test]
    fn env_reads_the_process_environment_when_allowed() {
        let (var, secret) = some_env_var();
        let cfg = env_config(true, &var);
        let (entity, _) = mapped(one(&cfg, json!({})));
        let props = entity.properties.unwrap();
        assert_eq!(props["viaEnv"], json!(secret));
        assert_eq!(props["viaVar"], json!(secret));
        assert!(props["whole"].as_u64().unwrap() >= 1);
    }

    #[test]
    fn a_compile_error_names_the_resource_and_field() {
        let yaml = "resources:\n  - kind: project\n    selector: {query: 'true'}\n    port: {entity: {mappings: {identifier: .id, blueprint: '\"p\"'}}}\n  - kind: repository\n    selector: {query: 'true'}\n    port: {entity: {mappings: {identifier: .id, blueprint: '\"r\"', properties: {url: '.remoteUrl |'}}}}";
        let config = PortAppConfig::parse(yaml).unwrap();
        let err =
            CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap_err();
        let MappingError::Compile { path, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(path, "resources[1] (repository) properties.url");
        assert!(
            err.to_string()
                .starts_with("resources[1] (repository) properties.url: "),
            "{err}"
        );

        let bad_selector = "resources:\n  - kind: board\n    selector: {query: and}\n    port: {entity: {mappings: {identifier: .id, blueprint: '\"b\"'}}}";
        let err = CompiledConfig::compile(
            PortAppConfig::parse(bad_selector).unwrap(),
            &MappingOptions::default(),
            &no_options,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resources[0] (board) selector.query: "),
            "{err}"
        );
    }

    #[test]
    fn resources_keep_config_order_index_and_selector() {
        let config = PortAppConfig::parse(PEER_DEFAULT).unwrap();
        let cfg = CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap();
        let kinds: Vec<_> = cfg
            .resources()
            .iter()
            .map(|r| (r.index(), r.kind()))
            .collect();
        assert_eq!(kinds[2], (2, "repository-policy"));
        assert_eq!(kinds[3], (3, "repository-policy"));
        assert_eq!(cfg.resources()[7].kind(), "release");
        assert!(
            cfg.resources()[0]
                .selector()
                .bool_option("defaultTeam", false)
                .unwrap()
        );
        assert_eq!(cfg.config().extra["useDefaultBranch"], json!(true));
    }

    #[test]
    fn a_projected_item_maps_exactly_as_the_whole_item() {
        let config = PortAppConfig::parse(PEER_DEFAULT).unwrap();
        let cfg = CompiledConfig::compile(config, &MappingOptions::default(), &no_options).unwrap();
        let mut projected = 0;
        for (kind, text) in [("project", PROJECT), ("repository", REPOSITORY)] {
            let whole: Value = serde_json::from_str(text).unwrap();
            for res in cfg.resources_of(kind) {
                let Some(projection) = res.projection() else {
                    continue;
                };
                projected += 1;
                let part = projection.parse(text).unwrap();
                assert!(
                    part.to_string().len() < whole.to_string().len(),
                    "{kind}: nothing skipped"
                );
                assert_eq!(
                    res.map_item(&part, true),
                    res.map_item(&whole, true),
                    "{kind}"
                );
            }
        }
        assert!(
            projected >= 2,
            "the peer's project and repository blocks are plain paths"
        );
        // Work-item-like shapes: paths through missing, null and non-object values, `+`, `//`.
        let work_item = resource(
            "query: 'true'",
            r#"identifier: .__project.id + "/" + (.id | tostring) | gsub(" "; "")
blueprint: '"w"'
title: .fields."System.Title"
properties:
  effort: .fields."Microsoft.VSTS.Scheduling.Effort" // -1
  odd: .url.path
  gone: .missing.deep"#,
        );
        let res = &work_item.resources()[0];
        let projection = res.projection().expect("plain paths");
        for text in [
            r#"{"id": 5, "__project": {"id": "p 1", "name": "n"}, "fields": {"System.Title": "T", "Other": [1]}, "url": "u", "rev": 3}"#,
            r#"{"id": 6.5, "__project": null, "fields": {"Microsoft.VSTS.Scheduling.Effort": 8}, "url": {"path": "/x"}}"#,
            r#"{"id": "7", "__project": {"id": 1}, "fields": "text"}"#,
        ] {
            let whole: Value = serde_json::from_str(text).unwrap();
            let part = projection.parse(text).unwrap();
            assert_eq!(
                res.map_item(&part, true),
                res.map_item(&whole, true),
                "{text}"
            );
        }
        // A program for jaq may read anything: no projection.
        let jaq = resource(
            "query: 'true'",
            "identifier: .id\nblueprint: '\"x\"'\ntitle: .tags | length",
        );
        assert!(jaq.resources()[0].projection().is_none());
    }
}
