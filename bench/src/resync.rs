//! The resync figures: the real resync function binary, driven through its Lambda runtime loop, syncs
//! the simulated organisation into the simulator's catalog twice (a first pass, then an unchanged one),
//! in a process of its own so its peak resident set is its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::ado::{AdoSimOptions, OrgSpec, REQUESTS_PER_WINDOW, WINDOW_SECS};
use sim::catalog::CatalogSimOptions;
use sim::lambda::{Outcome, RuntimeApi};

use crate::figures::{cpu_secs, figure, mib, peak_rss, reset_peak_rss};
use crate::{Size, binary, events_dir};

pub struct Options {
    pub size: Size,
    pub latency: Duration,
    pub concurrency: usize,
    pub mapping_file: Option<PathBuf>,
    /// The simulator sends no TSTU budget headers: measures concurrency alone.
    pub unmetered: bool,
}

/// What one pass did, read from the function's report and the simulator's counters.
struct Pass {
    wall: Duration,
    /// CPU seconds of the resync process and of this one (the simulator's ADO and catalog servers).
    cpu: f64,
    sim_cpu: f64,
    peak_rss: Option<u64>,
    ado_requests: u64,
    catalog_requests: u64,
    catalog_writes: u64,
    upserted: u64,
    unchanged: u64,
    errors: u64,
    per_kind: BTreeMap<String, KindFigures>,
}

/// One kind's share of a pass (summed over its resource blocks).
#[derive(Default)]
struct KindFigures {
    ado_requests: u64,
    items_read: u64,
    upserted: u64,
    /// Items whose entity key an earlier item of the block already produced (not written again).
    duplicates: u64,
    secs: f64,
}

pub async fn run(opts: &Options) -> anyhow::Result<()> {
    let (spec, label) = match opts.size {
        Size::Small => (OrgSpec::small(), "small"),
        Size::Large => (OrgSpec::large(), "large"),
    };
    let sim = sim::start(
        "127.0.0.1:0".parse()?,
        spec,
        AdoSimOptions {
            latency: opts.latency,
            unmetered: opts.unmetered,
            ..Default::default()
        },
        CatalogSimOptions::default(),
    )
    .await?;
    let api = RuntimeApi::start().await?;
    let mut cmd = api.function_command(binary("resync")?.to_str().unwrap_or("resync"), "resync");
    cmd.envs(sim.settings_env())
        .env("ADO_MAX_CONCURRENCY", opts.concurrency.to_string());
    if let Some(path) = &opts.mapping_file {
        cmd.env("MAPPING_FILE", path);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    anyhow::ensure!(
        api.first_poll(Duration::from_secs(60)).await.is_some(),
        "the resync function did not start (check its configuration)"
    );
    let event: Value = serde_json::from_str(&std::fs::read_to_string(
        events_dir().join("resync/scheduled.json"),
    )?)?;

    let first = pass(&api, &sim, pid, &event).await;
    reset_peak_rss(pid);
    let second = pass(&api, &sim, pid, &event).await;
    let _ = child.kill();
    let _ = child.wait();
    sim.stop().await;
    let (first, second) = (first?, second?);

    let latency_ms = opts.latency.as_secs_f64() * 1000.0;
    let per_request = opts.latency.as_secs_f64() / opts.concurrency as f64;
    let latency_floor = first.ado_requests as f64 * per_request;
    // The TSTU budget: once a window's requests are spent, the client waits for the next window (the
    // simulator's windows start at its first request). No client can finish sooner than this.
    let windows_waited = if opts.unmetered {
        0
    } else {
        first.ado_requests.saturating_sub(1) / REQUESTS_PER_WINDOW
    };
    let budget_floor = windows_waited as f64 * WINDOW_SECS as f64
        + (first.ado_requests - windows_waited * REQUESTS_PER_WINDOW) as f64 * per_request;
    let floor = latency_floor.max(budget_floor);
    let entities = first.upserted + first.unchanged;
    figure(
        "resync.wall",
        format!("{:.2}", first.wall.as_secs_f64()),
        "s",
        None,
        &format!(
            "{label} org, {entities} entities, {latency_ms:.0} ms/request, {} kinds with errors",
            first.errors
        ),
    );
    figure(
        "resync.cpu",
        format!("{:.2}", first.cpu),
        "s",
        None,
        &format!(
            "resync process; the simulator (ADO + catalog servers) used {:.2} s",
            first.sim_cpu
        ),
    );
    figure(
        "resync.api_floor",
        format!("{floor:.2}"),
        "s",
        None,
        &format!(
            "{} ADO requests x {latency_ms:.0} ms / {} in flight = {latency_floor:.2} s; TSTU budget ({} requests per {} s window{}): {budget_floor:.2} s",
            first.ado_requests,
            opts.concurrency,
            REQUESTS_PER_WINDOW,
            WINDOW_SECS,
            if opts.unmetered {
                ", off: --unmetered"
            } else {
                ""
            }
        ),
    );
    figure(
        "resync.wall_over_floor",
        if floor > 0.0 {
            format!("{:.2}", first.wall.as_secs_f64() / floor)
        } else {
            "n/a".to_owned()
        },
        "x",
        Some("<= 1.3"),
        if floor > 0.0 {
            ""
        } else {
            "no floor without latency (--latency-ms 0)"
        },
    );
    figure(
        "resync.ado_requests",
        first.ado_requests,
        "requests",
        None,
        "",
    );
    figure(
        "resync.catalog_requests",
        first.catalog_requests,
        "requests",
        None,
        &format!("{} of them writes", first.catalog_writes),
    );
    figure(
        "resync.peak_rss",
        first.peak_rss.map_or("n/a".into(), mib),
        "MiB",
        Some("<= 64"),
        "resync function process, VmHWM",
    );
    for (kind, k) in &first.per_kind {
        let repeated = match k.duplicates {
            0 => String::new(),
            n => format!(", {n} repeated an earlier key"),
        };
        figure(
            &format!("resync.kind.{kind}"),
            k.ado_requests,
            "requests",
            None,
            &format!("{} items{repeated}, {:.1} s", k.items_read, k.secs),
        );
    }
    figure(
        "unchanged_resync.catalog_writes",
        second.catalog_writes,
        "requests",
        Some("0"),
        &format!(
            "{} upserted, {} unchanged",
            second.upserted, second.unchanged
        ),
    );
    // Which kinds still wrote on a pass with nothing changed.
    for (kind, k) in &second.per_kind {
        if k.upserted > 0 {
            figure(
                &format!("unchanged_resync.kind.{kind}"),
                k.upserted,
                "upserted",
                Some("0"),
                "",
            );
        }
    }
    figure(
        "unchanged_resync.wall",
        format!("{:.2}", second.wall.as_secs_f64()),
        "s",
        None,
        &format!(
            "{} ADO requests, {} catalog requests",
            second.ado_requests, second.catalog_requests
        ),
    );
    figure(
        "unchanged_resync.cpu",
        format!("{:.2}", second.cpu),
        "s",
        None,
        &format!("the simulator used {:.2} s", second.sim_cpu),
    );
    figure(
        "unchanged_resync.peak_rss",
        second.peak_rss.map_or("n/a".into(), mib),
        "MiB",
        Some("<= 64"),
        "same process, peak reset between passes",
    );
    Ok(())
}

async fn pass(
    api: &RuntimeApi,
    sim: &sim::RunningSim,
    pid: u32,
    event: &Value,
) -> anyhow::Result<Pass> {
    let ado_before = sim.ado.total_requests();
    let catalog_before = sim.catalog.request_counts();
    let cpu_before = cpu_secs(pid).unwrap_or(0.0);
    let sim_cpu_before = cpu_secs(std::process::id()).unwrap_or(0.0);
    let clock = Instant::now();
    let outcome = api
        .invoke(event.clone(), Duration::from_secs(3600))
        .await
        .ok_or_else(|| anyhow::anyhow!("the resync did not answer within an hour"))?;
    let wall = clock.elapsed();
    let cpu = cpu_secs(pid).unwrap_or(0.0) - cpu_before;
    let sim_cpu = cpu_secs(std::process::id()).unwrap_or(0.0) - sim_cpu_before;
    let peak_rss = peak_rss(pid);
    let report = match outcome {
        Outcome::Response(report) => report,
        other => anyhow::bail!("the resync failed: {other:?}"),
    };
    let catalog_after = sim.catalog.request_counts();
    let delta = |key: &String| {
        catalog_after.get(key).copied().unwrap_or(0) - catalog_before.get(key).copied().unwrap_or(0)
    };
    let catalog_requests = catalog_after.keys().map(delta).sum();
    let catalog_writes = catalog_after
        .keys()
        .filter(|k| is_write(k))
        .map(delta)
        .sum();
    let kinds = report["kinds"].as_array().cloned().unwrap_or_default();
    let total = |field: &str| kinds.iter().filter_map(|k| k[field].as_u64()).sum::<u64>();
    let mut per_kind: BTreeMap<String, KindFigures> = BTreeMap::new();
    for k in &kinds {
        let entry = per_kind
            .entry(k["kind"].as_str().unwrap_or("?").to_owned())
            .or_default();
        let count = |field: &str| k[field].as_u64().unwrap_or(0);
        entry.ado_requests += count("ado_requests");
        entry.items_read += count("items_read");
        entry.upserted += count("upserted");
        entry.duplicates += count("duplicates");
        entry.secs += k["duration"].as_f64().unwrap_or(0.0);
    }
    Ok(Pass {
        wall,
        cpu,
        sim_cpu,
        peak_rss,
        ado_requests: sim.ado.total_requests() - ado_before,
        catalog_requests,
        catalog_writes,
        upserted: total("upserted"),
        unchanged: total("unchanged"),
        errors: kinds
            .iter()
            .filter(|k| k["errors"].as_u64().unwrap_or(0) > 0)
            .count() as u64,
        per_kind,
    })
}

/// Whether a counted catalog route (`METHOD /route`) changes entities.
fn is_write(key: &str) -> bool {
    let (method, route) = key.split_once(' ').unwrap_or((key, ""));
    route.contains("entities")
        && !route.contains("search")
        && !route.contains("datasource-entities")
        && matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

#[cfg(test)]
mod tests {
    use super::is_write;

    #[test]
    fn upserts_and_deletes_are_writes_and_searches_are_not() {
        assert!(is_write("POST /v1/blueprints/{bp}/entities/bulk"));
        assert!(is_write("POST /v1/blueprints/{bp}/bulk/entities/delete"));
        assert!(is_write("DELETE /v1/blueprints/{bp}/entities/{id}"));
        assert!(!is_write("POST /v1/entities/search"));
        assert!(!is_write(
            "POST /v1/blueprints/entities/datasource-entities"
        ));
        assert!(!is_write("GET /v1/blueprints/{bp}/entities/{id}"));
    }
}
