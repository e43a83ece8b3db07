//! Mapping throughput on one core: the shipped default mapping over raw items the simulator serves
//! (listed through the real kinds, with their enrichment fields), the common identifier pattern
//! `.a + "/" + (.b | tostring) | gsub(" "; "")` on its own, and the whole `ado-sync map` process over
//! 100,000 work items with the peer's own default mapping (JSON in and out included).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::ado::kinds::{self, FetchContext, PageSink};
use shared::config::Settings;
use shared::mapping::{CompiledResource, ItemOutcome};
use shared::tenant::{Tenant, compile_mapping};
use sim::ado::{AdoSimOptions, OrgSpec};
use sim::catalog::CatalogSimOptions;

use crate::figures::figure;

/// Items sampled per kind: enough to cover the simulator's variety, small enough to stay in cache
/// the way a page of a real resync does.
const SAMPLE: usize = 1_000;

pub fn run(rt: &tokio::runtime::Runtime, secs: Duration) -> anyhow::Result<()> {
    let samples = rt.block_on(sample_items())?;
    let mut all_fields = 0u64;
    let mut all_time = Duration::ZERO;
    for (resource, items) in &samples {
        let (fields, took) = measure(resource, items, secs);
        all_fields += fields;
        all_time += took;
        figure(
            &format!("mapping.default.{}", resource.kind()),
            format!("{:.0}", fields as f64 / took.as_secs_f64()),
            "fields/s",
            None,
            &format!(
                "{} fields per item, {} sample items",
                resource.field_count(),
                items.len()
            ),
        );
    }
    figure(
        "mapping.default",
        format!("{:.0}", all_fields as f64 / all_time.as_secs_f64()),
        "fields/s",
        Some(">= 1000000 per core"),
        "every kind of the shipped mapping, one thread",
    );

    let pattern = pattern_resource()?;
    let items: Vec<Value> = (0..SAMPLE)
        .map(|i| json!({"a": format!("Project {} Of The Org", i % 37), "b": i}))
        .collect();
    let (fields, took) = measure(&pattern, &items, secs);
    figure(
        "mapping.identifier_pattern",
        format!("{:.0}", fields as f64 / took.as_secs_f64()),
        "fields/s",
        Some(">= 3000000"),
        r#"9 of 10 fields are .a + "/" + (.b | tostring) | gsub(" "; ""), one thread"#,
    );

    let work_items = samples
        .iter()
        .find(|(resource, _)| resource.kind() == "work-item")
        .map(|(_, items)| items.as_slice())
        .ok_or_else(|| anyhow::anyhow!("the simulator listed no work items"))?;
    map_process(work_items)
}

/// The peer's default `port-app-config` (as shipped by its integration).
const PEER_MAPPING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../cli/tests/data/peer-port-app-config.yaml"
);
const MAP_ITEMS: usize = 100_000;

/// `ado-sync map --kind work-item` with the peer's mapping over [`MAP_ITEMS`] JSON Lines made from the
/// simulator's work items (ids made unique), output read from a pipe: field evaluations per second of
/// the whole process, start to exit.
fn map_process(samples: &[Value]) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mapping = std::fs::read_to_string(PEER_MAPPING)?;
    let compiled = compile_mapping(&mapping, PEER_MAPPING, false)?;
    let fields = compiled
        .resources()
        .iter()
        .filter(|r| r.kind() == "work-item")
        .map(|r| r.field_count() as u64)
        .sum::<u64>();
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("work-items.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input)?);
    let mut bytes = 0usize;
    for n in 0..MAP_ITEMS {
        let mut item = samples[n % samples.len()].clone();
        item["id"] = json!(n + 1);
        let line = serde_json::to_string(&item)?;
        bytes += line.len() + 1;
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    drop(file);

    let clock = Instant::now();
    let mut child = std::process::Command::new(crate::binary("ado-sync")?)
        .args([
            "map",
            "--kind",
            "work-item",
            "--mapping",
            PEER_MAPPING,
            "--input",
        ])
        .arg(&input)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let entities = std::io::BufReader::new(stdout).lines().count() as u64;
    let status = child.wait()?;
    let took = clock.elapsed();
    anyhow::ensure!(status.success(), "ado-sync map failed: {status}");
    anyhow::ensure!(
        entities == MAP_ITEMS as u64,
        "ado-sync map wrote {entities} entities for {MAP_ITEMS} items"
    );
    figure(
        "mapping.map_process",
        format!("{:.0}", (entities * fields) as f64 / took.as_secs_f64()),
        "fields/s",
        Some(">= 1000000"),
        &format!(
            "ado-sync map, peer's work-item mapping ({fields} fields), {MAP_ITEMS} items, {} MB JSON Lines, {:.2} s",
            bytes / 1_000_000,
            took.as_secs_f64()
        ),
    );
    Ok(())
}

/// Maps `items` over and over for about `secs`; returns the fields evaluated and the time taken.
fn measure(resource: &CompiledResource, items: &[Value], secs: Duration) -> (u64, Duration) {
    let per_item = resource.field_count() as u64;
    let clock = Instant::now();
    let mut fields = 0u64;
    while clock.elapsed() < secs {
        for item in items {
            for outcome in resource.map_item(item, false) {
                if let ItemOutcome::Mapped { entity, .. } = outcome {
                    fields += per_item;
                    std::hint::black_box(entity);
                }
            }
        }
    }
    (fields, clock.elapsed())
}

/// The shipped mapping's resources, each with up to [`SAMPLE`] raw items listed from the small
/// simulated organisation.
async fn sample_items() -> anyhow::Result<Vec<(std::sync::Arc<CompiledResource>, Vec<Value>)>> {
    let sim = sim::start(
        "127.0.0.1:0".parse()?,
        OrgSpec::small(),
        AdoSimOptions::default(),
        CatalogSimOptions::default(),
    )
    .await?;
    let env: Vec<(&str, String)> = sim.settings_env().into();
    let settings = Settings::from_lookup(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.clone())
    })?;
    let runtime = Tenant::new(settings)?;
    let ctx = FetchContext::new(runtime.ado.clone(), Vec::new());
    let mut samples = Vec::new();
    let mapping = runtime.mapping().await;
    for resource in mapping.resources() {
        let Some(kind) = kinds::find(resource.kind()) else {
            continue;
        };
        let (sink, mut rx) = PageSink::channel(1024);
        let ctx = &ctx;
        let listing = async move {
            let listed = kind.fetch(ctx, resource, &sink).await;
            drop(sink);
            listed
        };
        let collect = async {
            let mut items = Vec::new();
            while let Some(page) = rx.recv().await {
                items.extend(page.into_iter().take(SAMPLE - items.len().min(SAMPLE)));
            }
            items
        };
        let (listed, items) = tokio::join!(listing, collect);
        listed?;
        if !items.is_empty() {
            samples.push((std::sync::Arc::clone(resource), items));
        }
    }
    sim.stop().await;
    Ok(samples)
}

fn pattern_resource() -> anyhow::Result<std::sync::Arc<CompiledResource>> {
    let pattern = r#".a + "/" + (.b | tostring) | gsub(" "; "")"#;
    let properties: String = (0..8)
        .map(|i| format!("            p{i}: '{pattern}'\n"))
        .collect();
    let text = format!(
        "resources:\n  - kind: project\n    selector:\n      query: 'true'\n    port:\n      entity:\n        mappings:\n          identifier: '{pattern}'\n          blueprint: '\"x\"'\n          properties:\n{properties}"
    );
    let config = compile_mapping(&text, "the identifier pattern", false)?;
    Ok(std::sync::Arc::clone(&config.resources()[0]))
}
