//! The Azure DevOps client against a scripted local server: paging in both token styles and `$top/$skip`,
//! throttling headers, the 203 sign-in page, api-version on every call, extra headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::ado::{AdoClient, AdoClientConfig, AdoError, OrgUrl, Request};

#[derive(Default)]
struct Seen {
    queries: Vec<HashMap<String, String>>,
    headers: Vec<HeaderMap>,
    hits: u32,
}

type Shared = Arc<Mutex<Seen>>;

fn record(s: &Shared, q: &HashMap<String, String>, h: &HeaderMap) -> u32 {
    let mut s = s.lock().unwrap();
    s.queries.push(q.clone());
    s.headers.push(h.clone());
    s.hits += 1;
    s.hits
}

async fn header_tokens(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    let page = q
        .get("continuationToken")
        .map(|t| t.parse::<u32>().unwrap())
        .unwrap_or(0);
    let items: Vec<Value> = (0..2).map(|i| json!({"id": page * 2 + i})).collect();
    let mut resp = axum::Json(json!({"count": 2, "value": items})).into_response();
    if page < 2 {
        resp.headers_mut().insert(
            "x-ms-continuationtoken",
            (page + 1).to_string().parse().unwrap(),
        );
    }
    resp
}

async fn body_tokens(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    let page = q
        .get("continuationToken")
        .map(|t| t.trim_start_matches("tok").parse::<u32>().unwrap())
        .unwrap_or(0);
    let token = if page < 1 {
        json!(format!("tok{}", page + 1))
    } else {
        Value::Null
    };
    axum::Json(json!({"items": [{"id": page}], "continuationToken": token})).into_response()
}

async fn top_skip(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    let top: usize = q["$top"].parse().unwrap();
    let skip: usize = q["$skip"].parse().unwrap();
    let items: Vec<Value> = (skip..(skip + top).min(7))
        .map(|i| json!({"id": i}))
        .collect();
    axum::Json(json!({"count": items.len(), "value": items})).into_response()
}

async fn throttled(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    let hit = record(&s, &q, &h);
    if hit == 1 {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"message": "TF400733: Request was blocked due to exceeding usage of resource"}))).into_response();
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        r.headers_mut()
            .insert("x-ratelimit-remaining", "0".parse().unwrap());
        return r;
    }
    axum::Json(json!({"value": [{"ok": true}]})).into_response()
}

async fn sign_in(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    (
        StatusCode::NON_AUTHORITATIVE_INFORMATION,
        [("content-type", "text/html")],
        "<!DOCTYPE html><html><title>Azure DevOps Services | Sign In</title></html>",
    )
        .into_response()
}

async fn html_ok(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    (
        [("content-type", "text/html")],
        "<html><body>Sign in</body></html>",
    )
        .into_response()
}

async fn always_503(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    record(&s, &q, &h);
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"message": "busy"})),
    )
        .into_response()
}

async fn server() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/org/_apis/header", get(header_tokens))
        .route("/org/_apis/body", get(body_tokens))
        .route("/org/_apis/topskip", get(top_skip))
        .route("/org/_apis/throttled", get(throttled))
        .route("/org/_apis/signin", get(sign_in))
        .route("/org/_apis/html", get(html_ok))
        .route("/org/_apis/down", get(always_503))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/org"), seen)
}

fn client(url: &str, tweak: impl FnOnce(&mut AdoClientConfig)) -> AdoClient {
    let mut cfg = AdoClientConfig::new(
        OrgUrl::parse(url).unwrap(),
        SecretString::from("the-pat".to_owned()),
    );
    tweak(&mut cfg);
    AdoClient::new(cfg).unwrap()
}

#[tokio::test]
async fn header_continuation_tokens_are_followed_to_the_last_page() {
    let (url, seen) = server().await;
    let c = client(&url, |_| {});
    let pages: Vec<Vec<Value>> = c
        .token_pages(Request::get("/_apis/header"), Some(2), "value")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 3);
    let ids: Vec<u64> = pages
        .iter()
        .flatten()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.queries[0].get("continuationToken"), None);
    assert_eq!(seen.queries[2]["continuationToken"], "2");
    assert!(
        seen.queries
            .iter()
            .all(|q| q["api-version"] == "7.1" && q["$top"] == "2")
    );
}

#[tokio::test]
async fn body_continuation_tokens_and_other_data_keys_are_followed() {
    let (url, _) = server().await;
    let c = client(&url, |_| {});
    let pages: Vec<Vec<Value>> = c
        .token_pages(Request::get("/_apis/body"), None, "items")
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<u64> = pages
        .iter()
        .flatten()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1]);
}

#[tokio::test]
async fn top_skip_paging_stops_at_a_short_page_and_honours_a_cap() {
    let (url, seen) = server().await;
    let c = client(&url, |_| {});
    let all: Vec<Vec<Value>> = c
        .top_skip_pages(Request::get("/_apis/topskip"), 3, None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
    let capped: Vec<Vec<Value>> = c
        .top_skip_pages(Request::get("/_apis/topskip"), 3, Some(4))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(capped.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    let seen = seen.lock().unwrap();
    let last = seen.queries.last().unwrap();
    assert_eq!((last["$top"].as_str(), last["$skip"].as_str()), ("1", "3"));
}

#[tokio::test]
async fn a_429_with_lowercase_retry_after_is_waited_out_and_retried() {
    let (url, seen) = server().await;
    let c = client(&url, |_| {});
    let started = Instant::now();
    let reply = c.get("/_apis/throttled").await.unwrap();
    assert_eq!(reply.body["value"][0]["ok"], true);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(seen.lock().unwrap().hits, 2);
    assert_eq!(c.requests_made(), 2);
}

#[tokio::test]
async fn a_203_sign_in_page_is_an_authentication_error_not_data() {
    let (url, seen) = server().await;
    let c = client(&url, |_| {});
    let err = c.get("/_apis/signin").await.unwrap_err();
    assert!(matches!(err, AdoError::Unauthorized(_)), "{err:?}");
    assert!(err.to_string().contains("PAT"), "{err}");
    assert_eq!(
        seen.lock().unwrap().hits,
        1,
        "authentication errors are not retried"
    );
    let err = c.get("/_apis/html").await.unwrap_err();
    assert!(matches!(err, AdoError::Unauthorized(_)), "{err:?}");
}

#[tokio::test]
async fn persistent_5xx_ends_as_a_transient_error_after_the_retries() {
    let (url, seen) = server().await;
    let c = client(&url, |cfg| cfg.max_retries = 2);
    let err = c.get("/_apis/down").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(seen.lock().unwrap().hits, 3);
}

#[tokio::test]
async fn auth_api_version_and_extra_headers_go_on_every_call() {
    let (url, seen) = server().await;
    let c = client(&url, |cfg| {
        cfg.api_version = "7.0".into();
        cfg.extra_headers = vec![(
            "X-Proxy-Key".into(),
            SecretString::from("proxy-secret".to_owned()),
        )];
    });
    c.get("/_apis/topskip?$top=1&$skip=0").await.ok();
    c.send(
        &Request::get("/_apis/topskip")
            .query("$top", 1)
            .query("$skip", 0),
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    let h = seen.headers.last().unwrap();
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(":the-pat")
    );
    assert_eq!(h["authorization"], expected.as_str());
    assert_eq!(h["x-proxy-key"], "proxy-secret");
    assert_eq!(seen.queries.last().unwrap()["api-version"], "7.0");
}
