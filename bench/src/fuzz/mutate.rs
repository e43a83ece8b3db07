//! A seeded, structure-aware mutator: JSON values (deliveries, and mapping files, which are YAML of JSON
//! values) changed node by node, then sometimes byte by byte. Every case is built from its own seed
//! alone, so a seed printed with a failure reproduces it exactly.

use fastrand::Rng;
use serde_json::{Map, Number, Value};

/// Keys worth inserting: the ones the code under test looks for.
pub struct Vocabulary {
    pub keys: &'static [&'static str],
    /// Whole strings that mean something to the code (event types, kinds, jq expressions).
    pub words: &'static [&'static str],
    /// Fragments spliced into strings (jq operators, path characters).
    pub fragments: &'static [&'static str],
}

/// Strings that are hostile as ids or awkward as text.
const NASTY: &[&str] = &[
    "",
    " ",
    "..",
    "../",
    "../../_apis/projects?",
    "?",
    "#",
    "%2F",
    "%00",
    "/",
    "\\",
    "a b",
    "\u{0}",
    "\u{7f}",
    "\u{202e}",
    "\u{fffd}",
    "\u{feff}",
    "é",
    "e\u{301}",
    "日本語",
    "🦀",
    "٧",
    "0",
    "-1",
    "+5",
    "5.0",
    "1e3",
    "18446744073709551616",
    " 7 ",
    "00000000-0000-0000-0000-000000000000",
    "BE9B3917-87E6-42A4-A549-2BC06A7A878F",
    "{be9b3917-87e6-42a4-a549-2bc06a7a878f}",
    "be9b391787e642a4a5492bc06a7a878f",
    "278d5cd2-584d-4b63-824a-2ba458937249/../x",
    "refs/heads/main",
    "null",
    "true",
    "{}",
    "[]",
];

/// One JSON Pointer per node of `v` (the root is `""`).
fn pointers(v: &Value, here: &mut String, out: &mut Vec<String>) {
    out.push(here.clone());
    let len = here.len();
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                here.push('/');
                here.push_str(&k.replace('~', "~0").replace('/', "~1"));
                pointers(child, here, out);
                here.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push('/');
                here.push_str(&i.to_string());
                pointers(child, here, out);
                here.truncate(len);
            }
        }
        _ => {}
    }
}

fn all_pointers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    pointers(v, &mut String::new(), &mut out);
    out
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

fn random_number(rng: &mut Rng) -> Value {
    match rng.u8(..8) {
        0 => Value::from(0),
        1 => Value::from(-1),
        2 => Value::from(u64::MAX),
        3 => Value::from(i64::MIN),
        4 => Number::from_f64(rng.f64() * 1e6).map_or(Value::Null, Value::Number),
        5 => Number::from_f64(1e300).map_or(Value::Null, Value::Number),
        6 => Value::from(rng.u64(1..100)),
        _ => Value::from(rng.u32(..)),
    }
}

fn random_string(rng: &mut Rng, vocab: &Vocabulary) -> String {
    match rng.u8(..10) {
        0 => {
            // Huge, rarely: the size limits and the snapshot trimming.
            let unit = pick(rng, &["x", "é", "🦀", "\\", "\""]);
            unit.repeat(rng.usize(1_000..40_000))
        }
        1 | 2 => (*pick(rng, vocab.words)).to_owned(),
        3 => {
            let mut s = String::new();
            for _ in 0..rng.usize(1..6) {
                s.push_str(pick::<&str>(rng, vocab.fragments));
            }
            s
        }
        4 => (0..rng.usize(0..20)).map(|_| rng.char(..)).collect(),
        _ => (*pick(rng, NASTY)).to_owned(),
    }
}

fn random_value(rng: &mut Rng, vocab: &Vocabulary, depth: u32) -> Value {
    match rng.u8(..8) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => random_number(rng),
        3 | 4 => Value::String(random_string(rng, vocab)),
        5 if depth < 4 => {
            let mut map = Map::new();
            for _ in 0..rng.usize(0..4) {
                map.insert(
                    (*pick(rng, vocab.keys)).to_owned(),
                    random_value(rng, vocab, depth + 1),
                );
            }
            Value::Object(map)
        }
        6 if depth < 4 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, vocab, depth + 1))
                .collect(),
        ),
        _ => Value::from(rng.u64(1..1_000)),
    }
}

/// The same node as another JSON type: strings↔numbers↔null↔objects↔arrays.
fn swap_type(rng: &mut Rng, v: &Value, vocab: &Vocabulary) -> Value {
    match v {
        Value::String(s) => match rng.u8(..5) {
            0 => s
                .trim()
                .parse::<i64>()
                .map_or_else(|_| random_number(rng), Value::from),
            1 => Value::Null,
            2 => serde_json::json!({ "id": s }),
            3 => Value::Array(vec![Value::String(s.clone())]),
            _ => Value::Bool(!s.is_empty()),
        },
        Value::Number(n) => match rng.u8(..4) {
            0 => Value::String(n.to_string()),
            1 => Value::Null,
            2 => serde_json::json!({ "id": n }),
            _ => Value::String(format!(" {n}x")),
        },
        Value::Null | Value::Bool(_) => random_value(rng, vocab, 0),
        Value::Object(map) => match rng.u8(..3) {
            0 => Value::Array(map.values().cloned().collect()),
            1 => Value::String(v.to_string()),
            _ => Value::Null,
        },
        Value::Array(items) => match rng.u8(..3) {
            0 => items.first().cloned().unwrap_or(Value::Null),
            1 => Value::Object(Map::new()),
            _ => Value::String(v.to_string()),
        },
    }
}

/// A string edited in place: cut, spliced, repeated, or one character changed.
fn edit_string(rng: &mut Rng, s: &str, vocab: &Vocabulary) -> String {
    let chars: Vec<char> = s.chars().collect();
    let at = rng.usize(..=chars.len());
    let (head, tail): (String, String) =
        (chars[..at].iter().collect(), chars[at..].iter().collect());
    match rng.u8(..6) {
        0 => head,
        1 => format!("{head}{}{tail}", pick(rng, vocab.fragments)),
        2 => format!("{head}{}{tail}", pick(rng, NASTY)),
        3 => {
            // Nesting: a parser's recursion, within what a person could write.
            let depth = rng.usize(1..200);
            format!("{}{s}{}", "(".repeat(depth), ")".repeat(depth))
        }
        4 => s.repeat(rng.usize(2..5)),
        _ => format!(
            "{head}{}{}",
            rng.char(..),
            tail.chars().skip(1).collect::<String>()
        ),
    }
}

/// Applies one structural mutation to `root`.
pub fn mutate_value(rng: &mut Rng, root: &mut Value, vocab: &Vocabulary) {
    let ptrs = all_pointers(root);
    let target = pick(rng, &ptrs).clone();
    match rng.u8(..10) {
        // Another type, or a fresh value.
        0 | 1 => {
            if let Some(node) = root.pointer_mut(&target) {
                *node = swap_type(rng, node, vocab);
            }
        }
        2 => {
            if let Some(node) = root.pointer_mut(&target) {
                *node = random_value(rng, vocab, 0);
            }
        }
        // A string edited, or replaced by a nasty or huge one.
        3 | 4 => {
            let strings: Vec<&String> = ptrs
                .iter()
                .filter(|p| root.pointer(p).is_some_and(Value::is_string))
                .collect();
            let Some(p) = (!strings.is_empty()).then(|| (*pick(rng, &strings)).clone()) else {
                return;
            };
            if let Some(node) = root.pointer_mut(&p) {
                let old = node.as_str().unwrap_or_default().to_owned();
                *node = Value::String(if rng.bool() {
                    edit_string(rng, &old, vocab)
                } else {
                    random_string(rng, vocab)
                });
            }
        }
        // A key removed.
        5 => {
            let objects: Vec<&String> = ptrs
                .iter()
                .filter(|p| {
                    root.pointer(p)
                        .and_then(Value::as_object)
                        .is_some_and(|m| !m.is_empty())
                })
                .collect();
            let Some(p) = (!objects.is_empty()).then(|| (*pick(rng, &objects)).clone()) else {
                return;
            };
            if let Some(Value::Object(map)) = root.pointer_mut(&p) {
                let keys: Vec<String> = map.keys().cloned().collect();
                map.remove(pick(rng, &keys));
            }
        }
        // A key the code looks for, added anywhere.
        6 => {
            let value = random_value(rng, vocab, 0);
            let key = (*pick(rng, vocab.keys)).to_owned();
            if let Some(Value::Object(map)) = root.pointer_mut(&target) {
                map.insert(key, value);
            }
        }
        // Two nodes swapped, or one copied over another.
        7 | 8 => {
            let other = pick(rng, &ptrs).clone();
            let Some(copy) = root.pointer(&other).cloned() else {
                return;
            };
            // Copying a node into itself nests it once more; bound the growth.
            if copy.to_string().len() > 200_000 {
                return;
            }
            if let Some(node) = root.pointer_mut(&target) {
                *node = copy;
            }
        }
        // Wrapped in an array or an object.
        _ => {
            if let Some(node) = root.pointer_mut(&target) {
                let inner = node.take();
                *node = if rng.bool() {
                    Value::Array(vec![inner])
                } else {
                    serde_json::json!({ "id": inner })
                };
            }
        }
    }
}

/// Byte-level damage: flips, truncation, insertion, deletion, duplication.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        bytes.push(rng.u8(..));
        return;
    }
    let at = rng.usize(..bytes.len());
    match rng.u8(..6) {
        0 => {
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..bytes.len());
                bytes[i] ^= 1 << rng.u8(..8);
            }
        }
        1 => bytes.truncate(at),
        2 => {
            let ins: Vec<u8> = (0..rng.usize(1..8))
                .map(|_| *pick(rng, &b"{}[]\",:\\ \n\t0-.eE\x00\xff"[..]))
                .collect();
            bytes.splice(at..at, ins);
        }
        3 => {
            let end = rng.usize(at..=bytes.len().min(at + 64));
            bytes.drain(at..end);
        }
        4 => {
            let end = rng.usize(at..=bytes.len().min(at + 256));
            let chunk = bytes[at..end].to_vec();
            bytes.splice(at..at, chunk);
        }
        _ => bytes[at] = rng.u8(..),
    }
}

/// SplitMix64: spreads a run seed and a case number into independent case seeds.
pub fn case_seed(run_seed: u64, case: u64) -> u64 {
    let mut z = run_seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: Vocabulary = Vocabulary {
        keys: &["id"],
        words: &["w"],
        fragments: &["|"],
    };

    #[test]
    fn a_case_seed_reproduces_the_same_mutation() {
        let base = serde_json::json!({"id": "a", "resource": {"id": 5, "list": [1, "x", null]}});
        let run = |seed| {
            let mut rng = Rng::with_seed(seed);
            let mut v = base.clone();
            for _ in 0..4 {
                mutate_value(&mut rng, &mut v, &VOCAB);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap();
            mutate_bytes(&mut rng, &mut bytes);
            bytes
        };
        for case in 0..200 {
            let seed = case_seed(7, case);
            assert_eq!(run(seed), run(seed));
        }
        assert_ne!(case_seed(7, 1), case_seed(7, 2));
        assert_ne!(case_seed(7, 1), case_seed(8, 1));
    }

    #[test]
    fn mutations_change_the_document_most_of_the_time() {
        let base = serde_json::json!({"id": "a", "resource": {"id": 5, "name": "n"}});
        let changed = (0..500)
            .filter(|&case| {
                let mut rng = Rng::with_seed(case_seed(1, case));
                let mut v = base.clone();
                mutate_value(&mut rng, &mut v, &VOCAB);
                v != base
            })
            .count();
        assert!(changed > 350, "{changed} of 500");
    }
}
