//! `work-item`: per project, WIQL for the ids (with the user's `wiql` filter), paged by id range past
//! WIQL's 20,000-result cap, then the items in batches of 200 (the work-items API's limit) with `$expand`.

use async_trait::async_trait;
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::{FetchContext, KindSource, OptionError, PageSink, option_error, str_field};
use crate::ado::{AdoError, Request};
use crate::mapping::Selector;

pub struct WorkItem;

/// WIQL refuses queries whose result exceeds 20,000 items (VS402337); `$top` one below keeps every page
/// legal, and a full page means "there may be more".
const WIQL_PAGE: usize = 19_999;
/// The work-items API accepts at most 200 ids per call (VS403474).
const BATCH: usize = 200;
/// Batches of one project in flight at once; the client's own bound caps the total.
const BATCH_CONCURRENCY: usize = 6;
/// WIQL is expensive in ADO's TSTU accounting; two projects at a time is plenty.
const PROJECTS_AT_ONCE: usize = 2;

struct Options {
    wiql: Option<String>,
    expand: &'static str,
}

impl Options {
    fn read(selector: &Selector) -> Result<Self, OptionError> {
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
impl KindSource for WorkItem {
    fn name(&self) -> &'static str {
        "work-item"
    }

    fn options(&self) -> &'static [&'static str] {
        &["wiql", "expand"]
    }

    fn check(&self, selector: &Selector) -> Result<(), OptionError> {
        Options::read(selector).map(|_| ())
    }

    async fn fetch(
        &self,
        ctx: &FetchContext,
        selector: &Selector,
        sink: &PageSink,
    ) -> Result<(), AdoError> {
        let opts = Options::read(selector).map_err(|e| option_error("work-item", e))?;
        let projects = ctx.projects().await?;
        futures::stream::iter(projects.iter().map(Ok))
            .try_for_each_concurrent(PROJECTS_AT_ONCE, |project| {
                fetch_project(ctx, project, &opts, sink)
            })
            .await
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

/// The `$expand` a work-item selector asks for (`All` by default).
pub(crate) fn expand_option(selector: &Selector) -> Result<&'static str, String> {
    Options::read(selector)
        .map(|o| o.expand)
        .map_err(|e| e.to_string())
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
    fn project_names_are_quoted_for_wiql() {
        assert_eq!(wiql_literal("Bob's project"), "'Bob''s project'");
    }
}
