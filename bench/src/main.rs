//! The benchmark suite: the figures that say how fast and lean a sync is, measured against the simulator
//! and printed one per line. Nothing here asserts a timing; the figures go in closing notes and the
//! README. Run it through `scripts/bench.sh`, which builds the function binaries it drives.

mod cold;
mod figures;
mod mapping;
mod resync;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ado-sync-bench",
    about = "Benchmarks ado-sync against the simulator and prints one line per figure"
)]
struct Args {
    /// Which benchmarks to run (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "resync,mapping,webhook,cold"
    )]
    only: Vec<Bench>,
    /// Simulated organisation for the resync benchmark.
    #[arg(long, value_enum, default_value = "large")]
    size: Size,
    /// Simulated Azure DevOps latency per request, in milliseconds.
    #[arg(long, default_value_t = 25)]
    latency_ms: u64,
    /// Requests the ADO client may have in flight (`ADO_MAX_CONCURRENCY`); the floor divides by it.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Mapping for the resync (default: the shipped default mapping).
    #[arg(long)]
    mapping_file: Option<PathBuf>,
    /// The simulated organisation sends no TSTU budget headers (`x-ratelimit-*`), so the resync is
    /// bound by latency and concurrency alone.
    #[arg(long)]
    unmetered: bool,
    /// Seconds each mapping measurement runs.
    #[arg(long, default_value_t = 2.0)]
    mapping_secs: f64,
    /// Deliveries for the in-process webhook measurement.
    #[arg(long, default_value_t = 50_000)]
    webhook_events: usize,
    /// Deliveries sent end to end through the local SQS server (moto).
    #[arg(long, default_value_t = 1_000)]
    sqs_events: usize,
    /// Cold starts measured per function (the median is printed).
    #[arg(long, default_value_t = 9)]
    cold_runs: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    Resync,
    Mapping,
    Webhook,
    Cold,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Size {
    Small,
    Large,
}

/// Where the function binaries are: next to this one (`target/release`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the functions first (scripts/bench.sh does: cargo build --release --bins)",
        path.display()
    );
    Ok(path)
}

/// The repository's `events/` folder, for real payloads.
pub fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The servers (simulator, runtime API, moto client) get their own threads; the measured code runs
    // on one (`mapping`, in-process `webhook`) or in a child process (`resync`, `cold`).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    figures::header();
    for bench in &args.only {
        match bench {
            Bench::Resync => rt.block_on(resync::run(&resync::Options {
                size: args.size,
                latency: Duration::from_millis(args.latency_ms),
                concurrency: args.concurrency,
                mapping_file: args.mapping_file.clone(),
                unmetered: args.unmetered,
            }))?,
            Bench::Mapping => mapping::run(&rt, Duration::from_secs_f64(args.mapping_secs))?,
            Bench::Webhook => webhook::run(&rt, args.webhook_events, args.sqs_events)?,
            Bench::Cold => rt.block_on(cold::run(args.cold_runs))?,
        }
    }
    Ok(())
}
