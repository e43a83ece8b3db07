//! The ADO simulator on the wire: URL shapes, paging, limits, auth, faults and mutations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ado_sync_sim::ado::{AdoSim, AdoSimOptions, OrgSpec};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn basic(pat: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{pat}"))
    )
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    pat: Option<&str>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "sim.test");
    if let Some(p) = pat {
        req = req.header("authorization", basic(p));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    reply(app.clone().oneshot(req).await.unwrap()).await
}

/// A request with the PAT `any` and extra headers.
async fn send_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "sim.test")
        .header("authorization", basic("any"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    reply(app.clone().oneshot(req).await.unwrap()).await
}

async fn reply(resp: axum::response::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, None, Some("any")).await
}

async fn wiql(app: &Router, project: &str, query: &str, extra: &str) -> Reply {
    let uri = format!("/simorg/{project}/_apis/wit/wiql?api-version=7.1{extra}");
    send(
        app,
        Method::POST,
        &uri,
        Some(json!({ "query": query })),
        Some("any"),
    )
    .await
}

fn fixed_anchor() -> DateTime<Utc> {
    // Pinned for determinism tests; other tests use the default (the current hour).
    Utc.with_ymd_and_hms(2026, 8, 20, 12, 0, 0).unwrap()
}

fn sim(spec: OrgSpec) -> (Arc<AdoSim>, Router) {
    sim_with(spec, AdoSimOptions::default())
}

fn sim_with(spec: OrgSpec, opts: AdoSimOptions) -> (Arc<AdoSim>, Router) {
    let s = AdoSim::new(spec, opts);
    let app = s.router().merge(s.control_router());
    (s, app)
}

fn ids_of(reply: &Reply) -> Vec<u64> {
    reply.json()["workItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_u64().unwrap())
        .collect()
}

fn one_project(work_items: usize) -> OrgSpec {
    OrgSpec {
        projects: 1,
        repos_per_project: 1,
        work_items_per_project: vec![work_items],
        ..OrgSpec::small()
    }
}

#[tokio::test]
async fn projects_page_through_the_continuation_token_header() {
    let (s, app) = sim(OrgSpec {
        projects: 7,
        ..OrgSpec::small()
    });
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut uri = "/simorg/_apis/projects?api-version=7.1&$top=3".to_string();
        if let Some(t) = &token {
            uri.push_str(&format!("&continuationToken={t}"));
        }
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.json();
        assert_eq!(body["count"], body["value"].as_array().unwrap().len());
        for p in body["value"].as_array().unwrap() {
            assert_eq!(p["state"], "wellFormed");
            assert!(p.get("defaultTeam").is_none());
            assert!(
                p["url"]
                    .as_str()
                    .unwrap()
                    .starts_with("http://sim.test/simorg/_apis/projects/")
            );
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        pages += 1;
        token = r.header("x-ms-continuationtoken").map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, s.project_ids());
    // Without $top a page holds up to 100, so all 7 come back with no token.
    let r = get(&app, "/simorg/_apis/projects?api-version=7.1").await;
    assert_eq!(r.json()["count"], 7);
    assert!(r.header("x-ms-continuationtoken").is_none());
}

#[tokio::test]
async fn project_detail_properties_and_names_with_spaces() {
    let (s, app) = sim(OrgSpec::small());
    let r = get(
        &app,
        "/simorg/_apis/projects/Mobile%20App?api-version=7.1&includeCapabilities=true",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let p = r.json();
    assert_eq!(p["name"], "Mobile App");
    assert_eq!(p["defaultTeam"]["name"], "Mobile App Team");
    assert_eq!(
        p["capabilities"]["versioncontrol"]["sourceControlType"],
        "Git"
    );
    assert!(
        p["_links"]["web"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/Mobile%20App")
    );

    let archived = &s.project_ids()[2];
    let r = get(
        &app,
        &format!("/simorg/_apis/projects/{archived}/properties?keys=Microsoft.TeamFoundation.Project.Tag.*&api-version=7.1-preview.1"),
    )
    .await;
    let names: Vec<String> = r.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "Microsoft.TeamFoundation.Project.Tag.archived",
            "Microsoft.TeamFoundation.Project.Tag.legacy"
        ]
    );
    let r = get(
        &app,
        "/simorg/_apis/projects/00000000-0000-4000-8000-000000000000?api-version=7.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("VS800075")
    );
}

#[tokio::test]
async fn repositories_include_disabled_and_empty_ones() {
    let (s, app) = sim(OrgSpec::small());
    let pids = s.project_ids();
    let r = get(
        &app,
        &format!("/simorg/{}/_apis/git/repositories?api-version=7.1", pids[0]),
    )
    .await;
    let repos = r.json()["value"].as_array().unwrap().clone();
    assert_eq!(repos.len(), 3);
    assert_eq!(repos[0]["name"], "Platform");
    assert_eq!(repos.iter().filter(|r| r["isDisabled"] == true).count(), 1);
    assert_eq!(repos[0]["project"]["id"], pids[0].as_str());
    let r = get(
        &app,
        "/simorg/Mobile%20App/_apis/git/repositories?api-version=7.1",
    )
    .await;
    let repos = r.json()["value"].as_array().unwrap().clone();
    assert!(
        repos
            .iter()
            .any(|r| r.get("defaultBranch").is_none() && r["size"] == 0)
    );
    assert!(
        repos[0]["remoteUrl"]
            .as_str()
            .unwrap()
            .contains("/Mobile%20App/_git/")
    );
}

fn python_str(t: DateTime<Utc>) -> String {
    // Python's str() of an aware datetime: space separator, microseconds, +00:00.
    t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
}

#[tokio::test]
async fn pull_requests_page_by_top_skip_and_filter_by_status_and_closed_time() {
    let (s, app) = sim(OrgSpec {
        prs_per_repo: 9,
        ..OrgSpec::small()
    });
    let pid = &s.project_ids()[0];
    let repo = &s.repository_ids(pid)[0];
    let base = format!("/simorg/{pid}/_apis/git/repositories/{repo}/pullrequests?api-version=7.1");
    let all = get(&app, &format!("{base}&searchCriteria.status=all"))
        .await
        .json();
    assert_eq!(all["count"], 9);
    let all_ids: Vec<u64> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pullRequestId"].as_u64().unwrap())
        .collect();
    let mut paged = Vec::new();
    for skip in (0..9).step_by(4) {
        let r = get(
            &app,
            &format!("{base}&searchCriteria.status=all&$top=4&$skip={skip}"),
        )
        .await;
        assert!(r.header("x-ms-continuationtoken").is_none());
        paged.extend(
            r.json()["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["pullRequestId"].as_u64().unwrap()),
        );
    }
    assert_eq!(paged, all_ids);

    // No status means active only.
    let active = get(&app, &base).await.json();
    assert!(
        active["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "active" && p.get("closedDate").is_none())
    );

    let week_ago = Utc::now() - chrono::Duration::days(7);
    let (mut recent, mut total) = (0, 0);
    for project in s.project_ids() {
        let repos = get(
            &app,
            &format!("/simorg/{project}/_apis/git/repositories?api-version=7.1"),
        )
        .await
        .json();
        for r in repos["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["isDisabled"] == false)
        {
            let b = format!(
                "/simorg/{project}/_apis/git/repositories/{}/pullrequests?api-version=7.1",
                r["id"].as_str().unwrap()
            );
            for status in ["completed", "abandoned"] {
                total += get(&app, &format!("{b}&searchCriteria.status={status}"))
                    .await
                    .json()["count"]
                    .as_u64()
                    .unwrap();
                let since = get(
                    &app,
                    &format!(
                        "{b}&searchCriteria.status={status}&searchCriteria.queryTimeRangeType=closed&searchCriteria.minTime={}&$top=100",
                        python_str(week_ago).replace('+', "%2B").replace(' ', "%20")
                    ),
                )
                .await
                .json();
                for pr in since["value"].as_array().unwrap() {
                    assert_eq!(pr["status"], status);
                    let closed =
                        DateTime::parse_from_rfc3339(pr["closedDate"].as_str().unwrap()).unwrap();
                    assert!(closed >= week_ago, "{closed} before {week_ago}");
                }
                recent += since["count"].as_u64().unwrap();
            }
        }
    }
    assert!(recent > 0 && recent < total, "recent {recent} of {total}");

    // A disabled repository refuses the call.
    let repos = get(
        &app,
        &format!("/simorg/{pid}/_apis/git/repositories?api-version=7.1"),
    )
    .await
    .json();
    let disabled = repos["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["isDisabled"] == true)
        .unwrap()["id"]
        .clone();
    let r = get(
        &app,
        &format!(
            "/simorg/{pid}/_apis/git/repositories/{}/pullrequests?api-version=7.1",
            disabled.as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pipelines_page_through_opaque_tokens() {
    let (s, app) = sim(OrgSpec {
        pipelines_per_project: 5,
        ..OrgSpec::small()
    });
    let pid = &s.project_ids()[1];
    let first = get(
        &app,
        &format!("/simorg/{pid}/_apis/pipelines?api-version=7.1&$top=2"),
    )
    .await;
    let token = first.header("x-ms-continuationtoken").unwrap().to_string();
    assert!(token.parse::<u64>().is_err(), "token should be opaque");
    let mut names: Vec<Value> = first.json()["value"].as_array().unwrap().clone();
    let mut token = Some(token);
    while let Some(t) = token {
        let r = get(
            &app,
            &format!("/simorg/{pid}/_apis/pipelines?api-version=7.1&$top=2&continuationToken={t}"),
        )
        .await;
        names.extend(r.json()["value"].as_array().unwrap().iter().cloned());
        token = r.header("x-ms-continuationtoken").map(str::to_string);
    }
    assert_eq!(names.len(), 5);
    let p = &names[0];
    for key in ["_links", "url", "id", "revision", "name", "folder"] {
        assert!(p.get(key).is_some(), "missing {key}");
    }
}

#[tokio::test]
async fn wiql_pages_by_id_and_enforces_the_20k_cap() {
    let (s, app) = sim(one_project(20_500));
    let q = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'Platform'";
    let r = wiql(&app, "Platform", q, "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().starts_with(
        "VS402337: The number of work items returned exceeds the size limit of 20000."
    ));
    // A $top above the cap does not lift it.
    assert_eq!(
        wiql(&app, "Platform", q, "&$top=25000").await.status,
        StatusCode::BAD_REQUEST
    );

    let mut all: Vec<u64> = Vec::new();
    let mut last = 0;
    loop {
        let paged = format!("{q} AND [System.Id] > {last} ORDER BY [System.Id] Asc");
        let r = wiql(&app, "Platform", &paged, "&$top=19999").await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.json();
        assert_eq!(body["queryType"], "flat");
        assert_eq!(body["columns"][0]["referenceName"], "System.Id");
        assert_eq!(body["sortColumns"][0]["descending"], false);
        let ids = ids_of(&r);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        all.extend(&ids);
        if ids.len() < 19_999 {
            break;
        }
        last = *ids.last().unwrap();
    }
    assert_eq!(all, s.work_item_ids(&s.project_ids()[0]));

    // $top in a non-id order returns the first N of that order.
    let r = wiql(
        &app,
        "Platform",
        &format!("{q} ORDER BY [System.ChangedDate] DESC"),
        "&$top=5",
    )
    .await;
    assert_eq!(ids_of(&r).len(), 5);
    let r = wiql(
        &app,
        "Platform",
        "SELECT [System.Id] FROM WorkItems WHERE [System.Id] > 20000 ORDER BY [System.Id] DESC",
        "",
    )
    .await;
    assert_eq!(ids_of(&r), (20_001..=20_500).rev().collect::<Vec<u64>>());
}

#[tokio::test]
async fn wiql_filters_by_state_type_and_recent_change() {
    let (s, app) = sim(OrgSpec::small());
    let pid = s.project_ids()[0].clone();
    let total = s.work_item_ids(&pid).len();
    let q = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND [System.ChangedDate] >= @today - 7";
    let recent = ids_of(&wiql(&app, &pid, q, "").await);
    assert!(
        !recent.is_empty() && recent.len() < total,
        "{} of {total}",
        recent.len()
    );
    let ids: Vec<String> = recent.iter().map(u64::to_string).collect();
    let items = get(
        &app,
        &format!(
            "/simorg/{pid}/_apis/wit/workitems?ids={}&api-version=7.1",
            ids.join(",")
        ),
    )
    .await
    .json();
    let cutoff = (Utc::now() - chrono::Duration::days(7)).date_naive();
    for wi in items["value"].as_array().unwrap() {
        let changed =
            DateTime::parse_from_rfc3339(wi["fields"]["System.ChangedDate"].as_str().unwrap())
                .unwrap();
        assert!(changed.date_naive() >= cutoff);
    }

    let q = "SELECT [System.Id], [System.Title] FROM WorkItems WHERE [System.TeamProject] = 'Platform' AND ([System.WorkItemType] = 'Bug' OR [System.WorkItemType] = 'Epic') AND [System.State] NOT IN ('Closed', 'Removed')";
    let hits = ids_of(&wiql(&app, "Platform", q, "").await);
    assert!(!hits.is_empty());
    let ids: Vec<String> = hits.iter().map(u64::to_string).collect();
    let items = get(
        &app,
        &format!(
            "/simorg/_apis/wit/workitems?ids={}&api-version=7.1",
            ids.join(",")
        ),
    )
    .await
    .json();
    for wi in items["value"].as_array().unwrap() {
        let f = &wi["fields"];
        assert!(["Bug", "Epic"].contains(&f["System.WorkItemType"].as_str().unwrap()));
        assert!(!["Closed", "Removed"].contains(&f["System.State"].as_str().unwrap()));
    }

    let r = wiql(
        &app,
        "Platform",
        "SELECT [System.Id] FROM WorkItems WHERE [Custom.Risk] = 'High'",
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["message"].as_str().unwrap().starts_with("TF51005"));
    let r = wiql(
        &app,
        "Platform",
        "SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '2026-01-01T00:00:00Z'",
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = wiql(
        &app,
        "Platform",
        "SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '2026-01-01T00:00:00Z'",
        "&timePrecision=true",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn work_items_enforce_the_200_id_cap_and_honour_error_policy() {
    let (s, app) = sim(one_project(300));
    let ids: Vec<String> = (1..=201).map(|i: u64| i.to_string()).collect();
    let r = get(
        &app,
        &format!(
            "/simorg/Platform/_apis/wit/workitems?ids={}&api-version=7.1",
            ids.join(",")
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("VS403474: You requested 201 work items which exceeds the limit of 200")
    );

    assert!(s.remove_work_item(2));
    let r = get(
        &app,
        "/simorg/Platform/_apis/wit/workitems?ids=1,2,3&api-version=7.1",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["message"],
        "TF401232: Work item 2 does not exist, or you do not have permissions to read it."
    );
    let r = get(
        &app,
        "/simorg/Platform/_apis/wit/workitems?ids=1,2,3&errorPolicy=Omit&api-version=7.1",
    )
    .await;
    let v = r.json()["value"].as_array().unwrap().clone();
    assert_eq!(v.len(), 3);
    assert!(v[1].is_null());
    assert_eq!(v[2]["id"], 3);

    // $expand decides relations and _links; fields narrows the field map.
    let plain = get(
        &app,
        "/simorg/Platform/_apis/wit/workitems?ids=5&api-version=7.1",
    )
    .await
    .json();
    assert!(
        plain["value"][0].get("_links").is_none() && plain["value"][0].get("relations").is_none()
    );
    let full = get(
        &app,
        "/simorg/Platform/_apis/wit/workitems?ids=5&$expand=All&api-version=7.1",
    )
    .await
    .json();
    let wi = &full["value"][0];
    assert!(
        wi["_links"]["workItemUpdates"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/_apis/wit/workItems/5/updates")
    );
    assert!(wi["relations"].is_array());
    for f in [
        "System.AreaPath",
        "System.TeamProject",
        "System.WorkItemType",
        "System.State",
        "System.CreatedBy",
        "System.ChangedDate",
        "System.Title",
    ] {
        assert!(wi["fields"].get(f).is_some(), "missing {f}");
    }
    assert!(wi["fields"]["System.CreatedBy"]["_links"]["avatar"]["href"].is_string());
    let narrow = get(&app, "/simorg/Platform/_apis/wit/workitems?ids=5&fields=System.Title,System.State&api-version=7.1").await.json();
    assert_eq!(narrow["value"][0]["fields"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn a_wrong_pat_gets_the_203_sign_in_page() {
    let (_, app) = sim_with(
        OrgSpec::small(),
        AdoSimOptions {
            pat: Some("secret".into()),
            ..Default::default()
        },
    );
    let uri = "/simorg/_apis/projects?api-version=7.1";
    for pat in [Some("wrong"), None] {
        let r = send(&app, Method::GET, uri, None, pat).await;
        assert_eq!(r.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(String::from_utf8_lossy(&r.body).contains("Sign In"));
    }
    let r = send(
        &app,
        Method::POST,
        "/simorg/Platform/_apis/wit/wiql?api-version=7.1",
        Some(json!({"query": "SELECT [Id] FROM WorkItems"})),
        Some("wrong"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
    assert_eq!(
        send(&app, Method::GET, uri, None, Some("secret"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_get_without_api_version_is_served_and_counted_and_other_methods_must_name_one() {
    let (s, app) = sim(OrgSpec::small());
    let r = get(&app, "/simorg/_apis/projects").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["count"], 3);
    // A preview-only resource too: Azure DevOps serves the newest version.
    let r = get(&app, "/simorg/Platform/_apis/distributedtask/environments").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let r = send(
        &app,
        Method::POST,
        "/simorg/Platform/_apis/wit/wiql",
        Some(json!({"query": "SELECT [System.Id] FROM WorkItems"})),
        Some("any"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body = r.json();
    assert_eq!(body["typeKey"], "VssVersionNotSpecifiedException");
    assert_eq!(body["$id"], "1");
    assert!(body["message"].as_str().unwrap().contains("\"POST\""));
    // A version in the Accept header counts as one.
    let r = send_with(
        &app,
        Method::POST,
        "/simorg/Platform/_apis/wit/wiql",
        Some(json!({"query": "SELECT [System.Id] FROM WorkItems"})),
        &[("accept", "application/json; api-version=7.1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/simorg/_apis/projects?api-version=7.1")
            .await
            .status,
        StatusCode::OK
    );

    let unversioned = s.requests_without_api_version();
    assert_eq!(
        unversioned,
        [
            ("GET /_apis/projects".to_owned(), 1),
            (
                "GET /{project}/_apis/distributedtask/environments".to_owned(),
                1
            ),
            ("POST /{project}/_apis/wit/wiql".to_owned(), 1),
        ]
        .into()
    );
    let stats = send(&app, Method::GET, "/_sim/stats", None, None)
        .await
        .json();
    assert_eq!(stats["without_api_version"]["GET /_apis/projects"], 1);
    assert_eq!(stats["requests"]["GET /_apis/projects"], 2);
}

#[tokio::test]
async fn unknown_routes_get_ado_errors_with_the_rate_limit_headers() {
    let (s, app) = sim(OrgSpec::small());
    let r = get(&app, "/simorg/_apis/nothing-here?api-version=7.1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["typeKey"].is_string());
    // Every response carries the rate-limit headers.
    for name in [
        "x-ratelimit-resource",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(r.header(name).is_some(), "missing {name}");
    }
    let counts = s.request_counts();
    assert_eq!(counts["GET <unmatched>"], 1);
    assert_eq!(s.total_requests(), 1);
}

#[tokio::test]
async fn git_policy_configurations_are_served_under_released_preview_and_no_versions() {
    let (_, app) = sim(OrgSpec::small());
    for version in ["?api-version=7.1", "?api-version=7.1-preview.1", ""] {
        let r = get(
            &app,
            &format!("/simorg/Platform/_apis/git/policy/configurations{version}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{version}: {}", r.json());
        assert!(
            !r.json()["value"].as_array().unwrap().is_empty(),
            "{version}"
        );
    }
}

#[tokio::test]
async fn an_item_get_accepting_anything_answers_the_file_text_unless_json_is_asked_for() {
    let (s, app) = sim(OrgSpec::small());
    let pid = s.project_ids()[0].clone();
    let repos = get(
        &app,
        &format!("/simorg/{pid}/_apis/git/repositories?api-version=7.1"),
    )
    .await
    .json();
    let repo = repos["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["defaultBranch"].is_string() && r["isDisabled"] != true)
        .expect("a repository with content")
        .clone();
    let (id, name) = (repo["id"].as_str().unwrap(), repo["name"].as_str().unwrap());
    let item = |query: &str| {
        format!(
            "/simorg/{pid}/_apis/git/repositories/{id}/items?path=/README.md&api-version=7.1{query}"
        )
    };
    let any = [("accept", "*/*")];

    let raw = send_with(&app, Method::GET, &item(""), None, &any).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert!(
        raw.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(raw.body.clone()).unwrap();
    assert!(text.starts_with(&format!("# {name}\n")), "{text}");

    // Without an Accept header (a client that sends none): the text too.
    assert_eq!(get(&app, &item("")).await.body, raw.body);

    let json_accept = [("accept", "application/json")];
    let meta = send_with(&app, Method::GET, &item(""), None, &json_accept)
        .await
        .json();
    assert_eq!(meta["path"], "/README.md");
    assert!(meta.get("content").is_none());
    for query in ["&includeContent=true", "&$format=json"] {
        let v = send_with(&app, Method::GET, &item(query), None, &any)
            .await
            .json();
        assert_eq!(v["path"], "/README.md", "{query}");
    }
    let with_content = send_with(&app, Method::GET, &item("&includeContent=true"), None, &any)
        .await
        .json();
    assert_eq!(with_content["content"], text.as_str());
    // A folder has no text: its metadata comes back.
    let folder = send_with(
        &app,
        Method::GET,
        &format!("/simorg/{pid}/_apis/git/repositories/{id}/items?path=/config&api-version=7.1"),
        None,
        &any,
    )
    .await
    .json();
    assert_eq!(folder["isFolder"], true);
}

#[tokio::test]
async fn injected_429_carries_retry_after_then_recovers() {
    let (s, app) = sim(OrgSpec::small());
    s.fail_requests("/_apis/projects", 429, Some(2));
    let uri = "/simorg/_apis/projects?api-version=7.1";
    for _ in 0..2 {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.header("x-ratelimit-reset").is_some());
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("TF400733")
        );
    }
    assert_eq!(get(&app, uri).await.status, StatusCode::OK);

    // Until cleared, over HTTP.
    let r = send(
        &app,
        Method::POST,
        "/_sim/faults",
        Some(json!({"path_contains": "/_apis/git/", "status": 503, "times": null})),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let repos = "/simorg/Platform/_apis/git/repositories?api-version=7.1";
    assert_eq!(
        get(&app, repos).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&app, repos).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    send(&app, Method::DELETE, "/_sim/faults", None, None).await;
    assert_eq!(get(&app, repos).await.status, StatusCode::OK);
    let stats = send(&app, Method::GET, "/_sim/stats", None, None)
        .await
        .json();
    assert_eq!(
        stats["requests"]["GET /{project}/_apis/git/repositories"],
        3
    );
}

#[tokio::test]
async fn the_random_fault_share_is_a_deterministic_sequence() {
    let statuses = |app: Router| async move {
        let mut out = Vec::new();
        for _ in 0..60 {
            out.push(
                get(&app, "/simorg/_apis/projects?api-version=7.1")
                    .await
                    .status
                    .as_u16(),
            );
        }
        out
    };
    let opts = AdoSimOptions {
        fault_rate: 0.3,
        ..Default::default()
    };
    let a = statuses(sim_with(OrgSpec::small(), opts.clone()).1).await;
    let b = statuses(sim_with(OrgSpec::small(), opts).1).await;
    assert_eq!(a, b);
    let faults = a.iter().filter(|s| **s != 200).count();
    assert!((8..=30).contains(&faults), "{faults} faults of 60");
    assert!(a.contains(&429));
}

#[tokio::test]
async fn mutations_show_in_responses() {
    let (s, app) = sim(OrgSpec::small());
    let pid = s.project_ids()[0].clone();
    let id = s.work_item_ids(&pid)[3];
    let before = get(
        &app,
        &format!("/simorg/_apis/wit/workitems/{id}?api-version=7.1"),
    )
    .await
    .json();
    let mut fields = serde_json::Map::new();
    fields.insert("System.State".into(), json!("Blocked"));
    assert!(s.update_work_item(id, fields));
    let after = get(
        &app,
        &format!("/simorg/_apis/wit/workitems/{id}?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(after["fields"]["System.State"], "Blocked");
    assert_eq!(after["rev"], before["rev"].as_u64().unwrap() + 1);
    assert_ne!(
        after["fields"]["System.ChangedDate"],
        before["fields"]["System.ChangedDate"]
    );
    let q = "SELECT [System.Id] FROM WorkItems WHERE [System.State] = 'blocked'";
    assert_eq!(ids_of(&wiql(&app, &pid, q, "").await), vec![id]);
    let since = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let q = format!(
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project AND [System.ChangedDate] >= '{since}'"
    );
    assert_eq!(
        ids_of(&wiql(&app, &pid, &q, "&timePrecision=true").await),
        vec![id]
    );

    // Over HTTP: patch, delete a work item, delete a repository.
    let r = send(
        &app,
        Method::PATCH,
        &format!("/_sim/work-items/{id}"),
        Some(json!({"System.Title": "Renamed"})),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let after = get(
        &app,
        &format!("/simorg/{pid}/_apis/wit/workitems/{id}?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(after["fields"]["System.Title"], "Renamed");
    send(
        &app,
        Method::POST,
        &format!("/_sim/work-items/{id}/delete"),
        None,
        None,
    )
    .await;
    assert!(!s.work_item_ids(&pid).contains(&id));
    assert!(
        ids_of(
            &wiql(
                &app,
                &pid,
                "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = @project",
                ""
            )
            .await
        )
        .iter()
        .all(|i| *i != id)
    );

    let repo = s.repository_ids(&pid)[1].clone();
    let r = send(
        &app,
        Method::POST,
        &format!("/_sim/repositories/{repo}/delete"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let repos = get(
        &app,
        &format!("/simorg/{pid}/_apis/git/repositories?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(repos["count"], 2);
    assert!(
        repos["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != repo.as_str())
    );
    assert!(!s.remove_repository(&repo));
}

#[tokio::test]
async fn one_seed_gives_identical_bodies() {
    let spec = OrgSpec {
        anchor: Some(fixed_anchor()),
        ..OrgSpec::small()
    };
    let (a, app_a) = sim(spec.clone());
    let (_, app_b) = sim(spec);
    let pid = a.project_ids()[1].clone();
    let repo = a.repository_ids(&pid)[0].clone();
    for uri in [
        "/simorg/_apis/projects?api-version=7.1".to_string(),
        format!("/simorg/_apis/projects/{pid}?api-version=7.1&includeCapabilities=true"),
        format!("/simorg/{pid}/_apis/git/repositories?api-version=7.1"),
        format!(
            "/simorg/{pid}/_apis/git/repositories/{repo}/pullrequests?api-version=7.1&searchCriteria.status=all"
        ),
        format!("/simorg/{pid}/_apis/pipelines?api-version=7.1"),
        "/simorg/_apis/wit/workitems?ids=1,2,50,100&$expand=All&api-version=7.1".to_string(),
    ] {
        let (x, y) = (get(&app_a, &uri).await, get(&app_b, &uri).await);
        assert_eq!(x.status, StatusCode::OK, "{uri}");
        assert_eq!(x.body, y.body, "{uri}");
    }
    let other = AdoSim::new(
        OrgSpec {
            seed: 43,
            ..OrgSpec::small()
        },
        AdoSimOptions::default(),
    );
    assert_ne!(other.project_ids(), a.project_ids());
}

#[tokio::test]
async fn the_large_org_is_built_lazily_and_serves_paging_fast() {
    let started = Instant::now();
    let (s, app) = sim(OrgSpec::large());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "built in {:?}",
        started.elapsed()
    );
    let pids = s.project_ids();
    let repos: usize = pids.iter().map(|p| s.repository_ids(p).len()).sum();
    let counts: Vec<usize> = pids.iter().map(|p| s.work_item_ids(p).len()).collect();
    assert!(repos >= 1_000, "{repos} repos");
    assert!(counts.iter().sum::<usize>() >= 100_000);
    assert!(counts.iter().any(|c| *c > 20_000));

    // A page deep inside the largest project costs about the page, not the org.
    let started = Instant::now();
    let q = "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = 'Platform' AND [System.Id] > 19999 ORDER BY [System.Id]";
    let r = wiql(&app, "Platform", q, "&$top=19999").await;
    assert_eq!(ids_of(&r).len(), 25_000 - 19_999);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "page took {:?}",
        started.elapsed()
    );
    let last = get(
        &app,
        "/simorg/_apis/wit/workitems?ids=120000&api-version=7.1",
    )
    .await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(
        get(
            &app,
            "/simorg/_apis/wit/workitems?ids=120001&api-version=7.1"
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn single_repository_and_pull_request_gets_match_the_lists() {
    let (s, app) = sim(OrgSpec::small());
    let pid = s.project_ids()[0].clone();
    let repo = s.repository_ids(&pid)[0].clone();
    let list = get(&app, &format!("/simorg/{pid}/_apis/git/repositories/{repo}/pullrequests?api-version=7.1&searchCriteria.status=all")).await.json();
    let pr = &list["value"][0];
    let id = pr["pullRequestId"].as_u64().unwrap();
    let one = get(
        &app,
        &format!("/simorg/_apis/git/pullrequests/{id}?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(&one, pr);
    let r = get(
        &app,
        &format!("/simorg/_apis/git/repositories/{repo}?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(r["id"], repo.as_str());
    let r = get(
        &app,
        &format!("/simorg/{pid}/_apis/git/repositories/Platform?api-version=7.1"),
    )
    .await
    .json();
    assert_eq!(r["id"], repo.as_str());
    s.remove_repository(&repo);
    let r = get(
        &app,
        &format!("/simorg/_apis/git/repositories/{repo}?api-version=7.1"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("TF401019")
    );
}

#[tokio::test]
async fn latency_is_added_to_every_response() {
    let opts = AdoSimOptions {
        latency: Duration::from_millis(60),
        ..Default::default()
    };
    let (_, app) = sim_with(OrgSpec::small(), opts);
    let started = Instant::now();
    let r = get(&app, "/simorg/_apis/projects?api-version=7.1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(60));
}
