//! Cold start: from spawning a function binary, the way Lambda starts it, to its first poll of the
//! Runtime API for an event (the end of Lambda's init phase); and the release binaries' sizes.

use std::time::{Duration, Instant};

use sim::lambda::RuntimeApi;

use crate::binary;
use crate::figures::{figure, median};

/// The settings each function reads at init, as Lambda would pass them. The webhook's init must not
/// call out (nothing listens at its queue address); the processor and the resync read the mapping from
/// the catalog's integration record at init, so they get the simulator's catalog.
fn settings(function: &str, catalog: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let aws = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
    ];
    let mut out: Vec<_> = aws.iter().map(|&(k, v)| (k, v.to_owned())).collect();
    match function {
        "webhook" => out.extend([
            ("WEBHOOK_USERNAME", "ado".to_owned()),
            ("WEBHOOK_SECRET", "webhook-secret".to_owned()),
            (
                "QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/ado-sync-events.fifo".to_owned(),
            ),
        ]),
        _ => out.extend(catalog.iter().cloned()),
    }
    out
}

pub async fn run(runs: usize) -> anyhow::Result<()> {
    let sim = sim::start(
        "127.0.0.1:0".parse()?,
        sim::ado::OrgSpec::small(),
        sim::ado::AdoSimOptions::default(),
        sim::catalog::CatalogSimOptions::default(),
    )
    .await?;
    let catalog = sim.settings_env();
    for function in ["webhook", "processor", "resync"] {
        let path = binary(function)?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let api = RuntimeApi::start().await?;
            let mut cmd = api.function_command(path.to_str().unwrap_or(function), function);
            cmd.envs(settings(function, &catalog));
            let started = Instant::now();
            let mut child = cmd.spawn()?;
            let ready = api.first_poll(Duration::from_secs(30)).await;
            let _ = child.kill();
            let _ = child.wait();
            let ready = ready.ok_or_else(|| {
                anyhow::anyhow!("{function} did not ask for an event within 30 s (init failed?)")
            })?;
            times.push((ready - started).as_secs_f64() * 1000.0);
        }
        figure(
            &format!("cold_start.{function}"),
            format!("{:.1}", median(times.clone())),
            "ms",
            Some("<= 20"),
            &format!(
                "median of {} spawns to first event poll; min {:.1}",
                times.len(),
                times.iter().copied().fold(f64::INFINITY, f64::min)
            ),
        );
        let size = std::fs::metadata(&path)?.len();
        figure(
            &format!("binary_size.{function}"),
            format!("{:.2}", size as f64 / (1024.0 * 1024.0)),
            "MiB",
            None,
            &path.display().to_string(),
        );
    }
    sim.stop().await;
    Ok(())
}
