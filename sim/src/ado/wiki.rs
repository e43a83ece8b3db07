//! Wikis: each project's project wiki, plus a code wiki published from the first project's first
//! repository; `pagesbatch` pages with the continuation token in the response header only, as the
//! real API does; single pages with optional content.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Project, enc, guid};
use super::people::project_index;
use super::routes::{base, list_body, param, project, with_continuation};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_WIKI: u64 = 0x55;
/// The largest `top` pagesbatch accepts.
const MAX_TOP: usize = 100;
const CODE_WIKI_PAGES: usize = 3;

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/{{project}}/_apis/wiki/wikis"),
            get(list_wikis),
        )
        .route(
            &format!("{o}/{{project}}/_apis/wiki/wikis/{{wiki}}"),
            get(get_wiki),
        )
        .route(
            &format!("{o}/{{project}}/_apis/wiki/wikis/{{wiki}}/pagesbatch"),
            post(pages_batch),
        )
        .route(
            &format!("{o}/{{project}}/_apis/wiki/wikis/{{wiki}}/pages/{{id}}"),
            get(get_page),
        )
}

struct WikiRef {
    id: String,
    name: String,
    code: bool,
    repository_id: String,
    pages: usize,
}

fn wikis(org: &Org, pi: usize) -> Vec<WikiRef> {
    let p = &org.projects[pi];
    let mut out = vec![WikiRef {
        id: guid(org.seed, TAG_WIKI, pi as u64, 0),
        name: format!("{}.wiki", p.name),
        code: false,
        repository_id: guid(org.seed, TAG_WIKI, pi as u64, 1),
        pages: org.wiki_pages,
    }];
    if pi == 0
        && let Some(r) = p.repos.first()
    {
        out.push(WikiRef {
            id: guid(org.seed, TAG_WIKI, pi as u64, 2),
            name: format!("{} docs", r.name),
            code: true,
            repository_id: r.id.clone(),
            pages: CODE_WIKI_PAGES,
        });
    }
    out
}

fn wiki_json(base: &str, p: &Project, w: &WikiRef) -> Value {
    json!({
        "id": w.id,
        "versions": [{"version": if w.code { "main" } else { "wikiMaster" }}],
        "url": format!("{base}/{}/_apis/wiki/wikis/{}", p.id, w.id),
        "remoteUrl": format!("{base}/{}/_wiki/wikis/{}", enc(&p.name), w.id),
        "type": if w.code { "codeWiki" } else { "projectWiki" },
        "name": w.name,
        "projectId": p.id,
        "repositoryId": w.repository_id,
        "mappedPath": if w.code { "/docs" } else { "/" },
    })
}

/// Page `n` (1-based): a home page, a guides parent and its topics.
fn page_path(n: usize) -> String {
    match n {
        1 => "/Home".into(),
        2 => "/Guides".into(),
        n => format!("/Guides/Topic {}", n - 2),
    }
}

fn find_wiki(sim: &AdoSim, p: &Project, key: &str) -> Result<WikiRef> {
    wikis(&sim.org, project_index(sim, p))
        .into_iter()
        .find(|w| w.id.eq_ignore_ascii_case(key) || w.name.eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            AdoError::not_found(
                "WikiNotFoundException",
                format!("The wiki '{key}' does not exist in this project."),
            )
        })
}

async fn list_wikis(
    State(sim): Sim,
    headers: HeaderMap,
    Path(pkey): Path<String>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let base = base(&sim, &headers);
    let value = wikis(&sim.org, project_index(&sim, p))
        .iter()
        .map(|w| wiki_json(&base, p, w))
        .collect();
    Ok(Json(list_body(value)))
}

async fn get_wiki(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, wkey)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let w = find_wiki(&sim, p, &wkey)?;
    Ok(Json(wiki_json(&base(&sim, &headers), p, &w)))
}

async fn pages_batch(
    State(sim): Sim,
    Path((pkey, wkey)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Response> {
    let p = project(&sim, &pkey)?;
    let w = find_wiki(&sim, p, &wkey)?;
    let top = body
        .get("top")
        .and_then(Value::as_u64)
        .map(|t| t as usize)
        .unwrap_or(MAX_TOP);
    if top == 0 || top > MAX_TOP {
        return Err(AdoError::bad_request(
            "InvalidArgumentValueException",
            format!("The value of top must be between 1 and {MAX_TOP}."),
        ));
    }
    let skip = match body.get("continuationToken").and_then(Value::as_str) {
        Some(t) => t.parse::<usize>().map_err(|_| {
            AdoError::bad_request(
                "InvalidContinuationTokenException",
                format!("The continuation token '{t}' is not valid."),
            )
        })?,
        None => 0,
    };
    let value: Vec<Value> = (skip + 1..=w.pages)
        .take(top)
        .map(|n| json!({"path": page_path(n), "id": n, "viewStats": []}))
        .collect();
    let next = skip + value.len();
    // No token in the body: clients that only read the body stop after the first batch.
    Ok(with_continuation(
        list_body(value),
        (next < w.pages).then(|| next.to_string()),
    ))
}

async fn get_page(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, wkey, id)): Path<(String, String, usize)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let w = find_wiki(&sim, p, &wkey)?;
    if id == 0 || id > w.pages {
        return Err(AdoError::not_found(
            "WikiPageNotFoundException",
            format!("The page with id {id} does not exist."),
        ));
    }
    let base = base(&sim, &headers);
    let path = page_path(id);
    let mut v = json!({
        "id": id,
        "path": path,
        "order": id - 1,
        "gitItemPath": format!("{}.md", path.replace(' ', "-")),
        "subPages": [],
        "url": format!("{base}/{}/_apis/wiki/wikis/{}/pages/{id}", p.id, w.id),
        "remoteUrl": format!("{base}/{}/_wiki/wikis/{}/{id}", enc(&p.name), w.id),
        "isParentPage": id == 2 && w.pages > 2,
        "isNonConformant": false,
    });
    if param(&q, "includeContent").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let title = path.rsplit('/').next().unwrap_or_default();
        v["content"] = json!(format!("# {title}\n\nThis page belongs to {}.\n", w.name));
    }
    Ok(Json(v))
}
