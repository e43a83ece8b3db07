//! Direct evaluation of the commonest mapping shapes, skipping jaq's interpreter.
//!
//! Most mapping fields are `.a.b`, a literal, `.a // literal`, or such a value piped through
//! `gsub("text"; "text")` / `tostring`; identifiers join such values with `+`, as the peer's own
//! `.a + "/" + (.b | tostring) | gsub(" "; "")`. jaq spends about 1-2 µs on each of these; a direct lookup takes
//! a tenth of that. Anything outside the happy path (a key on a non-object, `gsub` on a non-string,
//! `tostring` of a float, `+` of anything but two strings or a null) answers `None` and the caller runs
//! jaq, so errors and odd inputs keep jaq's exact behaviour.

use jaq_json::{Map as ValMap, Num, Val};
use serde_json::Value;

use super::jq::to_val;

/// A program recognised as one of the simple shapes. Holds no jaq values (they are `Rc`-based), so
/// compiled configs stay `Send + Sync`.
#[derive(Debug)]
pub(crate) struct FastProgram {
    /// Added together with jq's `+` (one term is the common case).
    terms: Vec<Term>,
    alternative: Option<Value>,
    ops: Vec<Op>,
}

#[derive(Debug)]
enum Term {
    Const(Value),
    /// Object keys from the input (`.` is the empty path).
    Path(Vec<String>),
    /// A parenthesised program, as `(.id | tostring)`.
    Group(Box<FastProgram>),
}

#[derive(Debug)]
enum Op {
    /// `gsub` with a pattern free of regex syntax and a constant replacement.
    ReplaceAll(String, String),
    ToString,
}

impl FastProgram {
    /// Recognises `term ( + term )* ( // literal )? ( | op )*`, where a term is a path, a literal or a
    /// parenthesised program (jq's precedence: `+` binds tighter than `//`, `//` than `|`), and the code
    /// has had its quotes rewritten.
    pub(crate) fn parse(code: &str) -> Option<Self> {
        let mut p = Parser { rest: code };
        let program = p.program()?;
        p.at_end().then_some(program)
    }

    /// Adds every input path this program reads to `p`.
    pub(crate) fn add_paths(&self, p: &mut super::projection::Projection) {
        for term in &self.terms {
            match term {
                Term::Const(_) => {}
                Term::Path(keys) => p.add(keys),
                Term::Group(program) => program.add_paths(p),
            }
        }
    }

    /// The single output, or `None` to let jaq decide.
    pub(crate) fn eval(&self, input: &Val) -> Option<Val> {
        let mut v = self.terms[0].eval(input)?;
        for term in &self.terms[1..] {
            v = add(v, term.eval(input)?)?;
        }
        if let Some(alt) = &self.alternative
            && matches!(v, Val::Null | Val::Bool(false))
        {
            v = to_val(alt);
        }
        for op in &self.ops {
            v = match (op, v) {
                (Op::ToString, s @ Val::TStr(_)) => s,
                (Op::ToString, Val::Num(Num::Int(i))) => Val::from(i.to_string()),
                (Op::ReplaceAll(pattern, replacement), Val::TStr(bytes)) => {
                    let text = std::str::from_utf8(&bytes).ok()?;
                    if text.contains(pattern.as_str()) {
                        Val::from(text.replace(pattern.as_str(), replacement))
                    } else {
                        Val::TStr(bytes)
                    }
                }
                _ => return None,
            };
        }
        Some(v)
    }

    /// The same as [`FastProgram::eval`], straight on the raw JSON: an item whose fields are all simple
    /// is never converted to jaq values at all.
    pub(crate) fn eval_json(&self, input: &Value) -> Option<Value> {
        let mut v = match self.terms.as_slice() {
            [one] => one.eval_json(input)?,
            terms => join_json(terms, input)?,
        };
        if let Some(alt) = &self.alternative
            && matches!(v, Value::Null | Value::Bool(false))
        {
            v = alt.clone();
        }
        for op in &self.ops {
            v = match (op, v) {
                (Op::ToString, s @ Value::String(_)) => s,
                // jaq holds an integer as an integer only when it fits; anything else goes to jaq.
                (Op::ToString, Value::Number(n)) => Value::String(n.as_i64()?.to_string()),
                (Op::ReplaceAll(pattern, replacement), Value::String(text)) => {
                    Value::String(replace_all(text, pattern, replacement))
                }
                _ => return None,
            };
        }
        Some(v)
    }
}

impl Term {
    fn eval(&self, input: &Val) -> Option<Val> {
        match self {
            Term::Const(c) => Some(to_val(c)),
            Term::Path(keys) => {
                let mut cur = input;
                for key in keys {
                    cur = match cur {
                        Val::Null => cur,
                        Val::Obj(map) => lookup(map, key).unwrap_or(&Val::Null),
                        _ => return None,
                    };
                }
                Some(cur.clone())
            }
            Term::Group(program) => program.eval(input),
        }
    }

    fn eval_json(&self, input: &Value) -> Option<Value> {
        match self {
            Term::Const(c) => Some(c.clone()),
            Term::Path(keys) => path_json(input, keys).cloned(),
            Term::Group(program) => program.eval_json(input),
        }
    }
}

fn path_json<'v>(input: &'v Value, keys: &[String]) -> Option<&'v Value> {
    let mut cur = input;
    for key in keys {
        cur = match cur {
            Value::Null => cur,
            Value::Object(map) => map.get(key.as_str()).unwrap_or(&Value::Null),
            _ => return None,
        };
    }
    Some(cur)
}

/// `text` with every `pattern` replaced. Removing one character (`gsub(" "; "")`, the commonest use)
/// happens in place; otherwise a new string only when the pattern occurs.
fn replace_all(mut text: String, pattern: &str, replacement: &str) -> String {
    let mut chars = pattern.chars();
    if let (Some(only), None, true) = (chars.next(), chars.next(), replacement.is_empty()) {
        text.retain(|c| c != only);
        text
    } else if text.contains(pattern) {
        text.replace(pattern, replacement)
    } else {
        text
    }
}

/// `a + b + …` where every term is a string or null (jq's `+` there: nulls vanish, strings join; all
/// null is null), written into one buffer without copying the terms first. Anything else is jaq's.
fn join_json(terms: &[Term], input: &Value) -> Option<Value> {
    let mut joined: Option<String> = None;
    let mut push = |s: &str| {
        joined
            .get_or_insert_with(|| String::with_capacity(64))
            .push_str(s)
    };
    for term in terms {
        match term {
            Term::Const(Value::Null) => {}
            Term::Const(Value::String(s)) => push(s),
            Term::Path(keys) => match path_json(input, keys)? {
                Value::Null => {}
                Value::String(s) => push(s),
                _ => return None,
            },
            Term::Group(program) => match program.eval_json(input)? {
                Value::Null => {}
                Value::String(s) => push(&s),
                _ => return None,
            },
            Term::Const(_) => return None,
        }
    }
    Some(joined.map_or(Value::Null, Value::String))
}

/// jq's `+` of strings and nulls: nulls vanish, strings join; anything else is jaq's (as in
/// [`join_json`], so both paths decline alike).
fn add(a: Val, b: Val) -> Option<Val> {
    match (a, b) {
        (Val::Null, v @ (Val::Null | Val::TStr(_))) | (v @ Val::TStr(_), Val::Null) => Some(v),
        (Val::TStr(a), Val::TStr(b)) => {
            let mut joined = String::with_capacity(a.len() + b.len());
            joined.push_str(std::str::from_utf8(&a).ok()?);
            joined.push_str(std::str::from_utf8(&b).ok()?);
            Some(Val::from(joined))
        }
        _ => None,
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn peek_is(&mut self, c: char) -> bool {
        self.skip_ws();
        self.rest.starts_with(c)
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `term ( + term )* ( // literal )? ( | op )*`.
    fn program(&mut self) -> Option<FastProgram> {
        let mut terms = vec![self.term()?];
        while self.eat("+") {
            terms.push(self.term()?);
        }
        let alternative = if self.eat("//") {
            Some(self.literal()?)
        } else {
            None
        };
        let mut ops = Vec::new();
        while self.eat("|") {
            ops.push(self.op()?);
        }
        Some(FastProgram {
            terms,
            alternative,
            ops,
        })
    }

    fn term(&mut self) -> Option<Term> {
        if self.eat("(") {
            let inner = self.program()?;
            return self.eat(")").then(|| Term::Group(Box::new(inner)));
        }
        if self.peek_is('.') {
            Some(Term::Path(self.path()?))
        } else {
            Some(Term::Const(self.literal()?))
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.rest.is_empty()
    }

    /// `.`, `.a.b`, `."a"`, `.a["b"]`, `.["a"]`; no spaces inside, as users write paths.
    fn path(&mut self) -> Option<Vec<String>> {
        self.skip_ws();
        let mut keys = Vec::new();
        loop {
            let rest = self.rest;
            if let Some(after) = rest
                .strip_prefix(".[")
                .or_else(|| (!keys.is_empty()).then(|| rest.strip_prefix('[')).flatten())
            {
                let (key, after) = string_token(after)?;
                self.rest = after.strip_prefix(']')?;
                keys.push(key);
            } else if rest.starts_with(".\"") {
                let (key, after) = string_token(&rest[1..])?;
                self.rest = after;
                keys.push(key);
            } else if let Some(after) = rest.strip_prefix('.') {
                let len = identifier_len(after);
                if len == 0 {
                    // `.` alone is the identity; `.` followed by anything else is not a simple path.
                    let next = after.trim_start();
                    let ends = next.is_empty()
                        || next.starts_with(['|', '+', ')'])
                        || next.starts_with("//");
                    if keys.is_empty() && ends {
                        self.rest = after;
                        return Some(keys);
                    }
                    return None;
                }
                keys.push(after[..len].to_owned());
                self.rest = &after[len..];
            } else {
                return Some(keys);
            }
        }
    }

    /// A JSON-compatible literal: string (no interpolation), number, `true`, `false`, `null`.
    fn literal(&mut self) -> Option<Value> {
        self.skip_ws();
        if self.rest.starts_with('"') {
            let (s, after) = string_token(self.rest)?;
            self.rest = after;
            return Some(Value::String(s));
        }
        let len = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+')))
            .unwrap_or(self.rest.len());
        let token = &self.rest[..len];
        let value: Value = serde_json::from_str(token).ok()?;
        if value.is_array() || value.is_object() || value.as_f64().is_some_and(|f| !f.is_finite()) {
            return None;
        }
        self.rest = &self.rest[len..];
        Some(value)
    }

    fn op(&mut self) -> Option<Op> {
        self.skip_ws();
        if let Some(after) = self.rest.strip_prefix("tostring") {
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            self.rest = after;
            return Some(Op::ToString);
        }
        self.rest = self.rest.strip_prefix("gsub")?;
        if !self.eat("(") {
            return None;
        }
        self.skip_ws();
        let (pattern, after) = string_token(self.rest)?;
        self.rest = after;
        if !self.eat(";") {
            return None;
        }
        self.skip_ws();
        let (replacement, after) = string_token(self.rest)?;
        self.rest = after;
        if !self.eat(")") || !super::regex_cache::is_plain_text(&pattern) {
            return None;
        }
        Some(Op::ReplaceAll(pattern, replacement))
    }
}

/// Items have a few dozen keys at most: comparing bytes beats allocating a `Val` key to hash.
fn lookup<'m>(map: &'m ValMap, key: &str) -> Option<&'m Val> {
    if map.len() <= 32 {
        map.iter()
            .find(|(k, _)| matches!(k, Val::TStr(b) | Val::BStr(b) if b.as_ref() == key.as_bytes()))
            .map(|(_, v)| v)
    } else {
        map.get(&Val::from(key.to_owned()))
    }
}

fn identifier_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        if !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())) {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// A `"..."` string at the start of `s`, decoded, and what follows. Interpolation is not simple.
fn string_token(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '(' if escaped => return None,
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let decoded = serde_json::from_str(&s[..i + 2]).ok()?;
                return Some((decoded, &body[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::jq::{JqOutput, JqProgram, from_val};
    use super::*;
    use serde_json::json;

    #[test]
    fn simple_shapes_are_recognised_and_others_are_not() {
        for code in [
            ".id",
            ".",
            ".a.b",
            r#".fields."System.Title""#,
            r#".__includedFiles["README.md"]"#,
            r#".["a"].b"#,
            r#""azureDevopsProject""#,
            "true",
            "-1",
            ".x // -1",
            r#".x // """#,
            r#".id | gsub(" "; "")"#,
            ".id | tostring",
            r#".a // "x" | tostring | gsub("a"; "b")"#,
            ".a + .b",
            "(.a)",
            r#". + "x""#,
            r#".projectReference.id + "/" + (.id | tostring) | gsub(" "; "")"#,
            r#".__stateType + "/" +.name+ "/"+.__board.__project.id | gsub(" "; "")"#,
            r#".a + .b // "none""#,
        ] {
            assert!(FastProgram::parse(code).is_some(), "{code}");
        }
        for code in [
            ".a[]",
            ".a?",
            ".a - .b",
            ".a * 2",
            ".a + .b[]",
            "(.a",
            ".a)",
            r#".a // "x" + "y""#,
            r#".a | gsub("x"; "y") + "z""#,
            ".a + (.b | tostrin)",
            ".a and .b",
            r#".a | gsub("[ ]"; "")"#,
            r#".a | gsub(" "; .b)"#,
            r#""\(.a)""#,
            ".a // .b",
            ".a == 1",
            "tostringx",
            ". | tostrings",
            "[.a]",
            "1e1000",
            "env.X",
            "$ENV.X",
        ] {
            assert!(FastProgram::parse(code).is_none(), "{code}");
        }
    }

    #[test]
    fn fast_results_equal_jaqs() {
        let inputs = [
            json!({"id": "a b", "n": 5, "f": 1.5, "x": false, "a": {"b": "in ner"}, "fields": {"System.Title": "T"}}),
            json!({"id": 7, "a": null, "x": null}),
            json!({"a": "str", "id": ["l"], "n": 18446744073709551615u64, "x": 2.0}),
            json!({"id": {"k": [1, 2.5, "s"]}, "n": -3, "a": {"b": 7}}),
            json!(null),
            json!("top"),
        ];
        let programs = [
            ".id",
            ".",
            ".a.b",
            r#".fields."System.Title""#,
            r#".["a"]["b"]"#,
            r#""lit""#,
            "1.5",
            "-1",
            "null",
            ".x // -1",
            ".missing // \"\"",
            r#".id | gsub(" "; "")"#,
            r#".a.b | gsub("n"; "N")"#,
            ".id | tostring",
            ".n | tostring",
            ".f | tostring",
            r#".n // "x" | tostring | gsub("5"; "five")"#,
            r#".id + "/" + (.n | tostring) | gsub(" "; "")"#,
            r#".a.b + "/" + .id"#,
            r#".missing + "x""#,
            ".missing + .missing",
            ".n + .n",
            ".id + .a",
            r#". + "x""#,
            r#"(.id | tostring) + "-" + (.x // "d")"#,
            r#".id + .missing // "none""#,
        ];
        let env = Val::obj(Default::default());
        for input in &inputs {
            let val = to_val(input);
            for code in programs {
                let fast = FastProgram::parse(code).unwrap_or_else(|| panic!("{code}"));
                let reference = JqProgram::compile_without_fast(code).unwrap();
                // On raw JSON it answers exactly as on jaq values, including when it declines.
                assert_eq!(
                    fast.eval_json(input),
                    fast.eval(&val).map(|v| from_val(&v)),
                    "{code} on {input}"
                );
                match (fast.eval(&val), reference.first(&val, &env)) {
                    (Some(got), JqOutput::Value(expected)) => {
                        assert_eq!(from_val(&got), from_val(&expected), "{code} on {input}")
                    }
                    (None, _) => {}
                    (Some(got), other) => {
                        panic!("{code} on {input}: fast gave {got:?}, jaq {other:?}")
                    }
                }
            }
        }
    }
}
