//! Fuzzing without nightly: seeded, structure-aware mutations of the sample deliveries (`events/ado`)
//! through the webhook's parse and classify, and of the mapping files (`shared/defaults`, `tests/data`)
//! through the mapping loader. Any panic is caught, counted and printed with the case seed that
//! reproduces it (`--replay`); the exit code is non-zero if there was one. Not part of CI's time budget:
//! run it with `scripts/fuzz.sh`.

mod mutate;

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use fastrand::Rng;
use serde_json::Value;
use shared::queue::ChangeMessage;
use shared::tenant::compile_mapping;
use shared::webhook::{EVENT_TYPES, classify, parse_delivery};

use std::sync::LazyLock;

use mutate::{Vocabulary, case_seed, mutate_bytes, mutate_value};

#[derive(Parser)]
#[command(
    name = "ado-sync-fuzz",
    about = "Mutated deliveries through the webhook's classification and mapping files through the loader; no panic allowed"
)]
struct Args {
    /// The run's seed; each case's seed derives from it and the case number.
    #[arg(long, default_value_t = 20_251_120)]
    seed: u64,
    /// Mutated deliveries through `parse_delivery` + `classify`.
    #[arg(long, default_value_t = 1_000_000)]
    deliveries: u64,
    /// Mutated mapping files through `compile_mapping`.
    #[arg(long, default_value_t = 100_000)]
    mappings: u64,
    /// Start at this case number (both targets), to resume or narrow down a crash.
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// Run one case again from the seed a failure printed, and print its input.
    #[arg(long, value_names = ["TARGET", "CASE_SEED"], num_args = 2)]
    replay: Option<Vec<String>>,
    /// The repository root (samples and mapping files are read from it).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Delivery,
    Mapping,
}

/// The event types come from the kind registry, so the fuzzer follows what the webhook queues.
static DELIVERY_VOCABULARY: LazyLock<Vocabulary> = LazyLock::new(|| Vocabulary {
    keys: &[
        "id",
        "eventType",
        "publisherId",
        "resource",
        "resourceContainers",
        "subscriptionId",
        "createdDate",
        "project",
        "projectId",
        "account",
        "collection",
        "baseUrl",
        "workItemId",
        "revision",
        "fields",
        "System.TeamProject",
        "System.AreaPath",
        "System.History",
        "repository",
        "repositoryId",
        "pullRequestId",
        "refUpdates",
        "name",
        "oldObjectId",
        "newObjectId",
        "definition",
        "run",
        "runId",
        "buildId",
        "pipeline",
        "pipelineId",
        "stage",
        "release",
        "releaseDefinition",
        "deployment",
        "environment",
        "releaseId",
        "definitionEnvironmentId",
        "alert",
        "alertId",
        "message",
    ],
    words: &EVENT_TYPES,
    fragments: &[
        "/", "..", "?", "#", "%2F", " ", "-", "0", "9", "é", "\\", "\"",
    ],
});

const MAPPING_VOCABULARY: Vocabulary = Vocabulary {
    keys: &[
        "resources",
        "kind",
        "selector",
        "query",
        "port",
        "entity",
        "mappings",
        "identifier",
        "title",
        "blueprint",
        "icon",
        "team",
        "properties",
        "relations",
        "itemsToParse",
        "deleteDependentEntities",
        "createMissingRelatedEntities",
        "enableMergeEntity",
        "entityDeletionThreshold",
        "wiql",
        "expand",
        "includeRepo",
        "includedFiles",
        "criteria",
        "states",
        "severities",
        "path",
        "repos",
        "branch",
        "combinator",
        "rules",
        "operator",
        "value",
    ],
    words: &[
        "work-item",
        "repository",
        "project",
        "pull-request",
        "pipeline",
        "release",
        "branch",
        "file",
        "folder",
        "advanced-security-alert",
        ".id",
        ".fields.\"System.Title\"",
        "true",
        "false",
        ".__project.id + \"/\" + (.id | tostring)",
        "[.items[] | {id}]",
        "env.HOME",
        "$ENV.PATH",
        "test(\"(\")",
        "def f: f; f",
        "reduce .[] as $x (0; . + $x)",
        "limit(3; repeat(1))",
        "@base64d",
        "splits(\"\")",
        "ltrimstr(1)",
        "input",
        "$__loc__",
        "getpath([\"a\",0,\"b\"])",
        "label $out | foreach .[] as $i (0; .+$i; if . > 3 then ., break $out else . end)",
        "\"\\(1,2)\"",
        ".[-1:]",
        "tojson | fromjson",
        "now | todate",
        "ascii",
        "{} | .a.b.c = 1",
        "[range(1e9)] | length",
    ],
    fragments: &[
        "|", ".", "..", "[", "]", "(", ")", "{", "}", "\"", "\\", "$", "?", "//", ",", ";", ":",
        "+", "-", "*", "/", "%", "==", "and", "or", "not", "if", "then", "else", "end", "as",
        "def", "reduce", "foreach", "try", "catch", "@", "tostring", "tonumber", "select(", "map(",
        "test(", "env", "$ENV", "1e1000", "0x", "'", "#", "\n", "é",
    ],
};

/// One target's samples, parsed once.
struct Corpus {
    name: &'static str,
    docs: Vec<Value>,
    vocabulary: &'static Vocabulary,
    /// The share of cases (out of 256) that get byte-level damage after the structural mutations.
    byte_damage: u8,
}

fn load(root: &Path) -> anyhow::Result<(Corpus, Corpus)> {
    let mut deliveries = Vec::new();
    let events = root.join("events/ado");
    for entry in std::fs::read_dir(&events).with_context(|| format!("{}", events.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(&path)?;
            deliveries.push(
                serde_json::from_slice(&text).with_context(|| format!("{}", path.display()))?,
            );
        }
    }
    let mut mappings = Vec::new();
    for dir in ["shared/defaults", "tests/data"] {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path)?;
                mappings.push(
                    serde_saphyr::from_str(&text).with_context(|| format!("{}", path.display()))?,
                );
            }
        }
    }
    if deliveries.is_empty() || mappings.is_empty() {
        bail!(
            "no samples under {} (run from the repository root, or pass --root)",
            root.display()
        );
    }
    deliveries.sort_by_key(Value::to_string);
    mappings.sort_by_key(Value::to_string);
    Ok((
        Corpus {
            name: "delivery",
            docs: deliveries,
            vocabulary: &DELIVERY_VOCABULARY,
            byte_damage: 64,
        },
        Corpus {
            name: "mapping",
            docs: mappings,
            vocabulary: &MAPPING_VOCABULARY,
            byte_damage: 48,
        },
    ))
}

/// The input of one case: a sample, one to four structural mutations, sometimes byte-level damage.
fn input(corpus: &Corpus, seed: u64, yaml: bool) -> Vec<u8> {
    let mut rng = Rng::with_seed(seed);
    let mut doc = corpus.docs[rng.usize(..corpus.docs.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        mutate_value(&mut rng, &mut doc, corpus.vocabulary);
    }
    let mut bytes = if yaml {
        serde_saphyr::to_string(&doc)
            .map(String::into_bytes)
            .unwrap_or_default()
    } else {
        serde_json::to_vec(&doc).unwrap_or_default()
    };
    if rng.u8(..) < corpus.byte_damage {
        for _ in 0..rng.usize(1..=3) {
            mutate_bytes(&mut rng, &mut bytes);
        }
    }
    bytes
}

/// What a case ended in, for the summary.
#[derive(Default)]
struct Tally {
    cases: u64,
    accepted: u64,
    refused: u64,
    panics: u64,
}

/// Parse and classify; what the webhook would queue must fit SQS and read back as the same message.
fn delivery_case(bytes: &[u8]) -> bool {
    let Ok(value) = parse_delivery(bytes) else {
        return false;
    };
    let Ok(message) = classify(&value) else {
        return false;
    };
    let group = message.group_id();
    assert!(
        group.len() <= 128 && group.bytes().all(|b| b.is_ascii_graphic()),
        "group id {group:?} breaks SQS's rules"
    );
    let dedup = message.dedup_id();
    assert!(
        dedup.len() == 64 && dedup.bytes().all(|b| b.is_ascii_hexdigit()),
        "dedup id {dedup:?}"
    );
    let text = serde_json::to_string(&message).expect("a classified message serialises");
    let back: ChangeMessage =
        serde_json::from_str(&text).expect("the processor reads what the webhook queued");
    assert_eq!(
        back, message,
        "the message changed on its way through the queue"
    );
    true
}

fn mapping_case(bytes: &[u8], allow_env: bool) -> bool {
    compile_mapping(&String::from_utf8_lossy(bytes), "fuzz", allow_env).is_ok()
}

thread_local! {
    /// Where the last panic happened: the hook records it instead of printing a million lines.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let at = LAST_PANIC.with(|l| l.borrow().clone());
    format!("{what} at {at}")
}

fn run_case(target: Target, corpus: &Corpus, seed: u64) -> Result<bool, String> {
    let yaml = target == Target::Mapping;
    let bytes = input(corpus, seed, yaml);
    let allow_env = seed & 1 == 1;
    panic::catch_unwind(AssertUnwindSafe(|| match target {
        Target::Delivery => delivery_case(&bytes),
        Target::Mapping => mapping_case(&bytes, allow_env),
    }))
    .map_err(|p| panic_text(p.as_ref()))
}

fn campaign(target: Target, corpus: &Corpus, run_seed: u64, skip: u64, cases: u64) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    let step = (cases / 10).max(1);
    for case in skip..cases {
        let seed = case_seed(run_seed, case);
        tally.cases += 1;
        match run_case(target, corpus, seed) {
            Ok(true) => tally.accepted += 1,
            Ok(false) => tally.refused += 1,
            Err(why) => {
                tally.panics += 1;
                let name = corpus.name;
                println!("PANIC {name} case {case}: {why}");
                println!("  reproduce: scripts/fuzz.sh --replay {name} {seed:#018x}");
            }
        }
        if (case + 1) % step == 0 {
            eprintln!(
                "{} {}/{cases} ({} panics, {:.0} cases/s)",
                corpus.name,
                case + 1,
                tally.panics,
                tally.cases as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "{}: {} cases in {:.1} s: {} accepted, {} refused, {} panics",
        corpus.name,
        tally.cases,
        started.elapsed().as_secs_f64(),
        tally.accepted,
        tally.refused,
        tally.panics
    );
    tally
}

fn replay(deliveries: &Corpus, mappings: &Corpus, args: &[String]) -> anyhow::Result<bool> {
    let [target, seed] = args else {
        bail!("--replay takes a target and a case seed");
    };
    let target = Target::from_str(target, true).map_err(anyhow::Error::msg)?;
    let seed =
        u64::from_str_radix(seed.trim_start_matches("0x"), 16).context("the case seed is hex")?;
    let corpus = match target {
        Target::Delivery => deliveries,
        Target::Mapping => mappings,
    };
    let bytes = input(corpus, seed, target == Target::Mapping);
    println!(
        "input ({} bytes):\n{}",
        bytes.len(),
        String::from_utf8_lossy(&bytes)
    );
    match run_case(target, corpus, seed) {
        Ok(accepted) => {
            println!(
                "no panic ({})",
                if accepted { "accepted" } else { "refused" }
            );
            Ok(true)
        }
        Err(why) => {
            println!("PANIC: {why}");
            Ok(false)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (deliveries, mappings) = load(&args.root)?;
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or_else(|| "?".to_owned(), |l| format!("{}:{}", l.file(), l.line()));
        LAST_PANIC.with(|l| *l.borrow_mut() = at);
    }));
    if let Some(r) = &args.replay {
        let clean = replay(&deliveries, &mappings, r)?;
        std::process::exit(if clean { 0 } else { 1 });
    }
    println!(
        "seed {}: {} deliveries from {} samples, {} mapping files from {} samples",
        args.seed,
        args.deliveries,
        deliveries.docs.len(),
        args.mappings,
        mappings.docs.len()
    );
    let d = campaign(
        Target::Delivery,
        &deliveries,
        args.seed,
        args.skip,
        args.deliveries,
    );
    let m = campaign(
        Target::Mapping,
        &mappings,
        args.seed,
        args.skip,
        args.mappings,
    );
    let panics = d.panics + m.panics;
    if panics > 0 {
        println!("{panics} panics");
        std::process::exit(1);
    }
    println!("no panics");
    Ok(())
}
