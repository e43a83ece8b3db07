//! `ado-sync demo`: a simulated organisation synced into the embedded catalog, no accounts needed. It runs
//! the same code path as `ado-sync resync` and the resync function; only the endpoints are local.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use shared::catalog::store::CatalogStore;
use shared::config::Settings;
use shared::runtime::SyncRuntime;

use crate::{Progress, Size};

pub(crate) async fn run(size: Size, db: &Path) -> ExitCode {
    match demo(size, db).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(size: Size, db: &Path) -> anyhow::Result<bool> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // A fresh catalog each time, so the summary shows one pass from empty.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let server = sim::start(
        "127.0.0.1:0".parse()?,
        size.spec(),
        Default::default(),
        Default::default(),
    )
    .await?;
    eprintln!(
        "simulated Azure DevOps organisation at {}",
        server.ado_org_url()
    );

    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("ADO_ORG_URL", server.ado_org_url());
    vars.insert("ADO_PAT", "demo-pat".into());
    vars.insert("CATALOG_DB", db.display().to_string());
    for passthrough in [
        "MAPPING_FILE",
        "ADO_EXCLUDED_TAGS",
        "INTEGRATION_IDENTIFIER",
    ] {
        if let Ok(v) = std::env::var(passthrough) {
            vars.insert(passthrough, v);
        }
    }
    let settings = Settings::from_lookup(|k| vars.get(k).cloned())?;
    let runtime = SyncRuntime::new(settings)?;
    let report = runtime.resync(&Progress::new()).await;
    drop(runtime);
    server.stop().await;

    println!("\nResync of the simulated organisation into the embedded catalog");
    print!("{}", report.render());
    let store = CatalogStore::open(db)?;
    println!("\nCatalog contents ({}):", db.display());
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for stored in store.list(None)? {
        *counts.entry(stored.blueprint).or_default() += 1;
    }
    for (blueprint, count) in &counts {
        println!("  {blueprint:<26} {count:>7} entities");
    }
    if let Some(sample) = store.list(Some("azureDevopsWorkItem"))?.into_iter().next() {
        println!(
            "\nOne of them, as stored:\n{}",
            serde_json::to_string_pretty(&sample.to_json())?
        );
    }
    println!(
        "\nInspect it with: sqlite3 {} 'select blueprint, identifier, title from entities limit 20'",
        db.display()
    );
    Ok(report.succeeded())
}
