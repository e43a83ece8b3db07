//! The action-run API over HTTP: the pull model's claim, ack and reports, and the push model's signed
//! webhook invocation.

use std::time::Duration;

use serde_json::{Value, json};

use super::{TestCatalog, spawn};
use crate::catalog::{CatalogSimOptions, NewActionRun, sign_webhook};

/// A raw HTTP client with a token, for the routes the Port client does not call.
struct Api {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    async fn new(t: &TestCatalog) -> Self {
        let http = reqwest::Client::new();
        let base = t.base.as_str().to_owned();
        let token: Value = http
            .post(format!("{base}/v1/auth/access_token"))
            .json(&json!({"clientId": "a", "clientSecret": "b"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let auth = format!("Bearer {}", token["accessToken"].as_str().unwrap());
        Self { http, base, auth }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn claim(&self, installation: &str, visibility_ms: u64) -> Vec<String> {
        let (status, body) = self
            .call(
                "POST",
                "/v1/actions/runs/claim-pending",
                Some(json!({"installationId": installation, "limit": 10, "visibilityTimeoutMs": visibility_ms})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn integration_run(installation: &str) -> NewActionRun {
    NewActionRun {
        action: "trigger_pipeline".into(),
        installation_id: Some(installation.into()),
        integration_action_type: "trigger_pipeline".into(),
        properties: json!({"project": "p1", "pipelineId": 7}),
    }
}

#[tokio::test]
async fn claim_hands_out_the_installations_pending_runs_and_hides_them_for_the_visibility_timeout()
{
    let t = spawn(CatalogSimOptions::default()).await;
    let api = Api::new(&t).await;
    let mine = t.sim.create_action_run(integration_run("ado"));
    t.sim.create_action_run(integration_run("other"));
    t.sim.create_action_run(NewActionRun {
        installation_id: None,
        ..integration_run("ado")
    });
    assert!(mine.starts_with("r_") && mine.len() == 18, "{mine}");
    assert!(
        mine[2..]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );

    let (status, body) = api
        .call(
            "POST",
            "/v1/actions/runs/claim-pending",
            Some(json!({"installationId": "ado", "visibilityTimeoutMs": 50})),
        )
        .await;
    assert_eq!(status, 200);
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{body}");
    let run = &runs[0];
    assert_eq!(run["id"], mine.as_str());
    assert_eq!(run["status"], "IN_PROGRESS");
    assert_eq!(run["action"]["identifier"], "trigger_pipeline");
    assert_eq!(run["payload"]["type"], "INTEGRATION_ACTION");
    assert_eq!(run["payload"]["installationId"], "ado");
    assert_eq!(run["payload"]["integrationActionType"], "trigger_pipeline");
    assert_eq!(
        run["payload"]["integrationActionExecutionProperties"]["pipelineId"],
        7
    );
    assert_eq!(run["properties"]["project"], "p1");

    // Hidden until the visibility timeout passes, then handed out again (no ack came).
    assert!(api.claim("ado", 50).await.is_empty());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(api.claim("ado", 30_000).await, vec![mine.clone()]);
    assert!(api.claim("ado", 30_000).await.is_empty());

    let (status, _) = api
        .call(
            "POST",
            "/v1/actions/runs/claim-pending",
            Some(json!({"limit": 1})),
        )
        .await;
    assert_eq!(status, 422, "installationId is required");
    assert_eq!(
        t.sim.request_count("POST /v1/actions/runs/claim-pending"),
        5
    );
}

#[tokio::test]
async fn an_acked_run_is_no_longer_claimed_and_a_second_ack_is_a_conflict() {
    let t = spawn(CatalogSimOptions::default()).await;
    let api = Api::new(&t).await;
    let id = t.sim.create_action_run(integration_run("ado"));
    assert_eq!(api.claim("ado", 10).await, vec![id.clone()]);
    let (status, body) = api
        .call("PATCH", "/v1/actions/runs/ack", Some(json!({"runId": id})))
        .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let (status, body) = api
        .call("PATCH", "/v1/actions/runs/ack", Some(json!({"runId": id})))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"], "run_already_acknowledged");
    let (status, body) = api
        .call(
            "PATCH",
            "/v1/actions/runs/ack",
            Some(json!({"runId": "r_nope"})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");

    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(api.claim("ado", 10).await.is_empty(), "acked: never again");
    // The static `ack` segment wins over `{id}`.
    assert_eq!(t.sim.request_count("PATCH /v1/actions/runs/ack"), 3);
    assert_eq!(t.sim.request_count("PATCH /v1/actions/runs/{id}"), 0);
}

#[tokio::test]
async fn logs_and_patches_report_progress_and_every_requested_status_is_recorded() {
    let t = spawn(CatalogSimOptions::default()).await;
    let api = Api::new(&t).await;
    let id = t.sim.create_action_run(integration_run("ado"));
    let runs = format!("/v1/actions/runs/{id}");

    let (status, body) = api
        .call(
            "PATCH",
            &runs,
            Some(json!({"link": "https://dev.azure.com/org/p1/_build/results?buildId=42", "externalRunId": "42", "statusLabel": "Queued"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["run"]["link"],
        json!(["https://dev.azure.com/org/p1/_build/results?buildId=42"])
    );
    assert_eq!(body["run"]["externalRunId"], "42");
    assert_eq!(body["run"]["statusLabel"], "Queued");
    assert_eq!(body["run"]["status"], "IN_PROGRESS");
    assert!(t.sim.action_run_status_changes(&id).is_empty());

    let (status, body) = api
        .call(
            "POST",
            &format!("{runs}/logs"),
            Some(json!({"message": "pipeline 7 queued as build 42"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runLog"]["message"], "pipeline 7 queued as build 42");
    for bad in [json!({}), json!({"message": ""})] {
        let (status, _) = api.call("POST", &format!("{runs}/logs"), Some(bad)).await;
        assert_eq!(status, 422);
    }
    let (status, _) = api
        .call(
            "POST",
            &format!("{runs}/logs"),
            Some(json!({"message": "x", "terminationStatus": "DONE"})),
        )
        .await;
    assert_eq!(status, 422);

    // Refused whole: a bad status leaves the run as it was.
    let (status, body) = api
        .call(
            "PATCH",
            &runs,
            Some(json!({"status": "DONE", "summary": "no"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = api
        .call("PATCH", &runs, Some(json!({"link": [1, 2]})))
        .await;
    assert_eq!(status, 422);

    let (status, body) = api
        .call(
            "PATCH",
            &runs,
            Some(json!({"status": "SUCCESS", "summary": "build 42 succeeded"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "SUCCESS");
    assert!(body["run"]["endedAt"].is_string());

    let (status, body) = api.call("GET", &runs, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["run"]["summary"], "build 42 succeeded");
    assert_eq!(body["run"]["link"].as_array().unwrap().len(), 1);
    assert_eq!(t.sim.action_run_status_changes(&id), vec!["SUCCESS"]);
    let shown = t.sim.action_run(&id).unwrap();
    assert_eq!(shown["logs"], json!(["pipeline 7 queued as build 42"]));
    assert_eq!(shown["status"], "SUCCESS");

    // A log's terminationStatus ends the run too, and is recorded beside the PATCH's.
    let other = t.sim.create_action_run(integration_run("ado"));
    let (status, body) = api
        .call(
            "POST",
            &format!("/v1/actions/runs/{other}/logs"),
            Some(json!({"message": "no such pipeline", "terminationStatus": "FAILURE", "statusLabel": "Failed"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shown = t.sim.action_run(&other).unwrap();
    assert_eq!(shown["status"], "FAILURE");
    assert_eq!(shown["statusLabel"], "Failed");
    assert!(shown["endedAt"].is_string());
    assert_eq!(shown["runLogs"][0]["terminationStatus"], "FAILURE");
    assert_eq!(t.sim.action_run_status_changes(&other), vec!["FAILURE"]);

    let (status, _) = api.call("GET", "/v1/actions/runs/r_nope", None).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call(
            "POST",
            "/v1/actions/runs/r_nope/logs",
            Some(json!({"message": "x"})),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(t.sim.request_count("PATCH /v1/actions/runs/{id}"), 4);
    assert_eq!(t.sim.request_count("POST /v1/actions/runs/{id}/logs"), 6);
    assert_eq!(t.sim.request_count("GET /v1/actions/runs/{id}"), 2);
}

#[tokio::test]
async fn runs_are_found_by_external_run_id_and_listed_newest_first() {
    let t = spawn(CatalogSimOptions::default()).await;
    let api = Api::new(&t).await;
    let first = t.sim.create_action_run(integration_run("ado"));
    let second = t.sim.create_action_run(integration_run("ado"));
    let third = t.sim.create_action_run(integration_run("ado"));
    for (id, ext) in [(&first, "41"), (&second, "42")] {
        let (status, _) = api
            .call(
                "PATCH",
                &format!("/v1/actions/runs/{id}"),
                Some(json!({"externalRunId": ext})),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, body) = api
        .call(
            "PATCH",
            &format!("/v1/actions/runs/{third}"),
            Some(json!({"status": "FAILURE"})),
        )
        .await;
    assert_eq!(body["run"]["status"], "FAILURE");

    let ids = |body: &Value| -> Vec<String> {
        body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = api
        .call(
            "GET",
            "/v1/actions/runs?version=v2&external_run_id=42",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body), vec![second.clone()]);
    let (_, body) = api
        .call("GET", "/v1/actions/runs?version=v2&external_run_id=9", None)
        .await;
    assert!(ids(&body).is_empty());
    let (_, body) = api.call("GET", "/v1/actions/runs", None).await;
    assert_eq!(
        ids(&body),
        vec![third.clone(), second.clone(), first.clone()]
    );
    let (_, body) = api.call("GET", "/v1/actions/runs?active=true", None).await;
    assert_eq!(ids(&body), vec![second.clone(), first.clone()]);
    let (_, body) = api.call("GET", "/v1/actions/runs?limit=1", None).await;
    assert_eq!(ids(&body), vec![third]);
    assert_eq!(t.sim.request_count("GET /v1/actions/runs"), 5);
}

#[tokio::test]
async fn the_action_routes_need_a_token() {
    let t = spawn(CatalogSimOptions::default()).await;
    let id = t.sim.create_action_run(integration_run("ado"));
    let http = reqwest::Client::new();
    let base = t.base.as_str();
    let requests = [
        http.post(format!("{base}/v1/actions/runs/claim-pending"))
            .json(&json!({"installationId": "ado"})),
        http.patch(format!("{base}/v1/actions/runs/ack"))
            .json(&json!({"runId": id})),
        http.patch(format!("{base}/v1/actions/runs/{id}"))
            .json(&json!({"status": "SUCCESS"})),
        http.post(format!("{base}/v1/actions/runs/{id}/logs"))
            .json(&json!({"message": "x"})),
        http.get(format!("{base}/v1/actions/runs/{id}")),
        http.get(format!("{base}/v1/actions/runs?external_run_id=1")),
    ];
    for req in requests {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
    }
    let run = t.sim.action_run(&id).unwrap();
    assert_eq!(run["status"], "IN_PROGRESS");
    assert!(t.sim.action_run_status_changes(&id).is_empty());
}

#[tokio::test]
async fn faults_apply_to_the_action_routes() {
    let t = spawn(CatalogSimOptions::default()).await;
    let api = Api::new(&t).await;
    t.sim.create_action_run(integration_run("ado"));
    t.sim
        .fail_requests("/actions/runs/claim-pending", 503, Some(1));
    let (status, _) = api
        .call(
            "POST",
            "/v1/actions/runs/claim-pending",
            Some(json!({"installationId": "ado"})),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(
        api.claim("ado", 10).await.len(),
        1,
        "a refused claim hides nothing"
    );
}

#[test]
fn sign_webhook_is_port_s_v1_hmac_sha256_in_base64() {
    // Computed independently with Python's hmac module.
    assert_eq!(
        sign_webhook("secret", "123", b"{}"),
        "v1,RGjF4wTKEHM1rimC12T98wQhQXXH3DrQaSGEjSdau5I="
    );
    assert_eq!(
        sign_webhook("whsec", "1700000000", br#"{"a":1}"#),
        "v1,itN7oVYEiuDgpVM8dc3yb+6IsH+Ty1fuTICtsFMBIDI="
    );
}

#[tokio::test]
async fn a_webhook_action_is_posted_signed_with_its_inputs_and_type() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use tokio::sync::mpsc;

    let t = spawn(CatalogSimOptions::default()).await;
    let id = t.sim.create_action_run(NewActionRun {
        installation_id: None,
        ..integration_run("unused")
    });
    let run = t.sim.action_run(&id).unwrap();
    assert_eq!(run["payload"]["type"], "WEBHOOK");

    // A receiver that keeps what it got and answers 202.
    let (tx, mut rx) = mpsc::unbounded_channel::<(HeaderMap, Bytes)>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                tx.send((headers, body)).unwrap();
                (axum::http::StatusCode::ACCEPTED, "queued")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let (status, text) = t
        .sim
        .invoke_action_webhook(&format!("http://{addr}/hook"), "whsec", &id)
        .await
        .unwrap();
    assert_eq!((status, text.as_str()), (202, "queued"));
    let (headers, body) = rx.recv().await.unwrap();
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "application/json");
    let timestamp = header("x-port-timestamp");
    let now = chrono::Utc::now().timestamp();
    assert!((now - timestamp.parse::<i64>().unwrap()).abs() < 60);
    assert_eq!(
        header("x-port-signature"),
        sign_webhook("whsec", &timestamp, &body)
    );
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent, t.sim.webhook_invocation(&id).unwrap());
    assert_eq!(sent["run"]["id"], id.as_str());
    assert_eq!(sent["context"]["runId"], id.as_str());
    assert_eq!(sent["action"]["identifier"], "trigger_pipeline");
    assert_eq!(sent["inputs"]["pipelineId"], 7);
    assert_eq!(sent["properties"], sent["inputs"]);
    assert_eq!(sent["payload"]["integrationActionType"], "trigger_pipeline");

    assert!(t.sim.webhook_invocation("r_nope").is_none());
    assert!(
        t.sim
            .invoke_action_webhook(&format!("http://{addr}/hook"), "whsec", "r_nope")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn runs_are_created_and_listed_under_sim_catalog() {
    let t = spawn(CatalogSimOptions::default()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/_sim/catalog/actions/runs", t.addr);
    let created: Value = http
        .post(&url)
        .json(&json!({"action": "trigger_pipeline", "installationId": "ado", "integrationActionType": "trigger_pipeline", "properties": {"pipelineId": 3}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let api = Api::new(&t).await;
    assert_eq!(api.claim("ado", 10).await, vec![id.clone()]);
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/actions/runs/{id}/logs"),
            Some(json!({"message": "started"})),
        )
        .await;
    assert_eq!(status, 200);

    let listed: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);
    assert_eq!(listed["runs"][0]["id"], id.as_str());
    assert_eq!(listed["runs"][0]["logs"], json!(["started"]));
    assert_eq!(listed["runs"][0]["properties"]["pipelineId"], 3);
    assert_eq!(json!(t.sim.action_runs()), listed["runs"]);
}
