//! Drop-in replacements for jaq-std's regex natives (`matches`, `split_matches`, `split_`) that do
//! not rebuild the regex on every call.
//!
//! jaq builds the regex each time `gsub`/`sub`/`test` runs, which costs about ten times the rest of a
//! typical mapping (`gsub(" "; "")` is on nearly every default identifier). Here regexes are cached
//! per thread, and patterns without regex syntax are searched as plain text. Same engine
//! (regex-bites), same flags, same output shape: `sub`, `gsub`, `test`, `match`, `capture`, `scan`
//! and `split/2` keep their jaq-std definitions on top of these natives.

use std::cell::RefCell;
use std::collections::HashMap;

use jaq_core::box_iter::box_once;
use jaq_core::{Bind, Cv, Error, Exn, Native, data::JustLut};
use jaq_json::{Map as ValMap, Val};
use jaq_std::ValT as _;
use regex_bites::bytes::{Regex, RegexBuilder};

type Data = JustLut<Val>;

/// The jaq-std natives these replace.
pub(crate) const REPLACES: &[&str] = &["matches", "split_matches", "split_"];

/// A thread's cache is dropped whole past this size: mappings use a handful of patterns, so only
/// patterns built from item data (unusual) can grow it.
const CACHE_LIMIT: usize = 256;

pub(crate) fn funs() -> impl Iterator<Item = (&'static str, Box<[Bind]>, Native<Data>)> {
    let vv = || -> Box<[Bind]> { Box::new([Bind::Var(()), Bind::Var(())]) };
    [
        (
            "matches",
            vv(),
            Native::new(|cv| box_once(run(false, true, cv).map_err(Exn::from))),
        ),
        (
            "split_matches",
            vv(),
            Native::new(|cv| box_once(run(true, true, cv).map_err(Exn::from))),
        ),
        (
            "split_",
            vv(),
            Native::new(|cv| box_once(run(true, false, cv).map_err(Exn::from))),
        ),
        (
            GSUB_LIT,
            vv(),
            Native::new(|cv| box_once(replace_literal(true, cv).map_err(Exn::from))),
        ),
        (
            SUB_LIT,
            vv(),
            Native::new(|cv| box_once(replace_literal(false, cv).map_err(Exn::from))),
        ),
    ]
    .into_iter()
}

const GSUB_LIT: &str = "_ado_sync_gsub_literal";
const SUB_LIT: &str = "_ado_sync_sub_literal";

/// `gsub`/`sub` with a literal pattern and a constant replacement, as a plain replace. The input
/// check is jaq's own, so a non-string input fails with jaq's message.
fn replace_literal(global: bool, mut cv: Cv<'_, Data>) -> Result<Val, Error<Val>> {
    let replacement = cv.0.pop_var();
    let pattern = cv.0.pop_var();
    let (pattern, replacement) = (as_str(&pattern)?, as_str(&replacement)?);
    let bytes = cv.1.try_as_utf8_bytes()?;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(Error::str("invalid UTF-8 in string"));
    };
    if !text.contains(pattern) {
        return Ok(cv.1);
    }
    let out = if global {
        text.replace(pattern, replacement)
    } else {
        text.replacen(pattern, replacement, 1)
    };
    Ok(Val::from(out))
}

/// Rewrites `gsub("lit"; "lit")` / `sub("lit"; "lit")` calls to the literal natives. Leaves the
/// program alone when it defines filters (a user `def gsub` must win) or interpolates strings (the
/// scanner below does not follow `\(...)`).
pub(crate) fn rewrite_literal_subs(code: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !code.contains("sub") || code.contains("def ") || code.contains("\\(") {
        return Cow::Borrowed(code);
    }
    let bytes = code.as_bytes();
    let mut out = String::new();
    let (mut copied, mut i, mut in_string) = (0, 0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let starts_name = i == 0 || !is_name_byte(bytes[i - 1]);
        // Bytes, not `code[i..]`: `i` can sit inside a multi-byte character (a comment, a pasted
        // non-breaking space). A match is ASCII, so slicing at it is safe.
        let name = if bytes[i..].starts_with(b"gsub") {
            Some(("gsub", GSUB_LIT))
        } else if bytes[i..].starts_with(b"sub") {
            Some(("sub", SUB_LIT))
        } else {
            None
        };
        if let (true, Some((name, native))) = (starts_name, name)
            && let Some((args, end)) = literal_args(&code[i + name.len()..])
        {
            out.push_str(&code[copied..i]);
            out.push_str(native);
            out.push_str(args);
            i += name.len() + end;
            copied = i;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        return Cow::Borrowed(code);
    }
    out.push_str(&code[copied..]);
    Cow::Owned(out)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.' || b == b':'
}

/// `("pat"; "repl")` right after the filter name, with a literal-only pattern. Returns the argument
/// text and its length.
fn literal_args(rest: &str) -> Option<(&str, usize)> {
    let body = rest.trim_start();
    let lead = rest.len() - body.len();
    let body = body.strip_prefix('(')?;
    let (pattern, after) = string_token(body.trim_start())?;
    let after = after.trim_start().strip_prefix(';')?;
    let (replacement, after) = string_token(after.trim_start())?;
    let after = after.trim_start().strip_prefix(')')?;
    let pattern: String = serde_json::from_str(pattern).ok()?;
    let _: String = serde_json::from_str(replacement).ok()?;
    if !is_literal(&pattern, Flags::default()) {
        return None;
    }
    let end = rest.len() - after.len();
    Some((&rest[lead..end], end))
}

/// A `"..."` token at the start of `s`, and what follows it.
fn string_token(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some((&s[..i + 2], &body[i + 1..])),
            _ => {}
        }
    }
    None
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Flags {
    global: bool,
    ignore_empty: bool,
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
    swap_greed: bool,
    extended: bool,
}

impl Flags {
    /// jq's flag letters, with jaq's error for an unknown one.
    fn parse(flags: &str) -> Result<Self, Error<Val>> {
        let mut f = Self::default();
        for c in flags.chars() {
            match c {
                'g' => f.global = true,
                'n' => f.ignore_empty = true,
                'i' => f.case_insensitive = true,
                'm' => f.multi_line = true,
                's' => f.dot_all = true,
                'l' => f.swap_greed = true,
                'x' => f.extended = true,
                'p' => {
                    f.multi_line = true;
                    f.dot_all = true;
                }
                c => return Err(Error::str(format_args!("invalid regex flag: {c}"))),
            }
        }
        Ok(f)
    }

    /// The flags that change the compiled regex (global and ignore-empty only change the iteration).
    fn regex_key(self) -> Self {
        Self {
            global: false,
            ignore_empty: false,
            ..self
        }
    }
}

thread_local! {
    static CACHE: RefCell<HashMap<(String, Flags), std::rc::Rc<Regex>>> = RefCell::new(HashMap::new());
}

fn cached_regex(pattern: &str, flags: Flags) -> Result<std::rc::Rc<Regex>, Error<Val>> {
    let key = (pattern.to_owned(), flags.regex_key());
    if let Some(re) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(re);
    }
    let re = RegexBuilder::new(pattern)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .swap_greed(flags.swap_greed)
        .ignore_whitespace(flags.extended)
        .build()
        .map_err(|e| Error::str(format_args!("invalid regex: {e}")))?;
    let re = std::rc::Rc::new(re);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_LIMIT {
            c.clear();
        }
        c.insert(key, re.clone());
    });
    Ok(re)
}

/// A pattern without regex syntax, so that with no flags it matches exactly its own text.
pub(crate) fn is_plain_text(pattern: &str) -> bool {
    is_literal(pattern, Flags::default())
}

/// A pattern that matches only its own text: no regex syntax, and no flag that changes how plain
/// text matches (`i` folds case, `x` drops whitespace). Empty patterns match between characters.
fn is_literal(pattern: &str, flags: Flags) -> bool {
    const SYNTAX: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$', '#',
    ];
    !pattern.is_empty() && !flags.case_insensitive && !flags.extended && !pattern.contains(SYNTAX)
}

/// One match group as jq reports it: offsets and lengths in characters.
struct Group {
    start: usize,
    end: usize,
    name: Option<String>,
}

enum Part {
    Mismatch(usize, usize),
    Matches(Vec<Group>),
}

/// `split`: emit the text between matches; `matches`: emit the match groups.
fn run(split: bool, matches: bool, mut cv: Cv<'_, Data>) -> Result<Val, Error<Val>> {
    let flags = cv.0.pop_var();
    let re = cv.0.pop_var();
    let flags = Flags::parse(as_str(&flags)?)?;
    let pattern = as_str(&re)?;
    let input = &cv.1;
    let bytes = input.try_as_utf8_bytes()?;

    let mut parts = Vec::new();
    let mut last = 0;
    let mut push = |groups: Vec<Group>, whole: (usize, usize), parts: &mut Vec<Part>| {
        if split {
            parts.push(Part::Mismatch(last, whole.0));
            last = whole.1;
        }
        if matches {
            parts.push(Part::Matches(groups));
        }
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if is_literal(pattern, flags) => {
            for (start, m) in text.match_indices(pattern) {
                let end = start + m.len();
                push(
                    vec![Group {
                        start,
                        end,
                        name: None,
                    }],
                    (start, end),
                    &mut parts,
                );
                if !flags.global {
                    break;
                }
            }
        }
        _ => {
            let re = cached_regex(pattern, flags)?;
            for caps in re.captures_iter(bytes) {
                let Some(whole) = caps.get(0) else { continue };
                if flags.ignore_empty && whole.is_empty() {
                    continue;
                }
                let groups = caps
                    .iter()
                    .zip(re.capture_names())
                    .filter_map(|(m, name)| {
                        let m = m?;
                        Some(Group {
                            start: m.start(),
                            end: m.end(),
                            name: name.map(str::to_owned),
                        })
                    })
                    .collect();
                push(groups, (whole.start(), whole.end()), &mut parts);
                if !flags.global {
                    break;
                }
            }
        }
    }
    if split {
        parts.push(Part::Mismatch(last, bytes.len()));
    }

    let mut chars = CharOffsets::new(bytes);
    let sub = |start: usize, end: usize| input.as_sub_str(&bytes[start..end]);
    Ok(parts
        .into_iter()
        .map(|part| match part {
            Part::Mismatch(start, end) => sub(start, end),
            Part::Matches(groups) => groups
                .into_iter()
                .map(|g| {
                    let offset = chars.at(g.start);
                    let length = char_count(&bytes[g.start..g.end]);
                    let mut obj = ValMap::with_capacity_and_hasher(4, Default::default());
                    obj.insert(key("offset"), Val::from(offset as isize));
                    obj.insert(key("length"), Val::from(length as isize));
                    obj.insert(key("string"), sub(g.start, g.end));
                    if let Some(name) = g.name {
                        obj.insert(key("name"), Val::from(name));
                    }
                    Val::obj(obj)
                })
                .collect(),
        })
        .collect())
}

fn as_str(v: &Val) -> Result<&str, Error<Val>> {
    std::str::from_utf8(v.try_as_utf8_bytes()?).map_err(Error::str)
}

fn key(k: &str) -> Val {
    Val::from(k.to_owned())
}

/// Characters in UTF-8 text: every byte that does not continue a multi-byte sequence.
fn char_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count()
}

/// Byte offset to character offset, incremental for the usual increasing offsets.
struct CharOffsets<'a> {
    bytes: &'a [u8],
    byte: usize,
    char: usize,
}

impl<'a> CharOffsets<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            byte: 0,
            char: 0,
        }
    }

    fn at(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.char = 0;
        }
        self.char += char_count(&self.bytes[self.byte..byte]);
        self.byte = byte;
        self.char
    }
}

#[cfg(test)]
mod tests {
    use super::super::jq::{JqOutput, JqProgram, from_val, to_val};
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{Compiler, Ctx, Vars};
    use serde_json::{Value, json};

    use super::*;

    /// The same program on jaq-std's own natives, as the reference.
    fn reference(code: &str, input: &Value) -> Result<Value, String> {
        let loader = Loader::new(
            jaq_core::defs()
                .chain(jaq_std::defs())
                .chain(jaq_json::defs()),
        );
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|_| "parse")?;
        let funs = jaq_core::funs::<Data>()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|_| "compile")?;
        let ctx = Ctx::<Data>::new(&filter.lut, Vars::new([]));
        let out: Result<Vec<_>, _> = filter.id.run((ctx, to_val(input))).collect();
        out.map(|vs| Value::Array(vs.iter().map(from_val).collect()))
            .map_err(|e| format!("{e:?}"))
    }

    fn ours(code: &str, input: &Value) -> Result<Value, String> {
        let prog = JqProgram::compile(&format!("[{code}]"))?;
        match prog.first(&to_val(input), &Val::obj(ValMap::default())) {
            JqOutput::Value(v) => Ok(from_val(&v)),
            JqOutput::Empty => Err("no output".into()),
            JqOutput::Error(e) => Err(e),
        }
    }

    #[test]
    fn cached_and_literal_regexes_give_exactly_jaqs_results() {
        let inputs = [
            json!("a b  c"),
            json!("my project/42"),
            json!("https://x/_release?releaseId=17"),
            json!("héllo wörld héllo"),
            json!(""),
            json!("aaa"),
            json!("Foo-Bar (x);y"),
        ];
        let programs = [
            r#"gsub(" "; "")"#,
            r#"sub(" "; "_")"#,
            r#"gsub("_release?releaseId="; "")"#,
            r#"gsub("_release\\?releaseId="; "")"#,
            r#"gsub("l"; "L")"#,
            r#"gsub("ö"; "o")"#,
            r#"gsub("[ ();]"; "")"#,
            r#"gsub("\\s+"; "-")"#,
            r#"gsub(""; "-")"#,
            r#"gsub("a"; "b"; "i")"#,
            r#"gsub("A"; "b"; "i")"#,
            r#"gsub("(?<w>[a-z]+)"; "<\(.w)>")"#,
            r#"test("^a")"#,
            r#"test("O"; "i")"#,
            r#"[match("l"; "g")]"#,
            r#"[match("(?<x>l)(o)?"; "g")]"#,
            r#"capture("(?<first>\\w+)")"#,
            r#"[scan("o")]"#,
            r#"split(" +"; null)"#,
            r#"gsub("a*"; "-"; "n")"#,
            r#"gsub("x"; "y"; "q")"#,
            r#"gsub("("; "")"#,
        ];
        for input in &inputs {
            for code in programs {
                let expected = reference(code, input);
                let got = ours(code, input);
                match (&expected, &got) {
                    (Ok(e), Ok(g)) => assert_eq!(g, e, "{code} on {input}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{code} on {input}: jaq {expected:?}, ours {got:?}"),
                }
            }
        }
    }

    #[test]
    fn non_string_input_is_an_error() {
        assert!(ours(r#"gsub(" "; "")"#, &json!(42)).is_err());
        assert!(ours(r#"test(1)"#, &json!("a")).is_err());
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    #[test]
    fn literal_sub_calls_are_rewritten_and_everything_else_is_left_alone() {
        let cases = [
            (
                r#".id | gsub(" "; "")"#,
                r#".id | _ado_sync_gsub_literal(" "; "")"#,
            ),
            (
                r#".a|sub("x";"y")|gsub( "a b" ; "-" )"#,
                r#".a|_ado_sync_sub_literal("x";"y")|_ado_sync_gsub_literal( "a b" ; "-" )"#,
            ),
            (
                r#"gsub("_apis/projects/"; "")"#,
                r#"_ado_sync_gsub_literal("_apis/projects/"; "")"#,
            ),
            (
                r#"gsub("_release?releaseId="; "")"#,
                r#"gsub("_release?releaseId="; "")"#,
            ),
            (r#"gsub("[ ();]"; "")"#, r#"gsub("[ ();]"; "")"#),
            (r#"gsub(" "; .x)"#, r#"gsub(" "; .x)"#),
            (r#"gsub(" "; ""; "g")"#, r#"gsub(" "; ""; "g")"#),
            (r#"gsub(""; "-")"#, r#"gsub(""; "-")"#),
            (r#""gsub(\" \"; \"\")""#, r#""gsub(\" \"; \"\")""#),
            (
                r#"def gsub(a; b): 1; gsub(" "; "")"#,
                r#"def gsub(a; b): 1; gsub(" "; "")"#,
            ),
            (r#""\(.a)" | gsub(" "; "")"#, r#""\(.a)" | gsub(" "; "")"#),
            (r#".mysub("a"; "b")"#, r#".mysub("a"; "b")"#),
            // Found by scripts/fuzz.sh: characters of several bytes outside a string literal.
            (
                ".name\u{a0}| gsub(\" \"; \"\") # café",
                ".name\u{a0}| _ado_sync_gsub_literal(\" \"; \"\") # café",
            ),
            (
                ".__p\u{fffd}oject.id | sub(\"a\"; \"b\")",
                ".__p\u{fffd}oject.id | _ado_sync_sub_literal(\"a\"; \"b\")",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(rewrite_literal_subs(input), expected, "{input}");
        }
    }
}
