//! Injected faults on the wire, through a real listener: statuses by method and count, dropped
//! connections and slow answers, on the Azure DevOps side and over `/_sim`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ado_sync_sim::ado::{AdoSim, AdoSimOptions, Fault, FaultAction, OrgSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bounds every wait on the simulator: a fault that hangs the test is a failure, not a stall.
const GUARD: Duration = Duration::from_secs(30);

async fn serve() -> (Arc<AdoSim>, SocketAddr) {
    let sim = AdoSim::new(OrgSpec::small(), AdoSimOptions::default());
    let app = sim.router().merge(sim.control_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sim, addr)
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .basic_auth("", Some("any"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn wiql(client: &reqwest::Client, addr: SocketAddr) -> u16 {
    client
        .post(format!(
            "http://{addr}/simorg/Platform/_apis/wit/wiql?api-version=7.1"
        ))
        .basic_auth("", Some("any"))
        .json(&json!({"query": "SELECT [System.Id] FROM WorkItems"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_fault_matches_its_method_lets_the_first_requests_through_and_ends_after_its_count() {
    let (sim, addr) = serve().await;
    sim.inject(
        Fault::new("/_apis/wit/", FaultAction::Status(500))
            .method("post")
            .after(1)
            .times(2),
    );
    let http = client(GUARD);
    let items = format!("http://{addr}/simorg/Platform/_apis/wit/workitems?ids=1&api-version=7.1");
    assert_eq!(status(&http, &items).await, 200, "a GET is not matched");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(wiql(&http, addr).await);
    }
    assert_eq!(seen, [200, 500, 500, 200]);
    assert_eq!(status(&http, &items).await, 200);
}

#[tokio::test]
async fn an_injected_status_has_the_azure_devops_error_body_and_a_429_says_when_to_retry() {
    let (sim, addr) = serve().await;
    sim.inject(Fault::new("/_apis/projects", FaultAction::Status(429)).times(1));
    sim.inject(Fault::new("/_apis/projects", FaultAction::Status(404)).times(1));
    let http = client(GUARD);
    let url = format!("http://{addr}/simorg/_apis/projects?api-version=7.1");
    let send = || http.get(&url).basic_auth("", Some("any")).send();
    let throttled = send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(body["typeKey"], "RequestBlockedException");
    let missing = send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["$id"], "1");
    assert!(body["message"].as_str().unwrap().contains("Not Found"));
    assert_eq!(send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_reset_closes_the_connection_before_any_byte_of_an_answer() {
    let (sim, addr) = serve().await;
    sim.inject(Fault::new("/_apis/projects", FaultAction::Reset).times(1));
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(
            b"GET /simorg/_apis/projects?api-version=7.1 HTTP/1.1\r\nhost: sim\r\nauthorization: Basic OmFueQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A reset (an error) or an orderly close (0 bytes): either way, nothing was answered.
    let _ = tokio::time::timeout(GUARD, socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // A client sees a failed request, and the fault is used up.
    let http = client(GUARD);
    let url = format!("http://{addr}/simorg/_apis/projects?api-version=7.1");
    sim.inject(Fault::new("/_apis/projects", FaultAction::Reset).times(1));
    let err = http
        .get(&url)
        .basic_auth("", Some("any"))
        .send()
        .await
        .expect_err("the connection was dropped");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(status(&http, &url).await, 200);
}

#[tokio::test]
async fn a_slow_answer_outlasts_a_client_timeout_and_the_next_request_is_answered_at_once() {
    let (sim, addr) = serve().await;
    sim.inject(
        Fault::new(
            "/_apis/projects",
            FaultAction::Slow(Duration::from_secs(20)),
        )
        .times(1),
    );
    let url = format!("http://{addr}/simorg/_apis/projects?api-version=7.1");
    let impatient = client(Duration::from_millis(300));
    let err = impatient
        .get(&url)
        .basic_auth("", Some("any"))
        .send()
        .await
        .expect_err("no answer within the timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(status(&impatient, &url).await, 200);
}

#[tokio::test]
async fn faults_are_injected_listed_in_the_stats_and_cleared_over_http() {
    let (_sim, addr) = serve().await;
    let http = client(GUARD);
    let control = |path: &str| format!("http://{addr}/_sim/{path}");
    for body in [
        json!({"path_contains": "/_apis/git/repositories", "method": "GET", "action": {"status": 503}, "times": 1}),
        json!({"path_contains": "/_apis/pipelines", "action": "reset", "after": 1}),
        // The older shape still works.
        json!({"path_contains": "/_apis/projects", "status": 500, "times": null}),
    ] {
        let r = http
            .post(control("faults"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{body}");
    }
    let repos = format!("http://{addr}/simorg/Platform/_apis/git/repositories?api-version=7.1");
    let pipelines = format!("http://{addr}/simorg/Platform/_apis/pipelines?api-version=7.1");
    let projects = format!("http://{addr}/simorg/_apis/projects?api-version=7.1");
    assert_eq!(status(&http, &repos).await, 503);
    assert_eq!(status(&http, &repos).await, 200);
    assert_eq!(status(&http, &pipelines).await, 200);
    assert!(
        http.get(&pipelines)
            .basic_auth("", Some("any"))
            .send()
            .await
            .is_err()
    );
    assert_eq!(status(&http, &projects).await, 500);
    let r = http.delete(control("faults")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(status(&http, &pipelines).await, 200);
    assert_eq!(status(&http, &projects).await, 200);
    let stats: Value = http
        .get(control("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["GET /{project}/_apis/pipelines"], 3);
    assert_eq!(stats["without_api_version"], json!({}));
}
