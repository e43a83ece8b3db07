//! The parts of a raw item a resource reads, when every one of its programs is a plain path shape
//! ([`super::fast`]): parsing an item through a [`Projection`] keeps those paths (each whole) and
//! skips the rest without building it, so mapping the projected item gives exactly what mapping the
//! whole item does. A work item's JSON is mostly fields no mapping names.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A tree of object keys; a leaf keeps its whole value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Projection {
    whole: bool,
    children: BTreeMap<String, Projection>,
}

impl Projection {
    /// Keeps the value at `path` (the empty path keeps everything).
    pub fn add(&mut self, path: &[String]) {
        if self.whole {
            return;
        }
        match path.split_first() {
            None => {
                self.whole = true;
                self.children.clear();
            }
            Some((key, rest)) => self.children.entry(key.clone()).or_default().add(rest),
        }
    }

    /// Keeps everything `other` keeps as well.
    pub fn merge(&mut self, other: &Projection) {
        if other.whole {
            self.add(&[]);
            return;
        }
        if self.whole {
            return;
        }
        for (key, child) in &other.children {
            self.children.entry(key.clone()).or_default().merge(child);
        }
    }

    /// Whether this keeps the whole input (nothing to skip).
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// One JSON value, parsed through the projection.
    pub fn parse(&self, text: &str) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = self.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole {
            Value::deserialize(d)
        } else {
            d.deserialize_any(Keep(self))
        }
    }
}

/// An object keeps only the projected keys; anything else at a projected position is kept whole
/// (a path through a non-object is jaq's to answer, with the value it saw).
struct Keep<'p>(&'p Projection);

impl<'de> Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.children.get(&key) {
                Some(child) => {
                    let value = map.next_value_seed(child)?;
                    kept.insert(key, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projection(paths: &[&[&str]]) -> Projection {
        let mut p = Projection::default();
        for path in paths {
            p.add(&path.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>());
        }
        p
    }

    #[test]
    fn only_the_named_paths_are_kept_each_whole() {
        let p = projection(&[&["id"], &["fields", "System.Title"], &["a", "b"]]);
        let text = r#"{"id": 7, "big": {"x": [1, 2, {"y": "z"}]}, "fields": {"System.Title": {"t": 1}, "Other": "o"},
                       "a": "not an object", "url": "u"}"#;
        assert_eq!(
            p.parse(text).unwrap(),
            json!({"id": 7, "fields": {"System.Title": {"t": 1}}, "a": "not an object"})
        );
        assert_eq!(p.parse("[1, {\"id\": 2}]").unwrap(), json!([1, {"id": 2}]));
        assert_eq!(p.parse("\"s\"").unwrap(), json!("s"));
    }

    #[test]
    fn the_empty_path_keeps_everything_and_merging_unions() {
        let mut p = projection(&[&["a", "b"]]);
        p.merge(&projection(&[&["a", "c"], &["d"]]));
        assert_eq!(
            p.parse(r#"{"a": {"b": 1, "c": 2, "e": 3}, "d": null, "f": 4}"#)
                .unwrap(),
            json!({"a": {"b": 1, "c": 2}, "d": null})
        );
        p.merge(&projection(&[&[]]));
        assert!(p.is_whole());
        let text = r#"{"a": {"e": 3}, "f": [4.5, -1, 18446744073709551615]}"#;
        assert_eq!(
            p.parse(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn malformed_input_is_an_error_even_where_skipped() {
        let p = projection(&[&["id"]]);
        assert!(p.parse(r#"{"id": 1, "skip": [1, }"#).is_err());
        assert!(p.parse(r#"{"id": 1} trailing"#).is_err());
    }
}
