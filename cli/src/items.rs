//! `ado-sync items`: the raw items of one kind, enriched exactly as a resync lists them for the mapping
//! (`__project`, `__includedFiles`, …), as JSON Lines: what `ado-sync map` takes.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use shared::ado::AdoClient;
use shared::ado::kinds::{self, FetchContext, PageSink};
use shared::aws::AwsIdentity;
use shared::config::{AdoSettings, Env, excluded_tags_from_lookup};
use shared::mapping::{CompiledConfig, CompiledResource};
use shared::tenant::{DEFAULT_MAPPING, compile_mapping};

pub(crate) struct Args<'a> {
    pub kind: &'a str,
    /// The mapping whose first block of `kind` gives the selector options; the shipped default when
    /// absent.
    pub mapping: Option<&'a Path>,
    pub project: Option<String>,
    pub limit: Option<usize>,
}

pub(crate) async fn run(args: Args<'_>) -> ExitCode {
    let (mapping, origin) = match args.mapping {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => (text, path.display().to_string()),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => (DEFAULT_MAPPING.to_owned(), "the default mapping".to_owned()),
    };
    let compiled = match compile_mapping(&mapping, &origin, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let resource = match block_of(&compiled, args.kind) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let env = match Env::load(AwsIdentity::DEFAULT_CHAIN).await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match AdoSettings::from_lookup(|k| env.get(k))
        .map_err(|e| e.to_string())
        .and_then(|s| AdoClient::from_settings(&s).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ctx = FetchContext::new(client, excluded_tags_from_lookup(|k| env.get(k)));
    if let Some(project) = args.project {
        ctx = ctx.only_project(project);
    }
    let Some(kind) = kinds::find(resource.kind()) else {
        unreachable!("a compiled mapping names known kinds only")
    };
    let (sink, mut pages) = PageSink::channel(4);
    let listing = async {
        let listed = kind.fetch(&ctx, &resource, &sink).await;
        drop(sink);
        listed
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let print = async move {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut written = 0usize;
        while written < limit
            && let Some(page) = pages.recv().await
        {
            for item in page.into_iter().take(limit - written) {
                let _ = writeln!(out, "{item}");
                written += 1;
            }
        }
        let _ = out.flush();
        // Dropping the receiver here ends the listing at its next page when the limit was reached.
        written
    };
    let (listed, written) = tokio::join!(listing, print);
    match listed {
        Ok(()) => ExitCode::SUCCESS,
        // The limit was reached: the listing was told to stop.
        Err(_) if written >= limit => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: listing {} failed after {written} items: {e}",
                args.kind
            );
            ExitCode::FAILURE
        }
    }
}

/// The first block of `kind` in the mapping; for a kind the mapping does not use, a bare block of it
/// (no options). An unknown kind is refused with the mapping's kinds and every known one.
fn block_of(
    compiled: &CompiledConfig,
    kind: &str,
) -> Result<std::sync::Arc<CompiledResource>, String> {
    if let Some(r) = compiled.resources().iter().find(|r| r.kind() == kind) {
        return Ok(std::sync::Arc::clone(r));
    }
    if kinds::find(kind).is_none() {
        return Err(format!(
            "unknown kind {kind:?}; the mapping's kinds: {}; every kind: {}",
            mapping_kinds(compiled),
            kinds::ALL
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let bare = format!(
        "resources:\n  - kind: {kind}\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n          identifier: .id\n          blueprint: '\"{kind}\"'\n"
    );
    compile_mapping(&bare, "a bare block", false)
        .map(|c| std::sync::Arc::clone(&c.resources()[0]))
        .map_err(|e| e.to_string())
}

/// The kinds a mapping's blocks use, in order, once each.
pub(crate) fn mapping_kinds(compiled: &CompiledConfig) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for r in compiled.resources() {
        if !seen.contains(&r.kind()) {
            seen.push(r.kind());
        }
    }
    seen.join(", ")
}
