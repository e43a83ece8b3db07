//! `ado-sync`: one-shot resync (what a team runs from an Azure Pipeline), mapping preview, the built-in
//! demo, and the local simulator.

mod demo;
mod dlq;
mod items;
mod map;
mod progress;
mod serve;
mod subscriptions;
mod tenants;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shared::aws::AwsIdentity;
use shared::config::{Env, Settings};
use shared::tenant::Tenant;

use progress::Progress;

/// Where `serve` keeps its local queue, and where the `dlq` commands look for it.
const DEFAULT_QUEUE_DB: &str = ".ado-sync/queue.db";

#[derive(Parser)]
#[command(
    name = "ado-sync",
    version,
    about = "Keep a software catalog in sync with Azure DevOps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One full resync pass with the settings from the environment (ADO_ORG_URL, ADO_PAT, CATALOG_*…).
    /// Exits 0 when everything succeeded, 1 when anything failed, 2 for a configuration error, and 3
    /// when the pass was stopped by --max-seconds with nothing failed (incomplete: nothing was deleted).
    /// With --dry-run, 4 when the pass succeeded and would change something.
    Resync {
        /// Print the run report as JSON on stdout instead of a table.
        #[arg(long)]
        json: bool,
        /// List, map and compare with the catalog, write nothing: print per blueprint what would be
        /// created, changed (with the fields that differ) and deleted.
        #[arg(long)]
        dry_run: bool,
        /// Stop the pass after this many seconds: it stops listing, reports "incomplete", deletes
        /// nothing and exits with 3.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_seconds: Option<u64>,
    },
    /// Print the raw items of one kind as JSON Lines, enriched exactly as a resync lists them for the
    /// mapping (`__project`, `__includedFiles`, …): the input `map` takes. Reads the Azure DevOps
    /// settings only (ADO_ORG_URL, ADO_PAT, …).
    Items {
        /// The kind to list (`work-item`, `repository`, …).
        #[arg(long)]
        kind: String,
        /// The mapping whose first block of the kind gives the selector options (`includedFiles`,
        /// `expand`, …); the shipped default mapping when absent.
        #[arg(long)]
        mapping: Option<std::path::PathBuf>,
        /// Only this project (name or id).
        #[arg(long)]
        project: Option<String>,
        /// Stop after this many items.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Map raw items with a mapping file and print one entity per line (catalog upsert body shape).
    Map {
        /// The port-app-config file (YAML or JSON).
        #[arg(long)]
        mapping: std::path::PathBuf,
        /// The kind whose resource blocks to apply.
        #[arg(long)]
        kind: String,
        /// Raw items: a JSON array or JSON Lines. Standard input when absent.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
        /// Let the mapping read the environment (env / $ENV).
        #[arg(long)]
        allow_env: bool,
        /// One indented JSON document per entity instead of one line each.
        #[arg(long)]
        pretty: bool,
    },
    /// Start a simulated Azure DevOps organisation, sync it into the embedded catalog, and show the result.
    Demo {
        #[arg(long, value_enum, default_value_t = Size::Small)]
        size: Size,
        /// Where the embedded catalog is written (a SQLite file you can open with sqlite3).
        #[arg(long, default_value = ".demo/catalog.db")]
        db: std::path::PathBuf,
    },
    /// Serve the simulated Azure DevOps organisation and catalog API until stopped.
    Sim {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, value_enum, default_value_t = Size::Small)]
        size: Size,
        /// Added to every Azure DevOps response.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Share of Azure DevOps requests answered 429 or 503 (0 to 1).
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Send no TSTU budget headers (`x-ratelimit-*`), so clients never pause for the budget.
        #[arg(long)]
        unmetered: bool,
        /// Answer as Azure DevOps Server: no Graph, entitlements or Advanced Security APIs, and
        /// `connectionData` says `onPremises`.
        #[arg(long)]
        server: bool,
    },
    /// Manage the Azure DevOps service-hook subscriptions that feed the webhook (WEBHOOK_URL, WEBHOOK_*).
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// The self-hosted real-time mode: serve the webhook (POST /webhook, GET /health), apply queued
    /// changes to the catalog, and resync periodically, until SIGTERM or Ctrl-C. Settings as for resync
    /// plus WEBHOOK_*; the queue is SQS when QUEUE_URL is set, else a durable SQLite file.
    ///
    /// Credentials and the body size (WEBHOOK_MAX_BODY_BYTES, default 6 MiB) are checked from the
    /// headers before any of the body is read: a stranger gets 401 and an announced oversized body
    /// 413 at once; a chunked body is cut at the limit. A stop answers the requests in hand and
    /// finishes the message being applied.
    Serve {
        /// The address to serve on, e.g. 0.0.0.0:8080 (port 0 picks a free port; the one taken is
        /// printed as `listening on ADDR`).
        #[arg(long)]
        listen: SocketAddr,
        /// Seconds between full resyncs (the first one interval after the start); 0 turns them off.
        /// Default: RESYNC_INTERVAL_SECS, else 3600.
        #[arg(long)]
        resync_interval_secs: Option<u64>,
        /// The local queue's SQLite file (unused when QUEUE_URL is set).
        #[arg(long, default_value = DEFAULT_QUEUE_DB)]
        queue_db: std::path::PathBuf,
        /// Seconds a client has to send a request's headers, from its connection or from the first
        /// byte of a later request on it; the connection is then closed.
        #[arg(long, env = "SERVE_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        header_timeout_secs: u64,
        /// Seconds a client has to send a request's whole body; it is then answered 408 and closed.
        #[arg(long, env = "SERVE_BODY_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        body_timeout_secs: u64,
        /// Seconds a kept-alive connection may wait for its next request before it is closed.
        #[arg(long, env = "SERVE_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        idle_timeout_secs: u64,
        /// Connections served at once. More wait to be accepted (in the system's listen backlog)
        /// until one closes, which the timeouts above ensure happens soon.
        #[arg(long, env = "SERVE_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
        max_connections: u32,
    },
    /// List or replay dead letters: serve's local queue (--queue-db, default .ado-sync/queue.db) or,
    /// with --dlq-url/--queue-url (DLQ_URL/QUEUE_URL), the SQS dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The hosted service's tenant registry: add, list, show, remove tenants and rotate their webhook
    /// secrets, in a SQLite file (--tenants-db FILE) or the DynamoDB table TENANTS_TABLE.
    Tenants(Box<tenants::TenantsArgs>),
}

#[derive(Subcommand)]
enum SubscriptionsCommand {
    /// Create, replace and remove our subscriptions so they match the settings. Exits non-zero on failures.
    Sync {
        /// Only list what would change.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Size {
    Small,
    Large,
}

impl Size {
    pub(crate) fn spec(self) -> sim::ado::OrgSpec {
        match self {
            Size::Small => sim::ado::OrgSpec::small(),
            Size::Large => sim::ado::OrgSpec::large(),
        }
    }
}

fn main() -> ExitCode {
    progress::init();
    let cli = Cli::parse();
    // A pass is one task (listing and writing interleave through one join), so a single thread serves
    // it as fast and with one allocator arena instead of one per worker: a smaller peak RSS. The
    // simulator and the webhook server serve many connections at once and get the multi-threaded
    // runtime.
    let rt = match cli.command {
        Command::Sim { .. } | Command::Demo { .. } | Command::Serve { .. } => {
            tokio::runtime::Runtime::new()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Resync {
                json,
                dry_run,
                max_seconds,
            } => resync(json, dry_run, max_seconds).await,
            Command::Items {
                kind,
                mapping,
                project,
                limit,
            } => {
                items::run(items::Args {
                    kind: &kind,
                    mapping: mapping.as_deref(),
                    project,
                    limit: limit.map(|n| n as usize),
                })
                .await
            }
            Command::Map {
                mapping,
                kind,
                input,
                allow_env,
                pretty,
            } => map::run(&mapping, &kind, input.as_deref(), allow_env, pretty),
            Command::Demo { size, db } => demo::run(size, &db).await,
            Command::Sim {
                listen,
                size,
                latency_ms,
                fault_rate,
                unmetered,
                server,
            } => {
                let opts = sim::ado::AdoSimOptions {
                    latency: Duration::from_millis(latency_ms),
                    fault_rate,
                    unmetered,
                    flavour: if server {
                        sim::ado::Flavour::Server
                    } else {
                        sim::ado::Flavour::Services
                    },
                    ..Default::default()
                };
                serve_sim(listen, size, opts).await
            }
            Command::Subscriptions {
                command: SubscriptionsCommand::Sync { dry_run, json },
            } => subscriptions::sync(dry_run, json).await,
            Command::Serve {
                listen,
                resync_interval_secs,
                queue_db,
                header_timeout_secs,
                body_timeout_secs,
                idle_timeout_secs,
                max_connections,
            } => {
                serve::run(serve::ServeArgs {
                    listen,
                    resync_interval_secs,
                    queue_db,
                    limits: serve::ConnectionLimits {
                        header_timeout: Duration::from_secs(header_timeout_secs),
                        body_timeout: Duration::from_secs(body_timeout_secs),
                        idle_timeout: Duration::from_secs(idle_timeout_secs),
                        max_connections: max_connections as usize,
                    },
                })
                .await
            }
            Command::Dlq { command } => dlq::run(command).await,
            Command::Tenants(args) => tenants::run(*args).await,
        }
    })
}

/// Settings (secrets included) and the mapping, resolved before any Azure DevOps call.
async fn start() -> Result<Tenant, String> {
    let env = Env::load(AwsIdentity::DEFAULT_CHAIN)
        .await
        .map_err(|e| e.to_string())?;
    let settings = Settings::from_env(&env).map_err(|e| e.to_string())?;
    Tenant::start(settings).await.map_err(|e| e.to_string())
}

/// The exit code of a pass that stopped at its deadline with nothing failed.
const EXIT_INCOMPLETE: u8 = 3;
/// The exit code of a dry run that succeeded and would change something.
const EXIT_WOULD_CHANGE: u8 = 4;

async fn resync(json: bool, dry_run: bool, max_seconds: Option<u64>) -> ExitCode {
    // The clock starts before the settings are read: --max-seconds bounds the whole command.
    let deadline = max_seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let runtime = match start().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (report, preview) = if dry_run {
        let (report, preview) = runtime.preview_until(&Progress::new(), deadline).await;
        (report, Some(preview))
    } else {
        (runtime.resync_until(&Progress::new(), deadline).await, None)
    };
    match (json, &preview) {
        (true, None) => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        (true, Some(preview)) => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "report": report,
                "preview": preview,
            }))
            .unwrap_or_default()
        ),
        (false, None) => print!("{}", report.render()),
        (false, Some(preview)) => print!(
            "{}\nDry run: nothing was written.\n{}",
            report.render(),
            preview.render()
        ),
    }
    if report.succeeded() {
        match preview {
            Some(p) if p.changes_anything() => ExitCode::from(EXIT_WOULD_CHANGE),
            _ => ExitCode::SUCCESS,
        }
    } else if report.incomplete() {
        ExitCode::from(EXIT_INCOMPLETE)
    } else {
        ExitCode::FAILURE
    }
}

async fn serve_sim(listen: SocketAddr, size: Size, opts: sim::ado::AdoSimOptions) -> ExitCode {
    if !(0.0..=1.0).contains(&opts.fault_rate) {
        eprintln!("error: --fault-rate must be between 0 and 1");
        return ExitCode::from(2);
    }
    let server = match sim::start(listen, size.spec(), opts, Default::default()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "ado_org_url": server.ado_org_url(),
            "catalog_base_url": server.catalog_base_url(),
            "listen": server.addr.to_string(),
        })
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    server.stop().await;
    ExitCode::SUCCESS
}

async fn terminate() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await
}
