//! `ado-sync demo`: a simulated organisation synced into the embedded catalog, no accounts needed. It runs
//! the same code path as `ado-sync resync` and the resync function; only the endpoints are local.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use std::sync::Arc;

use shared::catalog::port::{PortClient, PortConfig};
use shared::catalog::store::CatalogStore;
use shared::config::Settings;
use shared::tenant::Tenant;

use crate::Size;
use crate::progress::Progress;

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
        "MAPPING",
        "ADO_EXCLUDED_TAGS",
        "INTEGRATION_IDENTIFIER",
    ] {
        if let Ok(v) = std::env::var(passthrough) {
            vars.insert(passthrough, v);
        }
    }
    vars.insert("ACTIONS_ENABLED", "true".into());
    let settings = Settings::from_lookup(|k| vars.get(k).cloned())?;
    // Entities go to the embedded catalog; self-service action runs live in the simulated catalog
    // API beside it (the embedded catalog has no action runs).
    let mut port = PortConfig::new(
        "demo",
        "demo".to_owned().into(),
        settings.integration_identifier.clone(),
        shared::tenant::VERSION,
    );
    port.base_url = server.catalog_base_url().parse()?;
    let runtime = Tenant::new(settings)?.with_action_runs(Arc::new(PortClient::new(port)?));
    let report = runtime.resync(&Progress::new()).await;
    let live = live_change(&server, &runtime, db).await;
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
    let live_ok = matches!(live, Ok((_, Ok(_))));
    match live {
        Ok((line, action)) => {
            println!("\nLive change: {line}");
            match action {
                Ok(line) => println!("\nSelf-service action: {line}"),
                Err(e) => println!("\nSelf-service action failed: {e:#}"),
            }
        }
        Err(e) => println!("\nLive change failed: {e:#}"),
    }
    println!(
        "\nInspect it with: sqlite3 {} 'select blueprint, identifier, title from entities limit 20'",
        db.display()
    );
    Ok(report.succeeded() && live_ok)
}

/// Shows a live change end to end: our service-hook subscriptions are created in the simulated org, a work
/// item is renamed there, the simulator delivers `workitem.updated` to a local webhook (the same `accept`
/// the webhook function runs), the event goes through the durable queue, and the processor's `apply`
/// writes it to the embedded catalog.
async fn live_change(
    server: &sim::RunningSim,
    runtime: &Tenant,
    db: &Path,
) -> anyhow::Result<(String, anyhow::Result<String>)> {
    use std::time::Duration;

    use shared::queue::QueueConsumer;
    use shared::queue::local::{LocalQueue, LocalQueueOptions};

    let queue_path = db.with_file_name("queue.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", queue_path.display()));
    }
    let queue = Arc::new(LocalQueue::open(&queue_path, LocalQueueOptions::default())?);
    let webhook_vars: HashMap<&str, &str> = HashMap::from([
        ("WEBHOOK_USERNAME", "ado"),
        ("WEBHOOK_SECRET", "demo-secret"),
    ]);
    let webhook = Arc::new(shared::webhook::WebhookSettings::from_lookup(|k| {
        webhook_vars.get(k).map(|v| v.to_string())
    })?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    let app = {
        let (queue, webhook) = (queue.clone(), webhook.clone());
        axum::Router::new().route(
            "/webhook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let outcome =
                        shared::webhook::accept(&webhook, queue.as_ref(), &headers, &body).await;
                    outcome.status()
                },
            ),
        )
    };
    let hook_server = tokio::spawn(async move { axum::serve(listener, app).await });

    let sub_vars: HashMap<&str, String> = HashMap::from([
        ("WEBHOOK_URL", url),
        ("WEBHOOK_USERNAME", "ado".into()),
        ("WEBHOOK_SECRET", "demo-secret".into()),
        (
            "INTEGRATION_IDENTIFIER",
            runtime.settings.integration_identifier.clone(),
        ),
    ]);
    let subs = shared::ado::hooks::SubscriptionSettings::from_lookup(|k| sub_vars.get(k).cloned())?;
    let ctx = shared::ado::kinds::FetchContext::new(
        runtime.ado.clone(),
        runtime.settings.excluded_tags.clone(),
    );
    let subscriptions = shared::ado::hooks::sync_subscriptions(&ctx, &subs).await;
    anyhow::ensure!(
        subscriptions.succeeded(),
        "subscriptions: {}",
        subscriptions.render()
    );

    let store = CatalogStore::open(db)?;
    let synced: std::collections::BTreeSet<String> = store
        .list(Some("azureDevopsWorkItem"))?
        .into_iter()
        .map(|e| e.identifier)
        .collect();
    let (project, id) = server
        .ado
        .project_ids()
        .into_iter()
        .flat_map(|p| {
            server
                .ado
                .work_item_ids(&p)
                .into_iter()
                .map(move |id| (p.clone(), id))
        })
        .find(|(p, id)| synced.contains(&format!("{p}/{id}")))
        .ok_or_else(|| anyhow::anyhow!("no synced work item to change"))?;
    let key = format!("{project}/{id}");
    let before = store
        .get("azureDevopsWorkItem", &key)?
        .and_then(|e| e.title)
        .unwrap_or_default();
    let mut fields = serde_json::Map::new();
    fields.insert(
        "System.Title".into(),
        serde_json::json!(format!("{before} (renamed live)")),
    );
    server.ado.update_work_item(id, fields);
    server
        .ado
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await;

    let mut applied = 0;
    for received in queue.receive(10, Duration::from_secs(5)).await? {
        let message: shared::queue::ChangeMessage = serde_json::from_str(&received.body)?;
        runtime.apply(&message).await?;
        queue.ack(&received.receipt).await?;
        applied += 1;
    }
    let action = action_run(server, runtime, queue.as_ref()).await;
    hook_server.abort();
    let after = store
        .get("azureDevopsWorkItem", &key)?
        .and_then(|e| e.title)
        .unwrap_or_default();
    Ok((
        format!(
            "{} subscriptions created; work item {key} renamed in Azure DevOps; {applied} event(s) went webhook -> queue -> processor; catalog title {before:?} -> {after:?}",
            subscriptions.totals().0
        ),
        action,
    ))
}

/// Shows a self-service action end to end: a `trigger_pipeline` run is requested in the (simulated)
/// portal, the claimer takes it into the queue, the processor runs the pipeline in Azure DevOps and
/// records the run's link, and the pipeline's `run-state-changed` delivery comes back through the
/// webhook to report the outcome on the action run.
async fn action_run(
    server: &sim::RunningSim,
    runtime: &Tenant,
    queue: &shared::queue::local::LocalQueue,
) -> anyhow::Result<String> {
    use std::time::Duration;

    use shared::queue::QueueConsumer;

    let runs = runtime
        .action_runs()
        .ok_or_else(|| anyhow::anyhow!("no action runs"))?;
    let project = runtime.ado.get("/_apis/projects").await?.body["value"][0].clone();
    let project_name = project["name"].as_str().unwrap_or_default().to_owned();
    let pipelines = runtime
        .ado
        .get(format!(
            "/{}/_apis/pipelines",
            project["id"].as_str().unwrap_or_default()
        ))
        .await?
        .body;
    let pipeline = pipelines["value"][0]["id"].as_u64().unwrap_or(1);
    let run = server.catalog.create_action_run(sim::catalog::NewActionRun {
        action: "trigger_pipeline".into(),
        installation_id: Some(runtime.settings.integration_identifier.clone()),
        integration_action_type: shared::actions::TRIGGER_PIPELINE.into(),
        properties: serde_json::json!({"project": project_name, "pipelineId": pipeline, "branch": "main"}),
    });
    let claimed = shared::actions::claim::claim(
        runs,
        queue,
        &runtime.settings.integration_identifier,
        Duration::ZERO,
        runtime.settings.actions.run_timeout,
    )
    .await;
    anyhow::ensure!(claimed.queued == 1, "claimer: {claimed:?}");
    // Apply what arrives (the job, then the pipeline's state deliveries) until the run has finished.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let finished = loop {
        for received in queue.receive(10, Duration::from_millis(500)).await? {
            let message: shared::queue::ChangeMessage = serde_json::from_str(&received.body)?;
            runtime.apply(&message).await?;
            queue.ack(&received.receipt).await?;
        }
        let now = server.catalog.action_run(&run).unwrap_or_default();
        if now["status"] != "IN_PROGRESS" {
            break now;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the action run did not finish: {now}"
        );
    };
    let link = finished["link"][0].as_str().unwrap_or("-");
    Ok(format!(
        "run {run} (trigger_pipeline, pipeline {pipeline} of {project_name:?}) claimed -> queue -> processor started the pipeline ({link}); its completion came back through the webhook: {} ({})",
        finished["status"].as_str().unwrap_or("-"),
        finished["summary"].as_str().unwrap_or("-"),
    ))
}
