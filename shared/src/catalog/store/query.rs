//! Port's entity query tree (`{combinator, rules}`), parsed once and evaluated against stored entities.

use serde_json::Value;

use super::{StoreError, StoredEntity};

/// A parsed query: groups of rules joined by `and`/`or`, nested to any depth.
#[derive(Debug, Clone)]
pub enum Query {
    Group {
        all: bool,
        rules: Vec<Query>,
    },
    Rule {
        property: String,
        op: Op,
        value: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    DoesNotContain,
    ContainsAny,
    StartsWith,
    EndsWith,
    IsEmpty,
    IsNotEmpty,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "in" => Op::In,
            "notIn" => Op::NotIn,
            "contains" => Op::Contains,
            // Port's own spelling.
            "doesNotContains" | "doesNotContain" => Op::DoesNotContain,
            "containsAny" => Op::ContainsAny,
            "startsWith" => Op::StartsWith,
            "endsWith" => Op::EndsWith,
            "isEmpty" => Op::IsEmpty,
            "isNotEmpty" => Op::IsNotEmpty,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            _ => return None,
        })
    }
}

/// What the top level of a query pins down, so the store can use its primary key instead of a scan.
/// Both are necessary conditions: the full tree is still evaluated on every candidate.
#[derive(Debug, Default)]
pub struct Hints {
    pub blueprint: Option<String>,
    pub identifiers: Option<Vec<String>>,
}

/// True when a value is shaped like a search query (`{combinator, rules}`), as identifiers and
/// relation values may be.
pub fn is_query(v: &Value) -> bool {
    v.get("combinator").is_some() && v.get("rules").is_some()
}

impl Query {
    pub fn parse(v: &Value) -> Result<Query, StoreError> {
        let obj = v
            .as_object()
            .ok_or_else(|| StoreError::invalid("unknown", "a query must be an object"))?;
        if let Some(rules) = obj.get("rules") {
            let all = match obj
                .get("combinator")
                .and_then(Value::as_str)
                .unwrap_or("and")
            {
                "and" => true,
                "or" => false,
                other => {
                    return Err(StoreError::invalid(
                        "unknown",
                        format!("unknown combinator {other:?}"),
                    ));
                }
            };
            let rules = rules
                .as_array()
                .ok_or_else(|| StoreError::invalid("unknown", "query rules must be a list"))?
                .iter()
                .map(Query::parse)
                .collect::<Result<_, _>>()?;
            return Ok(Query::Group { all, rules });
        }
        let property = obj
            .get("property")
            .and_then(Value::as_str)
            .ok_or_else(|| StoreError::invalid("unknown", "only property rules are supported"))?;
        let op_str = obj.get("operator").and_then(Value::as_str).unwrap_or("");
        let op = Op::parse(op_str).ok_or_else(|| {
            StoreError::invalid("unknown", format!("unsupported operator {op_str:?}"))
        })?;
        let value = obj.get("value").cloned().unwrap_or(Value::Null);
        if matches!(op, Op::In | Op::NotIn | Op::ContainsAny) && !value.is_array() {
            return Err(StoreError::invalid(
                "unknown",
                format!("operator {op_str:?} needs a list value"),
            ));
        }
        Ok(Query::Rule {
            property: property.to_owned(),
            op,
            value,
        })
    }

    /// Adds a rule to a top-level `and` (or wraps the query in one).
    pub fn and(self, property: &str, op: Op, value: Value) -> Query {
        let rule = Query::Rule {
            property: property.to_owned(),
            op,
            value,
        };
        match self {
            Query::Group {
                all: true,
                mut rules,
            } => {
                rules.push(rule);
                Query::Group { all: true, rules }
            }
            other => Query::Group {
                all: true,
                rules: vec![other, rule],
            },
        }
    }

    pub fn hints(&self) -> Hints {
        let mut hints = Hints::default();
        let top: &[Query] = match self {
            Query::Group { all: true, rules } => rules,
            Query::Group { all: false, .. } => return hints,
            rule => std::slice::from_ref(rule),
        };
        for rule in top {
            let Query::Rule {
                property,
                op,
                value,
            } = rule
            else {
                continue;
            };
            match (property.as_str(), op) {
                ("$blueprint", Op::Eq) if hints.blueprint.is_none() => {
                    hints.blueprint = value.as_str().map(str::to_owned);
                }
                ("$identifier", Op::Eq) if hints.identifiers.is_none() => {
                    hints.identifiers = scalar_string(value).map(|s| vec![s]);
                }
                ("$identifier", Op::In) if hints.identifiers.is_none() => {
                    hints.identifiers = value
                        .as_array()
                        .map(|ids| ids.iter().filter_map(scalar_string).collect());
                }
                _ => {}
            }
        }
        hints
    }

    pub fn matches(&self, e: &StoredEntity) -> bool {
        match self {
            Query::Group { all: true, rules } => rules.iter().all(|r| r.matches(e)),
            Query::Group { all: false, rules } => rules.iter().any(|r| r.matches(e)),
            Query::Rule {
                property,
                op,
                value,
            } => {
                let actual = field(e, property);
                eval(*op, &actual, value)
            }
        }
    }
}

fn field(e: &StoredEntity, property: &str) -> Value {
    let opt = |s: &Option<String>| s.clone().map(Value::String).unwrap_or(Value::Null);
    match property {
        "$identifier" => Value::String(e.identifier.clone()),
        "$blueprint" => Value::String(e.blueprint.clone()),
        "$datasource" => Value::String(e.datasource.clone()),
        "$title" => opt(&e.title),
        "$icon" => opt(&e.icon),
        "$team" => Value::Array(e.team.iter().cloned().map(Value::String).collect()),
        "$createdAt" => Value::String(super::timestamp(e.created_at)),
        "$updatedAt" => Value::String(super::timestamp(e.updated_at)),
        name => e
            .properties
            .get(name)
            .or_else(|| e.relations.get(name))
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// Strings, numbers and booleans by their text, so `"42"` matches `42` as Port's string identifiers do.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    a == b
        || match (scalar_string(a), scalar_string(b)) {
            (Some(x), Some(y)) => x == y && (a.is_string() || b.is_string()),
            _ => false,
        }
}

/// A list property (team, many-relations, arrays) matches a scalar when any element does.
fn eq_any(actual: &Value, expected: &Value) -> bool {
    match actual {
        Value::Array(items) if !expected.is_array() => items.iter().any(|i| loose_eq(i, expected)),
        _ => loose_eq(actual, expected),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eval(op: Op, actual: &Value, expected: &Value) -> bool {
    use std::cmp::Ordering::*;
    let list = || expected.as_array().map(Vec::as_slice).unwrap_or(&[]);
    match op {
        Op::Eq => eq_any(actual, expected),
        Op::Ne => !eq_any(actual, expected),
        Op::In => list().iter().any(|x| eq_any(actual, x)),
        Op::NotIn => !list().iter().any(|x| eq_any(actual, x)),
        Op::Contains => contains(actual, expected),
        Op::DoesNotContain => !contains(actual, expected),
        Op::ContainsAny => list().iter().any(|x| contains(actual, x)),
        Op::StartsWith => {
            matches!((actual, expected), (Value::String(a), Value::String(b)) if a.starts_with(b.as_str()))
        }
        Op::EndsWith => {
            matches!((actual, expected), (Value::String(a), Value::String(b)) if a.ends_with(b.as_str()))
        }
        Op::IsEmpty => is_empty(actual),
        Op::IsNotEmpty => !is_empty(actual),
        Op::Gt => compare(actual, expected) == Some(Greater),
        Op::Ge => matches!(compare(actual, expected), Some(Greater | Equal)),
        Op::Lt => compare(actual, expected) == Some(Less),
        Op::Le => matches!(compare(actual, expected), Some(Less | Equal)),
    }
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => a.contains(b.as_str()),
        (Value::Array(items), x) => items.iter().any(|i| loose_eq(i, x)),
        _ => false,
    }
}
