//! jq compilation and evaluation on jaq, and the conversions between `serde_json::Value` and jaq's `Val`.
//!
//! Programs are compiled once. Evaluation takes the first output only, like Ocean, and never lets a
//! user's program stop the process: jaq's `unwrap_valr` exits on `halt`, so it is not used here.

use std::sync::OnceLock;

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Bind, Compiler, Ctx, Native, Vars, data::JustLut};
use jaq_json::{Map as ValMap, Num, Val};
use serde_json::{Map, Number, Value};

use super::fast::FastProgram;
use super::prelude;
use super::quotes::rewrite_single_quotes;
use super::regex_cache;

type Data = JustLut<Val>;
type Filter = jaq_core::Filter<Data>;

/// The global variable standing in for libjq's `$ENV`, which jaq does not define.
const ENV_VAR: &str = "$ENV";

/// One compiled jq pattern. Holds no jaq values, so it is `Send + Sync` and can live in a shared config.
pub(crate) struct JqProgram {
    /// The pattern as the user wrote it (before quote rewriting), for warnings.
    source: String,
    /// The pattern as jaq compiles it (quotes and literal regexes rewritten).
    code: String,
    /// Compiled at once unless `fast` handles the pattern; then only when an input first needs jaq (an
    /// odd input: a key on a non-object, `tostring` of a float), since most never do.
    filter: OnceLock<Box<Result<Filter, String>>>,
    /// Whether the pattern can observe the environment; lets evaluation skip building it.
    uses_env: bool,
    /// A direct evaluator when the pattern has one of the commonest simple shapes.
    fast: Option<Box<FastProgram>>,
}

impl std::fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JqProgram")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Outcome of running a program: its first output, none, or a runtime error message.
#[derive(Debug)]
pub(crate) enum JqOutput {
    Value(Val),
    Empty,
    Error(String),
}

impl JqProgram {
    /// Rewrites single quotes, then compiles with the jaq definitions the pattern can reach. `env` is
    /// redefined as `$ENV`, so both are whatever the caller passes at run time.
    pub(crate) fn compile(source: &str) -> Result<Self, String> {
        let code = rewrite_single_quotes(source);
        let fast = FastProgram::parse(&code).map(Box::new);
        let program = Self::new(source, &code, fast);
        if program.fast.is_none() {
            program.filter()?;
        }
        Ok(program)
    }

    /// jaq only, compiled at once; the reference the direct evaluator is tested against.
    #[cfg(test)]
    pub(crate) fn compile_without_fast(source: &str) -> Result<Self, String> {
        let program = Self::new(source, &rewrite_single_quotes(source), None);
        program.filter()?;
        Ok(program)
    }

    fn new(source: &str, code: &str, fast: Option<Box<FastProgram>>) -> Self {
        let code = regex_cache::rewrite_literal_subs(code).into_owned();
        Self {
            source: source.to_owned(),
            uses_env: code.to_ascii_lowercase().contains("env"),
            code,
            filter: OnceLock::new(),
            fast,
        }
    }

    fn filter(&self) -> Result<&Filter, String> {
        self.filter
            .get_or_init(|| Box::new(compile_filter(&self.code)))
            .as_ref()
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn uses_env(&self) -> bool {
        self.uses_env
    }

    /// The direct evaluator on raw JSON; `None` when the program has no direct form or the input
    /// needs jaq.
    /// Adds the input paths this program reads to `p`; `false` when that is not known (a program
    /// for jaq may read anything).
    pub(crate) fn add_paths(&self, p: &mut super::projection::Projection) -> bool {
        match &self.fast {
            Some(fast) => {
                fast.add_paths(p);
                true
            }
            None => false,
        }
    }

    pub(crate) fn fast_json(&self, input: &Value) -> Option<Value> {
        self.fast.as_ref()?.eval_json(input)
    }

    /// Runs the program on `input` and returns its first output. Later outputs are never computed.
    pub(crate) fn first(&self, input: &Val, env: &Val) -> JqOutput {
        if let Some(v) = self.fast.as_ref().and_then(|f| f.eval(input)) {
            return JqOutput::Value(v);
        }
        let filter = match self.filter() {
            Ok(filter) => filter,
            Err(message) => return JqOutput::Error(message),
        };
        let ctx = Ctx::<Data>::new(&filter.lut, Vars::new([env.clone()]));
        match filter.id.run((ctx, input.clone())).next() {
            None => JqOutput::Empty,
            Some(Ok(v)) => JqOutput::Value(v),
            Some(Err(exn)) => JqOutput::Error(match exn.get_err() {
                Ok(err) => err.to_string(),
                Err(_) => "halt is not supported in mappings".to_owned(),
            }),
        }
    }
}

fn compile_filter(code: &str) -> Result<Filter, String> {
    compile_with(code, prelude::defs_for(code))
}

fn compile_with(
    code: &str,
    defs: impl IntoIterator<Item = load::parse::Def<&'static str>>,
) -> Result<Filter, String> {
    let arena = Arena::default();
    let loader = Loader::new(defs);
    let modules = loader
        .load(&arena, File { code, path: () })
        .map_err(|errs| load_errors(&errs))?;
    Compiler::default()
        .with_funs(natives())
        .with_global_vars([ENV_VAR])
        .compile(modules)
        .map_err(|errs| compile_errors(&errs))
}

/// jaq's natives, minus `env` (which would read the process environment regardless of the options)
/// and with the regex natives replaced by ones that compile each pattern once.
fn natives() -> impl Iterator<Item = (&'static str, Box<[Bind]>, Native<Data>)> {
    let replaced = |name: &str| name == "env" || regex_cache::REPLACES.contains(&name);
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(move |(name, _, _)| !replaced(name))
        .chain(regex_cache::funs())
}

fn load_errors(errs: &load::Errors<&str, ()>) -> String {
    let mut msgs = Vec::new();
    for (_file, err) in errs {
        match err {
            load::Error::Io(es) => msgs.extend(es.iter().map(|(path, e)| format!("{path}: {e}"))),
            load::Error::Lex(es) => msgs.extend(es.iter().map(|(expect, found)| {
                format!("expected {} near `{}`", expect.as_str(), snippet(found))
            })),
            load::Error::Parse(es) => msgs.extend(es.iter().map(|(expect, found)| {
                format!("expected {} near `{}`", expect.as_str(), snippet(found))
            })),
        }
    }
    msgs.join("; ")
}

fn compile_errors(errs: &jaq_core::compile::Errors<&str, ()>) -> String {
    let msgs: Vec<String> = errs
        .iter()
        .flat_map(|(_file, es)| es.iter())
        .map(|(name, undefined)| format!("undefined {} `{name}`", undefined.as_str()))
        .collect();
    msgs.join("; ")
}

/// The start of the unparsed rest of a pattern: enough to locate the problem in a log line.
fn snippet(rest: &str) -> &str {
    let end = rest.char_indices().nth(20).map_or(rest.len(), |(i, _)| i);
    if rest.is_empty() {
        "end of input"
    } else {
        &rest[..end]
    }
}

/// Converts once per item; object key order is kept as serde_json gives it.
pub(crate) fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => number_to_val(n),
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(to_val).collect(),
        Value::Object(map) => {
            let mut out = ValMap::with_capacity_and_hasher(map.len(), Default::default());
            for (k, v) in map {
                out.insert(Val::from(k.clone()), to_val(v));
            }
            Val::obj(out)
        }
    }
}

fn number_to_val(n: &Number) -> Val {
    if let Some(i) = n.as_i64() {
        Val::Num(Num::from_integral(i))
    } else if let Some(u) = n.as_u64() {
        Val::Num(Num::from_integral(u))
    } else {
        Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN)))
    }
}

/// Converts a jaq output directly (no print and re-parse). Non-finite floats become null, as JSON
/// cannot carry them; non-string object keys (jaq allows them) use their JSON text.
pub(crate) fn from_val(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect()),
        Val::Obj(map) => {
            let mut out = Map::new();
            for (k, v) in map.iter() {
                out.insert(key_string(k), from_val(v));
            }
            Value::Object(out)
        }
    }
}

fn key_string(k: &Val) -> String {
    match k {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

fn num_to_json(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Num::BigInt(i) => parse_number(&i.to_string()),
        Num::Dec(s) => parse_number(s),
    }
}

fn parse_number(text: &str) -> Value {
    text.parse::<Number>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64))
        .map_or(Value::Null, Value::Number)
}

/// The value `env` and `$ENV` evaluate to: the process environment when allowed, else `{}`.
pub(crate) fn env_object(allow_env: bool) -> Map<String, Value> {
    if !allow_env {
        return Map::new();
    }
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                Value::String(v.to_string_lossy().into_owned()),
            )
        })
        .collect()
}

/// Python truthiness, which Ocean uses to decide whether an entity is kept.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(code: &str, input: Value) -> Result<Value, String> {
        let prog = JqProgram::compile(code)?;
        let env = Val::obj(ValMap::default());
        match prog.first(&to_val(&input), &env) {
            JqOutput::Value(v) => Ok(from_val(&v)),
            JqOutput::Empty => Err("no output".into()),
            JqOutput::Error(e) => Err(e),
        }
    }

    #[test]
    fn values_round_trip_through_jaq_unchanged() {
        let v =
            json!({"a": [1, -2, 1.5, 18446744073709551615u64, true, null, "s"], "b": {"c": {}}});
        assert_eq!(run(".", v.clone()), Ok(v));
    }

    #[test]
    fn literals_and_arithmetic_convert_to_json_numbers() {
        assert_eq!(run("1.5", json!(null)), Ok(json!(1.5)));
        assert_eq!(run("100000000000000000000", json!(null)), Ok(json!(1e20)));
        assert_eq!(run(".a / 2", json!({"a": 3})), Ok(json!(1.5)));
        assert_eq!(run("-1", json!(null)), Ok(json!(-1)));
    }

    #[test]
    fn the_default_mappings_features_behave_like_libjq() {
        let item = json!({
            "id": "a b c", "n": 42, "__project": {"id": "my project"},
            "fields": {"System.Title": "T", "Microsoft.VSTS.Scheduling.Effort": 5},
            "__includedFiles": {"README.md": "hi"},
            "_links": {"web": {"href": "https://x/_release?releaseId=17"}},
            "isEnabled": true, "isBlocking": false,
            "type": {"displayName": "Minimum number of reviewers"}
        });
        let cases = [
            (r#".id | gsub(" "; "")"#, json!("abc")),
            (
                r#".__project.id + "/" + (.n | tostring) | gsub(" "; "")"#,
                json!("myproject/42"),
            ),
            (r#".fields."System.Title""#, json!("T")),
            (
                r#".fields."Microsoft.VSTS.Scheduling.Effort" // -1"#,
                json!(5),
            ),
            (r#".fields.missing // -1"#, json!(-1)),
            (r#".fields.missing // ''"#, json!("")),
            (r#".__includedFiles["README.md"]"#, json!("hi")),
            (".isEnabled and .isBlocking", json!(false)),
            (
                r#".type.displayName=="Minimum number of reviewers""#,
                json!(true),
            ),
            // `?` is a regex quantifier: the pattern does not match the literal text, as in libjq.
            (
                r#"._links.web.href | gsub("_release?releaseId="; "")"#,
                json!("https://x/_release?releaseId=17"),
            ),
            (
                r#"._links.web.href | gsub("_release\\?releaseId="; "")"#,
                json!("https://x/17"),
            ),
            (".n | tostring", json!("42")),
            ("{a: 1} | tostring", json!("{\"a\":1}")),
            (r#"[1,2,3] | join(",")"#, json!("1,2,3")),
        ];
        for (code, expected) in cases {
            assert_eq!(run(code, item.clone()), Ok(expected), "{code}");
        }
    }

    #[test]
    fn compiling_only_the_definitions_a_program_reaches_changes_no_result() {
        let input = json!({
            "a": [3, 1, 2], "s": "Hello World", "o": {"k": "v", "n": null}, "n": 42.5,
            "d": "2024-01-02T03:04:05Z", "t": 1700000000
        });
        let programs = [
            ".a | map(. * 2) | add",
            ".a | sort | reverse | first",
            ".a | min_by(.) , max_by(.)",
            "[.a[] | select(. > 1)] | length",
            ".o | to_entries | map(.key) | join(\",\")",
            ".o | with_entries(.value |= tostring)",
            ".s | ascii_downcase | split(\" \") | last",
            ".s | test(\"wor\"; \"i\")",
            ".s | sub(\"(?<x>o)\"; \"0\\(.x)\")",
            ".s | [splits(\" \")] | length",
            ".s | ltrimstr(\"Hel\") | rtrimstr(\"ld\")",
            "[paths] | length",
            "[range(0; 5)] | until(length < 3; .[1:])",
            "[limit(2; .a[])]",
            "walk(if type == \"number\" then . + 1 else . end) | .a",
            ".a | any(. > 2), all(. > 0)",
            "[.a[] | tostring] | @csv",
            ".s | @base64 | @base64d",
            ".d | fromdateiso8601 | todate",
            ".t | strftime(\"%Y\")",
            ".o | del(.n) | keys",
            "getpath([\"o\", \"k\"]) // \"none\"",
            ".a | group_by(. % 2) | map(length)",
            ".a | unique_by(. % 2) | length",
            ".a | indices(1)",
            "tojson | fromjson | .s",
            ".o | has(\"k\"), (.k | ascii_upcase)",
            "try error(\"x\") catch .",
            "[.a[] as $x | $x + 1] | @json",
            "reduce .a[] as $x (0; . + $x)",
            "[foreach .a[] as $x (0; . + $x)]",
            "def f(g): [.a[] | g]; f(. + 1)",
            ".n | floor, ceil, (. | tostring)",
            "[.a[] | tojson] | join(\"-\")",
            "env | type",
            "$ENV | length",
            ".s | ascii | type",
        ];
        let env = Val::obj(ValMap::default());
        let val = to_val(&input);
        for code in programs {
            let whole = compile_with(code, prelude::all_defs());
            let pruned = compile_filter(code);
            let outputs = |f: &Filter| -> Vec<String> {
                let ctx = Ctx::<Data>::new(&f.lut, Vars::new([env.clone()]));
                f.id.run((ctx, val.clone()))
                    .map(|r| match r {
                        Ok(v) => from_val(&v).to_string(),
                        Err(e) => format!("error {:?}", e.get_err().map(|e| e.to_string())),
                    })
                    .collect()
            };
            match (whole, pruned) {
                (Ok(whole), Ok(pruned)) => {
                    assert_eq!(outputs(&pruned), outputs(&whole), "{code}");
                }
                (Err(whole), Err(pruned)) => assert_eq!(pruned, whole, "{code}"),
                (whole, pruned) => panic!(
                    "{code}: whole library {:?}, pruned {:?}",
                    whole.err(),
                    pruned.err()
                ),
            }
        }
    }

    #[test]
    fn gsub_on_a_number_is_a_runtime_error() {
        assert!(run(r#".n | gsub(" "; "")"#, json!({"n": 42})).is_err());
    }

    #[test]
    fn halt_does_not_stop_the_process() {
        let err = run("halt", json!(null)).unwrap_err();
        assert!(err.contains("halt"), "{err}");
    }

    #[test]
    fn compile_errors_are_described() {
        let err = JqProgram::compile(".a | nosuchfn").unwrap_err();
        assert!(err.contains("nosuchfn"), "{err}");
        assert!(JqProgram::compile(".a |").is_err());
        assert!(JqProgram::compile("and").is_err());
    }

    #[test]
    fn python_truthiness() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for t in [
            json!(true),
            json!(1),
            json!("0"),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(truthy(&t), "{t}");
        }
    }
}
