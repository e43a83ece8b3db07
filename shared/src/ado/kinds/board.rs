//! Agile planning kinds: `board` (per team, read in full, `__project`), `column` (one item per
//! board column × mapped work-item type, from the boards already read: no extra calls), `iteration`
//! (per team, `__project` and `__team`) and `area-path` (the project's area tree, flattened).

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::parent::{team_request, unless_parent_gone};
use super::{
    FetchContext, Kind, OptionError, PAGE_SIZE, PROJECT_CONCURRENCY, PageSink, SelectorOptions,
    str_field,
};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct Board;
pub struct Column;
pub struct Iteration;
pub struct AreaPath;

const TEAMS_AT_ONCE: usize = 5;

#[async_trait]
impl Kind for Board {
    type Options = ();

    fn name(&self) -> &'static str {
        "board"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let boards = ctx.boards().await?;
        for chunk in boards.chunks(PAGE_SIZE as usize) {
            sink.send(chunk.iter().map(board_item).collect()).await?;
        }
        Ok(())
    }
}

fn board_item(b: &super::shared_lists::Board) -> Value {
    let mut board = b.board.clone();
    board["__project"] = b.project.clone();
    // Boards are per team (every team has its own "Stories" board); the peer leaves the team out.
    board["__team"] = b.team.clone();
    board
}

#[async_trait]
impl Kind for Column {
    type Options = ();

    fn name(&self) -> &'static str {
        "column"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let boards = ctx.boards().await?;
        for b in boards.iter() {
            sink.send(columns_of(&board_item(b))).await?;
        }
        Ok(())
    }
}

/// One item per (column, work-item type) pair of the column's `stateMappings`, as the peer emits them:
/// the column, `__board` (without its columns, which would repeat the whole board in every item),
/// `__stateType` (the work-item type) and `__stateName` (the state it maps to).
pub(crate) fn columns_of(board: &Value) -> Vec<Value> {
    let mut slim = board.clone();
    if let Value::Object(map) = &mut slim {
        map.remove("columns");
    }
    let mut out = Vec::new();
    for column in board
        .get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(mappings) = column.get("stateMappings").and_then(Value::as_object) else {
            continue;
        };
        for (work_item_type, state) in mappings {
            let mut item = column.clone();
            item["__board"] = slim.clone();
            item["__stateType"] = Value::String(work_item_type.clone());
            item["__stateName"] = state.clone();
            out.push(item);
        }
    }
    out
}

/// One team's iterations, each with `__project` and `__team`; none for a team deleted since the list.
async fn team_iterations(ctx: &FetchContext, team: &Value) -> Result<Vec<Value>, AdoError> {
    let project = ctx.project_of_team(team).await?;
    let (pid, tid) = (str_field(&project, "id"), str_field(team, "id"));
    let req = Request::get(format!("/{pid}/{tid}/_apis/work/teamsettings/iterations"));
    let reply = match ctx.client.send(&req).await {
        Ok(r) => r,
        Err(e) => {
            unless_parent_gone(&ctx.client, e, &team_request(pid, tid)).await?;
            return Ok(Vec::new());
        }
    };
    let mut page = crate::ado::paging::take_items(reply.body, "value");
    for it in &mut page {
        it["__project"] = project.clone();
        it["__team"] = team.clone();
    }
    Ok(page)
}

#[async_trait]
impl Kind for Iteration {
    type Options = ();

    fn name(&self) -> &'static str {
        "iteration"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        _options: &(),
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let teams = ctx.teams().await?;
        // Every team of a project lists the project's iterations, which share their identifier: the
        // pass keeps the first item per key, so pages must come in team order (not completion order)
        // for the same item to win every pass.
        // Built up front: a stream mapping borrowed teams inside this boxed future trips the compiler's
        // higher-ranked `Send` check.
        let requests: Vec<_> = teams.iter().map(|t| team_iterations(ctx, t)).collect();
        let mut pages = futures::stream::iter(requests).buffered(TEAMS_AT_ONCE);
        while let Some(page) = pages.try_next().await? {
            if !page.is_empty() {
                sink.send(page).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Kind for AreaPath {
    type Options = AreaOptions;

    fn name(&self) -> &'static str {
        "area-path"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        options: &AreaOptions,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let depth = options.depth;
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECT_CONCURRENCY, |project| async move {
                let mut req = Request::get(format!(
                    "/{}/_apis/wit/classificationnodes/Areas",
                    str_field(project, "id")
                ));
                // Without `$depth` ADO returns the root alone, as the peer does; kept so a migrated
                // mapping sees the same entities.
                if let Some(d) = depth {
                    req = req.query("$depth", d);
                }
                let root = ctx.client.send(&req).await?.body;
                let mut out = Vec::new();
                flatten_areas(root, None, project, &mut out);
                for chunk in out.chunks(PAGE_SIZE as usize) {
                    sink.send(chunk.to_vec()).await?;
                }
                Ok(())
            })
            .await
    }
}

/// `depth`: how deep the area tree is read (ADO's `$depth`; the root alone without it).
pub struct AreaOptions {
    depth: Option<i64>,
}

impl SelectorOptions for AreaOptions {
    const NAMES: &'static [&'static str] = &["depth"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        match selector.int_option("depth", None)? {
            Some(d) if d < 0 => Err(OptionError::new(
                "depth",
                format!("must be 0 or more, got {d}"),
            )),
            depth => Ok(Self { depth }),
        }
    }
}

/// Depth-first, parents before children; only `area` nodes, without `children`.
pub(crate) fn flatten_areas(
    mut node: Value,
    parent: Option<&Value>,
    project: &Value,
    out: &mut Vec<Value>,
) {
    let children = match &mut node {
        Value::Object(map) => map.remove("children"),
        _ => None,
    };
    let is_area = node
        .get("structureType")
        .and_then(Value::as_str)
        .is_none_or(|t| t.eq_ignore_ascii_case("area"));
    if is_area {
        let mut item: Map<String, Value> = node.as_object().cloned().unwrap_or_default();
        item.insert("__project".into(), project.clone());
        item.insert(
            "__parentIdentifier".into(),
            parent
                .and_then(|p| p.get("identifier"))
                .cloned()
                .unwrap_or(Value::Null),
        );
        item.insert(
            "__normalizedPath".into(),
            Value::String(normalized_path(str_field(&node, "path"))),
        );
        out.push(Value::Object(item));
    }
    if let Some(Value::Array(children)) = children {
        for child in children {
            flatten_areas(child, Some(&node), project, out);
        }
    }
}

/// `\Proj\Area\A\B` → `Proj\A\B`: the form work items carry in `System.AreaPath`.
pub(crate) fn normalized_path(path: &str) -> String {
    let mut segments: Vec<&str> = path.split('\\').filter(|s| !s.is_empty()).collect();
    if segments.len() > 1 && segments[1].eq_ignore_ascii_case("Area") {
        segments.remove(1);
    }
    segments.join("\\")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn area_trees_flatten_with_parents_and_work_item_paths() {
        let tree = json!({
            "identifier": "root", "name": "P", "structureType": "area", "path": "\\P\\Area",
            "children": [
                {"identifier": "fe", "name": "Frontend", "structureType": "area", "path": "\\P\\Area\\Frontend",
                 "children": [{"identifier": "web", "name": "Web", "structureType": "area", "path": "\\P\\Area\\Frontend\\Web"}]},
                {"identifier": "it", "name": "Sprint", "structureType": "iteration", "path": "\\P\\Iteration\\Sprint"}
            ]
        });
        let mut out = Vec::new();
        flatten_areas(tree, None, &json!({"id": "p1"}), &mut out);
        let paths: Vec<&str> = out
            .iter()
            .map(|n| n["__normalizedPath"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["P", "P\\Frontend", "P\\Frontend\\Web"]);
        assert_eq!(out[0]["__parentIdentifier"], Value::Null);
        assert_eq!(out[2]["__parentIdentifier"], "fe");
        assert!(
            out.iter()
                .all(|n| n.get("children").is_none() && n["__project"]["id"] == "p1")
        );
    }

    #[test]
    fn columns_are_one_item_per_mapped_type() {
        let board = json!({"id": "b", "columns": [
            {"name": "New", "stateMappings": {"Bug": "New", "User Story": "New"}},
            {"name": "Split", "isSplit": true},
        ]});
        let cols = columns_of(&board);
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0]["__stateType"], "Bug");
        assert_eq!(cols[1]["__stateName"], "New");
        assert_eq!(cols[0]["__board"]["id"], "b");
        assert!(cols[0]["__board"].get("columns").is_none());
    }
}
