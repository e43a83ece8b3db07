//! jaq's jq-defined library (core, std and json definitions, plus our `env`), parsed once per process,
//! and the part of it one program needs.
//!
//! jaq compiles every definition it is given, and the library has about 130 of them: compiling a
//! mapping field with the whole library costs ~0.4 ms, so the shipped 29-kind mapping took ~130 ms
//! at cold start. A field calls a handful of definitions at most; compiling only those (and what they
//! call, transitively) gives the same program for a fraction of the work.

use std::collections::HashSet;
use std::sync::LazyLock;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::path::Part;

type Definition = Def<&'static str>;

struct Prelude {
    defs: Vec<Definition>,
    /// `calls[i]`: the names definition `i` calls, its own local definitions included.
    calls: Vec<HashSet<&'static str>>,
}

static PRELUDE: LazyLock<Prelude> = LazyLock::new(|| {
    let env = jaq_core::load::parse("def env: $ENV;", |p| p.defs()).unwrap_or_default();
    let defs: Vec<Definition> = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(env)
        .collect();
    let calls = defs
        .iter()
        .map(|def| {
            let mut names = HashSet::new();
            calls_in(&def.body, &mut names);
            names
        })
        .collect();
    Prelude { defs, calls }
});

/// The library definitions `code` can reach, in library order (a definition only sees earlier ones).
///
/// The names `code` may call are over-approximated by every identifier-like word in its text (a word
/// inside a string literal only keeps a definition more), so no parse of `code` is needed here.
pub(crate) fn defs_for(code: &str) -> Vec<Definition> {
    let prelude = &*PRELUDE;
    let mut wanted: HashSet<&str> = words(code).collect();
    let mut keep = vec![false; prelude.defs.len()];
    // A definition calls only earlier ones (or itself), so one backward pass closes the set.
    for (i, def) in prelude.defs.iter().enumerate().rev() {
        if wanted.contains(def.name) {
            keep[i] = true;
            wanted.extend(prelude.calls[i].iter().copied());
        }
    }
    prelude
        .defs
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(def, _)| def.clone())
        .collect()
}

/// The whole library, for tests that check pruning changes nothing.
#[cfg(test)]
pub(crate) fn all_defs() -> Vec<Definition> {
    PRELUDE.defs.clone()
}

/// Every maximal run of identifier characters, with a leading `@` kept (format filters such as `@csv`
/// are calls too).
fn words(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '@'))
        .filter(|w| !w.is_empty())
}

fn calls_in(t: &Term<&'static str>, out: &mut HashSet<&'static str>) {
    match t {
        Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Str(format, parts) => {
            out.extend(format.iter().copied());
            for part in parts {
                if let StrPart::Term(t) = part {
                    calls_in(t, out);
                }
            }
        }
        Term::Arr(t) => match t {
            Some(t) => calls_in(t, out),
            None => {
                out.insert("!empty");
            }
        },
        Term::Obj(entries) => {
            for (k, v) in entries {
                calls_in(k, out);
                if let Some(v) = v {
                    calls_in(v, out);
                }
            }
        }
        Term::Neg(t) | Term::Label(_, t) => calls_in(t, out),
        Term::BinOp(l, op, r) => {
            if let BinaryOp::Pipe(Some(p)) = op {
                pattern_calls(p, out);
            }
            calls_in(l, out);
            calls_in(r, out);
        }
        Term::Fold(_, xs, p, args) => {
            calls_in(xs, out);
            pattern_calls(p, out);
            args.iter().for_each(|a| calls_in(a, out));
        }
        Term::TryCatch(t, catch) => {
            calls_in(t, out);
            match catch {
                Some(c) => calls_in(c, out),
                None => {
                    out.insert("!empty");
                }
            }
        }
        Term::IfThenElse(branches, otherwise) => {
            for (cond, then) in branches {
                calls_in(cond, out);
                calls_in(then, out);
            }
            if let Some(t) = otherwise {
                calls_in(t, out);
            }
        }
        Term::Def(defs, t) => {
            defs.iter().for_each(|d| calls_in(&d.body, out));
            calls_in(t, out);
        }
        Term::Call(name, args) => {
            out.insert(name);
            args.iter().for_each(|a| calls_in(a, out));
        }
        Term::Path(t, path) => {
            calls_in(t, out);
            for (part, _) in &path.0 {
                match part {
                    Part::Index(i) => calls_in(i, out),
                    Part::Range(from, upto) => {
                        from.iter().chain(upto).for_each(|b| calls_in(b, out));
                    }
                }
            }
        }
    }
}

fn pattern_calls(p: &Pattern<&'static str>, out: &mut HashSet<&'static str>) {
    match p {
        Pattern::Var(_) => {}
        Pattern::Arr(ps) => ps.iter().for_each(|p| pattern_calls(p, out)),
        Pattern::Obj(entries) => {
            for (k, p) in entries {
                calls_in(k, out);
                pattern_calls(p, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(code: &str) -> Vec<&'static str> {
        defs_for(code).into_iter().map(|d| d.name).collect()
    }

    #[test]
    fn a_plain_path_needs_no_library_definition() {
        assert!(
            kept(".fields.title").is_empty(),
            "{:?}",
            kept(".fields.title")
        );
    }

    #[test]
    fn a_call_keeps_its_definition_and_what_it_calls() {
        let names = kept(".a | map(.b) | join(\",\")");
        assert!(names.contains(&"map"), "{names:?}");
        assert!(names.contains(&"join"), "{names:?}");
        // Whatever the kept definitions call is kept too.
        let all = &*PRELUDE;
        for (i, def) in all.defs.iter().enumerate() {
            if names.contains(&def.name) {
                for called in &all.calls[i] {
                    let defined = all.defs.iter().any(|d| d.name == *called);
                    assert!(
                        !defined || names.contains(called),
                        "{} calls {called}",
                        def.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_library_is_much_larger_than_what_a_field_needs() {
        assert!(PRELUDE.defs.len() > 100, "{}", PRELUDE.defs.len());
        assert!(kept("env.HOME").contains(&"env"));
        assert!(kept(".a | tostring | ascii_downcase").len() < 20);
    }
}
