//! itemsToParse: expand one raw item into one item per element of an array inside it.
//!
//! Ocean removes the array from the parent before merging (so each expanded item does not carry the
//! whole array again), and it finds what to remove by guessing a path from the expression text. The
//! guess is reproduced here: users who hit its limits are told to set `itemsToParseTopLevelTransform:
//! false`, as Ocean's users are.

use jaq_json::{Map as ValMap, Rc, Val};

use super::jq::{JqOutput, JqProgram, from_val};

/// A compiled `itemsToParse` with its naming and trimming settings.
#[derive(Debug)]
pub(crate) struct ItemsToParse {
    pub(crate) program: JqProgram,
    pub(crate) name: String,
    pub(crate) top_level_transform: bool,
    /// Object keys of the array to remove from the parent; `None` when no path could be guessed.
    pub(crate) delete_path: Option<Vec<String>>,
}

impl ItemsToParse {
    pub(crate) fn new(program: JqProgram, name: String, top_level_transform: bool) -> Self {
        let delete_path =
            guess_delete_path(&super::quotes::rewrite_single_quotes(program.source()));
        Self {
            program,
            name,
            top_level_transform,
            delete_path,
        }
    }

    /// Returns the expanded items, or why the parent is skipped.
    pub(crate) fn expand(&self, parent: Val, env: &Val) -> Result<Vec<Val>, String> {
        let src = self.program.source();
        let elements = match self.program.first(&parent, env) {
            JqOutput::Value(Val::Arr(a)) => a,
            JqOutput::Value(other) => {
                return Err(format!(
                    "itemsToParse `{src}` gave {} instead of an array",
                    describe(&from_val(&other))
                ));
            }
            JqOutput::Empty => return Err(format!("itemsToParse `{src}` gave no output")),
            JqOutput::Error(e) => return Err(format!("itemsToParse `{src}` failed: {e}")),
        };
        let Val::Obj(mut base) = parent else {
            return Err(format!("itemsToParse `{src}`: the item is not an object"));
        };
        if self.top_level_transform {
            let Some(path) = &self.delete_path else {
                return Err(format!(
                    "itemsToParse `{src}`: cannot tell which path to remove from the item; \
                     set itemsToParseTopLevelTransform: false"
                ));
            };
            delete_path(&mut base, path)
                .map_err(|e| format!("itemsToParse `{src}`: cannot remove the array: {e}"))?;
        }
        let key = Val::from(self.name.clone());
        Ok(elements
            .iter()
            .map(|element| {
                let mut item = base.clone();
                Rc::make_mut(&mut item).insert(key.clone(), element.clone());
                Val::Obj(item)
            })
            .collect())
    }
}

/// `del(.a.b)`: a missing or null step is a no-op, as in jq; a scalar in the way is an error.
fn delete_path(map: &mut Rc<ValMap>, path: &[String]) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    let key = Val::from(first.clone());
    if rest.is_empty() {
        Rc::make_mut(map).shift_remove(&key);
        return Ok(());
    }
    match Rc::make_mut(map).get_mut(&key) {
        None | Some(Val::Null) => Ok(()),
        Some(Val::Obj(inner)) => delete_path(inner, rest),
        Some(other) => Err(format!(
            "`{first}` is {}, not an object",
            describe(&from_val(other))
        )),
    }
}

fn describe(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The first simple path (`.a.b`, `.a["b"]`, `."x"`) at the start of the first pipe segment that is
/// not `. as $x`, after opening parentheses. `[.a[]]` or `map(.a)` give none.
pub(crate) fn guess_delete_path(expr: &str) -> Option<Vec<String>> {
    let segment = pipe_segments(expr)
        .into_iter()
        .find(|s| !is_root_binding(s))?;
    let mut rest = segment.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let mut path = Vec::new();
    loop {
        let (key, after) = if let Some(after_dot) = rest.strip_prefix('.') {
            if let Some(r) = after_dot.strip_prefix('[') {
                match bracket_key(r) {
                    Some(found) => found,
                    None => break,
                }
            } else if after_dot.starts_with('"') {
                match string_literal(after_dot) {
                    Some(found) => found,
                    None => break,
                }
            } else {
                let len = identifier_len(after_dot);
                if len == 0 {
                    break;
                }
                (after_dot[..len].to_owned(), &after_dot[len..])
            }
        } else if !path.is_empty() && rest.starts_with('[') {
            match bracket_key(&rest[1..]) {
                Some(found) => found,
                None => break,
            }
        } else {
            break;
        };
        path.push(key);
        rest = after;
    }
    (!path.is_empty()).then_some(path)
}

/// Splits on `|` outside string literals.
fn pipe_segments(expr: &str) -> Vec<&str> {
    let mut segments = Vec::new();
    let (mut start, mut in_string, mut escaped) = (0, false, false);
    for (i, c) in expr.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '|' if !in_string => {
                segments.push(&expr[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    segments.push(&expr[start..]);
    segments
}

fn is_root_binding(segment: &str) -> bool {
    let s = segment.trim();
    s.strip_prefix('.')
        .map(str::trim_start)
        .and_then(|s| s.strip_prefix("as"))
        .is_some_and(|s| s.starts_with(char::is_whitespace) && s.trim_start().starts_with('$'))
}

fn identifier_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// `"key"]` (after the `[`), allowing spaces inside the brackets.
fn bracket_key(s: &str) -> Option<(String, &str)> {
    let (key, rest) = string_literal(s.trim_start())?;
    let rest = rest.trim_start().strip_prefix(']')?;
    Some((key, rest))
}

/// A JSON-compatible string literal at the start of `s`; interpolation (`\(`) is not a simple path.
fn string_literal(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let literal = &s[..i + 2];
                let key: String = serde_json::from_str(literal).ok()?;
                return Some((key, &body[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(expr: &str) -> Option<Vec<&'static str>> {
        guess_delete_path(expr).map(|p| {
            p.into_iter()
                .map(|s| &*Box::leak(s.into_boxed_str()))
                .collect()
        })
    }

    #[test]
    fn delete_path_is_guessed_like_the_peer() {
        assert_eq!(guess(".fields.comments"), Some(vec!["fields", "comments"]));
        assert_eq!(guess(".a | map(.b)"), Some(vec!["a"]));
        assert_eq!(guess("(.x // [])"), Some(vec!["x"]));
        assert_eq!(guess(r#".a["b c"].d"#), Some(vec!["a", "b c", "d"]));
        assert_eq!(guess(r#"."System.Tags""#), Some(vec!["System.Tags"]));
        assert_eq!(guess(r#".["x"]"#), Some(vec!["x"]));
        assert_eq!(
            guess(". as $root | .items | map(. + {r: $root.id})"),
            Some(vec!["items"])
        );
        assert_eq!(guess(r#".["a|b"] | .c"#), Some(vec!["a|b"]));
        assert_eq!(guess("[.a[]]"), None);
        assert_eq!(guess("map(.a)"), None);
        assert_eq!(guess("."), None);
    }
}
