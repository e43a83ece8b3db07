//! Service hooks end to end: the subscription reconcile against the simulator over real HTTP, and the
//! simulator's event deliveries to a subscriber.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ado_sync_sim::RunningSim;
use ado_sync_sim::ado::{AdoSimOptions, OrgSpec};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use shared::ado::hooks::{self, SubscriptionReport, SubscriptionSettings};
use shared::ado::kinds::FetchContext;
use shared::ado::{AdoClient, AdoClientConfig, OrgUrl, Request};

async fn start_sim() -> RunningSim {
    ado_sync_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        OrgSpec::small(),
        AdoSimOptions::default(),
        Default::default(),
    )
    .await
    .unwrap()
}

fn client(sim: &RunningSim) -> AdoClient {
    let mut cfg = AdoClientConfig::new(
        OrgUrl::parse(&sim.ado_org_url()).unwrap(),
        SecretString::from("pat".to_owned()),
    );
    cfg.max_retries = 1;
    AdoClient::new(cfg).unwrap()
}

fn settings(vars: &[(&str, &str)]) -> SubscriptionSettings {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    SubscriptionSettings::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .unwrap()
}

async fn sync(sim: &RunningSim, s: &SubscriptionSettings) -> SubscriptionReport {
    let ctx = FetchContext::new(client(sim), vec![]);
    let report = hooks::sync_subscriptions(&ctx, s).await;
    assert!(report.succeeded(), "{}", report.render());
    report
}

/// Events the simulator (Azure DevOps Server form) accepts from the catalogue.
fn server_events() -> usize {
    hooks::CATALOGUE.iter().filter(|e| !e.cloud_only).count()
}

async fn list(sim: &RunningSim, publisher: &str, event: &str) -> Vec<Value> {
    let reply = client(sim)
        .send(
            &Request::get("/_apis/hooks/subscriptions")
                .query("publisherId", publisher)
                .query("eventType", event),
        )
        .await
        .unwrap();
    reply.body["value"].as_array().cloned().unwrap_or_default()
}

/// A subscriber: records every delivery and answers the scripted statuses first, then 200.
#[derive(Clone, Default)]
struct Subscriber {
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Subscriber {
    async fn start() -> (Self, String) {
        let sub = Subscriber::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(sub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (sub, url)
    }

    fn received(&self) -> Vec<(HeaderMap, Value)> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(
    State(s): State<Subscriber>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    s.received.lock().unwrap().push((headers, body));
    let next = s.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(next).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn fields(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
async fn a_first_sync_creates_every_subscription_and_a_second_changes_nothing() {
    let sim = start_sim().await;
    let s = settings(&[("WEBHOOK_URL", "https://hooks.example.com/webhook")]);

    let first = sync(&sim, &s).await;
    let (created, updated, deleted, unchanged, _) = first.totals();
    assert_eq!(
        (created, updated, deleted, unchanged),
        (server_events(), 0, 0, 0)
    );
    // Release subscriptions are reached through the release host, which on a server is the collection.
    let rm = list(&sim, "rm", "ms.vss-release.release-created-event").await;
    assert_eq!(rm.len(), 1);
    assert_eq!(rm[0]["resourceVersion"], "3.0-preview.1");
    assert_eq!(
        rm[0]["consumerInputs"]["url"],
        "https://hooks.example.com/webhook?integration=ado-sync"
    );

    let second = sync(&sim, &s).await;
    let (created, updated, deleted, unchanged, _) = second.totals();
    assert_eq!(
        (created, updated, deleted, unchanged),
        (0, 0, 0, server_events())
    );

    // Listing is always filtered: the unfiltered list times out on large orgs.
    assert_eq!(sim.ado.unfiltered_subscription_lists(), 0);
    let counts = sim.ado.request_counts();
    assert_eq!(
        counts.get("GET /_apis/hooks/subscriptions").copied(),
        Some(2 * server_events() as u64 + 1),
        "{counts:?}"
    );
    assert_eq!(
        counts.get("POST /_apis/hooks/subscriptions").copied(),
        Some(server_events() as u64)
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_dry_run_reports_without_changing_anything() {
    let sim = start_sim().await;
    let s = settings(&[("WEBHOOK_URL", "https://hooks.example.com/webhook")]);
    let ctx = FetchContext::new(client(&sim), vec![]);
    let report = hooks::preview_subscriptions(&ctx, &s).await;
    assert!(report.dry_run && report.succeeded());
    assert_eq!(report.totals().0, server_events());
    assert!(list(&sim, "tfs", "git.push").await.is_empty());
    assert!(
        !sim.ado
            .request_counts()
            .contains_key("POST /_apis/hooks/subscriptions")
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_replaces_ours_and_deliveries_carry_the_new_one() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    let old = settings(&[
        ("WEBHOOK_URL", &url),
        ("WEBHOOK_SECRET", "old-secret"),
        ("WEBHOOK_HEADER_NAME", "X-Hook-Key"),
        ("WEBHOOK_HEADER_SECRET", "old-key"),
    ]);
    sync(&sim, &old).await;
    let pushed = list(&sim, "tfs", "git.push").await;
    assert_eq!(pushed[0]["consumerInputs"]["basicAuthPassword"], "********");
    // Unchanged credentials change nothing, although ADO shows them masked.
    let puts = |sim: &RunningSim| {
        sim.ado
            .request_counts()
            .get("PUT /_apis/hooks/subscriptions/{subscriptionId}")
            .copied()
            .unwrap_or(0)
    };
    let again = sync(&sim, &old).await;
    let (created, updated, deleted, unchanged, _) = again.totals();
    assert_eq!(
        (created, updated, deleted, unchanged),
        (0, 0, 0, server_events())
    );
    assert_eq!(puts(&sim), 0);
    assert_eq!(
        pushed[0]["consumerInputs"]["httpHeaders"],
        "X-Hook-Key:********"
    );

    let new = settings(&[
        ("WEBHOOK_URL", &url),
        ("WEBHOOK_SECRET", "new-secret"),
        ("WEBHOOK_HEADER_NAME", "X-Hook-Key"),
        ("WEBHOOK_HEADER_SECRET", "new-key"),
    ]);
    let report = sync(&sim, &new).await;
    let (created, updated, deleted, _, _) = report.totals();
    assert_eq!((created, updated, deleted), (0, server_events(), 0));
    // The same subscription, replaced in place.
    assert_eq!(
        list(&sim, "tfs", "git.push").await[0]["id"],
        pushed[0]["id"]
    );

    let id = sim.ado.work_item_ids(&sim.ado.project_ids()[0])[0];
    assert!(
        sim.ado
            .update_work_item(id, fields(&[("System.Title", json!("Rotated"))]))
    );
    let deliveries = sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].status, Some(200));
    let received = subscriber.received();
    let (headers, _) = &received[0];
    assert_eq!(
        headers["authorization"].to_str().unwrap(),
        basic(hooks::DEFAULT_WEBHOOK_USERNAME, "new-secret")
    );
    assert_eq!(headers["x-hook-key"], "new-key");
    sim.stop().await;
}

#[tokio::test]
async fn a_moved_webhook_or_scope_replaces_and_removes_ours_and_leaves_others_alone() {
    let sim = start_sim().await;
    let c = client(&sim);
    let foreign = c
        .send(&Request::post(
            "/_apis/hooks/subscriptions",
            json!({
                "publisherId": "tfs", "eventType": "git.push", "resourceVersion": "1.0",
                "consumerId": "webHooks", "consumerActionId": "httpRequest",
                "consumerInputs": {"url": "https://someone-else.example/hook"},
            }),
        ))
        .await
        .unwrap()
        .body;

    sync(
        &sim,
        &settings(&[("WEBHOOK_URL", "https://old-gateway.example/webhook")]),
    )
    .await;
    let moved = sync(
        &sim,
        &settings(&[("WEBHOOK_URL", "https://new-gateway.example/prod/webhook")]),
    )
    .await;
    let (created, updated, deleted, _, _) = moved.totals();
    assert_eq!((created, updated, deleted), (0, server_events(), 0));

    // Per project: the org-wide ones go, one per project arrives.
    let per_project = sync(
        &sim,
        &settings(&[
            ("WEBHOOK_URL", "https://new-gateway.example/prod/webhook"),
            ("SUBSCRIPTIONS_SCOPE", "project"),
        ]),
    )
    .await;
    let projects = sim.ado.project_ids().len();
    let (created, updated, deleted, _, _) = per_project.totals();
    assert_eq!(
        (created, updated, deleted),
        (server_events() * projects, 0, server_events())
    );

    let pushes = list(&sim, "tfs", "git.push").await;
    assert_eq!(pushes.len(), projects + 1);
    let still = pushes.iter().find(|s| s["id"] == foreign["id"]).unwrap();
    assert_eq!(
        still["consumerInputs"]["url"],
        "https://someone-else.example/hook"
    );
    assert!(
        pushes
            .iter()
            .filter(|s| s["id"] != foreign["id"])
            .all(|s| s["consumerInputs"]["url"]
                == "https://new-gateway.example/prod/webhook?integration=ado-sync"
                && s["publisherInputs"]["projectId"].is_string())
    );
    sim.stop().await;
}

#[tokio::test]
async fn a_subscription_disabled_by_the_system_is_re_enabled() {
    let sim = start_sim().await;
    let s = settings(&[("WEBHOOK_URL", "https://hooks.example.com/webhook")]);
    sync(&sim, &s).await;
    let id = list(&sim, "tfs", "workitem.updated").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(sim.ado.set_subscription_status(&id, "disabledBySystem"));

    let report = sync(&sim, &s).await;
    let wi = report
        .events
        .iter()
        .find(|e| e.event_type == "workitem.updated")
        .unwrap();
    assert_eq!((wi.updated, wi.created, wi.deleted), (1, 0, 0));
    assert_eq!(report.totals().1, 1);
    let after = list(&sim, "tfs", "workitem.updated").await;
    assert_eq!(after[0]["id"], id.as_str());
    assert_eq!(after[0]["status"], "enabled");
    sim.stop().await;
}

#[tokio::test]
async fn a_failing_event_is_reported_and_the_others_still_sync() {
    let sim = start_sim().await;
    sim.ado
        .fail_requests("eventType=workitem.deleted", 500, None);
    let ctx = FetchContext::new(client(&sim), vec![]);
    let s = settings(&[("WEBHOOK_URL", "https://hooks.example.com/webhook")]);
    let report = hooks::sync_subscriptions(&ctx, &s).await;
    assert!(!report.succeeded());
    let failed: Vec<_> = report.events.iter().filter(|e| e.failed > 0).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].event_type, "workitem.deleted");
    assert_eq!(report.totals().0, server_events() - 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_subscriptions_api_validates_like_ado() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    let base = format!("{}/_apis/hooks/subscriptions", sim.ado_org_url());
    let post = |body: Value| {
        http.post(format!("{base}?api-version=7.1"))
            .json(&body)
            .send()
    };
    let valid = json!({
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0",
        "consumerId": "webHooks", "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": sim.ado.project_ids()[0]},
        "consumerInputs": {"url": "https://x.example/h", "basicAuthUsername": "u", "basicAuthPassword": "p"},
    });
    for (field, bad) in [
        ("eventType", json!("no.such.event")),
        ("publisherId", json!("nobody")),
        ("consumerInputs", json!({})),
        (
            "publisherInputs",
            json!({"projectId": "00000000-0000-4000-8000-000000000000"}),
        ),
    ] {
        let mut body = valid.clone();
        body[field] = bad;
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 400, "{field}");
        let err: Value = r.json().await.unwrap();
        assert!(err["message"].is_string(), "{err}");
    }
    let created: Value = post(valid.clone()).await.unwrap().json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["consumerInputs"]["basicAuthPassword"], "********");
    assert!(created["createdBy"]["displayName"].is_string());
    assert!(created["url"].as_str().unwrap().ends_with(id));

    // Azure DevOps serves a GET without api-version; a DELETE must name one.
    let no_version = http.get(format!("{base}/{id}")).send().await.unwrap();
    assert_eq!(no_version.status(), 200);
    let no_version = http.delete(format!("{base}/{id}")).send().await.unwrap();
    assert_eq!(no_version.status(), 400);
    let got = http
        .get(format!("{base}/{id}?api-version=7.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let deleted = http
        .delete(format!("{base}/{id}?api-version=7.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = http
        .get(format!("{base}/{id}?api-version=7.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Only a list without publisher and event filters counts as unfiltered.
    http.get(format!("{base}?api-version=7.1&publisherId=tfs"))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.ado.unfiltered_subscription_lists(), 0);
    http.get(format!("{base}?api-version=7.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(sim.ado.unfiltered_subscription_lists(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_work_item_update_is_delivered_real_shaped_with_basic_auth() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    sync(
        &sim,
        &settings(&[
            ("WEBHOOK_URL", &url),
            ("WEBHOOK_USERNAME", "ado"),
            ("WEBHOOK_SECRET", "hook-secret"),
        ]),
    )
    .await;
    let project = sim.ado.project_ids()[0].clone();
    let id = sim.ado.work_item_ids(&project)[0];
    assert!(sim.ado.update_work_item(
        id,
        fields(&[
            ("System.State", json!("Closed")),
            ("System.Title", json!("New title"))
        ])
    ));
    let deliveries = sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event_type, "workitem.updated");
    assert_eq!(deliveries[0].attempts, 1);

    let received = subscriber.received();
    let (headers, body) = &received[0];
    assert_eq!(
        headers["authorization"].to_str().unwrap(),
        basic("ado", "hook-secret")
    );
    assert_eq!(body["eventType"], "workitem.updated");
    assert_eq!(body["publisherId"], "tfs");
    assert_eq!(body["resourceVersion"], "1.0");
    assert_eq!(
        body["subscriptionId"],
        deliveries[0].subscription_id.as_str()
    );
    assert_eq!(body["notificationId"], 1);
    assert_eq!(body["id"], deliveries[0].event_id.as_str());
    assert!(body["createdDate"].is_string());
    // messagesToSend/detailedMessagesToSend are "none".
    assert!(body.get("message").is_none() && body.get("detailedMessage").is_none());
    let containers = &body["resourceContainers"];
    assert_eq!(containers["project"]["id"], project.as_str());
    let org_url = format!("{}/", sim.ado_org_url());
    assert_eq!(containers["account"]["baseUrl"], org_url.as_str());
    assert!(containers["collection"]["id"].is_string());

    let r = &body["resource"];
    assert_eq!(r["workItemId"], id);
    let rev = r["rev"].as_u64().unwrap();
    assert_eq!(r["revision"]["rev"], rev);
    assert_eq!(r["revision"]["id"], id);
    assert_eq!(r["revision"]["fields"]["System.Title"], "New title");
    assert_eq!(r["revision"]["fields"]["System.Rev"], rev);
    assert_eq!(r["fields"]["System.Title"]["newValue"], "New title");
    assert!(r["fields"]["System.Title"]["oldValue"].is_string());
    assert_eq!(r["fields"]["System.Rev"]["oldValue"], rev - 1);
    assert!(
        r["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/_apis/wit/workItems/{id}/updates/{rev}"))
    );
    // The current item matches the delivered revision.
    let item = client(&sim)
        .get(format!("/_apis/wit/workitems/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(item["rev"], rev);
    sim.stop().await;
}

#[tokio::test]
async fn a_503_from_the_subscriber_is_retried() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    subscriber.script.lock().unwrap().extend([503, 503]);
    sync(&sim, &settings(&[("WEBHOOK_URL", &url)])).await;
    let id = sim.ado.work_item_ids(&sim.ado.project_ids()[1])[0];
    sim.ado
        .update_work_item(id, fields(&[("System.Title", json!("x"))]));
    let deliveries = sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(deliveries[0].status, Some(200));
    assert_eq!(deliveries[0].attempts, 3);
    let received = subscriber.received();
    assert_eq!(received.len(), 3);
    // The same notification each time: a retry, not a new event.
    assert!(received.iter().all(|(_, b)| b["id"] == received[0].1["id"]));
    sim.stop().await;
}

#[tokio::test]
async fn a_subscriber_answering_410_gets_its_subscription_disabled() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    subscriber.script.lock().unwrap().push_back(410);
    sync(&sim, &settings(&[("WEBHOOK_URL", &url)])).await;
    let id = sim.ado.work_item_ids(&sim.ado.project_ids()[0])[0];
    sim.ado
        .update_work_item(id, fields(&[("System.Title", json!("x"))]));
    let deliveries = sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(
        (deliveries[0].status, deliveries[0].attempts),
        (Some(410), 1)
    );
    assert_eq!(
        list(&sim, "tfs", "workitem.updated").await[0]["status"],
        "disabledBySystem"
    );
    sim.stop().await;
}

#[tokio::test]
async fn deletes_and_pushes_are_delivered_to_matching_subscriptions_only() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    // Per project: only the removed item's project subscription may receive the delete.
    sync(
        &sim,
        &settings(&[("WEBHOOK_URL", &url), ("SUBSCRIPTIONS_SCOPE", "project")]),
    )
    .await;
    let project = sim.ado.project_ids()[2].clone();
    let item = sim.ado.work_item_ids(&project)[0];
    let repo = sim.ado.repository_ids(&project)[0].clone();

    assert!(sim.ado.remove_work_item(item));
    assert!(sim.ado.push(&repo, "main"));
    assert!(sim.ado.remove_repository(&repo));
    let deliveries = sim.ado.wait_for_deliveries(3, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");

    let received = subscriber.received();
    let by_type = |t: &str| {
        received
            .iter()
            .find(|(_, b)| b["eventType"] == t)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no {t}"))
    };
    let deleted = by_type("workitem.deleted");
    assert_eq!(deleted["resource"]["id"], item);
    assert!(deleted["resource"]["fields"]["System.Title"].is_string());
    assert!(
        deleted["resource"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/_apis/wit/recyclebin/{item}"))
    );
    assert_eq!(
        deleted["resourceContainers"]["project"]["id"],
        project.as_str()
    );

    let push = by_type("git.push");
    assert_eq!(push["resource"]["repository"]["id"], repo.as_str());
    assert_eq!(push["resource"]["refUpdates"][0]["name"], "refs/heads/main");
    assert_eq!(
        push["resource"]["refUpdates"][0]["newObjectId"]
            .as_str()
            .unwrap()
            .len(),
        40
    );
    assert_eq!(
        push["resource"]["commits"][0]["commitId"],
        push["resource"]["refUpdates"][0]["newObjectId"]
    );

    let gone = by_type("git.repo.deleted");
    assert_eq!(gone["resource"]["repositoryId"], repo.as_str());
    assert_eq!(gone["resource"]["projectId"], project.as_str());
    sim.stop().await;
}

#[tokio::test]
async fn mutations_without_subscribers_deliver_nothing() {
    let sim = start_sim().await;
    let id = sim.ado.work_item_ids(&sim.ado.project_ids()[0])[0];
    assert!(
        sim.ado
            .update_work_item(id, fields(&[("System.Title", json!("quiet"))]))
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sim.ado.deliveries().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn the_control_endpoints_push_and_show_deliveries() {
    let sim = start_sim().await;
    let (subscriber, url) = Subscriber::start().await;
    sync(&sim, &settings(&[("WEBHOOK_URL", &url)])).await;
    let repo = sim.ado.repository_ids(&sim.ado.project_ids()[0])[0].clone();
    let http = reqwest::Client::new();
    let pushed = http
        .post(format!("http://{}/_sim/repositories/{repo}/push", sim.addr))
        .json(&json!({"branch": "feature/x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 204);
    sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    let log: Value = http
        .get(format!("http://{}/_sim/deliveries", sim.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log["count"], 1);
    assert_eq!(log["value"][0]["eventType"], "git.push");
    assert_eq!(log["value"][0]["status"], 200);
    assert_eq!(
        subscriber.received()[0].1["resource"]["refUpdates"][0]["name"],
        "refs/heads/feature/x"
    );
    sim.stop().await;
}
