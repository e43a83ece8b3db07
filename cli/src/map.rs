//! `ado-sync map`: preview a mapping on raw items, exactly as a resync would map them.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use serde_json::value::RawValue;
use shared::mapping::{ItemOutcome, Projection};
use shared::tenant::compile_mapping;

pub(crate) fn run(
    mapping: &Path,
    kind: &str,
    input: Option<&Path>,
    allow_env: bool,
    pretty: bool,
) -> ExitCode {
    let text = match std::fs::read_to_string(mapping) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", mapping.display());
            return ExitCode::from(2);
        }
    };
    let compiled = match compile_mapping(&text, &mapping.display().to_string(), allow_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let resources: Vec<_> = compiled
        .resources()
        .iter()
        .filter(|r| r.kind() == kind)
        .collect();
    if resources.is_empty() {
        eprintln!(
            "error: the mapping has no resource block of kind {kind:?}; its kinds: {}",
            crate::items::mapping_kinds(&compiled)
        );
        return ExitCode::from(2);
    }
    let text = match read_input(input) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut errors = 0usize;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // When every block reads only known paths, the rest of each item is skipped unbuilt.
    let projection = resources
        .iter()
        .map(|r| r.projection())
        .try_fold(Projection::default(), |mut all, p| {
            all.merge(&p?);
            Some(all)
        })
        .filter(|p| !p.is_whole());
    // Each item is mapped as it is parsed, by every block of the kind in turn: the parsed input is
    // never held whole.
    'items: for (n, item) in items(&text, projection.as_ref()).enumerate() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                eprintln!("error: item {n}: input is not JSON or JSON Lines: {e}");
                return ExitCode::from(2);
            }
        };
        for resource in &resources {
            for outcome in resource.map_item(&item, false) {
                match outcome {
                    ItemOutcome::Mapped { entity, warnings } => {
                        for w in warnings {
                            eprintln!(
                                "warning: resources[{}] item {n}: {} = null ({}: {})",
                                resource.index(),
                                w.field,
                                w.expression,
                                w.message
                            );
                        }
                        // Straight into the buffered output. A closed output (`| head`) ends the
                        // run: nobody reads the rest.
                        let written = if pretty {
                            serde_json::to_writer_pretty(&mut out, &entity)
                        } else {
                            serde_json::to_writer(&mut out, &entity)
                        };
                        if written.is_err() || out.write_all(b"\n").is_err() {
                            break 'items;
                        }
                    }
                    ItemOutcome::Filtered { .. } => eprintln!(
                        "info: resources[{}] item {n}: filtered out by the selector",
                        resource.index()
                    ),
                    ItemOutcome::Dropped { warnings } => {
                        eprintln!(
                            "info: resources[{}] item {n}: dropped (identifier or blueprint is empty)",
                            resource.index()
                        );
                        for w in warnings {
                            eprintln!(
                                "warning: resources[{}] item {n}: {} = null ({}: {})",
                                resource.index(),
                                w.field,
                                w.expression,
                                w.message
                            );
                        }
                    }
                    ItemOutcome::SelectorError { message } => {
                        errors += 1;
                        eprintln!(
                            "error: resources[{}] item {n}: selector: {message}",
                            resource.index()
                        );
                    }
                    ItemOutcome::ParentSkipped { message } => eprintln!(
                        "warning: resources[{}] item {n}: {message}",
                        resource.index()
                    ),
                }
            }
        }
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn read_input(input: Option<&Path>) -> Result<String, String> {
    match input {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(text)
        }
    }
}

/// The items of a JSON array, or of JSON Lines (any sequence of JSON values, such as one
/// pretty-printed object), parsed one at a time, through `projection` when given.
fn items<'t>(
    text: &'t str,
    projection: Option<&'t Projection>,
) -> Box<dyn Iterator<Item = serde_json::Result<Value>> + 't> {
    let parse = move |text: &str| match projection {
        Some(p) => p.parse(text),
        None => serde_json::from_str(text),
    };
    if text.trim_start().starts_with('[') {
        // An array is one value: its items are found first, then parsed one by one.
        return match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => Box::new(items.into_iter().map(move |raw| parse(raw.get()))),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
    }
    // JSON Lines are cut at newlines (much faster than finding each value's end by parsing); from the
    // first line that is not one whole value (a pretty-printed object, two values on a line), the
    // rest is read as a stream of values, which also reports any real error.
    let mut rest = text;
    let mut stream: Option<Box<dyn Iterator<Item = serde_json::Result<Value>> + 't>> = None;
    Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(values) = stream.as_mut() {
                return values.next();
            }
            let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
            if line.trim().is_empty() {
                if after.is_empty() {
                    return None;
                }
                rest = after;
                continue;
            }
            match parse(line) {
                Ok(value) => {
                    rest = after;
                    return Some(Ok(value));
                }
                Err(_) => {
                    stream = Some(Box::new(
                        serde_json::Deserializer::from_str(rest)
                            .into_iter::<&RawValue>()
                            .map(move |raw| parse(raw?.get())),
                    ));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn all(text: &str, projection: Option<&Projection>) -> Result<Vec<Value>, String> {
        items(text, projection)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lines_arrays_pretty_values_and_several_per_line_all_read_in_order() {
        let expected = vec![json!({"id": 1}), json!({"id": 2}), json!({"id": 3})];
        for text in [
            "{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": 3}\n",
            "{\"id\": 1}\r\n{\"id\": 2}\r\n{\"id\": 3}",
            "[{\"id\": 1}, {\"id\": 2},\n {\"id\": 3}]",
            "{\"id\": 1}\n{\n  \"id\": 2\n}\n{\"id\": 3}",
            "{\"id\": 1} {\"id\": 2}\n{\"id\": 3}",
        ] {
            assert_eq!(all(text, None).unwrap(), expected, "{text:?}");
        }
        assert_eq!(all("", None).unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn a_projection_keeps_only_what_the_mapping_reads_and_errors_still_surface() {
        let mut p = Projection::default();
        p.add(&["id".to_owned()]);
        assert_eq!(
            all("{\"id\": 1, \"big\": [1, 2]}\n{\"id\": 2}", Some(&p)).unwrap(),
            vec![json!({"id": 1}), json!({"id": 2})]
        );
        let e = all("{\"id\": 1}\n{\"id\": 2, \"x\": [1,}\n", Some(&p)).unwrap_err();
        assert!(e.contains("line"), "{e}");
        assert!(all("{\"id\": 1}\nnot json\n", None).is_err());
    }
}
