//! `ado-sync serve` and its dead letters, end to end: the real binary against the simulator. A delivery
//! is refused without credentials, queued with them, applied to the catalog by the consumer, and
//! SIGTERM exits cleanly; hostile clients cannot make it grow or hold connections open
//! (`hostile.rs`); a kill -9 loses no acknowledged delivery (`crash.rs`); dead letters of the local
//! queue can be listed and replayed (`dlq.rs`).

mod crash;
mod dlq;
mod hostile;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::catalog::store::CatalogStore;

const BIN: &str = env!("CARGO_BIN_EXE_ado-sync");

/// The Basic credentials every test's `serve` expects.
const USER: &str = "ado";
const SECRET: &str = "s";

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

/// A running `ado-sync serve`; killed when dropped.
struct Serve {
    child: Guard,
    addr: SocketAddr,
}

impl Serve {
    /// Starts `serve` on a free port with only `env` for an environment (plus the webhook
    /// credentials), the local queue in `queue_db`, no periodic resync, and `args`; returns once it
    /// listens. Its log goes to the test's output.
    fn start(queue_db: &Path, env: &[(&str, String)], args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--resync-interval-secs", "0"])
            .arg("--queue-db")
            .arg(queue_db)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("WEBHOOK_USERNAME", USER)
            .env("WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let child = Guard(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                eprintln!("serve: {line}");
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve starts listening (its log is above)");
        Serve { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The most memory the process has held so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id()))
            .expect("serve is still running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// SIGKILL: no chance to finish anything.
    fn kill_9(mut self) {
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }

    fn sigterm(&self) {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.0.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// SIGTERM, then waits for the exit.
    async fn terminate(self) -> ExitStatus {
        self.sigterm();
        self.exit_status().await
    }

    async fn exit_status(mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not stop on SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Open work items of the simulated org, as (project id, work item id), up to `n` (the default
/// mapping keeps open items, so each one a delivery names must land in the catalog).
async fn open_work_items(client: &reqwest::Client, org: &str, n: usize) -> Vec<(String, u64)> {
    let projects: Value = client
        .get(format!("{org}/_apis/projects?api-version=7.1"))
        .basic_auth("", Some("any"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut found = Vec::new();
    for project in projects["value"].as_array().expect("projects") {
        let id = project["id"].as_str().unwrap();
        let name = project["name"].as_str().unwrap();
        let items: Value = client
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
        for wi in items["workItems"].as_array().into_iter().flatten() {
            found.push((id.to_owned(), wi["id"].as_u64().unwrap()));
            if found.len() == n {
                return found;
            }
        }
    }
    assert!(!found.is_empty(), "the simulated org has no open work item");
    found
}

/// The `workitem.updated` sample delivery, about `work_item` of `project_id`, with its own event id
/// `n` (deliveries with one event id are one event to the queue's dedup).
fn delivery(project_id: &str, work_item: u64, n: u32) -> Vec<u8> {
    let path = format!(
        "{}/../events/ado/workitem.updated.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    body["id"] = json!(format!("{n:08x}-7e0f-4c59-9a2b-{work_item:012x}"));
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
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", org.to_owned()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", catalog_db.display().to_string()),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let health = client.get(serve.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let (project_id, work_item) = open_work_items(&client, org, 1).await.remove(0);
    let body = delivery(&project_id, work_item, 1);

    let refused = client
        .post(serve.url("/webhook"))
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
        .post(serve.url("/webhook"))
        .basic_auth(USER, Some(SECRET))
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
            started.elapsed() < Duration::from_secs(30),
            "{identifier} never reached the catalog"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = serve.terminate().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_answers_the_delivery_in_hand_before_exiting() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (_sim, urls) = start_sim();
    let org = urls["ado_org_url"].as_str().unwrap().trim_end_matches('/');
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", org.to_owned()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", dir.path().join("c.db").display().to_string()),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let (project_id, work_item) = open_work_items(&client, org, 1).await.remove(0);
    let body = delivery(&project_id, work_item, 1);
    let (first, rest) = body.split_at(body.len() / 2);

    let mut conn = tokio::net::TcpStream::connect(serve.addr).await.unwrap();
    let token = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{USER}:{SECRET}"),
    );
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: ado-sync\r\nAuthorization: Basic {token}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first).await.unwrap();

    serve.sigterm();
    // A refused connection says the stop has begun: nothing new is taken any more.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(serve.addr).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve kept accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut answer))
        .await
        .expect("answered, then closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    assert_eq!(serve.exit_status().await.code(), Some(0));

    let queue = shared::queue::local::LocalQueue::open(
        &dir.path().join("q.db"),
        shared::queue::local::LocalQueueOptions::default(),
    )
    .unwrap();
    let applied = catalog_has(
        &dir.path().join("c.db"),
        &format!("{project_id}/{work_item}"),
    );
    assert!(
        applied || queue.len().await.unwrap() == 1,
        "the delivery answered 202 is applied, or queued for the next start"
    );
}

#[tokio::test]
async fn serve_claims_a_pending_action_run_runs_its_pipeline_and_refuses_forged_invocations() {
    let (_sim, urls) = start_sim();
    let org = urls["ado_org_url"].as_str().unwrap().trim_end_matches('/');
    let root = org.rsplit_once('/').unwrap().0.to_owned();
    let client = reqwest::Client::new();
    let project = client
        .get(format!("{org}/_apis/projects?api-version=7.1"))
        .basic_auth("", Some("pat"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["value"][0]["name"]
        .clone();
    let created: Value = client
        .post(format!("{root}/_sim/catalog/actions/runs"))
        .json(
            &json!({"action": "trigger_pipeline", "installationId": "serve-actions",
                      "integrationActionType": "trigger_pipeline",
                      "properties": {"project": project, "pipelineId": 1}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = created["id"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", org.to_owned()),
            ("ADO_PAT", "anything".into()),
            (
                "CATALOG_BASE_URL",
                urls["catalog_base_url"].as_str().unwrap().to_owned(),
            ),
            ("CATALOG_CLIENT_ID", "id".into()),
            ("CATALOG_CLIENT_SECRET", "secret".into()),
            ("INTEGRATION_IDENTIFIER", "serve-actions".into()),
            ("INITIALIZE_PORT_RESOURCES", "false".into()),
            ("ACTIONS_ENABLED", "true".into()),
            ("ACTIONS_WEBHOOK_SECRET", "port-secret".into()),
        ],
        &[],
    );
    let forged = client
        .post(serve.url("/actions"))
        .header("x-port-timestamp", "1")
        .header("x-port-signature", "v1,AAAA")
        .body(r#"{"run": {"id": "r_x"}, "inputs": {}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // The claim loop takes the run at once; the consumer starts the simulated pipeline.
    let started = Instant::now();
    loop {
        let runs: Value = client
            .get(format!("{root}/_sim/catalog/actions/runs"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ours = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == run.as_str())
            .cloned()
            .unwrap();
        if ours["externalRunId"].is_string() {
            assert!(ours["externalRunId"].as_str().unwrap().starts_with("ado_"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run was never started: {ours}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(serve.terminate().await.code(), Some(0));
}
