//! The compiled configuration and the per-item mapping (Ocean's entity processor semantics).

use std::sync::Arc;

use jaq_json::{Map as ValMap, Val};
use serde_json::{Map, Value};

use super::config::{EntityMappingConfig, MappingNode, PortAppConfig, SearchQuery, SearchRule, Selector};
use super::items::ItemsToParse;
use super::jq::{JqOutput, JqProgram, env_object, from_val, to_val, truthy};
use super::{FieldWarning, ItemOutcome, MappingError, MappingOptions};
use crate::catalog::Entity;

/// A [`PortAppConfig`] whose jq expressions are all compiled. `Send + Sync`: build it once per cold
/// start and share it.
#[derive(Debug)]
pub struct CompiledConfig {
    config: PortAppConfig,
    resources: Vec<CompiledResource>,
}

/// One resource of the config, ready to map items of its kind.
#[derive(Debug)]
pub struct CompiledResource {
    index: usize,
    kind: String,
    selector: Selector,
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

#[derive(Debug)]
struct CompiledSearch {
    combinator: JqProgram,
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
enum CompiledRule {
    Rule { property: JqProgram, operator: JqProgram, value: JqProgram },
    Query(CompiledSearch),
}

impl CompiledConfig {
    /// Compiles every jq expression once. A failure names the resource index, kind and field path,
    /// e.g. `resources[1] (repository) properties.url: ...`.
    pub fn compile(config: PortAppConfig, opts: &MappingOptions) -> Result<Self, MappingError> {
        let env = Arc::new(Value::Object(env_object(opts.allow_env)));
        let resources = config
            .resources
            .iter()
            .enumerate()
            .map(|(index, r)| {
                let mut c = Compiler { at: format!("resources[{index}] ({})", r.kind), uses_env: false };
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
                Ok(CompiledResource {
                    index,
                    kind: r.kind.clone(),
                    selector: r.selector.clone(),
                    query,
                    items,
                    mappings,
                    env: Arc::clone(&env),
                    uses_env: c.uses_env && opts.allow_env,
                })
            })
            .collect::<Result<_, MappingError>>()?;
        Ok(Self { config, resources })
    }

    pub fn config(&self) -> &PortAppConfig {
        &self.config
    }

    pub fn resources(&self) -> &[CompiledResource] {
        &self.resources
    }

    /// The resources of one kind, in config order (a kind may appear several times).
    pub fn resources_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a CompiledResource> {
        self.resources.iter().filter(move |r| r.kind == kind)
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
            title: m.title.as_deref().map(|t| self.jq("title", t)).transpose()?,
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
                        .map(|(k, node)| Ok((k.clone(), self.node(&format!("relations.{k}"), node)?)))
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
                    SearchRule::Rule { property, operator, value } => CompiledRule::Rule {
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

    /// Expands itemsToParse (if set) and maps each resulting item. With `keep_filtered`, items the
    /// selector rejects are still mapped (live events delete them); without, they are not (resync).
    pub fn map_item(&self, raw: &Value, keep_filtered: bool) -> Vec<ItemOutcome> {
        let env = if self.uses_env { to_val(&self.env) } else { Val::obj(ValMap::default()) };
        let item = to_val(raw);
        let Some(items) = &self.items else {
            return vec![self.map_one(&item, &env, keep_filtered)];
        };
        match items.expand(item, &env) {
            Ok(expanded) => expanded.iter().map(|i| self.map_one(i, &env, keep_filtered)).collect(),
            Err(message) => {
                tracing::warn!(resource = self.index, kind = %self.kind, %message, "item skipped");
                vec![ItemOutcome::ParentSkipped { message }]
            }
        }
    }

    fn map_one(&self, item: &Val, env: &Val, keep_filtered: bool) -> ItemOutcome {
        let passed = match self.query.first(item, env) {
            JqOutput::Value(Val::Bool(b)) => b,
            JqOutput::Value(other) => {
                let got = truncate(&from_val(&other).to_string(), 200);
                return self.selector_error(format!(
                    "selector `{}` gave {got}, expected a boolean",
                    self.query.source()
                ));
            }
            JqOutput::Empty => {
                return self.selector_error(format!(
                    "selector `{}` gave no output",
                    self.query.source()
                ));
            }
            JqOutput::Error(e) => {
                return self.selector_error(format!("selector `{}` failed: {e}", self.query.source()));
            }
        };
        if !passed && !keep_filtered {
            return ItemOutcome::Filtered { entity: None };
        }
        let mut eval = Evaluator { item, env, warnings: Vec::new(), resource: self };
        let entity = eval.entity(&self.mappings);
        match (passed, entity) {
            (true, Some(entity)) => ItemOutcome::Mapped { entity, warnings: eval.warnings },
            (true, None) => ItemOutcome::Dropped { warnings: eval.warnings },
            (false, entity) => ItemOutcome::Filtered { entity },
        }
    }

    fn selector_error(&self, message: String) -> ItemOutcome {
        tracing::warn!(resource = self.index, kind = %self.kind, %message, "selector error");
        ItemOutcome::SelectorError { message }
    }
}

struct Evaluator<'a> {
    item: &'a Val,
    env: &'a Val,
    warnings: Vec<FieldWarning>,
    resource: &'a CompiledResource,
}

impl Evaluator<'_> {
    /// `None` when identifier or blueprint is falsy (or the blueprint is not a string).
    fn entity(&mut self, m: &CompiledMappings) -> Option<Entity> {
        let identifier = self.node("identifier", &m.identifier);
        if !truthy(&identifier) {
            return None;
        }
        let blueprint = match self.jq("blueprint", &m.blueprint) {
            Value::String(s) if !s.is_empty() => s,
            other if !truthy(&other) => return None,
            other => {
                self.warn("blueprint", &m.blueprint, format!("must be a string, got {other}"));
                return None;
            }
        };
        let title = m.title.as_ref().map(|p| self.jq("title", p));
        let icon = m.icon.as_ref().map(|p| self.icon(p));
        let team = m.team.as_ref().map(|n| self.node("team", n));
        let properties = m.properties.as_ref().map(|props| {
            props
                .iter()
                .map(|(k, p)| (k.clone(), self.jq_at(|| format!("properties.{k}"), p)))
                .collect()
        });
        let relations = m.relations.as_ref().map(|rels| {
            rels.iter()
                .map(|(k, n)| (k.clone(), self.node(&format!("relations.{k}"), n)))
                .collect()
        });
        Some(Entity { identifier, blueprint, title, icon, team, properties, relations })
    }

    /// Ocean's Entity model types `icon` as an optional string: numbers and booleans become their
    /// Python text. A list or object aborts Ocean's whole batch; here only the field is nulled.
    fn icon(&mut self, p: &JqProgram) -> Value {
        match self.jq("icon", p) {
            v @ (Value::Null | Value::String(_)) => v,
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(if b { "True" } else { "False" }.to_owned()),
            other => {
                self.warn("icon", p, format!("must be a string, got {}", truncate(&other.to_string(), 100)));
                Value::Null
            }
        }
    }

    fn node(&mut self, field: &str, node: &CompiledNode) -> Value {
        match node {
            CompiledNode::Jq(p) => self.jq(field, p),
            CompiledNode::Search(q) => self.search(field, q),
        }
    }

    fn search(&mut self, field: &str, q: &CompiledSearch) -> Value {
        let combinator = self.jq_at(|| format!("{field}.combinator"), &q.combinator);
        let rules = q
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| match rule {
                CompiledRule::Rule { property, operator, value } => {
                    let mut obj = Map::new();
                    obj.insert(
                        "property".into(),
                        self.jq_at(|| format!("{field}.rules[{i}].property"), property),
                    );
                    obj.insert(
                        "operator".into(),
                        self.jq_at(|| format!("{field}.rules[{i}].operator"), operator),
                    );
                    obj.insert("value".into(), self.jq_at(|| format!("{field}.rules[{i}].value"), value));
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
        match p.first(self.item, self.env) {
            JqOutput::Value(v) => from_val(&v),
            JqOutput::Empty => {
                self.warn(&field(), p, "no output".to_owned());
                Value::Null
            }
            JqOutput::Error(e) => {
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
