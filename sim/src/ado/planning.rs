//! Agile planning endpoints: team boards (list and detail with columns and state mappings), team
//! iterations, and the project's area classification tree (`$depth`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Duration;
use serde_json::{Value, json};

use super::AdoSim;
use super::faults::AdoError;
use super::org::{Org, Process, Project, fmt_time, guid};
use super::people::{Team, find_team, project_index};
use super::routes::{base, int_param, list_body, param, project};

type Sim = State<Arc<AdoSim>>;
type Params = Query<Vec<(String, String)>>;
type Result<T> = std::result::Result<T, AdoError>;

const TAG_BOARD: u64 = 0x52;
const TAG_COLUMN: u64 = 0x53;
const TAG_ITERATION: u64 = 0x54;
const SPRINTS: u64 = 12;
/// Sprint 10 is the current one; sprints last two weeks.
const CURRENT_SPRINT: i64 = 10;

pub(crate) fn routes(o: &str) -> Router<Arc<AdoSim>> {
    Router::new()
        .route(
            &format!("{o}/{{project}}/{{team}}/_apis/work/boards"),
            get(list_boards),
        )
        .route(
            &format!("{o}/{{project}}/{{team}}/_apis/work/boards/{{board}}"),
            get(get_board),
        )
        .route(
            &format!("{o}/{{project}}/{{team}}/_apis/work/teamsettings/iterations"),
            get(iterations),
        )
        .route(
            &format!("{o}/{{project}}/_apis/wit/classificationnodes/Areas"),
            get(areas),
        )
}

/// The backlog boards of a process, with the work-item types each shows.
fn boards_of(process: Process) -> &'static [(&'static str, &'static [&'static str])] {
    match process {
        Process::Agile => &[
            ("Epics", &["Epic"]),
            ("Features", &["Feature"]),
            ("Stories", &["User Story", "Bug"]),
        ],
        Process::Basic => &[("Epics", &["Epic"]), ("Issues", &["Issue"])],
    }
}

fn board_id(org: &Org, pi: usize, t: &Team, b: usize) -> String {
    guid(org.seed, TAG_BOARD, (pi * 10_000 + t.k) as u64, b as u64)
}

fn board_url(base: &str, p: &Project, t: &Team, id: &str) -> String {
    format!("{base}/{}/{}/_apis/work/boards/{id}", p.id, t.id)
}

async fn list_boards(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    let pi = project_index(&sim, p);
    let base = base(&sim, &headers);
    let value = boards_of(p.process)
        .iter()
        .enumerate()
        .map(|(b, (name, _))| {
            let id = board_id(&sim.org, pi, &t, b);
            json!({"id": id, "url": board_url(&base, p, &t, &id), "name": name})
        })
        .collect();
    Ok(Json(list_body(value)))
}

async fn get_board(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey, bkey)): Path<(String, String, String)>,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    let pi = project_index(&sim, p);
    let base = base(&sim, &headers);
    let org = &sim.org;
    let Some((b, (name, types))) =
        boards_of(p.process)
            .iter()
            .enumerate()
            .find(|(b, (name, _))| {
                board_id(org, pi, &t, *b).eq_ignore_ascii_case(&bkey)
                    || name.eq_ignore_ascii_case(&bkey)
            })
    else {
        return Err(AdoError::not_found(
            "BoardDoesNotExistException",
            format!("TF400499: The board '{bkey}' does not exist."),
        ));
    };
    let id = board_id(org, pi, &t, b);
    let states: &[&str] = match p.process {
        Process::Agile => &["New", "Active", "Resolved", "Closed"],
        Process::Basic => &["To Do", "Doing", "Done"],
    };
    let columns: Vec<Value> = states
        .iter()
        .enumerate()
        .map(|(c, state)| {
            let column_type = match c {
                0 => "incoming",
                c if c + 1 == states.len() => "outgoing",
                _ => "inProgress",
            };
            let mappings: serde_json::Map<String, Value> = types
                .iter()
                .map(|ty| ((*ty).to_owned(), json!(state)))
                .collect();
            json!({
                "id": guid(org.seed, TAG_COLUMN, (pi * 10_000 + t.k) as u64, (b * 100 + c) as u64),
                "name": state,
                "itemLimit": if column_type == "inProgress" { 5 } else { 0 },
                "stateMappings": mappings,
                "columnType": column_type,
                "isSplit": false,
                "description": "",
            })
        })
        .collect();
    let url = board_url(&base, p, &t, &id);
    let kanban = format!("WEF_{}_Kanban", id.replace('-', "").to_uppercase());
    Ok(Json(json!({
        "id": id,
        "url": url,
        "name": name,
        "revision": 1 + b,
        "columns": columns,
        "rows": [{"id": "00000000-0000-0000-0000-000000000000", "name": null}],
        "isValid": true,
        "allowedMappings": {},
        "canEdit": true,
        "fields": {
            "columnField": {"referenceName": format!("{kanban}.Column"), "url": format!("{base}/_apis/wit/fields/{kanban}.Column")},
            "rowField": {"referenceName": format!("{kanban}.Lane"), "url": format!("{base}/_apis/wit/fields/{kanban}.Lane")},
            "doneField": {"referenceName": format!("{kanban}.Column.Done"), "url": format!("{base}/_apis/wit/fields/{kanban}.Column.Done")},
        },
        "_links": {
            "self": {"href": url},
            "project": {"href": format!("{base}/_apis/projects/{}", p.id)},
            "team": {"href": format!("{base}/_apis/projects/{}/teams/{}", p.id, t.id)},
            "columns": {"href": format!("{url}/columns")},
            "rows": {"href": format!("{url}/rows")},
        },
    })))
}

async fn iterations(
    State(sim): Sim,
    headers: HeaderMap,
    Path((pkey, tkey)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let t = find_team(&sim, p, &tkey)?;
    let pi = project_index(&sim, p);
    let base = base(&sim, &headers);
    let org = &sim.org;
    let timeframe = param(&q, "$timeframe").map(str::to_ascii_lowercase);
    // The default team follows every sprint; the others joined at sprint 7.
    let first = if t.k == 0 { 1 } else { 7 };
    let day0 = org
        .anchor
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let value = (first..=SPRINTS)
        .filter_map(|n| {
            let start = day0 + Duration::days((n as i64 - CURRENT_SPRINT) * 14 - 3);
            let finish = start + Duration::days(13);
            let frame = match (n as i64).cmp(&CURRENT_SPRINT) {
                std::cmp::Ordering::Less => "past",
                std::cmp::Ordering::Equal => "current",
                std::cmp::Ordering::Greater => "future",
            };
            if timeframe.as_deref().is_some_and(|tf| tf != frame) {
                return None;
            }
            let id = guid(org.seed, TAG_ITERATION, pi as u64, n);
            Some(json!({
                "id": id,
                "name": format!("Sprint {n}"),
                "path": format!("{}\\Sprint {n}", p.name),
                "attributes": {"startDate": fmt_time(start), "finishDate": fmt_time(finish), "timeFrame": frame},
                "url": format!("{base}/{}/{}/_apis/work/teamsettings/iterations/{id}", p.id, t.id),
            }))
        })
        .collect();
    Ok(Json(list_body(value)))
}

/// The area tree under the project root, as (name, children).
const AREA_TREE: &[(&str, &[&str])] = &[
    ("Frontend", &["Web", "Mobile"]),
    ("Backend", &["API"]),
    ("Operations", &[]),
];

async fn areas(
    State(sim): Sim,
    headers: HeaderMap,
    Path(pkey): Path<String>,
    Query(q): Params,
) -> Result<Json<Value>> {
    let p = project(&sim, &pkey)?;
    let pi = project_index(&sim, p) as u64;
    let base = base(&sim, &headers);
    let depth = int_param(&q, "$depth")?.unwrap_or(0);
    let org = &sim.org;
    let node = |id: u64, segments: &[&str], name: &str, has_children: bool| {
        let rel: String = segments.iter().map(|s| format!("\\{s}")).collect();
        json!({
            "id": pi * 1000 + id,
            "identifier": guid(org.seed, TAG_ITERATION ^ 0xA, pi, id),
            "name": name,
            "structureType": "area",
            "hasChildren": has_children,
            "path": format!("\\{}\\Area{rel}", p.name),
            "url": format!("{base}/{}/_apis/wit/classificationNodes/Areas{}", p.id, rel.replace('\\', "/")),
        })
    };
    let mut root = node(0, &[], &p.name, true);
    if depth >= 1 {
        let children: Vec<Value> = AREA_TREE
            .iter()
            .enumerate()
            .map(|(i, (name, kids))| {
                let mut n = node(1 + i as u64 * 10, &[name], name, !kids.is_empty());
                if depth >= 2 && !kids.is_empty() {
                    n["children"] = kids
                        .iter()
                        .enumerate()
                        .map(|(j, kid)| {
                            node(2 + i as u64 * 10 + j as u64, &[name, kid], kid, false)
                        })
                        .collect();
                }
                n
            })
            .collect();
        root["children"] = Value::Array(children);
    }
    Ok(Json(root))
}
