//! Runs - Run Pipeline against the simulator over real HTTP: validation with ADO's error shapes, the run
//! in Runs Get and List, its completion, and the `ms.vss-pipelines.run-state-changed-event` deliveries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ado_sync_sim::RunningSim;
use ado_sync_sim::ado::{AdoSimOptions, OrgSpec};
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

const EVENT: &str = "ms.vss-pipelines.run-state-changed-event";

async fn start_sim(opts: AdoSimOptions) -> RunningSim {
    ado_sync_sim::start(
        "127.0.0.1:0".parse().unwrap(),
        OrgSpec::small(),
        opts,
        Default::default(),
    )
    .await
    .unwrap()
}

/// A subscriber that records every delivery body.
#[derive(Clone, Default)]
struct Subscriber {
    received: Arc<Mutex<Vec<Value>>>,
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

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(State(s): State<Subscriber>, axum::Json(body): axum::Json<Value>) -> StatusCode {
    s.received.lock().unwrap().push(body);
    StatusCode::OK
}

/// Subscribes `url` to run-state-changed events of every project.
async fn subscribe(sim: &RunningSim, url: &str) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/_apis/hooks/subscriptions?api-version=7.1",
            sim.ado_org_url()
        ))
        .json(&json!({
            "publisherId": "pipelines",
            "eventType": EVENT,
            "consumerId": "webHooks",
            "consumerActionId": "httpRequest",
            "consumerInputs": {"url": url},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The first pipeline of the first project and its repository's default branch.
async fn pipeline(sim: &RunningSim) -> (String, u64, String) {
    let project = sim.ado.project_ids()[0].clone();
    let list = get(sim, &format!("/{project}/_apis/pipelines?api-version=7.1")).await;
    let id = list.1["value"][0]["id"].as_u64().unwrap();
    let def = get(
        sim,
        &format!("/{project}/_apis/build/definitions/{id}?api-version=7.1"),
    )
    .await;
    let branch = def.1["repository"]["defaultBranch"]
        .as_str()
        .unwrap()
        .to_owned();
    (project, id, branch)
}

async fn get(sim: &RunningSim, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{}{path}", sim.ado_org_url()))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn run(sim: &RunningSim, project: &str, pipeline: u64, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/{project}/_apis/pipelines/{pipeline}/runs?api-version=7.1",
            sim.ado_org_url()
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn body(branch: &str) -> Value {
    json!({
        "resources": {"repositories": {"self": {"refName": branch}}},
        "templateParameters": {"environment": "staging", "dryRun": true},
        "variables": {
            "greeting": {"value": "hello"},
            "token": {"value": "s3cret", "isSecret": true},
        },
    })
}

#[tokio::test]
async fn a_started_run_is_served_completes_and_is_delivered_twice() {
    let sim = start_sim(AdoSimOptions::default()).await;
    let (subscriber, url) = Subscriber::start().await;
    subscribe(&sim, &url).await;
    let (project, pid, branch) = pipeline(&sim).await;

    let (status, v) = run(&sim, &project, pid, body(&branch)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "inProgress");
    assert!(v.get("result").is_none());
    let id = v["id"].as_u64().unwrap();
    let web = v["_links"]["web"]["href"].as_str().unwrap();
    assert!(
        web.ends_with(&format!("/_build/results?buildId={id}")),
        "{web}"
    );
    assert_eq!(v["pipeline"]["id"], pid);
    assert!(v["pipeline"]["revision"].is_u64() && v["pipeline"]["folder"].is_string());
    assert!(v["_links"]["pipeline.web"]["href"].is_string());
    assert_eq!(v["resources"]["repositories"]["self"]["refName"], branch);
    assert_eq!(v["templateParameters"]["environment"], "staging");
    assert_eq!(v["variables"]["greeting"]["value"], "hello");
    assert_eq!(v["variables"]["token"], json!({"isSecret": true}));
    assert!(!v.to_string().contains("s3cret"));

    // Above every generated run; GET and the list show it, newest first.
    let list = get(
        &sim,
        &format!("/{project}/_apis/pipelines/{pid}/runs?api-version=7.1"),
    )
    .await
    .1;
    assert_eq!(list["value"][0]["id"], id);
    assert!(
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|r| r["id"].as_u64().unwrap() < id)
    );
    let one = get(
        &sim,
        &format!("/{project}/_apis/pipelines/{pid}/runs/{id}?api-version=7.1"),
    )
    .await;
    assert_eq!(one.0, 200);
    assert_eq!(one.1["state"], "inProgress");

    // After the configured 300 ms it completes with the configured result.
    let deliveries = sim.ado.wait_for_deliveries(2, Duration::from_secs(5)).await;
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.event_type == EVENT));
    let one = get(
        &sim,
        &format!("/{project}/_apis/pipelines/{pid}/runs/{id}?api-version=7.1"),
    )
    .await
    .1;
    assert_eq!(one["state"], "completed");
    assert_eq!(one["result"], "succeeded");
    assert!(one["finishedDate"].is_string());

    let mut received = subscriber.received();
    received.sort_by_key(|b| b["notificationId"].as_u64());
    let states: Vec<(Value, Value)> = received
        .iter()
        .map(|b| {
            (
                b["resource"]["run"]["state"].clone(),
                b["resource"]["run"]["result"].clone(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (json!("inProgress"), Value::Null),
            (json!("completed"), json!("succeeded"))
        ]
    );
    let done = &received[1];
    assert_eq!(done["eventType"], EVENT);
    assert_eq!(done["publisherId"], "pipelines");
    assert_eq!(done["resourceVersion"], "5.1-preview.1");
    assert_eq!(
        done["resourceContainers"]["project"]["id"],
        project.as_str()
    );
    assert!(done["resourceContainers"]["account"]["id"].is_string());
    assert!(done["resourceContainers"]["collection"]["id"].is_string());
    let r = &done["resource"];
    assert_eq!(r["run"]["id"], id);
    assert!(r["run"]["name"].is_string() && r["run"]["finishedDate"].is_string());
    assert!(
        r["run"]["_links"]["web"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("buildId={id}"))
    );
    assert_eq!(r["run"]["pipeline"]["id"], pid);
    assert_eq!(r["pipeline"]["id"], pid);
    for key in ["url", "name", "folder", "revision"] {
        assert!(!r["pipeline"][key].is_null(), "{key}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn run_pipeline_validates_like_ado() {
    let sim = start_sim(AdoSimOptions::default()).await;
    let (project, pid, branch) = pipeline(&sim).await;

    let (status, v) = run(&sim, &project, 999_999, body(&branch)).await;
    assert_eq!(status, 404);
    assert_eq!(v["typeKey"], "PipelineNotFoundException");

    let (status, v) = run(&sim, "NoSuchProject", pid, body(&branch)).await;
    assert_eq!(status, 404);
    assert_eq!(v["typeKey"], "ProjectDoesNotExistWithNameException");

    let (status, v) = run(&sim, &project, pid, body("refs/heads/no-such-branch")).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["message"],
        "Unable to resolve the reference 'refs/heads/no-such-branch' to a specific version. Verify the reference exists in the source repository."
    );
    let (status, _) = run(&sim, &project, pid, body("main")).await;
    assert_eq!(status, 400, "a bare branch name is not a ref");

    let mut b = body(&branch);
    b["templateParameters"]["region"] = json!("eu");
    let (status, v) = run(&sim, &project, pid, b).await;
    assert_eq!(status, 400);
    assert_eq!(v["message"], "Unexpected parameter 'region'");
    assert_eq!(v["typeKey"], "PipelineValidationException");

    let mut b = body(&branch);
    b["templateParameters"]["environment"] = json!({"nested": 1});
    assert_eq!(run(&sim, &project, pid, b).await.0, 400);
    let mut b = body(&branch);
    b["templateParameters"]["dryRun"] = json!("maybe");
    assert_eq!(run(&sim, &project, pid, b).await.0, 400);

    // Variables must be wrapped as `{"value": …}`; bare values do not bind.
    let mut b = body(&branch);
    b["variables"] = json!({"greeting": "hello"});
    let (status, v) = run(&sim, &project, pid, b).await;
    assert_eq!(status, 400);
    assert_eq!(v["typeKey"], "ArgumentNullException");
    let mut b = body(&branch);
    b["variables"] = json!({"greeting": {"value": "hello"}});
    assert_eq!(run(&sim, &project, pid, b).await.0, 200);

    // No refName: the default branch; a tag resolves too; the project by name works.
    let name = get(&sim, &format!("/_apis/projects/{project}?api-version=7.1"))
        .await
        .1["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = run(&sim, &name, pid, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(v["resources"]["repositories"]["self"]["refName"], branch);
    assert_eq!(
        run(&sim, &project, pid, body("refs/tags/v1.0")).await.0,
        200
    );

    // Only the three accepted requests started runs; each id is unique.
    let started = sim.ado.started_runs();
    assert_eq!(started.len(), 3);
    let mut ids: Vec<u64> = started
        .iter()
        .map(|s| s["runId"].as_u64().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);

    // The route is counted like the others.
    assert_eq!(
        sim.ado.request_counts()["POST /{project}/_apis/pipelines/{pipelineId}/runs"],
        11
    );
    sim.stop().await;
}

#[tokio::test]
async fn complete_run_publishes_the_given_result_and_started_runs_records_the_body() {
    let sim = start_sim(AdoSimOptions {
        pipeline_run_duration: None,
        ..Default::default()
    })
    .await;
    let (subscriber, url) = Subscriber::start().await;
    subscribe(&sim, &url).await;
    let (project, pid, branch) = pipeline(&sim).await;
    let sent = body(&branch);
    let (status, v) = run(&sim, &project, pid, sent.clone()).await;
    assert_eq!(status, 200);
    let id = v["id"].as_u64().unwrap();

    let started = sim.ado.started_runs();
    assert_eq!(
        started,
        vec![json!({"projectId": project, "pipelineId": pid, "runId": id, "body": sent})]
    );

    // Without a duration the run stays in progress.
    sim.ado.wait_for_deliveries(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sim.ado.deliveries().len(), 1);

    assert!(!sim.ado.complete_run(id, "exploded"));
    assert!(!sim.ado.complete_run(id + 1, "canceled"));
    assert!(sim.ado.complete_run(id, "canceled"));
    assert!(!sim.ado.complete_run(id, "succeeded"), "already completed");
    sim.ado.wait_for_deliveries(2, Duration::from_secs(5)).await;
    let last = subscriber
        .received()
        .into_iter()
        .max_by_key(|b| b["notificationId"].as_u64())
        .unwrap();
    assert_eq!(last["resource"]["run"]["state"], "completed");
    assert_eq!(last["resource"]["run"]["result"], "canceled");
    let one = get(
        &sim,
        &format!("/{project}/_apis/pipelines/{pid}/runs/{id}?api-version=7.1"),
    )
    .await
    .1;
    assert_eq!(one["result"], "canceled");
    sim.stop().await;
}

#[tokio::test]
async fn the_control_endpoints_list_and_complete_runs() {
    let sim = start_sim(AdoSimOptions {
        pipeline_run_duration: None,
        ..Default::default()
    })
    .await;
    let (project, pid, branch) = pipeline(&sim).await;
    let id = run(&sim, &project, pid, body(&branch)).await.1["id"]
        .as_u64()
        .unwrap();
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("http://{}/_sim/pipelines/runs", sim.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["value"][0]["runId"], id);
    let complete = |id: u64, result: &'static str| {
        let http = http.clone();
        let url = format!("http://{}/_sim/pipelines/runs/{id}/complete", sim.addr);
        async move {
            http.post(url)
                .json(&json!({"result": result}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(complete(id, "nope").await, 400);
    assert_eq!(complete(id + 7, "failed").await, 404);
    assert_eq!(complete(id, "failed").await, 204);
    let one = get(
        &sim,
        &format!("/{project}/_apis/pipelines/{pid}/runs/{id}?api-version=7.1"),
    )
    .await
    .1;
    assert_eq!(
        (one["state"].clone(), one["result"].clone()),
        (json!("completed"), json!("failed"))
    );
    sim.stop().await;
}
