//! A `serve` killed with SIGKILL while deliveries stream in loses none it acknowledged: the restart
//! applies every one of them to the catalog.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sim::ado::{AdoSimOptions, OrgSpec};
use tokio::sync::Notify;

use super::{SECRET, Serve, USER, delivery, open_work_items};

/// Deliveries answered 2xx before the kill.
const BEFORE_KILL: usize = 15;
/// Deliveries sent in all (those after the kill fail to connect, or are cut off mid-way).
const DELIVERIES: usize = 40;

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_while_deliveries_stream_in_loses_no_acknowledged_delivery() {
    // Each Azure DevOps read takes a while, so the consumer lags behind the webhook and the kill
    // finds deliveries queued but not applied yet.
    let sim = sim::start(
        "127.0.0.1:0".parse().unwrap(),
        OrgSpec::small(),
        AdoSimOptions {
            latency: Duration::from_millis(40),
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue_db = dir.path().join("q.db");
    let env: Vec<(&str, String)> = sim.settings_env().into_iter().collect();
    let serve = Serve::start(&queue_db, &env, &[]);
    let client = reqwest::Client::new();
    let items = open_work_items(&client, &sim.ado_org_url(), DELIVERIES).await;
    assert!(
        items.len() >= BEFORE_KILL * 2,
        "{} open work items",
        items.len()
    );

    // Four clients stream the deliveries; the kill comes once BEFORE_KILL of them were acknowledged,
    // while the others are still being sent.
    let acknowledged = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let answered = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url, items) = (client.clone(), serve.url("/webhook"), items.clone());
        let (acknowledged, answered, enough, next) = (
            acknowledged.clone(),
            answered.clone(),
            enough.clone(),
            next.clone(),
        );
        senders.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some((project_id, work_item)) = items.get(n) else {
                    return;
                };
                let sent = client
                    .post(&url)
                    .basic_auth(USER, Some(SECRET))
                    .body(delivery(project_id, *work_item, n as u32))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    acknowledged
                        .lock()
                        .unwrap()
                        .insert(format!("{project_id}/{work_item}"));
                    if answered.fetch_add(1, Ordering::SeqCst) + 1 == BEFORE_KILL {
                        enough.notify_one();
                    }
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(60), enough.notified())
        .await
        .expect("deliveries are acknowledged");
    serve.kill_9();
    tokio::time::timeout(Duration::from_secs(60), senders.join_all())
        .await
        .expect("the senders give up once serve is gone");

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= BEFORE_KILL);
    let applied_before_restart = applied(&sim, &acknowledged).len();
    eprintln!(
        "{} deliveries acknowledged, {applied_before_restart} applied before the restart",
        acknowledged.len()
    );

    let _restarted = Serve::start(&queue_db, &env, &[]);
    let started = Instant::now();
    loop {
        let missing: Vec<_> = acknowledged
            .difference(&applied(&sim, &acknowledged))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "acknowledged but never applied: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The work items of `keys` that are in the simulator's catalog.
fn applied(sim: &sim::RunningSim, keys: &BTreeSet<String>) -> BTreeSet<String> {
    sim.catalog
        .store()
        .list(Some("azureDevopsWorkItem"))
        .unwrap()
        .into_iter()
        .map(|e| e.identifier)
        .filter(|id| keys.contains(id))
        .collect()
}
