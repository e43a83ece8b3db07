//! `work-item`: per project, WIQL for the ids (with the user's `wiql` filter), paged by id range past
//! WIQL's 20,000-result cap, then the items in batches of 200 (the work-items API's limit) with `$expand`.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::{Map, Value, json};

use super::live::{self, Changed, LiveContext, LiveError, LiveEvent, RawItem, Unnamed};
use super::{Block, FetchContext, Kind, OptionError, PageSink, SelectorOptions, str_field};
use crate::ado::hooks::EventSpec;
use crate::ado::{AdoError, Guid, InvalidId, ProjectName, Request};
use crate::mapping::Selector;
use crate::queue::message::{Change, ChangeMessage};

pub struct WorkItem;

/// A deleted work item's snapshot is kept below this, so the message stays far from SQS's limit.
pub const SNAPSHOT_MAX_BYTES: usize = 64 * 1024;

/// Fields dropped first when a snapshot is too large: long free text no identifier is built from.
const BULKY_FIELDS: [&str; 2] = ["System.History", "System.Description"];

fn changed(r: &Value) -> Result<Change, Unnamed> {
    Ok(Change::WorkItem {
        id: live::required_number(r, &[&["id"]], "work item id")?,
        deleted: false,
        snapshot: None,
    })
}

static CREATED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("workitem.created"),
    name: changed,
};
/// `resource.id` of an update is the update's number, not the item's.
static UPDATED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("workitem.updated"),
    name: |r| {
        Ok(Change::WorkItem {
            id: live::required_number(r, &[&["workItemId"], &["revision", "id"]], "work item id")?,
            deleted: false,
            snapshot: None,
        })
    },
};
static COMMENTED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("workitem.commented"),
    name: changed,
};
/// A deleted item can no longer be read: the event's snapshot identifies its entity.
static DELETED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("workitem.deleted"),
    name: |r| {
        Ok(Change::WorkItem {
            id: live::required_number(r, &[&["id"]], "work item id")?,
            deleted: true,
            snapshot: Some(snapshot(r)),
        })
    },
};
static RESTORED: LiveEvent = LiveEvent {
    spec: EventSpec::tfs("workitem.restored"),
    name: changed,
};
static EVENTS: [&LiveEvent; 5] = [&CREATED, &UPDATED, &COMMENTED, &DELETED, &RESTORED];

/// The deleted item as the event carried it: enough for the processor to build the identifier the
/// resync built, without the links and free text that can make it huge.
fn snapshot(resource: &Value) -> Value {
    let mut fields = resource
        .get("fields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let build = |fields: &Map<String, Value>| {
        let mut s = Map::new();
        for key in ["id", "rev"] {
            if let Some(v) = resource.get(key) {
                s.insert(key.to_owned(), v.clone());
            }
        }
        s.insert("fields".to_owned(), Value::Object(fields.clone()));
        Value::Object(s)
    };
    let size = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    let mut snap = build(&fields);
    if size(&snap) <= SNAPSHOT_MAX_BYTES {
        return snap;
    }
    for key in BULKY_FIELDS {
        fields.remove(key);
    }
    snap = build(&fields);
    // Still too large: drop the largest remaining fields until it fits. Identifiers come from short
    // fields (project, id, type), which are the last to go.
    let mut by_size: Vec<(String, usize)> =
        fields.iter().map(|(k, v)| (k.clone(), size(v))).collect();
    by_size.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let mut total = size(&snap);
    for (key, len) in by_size {
        if total <= SNAPSHOT_MAX_BYTES {
            break;
        }
        fields.remove(&key);
        total = total.saturating_sub(len + key.len());
    }
    build(&fields)
}

/// WIQL refuses queries whose result exceeds 20,000 items (VS402337); `$top` one below keeps every page
/// legal, and a full page means "there may be more".
const WIQL_PAGE: usize = 19_999;
/// The work-items API accepts at most 200 ids per call (VS403474).
const BATCH: usize = 200;
/// Batches of one project in flight at once; the client's own bound caps the total.
const BATCH_CONCURRENCY: usize = 6;
/// WIQL is expensive in ADO's TSTU accounting; two projects at a time is plenty.
const PROJECTS_AT_ONCE: usize = 2;

/// `wiql` (a filter added to the listing's query) and `expand` (`All` by default).
pub struct Options {
    wiql: Option<String>,
    expand: &'static str,
}

impl SelectorOptions for Options {
    const NAMES: &'static [&'static str] = &["wiql", "expand"];

    fn parse(selector: &Selector) -> Result<Self, OptionError> {
        let wiql = selector
            .str_option("wiql")?
            .filter(|w| !w.trim().is_empty());
        let expand = match selector
            .str_option("expand")?
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("all") => "All",
            Some("none") => "None",
            Some("relations") => "Relations",
            Some("fields") => "Fields",
            Some("links") => "Links",
            Some(other) => {
                return Err(OptionError::new(
                    "expand",
                    format!("must be one of None, Relations, Fields, Links, All; got {other:?}"),
                ));
            }
        };
        Ok(Self { wiql, expand })
    }
}

#[async_trait]
impl Kind for WorkItem {
    type Options = Options;

    fn name(&self) -> &'static str {
        "work-item"
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        opts: &Options,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECTS_AT_ONCE, |project| {
                fetch_project(ctx, project, opts, sink)
            })
            .await
    }

    fn events(&self) -> &'static [&'static LiveEvent] {
        &EVENTS
    }

    async fn read_changed<'b>(
        &self,
        cx: &LiveContext<'_>,
        message: &ChangeMessage,
        blocks: &[Block<'b, Options>],
    ) -> Result<Option<Changed<'b>>, LiveError> {
        let Change::WorkItem { id, snapshot, .. } = &message.change else {
            return Ok(None);
        };
        let (id, snapshot) = (*id, snapshot.as_ref());
        let project = match message.project_id.as_ref() {
            Some(p) => named_project(cx, p, id).await?,
            None => match found_project(cx, id, snapshot, blocks).await? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        let (project, project_gone) = match project {
            WorkItemProject::Excluded => return Ok(None),
            WorkItemProject::Found(p) => (p, false),
            WorkItemProject::Gone(p) => (p, true),
        };
        // Without a project in the message the item is read organisation-wide, as when its project was
        // found: that first read (the first block's `$expand`) is then not repeated.
        let project_id = message.project_id.as_ref();
        let mut reads: HashMap<&'static str, Option<Value>> = HashMap::new();
        let mut out = Vec::with_capacity(blocks.len());
        for block in blocks {
            let expand = block.options.expand;
            let current = match reads.get(expand) {
                Some(read) => read.clone(),
                None => {
                    let read = if project_gone {
                        None
                    } else {
                        read_one(cx, project_id, id, expand)
                            .await
                            .map_err(LiveError::ado(format_args!("work item {id}")))?
                            .map(|mut item| {
                                enrich_work_item(&mut item, &project);
                                item
                            })
                    };
                    reads.insert(expand, read.clone());
                    read
                }
            };
            // ADO's answer wins over the message's `deleted` flag: a delete followed by a restore, or
            // delivered after it, must leave the item in the catalog.
            let raw = match current {
                Some(item) => RawItem::Current(item),
                None => RawItem::Gone(deleted_work_item(snapshot, id, &project)),
            };
            out.push((block.resource, raw));
        }
        Ok(Some(out))
    }
}

/// Splits a user filter into its condition and a trailing `ORDER BY` clause, if any.
fn split_order_by(wiql: &str) -> (Option<&str>, Option<&str>) {
    let lower = wiql.to_ascii_lowercase();
    let at = if lower.trim_start().starts_with("order by ") {
        Some(lower.len() - lower.trim_start().len())
    } else {
        lower.find(" order by ")
    };
    match at {
        Some(i) => {
            let cond = wiql[..i].trim();
            let order = wiql[i..].trim_start()["order by ".len()..].trim();
            ((!cond.is_empty()).then_some(cond), Some(order))
        }
        None => (Some(wiql.trim()), None),
    }
}

/// A WIQL string literal: single quotes doubled, so a project named `Bob's` does not break the query.
fn wiql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn fetch_project(
    ctx: &FetchContext,
    project: &Value,
    opts: &Options,
    sink: &PageSink,
) -> Result<(), AdoError> {
    let id = str_field(project, "id");
    let (filter, order_by) = match opts.wiql.as_deref() {
        Some(w) => split_order_by(w),
        None => (None, None),
    };
    let mut base = format!(
        "SELECT [System.Id] FROM WorkItems WHERE [System.TeamProject] = {}",
        wiql_literal(str_field(project, "name"))
    );
    if let Some(f) = filter {
        base.push_str(&format!(" AND ({f})"));
    }
    if let Some(order) = order_by {
        // The user's order cannot be paged by id range: one query, capped.
        let ids = wiql(ctx, id, &format!("{base} ORDER BY {order}")).await?;
        if ids.len() >= WIQL_PAGE {
            tracing::warn!(project = %str_field(project, "name"), limit = WIQL_PAGE, "work-item wiql has an ORDER BY, so only the first page of ids is synced; remove the ORDER BY to sync them all");
        }
        return fetch_items(ctx, project, &ids, opts, sink).await;
    }
    let mut last = 0u64;
    loop {
        let ids = wiql(
            ctx,
            id,
            &format!("{base} AND [System.Id] > {last} ORDER BY [System.Id] ASC"),
        )
        .await?;
        fetch_items(ctx, project, &ids, opts, sink).await?;
        match ids.iter().max() {
            Some(&max) if ids.len() >= WIQL_PAGE => last = max,
            _ => return Ok(()),
        }
    }
}

async fn wiql(ctx: &FetchContext, project_id: &str, query: &str) -> Result<Vec<u64>, AdoError> {
    let req = Request::post(
        format!("/{project_id}/_apis/wit/wiql"),
        json!({ "query": query }),
    )
    .query("$top", WIQL_PAGE);
    let reply = ctx.client.send(&req).await?;
    Ok(reply
        .body
        .get("workItems")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|w| w.get("id").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default())
}

async fn fetch_items(
    ctx: &FetchContext,
    project: &Value,
    ids: &[u64],
    opts: &Options,
    sink: &PageSink,
) -> Result<(), AdoError> {
    let project_id = str_field(project, "id");
    // Each batch is handed to the sink inside its own future: a reply is enriched and passed on as it
    // arrives, instead of waiting, raw, behind a slower batch.
    futures::stream::iter(ids.chunks(BATCH).map(Ok))
        .try_for_each_concurrent(BATCH_CONCURRENCY, |chunk| async move {
            let list = chunk
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // errorPolicy=Omit: an item deleted between the query and the read comes back as null instead of
            // failing the whole batch of 200.
            let req = Request::get(format!("/{project_id}/_apis/wit/workitems"))
                .query("ids", list)
                .query("$expand", opts.expand)
                .query("errorPolicy", "Omit");
            let reply = ctx.client.send(&req).await?;
            let items: Vec<Value> = super::super::paging::take_items(reply.body, "value")
                .into_iter()
                .filter(|v| !v.is_null())
                .map(|mut item| {
                    enrich_work_item(&mut item, project);
                    item
                })
                .collect();
            sink.send(items).await
        })
        .await
}

/// The fields the peer adds to every work item, which the default mapping's identifier
/// (`.__project.id + "/" + (.id | tostring)`) relies on. Shared with the live single reads, so an
/// event maps to the same identifier as the resync.
pub(crate) fn enrich_work_item(item: &mut Value, project: &Value) {
    if let Value::Object(map) = item {
        map.insert(
            "__projectId".into(),
            Value::String(str_field(project, "id").to_owned()),
        );
        map.insert("__project".into(), project.clone());
    }
}

/// The project a work item (or a deleted item's snapshot) names: `System.TeamProject`, else the root of
/// `System.AreaPath`. `None` when it names none.
pub(crate) fn work_item_project_name(item: &Value) -> Result<Option<ProjectName>, InvalidId> {
    let field = |name: &str| item.get("fields").and_then(|f| f.get(name));
    let text = |v: Option<&Value>| -> Result<Option<String>, InvalidId> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(InvalidId::NotAProjectName(other.to_string())),
        }
    };
    let name = match text(field("System.TeamProject"))? {
        Some(name) => Some(name),
        None => text(field("System.AreaPath"))?
            .and_then(|path| path.split('\\').next().map(str::to_owned)),
    };
    name.map(|n| ProjectName::parse(&n)).transpose()
}

/// What the listing would have produced for a work item that is gone: the event's snapshot (or just the
/// id) with the same enrichment, so a delete maps to the identifier the resync wrote.
fn deleted_work_item(snapshot: Option<&Value>, id: u64, project: &Value) -> Value {
    let mut item = match snapshot {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        _ => Value::Object(Default::default()),
    };
    if item.get("id").and_then(Value::as_u64).is_none() {
        item["id"] = Value::from(id);
    }
    enrich_work_item(&mut item, project);
    item
}

/// A work item with `$expand`: of its project (`Some`), or organisation-wide (ADO serves both).
async fn read_one(
    cx: &LiveContext<'_>,
    project: Option<&Guid>,
    id: u64,
    expand: &str,
) -> Result<Option<Value>, AdoError> {
    let path = live::scoped(project, &format!("/_apis/wit/workitems/{id}"));
    cx.get(Request::get(path).query("$expand", expand)).await
}

/// The project a work-item change belongs to.
enum WorkItemProject {
    /// It carries an excluded tag: nothing to do.
    Excluded,
    /// As Azure DevOps renders it.
    Found(Value),
    /// Deleted with its work items: only its id is known, and it still identifies them.
    Gone(Value),
}

/// The project of a work item whose message names it, as Azure DevOps renders it; a vanished project
/// takes its work items with it, and its id still identifies them.
async fn named_project(
    cx: &LiveContext<'_>,
    project_id: &Guid,
    id: u64,
) -> Result<WorkItemProject, LiveError> {
    if cx.excluded(Some(project_id)).await? {
        return Ok(WorkItemProject::Excluded);
    }
    let project = cx
        .project(project_id)
        .await
        .map_err(LiveError::ado(format_args!("work item {id}")))?;
    Ok(match project {
        Some(p) => WorkItemProject::Found(p),
        None => WorkItemProject::Gone(json!({ "id": project_id })),
    })
}

/// A work-item event without a project (an older subscription, or a message queued before the webhook
/// required one): the item is read organisation-wide and names its project, or, once deleted, its
/// snapshot does. `None`: nothing identifies the item's entity.
async fn found_project(
    cx: &LiveContext<'_>,
    id: u64,
    snapshot: Option<&Value>,
    blocks: &[Block<'_, Options>],
) -> Result<Option<WorkItemProject>, LiveError> {
    let context = format!("work item {id}");
    let Some(first) = blocks.first() else {
        return Ok(None);
    };
    let item = read_one(cx, None, id, first.options.expand)
        .await
        .map_err(LiveError::ado(&context))?;
    let named_by = item.as_ref().or(snapshot);
    let name = match named_by.map(work_item_project_name) {
        Some(Ok(Some(name))) => name,
        Some(Err(source)) => {
            return Err(LiveError::Id {
                context: format!("{context}: the work item's project"),
                source,
            });
        }
        None | Some(Ok(None)) => {
            // Nothing identifies its entity; deleting on a guess is not an option.
            tracing::info!(
                work_item = id,
                found = item.is_some(),
                "the work item names no project (or is gone without a snapshot naming one); the next resync brings its entity in line"
            );
            return Ok(None);
        }
    };
    let Some(project) = cx
        .project_named(&name)
        .await
        .map_err(LiveError::ado(&context))?
    else {
        tracing::info!(work_item = id, project = %name, "the work item's project is gone; the next resync brings its entity in line");
        return Ok(None);
    };
    let project_id = live::project_id_of(&project).map_err(LiveError::ado(&context))?;
    if cx.excluded(Some(&project_id)).await? {
        return Ok(Some(WorkItemProject::Excluded));
    }
    Ok(Some(WorkItemProject::Found(project)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_is_split_from_the_filter() {
        assert_eq!(
            split_order_by("[System.State] = 'New'"),
            (Some("[System.State] = 'New'"), None)
        );
        assert_eq!(
            split_order_by("[System.State] = 'New' order by [System.ChangedDate] desc"),
            (
                Some("[System.State] = 'New'"),
                Some("[System.ChangedDate] desc")
            )
        );
        assert_eq!(
            split_order_by("ORDER BY [System.Id]"),
            (None, Some("[System.Id]"))
        );
    }

    #[test]
    fn a_deleted_work_item_is_enriched_like_a_listed_one() {
        let project = json!({"id": "p1", "name": "Alpha"});
        let item = deleted_work_item(
            Some(&json!({"id": 7, "rev": 3, "fields": {"System.Title": "t"}})),
            7,
            &project,
        );
        assert_eq!(item["__projectId"], "p1");
        assert_eq!(item["__project"], project);
        assert_eq!(item["fields"]["System.Title"], "t");
        assert_eq!(item["rev"], 3);
    }

    #[test]
    fn a_deleted_work_item_without_a_snapshot_still_has_its_id() {
        let project = json!({"id": "p1"});
        let item = deleted_work_item(None, 42, &project);
        assert_eq!(item["id"], 42);
        assert_eq!(item["__projectId"], "p1");
        let odd = deleted_work_item(Some(&json!("not an object")), 5, &project);
        assert_eq!(odd["id"], 5);
    }

    #[test]
    fn a_work_item_names_its_project_by_team_project_then_area_path() {
        let name = |fields: Value| {
            work_item_project_name(&json!({ "fields": fields }))
                .map(|n| n.map(|n| n.as_str().to_owned()))
        };
        assert_eq!(
            name(json!({"System.TeamProject": "Mobile App", "System.AreaPath": "Other\\Team"})),
            Ok(Some("Mobile App".into()))
        );
        assert_eq!(
            name(json!({"System.AreaPath": "Mobile App\\Frontend"})),
            Ok(Some("Mobile App".into()))
        );
        assert_eq!(name(json!({"System.Title": "t"})), Ok(None));
        assert_eq!(work_item_project_name(&json!("odd")), Ok(None));
        assert!(name(json!({"System.TeamProject": "../_apis"})).is_err());
        assert!(name(json!({"System.TeamProject": 5})).is_err());
    }

    #[test]
    fn project_names_are_quoted_for_wiql() {
        assert_eq!(wiql_literal("Bob's project"), "'Bob''s project'");
    }
}
