//! `ado-sync serve` end to end against the simulator: a delivery is refused without credentials,
//! queued with them, applied to the embedded catalog by the consumer, and SIGTERM exits cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::catalog::store::CatalogStore;

const BIN: &str = env!("CARGO_BIN_EXE_ado-sync");

/// Kills the child if the test fails before it is stopped on purpose.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// As `cli.rs::start_sim`: the simulator prints its URLs as one JSON line, then serves.
fn start_sim() -> (Guard, Value) {
    let mut child = Command::new(BIN)
        .args(["sim", "--listen", "127.0.0.1:0", "--size", "small"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let urls: Value = serde_json::from_str(&line).expect("sim prints one JSON line");
    (Guard(child), urls)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A project of the simulated org and one of its open work items (the default mapping's selector
/// keeps open items, so this one must land in the catalog).
async fn pick_work_item(client: &reqwest::Client, org: &str) -> (String, u64) {
    let projects: Value = client
        .get(format!("{org}/_apis/projects?api-version=7.1"))
        .basic_auth("", Some("any"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for project in projects["value"].as_array().expect("projects") {
        let id = project["id"].as_str().unwrap();
        let name = project["name"].as_str().unwrap();
        let found: Value = client
            .post(format!("{org}/{id}/_apis/wit/wiql?api-version=7.1"))
            .basic_auth("", Some("any"))
            .json(&json!({"query": format!(
                "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = '{name}' \
                 AND [System.State] NOT IN ('Closed','Done','Removed')"
            )}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(wi) = found["workItems"].as_array().and_then(|w| w.first()) {
            return (id.to_owned(), wi["id"].as_u64().unwrap());
        }
    }
    panic!("the simulated org has no open work item: {projects}");
}

fn delivery(project_id: &str, work_item: u64) -> Vec<u8> {
    let path = format!(
        "{}/../events/ado/workitem.updated.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    body["resourceContainers"]["project"]["id"] = json!(project_id);
    body["resource"]["workItemId"] = json!(work_item);
    body["resource"]["revision"]["id"] = json!(work_item);
    serde_json::to_vec(&body).unwrap()
}

fn catalog_has(db: &Path, identifier: &str) -> bool {
    let Ok(store) = CatalogStore::open(db) else {
        return false;
    };
    store
        .list(Some("azureDevopsWorkItem"))
        .map(|entities| entities.iter().any(|e| e.identifier == identifier))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_queues_an_authenticated_delivery_applies_it_and_stops_on_sigterm() {
    let (_sim, urls) = start_sim();
    let org = urls["ado_org_url"].as_str().unwrap().trim_end_matches('/');
    let dir = tempfile::tempdir().unwrap();
    let catalog_db = dir.path().join("c.db");
    let port = free_port();

    let serve = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--resync-interval-secs",
            "0",
            "--queue-db",
            dir.path().join("q.db").to_str().unwrap(),
        ])
        .env_clear()
        .env("ADO_ORG_URL", org)
        .env("ADO_PAT", "anything")
        .env("CATALOG_DB", &catalog_db)
        .env("WEBHOOK_USERNAME", "ado")
        .env("WEBHOOK_SECRET", "s")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut serve = Guard(serve);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let started = Instant::now();
    loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if started.elapsed() > Duration::from_secs(20) => panic!("serve never got healthy"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }

    let (project_id, work_item) = pick_work_item(&client, org).await;
    let body = delivery(&project_id, work_item);

    let refused = client
        .post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")),
        "a 401 carries the Basic challenge"
    );

    let queued = client
        .post(format!("{base}/webhook"))
        .basic_auth("ado", Some("s"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202, "{}", queued.text().await.unwrap());

    let identifier = format!("{project_id}/{work_item}");
    let started = Instant::now();
    while !catalog_has(&catalog_db, &identifier) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{identifier} never reached the catalog"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(serve.0.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
}
